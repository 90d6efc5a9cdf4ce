// Page properties: access flags, cache policy and privileged flags (OSTD `mm/page_prop.rs`), and
// their encoding in x86-64 leaf entries.
//
// `PageFlags` lists `AVAIL1` beside `AVAIL2` (OSTD keeps `AVAIL1` among the privileged flags). The
// page table owns `AVAIL1`: it is the marker that tells tracked mappings from untracked ones (see
// `PageTableConfig`), so it is set from the item on `map`, restored after every `protectNext`
// operation, and cleared in what `query` reports.

/// Access and status flags of a mapping (OSTD `PageFlags`).
@frozen
public struct PageFlags: OptionSet, Hashable, Sendable, BitwiseCopyable, CustomStringConvertible {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Readable. A mapping without it is present to software and faults on every access.
    public static let r = PageFlags(rawValue: 0x01)
    /// Writable.
    public static let w = PageFlags(rawValue: 0x02)
    /// Executable.
    public static let x = PageFlags(rawValue: 0x04)
    /// Set by the MMU on an access.
    public static let accessed = PageFlags(rawValue: 0x08)
    /// Set by the MMU on a write.
    public static let dirty = PageFlags(rawValue: 0x10)
    /// Available bit 52; owned by the page table (the tracked/untracked marker).
    public static let avail1 = PageFlags(rawValue: 0x40)
    /// Available bit 53, free for the owner of the mapping.
    public static let avail2 = PageFlags(rawValue: 0x80)

    public static let rw: PageFlags = [.r, .w]
    public static let rx: PageFlags = [.r, .x]
    public static let rwx: PageFlags = [.r, .w, .x]

    /// `rwx`-style, as `ls -l` and `/proc/*/maps` show permissions.
    public var description: String {
        (contains(.r) ? "r" : "-") + (contains(.w) ? "w" : "-") + (contains(.x) ? "x" : "-")
    }
}

/// Flags only the kernel may set (OSTD `PrivilegedPageFlags`).
@frozen
public struct PrivilegedPageFlags: OptionSet, Hashable, Sendable, BitwiseCopyable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Accessible from user mode.
    public static let user = PrivilegedPageFlags(rawValue: 0x01)
    /// Kept in the TLB across address-space switches.
    public static let global = PrivilegedPageFlags(rawValue: 0x02)
}

/// Flags of an intermediate entry (OSTD `PageTableFlags`).
@frozen
public struct PageTableFlags: OptionSet, Hashable, Sendable, BitwiseCopyable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let avail1 = PageTableFlags(rawValue: 0x40)
    public static let avail2 = PageTableFlags(rawValue: 0x80)

    @inlinable
    var pteBits: UInt64 {
        (contains(.avail1) ? PageTableEntry.avail1 : 0) | (contains(.avail2) ? PageTableEntry.avail2 : 0)
    }

    @inlinable
    init(pteBits raw: UInt64) {
        var flags: PageTableFlags = []
        if raw & PageTableEntry.avail1 != 0 { flags.insert(.avail1) }
        if raw & PageTableEntry.avail2 != 0 { flags.insert(.avail2) }
        self = flags
    }
}

/// How the CPU caches a mapping (OSTD `CachePolicy`; `WriteProtected` is not offered, since
/// OSTD's x86 encoding rejects it).
public enum CachePolicy: UInt8, Hashable, Sendable, BitwiseCopyable, CaseIterable {
    case writeback
    case writethrough
    case writecombining
    case uncacheable

    /// The PAT index bits (PCD << 1 | PWT): WB 0, WT PWT, WC PCD, UC PCD|PWT.
    @inlinable
    var pteBits: UInt64 { UInt64(rawValue) << 3 }
}

/// Everything a leaf says about its page besides the address (OSTD `PageProperty`).
@frozen
public struct PageProperty: Hashable, Sendable, BitwiseCopyable, CustomStringConvertible {
    public var flags: PageFlags
    public var cache: CachePolicy
    public var privilegedFlags: PrivilegedPageFlags

    @inlinable
    public init(flags: PageFlags, cache: CachePolicy, privilegedFlags: PrivilegedPageFlags = []) {
        self.flags = flags
        self.cache = cache
        self.privilegedFlags = privilegedFlags
    }

    /// A user mapping (OSTD `PageProperty::new_user`): privileged flags `USER`.
    @inlinable
    public static func user(_ flags: PageFlags, cache: CachePolicy = .writeback) -> PageProperty {
        PageProperty(flags: flags, cache: cache, privilegedFlags: .user)
    }

    /// A kernel mapping: no `USER`.
    @inlinable
    public static func kernel(_ flags: PageFlags, cache: CachePolicy = .writeback) -> PageProperty {
        PageProperty(flags: flags, cache: cache, privilegedFlags: [])
    }

    /// The leaf bits, including bit 7 (the leaf marker) and NX when `X` is clear.
    @inlinable
    var leafBits: UInt64 {
        let f = UInt64(flags.rawValue)
        var bits = PageTableEntry.huge | cache.pteBits
        bits |= f & 0x01                                      // R → P
        bits |= f & 0x02                                      // W → RW
        bits |= (f & 0x18) << 2                               // ACCESSED, DIRTY → bits 5, 6
        bits |= (f & 0x40) << 46                              // AVAIL1 → bit 52
        bits |= (f & 0x80) << 46                              // AVAIL2 → bit 53
        bits |= (~f & 0x04) << 61                             // !X → NX (bit 63)
        let p = UInt64(privilegedFlags.rawValue)
        bits |= (p & 0x01) << 2                               // USER → US
        bits |= (p & 0x02) << 7                               // GLOBAL → G
        return bits
    }

    /// Decodes the bits of a leaf entry.
    @inlinable
    init(leafBits raw: UInt64) {
        var f = UInt8(truncatingIfNeeded: raw & 0x03)                  // P, RW
        f |= UInt8(truncatingIfNeeded: (raw >> 2) & 0x18)              // A, D
        f |= UInt8(truncatingIfNeeded: (raw >> 46) & 0xc0)             // AVAIL1, AVAIL2
        if raw & PageTableEntry.noExecute == 0 { f |= 0x04 }
        var p: UInt8 = 0
        if raw & PageTableEntry.user != 0 { p |= 0x01 }
        if raw & PageTableEntry.global != 0 { p |= 0x02 }
        flags = PageFlags(rawValue: f)
        cache = CachePolicy(rawValue: UInt8(truncatingIfNeeded: (raw >> 3) & 3))!
        privilegedFlags = PrivilegedPageFlags(rawValue: p)
    }

    /// `rwx` plus the cache policy and `u`/`g` markers, e.g. `rw- wb u`.
    public var description: String {
        let cacheName = ["wb", "wt", "wc", "uc"][Int(cache.rawValue)]
        var text = flags.description + " " + cacheName
        if privilegedFlags.contains(.user) { text += " u" }
        if privilegedFlags.contains(.global) { text += " g" }
        return text
    }
}
