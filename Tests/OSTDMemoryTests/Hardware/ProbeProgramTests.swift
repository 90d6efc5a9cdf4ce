// The probe kernel's assembler: each instruction's bytes as the SDM (and objdump) have them.

import Testing
@testable import OSTDKVM

struct ProbeProgramTests {
    @Test func instructionsEncodeAsTheManualSays() {
        var a = X86Assembler()
        a.movRegReg(.rbp, .rsp)          // 48 89 e5
        a.movLoad(.rbx, .rsi)            // 48 8b 1e
        a.movzxByte(.rax, .rsi, 8)       // 0f b6 46 08
        a.movzxByte(.rax, .rbx)          // 0f b6 03
        a.movStoreByte(.rbx, .rdx)       // 88 13
        a.movStore(.rdi, 8, .rax)        // 48 89 47 08
        a.movStore(.rsp, 0, .r15)        // 4c 89 3c 24
        a.movStoreImmediate(.rdi, 0, 1)  // 48 c7 07 01 00 00 00
        a.add(.rsi, 16)                  // 48 83 c6 10
        a.dec(.rcx)                      // 48 ff c9
        a.test(.rcx)                     // 48 85 c9
        a.call(.rbx)                     // ff d3
        a.pop(.rax)                      // 58
        a.movLoad(.rax, .rsp, 8)         // 48 8b 44 24 08
        a.movStoreAbsolute(-0x7fff_f000, .rax)  // 48 89 04 25 00 10 00 80
        a.movRaxCr2()                    // 0f 20 d0
        a.iretq()                        // 48 cf
        #expect(a.finish() == [
            0x48, 0x89, 0xe5, 0x48, 0x8b, 0x1e, 0x0f, 0xb6, 0x46, 0x08, 0x0f, 0xb6, 0x03, 0x88, 0x13,
            0x48, 0x89, 0x47, 0x08, 0x4c, 0x89, 0x3c, 0x24, 0x48, 0xc7, 0x07, 0x01, 0x00, 0x00, 0x00,
            0x48, 0x83, 0xc6, 0x10, 0x48, 0xff, 0xc9, 0x48, 0x85, 0xc9, 0xff, 0xd3, 0x58,
            0x48, 0x8b, 0x44, 0x24, 0x08, 0x48, 0x89, 0x04, 0x25, 0x00, 0x10, 0x00, 0x80,
            0x0f, 0x20, 0xd0, 0x48, 0xcf,
        ])
    }

    @Test func relativeJumpsLandOnTheirLabels() {
        var a = X86Assembler()
        a.label("top")
        a.jmp("end")        // e9 rel32: to offset 10
        a.je("top")         // 0f 84 rel32: back to 0
        a.label("end")
        #expect(a.finish() == [0xe9, 0x06, 0, 0, 0, 0x0f, 0x84, 0xf5, 0xff, 0xff, 0xff])
    }

    @Test func theProgramFitsInAPage() {
        let program = ProbeProgram(exceptionRecord: -0x7fff_f000)
        print("probe program: \(program.bytes.count) bytes")
        #expect(program.bytes.count <= 4096 && program.handlers.count == 32)
    }
}
