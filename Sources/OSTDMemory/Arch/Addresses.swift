// Physical and virtual addresses as distinct types.
//
// OSTD uses `usize` for both `Paddr` and `Vaddr`; a Swift port can do better for free: the two are
// separate wrappers over `UInt64`, so a physical address can never be passed where a virtual one
// is expected. Both share their arithmetic through `MemoryAddress` and print as `0x…` hex, the
// way kernel messages show them.

/// What physical and virtual addresses have in common: a 64-bit value with alignment checks and
/// byte-offset arithmetic.
public protocol MemoryAddress: RawRepresentable, Hashable, Comparable, Sendable, BitwiseCopyable,
    CustomStringConvertible where RawValue == UInt64 {
    init(rawValue: UInt64)
}

extension MemoryAddress {
    /// The address with the given value.
    @inlinable @inline(__always)
    public init(_ value: UInt64) { self.init(rawValue: value) }

    @inlinable @inline(__always)
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Whether the address is a multiple of `alignment` (a power of two).
    @inlinable @inline(__always)
    public func isAligned(to alignment: Int) -> Bool { rawValue & UInt64(alignment - 1) == 0 }

    /// The address `bytes` further on. Traps on overflow.
    @inlinable @inline(__always)
    public static func + (lhs: Self, bytes: Int) -> Self { Self(rawValue: lhs.rawValue + UInt64(bytes)) }

    /// The distance in bytes from `rhs` to `lhs`. Traps if `rhs > lhs`.
    @inlinable @inline(__always)
    public static func - (lhs: Self, rhs: Self) -> Int { Int(lhs.rawValue - rhs.rawValue) }

    /// `0x` followed by the lowercase hex digits.
    public var description: String { "0x" + String(rawValue, radix: 16) }
}

/// A physical address in the simulated machine (`0 ..< machine.memorySize`).
@frozen
public struct Paddr: MemoryAddress {
    public var rawValue: UInt64

    @inlinable @inline(__always)
    public init(rawValue: UInt64) { self.rawValue = rawValue }
}

/// A virtual address. Used by the page table and `VmSpace` layers.
@frozen
public struct Vaddr: MemoryAddress {
    public var rawValue: UInt64

    @inlinable @inline(__always)
    public init(rawValue: UInt64) { self.rawValue = rawValue }
}
