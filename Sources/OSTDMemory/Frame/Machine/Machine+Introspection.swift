// Read-only introspection of a machine's metadata, for the executable specification
// (`OSTDSpec`): what the seeds' `MetaRegionOwners` reads of each slot beyond its public view, and
// the obligation ledger. SPI because it exposes the allocator's private words.

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
        return context.slot(index: index).base - context.metaBase
    }

    /// The seeds' `frame_obligations.count(index)` when the machine keeps the ledger
    /// (`audit: true`), `nil` otherwise.
    @_spi(OSTDInternals) public func obligationCount(ofFrame index: Int) -> Int? {
        precondition((0..<frameCount).contains(index), "frame \(index) does not exist")
        return context.ledger?.count(index)
    }

    /// The translations `cpu`'s TLB holds now (the simulated platform's; for audits).
    @_spi(OSTDInternals) public func tlbEntries(cpu: Int) -> [TlbEntryInfo] {
        precondition((0..<cpuCount).contains(cpu), "cpu \(cpu) does not exist (the machine has \(cpuCount))")
        return context.state.pointee.platform.tlbEntries(on: cpu)
    }
}
