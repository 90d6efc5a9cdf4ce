// The executable's entry. SwiftPM links every executable target with its own `main` (it renames
// the module's entry point and points `main` at it), so libFuzzer's `main` is never used, even
// with `-sanitize=fuzzer`; instead the libFuzzer build (`.ci/fuzz`: `-sanitize=fuzzer
// -D OSTD_FUZZ -enable-experimental-feature Extern`) hands the command line to libFuzzer's
// `LLVMFuzzerRunDriver`. Both builds understand:
//   ostd-fuzz --smoke N [--seed S]   N pseudo-random inputs (0–511 bytes, SplitMix64 from S) through
//                                    `runInput`, the function the fuzzer calls;
//   ostd-fuzz --decode FILE...       the script an input (e.g. a libFuzzer crash-* file) decodes to.
// Any other command line goes to libFuzzer in the fuzzing build; in a plain build it names inputs
// to run, as libFuzzer would, to reproduce a finding.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import OSTDHost

#if OSTD_FUZZ
/// libFuzzer's driver (compiler-rt, LLVM 13 and later): parses libFuzzer's flags and fuzzes `callback`.
@_extern(c, "LLVMFuzzerRunDriver")
func llvmFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32
#endif

/// SplitMix64: a small deterministic generator for the smoke inputs.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

@main
struct OstdFuzz {
    static let usage = """
        usage: ostd-fuzz --smoke N [--seed S]   run N pseudo-random inputs with the audit on
               ostd-fuzz --decode FILE...       print the script each input decodes to
               ostd-fuzz FILE...                run inputs (e.g. a libFuzzer crash file)
        """

    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        switch arguments.first {
        case "--smoke":
            guard let count = arguments.dropFirst().first.flatMap({ Int($0) }), count >= 0 else { fail() }
            var seed: UInt64 = 1
            if arguments.count == 4, arguments[2] == "--seed", let value = UInt64(arguments[3]) {
                seed = value
            } else if arguments.count != 2 {
                fail()
            }
            smoke(count: count, seed: seed)
        case "--decode":
            guard arguments.count > 1 else { fail() }
            for path in arguments.dropFirst() { print(scriptText(FuzzDecoder.decode(readFile(path))), terminator: "") }
        default:
            #if OSTD_FUZZ
            // SAFETY: libFuzzer reads (and may rewrite) the process's own argc/argv, which live
            // for the whole process; each input buffer is copied before the callback returns.
            var argc = CommandLine.argc
            var argv = CommandLine.unsafeArgv
            exit(llvmFuzzerRunDriver(&argc, &argv) { data, size in
                runInput(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
                return 0
            })
            #else
            guard !arguments.isEmpty, arguments.first != "-h", arguments.first != "--help" else { fail() }
            for path in arguments {
                let stats = runInput(readFile(path))
                print("\(path): \(stats.ops) ops, \(stats.succeeded) succeeded, audit clean")
            }
            #endif
        }
    }

    static func smoke(count: Int, seed: UInt64) {
        var generator = SplitMix64(state: seed)
        var total = FuzzStats()
        for _ in 0..<count {
            let size = Int(generator.next() % 512)
            var input: [UInt8] = []
            input.reserveCapacity(size)
            while input.count < size {
                var word = generator.next()
                for _ in 0..<min(8, size - input.count) {
                    input.append(UInt8(truncatingIfNeeded: word))
                    word >>= 8
                }
            }
            let stats = runInput(input)
            total.ops += stats.ops
            total.succeeded += stats.succeeded
        }
        print("ostd-fuzz smoke: \(count) inputs (seed \(seed)), \(total.ops) ops, \(total.succeeded) succeeded, "
              + "\(total.ops - total.succeeded) failed as results; audit clean after every op")
    }

    static func readFile(_ path: String) -> [UInt8] {
        guard let file = fopen(path, "rb") else {
            printToStandardError("ostd-fuzz: cannot open \(path)")
            exit(1)
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes.append(contentsOf: buffer[..<count])
        }
        return bytes
    }

    static func fail() -> Never {
        printToStandardError(usage)
        exit(2)
    }
}
