// The seeds' `MetaSlotOwner` — the ghost owner of one metadata slot — read back from a live slot,
// with its invariant as an executable check (vostd `specs/mm/frame/meta_owners.rs`).

@_spi(OSTDInternals) import OSTDMemory

/// What the specification knows about one slot, observed at one moment.
public struct MetaSlotOwner: Equatable, Sendable {
    /// The slot's index: the frame's physical address / 4 KiB (`frame_to_index`).
    public let index: Int
    /// The reference count (`inner_perms.ref_count.value()`).
    public let refCount: UInt64
    /// The type tag (the `vtable_ptr` permission's value; zero when uninitialised).
    public let typeTag: FrameMetaTag
    /// The free-list id (`in_list`).
    public let inList: UInt64
    /// The slot's offset in the metadata region (`slot_vaddr - FRAME_METADATA_RANGE.start`).
    public let slotOffset: Int
    /// The size of the metadata region, for the bounds part of the invariant.
    public let regionSize: Int
    /// How many page-table entries reference the frame (`paths_in_pt.len()`): leaves mapping a
    /// data frame, the one parent entry (or table) of a node. 0 unless the snapshot was taken with
    /// counts from `PageTable.pathsInPt()`.
    public let pathsInPt: Int

    /// The usage recorded in the type tag (`usage`).
    public var usage: PageUsage { typeTag.usage }

    /// The state the reference count encodes.
    public var status: MetaSlotStatus { MetaSlotStatus(refCount: refCount) }

    /// Whether the slot is of a frame whose references handles and page tables hold (not free,
    /// not the machine's own frames): the frames reference accounting covers.
    public var holdsReferences: Bool {
        switch usage {
        case .unused, .reserved, .meta: return false
        default: return true
        }
    }

    /// The slot invariant, as the seeds' `MetaSlotOwner::inv`:
    ///
    ///     rc == UNUSED ⟹ storage uninit ∧ vtable uninit ∧ in_list == 0 ∧ (usage != MMIO ⟹ paths_in_pt == ∅)
    ///     rc == UNIQUE ⟹ vtable init ∧ storage init ∧ (usage != MMIO ⟹ paths_in_pt == ∅)
    ///     0 < rc <= MAX ⟹ vtable init ∧ storage init ∧ in_list == 0
    ///     MAX < rc < UNIQUE ⟹ false
    ///     rc == 0 ⟹ in_list == 0
    ///     FRAME_METADATA_RANGE.start <= slot_vaddr < .end ∧ slot_vaddr % 64 == 0
    ///
    /// "Storage initialised" is not observable in raw memory; the type tag, written together with
    /// the storage, stands for both.
    public func inv() -> Bool {
        let tagInit = typeTag.word != 0
        let unmappedUnlessMMIO = usage == .mmio || pathsInPt == 0
        let stateOK: Bool
        switch MetaSlotStatus(refCount: refCount) {
        case .unused: stateOK = !tagInit && inList == 0 && unmappedUnlessMMIO
        case .unique: stateOK = tagInit && unmappedUnlessMMIO
        case .shared: stateOK = tagInit && inList == 0
        case .busy: stateOK = inList == 0
        case .overflow: stateOK = false
        }
        let inRegion = slotOffset >= 0 && slotOffset < regionSize && slotOffset % MetaSlot.size == 0
        return stateOK && inRegion
    }
}
