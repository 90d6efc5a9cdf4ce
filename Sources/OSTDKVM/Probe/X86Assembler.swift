// A tiny x86-64 assembler: exactly the instructions the probe kernel uses, each encoded by hand
// from the SDM's opcode tables and named as in Intel syntax, with labels and 32-bit relative
// fixups. It exists so that the probe kernel is readable source (ProbeProgram.swift), not a
// blob of bytes; `objdump -D -b binary -mi386:x86-64` on `ProbeProgram.bytes` shows it back.

/// A 64-bit general-purpose register, by its encoding number.
enum Register: UInt8 {
    case rax = 0, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15

    var low: UInt8 { rawValue & 7 }
    var isExtended: Bool { rawValue >= 8 }
}

/// Machine code being assembled at a known virtual address.
struct X86Assembler {
    private(set) var bytes: [UInt8] = []
    private var labels: [String: Int] = [:]
    private var fixups: [(at: Int, label: String)] = []

    var offset: Int { bytes.count }

    // MARK: Labels

    /// Marks the current offset as `name`.
    mutating func label(_ name: String) {
        precondition(labels[name] == nil, "label \(name) defined twice")
        labels[name] = offset
    }

    /// The offset of `name` (after `finish`).
    func offset(of name: String) -> Int {
        guard let offset = labels[name] else { preconditionFailure("no label \(name)") }
        return offset
    }

    /// Resolves every relative fixup; returns the code.
    mutating func finish() -> [UInt8] {
        for fixup in fixups {
            let target = offset(of: fixup.label)
            let relative = Int32(target - (fixup.at + 4))
            for i in 0..<4 { bytes[fixup.at + i] = UInt8(truncatingIfNeeded: relative >> (8 * Int32(i))) }
        }
        fixups = []
        return bytes
    }

    // MARK: Encoding helpers

    private mutating func emit(_ b: UInt8...) { bytes += b }

    private mutating func emit32(_ value: Int32) {
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * Int32(i)))) }
    }

    private mutating func rel32(_ label: String) {
        fixups.append((offset, label))
        emit32(0)
    }

    /// REX with W (64-bit operand), R (reg field extension) and B (r/m base extension).
    private mutating func rex(w: Bool, reg: Register = .rax, base: Register = .rax) {
        let value: UInt8 = 0x40 | (w ? 8 : 0) | (reg.isExtended ? 4 : 0) | (base.isExtended ? 1 : 0)
        if value != 0x40 { emit(value) }
    }

    /// ModRM (and SIB, displacement) for `[base + disp]`, `reg` in the reg field.
    private mutating func memory(reg: UInt8, base: Register, disp: Int8) {
        let mod: UInt8 = disp == 0 && base.low != 5 ? 0 : 1
        emit(mod << 6 | (reg & 7) << 3 | base.low)
        if base.low == 4 { emit(0x24) }                     // SIB: base only (rsp, r12)
        if mod == 1 { emit(UInt8(bitPattern: disp)) }
    }

    // MARK: Instructions

    /// `mov dst, src` (64-bit registers): REX.W 89 /r.
    mutating func movRegReg(_ dst: Register, _ src: Register) {
        rex(w: true, reg: src, base: dst)
        emit(0x89, 0xc0 | src.low << 3 | dst.low)
    }

    /// `mov dst, qword [base + disp]`: REX.W 8B /r.
    mutating func movLoad(_ dst: Register, _ base: Register, _ disp: Int8 = 0) {
        rex(w: true, reg: dst, base: base)
        emit(0x8b)
        memory(reg: dst.rawValue, base: base, disp: disp)
    }

    /// `mov qword [base + disp], src`: REX.W 89 /r.
    mutating func movStore(_ base: Register, _ disp: Int8, _ src: Register) {
        rex(w: true, reg: src, base: base)
        emit(0x89)
        memory(reg: src.rawValue, base: base, disp: disp)
    }

    /// `mov qword [base + disp], imm32` (sign-extended): REX.W C7 /0 id.
    mutating func movStoreImmediate(_ base: Register, _ disp: Int8, _ value: Int32) {
        rex(w: true, base: base)
        emit(0xc7)
        memory(reg: 0, base: base, disp: disp)
        emit32(value)
    }

    /// `movzx dst32, byte [base + disp]`: 0F B6 /r (zero-extends into the whole register).
    mutating func movzxByte(_ dst: Register, _ base: Register, _ disp: Int8 = 0) {
        rex(w: false, reg: dst, base: base)
        emit(0x0f, 0xb6)
        memory(reg: dst.rawValue, base: base, disp: disp)
    }

    /// `mov byte [base], src8` (`src` is rax ... rbx, whose low bytes need no REX): 88 /r.
    mutating func movStoreByte(_ base: Register, _ src: Register) {
        precondition(src.rawValue < 4, "only al, cl, dl, bl")
        rex(w: false, base: base)
        emit(0x88)
        memory(reg: src.rawValue, base: base, disp: 0)
    }

    /// `mov dword [disp32], eax`, the address sign-extended (the top 2 GiB): 89 04 25 id.
    mutating func movStoreAbsoluteEax(_ address: Int32) {
        emit(0x89, 0x04, 0x25)
        emit32(address)
    }

    /// `mov qword [disp32], src`, the address sign-extended: REX.W 89 /r with SIB (no base).
    mutating func movStoreAbsolute(_ address: Int32, _ src: Register) {
        rex(w: true, reg: src)
        emit(0x89, src.low << 3 | 0x04, 0x25)
        emit32(address)
    }

    /// `mov eax, imm32`: B8 id.
    mutating func movEaxImmediate(_ value: Int32) {
        emit(0xb8)
        emit32(value)
    }

    /// `lea dst, [rip + label]`: REX.W 8D /r with RIP-relative addressing.
    mutating func leaRipRelative(_ dst: Register, _ label: String) {
        rex(w: true, reg: dst)
        emit(0x8d, dst.low << 3 | 0x05)
        rel32(label)
    }

    /// `mov rax, cr2`: 0F 20 D0.
    mutating func movRaxCr2() { emit(0x0f, 0x20, 0xd0) }

    /// `xor eax, eax`: 31 C0.
    mutating func xorEaxEax() { emit(0x31, 0xc0) }

    /// `test reg, reg` (64-bit): REX.W 85 /r.
    mutating func test(_ reg: Register) {
        rex(w: true, reg: reg, base: reg)
        emit(0x85, 0xc0 | reg.low << 3 | reg.low)
    }

    /// `cmp al, imm8`: 3C ib.
    mutating func cmpAl(_ value: UInt8) { emit(0x3c, value) }

    /// `add reg, imm8` (sign-extended, 64-bit): REX.W 83 /0 ib.
    mutating func add(_ reg: Register, _ value: Int8) {
        rex(w: true, base: reg)
        emit(0x83, 0xc0 | reg.low, UInt8(bitPattern: value))
    }

    /// `dec reg` (64-bit): REX.W FF /1.
    mutating func dec(_ reg: Register) {
        rex(w: true, base: reg)
        emit(0xff, 0xc8 | reg.low)
    }

    /// `push reg`: 50+r (REX.B for r8–r15).
    mutating func push(_ reg: Register) {
        rex(w: false, base: reg)
        emit(0x50 | reg.low)
    }

    /// `pop reg`: 58+r.
    mutating func pop(_ reg: Register) {
        rex(w: false, base: reg)
        emit(0x58 | reg.low)
    }

    /// `push imm8` (sign-extended to 64 bits): 6A ib.
    mutating func pushImmediate(_ value: Int8) { emit(0x6a, UInt8(bitPattern: value)) }

    /// `call reg`: FF /2.
    mutating func call(_ reg: Register) {
        rex(w: false, base: reg)
        emit(0xff, 0xd0 | reg.low)
    }

    /// `jmp label`: E9 cd.
    mutating func jmp(_ label: String) {
        emit(0xe9)
        rel32(label)
    }

    /// `je label` / `jz label`: 0F 84 cd.
    mutating func je(_ label: String) {
        emit(0x0f, 0x84)
        rel32(label)
    }

    /// `iretq`: REX.W CF.
    mutating func iretq() { emit(0x48, 0xcf) }

    /// `ud2`: 0F 0B.
    mutating func ud2() { emit(0x0f, 0x0b) }

    /// `hlt`: F4.
    mutating func hlt() { emit(0xf4) }

    /// `ret`: C3.
    mutating func ret() { emit(0xc3) }
}
