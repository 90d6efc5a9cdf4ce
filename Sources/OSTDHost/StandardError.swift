// The commands' writer for standard error: one unbuffered `write(2)` per line, so that error lines
// are never held back behind buffered standard output or a progress line.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes `text` and a newline to standard error (file descriptor 2), unbuffered, safe for a
/// terminal (`terminalSafe`): a message that repeats an argument or a file name cannot move the
/// cursor, clear the screen or ring the bell.
public func printToStandardError(_ text: String) {
    var line = terminalSafe(text) + "\n"
    line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}

/// `text` with every control character but the newline written as `\u{…}`: C0 (tab, escape,
/// bell, NUL …), DEL and C1 (U+0080 … U+009F, some of which terminals obey as escape sequences).
public func terminalSafe(_ text: String) -> String {
    guard text.unicodeScalars.contains(where: isControl) else { return text }
    var out = ""
    for scalar in text.unicodeScalars {
        if isControl(scalar) {
            out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out
}

private func isControl(_ scalar: Unicode.Scalar) -> Bool {
    (scalar.value < 0x20 && scalar != "\n") || (0x7F...0x9F).contains(scalar.value)
}
