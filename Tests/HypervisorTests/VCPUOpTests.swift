// vcpu_op and set_timer_op (VCPUOp.swift).

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

@Suite("vcpu_op")
struct VCPUOpTests {
    @Test("VCPUOP_is_up: 1 for the running vCPU 0, 0 for the offline vCPU 1, -ENOENT beyond")
    func isUp() throws {
        let test = try TestDomain(vcpus: 2)
        test.call(.vcpuOp, VCPUOp.isUp, 0, 0)
        #expect(test.result == 1)
        test.call(.vcpuOp, VCPUOp.isUp, 1, 0)
        #expect(test.result == 0)
        for target: UInt64 in [2, 31, 8191, 0xffff_ffff, UInt64.max] {
            test.call(.vcpuOp, VCPUOp.isUp, target, 0)
            #expect(test.result == TestDomain.error(.ENOENT), "vCPU \(target)")
        }
    }

    @Test("Every vcpu_op command on a vCPU that does not exist is -ENOENT", arguments: [
        VCPUOp.registerRunstateMemoryArea, VCPUOp.registerVCPUInfo, VCPUOp.setSingleshotTimer, VCPUOp.setPeriodicTimer,
        VCPUOp.stopPeriodicTimer, VCPUOp.initialise,
    ])
    func unknownVCPU(command: UInt64) throws {
        let test = try TestDomain(vcpus: 1)
        test.call(.vcpuOp, command, 1, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.ENOENT))
    }

    @Test("VCPUOP_register_runstate_memory_area records the area and fills it at once")
    func runstateArea() throws {
        let test = try TestDomain()
        let area = TestDomain.buffer + 0x100
        try test.write([UInt8](repeating: 0xee, count: RunstateLayout.size), at: area)
        test.clock.advance(nanoseconds: 3_000_000)
        test.vcpu.blockedTime = 1_000_000
        try test.write(area, at: TestDomain.buffer)
        test.call(.vcpuOp, VCPUOp.registerRunstateMemoryArea, 0, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(test.vcpu.runstateArea == GuestVirtualAddress(area))
        let bytes = try test.read(area, count: RunstateLayout.size)
        #expect(le(Int32.self, bytes, at: RunstateLayout.state) == RunstateLayout.running)
        #expect(le(UInt64.self, bytes, at: RunstateLayout.stateEntryTime) == 3_000_000)
        #expect(le(UInt64.self, bytes, at: RunstateLayout.time) == 2_000_000, "running")
        #expect(le(UInt64.self, bytes, at: RunstateLayout.time + 8) == 0, "runnable")
        #expect(le(UInt64.self, bytes, at: RunstateLayout.time + 16) == 1_000_000, "blocked")
        #expect(le(UInt64.self, bytes, at: RunstateLayout.time + 24) == 0, "offline")
    }

    @Test("A null area unregisters; an unmapped area is accepted and never written")
    func runstateAreaNullAndUnmapped() throws {
        let test = try TestDomain()
        try test.write(TestDomain.unmapped, at: TestDomain.buffer)
        test.call(.vcpuOp, VCPUOp.registerRunstateMemoryArea, 0, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(test.vcpu.runstateArea == GuestVirtualAddress(TestDomain.unmapped))
        try test.write(UInt64(0), at: TestDomain.buffer)
        test.call(.vcpuOp, VCPUOp.registerRunstateMemoryArea, 0, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(test.vcpu.runstateArea == nil)
    }

    @Test("An unreadable runstate registration is -EFAULT")
    func runstateAreaBadPointer() throws {
        let test = try TestDomain()
        test.call(.vcpuOp, VCPUOp.registerRunstateMemoryArea, 0, TestDomain.unmapped - 4)
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(test.vcpu.runstateArea == nil)
    }

    @Test("VCPUOP_get_runstate_info copies the runstate out; a bad buffer is -EFAULT")
    func getRunstateInfo() throws {
        let test = try TestDomain()
        test.clock.advance(nanoseconds: 500)
        test.call(.vcpuOp, VCPUOp.getRunstateInfo, 1, TestDomain.buffer)
        #expect(test.result == 0)
        let bytes = try test.read(TestDomain.buffer, count: RunstateLayout.size)
        #expect(le(UInt64.self, bytes, at: RunstateLayout.stateEntryTime) == 500)
        test.call(.vcpuOp, VCPUOp.getRunstateInfo, 0, TestDomain.unmapped - 8)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    func registerVCPUInfo(_ test: TestDomain, mfn: UInt64, offset: UInt32, vcpu: UInt64 = 0) throws {
        try test.write(RegisterVCPUInfo(mfn: mfn, offset: offset).encode(), at: TestDomain.buffer)
        test.call(.vcpuOp, VCPUOp.registerVCPUInfo, vcpu, TestDomain.buffer)
    }

    @Test("VCPUOP_register_vcpu_info moves vcpu_info into a guest page, contents and pending state included")
    func registerVCPUInfoMoves() throws {
        let test = try TestDomain()
        let legacy = test.vcpu.vcpuInfoAddress
        #expect(legacy == test.sharedInfoField(0))
        // An event pending in the legacy slot: upcall flag, selector bits, and a time record.
        try test.memory.write(UInt8(1), at: test.sharedInfoField(VCPUInfoLayout.upcallPending))
        try test.memory.write(UInt8(0), at: test.sharedInfoField(VCPUInfoLayout.upcallMask))
        try test.memory.write(UInt64(0b101), at: test.sharedInfoField(VCPUInfoLayout.pendingSel))
        try test.memory.write(UInt64(0x1234_5678), at: test.sharedInfoField(VCPUInfoLayout.time + 0x10))
        let old = try test.memory.readBytes(at: legacy, count: VCPUInfoLayout.size)

        try registerVCPUInfo(test, mfn: 100, offset: 0x40)
        #expect(test.result == 0)
        let moved = GuestPhysicalAddress(100 * 4096 + 0x40)
        #expect(test.vcpu.vcpuInfoAddress == moved)
        #expect(test.vcpu.vcpuInfoRegistered)
        #expect(try test.memory.readBytes(at: moved, count: VCPUInfoLayout.size) == old)
        #expect(test.vcpu.upcallPending() && !test.vcpu.upcallMask())
        // The page holds a writable reference for vcpu_info besides its read-write mapping.
        #expect(test.pageInfo(100).type == .writable && test.pageInfo(100).typeCount == 2)

        // Events now land in the new copy; the legacy slot stays as it was.
        test.domain.setPending(port: 64, vcpu: 0)
        #expect(try test.physical(GuestPhysicalAddress(moved.rawValue + UInt64(VCPUInfoLayout.pendingSel))) == 0b111)
        #expect(try test.memory.read(UInt64.self, at: test.sharedInfoField(VCPUInfoLayout.pendingSel)) == 0b101)
    }

    @Test("A vcpu_info registered with nothing pending stays quiet")
    func registerVCPUInfoQuiet() throws {
        let test = try TestDomain()
        try registerVCPUInfo(test, mfn: 101, offset: 0xfc0)
        #expect(test.result == 0)
        #expect(!test.vcpu.upcallPending())
        #expect(test.vcpu.upcallMask(), "the mask was copied from the legacy slot")
        #expect(test.waker.wakes == 0)
    }

    @Test("register_vcpu_info refuses a second registration, bad offsets, non-RAM and page-table frames")
    func registerVCPUInfoInvalid() throws {
        let test = try TestDomain()
        let cases: [(mfn: UInt64, offset: UInt32)] = [
            (100, 4096 - 64 + 8),               // runs past the page
            (100, 4),                            // misaligned
            (100, 0xffff_ffff),
            (TestDomain.ramFrames, 0),           // shared_info: not RAM
            (1 << 40, 0),
            (TestDomain.l1Frame.rawValue, 0),    // a page table cannot be writable
        ]
        for (mfn, offset) in cases {
            try registerVCPUInfo(test, mfn: mfn, offset: offset)
            #expect(test.result == TestDomain.error(.EINVAL), "mfn \(mfn) offset \(offset)")
        }
        #expect(test.vcpu.vcpuInfoAddress == test.sharedInfoField(0))
        #expect(test.pageInfo(TestDomain.l1Frame).type == .l1)
        try registerVCPUInfo(test, mfn: 100, offset: 0)
        #expect(test.result == 0)
        try registerVCPUInfo(test, mfn: 102, offset: 0)
        #expect(test.result == TestDomain.error(.EINVAL), "only once")
        #expect(test.vcpu.vcpuInfoAddress == GuestPhysicalAddress(100 * 4096))
        test.call(.vcpuOp, VCPUOp.registerVCPUInfo, 0, TestDomain.unmapped)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("VCPUOP_set_singleshot_timer sets an absolute deadline, even a past one")
    func singleshot() throws {
        let test = try TestDomain()
        test.clock.advance(nanoseconds: 10_000_000)
        try test.write(SingleshotTimer(timeoutAbsNs: 25_000_000, flags: 0).encode(), at: TestDomain.buffer)
        test.call(.vcpuOp, VCPUOp.setSingleshotTimer, 0, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(test.vcpu.timer.withLock { $0.deadline } == 25_000_000)
        try test.write(SingleshotTimer(timeoutAbsNs: 1, flags: 0).encode(), at: TestDomain.buffer)
        test.call(.vcpuOp, VCPUOp.setSingleshotTimer, 0, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(test.vcpu.timer.withLock { $0.deadline } == 1)
        test.call(.vcpuOp, VCPUOp.stopSingleshotTimer, 0, 0)
        #expect(test.result == 0)
        #expect(test.vcpu.timer.withLock { $0.deadline } == nil)
    }

    @Test("VCPU_SSHOTTMR_future refuses a deadline already passed with -ETIME")
    func singleshotFuture() throws {
        let test = try TestDomain()
        test.clock.advance(nanoseconds: 10_000_000)
        try test.write(SingleshotTimer(timeoutAbsNs: 9_999_999, flags: VCPUOp.singleshotFuture).encode(), at: TestDomain.buffer)
        test.call(.vcpuOp, VCPUOp.setSingleshotTimer, 0, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.ETIME))
        #expect(test.vcpu.timer.withLock { $0.deadline } == nil)
        try test.write(SingleshotTimer(timeoutAbsNs: 10_000_001, flags: VCPUOp.singleshotFuture).encode(), at: TestDomain.buffer)
        test.call(.vcpuOp, VCPUOp.setSingleshotTimer, 0, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(test.vcpu.timer.withLock { $0.deadline } == 10_000_001)
        test.call(.vcpuOp, VCPUOp.setSingleshotTimer, 0, TestDomain.unmapped - 8)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("VCPUOP_set_periodic_timer needs a period of at least 1 ms; the first expiry is one period away")
    func periodic() throws {
        let test = try TestDomain()
        test.clock.advance(nanoseconds: 7_000)
        try test.write(UInt64(999_999), at: TestDomain.buffer)
        test.call(.vcpuOp, VCPUOp.setPeriodicTimer, 0, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EINVAL))
        #expect(test.vcpu.timer.withLock { $0.period } == nil)

        try test.write(UInt64(1_000_000), at: TestDomain.buffer)
        test.call(.vcpuOp, VCPUOp.setPeriodicTimer, 0, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(test.vcpu.timer.withLock { $0.period } == 1_000_000)
        #expect(test.vcpu.timer.withLock { $0.periodicNext } == 1_007_000)
        #expect(test.waker.wakes == 1, "the runner re-arms its timer")

        test.call(.vcpuOp, VCPUOp.stopPeriodicTimer, 0, 0)
        #expect(test.result == 0)
        #expect(test.vcpu.timer.withLock { $0.period == nil && $0.periodicNext == nil })
        test.call(.vcpuOp, VCPUOp.setPeriodicTimer, 0, TestDomain.unmapped)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("The next expiry is the earlier of the single-shot and periodic timers")
    func nextExpiry() {
        var timer = VCPU.TimerState()
        #expect(timer.nextExpiry == nil)
        timer.deadline = 50
        #expect(timer.nextExpiry == 50)
        timer.periodicNext = 40
        #expect(timer.nextExpiry == 40)
        timer.deadline = nil
        #expect(timer.nextExpiry == 40)
    }

    @Test("set_timer_op sets an absolute deadline; 0 stops the timer")
    func setTimerOp() throws {
        let test = try TestDomain()
        test.call(.setTimerOp, 123_456)
        #expect(test.result == 0)
        #expect(test.vcpu.timer.withLock { $0.deadline } == 123_456)
        test.call(.setTimerOp, 0)
        #expect(test.vcpu.timer.withLock { $0.deadline } == nil)
    }

    @Test("VCPUOP_down of the only vCPU crashes the domain: it can never run again")
    func downLastVCPU() throws {
        let test = try TestDomain()
        let outcome = test.call(.vcpuOp, VCPUOp.down, 0, 0)
        #expect(outcome == .stop)
        #expect(test.isCrashed)
        #expect(!test.vcpu.online)
    }

    /// A vcpu_guest_context as Linux's cpu_initialize_context fills it.
    static func linuxContext(rip: UInt64 = TestDomain.va(TestDomain.codePFN) + 0x40, gdtFrame: UInt64 = 300) -> [UInt8] {
        var writer = ByteWriter(size: VCPUGuestContext.size)
        writer.set(VCPUGuestContext.inKernel, at: 512)
        writer.set(UInt64(0x1234), at: 520 + 112)                       // rdi
        writer.set(rip, at: 520 + 128)
        writer.set(UInt64(0x1000), at: 520 + 144)                      // rflags: IOPL 1
        writer.set(TestDomain.va(TestDomain.stackTopPFN) - 64, at: 520 + 152)   // rsp
        let trap = TrapInfo(vector: 14, flags: 0, cs: 0x10, address: TestDomain.va(TestDomain.codePFN) + 0x80)
        for (offset, byte) in trap.encode().enumerated() { writer.set(byte, at: 720 + 14 * TrapInfo.size + offset) }
        writer.set(gdtFrame, at: 4832)
        writer.set(UInt64(16), at: 4960)                               // gdt_ents
        writer.set(UInt64(0x18), at: 4968)                             // kernel_ss
        writer.set(TestDomain.va(TestDomain.stackTopPFN), at: 4976)    // kernel_sp
        writer.set(TestDomain.l4Frame.rawValue << 12, at: 4984 + 3 * 8) // ctrlreg[3]
        writer.set(TestDomain.va(TestDomain.codePFN) + 0x100, at: 5112) // event callback
        writer.set(TestDomain.va(TestDomain.codePFN) + 0x140, at: 5120) // failsafe callback
        writer.set(UInt64(0xffff_8880_0000_0000), at: 5152)            // gs_base_kernel
        return writer.bytes
    }

    @Test("VCPUOP_initialise gives vCPU 1 Linux's context: page table, GDT, traps, callbacks, stack, GS base; then VCPUOP_up")
    func initialise() throws {
        let test = try TestDomain(vcpus: 2)
        for (index, value) in [2: DescriptorTableTests.kernelCode, 3: DescriptorTableTests.kernelData] {
            try test.memory.write(value, at: GuestPhysicalAddress(300 * 4096 + UInt64(index) * 8))
        }
        let address = TestDomain.buffer + 0x2000
        let target = test.domain.vcpus[1]
        let l4Before = test.pageInfo(TestDomain.l4Frame.rawValue).typeCount

        // What is refused changes nothing.
        var bad = Self.linuxContext(rip: 1 << 47)
        try test.write(bad, at: address)
        test.call(.vcpuOp, VCPUOp.initialise, 1, address)
        #expect(test.result == TestDomain.error(.EINVAL))
        bad = Self.linuxContext()
        bad[4984 + 25] = 0; bad[4984 + 26] = 0x01   // ctrlreg[3] 0x10000: frame 16, a data page, not an L4
        try test.write(bad, at: address)
        test.call(.vcpuOp, VCPUOp.initialise, 1, address)
        #expect(test.result == TestDomain.error(.EINVAL))
        bad = Self.linuxContext()
        bad[512] |= UInt8(VCPUGuestContext.fpuValid)
        try test.write(bad, at: address)
        test.call(.vcpuOp, VCPUOp.initialise, 1, address)
        #expect(test.result == TestDomain.error(.ENOSYS))
        #expect(!target.initialised && target.startContext == nil)
        #expect(test.pageInfo(TestDomain.l4Frame.rawValue).typeCount == l4Before)
        #expect(test.pageInfo(300).typeCount == 0)
        test.call(.vcpuOp, VCPUOp.up, 1, 0)
        #expect(test.result == TestDomain.error(.EINVAL), "not initialised: cannot come up")

        try test.write(Self.linuxContext(), at: address)
        test.call(.vcpuOp, VCPUOp.initialise, 1, address)
        #expect(test.result == 0)
        #expect(target.initialised && target.mode == .kernel)
        #expect(target.kernelTable == TestDomain.l4Frame && target.userTable == nil)
        #expect(test.pageInfo(TestDomain.l4Frame.rawValue).typeCount == l4Before + 1)
        #expect(target.gdtFrames == [FrameNumber(300)] && target.gdtEntries == 16)
        #expect(test.pageInfo(300) == PageInfo(type: .segmentDescriptor, typeCount: 1, pinned: false, mappings: 0))
        #expect(target.trapTable[14]?.address == TestDomain.va(TestDomain.codePFN) + 0x80 && target.trapTable[14]?.cs == 0x13)
        #expect(target.callbacks[.event]?.address == TestDomain.va(TestDomain.codePFN) + 0x100)
        #expect(target.callbacks[.failsafe]?.masksEvents == false)
        #expect(target.kernelSS == 0x1b && target.kernelSP == TestDomain.va(TestDomain.stackTopPFN))
        #expect(target.virtualIOPL == 1)
        let start = try #require(target.startContext)
        #expect(start.rip == TestDomain.va(TestDomain.codePFN) + 0x40 && start.rdi == 0x1234)
        #expect(start.rsp == TestDomain.va(TestDomain.stackTopPFN) - 64)
        #expect(start.rflags & RFlags.iopl == 0 && start.rflags & RFlags.interrupt != 0)
        #expect(start.gsBase == 0xffff_8880_0000_0000 && start.cs == FlatSelector.kernelCS64)

        // Once is all: a second initialisation is -EEXIST, and vCPU 0 has its context.
        test.call(.vcpuOp, VCPUOp.initialise, 1, address)
        #expect(test.result == TestDomain.error(.EEXIST))
        test.call(.vcpuOp, VCPUOp.initialise, 0, address)
        #expect(test.result == TestDomain.error(.EEXIST))
        test.call(.vcpuOp, VCPUOp.up, 1, 0)
        #expect(test.result == 0 && target.online)
        try test.checkPageBookkeeping()
    }

    @Test("VCPUOP_register_vcpu_time_memory_area gets a copy of vcpu_time_info at once and at each update; 0 stops it")
    func timeMemoryArea() throws {
        let test = try TestDomain()
        let record = VCPUTimeInfo(version: 6, tscTimestamp: 0x1234, systemTime: 5_000_000, tscToSystemMul: 0x8000_0000,
                                  tscShift: -1, flags: VCPUTimeInfo.flagTSCStable)
        let timeAddress = GuestPhysicalAddress(test.vcpu.vcpuInfoAddress.rawValue + UInt64(VCPUInfoLayout.time))
        try test.memory.writeBytes(record.encode(), at: timeAddress)
        let area = TestDomain.buffer + 0x300
        try test.write(le(area), at: TestDomain.buffer)
        test.call(.vcpuOp, VCPUOp.registerVCPUTimeMemoryArea, 0, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(try test.read(area, count: VCPUTimeInfo.size) == record.encode())
        // A later update is copied too; the version stays even once written.
        var later = record
        later.version = 8
        later.systemTime = 9_000_000
        try test.memory.writeBytes(later.encode(), at: timeAddress)
        test.vcpu.copyTimeInfoToRegisteredArea()
        #expect(try test.read(area, count: VCPUTimeInfo.size) == later.encode())
        // 0 unregisters: no more copies.
        try test.write(le(UInt64(0)), at: TestDomain.buffer)
        test.call(.vcpuOp, VCPUOp.registerVCPUTimeMemoryArea, 0, TestDomain.buffer)
        #expect(test.result == 0 && test.vcpu.timeMemoryArea == nil)
        try test.memory.writeBytes(record.encode(), at: timeAddress)
        test.vcpu.copyTimeInfoToRegisteredArea()
        #expect(try test.read(area, count: VCPUTimeInfo.size) == later.encode())
        // An unreadable argument is -EFAULT.
        test.call(.vcpuOp, VCPUOp.registerVCPUTimeMemoryArea, 0, TestDomain.unmapped)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("VCPUOP_up of a vCPU never initialised is -EINVAL; of vCPU 0 it brings it back")
    func up() throws {
        let test = try TestDomain()
        test.call(.vcpuOp, VCPUOp.up, 0, 0)
        #expect(test.result == 0)
        #expect(test.vcpu.online)
    }

    @Test("Unimplemented vcpu_op commands are -ENOSYS", arguments: [
        VCPUOp.sendNMI, VCPUOp.getPhysid, VCPUOp.registerVCPUTimePhysArea, VCPUOp.registerRunstatePhysArea, 99,
    ])
    func unknown(command: UInt64) throws {
        let test = try TestDomain()
        test.call(.vcpuOp, command, 0, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.ENOSYS))
    }
}
