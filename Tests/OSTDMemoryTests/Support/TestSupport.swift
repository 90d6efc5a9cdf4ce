// Shared fixtures: small machines, the user address most space tests map at, metadata types for
// the ported OSTD tests, a helper that checks a crashing child process printed the expected
// message, and small helpers for outcomes and hex formatting that several suites use.

import Testing
@_spi(OSTDInternals) @testable import OSTDMemory
import OSTDSpec
import OSTDHost

/// A machine small enough that per-test snapshots are cheap (16 MiB unless asked).
func makeMachine(memory: Int = 16 << 20, cpus: Int = 1, audit: Bool = true) -> Machine {
    try! Machine.host(memory: memory, cpus: cpus, audit: audit)
}

/// The user address the VmSpace, TLB and user-I/O tests map at (4 MiB).
let base = Vaddr(0x40_0000)

/// `count` pages from `start`.
func pages(_ start: Vaddr, _ count: Int) -> Range<Vaddr> { start..<(start + count * pageSize) }

/// OSTD's `MockFrameMeta { value: u32 }`, a typed metadata.
struct MockFrameMeta: FrameMeta {
    static var typeTag: FrameMetaTag { FrameMetaTag(usage: .kernel, typeID: 0x1_0001, untyped: false) }
    var value: UInt32
}

/// OSTD's `MockUFrameMeta`, an untyped metadata with a payload.
struct MockUFrameMeta: UFrameMeta {
    static var typeTag: FrameMetaTag { FrameMetaTag(usage: .frame, typeID: 0x1_0002, untyped: true) }
    var value: UInt32
}

/// Whether the bytes a crashed child wrote to standard error contain `phrase`.
func stderrContains(_ result: ExitTest.Result?, _ phrase: String) -> Bool {
    guard let bytes = result?.standardErrorContent else { return false }
    return String(decoding: bytes, as: UTF8.self).contains(phrase)
}

/// Whether a noncopyable optional is `nil` (dropping its value otherwise): `#expect(x == nil)`
/// needs `Copyable`.
func isNone<T: ~Copyable>(_ value: consuming T?) -> Bool {
    switch consume value {
    case .none: return true
    case .some: return false
    }
}

/// What `body` returned or threw.
func outcome<T>(_ body: () throws(OSTDError) -> T) -> Result<T, OSTDError> {
    do throws(OSTDError) { return .success(try body()) } catch { return .failure(error) }
}

/// `x` in hexadecimal, with `0x`.
func hex(_ x: UInt64) -> String { "0x" + String(x, radix: 16) }
