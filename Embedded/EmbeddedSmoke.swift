// Compiled together with `Sources/OSTDMemory` by `.ci/embedded-check` for the bare-metal target
// `x86_64-unknown-none-elf` in Embedded Swift. Embedded Swift only emits generic code that is
// used, so this file instantiates the frame layer's generic types and entry points; it is built,
// never run (there is no runtime to link against).

/// Boots a machine on memory a kernel provides and exercises frames, unique frames and segments.
public func embeddedSmoke(base: UnsafeMutableRawPointer, size: Int) -> Int {
    guard let machine = try? Machine(memory: PhysicalMemoryRegion(base: base, size: size, release: nil)) else {
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
    total += machine.outstandingFrames
    total += machine.cleanInv() ? 1 : 0
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
        cursor.map(MappedItem(frame: frame, property: .user(.rw)))
        if let failure = cursor.tryMap(MappedItem(untracked: Paddr(0x20_0000), level: 2, property: .user(.r))) {
            total += failure.error == .unalignedVaddr(Vaddr(0x2000)) ? 1 : 0
        }
        try? cursor.jump(Vaddr(0x1000))
        if let (range, item) = try? cursor.query() { total += Int(range.lowerBound.rawValue) + Int(item?.level ?? 0) }
        _ = cursor.protectNext(0x1000) { $0.flags.remove(.w) }
        try? cursor.jump(Vaddr(0x1000))
        while let frag = cursor.takeNext(cursor.barrierVa.upperBound - cursor.virtAddr) {
            switch consume frag {
            case .mapped(let va, let item): total += Int(va.rawValue) + Int(item.level)
            case .strayPageTable(let node, _, _, let frames): total += Int(node.level) + frames
            }
        }
    }
    if let cursor = try? kernel.cursor(Vaddr(0xffff_8000_0000_0000)..<Vaddr(0xffff_8000_0000_1000)) {
        total += Int(cursor.virtAddr.rawValue & 1)
    }
    total += user.view().inv() ? 1 : 0
    total += user.structuralViolations().count + kernel.nodes().count
    total += user.pageWalk(Vaddr(0x1000)) == nil ? 1 : 0
    return total
}
