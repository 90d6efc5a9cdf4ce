// Running scripts (SCRIPT.md, "Ops", "Errors"): each op through the public `VmSpace` API.
//
// The runner owns a fresh machine and one user `VmSpace`, active on CPU 0. Every op checks its
// errors in the contract's order (out-of-range, unaligned, access-conflict, already-mapped,
// out-of-memory, page-fault) before it changes anything, so a failed op changes nothing — except
// that a faulting `write`, `fill` or `copy` keeps the bytes written before the fault, as a user
// program's would be. `map` rolls back what it mapped when memory runs out; `unmap` and `protect`
// count the page-table nodes their huge-leaf splits need first and refuse when they are not free.

import OSTDHost
import OSTDMemory

/// An op failure's code (SCRIPT.md's error table, in precedence order).
public enum ScriptErrorCode: String, Equatable, Sendable {
    case outOfRange = "out-of-range"
    case unaligned
    case accessConflict = "access-conflict"
    case alreadyMapped = "already-mapped"
    case outOfMemory = "out-of-memory"
    case pageFault = "page-fault"
}

/// A value in an op's result.
public enum ResultValue: Equatable, Sendable {
    case int(Int)
    case address(UInt64)
    case text(String)
    case bool(Bool)
}

/// What one op did: `ok`, or an error code with a message; and its named fields, in order.
public struct OpResult: Equatable, Sendable {
    public var line: Int
    public var op: String
    public var error: ScriptErrorCode?
    public var message: String?
    public var fields: [(String, ResultValue)]

    public var ok: Bool { error == nil }

    public static func == (a: OpResult, b: OpResult) -> Bool {
        a.line == b.line && a.op == b.op && a.error == b.error && a.message == b.message
            && a.fields.map(\.0) == b.fields.map(\.0) && a.fields.map(\.1) == b.fields.map(\.1)
    }
}

/// The state after the last op (SCRIPT.md's summary line).
public struct ScriptSummary: Equatable, Sendable {
    public var ops: Int
    public var failed: Int
    public var root: UInt64
    public var memory: UInt64
    public var framesInUse: Int
    public var ptFrames: Int
    public var audit: Bool
}

/// Why the runner could not start.
public enum RunnerError: Error, Equatable, CustomStringConvertible {
    case badMemorySize(Int, String)

    public var description: String {
        switch self {
        case .badMemorySize(let size, let why): return "--memory \(size): \(why)"
        }
    }
}

/// Runs ops against one user address space on a fresh machine.
public final class ScriptRunner {
    public let machine: Machine
    public let kernelPageTable: PageTable<KernelPtConfig>
    public let space: VmSpace
    public let memorySize: Int
    public private(set) var results: [OpResult] = []

    /// A machine of `memory` bytes (a multiple of 2 MiB, large enough for the metadata and the
    /// page tables) and a space active on its CPU 0.
    public init(memory: Int) throws(RunnerError) {
        guard memory > 0, memory % (2 << 20) == 0 else {
            throw .badMemorySize(memory, "not a positive multiple of 2 MiB")
        }
        do {
            machine = try Machine.host(memory: memory, cpus: 1)
            kernelPageTable = try PageTable.newKernelPageTable(machine: machine)
            space = try VmSpace(kernelPageTable: kernelPageTable)
        } catch {
            throw .badMemorySize(memory, "too small for the metadata region and the page tables (\(error))")
        }
        memorySize = memory
        space.activate(on: 0)
    }

    /// Runs every op of `script`, in order.
    public func run(_ script: Script) {
        for op in script.ops { run(op) }
    }

    /// Runs one op and records its result for the summary.
    @discardableResult
    public func run(_ scriptOp: ScriptOp) -> OpResult {
        let result = perform(scriptOp)
        results.append(result)
        return result
    }

    func perform(_ scriptOp: ScriptOp) -> OpResult {
        var result = OpResult(line: scriptOp.line, op: scriptOp.op.name, error: nil, message: nil, fields: [])
        do throws(OpFailure) {
            result.fields = try perform(scriptOp.op)
        } catch {
            result.error = error.code
            result.message = error.message
            result.fields = error.fields
        }
        return result
    }

    /// The summary after the ops run so far.
    public var summary: ScriptSummary {
        ScriptSummary(ops: results.count, failed: results.count { !$0.ok },
                      root: space.rootPaddr.rawValue, memory: UInt64(memorySize),
                      framesInUse: machine.outstandingFrames,
                      ptFrames: space.pageTable.nodes().count + kernelPageTable.nodes().count - 1,
                      audit: false)
    }

    // MARK: Ops

    func perform(_ op: Op) throws(OpFailure) -> [(String, ResultValue)] {
        switch op {
        case .map(let va, let len, let prot, let page, let cache):
            return [("pages", .int(try map(va, len, prot.property(cache: cache.policy), page)))]
        case .unmap(let va, let len):
            return [("pages", .int(try unmap(va, len)))]
        case .protect(let va, let len, let prot):
            return [("pages", .int(try protect(va, len, prot)))]
        case .query(let va):
            return try query(va)
        case .write(let va, let bytes):
            return [("bytes", .int(try write(va, bytes)))]
        case .fill(let va, let len, let byte):
            return [("bytes", .int(try fill(va, len, byte)))]
        case .read(let va, let len):
            return [("data", .text(hexString(try read(va, len))))]
        case .copy(let src, let dst, let len):
            return [("bytes", .int(try copy(src, dst, len)))]
        }
    }

    /// `[va, va + len)` as a user range: non-empty, no overflow, ending by `MAX_USERSPACE_VADDR`.
    func userRange(_ va: UInt64, _ len: UInt64) throws(OpFailure) -> Range<Vaddr> {
        let (end, overflow) = va.addingReportingOverflow(len)
        guard len > 0, !overflow, end <= maxUserspaceVaddr.rawValue else {
            throw OpFailure(.outOfRange, "range \(hex(va)) + \(hex(len)) is empty, overflows or ends past \(hex(maxUserspaceVaddr.rawValue))")
        }
        return Vaddr(va)..<Vaddr(end)
    }

    func checkAligned(_ va: UInt64, _ len: UInt64, to size: UInt64) throws(OpFailure) {
        guard va % size == 0, len % size == 0 else {
            throw OpFailure(.unaligned, "\(hex(va)) + \(hex(len)) is not a multiple of \(hex(size))")
        }
    }

    func map(_ va: UInt64, _ len: UInt64, _ property: PageProperty, _ page: LeafSize) throws(OpFailure) -> Int {
        let range = try userRange(va, len)
        try checkAligned(va, len, to: page.bytes)
        if let mapped = firstMapped(in: range) {
            throw OpFailure(.alreadyMapped, "\(hex(mapped.rawValue)) is already mapped")
        }
        var cursor = try! space.cursorMut(range)
        var mapped: UInt64 = 0
        while mapped < len {
            guard let item = freshItem(page, property) else { break }
            if let failure = cursor.tryMap(item) {
                _ = consume failure
                break
            }
            mapped += page.bytes
        }
        guard mapped == len else {
            try! cursor.jump(range.lowerBound)
            cursor.unmap(Int(mapped))
            throw OpFailure(.outOfMemory, "no memory for \(hex(len)) of \(page.rawValue) pages at \(hex(va)); nothing was mapped")
        }
        return Int(len / 4096)
    }

    /// A zero-filled leaf of `page`'s size (one physically contiguous, aligned block).
    func freshItem(_ page: LeafSize, _ property: PageProperty) -> MappedItem? {
        switch page {
        case .size4K:
            guard let frame = try? FrameAllocOptions().allocFrame(in: machine) else { return nil }
            return MappedItem(frame: frame, property: property)
        case .size2M, .size1G:
            guard let segment = try? FrameAllocOptions().allocSegment(Int(page.bytes) / 4096, in: machine) else { return nil }
            return MappedItem(hugePage: segment, property: property)
        }
    }

    /// The first mapped address in `range`, if any.
    func firstMapped(in range: Range<Vaddr>) -> Vaddr? {
        var cursor = try! space.cursor(range)
        return cursor.findNext(range.upperBound - range.lowerBound)
    }

    func unmap(_ va: UInt64, _ len: UInt64) throws(OpFailure) -> Int {
        let range = try userRange(va, len)
        try checkAligned(va, len, to: 4096)
        try checkSplitMemory(range)
        var cursor = try! space.cursorMut(range)
        return cursor.unmap(Int(len))
    }

    func protect(_ va: UInt64, _ len: UInt64, _ prot: Prot) throws(OpFailure) -> Int {
        let range = try userRange(va, len)
        try checkAligned(va, len, to: 4096)
        try checkSplitMemory(range)
        var cursor = try! space.cursorMut(range)
        var pages = 0
        while cursor.virtAddr < range.upperBound,
              let done = cursor.protectNext(range.upperBound - cursor.virtAddr, property: { property in
                  property = prot.property(cache: property.cache)
              }) {
            pages += (done.upperBound - done.lowerBound) / 4096
            cursor.flusher.issueTlbFlush(.range(done))
        }
        cursor.flusher.dispatchTlbFlush()
        return pages
    }

    /// Refuses with `out-of-memory` when the huge-leaf splits at `range`'s ends need more
    /// page-table nodes than are free, so that `unmap` and `protect` change nothing then.
    func checkSplitMemory(_ range: Range<Vaddr>) throws(OpFailure) {
        let needed = splitNodesNeeded(range)
        guard needed <= machine.freeFrames else {
            throw OpFailure(.outOfMemory, "splitting the huge pages at the ends of \(hex(range.lowerBound.rawValue))..<\(hex(range.upperBound.rawValue)) needs \(needed) page-table nodes; \(machine.freeFrames) frames are free; nothing changed")
        }
    }

    /// The page-table nodes that splitting the leaves around `range`'s two ends takes: a
    /// boundary strictly inside a leaf of level 2 or 3 splits it into a node of smaller leaves,
    /// again as long as it falls strictly inside one of them.
    func splitNodesNeeded(_ range: Range<Vaddr>) -> Int {
        var split: Set<UInt64> = []   // starts of the leaves (of level ≥ 2) split so far, tagged by level
        var needed = 0
        for boundary in [range.lowerBound, range.upperBound] {
            guard boundary.rawValue % 4096 == 0, boundary < maxUserspaceVaddr || boundary == range.lowerBound,
                  let leaf = leafCovering(boundary) else { continue }
            var level = leaf.level
            while level >= 2 {
                let size = UInt64(PagingConsts.pageSize(level))
                guard boundary.rawValue % size != 0 else { break }
                let start = boundary.rawValue & ~(size - 1)
                if split.insert(start | UInt64(level)).inserted { needed += 1 }
                level -= 1
            }
        }
        return needed
    }

    /// The leaf mapping `va`, if any.
    func leafCovering(_ va: Vaddr) -> MappedItemRef? {
        guard va < maxUserspaceVaddr else { return nil }
        return space.pageTable.translate(va)?.leaf
    }

    func query(_ va: UInt64) throws(OpFailure) -> [(String, ResultValue)] {
        guard va < maxUserspaceVaddr.rawValue else {
            throw OpFailure(.outOfRange, "\(hex(va)) is not below \(hex(maxUserspaceVaddr.rawValue))")
        }
        let page = Vaddr(va & ~4095)
        var cursor = try! space.cursor(page..<(page + 4096))
        guard let (_, item) = try? cursor.query(), let item else { return [("mapped", .bool(false))] }
        let size = UInt64(PagingConsts.pageSize(item.level))
        return [("mapped", .bool(true)), ("va", .address(va & ~(size - 1))), ("len", .address(size)),
                ("pa", .address(item.paddr.rawValue)), ("prot", .text(Prot(item.property).letters)),
                ("page", .text(LeafSize(level: item.level).rawValue)),
                ("cache", .text(ScriptCache(item.property.cache).rawValue))]
    }

    func write(_ va: UInt64, _ bytes: [UInt8]) throws(OpFailure) -> Int {
        let range = try userRange(va, UInt64(bytes.count))
        var writer = try handle { () throws(OSTDError) in try space.createWriter(range.lowerBound, bytes.count) }
        return try bytes.withUnsafeBytes { buffer in
            Result { () throws(OpFailure) in
                var source = unsafe VmReader<Infallible>(buffer).toFallible()
                return try transfer { () throws(OSTDError) in try writer.writeFallible(&source) }
            }
        }.get()
    }

    func fill(_ va: UInt64, _ len: UInt64, _ byte: UInt8) throws(OpFailure) -> Int {
        let range = try userRange(va, len)
        var writer = try handle { () throws(OSTDError) in try space.createWriter(range.lowerBound, Int(len)) }
        if byte == 0 { return try transfer { () throws(OSTDError) in try writer.fillZeros(Int(len)) } }
        let chunk = [UInt8](repeating: byte, count: Int(min(len, 64 << 10)))
        var written = 0
        while writer.hasAvail {
            let step = min(chunk.count, writer.avail)
            let done = try chunk.withUnsafeBytes { buffer in
                Result { () throws(OpFailure) in
                    var source = unsafe VmReader<Infallible>(UnsafeRawBufferPointer(rebasing: buffer[..<step])).toFallible()
                    return try transfer(before: written) { () throws(OSTDError) in try writer.writeFallible(&source) }
                }
            }.get()
            written += done
        }
        return written
    }

    /// Reads `[va, va + len)` in chunks of at most 1 MiB, so that a huge range that faults
    /// early costs what it read, not what it asked for.
    func read(_ va: UInt64, _ len: UInt64) throws(OpFailure) -> [UInt8] {
        let range = try userRange(va, len)
        var reader = try handle { () throws(OSTDError) in try space.createReader(range.lowerBound, Int(len)) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: Int(min(len, 1 << 20)))
        while reader.hasRemain {
            let step = min(chunk.count, reader.remain)
            let outcome = chunk.withUnsafeMutableBytes { buffer in
                Result { () throws(OSTDError) in
                    var destination = unsafe VmWriter<Infallible>(UnsafeMutableRawBufferPointer(rebasing: buffer[..<step])).toFallible()
                    return try reader.readFallible(&destination)
                }
            }
            switch outcome {
            case .success(let count): data.append(contentsOf: chunk[..<count])
            case .failure(let error):
                guard case .pageFault(let address, let copied) = error else { throw OpFailure(error) }
                data.append(contentsOf: chunk[..<copied])
                var failure = OpFailure(.pageFault(address: address, copied: data.count))
                failure.fields.append(("data", .text(hexString(data))))
                throw failure
            }
        }
        return data
    }

    func copy(_ src: UInt64, _ dst: UInt64, _ len: UInt64) throws(OpFailure) -> Int {
        let source = try userRange(src, len)
        let destination = try userRange(dst, len)
        var reader = try handle { () throws(OSTDError) in try space.createReader(source.lowerBound, Int(len)) }
        var writer = try handle { () throws(OSTDError) in try space.createWriter(destination.lowerBound, Int(len)) }
        return try transfer { () throws(OSTDError) in try reader.readFallible(&writer) }
    }

    /// Creates a reader or writer, turning a refusal into the op's failure.
    func handle<H: ~Copyable>(_ make: () throws(OSTDError) -> H) throws(OpFailure) -> H {
        do throws(OSTDError) { return try make() } catch { throw OpFailure(error) }
    }

    /// Runs a transfer, turning a fault into the op's failure; `before` bytes were moved by
    /// earlier transfers of the same op.
    func transfer(before: Int = 0, _ body: () throws(OSTDError) -> Int) throws(OpFailure) -> Int {
        do throws(OSTDError) { return try body() } catch {
            if case .pageFault(let address, let copied) = error {
                throw OpFailure(.pageFault(address: address, copied: before + copied))
            }
            throw OpFailure(error)
        }
    }
}

/// A failed op: its code, message and extra fields.
struct OpFailure: Error {
    var code: ScriptErrorCode
    var message: String
    var fields: [(String, ResultValue)] = []

    init(_ code: ScriptErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The failure an error of the `VmSpace` API stands for.
    init(_ error: OSTDError) {
        switch error {
        case .pageFault(let address, let copied):
            self.init(.pageFault, "page fault at \(hex(address.rawValue)) after \(copied) byte(s)")
            fields = [("va", .address(address.rawValue)), ("copied", .int(copied))]
        case .accessConflict(let requested, let conflicting):
            self.init(.accessConflict, "a writer over \(hex(requested.lowerBound.rawValue))..<\(hex(requested.upperBound.rawValue)) overlaps an active reader over \(hex(conflicting.lowerBound.rawValue))..<\(hex(conflicting.upperBound.rawValue)); nothing was copied")
        case .invalidUserRange: self.init(.outOfRange, "\(error)")
        case .outOfMemory: self.init(.outOfMemory, "\(error)")
        default: self.init(.outOfRange, "\(error)")
        }
    }
}

/// `0x`-prefixed lowercase hex, no padding.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// Lowercase hex digits of `bytes`.
func hexString<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}
