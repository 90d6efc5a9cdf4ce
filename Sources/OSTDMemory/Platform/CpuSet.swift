// Sets of simulated CPUs (OSTD `cpu::set::{CpuSet, AtomicCpuSet}`).
//
// A machine has at most 64 CPUs, so a set is one word. `AtomicCpuSet` is what a `VmSpace` keeps:
// the CPUs on which it is (or may still be) active, which its TLB flushes must reach.

import Synchronization

/// A set of CPU ids `0 ..< 64` (OSTD `CpuSet`).
@frozen
public struct CpuSet: Hashable, Sendable, Sequence {
    public var bits: UInt64

    @inlinable
    public init(bits: UInt64 = 0) { self.bits = bits }

    /// Every CPU of a machine with `count` CPUs (OSTD `CpuSet::new_full`).
    @inlinable
    public static func full(count: Int) -> CpuSet {
        precondition((1...64).contains(count), "a machine has 1 to 64 CPUs, not \(count)")
        return CpuSet(bits: count == 64 ? .max : (1 << UInt64(count)) - 1)
    }

    @inlinable
    public func contains(_ cpu: Int) -> Bool { bits & CpuSet.bit(cpu) != 0 }

    @inlinable
    public mutating func insert(_ cpu: Int) { bits |= CpuSet.bit(cpu) }

    @inlinable
    public mutating func remove(_ cpu: Int) { bits &= ~CpuSet.bit(cpu) }

    @inlinable
    public var isEmpty: Bool { bits == 0 }

    @inlinable
    public var count: Int { bits.nonzeroBitCount }

    /// The CPUs in ascending order.
    @inlinable
    public func makeIterator() -> Iterator { Iterator(rest: bits) }

    /// Yields the CPUs of a set in ascending order.
    @frozen
    public struct Iterator: IteratorProtocol {
        @usableFromInline var rest: UInt64

        @inlinable
        init(rest: UInt64) { self.rest = rest }

        @inlinable
        public mutating func next() -> Int? {
            guard rest != 0 else { return nil }
            let cpu = rest.trailingZeroBitCount
            rest &= rest - 1
            return cpu
        }
    }

    @inlinable
    static func bit(_ cpu: Int) -> UInt64 {
        precondition((0..<64).contains(cpu), "cpu \(cpu) is out of range 0..<64")
        return 1 << UInt64(cpu)
    }
}

/// A `CpuSet` that CPUs update concurrently (OSTD `AtomicCpuSet`).
public final class AtomicCpuSet: Sendable {
    let word: Atomic<UInt64>

    public init(_ set: CpuSet = CpuSet()) { word = Atomic(set.bits) }

    /// Adds `cpu` (Acquire, as OSTD's `activate`).
    public func add(_ cpu: Int) { word.bitwiseOr(CpuSet.bit(cpu), ordering: .acquiring) }

    /// Removes `cpu` (Relaxed, as OSTD's `activate` does for the previous space).
    public func remove(_ cpu: Int) { word.bitwiseAnd(~CpuSet.bit(cpu), ordering: .relaxed) }

    /// The set now. `dispatch` loads it with Acquire so that page-table changes made before are
    /// visible to every CPU that activates the space afterwards.
    public func load() -> CpuSet { CpuSet(bits: word.load(ordering: .acquiring)) }

    /// Whether `cpu` is in the set now.
    public func contains(_ cpu: Int) -> Bool { load().contains(cpu) }
}
