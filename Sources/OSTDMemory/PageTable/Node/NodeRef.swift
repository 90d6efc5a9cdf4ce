// A non-owning view of a page-table node, as OSTD's `PageTableNodeRef`: its 512 entries and its
// metadata (lock, `nrChildren`, level, stray), read atomically. It only reads; every write goes
// through the `PageTableGuard` that locking the node returns (`PageTableGuard.swift`).

import Synchronization

/// A non-owning view of a node: its entries and its metadata (OSTD `PageTableNodeRef`).
@frozen @usableFromInline
struct NodeRef: Equatable {
    /// The node's 512 entries in host memory (the linear mapping of its frame).
    @usableFromInline let entries: UnsafeMutablePointer<Atomic<UInt64>>
    /// The node's metadata storage.
    @usableFromInline let meta: UnsafeMutableRawPointer

    @inlinable @inline(__always)
    init(_ paddr: Paddr, _ context: MachineRef) {
        // SAFETY: `paddr` is a page-table node's frame inside physical memory; its page holds 512
        // eight-byte entries that are only accessed atomically.
        entries = context.pointer(to: paddr).assumingMemoryBound(to: Atomic<UInt64>.self)
        meta = context.slot(of: paddr).storage
    }

    @inlinable @inline(__always)
    static func == (a: NodeRef, b: NodeRef) -> Bool { a.entries == b.entries }

    /// The node's physical address.
    @inlinable @inline(__always)
    func paddr(_ context: MachineRef) -> Paddr {
        Paddr(UInt64(UnsafeMutableRawPointer(entries) - context.memoryBase))
    }

    // MARK: Entries

    /// Reads entry `index` (Acquire: a child published by another CPU is fully initialised).
    /// Without the node's lock the caller is in a read-side section, or owns the node.
    @inlinable @inline(__always)
    func read(_ index: Int) -> PageTableEntry {
        let raw = (entries + index).pointee.load(ordering: .acquiring)
        #if DEBUG
        if _slowPath(raw == PoisonReads.poison) { PoisonReads.count.add(1, ordering: .relaxed) }
        #endif
        return PageTableEntry(raw: raw)
    }

    // MARK: Metadata

    @inlinable @inline(__always)
    var lockWord: UnsafeMutablePointer<Atomic<UInt32>> {
        // SAFETY: offset 0 of the slot storage is the 4-byte aligned lock word of
        // `PageTablePageMeta`, only ever accessed atomically.
        meta.assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// The number of present entries (OSTD `nr_children`).
    @inlinable @inline(__always)
    var nrChildren: Int { Int(meta.load(fromByteOffset: 4, as: UInt16.self)) }

    /// The node's level.
    @inlinable @inline(__always)
    var level: PagingLevel { meta.load(fromByteOffset: 6, as: UInt8.self) }

    /// Whether the node has been detached from the tree (OSTD `stray`).
    @inlinable @inline(__always)
    var isStray: Bool { meta.load(fromByteOffset: 7, as: UInt8.self) != 0 }

    // MARK: Lock

    /// Takes the node's lock, spinning and then yielding while another thread holds it (OSTD
    /// `PageTableNodeRef::lock`); the guard releases it.
    @inlinable @inline(__always)
    func lock(_ context: MachineRef) -> PageTableGuard {
        if _slowPath(!lockWord.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged) {
            lockContended(context)
        }
        // SAFETY: the lock was just taken, by this thread, and the new guard is its only owner.
        return unsafe PageTableGuard(assumingLocked: self)
    }

    @usableFromInline @inline(never)
    func lockContended(_ context: MachineRef) {
        var backoff = Backoff(relax: context.rcu.relax)
        repeat {
            while lockWord.pointee.load(ordering: .relaxed) != 0 { backoff.wait() }
        } while !lockWord.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged
    }

    /// Takes the node's lock if it is free, without waiting.
    @inlinable @inline(__always)
    func tryLock() -> PageTableGuard? {
        guard lockWord.pointee.compareExchange(expected: 0, desired: 1, ordering: .acquiring).exchanged else { return nil }
        // SAFETY: as in `lock`.
        return unsafe PageTableGuard(assumingLocked: self)
    }

    /// Whether some thread holds the lock (for tests and audits).
    @_spi(OSTDInternals) public var isLocked: Bool { lockWord.pointee.load(ordering: .relaxed) != 0 }
}
