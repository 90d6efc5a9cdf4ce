// The one random source of the property and stress tests: SplitMix64, deterministic, so a failing
// case replays from the seed the test prints. The suites used to carry their own copies, which
// differed only in how a seed becomes the first state (the salt); each keeps its salt here, so the
// same seeds still give the same numbers and every suite still runs the cases it always ran.

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014).
struct SplitMix64: RandomNumberGenerator {
    /// The salt of the user-I/O and script property tests.
    static let defaultSalt: UInt64 = 0x2545_f491_4f6c_dd1d
    /// The salt of the page-table property test.
    static let pageTableSalt: UInt64 = 0x5851_f42d_4c95_7f2d

    var state: UInt64

    /// Starts at `state` as it is (the cursor stress test derives it per thread).
    init(state: UInt64) { self.state = state }

    /// Starts at `seed`'s bits mixed with `salt`.
    init(_ seed: Int, salt: UInt64 = defaultSalt) { state = UInt64(bitPattern: Int64(seed)) ^ salt }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// A number in `0 ..< n` (plain modulo, as the copies did: not `next(upperBound:)`).
    mutating func below(_ n: Int) -> Int { Int(next() as UInt64 % UInt64(n)) }
    /// A number in `r`.
    mutating func int(_ r: ClosedRange<Int>) -> Int { r.lowerBound + below(r.count) }
    /// `true` with a chance of `percent` in 100.
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    /// One of `options`.
    mutating func pick<T>(_ options: [T]) -> T { options[below(options.count)] }
    /// `count` bytes, each the low byte of one number.
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next() as UInt64) } }
}
