// Page-table nodes: a node is a frame, with its bookkeeping in the frame's metadata slot (OSTD
// `page_table/node/*`). This file: the metadata; `NodeRef` is the view of a node, the other files
// of this folder allocate, own and tear nodes down.
//
// The 4 KiB page of the frame holds the 512 entries the MMU walks; the bookkeeping lives in the
// frame's metadata slot, as OSTD's `PageTablePageMeta`:
//
//     storage offset 0  lock         UInt32, 0 unlocked / 1 locked, a spin lock (atomic)
//     storage offset 4  nr_children  UInt16, the number of present entries (changed under the lock)
//     storage offset 6  level        UInt8, fixed at allocation
//     storage offset 7  stray        UInt8, set when the node is detached from its parent
//
// Ownership follows OSTD: a parent entry owns its child (the child's handle is forgotten into the
// entry with `intoRaw`), the `PageTable` owns its root, and a detached subtree is owned by the
// `PageTableNode` handle that carries it. Every entry is read and written with atomic loads and
// stores (Acquire/Release when publishing a child), because the MMU, and lock-free walkers, read
// the table concurrently.

/// The metadata of a page-table node (OSTD `PageTablePageMeta`).
@frozen
public struct PageTablePageMeta: FrameMeta {
    public static var typeTag: FrameMetaTag { FrameMetaTag(usage: .pageTable, typeID: 0x10, untyped: false) }

    @usableFromInline var lock: UInt32 = 0
    @usableFromInline var nrChildren: UInt16 = 0
    /// The node's level: 1 holds 4 KiB leaves, 4 is a root.
    public let level: PagingLevel
    @usableFromInline var stray: UInt8 = 0

    @inlinable
    init(level: PagingLevel) { self.level = level }
}
