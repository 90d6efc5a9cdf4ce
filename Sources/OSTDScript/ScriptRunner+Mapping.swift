// The mapping ops of a script: `map`, `unmap`, `protect`, `query`. A failed op changes nothing:
// `map` rolls back what it mapped when memory runs out; `unmap` and `protect` count the page-table
// nodes their huge-leaf splits need first and refuse when they are not free.

import OSTDMemory

extension ScriptRunner {
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
}
