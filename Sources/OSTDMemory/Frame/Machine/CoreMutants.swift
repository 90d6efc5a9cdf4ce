// Deliberate bugs that the tests switch on, one at a time, to show that the audit catches each of
// them (the audit's mutation tests): a mutant is a known wrong version of
// one line of the core, and a test passes only if the specification notices it.
//
// Debug builds only. `swift test` builds with `DEBUG`; release builds (the benchmarks, the CLI in
// release, the Embedded check) compile none of this, so the hooks cost nothing there. The switch
// lives in the machine's state, so a mutant affects one machine and tests running in parallel on
// other machines never see it.

#if DEBUG
import Synchronization

/// The mutants of the core a test can switch on (`Machine.mutants`). Public, not SPI, because
/// the core's inlinable code tests them; it exists in debug builds only.
public struct CoreMutants: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `protectNext` does not write the leaf that ends exactly at the end of its range.
    public static let protectNextSkipsLastPage = CoreMutants(rawValue: 1 << 0)
    /// `takeNext` takes one reference too many on a tracked leaf's frame (never dropped).
    public static let takeNextLeaksFrameReference = CoreMutants(rawValue: 1 << 1)
    /// `TlbFlusher.dispatchTlbFlush` releases what it kept without flushing any TLB.
    public static let flusherDoesNotFlush = CoreMutants(rawValue: 1 << 2)
    /// A reader is admitted over an active writer.
    public static let readerAdmissionIgnoresWriters = CoreMutants(rawValue: 1 << 3)
    /// `map` writes a 4 KiB leaf one page past the frame it was given.
    public static let mapWritesWrongPaddr = CoreMutants(rawValue: 1 << 4)
    /// Splitting a huge leaf gives the small leaves no write permission.
    public static let splitLosesProperty = CoreMutants(rawValue: 1 << 5)
    /// `Frame::clone` hands out a handle without counting it.
    public static let cloneDoesNotCount = CoreMutants(rawValue: 1 << 6)
    /// `Segment::split` puts the middle one frame late (the front half keeps one frame too many).
    public static let segmentSplitMisplacesMiddle = CoreMutants(rawValue: 1 << 7)
    /// A fallible copy involving user memory copies one byte fewer than it reports (its last).
    public static let writeFallibleCopiesOneByteShort = CoreMutants(rawValue: 1 << 8)
    /// `readVal` moves its cursor past the value even when the read faulted.
    public static let readValAdvancesOnFault = CoreMutants(rawValue: 1 << 9)
    /// Detached page-table nodes are freed at once, without waiting for a grace period. Not in
    /// `all`: the audit runs at quiescent points, where no walker is in flight; the reclamation
    /// test (`CursorConcurrencyTests`) catches it with poisoned nodes.
    public static let reclaimsWithoutGracePeriod = CoreMutants(rawValue: 1 << 10)

    /// Every mutant, with its name.
    public static let all: [(name: String, mutant: CoreMutants)] = [
        ("protectNextSkipsLastPage", .protectNextSkipsLastPage),
        ("takeNextLeaksFrameReference", .takeNextLeaksFrameReference),
        ("flusherDoesNotFlush", .flusherDoesNotFlush),
        ("readerAdmissionIgnoresWriters", .readerAdmissionIgnoresWriters),
        ("mapWritesWrongPaddr", .mapWritesWrongPaddr),
        ("splitLosesProperty", .splitLosesProperty),
        ("cloneDoesNotCount", .cloneDoesNotCount),
        ("segmentSplitMisplacesMiddle", .segmentSplitMisplacesMiddle),
        ("writeFallibleCopiesOneByteShort", .writeFallibleCopiesOneByteShort),
        ("readValAdvancesOnFault", .readValAdvancesOnFault),
    ]
}

extension MachineRef {
    /// Whether `mutant` is switched on for this machine.
    @inlinable
    func hasMutant(_ mutant: CoreMutants) -> Bool {
        // SAFETY: the live context (the lifetime statement); `mutants` is an atomic.
        CoreMutants(rawValue: unsafe state.pointee.mutants.load(ordering: .relaxed)).contains(mutant)
    }
}

extension Machine {
    /// The mutants switched on for this machine (debug builds only; tests of the audit).
    @_spi(OSTDInternals) public var mutants: CoreMutants {
        // SAFETY: this `Machine` keeps its state live; `mutants` is an atomic.
        get { CoreMutants(rawValue: unsafe context.state.pointee.mutants.load(ordering: .relaxed)) }
        set { unsafe context.state.pointee.mutants.store(newValue.rawValue, ordering: .relaxed) }
    }
}
#endif
