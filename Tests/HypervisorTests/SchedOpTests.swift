// sched_op (SchedOp.swift).

import GuestMemory
import Synchronization
import Testing
import XenABI

@testable import Hypervisor

@Suite("sched_op")
struct SchedOpTests {
    @Test("SCHEDOP_yield returns 0 and asks the runner to yield")
    func yield() throws {
        let test = try TestDomain()
        test.context.rax = 0xdead
        #expect(test.call(.schedOp, SchedOp.yield, 0) == .yield)
        #expect(test.result == 0)
    }

    @Test("SCHEDOP_block with nothing pending unmasks events and blocks")
    func blockWithoutPending() throws {
        let test = try TestDomain()
        #expect(test.vcpu.upcallMask())
        #expect(test.call(.schedOp, SchedOp.block, 0) == .block)
        #expect(test.result == 0)
        #expect(!test.vcpu.upcallMask(), "block enables events (vcpu_block_enable_events)")
    }

    @Test("SCHEDOP_block with an upcall pending unmasks events and returns at once")
    func blockWithPending() throws {
        let test = try TestDomain()
        try test.memory.write(UInt8(1), at: test.vcpuInfoField(VCPUInfoLayout.upcallPending))
        #expect(test.call(.schedOp, SchedOp.block, 0) == .value(0))
        #expect(test.result == 0)
        #expect(!test.vcpu.upcallMask())
    }

    @Test("SCHEDOP_shutdown sets the lifecycle, notifies the owner, wakes every vCPU and stops", arguments: [
        ShutdownReason.poweroff, .reboot, .suspend, .crash, .watchdog, .softReset,
    ])
    func shutdown(reason: ShutdownReason) throws {
        let test = try TestDomain()
        let finished = Mutex<[DomainLifecycle]>([])
        test.domain.onFinish.withLock { $0 = { end in finished.withLock { $0.append(end) } } }
        try test.write(reason.rawValue, at: TestDomain.buffer)
        #expect(test.call(.schedOp, SchedOp.shutdown, TestDomain.buffer) == .stop)
        #expect(test.lifecycle == .shutdown(reason))
        #expect(finished.withLock { $0 } == [.shutdown(reason)])
        #expect(test.wakers.allSatisfy { $0.wakes == 1 })
        #expect(test.domain.isFinished)
    }

    @Test("Only the first shutdown counts")
    func firstShutdownWins() throws {
        let test = try TestDomain()
        try test.write(ShutdownReason.reboot.rawValue, at: TestDomain.buffer)
        test.call(.schedOp, SchedOp.shutdown, TestDomain.buffer)
        try test.write(ShutdownReason.poweroff.rawValue, at: TestDomain.buffer)
        test.call(.schedOp, SchedOp.shutdown, TestDomain.buffer)
        #expect(test.lifecycle == .shutdown(.reboot))
    }

    @Test("An unknown shutdown reason is -EINVAL and changes nothing")
    func badReason() throws {
        let test = try TestDomain()
        for reason: UInt32 in [6, 0xffff_ffff] {
            try test.write(reason, at: TestDomain.buffer)
            test.call(.schedOp, SchedOp.shutdown, TestDomain.buffer)
            #expect(test.result == TestDomain.error(.EINVAL))
        }
        #expect(test.lifecycle == .running)
    }

    @Test("A shutdown argument the guest cannot read is -EFAULT", arguments: [TestDomain.unmapped, TestDomain.unmapped - 2, 0])
    func shutdownBadPointer(address: UInt64) throws {
        let test = try TestDomain()
        test.call(.schedOp, SchedOp.shutdown, address)
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(test.lifecycle == .running)
    }

    @Test("SCHEDOP_shutdown_code records the reason without stopping")
    func shutdownCode() throws {
        let test = try TestDomain()
        try test.write(ShutdownReason.crash.rawValue, at: TestDomain.buffer)
        test.call(.schedOp, SchedOp.shutdownCode, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(test.domain.shutdownCode.load(ordering: .relaxed) == 3)
        #expect(test.lifecycle == .running)
        try test.write(UInt32(9), at: TestDomain.buffer)
        test.call(.schedOp, SchedOp.shutdownCode, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EINVAL))
        test.call(.schedOp, SchedOp.shutdownCode, TestDomain.unmapped)
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(test.domain.shutdownCode.load(ordering: .relaxed) == 3)
    }

    /// Writes a sched_poll for `ports` at the buffer (ports array 64 bytes further).
    func writePoll(_ test: TestDomain, ports: [UInt32], count: UInt32? = nil, timeout: UInt64 = 0,
                   portsAddress: UInt64? = nil) throws {
        let array = TestDomain.buffer + 64
        try test.write(ports.flatMap(le), at: array)
        var bytes = le(portsAddress ?? array) + le(count ?? UInt32(ports.count)) + le(UInt32(0))
        bytes += le(timeout)
        #expect(bytes.count == SchedPoll.size)
        try test.write(bytes, at: TestDomain.buffer)
    }

    @Test("SCHEDOP_poll with events masked and nothing pending polls the ports until the timeout")
    func poll() throws {
        let test = try TestDomain()
        try writePoll(test, ports: [3, 70], timeout: 123_456_789)
        #expect(test.call(.schedOp, SchedOp.poll, TestDomain.buffer) == .poll(ports: [3, 70], deadline: 123_456_789))
        #expect(test.result == 0)
        try writePoll(test, ports: [5])
        #expect(test.call(.schedOp, SchedOp.poll, TestDomain.buffer) == .poll(ports: [5], deadline: nil), "timeout 0 is no timeout")
    }

    @Test("SCHEDOP_poll returns at once when a polled port is pending")
    func pollPending() throws {
        let test = try TestDomain()
        test.domain.setPending(port: 70, vcpu: 0)
        try writePoll(test, ports: [3, 70])
        #expect(test.call(.schedOp, SchedOp.poll, TestDomain.buffer) == .value(0))
    }

    @Test("SCHEDOP_poll accepts at most 128 ports")
    func pollLimit() throws {
        let test = try TestDomain()
        try writePoll(test, ports: [UInt32](repeating: 1, count: 128))
        #expect(test.call(.schedOp, SchedOp.poll, TestDomain.buffer) == .poll(ports: [UInt32](repeating: 1, count: 128), deadline: nil))
        try writePoll(test, ports: [UInt32](repeating: 1, count: 129))
        test.call(.schedOp, SchedOp.poll, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EINVAL))
        try writePoll(test, ports: [1], count: 0xffff_ffff)
        test.call(.schedOp, SchedOp.poll, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EINVAL))
    }

    @Test("SCHEDOP_poll refuses ports beyond the 2-level limit")
    func pollInvalid() throws {
        let test = try TestDomain()
        try writePoll(test, ports: [4096])
        test.call(.schedOp, SchedOp.poll, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EINVAL))
    }

    @Test("SCHEDOP_poll with events enabled polls, and returns at once when an upcall is due (Linux's PV spinlocks)")
    func pollEventsEnabled() throws {
        let test = try TestDomain()
        test.vcpu.setUpcallMask(false)
        try writePoll(test, ports: [1])
        #expect(test.call(.schedOp, SchedOp.poll, TestDomain.buffer) == .poll(ports: [1], deadline: nil))
        // Pending on another port, unmasked: the upcall would be taken, so no sleep.
        test.domain.setPending(port: 9, vcpu: 0)
        #expect(test.vcpu.upcallPending())
        #expect(test.call(.schedOp, SchedOp.poll, TestDomain.buffer) == .value(0))
        #expect(test.result == 0)
        // Masked, the same pending upcall does not end the poll.
        test.vcpu.setUpcallMask(true)
        #expect(test.call(.schedOp, SchedOp.poll, TestDomain.buffer) == .poll(ports: [1], deadline: nil))
    }

    @Test("SCHEDOP_poll with an unreadable argument or port array is -EFAULT")
    func pollBadPointers() throws {
        let test = try TestDomain()
        test.call(.schedOp, SchedOp.poll, TestDomain.unmapped - 8)
        #expect(test.result == TestDomain.error(.EFAULT))
        try writePoll(test, ports: [1, 2], portsAddress: TestDomain.unmapped - 4)
        test.call(.schedOp, SchedOp.poll, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EFAULT))
        try writePoll(test, ports: [1], portsAddress: 0xffff_8000_0000_0000)
        test.call(.schedOp, SchedOp.poll, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("SCHEDOP_remote_shutdown is -EPERM for a domU")
    func remoteShutdown() throws {
        let test = try TestDomain()
        try test.write(UInt16(2), at: TestDomain.buffer)
        test.call(.schedOp, SchedOp.remoteShutdown, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EPERM))
        #expect(test.lifecycle == .running)
    }

    @Test("Unimplemented sched_op commands are -ENOSYS", arguments: [SchedOp.watchdog, SchedOp.pinOverride, 99])
    func unknown(command: UInt64) throws {
        let test = try TestDomain()
        test.call(.schedOp, command, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.ENOSYS))
    }
}
