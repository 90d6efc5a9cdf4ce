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

    /// The most bytes a `read` moves through its reader at once, and the largest `read` whose
    /// data is kept in its result; a larger one's data is read again as it is printed.
    static let readChunk = 64 << 10

    /// `read`: the data of `[va, va + len)`, as hex when it is at most `readChunk` bytes, else as
    /// `.userBytes` (only counted now, read again when printed), so that what a read holds never
    /// depends on its length. A fault throws `page-fault` with the data before it.
    func read(_ va: UInt64, _ len: UInt64) throws(OpFailure) -> ResultValue {
        let small = len <= UInt64(Self.readChunk)
        var data: [UInt8] = []
        let (count, faultAt) = try readChunks(va, len) { chunk in if small { data.append(contentsOf: chunk) } }
        let value: ResultValue = small ? .text(hexString(data)) : .userBytes(va: va, count: count)
        guard let faultAt else { return value }
        var failure = OpFailure(.pageFault(address: faultAt, copied: count))
        failure.fields.append(("data", value))
        throw failure
    }

    /// Reads `[va, va + len)` through one user reader, `readChunk` bytes at a time, handing each
    /// chunk to `body`, so that a huge range that faults early costs what it read.
    ///
    /// - Returns: the number of bytes read, and the address of the fault that stopped the read.
    func readChunks(_ va: UInt64, _ len: UInt64,
                    _ body: (UnsafeRawBufferPointer) -> Void) throws(OpFailure) -> (count: Int, faultAt: Vaddr?) {
        let range = try userRange(va, len)
        var reader = try handle { () throws(OSTDError) in try space.createReader(range.lowerBound, Int(len)) }
        var chunk = [UInt8](repeating: 0, count: Int(min(len, UInt64(Self.readChunk))))
        var total = 0
        while reader.hasRemain {
            let step = min(chunk.count, reader.remain)
            let outcome = chunk.withUnsafeMutableBytes { buffer in
                Result { () throws(OSTDError) in
                    // SAFETY: the writer lives inside the buffer's closure.
                    var destination = unsafe VmWriter<Infallible>(UnsafeMutableRawBufferPointer(rebasing: buffer[..<step])).toFallible()
                    return try reader.readFallible(&destination)
                }
            }
            let (count, fault) = try chunkOutcome(outcome)
            chunk.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            total += count
            if let fault { return (total, fault) }
        }
        return (total, nil)
    }

    /// The bytes one chunk of a read moved, and where it faulted; an error other than a page
    /// fault is the op's failure.
    private func chunkOutcome(_ outcome: Result<Int, OSTDError>) throws(OpFailure) -> (Int, Vaddr?) {
        switch outcome {
        case .success(let count): return (count, nil)
        case .failure(.pageFault(let address, let copied)): return (copied, address)
        case .failure(let error): throw OpFailure(error)
        }
    }

    /// Writes the hex of the `count` bytes at `va` to `output`, reading them again through a user
    /// reader one chunk at a time (the data of a large `read`, just read by the op).
    func writeData(_ va: UInt64, _ count: Int, to output: ScriptOutput) {
        guard count > 0 else { return }
        _ = try? readChunks(va, UInt64(count)) { output.appendHex($0) }
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
