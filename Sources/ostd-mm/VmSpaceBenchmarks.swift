// Benchmarks of user address spaces: copies between user readers and writers, read against the
// `memcpy-64k` baseline, and first-touch demand paging, read against `zero-4k`.

import OSTDHost
@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

enum VmSpaceBenchmarks {
    static let source = Vaddr(0x1000_0000)
    static let destination = Vaddr(0x2000_0000)
    static let copySize = 64 << 10

    static func all(machine: Machine) -> [Benchmark] {
        [
            copy(machine, name: "copy-user-64k", scattered: false),
            copy(machine, name: "copy-user-64k-scattered", scattered: true),
            sameBytesMemcpy(machine),
            createDrop(machine, owned: false),
            createDrop(machine, owned: true),
            readValues(machine),
            faultIn(machine),
            faultInFresh(machine),
            zeroFresh(machine),
        ]
    }

    /// A user-to-user copy of 64 KiB per operation, source and destination both starting in the
    /// middle of a page: a reader and a writer are created, the bytes go through the TLB, and both
    /// are dropped. With `scattered`, no two consecutive pages are physically adjacent, so every
    /// page is a separate copy.
    private static func copy(_ machine: Machine, name: String, scattered: Bool) -> Benchmark {
        Benchmark.selfTimed(name: name, operations: 20_000, bytesPerOperation: copySize) { n in
            machine.withCpu(0) {
                let space = try! VmSpace(machine: machine)
                let pages = copySize / pageSize + 1
                mapPages(space, at: source, count: pages, scattered: scattered)
                mapPages(space, at: destination, count: pages, scattered: scattered)
                space.activate(on: 0)
                let elapsed = timed {
                    for _ in 0..<n {
                        try! space.withReader(at: source + 0x800, count: copySize) { (reader) throws(OSTDError) in
                            try space.withWriter(at: destination + 0x100, count: copySize) { (writer) throws(OSTDError) in
                                _ = try reader.readFallible(&writer)
                            }
                        }
                    }
                }
                var cursor = try! space.cursorMut(Vaddr(0)..<Vaddr(0x4000_0000))
                cursor.unmap(0x4000_0000)
                return elapsed
            }
        }
    }

    /// Creating and dropping a user reader and writer, without copying: the admission checks and
    /// registrations that `copy-user-64k` pays per operation. The handles are scoped
    /// (`withReader` / `withWriter`), borrowing the space as OSTD's do; with `owned`, they are
    /// made by `createReader` / `createWriter` and hold a reference on the space each.
    private static func createDrop(_ machine: Machine, owned: Bool) -> Benchmark {
        let name = owned ? "user-reader-writer-create-drop-owned" : "user-reader-writer-create-drop"
        return Benchmark.selfTimed(name: name, operations: 200_000) { n in
            machine.withCpu(0) {
                let space = try! VmSpace(machine: machine)
                space.activate(on: 0)
                return timed {
                    if owned {
                        for _ in 0..<n {
                            let reader = try! space.createReader(source + 0x800, copySize)
                            let writer = try! space.createWriter(destination + 0x100, copySize)
                            _ = consume reader
                            _ = consume writer
                        }
                    } else {
                        for _ in 0..<n {
                            try! space.withReader(at: source + 0x800, count: copySize) { (_) throws(OSTDError) in
                                try space.withWriter(at: destination + 0x100, count: copySize) { (_) throws(OSTDError) in }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `readVal` of a `UInt64`, one after another through one scoped reader over 64 KiB of mapped
    /// pages: what a system call pays per argument word it reads from user memory (a TLB hit,
    /// 511 of 512 times on the page of the word before). The reader is made and dropped
    /// untimed, once per 8 192 values (or fewer).
    private static func readValues(_ machine: Machine) -> Benchmark {
        Benchmark.selfTimed(name: "user-read-val", operations: 8192 * 64) { n in
            machine.withCpu(0) {
                let space = try! VmSpace(machine: machine)
                let words = copySize / 8
                mapPages(space, at: source, count: copySize / pageSize, scattered: false)
                space.activate(on: 0)
                var elapsed: UInt64 = 0
                var sum: UInt64 = 0
                var left = n
                while left > 0 {
                    let batch = min(left, words)
                    try! space.withReader(at: source, count: copySize) { (reader) throws(OSTDError) in
                        elapsed += timed { for _ in 0..<batch { sum &+= try! reader.readVal(UInt64.self) } }
                    }
                    left -= batch
                }
                precondition(sum == 0)
                var cursor = try! space.cursorMut(Vaddr(0)..<Vaddr(0x4000_0000))
                cursor.unmap(0x4000_0000)
                return elapsed
            }
        }
    }

    /// The baseline of `copy-user-64k`: a plain `memcpy` of the same bytes, from and to the same
    /// host addresses (the frames are physically contiguous there).
    private static func sameBytesMemcpy(_ machine: Machine) -> Benchmark {
        Benchmark.selfTimed(name: "copy-user-64k-memcpy", operations: 20_000, bytesPerOperation: copySize) { n in
            machine.withCpu(0) {
                let space = try! VmSpace(machine: machine)
                let pages = copySize / pageSize + 1
                mapPages(space, at: source, count: pages, scattered: false)
                mapPages(space, at: destination, count: pages, scattered: false)
                let from = hostRun(space, source + 0x800, pages: pages)
                let to = hostRun(space, destination + 0x100, pages: pages)
                let elapsed = timed { for _ in 0..<n { memcpyBaseline(to, from, copySize) } }
                var cursor = try! space.cursorMut(Vaddr(0)..<Vaddr(0x4000_0000))
                cursor.unmap(0x4000_0000)
                return elapsed
            }
        }
    }

    /// The host address of `va`, checking that the `pages` pages from it are physically contiguous.
    private static func hostRun(_ space: VmSpace, _ va: Vaddr, pages: Int) -> UnsafeMutableRawPointer {
        let first = space.pageTable.pageWalk(va)!.paddr
        for i in 1..<pages { precondition(space.pageTable.pageWalk(va + i * pageSize)?.paddr == first + i * pageSize) }
        return space.machine.pointer(to: first)
    }

    /// Maps `count` physically contiguous fresh pages at `va`, in order; scattered ones leave a
    /// frame out between pages.
    private static func mapPages(_ space: VmSpace, at va: Vaddr, count: Int, scattered: Bool) {
        var cursor = try! space.cursorMut(va..<(va + count * pageSize))
        var frames = try! FrameAllocOptions().allocSegment(scattered ? 2 * count : count, in: space.machine)
        while let frame = frames.next() {
            cursor.map(frame, .user(.rw))
            if scattered { _ = frames.next() }
        }
    }

    /// A space whose page-fault handler maps a zeroed frame at any faulting page. The page is
    /// mapped accessed, as Linux maps a faulted-in page young: the access about to be retried
    /// would set A anyway, with a compare-exchange.
    private static func demandPagedSpace(_ machine: Machine) -> VmSpace {
        let space = try! VmSpace(machine: machine)
        space.pageFaultHandler = { space, fault in
            let page = Vaddr(fault.address.rawValue & ~UInt64(pageSize - 1))
            do {
                try space.mapPage(try FrameAllocOptions().allocFrame(in: space.machine), at: page, .user([.rw, .accessed]))
                return true
            } catch {
                return false
            }
        }
        space.activate(on: 0)
        return space
    }

    /// Reads the first byte of each of `count` pages from `start` through one (scoped) reader, as
    /// a system call touching a buffer would: every read is a first touch.
    private static func touch(_ space: VmSpace, from start: Vaddr, count: Int) -> Int {
        try! space.withReader(at: start, count: count * pageSize) { (reader) throws(OSTDError) in
            var sum = 0
            for _ in 0..<count {
                sum &+= Int(try reader.readVal(UInt8.self))
                reader.skip(min(pageSize - 1, reader.remain))
            }
            return sum
        }
    }

    /// First touch of a 4 KiB page: the read faults, the handler allocates a zeroed frame and maps
    /// it, and the read is retried (one reader serves 16 pages). Pages are touched 16 at a time and unmapped (untimed) after
    /// each batch, so the frames come back hot from the CPU's cache, as `zero-4k` zeroes 16 hot
    /// pages.
    private static func faultIn(_ machine: Machine) -> Benchmark {
        Benchmark.selfTimed(name: "fault-in-4k", operations: 16 * 4096) { n in
            machine.withCpu(0) {
                let space = demandPagedSpace(machine)
                var elapsed: UInt64 = 0
                for _ in 0..<(n / 16) {
                    elapsed += timed { precondition(touch(space, from: source, count: 16) == 0) }
                    var cursor = try! space.cursorMut(source..<(source + 16 * pageSize))
                    cursor.unmap(16 * pageSize)
                }
                return elapsed
            }
        }
    }

    /// First touch of fresh pages: 50 000 of them, each with a frame not used recently (cold in
    /// the caches). Read against `cold-zero-4k`.
    private static func faultInFresh(_ machine: Machine) -> Benchmark {
        Benchmark.selfTimed(name: "cold-touch-4k", operations: 50_000) { n in
            machine.withCpu(0) {
                let space = demandPagedSpace(machine)
                let elapsed = timed { precondition(touch(space, from: source, count: n) == 0) }
                var cursor = try! space.cursorMut(source..<(source + n * pageSize))
                cursor.unmap(n * pageSize)
                return elapsed
            }
        }
    }

    /// The baseline of `cold-touch-4k`: zeroing 50 000 distinct frames.
    private static func zeroFresh(_ machine: Machine) -> Benchmark {
        Benchmark.selfTimed(name: "cold-zero-4k", operations: 50_000) { n in
            machine.withCpu(0) {
                var frames: [Paddr] = []
                for _ in 0..<n { frames.append(try! FrameAllocOptions().zeroed(false).allocFrame(in: machine).intoRaw()) }
                let elapsed = timed { for paddr in frames { memsetBaseline(machine.pointer(to: paddr), pageSize) } }
                // SAFETY: each address comes from `intoRaw` above, on this machine, and is restored once.
                for paddr in frames { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
                return elapsed
            }
        }
    }
}
