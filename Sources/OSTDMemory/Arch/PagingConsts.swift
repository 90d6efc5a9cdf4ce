// Paging constants of x86-64 that the frame layer needs (OSTD `mm/mod.rs`, `arch/x86/mm`).
//
// Frames are 4 KiB base pages; every frame has one 64-byte metadata slot. The page-table layer
// adds the per-level constants (512 entries, 4 levels) on top of these.

/// The size of a base page and of every frame: 4 KiB (OSTD `PAGE_SIZE`).
@inlinable public var pageSize: Int { 4096 }

/// `log2(pageSize)`.
@inlinable public var pageShift: Int { 12 }

/// A paging level: 1 is the leaf level of 4 KiB pages (OSTD `PagingLevel`).
public typealias PagingLevel = UInt8
