import GuestMemory
import XenABI

/// Writable page-table emulation (xen/arch/x86/pv/ro-page-fault.c, "ptwr"): a guest
/// kernel write to one of its own active L1 tables — mapped read-only, as the PV MMU
/// requires — faults; the hypervisor decodes the instruction, validates the new entry
/// like an mmu_update, applies it atomically, and steps over the instruction. Linux
/// relies on it for `xchg` (ptep_get_and_clear), `lock and`/`btr` (write-protect,
/// clear-young), `cmpxchg` and plain `mov`.
enum WritablePageTables {
    /// Emulates the write at `faultAddress`. Returns false when the fault is not a write
    /// to an active L1 of this domain, or the instruction or new entry is not acceptable
    /// (the caller then delivers the #PF to the guest).
    static func emulate(_ vcpu: VCPU, _ context: inout GuestContext, faultAddress: UInt64) -> Bool {
        guard let root = vcpu.activeTable else { return false }
        let walker = GuestPageWalker(memory: vcpu.domain.memory, root: root)
        guard let physical = try? walker.translate(GuestVirtualAddress(faultAddress), write: false) else { return false }
        let entryAddress = GuestPhysicalAddress(physical.rawValue & ~7)
        let isL1 = vcpu.domain.state.withLock { state -> Bool in
            guard let info = state.pages[entryAddress.frame] else { return false }
            return info.isActiveTable && info.type == .l1
        }
        guard isL1 else { return false }
        let bytes = PrivilegedOps.fetch(vcpu, context)
        guard let write = WriteInstruction(decoding: bytes) else {
            vcpu.domain.log.log(.warning, "\(vcpu.name): page-table write at \(hex(context.rip)) by an instruction Domus does not emulate: "
                + bytes.prefix(8).map { String($0, radix: 16) }.joined(separator: " "))
            return false
        }
        let offset = Int(faultAddress & 7)
        guard offset + write.size <= 8 else { return false }
        let source = write.sourceValue(context)
        let accumulator = context.rax
        let old: UInt64
        do {
            old = try PageTableUpdates.modify(vcpu, at: entryAddress, requireL1: true) { current in
                write.apply(to: current, offset: offset, source: source, accumulator: accumulator).entry
            }
        } catch {
            vcpu.domain.log.log(.debug, "\(vcpu.name): emulated page-table write at \(hex(faultAddress)) refused: \(error)")
            return false
        }
        let effect = write.apply(to: old, offset: offset, source: source, accumulator: accumulator)
        if let register = effect.register { write.writeRegister(register.number, register.value, &context) }
        if let flags = effect.flags {
            context.rflags = (context.rflags & ~WriteInstruction.arithmeticFlags) | flags
        }
        context.rip &+= UInt64(write.length)
        if vcpu.domain.trace.load(ordering: .relaxed) {
            vcpu.domain.log.log(.trace, "\(vcpu.name): emulated \(write.operation) of L1 entry \(entryAddress): \(hex(old)) -> \(hex(effect.entry))")
        }
        return true
    }
}

/// A decoded x86 instruction that writes memory, as far as ptwr needs: its operation,
/// operand size, source, and length.
struct WriteInstruction {
    enum Operation: String { case mov, xchg, cmpxchg, and, or, xor, bts, btr, btc }
    enum Source { case register(Int, highByte: Bool), immediate(UInt64) }

    let operation: Operation
    let size: Int
    let source: Source
    let length: Int
    /// For bit operations with a register operand, the bit index comes from the register.
    let bitFromRegister: Bool

    static let arithmeticFlags: UInt64 = RFlags.carry | RFlags.parity | RFlags.adjust | RFlags.zero | RFlags.sign | RFlags.overflow

    init?(decoding bytes: [UInt8]) {
        var index = 0
        var operandSize16 = false
        var rex: UInt8 = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x66 { operandSize16 = true; index += 1; continue }
            if [0xf0, 0xf2, 0xf3, 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65, 0x67].contains(byte) { index += 1; continue }
            if byte & 0xf0 == 0x40 { rex = byte; index += 1; continue }
            break
        }
        guard index < bytes.count else { return nil }
        let wide = rex & 8 != 0
        let fullSize = wide ? 8 : (operandSize16 ? 2 : 4)
        var opcode = Int(bytes[index])
        index += 1
        if opcode == 0x0f {
            guard index < bytes.count else { return nil }
            opcode = 0x0f00 | Int(bytes[index])
            index += 1
        }
        guard index < bytes.count else { return nil }
        let modrm = bytes[index]
        let mod = modrm >> 6
        let regField = Int((modrm >> 3) & 7)
        let reg = regField | (rex & 4 != 0 ? 8 : 0)
        guard mod != 3 else { return nil }
        // Skip ModRM, SIB and displacement.
        var cursor = index + 1
        let rm = modrm & 7
        if rm == 4 {
            guard cursor < bytes.count else { return nil }
            let sib = bytes[cursor]
            cursor += 1
            if mod == 0 && sib & 7 == 5 { cursor += 4 }
        }
        if mod == 1 { cursor += 1 } else if mod == 2 { cursor += 4 } else if mod == 0 && rm == 5 { cursor += 4 }
        func immediate(_ count: Int, signExtendTo size: Int) -> UInt64? {
            guard cursor + count <= bytes.count else { return nil }
            var value: UInt64 = 0
            for offset in 0..<count { value |= UInt64(bytes[cursor + offset]) << (8 * UInt64(offset)) }
            cursor += count
            if count < 8 && size > count {
                let signBit: UInt64 = 1 << (UInt64(count) * 8 - 1)
                if value & signBit != 0 { value |= ~((signBit << 1) &- 1) }
            }
            return value
        }
        let registerSource = Source.register(reg, highByte: rex == 0 && reg >= 4 && reg < 8)
        var bitFromRegister = false
        let operation: Operation
        var size = fullSize
        var source = Source.register(reg, highByte: false)
        switch opcode {
        case 0x88: operation = .mov; size = 1; source = registerSource
        case 0x89: operation = .mov
        case 0xc6: guard regField == 0, let value = immediate(1, signExtendTo: 1) else { return nil }
            operation = .mov; size = 1; source = .immediate(value)
        case 0xc7: guard regField == 0, let value = immediate(fullSize == 2 ? 2 : 4, signExtendTo: fullSize) else { return nil }
            operation = .mov; source = .immediate(value)
        case 0x86: operation = .xchg; size = 1; source = registerSource
        case 0x87: operation = .xchg
        case 0x0fb0: operation = .cmpxchg; size = 1; source = registerSource
        case 0x0fb1: operation = .cmpxchg
        case 0x20: operation = .and; size = 1; source = registerSource
        case 0x21: operation = .and
        case 0x08: operation = .or; size = 1; source = registerSource
        case 0x09: operation = .or
        case 0x30: operation = .xor; size = 1; source = registerSource
        case 0x31: operation = .xor
        case 0x80, 0x81, 0x83:
            let kinds: [Int: Operation] = [1: .or, 4: .and, 6: .xor]
            guard let kind = kinds[regField] else { return nil }
            operation = kind
            if opcode == 0x80 { size = 1 }
            let count = opcode == 0x81 ? (fullSize == 2 ? 2 : 4) : 1
            guard let value = immediate(count, signExtendTo: size) else { return nil }
            source = .immediate(value)
        case 0x0fab: operation = .bts; bitFromRegister = true
        case 0x0fb3: operation = .btr; bitFromRegister = true
        case 0x0fbb: operation = .btc; bitFromRegister = true
        case 0x0fba:
            let kinds: [Int: Operation] = [5: .bts, 6: .btr, 7: .btc]
            guard let kind = kinds[regField], let value = immediate(1, signExtendTo: 1) else { return nil }
            operation = kind
            source = .immediate(value)
        default:
            return nil
        }
        guard size == 1 || size == 4 || size == 8 else { return nil }
        self.operation = operation
        self.size = size
        self.source = source
        self.length = cursor
        self.bitFromRegister = bitFromRegister
    }

    var mask: UInt64 { size == 8 ? ~0 : (1 << (UInt64(size) * 8)) - 1 }

    func sourceValue(_ context: GuestContext) -> UInt64 {
        switch source {
        case let .immediate(value): return value
        case let .register(number, highByte):
            return highByte ? (context.register(number - 4) >> 8) & 0xff : context.register(number)
        }
    }

    func writeRegister(_ number: Int, _ value: UInt64, _ context: inout GuestContext) {
        switch size {
        case 8: context.setRegister(number, value)
        case 4: context.setRegister(number, value & 0xffff_ffff)   // 32-bit results zero-extend
        default:
            if case .register(let sourceNumber, true) = source, number == sourceNumber {
                // ah/ch/dh/bh: only when writing back the source operand itself (xchg); a
                // failed cmpxchg writes the accumulator, al.
                let base = number >= 4 && number < 8 ? number - 4 : number
                context.setRegister(base, (context.register(base) & ~0xff00) | (value & 0xff) << 8)
            } else {
                context.setRegister(number, (context.register(number) & ~0xff) | (value & 0xff))
            }
        }
    }

    /// The entry after the instruction, and what it does to registers and flags.
    func apply(to entry: UInt64, offset: Int, source: UInt64, accumulator: UInt64)
        -> (entry: UInt64, register: (number: Int, value: UInt64)?, flags: UInt64?) {
        let shift = UInt64(offset * 8)
        let old = (entry >> shift) & mask
        func merge(_ value: UInt64) -> UInt64 { (entry & ~(mask << shift)) | ((value & mask) << shift) }
        func logicFlags(_ result: UInt64) -> UInt64 {
            var flags: UInt64 = 0
            if result & mask == 0 { flags |= RFlags.zero }
            if result & (1 << (UInt64(size) * 8 - 1)) != 0 { flags |= RFlags.sign }
            if (result & 0xff).nonzeroBitCount % 2 == 0 { flags |= RFlags.parity }
            return flags
        }
        let registerNumber: Int
        if case let .register(number, _) = self.source { registerNumber = number } else { registerNumber = -1 }
        switch operation {
        case .mov:
            return (merge(source), nil, nil)
        case .xchg:
            return (merge(source), (registerNumber, old), nil)
        case .cmpxchg:
            let expected = accumulator & mask
            let difference = (expected &- old) & mask
            var flags = logicFlags(difference)
            if expected < old { flags |= RFlags.carry }
            if expected == old { return (merge(source), nil, flags | RFlags.zero) }
            return (entry, (0, old), flags & ~RFlags.zero)
        case .and:
            let result = old & source
            return (merge(result), nil, logicFlags(result))
        case .or:
            let result = old | source
            return (merge(result), nil, logicFlags(result))
        case .xor:
            let result = old ^ source
            return (merge(result), nil, logicFlags(result))
        case .bts, .btr, .btc:
            let bit = (bitFromRegister ? source : source) & UInt64(size * 8 - 1)
            let value: UInt64 = 1 << bit
            let carry: UInt64 = old & value != 0 ? RFlags.carry : 0
            let result: UInt64
            switch operation {
            case .bts: result = old | value
            case .btr: result = old & ~value
            default: result = old ^ value
            }
            return (merge(result), nil, carry)
        }
    }
}
