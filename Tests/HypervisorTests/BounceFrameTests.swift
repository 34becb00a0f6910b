// Bounce frames and exception delivery (Traps/Traps.swift, Traps/Exceptions.swift), as
// Xen's create_bounce_frame builds them (pv-boot-notes.md §3).

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

extension TestDomain {
    static let handler: UInt64 = 0xffff_ffff_8100_0800

    /// Installs a trap-table entry for `vector` pointing at `handler + vector * 0x10`.
    func setTrap(_ vector: UInt8, flags: UInt8 = 0) {
        vcpu.trapTable[Int(vector)] = TrapInfo(vector: vector, flags: flags, cs: 0xe033, address: Self.handler + UInt64(vector) * 0x10)
    }

    /// The words of the bounce frame at the current rsp.
    func frame(words: Int) throws -> [UInt64] {
        let bytes = try read(context.rsp, count: words * 8)
        return (0..<words).map { le(UInt64.self, bytes, at: $0 * 8) }
    }

    /// Puts vCPU 0 in guest user mode with a user L4 (frame 400, which shares the kernel's
    /// L3, so code and data stay reachable at the same addresses), user registers, and a
    /// kernel stack of `kernelSP`.
    func enterUserMode(kernelSP: UInt64 = TestDomain.va(16) - 0x40) throws {
        try memory.write(entry(Self.l3Frame.rawValue, Self.tableFlags), at: Self.entryAddress(FrameNumber(400), 511))
        let (result, _) = try mmuext([MMUExtOp(cmd: MMUExtCommand.newUserBaseptr, arg1: 400)])
        try #require(result == 0)
        vcpu.kernelSP = kernelSP
        context.gsBase = 0xffff_8880_0000_4000
        vcpu.inactiveGSBase = 0x7f00_0000_8000
        Traps.toggleMode(vcpu, &context)
        context.cs = 0x33
        context.ss = 0x2b
        context.rip = 0x40_1234
        context.rsp = 0x7ffe_0000_1238
    }
}

@Suite("Bounce frames")
struct BounceFrameTests {
    @Test("Kernel mode, #PF: frame on the current stack aligned to 16; CS with RPL 0 and the saved mask; cr2 set")
    func kernelPageFault() throws {
        let test = try TestDomain()
        test.setTrap(14)
        test.vcpu.setUpcallMask(false)
        let rsp = TestDomain.va(16) - 0x108
        test.context.rsp = rsp
        test.context.rip = 0xffff_ffff_8100_1234
        test.context.rcx = 0xcccc
        test.context.r11 = 0x1111
        test.context.rflags = RFlags.fixed | RFlags.interrupt | RFlags.carry | RFlags.trap | RFlags.nestedTask | RFlags.alignmentCheck
        let outcome = test.exception(vector: 14, errorCode: 0x6, faultAddress: 0xdead_b000)
        #expect(outcome == .resume)
        let aligned = rsp & ~0xf
        #expect(test.context.rsp == aligned - 64)
        #expect(try test.frame(words: 8) == [
            0xcccc, 0x1111,
            0x2,                                   // error code, U bit cleared: the kernel faulted
            0xffff_ffff_8100_1234,
            0xe030,                                // CS with RPL 0, upcall mask 0 in bits 32–39
            RFlags.fixed | RFlags.interrupt | RFlags.carry | RFlags.trap | RFlags.nestedTask | RFlags.alignmentCheck,
            rsp, 0xe02b,
        ])
        #expect(test.context.rip == TestDomain.handler + 14 * 0x10)
        #expect(test.context.cs == 0xe033 && test.context.ss == 0xe02b)
        #expect(test.context.rflags == RFlags.fixed | RFlags.interrupt | RFlags.carry, "TF, NT, AC cleared on entry")
        #expect(try test.memory.read(UInt64.self, at: test.vcpuInfoField(VCPUInfoLayout.cr2)) == 0xdead_b000)
        #expect(!test.vcpu.upcallMask(), "a trap gate without the mask flag leaves events on")
        #expect(test.vcpu.mode == .kernel)
    }

    @Test("The saved upcall mask goes to CS bits 32–39 and clears IF in the saved flags; virtual IOPL is shown")
    func savedMask() throws {
        let test = try TestDomain()
        test.setTrap(3, flags: 4)     // an "interrupt gate": masks events
        test.vcpu.virtualIOPL = 1
        #expect(test.vcpu.upcallMask())
        test.context.rflags = RFlags.fixed | RFlags.interrupt
        let rsp = test.context.rsp
        test.exception(vector: 3, errorCode: 0, faultAddress: 0)
        #expect(try test.frame(words: 7) == [0, 0, TestDomain.va(8), 0x1_0000_e030, RFlags.fixed | 1 << 12, rsp, 0xe02b])
        #expect(test.vcpu.upcallMask())
        test.vcpu.setUpcallMask(false)
        test.context.rsp = rsp
        test.exception(vector: 3, errorCode: 0, faultAddress: 0)
        #expect(Array(try test.frame(words: 7)[3...4]) == [0xe030, RFlags.fixed | RFlags.interrupt | 1 << 12])
        #expect(test.vcpu.upcallMask(), "the mask flag of the trap entry masks events on entry")
    }

    @Test("Error codes are pushed exactly for vectors 8, 10–14, 17 and 21", arguments: Array(UInt8(0)...21))
    func errorCodes(vector: UInt8) throws {
        let test = try TestDomain()
        test.setTrap(vector)
        let rsp = test.context.rsp
        #expect(Traps.inject(test.vcpu, &test.context, vector: vector,
                             errorCode: X86Exception.hasErrorCode(vector) ? 0x18 : nil, faultAddress: nil))
        let words = X86Exception.hasErrorCode(vector) ? 8 : 7
        #expect(test.context.rsp == rsp - UInt64(words * 8))
        let frame = try test.frame(words: words)
        #expect(frame[words - 5] == TestDomain.va(8), "rip follows the error code, if any")
        if words == 8 { #expect(frame[2] == 0x18) }
        #expect([8, 10, 11, 12, 13, 14, 17, 21].contains(vector) == X86Exception.hasErrorCode(vector))
    }

    @Test("From user mode: switch to kernel mode and the stack_switch stack; the user CS is kept; #PF gets the U bit")
    func fromUserMode() throws {
        let test = try TestDomain()
        test.setTrap(14)
        try test.enterUserMode(kernelSP: TestDomain.va(16) - 0x48)
        test.context.rflags = RFlags.fixed | RFlags.interrupt
        let outcome = test.exception(vector: 14, errorCode: 0x4, faultAddress: 0x1000)
        #expect(outcome == .resume)
        #expect(test.vcpu.mode == .kernel)
        #expect(test.vcpu.activeTable == TestDomain.l4Frame)
        #expect(test.context.gsBase == 0xffff_8880_0000_4000 && test.vcpu.inactiveGSBase == 0x7f00_0000_8000, "GS swapped back")
        let top = (TestDomain.va(16) - 0x48) & ~0xf
        #expect(test.context.rsp == top - 64)
        #expect(try test.frame(words: 8) == [0, 0, 0x4, 0x40_1234, 0x1_0000_0033, RFlags.fixed, 0x7ffe_0000_1238, 0x2b])
        #expect(test.context.cs == 0xe033 && test.context.ss == 0xe02b)
        #expect(test.context.rip == TestDomain.handler + 14 * 0x10)
    }

    @Test("A user-mode #PF's error code always has U set; a kernel one never")
    func pageFaultUserBit() throws {
        let test = try TestDomain()
        test.setTrap(14)
        try test.enterUserMode()
        test.exception(vector: 14, errorCode: 0x2, faultAddress: 0x1000)
        #expect(try test.frame(words: 8)[2] == 0x6)
    }

    @Test("A vector with no handler crashes the domain", arguments: [UInt8(0), 3, 6, 13, 14, 19])
    func noHandler(vector: UInt8) throws {
        let test = try TestDomain()
        let before = test.context
        try test.placeCode([0x0f, 0x0b, 0, 0, 0, 0, 0, 0])    // not forced-emulation CPUID
        let outcome = test.exception(vector: vector,
                                      errorCode: vector == 13 ? 0x10 : 0, faultAddress: 0x1000)
        #expect(outcome == .stop)
        #expect(test.isCrashed)
        if case let .crashed(reason) = test.lifecycle {
            #expect(reason.contains(X86Exception.mnemonic(vector)) && reason.contains("no handler"))
        }
        #expect(test.context.rsp == before.rsp)
    }

    @Test("NMI, #DF and #MC crash the domain", arguments: [X86Exception.nmi, X86Exception.doubleFault, X86Exception.machineCheck])
    func fatal(vector: UInt8) throws {
        let test = try TestDomain()
        test.setTrap(vector)
        #expect(test.exception(vector: vector, errorCode: 0, faultAddress: 0) == .stop)
        #expect(test.isCrashed)
    }

    @Test("A kernel stack that is unmapped, read-only or non-canonical crashes the domain instead of faulting the host", arguments: [
        TestDomain.unmapped + 0x40, TestDomain.va(TestDomain.l1Frame.rawValue) + 0x100, 0x0000_8000_0000_0020, 0x20,
        HypervisorVirtualLayout.hypervisorVirtStart + 0x100,
    ])
    func badStack(rsp: UInt64) throws {
        let test = try TestDomain()
        test.setTrap(3)
        test.context.rsp = rsp
        #expect(test.exception(vector: 3, errorCode: 0, faultAddress: 0) == .stop)
        #expect(test.isCrashed)
    }

    @Test("From user mode with no kernel stack registered, the domain crashes")
    func noKernelStack() throws {
        let test = try TestDomain()
        test.setTrap(3)
        try test.enterUserMode(kernelSP: 0)
        #expect(test.exception(vector: 3, errorCode: 0, faultAddress: 0) == .stop)
        #expect(test.isCrashed)
    }

    @Test("#NM is reflected only while the virtual CR0.TS is set, and clears it")
    func deviceNotAvailable() throws {
        let test = try TestDomain()
        test.setTrap(7)
        let before = test.context
        #expect(test.exception(vector: 7, errorCode: 0, faultAddress: 0) == .resume)
        #expect(test.context == before)
        test.vcpu.virtualTS = true
        #expect(test.exception(vector: 7, errorCode: 0, faultAddress: 0) == .resume)
        #expect(!test.vcpu.virtualTS)
        #expect(test.context.rip == TestDomain.handler + 7 * 0x10)
    }

    @Test("`int $0x80` (#GP with an IDT error code) reaches a DPL-3 trap entry as vector 0x80, after the instruction")
    func softwareInterrupt() throws {
        let test = try TestDomain()
        test.setTrap(0x80, flags: 3)
        try test.enterUserMode()
        let outcome = test.exception(vector: 13, errorCode: 0x80 << 3 | 2, faultAddress: 0)
        #expect(outcome == .resume)
        #expect(test.context.rip == TestDomain.handler + 0x80 * 0x10)
        #expect(try test.frame(words: 7) == [0, 0, 0x40_1236, 0x1_0000_0033, RFlags.fixed, 0x7ffe_0000_1238, 0x2b],
                "no error code, rip past the 2-byte int")
    }

    @Test("`int n` to a DPL-0 entry is a #GP with the IDT error code")
    func softwareInterruptRefused() throws {
        let test = try TestDomain()
        test.setTrap(0x80, flags: 0)
        test.setTrap(13)
        try test.enterUserMode()
        test.exception(vector: 13, errorCode: 0x80 << 3 | 2, faultAddress: 0)
        #expect(test.context.rip == TestDomain.handler + 13 * 0x10)
        #expect(Array(try test.frame(words: 8)[2...3]) == [0x402, 0x40_1234])
    }
}

@Suite("Event upcalls")
struct EventUpcallTests {
    func setUp() throws -> TestDomain {
        let test = try TestDomain()
        test.vcpu.callbacks[.event] = GuestCallback(address: 0xffff_ffff_8100_2000, masksEvents: false)
        return test
    }

    @Test("A pending, unmasked upcall is delivered to the event callback with events masked")
    func delivered() throws {
        let test = try setUp()
        test.vcpu.setUpcallMask(false)
        try test.memory.write(UInt8(1), at: test.vcpuInfoField(VCPUInfoLayout.upcallPending))
        let rsp = test.context.rsp
        #expect(Traps.deliverPendingEvents(test.vcpu, &test.context))
        #expect(test.context.rip == 0xffff_ffff_8100_2000)
        #expect(test.vcpu.upcallMask(), "the event callback always runs with events masked")
        #expect(try test.frame(words: 7) == [0, 0, TestDomain.va(8), 0xe030, RFlags.fixed | RFlags.interrupt, rsp, 0xe02b])
        #expect(test.vcpu.upcallPending(), "the guest clears upcall_pending itself")
    }

    @Test("Nothing is delivered when masked, not pending, or without a callback")
    func notDelivered() throws {
        let test = try setUp()
        let before = test.context
        try test.memory.write(UInt8(1), at: test.vcpuInfoField(VCPUInfoLayout.upcallPending))
        #expect(!Traps.deliverPendingEvents(test.vcpu, &test.context), "masked")
        test.vcpu.setUpcallMask(false)
        try test.memory.write(UInt8(0), at: test.vcpuInfoField(VCPUInfoLayout.upcallPending))
        #expect(!Traps.deliverPendingEvents(test.vcpu, &test.context), "not pending")
        try test.memory.write(UInt8(1), at: test.vcpuInfoField(VCPUInfoLayout.upcallPending))
        test.vcpu.callbacks[.event] = nil
        #expect(!Traps.deliverPendingEvents(test.vcpu, &test.context), "no callback")
        #expect(test.context == before)
    }

    @Test("An event sent on a bound port, then unmasked by iret, is delivered")
    func endToEnd() throws {
        let test = try setUp()
        let events = EventChannelClient(test: test)
        let port = try events.bindIPI()
        #expect(try events.send(port) == 0)
        #expect(!Traps.deliverPendingEvents(test.vcpu, &test.context), "still masked")
        // iret with IF set unmasks.
        test.context.rsp = TestDomain.va(16) - 0x100
        try test.write(IretContext(rip: 0xffff_ffff_8100_3000, cs: 0xe030, rflags: 0x202, rsp: TestDomain.va(16) - 0x80, ss: 0xe02b).encode(),
                       at: test.context.rsp)
        test.call(.iret)
        #expect(Traps.deliverPendingEvents(test.vcpu, &test.context))
        #expect(test.context.rip == 0xffff_ffff_8100_2000)
        #expect(try test.frame(words: 7)[2] == 0xffff_ffff_8100_3000)
    }

    @Test("From user mode the upcall switches to kernel mode")
    func fromUser() throws {
        let test = try setUp()
        try test.enterUserMode()
        test.vcpu.setUpcallMask(false)
        try test.memory.write(UInt8(1), at: test.vcpuInfoField(VCPUInfoLayout.upcallPending))
        #expect(Traps.deliverPendingEvents(test.vcpu, &test.context))
        #expect(test.vcpu.mode == .kernel)
        #expect(try test.frame(words: 7)[3] == 0x33)
    }
}
