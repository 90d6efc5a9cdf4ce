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
    total += machine.outstandingFrames
    total += machine.cleanInv() ? 1 : 0
    return total
}
