// Privileged-instruction emulation and forced-emulation CPUID (Traps/PrivilegedOps.swift,
// Traps/CPUIDPolicy.swift), reached as the machine layer reaches them: #GP and #UD exits.

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

extension TestDomain {
    /// Runs the instruction `bytes` at the code page as a #GP with error code 0.
    @discardableResult
    func generalProtection(_ bytes: [UInt8]) throws -> ExitOutcome {
        try placeCode(bytes)
        return Traps.exception(vcpu, &context, vector: 13, errorCode: 0, faultAddress: 0)
    }

    var codeAddress: UInt64 { Self.va(Self.codePFN) }

    /// Whether the last exit was reflected to the guest's #GP handler.
    var deliveredGP: Bool { context.rip == Self.handler + 13 * 0x10 }
}

@Suite("Privileged-op emulation: MSRs")
struct MSRTests {
    static let wrmsr: [UInt8] = [0x0f, 0x30]
    static let rdmsr: [UInt8] = [0x0f, 0x32]

    @discardableResult
    func write(_ test: TestDomain, msr: UInt32, _ value: UInt64) throws -> ExitOutcome {
        test.context.rcx = UInt64(msr)
        test.context.rax = 0xffff_ffff_0000_0000 | (value & 0xffff_ffff)   // upper halves are ignored
        test.context.rdx = 0xffff_ffff_0000_0000 | (value >> 32)
        return try test.generalProtection(Self.wrmsr)
    }

    func read(_ test: TestDomain, msr: UInt32) throws -> UInt64? {
        test.context.rcx = UInt64(msr)
        try test.generalProtection(Self.rdmsr)
        guard test.context.rip == test.codeAddress + 2 else { return nil }
        #expect(test.context.rax >> 32 == 0 && test.context.rdx >> 32 == 0)
        return test.context.rdx << 32 | test.context.rax
    }

    @Test("wrmsr FS_BASE / GS_BASE / KERNEL_GS_BASE set the bases (Linux's startup_xen does the GS one natively)")
    func writeBases() throws {
        let test = try TestDomain()
        #expect(try write(test, msr: 0xc000_0101, 0xffff_8880_1234_5000) == .resume)
        #expect(test.context.gsBase == 0xffff_8880_1234_5000)
        #expect(test.context.rip == test.codeAddress + 2)
        #expect(try write(test, msr: 0xc000_0100, 0x7f00_0000_1000) == .resume)
        #expect(test.context.fsBase == 0x7f00_0000_1000)
        #expect(try write(test, msr: 0xc000_0102, 0x7f00_0000_2000) == .resume)
        #expect(test.vcpu.inactiveGSBase == 0x7f00_0000_2000, "KERNEL_GS_BASE is the inactive (user) base in kernel mode")
        #expect(try read(test, msr: 0xc000_0100) == 0x7f00_0000_1000)
        #expect(try read(test, msr: 0xc000_0101) == 0xffff_8880_1234_5000)
        #expect(try read(test, msr: 0xc000_0102) == 0x7f00_0000_2000)
    }

    @Test("A non-canonical base is a #GP")
    func nonCanonicalBase() throws {
        let test = try TestDomain()
        test.setTrap(13)
        try write(test, msr: 0xc000_0100, 0x0000_8000_0000_0000)
        #expect(test.deliveredGP)
        #expect(test.context.fsBase == 0)
    }

    @Test("rdmsr PAT gives Xen's PAT; writing that same value is accepted, any other is a #GP")
    func pat() throws {
        let test = try TestDomain()
        test.setTrap(13)
        #expect(try read(test, msr: 0x277) == 0x0000_0501_0007_0406)
        #expect(try write(test, msr: 0x277, 0x0000_0501_0007_0406) == .resume)
        #expect(test.context.rip == test.codeAddress + 2)
        try write(test, msr: 0x277, 0x0007_0406_0007_0406)
        #expect(test.deliveredGP)
    }

    @Test("rdmsr EFER shows SCE, LME, LMA and NXE")
    func efer() throws {
        let test = try TestDomain()
        #expect(try read(test, msr: 0xc000_0080) == 0xd01)
    }

    @Test("Writes to the syscall and sysenter MSRs are dropped; reads give 0", arguments: [
        UInt32(0xc000_0081), 0xc000_0082, 0xc000_0083, 0xc000_0084, 0x174, 0x175, 0x176,
    ])
    func droppedWrites(msr: UInt32) throws {
        let test = try TestDomain()
        #expect(try write(test, msr: msr, 0xffff_ffff_8100_0000) == .resume)
        #expect(test.context.rip == test.codeAddress + 2)
        #expect(try read(test, msr: msr) == 0)
    }

    @Test("Unknown MSRs are a #GP for reads and writes", arguments: [UInt32(0x1234), 0xc000_0103, 0x3a, 0xc001_0114])
    func unknownMSR(msr: UInt32) throws {
        let test = try TestDomain()
        test.setTrap(13)
        #expect(try read(test, msr: msr) == nil)
        #expect(test.deliveredGP)
        #expect(try test.frame(words: 8)[2] == 0, "#GP(0)")
        let fresh = try TestDomain()
        fresh.setTrap(13)
        try write(fresh, msr: msr, 1)
        #expect(fresh.deliveredGP)
    }

    @Test("MSR access from guest user mode is a #GP")
    func userMode() throws {
        let test = try TestDomain()
        test.setTrap(13)
        try test.enterUserMode()
        test.context.rcx = 0xc000_0100
        try test.placeCode(Self.rdmsr)
        test.exception(vector: 13, errorCode: 0, faultAddress: 0)
        #expect(test.deliveredGP)
    }
}

@Suite("Privileged-op emulation: control registers, I/O, interrupts, caches")
struct PrivilegedInstructionTests {
    @Test("mov from CR0 gives PE|MP|ET|NE|WP|AM|PG, plus TS while the virtual TS is set")
    func readCR0() throws {
        let test = try TestDomain()
        #expect(try test.generalProtection([0x0f, 0x20, 0xc0]) == .resume)   // mov %cr0,%rax
        #expect(test.context.rax == 0x8005_003b)
        #expect(test.context.rip == test.codeAddress + 3)
        test.vcpu.virtualTS = true
        try test.generalProtection([0x0f, 0x20, 0xc3])                         // mov %cr0,%rbx
        #expect(test.context.rbx == 0x8005_003b | 8)
    }

    @Test("mov from CR4 gives PAE|OSFXSR|OSXMMEXCPT; REX.B selects r8–r15")
    func readCR4() throws {
        let test = try TestDomain()
        try test.generalProtection([0x0f, 0x20, 0xe1])                         // mov %cr4,%rcx
        #expect(test.context.rcx == 0x620)
        try test.generalProtection([0x41, 0x0f, 0x20, 0xe0])                   // mov %cr4,%r8
        #expect(test.context.r8 == 0x620)
        #expect(test.context.rip == test.codeAddress + 4)
    }

    @Test("mov from CR3 gives the kernel L4; CR2 the last fault address")
    func readCR3AndCR2() throws {
        let test = try TestDomain()
        try test.generalProtection([0x0f, 0x20, 0xd8])                         // mov %cr3,%rax
        #expect(test.context.rax == 0x1000)
        try test.memory.write(UInt64(0xdead_0000), at: test.vcpuInfoField(VCPUInfoLayout.cr2))
        try test.generalProtection([0x0f, 0x20, 0xd2])                         // mov %cr2,%rdx
        #expect(test.context.rdx == 0xdead_0000)
    }

    @Test("mov to CR0 changes only TS; mov to CR4 is ignored; other control registers are a #GP")
    func writeControlRegisters() throws {
        let test = try TestDomain()
        test.setTrap(13)
        test.context.rax = 0x8005_003b | 8
        try test.generalProtection([0x0f, 0x22, 0xc0])                         // mov %rax,%cr0
        #expect(test.vcpu.virtualTS)
        test.context.rax = 0x6f0
        #expect(try test.generalProtection([0x0f, 0x22, 0xe0]) == .resume)     // mov %rax,%cr4
        #expect(test.context.rip == test.codeAddress + 3)
        try test.generalProtection([0x0f, 0x22, 0xd8])                         // mov %rax,%cr3
        #expect(test.deliveredGP)
    }

    @Test("in/out need a virtual IOPL of at least 1 in kernel mode", arguments: [
        [UInt8(0xe4), 0x71], [0xe5, 0x71], [0xec], [0xed], [0xe6, 0x80], [0xe7, 0x80], [0xee], [0xef], [0x66, 0xed],
    ])
    func ioWithoutIOPL(instruction: [UInt8]) throws {
        let test = try TestDomain()
        test.setTrap(13)
        try test.generalProtection(instruction)
        #expect(test.deliveredGP)
    }

    @Test("With IOPL 1, in reads all ones at the operand size and out is dropped")
    func ioWithIOPL() throws {
        let test = try TestDomain()
        test.vcpu.virtualIOPL = 1
        test.context.rax = 0x1234_5678_9abc_def0
        try test.generalProtection([0xe4, 0x71])                               // in $0x71,%al
        #expect(test.context.rax == 0x1234_5678_9abc_deff)
        #expect(test.context.rip == test.codeAddress + 2)
        try test.generalProtection([0x66, 0xed])                               // in (%dx),%ax
        #expect(test.context.rax == 0x1234_5678_9abc_ffff)
        #expect(test.context.rip == test.codeAddress + 2)
        try test.generalProtection([0xed])                                     // in (%dx),%eax zero-extends
        #expect(test.context.rax == 0xffff_ffff)
        #expect(test.context.rip == test.codeAddress + 1)
        try test.generalProtection([0xe6, 0x80])                               // out %al,$0x80
        #expect(test.context.rip == test.codeAddress + 2 && test.context.rax == 0xffff_ffff)
        try test.generalProtection([0xee])                                     // out %al,(%dx)
        #expect(test.context.rip == test.codeAddress + 1)
    }

    @Test("Guest user mode needs IOPL 3 for in/out")
    func ioFromUserMode() throws {
        let test = try TestDomain()
        test.setTrap(13)
        try test.enterUserMode()
        test.vcpu.virtualIOPL = 1
        try test.placeCode([0xec])
        test.exception(vector: 13, errorCode: 0, faultAddress: 0)
        #expect(test.deliveredGP)

        let other = try TestDomain()
        try other.enterUserMode()
        other.vcpu.virtualIOPL = 3
        try other.placeCode([0xec])
        #expect(other.exception(vector: 13, errorCode: 0, faultAddress: 0) == .resume)
        #expect(other.context.rip == other.codeAddress + 1)
        #expect(other.context.rax & 0xff == 0xff)
    }

    @Test("cli and sti set and clear the event mask with enough IOPL; without it they are a #GP")
    func cliSti() throws {
        let test = try TestDomain()
        test.vcpu.virtualIOPL = 1
        test.vcpu.setUpcallMask(false)
        try test.generalProtection([0xfa])
        #expect(test.vcpu.upcallMask())
        #expect(test.context.rip == test.codeAddress + 1)
        try test.generalProtection([0xfb])
        #expect(!test.vcpu.upcallMask())
        let strict = try TestDomain()
        strict.setTrap(13)
        try strict.generalProtection([0xfa])
        #expect(strict.deliveredGP)
    }

    @Test("wbinvd, invd and clts are emulated; clts clears the virtual TS")
    func cacheAndClts() throws {
        let test = try TestDomain()
        #expect(try test.generalProtection([0x0f, 0x09]) == .resume)
        #expect(test.context.rip == test.codeAddress + 2)
        try test.generalProtection([0x0f, 0x08])
        #expect(test.context.rip == test.codeAddress + 2)
        test.vcpu.virtualTS = true
        try test.generalProtection([0x0f, 0x06])
        #expect(!test.vcpu.virtualTS)
    }

    @Test("Other instructions (hlt, lgdt, a #GP with an error code) are reflected as #GP", arguments: [
        [UInt8(0xf4)], [0x0f, 0x01, 0x10], [0x0f, 0x0b],
    ])
    func notEmulated(instruction: [UInt8]) throws {
        let test = try TestDomain()
        test.setTrap(13)
        try test.generalProtection(instruction)
        #expect(test.deliveredGP)
    }

    @Test("An instruction on an unmapped page cannot be fetched and is reflected as #GP")
    func unfetchable() throws {
        let test = try TestDomain()
        test.setTrap(13)
        test.context.rip = TestDomain.unmapped
        test.exception(vector: 13, errorCode: 0, faultAddress: 0)
        #expect(test.deliveredGP)
    }

    @Test("An instruction split across the end of a mapped page is fetched in two pieces")
    func fetchAcrossPages() throws {
        let test = try TestDomain()
        let address = TestDomain.va(30) - 1
        try test.placeCode([0x0f, 0x09], at: address)
        #expect(test.exception(vector: 13, errorCode: 0, faultAddress: 0) == .resume)
        #expect(test.context.rip == address + 2)
    }
}

@Suite("Forced-emulation CPUID and the PV CPUID policy")
struct CPUIDTests {
    static let forcedCPUID: [UInt8] = [0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2]

    /// A host that offers everything.
    static let host: [CPUIDPolicy.Leaf] = [
        .init(function: 0, eax: 0xd, ebx: 0x756e_6547, ecx: 0x6c65_746e, edx: 0x4965_6e69),
        .init(function: 1, eax: 0x906ea, ebx: 0x0810_0800, ecx: 0x7fff_ffff, edx: 0xffff_ffff),
        .init(function: 6, eax: 0x77, ebx: 2, ecx: 9),
        .init(function: 7, index: 0, eax: 2, ebx: 0xffff_ffff, ecx: 0xffff_ffff, edx: 0xffff_ffff, indexed: true),
        .init(function: 7, index: 1, eax: 0x1234, indexed: true),
        .init(function: 0xd, index: 0, eax: 0x2ff, ebx: 0xa88, ecx: 0xa88, indexed: true),
        .init(function: 0x4000_0000, eax: 0x4000_0001, ebx: 0x4b4d_564b, ecx: 0x564b_4d56, edx: 0x4d),
        .init(function: 0x8000_0001, ecx: 0xffff_ffff, edx: 0xffff_ffff),
        .init(function: 0x8000_0008, eax: 0x3027, ebx: 0x1234, ecx: 0xffff),
    ]

    func cpuid(_ test: TestDomain, _ leaf: UInt32, _ subleaf: UInt32 = 0) throws -> [UInt32] {
        try test.placeCode(Self.forcedCPUID)
        test.context.rax = 0xffff_ffff_0000_0000 | UInt64(leaf)
        test.context.rcx = UInt64(subleaf)
        let outcome = test.exception(vector: 6, errorCode: 0, faultAddress: 0)
        #expect(outcome == .resume)
        #expect(test.context.rip == test.codeAddress + 7)
        return [test.context.rax, test.context.rbx, test.context.rcx, test.context.rdx].map { UInt32(truncatingIfNeeded: $0) }
    }

    @Test("Leaf 1 hides PSE, PGE, PSE36, MTRR, VME, PCID, x2APIC, VMX, XSAVE and OSXSAVE and sets the hypervisor bit")
    func leaf1() throws {
        let test = try TestDomain(cpuid: CPUIDPolicy(hostLeaves: Self.host))
        let values = try cpuid(test, 1)
        let (ebx, ecx, edx) = (values[1], values[2], values[3])
        for bit in [1, 3, 9, 12, 13, 17] { #expect(edx & (1 << bit) == 0, "edx bit \(bit)") }
        for bit in [5, 17, 21, 26, 27, 28] { #expect(ecx & (1 << bit) == 0, "ecx bit \(bit)") }
        #expect(ecx & (1 << 31) != 0, "running on a hypervisor")
        #expect(edx & (1 << 0) != 0 && edx & (1 << 25) != 0, "FPU and SSE stay")
        #expect(ebx >> 24 == 0 && (ebx >> 16) & 0xff == 1, "APIC id = vCPU id, one logical CPU")
        #expect(values[0] == 0x906ea)
    }

    @Test("Leaf 1 reports the calling vCPU's APIC id")
    func apicID() throws {
        let test = try TestDomain(vcpus: 3, cpuid: CPUIDPolicy(hostLeaves: Self.host))
        var context = test.context
        try test.placeCode(Self.forcedCPUID)
        context.rip = test.context.rip
        context.rax = 1
        let vcpu2 = test.domain.vcpus[2]
        vcpu2.kernelTable = test.vcpu.kernelTable
        _ = Traps.exception(vcpu2, &context, vector: 6, errorCode: 0, faultAddress: 0)
        #expect(context.rbx >> 24 == 2)
    }

    @Test("Leaf 7 hides SMEP, SMAP, FSGSBASE, INVPCID and all of edx; other sub-leaves are empty")
    func leaf7() throws {
        let test = try TestDomain(cpuid: CPUIDPolicy(hostLeaves: Self.host))
        let values = try cpuid(test, 7, 0)
        for bit in [0, 7, 10, 20] { #expect(values[1] & (1 << bit) == 0, "ebx bit \(bit)") }
        #expect(values[0] == 0 && values[3] == 0)
        #expect(values[1] & (1 << 3) != 0, "BMI1 stays")
        #expect(try cpuid(test, 7, 1) == [0, 0, 0, 0])
    }

    @Test("XSAVE state, thermal leaves and 1 GiB pages are hidden")
    func otherLeaves() throws {
        let test = try TestDomain(cpuid: CPUIDPolicy(hostLeaves: Self.host))
        #expect(try cpuid(test, 0xd, 0) == [0, 0, 0, 0])
        #expect(try cpuid(test, 6) == [0, 0, 0, 0])
        let extended = try cpuid(test, 0x8000_0001)
        #expect(extended[3] & (1 << 26) == 0 && extended[3] & (1 << 3) == 0)
        #expect(extended[3] & (1 << 29) != 0, "long mode stays")
        #expect(extended[2] & (1 << 2) == 0, "no SVM")
        #expect(try cpuid(test, 0x8000_0008) == [0x3027, 0, 0x0f00, 0])
        #expect(try cpuid(test, 0x1234_5678) == [0, 0, 0, 0], "unknown leaves read as zero")
    }

    @Test("The hypervisor leaves are Xen's: \"XenVMMXenVMM\", version 4.19, one hypercall page")
    func xenLeaves() throws {
        let test = try TestDomain(cpuid: CPUIDPolicy(hostLeaves: Self.host))
        let signature = try cpuid(test, 0x4000_0000)
        #expect(signature[0] == 0x4000_0002)
        let text = signature[1...3].flatMap { le($0) }
        #expect(String(decoding: text, as: UTF8.self) == "XenVMMXenVMM")
        #expect(try cpuid(test, 0x4000_0001) == [0x0004_0013, 0, 0, 0])
        #expect(try cpuid(test, 0x4000_0002) == [1, 0x4000_0000, 0, 0])
        #expect(test.domain.cpuid.leaves.filter { $0.function & 0xf000_0000 == 0x4000_0000 }.count == 3, "KVM's leaves are gone")
    }

    @Test("Without the `xen` signature a #UD is reflected to the guest")
    func plainUD() throws {
        let test = try TestDomain()
        test.setTrap(6)
        try test.placeCode([0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x90, 0x90])
        #expect(test.exception(vector: 6, errorCode: 0, faultAddress: 0) == .resume)
        #expect(test.context.rip == TestDomain.handler + 6 * 0x10)
        #expect(try test.frame(words: 7)[2] == test.codeAddress)
    }
}
