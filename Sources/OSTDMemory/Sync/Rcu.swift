// Read-side critical sections and grace periods (RCU), for the lock-free walks of page tables.
//
// A walker that follows page-table entries without locks (a cursor finding its subtree, a
// `pageWalk`) does it inside a read-side section; a node detached from the tree is freed only
// once every section that might have seen it has ended: a grace period. This is an epoch scheme
// with no OS calls, so it builds as Embedded Swift:
//
//   - a global epoch, starting at 1, bumped by each `startGracePeriod()`;
//   - one word per reader slot: 0 outside a section, else the epoch the section started in;
//     slot `i < cpuCount` belongs to CPU `i` (the only thread on it writes it, so entering is a
//     plain store and a fence, and nested sections only count), and a few more slots are claimed
//     with a compare-exchange by threads that run on no CPU (a host thread not bound to one);
//   - a grace period that started at stamp `s` is over once every slot is 0 or holds an epoch
//     `>= s`: those sections started after the bump, so after the detach.
//
// Why that is enough (the writer detaches, then bumps, then reads the slots; a reader stores its
// slot, fences, then reads entries): either the writer's read sees the reader's store, and waits
// for the section, or the reader's later loads see the detach, and it can never reach the node.
// A reader that loaded an old epoch and stored it late only makes a writer wait longer. A page
// fault's section skips the fence: it stores its slot under its CPU's MMU lock, which every grace
// period takes and releases between its bump and its reads of the slots (`enterUnderLock`).
// Sections are short: a cursor leaves its section as soon as it holds its subtree root's lock.

import Synchronization

/// One reader slot, alone on its cache line.
@usableFromInline
struct RcuSlot: ~Copyable {
    /// 0 outside a section; otherwise the epoch its outermost section started in.
    @usableFromInline let word = Atomic<UInt64>(0)
    /// How deep the slot's sections nest (CPU slots only; written by the CPU's thread alone, so
    /// a relaxed load and a relaxed store, two plain moves, change it). An atomic, not a plain
    /// `var`, so that changing it is not a modifying access to the whole slot, which a grace
    /// period's read of `word` would overlap (ThreadSanitizer reports that as a Swift access race).
    @usableFromInline let nesting = Atomic<Int>(0)
    let padding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)
}

/// The RCU state of one machine: the epoch and the reader slots (see the file comment). A handle
/// to memory no Swift reference owns: `deallocate()` frees it when the machine goes.
///
/// `@safe`: the epoch word and the `cpuCount + unboundSlots` slot records are allocated by `init`
/// and freed only by the `@unsafe` `deallocate()`, which the machine's state calls when it is
/// destroyed (MachineContext.swift's lifetime statement); until then every copy of the handle
/// points at live memory. Slot indices come from the platform's current CPU (`< cpuCount`) or
/// from the unbound range, so they stay inside the allocation.
@safe @usableFromInline
struct Rcu {
    /// The reader slots beyond the CPUs', for threads that run on none.
    @usableFromInline static let unboundSlots = 16

    @usableFromInline let epoch: UnsafeMutablePointer<Atomic<UInt64>>
    @usableFromInline let slots: UnsafeMutablePointer<RcuSlot>
    @usableFromInline let cpuCount: Int
    /// Called while waiting for a slot or a grace period (the host yields its thread).
    @usableFromInline let relax: CpuRelax?

    init(cpuCount: Int, relax: CpuRelax?) {
        // SAFETY: fresh allocations, each initialised once, in bounds (`i < cpuCount + unboundSlots`).
        unsafe epoch = .allocate(capacity: 1)
        unsafe epoch.initialize(to: Atomic(1))
        unsafe slots = .allocate(capacity: cpuCount + Rcu.unboundSlots)
        for i in 0..<(cpuCount + Rcu.unboundSlots) { unsafe (slots + i).initialize(to: RcuSlot()) }
        self.cpuCount = cpuCount
        self.relax = relax
    }

    /// Frees the state; no section may be open and the handle must not be used afterwards.
    ///
    /// - Safety: called once, by `MachineRef.destroy`, when no copy of the handle is used again.
    @unsafe
    func deallocate() {
        // SAFETY: `init` allocated and initialised exactly these records; the caller's contract
        // makes this the last use of them.
        unsafe slots.deinitialize(count: cpuCount + Rcu.unboundSlots)
        unsafe slots.deallocate()
        unsafe epoch.deinitialize(count: 1)
        unsafe epoch.deallocate()
    }

    // MARK: Read side

    /// Opens a read-side section for a caller on `cpu` (with preemption disabled), or on no CPU
    /// when `cpu` is nil; the section lasts as long as the guard (OSTD `disable_preempt` as the
    /// RCU read lock).
    @inlinable @inline(__always)
    func read(cpu: Int?) -> RcuReadGuard {
        guard let cpu else { return readUnbound() }
        // SAFETY: `cpu` is the caller's current CPU (`< cpuCount`), so `slots + cpu` is its own
        // live record; `nesting` is touched only by that CPU's thread, which is this one, with
        // preemption disabled; `word` and the epoch are atomics.
        let slot = unsafe slots + cpu
        // SAFETY: this CPU's own slot (above); only its thread touches `nesting`.
        let depth = unsafe slot.pointee.nesting.load(ordering: .relaxed)
        if depth == 0 {
            // Release: a writer that reads this word (and so frees what it retired before this
            // section) comes after the previous section's reads, which the store follows.
            unsafe slot.pointee.word.store(epoch.pointee.load(ordering: .relaxed), ordering: .releasing)
            // The slot's store must be visible before the section's loads (see the file comment).
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        }
        // SAFETY: this CPU's own slot (see above); only its thread writes `nesting`.
        unsafe slot.pointee.nesting.store(depth &+ 1, ordering: .relaxed)
        return RcuReadGuard(rcu: self, slot: cpu)
    }

    /// Opens a read-side section for a caller on `cpu` without the fence of `read`: the lock the
    /// caller holds orders the slot's store instead. Every grace period of the machine takes and
    /// releases that lock after it starts and before it is tested (`MachineRef.startGracePeriod`
    /// quiesces every CPU, which takes its MMU lock): if it takes the lock after this caller
    /// releases it, it sees the store; if before, this section's loads see what the writer
    /// detached, and the section's epoch is the new one. A user access opens its fault's section
    /// so, under its CPU's MMU lock. Close it by adopting it into a guard
    /// (`RcuReadGuard(adopting:of:)`).
    ///
    /// - Safety: `cpu` is the caller's current CPU, whose MMU lock (or a lock every grace period
    ///   passes through likewise) the caller holds now and releases after this call.
    @unsafe @inlinable @inline(__always)
    func enterUnderLock(cpu: Int) {
        // SAFETY: `cpu` is the caller's own CPU, as in `read`; `word` and the epoch are atomics.
        let slot = unsafe slots + cpu
        let depth = unsafe slot.pointee.nesting.load(ordering: .relaxed)
        // SAFETY: this CPU's own slot, as above. Relaxed: the lock's release publishes the word
        // (see above).
        if depth == 0 { unsafe slot.pointee.word.store(epoch.pointee.load(ordering: .relaxed), ordering: .relaxed) }
        // SAFETY: this CPU's own slot, whose `nesting` only its thread touches.
        unsafe slot.pointee.nesting.store(depth &+ 1, ordering: .relaxed)
    }

    /// Whether `cpu`'s thread, the caller, is inside a read-side section.
    @inlinable
    func isReading(cpu: Int) -> Bool {
        // SAFETY: `cpu` is the caller's current CPU (`< cpuCount`), its own live record, whose
        // `nesting` only its thread touches.
        unsafe slots[cpu].nesting.load(ordering: .relaxed) > 0
    }

    /// Claims a free unbound slot: the compare-exchange is also the fence the section needs.
    @usableFromInline
    func readUnbound() -> RcuReadGuard {
        var backoff = Backoff(relax: relax)
        while true {
            // SAFETY: the epoch and the unbound slots `cpuCount ..< cpuCount + unboundSlots` are
            // live records of this state (see the type); their words are only used atomically.
            let now = unsafe epoch.pointee.load(ordering: .relaxed)
            for i in cpuCount..<(cpuCount + Rcu.unboundSlots)
            where unsafe slots[i].word.compareExchange(expected: 0, desired: now, ordering: .sequentiallyConsistent).exchanged {
                return RcuReadGuard(rcu: self, slot: i)
            }
            backoff.wait()
        }
    }

    /// Closes the section of `slot` (the guard's `deinit`).
    @inlinable @inline(__always)
    func leave(_ slot: Int) {
        // SAFETY: `slot` is the index the guard was opened with (`read` or `readUnbound`), inside
        // the slot records; a CPU slot's `nesting` is its own thread's, which closes the section.
        let record = unsafe slots + slot
        if slot < cpuCount {
            // SAFETY: a CPU slot, whose `nesting` only its own thread, this one, touches.
            let depth = unsafe record.pointee.nesting.load(ordering: .relaxed) &- 1
            unsafe record.pointee.nesting.store(depth, ordering: .relaxed)
            guard depth == 0 else { return }
        }
        unsafe record.pointee.word.store(0, ordering: .releasing)
    }

    // MARK: Grace periods

    /// Starts a grace period after the caller detached what it will free, and returns its stamp.
    /// A machine starts its grace periods with `MachineRef.startGracePeriod`, which also passes
    /// through every CPU's MMU lock, as `enterUnderLock` needs.
    @usableFromInline
    func startGracePeriod() -> UInt64 {
        // SAFETY: the epoch word is live while the machine's state is (see the type); atomic.
        let stamp = unsafe epoch.pointee.add(1, ordering: .sequentiallyConsistent).newValue
        // Pairs with the reader's fence: either this thread's later reads of the slots see the
        // reader's word, or the reader's later loads see the detach (on x86 the locked add above
        // is such a fence already; this states it for the memory model).
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return stamp
    }

    /// Whether the grace period stamped `stamp` is over: no section that started before it is
    /// still open.
    @usableFromInline
    func isOver(_ stamp: UInt64) -> Bool {
        for i in 0..<(cpuCount + Rcu.unboundSlots) {
            // SAFETY: `i` ranges over the live slot records (see the type); `word` is atomic.
            let word = unsafe slots[i].word.load(ordering: .sequentiallyConsistent)
            if word != 0 && word < stamp { return false }
        }
        return true
    }

    /// Waits until the grace period stamped `stamp` is over (OSTD `synchronize_rcu`). The caller
    /// must hold no section itself and no lock a reader may wait for inside one.
    func wait(for stamp: UInt64) {
        var backoff = Backoff(relax: relax)
        while !isOver(stamp) { backoff.wait() }
    }
}

/// An open read-side section (OSTD's `RcuReadGuard` / preemption guard): entries read through it
/// stay readable until it is dropped, which closes the section.
public struct RcuReadGuard: ~Copyable {
    @usableFromInline let rcu: Rcu
    @usableFromInline let slot: Int

    @inlinable @inline(__always)
    init(rcu: Rcu, slot: Int) {
        self.rcu = rcu
        self.slot = slot
    }

    /// The guard of the section `Rcu.enterUnderLock(cpu:)` opened on `cpu`, which it closes.
    ///
    /// - Safety: that section is open on the caller's CPU `cpu` and no other guard closes it.
    @unsafe @inlinable @inline(__always)
    init(adopting cpu: Int, of rcu: Rcu) {
        self.rcu = rcu
        self.slot = cpu
    }

    @inlinable @inline(__always)
    deinit { rcu.leave(slot) }
}

/// A function a waiting CPU calls to let others run (the host: `sched_yield`).
public typealias CpuRelax = @convention(c) () -> Void

/// Waiting for another CPU: spin a while on plain loads, then give the CPU away (`relax`), so
/// that on an oversubscribed host the thread being waited for gets to run.
@usableFromInline
struct Backoff {
    @usableFromInline var spins = 0
    @usableFromInline let relax: CpuRelax?

    @inlinable
    init(relax: CpuRelax?) { self.relax = relax }

    @inlinable
    mutating func wait() {
        spins += 1
        if spins >= 64, let relax {
            relax()
            spins = 0
        }
    }
}
