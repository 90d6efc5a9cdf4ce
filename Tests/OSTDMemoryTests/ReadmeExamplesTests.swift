// The README's frame and page-table examples, run as written (the address-space example runs in
// VmSpaceRegressionTests), with their comments' claims as expectations.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec
import OSTDHost
import Testing

@Test func readmeFrameExample() throws {
    let machine = try Machine.host(memory: 256 << 20, cpus: 2, audit: true)
    let frame = try FrameAllocOptions().allocFrame(in: machine)   // Frame<UntypedMeta>, count 1
    #expect(frame.referenceCount == 1)
    let clone = frame.clone()                                     // count 2: one atomic increment
    #expect(frame.referenceCount == 2)
    _ = consume clone                                             // deinit is Rust's Drop: count 1
    #expect(frame.referenceCount == 1)
    let paddr = frame.intoRaw()                                   // the reference now lives in a number
    // SAFETY: `paddr` comes from `intoRaw` just above, restored once.
    _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine)     // ...and comes back, then drops
    #expect(machine.cleanInv())                                   // the seeds' clean_inv: nothing leaked
}

@Test func readmePageTableExample() throws {
    let machine = try Machine.host(memory: 256 << 20, cpus: 2, audit: true)
    do {
        let table = try PageTable<UserPtConfig>(empty: machine)      // root node: one frame
        var cursor = try table.cursorMut(Vaddr(0x40_0000)..<Vaddr(0x80_0000))
        // SAFETY: no CPU ever activates this table, so no TLB can reach what the cursor edits.
        unsafe cursor.map(MappedItem(frame: try FrameAllocOptions().allocFrame(in: machine), property: .user(.rw)))
        try cursor.jump(Vaddr(0x40_0000))
        let (range, leaf) = try cursor.query()                        // 0x400000..<0x401000, rw- wb u
        #expect(range == Vaddr(0x40_0000)..<Vaddr(0x40_1000))
        #expect(leaf?.property.description == "rw- wb u")
        // SAFETY: as above, no TLB can hold the old rights, so skipping the flush is harmless.
        _ = unsafe cursor.protectNext(0x1000) { $0.flags.remove(.w) } // no TLB flush: the caller's job
        try cursor.jump(Vaddr(0x40_0000))
        var taken = false
        // SAFETY: as for `map`: no TLB can reach the removed frame, which the fragment owns.
        if case .mapped(let va, let item)? = unsafe cursor.takeNext(0x1000) {
            taken = va == Vaddr(0x40_0000) && item.property.flags == .r
        }
        #expect(taken)
    }
    #expect(machine.cleanInv())
}
