// Read-only introspection of a machine's metadata, for the executable specification
// (`OSTDSpec`): what the seeds' `MetaRegionOwners` reads of each slot beyond its public view, the
// obligation ledger, and a copy of physical memory (the bytes of the seeds' `MemView`). SPI because
// it exposes the allocator's private words.

extension Machine {
    /// The free-list word of frame `index`'s slot (the seeds' `in_list`; allocator-private).
    @_spi(OSTDInternals) public func freeListWord(ofFrame index: Int) -> UInt64 {
        precondition((0..<frameCount).contains(index), "frame \(index) does not exist")
        return context.slot(index: index).inList
    }

    /// The byte offset of frame `index`'s slot in the metadata region (the seeds'
    /// `slot_vaddr - FRAME_METADATA_RANGE.start`).
    @_spi(OSTDInternals) public func metaSlotOffset(ofFrame index: Int) -> Int {
        precondition((0..<frameCount).contains(index), "frame \(index) does not exist")
        // SAFETY: address arithmetic between two pointers into the metadata region; nothing is
        // dereferenced.
        return unsafe context.slot(index: index).base - context.metaBase
    }

    /// The seeds' `frame_obligations.count(index)` when the machine keeps the ledger
    /// (`audit: true`), `nil` otherwise.
    @_spi(OSTDInternals) public func obligationCount(ofFrame index: Int) -> Int? {
        precondition((0..<frameCount).contains(index), "frame \(index) does not exist")
        return context.ledger?.count(index)
    }

    /// A copy of the bytes of physical memory `range` (the contents of the seeds' `MemView`).
    /// Read-only: nothing is written. Exact at a quiescent point; while other threads write the
    /// range the copy may mix old and new bytes.
    ///
    /// - Precondition: `range` lies inside physical memory.
    @_spi(OSTDInternals) public func physicalBytes(_ range: Range<Paddr>) -> [UInt8] {
        precondition(range.upperBound.rawValue <= UInt64(memorySize),
                     "physical range \(range.lowerBound)..<\(range.upperBound) is outside memory")
        let count = range.upperBound - range.lowerBound
        // SAFETY: `range` lies inside physical memory (checked above), which the machine's context
        // keeps allocated while this `Machine` is alive; the bytes are only read, and copied out
        // before the buffer goes out of scope.
        let bytes = unsafe UnsafeRawBufferPointer(start: context.pointer(to: range.lowerBound), count: count)
        return unsafe Array(bytes)
    }
}

extension Machine {
    /// The allocatable frames whose bytes may be non-zero (`MetaSlot.markWritten` set): the ones a
    /// zeroed allocation would fill. Reads every slot, so it is for tests of small machines.
    @_spi(OSTDInternals) public var writtenFrameCount: Int {
        // SAFETY: this `Machine` keeps its state live (the lifetime statement); the field is
        // immutable.
        (unsafe context.state.pointee.firstFreeFrame..<frameCount).count { context.slot(index: $0).mayBeNonZero }
    }

    /// Whether frame `index` may hold non-zero bytes: a reserved frame always may; an allocatable
    /// one only with its written flag set. Reads the slot without writing it.
    ///
    /// - Precondition: the frame exists.
    @_spi(OSTDInternals) public func mayHoldNonZeroBytes(frame index: Int) -> Bool {
        precondition((0..<frameCount).contains(index), "frame \(index) does not exist")
        // SAFETY: as `writtenFrameCount`.
        return unsafe index < context.state.pointee.firstFreeFrame || context.slot(index: index).mayBeNonZero
    }
}
