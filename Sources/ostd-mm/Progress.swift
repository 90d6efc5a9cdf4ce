// A progress line on standard error for long runs: shown only on a terminal, at most four times a
// second, and erased when done, so piped output stays clean.

import OSTDHost

#if canImport(Glibc)
import Glibc
#endif

final class Progress {
    let label: String
    let enabled = isatty(2) != 0
    var lastPrint = monotonicNanoseconds()
    var printed = false

    init(label: String) { self.label = label }

    /// Reports `done` of `total`, with `note`.
    func update(_ done: Int, _ total: Int) { show("\(done)/\(total) \(label)") }

    /// Shows `text` if a quarter second has passed since the last update.
    func show(_ text: String, force: Bool = false) {
        guard enabled else { return }
        let now = monotonicNanoseconds()
        guard force || now - lastPrint > 250_000_000 else { return }
        lastPrint = now
        printed = true
        emit("\r\(text)\u{1b}[K")
    }

    /// Erases the line.
    func finish() {
        guard enabled, printed else { return }
        emit("\r\u{1b}[K")
    }

    private func emit(_ text: String) {
        var line = text
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
}
