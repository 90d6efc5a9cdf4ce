// `SpecAuditor`'s half of the I/O audit (`VmSpaceAuditor.auditIo`): every operation of a user
// reader or writer of an audited space is checked against checks 25–27 (`IoRefinement`).
//
// Around the operation the auditor reads what the checks compare: before a copy, the source's
// bytes (it may overwrite them when source and destination alias); after it, the destination's,
// and for a value access or a fill, the bytes at the cursor. User memory is read as the CPU sees
// it: through its TLB where that still holds a translation (stale until a pending flush is
// dispatched, as the MMU would use it), else the handle's space's page table, and physical memory
// (`IoRefinement.userBytes`); kernel memory comes as the core copied it. A source byte that was not mapped before the copy (the page-fault
// handler mapped it during the copy) is compared with its value after. Nothing is locked while
// the operation runs: a fault handler's cursor operations are audited too, inside it.
//
// Only the handles of the space the auditor is called for are bound-checked (a copy between two
// audited spaces is reported to each, and each checks its own handle); the copy itself is checked
// by each. Kernel readers and writers over host memory have no space and are not audited here.

@_spi(OSTDInternals) import OSTDMemory

extension SpecAuditor {
    public func auditIo(_ operation: VmIoOperation, before: VmIoAuditState, in space: VmSpace,
                        perform: () -> (after: VmIoAuditState, outcome: VmIoOutcome)) {
        var source = operation == .transfer ? Self.sourceBytes(before) : []
        let (after, outcome) = perform()
        let name = Self.describe(operation)
        var found = Self.boundsViolations(operation, before: before, after: after, outcome: outcome, in: space)
            .map { AuditViolation(predicate: "cursorBounds", detail: $0, operation: name) }
        switch operation {
        case .transfer:
            let destination = Self.destinationBytes(before, after, outcome)
            // The source was read up to its first unmapped byte; bytes the copy reached beyond it
            // were mapped meanwhile (a page-fault handler), so they are read now.
            if source.count < destination.count || source.contains(nil), let reader = before.reader,
               let readerSpace = reader.space {
                let later = IoRefinement.userBytes(readerSpace, at: reader.cursor, count: Swift.max(source.count, destination.count))
                source = later.enumerated().map { $0.offset < source.count ? source[$0.offset] ?? $0.element : $0.element }
            }
            found += IoRefinement.transferSpec(before: before, after: after, outcome: outcome, source: source,
                                               destination: destination)
                .map { AuditViolation(predicate: "transferSpec", detail: $0, operation: name) }
        case .readVal, .writeVal, .atomicLoad, .atomicCompareExchange, .fillZeros:
            guard let handle = before.reader ?? before.writer, let handleAfter = after.reader ?? after.writer else {
                found.append(AuditViolation(predicate: "onceSpec", detail: "no handle shown", operation: name))
                break
            }
            let memory = IoRefinement.userBytes(space, at: handle.cursor, count: Self.bytesAccessed(operation, handle, outcome))
            found += IoRefinement.onceSpec(operation, before: handle, after: handleAfter, outcome: outcome, memory: memory)
                .map { AuditViolation(predicate: "onceSpec", detail: $0, operation: name) }
        case .limit, .skip, .split:
            break
        }
        record(Array(found.prefix(5)))
        state.withLock { $0.operations += 1 }
    }

    /// Check 25 on each handle of `space` the operation involves.
    static func boundsViolations(_ operation: VmIoOperation, before: VmIoAuditState, after: VmIoAuditState,
                                 outcome: VmIoOutcome, in space: VmSpace) -> [String] {
        var front: VmIoHandleState? = nil
        if case .split(let handle) = outcome { front = handle }
        var problems: [String] = []
        for (handle, handleAfter) in [(before.reader, after.reader), (before.writer, after.writer)] {
            guard let handle, handle.space === space else { continue }
            guard let handleAfter else {
                problems.append("the handle at \(IoRefinement.hex(handle.cursor)) is missing after the operation")
                continue
            }
            problems += IoRefinement.cursorBounds(operation, before: handle, after: handleAfter, front: front)
        }
        return problems
    }

    /// The reader's first `min(remain, avail)` bytes before a copy, up to the first one that is
    /// not mapped (where the copy would fault unless a handler maps it): bounded by what is
    /// mapped, so a huge copy that faults at once costs nothing.
    static func sourceBytes(_ state: VmIoAuditState) -> [UInt8?] {
        guard let reader = state.reader, let writer = state.writer else { return [] }
        let count = Swift.max(0, Swift.min(reader.remain, writer.remain))
        if let space = reader.space { return IoRefinement.userBytes(space, at: reader.cursor, count: count, mappedPrefix: true) }
        return (reader.bytes ?? []).map { $0 }
    }

    /// The writer's first `r` bytes after a copy that reports `r` (at most `min(remain, avail)`).
    static func destinationBytes(_ before: VmIoAuditState, _ after: VmIoAuditState, _ outcome: VmIoOutcome) -> [UInt8?] {
        guard let reader = before.reader, let writer = before.writer else { return [] }
        let moved: Int = switch outcome {
        case .count(let n): n
        case .failed(.pageFault(_, let copied)): copied
        default: 0
        }
        let count = Swift.max(0, Swift.min(moved, reader.remain, writer.remain))
        if let space = writer.space { return IoRefinement.userBytes(space, at: writer.cursor, count: count) }
        return (after.writer?.bytes ?? []).map { $0 }
    }

    /// How many bytes at the cursor a value access or fill is checked on: the value's size, or the
    /// count a fill reported, never more than the bytes the handle had.
    static func bytesAccessed(_ operation: VmIoOperation, _ handle: VmIoHandleState, _ outcome: VmIoOutcome) -> Int {
        let size: Int = switch (operation, outcome) {
        case (.readVal(let n), _): n
        case (.writeVal(let bytes), _): bytes.count
        case (.fillZeros, .count(let n)): n
        case (.fillZeros, .failed(.pageFault(_, let copied))): copied
        case (.fillZeros, _): 0
        default: 4
        }
        return Swift.max(0, Swift.min(size, handle.remain))
    }

    /// An I/O operation as a violation names it.
    static func describe(_ operation: VmIoOperation) -> String {
        switch operation {
        case .limit(let max): "limit(\(max))"
        case .skip(let count): "skip(\(count))"
        case .split(let count): "split(\(count))"
        case .transfer: "readFallible"
        case .readVal(let size): "readVal(\(size) bytes)"
        case .writeVal(let bytes): "writeVal(\(bytes))"
        case .atomicLoad: "atomicLoad"
        case .atomicCompareExchange(let old, let new): "atomicCompareExchange(\(old), \(new))"
        case .fillZeros(let count): "fillZeros(\(count))"
        }
    }
}
