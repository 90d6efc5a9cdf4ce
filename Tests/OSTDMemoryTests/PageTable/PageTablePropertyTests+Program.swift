// One random program of the page-table property test: its table, model and trace, the checks that
// record a failure and stop, the loop that decodes each step from one generated integer, and the
// random addresses, ranges, barriers and properties the steps draw (biased towards huge-page
// boundaries). The steps are in the other `PageTablePropertyTests+*.swift` files.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - A program

/// One random program on one table, with its model and its checks.
final class PTProgram {
    /// Window bases: 0; 510 GiB, so that the window crosses from root entry 0 to 1; the top 4 GiB of
    /// user space (root entry 255, next to the kernel half).
    static let windowBases: [UInt64] = [0, 510 << 30, (1 << 47) - (4 << 30)]

    let machine: Machine
    let table: PageTable<UserPtConfig>
    let allowGiant: Bool
    let header: String
    /// Frames outstanding before the program (a kernel table's nodes).
    let baselineFrames: Int
    let model: PageModel
    var units: [FrameUnit] = []
    /// The steps performed so far, as text.
    var trace: [String] = []
    var failures = 0
    /// Addresses the current step touched, probed after it.
    var probes: [UInt64] = []
    /// The generator of the current step's incidental choices.
    var r = SplitMix64(0, salt: SplitMix64.pageTableSalt)

    init(machine: Machine, table: PageTable<UserPtConfig>, windowBase: UInt64, allowGiant: Bool, header: String,
         baselineFrames: Int = 0) {
        self.machine = machine
        self.table = table
        self.allowGiant = allowGiant
        self.header = header
        self.baselineFrames = baselineFrames
        model = PageModel(base: windowBase)
    }

    var window: Range<UInt64> { model.window }

    // MARK: Checking

    func check(_ ok: Bool, _ message: @autoclosure () -> String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard !ok else { return }
        failures += 1
        if failures <= 10 {
            Issue.record("step \(trace.count - 1) [\(trace.last ?? "")]: \(message())", sourceLocation: sourceLocation)
        }
    }

    func recordTrace() {
        let steps = trace.enumerated().map { "  \($0.offset): \($0.element)" }.joined(separator: "\n")
        Issue.record("failing program (\(header)):\n\(steps)")
    }

    // MARK: Running

    /// Runs the steps, checking after each; stops at the first failing step.
    func run(_ codes: [Int]) {
        for code in codes {
            r = SplitMix64(code, salt: SplitMix64.pageTableSalt)
            probes = []
            do throws(PageTableError) {
                try step()
            } catch {
                check(false, "unexpected error \(error)")
            }
            if failures == 0 { verify() }
            if failures > 0 { recordTrace(); return }
        }
    }

    func step() throws(PageTableError) {
        let kind = r.below(100)
        switch kind {
        case 0..<22: try map(level: 1, va: address(align: size4K))
        case 22..<34: try map(level: 2, va: address(align: size2M))
        case 34..<37 where allowGiant: try map(level: 3, va: address(align: size1G))
        case 34..<42: try mapOverMapped()
        case 42..<58: try unmap()
        case 58..<72: try protect()
        case 72..<80: try query()
        case 80..<87: try scan()
        case 87..<98: try batch()
        default:
            trace.append("reclaim retired nodes")
            let retired = machine.retiredCount
            let freed = machine.reclaimRetired(waiting: false)
            check(machine.retiredCount == retired - freed, "reclaimRetired freed a different number than retiredCount fell by")
        }
    }

    // MARK: Random addresses and ranges

    /// An address of the window aligned to `align`, biased towards 1 GiB and 2 MiB boundaries and
    /// the first two gigabytes, so that steps meet and split each other's pages.
    func address(align: UInt64) -> UInt64 {
        let gig = UInt64(r.pick([0, 0, 0, 1, 1, 2, 3]))
        let mid = r.chance(65) ? UInt64(r.pick([0, 1, 2, 3, 255, 256, 510, 511])) : UInt64(r.below(512))
        let low = r.chance(55) ? UInt64(r.pick([0, 1, 2, 255, 510, 511])) : UInt64(r.below(512))
        return alignDown(window.lowerBound + gig << 30 + mid << 21 + low << 12, align)
    }

    /// A non-empty page-aligned range of the window, biased to start or end on huge-page
    /// boundaries and to cover huge pages in part.
    func range() -> Range<UInt64> {
        var start = address(align: size4K)
        var end: UInt64
        switch r.below(6) {
        case 0:
            end = address(align: size4K)
            if end < start { swap(&start, &end) }
        case 1:
            end = start + UInt64(r.pick([1, 1, 2, 3, 511, 512, 513])) * size4K
        case 2:
            start = alignDown(start, size2M)
            if r.chance(50) { start += UInt64(r.below(3)) * size4K }
            end = start + UInt64(1 + r.below(3)) * size2M
            if r.chance(50) { end -= UInt64(r.below(3)) * size4K }
        case 3:
            start = alignDown(start, size1G) + UInt64(r.pick([0, 0, 1, 511])) * size2M
            end = start + size1G
            if r.chance(50) { end -= UInt64(r.pick([1, 512])) * size4K }
        case 4:
            end = start + UInt64(1 + r.below(1 << 19)) * size4K
        default:
            end = r.chance(50) ? window.upperBound : alignUp(start + 1, size1G)
        }
        end = min(end, window.upperBound)
        if end <= start { end = start + size4K }
        return start..<end
    }

    /// The cursor range for working on `range`: exactly it, the window, or its 2 MiB enclosure.
    func barrier(for range: Range<UInt64>) -> Range<UInt64> {
        switch r.below(5) {
        case 0: return window
        case 1: return alignDown(range.lowerBound, size2M)..<min(alignUp(range.upperBound, size2M), window.upperBound)
        default: return range
        }
    }

    func describe(_ barrier: Range<UInt64>, of range: Range<UInt64>) -> String {
        barrier == range ? "cursor on the range" : "cursor on \(hex(barrier))"
    }

    /// A random user property (never `AVAIL1`, which belongs to the table).
    func property() -> PageProperty {
        let flags = PageFlags(rawValue: UInt8(r.below(256)) & 0x9f)   // R W X A D AVAIL2: no AVAIL1, no bit 5
        var prop = PageProperty.user(flags, cache: r.pick(CachePolicy.allCases))
        if r.chance(20) { prop.privilegedFlags.insert(.global) }
        return prop
    }
}
