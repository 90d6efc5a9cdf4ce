// The op-script language of `ostd-mm run` (contract: SCRIPT.md, version 1; our notes:
// docs/scripts.md): what a parsed script is.
//
// A script is a list of ops, each with the line it came from. Parsing validates everything that
// can be validated without running (syntax, numbers, letters, options), so a script that parses
// runs to the end: an op that fails at run time is a result, not an error. The whole script is
// held before it runs (nothing runs unless every line is valid), so it is held packed
// (ScriptPacking.swift): a few bytes per op, a `write`'s bytes inline, no allocation per op.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

/// A parsed script: its ops in order, packed; iterating decodes them one by one.
public struct Script: Equatable, Sendable, Sequence {
    /// The packed ops (ScriptPacking.swift).
    var packed: [UInt8] = []
    /// The line of the last op appended (lines are packed as differences).
    var lastLine = 0
    /// The number of ops.
    public internal(set) var count = 0

    public init() {}

    public init(ops: [ScriptOp]) {
        for op in ops { append(op) }
    }

    /// The ops, decoded into an array (for short scripts and tests).
    public var ops: [ScriptOp] { Array(self) }

    /// The bytes the packed ops take.
    public var packedSize: Int { packed.count }

    public func makeIterator() -> ScriptIterator { ScriptIterator(packed: packed) }
}

/// One op and the 1-based line it is on.
public struct ScriptOp: Equatable, Sendable {
    public var line: Int
    public var op: Op

    public init(line: Int, op: Op) {
        self.line = line
        self.op = op
    }
}

/// The leaf size of a `map` (`page=`).
public enum LeafSize: String, Equatable, Sendable, CaseIterable {
    case size4K = "4K"
    case size2M = "2M"
    case size1G = "1G"

    /// The paging level of the leaf.
    public var level: PagingLevel {
        switch self {
        case .size4K: return 1
        case .size2M: return 2
        case .size1G: return 3
        }
    }

    /// The leaf's size in bytes.
    public var bytes: UInt64 { UInt64(PagingConsts.pageSize(level)) }

    /// The name for a leaf of `level`.
    public init(level: PagingLevel) {
        self = level == 1 ? .size4K : level == 2 ? .size2M : .size1G
    }
}

/// Protection letters: `r w x u g`, `r` always present.
public struct Prot: Equatable, Sendable {
    public var writable = false
    public var executable = false
    public var user = false
    public var global = false

    public init(writable: Bool = false, executable: Bool = false, user: Bool = false, global: Bool = false) {
        self.writable = writable
        self.executable = executable
        self.user = user
        self.global = global
    }

    /// The letters in canonical order, e.g. `rwu`.
    public var letters: String {
        "r" + (writable ? "w" : "") + (executable ? "x" : "") + (user ? "u" : "") + (global ? "g" : "")
    }

    /// The page property with these letters and `cache`.
    public func property(cache: CachePolicy) -> PageProperty {
        var flags: PageFlags = .r
        if writable { flags.insert(.w) }
        if executable { flags.insert(.x) }
        var privileged: PrivilegedPageFlags = []
        if user { privileged.insert(.user) }
        if global { privileged.insert(.global) }
        return PageProperty(flags: flags, cache: cache, privilegedFlags: privileged)
    }

    /// The letters of a mapping's property.
    public init(_ property: PageProperty) {
        writable = property.flags.contains(.w)
        executable = property.flags.contains(.x)
        user = property.privilegedFlags.contains(.user)
        global = property.privilegedFlags.contains(.global)
    }
}

/// The cache policies a script can name (`cache=`).
public enum ScriptCache: String, Equatable, Sendable, CaseIterable {
    case wb, wt, wc, uc

    public var policy: CachePolicy {
        switch self {
        case .wb: return .writeback
        case .wt: return .writethrough
        case .wc: return .writecombining
        case .uc: return .uncacheable
        }
    }

    /// The script name of `policy` (`wb` for any policy a script cannot name).
    public init(_ policy: CachePolicy) {
        switch policy {
        case .writethrough: self = .wt
        case .writecombining: self = .wc
        case .uncacheable: self = .uc
        default: self = .wb
        }
    }
}

/// An op of the script language.
public enum Op: Equatable, Sendable {
    case map(va: UInt64, len: UInt64, prot: Prot, page: LeafSize, cache: ScriptCache)
    case unmap(va: UInt64, len: UInt64)
    case protect(va: UInt64, len: UInt64, prot: Prot)
    case query(va: UInt64)
    case write(va: UInt64, bytes: [UInt8])
    case fill(va: UInt64, len: UInt64, byte: UInt8)
    case read(va: UInt64, len: UInt64)
    case copy(src: UInt64, dst: UInt64, len: UInt64)

    /// The op's name as written.
    public var name: String {
        switch self {
        case .map: return "map"
        case .unmap: return "unmap"
        case .protect: return "protect"
        case .query: return "query"
        case .write: return "write"
        case .fill: return "fill"
        case .read: return "read"
        case .copy: return "copy"
        }
    }
}
