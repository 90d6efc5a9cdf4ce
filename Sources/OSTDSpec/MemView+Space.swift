// The abstraction function from a live address space to the seeds' `MemView`: the mappings are
// the page table's leaves (`PageTable.view()`) that meet the requested range, and the contents are
// the simulated physical memory those leaves map (`Machine.physicalBytes`, read-only SPI).
//
// Design. `memory` is keyed by each leaf's frame base PA, with a `FrameContents` of the leaf's
// size, as in the seed; but only the bytes that addresses in the range reach are read (for each
// frame, the smallest window holding all of them, in case the frame is mapped at several
// addresses of the range). The rest of the frame reads as `.uninit` (not read). So the bytes copied
// are bounded by the range, and by physical memory, even for 1 GiB leaves. Every byte read is
// `.initialized`: the run time zeroes or writes frames before they are mapped and keeps no
// per-byte initialisation. A leaf mapping memory outside the machine (an untracked leaf to a
// device address) has no bytes to read: its frame is present and wholly `.uninit`.
//
// The view is exact at a quiescent point (no cursor or handle changing the table or the bytes);
// otherwise it is a best-effort snapshot, like `PageTable.view()`.

@_spi(OSTDInternals) import OSTDMemory

extension MemView {
    /// The view of `space`'s user memory in `range`: its leaves meeting `range` and the bytes they
    /// map there (see the file comment).
    public init(space: VmSpace, range: Range<Vaddr>) {
        self.init(pageTable: space.pageTable.view(), machine: space.machine, range: range)
    }

    /// The view of a page table already taken (`tableView`, of a table on `machine`) over `range`.
    public init(pageTable tableView: PageTableView, machine: Machine, range: Range<Vaddr>) {
        let kept = tableView.mappings.filter { $0.va.lowerBound < range.upperBound && $0.va.upperBound > range.lowerBound }
        var windows: [Paddr: (size: Int, window: Range<Int>)] = [:]
        for m in kept {
            let low = Swift.max(range.lowerBound, m.va.lowerBound) - m.va.lowerBound
            let high = Swift.min(range.upperBound, m.va.upperBound) - m.va.lowerBound
            let window = windows[m.pa.lowerBound].map { Swift.min($0.window.lowerBound, low)..<Swift.max($0.window.upperBound, high) }
            windows[m.pa.lowerBound] = (m.pageSize, window ?? low..<high)
        }
        var memory: [Paddr: FrameContents] = [:]
        for (pa, frame) in windows {
            memory[pa] = FrameContents(contents: MemView.bytes(of: pa, size: frame.size, window: frame.window, machine: machine),
                                       size: frame.size, range: pa..<(pa + frame.size))
        }
        self.init(mappings: Set(kept), memory: memory)
    }

    /// The frame at `pa` of `size` bytes, with the bytes at `window` read from `machine` (none when
    /// they lie outside its memory).
    static func bytes(of pa: Paddr, size: Int, window: Range<Int>, machine: Machine) -> FrameBytes {
        let start = pa + window.lowerBound
        let end = pa + window.upperBound
        guard end.rawValue <= UInt64(machine.memorySize) else { return FrameBytes(size: size) }
        return FrameBytes(size: size, offset: window.lowerBound, bytes: machine.physicalBytes(start..<end))
    }
}
