// The buddy set's invariant as an executable check, for tests (O(free chunks + pageblocks)):
// every list holds aligned free heads of its order, in the list of their pageblock's kind, and
// the masks and the free-frame count agree with the lists (BuddySet.swift states the invariant).

extension BuddySet {
    /// What breaks the set's invariant, in words; empty when it holds. Under the machine's lock.
    func invariantViolations() -> [String] {
        var problems: [String] = []
        var frames = 0
        for order in 0...BuddySet.maxOrder {
            for kind in [PageblockKind.large, .small] {
                let heads = chunks(order: order, kind)
                let bit: UInt64 = 1 << UInt64(order)
                let marked = (kind == .small ? nonEmptySmall : nonEmptyLarge) & bit != 0
                if marked == heads.isEmpty { problems.append("order \(order) \(kind.name): mask says \(marked ? "non-empty" : "empty")") }
                for index in heads {
                    problems += chunkViolations(index, order: order, listed: kind)
                    frames += framesOfOrder(order)
                }
            }
        }
        if frames != freeFrames { problems.append("the lists hold \(frames) frames, the count says \(freeFrames)") }
        return problems
    }

    /// What is wrong with the chunk `index` of `order` found in the list of kind `listed`.
    private func chunkViolations(_ index: Int, order: BuddyOrder, listed: PageblockKind) -> [String] {
        var problems: [String] = []
        let name = "chunk \(index) of order \(order)"
        if index % framesOfOrder(order) != 0 || index + framesOfOrder(order) > frameCount {
            problems.append("\(name) is misaligned or runs past memory")
            return problems
        }
        let slot = slot(index)
        if slot.inList != UInt64(order + 1) { problems.append("\(name): in_list \(slot.inList)") }
        if slot.referenceCount != MetaSlot.refCountUnique { problems.append("\(name): its head is not unique") }
        if kind(ofChunk: index, order: order) != listed { problems.append("\(name) is in the \(listed.name) list, but its pageblock is not") }
        if order >= Pageblocks.order {
            let first = index >> Pageblocks.order
            let small = (first..<(first + framesOfOrder(order - Pageblocks.order))).count { pageblocks.kind($0) == .small }
            if small > 0 { problems.append("\(name) covers \(small) small pageblock(s)") }
        }
        return problems
    }
}
