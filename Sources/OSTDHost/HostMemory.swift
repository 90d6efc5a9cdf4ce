// Simulated physical memory backed by anonymous mmap.
//
// The whole address space is reserved up front with `MAP_NORESERVE`: the kernel hands out zero
// pages only as they are touched, so a 16 GiB machine costs nothing until used, and its memory
// reads as zeros — which the core's metadata encoding relies on.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@_spi(OSTDInternals) import OSTDMemory

/// Host-side construction of simulated machines.
public enum HostMemory {
    /// Reserves `size` bytes of zero-filled memory, released with `munmap` when the machine is
    /// gone.
    ///
    /// - Throws: `FrameError.invalidArgs` when `size` is not a positive multiple of 4 KiB,
    ///   `OSTDError.outOfMemory` when the host refuses the reservation.
    public static func reserve(size: Int) throws(FrameError) -> PhysicalMemoryRegion {
        guard size > 0, size % 4096 == 0 else {
            throw .invalidArgs("memory size \(size) is not a positive multiple of 4 KiB")
        }
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, flags, -1, 0), base != MAP_FAILED else {
            throw .outOfMemory(frames: size / 4096)
        }
        return PhysicalMemoryRegion(base: base, size: size, release: { base, size in
            _ = munmap(base, size)
        })
    }
}

extension Machine {
    /// Boots a machine with `memory` bytes of host memory (default 256 MiB) and `cpus` simulated
    /// CPUs, with threads able to bind to them (`withCpu`).
    ///
    /// - Throws: `FrameError.invalidArgs` for a bad size or CPU count, `outOfMemory` when the host
    ///   cannot reserve the memory.
    public static func host(memory: Int = 256 << 20, cpus: Int = 1, audit: Bool = false,
                            auditor: (any FrameAuditor)? = nil) throws(FrameError) -> Machine {
        let region = try HostMemory.reserve(size: memory)
        do {
            return try Machine(memory: region, cpus: cpus, cpuLocal: HostCpu.hooks, audit: audit, auditor: auditor)
        } catch {
            region.release?(region.base, region.size)
            throw error
        }
    }
}

extension Machine {
    /// Has the host back the metadata region with real pages now (Linux `MADV_POPULATE_WRITE`),
    /// without changing its contents. A kernel's metadata is always resident; benchmarks call
    /// this so that the host's first-touch page faults are not measured as frame operations.
    /// Returns whether the host did it (older kernels and other systems do not).
    @discardableResult
    public func populateMetadata() -> Bool { populate(metadataRange) }

    /// Has the host back all of physical memory with real pages now, as a machine's RAM is:
    /// benchmarks of operations that hand out fresh frames call this so that they do not measure
    /// the host zeroing pages on first touch. Returns whether the host did it.
    @discardableResult
    public func populateMemory() -> Bool { populate(Paddr(0)..<Paddr(UInt64(memorySize))) }

    private func populate(_ range: Range<Paddr>) -> Bool {
        #if os(Linux)
        let madvPopulateWrite: Int32 = 23
        return madvise(pointer(to: range.lowerBound), range.upperBound - range.lowerBound, madvPopulateWrite) == 0
        #else
        return false
        #endif
    }
}

extension Machine {
    /// Asks the host to back the whole simulated physical memory with transparent huge pages
    /// (Linux `MADV_HUGEPAGE`), as a kernel's linear mapping uses huge pages: host TLB misses then
    /// stop dominating random accesses. Touching one frame commits 2 MiB of host memory, so this
    /// is for benchmarks, not for many small test machines. Returns whether the host agreed.
    @discardableResult
    public func adviseHugePages() -> Bool {
        #if os(Linux)
        let madvHugePage: Int32 = 14
        return madvise(pointer(to: Paddr(0)), memorySize, madvHugePage) == 0
        #else
        return false
        #endif
    }
}

extension Machine {
    /// Calls `body` with each run of physical memory in `range` (page-aligned) that the host has
    /// backed with pages (Linux `mincore`), in address order. Every other page was never touched
    /// and reads as zeros, so a walk over these runs costs in proportion to what the machine
    /// used, not to its size. Without `mincore` the whole range is one run.
    public func forEachResidentRun<E: Error>(in range: Range<Paddr>,
                                             _ body: (Range<Paddr>) throws(E) -> Void) throws(E) {
        precondition(range.upperBound.rawValue <= UInt64(memorySize), "\(range) is outside memory")
        #if os(Linux)
        let window = 1 << 30
        var vector = [UInt8](repeating: 0, count: window >> 12)
        var start = Int(range.lowerBound.rawValue)
        let end = Int(range.upperBound.rawValue)
        while start < end {
            let length = min(window, end - start)
            // SAFETY: `start ..< start + length` lies inside the machine's mapping (checked above),
            // which lives as long as `self`; `mincore` takes a mutable pointer but only reads the
            // host's page tables, never the memory, and `vector` holds `window >> 12 >= length >> 12`
            // entries for it to fill.
            let base = UnsafeMutableRawPointer(mutating: readOnlyPointer(to: Paddr(UInt64(start))))
            let ok = vector.withUnsafeMutableBufferPointer { mincore(base, length, $0.baseAddress) == 0 }
            guard ok else { return try body(Paddr(UInt64(start))..<range.upperBound) }
            try forEachRun(in: vector, pages: length >> 12, from: start, body)
            start += length
        }
        #else
        try body(range)
        #endif
    }

    /// `forEachResidentRun(in:)` over the whole of physical memory.
    public func forEachResidentRun<E: Error>(_ body: (Range<Paddr>) throws(E) -> Void) throws(E) {
        try forEachResidentRun(in: Paddr(0)..<Paddr(UInt64(memorySize)), body)
    }

    /// The runs of resident pages (bit 0 set) among the first `pages` entries of `vector`, whose
    /// first page is at `start`; eight entries are tested at once, so empty stretches go fast.
    private func forEachRun<E: Error>(in vector: [UInt8], pages: Int, from start: Int,
                                      _ body: (Range<Paddr>) throws(E) -> Void) throws(E) {
        var page = 0
        while page < pages {
            if page & 7 == 0, page + 8 <= pages, word(of: vector, at: page) & 0x0101_0101_0101_0101 == 0 {
                page += 8
                continue
            }
            guard vector[page] & 1 != 0 else { page += 1; continue }
            let first = page
            while page < pages && vector[page] & 1 != 0 { page += 1 }
            try body(Paddr(UInt64(start + first << 12))..<Paddr(UInt64(start + page << 12)))
        }
    }

    /// Entries `index ..< index + 8` of `vector` as one word.
    ///
    /// - Precondition: `index + 8 <= vector.count` (the caller tests `page + 8 <= pages`).
    private func word(of vector: [UInt8], at index: Int) -> UInt64 {
        // SAFETY: the eight bytes at `index` lie inside the array (the precondition); an unaligned
        // load of plain bytes is defined.
        vector.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: index, as: UInt64.self) }
    }
}
