// set_trap_table, stack_switch, set_segment_base, fpu_taskswitch, set/get_debugreg and
// vm_assist (GuestState.swift); callback_op and set_callbacks (CallbackOp.swift).

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

@Suite("set_trap_table")
struct SetTrapTableTests {
    @Test("Entries up to the first null address are stored, with the code selector's RPL forced to 3")
    func store() throws {
        let test = try TestDomain()
        let entries = [
            TrapInfo(vector: 14, flags: 0, cs: 0xe030, address: 0xffff_ffff_8100_1000),
            TrapInfo(vector: 0x80, flags: 3 | 4, cs: 0xe033, address: 0xffff_ffff_8100_2000),
            TrapInfo(vector: 3, flags: 3, cs: 0x10, address: 0xffff_ffff_8100_3000),
            TrapInfo(vector: 6, flags: 0, cs: 0xe033, address: 0),            // terminator
            TrapInfo(vector: 7, flags: 0, cs: 0xe033, address: 0xffff_ffff_8100_4000),
        ]
        try test.write(entries.flatMap { $0.encode() }, at: TestDomain.buffer)
        test.call(.setTrapTable, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(test.vcpu.trapTable[14] == TrapInfo(vector: 14, flags: 0, cs: 0xe033, address: 0xffff_ffff_8100_1000))
        #expect(test.vcpu.trapTable[0x80] == TrapInfo(vector: 0x80, flags: 7, cs: 0xe033, address: 0xffff_ffff_8100_2000))
        #expect(test.vcpu.trapTable[0x80]?.masksEvents == true && test.vcpu.trapTable[0x80]?.dpl == 3)
        #expect(test.vcpu.trapTable[3]?.cs == 0x13)
        #expect(test.vcpu.trapTable[6] == nil)
        #expect(test.vcpu.trapTable[7] == nil, "entries after the terminator are not read")
        #expect(test.vcpu.trapTable.compactMap { $0 }.count == 3)
    }

    @Test("A later call replaces the entries it names and keeps the others")
    func update() throws {
        let test = try TestDomain()
        try test.write(TrapInfo(vector: 13, flags: 0, cs: 0xe033, address: 0x1000).encode() + [UInt8](repeating: 0, count: 16),
                       at: TestDomain.buffer)
        test.call(.setTrapTable, TestDomain.buffer)
        try test.write(TrapInfo(vector: 14, flags: 0, cs: 0xe033, address: 0x2000).encode() + [UInt8](repeating: 0, count: 16),
                       at: TestDomain.buffer)
        test.call(.setTrapTable, TestDomain.buffer)
        #expect(test.vcpu.trapTable[13]?.address == 0x1000)
        #expect(test.vcpu.trapTable[14]?.address == 0x2000)
    }

    @Test("A non-canonical handler address is -EINVAL; entries before it stay, as on Xen")
    func nonCanonical() throws {
        let test = try TestDomain()
        let entries = [
            TrapInfo(vector: 14, flags: 0, cs: 0xe033, address: 0xffff_ffff_8100_1000),
            TrapInfo(vector: 13, flags: 0, cs: 0xe033, address: 0x0000_8000_0000_0000),
            TrapInfo(vector: 3, flags: 0, cs: 0xe033, address: 0xffff_ffff_8100_3000),
            TrapInfo(vector: 0, flags: 0, cs: 0, address: 0),
        ]
        try test.write(entries.flatMap { $0.encode() }, at: TestDomain.buffer)
        test.call(.setTrapTable, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EINVAL))
        #expect(test.vcpu.trapTable[14]?.address == 0xffff_ffff_8100_1000)
        #expect(test.vcpu.trapTable[13] == nil && test.vcpu.trapTable[3] == nil)
    }

    @Test("A null list clears the whole table")
    func clear() throws {
        let test = try TestDomain()
        test.vcpu.trapTable[14] = TrapInfo(vector: 14, flags: 0, cs: 0xe033, address: 0x1000)
        test.call(.setTrapTable, 0)
        #expect(test.result == 0)
        #expect(test.vcpu.trapTable.allSatisfy { $0 == nil })
    }

    @Test("A list running into unmapped memory is -EFAULT; entries before the fault stay", arguments: [TestDomain.unmapped, TestDomain.unmapped - 24])
    func badList(address: UInt64) throws {
        let test = try TestDomain()
        if address < TestDomain.unmapped {
            try test.write(TrapInfo(vector: 1, flags: 0, cs: 0xe033, address: 0x1000).encode(), at: address)
        }
        test.call(.setTrapTable, address)
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(test.vcpu.trapTable[1]?.address == (address < TestDomain.unmapped ? 0x1000 : nil))
    }
}

@Suite("stack_switch, set_segment_base, fpu_taskswitch, debug registers, vm_assist")
struct GuestStateTests {
    @Test("stack_switch sets the kernel stack; the selector's RPL is forced to 3")
    func stackSwitch() throws {
        let test = try TestDomain()
        test.call(.stackSwitch, 0xe028, 0xffff_c900_0001_0000)
        #expect(test.result == 0)
        #expect(test.vcpu.kernelSS == 0xe02b)
        #expect(test.vcpu.kernelSP == 0xffff_c900_0001_0000)
    }

    @Test("SEGBASE_FS and SEGBASE_GS_KERNEL set the active bases; SEGBASE_GS_USER the inactive one")
    func segmentBases() throws {
        let test = try TestDomain()
        test.call(.setSegmentBase, SegmentBase.fs, 0x7f00_1234_5000)
        #expect(test.result == 0)
        test.call(.setSegmentBase, SegmentBase.gsKernel, 0xffff_8880_0001_0000)
        #expect(test.result == 0)
        test.call(.setSegmentBase, SegmentBase.gsUser, 0x7f00_dead_0000)
        #expect(test.result == 0)
        #expect(test.context.fsBase == 0x7f00_1234_5000)
        #expect(test.context.gsBase == 0xffff_8880_0001_0000)
        #expect(test.vcpu.inactiveGSBase == 0x7f00_dead_0000)
    }

    @Test("SEGBASE_GS_USER_SEL loads the user GS selector and resets its base")
    func userSelector() throws {
        let test = try TestDomain()
        test.vcpu.inactiveGSBase = 0x1234
        test.call(.setSegmentBase, SegmentBase.gsUserSelector, 0x2b)
        #expect(test.result == 0)
        #expect(test.vcpu.userGSSelector == 0x2b)
        #expect(test.vcpu.inactiveGSBase == 0)
    }

    @Test("Non-canonical bases are -EINVAL and change nothing", arguments: [SegmentBase.fs, SegmentBase.gsKernel, SegmentBase.gsUser])
    func nonCanonical(which: UInt64) throws {
        let test = try TestDomain()
        for base: UInt64 in [0x0000_8000_0000_0000, 0xffff_7fff_ffff_ffff, 0x8000_0000_0000_0000] {
            test.call(.setSegmentBase, which, base)
            #expect(test.result == TestDomain.error(.EINVAL))
        }
        #expect(test.context.fsBase == 0 && test.context.gsBase == 0 && test.vcpu.inactiveGSBase == 0)
    }

    @Test("An unknown segment is refused")
    func unknownSegment() throws {
        let test = try TestDomain()
        test.call(.setSegmentBase, 4, 0)
        #expect(test.result == TestDomain.error(.EINVAL))
    }

    @Test("fpu_taskswitch sets and clears the virtual CR0.TS")
    func fpuTaskswitch() throws {
        let test = try TestDomain()
        test.call(.fpuTaskswitch, 1)
        #expect(test.result == 0)
        #expect(test.vcpu.virtualTS)
        test.call(.fpuTaskswitch, 0)
        #expect(!test.vcpu.virtualTS)
    }

    @Test("Debug registers 0–3, 6 and 7 round-trip through set/get_debugreg")
    func debugRegisters() throws {
        let test = try TestDomain()
        let values: [UInt64: UInt64] = [0: 0xffff_ffff_8100_0000, 1: 0x1000, 2: 0x7fff_ffff_f000, 3: 0, 6: 0xffff_0ff0, 7: 0x400]
        for (register, value) in values {
            test.call(.setDebugreg, register, value)
            #expect(test.result == 0)
        }
        for (register, value) in values {
            test.call(.getDebugreg, register)
            #expect(test.context.rax == value)
        }
    }

    @Test("Breakpoint addresses in the hypervisor hole or non-canonical are -EPERM")
    func debugRegisterAddresses() throws {
        let test = try TestDomain()
        for value: UInt64 in [0xffff_8000_0000_0000, 0xffff_87ff_ffff_ffff, 0x0000_8000_0000_0000] {
            test.call(.setDebugreg, 0, value)
            #expect(test.result == TestDomain.error(.EPERM))
        }
        #expect(test.vcpu.debugRegisters[0] == 0)
    }

    @Test("Debug registers 4, 5 and above 7 are -EINVAL", arguments: [UInt64(4), 5, 8, 100])
    func badDebugRegister(register: UInt64) throws {
        let test = try TestDomain()
        test.call(.setDebugreg, register, 0)
        #expect(test.result == TestDomain.error(.EINVAL))
        test.call(.getDebugreg, register)
        #expect(test.result == TestDomain.error(.EINVAL))
    }

    @Test("vm_assist enables and disables the assists a 64-bit PV guest may use", arguments: [
        VMAssist.typeFourGBSegments, VMAssist.typeFourGBSegmentsNotify, VMAssist.typeWritablePagetables,
        VMAssist.typePaeExtendedCR3, VMAssist.typeArchRetainedWrites, VMAssist.typeRunstateUpdateFlag, VMAssist.typeM2PStrict,
    ])
    func vmAssist(type: UInt64) throws {
        let test = try TestDomain()
        test.call(.vmAssist, VMAssist.cmdEnable, type)
        #expect(test.result == 0)
        #expect(test.domain.state.withLock { $0.vmAssists } == 1 << type)
        test.call(.vmAssist, VMAssist.cmdDisable, type)
        #expect(test.result == 0)
        #expect(test.domain.state.withLock { $0.vmAssists } == 0)
    }

    @Test("vm_assist refuses unknown types with -EINVAL and unknown commands with -ENOSYS")
    func vmAssistInvalid() throws {
        let test = try TestDomain()
        for type: UInt64 in [6, 31, 33, 63, 64, 1 << 40] {
            test.call(.vmAssist, VMAssist.cmdEnable, type)
            #expect(test.result == TestDomain.error(.EINVAL), "type \(type)")
        }
        test.call(.vmAssist, 2, VMAssist.typeWritablePagetables)
        #expect(test.result == TestDomain.error(.ENOSYS))
        #expect(test.domain.state.withLock { $0.vmAssists } == 0)
    }
}

@Suite("callback_op and set_callbacks")
struct CallbackTests {
    func register(_ test: TestDomain, type: UInt16, flags: UInt16 = 0, address: UInt64) throws {
        try test.write(CallbackRegister(type: type, flags: flags, address: address).encode(), at: TestDomain.buffer)
        test.call(.callbackOp, CallbackOp.register, TestDomain.buffer)
    }

    @Test("CALLBACKOP_register stores each callback type with its mask-events flag", arguments: CallbackType.allCases)
    func registerEach(type: CallbackType) throws {
        let test = try TestDomain()
        try register(test, type: type.rawValue, flags: 1, address: 0xffff_ffff_8100_0000 + UInt64(type.rawValue) * 0x40)
        #expect(test.result == 0)
        #expect(test.vcpu.callbacks[type] == GuestCallback(address: 0xffff_ffff_8100_0000 + UInt64(type.rawValue) * 0x40, masksEvents: true))
        try register(test, type: type.rawValue, flags: 0, address: 0xffff_ffff_8200_0000)
        #expect(test.vcpu.callbacks[type] == GuestCallback(address: 0xffff_ffff_8200_0000, masksEvents: false))
    }

    @Test("Unknown callback types are -ENOSYS (as on Xen); non-canonical addresses -EINVAL")
    func registerInvalid() throws {
        let test = try TestDomain()
        try register(test, type: 3, address: 0x1000)           // CALLBACKTYPE_bounce: 32-bit only
        #expect(test.result == TestDomain.error(.ENOSYS))
        try register(test, type: 99, address: 0x1000)
        #expect(test.result == TestDomain.error(.ENOSYS))
        for type: UInt32 in [3, 6, 99] {
            try test.write(type, at: TestDomain.buffer)
            test.call(.callbackOp, CallbackOp.unregister, TestDomain.buffer)
            #expect(test.result == TestDomain.error(.ENOSYS), "unregister type \(type)")
        }
        try register(test, type: CallbackType.event.rawValue, address: 0x8000_0000_0000_0000)
        #expect(test.result == TestDomain.error(.EINVAL))
        #expect(test.vcpu.callbacks.isEmpty)
    }

    @Test("An unreadable callback_register is -EFAULT")
    func registerBadPointer() throws {
        let test = try TestDomain()
        test.call(.callbackOp, CallbackOp.register, TestDomain.unmapped - 8)
        #expect(test.result == TestDomain.error(.EFAULT))
        test.call(.callbackOp, CallbackOp.unregister, TestDomain.unmapped - 1)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("As on Xen, only the NMI callback can be unregistered")
    func unregister() throws {
        let test = try TestDomain()
        for type in CallbackType.allCases {
            try register(test, type: type.rawValue, address: 0x1000)
        }
        for type in CallbackType.allCases {
            try test.write(le(UInt32(type.rawValue)), at: TestDomain.buffer)
            test.call(.callbackOp, CallbackOp.unregister, TestDomain.buffer)
            #expect(test.result == (type == .nmi ? 0 : TestDomain.error(.EINVAL)), "\(type)")
        }
        #expect(Set(test.vcpu.callbacks.keys) == Set(CallbackType.allCases).subtracting([.nmi]))
    }

    @Test("An unknown callback_op command is -ENOSYS")
    func unknownCommand() throws {
        let test = try TestDomain()
        test.call(.callbackOp, 2, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.ENOSYS))
    }

    @Test("set_callbacks registers event, failsafe and syscall without masking")
    func setCallbacks() throws {
        let test = try TestDomain()
        test.call(.setCallbacks, 0xffff_ffff_8100_0100, 0xffff_ffff_8100_0200, 0xffff_ffff_8100_0300)
        #expect(test.result == 0)
        #expect(test.vcpu.callbacks == [
            .event: GuestCallback(address: 0xffff_ffff_8100_0100, masksEvents: false),
            .failsafe: GuestCallback(address: 0xffff_ffff_8100_0200, masksEvents: false),
            .syscall: GuestCallback(address: 0xffff_ffff_8100_0300, masksEvents: false),
        ])
        test.call(.setCallbacks, 0x1000, 0xffff_0000_0000_0000, 0x2000)
        #expect(test.result == TestDomain.error(.EINVAL))
    }
}
