// The mapping ops of a script: `map`, `unmap`, `protect`, `query`. A failed op changes nothing:
// `map` rolls back what it mapped when memory runs out; `unmap` and `protect` are the space
// cursor's transactions (`tryUnmap`, `tryProtect`), which refuse when the page-table nodes their
// huge-leaf splits need cannot be had.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

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
        return try splitting(range) { () throws(OSTDError) in
            var cursor = try space.cursorMut(range)
            return try cursor.tryUnmap(Int(len))
        }
    }

    func protect(_ va: UInt64, _ len: UInt64, _ prot: Prot) throws(OpFailure) -> Int {
        let range = try userRange(va, len)
        try checkAligned(va, len, to: 4096)
        return try splitting(range) { () throws(OSTDError) in
            var cursor = try space.cursorMut(range)
            return try cursor.tryProtect(Int(len), property: { property in
                property = prot.property(cache: property.cache)
            })
        }
    }

    /// Runs a transactional `unmap` or `protect` of `range`; its refusal for want of page-table
    /// nodes for the huge-leaf splits at the ends becomes `out-of-memory` (nothing changed).
    func splitting(_ range: Range<Vaddr>, _ body: () throws(OSTDError) -> Int) throws(OpFailure) -> Int {
        do {
            return try body()
        } catch .outOfMemory(let needed) {
            throw OpFailure(.outOfMemory, "splitting the huge pages at the ends of \(hex(range.lowerBound.rawValue))..<\(hex(range.upperBound.rawValue)) needs \(needed) page-table nodes; \(machine.freeFrames) frames are free; nothing changed")
        } catch {
            preconditionFailure("\(range.lowerBound)..<\(range.upperBound) was checked: \(error)")
        }
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
