// The refinement checks of user-space readers and writers: checks 25–27 of
// `vostd-spec-reference.md` §10 (the seeds' `VmReader` / `VmWriter` exec specs, §3.3), one
// function per check, each on a handle's state before and after one operation.
//
// The functions are pure: they take the states the core showed the auditor (`VmIoAuditState`),
// the operation's outcome, and the bytes the auditor read (user memory as the CPU sees it, through
// its TLB or the space's page table, and physical memory, `userBytes`; kernel memory as the core
// copied it). A byte nothing maps is `nil`. Each returns what is wrong, in words; empty when
// the check holds. `SpecAuditor+Io.swift` runs them on every audited operation.

@_spi(OSTDInternals) import OSTDMemory

/// The checks of one reader or writer operation against its specification.
public enum IoRefinement {
    /// Check 25: "`VmReader`/`VmWriter`: `range.start ≤ cursor ≤ end ≤ range.end` (shared ghost
    /// range); `remain/avail = end - cursor`; `skip(n)` requires `n ≤ remain` (else panic);
    /// `limit(m) ⟹ remain' ≤ min(m, remain)`" (and §3.3: `limit` leaves the cursor unchanged).
    ///
    /// Per operation the ghost range is the window before it: the window after lies inside it
    /// (so, by induction, inside the range the handle was created with). `end − cursor` is the
    /// registration's end minus the cursor (the seeds' `wf`: `owner.range == cursor..end`).
    /// `skip(n)` moves the cursor by `n` and keeps the end; `split(n)` leaves `[cursor, cursor+n)`
    /// to `front`, registered alike, and keeps the rest. A negative `m` is outside `limit`'s
    /// domain (OSTD's `usize`): then only `remain' ≤ remain` is required.
    public static func cursorBounds(_ operation: VmIoOperation, before: VmIoHandleState, after: VmIoHandleState,
                                    front: VmIoHandleState? = nil) -> [String] {
        var problems = wf(before, "before") + wf(after, "after")
        let (start, end) = (before.cursor, before.cursor &+ UInt64(before.remain))
        let newEnd = after.cursor &+ UInt64(after.remain)
        if !(start <= after.cursor && after.cursor <= newEnd && newEnd <= end) {
            problems.append("the window \(hex(after.cursor))..<\(hex(newEnd)) left the range \(hex(start))..<\(hex(end))")
        }
        switch operation {
        case .limit(let max):
            if after.cursor != start { problems.append("limit(\(max)) moved the cursor from \(hex(start)) to \(hex(after.cursor))") }
            let bound = max >= 0 ? Swift.min(max, before.remain) : before.remain
            if after.remain > bound {
                problems.append("limit(\(max)) left \(after.remain) bytes of \(before.remain), more than min(m, remain)")
            }
        case .skip(let count):
            if after.cursor != start &+ UInt64(count) || newEnd != end {
                problems.append("skip(\(count)) took \(hex(start))..<\(hex(end)) to \(hex(after.cursor))..<\(hex(newEnd))")
            }
        case .split(let count):
            problems += splitBounds(count, before: before, after: after, front: front)
        default: break
        }
        return problems
    }

    /// The part of check 25 for `split(count)`: the rest starts `count` on, with the same end, and
    /// the front covers `[cursor, cursor + count)` of the same space, registered when the handle is.
    static func splitBounds(_ count: Int, before: VmIoHandleState, after: VmIoHandleState,
                            front: VmIoHandleState?) -> [String] {
        var problems: [String] = []
        let end = before.cursor &+ UInt64(before.remain)
        if after.cursor != before.cursor &+ UInt64(count) || after.cursor &+ UInt64(after.remain) != end {
            problems.append("split(\(count)) left the rest at \(hex(after.cursor)) with \(after.remain) bytes")
        }
        guard let front else { return problems + ["split(\(count)) returned no front handle"] }
        if front.cursor != before.cursor || front.remain != count || front.space !== before.space {
            problems.append("split(\(count)) returned a front at \(hex(front.cursor)) with \(front.remain) bytes")
        }
        if (before.registration == nil) != (front.registration == nil) {
            problems.append("split(\(count)): the front's registration is \(String(describing: front.registration))")
        }
        return problems + wf(front, "front")
    }

    /// The seeds' `wf` of a user handle: its registration holds exactly `cursor ..< cursor +
    /// remain`, and `remain ≥ 0`.
    static func wf(_ state: VmIoHandleState, _ when: String) -> [String] {
        guard state.remain >= 0 else { return ["\(when): remain is \(state.remain)"] }
        guard let registration = state.registration else { return [] }
        let window = Vaddr(state.cursor)..<(Vaddr(state.cursor) + state.remain)
        return registration == window ? []
            : ["\(when): the registration holds \(Audit.describe(registration)), the handle \(Audit.describe(window))"]
    }

    /// Check 26: "`read(writer)` / `write(reader)`: `r == min(remain, avail)`; both cursors `+= r`;
    /// (shadow) `dst[0..r) == src[0..r)`", for the fallible copies: a page fault may stop the
    /// copy early, and then reports `copied == r < min(remain, avail)`; a refusal (`disposed`,
    /// `notActive`) moves nothing.
    ///
    /// `source` holds the reader's first `min(remain, avail)` bytes before the copy, `destination`
    /// the writer's first `r` bytes after it.
    public static func transferSpec(before: VmIoAuditState, after: VmIoAuditState, outcome: VmIoOutcome,
                                    source: [UInt8?], destination: [UInt8?]) -> [String] {
        guard let reader = before.reader, let writer = before.writer, let readerAfter = after.reader,
              let writerAfter = after.writer else { return ["a copy without a reader and a writer"] }
        let count = Swift.min(reader.remain, writer.remain)
        guard let (moved, counted) = bytesMoved(outcome, expected: count, "the copy", rule: "min(remain, avail)",
                                                verb: "copied") else { return ["a copy returned \(outcome)"] }
        var problems = counted
        problems += advanced(reader, to: readerAfter, by: moved, "reader") + advanced(writer, to: writerAfter, by: moved, "writer")
        for i in 0..<Swift.max(0, Swift.min(moved, count)) {
            let written = i < destination.count ? destination[i] : nil
            let read = i < source.count ? source[i] : nil
            if written == nil || written != read {
                problems.append("destination byte \(i) holds \(show(written)) after the copy; the source held \(show(read))")
                break
            }
        }
        return problems
    }

    /// The bytes an operation meant to move `expected` moved, by its outcome (`operation` and
    /// `rule` name it and its count in a problem, `verb` what a fault interrupted), and what is
    /// wrong with that count: all of `expected`, or fewer only after a fault. `nil` when the
    /// outcome is not a count.
    static func bytesMoved(_ outcome: VmIoOutcome, expected: Int, _ operation: String, rule: String,
                           verb: String) -> (moved: Int, problems: [String])? {
        switch outcome {
        case .count(let n):
            return (n, n == expected ? [] : ["\(operation) returned \(n), not \(rule) = \(expected)"])
        case .failed(.pageFault(_, let done)):
            return (done, (0..<expected).contains(done) ? [] : ["a fault reported \(done) bytes \(verb) of \(expected)"])
        case .failed:
            return (0, [])
        default:
            return nil
        }
    }

    /// Whether `after` is `before` moved on by `count` bytes.
    static func advanced(_ before: VmIoHandleState, to after: VmIoHandleState, by count: Int, _ name: String) -> [String] {
        after.cursor == before.cursor &+ UInt64(count) && after.remain == before.remain - count ? []
            : ["the \(name) went from \(hex(before.cursor)) (\(before.remain) left) to \(hex(after.cursor)) "
                + "(\(after.remain) left), not \(count) bytes on"]
    }

    /// Check 27: "`read_once<T>`: … `remain<size(T) ⟹ Err ∧ unchanged`; `Ok(v) ⟹ bytes(v) ==
    /// shadow.read_bytes(cursor, size(T)) ∧ cursor' == cursor+size(T)`; `write_once` likewise;
    /// `fill<T>`: … `n*size==avail ∧ cursor'==end`", for the user handles' `readVal`, `writeVal`
    /// (a fault leaves the cursor unchanged), `atomicLoad` and `atomicCompareExchange` (which do
    /// not move; the exchange writes `new` exactly when it found `old`) and `fillZeros` (it writes
    /// zeros and moves by the count it reports: all of `min(count, avail)` unless a fault stopped
    /// it, as for a copy).
    ///
    /// `memory` holds the bytes at the cursor before, read after the operation: the value's size,
    /// or the count a fill reported.
    public static func onceSpec(_ operation: VmIoOperation, before: VmIoHandleState, after: VmIoHandleState,
                                outcome: VmIoOutcome, memory: [UInt8?]) -> [String] {
        let size: Int
        let expected: [UInt8]?
        switch (operation, outcome) {
        case (.fillZeros(let count), _): return fillSpec(count, before: before, after: after, outcome: outcome, memory: memory)
        case (.readVal(let n), .value(let bytes)): (size, expected) = (n, bytes)
        case (.readVal(let n), _): (size, expected) = (n, nil)
        case (.writeVal(let bytes), _): (size, expected) = (bytes.count, bytes)
        case (.atomicLoad, .value(let bytes)): (size, expected) = (4, bytes)
        case (.atomicCompareExchange(_, let new), .exchanged(let previous, let exchanged)):
            (size, expected) = (4, bytesOf(exchanged ? new : previous))
        case (.atomicLoad, _), (.atomicCompareExchange, _): (size, expected) = (4, nil)
        case (.limit, _), (.skip, _), (.split, _), (.transfer, _): return ["\(operation) is not a value access"]
        }
        let unchanged = after.cursor == before.cursor && after.remain == before.remain
        if case .failed(let error) = outcome {
            return unchanged ? [] : ["it failed (\(error)) but moved from \(hex(before.cursor)) to \(hex(after.cursor))"]
        }
        if before.remain < size { return ["\(before.remain) bytes left, fewer than \(size), yet it returned \(outcome)"] }
        var problems: [String] = []
        if case .exchanged(let previous, let exchanged) = outcome, case .atomicCompareExchange(let old, _) = operation,
           exchanged != (previous == old) {
            problems.append("found \(previous), expected \(old), and exchanged is \(exchanged)")
        }
        if case .value(let bytes) = outcome, bytes.count != size {
            problems.append("returned \(bytes.count) bytes for a \(size)-byte value")
        }
        if let expected, memory.count < size || Array(memory.prefix(size)) != expected.map(Optional.some) {
            problems.append("memory at \(hex(before.cursor)) holds \(memory.prefix(size).map(show)), expected \(expected)")
        }
        let moves: Bool = switch operation { case .readVal, .writeVal: true; default: false }
        if moves { problems += advanced(before, to: after, by: size, "cursor") } else if !unchanged {
            problems.append("it moved the cursor from \(hex(before.cursor)) to \(hex(after.cursor))")
        }
        return problems
    }

    /// The part of check 27 for `fillZeros(count)`: the count reported is `min(count, avail)`
    /// (below it only after a fault), the cursor moves by it, and those bytes are zero.
    static func fillSpec(_ count: Int, before: VmIoHandleState, after: VmIoHandleState, outcome: VmIoOutcome,
                         memory: [UInt8?]) -> [String] {
        let expected = Swift.min(Swift.max(count, 0), before.remain)
        guard let (filled, counted) = bytesMoved(outcome, expected: expected, "fillZeros(\(count))",
                                                 rule: "min(count, avail)", verb: "filled")
        else { return ["fillZeros returned \(outcome)"] }
        var problems = counted
        problems += advanced(before, to: after, by: filled, "cursor")
        if let i = (0..<Swift.max(0, filled)).first(where: { $0 >= memory.count || memory[$0] != 0 }) {
            problems.append("byte \(i) of the fill holds \(show(i < memory.count ? memory[i] : nil)), not 0")
        }
        return problems
    }

    /// The `count` bytes of `space`'s user memory at `va` as the CPU running the operation sees
    /// them: through a translation its TLB holds, when the space is active there (until a
    /// removal's flush is dispatched the entry may be stale, and the MMU still uses it), else
    /// through the page table; `nil` where neither maps. With `mappedPrefix`, only the bytes
    /// before the first one neither maps (what a copy can reach without a fault): the cost is
    /// then what is mapped, however long the range. Translates once per 4 KiB page and copies a
    /// page's bytes at once.
    public static func userBytes(_ space: VmSpace, at va: UInt64, count: Int, mappedPrefix: Bool = false) -> [UInt8?] {
        guard count > 0 else { return [] }
        let machine = space.machine
        let cpu = machine.currentCpu ?? 0
        let cached = space.isActive(on: cpu) ? machine.tlbEntries(cpu: cpu) : []
        var bytes: [UInt8?] = []
        var offset = 0
        while offset < count {
            let address = Vaddr(va) + offset
            let length = Swift.min(count - offset, pageSize - Int(address.rawValue % UInt64(pageSize)))
            guard let pa = physicalAddress(of: address, in: space, cached: cached),
                  pa.rawValue + UInt64(length) <= UInt64(machine.memorySize) else {
                if mappedPrefix { break }
                bytes.append(contentsOf: repeatElement(nil, count: length))
                offset += length
                continue
            }
            bytes.append(contentsOf: machine.physicalBytes(pa..<(pa + length)).lazy.map { Optional($0) })
            offset += length
        }
        return bytes
    }

    /// Where `address` is, for the CPU whose TLB holds `cached`: its cached translation, else the
    /// page table's (for a present leaf: one with `R`).
    static func physicalAddress(of address: Vaddr, in space: VmSpace, cached: [TlbEntryInfo]) -> Paddr? {
        if let entry = cached.first(where: { address >= $0.va && address - $0.va < PagingConsts.pageSize($0.level) }) {
            return entry.paddr + (address - entry.va)
        }
        // A leaf without `R` is not present to the hardware: nothing reads through it.
        guard let (leaf, offset) = space.pageTable.translate(address), leaf.property.flags.contains(.r) else { return nil }
        return leaf.paddr + offset
    }

    /// The bytes of a `UInt32` in memory order.
    static func bytesOf(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }

    static func hex(_ x: UInt64) -> String { "0x" + String(x, radix: 16) }

    static func show(_ byte: UInt8?) -> String { byte.map { "\($0)" } ?? "nothing (unmapped)" }
}
