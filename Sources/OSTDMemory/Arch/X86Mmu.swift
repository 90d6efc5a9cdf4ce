// The x86-64 MMU's rule: whether an access through a 4-level walk succeeds, and the page-fault
// error code when it does not (Intel SDM vol. 3A §4.5–§4.8, AMD APM vol. 2 §5.3–§5.6).
//
// One rule, used everywhere a translation is decided: the simulated MMU's walker and its TLB, the
// user copies of `VmReader`/`VmWriter` (through that walker), the hardware check (`ostd-mm
// hwcheck`, which compares it with a real x86 walker) and the tests. It is split in three pure
// steps so that each user can run only what it needs:
//
//   1. `walk`: read entries from the root down, stopping where the hardware stops: at an entry
//      without P, at an entry with a reserved bit set, or at a leaf (bit 7 at levels 2–3, any
//      entry at level 1).
//   2. `rights`: fold the entries of a complete walk into the rights they grant (all U/S, all R/W,
//      no NX), which is also what a TLB caches.
//   3. `check`: decide the access from those rights and the CPU's paging controls (CR0.WP,
//      CR4.SMEP/SMAP, EFER.NXE).
//
// The error code has P clear when the walk ended at a non-present entry, P and RSVD set for a
// reserved bit, P alone for a protection violation; W/R, U/S always describe the access, I/D only
// when NXE or SMEP is on (SDM §4.7). A successful walk sets A in every entry it used and D in the
// leaf for a write; a faulting walk sets nothing (as KVM's walker does; the SDM allows a processor
// to set A in upper entries of a faulting walk, see docs/differences.md). Supervisor accesses are
// explicit accesses with EFLAGS.AC clear: SMAP, where on, applies to every one of them.

/// What an access does to memory.
public enum MemoryAccessKind: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case read, write, fetch

    public var description: String { ["read", "write", "fetch"][Int(rawValue)] }
}

/// An access as the MMU sees it: its kind and the privilege it runs at.
@frozen
public struct MemoryAccess: Hashable, Sendable, CustomStringConvertible {
    public var kind: MemoryAccessKind
    /// A user-mode access (CPL 3); otherwise a supervisor-mode one (CPL 0).
    public var userMode: Bool

    @inlinable
    public init(_ kind: MemoryAccessKind, userMode: Bool) {
        self.kind = kind
        self.userMode = userMode
    }

    public var description: String { (userMode ? "cpl3 " : "cpl0 ") + kind.description }
}

/// The paging controls of one CPU: what its control registers and CPUID say about paging.
///
/// Stored packed, with the bits reserved in every entry under them (`reserved`, read through
/// `X86Mmu.commonReservedBits`) kept up to date by the setters: a page walk, which runs on every
/// TLB miss, loads them rather than rebuilding them from five flags and a bit count (fault-in-4k:
/// about 20 instructions a fault).
@frozen
public struct PagingControls: Hashable, Sendable {
    /// The bits reserved in every entry: physical-address bits at or above MAXPHYADDR, and bit
    /// 63 without NXE (`X86Mmu.commonReservedBits`).
    @usableFromInline var reserved: UInt64
    @usableFromInline var flags: UInt8
    @usableFromInline var addressBits: UInt8

    @inlinable static var writeProtectFlag: UInt8 { 1 << 0 }
    @inlinable static var noExecuteFlag: UInt8 { 1 << 1 }
    @inlinable static var smepFlag: UInt8 { 1 << 2 }
    @inlinable static var smapFlag: UInt8 { 1 << 3 }
    @inlinable static var page1GBFlag: UInt8 { 1 << 4 }

    @inlinable
    public init(writeProtect: Bool = true, noExecute: Bool = true, smep: Bool = false, smap: Bool = false,
                page1GB: Bool = true, physicalAddressBits: Int = 52) {
        precondition((36...52).contains(physicalAddressBits), "MAXPHYADDR is between 36 and 52 bits")
        flags = (writeProtect ? Self.writeProtectFlag : 0) | (noExecute ? Self.noExecuteFlag : 0)
            | (smep ? Self.smepFlag : 0) | (smap ? Self.smapFlag : 0) | (page1GB ? Self.page1GBFlag : 0)
        addressBits = UInt8(physicalAddressBits)
        reserved = 0
        reserved = reservedInEveryEntry
    }

    /// CR0.WP: supervisor writes honour R/W.
    @inlinable public var writeProtect: Bool {
        get { flags & Self.writeProtectFlag != 0 }
        set { set(Self.writeProtectFlag, newValue) }
    }
    /// EFER.NXE: bit 63 is NX (otherwise it is reserved).
    @inlinable public var noExecute: Bool {
        get { flags & Self.noExecuteFlag != 0 }
        set { set(Self.noExecuteFlag, newValue) }
    }
    /// CR4.SMEP: supervisor fetches from user-mode pages fault.
    @inlinable public var smep: Bool {
        get { flags & Self.smepFlag != 0 }
        set { set(Self.smepFlag, newValue) }
    }
    /// CR4.SMAP: supervisor data accesses to user-mode pages fault (EFLAGS.AC taken as clear).
    @inlinable public var smap: Bool {
        get { flags & Self.smapFlag != 0 }
        set { set(Self.smapFlag, newValue) }
    }
    /// CPUID Page1GB: bit 7 of a level-3 entry makes a 1 GiB leaf (otherwise it is reserved).
    @inlinable public var page1GB: Bool {
        get { flags & Self.page1GBFlag != 0 }
        set { set(Self.page1GBFlag, newValue) }
    }
    /// MAXPHYADDR: physical-address bits from this one up to 51 are reserved in every entry.
    ///
    /// - Precondition: between 36 and 52 when set.
    @inlinable public var physicalAddressBits: Int {
        get { Int(addressBits) }
        set {
            precondition((36...52).contains(newValue), "MAXPHYADDR is between 36 and 52 bits")
            addressBits = UInt8(newValue)
            reserved = reservedInEveryEntry
        }
    }

    /// The simulated CPUs' controls, those of OSTD's x86 boot: WP and NXE on, no SMEP/SMAP, 1 GiB
    /// pages, 52 physical-address bits.
    @inlinable public static var standard: PagingControls { PagingControls() }

    @inlinable
    mutating func set(_ flag: UInt8, _ on: Bool) {
        flags = on ? flags | flag : flags & ~flag
        reserved = reservedInEveryEntry
    }

    /// `reserved` computed from the flags and MAXPHYADDR.
    @inlinable
    var reservedInEveryEntry: UInt64 {
        var reserved: UInt64 = 0x000f_ffff_ffff_ffff & ~((1 &<< UInt64(addressBits)) &- 1)
        if !noExecute { reserved |= PageTableEntry.noExecute }
        return reserved
    }
}

/// A page-fault error code (SDM figure 4-12), as pushed by the CPU.
@frozen
public struct PageFaultErrorCode: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Set: a protection violation or a reserved bit; clear: a non-present entry.
    @inlinable public static var present: PageFaultErrorCode { PageFaultErrorCode(rawValue: 1 << 0) }
    /// The access was a write.
    @inlinable public static var write: PageFaultErrorCode { PageFaultErrorCode(rawValue: 1 << 1) }
    /// The access was a user-mode access.
    @inlinable public static var user: PageFaultErrorCode { PageFaultErrorCode(rawValue: 1 << 2) }
    /// A reserved bit was set in an entry of the walk.
    @inlinable public static var reservedBit: PageFaultErrorCode { PageFaultErrorCode(rawValue: 1 << 3) }
    /// The access was an instruction fetch (reported only with NXE or SMEP on).
    @inlinable public static var instructionFetch: PageFaultErrorCode { PageFaultErrorCode(rawValue: 1 << 4) }

    /// `0x15 (P W U RSVD I)`-style: the value and its set bits' names.
    public var description: String {
        var names: [String] = []
        for (bit, name) in ["P", "W", "U", "RSVD", "I"].enumerated() where rawValue & (1 << UInt64(bit)) != 0 {
            names.append(name)
        }
        return "0x" + String(rawValue, radix: 16) + " (" + (names.isEmpty ? "-" : names.joined(separator: " ")) + ")"
    }
}

/// The entries a walk read, root first, and where each of them is: up to four.
@frozen
public struct PageWalk: Sendable {
    /// The raw entries, root first; only the first `count` are meaningful.
    public var entries: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    /// The physical address of each entry, in the same order.
    public var locations: (Paddr, Paddr, Paddr, Paddr) = (Paddr(0), Paddr(0), Paddr(0), Paddr(0))
    /// How many entries the walk read (1 ... 4).
    public var count = 0
    /// How the walk ended.
    public var end: End = .notPresent

    /// How a walk ends.
    public enum End: Hashable, Sendable {
        /// At a leaf of `level` (1: 4 KiB, 2: 2 MiB, 3: 1 GiB).
        case leaf(level: PagingLevel)
        /// At an entry without P.
        case notPresent
        /// At a present entry with a reserved bit set.
        case reservedBit
    }

    @inlinable public init() {}

    /// Entry `i` (0 is the root's).
    @inlinable
    public subscript(i: Int) -> UInt64 {
        switch i {
        case 0: entries.0
        case 1: entries.1
        case 2: entries.2
        default: entries.3
        }
    }

    /// Where entry `i` is.
    @inlinable
    public func location(_ i: Int) -> Paddr {
        switch i {
        case 0: locations.0
        case 1: locations.1
        case 2: locations.2
        default: locations.3
        }
    }

    @inlinable
    mutating func append(_ entry: UInt64, at location: Paddr) {
        switch count {
        case 0: entries.0 = entry; locations.0 = location
        case 1: entries.1 = entry; locations.1 = location
        case 2: entries.2 = entry; locations.2 = location
        default: entries.3 = entry; locations.3 = location
        }
        count += 1
    }

    /// The leaf's level, when the walk reached one.
    @inlinable
    public var leafLevel: PagingLevel? {
        if case .leaf(let level) = end { return level }
        return nil
    }

    /// The physical address `va` translates to, when the walk reached a leaf.
    @inlinable
    public func paddr(of va: Vaddr) -> Paddr? {
        guard let level = leafLevel else { return nil }
        let offsetMask = PagingConsts.offsetMask(level)
        return Paddr((self[count - 1] & PageTableEntry.paMask(level)) | (va.rawValue & offsetMask))
    }
}

/// The rights a complete walk grants, folded over all its entries; what a TLB entry caches.
@frozen
public struct PageRights: Hashable, Sendable {
    /// U/S set in every entry: a user-mode page.
    public var user: Bool
    /// R/W set in every entry.
    public var writable: Bool
    /// NX clear in every entry (or NXE off).
    public var executable: Bool

    @inlinable
    public init(user: Bool, writable: Bool, executable: Bool) {
        self.user = user
        self.writable = writable
        self.executable = executable
    }
}

/// The x86-64 MMU's rule (see the file comment).
public enum X86Mmu {
    /// Walks `va` from the root at `root`, reading each entry with `load` (given its physical
    /// address), and stops where the hardware stops.
    @inlinable @inline(__always)
    public static func walk(_ va: Vaddr, root: Paddr, controls: PagingControls,
                            load: (Paddr) -> UInt64) -> PageWalk {
        var walk = PageWalk()
        var table = root.rawValue
        var level = PagingConsts.nrLevels
        while true {
            let location = Paddr(table + UInt64(PagingConsts.pteIndex(va, level) * 8))
            let entry = load(location)
            walk.append(entry, at: location)
            if entry & PageTableEntry.present == 0 {
                walk.end = .notPresent
                return walk
            }
            if hasReservedBit(entry, level: level, controls: controls) {
                walk.end = .reservedBit
                return walk
            }
            if level == 1 || entry & PageTableEntry.huge != 0 {
                walk.end = .leaf(level: level)
                return walk
            }
            table = entry & PageTableEntry.childMask
            level -= 1
        }
    }

    /// Whether a present `entry` at `level` has a bit set that must be zero (SDM tables 4-14 to
    /// 4-19): a physical-address bit at or above MAXPHYADDR; bit 63 without NXE; bit 7 at the
    /// root, and at level 3 without 1 GiB pages; the bits between the page-attribute bit and the
    /// frame address of a 2 MiB or 1 GiB leaf.
    @inlinable @inline(__always)
    public static func hasReservedBit(_ entry: UInt64, level: PagingLevel, controls: PagingControls) -> Bool {
        entry & reservedBits(level: level, leaf: entry & PageTableEntry.huge != 0,
                             common: commonReservedBits(controls), controls: controls) != 0
    }

    /// The bits reserved in every entry: physical-address bits at or above MAXPHYADDR, and bit
    /// 63 without NXE.
    @inlinable @inline(__always)
    public static func commonReservedBits(_ controls: PagingControls) -> UInt64 {
        controls.reserved
    }

    /// The bits reserved in an entry at `level` whose bit 7 is `leaf`, given `common`
    /// (`commonReservedBits`, which a walk computes once): bit 7 at the root, and at level 3
    /// without 1 GiB pages; the bits between the page-attribute bit and the frame address of a
    /// 2 MiB or 1 GiB leaf.
    @inlinable @inline(__always)
    public static func reservedBits(level: PagingLevel, leaf: Bool, common: UInt64, controls: PagingControls) -> UInt64 {
        switch level {
        case 4: common | PageTableEntry.huge
        case 3 where leaf: common | (controls.page1GB ? 0x3fff_e000 : PageTableEntry.huge)
        case 2 where leaf: common | 0x001f_e000
        default: common
        }
    }

    /// The rights the entries of a walk that reached a leaf grant together.
    @inlinable @inline(__always)
    public static func rights(_ walk: PageWalk, controls: PagingControls) -> PageRights {
        var all: UInt64 = ~0
        var any: UInt64 = 0
        for i in 0..<walk.count {
            all &= walk[i]
            any |= walk[i]
        }
        return PageRights(user: all & PageTableEntry.user != 0,
                          writable: all & PageTableEntry.writable != 0,
                          executable: !controls.noExecute || any & PageTableEntry.noExecute == 0)
    }

    /// Whether `access` to a page with `rights` is allowed: `nil` when it is, the error code of
    /// its protection fault when not (SDM §4.6).
    @inlinable @inline(__always)
    public static func check(_ access: MemoryAccess, rights: PageRights,
                             controls: PagingControls) -> PageFaultErrorCode? {
        let allowed: Bool
        if access.userMode {
            switch access.kind {
            case .read: allowed = rights.user
            case .write: allowed = rights.user && rights.writable
            case .fetch: allowed = rights.user && rights.executable
            }
        } else {
            switch access.kind {
            case .read: allowed = !(controls.smap && rights.user)
            case .write: allowed = !(controls.smap && rights.user) && (rights.writable || !controls.writeProtect)
            case .fetch: allowed = rights.executable && !(controls.smep && rights.user)
            }
        }
        return allowed ? nil : errorCode(access, controls: controls).union(.present)
    }

    /// The access bits of an error code: W/R, U/S, and I/D where NXE or SMEP is on.
    @inlinable @inline(__always)
    public static func errorCode(_ access: MemoryAccess, controls: PagingControls) -> PageFaultErrorCode {
        var code: PageFaultErrorCode = []
        if access.kind == .write { code.insert(.write) }
        if access.userMode { code.insert(.user) }
        if access.kind == .fetch && (controls.noExecute || controls.smep) { code.insert(.instructionFetch) }
        return code
    }

    /// The whole rule for one walk: `nil` when `access` succeeds, otherwise its error code.
    @inlinable @inline(__always)
    public static func decide(_ walk: PageWalk, _ access: MemoryAccess, controls: PagingControls) -> PageFaultErrorCode? {
        switch walk.end {
        case .notPresent:
            return errorCode(access, controls: controls)
        case .reservedBit:
            return errorCode(access, controls: controls).union([.present, .reservedBit])
        case .leaf:
            return check(access, rights: rights(walk, controls: controls), controls: controls)
        }
    }

    /// The bits a successful `access` sets in entry `i` of its walk: A in every entry, D too in
    /// the leaf for a write.
    @inlinable @inline(__always)
    public static func accessedDirty(entry i: Int, of walk: PageWalk, _ access: MemoryAccess) -> UInt64 {
        i == walk.count - 1 && access.kind == .write
            ? PageTableEntry.accessed | PageTableEntry.dirty : PageTableEntry.accessed
    }
}
