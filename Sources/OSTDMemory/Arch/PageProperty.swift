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
    @inlinable public static var r: PageFlags { PageFlags(rawValue: 0x01) }
    /// Writable.
    @inlinable public static var w: PageFlags { PageFlags(rawValue: 0x02) }
    /// Executable.
    @inlinable public static var x: PageFlags { PageFlags(rawValue: 0x04) }
    /// Set by the MMU on an access.
    @inlinable public static var accessed: PageFlags { PageFlags(rawValue: 0x08) }
    /// Set by the MMU on a write.
    @inlinable public static var dirty: PageFlags { PageFlags(rawValue: 0x10) }
    /// Available bit 52; owned by the page table (the tracked/untracked marker).
    @inlinable public static var avail1: PageFlags { PageFlags(rawValue: 0x40) }
    /// Available bit 53, free for the owner of the mapping.
    @inlinable public static var avail2: PageFlags { PageFlags(rawValue: 0x80) }

    @inlinable public static var rw: PageFlags { PageFlags(rawValue: 0x03) }
    @inlinable public static var rx: PageFlags { PageFlags(rawValue: 0x05) }
    @inlinable public static var rwx: PageFlags { PageFlags(rawValue: 0x07) }

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
    @inlinable public static var user: PrivilegedPageFlags { PrivilegedPageFlags(rawValue: 0x01) }
    /// Kept in the TLB across address-space switches.
    @inlinable public static var global: PrivilegedPageFlags { PrivilegedPageFlags(rawValue: 0x02) }
}

/// Flags of an intermediate entry (OSTD `PageTableFlags`).
@frozen
public struct PageTableFlags: OptionSet, Hashable, Sendable, BitwiseCopyable {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    @inlinable public static var avail1: PageTableFlags { PageTableFlags(rawValue: 0x40) }
    @inlinable public static var avail2: PageTableFlags { PageTableFlags(rawValue: 0x80) }

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
///
/// Stored as one word, the three fields from the low byte up (`packed`): a protect compares what
/// its `op` made with the last property it encoded in one instruction, not three.
@frozen
public struct PageProperty: Hashable, Sendable, BitwiseCopyable, CustomStringConvertible {
    /// Flags in bits 0–7, the cache policy's raw value in bits 8–15, the privileged flags in
    /// bits 16–23; the rest is zero. Only the accessors below write it.
    @usableFromInline var packed: UInt32

    /// Access and status flags (OSTD `flags`).
    @inlinable public var flags: PageFlags {
        @inline(__always) get { PageFlags(rawValue: UInt8(truncatingIfNeeded: packed)) }
        @inline(__always) set { packed = packed & ~0xff | UInt32(newValue.rawValue) }
    }

    /// How the CPU caches the page (OSTD `cache`).
    @inlinable public var cache: CachePolicy {
        @inline(__always) get {
            // SAFETY: bits 8–15 hold a `CachePolicy`'s raw value (only `init` and this setter
            // write them), which for this four-case enum without payloads is its stored form.
            unsafe unsafeBitCast(UInt8(truncatingIfNeeded: packed &>> 8), to: CachePolicy.self)
        }
        @inline(__always) set { packed = packed & ~0xff00 | UInt32(newValue.rawValue) &<< 8 }
    }

    /// Flags only the kernel may set (OSTD `priv_flags`).
    @inlinable public var privilegedFlags: PrivilegedPageFlags {
        @inline(__always) get { PrivilegedPageFlags(rawValue: UInt8(truncatingIfNeeded: packed &>> 16)) }
        @inline(__always) set { packed = packed & ~0xff_0000 | UInt32(newValue.rawValue) &<< 16 }
    }

    @inlinable
    public init(flags: PageFlags, cache: CachePolicy, privilegedFlags: PrivilegedPageFlags = []) {
        packed = UInt32(flags.rawValue) | UInt32(cache.rawValue) &<< 8 | UInt32(privilegedFlags.rawValue) &<< 16
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
    @inlinable @inline(__always)
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
    @inlinable @inline(__always)
    init(leafBits raw: UInt64) {
        let low = UInt32(truncatingIfNeeded: raw)
        var f = low & 0x03                                           // P, RW → R, W
        f |= (low >> 2) & 0x18                                       // A, D
        f |= UInt32(truncatingIfNeeded: raw >> 46) & 0xc0            // AVAIL1, AVAIL2
        f |= UInt32(truncatingIfNeeded: ~raw >> 61) & 0x04           // !NX → X
        // The cache policy is the two PAT index bits (its raw values are 0 ... 3).
        let cache = (low >> 3) & 3
        let privileged = (low >> 2) & 0x01 | (low >> 7) & 0x02
        packed = f & 0xff | cache &<< 8 | privileged &<< 16
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
