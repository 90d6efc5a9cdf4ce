// The kernel's log, on the VMM's console port (0xE9), without `String`.
//
// Swift's `String` keeps flag bits in the top bits of its storage pointer, so it cannot hold the
// address of a literal or of heap storage in the kernel half (0xffff…): in this kernel a `String`
// is never made. The log is built from static strings and numbers written byte by byte.

/// A piece of a log line.
enum LogPart {
    case text(StaticString)
    case hex(UInt64)
    case decimal(Int)
}

/// Writes one log line.
func klog(_ parts: LogPart...) {
    for part in parts {
        switch part {
        case .text(let text): writeStatic(text)
        case .hex(let value): writeHex(value)
        case .decimal(let value): writeDecimal(value)
        }
    }
    outb(Ports.console, 0x0a)
}

func writeStatic(_ text: StaticString) {
    // SAFETY: `i < utf8CodeUnitCount`, inside the static string's bytes, which live forever.
    for i in 0..<text.utf8CodeUnitCount { outb(Ports.console, unsafe text.utf8Start[i]) }
}

func writeHex(_ value: UInt64) {
    outb(Ports.console, 0x30)
    outb(Ports.console, 0x78)
    var started = false
    var shift: UInt64 = 60
    while true {
        let digit = UInt8(truncatingIfNeeded: (value >> shift) & 0xf)
        if digit != 0 || started || shift == 0 {
            started = true
            outb(Ports.console, digit < 10 ? 0x30 + digit : 0x57 + digit)
        }
        if shift == 0 { break }
        shift -= 4
    }
}

func writeDecimal(_ value: Int) {
    if value < 0 { outb(Ports.console, 0x2d) }
    var magnitude = value.magnitude
    var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                 UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    var count = 0
    // SAFETY: a 20-byte local tuple; a UInt64 has at most 20 decimal digits, so `count < 20`.
    unsafe withUnsafeMutableBytes(of: &digits) { buffer in
        repeat {
            unsafe buffer[count] = 0x30 + UInt8(magnitude % 10)
            magnitude /= 10
            count += 1
        } while magnitude > 0
        while count > 0 {
            count -= 1
            outb(Ports.console, unsafe buffer[count])
        }
    }
}

/// Reports a boot failure and ends the run.
func fail(_ message: StaticString) -> Never {
    klog(.text("ostd-kernel: "), .text(message))
    exitVm(125)
}
