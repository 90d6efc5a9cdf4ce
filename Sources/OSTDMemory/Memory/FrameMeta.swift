// Per-frame metadata types and the type tag that identifies them (OSTD `AnyFrameMeta`,
// `AnyUFrameMeta`, `impl_frame_meta_for!`).
//
// OSTD stores a Rust vtable pointer in each slot and uses it as the type tag. Swift (and Embedded
// Swift in particular) has no vtables to spare for plain values, so the tag is an explicit word:
// the frame's usage, whether it is untyped, and a type id that each metadata type declares. A
// handle's generic parameter says what it believes the tag to be; type-erased handles
// (`AnyFrame`, `UFrame`) check the tag when converted back.
//
// Metadata values are `BitwiseCopyable` and at most 40 bytes: they live in raw memory and are
// dropped by forgetting them. Where OSTD runs `on_drop`, the owning layer (the page table's node
// reclamation, the allocator) tears its frames down explicitly.

/// What a frame is used for (the spec's `PageUsage`).
public enum PageUsage: UInt8, Sendable, CaseIterable {
    /// Free, owned by the allocator.
    case unused = 0
    /// Never handed out: frame 0 and memory the machine keeps for itself.
    case reserved = 1
    /// An ordinary frame handed out by the allocator.
    case frame = 2
    /// A page-table node.
    case pageTable = 3
    /// Holds the metadata region itself.
    case meta = 4
    /// Kernel data (heap slabs and the like).
    case kernel = 5
    /// Memory-mapped I/O.
    case mmio = 6
}

/// The type tag of a metadata slot: usage, untyped bit and type id packed in one word
/// (bits 0–7 usage, bit 8 untyped, bits 32–63 type id). A zero word is the tag of a free frame.
@frozen
public struct FrameMetaTag: Equatable, Sendable {
    public let word: UInt64

    @inlinable
    public init(word: UInt64) { self.word = word }

    /// A tag for metadata type `typeID` with the given usage.
    @inlinable
    public init(usage: PageUsage, typeID: UInt32, untyped: Bool) {
        word = UInt64(usage.rawValue) | (untyped ? 1 << 8 : 0) | UInt64(typeID) << 32
    }

    public var usage: PageUsage { PageUsage(rawValue: UInt8(truncatingIfNeeded: word)) ?? .reserved }
    /// Whether frames with this tag hold raw bytes that may be read, written and mapped to users.
    public var isUntyped: Bool { word & (1 << 8) != 0 }
    public var typeID: UInt32 { UInt32(truncatingIfNeeded: word >> 32) }
}

/// Anything a `Frame` can be parameterised by: a concrete metadata type, or one of the erased
/// markers `DynFrameMeta` / `DynUFrameMeta` (OSTD's `dyn AnyFrameMeta`, `dyn AnyUFrameMeta`).
public protocol AnyFrameMeta {}

/// Marker for untyped metadata: the frame's bytes are plain data (OSTD `AnyUFrameMeta`).
public protocol AnyUFrameMeta: AnyFrameMeta {}

/// A concrete metadata type stored in a frame's slot.
///
/// Conform with a `BitwiseCopyable` struct of at most 40 bytes and give it a tag:
///
///     struct InodeMeta: FrameMeta {
///         static var typeTag: FrameMetaTag { FrameMetaTag(usage: .kernel, typeID: 0x1_0001, untyped: false) }
///         var inode: UInt64
///     }
///
/// Type ids below `0x1_0000` are reserved for this package.
public protocol FrameMeta: AnyFrameMeta, BitwiseCopyable {
    /// The tag written to every slot that holds a value of this type.
    static var typeTag: FrameMetaTag { get }
}

/// A concrete untyped metadata type.
public protocol UFrameMeta: FrameMeta, AnyUFrameMeta {}

/// The erased form of any metadata (`Frame<DynFrameMeta>` is OSTD's `Frame<dyn AnyFrameMeta>`).
public enum DynFrameMeta: AnyFrameMeta {}

/// The erased form of untyped metadata (`Frame<DynUFrameMeta>` is OSTD's `UFrame`).
public enum DynUFrameMeta: AnyUFrameMeta {}

/// The metadata of a plain data frame: nothing but the tag (OSTD's `()` metadata).
@frozen
public struct UntypedMeta: UFrameMeta {
    @inlinable public init() {}
    @inlinable public static var typeTag: FrameMetaTag { FrameMetaTag(usage: .frame, typeID: 1, untyped: true) }
}

/// Static checks of a metadata type's layout (OSTD `check_frame_meta_layout!`).
@inlinable @inline(__always)
func checkFrameMetaLayout<M: FrameMeta>(_: M.Type) {
    precondition(MemoryLayout<M>.size <= MetaSlot.storageSize, "frame metadata is larger than 40 bytes")
    precondition(MemoryLayout<M>.alignment <= MetaSlot.size, "frame metadata alignment exceeds 64")
}
