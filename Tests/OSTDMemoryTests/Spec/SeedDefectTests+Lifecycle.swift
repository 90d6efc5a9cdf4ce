// Seed defects in the reader / writer lifecycle (seeds 000, 001, 002): activation that neither
// registers the handle nor keeps `inv` (defect 5), disposal that never returns a permission (6),
// `dispose_reader` refusing shared readers (14) and `create_writer` consuming the space (15).
// The seeds' steps are transcribed as functions on `SeedSpaceOwner` / `SeedIoOwner` values; the
// run time's steps are `VmSpace.createReader` / `createWriter`, `disposeReader` / `disposeWriter`,
// `activateReader` / `activateWriter` (IoRegistry in VmSpaceOwner.swift).

import Testing
import OSTDHost
@_spi(OSTDInternals) @testable import OSTDMemory

/// 000:328-368 `activate_reader`: only `owner_r.mem_view` changes, to `borrow_at(range)`.
func seed_activate_reader(_ s: SeedSpaceOwner, _ owner: SeedIoOwner) -> (SeedSpaceOwner, SeedIoOwner) {
    var o = owner
    o.memView = .readView(s.memView!.borrowAt(owner.range.lowerBound, owner.range.upperBound - owner.range.lowerBound))
    return (s, o)
}

/// 000:406-448 `activate_writer`: `self.mem_view` becomes the right half of the split, the
/// owner's view the left half; nothing is pushed to `writers`.
func seed_activate_writer(_ s: SeedSpaceOwner, _ owner: SeedIoOwner) -> (SeedSpaceOwner, SeedIoOwner) {
    let (lhs, rhs) = s.memView!.split(owner.range.lowerBound, owner.range.upperBound - owner.range.lowerBound)
    var after = s
    after.memView = rhs
    var o = owner
    o.memView = .writeView(lhs)
    return (after, o)
}

/// 000:386-398 `activate_writer`'s range clause: "`mem_view` translates every `va` of the range".
func seed_activate_writer_requires_range(_ s: SeedSpaceOwner, _ range: Range<UInt64>) -> Bool {
    guard let mv = s.memView else { return false }
    let ends = range.isEmpty ? [] : [range.lowerBound, range.upperBound - 1]
    return (probes([mv]).filter { range.contains($0) } + ends).allSatisfy { mv.addrTransl($0) != nil }
}

/// 001 `advance(nbytes)` (as vostd-spec-reference.md §3.2 states it): the owner keeps the back of
/// the split; the front, "the advanced VmIoMemView", is returned and "must be discarded".
func seed_advance(_ owner: SeedIoOwner, _ nbytes: UInt64) -> (SeedIoOwner, discarded: SeedMemView) {
    guard case .writeView(let mv)? = owner.memView else { return (owner, SeedMemView()) }
    let (front, back) = mv.split(owner.range.lowerBound, nbytes)
    return (SeedIoOwner(range: (owner.range.lowerBound + nbytes)..<owner.range.upperBound, memView: .writeView(back)), front)
}

/// 000:662-676 `dispose_writer`'s body: a non-empty owner is pushed to `writers`, an empty one
/// is dropped; no view is joined back into `mem_view`.
func seed_dispose_writer(_ s: SeedSpaceOwner, _ owner: SeedIoOwner) -> SeedSpaceOwner {
    var after = s
    if owner.range.lowerBound < owner.range.upperBound { after.writers.append(owner) }
    return after
}

/// The mappings the owner still accounts for: the remaining view and the writers' views
/// (000:170, "TotalMapping (mvv) = mv ∪ writer mappings ∪ reader mappings").
func accounted(_ s: SeedSpaceOwner) -> Set<SeedMapping> {
    s.writers.reduce(s.memView?.mappings ?? []) { $0.union($1.memView?.view.mappings ?? []) }
}

/// 002:289-305 `inv_with`'s list clauses: the owner's lists are as long as the space's.
func seed_inv_with_lengths(_ owner: SeedSpaceOwner, spaceReaders: Int, spaceWriters: Int) -> Bool {
    owner.readers.count == spaceReaders && owner.writers.count == spaceWriters
}

extension SeedDefectTests {
    // MARK: 5. Activation does not register the handle, and does not keep `inv`

    @Test func activationNeitherRegistersNorKeepsInv() throws {
        // (b) One page, nothing active; a writer and a reader are activated over the whole page.
        let total = SeedMemView([page(at(0), 0x8000)])
        let s = SeedSpaceOwner(memView: total, mvRange: total)
        #expect(seed_inv(s))
        let (afterW, w) = seed_activate_writer(s, SeedIoOwner(range: at(0)..<at(0x1000)))
        // (c) The doc (000:378, "The writer will be added to the VmSpace's writers list") is not what
        // happens, and the state left breaks `inv` (which the `ensures` does not claim).
        #expect(afterW.writers.isEmpty && w.memView != nil)
        #expect(!seed_inv(afterW))
        #expect(!accounted(afterW).contains(page(at(0), 0x8000)))
        let (afterR, r) = seed_activate_reader(s, SeedIoOwner(range: at(0)..<at(0x1000)))
        #expect(afterR.readers.isEmpty && r.memView != nil)
        // 002:774-775: the exec `activate_reader` pushes to `VmSpace.readers` only, so `inv_with`
        // (needed by every later `reader_requires` / `writer_requires`) no longer holds.
        #expect(seed_inv_with_lengths(s, spaceReaders: 0, spaceWriters: 0))
        #expect(!seed_inv_with_lengths(afterR, spaceReaders: 1, spaceWriters: 0))
        // (d) The run time registers the handle as it activates it, and `inv` holds.
        let machine = makeMachine()
        let space = try specSpace(machine, pages: 2)
        let writer = try space.createWriter(base, 0x1000)
        let reader = try space.createReader(base + 0x1000, 8)
        let snapshot = space.ownerSnapshot
        #expect(snapshot.writers.map(\.range) == [bytes(0, 0x1000)])
        #expect(snapshot.readers.map(\.range) == [bytes(0x1000, 0x1008)])
        #expect(snapshot.inv())
        _ = consume writer
        _ = consume reader
    }

    // MARK: 6. Disposal never returns the permission

    @Test func disposalDropsThePermission() throws {
        // (b) A writer over a whole page, which writes all of it and is disposed.
        let p = page(at(0), 0x8000)
        let total = SeedMemView([p])
        let s = SeedSpaceOwner(memView: total, mvRange: total)
        let (active, owner) = seed_activate_writer(s, SeedIoOwner(range: at(0)..<at(0x1000)))
        let (consumed, discarded) = seed_advance(owner, 0x1000)
        let disposed = seed_dispose_writer(active, consumed)
        // (c) The page is in no view the owner keeps, so no writer can ever be activated over it
        // again (000:374-376 "must be mapped within the VmSpaceOwner's memory view").
        #expect(discarded.mappings == [p] && consumed.range.isEmpty)
        #expect(disposed.writers.isEmpty && accounted(disposed).isEmpty)
        #expect(!seed_activate_writer_requires_range(disposed, at(0)..<at(8)))
        #expect(seed_activate_writer_requires_range(s, at(0)..<at(8)))
        // (d) The run time: disposal takes the registration out (the bytes are free again) and the
        // handle can be activated later; the page is writable by a new writer.
        let machine = makeMachine()
        let space = try specSpace(machine)
        var writer = try space.createWriter(base, 0x1000)
        #expect(try writer.fillZeros(0x1000) == 0x1000)
        space.disposeWriter(&writer)
        #expect(space.ownerSnapshot.writers.isEmpty)
        var again = try space.createWriter(base, 0x1000)
        try again.writeVal(UInt64(0xfeed))
        space.disposeWriter(&again)
        let reader = try space.createReader(base, 8)
        try space.activateWriter(&writer)   // empty range: conflicts with nothing
        #expect(space.ownerSnapshot.inv())
        _ = consume reader
        _ = consume writer
        _ = consume again
    }

    // MARK: 14. `dispose_reader` refuses shared readers

    @Test func disposeReaderIgnoresSharedReader() throws {
        // (b) Readers shared; reader A over the whole page is registered; B reads the same page.
        let total = SeedMemView([page(at(0), 0x8000)])
        let a = SeedIoOwner(range: at(0)..<at(0x1000), memView: .readView(total))
        let b = SeedIoOwner(range: at(0)..<at(0x1000), memView: .readView(total))
        let s = SeedSpaceOwner(readers: [a], memView: total, mvRange: total, sharedReader: true)
        var both = s
        both.readers.append(b)
        #expect(seed_inv(s) && seed_inv(both))
        // (c) `inv` allows both, yet B can never be disposed into the list (000:604-606 demands
        // disjointness from every reader, whatever `shared_reader` says).
        #expect(!seed_dispose_reader_requires(s, b))
        // (d) The run time: with `sharedReader`, B is disposed and activated again while A is active.
        let machine = makeMachine()
        let space = try specSpace(machine, sharedReader: true)
        let readerA = try space.createReader(base, 0x1000)
        var readerB = try space.createReader(base, 0x1000)
        space.disposeReader(&readerB)
        try space.activateReader(&readerB)
        #expect(space.ownerSnapshot.readers.count == 2 && space.ownerSnapshot.inv())
        _ = consume readerA
        _ = consume readerB
    }

    // MARK: 15. `create_writer` consumes the space

    @Test func createWriterConsumesTheSpace() throws {
        // (a) 002:945 "pub fn create_writer(self, vaddr, len)": the space is moved into the call
        // (002:913 `create_reader` borrows it). Modelled as a space that is gone after the call.
        func seed_create_writer(_ space: inout SeedSpaceOwner?, _ vaddr: UInt64, _ len: UInt64) -> Bool {
            guard space != nil else { return false }
            space = nil
            return true
        }
        // (b, c) A second writer from the same space is impossible.
        var space: SeedSpaceOwner? = SeedSpaceOwner()
        #expect(seed_create_writer(&space, at(0), 8))
        #expect(!seed_create_writer(&space, at(16), 8))
        // (d) The run time (OSTD `writer(&self, ..)`): two writers and a reader from one space.
        let machine = makeMachine()
        let real = try specSpace(machine)
        let w1 = try real.createWriter(base, 8)
        let w2 = try real.createWriter(base + 16, 8)
        let r = try real.createReader(base + 32, 8)
        #expect(real.ownerSnapshot.writers.count == 2 && real.ownerSnapshot.inv())
        _ = consume w1
        _ = consume w2
        _ = consume r
    }
}
