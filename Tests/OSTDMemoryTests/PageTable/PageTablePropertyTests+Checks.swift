// The checks a page-table property program runs: where a cursor that found nothing stopped, each
// leaf against the model, freed frames back in the allocator, and after every step `verify()`:
// probes, the view, structural violations, reference counts and outstanding frames.

import Testing
import PropertyBased
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension PTProgram {
    // MARK: Checks

    /// Where a `findNext`, `takeNext` or `protectNext` that found nothing left the cursor.
    func checkStopped(_ va: Vaddr, end: UInt64, barrier: Range<UInt64>, _ what: String) {
        check(va.rawValue == end, "after a \(what) that found nothing the cursor is at \(va), not at \(hex(end))")
    }

    /// A leaf reported at `va` maps, for each of its pages, what the model does (the first, last
    /// and a random page are compared; the count shows every page is mapped).
    func checkLeaf(_ leaf: MappedItemRef, at va: UInt64, _ what: String) {
        let size = UInt64(leaf.size)
        let span = va..<(va + size)
        check((1...3).contains(leaf.level) && va % size == 0 && leaf.paddr.rawValue % size == 0,
              "\(what): the leaf \(hex(span)) -> \(leaf) is not aligned")
        let page = model[va]
        check(page?.pa == leaf.paddr.rawValue && page?.prop == leaf.property,
              "\(what): the leaf \(hex(span)) -> \(leaf) maps \(hex(va)) to \(leaf.paddr) \(leaf.property), the model to "
              + "\(page.map { "\(hex($0.pa)) \($0.prop)" } ?? "nothing")")
        guard size > size4K else { return }
        check(model.mappedCount(in: span) == Int(size >> 12), "\(what): the leaf \(hex(span)) -> \(leaf), the model "
              + "maps \(model.mappedCount(in: span)) pages there")
        for offset in [size - size4K, UInt64(r.below(Int(size >> 12))) << 12] {
            guard let page = model[va + offset] else { continue }
            check(page.pa == leaf.paddr.rawValue + offset && page.prop == leaf.property,
                  "\(what): the leaf \(hex(span)) -> \(leaf) maps \(hex(va + offset)) to "
                  + "\(hex(leaf.paddr.rawValue + offset)) \(leaf.property), the model to \(hex(page.pa)) \(page.prop)")
        }
    }

    /// The frames `pa ..< pa + frames * 4K` (sampled beyond 512) are free.
    func checkFree(pa: UInt64, frames: Int, _ what: String) {
        let indices = frames <= 512 ? Array(0..<frames) : [0, 1, frames - 1] + (0..<16).map { _ in r.below(frames) }
        for i in indices {
            let slot = machine.metaSlot(of: Paddr(pa + UInt64(i) << 12))
            check(slot.isFree, "\(what): frame \(hex(pa + UInt64(i) << 12)) is not free: \(slot.status), "
                  + "\(slot.referenceCount) references")
            if !slot.isFree { return }
        }
    }

    /// The checks after every step (no cursor alive).
    func verify() {
        // 1. The view: well formed, all tracked, exactly the model's pages.
        let view = table.view()
        check(view.inv(), "the view's invariant fails")
        var viewPages = 0
        for mapping in view.mappings {
            viewPages += mapping.pageSize >> 12
            check(mapping.isTracked, "mapping \(mapping) is untracked")
            let leaf = MappedItemRef(paddr: mapping.pa.lowerBound, level: mapping.level, property: mapping.property,
                                     isTracked: mapping.isTracked)
            checkLeaf(leaf, at: mapping.va.lowerBound.rawValue, "view")
            if failures > 0 { return }
        }
        check(viewPages == model.count, "the view maps \(viewPages) pages, the model \(model.count)")

        // 2. pageWalk at probed addresses: the step's boundaries, random ones, mapped ones.
        var probed = probes.filter { window.contains($0) }
        for _ in 0..<6 { probed.append(address(align: size4K)) }
        if model.count <= 128 {
            probed += model.mappedPages(in: window)
        } else {
            for _ in 0..<12 {
                if let page = model.firstMapped(in: address(align: size4K)..<window.upperBound) { probed.append(page) }
            }
        }
        for va in probed {
            let offset = UInt64(r.below(4096))
            let walked = table.pageWalk(Vaddr(va + offset))
            if let page = model[va] {
                check(walked?.paddr.rawValue == page.pa + offset && walked?.property == page.prop,
                      "pageWalk(\(hex(va + offset))) = \(walked.map { "\($0.paddr) \($0.property)" } ?? "nil"), "
                      + "the model maps \(hex(page.pa + offset)) \(page.prop)")
            } else {
                check(walked == nil, "pageWalk(\(hex(va + offset))) = \(walked!.paddr), the model maps nothing")
            }
        }

        // 3. The tree: `structuralViolations` checks every node (its count of present entries, its
        // level, its one reference, no empty node but the root) and every frame of every tracked
        // leaf, so with more than 256 MiB mapped it runs every 8th step only (and at the end).
        if model.count <= 1 << 16 || trace.count % 8 == 0 {
            let violations = table.structuralViolations()
            check(violations == [], "structural violations: \(violations)")
        }

        // 4. Frames outstanding = nodes + retired nodes + mapped frames (every 3rd step: `nodes()`
        // is slow in debug builds, and a leak stays until the end, where it is checked again).
        if trace.count % 3 == 0 {
            let nodes = table.nodes().count
            let outstanding = machine.outstandingFrames
            let expected = baselineFrames + nodes + machine.retiredCount + model.count
            check(outstanding == expected, "\(outstanding) frames outstanding, expected \(expected) = \(baselineFrames) "
                + "+ \(nodes) nodes + \(machine.retiredCount) retired + \(model.count) mapped")
        }
        // 5. Reference counts. Freed frames are handed out again, as data frames of a later unit or
        // as nodes: a frame is expected to have one reference per page the model maps to it, else
        // to be a page-table node, else to be free.
        let small = model.count <= 512 && units.reduce(0) { $0 + $1.frames } <= 1024
        var expectedCounts: [Paddr: Int] = [:]
        if small {
            for page in model.mappedPages(in: window) { expectedCounts[Paddr(model[page]!.pa), default: 0] += 1 }
            let mappingCounts = table.trackedMappingCounts()
            check(mappingCounts == expectedCounts, "trackedMappingCounts has \(mappingCounts.count) frames, the model "
                  + "maps \(expectedCounts.count); differing: \(Set(mappingCounts.keys).symmetricDifference(expectedCounts.keys).sorted(by: <).prefix(8))")
        }
        let allUnits = units
        units.removeAll { unit in
            let mapped = model.mappedCount(in: unit.vaRange)
            let indices = small || (mapped == 0 && unit.frames <= 512) ? Array(0..<unit.frames)
                : [0, unit.frames - 1] + (0..<6).map { _ in r.below(unit.frames) }
            for i in indices {
                let pa = unit.pa + UInt64(i) << 12
                let slot = machine.metaSlot(of: Paddr(pa))
                let count = small ? expectedCounts[Paddr(pa)] ?? 0 : mappings(of: pa, allUnits)
                if count > 0 {
                    check(slot.referenceCount == count && !slot.isFree,
                          "frame \(hex(pa)), mapped \(count) times, has \(slot.referenceCount) references, \(slot.status)")
                } else if slot.usage != .pageTable {
                    check(slot.isFree, "frame \(hex(pa)), mapped nowhere, is not free: \(slot.status), usage \(slot.usage)")
                }
            }
            return mapped == 0
        }
    }

    /// How many pages the model maps to the frame at `pa` (through the units that had it).
    func mappings(of pa: UInt64, _ units: [FrameUnit]) -> Int {
        var pages = Set<UInt64>()   // two units may have had the frame at the same address
        for unit in units where unit.pa <= pa && pa < unit.pa + UInt64(unit.frames) << 12 {
            let va = unit.va + (pa - unit.pa)
            if model[va]?.pa == pa { pages.insert(va) }
        }
        return pages.count
    }
}
