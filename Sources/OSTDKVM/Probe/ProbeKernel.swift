// The probe kernel's memory: a few frames of the machine under test, mapped with the project's
// own kernel page table (root entries 256–511, which every user table of that kernel table
// shares), at the top 2 GiB of the address space:
//
//     page  0        code                 supervisor r-x
//     page  1        GDT, TSS, exception record   supervisor rw-
//     page  2        IDT                  supervisor rw-
//     pages 3–4      kernel stack         supervisor rw-
//     page  5        code again           user r-x   (the CPL-3 probes run here)
//     page  6        user stack           user rw-
//     pages 7 ...    probe descriptors, then results   user rw-
//
// The descriptors and results are user pages so that CPL-3 probes can use them; supervisor
// accesses to them are allowed because SMAP is never turned on (see `HardwareCheck`). The frames
// are one segment, unmapped and released by `unmap()`.

#if os(Linux)
@_spi(OSTDInternals) import OSTDMemory

/// Where the probe kernel lives and how it is laid out.
struct ProbeLayout {
    /// The first page: 0xffff_ffff_8000_0000, so that absolute addresses fit a signed disp32.
    static var base: UInt64 { 0xffff_ffff_8000_0000 }
    /// Probes per run of the guest.
    static var batch: Int { 4096 }
    static var codePage: Int { 0 }
    static var systemPage: Int { 1 }
    static var idtPage: Int { 2 }
    static var kernelStackTop: Int { 5 }
    static var userCodePage: Int { 5 }
    static var userStackPage: Int { 6 }
    static var descriptorPage: Int { 7 }
    static var descriptorPages: Int { batch * ProbeDescriptor.size / pageSize }
    static var resultPage: Int { descriptorPage + descriptorPages }
    static var resultPages: Int { batch * ProbeResultSlot.size / pageSize }
    static var pages: Int { resultPage + resultPages }
    /// Offsets inside the system page.
    static var gdtOffset: Int { 0 }
    static var gdtLimit: Int { 0x4f }
    static var tssOffset: Int { 0x800 }
    static var exceptionRecordOffset: Int { 0xf00 }

    static func va(page: Int, offset: Int = 0) -> UInt64 { base + UInt64(page * pageSize + offset) }
}

/// The probe kernel's frames, mapped into a kernel page table.
final class ProbeKernel {
    let machine: Machine
    let kernelPageTable: PageTable<KernelPtConfig>
    let program: ProbeProgram
    /// The frames: one per page except the user code page (which maps page 0's frame again).
    private var frames: Segment<UntypedMeta>?
    let firstFrame: Paddr
    private var isMapped = false

    /// Allocates, fills and maps the probe kernel.
    ///
    /// - Throws: `guest` when the machine has no room for it or the range is already mapped.
    init(machine: Machine, kernelPageTable: PageTable<KernelPtConfig>) throws(KvmError) {
        self.machine = machine
        self.kernelPageTable = kernelPageTable
        program = ProbeProgram(exceptionRecord: Int32(truncatingIfNeeded: Int64(bitPattern:
            ProbeLayout.va(page: ProbeLayout.systemPage, offset: ProbeLayout.exceptionRecordOffset))))
        let segment: Segment<UntypedMeta>
        do {
            segment = try FrameAllocOptions().allocSegment(ProbeLayout.pages, in: machine)
        } catch {
            throw .guest("no room for the probe kernel's \(ProbeLayout.pages) frames: \(error)")
        }
        firstFrame = segment.paddr
        frames = consume segment
        isMapped = true
        writeCode()
        writeSystemTables()
        try mapPages()
    }

    /// The physical address of the frame behind `page`.
    func paddr(page: Int) -> Paddr {
        firstFrame + (page == ProbeLayout.userCodePage ? ProbeLayout.codePage : page) * pageSize
    }

    /// A host pointer to `count` bytes of `page` at `offset` (marked written).
    func pointer(page: Int, offset: Int = 0, count: Int) -> UnsafeMutableRawPointer {
        machine.pointer(to: paddr(page: page) + offset, count: count)
    }

    private func writeCode() {
        let code = pointer(page: ProbeLayout.codePage, count: pageSize)
        // SAFETY: `code` is this kernel's own code frame, 4 KiB, and the program fits in it.
        code.initializeMemory(as: UInt8.self, repeating: 0xcc, count: pageSize)
        program.bytes.withUnsafeBytes { code.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }

    /// The GDT (Linux's layout), the TSS (RSP0 = the kernel stack) and the IDT (interrupt gates;
    /// `int3` callable from ring 3, though the loop ends with `ud2`).
    private func writeSystemTables() {
        let system = pointer(page: ProbeLayout.systemPage, count: pageSize)
        let gdt: [(Int, UInt64)] = [
            (Int(GuestSelectors.kernelCode), 0x00af_9b00_0000_ffff),  // 64-bit code, DPL 0, accessed
            (Int(GuestSelectors.kernelData), 0x00cf_9300_0000_ffff),  // data, DPL 0, accessed
            (Int(GuestSelectors.userData) & ~3, 0x00cf_f300_0000_ffff),  // data, DPL 3, accessed
            (Int(GuestSelectors.userCode) & ~3, 0x00af_fb00_0000_ffff),  // 64-bit code, DPL 3, accessed
        ]
        // SAFETY: every store below lands inside the system page (GDT at 0 ..< 0x50, TSS at
        // 0x800 ..< 0x868, the IDT page is written through its own pointer).
        for (offset, descriptor) in gdt { system.storeBytes(of: descriptor, toByteOffset: offset, as: UInt64.self) }
        let tss = ProbeLayout.va(page: ProbeLayout.systemPage, offset: ProbeLayout.tssOffset)
        let limit: UInt64 = 0x67
        var low = limit | (tss & 0xff_ffff) << 16 | 0x8b << 40 | (tss >> 24 & 0xff) << 56   // busy 64-bit TSS
        system.storeBytes(of: low, toByteOffset: Int(GuestSelectors.tss), as: UInt64.self)
        system.storeBytes(of: tss >> 32, toByteOffset: Int(GuestSelectors.tss) + 8, as: UInt64.self)
        system.storeBytes(of: ProbeLayout.va(page: ProbeLayout.kernelStackTop), toByteOffset: ProbeLayout.tssOffset + 4, as: UInt64.self)
        system.storeBytes(of: UInt16(0x68), toByteOffset: ProbeLayout.tssOffset + 102, as: UInt16.self)  // no I/O bitmap

        let idt = pointer(page: ProbeLayout.idtPage, count: pageSize)
        for (vector, handler) in program.handlers.enumerated() {
            let target = ProbeLayout.va(page: ProbeLayout.codePage, offset: handler)
            let dpl: UInt64 = vector == 3 ? 3 : 0
            low = target & 0xffff | UInt64(GuestSelectors.kernelCode) << 16 | (0x8e | dpl << 5) << 40
                | (target >> 16 & 0xffff) << 48
            idt.storeBytes(of: low, toByteOffset: vector * 16, as: UInt64.self)
            idt.storeBytes(of: target >> 32, toByteOffset: vector * 16 + 8, as: UInt64.self)
        }
    }

    /// The property of each page.
    private static func property(page: Int) -> PageProperty {
        switch page {
        case ProbeLayout.codePage: .kernel(.rx)
        case ProbeLayout.userCodePage: .user(.rx)
        case ..<ProbeLayout.userCodePage: .kernel(.rw)
        default: .user(.rw)
        }
    }

    private var range: Range<Vaddr> {
        Vaddr(ProbeLayout.base)..<Vaddr(ProbeLayout.va(page: ProbeLayout.pages))
    }

    private func mapPages() throws(KvmError) {
        do {
            var cursor = try kernelPageTable.cursorMut(range)
            for page in 0..<ProbeLayout.pages {
                let item = MappedItem(untracked: paddr(page: page), level: 1, property: Self.property(page: page))
                // SAFETY: the kernel table is activated on no simulated CPU, so no TLB caches what this maps; the
                // mapping is taken back by `unmap()` before the frames go.
                if let failure = unsafe cursor.tryMap(item) {
                    throw KvmError.guest("cannot map the probe kernel at \(cursor.virtAddr): \(failure.error)")
                }
            }
        } catch let error as KvmError {
            throw error
        } catch {
            throw .guest("cannot map the probe kernel: \(error)")
        }
    }

    /// Unmaps the probe kernel and releases its frames.
    func unmap() {
        guard isMapped else { return }
        isMapped = false
        if var cursor = try? kernelPageTable.cursorMut(range) {
            // SAFETY: untracked mappings of this kernel's own frames, which no TLB of the machine caches and no
            // guest runs on any more: dropping the fragments frees nothing but emptied nodes.
            while let fragment = unsafe cursor.takeNext(range.upperBound - cursor.virtAddr) { _ = consume fragment }
        }
        frames = nil
    }

    deinit { unmap() }
}
#endif
