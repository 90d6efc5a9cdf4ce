// Random programs of creations, drops, skips, disposals and re-activations, each step checked
// against a naive model: the live handles with their kinds and ranges, the active ones in
// activation order; the registrations must be the model's and `inv()` must hold after every step.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec

extension OwnershipProtocolTests {
    // MARK: Random programs against a model

    /// On a thread bound to CPU 0 handles go to the CPU's own fast slots, then the pool, then
    /// the locked registry; on a thread on no CPU, to the pool, then the registry.
    @Test(arguments: [false, true])
    func randomHandlesMatchTheModel(bound: Bool) async {
        await propertyCheck(count: 80, input: Gen.int(in: 0...Int.max).array(of: 1...60)) { codes in
            let machine = makeMachine()
            let space = try! VmSpace(machine: machine, sharedReader: codes[0] % 3 == 0)
            space.activate(on: 0)
            var program = OwnershipProgram(space: space)
            if bound { machine.withCpu(0) { program.run(codes) } } else { program.run(codes) }
        }
    }
}


// MARK: - The model

/// A live handle of a program: the reader or writer, kept in a box (they are not copyable).
private final class ReaderBox {
    var handle: VmReader<Fallible>
    init(_ handle: consuming VmReader<Fallible>) { self.handle = handle }
}

private final class WriterBox {
    var handle: VmWriter<Fallible>
    init(_ handle: consuming VmWriter<Fallible>) { self.handle = handle }
}

private enum Boxed {
    case reader(ReaderBox)
    case writer(WriterBox)
}

/// What the model knows of a handle.
private struct ModelHandle {
    var id: Int
    var isWriter: Bool
    var range: Range<Int>
    var box: Boxed
}

/// A random program of creations, drops, skips, disposals and re-activations, each checked on the spot
/// against the model: the live handles, the active ones in activation order.
private struct OwnershipProgram {
    let space: VmSpace
    let shared: Bool
    var handles: [ModelHandle] = []
    /// Ids of the active handles, in activation order (the owner's lists keep that order).
    var activeOrder: [Int] = []
    var nextId = 0
    var trace: [String] = []

    init(space: VmSpace) {
        self.space = space
        shared = space.sharedReader
    }

    static func overlaps(_ a: Range<Int>, _ b: Range<Int>) -> Bool { a.lowerBound < b.upperBound && b.lowerBound < a.upperBound }

    func handle(_ id: Int) -> ModelHandle { handles.first { $0.id == id }! }

    /// The model's verdict on a handle over `range`: the range of the first active writer (in
    /// activation order) that overlaps, else of the first active reader that does, if readers
    /// count; `nil` when admitted.
    func conflict(_ range: Range<Int>, isWriter: Bool, excluding: Int? = nil) -> Range<Int>? {
        let active = activeOrder.filter { $0 != excluding }.map(handle)
        if let w = active.first(where: { $0.isWriter && Self.overlaps($0.range, range) }) { return w.range }
        guard isWriter || !shared else { return nil }
        return active.first { !$0.isWriter && Self.overlaps($0.range, range) }?.range
    }

    func vrange(_ r: Range<Int>) -> Range<Vaddr> { bytes(r.lowerBound, r.upperBound) }

    mutating func fail(_ message: String) {
        let text = message + "\nshared readers: \(shared)\ntrace:\n" + trace.joined(separator: "\n")
        Issue.record("\(text)")
    }

    mutating func run(_ codes: [Int]) {
        for code in codes {
            var bits = UInt64(code)
            func take(_ n: UInt64) -> Int {
                defer { bits /= n }
                return Int(bits % n)
            }
            let op = take(16)
            let ok: Bool
            switch op {
            case 0..<8:
                let isWriter = take(2) == 0
                let lo = take(24)
                let len = 1 + take(8)
                ok = create(isWriter: isWriter, lo..<(lo + len))
            case 8..<11:
                ok = handles.isEmpty ? true : drop(handles[take(UInt64(handles.count))].id)
            case 11:
                // Consume part of a handle's bytes (never all of them: see
                // `anExhaustedHandleHoldsNothing`).
                let longer = handles.filter { $0.range.count > 1 }
                if longer.isEmpty {
                    ok = true
                } else {
                    let h = longer[take(UInt64(longer.count))]
                    ok = skip(h.id, 1 + take(UInt64(h.range.count - 1)))
                }
            case 12..<14:
                let active = handles.filter { activeOrder.contains($0.id) }
                ok = active.isEmpty ? true : dispose(active[take(UInt64(active.count))].id)
            default:
                let disposed = handles.filter { !activeOrder.contains($0.id) }
                ok = disposed.isEmpty ? true : reactivate(disposed[take(UInt64(disposed.count))].id)
            }
            guard ok, check() else { return }
        }
        // Everything dropped: nothing is registered.
        handles.removeAll()
        activeOrder.removeAll()
        trace.append("drop everything")
        _ = check()
    }

    mutating func create(isWriter: Bool, _ range: Range<Int>) -> Bool {
        let kind = isWriter ? "writer" : "reader"
        trace.append("create \(kind) \(range)")
        let expected = conflict(range, isWriter: isWriter)
        let snapshot = space.ownerSnapshot
        let start = base + range.lowerBound
        let len = range.count
        // The seeds' predicates: `canCreateWriter` is the whole rule; `canCreateReader` only looks
        // at writers.
        let predicted = isWriter
            ? snapshot.canCreateWriter(start, len)
            : snapshot.canCreateReader(start, len)
        let predictedByModel = isWriter
            ? expected == nil
            : !activeOrder.map(handle).contains { $0.isWriter && Self.overlaps($0.range, range) }
        if predicted != predictedByModel {
            fail("can_create_\(kind) says \(predicted), the model \(predictedByModel)")
            return false
        }
        let box: Boxed
        do {
            if isWriter {
                box = .writer(WriterBox(try space.createWriter(start, len)))
            } else {
                box = .reader(ReaderBox(try space.createReader(start, len)))
            }
        } catch {
            guard let expected else {
                fail("\(kind) \(range) refused with \(error), the model admits it")
                return false
            }
            let wanted = OSTDError.accessConflict(requested: vrange(range), conflicting: vrange(expected))
            if error != wanted {
                fail("\(kind) \(range) refused with \(error), the model expects \(wanted)")
                return false
            }
            return true
        }
        if let expected {
            fail("\(kind) \(range) admitted, the model expects a conflict with \(expected)")
            return false
        }
        handles.append(ModelHandle(id: nextId, isWriter: isWriter, range: range, box: box))
        activeOrder.append(nextId)
        trace[trace.count - 1] += " -> #\(nextId)"
        nextId += 1
        return true
    }

    mutating func drop(_ id: Int) -> Bool {
        trace.append("drop #\(id)")
        handles.removeAll { $0.id == id }
        activeOrder.removeAll { $0 == id }
        return true
    }

    mutating func skip(_ id: Int, _ count: Int) -> Bool {
        trace.append("skip #\(id) by \(count)")
        switch handle(id).box {
        case .reader(let box): box.handle.skip(count)
        case .writer(let box): box.handle.skip(count)
        }
        let i = handles.firstIndex { $0.id == id }!
        handles[i].range = (handles[i].range.lowerBound + count)..<handles[i].range.upperBound
        return true
    }

    mutating func dispose(_ id: Int) -> Bool {
        trace.append("dispose #\(id)")
        switch handle(id).box {
        case .reader(let box): space.disposeReader(&box.handle)
        case .writer(let box): space.disposeWriter(&box.handle)
        }
        activeOrder.removeAll { $0 == id }
        return true
    }

    mutating func reactivate(_ id: Int) -> Bool {
        trace.append("activate #\(id)")
        let h = handle(id)
        let expected = conflict(h.range, isWriter: h.isWriter, excluding: id)
        do throws(OSTDError) {
            switch h.box {
            case .reader(let box): try space.activateReader(&box.handle)
            case .writer(let box): try space.activateWriter(&box.handle)
            }
        } catch {
            guard let expected else {
                fail("activating #\(id) refused with \(error), the model admits it")
                return false
            }
            let wanted = OSTDError.accessConflict(requested: vrange(h.range), conflicting: vrange(expected))
            if error != wanted {
                fail("activating #\(id) refused with \(error), the model expects \(wanted)")
                return false
            }
            return true
        }
        if let expected {
            fail("activating #\(id) admitted, the model expects a conflict with \(expected)")
            return false
        }
        activeOrder.append(id)
        return true
    }

    /// The registrations are the model's active handles, in order, and `inv` holds.
    mutating func check() -> Bool {
        let snapshot = space.ownerSnapshot
        let active = activeOrder.map(handle)
        let readers = active.filter { !$0.isWriter }.map { vrange($0.range) }
        let writers = active.filter(\.isWriter).map { vrange($0.range) }
        guard snapshot.readers.map(\.range) == readers, snapshot.writers.map(\.range) == writers else {
            fail("registered readers \(snapshot.readers.map(\.range)), writers \(snapshot.writers.map(\.range)); "
                 + "the model has readers \(readers), writers \(writers)")
            return false
        }
        guard snapshot.inv() else {
            fail("inv() does not hold")
            return false
        }
        return true
    }
}
