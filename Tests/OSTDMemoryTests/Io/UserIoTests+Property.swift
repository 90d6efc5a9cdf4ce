// The user-I/O property test: random writes, reads, copies, values, fills and atomic loads at
// random offsets and lengths over a few pages (user read-write, user read-only, kernel-only,
// unmapped), every outcome, cursor and byte compared with a flat byte-array model.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

extension UserIoTests {
    // MARK: Property test

    /// Random accesses over a few pages of mixed kinds, against a flat byte-array model.
    @Test func randomAccessesMatchAFlatModel() async {
        await propertyCheck(count: 100, input: Gen.int(in: 0...Int.max).array(of: 1...40), Gen.int(in: 0...Int.max)) {
            codes, seed in
            let model = UserIoModel(seed: seed)
            for (step, code) in codes.enumerated() where !model.failed {
                model.run(code, step: step)
            }
            model.finish()
        }
    }
}

// MARK: - The model of the property test


/// What a page of the window is.
private enum PageKind: CustomStringConvertible {
    case readWrite, readOnly, kernelOnly, unmapped

    var readable: Bool { self == .readWrite || self == .readOnly }
    var writable: Bool { self == .readWrite }

    var property: PageProperty? {
        switch self {
        case .readWrite: return userRW
        case .readOnly: return .user(.r)
        case .kernelOnly: return kernelRW
        case .unmapped: return nil
        }
    }

    var description: String {
        switch self {
        case .readWrite: return "rw"
        case .readOnly: return "r-"
        case .kernelOnly: return "k"
        case .unmapped: return "--"
        }
    }
}

/// A window of `pages` pages straddling a 2 MiB boundary, each backed by a frame of one segment
/// (mapped or not), and the bytes every frame should hold.
private final class UserIoModel {
    static let pages = 6
    static let total = pages * pageSize
    /// Three pages before a 2 MiB boundary: walks cross a level-1 node.
    static let start = Vaddr(0x60_0000 - 3 * UInt64(pageSize))

    let machine: Machine
    let space: VmSpace
    let kinds: [PageKind]
    let frames: Segment<UntypedMeta>
    /// The expected bytes of every frame, in window order.
    var bytes: [UInt8]
    var trace: [String] = []
    var failed = false

    init(seed: Int) {
        var random = SplitMix64(seed)
        machine = makeMachine()
        var kinds: [PageKind] = []
        for _ in 0..<UserIoModel.pages {
            let roll = random.below(10)
            kinds.append(roll < 5 ? .readWrite : roll < 7 ? .readOnly : roll < 8 ? .kernelOnly : .unmapped)
        }
        self.kinds = kinds
        bytes = random.bytes(UserIoModel.total)
        var segment = try! FrameAllocOptions().allocSegment(UserIoModel.pages, in: machine)
        frames = segment.clone()
        bytes.withUnsafeBytes { raw in try! segment.writeBytes(at: 0, from: raw) }
        space = try! VmSpace(machine: machine)
        do {
            var cursor = try! space.cursorMut(UserIoModel.start..<(UserIoModel.start + UserIoModel.total))
            for (page, kind) in kinds.enumerated() {
                let frame = segment.next()!
                guard let property = kind.property else { continue }
                try! cursor.jump(UserIoModel.start + page * pageSize)
                cursor.map(frame, property)
            }
        }
        space.activate(on: 0)
        trace.append("pages \(kinds)")
    }

    // MARK: Expectations

    func va(_ offset: Int) -> Vaddr { UserIoModel.start + offset }

    /// The first byte of `offset ..< offset + count` that `ok` rejects, as an offset.
    func firstFault(_ offset: Int, _ count: Int, _ ok: (PageKind) -> Bool) -> Int? {
        var position = offset
        while position < offset + count {
            let page = position / pageSize
            if !ok(kinds[page]) { return position }
            position = (page + 1) * pageSize
        }
        return nil
    }

    /// The copied count and the fault of an access of `count` bytes at `offset`.
    func expect(_ offset: Int, _ count: Int, write: Bool) -> (Int, OSTDError?) {
        guard let fault = firstFault(offset, count, { write ? $0.writable : $0.readable }) else { return (count, nil) }
        return (fault - offset, .pageFault(address: va(fault), copied: fault - offset))
    }

    func check(_ condition: Bool, _ what: @autoclosure () -> String) {
        guard !condition, !failed else { return }
        failed = true
        Issue.record("\(what())\ntrace:\n\(trace.joined(separator: "\n"))")
    }

    // MARK: Steps

    /// An offset, biased towards page boundaries.
    func offset(_ random: inout SplitMix64) -> Int {
        if random.chance(50) {
            let boundary = random.below(UserIoModel.pages + 1) * pageSize
            return min(max(boundary + random.below(17) - 8, 0), UserIoModel.total - 1)
        }
        return random.below(UserIoModel.total)
    }

    /// A length that fits from `offset`, from tiny to several pages.
    func length(_ random: inout SplitMix64, from offset: Int, max limit: Int = UserIoModel.total) -> Int {
        let room = min(UserIoModel.total - offset, limit)
        let wanted: Int
        switch random.below(4) {
        case 0: wanted = 1 + random.below(16)
        case 1: wanted = pageSize - 8 + random.below(17)
        default: wanted = 1 + random.below(room)
        }
        return max(1, min(wanted, room))
    }

    func run(_ code: Int, step: Int) {
        var random = SplitMix64(code)
        switch random.below(8) {
        case 0, 1: write(&random)
        case 2, 3: read(&random)
        case 4: copy(&random)
        case 5: value(&random)
        case 6: fill(&random)
        default: atomicLoad(&random)
        }
    }

    /// Kernel bytes into a user writer.
    func write(_ random: inout SplitMix64) {
        let at = offset(&random)
        let count = length(&random, from: at)
        let data = random.bytes(count)
        trace.append("write \(count) at +\(at)")
        var writer = try! space.createWriter(va(at), count)
        let (result, sourceLeft) = copyIn(data, to: &writer)
        let (copied, fault) = expect(at, count, write: true)
        check(result == (fault.map { .failure($0) } ?? .success(count)), "write result \(result)")
        check(writer.cursor == va(at + copied).rawValue && writer.avail == count - copied, "writer cursor \(writer.cursor)")
        check(sourceLeft == count - copied, "source left \(sourceLeft)")
        bytes.replaceSubrange(at..<(at + copied), with: data[..<copied])
    }

    /// A user reader into kernel bytes.
    func read(_ random: inout SplitMix64) {
        let at = offset(&random)
        let count = length(&random, from: at)
        let extra = random.below(3) == 0 ? random.below(10) : 0
        trace.append("read \(count) at +\(at) into \(count + extra)")
        var reader = try! space.createReader(va(at), count)
        let (result, data, destinationLeft) = copyOut(&reader, count: count + extra)
        let (copied, fault) = expect(at, count, write: false)
        check(result == (fault.map { .failure($0) } ?? .success(count)), "read result \(result)")
        check(reader.cursor == va(at + copied).rawValue && reader.remain == count - copied, "reader cursor \(reader.cursor)")
        check(destinationLeft == count + extra - copied, "destination left \(destinationLeft)")
        check(Array(data[..<copied]) == Array(bytes[at..<(at + copied)]), "bytes read differ")
        check(data[copied...].allSatisfy { $0 == 0 }, "bytes past the copy were written")
    }

    /// A user-to-user copy between disjoint ranges.
    func copy(_ random: inout SplitMix64) {
        let count = length(&random, from: 0, max: UserIoModel.total / 2)
        let low = random.below(UserIoModel.total - 2 * count + 1)
        let high = low + count + random.below(UserIoModel.total - low - 2 * count + 1)
        let (source, destination) = random.chance(50) ? (low, high) : (high, low)
        let viaWriter = random.chance(50)
        trace.append("copy \(count) from +\(source) to +\(destination)\(viaWriter ? " (writeFallible)" : "")")
        var reader = try! space.createReader(va(source), count)
        var writer = try! space.createWriter(va(destination), count)
        let result = outcome { () throws(OSTDError) in
            viaWriter ? try writer.writeFallible(&reader) : try reader.readFallible(&writer)
        }
        var copied = count
        var fault: OSTDError? = nil
        for i in 0..<count {
            if !kinds[(source + i) / pageSize].readable {
                fault = .pageFault(address: va(source + i), copied: i)
            } else if !kinds[(destination + i) / pageSize].writable {
                fault = .pageFault(address: va(destination + i), copied: i)
            } else {
                continue
            }
            copied = i
            break
        }
        check(result == (fault.map { .failure($0) } ?? .success(count)), "copy result \(result), expected \(String(describing: fault))")
        check(reader.cursor == va(source + copied).rawValue && writer.cursor == va(destination + copied).rawValue,
              "copy cursors \(reader.cursor), \(writer.cursor)")
        bytes.replaceSubrange(destination..<(destination + copied), with: bytes[source..<(source + copied)])
    }

    /// `readVal` or `writeVal` of 2, 4 or 8 bytes; a fault rewinds.
    func value(_ random: inout SplitMix64) {
        let size = [2, 4, 8][random.below(3)]
        let at = min(offset(&random), UserIoModel.total - size)
        let room = size + random.below(3)
        let count = min(room, UserIoModel.total - at)
        let write = random.chance(50)
        trace.append("\(write ? "writeVal" : "readVal") \(size) at +\(at)")
        let (copied, fault) = expect(at, size, write: write)
        if write {
            let data = random.bytes(size)
            var writer = try! space.createWriter(va(at), count)
            let result: Result<Void, OSTDError>
            switch size {
            case 2: result = outcome { () throws(OSTDError) in try writer.writeVal(UInt16(data[0]) | UInt16(data[1]) << 8) }
            case 4: result = outcome { () throws(OSTDError) in try writer.writeVal(data.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }) }
            default: result = outcome { () throws(OSTDError) in try writer.writeVal(data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }) }
            }
            check(result.map { _ in 0 } == (fault.map { .failure($0) } ?? .success(0)), "writeVal result \(result)")
            let moved = fault == nil ? size : 0
            check(writer.cursor == va(at + moved).rawValue && writer.avail == count - moved, "writeVal cursor \(writer.cursor)")
            bytes.replaceSubrange(at..<(at + copied), with: data[..<copied])
        } else {
            var reader = try! space.createReader(va(at), count)
            let result: Result<[UInt8], OSTDError>
            switch size {
            case 2: result = outcome { () throws(OSTDError) in withUnsafeBytes(of: try reader.readVal(UInt16.self)) { Array($0) } }
            case 4: result = outcome { () throws(OSTDError) in withUnsafeBytes(of: try reader.readVal(UInt32.self)) { Array($0) } }
            default: result = outcome { () throws(OSTDError) in withUnsafeBytes(of: try reader.readVal(UInt64.self)) { Array($0) } }
            }
            check(result == (fault.map { .failure($0) } ?? .success(Array(bytes[at..<(at + size)]))), "readVal result \(result)")
            let moved = fault == nil ? size : 0
            check(reader.cursor == va(at + moved).rawValue && reader.remain == count - moved, "readVal cursor \(reader.cursor)")
        }
    }

    /// `fillZeros` on a user writer, sometimes asked for more than the writer has.
    func fill(_ random: inout SplitMix64) {
        let at = offset(&random)
        let count = length(&random, from: at)
        let asked = random.chance(25) ? count + random.below(100) : count - random.below(count)
        trace.append("fillZeros \(asked) on \(count) at +\(at)")
        var writer = try! space.createWriter(va(at), count)
        let result = outcome { () throws(OSTDError) in try writer.fillZeros(asked) }
        let wanted = min(asked, count)
        let (filled, fault) = expect(at, wanted, write: true)
        check(result == (fault.map { .failure($0) } ?? .success(wanted)), "fill result \(result)")
        check(writer.cursor == va(at + filled).rawValue, "fill cursor \(writer.cursor)")
        bytes.replaceSubrange(at..<(at + filled), with: repeatElement(0, count: filled))
    }

    /// `atomicLoad` at an aligned offset; it never moves.
    func atomicLoad(_ random: inout SplitMix64) {
        let at = offset(&random) & ~3
        trace.append("atomicLoad at +\(at)")
        let reader = try! space.createReader(va(at), 4)
        let result = outcome { () throws(OSTDError) in try reader.atomicLoad() }
        let expected: Result<UInt32, OSTDError> = kinds[at / pageSize].readable
            ? .success(bytes[at..<(at + 4)].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
            : .failure(.pageFault(address: va(at), copied: 0))
        check(result == expected, "atomicLoad result \(result), expected \(expected)")
        check(reader.cursor == va(at).rawValue, "atomicLoad moved")
    }

    /// Every frame, mapped or not, holds the model's bytes; no handle is left registered.
    func finish() {
        guard !failed else { return }
        var actual = [UInt8](repeating: 0, count: UserIoModel.total)
        actual.withUnsafeMutableBytes { raw in try! frames.readBytes(at: 0, into: raw) }
        if let page = (0..<UserIoModel.pages).first(where: {
            actual[($0 * pageSize)..<(($0 + 1) * pageSize)] != bytes[($0 * pageSize)..<(($0 + 1) * pageSize)]
        }) {
            check(false, "frame \(page) (\(kinds[page])) holds other bytes than the model")
        }
        let owners = space.ownerSnapshot
        check(owners.readers.isEmpty && owners.writers.isEmpty, "handles left registered")
    }
}
