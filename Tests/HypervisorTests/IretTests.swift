// iret (Iret.swift): returns from bounce frames to guest kernel and guest user mode.

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

@Suite("iret")
struct IretTests {
    static let userL4: UInt64 = 300

    /// Gives vCPU 0 a user page table (an empty L4) through MMUEXT_NEW_USER_BASEPTR.
    func setUserTable(_ test: TestDomain) throws {
        try test.write(MMUExtOp(cmd: MMUExtCommand.newUserBaseptr, arg1: Self.userL4).encode(), at: TestDomain.buffer)
        test.call(.mmuextOp, TestDomain.buffer, 1, 0, UInt64(DomainID.`self`))
        try #require(test.result == 0)
        try #require(test.vcpu.userTable == FrameNumber(Self.userL4))
    }

    /// Pushes `saved` where the guest's rsp points, as Linux's iret stub leaves it.
    func push(_ test: TestDomain, _ saved: IretContext) throws {
        test.context.rsp = TestDomain.va(16) - UInt64(IretContext.size) - 8
        try test.write(saved.encode(), at: test.context.rsp)
    }

    @Test("iret to guest kernel mode restores rip, cs|3, rflags, rsp, ss|3, rcx, r11 and rax")
    func toKernel() throws {
        let test = try TestDomain()
        try push(test, IretContext(rax: 0x1111, r11: 0x2222, rcx: 0x3333, flags: 0, rip: 0xffff_ffff_8100_4000,
                                   cs: 0xe030, rflags: 0x0000_0246, rsp: 0xffff_ffff_8100_8f00, ss: 0xe028))
        test.context.gsBase = 0xaaaa
        test.vcpu.inactiveGSBase = 0xbbbb
        #expect(test.call(.iret) == .contextReplaced)
        #expect(test.context.rax == 0x1111)
        #expect(test.context.r11 == 0x2222)
        #expect(test.context.rcx == 0x3333)
        #expect(test.context.rip == 0xffff_ffff_8100_4000)
        #expect(test.context.cs == 0xe033)
        #expect(test.context.rflags == 0x246)
        #expect(test.context.rsp == 0xffff_ffff_8100_8f00)
        #expect(test.context.ss == 0xe02b)
        #expect(test.vcpu.mode == .kernel)
        #expect(test.context.gsBase == 0xaaaa && test.vcpu.inactiveGSBase == 0xbbbb, "no GS swap within kernel mode")
        #expect(!test.vcpu.upcallMask(), "IF set in the saved flags unmasks events")
    }

    @Test("The saved IF decides the event mask; IOPL and VM are stripped and IF is always set in the real flags")
    func flags() throws {
        let test = try TestDomain()
        test.vcpu.setUpcallMask(false)
        try push(test, IretContext(rip: 0x1000, cs: 0xe030, rflags: RFlags.virtual8086 | RFlags.iopl | RFlags.carry | RFlags.direction,
                                   rsp: 0x2000, ss: 0xe02b))
        test.call(.iret)
        #expect(test.vcpu.upcallMask(), "IF clear in the saved flags masks events")
        #expect(test.context.rflags == RFlags.carry | RFlags.direction | RFlags.interrupt | RFlags.fixed)
    }

    @Test("VGCF_in_syscall leaves rcx and r11 as they are")
    func inSyscall() throws {
        let test = try TestDomain()
        test.context.rcx = 0xc0c0
        test.context.r11 = 0x1111
        try push(test, IretContext(rax: 5, r11: 0x2222, rcx: 0x3333, flags: VGCF.inSyscall, rip: 0x1000, cs: 0xe030,
                                   rflags: 0x200, rsp: 0x2000, ss: 0xe02b))
        test.call(.iret)
        #expect(test.context.rcx == 0xc0c0)
        #expect(test.context.r11 == 0x1111)
        #expect(test.context.rax == 5)
    }

    @Test("iret to RPL 3 switches to user mode: user page tables, GS bases swapped, cs and ss with RPL 3")
    func toUser() throws {
        let test = try TestDomain()
        try setUserTable(test)
        test.context.gsBase = 0xffff_8880_0000_1000     // the kernel's per-CPU base
        test.vcpu.inactiveGSBase = 0x7f00_0000_2000     // the user's
        try push(test, IretContext(rax: 0, r11: 0x202, rcx: 0x40_1000, flags: 0, rip: 0x40_1000, cs: 0x33,
                                   rflags: 0x202, rsp: 0x7ffe_0000_0000, ss: 0x2b))
        #expect(test.call(.iret) == .contextReplaced)
        #expect(test.vcpu.mode == .user)
        #expect(test.vcpu.activeTable == FrameNumber(Self.userL4))
        #expect(test.context.gsBase == 0x7f00_0000_2000)
        #expect(test.vcpu.inactiveGSBase == 0xffff_8880_0000_1000)
        #expect(test.context.cs == 0x33 && test.context.ss == 0x2b)
        #expect(test.context.rip == 0x40_1000 && test.context.rsp == 0x7ffe_0000_0000)
        #expect(!test.vcpu.upcallMask())
    }

    @Test("iret to user mode without user page tables crashes the domain")
    func toUserWithoutTable() throws {
        let test = try TestDomain()
        try push(test, IretContext(rip: 0x40_1000, cs: 0x33, rflags: 0x202, rsp: 0x7ffe_0000_0000, ss: 0x2b))
        let before = test.context
        #expect(test.call(.iret) == .stop)
        #expect(test.isCrashed)
        #expect(test.vcpu.mode == .kernel)
        #expect(test.context.rip == before.rip)
    }

    @Test("An iret context the hypervisor cannot read crashes the domain", arguments: [
        TestDomain.unmapped, TestDomain.unmapped - 16, 0x8000_0000_0000_0000, 0,
    ])
    func unreadableContext(rsp: UInt64) throws {
        let test = try TestDomain()
        test.context.rsp = rsp
        #expect(test.call(.iret) == .stop)
        #expect(test.isCrashed)
        if case let .crashed(reason) = test.lifecycle { #expect(reason.contains("iret context")) }
    }
}
