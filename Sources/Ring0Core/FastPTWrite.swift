/// Writable page-table emulation inside the VM, for the writes Linux makes to its own
/// L1 tables at boot and fork (the host's `Hypervisor.WritablePageTables`, Xen's
/// pv/ro-page-fault.c): `xchg` of a whole entry (ptep_get_and_clear), `mov` of one,
/// and `lock and`/`lock or` of one byte with an immediate (clear_bit/set_bit with a
/// constant bit, e.g. ptep_set_wrprotect). The new entry is validated as a single
/// mmu_update of an L1 would be (`FastMMU.modifyL1Entry`), stored atomically, and the
/// instruction stepped over with its register and flag effects.
///
/// Everything else — other instructions, a write that is not to an active L1 of the
/// domain, an entry that needs the host's validation — is left to the host untouched.
enum FastPTWrite {
    /// The arithmetic flags a logic instruction defines (CF, PF, AF, ZF, SF, OF).
    static let arithmeticFlags: UInt64 = 0x8d5
    static let zeroFlag: UInt64 = 1 << 6, signFlag: UInt64 = 1 << 7, parityFlag: UInt64 = 1 << 2

    /// What a decoded write does to the entry.
    enum Operation {
        /// The whole entry becomes the register's value; `exchange` returns the old
        /// one in the register.
        case store(register: UInt64, exchange: Bool)
        /// One byte of the entry (at the fault address's offset) is and-ed or or-ed
        /// with an immediate.
        case andByte(UInt8)
        case orByte(UInt8)
    }

    /// The write at `faultAddress` by the instruction at the saved rip, from guest
    /// kernel mode. Called with nothing changed yet; changes nothing when it defers.
    static func emulate(_ regs: Words, _ vcpu: Words, context: CoreContext, faultAddress: UInt64, cr3: UInt64) -> UInt64 {
        let view = context.view
        let rip = regs.u64(UInt64(CoreLayout.savedRIP))
        guard let code = InstructionBytes(view: view, address: rip, root: cr3),
              let decoded = decode(code, faultAddress: faultAddress), decoded.length <= code.available else {
            return CoreLayout.resultDeferred
        }
        // The entry the write lands in, under the tables in use (kernel mode's).
        guard let physical = view.translate(faultAddress, root: cr3) else { return CoreLayout.resultDeferred }
        let entryAddress = physical & ~7
        let mmu = FastMMU(ram: context.ram, pages: PageInfoTable(words: context.pageInfo, frames: context.ramFrames),
                          ramFrames: context.ramFrames)
        let lock = CoreLock(header: context.header)
        let tag = vcpu.u64(UInt64(CoreLayout.vcpuID)) &+ 1
        var sourceValue: UInt64 = 0
        if case let .store(register, _) = decoded.operation {
            guard let value = registerValue(regs, register) else { return CoreLayout.resultDeferred }
            sourceValue = value
        }
        let shift = (faultAddress & 7) &* 8
        guard lock.acquire(tag: tag) else { return CoreLayout.resultDeferred }
        let old = mmu.modifyL1Entry(at: entryAddress) { current in
            switch decoded.operation {
            case .store: return sourceValue
            case let .andByte(mask): return current & ~(UInt64(~mask) << shift)
            case let .orByte(bits): return current | UInt64(bits) << shift
            }
        }
        lock.release(tag: tag)
        guard let old else { return CoreLayout.resultDeferred }

        switch decoded.operation {
        case let .store(register, exchange):
            if exchange { setRegister(regs, register, old) }
        case let .andByte(mask):
            setLogicFlags(regs, UInt8(truncatingIfNeeded: old >> shift) & mask)
        case let .orByte(bits):
            setLogicFlags(regs, UInt8(truncatingIfNeeded: old >> shift) | bits)
        }
        regs.setU64(UInt64(CoreLayout.savedRIP), rip &+ decoded.length)
        vcpu.countInVM(CoreLayout.inVMPageTableWrite)
        return CoreLayout.resultHandled
    }

    struct Decoded {
        let operation: Operation
        let length: UInt64
    }

    /// Decodes the forms above: optional `lock` and REX prefixes, then
    /// `REX.W 87 /r` (xchg r64, m64), `REX.W 89 /r` (mov m64, r64) with the write
    /// 8-byte aligned, or `80 /4 ib`, `80 /1 ib` (and, or m8, imm8); any memory operand.
    static func decode(_ code: InstructionBytes, faultAddress: UInt64) -> Decoded? {
        var index: UInt64 = 0
        var rex: UInt8 = 0
        if code.byte(index) == 0xf0 { index &+= 1 }
        if code.byte(index) & 0xf0 == 0x40 { rex = code.byte(index); index &+= 1 }
        let opcode = code.byte(index)
        index &+= 1
        let modrm = code.byte(index)
        index &+= 1
        let mod = modrm >> 6, rm = modrm & 7
        let regField = (modrm >> 3) & 7
        guard mod != 3 else { return nil }
        if rm == 4 {
            let sib = code.byte(index)
            index &+= 1
            if mod == 0 && sib & 7 == 5 { index &+= 4 }
        }
        if mod == 1 { index &+= 1 } else if mod == 2 || (mod == 0 && rm == 5) { index &+= 4 }
        let register = UInt64(regField) | (rex & 4 != 0 ? 8 : 0)
        switch opcode {
        case 0x87, 0x89:
            guard rex & 8 != 0, faultAddress & 7 == 0 else { return nil }
            return Decoded(operation: .store(register: register, exchange: opcode == 0x87), length: index)
        case 0x80:
            let immediate = code.byte(index)
            index &+= 1
            if regField == 4 { return Decoded(operation: .andByte(immediate), length: index) }
            if regField == 1 { return Decoded(operation: .orByte(immediate), length: index) }
            return nil
        default:
            return nil
        }
    }

    /// Where a general-purpose register is saved (nil for rsp, which a page-table
    /// write never uses as its source).
    static func registerOffset(_ number: UInt64) -> UInt64? {
        switch number {
        case 0: return UInt64(CoreLayout.savedRAX)
        case 1: return UInt64(CoreLayout.savedRCX)
        case 2: return UInt64(CoreLayout.savedRDX)
        case 3: return UInt64(CoreLayout.savedRBX)
        case 5: return UInt64(CoreLayout.savedRBP)
        case 6: return UInt64(CoreLayout.savedRSI)
        case 7: return UInt64(CoreLayout.savedRDI)
        case 8: return UInt64(CoreLayout.savedR8)
        case 9: return UInt64(CoreLayout.savedR9)
        case 10: return UInt64(CoreLayout.savedR10)
        case 11: return UInt64(CoreLayout.savedR11)
        case 12: return UInt64(CoreLayout.savedR12)
        case 13: return UInt64(CoreLayout.savedR13)
        case 14: return UInt64(CoreLayout.savedR14)
        case 15: return UInt64(CoreLayout.savedR15)
        default: return nil
        }
    }

    static func registerValue(_ regs: Words, _ number: UInt64) -> UInt64? {
        registerOffset(number).map { regs.u64($0) }
    }

    static func setRegister(_ regs: Words, _ number: UInt64, _ value: UInt64) {
        if let offset = registerOffset(number) { regs.setU64(offset, value) }
    }

    /// ZF, SF and PF of an 8-bit logic result; CF, OF and AF cleared (as the host).
    static func setLogicFlags(_ regs: Words, _ result: UInt8) {
        var flags: UInt64 = 0
        if result == 0 { flags |= zeroFlag }
        if result & 0x80 != 0 { flags |= signFlag }
        if result.nonzeroBitCount % 2 == 0 { flags |= parityFlag }
        let offset = UInt64(CoreLayout.savedRFlags)
        regs.setU64(offset, (regs.u64(offset) & ~arithmeticFlags) | flags)
    }
}

/// Up to 16 bytes of guest code, fetched through the guest's page tables; `available`
/// of them (fewer when the next page is not mapped; the rest read as zero).
struct InstructionBytes {
    private var low: UInt64 = 0
    private var high: UInt64 = 0
    private(set) var available: UInt64 = 16

    init?(view: GuestView, address: UInt64, root: UInt64) {
        guard let first = view.translate(address, root: root) else { return nil }
        let inFirstPage = 4096 &- (address & 0xfff)
        let second = inFirstPage < 16 ? view.translate(address &+ inFirstPage, root: root) : nil
        var index: UInt64 = 0
        while index < 16 {
            let byte: UInt8
            if index < inFirstPage {
                byte = view.ram.u8(first &+ index)
            } else if let second {
                byte = view.ram.u8(second &+ (index &- inFirstPage))
            } else {
                byte = 0
                if available == 16 { available = index }
            }
            if index < 8 { low |= UInt64(byte) << (index &* 8) } else { high |= UInt64(byte) << ((index &- 8) &* 8) }
            index &+= 1
        }
    }

    /// The first eight bytes, little-endian.
    var word: UInt64 { low }

    func byte(_ index: UInt64) -> UInt8 {
        guard index < 16 else { return 0 }
        return UInt8(truncatingIfNeeded: index < 8 ? low >> (index &* 8) : high >> ((index &- 8) &* 8))
    }
}
