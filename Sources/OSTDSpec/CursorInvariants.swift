// The invariants of a live cursor (vostd `Cursor::invariants`, run-time check 15 of
// vostd-spec-reference.md §10): its handle is well formed, its path is the chain of nodes from
// its guard level down to its level along its address, and it holds the locks of its range.
//
// Our cursors lock every node of the smallest subtree covering their range that overlaps it
// (OSTD's `dfs_acquire_lock`), so the lock clause is "every node at or below the guard level that
// overlaps the range is locked", where vostd's `nodes_locked` / `children_not_locked` speak of the
// path's guards only. A spin lock records no owner, so "locked" means "locked by someone": exact
// when one thread works on the space, as in audited scripts and property tests.

@_spi(OSTDInternals) import OSTDMemory

/// The checks of a cursor's state against the page table it is on.
public enum CursorInvariants {
    /// `Cursor::invariants`: `inv`, `wf` and `nodesLocked`, as violations in words. With `range`,
    /// the lock clause is checked for the nodes overlapping it only (an operation's range: the
    /// nodes it reads and writes), which keeps the check proportional to the operation.
    public static func invariants(_ cursor: CursorAuditState, table: PageTable<UserPtConfig>,
                                  lockedIn range: Range<Vaddr>? = nil) -> [String] {
        let handle = inv(cursor)
        guard handle.isEmpty else { return handle }   // the rest reads the path
        return wf(cursor, table: table) + nodesLocked(cursor, table: table, in: range)
    }

    /// Mutual exclusion of cursors: vostd's `Guards` is a set of node addresses, so a node's lock
    /// is held by at most one guard, and a cursor holds the locks of every node covering its range
    /// (`nodes_locked`); so no two live cursors of one space own overlapping ranges. `range` is a
    /// new cursor's, `live` those of the space's cursors not yet dropped. A spin lock records no
    /// owner, so this is the check that two threads did not both get a lock.
    public static func locksExclusive(_ range: Range<Vaddr>, live: [Range<Vaddr>]) -> [String] {
        live.filter { $0.overlaps(range) }.map {
            "a live cursor owns \($0.lowerBound)..<\($0.upperBound), which overlaps the new cursor's range"
        }
    }

    /// Check 7, `cursor_new_success_conditions(va)`: "`va.start < va.end ∧ both % BASE_PAGE_SIZE ==
    /// 0 ∧ is_valid_range_spec<C>(va)`" implies `Ok` (§5.3); ours also refuses every other range
    /// (vostd allows either). A new cursor starts at the range's start and owns exactly it.
    public static func cursorNewSpec(_ range: Range<Vaddr>, result: Result<CursorAuditState, OSTDError>) -> [String] {
        let valid = range.lowerBound.isAligned(to: pageSize) && range.upperBound.isAligned(to: pageSize)
            && UserPtConfig.isValidRange(range)
        switch result {
        case .success(let cursor):
            guard valid else { return ["a cursor was created over an invalid range"] }
            return cursor.va == range.lowerBound && cursor.barrierVa == range ? []
                : ["the new cursor is at \(cursor.va) over \(cursor.barrierVa.lowerBound)..<\(cursor.barrierVa.upperBound)"]
        case .failure(let error):
            return valid ? ["refused with \(error), but the range is valid (cursor_new_success_conditions)"] : []
        }
    }

    /// `Cursor::inv`: "`1 <= level <= NR_LEVELS + 1 ∧ level <= guard_level + 1 ∧ guard_level <=
    /// NR_LEVELS ∧ va >= barrier_va.start ∧ va % 4096 == 0`" (§5.3), and, stricter here, the
    /// address stays within the barrier's end and the level never exceeds the guard level (our
    /// cursors never pop above their subtree root).
    public static func inv(_ cursor: CursorAuditState) -> [String] {
        var problems: [String] = []
        if !(1...cursor.guardLevel).contains(cursor.level) || cursor.guardLevel > PagingConsts.nrLevels {
            problems.append("level \(cursor.level) is not within 1...guard level \(cursor.guardLevel) (at most \(PagingConsts.nrLevels))")
        }
        if cursor.va < cursor.barrierVa.lowerBound || cursor.va > cursor.barrierVa.upperBound {
            problems.append("va \(cursor.va) is outside the barrier \(cursor.barrierVa.lowerBound)..<\(cursor.barrierVa.upperBound)")
        }
        if !cursor.va.isAligned(to: pageSize) { problems.append("va \(cursor.va) is not 4 KiB aligned") }
        return problems
    }

    /// `Cursor::wf`: "`path[i]` is Some iff `level - 1 <= i < guard_level`" (§5.3), and each path
    /// node below the guard level is the child its parent's entry at `va` points to.
    public static func wf(_ cursor: CursorAuditState, table: PageTable<UserPtConfig>) -> [String] {
        var problems: [String] = []
        for i in 0..<cursor.path.count {
            let expected = i >= Int(cursor.level) - 1 && i < Int(cursor.guardLevel)
            if (cursor.path[i] != nil) != expected {
                problems.append("path[\(i)] is \(cursor.path[i].map { "\($0)" } ?? "empty"), expected "
                                + (expected ? "a node" : "empty") + " (level \(cursor.level), guard level \(cursor.guardLevel))")
            }
        }
        guard problems.isEmpty, cursor.va < cursor.barrierVa.upperBound else { return problems }
        // Each node on the way to `va`: its level and the node its entry at `va` points to.
        var onTheWay: [Paddr: (level: PagingLevel, child: Paddr?)] = [:]
        table.forEachNode(overlapping: cursor.va..<(cursor.va + pageSize)) { node in
            let pte = node.entry(PagingConsts.pteIndex(cursor.va, node.level))
            onTheWay[node.paddr] = (node.level, pte.isPresent && !pte.isLeaf ? pte.paddr(level: node.level) : nil)
        }
        if let top = cursor.path[Int(cursor.guardLevel) - 1], onTheWay[top]?.level != cursor.guardLevel {
            problems.append("the guard node \(top) is not the table's node of level \(cursor.guardLevel) at \(cursor.va)")
        }
        for level in cursor.level..<cursor.guardLevel {
            guard let parent = cursor.path[Int(level)], let child = cursor.path[Int(level) - 1] else { continue }
            if onTheWay[parent]?.child != child {
                problems.append("path node \(child) at level \(level) is not the child of \(parent) at \(cursor.va)")
            }
        }
        return problems
    }

    /// The lock clause (vostd `nodes_locked`, in our design's form; see the file comment): every
    /// node of the table at or below the guard level that overlaps the cursor's range (or the
    /// part of it in `range`) is locked.
    public static func nodesLocked(_ cursor: CursorAuditState, table: PageTable<UserPtConfig>,
                                   in range: Range<Vaddr>? = nil) -> [String] {
        var problems: [String] = []
        let barrier = cursor.barrierVa
        let checked = range?.clamped(to: barrier) ?? barrier
        table.forEachNode(overlapping: checked) { node in
            if node.level <= cursor.guardLevel && !node.isLocked && problems.count < 5 {
                problems.append("node \(node.paddr) (level \(node.level), from \(node.va)) overlaps the cursor's range "
                                + "\(cursor.barrierVa.lowerBound)..<\(cursor.barrierVa.upperBound) but is not locked")
            }
        }
        return problems
    }
}
