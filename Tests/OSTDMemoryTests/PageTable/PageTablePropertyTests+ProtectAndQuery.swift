// The protect, batch and query steps of a page-table property program: `protectNext` over ranges
// (splitting huge pages covered in part), several operations with one cursor, and `query` and
// `findNext` scans checked against the model.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension PTProgram {
    // MARK: Protect

    /// Applies an operation to every leaf in a random range, splitting huge pages covered in part.
    func protect() throws(PageTableError) {
        let range = range()
        let barrier = barrier(for: range)
        let op = protectOp()
        trace.append("protect \(hex(range)) \(op), \(describe(barrier, of: range))")
        var cursor = try table.cursorMut(vrange(barrier))
        try protectAll(&cursor, range, op, barrier: barrier)
    }

    func protectOp() -> ProtectOp {
        switch r.below(10) {
        case 0..<3: return .toggle(.w)
        case 3..<5: return .toggle(.x)
        case 5: return .toggle(.r)
        case 6: return .toggle([.avail2, .dirty])
        case 7: return .cache(r.pick(CachePolicy.allCases))
        case 8: return .toggleGlobal
        default: return .setAvail1
        }
    }

    /// Protects every leaf in `range` with `cursor` (whose range is `barrier`), checking each
    /// against the model.
    func protectAll(_ cursor: inout CursorMut<UserPtConfig>, _ range: Range<UInt64>, _ op: ProtectOp,
                    barrier: Range<UInt64>) throws(PageTableError) {
        probes += [range.lowerBound, range.upperBound - size4K, range.upperBound, range.lowerBound &- size4K]
        if cursor.virtAddr.rawValue != range.lowerBound { try cursor.jump(Vaddr(range.lowerBound)) }
        var position = range.lowerBound
        var leaves = 0
        while failures == 0 && leaves < 1 << 20 {
            let at = cursor.virtAddr.rawValue
            guard at >= position && at <= range.upperBound else {
                check(false, "the cursor is at \(hex(at)), outside \(hex(position))..<\(hex(range.upperBound))")
                break
            }
            guard let done = cursor.protectNext(Int(range.upperBound - at), { op.apply(&$0) }) else {
                checkStopped(cursor.virtAddr, end: range.upperBound, barrier: barrier, "protectNext")
                break
            }
            leaves += 1
            let leaf = done.lowerBound.rawValue..<done.upperBound.rawValue
            let size = leaf.upperBound - leaf.lowerBound
            let expected = model.firstMapped(in: position..<range.upperBound)
            check([size4K, size2M, size1G].contains(size) && leaf.lowerBound % size == 0,
                  "protectNext returned \(hex(leaf)), not a page")
            check(leaf.lowerBound >= position && leaf.upperBound <= range.upperBound,
                  "protectNext returned \(hex(leaf)) from \(hex(position))..<\(hex(range.upperBound))")
            check(expected == leaf.lowerBound, "protectNext returned \(hex(leaf)), the first mapped page is "
                  + "\(expected.map(hex) ?? "none")")
            check(model.mappedCount(in: leaf) == Int(size >> 12), "protectNext returned \(hex(leaf)), where the "
                  + "model maps \(model.mappedCount(in: leaf)) pages")
            if failures > 0 { break }
            model.update(leaf) { prop in
                op.apply(&prop)
                prop.flags.remove(.avail1)
            }
            position = leaf.upperBound
        }
        check(model.firstMapped(in: position..<range.upperBound) == nil,
              "protectNext skipped \(model.firstMapped(in: position..<range.upperBound).map(hex) ?? "")")
    }

    // MARK: Several operations with one cursor

    /// Maps, unmaps, protects and queries with one cursor, jumping between the operations: the
    /// cursor's position and path must stay right after each (splits, removed subtrees, nodes
    /// emptied and re-filled while it is alive).
    func batch() throws(PageTableError) {
        let barrier = r.chance(40) ? window : range()
        var cursor = try table.cursorMut(vrange(barrier))
        trace.append("one cursor on \(hex(barrier)) (locked level \(cursor.lockedLevel)):")
        for _ in 0..<(2 + r.below(4)) where failures == 0 {
            switch r.below(8) {
            case 0..<3:
                let level: PagingLevel = r.chance(25) ? 2 : 1
                let size = pageSizeOf(level)
                let low = alignUp(barrier.lowerBound, size), high = alignDown(barrier.upperBound, size)
                guard low < high else { continue }
                var va = address(align: size)
                if !(low..<high).contains(va) {
                    let slots = Int((high - low) / size)
                    va = low + UInt64(r.pick([0, slots - 1, r.below(slots)])) * size
                }
                trace[trace.count - 1] += "\n     map \(level == 1 ? "4K" : "2M") at \(hex(va))"
                try mapWith(&cursor, level: level, va: va, untracked: false)
            case 3..<5:
                let sub = subrange(of: barrier)
                trace[trace.count - 1] += "\n     unmap \(hex(sub))"
                try takeAll(&cursor, sub, barrier: barrier)
            case 5..<7:
                let sub = subrange(of: barrier)
                let op = protectOp()
                trace[trace.count - 1] += "\n     protect \(hex(sub)) \(op)"
                try protectAll(&cursor, sub, op, barrier: barrier)
            default:
                let sub = subrange(of: barrier)
                let va = r.chance(50) ? sub.lowerBound : model.firstMapped(in: sub) ?? sub.lowerBound
                trace[trace.count - 1] += "\n     query \(hex(va))"
                probes.append(va)
                try queryAt(va, &cursor)
            }
        }
    }

    /// A random non-empty page-aligned range inside `outer`.
    func subrange(of outer: Range<UInt64>) -> Range<UInt64> {
        let candidate = range()
        let low = max(candidate.lowerBound, outer.lowerBound), high = min(candidate.upperBound, outer.upperBound)
        if low < high { return low..<high }
        let start = r.chance(50) ? outer.lowerBound : alignDown(outer.upperBound - 1, size4K)
        return start..<min(start + UInt64(1 + r.below(600)) << 12, outer.upperBound)
    }

    // MARK: Query and findNext

    /// Queries a few addresses, each with its own cursor (read-only or mutable).
    func query() throws(PageTableError) {
        let count = 1 + r.below(4)
        let readOnly = r.chance(50)
        trace.append("query \(count) addresses with \(readOnly ? "read-only" : "mutable") cursors")
        for _ in 0..<count {
            let va = r.chance(50) ? address(align: size4K)
                : model.firstMapped(in: address(align: size4K)..<window.upperBound) ?? address(align: size4K)
            let barrier = barrier(for: va..<(va + size4K))
            trace[trace.count - 1] += "; \(hex(va)) (\(describe(barrier, of: va..<(va + size4K))))"
            probes.append(va)
            if readOnly {
                var cursor = try table.cursor(vrange(barrier))
                try queryAt(va, &cursor)
            } else {
                var cursor = try table.cursorMut(vrange(barrier))
                try queryAt(va, &cursor)
            }
        }
    }

    func queryAt<Cur: ReadingCursor & ~Copyable>(_ va: UInt64, _ cursor: inout Cur) throws(PageTableError) {
        if cursor.virtAddr.rawValue != va { try cursor.jump(Vaddr(va)) }
        let (slot, item) = try cursor.query()
        let range = slot.lowerBound.rawValue..<slot.upperBound.rawValue
        check(range.contains(va), "query at \(hex(va)) returned the slot \(hex(range))")
        if let item {
            checkLeaf(item, at: range.lowerBound, "query at \(hex(va))")
            check(UInt64(item.size) == range.upperBound - range.lowerBound,
                  "query at \(hex(va)) returned a \(item.size)-byte leaf for the slot \(hex(range))")
        } else {
            check(model.mappedCount(in: range) == 0, "query at \(hex(va)) found \(hex(range)) absent, the model maps "
                  + "\(model.mappedCount(in: range)) pages there (the first at \(model.firstMapped(in: range).map(hex) ?? ""))")
        }
        check(cursor.virtAddr.rawValue == va, "query moved the cursor from \(hex(va)) to \(cursor.virtAddr)")
    }

    /// Walks a random range with findNext, querying each leaf found and jumping past it.
    func scan() throws(PageTableError) {
        let range = range()
        let barrier = barrier(for: range)
        let readOnly = r.chance(50)
        trace.append("scan \(hex(range)) with findNext, \(readOnly ? "read-only" : "mutable") \(describe(barrier, of: range))")
        probes += [range.lowerBound, range.upperBound - size4K]
        if readOnly {
            var cursor = try table.cursor(vrange(barrier))
            try scan(range, barrier: barrier, &cursor)
        } else {
            var cursor = try table.cursorMut(vrange(barrier))
            try scan(range, barrier: barrier, &cursor)
        }
    }

    func scan<Cur: ReadingCursor & ~Copyable>(_ range: Range<UInt64>, barrier: Range<UInt64>,
                                              _ cursor: inout Cur) throws(PageTableError) {
        if cursor.virtAddr.rawValue != range.lowerBound { try cursor.jump(Vaddr(range.lowerBound)) }
        for _ in 0..<48 where failures == 0 {
            let at = cursor.virtAddr.rawValue
            guard at <= range.upperBound else { check(false, "the cursor is at \(hex(at)), past the range"); return }
            let expected = model.firstMapped(in: at..<range.upperBound)
            let found = cursor.findNext(Int(range.upperBound - at))
            check(found?.rawValue == expected, "findNext from \(hex(at)) found \(found.map { "\($0)" } ?? "nothing"), "
                  + "the model's first mapped page is \(expected.map(hex) ?? "none")")
            guard let found else {
                checkStopped(cursor.virtAddr, end: range.upperBound, barrier: barrier, "findNext")
                return
            }
            check(cursor.virtAddr == found, "findNext returned \(found) but the cursor is at \(cursor.virtAddr)")
            probes.append(found.rawValue)
            let (slot, item) = try cursor.query()
            guard let item else { check(false, "findNext stopped at \(found), where query finds nothing"); return }
            checkLeaf(item, at: slot.lowerBound.rawValue, "query after findNext at \(found)")
            let next = min(slot.upperBound.rawValue, range.upperBound)
            if next == range.upperBound { return }
            try cursor.jump(Vaddr(next))
        }
    }
}
