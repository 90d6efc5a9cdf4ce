// Random allocate / clone / drop / segment sequences against a simple model of reference counts.
//
// Handles are kept as raw addresses (`intoRaw`), one entry per reference, because Swift arrays
// cannot hold noncopyable values; every operation restores the handle with `fromRaw` first, so
// each step still goes through the real `Frame` and `Segment` code.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

@Suite struct FramePropertyTests {
    /// One step of a random program.
    enum Step {
        case allocFrame, allocSegment(Int), clone(Int), drop(Int), splitOffSegment(Int)

        init(_ code: Int) {
            switch code % 10 {
            case 0, 1, 2: self = .allocFrame
            case 3: self = .allocSegment(1 + code / 10 % 9)
            case 4, 5: self = .clone(code / 10)
            case 6: self = .splitOffSegment(code / 10)
            default: self = .drop(code / 10)
            }
        }
    }

    @Test func randomProgramsMatchTheModel() async {
        await propertyCheck(count: 60, input: Gen.int(in: 0...9999).array(of: 1...120), Gen.bool) { codes, bound in
            let machine = try! Machine.host(memory: 4 << 20, cpus: 1, audit: true)
            let coalesced = machine.freeChunksByOrder
            if bound { machine.withCpu(0) { run(codes, on: machine) } } else { run(codes, on: machine) }
            #expect(machine.outstandingFrames == 0)
            machine.flushCpuCaches()
            #expect(machine.freeChunksByOrder == coalesced, "the allocator did not fully coalesce")
            #expect(machine.cleanInv(), "the obligation ledger is not empty")
        }
    }

    /// Runs a program, checking the model after every step, then drops everything.
    func run(_ codes: [Int], on machine: Machine) {
        var held: [Paddr] = []              // one entry per reference
        var model: [Paddr: UInt64] = [:]    // expected reference count of every frame in use
        for code in codes {
            switch Step(code) {
            case .allocFrame:
                guard let paddr = try? FrameAllocOptions().zeroed(false).allocFrame(in: machine).intoRaw() else { continue }
                #expect(model[paddr] == nil, "frame \(paddr) handed out twice")
                model[paddr] = 1
                held.append(paddr)
            case .allocSegment(let n):
                guard var segment = try? FrameAllocOptions().zeroed(false).allocSegment(n, in: machine) else { continue }
                #expect(segment.paddr.isAligned(to: framesOfOrder(greaterOrderOf(frames: n)) * pageSize))
                while let frame = segment.next() {
                    #expect(model[frame.paddr] == nil, "frame \(frame.paddr) handed out twice")
                    model[frame.paddr] = 1
                    held.append(frame.intoRaw())
                }
            case .clone(let i) where !held.isEmpty:
                let frame = unsafe Frame<UntypedMeta>.fromRaw(held[i % held.count], in: machine)
                let clone = frame.clone()
                model[frame.paddr, default: 0] += 1
                held.append(clone.intoRaw())
                _ = frame.intoRaw()
            case .splitOffSegment(let i) where !held.isEmpty:
                // A frame turned into a one-frame segment and back keeps its single reference.
                let frame = unsafe Frame<UntypedMeta>.fromRaw(held[i % held.count], in: machine)
                var segment = Segment(frame)
                _ = segment.next()!.intoRaw()
            case .drop(let i) where !held.isEmpty:
                let paddr = held.remove(at: i % held.count)
                _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine)
                model[paddr]! -= 1
                if model[paddr] == 0 {
                    model[paddr] = nil
                    #expect(machine.metaSlot(of: paddr).isFree)
                }
            default:
                continue
            }
            for (paddr, count) in model {
                #expect(machine.metaSlot(of: paddr).referenceCount == count, "reference count of \(paddr)")
            }
            #expect(machine.outstandingFrames == model.count)
        }
        for paddr in held { _ = unsafe Frame<UntypedMeta>.fromRaw(paddr, in: machine) }
    }
}
