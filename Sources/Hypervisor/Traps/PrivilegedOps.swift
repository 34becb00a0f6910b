import GuestMemory
import XenABI

/// Emulation of the privileged instructions a PV kernel still executes natively and
/// that fault in ring 3 (xen/arch/x86/pv/emul-priv-op.c): MSR accesses, control
/// registers, port I/O, cli/sti with virtual IOPL, wbinvd, clts; and the
/// forced-emulation CPUID (`ud2; .ascii "xen"; cpuid`, pv/emul-inv-op.c).
enum PrivilegedOps {
    /// The PAT value Xen gives PV guests.
    static let xenPAT: UInt64 = 0x0000_0501_0007_0406
    /// The EFER a PV guest sees: SCE, LME, LMA, NXE.
    static let guestEFER: UInt64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11)
    /// The CR4 a PV guest sees: PAE, OSFXSR, OSXMMEXCPT.
    static let guestCR4: UInt64 = (1 << 5) | (1 << 9) | (1 << 10)
    /// The CR0 a PV guest sees: PE, MP, ET, NE, WP, AM, PG (TS added when set).
    static let guestCR0: UInt64 = 0x8005_003b

    static let forcedEmulationPrefix: [UInt8] = [0x0f, 0x0b, 0x78, 0x65, 0x6e]

    /// Reads up to 15 instruction bytes at rip (fewer at the end of a mapped range).
    static func fetch(_ vcpu: VCPU, _ context: GuestContext) -> [UInt8] {
        guard let root = vcpu.activeTable else { return [] }
        let walker = GuestPageWalker(memory: vcpu.domain.memory, root: root)
        let address = GuestVirtualAddress(context.rip)
        let firstPage = Int(pageSize - address.pageOffset)
        if firstPage >= 15 { return (try? walker.read(address, count: 15)) ?? [] }
        let head = (try? walker.read(address, count: firstPage)) ?? []
        guard head.count == firstPage else { return head }
        return head + ((try? walker.read(address.advanced(by: UInt64(firstPage)), count: 15 - firstPage)) ?? [])
    }

    /// `ud2; "xen"; cpuid`: CPUID with the PV policy. Returns false if the bytes differ.
    static func emulateForcedCPUID(_ vcpu: VCPU, _ context: inout GuestContext) -> Bool {
        let bytes = fetch(vcpu, context)
        guard bytes.count >= 7, Array(bytes[0..<5]) == forcedEmulationPrefix, bytes[5] == 0x0f, bytes[6] == 0xa2 else {
            return false
        }
        cpuid(vcpu, &context)
        context.rip &+= 7
        return true
    }

    static func cpuid(_ vcpu: VCPU, _ context: inout GuestContext) {
        let values = vcpu.domain.cpuid.lookup(function: UInt32(truncatingIfNeeded: context.rax),
                                              index: UInt32(truncatingIfNeeded: context.rcx))
        var (eax, ebx, ecx, edx) = values
        if UInt32(truncatingIfNeeded: context.rax) == 1 {
            // OSXSAVE mirrors CR4.OSXSAVE, which a PV guest never has; APIC id = vCPU id.
            ecx &= ~(1 << 27)
            ebx = (ebx & 0x00ff_ffff) | UInt32(vcpu.id & 0xff) << 24
        }
        if UInt32(truncatingIfNeeded: context.rax) == 0x4000_0002 { ecx = 0; edx = 0 }
        if UInt32(truncatingIfNeeded: context.rax) == 0x4000_0001 { ebx = 0 }
        context.rax = UInt64(eax)
        context.rbx = UInt64(ebx)
        context.rcx = UInt64(ecx)
        context.rdx = UInt64(edx)
        _ = (eax, edx)
    }

    /// Emulates the instruction at rip if it is one a PV kernel may use. Returns false
    /// (the caller injects #GP) otherwise.
    static func emulate(_ vcpu: VCPU, _ context: inout GuestContext) -> Bool {
        let bytes = fetch(vcpu, context)
        var index = 0
        var operandSize16 = false
        var rex: UInt8 = 0
        // Legacy and REX prefixes.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x66 { operandSize16 = true; index += 1; continue }
            if [0x67, 0xf2, 0xf3, 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65, 0xf0].contains(byte) { index += 1; continue }
            if byte & 0xf0 == 0x40 { rex = byte; index += 1; continue }
            break
        }
        guard index < bytes.count else { return false }
        let opcode = bytes[index]
        let kernel = vcpu.mode == .kernel
        // Xen's iopl_ok: the guest kernel counts as ring 1, its user mode as ring 3.
        let ioAllowed = vcpu.virtualIOPL >= (kernel ? 1 : 3)
        func advance(_ length: Int) { context.rip &+= UInt64(length) }

        switch opcode {
        case 0xfa, 0xfb:   // cli, sti: allowed with enough virtual IOPL; they set the event mask
            guard ioAllowed else { return false }
            vcpu.setUpcallMask(opcode == 0xfa)
            advance(index + 1)
            return true
        case 0xe4, 0xe5, 0xec, 0xed, 0xe6, 0xe7, 0xee, 0xef:
            // in/out with enough virtual IOPL: a domU owns no ports, so reads see all
            // ones and writes are dropped (Xen's admin_io_okay refusing).
            guard ioAllowed else { return false }
            let isIn = opcode & 2 == 0
            let size = opcode & 1 == 0 ? 1 : (operandSize16 ? 2 : 4)
            if isIn {
                let ones: UInt64 = size == 1 ? 0xff : (size == 2 ? 0xffff : 0xffff_ffff)
                context.rax = size == 4 ? ones : (context.rax & ~ones) | ones
            }
            advance(index + (opcode & 8 == 0 ? 2 : 1))
            return true
        case 0x0f:
            guard index + 1 < bytes.count, kernel else { return false }
            let second = bytes[index + 1]
            switch second {
            case 0x30: return wrmsr(vcpu, &context, length: index + 2)
            case 0x32: return rdmsr(vcpu, &context, length: index + 2)
            case 0x06:   // clts
                vcpu.virtualTS = false
                advance(index + 2)
                return true
            case 0x08, 0x09:   // invd, wbinvd: no cache-flush rights, so a no-op as on Xen
                advance(index + 2)
                return true
            case 0x20, 0x22:   // mov from/to control register
                guard index + 2 < bytes.count else { return false }
                let modrm = bytes[index + 2]
                guard modrm & 0xc0 == 0xc0 else { return false }
                let control = Int((modrm >> 3) & 7) | (rex & 4 != 0 ? 8 : 0)
                let register = Int(modrm & 7) | (rex & 1 != 0 ? 8 : 0)
                if second == 0x20 {
                    guard let value = readControl(vcpu, control) else { return false }
                    context.setRegister(register, value)
                } else {
                    guard writeControl(vcpu, control, context.register(register)) else { return false }
                }
                advance(index + 3)
                return true
            default:
                return false
            }
        default:
            return false
        }
    }

    static func readControl(_ vcpu: VCPU, _ number: Int) -> UInt64? {
        switch number {
        case 0: return guestCR0 | (vcpu.virtualTS ? 8 : 0)
        case 2: return try? vcpu.domain.memory.read(UInt64.self, at: vcpu.vcpuInfoField(VCPUInfoLayout.cr2))
        case 3: return vcpu.kernelTable.flatMap { $0.address?.rawValue } ?? 0
        case 4: return guestCR4
        default: return nil
        }
    }

    static func writeControl(_ vcpu: VCPU, _ number: Int, _ value: UInt64) -> Bool {
        switch number {
        case 0:
            // Only TS may change (what fpu_taskswitch does); other bits are fixed.
            vcpu.virtualTS = value & 8 != 0
            return true
        case 4:
            // Xen ignores CR4 writes from PV guests beyond logging them.
            if value != guestCR4 {
                vcpu.domain.log.log(.debug, "\(vcpu.name): ignored write of \(hex(value)) to CR4")
            }
            return true
        default:
            return false
        }
    }

    static func rdmsr(_ vcpu: VCPU, _ context: inout GuestContext, length: Int) -> Bool {
        let index = UInt32(truncatingIfNeeded: context.rcx)
        let value: UInt64
        switch index {
        case 0xc000_0100: value = context.fsBase
        case 0xc000_0101: value = vcpu.mode == .kernel ? context.gsBase : vcpu.inactiveGSBase
        case 0xc000_0102: value = vcpu.mode == .kernel ? vcpu.inactiveGSBase : context.gsBase
        case 0xc000_0080: value = guestEFER
        case 0x277: value = xenPAT
        case 0x10: value = vcpu.domain.clock.guestTSC()
        case 0x1b: value = 0   // no local APIC
        case 0x1a0: value = 1 << 0 | 1 << 11 | 1 << 12   // MISC_ENABLE: fast strings, no BTS/PEBS
        case 0xc000_0081, 0xc000_0082, 0xc000_0083, 0xc000_0084, 0x174, 0x175, 0x176: value = 0
        default:
            vcpu.domain.log.log(.debug, "\(vcpu.name): rdmsr \(hex(UInt64(index))) refused (#GP)")
            return false
        }
        context.rax = value & 0xffff_ffff
        context.rdx = value >> 32
        context.rip &+= UInt64(length)
        return true
    }

    static func wrmsr(_ vcpu: VCPU, _ context: inout GuestContext, length: Int) -> Bool {
        let index = UInt32(truncatingIfNeeded: context.rcx)
        let value = (context.rdx & 0xffff_ffff) << 32 | (context.rax & 0xffff_ffff)
        switch index {
        case 0xc000_0100:
            guard GuestVirtualAddressCheck.isCanonical(value) else { return false }
            context.fsBase = value
        case 0xc000_0101:
            guard GuestVirtualAddressCheck.isCanonical(value) else { return false }
            if vcpu.mode == .kernel { context.gsBase = value } else { vcpu.inactiveGSBase = value }
        case 0xc000_0102:
            guard GuestVirtualAddressCheck.isCanonical(value) else { return false }
            if vcpu.mode == .kernel { vcpu.inactiveGSBase = value } else { context.gsBase = value }
        case 0xc000_0081, 0xc000_0082, 0xc000_0083, 0xc000_0084, 0x174, 0x175, 0x176:
            break   // syscall/sysenter setup: the hypervisor owns these; drop the write as Xen does
        case 0x277:
            guard value == xenPAT else { return false }
        default:
            vcpu.domain.log.log(.debug, "\(vcpu.name): wrmsr \(hex(UInt64(index))) = \(hex(value)) refused (#GP)")
            return false
        }
        context.rip &+= UInt64(length)
        return true
    }
}
