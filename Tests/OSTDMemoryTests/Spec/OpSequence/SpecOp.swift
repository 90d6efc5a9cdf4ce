// The command language of the audited property tests, in the shape of vostd's deep embedding
// (`specs/mm/embedding/`, its `SpecOp` enum): frames, segments, cursor operations on 4 KiB, 2 MiB and
// 1 GiB leaves, readers and writers through their whole protocol, TLB flushes and activation on
// another CPU.
//
// An op is decoded from one random integer (`SpecOp(code:)`), so a program is an `[Int]` that the
// property-test library generates and shrinks. Addresses are small page numbers inside a 16 MiB
// window (so that ops meet), huge slots inside it, and two 1 GiB slots above it; the executor maps
// them to addresses and skips an op whose precondition (vostd's `op_pre`) does not hold.

@_spi(OSTDInternals) import OSTDMemory

/// One step of an audited program.
enum SpecOp: Equatable, CustomStringConvertible {
    // Frames and segments (the seeds' `Frame`/`Segment` ops).
    case allocFrame
    case cloneFrame(Int)
    case dropFrame(Int)
    case frameIntoRawFromRaw(Int)
    case allocSegment(frames: Int)
    case splitSegment(Int, at: Int)
    case sliceSegment(Int, from: Int)
    case dropSegment(Int)
    // Cursor operations, each on a cursor created over its range and dropped after it.
    case map(page: Int, count: Int, writable: Bool)
    case mapHuge(slot: Int)
    case mapGiga(slot: Int)
    case query(page: Int)
    case findNext(page: Int, count: Int)
    case jump(page: Int, to: Int)
    case takeNext(page: Int, count: Int)
    case protectNext(page: Int, count: Int, writable: Bool)
    case protect(page: Int, count: Int, writable: Bool)
    case unmap(page: Int, count: Int)
    // Readers and writers (the seeds' `VmIoOwner` protocol).
    case createReader(page: Int, bytes: Int)
    case createWriter(page: Int, bytes: Int)
    case read(handle: Int)
    case write(handle: Int, byte: UInt8)
    case splitHandle(handle: Int, bytes: Int)
    case dispose(handle: Int)
    case reactivate(handle: Int)
    case remove(handle: Int)
    case writeToRead(handle: Int)
    case copy(from: Int, to: Int)
    // CPUs and TLBs.
    case activate(cpu: Int)
    case access(page: Int, cpu: Int)
    case takeWithoutDispatch(page: Int)

    /// Codes above this decode like smaller ones: generators draw from `0 ... codeLimit`, so that
    /// shrinking a code takes few steps.
    static let codeLimit = 1 << 23 - 1

    /// The op `code` stands for; every integer is one (the decoding is total).
    init(code: Int) {
        let c = code.magnitude
        let a = Int(c / 64 % 1024), b = Int(c / 65_536 % 64), flag = c / 4_194_304 % 2 == 0
        self = switch c % 64 {
        case 0, 1: .allocFrame
        case 2: .cloneFrame(a)
        case 3, 4: .dropFrame(a)
        case 5: .frameIntoRawFromRaw(a)
        case 6: .allocSegment(frames: 1 + b % 8)
        case 7: .splitSegment(a, at: 1 + b % 7)
        case 8: .sliceSegment(a, from: b % 8)
        case 9: .dropSegment(a)
        case 10...17: .map(page: a, count: 1 + b % 16, writable: flag)
        case 18, 19: .mapHuge(slot: a % 8)
        case 20: .mapGiga(slot: a % 2)
        case 21, 22: .query(page: a)
        case 23, 24: .findNext(page: a, count: 1 + b)
        case 25: .jump(page: a, to: b)
        case 26, 27, 28: .takeNext(page: a, count: 1 + b)
        case 29, 30, 31: .protectNext(page: a, count: 1 + b, writable: flag)
        case 32, 33, 34: .protect(page: a, count: 1 + b, writable: flag)
        case 35, 36, 37, 38: .unmap(page: a, count: 1 + b * 9)
        case 39, 40, 41: .createReader(page: a, bytes: 8 + b * 97)
        case 42, 43, 44: .createWriter(page: a, bytes: 8 + b * 97)
        case 45, 46: .read(handle: a)
        case 47, 48: .write(handle: a, byte: UInt8(b))
        case 49: .splitHandle(handle: a, bytes: 1 + b * 13)
        case 50, 51: .dispose(handle: a)
        case 52, 53: .reactivate(handle: a)
        case 54, 55: .remove(handle: a)
        case 56: .writeToRead(handle: a)
        case 57, 58: .activate(cpu: b % 2)
        case 59, 60, 61: .access(page: a, cpu: b % 2)
        case 63: .copy(from: a, to: b)
        default: .takeWithoutDispatch(page: a)
        }
    }

    var description: String {
        switch self {
        case .allocFrame: "allocFrame"
        case .cloneFrame(let i): "cloneFrame(\(i))"
        case .dropFrame(let i): "dropFrame(\(i))"
        case .frameIntoRawFromRaw(let i): "frameIntoRawFromRaw(\(i))"
        case .allocSegment(let n): "allocSegment(\(n))"
        case .splitSegment(let i, let at): "splitSegment(\(i), at: \(at))"
        case .sliceSegment(let i, let from): "sliceSegment(\(i), from: \(from))"
        case .dropSegment(let i): "dropSegment(\(i))"
        case .map(let p, let n, let w): "map(page \(p), \(n) pages\(w ? "" : ", read-only"))"
        case .mapHuge(let s): "mapHuge(slot \(s))"
        case .mapGiga(let s): "mapGiga(slot \(s))"
        case .query(let p): "query(page \(p))"
        case .findNext(let p, let n): "findNext(page \(p), \(n) pages)"
        case .jump(let p, let to): "jump(page \(p) + \(to))"
        case .takeNext(let p, let n): "takeNext(page \(p), \(n) pages)"
        case .protectNext(let p, let n, let w): "protectNext(page \(p), \(n) pages, \(w ? "rw" : "r"))"
        case .protect(let p, let n, let w): "protect(page \(p), \(n) pages, \(w ? "rw" : "r"))"
        case .unmap(let p, let n): "unmap(page \(p), \(n) pages)"
        case .createReader(let p, let n): "createReader(page \(p), \(n) bytes)"
        case .createWriter(let p, let n): "createWriter(page \(p), \(n) bytes)"
        case .read(let h): "read(handle \(h))"
        case .write(let h, let b): "write(handle \(h), \(b))"
        case .splitHandle(let h, let n): "splitHandle(handle \(h), \(n) bytes)"
        case .dispose(let h): "dispose(handle \(h))"
        case .reactivate(let h): "reactivate(handle \(h))"
        case .remove(let h): "remove(handle \(h))"
        case .writeToRead(let h): "writeToRead(handle \(h))"
        case .copy(let from, let to): "copy(handle \(from) to handle \(to))"
        case .activate(let cpu): "activate(cpu \(cpu))"
        case .access(let p, let cpu): "access(page \(p), cpu \(cpu))"
        case .takeWithoutDispatch(let p): "takeWithoutDispatch(page \(p))"
        }
    }
}
