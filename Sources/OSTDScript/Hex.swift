// Hex as the contract writes it: addresses and sizes as lowercase `0x` strings without padding,
// byte data as bare lowercase digit pairs.

/// `0x`-prefixed lowercase hex, no padding.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// Lowercase hex digits of `bytes`.
func hexString<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}
