// Physical and virtual addresses as distinct types.
//
// OSTD uses `usize` for both `Paddr` and `Vaddr`; a Swift port can do better for free: the two are
// separate wrappers over `UInt64`, so a physical address can never be passed where a virtual one
// is expected. Both print as `0x…` hex, the way kernel messages show them.

/// A physical address in the simulated machine (`0 ..< machine.memorySize`).
@frozen
public struct Paddr: RawRepresentable, Hashable, Comparable, Sendable, BitwiseCopyable {
    public var rawValue: UInt64

    @inlinable @inline(__always)
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    @inlinable @inline(__always)
    public init(_ value: UInt64) { self.rawValue = value }

    @inlinable @inline(__always)
    public static func < (lhs: Paddr, rhs: Paddr) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Whether the address is a multiple of `alignment` (a power of two).
    @inlinable @inline(__always)
    public func isAligned(to alignment: Int) -> Bool { rawValue & UInt64(alignment - 1) == 0 }

    /// The address `bytes` further on. Traps on overflow.
    @inlinable @inline(__always)
    public static func + (lhs: Paddr, bytes: Int) -> Paddr { Paddr(lhs.rawValue + UInt64(bytes)) }

    /// The distance in bytes from `rhs` to `lhs`. Traps if `rhs > lhs`.
    @inlinable @inline(__always)
    public static func - (lhs: Paddr, rhs: Paddr) -> Int { Int(lhs.rawValue - rhs.rawValue) }
}

/// A virtual address. Used by the page table and `VmSpace` layers.
@frozen
public struct Vaddr: RawRepresentable, Hashable, Comparable, Sendable, BitwiseCopyable {
    public var rawValue: UInt64

    @inlinable @inline(__always)
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    @inlinable @inline(__always)
    public init(_ value: UInt64) { self.rawValue = value }

    @inlinable @inline(__always)
    public static func < (lhs: Vaddr, rhs: Vaddr) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Whether the address is a multiple of `alignment` (a power of two).
    @inlinable @inline(__always)
    public func isAligned(to alignment: Int) -> Bool { rawValue & UInt64(alignment - 1) == 0 }

    /// The address `bytes` further on. Traps on overflow.
    @inlinable @inline(__always)
    public static func + (lhs: Vaddr, bytes: Int) -> Vaddr { Vaddr(lhs.rawValue + UInt64(bytes)) }

    /// The distance in bytes from `rhs` to `lhs`. Traps if `rhs > lhs`.
    @inlinable @inline(__always)
    public static func - (lhs: Vaddr, rhs: Vaddr) -> Int { Int(lhs.rawValue - rhs.rawValue) }
}

extension Paddr: CustomStringConvertible {
    public var description: String { hexString(rawValue) }
}

extension Vaddr: CustomStringConvertible {
    public var description: String { hexString(rawValue) }
}

/// `0x` followed by the lowercase hex digits of `value`.
@usableFromInline
func hexString(_ value: UInt64) -> String {
    "0x" + String(value, radix: 16)
}
