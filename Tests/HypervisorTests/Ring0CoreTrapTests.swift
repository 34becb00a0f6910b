// The in-VM ring-0 core's bounces (Sources/Ring0Core/FastTraps.swift) against the
// host's (Traps.exception, Traps.syscall, Traps.deliverPendingEvents): page faults and
// user-mode system calls bounced to the guest kernel, and the event upcall after
// xen_version. What the core completes must leave the registers, the frame on the
// guest's stack, vcpu_info and the vCPU's mode exactly as the host leaves them in a
// twin domain; what it defers must leave everything untouched.

import CGuestAtomics
import GuestMemory
import Ring0Core
import Testing
import XenABI

@testable import Hypervisor

/// vcpu_info in RAM (frame 100), as Linux registers it; the #GP fast-path flag's byte.
private let info = GuestPhysicalAddress(100 * 4096 + 64)
private let fastIOFlag = GuestPhysicalAddress(100 * 4096 + 2048)

/// How a test sets both domains up.
private struct Setup {
    var user = false
    var pageFaultFlags: UInt8 = 4          // an interrupt gate, as Linux's: masks events
    var pageFaultHandler = true
    var syscallMasks = true
    var syscallCallback = true
    var eventCallback = true
    var pending: UInt8 = 0
    var masked: UInt8 = 0
    var iopl: UInt8 = 1
    var rsp: UInt64 = TestDomain.va(16) - 0x108
    var kernelSP: UInt64 = TestDomain.va(16) - 0x48
}

private func prepare(_ test: TestDomain, _ setup: Setup) throws {
    if setup.pageFaultHandler { test.setTrap(14, flags: setup.pageFaultFlags) }
    if setup.syscallCallback {
        test.vcpu.callbacks[.syscall] = GuestCallback(address: 0xffff_ffff_8100_3000, masksEvents: setup.syscallMasks)
    }
    if setup.eventCallback { test.vcpu.callbacks[.event] = GuestCallback(address: 0xffff_ffff_8100_4000, masksEvents: true) }
    test.vcpu.vcpuInfoAddress = info
    try test.memory.write(setup.pending, at: info)
    try test.memory.write(setup.masked, at: GuestPhysicalAddress(info.rawValue + 1))
    test.vcpu.virtualIOPL = setup.iopl
    test.context.rsp = setup.rsp
    test.context.rip = 0xffff_ffff_8100_1234
    test.context.rcx = 0xcccc
    test.context.r11 = 0x1111
    test.context.rax = 0xaaaa
    test.context.rflags = RFlags.fixed | RFlags.interrupt | RFlags.carry | RFlags.trap | RFlags.direction
    if setup.user {
        try test.enterUserMode(kernelSP: setup.kernelSP)
        test.context.rflags = RFlags.fixed | RFlags.interrupt | RFlags.zero | RFlags.direction
    }
}

extension CoreHarness {
    /// Loads `context` into the saved registers and frame, as ring0/entry.S leaves them.
    func load(_ context: GuestContext) {
        setRegister(CoreLayout.savedRAX, context.rax); setRegister(CoreLayout.savedRBX, context.rbx)
        setRegister(CoreLayout.savedRCX, context.rcx); setRegister(CoreLayout.savedRDX, context.rdx)
        setRegister(CoreLayout.savedRSI, context.rsi); setRegister(CoreLayout.savedRDI, context.rdi)
        setRegister(CoreLayout.savedRBP, context.rbp); setRegister(CoreLayout.savedR8, context.r8)
        setRegister(CoreLayout.savedR9, context.r9); setRegister(CoreLayout.savedR10, context.r10)
        setRegister(CoreLayout.savedR11, context.r11); setRegister(CoreLayout.savedR12, context.r12)
        setRegister(CoreLayout.savedR13, context.r13); setRegister(CoreLayout.savedR14, context.r14)
        setRegister(CoreLayout.savedR15, context.r15)
        setRegister(CoreLayout.savedRIP, context.rip); setRegister(CoreLayout.savedCS, UInt64(context.cs))
        setRegister(CoreLayout.savedRFlags, context.rflags); setRegister(CoreLayout.savedRSP, context.rsp)
        setRegister(CoreLayout.savedSS, UInt64(context.ss))
    }

    /// Enters the core through `entry` (with the current registers), as entry.S does.
    func enter(_ entry: UInt64, cr2: UInt64 = 0, errorCode: UInt64 = 0) throws -> Bool {
        test.vcpu.setCoreWord(CoreLayout.vcpuTrapErrorCode, errorCode)
        let block = try #require(UnsafeMutableRawPointer(bitPattern: UInt(try hostAddress(test.layout.coreVCPUBlock(0)))))
        let cr3 = try #require(test.vcpu.activeTable).rawValue << 12
        return Core.enter(registers: registers, vcpuBlock: block, cr3: cr3, entry: entry, cr2: cr2) == CoreLayout.resultHandled
    }
}

/// What a bounce may change: the registers the guest resumes with, the kernel stack,
/// vcpu_info, the mode, the GS bases and the page tables in use.
private struct TrapState: Equatable {
    var rip: UInt64, cs: UInt64, rflags: UInt64, rsp: UInt64, ss: UInt64
    var rax: UInt64, rcx: UInt64, r11: UInt64
    var stack: [UInt8]
    var pending: UInt8, mask: UInt8, cr2: UInt64
    var mode: GuestMode
    var gsBase: UInt64, inactiveGSBase: UInt64
    var activeTable: FrameNumber?
    var fastIO: UInt8?

    /// The host's state after its handling.
    init(host test: TestDomain) throws {
        let context = test.context
        rip = context.rip; cs = UInt64(context.cs | 3); rsp = context.rsp; ss = UInt64(context.ss | 3)
        rflags = (context.rflags & ~RFlags.iopl) | RFlags.interrupt | RFlags.fixed   // as the runner resumes
        rax = context.rax; rcx = context.rcx; r11 = context.r11
        (stack, pending, mask, cr2) = try Self.memory(test)
        mode = test.vcpu.mode
        gsBase = context.gsBase
        inactiveGSBase = test.vcpu.inactiveGSBase
        activeTable = test.vcpu.activeTable
        fastIO = nil
    }

    /// The core's state after its handling, with entry.S's requests carried out.
    init(core harness: CoreHarness, gsBase before: UInt64, tableBefore: FrameNumber?) throws {
        rip = harness.register(CoreLayout.savedRIP); cs = harness.register(CoreLayout.savedCS)
        rflags = harness.register(CoreLayout.savedRFlags); rsp = harness.register(CoreLayout.savedRSP)
        ss = harness.register(CoreLayout.savedSS)
        rax = harness.register(CoreLayout.savedRAX); rcx = harness.register(CoreLayout.savedRCX)
        r11 = harness.register(CoreLayout.savedR11)
        (stack, pending, mask, cr2) = try Self.memory(harness.test)
        mode = harness.test.vcpu.mode
        gsBase = before
        inactiveGSBase = harness.test.vcpu.inactiveGSBase
        if try harness.request(CoreLayout.vcpuRequestSwapGS) != 0 { swap(&gsBase, &inactiveGSBase) }
        let cr3 = try harness.request(CoreLayout.vcpuRequestCR3)
        activeTable = cr3 != 0 ? FrameNumber(cr3 >> 12) : tableBefore
        fastIO = nil
    }

    static func memory(_ test: TestDomain) throws -> ([UInt8], UInt8, UInt8, UInt64) {
        (try test.memory.readBytes(at: GuestPhysicalAddress(14 * 4096), count: 8192),
         try test.memory.read(at: info), try test.memory.read(at: GuestPhysicalAddress(info.rawValue + 1)),
         try test.memory.read(at: GuestPhysicalAddress(info.rawValue + UInt64(VCPUInfoLayout.cr2))))
    }
}

/// Runs `host` on a reference domain and the core (through `entry`) on a twin, both set
/// up by `setup`; compares when the core completes, checks nothing changed when it
/// defers. Returns whether the core completed it.
private func compare(_ setup: Setup, entry: UInt64, cr2: UInt64 = 0, errorCode: UInt64 = 0,
                     adjust: (TestDomain) throws -> Void = { _ in },
                     host: (TestDomain) -> Void, sourceLocation: SourceLocation = #_sourceLocation) throws -> Bool {
    let reference = try TestDomain()
    let harness = try CoreHarness()
    try prepare(reference, setup)
    try prepare(harness.test, setup)
    try adjust(reference)
    try adjust(harness.test)
    harness.test.vcpu.setCoreWord(CoreLayout.vcpuFastIOFlag, try harness.hostAddress(fastIOFlag))
    try harness.test.memory.write(UInt8(0xee), at: fastIOFlag)
    harness.load(harness.test.context)
    let gsBefore = harness.test.context.gsBase
    let tableBefore = harness.test.vcpu.activeTable
    let before = try TrapState(core: harness, gsBase: gsBefore, tableBefore: tableBefore)

    let completed = try harness.enter(entry, cr2: cr2, errorCode: errorCode)
    host(reference)
    Traps.deliverPendingEvents(reference.vcpu, &reference.context)   // as the runner does before resuming
    var core = try TrapState(core: harness, gsBase: gsBefore, tableBefore: tableBefore)
    guard completed else {
        #expect(core == before, "a deferral changes nothing", sourceLocation: sourceLocation)
        #expect(try harness.test.memory.read(UInt8.self, at: fastIOFlag) == 0xee, sourceLocation: sourceLocation)
        return false
    }
    #expect(!reference.isCrashed, sourceLocation: sourceLocation)
    let expected = try TrapState(host: reference)
    #expect(core.stack == expected.stack, "the bounce frame", sourceLocation: sourceLocation)
    core.stack = expected.stack
    #expect(core == expected, sourceLocation: sourceLocation)
    if setup.user {
        let flag = try harness.test.memory.read(UInt8.self, at: fastIOFlag)
        #expect(flag == (setup.iopl >= 1 ? 1 : 0), "Xen's iopl_ok for kernel mode", sourceLocation: sourceLocation)
    }
    return true
}

@Suite("The in-VM ring-0 core: bounces to the guest kernel")
struct Ring0CoreTrapTests {
    static func pageFault(errorCode: UInt64, address: UInt64) -> (TestDomain) -> Void {
        { test in test.exception(vector: 14, errorCode: errorCode, faultAddress: address) }
    }

    @Test("A user-mode page fault is bounced as the host bounces it", arguments: [UInt64(4), 6, 7, 0x14, 0x15])
    func userPageFault(errorCode: UInt64) throws {
        for masked: UInt8 in [0, 1] {
            #expect(try compare(Setup(user: true, masked: masked), entry: CoreLayout.entryPageFault, cr2: 0x7f00_1234_5000,
                                errorCode: errorCode, host: Self.pageFault(errorCode: errorCode, address: 0x7f00_1234_5000)))
        }
        // A handler that leaves events on, with none pending; and the virtual IOPL of ring 3.
        #expect(try compare(Setup(user: true, pageFaultFlags: 0, iopl: 3), entry: CoreLayout.entryPageFault, cr2: 0x1000,
                            errorCode: errorCode, host: Self.pageFault(errorCode: errorCode, address: 0x1000)))
    }

    @Test("A kernel-mode page fault is bounced on the current stack, unless the host may have to emulate it")
    func kernelPageFault() throws {
        for errorCode: UInt64 in [0, 4, 6, 0x14] {
            #expect(try compare(Setup(), entry: CoreLayout.entryPageFault, cr2: 0x7f00_0000_1000, errorCode: errorCode,
                                host: Self.pageFault(errorCode: errorCode, address: 0x7f00_0000_1000)))
        }
        // An unaligned stack is aligned down to 16 bytes first.
        #expect(try compare(Setup(rsp: TestDomain.va(16) - 0x10b), entry: CoreLayout.entryPageFault, cr2: 0x1000, errorCode: 4,
                            host: Self.pageFault(errorCode: 4, address: 0x1000)))
        // A write to a present page from kernel mode may be a page-table write.
        for errorCode: UInt64 in [3, 7] {
            #expect(try !compare(Setup(), entry: CoreLayout.entryPageFault, cr2: TestDomain.va(4), errorCode: errorCode,
                                 host: { _ in }))
        }
    }

    @Test("A frame that crosses a page boundary is written to both pages")
    func frameAcrossPages() throws {
        // 0x20 below the page: the 64-byte frame spans frames 14 and 15.
        #expect(try compare(Setup(rsp: TestDomain.va(15) + 0x20), entry: CoreLayout.entryPageFault, cr2: 0x1000, errorCode: 4,
                            adjust: { test in
                                // Mark the two stack pages so the comparison sees both halves.
                                try test.memory.writeBytes([UInt8](repeating: 0x5a, count: 4096), at: GuestPhysicalAddress(14 * 4096))
                            },
                            host: Self.pageFault(errorCode: 4, address: 0x1000)))
    }

    @Test("The kick page, the hypervisor's addresses, a missing handler or kernel stack, an unwritable stack, and an event left pending go to the host untouched")
    func deferrals() throws {
        let nothing: (TestDomain) -> Void = { _ in }
        // The kick page and faults at the stubs are in the hypervisor's range.
        #expect(try !compare(Setup(user: true), entry: CoreLayout.entryPageFault, cr2: 0xffff_8080_0000_0f00, errorCode: 0x15, host: nothing))
        #expect(try !compare(Setup(user: true), entry: CoreLayout.entryPageFault, cr2: 0x1000, errorCode: 0x15,
                             adjust: { $0.context.rip = 0xffff_8080_0000_0800 }, host: nothing))
        #expect(try !compare(Setup(user: true, pageFaultHandler: false), entry: CoreLayout.entryPageFault, cr2: 0x1000, errorCode: 4, host: nothing))
        // The kernel stack is not mapped (stack_switch never called), or read-only.
        #expect(try !compare(Setup(user: true, kernelSP: 0), entry: CoreLayout.entryPageFault, cr2: 0x1000, errorCode: 4, host: nothing))
        #expect(try !compare(Setup(user: true, kernelSP: TestDomain.unmapped + 0x800), entry: CoreLayout.entryPageFault, cr2: 0x1000,
                             errorCode: 4, host: nothing))
        #expect(try !compare(Setup(rsp: TestDomain.va(5) + 0x800), entry: CoreLayout.entryPageFault, cr2: 0x1000, errorCode: 4, host: nothing))
        // A handler that leaves events on while one is pending: the host delivers both.
        #expect(try !compare(Setup(user: true, pageFaultFlags: 0, pending: 1), entry: CoreLayout.entryPageFault, cr2: 0x1000,
                             errorCode: 4, host: nothing))
        // vcpu_info outside RAM (still in shared_info): the host's.
        #expect(try !compare(Setup(user: true), entry: CoreLayout.entryPageFault, cr2: 0x1000, errorCode: 4,
                             adjust: { $0.vcpu.vcpuInfoAddress = $0.sharedInfoField(SharedInfoLayout.vcpuInfo(0)) }, host: nothing))
        // The core disabled (tracing).
        #expect(try !compare(Setup(user: true), entry: CoreLayout.entryPageFault, cr2: 0x1000, errorCode: 4,
                             adjust: { $0.domain.setCoreEnabled(false) }, host: nothing))
    }

    @Test("A system call from guest user mode goes to the syscall callback as the host sends it")
    func userSyscall() throws {
        for masks in [true, false] {
            for masked: UInt8 in [0, 1] {
                #expect(try compare(Setup(user: true, syscallMasks: masks, masked: masked), entry: CoreLayout.entrySyscall,
                                    adjust: { test in
                                        // entry.S's frame: rip from rcx, flags from r11, the flat selectors.
                                        test.context.rcx = test.context.rip
                                        test.context.r11 = 0x10_0a47   // DF, AC and RF set
                                        test.context.cs = FlatSelector.userCS64
                                        test.context.ss = FlatSelector.userSS64
                                        test.context.rflags = 0x202
                                    },
                                    host: { test in
                                        _ = Traps.syscall(test.vcpu, &test.context, returnAddress: test.context.rcx, flags: test.context.r11)
                                    }))
            }
        }
        // No callback: the host raises #UD.
        #expect(try !compare(Setup(user: true, syscallCallback: false), entry: CoreLayout.entrySyscall, host: { _ in }))
    }

    @Test("xen_version with an event pending and unmasked delivers the upcall as the host does")
    func eventUpcall() throws {
        let version: (TestDomain) -> Void = { test in test.call(.xenVersion, 0, 0) }
        let prepareCall: (TestDomain) throws -> Void = { test in
            test.context.rax = Hypercall.xenVersion.rawValue
            test.context.rdi = 0
        }
        #expect(try compare(Setup(pending: 1, masked: 0), entry: CoreLayout.entrySyscall, adjust: prepareCall, host: version))
        #expect(try compare(Setup(pending: 1, masked: 1), entry: CoreLayout.entrySyscall, adjust: prepareCall, host: version))
        #expect(try compare(Setup(pending: 0, masked: 0), entry: CoreLayout.entrySyscall, adjust: prepareCall, host: version))
        // No event callback: nothing to deliver to, as on the host.
        #expect(try compare(Setup(eventCallback: false, pending: 1), entry: CoreLayout.entrySyscall, adjust: prepareCall, host: version))
        // A stack the core cannot write: the host's (it crashes the domain).
        #expect(try !compare(Setup(pending: 1, rsp: TestDomain.va(5) + 0x800), entry: CoreLayout.entrySyscall,
                             adjust: prepareCall, host: { _ in }))
    }

    @Test("The core counts what it delivered, and the host publishes the handlers it needs")
    func countersAndPublishing() throws {
        let harness = try CoreHarness()
        let test = harness.test
        try prepare(test, Setup(user: true))
        #expect(test.vcpu.coreWord(CoreLayout.vcpuPageFaultHandler) == TestDomain.handler + 14 * 0x10)
        #expect(test.vcpu.coreWord(CoreLayout.vcpuPageFaultFlags) == 1)
        #expect(test.vcpu.coreWord(CoreLayout.vcpuSyscallCallback) == 0xffff_ffff_8100_3000)
        #expect(test.vcpu.coreWord(CoreLayout.vcpuEventCallback) == 0xffff_ffff_8100_4000)
        harness.test.vcpu.setCoreWord(CoreLayout.vcpuFastIOFlag, try harness.hostAddress(fastIOFlag))
        harness.load(test.context)
        #expect(try harness.enter(CoreLayout.entryPageFault, cr2: 0x1000, errorCode: 4))
        #expect(test.domain.coreDeliveredCounts() == ["#PF": 1])
        // set_trap_table with a null list clears the table, and the core's copy.
        test.call(.setTrapTable, 0)
        #expect(test.vcpu.coreWord(CoreLayout.vcpuPageFaultHandler) == 0)
    }
}

@Suite("The in-VM ring-0 core: page-table writes")
struct Ring0CorePTWriteTests {
    /// One random write fault: the instruction bytes, the register values it uses, and
    /// the address it writes (mostly entries of the fixture's L1, mapped read-only at
    /// va(4); some elsewhere).
    static func randomWrite(_ random: inout SplitMix) -> (code: [UInt8], registers: [Int: UInt64], address: UInt64) {
        func below(_ bound: UInt64) -> UInt64 { random.next() % bound }
        func chance(_ percent: UInt64) -> Bool { below(100) < percent }
        // Entries of frames the test itself needs (tables, code, stack) stay as they are.
        let pfn = chance(85) ? 180 + below(90) : [100, 200, 255, 300][Int(below(4))]
        var address = TestDomain.l1EntryVA(mapping: pfn)
        if chance(8) { address = TestDomain.va([1, 2, 3][Int(below(3))]) + below(512) * 8 }   // an L2–L4: the host's
        var flags = chance(85) ? PTE.present : 0
        for bit in [PTE.rw, PTE.user, PTE.accessed, PTE.dirty, PTE.global, PTE.nx] where chance(45) { flags |= bit }
        if chance(4) { flags |= [PTE.pse, 1 << 62, 1 << 9][Int(below(3))] }
        let target = chance(85) ? 180 + below(90) : [1, 2, 4, 5, 200, TestDomain.ramFrames + 3][Int(below(6))]
        var value = entry(target, flags)
        if chance(3) { value = random.next() }
        let lock: [UInt8] = chance(50) ? [0xf0] : []
        switch below(7) {
        case 0, 1:   // xchg %rdx,(%rax) / xchg %rbx,(%rdx) / xchg %rsi,0(%rbp) / xchg %r9,(%rax)
            switch below(4) {
            case 0: return (lock + [0x48, 0x87, 0x10], [0: address, 2: value], address)
            case 1: return ([0x48, 0x87, 0x1a], [2: address, 3: value], address)
            case 2: return ([0x48, 0x87, 0x75, 0x00], [5: address, 6: value], address)
            default: return ([0x4c, 0x87, 0x08], [0: address, 9: value], address)
            }
        case 2:      // mov %rdx,(%rax), or a misaligned one (the host's)
            let misaligned = chance(10) ? UInt64(4) : 0
            return ([0x48, 0x89, 0x10], [0: address + misaligned, 2: value], address + misaligned)
        case 3, 4:   // lock andb $imm,(%r12) / andb $imm,disp8(%rax), on any byte of the entry
            let byte = below(8)
            let immediate = UInt8(truncatingIfNeeded: chance(70) ? ~(UInt64(1) << below(8)) : random.next())
            if chance(50) { return (lock + [0x41, 0x80, 0x24, 0x24, immediate], [12: address + byte], address + byte) }
            return (lock + [0x80, 0x60, UInt8(byte), immediate], [0: address], address + byte)
        case 5:      // lock orb $imm,(%rax)
            let byte = below(8)
            return (lock + [0x80, 0x08, UInt8(truncatingIfNeeded: UInt64(1) << below(8))], [0: address + byte], address + byte)
        default:     // what the core leaves to the host: cmpxchg, a 32-bit xchg, btr, xorb
            let bytes: [[UInt8]] = [[0xf0, 0x48, 0x0f, 0xb1, 0x10], [0x87, 0x10], [0xf0, 0x48, 0x0f, 0xba, 0x30, 0x01], [0x80, 0x30, 0x02]]
            return (bytes[Int(below(4))], [0: address, 2: value, 1: address], address)
        }
    }

    @Test("Emulates what the host would, to the bit, and leaves the rest untouched (1500 random writes)")
    func differential() throws {
        let reference = try TestDomain()
        let harness = try CoreHarness()
        let test = harness.test
        for domain in [reference, test] { domain.setTrap(14, flags: 4) }
        var random = SplitMix(seed: 0x7074_7772)
        var emulated = 0, deferred = 0, hostCount = 0
        for step in 0..<1500 {
            let write = Self.randomWrite(&random)
            var contexts: [GuestContext] = []
            let arithmetic = random.next() & (RFlags.carry | RFlags.zero | RFlags.overflow | RFlags.adjust)
            for domain in [reference, test] {
                domain.context.rip = TestDomain.va(TestDomain.codePFN)
                domain.context.rsp = TestDomain.va(16) - 0x100
                domain.context.rflags = RFlags.fixed | RFlags.interrupt | arithmetic
                for (number, value) in write.registers { domain.context.setRegister(number, value) }
                try domain.placeCode(write.code + [UInt8](repeating: 0x90, count: 8))
                contexts.append(domain.context)
            }
            _ = reference.exception(vector: 14, errorCode: 3, faultAddress: write.address)
            reference.vcpu.pendingWork = PendingMachineWork()
            let hostEmulated = reference.context.rip != TestDomain.handler + 14 * 0x10
            if hostEmulated { hostCount += 1 }

            harness.load(contexts[1])
            let before = try MMUState(test)
            if try harness.enter(CoreLayout.entryPageFault, cr2: write.address, errorCode: 3) {
                emulated += 1
                let host = reference.context
                #expect(harness.register(CoreLayout.savedRIP) == host.rip, "step \(step): rip")
                #expect(harness.register(CoreLayout.savedRFlags) == host.rflags, "step \(step): rflags")
                let saved = [CoreLayout.savedRAX, CoreLayout.savedRCX, CoreLayout.savedRDX, CoreLayout.savedRBX, CoreLayout.savedRSP,
                             CoreLayout.savedRBP, CoreLayout.savedRSI, CoreLayout.savedRDI, CoreLayout.savedR8, CoreLayout.savedR9,
                             CoreLayout.savedR10, CoreLayout.savedR11, CoreLayout.savedR12, CoreLayout.savedR13, CoreLayout.savedR14,
                             CoreLayout.savedR15]
                for (number, offset) in saved.enumerated() {
                    #expect(harness.register(offset) == host.register(number), "step \(step): register \(number)")
                }
                test.context = host   // the next step starts from the same registers either way
            } else {
                deferred += 1
                let after = try MMUState(test)
                if after != before { Issue.record("step \(step): a deferral changed state: \(after.differences(from: before))") }
                _ = test.exception(vector: 14, errorCode: 3, faultAddress: write.address)
                test.vcpu.pendingWork = PendingMachineWork()
            }
            let expected = try MMUState(reference)
            let actual = try MMUState(test)
            if actual != expected {
                Issue.record("step \(step): \(write.code) left a different state: \(actual.differences(from: expected))")
                break
            }
            // Event masks and the stack may differ after a bounce the host made; reset them.
            for domain in [reference, test] { domain.vcpu.setUpcallMask(true) }
        }
        try test.checkPageBookkeeping()
        #expect(emulated > 500 && deferred > 200, "emulated \(emulated), deferred \(deferred), the host emulated \(hostCount)")
        #expect(test.domain.coreDeliveredCounts()["page-table write emulated (#PF)"] == UInt64(emulated))
    }
}

@Suite("The in-VM ring-0 core: forced-emulation CPUID")
struct Ring0CoreCPUIDTests {
    /// The host's leaves of the CPUID tests, and a second vCPU's APIC id.
    static let host: [CPUIDPolicy.Leaf] = [
        .init(function: 0, eax: 0xd, ebx: 0x756e_6547, ecx: 0x6c65_746e, edx: 0x4965_6e69),
        .init(function: 1, eax: 0x906ea, ebx: 0x0810_0800, ecx: 0x7fff_ffff, edx: 0xffff_ffff),
        .init(function: 7, index: 0, eax: 2, ebx: 0xffff_ffff, ecx: 0xffff_ffff, edx: 0xffff_ffff, indexed: true),
        .init(function: 7, index: 1, eax: 0x1234, indexed: true),
        .init(function: 0xd, index: 0, eax: 0x2ff, ebx: 0xa88, ecx: 0xa88, indexed: true),
        .init(function: 0x8000_0001, ecx: 0xffff_ffff, edx: 0xffff_ffff),
        .init(function: 0x8000_0008, eax: 0x3027, ebx: 0x1234, ecx: 0xffff),
    ]
    static let forced: [UInt8] = [0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa2]

    /// Runs CPUID(`leaf`, `subleaf`) through the core and the host; returns whether the
    /// core answered (then with the host's registers and rip).
    static func compare(_ leaf: UInt64, _ subleaf: UInt64, code: [UInt8] = forced, vcpu: Int = 0,
                        sourceLocation: SourceLocation = #_sourceLocation) throws -> Bool {
        let harness = try CoreHarness(cpuid: CPUIDPolicy(hostLeaves: host))
        let reference = try TestDomain(cpuid: CPUIDPolicy(hostLeaves: host))
        for test in [harness.test, reference] {
            try test.placeCode(code + [0x90, 0x90])
            test.context.rax = leaf | 0xdead_0000_0000_0000   // the high halves are not an input
            test.context.rcx = subleaf
            test.context.rbx = 0x5555
            test.context.rdx = 0x6666
        }
        harness.test.vcpu.setCoreWord(CoreLayout.vcpuID, UInt64(vcpu))
        harness.load(harness.test.context)
        guard try harness.enter(CoreLayout.entryInvalidOpcode) else {
            #expect(harness.register(CoreLayout.savedRIP) == harness.test.context.rip, sourceLocation: sourceLocation)
            #expect(harness.register(CoreLayout.savedRAX) == harness.test.context.rax, sourceLocation: sourceLocation)
            return false
        }
        let host = reference.domain.vcpus[vcpu]
        host.kernelTable = reference.vcpu.kernelTable   // the code is reached through it
        var context = reference.context
        #expect(Traps.exception(host, &context, vector: 6, errorCode: 0, faultAddress: 0) == .resume, sourceLocation: sourceLocation)
        #expect(harness.register(CoreLayout.savedRIP) == context.rip, sourceLocation: sourceLocation)
        #expect([CoreLayout.savedRAX, CoreLayout.savedRBX, CoreLayout.savedRCX, CoreLayout.savedRDX].map { harness.register($0) }
                == [context.rax, context.rbx, context.rcx, context.rdx], "leaf \(String(leaf, radix: 16)).\(subleaf)",
                sourceLocation: sourceLocation)
        return true
    }

    @Test("Answers every leaf as the host does, the vCPU's APIC id and Xen's leaves included")
    func leaves() throws {
        for (leaf, subleaf): (UInt64, UInt64) in [(0, 0), (1, 0), (7, 0), (7, 1), (7, 2), (0xd, 0), (0xd, 1), (0x4000_0000, 0),
                                                  (0x4000_0001, 0), (0x4000_0002, 0), (0x8000_0001, 0), (0x8000_0008, 3),
                                                  (0x1234, 0), (0x8000_0000, 0)] {
            #expect(try Self.compare(leaf, subleaf))
        }
        #expect(try Self.compare(1, 0, vcpu: 1))
    }

    @Test("Any other invalid opcode, and a table that did not fit, go to the host untouched")
    func deferrals() throws {
        #expect(try !Self.compare(1, 0, code: [0x0f, 0x0b, 0x90, 0x90]))                        // a plain ud2
        #expect(try !Self.compare(1, 0, code: [0x0f, 0x0b, 0x78, 0x65, 0x6e, 0x0f, 0xa3]))    // not cpuid after the prefix
        let harness = try CoreHarness(cpuid: CPUIDPolicy(hostLeaves: Self.host))
        let header = harness.test.layout.coreHeader.rawValue
        try harness.test.memory.write(UInt64(0), at: GuestPhysicalAddress(header + UInt64(CoreLayout.headerCPUIDComplete)))
        try harness.test.placeCode(Self.forced)
        harness.test.context.rax = 0x1234   // not in the table
        harness.load(harness.test.context)
        #expect(try !harness.enter(CoreLayout.entryInvalidOpcode))
        harness.test.context.rax = 0   // in it
        harness.load(harness.test.context)
        #expect(try harness.enter(CoreLayout.entryInvalidOpcode))
    }

    @Test("A policy with more leaves than the header holds is published as incomplete")
    func publishing() throws {
        let many = (0..<UInt32(CoreLayout.cpuidCapacity + 5)).map { CPUIDPolicy.Leaf(function: 0x8000_0000 + $0, eax: $0) }
        let test = try TestDomain(cpuid: CPUIDPolicy(hostLeaves: many))
        let header = test.layout.coreHeader.rawValue
        #expect(try test.memory.read(UInt64.self, at: GuestPhysicalAddress(header + UInt64(CoreLayout.headerCPUIDCount))) == UInt64(CoreLayout.cpuidCapacity))
        #expect(try test.memory.read(UInt64.self, at: GuestPhysicalAddress(header + UInt64(CoreLayout.headerCPUIDComplete))) == 0)
    }
}

/// The local APIC timer (Sources/Ring0Core/FastTimer.swift): VIRQ_TIMER raised and its
/// upcall delivered in the VM exactly as the host raises and delivers it.
@Suite("The in-VM ring-0 core: the local APIC timer")
struct Ring0CoreLocalTimerTests {
    /// Binds VIRQ_TIMER of vCPU 0 to a port, as EVTCHNOP_bind_virq does, and arms the
    /// core's local timer for a deadline already due (TSC 1 is long past).
    static func armed(port wanted: Bool = true, due: UInt64 = 500) -> (TestDomain) throws -> Void {
        { test in
            if wanted {
                test.domain.state.withLock { state in
                    if let port = try? state.events.allocate(.virq(VIRQ.timer), notifyVCPU: 0) {
                        state.events.bindVIRQ(vcpu: 0, virq: VIRQ.timer, port: port)
                    }
                }
            }
            test.domain.publishTimerPorts()
            test.vcpu.enableLocalTimer(true)
            test.vcpu.localTimerDue = due
            test.vcpu.timer.withLock { $0.deadline = due }
            test.vcpu.setCoreWord(CoreLayout.vcpuTimeBase, 1_000)
            test.vcpu.setCoreWord(CoreLayout.vcpuTSCBase, 0)
            test.vcpu.setCoreWord(CoreLayout.vcpuTSCPerNanosecond, 1 << 32)
            let shared = test.layout.sharedInfo
            let region = try #require(test.memory.regions.first { shared.rawValue >= $0.base.rawValue && shared.rawValue - $0.base.rawValue < $0.size })
            try test.memory.write(region.hostAddress + (shared.rawValue - region.base.rawValue),
                                  at: GuestPhysicalAddress(test.layout.coreHeader.rawValue + UInt64(CoreLayout.headerSharedInfo)))
        }
    }

    /// The host's handling of the same interrupt: the deadline found due.
    static func hostFires(_ test: TestDomain) {
        test.vcpu.timer.withLock { $0.deadline = nil }
        test.domain.raiseVIRQ(VIRQ.timer, vcpu: 0)
    }

    static func pendingBits(_ test: TestDomain) throws -> (UInt64, UInt64) {
        let port = UInt64(try #require(test.domain.state.withLock { $0.events.virqPort(vcpu: 0, virq: VIRQ.timer) }))
        let word = GuestPhysicalAddress(test.layout.sharedInfo.rawValue + UInt64(SharedInfoLayout.evtchnPending) + port / 64 * 8)
        let selector = GuestPhysicalAddress(info.rawValue + UInt64(VCPUInfoLayout.pendingSel))
        return (try test.memory.read(at: word), try test.memory.read(at: selector))
    }

    @Test("A due deadline raises VIRQ_TIMER and delivers the upcall as the host does, from either guest mode, masked or not")
    func fires() throws {
        for (user, masked) in [(false, UInt8(0)), (false, 1), (true, 0)] {
            #expect(try compare(Setup(user: user, masked: masked), entry: CoreLayout.entryTimer, adjust: Self.armed(),
                                host: Self.hostFires), "user \(user), masked \(masked)")
        }
        // Masked in user mode: raised, no upcall, the vCPU stays in user mode.
        let masked = try CoreHarness()
        try prepare(masked.test, Setup(user: true, masked: 1))
        try Self.armed()(masked.test)
        masked.load(masked.test.context)
        let rip = masked.register(CoreLayout.savedRIP)
        #expect(try masked.enter(CoreLayout.entryTimer))
        #expect(masked.register(CoreLayout.savedRIP) == rip)
        #expect(try masked.test.memory.read(UInt8.self, at: info) == 1, "evtchn_upcall_pending")
        // The core's own view afterwards: the deadline cleared for the host, counted.
        let harness = try CoreHarness()
        try prepare(harness.test, Setup())
        try Self.armed()(harness.test)
        harness.load(harness.test.context)
        #expect(try harness.enter(CoreLayout.entryTimer))
        #expect(harness.test.vcpu.localTimerDue == 0)
        #expect(harness.test.vcpu.takeCoreTimerDeadline() == 0)
        #expect(harness.test.vcpu.timer.withLock { $0.deadline } == nil)
        let (pending, selector) = try Self.pendingBits(harness.test)
        let port = UInt64(try #require(harness.test.domain.state.withLock { $0.events.virqPort(vcpu: 0, virq: VIRQ.timer) }))
        #expect(pending & (1 << (port % 64)) != 0)
        #expect(selector & (1 << (port / 64)) != 0)
        #expect(harness.test.domain.coreDeliveredCounts()["timer interrupt (VIRQ_TIMER raised)"] == 1)
    }

    @Test("Nothing due is left alone; a deadline not yet come is armed again; what the core cannot do goes to the host untouched")
    func notDueAndDeferrals() throws {
        // No deadline: a stale interrupt, handled with nothing changed.
        #expect(try compare(Setup(), entry: CoreLayout.entryTimer, adjust: Self.armed(due: 0), host: { _ in }))
        // Not yet: the same deadline armed again.
        let harness = try CoreHarness()
        try prepare(harness.test, Setup())
        try Self.armed(due: 5_000)(harness.test)
        let soon = cga_rdtsc() + (1 << 36)   // ahead of the TSC, yet within reach
        harness.test.vcpu.setCoreWord(CoreLayout.vcpuTSCBase, soon)
        harness.load(harness.test.context)
        #expect(try harness.enter(CoreLayout.entryTimer))
        #expect(try harness.request(CoreLayout.vcpuRequestDeadline) == soon + 4_000 + FastTimer.lateness)
        #expect(harness.test.vcpu.localTimerDue == 5_000)
        // No port bound, or the local timer not in use: the host's.
        #expect(try !compare(Setup(), entry: CoreLayout.entryTimer, adjust: Self.armed(port: false), host: { _ in }))
        #expect(try !compare(Setup(), entry: CoreLayout.entryTimer,
                             adjust: { test in try Self.armed()(test); test.vcpu.enableLocalTimer(false) }, host: { _ in }))
        // A vCPU polling: raised, then the host wakes the poller.
        let polled = try CoreHarness()
        try prepare(polled.test, Setup())
        try Self.armed()(polled.test)
        polled.test.domain.setPolling(1, true)
        polled.load(polled.test.context)
        #expect(try !polled.enter(CoreLayout.entryTimer))
        #expect(try Self.pendingBits(polled.test).0 != 0)
        polled.test.domain.setPolling(1, false)
    }

    @Test("VCPUOP_set_singleshot_timer arms the local timer in the VM; a past deadline with VCPU_SSHOTTMR_future is the host's")
    func singleshot() throws {
        let harness = try CoreHarness()
        let test = harness.test
        try Self.armed()(test)
        test.vcpu.localTimerDue = 0
        let request = TestDomain.buffer + 0x100
        func set(_ deadline: UInt64, flags: UInt64, vcpu: UInt64 = 0) throws -> UInt64? {
            try test.write(deadline, at: request)
            try test.write(flags, at: request + 8)
            return try harness.core(Hypercall.vcpuOp.rawValue, [VCPUOp.setSingleshotTimer, vcpu, request])
        }
        // Ahead of the TSC: taken, for the host and the APIC (a little late, never early).
        let soon = cga_rdtsc() + (1 << 36)
        test.vcpu.setCoreWord(CoreLayout.vcpuTSCBase, soon)
        #expect(try set(5_000_000, flags: UInt64(VCPUOp.singleshotFuture)) == 0)
        #expect(test.vcpu.localTimerDue == 5_000_000)
        #expect(try harness.request(CoreLayout.vcpuRequestDeadline) == soon + 5_000_000 - 1_000 + FastTimer.lateness)
        #expect(test.vcpu.takeCoreTimerDeadline() == 5_000_000)
        // The host arms the same value for the same deadline.
        #expect(test.vcpu.localTimerTSC(for: 5_000_000, now: cga_rdtsc()) == soon + 5_000_000 - 1_000 + FastTimer.lateness)
        // Beyond KVM's reach: armed as far as it goes, and again when that fires.
        test.vcpu.setCoreWord(CoreLayout.vcpuTSCBase, UInt64.max / 2)
        #expect(try set(5_000_000, flags: 0) == 0)
        let armed = try harness.request(CoreLayout.vcpuRequestDeadline)
        #expect(armed > cga_rdtsc() && armed <= cga_rdtsc() + FastTimer.maximumAhead)
        // Upper flag bits are padding (a u32 in the ABI).
        #expect(try set(6_000_000, flags: 0xdead_0000_0000) == 0)
        // Past (the TSC base long behind): -ETIME is the host's; without the flag it is taken.
        test.vcpu.setCoreWord(CoreLayout.vcpuTSCBase, 0)
        #expect(try set(2_000, flags: UInt64(VCPUOp.singleshotFuture)) == nil)
        #expect(try set(2_000, flags: 0) == 0)
        // A deadline of 0, unknown flags, another vCPU: the host's.
        #expect(try set(0, flags: 0) == nil)
        #expect(try set(2_000, flags: 2) == nil)
        #expect(try set(2_000, flags: 0, vcpu: 1) == nil)
    }

    @Test("A stalled vCPU's summary says how its local APIC timer is armed")
    func summary() throws {
        let test = try TestDomain()
        #expect(!test.vcpu.stateSummary().contains("APIC"))
        try Self.armed(due: 1)(test)
        #expect(test.vcpu.stateSummary().contains("local APIC timer armed for"))
        test.vcpu.localTimerDue = 0
        #expect(test.vcpu.stateSummary().hasSuffix("local APIC timer not armed"))
    }

    @Test("System time converts to TSC ticks, rounding never early and saturating")
    func conversion() {
        let perNs: UInt64 = 3 << 31   // 1.5 ticks per ns
        #expect(FastTimer.tsc(at: 2_000, timeBase: 1_000, tscBase: 10, ticksPerNanosecond: perNs) == 1_510)
        #expect(FastTimer.tsc(at: 1_000, timeBase: 1_000, tscBase: 10, ticksPerNanosecond: perNs) == 1, "at or before the base: due")
        #expect(FastTimer.tsc(at: UInt64.max, timeBase: 0, tscBase: 10, ticksPerNanosecond: UInt64.max) == UInt64.max)
        #expect(FastTimer.tsc(at: 2_000, timeBase: 1_000, tscBase: UInt64.max - 5, ticksPerNanosecond: perNs) == UInt64.max)
    }
}
