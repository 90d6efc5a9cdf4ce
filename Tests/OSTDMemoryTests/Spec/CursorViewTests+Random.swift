// A seeded random walk of page-table cursor operations on a 64 MiB machine, each compared with its
// `CursorView` spec: cursors over random ranges of the first 4 GiB (so locked at levels 1 to 4),
// maps of 4 KiB (some tracked), 2 MiB and 1 GiB leaves, take, protect, find, query, jump and whole
// unmap loops, at addresses chosen near 4 KiB, 2 MiB and 1 GiB boundaries so that huge leaves are
// split at range ends all the time.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

extension CursorViewTests {
    @Test(arguments: [1, 3, 4])   // seeds whose walks see every outcome below (seeds 2 and 5 miss one)
    func randomOperationsAreTheirSpecs(seed: Int) throws {
        let machine = makeMachine(memory: 64 << 20, audit: false)
        let table = try PageTable<UserPtConfig>(empty: machine)
        var random = SplitMix64(seed)
        var walk = RandomWalk(table: table, machine: machine)
        while walk.ops < 300 && walk.failures.isEmpty {
            var cursor = try table.cursorMut(walk.randomBarrier(&random))
            for _ in 0..<random.int(5...40) where walk.failures.isEmpty {
                try walk.step(&cursor, &random)
            }
        }
        #expect(walk.failures == [], "seed \(seed)")
        #expect(walk.ops >= 300)
        // The walk did what it is for: maps that succeed and fail, takes and protects, splits.
        #expect(walk.seen.isSuperset(of: ["map", "failed map", "takeNext", "protectNext", "split", "stray"]),
                "seed \(seed): \(walk.seen.sorted())")
    }

    /// The state of the walk: the table, and what went wrong.
    struct RandomWalk {
        let table: PageTable<UserPtConfig>
        let machine: Machine
        var ops = 0
        var failures: [String] = []
        /// The kinds of outcome seen (an op's name when it changed or found something, `split`, `stray`).
        var seen: Set<String> = []

        /// An address near a boundary of each size in the first 4 GiB.
        func address(_ random: inout SplitMix64) -> UInt64 {
            UInt64(random.below(4) * cvPage1G + random.pick([0, 1, 2, 511]) * cvPage2M + random.pick([0, 1, 2, 511]) * cvPage4K)
        }

        func randomBarrier(_ random: inout SplitMix64) -> Range<Vaddr> {
            let start = address(&random)
            let room = UInt64(4 * cvPage1G) - start
            let len = min(room, UInt64(random.pick([cvPage4K, 3 * cvPage4K, cvPage2M, 2 * cvPage2M + cvPage4K, cvPage1G, cvPage1G + cvPage2M, 4 * cvPage1G])))
            return Vaddr(start)..<Vaddr(start + len)
        }

        /// A length to scan from `cursor`'s address (at least 4 KiB; `nil` at the range's end).
        func length(_ cursor: borrowing CursorMut<UserPtConfig>, _ random: inout SplitMix64) -> Int? {
            let room = cursor.barrierVa.upperBound - cursor.virtAddr
            guard room > 0 else { return nil }
            return min(room, random.pick([cvPage4K, 2 * cvPage4K, cvPage2M, cvPage2M + 3 * cvPage4K, cvPage1G, room]))
        }

        func view(_ cursor: borrowing CursorMut<UserPtConfig>) -> CursorView { CursorViewTests.view(table, cursor) }

        mutating func check(_ name: String, _ after: CursorView, _ expected: CursorView) {
            guard after != expected else { return }
            let wrong = zip(after.mappings, expected.mappings).first { $0 != $1 }
            failures.append("op \(ops) \(name): cursor at \(after.curVa), spec \(expected.curVa); \(after.mappings.count) "
                            + "leaves, spec \(expected.mappings.count); first difference \(wrong.map { "\($0) vs \($1)" } ?? "-")")
        }

        mutating func step(_ cursor: inout CursorMut<UserPtConfig>, _ random: inout SplitMix64) throws {
            ops += 1
            let before = view(cursor)
            switch random.below(100) {
            case 0..<30: map(&cursor, before, &random)
            case 30..<50: take(&cursor, before, &random)
            case 50..<65: protect(&cursor, before, &random)
            case 65..<75:
                guard let len = length(cursor, &random) else { return }
                let expected = before.findNextSpec(len)
                let found = cursor.findNext(len)
                if found != expected.found { failures.append("op \(ops) findNext: \(String(describing: found)) vs \(String(describing: expected.found))") }
                check("findNext", view(cursor), expected.view)
            case 75..<85:
                guard cursor.virtAddr < cursor.barrierVa.upperBound else { return }
                let expected = before.querySpec(level: cursor.currentLevel)
                let (range, item) = try cursor.query()
                if range != expected.range || item.map({ Mapping(va: range.lowerBound, item: $0) }) != expected.mapping {
                    failures.append("op \(ops) query: \(range) \(String(describing: item)) vs \(expected)")
                }
                check("query", view(cursor), before)
            case 85..<95:
                let barrier = cursor.barrierVa
                let target = random.chance(10) ? barrier.upperBound
                    : barrier.lowerBound + random.below((barrier.upperBound - barrier.lowerBound) / cvPage4K) * cvPage4K
                let moved = (try? cursor.jump(target)) != nil
                let expected = before.jumpSpec(target, barrier: barrier)
                if moved != (expected != nil) { failures.append("op \(ops) jump to \(target): moved \(moved)") }
                check("jump", view(cursor), expected ?? before)
            default: unmap(&cursor, before, &random)
            }
            let after = view(cursor)
            let old = Set(before.mappings)
            if after.mappings.lazy.filter({ !old.contains($0) }).count >= 2 { seen.insert("split") }
            if !after.inv(UserPtConfig.self) { failures.append("op \(ops): \(after.invViolations(UserPtConfig.self, limit: 2))") }
        }

        /// Jumps to an aligned address of the range with room for a leaf of a random level, and
        /// maps there (a failure must leave `splitWhileHuge`).
        mutating func map(_ cursor: inout CursorMut<UserPtConfig>, _ before: CursorView, _ random: inout SplitMix64) {
            let level = PagingLevel(random.pick([1, 1, 1, 2, 2, 3]))
            let size = PagingConsts.pageSize(level)
            let barrier = cursor.barrierVa
            let target = Vaddr(address(&random) & ~UInt64(size - 1))
            guard barrier.contains(target), size <= barrier.upperBound - target else { return }
            try! cursor.jump(target)
            let at = view(cursor)
            let item: MappedItem
            if level == 1 && random.chance(30), let frame = try? FrameAllocOptions().allocFrame(in: machine) {
                item = MappedItem(frame: frame, property: .user(.rw))
            } else {
                item = CursorViewTests.item(UInt64(random.below(4 * cvPage1G / size) * size), level: level,
                                            .user(random.pick([.rw, .r, .rx])))
            }
            let info = item.info
            let canMap = at.canMapSpec(level: level) && level <= cursor.lockedLevel
            switch cursor.tryMap(item) {
            case .none:
                seen.insert("map")
                if !canMap { failures.append("op \(ops): mapped \(info) at \(target) where the spec says it cannot") }
                check("map", view(cursor), at.mapSpec(pa: info.paddr, level: level, property: info.property,
                                                      isTracked: info.isTracked))
            case .some(let failure):
                seen.insert("failed map")
                if canMap { failures.append("op \(ops): map of \(info) at \(target) failed: \(failure.error)") }
                check("failed map", view(cursor), at)
            }
        }

        mutating func take(_ cursor: inout CursorMut<UserPtConfig>, _ before: CursorView, _ random: inout SplitMix64) {
            guard let len = length(cursor, &random) else { return }
            let expected = before.takeNextSpec(len, level: cursor.currentLevel, guardLevel: cursor.lockedLevel)
            let taken = CursorViewTests.taken(cursor.takeNext(len))
            if case .strayPageTable? = taken { seen.insert("stray") } else if taken != nil { seen.insert("takeNext") }
            if taken != expected.taken { failures.append("op \(ops) takeNext: \(String(describing: taken)) vs \(String(describing: expected.taken))") }
            check("takeNext", view(cursor), expected.view)
        }

        mutating func protect(_ cursor: inout CursorMut<UserPtConfig>, _ before: CursorView, _ random: inout SplitMix64) {
            guard let len = length(cursor, &random) else { return }
            let flags: PageFlags = random.pick([.r, .rw, .rx, .rwx])
            let cache: CachePolicy = random.pick(CachePolicy.allCases)
            let op: (PageProperty) -> PageProperty = { var p = $0; p.flags = flags; p.cache = cache; return p }
            let expected = before.protectSpec(len, op)
            let done = cursor.protectNext(len) { $0 = op($0) }
            if done != nil { seen.insert("protectNext") }
            if done != expected.protected { failures.append("op \(ops) protectNext: \(String(describing: done)) vs \(String(describing: expected.protected))") }
            check("protectNext", view(cursor), expected.view)
        }

        /// A whole unmap loop (as `VmSpace.CursorMut.unmap`) against `unmapResult` and `unmapSpec`.
        mutating func unmap(_ cursor: inout CursorMut<UserPtConfig>, _ before: CursorView, _ random: inout SplitMix64) {
            guard let len = length(cursor, &random) else { return }
            let end = cursor.virtAddr + len
            while cursor.virtAddr < end, isNone(cursor.takeNext(end - cursor.virtAddr)) == false {}
            let after = view(cursor)
            check("unmap", after, before.unmapResult(len))
            if !before.unmapSpec(len: len, new: after) { failures.append("op \(ops) unmap: \(before.unmapSpecViolations(len: len, new: after, limit: 2))") }
        }
    }
}
