// Compiled together with `Sources/OSTDMemory` by `.ci/embedded-check` for the bare-metal target
// `x86_64-unknown-none-elf` in Embedded Swift. Embedded Swift only emits generic code that is
// used, so this file instantiates the frame layer's generic types and entry points; it is built,
// never run (there is no runtime to link against).

/// Boots a machine on memory a kernel provides and exercises frames, unique frames and segments.
public func embeddedSmoke(base: UnsafeMutableRawPointer, size: Int) -> Int {
    // SAFETY: the caller hands over `size` bytes of zeroed, 4 KiB aligned memory at `base` for
    // the machine's lifetime (this function is compiled, never run).
    guard let machine = try? Machine(memory: unsafe PhysicalMemoryRegion(base: base, size: size, release: nil)) else {
        return -1
    }
    var total = 0
    if let frame = try? FrameAllocOptions().allocFrame(in: machine) {
        let clone = frame.clone()
        total += Int(clone.referenceCount)
        let raw = UFrame(clone).intoRaw()
        total += Int(raw.rawValue & 1)
        _ = unsafe Frame<UntypedMeta>.fromRaw(raw, in: machine)
        if let unique = UniqueFrame.tryFrom(frame).get() { total += Int(unique.paddr.rawValue >> 12) }
    }
    if var segment = try? FrameAllocOptions().allocSegment(4, in: machine) {
        let tail = segment.split(at: pageSize)
        total += tail.count
        while let frame = segment.next() { total += Int(AnyFrame(frame).referenceCount) }
    }
    total += pageTableSmoke(machine)
    total += vmSpaceSmoke(machine)
    total += machine.outstandingFrames
    return total
}

/// Exercises the page table: a kernel table, a user table sharing it, map, query, protect, take.
func pageTableSmoke(_ machine: Machine) -> Int {
    guard let kernel = try? PageTable.newKernelPageTable(machine: machine),
          let user = try? kernel.createUserPageTable(),
          let frame = try? FrameAllocOptions().allocFrame(in: machine) else { return -1 }
    var total = 0
    do {
        guard var cursor = try? user.cursorMut(Vaddr(0x1000)..<Vaddr(0x40_0000)) else { return -1 }
        // SAFETY: the smoke test's table is never activated on a CPU: no TLB reaches it.
        unsafe cursor.map(MappedItem(frame: frame, property: .user(.rw)))
        // SAFETY: the map is refused (misaligned); nothing is ever mapped from it.
        if let failure = unsafe cursor.tryMap(MappedItem(untracked: Paddr(0x20_0000), level: 2, property: .user(.r))) {
            total += failure.error == .unalignedVaddr(Vaddr(0x2000)) ? 1 : 0
        }
        try? cursor.jump(Vaddr(0x1000))
        if let (range, item) = try? cursor.query() { total += Int(range.lowerBound.rawValue) + Int(item?.level ?? 0) }
        // SAFETY: as for `map` above: no TLB caches this table, so nothing needs flushing.
        _ = unsafe cursor.protectNext(0x1000) { $0.flags.remove(.w) }
        try? cursor.jump(Vaddr(0x1000))
        // SAFETY: as for `map` above: no TLB reaches this table, and each fragment is dropped here.
        while let frag = unsafe cursor.takeNext(cursor.barrierVa.upperBound - cursor.virtAddr) {
            switch consume frag {
            case .mapped(let va, let item): total += Int(va.rawValue) + Int(item.level)
            case .strayPageTable(let node, _, _, let frames): total += Int(node.level) + frames
            }
        }
    }
    if let cursor = try? kernel.cursor(Vaddr(0xffff_8000_0000_0000)..<Vaddr(0xffff_8000_0000_1000)) {
        total += Int(cursor.virtAddr.rawValue & 1)
    }
    // SAFETY: a quiescent point: the cursors above are gone and no other thread exists.
    unsafe user.forEachNode { node in total += node.nrChildren + Int(node.entry(node.indices.lowerBound).raw & 1) }
    total += user.pageWalk(Vaddr(0x1000)) == nil ? 1 : 0
    return total
}

/// Exercises a user address space: mapping, activation, user readers and writers through the TLB,
/// the fault handler, kernel readers over a frame, the flusher and unmap.
func vmSpaceSmoke(_ machine: Machine) -> Int {
    guard let space = try? VmSpace(machine: machine),
          let frame = try? FrameAllocOptions().allocFrame(in: machine) else { return -1 }
    var total = 0
    let base = Vaddr(0x40_0000)
    space.pageFaultHandler = { space, fault in
        guard let page = try? FrameAllocOptions().allocFrame(in: space.machine),
              var cursor = try? space.cursorMut(fault.address..<(fault.address + pageSize)) else { return false }
        cursor.map(page, .user(.rw))
        return true
    }
    do {
        guard var cursor = try? space.cursorMut(base..<(base + pageSize)) else { return -1 }
        cursor.map(frame, .user(.rw))
        _ = cursor.protectNext(pageSize) { flags, _ in flags.insert(.w) }
        cursor.flusher.issueTlbFlush(.single(base))
        cursor.flusher.dispatchTlbFlush()
    }
    space.activate(on: 0)
    if var writer = try? space.createWriter(base, 16), var reader = try? space.createReader(base + 16, 16) {
        try? writer.writeVal(UInt64(42))
        total += (try? writer.writeFallible(&reader)) ?? 0
        total += (try? writer.fillZeros(4)) ?? 0
        space.disposeWriter(&writer)
        try? space.activateWriter(&writer)
        total += Int((try? reader.atomicLoad()) ?? 0)
        let front = reader.split(4)
        total += front.remain
        space.removeReader(reader)
    }
    total += (try? space.withReader(at: base, count: 8) { (reader) throws(OSTDError) in try reader.readVal(UInt64.self) }).map(Int.init) ?? 0
    if let other = try? FrameAllocOptions().allocFrame(in: machine) {
        var kernelReader = other.reader()
        var kernelWriter = other.writer()
        total += kernelReader.read(&kernelWriter)
        total += (try? other.readVal(at: 8, as: UInt32.self)).map(Int.init) ?? 0
        try? other.fillZeros(at: 0, count: 64)
        let fallible = kernelReader.toFallible()
        total += fallible.remain
    }
    if var cursor = try? space.cursorMut(base..<(base + 2 * pageSize)) {
        total += cursor.unmap(2 * pageSize)
    }
    total += space.ownerSnapshot.inv() ? 1 : 0
    total += space.isActive(on: 0) ? 1 : 0
    return total
}
