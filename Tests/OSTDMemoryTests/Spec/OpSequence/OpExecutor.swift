// Runs `SpecOp` programs on an audited space (`SpecAuditor`): every cursor operation and
// ownership change is checked as it happens, and the whole state (structure, metadata, reference
// accounting, TLB ⊆ PT) after every `quiescentEvery` ops and at the end, when the space is
// quiescent. An op whose precondition does not hold is skipped, as vostd's `op_pre` filters its
// commands. The first violation stops the program.
//
// Frames, segments, readers and writers are held in boxes (they are not copyable); a raw
// reference would be invisible to the obligation ledger, so `intoRaw` is only ever undone at
// once. When a program ends, everything it holds is dropped and the space emptied, and the final
// state is audited too: a leak shows there.

@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

/// A frame or segment a program holds (they are not copyable, so arrays hold boxes).
final class Box<Value: ~Copyable> {
    var value: Value?
    init(_ value: consuming Value) { self.value = consume value }
}

/// A live reader or writer of a program.
final class IoHandleBox {
    var reader: VmReader<Fallible>?
    var writer: VmWriter<Fallible>?
    init(reader: consuming VmReader<Fallible>) { self.reader = consume reader }
    init(writer: consuming VmWriter<Fallible>) { self.writer = consume writer }
}

/// One program's machine, audited space and held resources.
final class OpExecutor {
    /// Where page numbers `0 ..< 1000` start (1 GiB): 16 KiB apart, 16 MiB in all.
    static let window = Vaddr(0x4000_0000)
    /// Where the two 1 GiB slots start (page numbers from 1000 land in them).
    static let gigaBase = Vaddr(0x80_0000_0000)
    /// The whole-state checks run after every this many ops (and at the end): they walk every
    /// metadata slot and cost most of a step; each cursor operation and ownership change is
    /// checked as it happens regardless.
    static let quiescentEvery = 4
    /// The `MemView` predicates are checked at the end of a program whose live readers and
    /// writers lie within this many bytes of each other.
    static let memViewSpan = 1 << 20
    /// Readers and writers start at one of the first this many page numbers, so that they meet
    /// one another (and the admission rules are exercised) often.
    static let handlePages = 24

    let machine: Machine
    let kernel: PageTable<KernelPtConfig>
    let space: VmSpace
    let auditor = SpecAuditor()
    /// The kernel table's part of the quiescent checks: the ops never change the kernel table,
    /// so it is taken once (the end of a program checks it afresh).
    let kernelAudit: KernelTableAudit
    var frames: [Box<Frame<UntypedMeta>>] = []
    var segments: [Box<Segment<UntypedMeta>>] = []
    var handles: [IoHandleBox] = []
    /// The ops run so far (skipped ones included), for the report.
    var trace: [SpecOp] = []
    /// Ops executed (not skipped).
    var executed = 0
    /// Whether the `MemView` predicates were checked at the end.
    var checkedMemViews = false

    init(mutants: CoreMutants = []) throws {
        machine = try Machine.host(memory: 8 << 20, cpus: 2, auditor: auditor)
        machine.mutants = mutants
        kernel = try PageTable.newKernelPageTable(machine: machine)
        space = try VmSpace(kernelPageTable: kernel, auditor: auditor)
        space.activate(on: 0)
        kernelAudit = KernelTableAudit(kernel)
    }

    /// Runs `codes` as ops; returns the violations that stopped it (empty when none did).
    func run(_ codes: [Int]) -> [AuditViolation] {
        for code in codes {
            let op = SpecOp(code: code)
            trace.append(op)
            if execute(op) { executed += 1 }
            let quiescent = trace.count % OpExecutor.quiescentEvery == 0
            let found = auditor.violations + (quiescent ? auditor.checkQuiescent(space, kernel: kernelAudit, after: "\(op)") : [])
            if !found.isEmpty { return abandon(found) }
        }
        // The `MemView` layer while the program's readers and writers are alive (check 28), when
        // they lie within `memViewSpan` of each other: the model's predicates are quadratic in
        // the leaves of its views (they decide "for all va" on every leaf boundary).
        let owner = space.ownerSnapshot
        let ranges = (owner.readers + owner.writers).map(\.range)
        if let low = ranges.map(\.lowerBound).min(), let high = ranges.map(\.upperBound).max(),
           high - low <= OpExecutor.memViewSpan {
            checkedMemViews = true
            let views = VmSpaceOwnerModel.memViewViolations(space: space).map {
                AuditViolation(predicate: "memViewWf", detail: $0, operation: "the end of the program")
            }
            if !views.isEmpty { return abandon(views) }
        }
        finish()
        let found = auditor.checkQuiescent(space, kernel: kernel, after: "the end of the program")
            + (machine.cleanInv() ? [] : [AuditViolation(predicate: "cleanInv", detail: "obligations remain")])
        return found.isEmpty ? [] : abandon(found)
    }

    /// Keeps the broken machine alive forever (a corrupted table would crash its teardown).
    func abandon(_ found: [AuditViolation]) -> [AuditViolation] {
        _ = Unmanaged.passRetained(self)
        return found
    }

    // MARK: Addresses

    /// The address page number `page` stands for.
    func address(_ page: Int) -> Vaddr {
        page < 1000 ? OpExecutor.window + page * 4 * pageSize
            : OpExecutor.gigaBase + (page - 1000) % 12 * (1 << 21) + (page % 3) * pageSize
    }

    /// `count` pages from page number `page`, clipped to the end of its region.
    func range(_ page: Int, _ count: Int) -> Range<Vaddr> {
        let start = address(page)
        let end = page < 1000 ? OpExecutor.window + 4000 * pageSize : OpExecutor.gigaBase + (2 << 30)
        return start..<min(end, start + count * pageSize)
    }

    // MARK: Ops

    /// Runs `op`; `false` when its precondition did not hold and it was skipped.
    func execute(_ op: SpecOp) -> Bool {
        switch op {
        case .allocFrame, .cloneFrame, .dropFrame, .frameIntoRawFromRaw,
             .allocSegment, .splitSegment, .sliceSegment, .dropSegment:
            return executeFrameOp(op)
        case .createReader, .createWriter, .read, .write, .splitHandle, .dispose, .reactivate, .remove, .writeToRead, .copy:
            return executeIoOp(op)
        default:
            return (try? executeCursorOp(op)) ?? false
        }
    }

    func executeFrameOp(_ op: SpecOp) -> Bool {
        switch op {
        case .allocFrame:
            guard let frame = try? FrameAllocOptions().allocFrame(in: machine) else { return false }
            frames.append(Box(frame))
        case .cloneFrame(let i) where !frames.isEmpty:
            frames.append(Box(frames[i % frames.count].value!.clone()))
        case .dropFrame(let i) where !frames.isEmpty:
            frames.remove(at: i % frames.count).value = nil
        case .frameIntoRawFromRaw(let i) where !frames.isEmpty:
            let box = frames[i % frames.count]
            let paddr = box.value.take()!.intoRaw()
            // SAFETY: `paddr` is the reference `intoRaw` just forgot, restored exactly once.
            box.value = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine)
        case .allocSegment(let n):
            guard let segment = try? FrameAllocOptions().allocSegment(n, in: machine) else { return false }
            segments.append(Box(segment))
        case .splitSegment(let i, let at) where !segments.isEmpty && (segments[i % segments.count].value?.count ?? 0) > at:
            let back = segments[i % segments.count].value!.split(at: at * pageSize)
            segments.append(Box(back))
        case .sliceSegment(let i, let from) where !segments.isEmpty && (segments[i % segments.count].value?.count ?? 0) > from:
            let box = segments[i % segments.count]
            let size = box.value?.size ?? 0
            segments.append(Box(box.value!.slice(from * pageSize..<size)))
        case .dropSegment(let i) where !segments.isEmpty:
            segments.remove(at: i % segments.count).value = nil
        default:
            return false
        }
        return true
    }

    func executeCursorOp(_ op: SpecOp) throws -> Bool {
        switch op {
        case .map(let page, let count, let writable):
            var cursor = try space.cursorMut(range(page, count))
            while cursor.virtAddr < range(page, count).upperBound {
                guard let frame = try? FrameAllocOptions().allocFrame(in: machine) else { return true }
                if let failure = cursor.tryMap(MappedItem(frame: frame, property: .user(writable ? .rw : .r))) {
                    _ = consume failure
                    return true
                }
            }
        case .mapHuge(let slot):
            let start = OpExecutor.window + slot * (1 << 21)
            guard let segment = try? FrameAllocOptions().allocSegment(512, in: machine) else { return false }
            var cursor = try space.cursorMut(start..<(start + (1 << 21)))
            _ = cursor.tryMap(MappedItem(hugePage: segment, property: .user(.rw)))
        case .mapGiga(let slot):
            let start = OpExecutor.gigaBase + slot * (1 << 30)
            var cursor = try space.cursorMut(start..<(start + (1 << 30)))
            // SAFETY: untracked memory that no op ever reads or writes (the ops touch the window only).
            _ = cursor.tryMap(unsafe MappedItem(untracked: Paddr(UInt64(slot) << 30), level: 3, property: .user(.rw)))
        case .query(let page):
            var cursor = try space.cursor(range(page, 1))
            _ = try cursor.query()
        case .findNext(let page, let count):
            var cursor = try space.cursor(range(page, count))
            _ = cursor.findNext(range(page, count).count)
        case .jump(let page, let to):
            var cursor = try space.cursor(range(page, 64))
            try? cursor.jump(address(page) + to * pageSize)
        case .takeNext(let page, let count):
            var cursor = try space.cursorMut(range(page, count))
            if let fragment = cursor.takeNext(range(page, count).count) { _ = cursor.flusher.issueTlbFlush(removing: fragment) }
            cursor.flusher.dispatchTlbFlush()
        case .protectNext(let page, let count, let writable):
            var cursor = try space.cursorMut(range(page, count))
            if let done = cursor.protectNext(range(page, count).count, property: { Self.setWritable(&$0, writable) }) {
                cursor.flusher.issueTlbFlush(.range(done))
            }
            cursor.flusher.dispatchTlbFlush()
        case .protect(let page, let count, let writable):
            var cursor = try space.cursorMut(range(page, count))
            _ = try cursor.tryProtect(range(page, count).count) { Self.setWritable(&$0, writable) }
        case .unmap(let page, let count):
            var cursor = try space.cursorMut(range(page, count))
            _ = try cursor.tryUnmap(range(page, count).count)
        case .activate(let cpu):
            space.activate(on: cpu)
        case .access(let page, let cpu):
            machine.withCpu(cpu) {
                _ = try? space.withReader(at: address(page % 1000), count: 1) { try $0.readVal(UInt8.self) }
            }
        case .takeWithoutDispatch(let page):
            // A removal seen through a stale TLB entry until the flush is dispatched.
            var cursor = try space.cursorMut(range(page % 1000, 1))
            guard let fragment = cursor.takeNext(pageSize) else { return false }
            cursor.flusher.issueTlbFlushWith(.single(fragment.va), keeping: fragment)
            _ = try? space.withReader(at: address(page % 1000), count: 1) { try $0.readVal(UInt8.self) }
            cursor.flusher.dispatchTlbFlush()
        default:
            return false
        }
        return true
    }

    static func setWritable(_ property: inout PageProperty, _ writable: Bool) {
        if writable { property.flags.insert(.w) } else { property.flags.remove(.w) }
    }

    func executeIoOp(_ op: SpecOp) -> Bool {
        switch op {
        case .createReader(let page, let bytes):
            guard let reader = try? space.createReader(address(page % OpExecutor.handlePages) + page % 7, bytes) else { return false }
            handles.append(IoHandleBox(reader: reader))
        case .createWriter(let page, let bytes):
            guard let writer = try? space.createWriter(address(page % OpExecutor.handlePages) + page % 5, bytes) else { return false }
            handles.append(IoHandleBox(writer: writer))
        case .read(let h) where !handles.isEmpty:
            let box = handles[h % handles.count]
            guard (box.reader?.remain ?? 0) > 0 else { return false }
            _ = try? box.reader?.readVal(UInt8.self)
        case .write(let h, let byte) where !handles.isEmpty:
            let box = handles[h % handles.count]
            guard (box.writer?.avail ?? 0) > 0 else { return false }
            _ = try? box.writer?.writeVal(byte)
        case .splitHandle(let h, let bytes) where !handles.isEmpty:
            let box = handles[h % handles.count]
            if (box.reader?.remain ?? 0) > bytes, let front = box.reader?.split(bytes) {
                handles.append(IoHandleBox(reader: front))
            } else if (box.writer?.avail ?? 0) > bytes, let front = box.writer?.split(bytes) {
                handles.append(IoHandleBox(writer: front))
            } else { return false }
        case .dispose(let h) where !handles.isEmpty:
            let box = handles[h % handles.count]
            if box.reader != nil { space.disposeReader(&box.reader!) } else { space.disposeWriter(&box.writer!) }
        case .reactivate(let h) where !handles.isEmpty:
            let box = handles[h % handles.count]
            if box.reader != nil { try? space.activateReader(&box.reader!) } else { try? space.activateWriter(&box.writer!) }
        case .remove(let h) where !handles.isEmpty:
            remove(handles.remove(at: h % handles.count))
        case .writeToRead(let h) where !handles.isEmpty && handles[h % handles.count].writer != nil:
            let box = handles[h % handles.count]
            box.reader = box.writer.take()!.writeToRead()
        case .copy(let from, let to) where !handles.isEmpty:
            let (source, target) = (handles[from % handles.count], handles[to % handles.count])
            guard source !== target, source.reader != nil, target.writer != nil else { return false }
            _ = try? source.reader!.readFallible(&target.writer!)
        default:
            return false
        }
        return true
    }

    func remove(_ box: IoHandleBox) {
        if let reader = box.reader.take() { space.removeReader(reader) }
        if let writer = box.writer.take() { space.removeWriter(writer) }
    }

    /// Drops everything the program holds and empties the space.
    func finish() {
        handles.forEach(remove)
        handles = []
        frames = []
        segments = []
        for region in [OpExecutor.window..<(OpExecutor.window + (1 << 24)), OpExecutor.gigaBase..<(OpExecutor.gigaBase + (2 << 30))] {
            if var cursor = try? space.cursorMut(region) { _ = try? cursor.tryUnmap(region.count) }
        }
    }
}

extension Range where Bound == Vaddr {
    /// The bytes the range covers.
    var count: Int { upperBound - lowerBound }
}
