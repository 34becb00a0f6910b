// The hypercall page (Traps/HypercallPage.swift) and the exits it makes
// (Traps/Exceptions.swift: `int $0x82` at a stub — through its gate, or as the #UD
// some hosts raise instead —, `syscall`).

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

@Suite("Hypercall page")
struct HypercallPageTests {
    static let pagePFN: UInt64 = 60
    static var page: UInt64 { TestDomain.va(pagePFN) }

    func install(_ test: TestDomain) throws {
        try test.write(HypercallPage.contents(), at: Self.page)
        test.domain.setHypercallPage(Self.page)
    }

    @Test("Each stub at nr·32 is `mov $nr,%eax; int $0x82; ret`, padded with int3")
    func stubs() {
        let page = HypercallPage.contents()
        #expect(page.count == 4096)
        for number in 0..<128 where number != 23 {
            let stub = Array(page[(number * 32)..<(number * 32 + 32)])
            #expect(Array(stub[0..<8]) == [0xb8, UInt8(number), 0, 0, 0, 0xcd, 0x82, 0xc3], "stub \(number)")
            #expect(stub[8...].allSatisfy { $0 == 0xcc })
        }
    }

    @Test("The iret stub pushes rcx, r11 and rax, then exits and never returns")
    func iretStub() {
        let stub = Array(HypercallPage.contents()[(23 * 32)..<(24 * 32)])
        #expect(Array(stub[0..<13]) == [0x51, 0x41, 0x53, 0x50, 0xb8, 23, 0, 0, 0, 0xcd, 0x82, 0x0f, 0x0b])
        #expect(stub[13...].allSatisfy { $0 == 0xcc })
    }

    @Test("Only the exit instruction of a stub counts as a hypercall exit")
    func exits() {
        #expect(HypercallPage.isExit(offsetInPage: 5))
        #expect(HypercallPage.isExit(offsetInPage: 17 * 32 + 5))
        #expect(HypercallPage.isExit(offsetInPage: 23 * 32 + 9))
        #expect(!HypercallPage.isExit(offsetInPage: 23 * 32 + 5))
        #expect(!HypercallPage.isExit(offsetInPage: 0))
        #expect(!HypercallPage.isExit(offsetInPage: 7))
        #expect(!HypercallPage.isExit(offsetInPage: 4096 + 5))
    }

    @Test("`int $0x82` at a stub's exit in kernel mode runs the hypercall and resumes after the `int`")
    func kernelModeHypercall() throws {
        let test = try TestDomain()
        try install(test)
        test.context.rip = Self.page + 17 * 32 + 7   // the gate saves the address after `int`
        test.context.rax = 17
        test.context.rdi = XenVersionCommand.version
        test.context.rcx = 0x1111
        test.context.r11 = 0x2222
        #expect(test.exception(vector: HypercallPage.vector, errorCode: 0, faultAddress: 0) == .resume)
        #expect(test.context.rax == 0x0004_0013)
        #expect(test.context.rip == Self.page + 17 * 32 + 7, "at the stub's ret")
        #expect(test.context.rcx == 0x1111 && test.context.r11 == 0x2222)
        #expect(test.vcpu.hypercallCounts[17] == 1)
    }

    @Test("Where ring-3 `int` raises #UD (PVM), the #UD at a stub's `int $0x82` is the hypercall")
    func hypercallThroughUD() throws {
        let test = try TestDomain()
        try install(test)
        test.context.rip = Self.page + 17 * 32 + 5
        test.context.rax = 17
        test.context.rdi = XenVersionCommand.version
        #expect(test.exception(vector: X86Exception.invalidOpcode, errorCode: 0, faultAddress: 0) == .resume)
        #expect(test.context.rax == 0x0004_0013)
        #expect(test.context.rip == Self.page + 17 * 32 + 7)
        #expect(test.vcpu.hypercallCounts[17] == 1)
    }

    @Test("Hypercall outcomes map onto exit outcomes")
    func outcomes() throws {
        let test = try TestDomain()
        try install(test)
        func stub(_ number: UInt64, _ argument: UInt64 = 0, _ second: UInt64 = 0) -> ExitOutcome {
            test.context.rip = Self.page + number * 32 + 7
            test.context.rax = number
            test.context.rdi = argument
            test.context.rsi = second
            return test.exception(vector: HypercallPage.vector, errorCode: 0, faultAddress: 0)
        }
        #expect(stub(Hypercall.schedOp.rawValue, SchedOp.yield) == .yield)
        #expect(stub(Hypercall.schedOp.rawValue, SchedOp.block) == .block)
        #expect(stub(Hypercall.platformOp.rawValue) == .resume)
        #expect(test.result == -38)
        try test.write(ShutdownReason.reboot.rawValue, at: TestDomain.buffer)
        #expect(stub(Hypercall.schedOp.rawValue, SchedOp.shutdown, TestDomain.buffer) == .stop)
    }

    @Test("The iret stub's exit runs iret")
    func iretThroughPage() throws {
        let test = try TestDomain()
        try install(test)
        test.context.rsp = TestDomain.va(16) - 0x100
        try test.write(IretContext(rax: 42, rip: 0xffff_ffff_8100_5000, cs: 0xe030, rflags: 0x202, rsp: 0xffff_ffff_8100_6000, ss: 0xe02b).encode(),
                       at: test.context.rsp)
        test.context.rip = Self.page + 23 * 32 + 11
        test.context.rax = 23
        #expect(test.exception(vector: HypercallPage.vector, errorCode: 0, faultAddress: 0) == .resume)
        #expect(test.context.rip == 0xffff_ffff_8100_5000)
        #expect(test.context.rax == 42)
        #expect(test.context.rsp == 0xffff_ffff_8100_6000)
    }

    @Test("From user mode, a stub's exit is a system call: it bounces to the syscall callback")
    func userModeStub() throws {
        let test = try TestDomain()
        try install(test)
        test.vcpu.callbacks[.syscall] = GuestCallback(address: 0xffff_ffff_8100_7000, masksEvents: true)
        try test.enterUserMode()
        test.vcpu.setUpcallMask(false)
        let exit = Self.page + 3 * 32 + 5
        test.context.rip = exit + 2
        test.context.rax = 3
        test.context.rflags = RFlags.fixed | RFlags.interrupt | RFlags.direction
        #expect(test.exception(vector: HypercallPage.vector, errorCode: 0, faultAddress: 0) == .resume)
        #expect(test.vcpu.mode == .kernel)
        #expect(test.context.rip == 0xffff_ffff_8100_7000)
        #expect(test.vcpu.upcallMask(), "the callback was registered with CALLBACKF_mask_events")
        #expect(test.context.rflags & RFlags.direction == 0, "DF cleared")
        let flags = RFlags.fixed | RFlags.interrupt | RFlags.direction
        #expect(try test.frame(words: 7) == [exit + 2, flags, exit + 2, 0xe033, flags, 0x7ffe_0000_1238, 0xe02b])
        #expect(test.vcpu.hypercallCounts[3] == 0, "no hypercall ran")
    }

    @Test("`int $0x82` outside the page or at a non-exit offset is not a hypercall: #GP as on Xen")
    func notAnExit() throws {
        let test = try TestDomain()
        try install(test)
        test.setTrap(13)
        test.context.rip = Self.page + 17 * 32 + 8
        test.context.rax = 17
        test.exception(vector: HypercallPage.vector, errorCode: 0, faultAddress: 0)
        #expect(test.deliveredGP)
        #expect(test.vcpu.hypercallCounts[17] == 0)
    }

    @Test("`syscall` from kernel mode is a hypercall, returning to rcx with r11's flags")
    func syscallFromKernel() throws {
        let test = try TestDomain()
        test.context.rax = Hypercall.xenVersion.rawValue
        test.context.rdi = XenVersionCommand.pagesize
        let outcome = Traps.syscall(test.vcpu, &test.context, returnAddress: 0xffff_ffff_8100_0102, flags: RFlags.interrupt | RFlags.carry)
        #expect(outcome == .resume)
        #expect(test.context.rax == 4096)
        #expect(test.context.rip == 0xffff_ffff_8100_0102)
        #expect(test.context.rflags == RFlags.fixed | RFlags.interrupt | RFlags.carry)
    }

    @Test("`syscall` from user mode bounces to the syscall callback; without one it is a #UD")
    func syscallFromUser() throws {
        let test = try TestDomain()
        test.vcpu.callbacks[.syscall] = GuestCallback(address: 0xffff_ffff_8100_7000, masksEvents: false)
        try test.enterUserMode()
        #expect(Traps.syscall(test.vcpu, &test.context, returnAddress: 0x40_2000, flags: 0x246) == .resume)
        #expect(test.context.rip == 0xffff_ffff_8100_7000)
        #expect(try test.frame(words: 7) == [0x40_2000, 0x246, 0x40_2000, 0x1_0000_e033, 0x246 & ~RFlags.interrupt, 0x7ffe_0000_1238, 0xe02b])

        let bare = try TestDomain()
        bare.setTrap(6)
        try bare.enterUserMode()
        #expect(Traps.syscall(bare.vcpu, &bare.context, returnAddress: 0x40_2000, flags: 0x246) == .resume)
        #expect(bare.context.rip == TestDomain.handler + 6 * 0x10)
        let crashing = try TestDomain()
        try crashing.enterUserMode()
        #expect(Traps.syscall(crashing.vcpu, &crashing.context, returnAddress: 0x40_2000, flags: 0x246) == .stop)
        #expect(crashing.isCrashed)
    }
}
