// Parsing scripts (SCRIPT.md, "Syntax"): every line is checked before anything runs.
//
// One op per line; `#` starts a comment anywhere; blanks, tabs and a trailing `\r` separate or
// surround tokens. Numbers are decimal or `0x` hex, optionally scaled by `K`, `M` or `G`, and must
// fit in 64 bits. A script with any error is rejected whole, with the first error's line.

/// Why a script or an argument was rejected: printed as `FILE:LINE: error: MESSAGE`.
public struct ScriptError: Error, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var message: String

    public init(file: String, line: Int, message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { "\(file):\(line): error: \(message)" }
}

/// The script parser.
public enum ScriptParser {
    /// Parses a whole script given as text.
    ///
    /// - Parameter file: the name errors give (`<stdin>` for standard input).
    /// - Throws: the first line's error.
    public static func parse(_ text: String, file: String) throws(ScriptError) -> Script {
        try parse(reading: byteSource(text.utf8), file: file)
    }

    /// Parses a script as its bytes arrive from `source`, line by line: the first invalid line
    /// (or a line longer than 1 MiB) stops it, and nothing after that line is read.
    ///
    /// - Throws: the first line's error; a source that fails is `ScriptError` at line 0.
    public static func parse(reading source: @escaping ScriptByteSource, file: String) throws(ScriptError) -> Script {
        var reader = LineReader(source)
        var script = Script()
        while let line = try nextLine(&reader, file: file) {
            let tokens = tokenize(line)
            guard !tokens.isEmpty else { continue }
            do throws(LineError) {
                script.append(ScriptOp(line: reader.lineNumber, op: try parseOp(tokens)))
            } catch {
                throw ScriptError(file: file, line: reader.lineNumber, message: error.message)
            }
        }
        return script
    }

    /// The reader's next line, its errors as the script's.
    private static func nextLine(_ reader: inout LineReader, file: String) throws(ScriptError) -> ArraySlice<UInt8>? {
        do throws(LineReadError) {
            return try reader.nextLine()
        } catch {
            switch error {
            case .tooLong(let line):
                throw ScriptError(file: file, line: line, message: "line longer than \(LineReader.maxLineLength) bytes")
            case .unreadable:
                throw ScriptError(file: file, line: reader.lineNumber + 1, message: "cannot read the script here")
            }
        }
    }

    /// The tokens of a line: a trailing `\r` dropped, the comment cut off, split at blanks and
    /// tabs (a `\r` inside a line is not a separator).
    static func tokenize(_ line: ArraySlice<UInt8>) -> [Substring] {
        let content = line.last == UInt8(ascii: "\r") ? line.dropLast() : line
        let code = content.prefix { $0 != UInt8(ascii: "#") }
        return code.split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
            .map { Substring(String(decoding: $0, as: UTF8.self)) }
    }

    /// A line's error, before it knows its file and line.
    struct LineError: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    /// The positional argument counts and whether options are allowed, per op.
    static let shapes: [String: (names: [String], options: Bool)] = [
        "map": (["VA", "LEN", "PROT"], true),
        "unmap": (["VA", "LEN"], false),
        "protect": (["VA", "LEN", "PROT"], false),
        "query": (["VA"], false),
        "write": (["VA", "HEX"], false),
        "fill": (["VA", "LEN", "BYTE"], false),
        "read": (["VA", "LEN"], false),
        "copy": (["SRC", "DST", "LEN"], false),
    ]

    static func parseOp(_ tokens: [Substring]) throws(LineError) -> Op {
        let name = String(tokens[0])
        if name.hasPrefix("\u{FEFF}") {
            throw LineError("the line starts with a UTF-8 byte-order mark (EF BB BF); save the script without one")
        }
        guard let shape = shapes[name] else {
            throw LineError("unknown op \(quoted(name)); the ops are map, unmap, protect, query, write, fill, read, copy")
        }
        var usage: String {
            ([name] + shape.names).joined(separator: " ") + (shape.options ? " [page=4K|2M|1G] [cache=wb|wt|wc|uc]" : "")
        }
        let arguments = Array(tokens.dropFirst())
        let positional = arguments.prefix { !$0.contains("=") }
        let options = arguments.dropFirst(positional.count)
        guard positional.count == shape.names.count else {
            throw LineError("\(quoted(name)) takes \(shape.names.count) argument\(shape.names.count == 1 ? "" : "s") (\(usage)), got \(positional.count)")
        }
        if !shape.options, let option = options.first {
            throw LineError("\(quoted(name)) takes no options, got \(quoted(option)) (\(usage))")
        }
        let a = Array(positional)
        switch name {
        case "map":
            let (page, cache) = try parseMapOptions(Array(options))
            return .map(va: try number(a[0], "VA"), len: try number(a[1], "LEN"), prot: try prot(a[2]), page: page, cache: cache)
        case "unmap": return .unmap(va: try number(a[0], "VA"), len: try number(a[1], "LEN"))
        case "protect": return .protect(va: try number(a[0], "VA"), len: try number(a[1], "LEN"), prot: try prot(a[2]))
        case "query": return .query(va: try number(a[0], "VA"))
        case "write": return .write(va: try number(a[0], "VA"), bytes: try hex(a[1]))
        case "fill":
            let value = try number(a[2], "BYTE")
            guard value <= 255 else { throw LineError("BYTE \(sanitized(a[2])) is above 255") }
            return .fill(va: try number(a[0], "VA"), len: try number(a[1], "LEN"), byte: UInt8(value))
        case "read": return .read(va: try number(a[0], "VA"), len: try number(a[1], "LEN"))
        default: return .copy(src: try number(a[0], "SRC"), dst: try number(a[1], "DST"), len: try number(a[2], "LEN"))
        }
    }

    static func parseMapOptions(_ options: [Substring]) throws(LineError) -> (LeafSize, ScriptCache) {
        var page: LeafSize? = nil
        var cache: ScriptCache? = nil
        for option in options {
            let parts = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = parts[0]
            let value = parts.count > 1 ? String(parts[1]) : ""
            switch key {
            case "page":
                guard page == nil else { throw LineError("option 'page=' is given twice") }
                guard let size = LeafSize(rawValue: value) else {
                    throw LineError("page=\(sanitized(value)) is not a leaf size; use page=4K, page=2M or page=1G")
                }
                page = size
            case "cache":
                guard cache == nil else { throw LineError("option 'cache=' is given twice") }
                guard let policy = ScriptCache(rawValue: value) else {
                    throw LineError("cache=\(sanitized(value)) is not a cache policy; use cache=wb, wt, wc or uc")
                }
                cache = policy
            default:
                throw LineError("unknown option \(quoted(option)); map takes page= and cache=")
            }
        }
        return (page ?? .size4K, cache ?? .wb)
    }

    /// A number: decimal, or `0x` and hex digits, optionally followed by `K`, `M` or `G`.
    static func number(_ token: Substring, _ what: String) throws(LineError) -> UInt64 {
        guard let value = parseNumber(token) else {
            if hasNumberShape(token) { throw LineError("\(what) \(quoted(token)) is too large: numbers are below 2^64") }
            throw LineError("\(what) \(quoted(token)) is not a number (decimal or 0x hex, optionally with K, M or G, below 2^64)")
        }
        return value
    }

    /// The longest a token is shown in a message; a longer one is cut, with its length said.
    static let shownTokenLength = 40

    /// `token` as a message shows it, between single quotes: see `sanitized`.
    static func quoted<S: StringProtocol>(_ token: S) -> String { "'" + sanitized(token) + "'" }

    /// `token` safe to print on a terminal: printable ASCII as it is (a quote or backslash
    /// escaped), any other character as `\u{…}` (a control character, an escape sequence's ESC, a
    /// NUL of a binary file, a byte-order mark), and cut after `shownTokenLength` characters with
    /// the length it had.
    static func sanitized<S: StringProtocol>(_ token: S) -> String {
        var out = ""
        var shown = 0
        for scalar in token.unicodeScalars {
            if shown == shownTokenLength {
                return out + "…(\(token.utf8.count) bytes)"
            }
            switch scalar {
            case "'", "\\": out += "\\" + String(scalar)
            case " "..."~": out.unicodeScalars.append(scalar)
            default: out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
            shown += 1
        }
        return out
    }

    /// Whether `token` has a number's shape (decimal digits, or 0x and hex digits, with an
    /// optional K, M or G), so that failing to parse it means it is too large.
    public static func hasNumberShape<S: StringProtocol>(_ token: S) -> Bool {
        var body = Substring(token)
        if let last = body.last, "KMG".contains(last) { body = body.dropLast() }
        let hex = body.hasPrefix("0x")
        if hex { body = body.dropFirst(2) }
        return !body.isEmpty && body.allSatisfy { $0.isASCII && (hex ? $0.isHexDigit : $0.isNumber) }
    }

    /// The value of a number token, or `nil` when it is malformed or above 2^64 − 1.
    public static func parseNumber<S: StringProtocol>(_ token: S) -> UInt64? {
        var digits = Substring(token)
        var scale: UInt64 = 1
        switch digits.last {
        case "K": scale = 1 << 10
        case "M": scale = 1 << 20
        case "G": scale = 1 << 30
        default: break
        }
        if scale != 1 { digits = digits.dropLast() }
        var radix: UInt64 = 10
        if digits.hasPrefix("0x") {
            radix = 16
            digits = digits.dropFirst(2)
        }
        guard !digits.isEmpty else { return nil }
        var value: UInt64 = 0
        for character in digits {
            guard let digit = character.hexDigitValue, UInt64(digit) < radix, character.isASCII else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: radix)
            let (sum, overflow2) = shifted.addingReportingOverflow(UInt64(digit))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        let (scaled, overflow) = value.multipliedReportingOverflow(by: scale)
        return overflow ? nil : scaled
    }

    /// Protection letters: some of `r w x u g`, each at most once, `r` required.
    static func prot(_ token: Substring) throws(LineError) -> Prot {
        var seen = Set<Character>()
        var prot = Prot()
        for letter in token {
            guard "rwxug".contains(letter) else {
                throw LineError("PROT \(quoted(token)) has \(quoted(String(letter))); use the letters r, w, x, u, g")
            }
            guard seen.insert(letter).inserted else { throw LineError("PROT \(quoted(token)) repeats \(quoted(String(letter)))") }
            switch letter {
            case "w": prot.writable = true
            case "x": prot.executable = true
            case "u": prot.user = true
            case "g": prot.global = true
            default: break
            }
        }
        guard seen.contains("r") else {
            throw LineError("PROT \(quoted(token)) lacks 'r' (x86-64 has no mapping that is writable or executable but not readable)")
        }
        return prot
    }

    /// An even, non-zero number of hex digits, no `0x`.
    static func hex(_ token: Substring) throws(LineError) -> [UInt8] {
        let digits = Array(token.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var i = 0
        while i + 1 < digits.count, let high = hexValue(digits[i]), let low = hexValue(digits[i + 1]) {
            bytes.append(high << 4 | low)
            i += 2
        }
        guard !digits.isEmpty, i == digits.count else {
            throw LineError("HEX \(quoted(token)) is not an even, non-zero number of hex digits (without 0x)")
        }
        return bytes
    }

    /// The value of an ASCII hex digit.
    static func hexValue(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return digit - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
