// The map and unmap steps of a page-table property program: `map` / `tryMap` of 4 KiB, 2 MiB and
// 1 GiB items with cursors of every extent (and over a mapped slot, which must hand the item
// back), `takeNext` over ranges with barriers, and unmapping everything at the end.

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
    // MARK: Map

    /// Maps a fresh frame (or huge page) at `va` with a cursor of its own: on its exact range, on
    /// the enclosing block of the next level, or on the window.
    func map(level: PagingLevel, va: UInt64, untracked: Bool = false) throws(PageTableError) {
        let size = pageSizeOf(level)
        let target = va..<(va + size)
        let barrier: Range<UInt64>
        switch r.below(10) {
        case 0..<3: barrier = window
        case 3..<5 where level >= 2: barrier = target
        case 3..<6 where level == 1: barrier = target
        default:
            let block = alignDown(va, size << 9)
            barrier = max(block, window.lowerBound)..<min(block + size << 9, window.upperBound)
        }
        trace.append("map \(["4K", "2M", "1G"][Int(level) - 1])\(untracked ? " untracked" : "") at \(hex(va)), "
                     + describe(barrier, of: target))
        var cursor = try table.cursorMut(vrange(barrier))
        // The cursor locks the smallest subtree covering its range, but not below an absent entry
        // it covers exactly: it can always map a page where nothing is mapped.
        check(model.mappedCount(in: target) > 0 || cursor.lockedLevel >= level,
              "a cursor on \(hex(barrier)) locked level \(cursor.lockedLevel): too low to map a level-\(level) page")
        try mapWith(&cursor, level: level, va: va, untracked: untracked)
    }

    /// Maps a fresh frame (or huge page) at `va` with `cursor`: succeeds iff nothing in its range
    /// is mapped and the cursor's locked subtree reaches the level; otherwise the item comes back
    /// with the reason and nothing changes.
    func mapWith(_ cursor: inout CursorMut<UserPtConfig>, level: PagingLevel, va: UInt64,
                 untracked: Bool) throws(PageTableError) {
        let size = pageSizeOf(level)
        let target = va..<(va + size)
        let prop = property()
        let item: MappedItem
        let pa: UInt64
        if untracked {
            pa = alignUp(UInt64(machine.memorySize), size)   // never dereferenced: the map must fail
            item = MappedItem(untracked: Paddr(pa), level: level, property: prop)
        } else if level == 1 {
            do {
                let frame = try FrameAllocOptions().zeroed(false).allocFrame(in: machine)
                pa = frame.paddr.rawValue
                item = MappedItem(frame: frame, property: prop)
            } catch {
                trace[trace.count - 1] += " (no memory, skipped)"
                return
            }
        } else {
            do {
                let segment = try FrameAllocOptions().zeroed(false).allocSegment(Int(size >> 12), in: machine)
                pa = segment.paddr.rawValue
                item = MappedItem(hugePage: segment, property: prop)
            } catch {
                trace[trace.count - 1] += " (no memory, skipped)"
                return
            }
        }
        trace[trace.count - 1] += " [\(hex(pa)) \(prop)]"
        probes += [va, va + size - size4K, va + size, va &- size4K]

        let occupied = model.mappedCount(in: target) > 0
        let tooHigh = level > cursor.lockedLevel
        if cursor.virtAddr.rawValue != va { try cursor.jump(Vaddr(va)) }
        let result = cursor.tryMap(item)
        switch consume result {
        case .none:
            check(!occupied, "tryMap succeeded over \(model.mappedCount(in: target)) mapped pages")
            check(!tooHigh, "tryMap mapped a level-\(level) page with a cursor locking level \(cursor.lockedLevel)")
            check(cursor.virtAddr.rawValue == va + size, "after map the cursor is at \(cursor.virtAddr)")
            if failures == 0 && !untracked {
                model.map(va, pa, pages: Int(size >> 12), prop)
                units.append(FrameUnit(va: va, pa: pa, frames: Int(size >> 12)))
            }
        case .some(let failure):
            let error = failure.error
            let expected: PageTableError? = tooHigh ? .unsuitableLevel(level) : occupied ? .alreadyMapped(Vaddr(va)) : nil
            check(error == expected, "tryMap failed with \(error), expected \(expected.map { "\($0)" } ?? "success")")
            let back = failure.item.info
            check(back == MappedItemRef(paddr: Paddr(pa), level: level, property: prop, isTracked: !untracked),
                  "tryMap handed back \(back)")
            _ = consume failure   // drops the item: its frames go back to the allocator
            if !untracked { checkFree(pa: pa, frames: Int(size >> 12), "a refused item's frames") }
        }
    }

    /// Tries to map over a mapped page: at its 4K, 2M or 1G slot (the 1G attempt with an
    /// untracked item, so as not to allocate a gigabyte for a failure).
    func mapOverMapped() throws(PageTableError) {
        let from = address(align: size4K)
        guard let page = model.firstMapped(in: from..<window.upperBound) ?? model.firstMapped(in: window) else {
            try map(level: 1, va: address(align: size4K))
            return
        }
        let level = PagingLevel(r.pick([1, 1, 2, 2, 3]))
        try map(level: level, va: alignDown(page, pageSizeOf(level)), untracked: level == 3)
    }

    // MARK: Unmap

    /// Takes everything in a random range: leaves and whole subtrees, splitting huge pages covered
    /// in part, and drops each fragment at once.
    func unmap() throws(PageTableError) {
        let range = range()
        let barrier = barrier(for: range)
        trace.append("unmap \(hex(range)), \(describe(barrier, of: range))")
        try unmap(range, barrier: barrier)
    }

    func unmap(_ range: Range<UInt64>, barrier: Range<UInt64>) throws(PageTableError) {
        var cursor = try table.cursorMut(vrange(barrier))
        try takeAll(&cursor, range, barrier: barrier)
    }

    /// Takes everything in `range` with `cursor` (whose range is `barrier`), checking each
    /// fragment against the model and dropping it.
    func takeAll(_ cursor: inout CursorMut<UserPtConfig>, _ range: Range<UInt64>,
                 barrier: Range<UInt64>) throws(PageTableError) {
        probes += [range.lowerBound, range.upperBound - size4K, range.upperBound, range.lowerBound &- size4K]
        if cursor.virtAddr.rawValue != range.lowerBound { try cursor.jump(Vaddr(range.lowerBound)) }
        var position = range.lowerBound
        while failures == 0 {
            let at = cursor.virtAddr.rawValue
            guard at >= position && at <= range.upperBound else {
                check(false, "after takeNext the cursor is at \(hex(at)), outside \(hex(position))...\(hex(range.upperBound))"
                      + " (the cursor's range is \(hex(barrier)))")
                break
            }
            guard let frag = cursor.takeNext(Int(range.upperBound - at)) else {
                checkStopped(cursor.virtAddr, end: range.upperBound, barrier: barrier, "takeNext")
                break
            }
            let expected = model.firstMapped(in: position..<range.upperBound)
            switch consume frag {
            case .mapped(let va, let item):
                let info = item.info
                let leaf = va.rawValue..<(va.rawValue + UInt64(info.size))
                check(leaf.lowerBound >= position && leaf.upperBound <= range.upperBound && va.isAligned(to: info.size),
                      "takeNext returned the leaf \(hex(leaf)) \(info) from \(hex(position))..<\(hex(range.upperBound))")
                check(expected == leaf.lowerBound, "takeNext returned the leaf at \(va), the first mapped page is "
                      + "\(expected.map(hex) ?? "none")")
                checkLeaf(info, at: leaf.lowerBound, "taken leaf")
                check(info.isTracked, "taken leaf \(info) is untracked")
                check(machine.metaSlot(of: info.paddr).referenceCount == 1,
                      "the frame of a taken leaf has \(machine.metaSlot(of: info.paddr).referenceCount) references")
                _ = consume item
                if failures > 0 { break }
                model.unmap(leaf)
                checkFree(pa: info.paddr.rawValue, frames: info.size >> 12, "the frames of a dropped leaf")
                position = leaf.upperBound
            case .strayPageTable(let node, let va, let len, let numFrames):
                let span = va.rawValue..<(va.rawValue + UInt64(len))
                let inside = model.mappedCount(in: span)
                check(span.lowerBound >= position && span.upperBound <= range.upperBound && va.isAligned(to: len),
                      "takeNext returned the subtree \(hex(span)) from \(hex(position))..<\(hex(range.upperBound))")
                check(expected.map { span.contains($0) } == true, "takeNext returned the subtree \(hex(span)), the "
                      + "first mapped page is \(expected.map(hex) ?? "none")")
                check(node.isStray, "a taken subtree is not marked stray")
                check(PagingConsts.pageSize(node.level + 1) == len, "a taken subtree of level \(node.level) covers \(len)")
                check(node.nrChildren > 0, "a taken subtree is empty")
                check(numFrames >= 1 && numFrames <= inside, "a taken subtree has \(numFrames) leaves, "
                      + "the model \(inside) pages there")
                _ = consume node   // tears the subtree down
                if failures > 0 { break }
                let frames = model.unmap(span)
                for pa in frames { checkFree(pa: pa, frames: 1, "the frames of a dropped subtree") }
                position = span.upperBound
            }
        }
        check(model.mappedCount(in: range) == 0, "\(model.mappedCount(in: range)) pages of the range were not taken, "
              + "the first at \(model.firstMapped(in: range).map(hex) ?? "?")")
    }

    /// Unmaps the whole window, then checks everything is back.
    func unmapEverything() {
        guard failures == 0 else { return }
        trace.append("unmap the whole window")
        do throws(PageTableError) {
            try unmap(window, barrier: window)
        } catch {
            check(false, "unexpected error \(error)")
        }
        if failures == 0 { verify() }
        if failures > 0 { recordTrace() }
    }

    /// The end state: `expectedNodes` nodes, `expectedFrames` frames outstanding, every frame the
    /// program used back in the allocator.
    func finish(expectedNodes: Int, expectedFrames: Int) {
        guard failures == 0 else { return }
        machine.reclaimRetired()
        check(model.count == 0, "the model still has \(model.count) pages")
        check(table.view().mappings.isEmpty, "mappings are left: \(table.view().mappings.prefix(4))")
        check(table.nodes().count == expectedNodes, "\(table.nodes().count) nodes are left: \(table.nodes().prefix(6))")
        check(machine.outstandingFrames == expectedFrames,
              "\(machine.outstandingFrames) frames outstanding, expected \(expectedFrames)")
        check(table.structuralViolations() == [], "\(table.structuralViolations())")
        for unit in units { checkFree(pa: unit.pa, frames: unit.frames, "the frames of \(hex(unit.vaRange))") }
        if failures > 0 { recordTrace() }
    }
}
