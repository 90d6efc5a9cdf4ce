// The fragmentation benchmark: how many huge blocks a machine can still hand out after churn of
// small frames around huge pages that are split and freed piece by piece (the allocator's grouping
// of 2 MiB pageblocks by size, docs/frames.md, is what it measures).
//
// `frag-churn`: on a fresh 4 GiB machine holding one 1 GiB block, bound to CPU 0, a fixed-seed
// random sequence of single-frame allocations and frees, page-table-node-like frames, 2 MiB
// blocks allocated, and 4 KiB pieces of those blocks and of the 1 GiB block freed one by one as a
// 4 KiB unmap in a huge page frees them (the rest of a block goes in one piece later). Timed: the
// churn, per step. Then, untimed, with the small frames still held and the CPU cache as the churn
// left it, the huge blocks still held are dropped and 1 GiB blocks are allocated until none is
// left, given back, and the same for 2 MiB blocks. Reported besides the time: `blocks_1g` and
// `blocks_2m` (a fresh machine has 3 and 2015: the first GiB holds the 64 MiB metadata region),
// `small_pageblocks` (pageblocks serving small frames) and `small_frames` (small frames held at
// the end; 512 fit in a pageblock).

@_spi(OSTDInternals) import OSTDMemory

enum FragmentationBenchmarks {
    static func all() -> [Benchmark] { [churn()] }

    /// The machine's memory: four 1 GiB blocks, the first with the metadata.
    static let memory = 4 << 30

    /// Metadata like a page-table node's: a frame of another usage on the single-frame path.
    struct NodeLikeMeta: FrameMeta {
        static var typeTag: FrameMetaTag { FrameMetaTag(usage: .pageTable, typeID: 0x2_0001, untyped: false) }
        var level: UInt32
    }

    /// A huge block held as raw references, with the frames freed one by one so far.
    struct HugeBlock {
        let frames: Range<Int>
        var freed: Set<Int> = []

        /// Frees the frames still held, in contiguous runs, as a segment's drop does.
        func freeRest(in machine: Machine) {
            var run = frames.lowerBound
            for index in frames.lowerBound...frames.upperBound where index == frames.upperBound || freed.contains(index) {
                // SAFETY: frames of this block not freed yet: `intoRaw` gave up their references.
                if run < index { _ = unsafe Segment<UntypedMeta>.fromRaw(paddr(run)..<paddr(index), in: machine) }
                run = index + 1
            }
        }
    }

    static func churn() -> Benchmark {
        Benchmark(name: "frag-churn", operations: 200_000, bytesPerOperation: 0, threads: 1) { steps in
            let machine = try! Machine.host(memory: memory, cpus: 1)
            return machine.withCpu(0) {
                var small: [Paddr] = []
                var huge: [HugeBlock] = []
                if let block = try? FrameAllocOptions().zeroed(false).allocSegment(1 << 18, in: machine).intoRaw() {
                    huge.append(HugeBlock(frames: indices(block)))
                }
                let wall = timed { churn(machine, steps: steps, small: &small, huge: &huge) }
                for block in huge { block.freeRest(in: machine) }
                let gigabytes = countBlocks(machine, frames: 1 << 18)
                let pageblocks = countBlocks(machine, frames: 512)
                let figures = [("blocks_1g", gigabytes), ("blocks_2m", pageblocks),
                               ("small_pageblocks", machine.smallPageblockCount), ("small_frames", small.count)]
                // SAFETY: each small frame's reference was given up by `intoRaw`, restored once here.
                for paddr in small { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
                return Timing(wall: wall, figures: figures)
            }
        }
    }

    /// `steps` random steps (seed fixed), leaving the small frames and huge blocks it holds.
    private static func churn(_ machine: Machine, steps: Int, small: inout [Paddr], huge: inout [HugeBlock]) {
        var random = ChurnRandom(state: 0x5eed)
        let options = FrameAllocOptions().zeroed(false)
        for _ in 0..<steps {
            switch random.below(100) {
            case 0..<40:
                if let paddr = try? options.allocFrame(in: machine).intoRaw() { small.append(paddr) }
            case 40..<45:
                if let paddr = try? options.allocFrameWith(NodeLikeMeta(level: 1), in: machine).intoRaw() { small.append(paddr) }
            case 45..<83:
                guard !small.isEmpty else { break }
                small.swapAt(random.below(small.count), small.count - 1)
                // SAFETY: a frame `intoRaw` gave up, taken out of the list so restored once.
                _ = unsafe Frame<UntypedMeta>.fromRaw(small.removeLast(), in: machine)
            case 83..<85:
                if let block = try? options.allocSegment(512, in: machine).intoRaw() { huge.append(HugeBlock(frames: indices(block))) }
            case 85..<97:
                // A 4 KiB unmap in a huge page: one frame of it goes, through the single-frame path.
                guard !huge.isEmpty else { break }
                let block = random.below(huge.count)
                let index = huge[block].frames.lowerBound + random.below(huge[block].frames.count)
                guard huge[block].freed.insert(index).inserted else { break }
                // SAFETY: a frame of a held block not freed before (`freed` just said so).
                _ = unsafe Frame<UntypedMeta>.fromRaw(paddr(index), in: machine)
            default:
                guard !huge.isEmpty else { break }
                huge.swapAt(random.below(huge.count), huge.count - 1)
                huge.removeLast().freeRest(in: machine)
            }
        }
    }

    /// How many blocks of `frames` frames the machine can hand out now: allocates them until it
    /// cannot, then gives them back.
    private static func countBlocks(_ machine: Machine, frames: Int) -> Int {
        var held: [Range<Paddr>] = []
        while let block = try? FrameAllocOptions().zeroed(false).allocSegment(frames, in: machine).intoRaw() { held.append(block) }
        // SAFETY: the blocks `intoRaw` just gave up, each restored once.
        for block in held { _ = unsafe Segment<UntypedMeta>.fromRaw(block, in: machine) }
        return held.count
    }

    private static func indices(_ range: Range<Paddr>) -> Range<Int> {
        Int(range.lowerBound.rawValue >> 12)..<Int(range.upperBound.rawValue >> 12)
    }

    private static func paddr(_ index: Int) -> Paddr { Paddr(UInt64(index) << 12) }
}

/// SplitMix64, so that every run churns the same sequence.
private struct ChurnRandom {
    var state: UInt64

    mutating func below(_ n: Int) -> Int {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return Int((z ^ (z >> 31)) % UInt64(n))
    }
}
