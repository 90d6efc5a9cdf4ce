// The frame layer's side of the auditor: `SpecAuditor` as the core's `FrameAuditor`. Pass the
// same auditor to `Machine(…, auditor:)` and to the machine's spaces, and every frame operation
// is checked against checks 19–24 and 32 (`FrameRefinement`), with the mapped frames known from
// the spaces' audited cursor operations (`MappedFrameIndex`).

@_spi(OSTDInternals) import OSTDMemory

extension SpecAuditor: FrameAuditor {
    public func didPerform(_ operation: FrameOperation, outcome: FrameOperationOutcome,
                           before: [FrameSlotState], after: [FrameSlotState], machine: FrameAuditContext) {
        let found = FrameRefinement.violations(
            operation, outcome: outcome, before: before, after: after, frameCount: machine.frameCount,
            pathsInPt: pathsInPt,
            cachedTranslations: {
                (0..<machine.cpuCount).flatMap { cpu in machine.tlbEntries(cpu: cpu).map { (cpu, $0) } }
            })
        let name = Self.describe(operation, outcome)
        record(found.prefix(5).map { AuditViolation(predicate: $0.predicate, detail: $0.detail, operation: name) })
        state.withLock { $0.operations += 1 }
    }

    /// The seeds' `paths_in_pt(paddr).len()` over the spaces this auditor audits: how many of
    /// their tracked leaves map the frame at `paddr` now.
    public func pathsInPt(_ paddr: Paddr) -> Int {
        MappedFrameIndex.pathsInPt(paddr, candidates: state.withLock { $0.mapped.candidates(for: paddr) })
    }

    /// A frame operation as a violation names it.
    static func describe(_ operation: FrameOperation, _ outcome: FrameOperationOutcome) -> String {
        let name = switch operation {
        case .fromUnused(let paddr): "Frame.fromUnused(\(paddr))"
        case .uniqueFromUnused(let paddr): "UniqueFrame.fromUnused(\(paddr))"
        case .fromInUse(let paddr): "Frame.fromInUse(\(paddr))"
        case .clone(let paddr): "Frame(\(paddr)).clone()"
        case .drop(let paddr): "drop Frame(\(paddr))"
        case .segmentFromUnused(let range): "Segment.fromUnused(\(range.lowerBound)..<\(range.upperBound))"
        case .segmentClone(let range): "Segment(\(range.lowerBound)..<\(range.upperBound)) clone"
        case .segmentSplit(let range, let offset, _, _): "Segment(\(range.lowerBound)..<\(range.upperBound)).split(\(offset))"
        case .segmentDrop(let range): "drop Segment(\(range.lowerBound)..<\(range.upperBound))"
        case .uniqueDrop(let paddr): "drop UniqueFrame(\(paddr))"
        case .uniqueTryFrom(let paddr): "UniqueFrame.tryFrom(\(paddr))"
        case .entryReleased(let paddr): "page-table entry's reference to \(paddr) released"
        }
        if case .refused(let error) = outcome { return "\(name) -> \(error)" }
        return name
    }
}
