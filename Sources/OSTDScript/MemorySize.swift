// `--memory SIZE`: the one syntax every command takes for the simulated machine's memory — a
// number in decimal or 0x hex with an optional K, M or G, e.g. 256M, 1G, 0x10000000 — with a
// message that says which rule a refused size breaks: not a size at all, too large for a machine,
// too small for the command, or not a multiple of 2 MiB.

@_spi(OSTDInternals) import OSTDMemory

/// Why a `--memory` value was refused.
public enum MemorySizeError: Error, Equatable, CustomStringConvertible {
    /// The text is not a size.
    case notASize(String)
    /// A size, but above the largest machine (or above 2^64 − 1).
    case tooLarge(String)
    /// A size below what the command needs.
    case tooSmall(String, least: Int)
    /// Not a multiple of 2 MiB.
    case notAMultipleOf2M(String)

    public var description: String {
        switch self {
        case .notASize(let text):
            "--memory \(text) is not a size (decimal or 0x hex, optionally with K, M or G: e.g. 256M, 1G, 0x10000000)"
        case .tooLarge(let text):
            "--memory \(text) is too large: a machine has at most \(Machine.maxMemorySize >> 30)G"
        case .tooSmall(let text, let least):
            "--memory \(text) is too small: at least \(least >> 20)M"
        case .notAMultipleOf2M(let text):
            "--memory \(text) is not a multiple of 2M"
        }
    }
}

public enum MemorySize {
    /// The bytes `text` asks for, if it is a multiple of 2 MiB between `least` and the largest
    /// machine.
    public static func parse(_ text: String, least: Int = 2 << 20) -> Result<Int, MemorySizeError> {
        guard let size = ScriptParser.parseNumber(text) else {
            return .failure(ScriptParser.hasNumberShape(text) ? .tooLarge(text) : .notASize(text))
        }
        guard size <= UInt64(Machine.maxMemorySize) else { return .failure(.tooLarge(text)) }
        guard size >= UInt64(least) else { return .failure(.tooSmall(text, least: least)) }
        guard size % (2 << 20) == 0 else { return .failure(.notAMultipleOf2M(text)) }
        return .success(Int(size))
    }
}
