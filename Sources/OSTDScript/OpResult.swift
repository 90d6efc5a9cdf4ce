// What an op did (SCRIPT.md's result fields and error table) and the summary after the last op;
// Output.swift prints them. `OpFailure` is what a failing op throws, and says which of the
// contract's codes an error of the `VmSpace` API stands for.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

/// An op failure's code (SCRIPT.md's error table, in precedence order).
public enum ScriptErrorCode: String, Equatable, Sendable {
    case outOfRange = "out-of-range"
    case unaligned
    case accessConflict = "access-conflict"
    case alreadyMapped = "already-mapped"
    case outOfMemory = "out-of-memory"
    case pageFault = "page-fault"
}

/// A value in an op's result.
public enum ResultValue: Equatable, Sendable {
    case int(Int)
    case address(UInt64)
    case text(String)
    case bool(Bool)
    /// The `count` bytes of user memory at `va`, read through a user reader as they are printed
    /// (a large `read`'s data: never held whole).
    case userBytes(va: UInt64, count: Int)
}

/// What one op did: `ok`, or an error code with a message; and its named fields, in order.
public struct OpResult: Equatable, Sendable {
    public var line: Int
    public var op: String
    public var error: ScriptErrorCode?
    public var message: String?
    public var fields: [(String, ResultValue)]

    public var ok: Bool { error == nil }

    public static func == (a: OpResult, b: OpResult) -> Bool {
        a.line == b.line && a.op == b.op && a.error == b.error && a.message == b.message
            && a.fields.map(\.0) == b.fields.map(\.0) && a.fields.map(\.1) == b.fields.map(\.1)
    }
}

/// The state after the last op (SCRIPT.md's summary line).
public struct ScriptSummary: Equatable, Sendable {
    public var ops: Int
    public var failed: Int
    public var root: UInt64
    public var memory: UInt64
    public var framesInUse: Int
    public var ptFrames: Int
    public var audit: Bool
}

/// A failed op: its code, message and extra fields.
struct OpFailure: Error {
    var code: ScriptErrorCode
    var message: String
    var fields: [(String, ResultValue)] = []

    init(_ code: ScriptErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The failure an error of the `VmSpace` API stands for.
    init(_ error: OSTDError) {
        switch error {
        case .pageFault(let address, let copied):
            self.init(.pageFault, "page fault at \(hex(address.rawValue)) after \(copied) byte(s)")
            fields = [("va", .address(address.rawValue)), ("copied", .int(copied))]
        case .accessConflict(let requested, let conflicting):
            self.init(.accessConflict, "a writer over \(hex(requested.lowerBound.rawValue))..<\(hex(requested.upperBound.rawValue)) overlaps an active reader over \(hex(conflicting.lowerBound.rawValue))..<\(hex(conflicting.upperBound.rawValue)); nothing was copied")
        case .invalidUserRange: self.init(.outOfRange, "\(error)")
        case .outOfMemory: self.init(.outOfMemory, "\(error)")
        default: self.init(.outOfRange, "\(error)")
        }
    }
}
