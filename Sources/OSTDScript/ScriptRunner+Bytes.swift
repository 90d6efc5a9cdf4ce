// The byte ops of a script: `write`, `fill`, `read`, `copy`, through the space's fallible readers
// and writers. A faulting op keeps the bytes moved before the fault, as a user program's would be,
// and its `page-fault` failure says how many.

@_spi(OSTDInternals) import OSTDMemory
import OSTDSpec

extension ScriptRunner {
    func write(_ va: UInt64, _ bytes: [UInt8]) throws(OpFailure) -> Int {
        let range = try userRange(va, UInt64(bytes.count))
        var writer = try handle { () throws(OSTDError) in try space.createWriter(range.lowerBound, bytes.count) }
        return try bytes.withUnsafeBytes { buffer in
            Result { () throws(OpFailure) in
                // SAFETY: `buffer` is valid for the whole closure, and the reader does not
                // escape it.
                var source = unsafe VmReader<Infallible>(buffer).toFallible()
                return try transfer { () throws(OSTDError) in try writer.writeFallible(&source) }
            }
        }.get()
    }

    func fill(_ va: UInt64, _ len: UInt64, _ byte: UInt8) throws(OpFailure) -> Int {
        let range = try userRange(va, len)
        var writer = try handle { () throws(OSTDError) in try space.createWriter(range.lowerBound, Int(len)) }
        if byte == 0 { return try transfer { () throws(OSTDError) in try writer.fillZeros(Int(len)) } }
        let chunk = [UInt8](repeating: byte, count: Int(min(len, 64 << 10)))
        var written = 0
        while writer.hasAvail {
            let step = min(chunk.count, writer.avail)
            let done = try chunk.withUnsafeBytes { buffer in
                Result { () throws(OpFailure) in
                    // SAFETY: as in `write`: the reader lives inside the buffer's closure.
                    var source = unsafe VmReader<Infallible>(UnsafeRawBufferPointer(rebasing: buffer[..<step])).toFallible()
                    return try transfer(before: written) { () throws(OSTDError) in try writer.writeFallible(&source) }
                }
            }.get()
            written += done
        }
        return written
    }

    /// Reads `[va, va + len)` in chunks of at most 1 MiB, so that a huge range that faults
    /// early costs what it read, not what it asked for.
    func read(_ va: UInt64, _ len: UInt64) throws(OpFailure) -> [UInt8] {
        let range = try userRange(va, len)
        var reader = try handle { () throws(OSTDError) in try space.createReader(range.lowerBound, Int(len)) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: Int(min(len, 1 << 20)))
        while reader.hasRemain {
            let step = min(chunk.count, reader.remain)
            let outcome = chunk.withUnsafeMutableBytes { buffer in
                Result { () throws(OSTDError) in
                    // SAFETY: the writer lives inside the buffer's closure.
                    var destination = unsafe VmWriter<Infallible>(UnsafeMutableRawBufferPointer(rebasing: buffer[..<step])).toFallible()
                    return try reader.readFallible(&destination)
                }
            }
            switch outcome {
            case .success(let count): data.append(contentsOf: chunk[..<count])
            case .failure(let error):
                guard case .pageFault(let address, let copied) = error else { throw OpFailure(error) }
                data.append(contentsOf: chunk[..<copied])
                var failure = OpFailure(.pageFault(address: address, copied: data.count))
                failure.fields.append(("data", .text(hexString(data))))
                throw failure
            }
        }
        return data
    }

    func copy(_ src: UInt64, _ dst: UInt64, _ len: UInt64) throws(OpFailure) -> Int {
        let source = try userRange(src, len)
        let destination = try userRange(dst, len)
        var reader = try handle { () throws(OSTDError) in try space.createReader(source.lowerBound, Int(len)) }
        var writer = try handle { () throws(OSTDError) in try space.createWriter(destination.lowerBound, Int(len)) }
        return try transfer { () throws(OSTDError) in try reader.readFallible(&writer) }
    }

    /// Creates a reader or writer, turning a refusal into the op's failure.
    func handle<H: ~Copyable>(_ make: () throws(OSTDError) -> H) throws(OpFailure) -> H {
        do throws(OSTDError) { return try make() } catch { throw OpFailure(error) }
    }

    /// Runs a transfer, turning a fault into the op's failure; `before` bytes were moved by
    /// earlier transfers of the same op.
    func transfer(before: Int = 0, _ body: () throws(OSTDError) -> Int) throws(OpFailure) -> Int {
        do throws(OSTDError) { return try body() } catch {
            if case .pageFault(let address, let copied) = error {
                throw OpFailure(.pageFault(address: address, copied: before + copied))
            }
            throw OpFailure(error)
        }
    }
}
