// The audit of user-space readers and writers: the core's half of checks 25–27 of the
// specification — each operation of a reader or writer registered with an audited space is run
// inside the space auditor's `auditIo` (the types it is shown are in the VmSpace layer,
// `VmSpace/VmIoAuditTypes.swift`, next to the protocol).
//
// Design. `VmSpaceAuditor.auditIo` runs *around* the operation: the auditor is handed the
// operation and the handles' state before it, takes what it needs (the source bytes of a copy,
// which the copy may overwrite when source and destination alias), calls `perform` exactly once
// (which runs the operation and returns the state after and the outcome), then checks. User
// memory is read by the auditor through the space's page table; the core never translates for
// it. Kernel memory (host buffers, frames) has no space, so where a copy has a kernel end the
// core copies the bytes for the auditor: the source's before, the destination's after — only
// when the operation is audited.
//
// Who is told. An operation is reported to the auditor of each distinct audited space among its
// handles: a copy between user handles of two audited spaces is checked by both (each checks its
// own handles' bounds, and both check the copy). Kernel handles (`VmReader<Infallible>` over host
// memory or frames, and their `toFallible` forms) have no space and are never audited; the tests
// cover them.
//
// Cost when off: each operation tests, per handle it involves, whether the handle is user memory
// and its space's auditor is nil (`IoEnd.isAudited`); the operation then runs as before.

extension VmIoOutcome {
    /// The outcome of an operation that returns a byte count.
    init(count result: Result<Int, OSTDError>) {
        switch result {
        case .success(let count): self = .count(count)
        case .failure(let error): self = .failed(error)
        }
    }

    /// The outcome of an operation that returns nothing.
    init(_ result: Result<Void, OSTDError>) {
        switch result {
        case .success: self = .done
        case .failure(let error): self = .failed(error)
        }
    }
}

extension Result where Success == Int, Failure == OSTDError {
    /// The bytes a copy or fill moved: its count, or the count its page fault reports.
    var bytesMoved: Int {
        switch self {
        case .success(let count): count
        case .failure(.pageFault(_, let copied)): copied
        case .failure: 0
        }
    }
}

extension IoEnd {
    /// Whether this is user memory of a space with an auditor: one test of a nil reference for a
    /// user end, none for a kernel end.
    @inlinable var isAudited: Bool {
        guard case .user(let space, _) = self else { return false }
        // SAFETY: the window the end comes from holds a reference on the space while it is used.
        return unsafe space._withUnsafeGuaranteedRef { $0.auditor != nil }
    }

    /// The `count` bytes at a kernel end, copied for an auditor; `nil` for a user end.
    ///
    /// - Precondition: a kernel end has `count` valid bytes at it (at most its window's length).
    func hostBytes(_ count: Int) -> [UInt8]? {
        guard case .host(let pointer) = self else { return nil }
        guard count > 0 else { return [] }
        // SAFETY: the caller passes at most the bytes left in the window the end comes from, which
        // its owner (the host buffer's lender, or the kept frames) keeps valid while it lives.
        return unsafe Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
}

extension IoWindow {
    /// The window as an auditor is shown it, with `bytes` of a kernel window's next bytes.
    func auditState(bytes count: Int? = nil) -> VmIoHandleState {
        // SAFETY: the window's own registration, live while the window retains its space.
        VmIoHandleState(space: here.space, cursor: cursor, remain: length, registration: unsafe record?.range,
                        bytes: count.flatMap { here.hostBytes($0) })
    }
}

/// Which side of an operation a window is on, for the state an auditor is shown.
enum IoRole { case reader, writer }

extension IoWindow {
    /// The window alone as an auditor is shown it, on its side of the operation.
    func auditState(as role: IoRole) -> VmIoAuditState {
        role == .reader ? VmIoAuditState(reader: auditState()) : VmIoAuditState(writer: auditState())
    }

    /// `limit`, shown to the auditors.
    mutating func auditedLimit(_ max: Int, as role: IoRole) {
        runAudited(ioAudits(here)[...], .limit(max: max), before: auditState(as: role)) {
            limit(max)
            return (auditState(as: role), .done)
        }
    }

    /// `skip` (`advance`), shown to the auditors (after its precondition).
    mutating func auditedSkip(_ count: Int, as role: IoRole) {
        runAudited(ioAudits(here)[...], .skip(count: count), before: auditState(as: role)) {
            advance(count)
            return (auditState(as: role), .done)
        }
    }

    /// `split`, shown to the auditors: returns the front window.
    mutating func auditedSplit(_ count: Int, as role: IoRole) -> IoWindow {
        var front: IoWindow? = nil
        runAudited(ioAudits(here)[...], .split(count: count), before: auditState(as: role)) {
            front = splitFront(count)
            return (auditState(as: role), .split(front: front!.auditState()))
        }
        return front.take()!
    }
}

/// The audits an operation on `ends` is reported to: each distinct audited space among them.
func ioAudits(_ ends: IoEnd...) -> [SpaceAudit] {
    var audits: [SpaceAudit] = []
    for end in ends {
        guard let space = end.space, let auditor = space.auditor, !audits.contains(where: { $0.space === space }) else {
            continue
        }
        audits.append(SpaceAudit(auditor: auditor, space: space))
    }
    return audits
}

/// Runs `body` (the operation) inside the auditors of `audits`, nested in order, each shown
/// `operation` and `before`; `body` returns the state after and the outcome.
///
/// - Precondition: each auditor runs the operation exactly once.
func runAudited(_ audits: ArraySlice<SpaceAudit>, _ operation: VmIoOperation, before: VmIoAuditState,
                _ body: () -> (after: VmIoAuditState, outcome: VmIoOutcome)) {
    guard let audit = audits.first else {
        _ = body()
        return
    }
    var ran = false
    audit.auditor.auditIo(operation, before: before, in: audit.space) {
        precondition(!ran, "an auditor ran an I/O operation twice")
        ran = true
        var effect: (after: VmIoAuditState, outcome: VmIoOutcome)? = nil
        runAudited(audits.dropFirst(), operation, before: before) {
            effect = body()
            return effect!
        }
        return effect!
    }
    precondition(ran, "an auditor did not run the I/O operation it was shown")
}

// MARK: The audited forms of the operations

extension VmReader {
    /// `readFallible`, shown to the auditors of both handles' spaces.
    @usableFromInline
    mutating func auditedReadFallible<W: Fallibility>(_ writer: inout VmWriter<W>) throws(OSTDError) -> Int {
        let count = Swift.min(remain, writer.avail)
        let destination = writer.window.here
        let before = VmIoAuditState(reader: window.auditState(bytes: count), writer: writer.window.auditState())
        var result: Result<Int, OSTDError> = .success(0)
        runAudited(ioAudits(window.here, destination)[...], .transfer, before: before) {
            result = Result { () throws(OSTDError) in try copyFallible(&writer) }
            var after = VmIoAuditState(reader: window.auditState(), writer: writer.window.auditState())
            after.writer?.bytes = destination.hostBytes(result.bytesMoved)
            return (after, VmIoOutcome(count: result))
        }
        return try result.get()
    }

    /// `readVal`, shown to the auditor.
    @usableFromInline
    mutating func auditedReadVal<T: BitwiseCopyable>(_: T.Type) throws(OSTDError) -> T {
        var result: Result<T, OSTDError> = .failure(.overflow)
        runAudited(ioAudits(window.here)[...], .readVal(size: MemoryLayout<T>.size),
                   before: VmIoAuditState(reader: window.auditState())) {
            result = Result { () throws(OSTDError) in try readValUnaudited(T.self) }
            // SAFETY: the buffer is `value`'s own bytes, valid inside the closure; `Array` copies them.
            let outcome: VmIoOutcome = switch result {
            case .success(let value): .value(unsafe withUnsafeBytes(of: value) { unsafe Array($0) })
            case .failure(let error): .failed(error)
            }
            return (VmIoAuditState(reader: window.auditState()), outcome)
        }
        return try result.get()
    }
}

extension VmReader where F == Fallible {
    /// `atomicLoad`, shown to the auditor.
    func auditedAtomicLoad() throws(OSTDError) -> UInt32 {
        var result: Result<UInt32, OSTDError> = .failure(.overflow)
        let state = VmIoAuditState(reader: window.auditState())
        runAudited(ioAudits(window.here)[...], .atomicLoad, before: state) {
            result = Result { () throws(OSTDError) in try atomicLoadUnaudited() }
            // SAFETY: the buffer is `value`'s own bytes, valid inside the closure; `Array` copies them.
            let outcome: VmIoOutcome = switch result {
            case .success(let value): .value(unsafe withUnsafeBytes(of: value) { unsafe Array($0) })
            case .failure(let error): .failed(error)
            }
            return (VmIoAuditState(reader: window.auditState()), outcome)
        }
        return try result.get()
    }
}

extension VmWriter {
    /// `writeVal`, shown to the auditor.
    @usableFromInline
    mutating func auditedWriteVal<T: BitwiseCopyable>(_ value: T) throws(OSTDError) {
        var result: Result<Void, OSTDError> = .success(())
        // SAFETY: the buffer is `value`'s own bytes, valid inside the closure; `Array` copies them.
        runAudited(ioAudits(window.here)[...], .writeVal(bytes: unsafe withUnsafeBytes(of: value) { unsafe Array($0) }),
                   before: VmIoAuditState(writer: window.auditState())) {
            result = Result { () throws(OSTDError) in try writeValUnaudited(value) }
            return (VmIoAuditState(writer: window.auditState()), VmIoOutcome(result))
        }
        try result.get()
    }
}

extension VmWriter where F == Fallible {
    /// `fillZeros`, shown to the auditor.
    mutating func auditedFillZeros(_ count: Int) throws(OSTDError) -> Int {
        var result: Result<Int, OSTDError> = .success(0)
        runAudited(ioAudits(window.here)[...], .fillZeros(count: count), before: VmIoAuditState(writer: window.auditState())) {
            result = Result { () throws(OSTDError) in try fillZerosUnaudited(count) }
            return (VmIoAuditState(writer: window.auditState()), VmIoOutcome(count: result))
        }
        return try result.get()
    }

    /// `atomicCompareExchange`, shown to the auditor.
    func auditedAtomicCompareExchange(
        _ reader: borrowing VmReader<Fallible>, old: UInt32, new: UInt32
    ) throws(OSTDError) -> (previous: UInt32, exchanged: Bool) {
        var result: Result<(previous: UInt32, exchanged: Bool), OSTDError> = .failure(.overflow)
        let state = VmIoAuditState(writer: window.auditState())
        runAudited(ioAudits(window.here)[...], .atomicCompareExchange(old: old, new: new), before: state) {
            result = Result { () throws(OSTDError) in try atomicCompareExchangeUnaudited(reader, old: old, new: new) }
            let outcome: VmIoOutcome = switch result {
            case .success(let swap): .exchanged(previous: swap.previous, exchanged: swap.exchanged)
            case .failure(let error): .failed(error)
            }
            return (VmIoAuditState(writer: window.auditState()), outcome)
        }
        return try result.get()
    }
}
