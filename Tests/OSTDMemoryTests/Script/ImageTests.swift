// `ostd-mm run --image`: the file is physical memory, and the page table at the summary's `root`
// is a real x86-64 table. An independent walker written from the architecture manual (not the
// project's page-table code) reads the file and must find every mapping the ops left, with the
// rights the PROT letters say.

import Foundation
import OSTDScript
import Testing

/// What a 4-level x86-64 walk of an image finds for a virtual address.
private struct Walk: Equatable {
    var paddr: UInt64
    var pageSize: UInt64
    var writable: Bool
    var user: Bool
    var executable: Bool
}

/// Walks the table at `root` in `image` for `va` (CR0.WP = 1, EFER.NXE = 1): rights are the AND
/// of every level's R/W and U/S, and NX on any level forbids execution.
private func walk(_ image: Data, root: UInt64, va: UInt64) -> Walk? {
    var table = root
    var writable = true, user = true, executable = true
    for level in stride(from: 4, through: 1, by: -1) {
        let shift = UInt64(12 + 9 * (level - 1))
        let index = (va >> shift) & 511
        let offset = Int(table + index * 8)
        guard offset + 8 <= image.count else { return nil }
        let entry = image[offset..<(offset + 8)].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        guard entry & 1 != 0 else { return nil }
        writable = writable && entry & 2 != 0
        user = user && entry & 4 != 0
        executable = executable && entry & (1 << 63) == 0
        let address = entry & 0x000f_ffff_ffff_f000
        if level == 1 || (level <= 3 && entry & 0x80 != 0) {
            let size = UInt64(1) << shift
            let base = level == 1 ? address : address & ~(size - 1)
            return Walk(paddr: base + (va & (size - 1)), pageSize: size, writable: writable, user: user, executable: executable)
        }
        table = address
    }
    return nil
}

@Test func imageHoldsARealPageTable() throws {
    let image = FileManager.default.temporaryDirectory.appendingPathComponent("ostd-image-\(getpid()).bin")
    defer { try? FileManager.default.removeItem(at: image) }
    let script = """
    map 0x400000 16K rxu
    map 0x600000 8K rw
    map 0x800000 8K rwu
    map 0x40000000 4M rwu page=2M
    protect 0x40001000 4K ru
    write 0x800ff8 0102030405060708090a
    query 0x400000
    query 0x600000
    query 0x801000
    query 0x40001000
    query 0x40200000
    query 0x40001abc
    """
    var lines: [String] = []
    let code = runScriptCommand(RunOptions(script: "image.ostd", json: true, memory: "32M", image: image.path),
                                text: script, output: { lines.append($0) }, errors: { _ in })
    #expect(code == 0)
    #expect(lines.allSatisfy { $0.contains("\"ok\":true") || $0.contains("summary") })
    let bytes = try Data(contentsOf: image)
    #expect(bytes.count == 32 << 20)
    let summary = try #require(lines.last.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
    let root = try #require(UInt64((summary["root"] as? String ?? "").dropFirst(2), radix: 16))

    for line in lines where line.contains("\"op\":\"query\"") {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let va = try #require(UInt64((object["va"] as? String ?? "").dropFirst(2), radix: 16))
        let pa = try #require(UInt64((object["pa"] as? String ?? "").dropFirst(2), radix: 16))
        let prot = object["prot"] as? String ?? ""
        let found = try #require(walk(bytes, root: root, va: va), "no translation for \(va) in the image")
        #expect(found.paddr == pa)
        #expect(found.writable == prot.contains("w"))
        #expect(found.user == prot.contains("u"))
        #expect(found.executable == prot.contains("x"))
    }
    // The written bytes are in the image at the translated addresses, across the page boundary.
    let first = try #require(walk(bytes, root: root, va: 0x800ff8))
    let second = try #require(walk(bytes, root: root, va: 0x801000))
    #expect(Array(bytes[Int(first.paddr)..<Int(first.paddr + 8)]) == [1, 2, 3, 4, 5, 6, 7, 8])
    #expect(Array(bytes[Int(second.paddr)..<Int(second.paddr + 2)]) == [9, 10])
    // Unmapped addresses do not translate; the 2 MiB leaf that was not split is still one leaf.
    #expect(walk(bytes, root: root, va: 0x404000) == nil)
    #expect(walk(bytes, root: root, va: 0x40200000)?.pageSize == 2 << 20)
    #expect(walk(bytes, root: root, va: 0x40001000)?.pageSize == 4096)
}

@Test func invalidScriptWritesNoImage() throws {
    let image = FileManager.default.temporaryDirectory.appendingPathComponent("ostd-noimage-\(getpid()).bin")
    try? FileManager.default.removeItem(at: image)
    var output: [String] = []
    let code = runScriptCommand(RunOptions(script: "bad.ostd", memory: "16M", image: image.path),
                                text: "map 0 4K r\nmap 0 4K q\n", output: { output.append($0) }, errors: { _ in })
    #expect(code == 2)
    #expect(output.isEmpty)
    #expect(!FileManager.default.fileExists(atPath: image.path))
}
