// The abstraction function from a live space to the seeds' `VmSpaceOwner` with views, and the
// check the audit can run on it.
//
// Design. The core keeps, per handle, a record (`space.ownerSnapshot`: id, range, kind of view);
// the views are computed here the way the seeds' lifecycle hands them out:
// - the total view T (`mv_range`) is `MemView(space:range:)` over the smallest range holding every
//   handle's range (the space's memory that some handle is about);
// - each writer, in order, takes `split(range)` of what remains (`activate_writer`, with the
//   corrected split), and the rest is the remaining view R (`mem_view`);
// - each reader borrows `borrow_at(range)` of R (`activate_reader`).
// So a reader's view holds its bytes (all `.initialized`, read from memory) and a writer's view
// its range. `memViewViolations(space:)` lists what breaks the corrected `inv`, reader
// initialisation and `VmSpace::inv`; empty on every state the run time reaches.

@_spi(OSTDInternals) import OSTDMemory

extension VmSpaceOwnerModel {
    /// The model of `space`'s owner now (see the file comment).
    public init(space: VmSpace) {
        let owner = space.ownerSnapshot
        self.init(owner: owner, total: MemView(space: space, range: VmSpaceOwnerModel.hull(owner)))
    }

    /// The model of the core's `owner` record over the total view `total`.
    public init(owner: VmSpaceOwner, total: MemView) {
        var remaining = total
        var writers: [VmIoOwnerModel] = []
        for writer in owner.writers {
            let (taken, rest) = remaining.split(writer.range.lowerBound, writer.range.upperBound - writer.range.lowerBound)
            writers.append(VmIoOwnerModel(writer, view: taken))
            remaining = rest
        }
        let readers = owner.readers.map {
            VmIoOwnerModel($0, view: remaining.borrowAt($0.range.lowerBound, $0.range.upperBound - $0.range.lowerBound))
        }
        self.init(active: owner.active, readers: readers, writers: writers, memView: remaining, mvRange: total,
                  sharedReader: owner.sharedReader)
    }

    /// The smallest range holding every reader's and writer's range (empty without handles).
    static func hull(_ owner: VmSpaceOwner) -> Range<Vaddr> {
        let ranges = (owner.readers + owner.writers).map(\.range)
        guard let low = ranges.map(\.lowerBound).min(), let high = ranges.map(\.upperBound).max() else {
            return Vaddr(0)..<Vaddr(0)
        }
        return low..<high
    }

    /// What is wrong with `space`'s readers, writers and their views, in words; empty when the
    /// corrected `inv` holds, every reader's translated bytes are initialised (all of its range for
    /// an infallible reader, `read_view_initialized`) and `VmSpace::inv` holds. For the audit: call
    /// it at a quiescent point with the space, e.g. `problems += VmSpaceOwnerModel.memViewViolations(space: space)`.
    public static func memViewViolations(space: VmSpace) -> [String] {
        let model = VmSpaceOwnerModel(space: space)
        var problems = model.invViolations()
        for reader in model.readers where !(reader.isFallible ? reader.mappedBytesInitialized() : reader.readViewInitialized()) {
            problems.append("reader \(reader.id) has uninitialised bytes in its range")
        }
        if !model.vmSpaceInv() { problems.append("VmSpace::inv: a handle's cursor is past its end") }
        return problems
    }
}
