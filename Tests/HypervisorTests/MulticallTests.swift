// multicall (Multicall.swift).

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

@Suite("multicall")
struct MulticallTests {
    static let list = TestDomain.buffer + 0x1000

    func writeBatch(_ test: TestDomain, _ entries: [MulticallEntry], at address: UInt64 = MulticallTests.list) throws {
        try test.write(entries.flatMap { $0.encode() }, at: address)
    }

    func results(_ test: TestDomain, count: Int, at address: UInt64 = MulticallTests.list) throws -> [Int64] {
        try (0..<count).map { index in
            Int64(bitPattern: try test.read(UInt64.self, at: address + UInt64(index * MulticallEntry.size + MulticallEntry.resultOffset)))
        }
    }

    @Test("Each entry runs in order and gets its own result; the batch returns 0")
    func results() throws {
        let test = try TestDomain()
        try writeBatch(test, [
            MulticallEntry(op: Hypercall.xenVersion.rawValue, result: 0xdead, args: [XenVersionCommand.version]),
            MulticallEntry(op: Hypercall.stackSwitch.rawValue, args: [0xe02b, 0xffff_ffff_8101_0000]),
            MulticallEntry(op: Hypercall.consoleIO.rawValue, args: [ConsoleIO.read, 0, 0]),
            MulticallEntry(op: Hypercall.grantTableOp.rawValue, args: [0, 0, 0]),
            MulticallEntry(op: Hypercall.xenVersion.rawValue, args: [XenVersionCommand.pagesize]),
        ])
        #expect(test.call(.multicall, MulticallTests.list, 5) == .value(0))
        #expect(test.result == 0)
        #expect(try results(test, count: 5) == [0x0004_0013, 0, -1, -38, 4096])
        #expect(test.vcpu.kernelSP == 0xffff_ffff_8101_0000)
    }

    @Test("The entries' op and arguments are left as the guest wrote them")
    func entriesUnchanged() throws {
        let test = try TestDomain()
        let entry = MulticallEntry(op: Hypercall.fpuTaskswitch.rawValue, args: [1, 2, 3, 4, 5, 6])
        try writeBatch(test, [entry])
        test.call(.multicall, MulticallTests.list, 1)
        let after = try MulticallEntry(decoding: test.read(MulticallTests.list, count: MulticallEntry.size))
        #expect(after == MulticallEntry(op: entry.op, result: 0, args: entry.args))
        #expect(test.vcpu.virtualTS)
    }

    @Test("A nested multicall and an iret are refused per entry with -EINVAL; the rest of the batch runs")
    func nestedAndIret() throws {
        let test = try TestDomain()
        let inner = TestDomain.buffer + 0x2000
        try writeBatch(test, [MulticallEntry(op: Hypercall.fpuTaskswitch.rawValue, args: [1])], at: inner)
        try writeBatch(test, [
            MulticallEntry(op: Hypercall.multicall.rawValue, args: [inner, 1]),
            MulticallEntry(op: Hypercall.iret.rawValue, args: []),
            MulticallEntry(op: Hypercall.xenVersion.rawValue, args: [XenVersionCommand.pagesize]),
        ])
        let rip = test.context.rip
        test.call(.multicall, MulticallTests.list, 3)
        #expect(test.result == 0)
        #expect(try results(test, count: 3) == [-22, -22, 4096])
        #expect(!test.vcpu.virtualTS, "the nested batch did not run")
        #expect(test.context.rip == rip && !test.isCrashed, "the iret did not run")
    }

    @Test("Segment bases set inside a batch reach the caller's context")
    func segmentBases() throws {
        let test = try TestDomain()
        try writeBatch(test, [
            MulticallEntry(op: Hypercall.setSegmentBase.rawValue, args: [SegmentBase.fs, 0x7f00_0000_1000]),
            MulticallEntry(op: Hypercall.setSegmentBase.rawValue, args: [SegmentBase.gsKernel, 0xffff_8880_0000_2000]),
        ])
        test.call(.multicall, MulticallTests.list, 2)
        #expect(test.context.fsBase == 0x7f00_0000_1000)
        #expect(test.context.gsBase == 0xffff_8880_0000_2000)
    }

    @Test("SCHEDOP_block inside a batch blocks after the batch; shutdown stops at once")
    func blockAndShutdown() throws {
        let test = try TestDomain()
        try writeBatch(test, [
            MulticallEntry(op: Hypercall.schedOp.rawValue, args: [SchedOp.block, 0]),
            MulticallEntry(op: Hypercall.xenVersion.rawValue, args: [XenVersionCommand.pagesize]),
        ])
        #expect(test.call(.multicall, MulticallTests.list, 2) == .block)
        #expect(try results(test, count: 2) == [0, 4096])

        let reason = TestDomain.buffer + 0x3000
        try test.write(ShutdownReason.poweroff.rawValue, at: reason)
        try writeBatch(test, [
            MulticallEntry(op: Hypercall.schedOp.rawValue, result: 77, args: [SchedOp.shutdown, reason]),
            MulticallEntry(op: Hypercall.fpuTaskswitch.rawValue, result: 77, args: [1]),
        ])
        #expect(test.call(.multicall, MulticallTests.list, 2) == .stop)
        #expect(test.lifecycle == .shutdown(.poweroff))
        #expect(!test.vcpu.virtualTS)
    }

    @Test("An empty batch succeeds without reading the list")
    func empty() throws {
        let test = try TestDomain()
        test.call(.multicall, TestDomain.unmapped, 0)
        #expect(test.result == 0)
    }

    @Test("A list the guest cannot read is -EFAULT; entries before the fault have run")
    func badList() throws {
        let test = try TestDomain()
        test.call(.multicall, TestDomain.unmapped, 1)
        #expect(test.result == TestDomain.error(.EFAULT))
        test.call(.multicall, 0x8000_0000_0000_0000, 1)
        #expect(test.result == TestDomain.error(.EFAULT))

        let start = TestDomain.unmapped - UInt64(MulticallEntry.size)
        try writeBatch(test, [MulticallEntry(op: Hypercall.fpuTaskswitch.rawValue, args: [1])], at: start)
        test.call(.multicall, start, 2)
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(test.vcpu.virtualTS)
        #expect(try results(test, count: 1, at: start) == [0])
    }

    @Test("A list in read-only memory faults writing the first result, and memory stays unchanged")
    func readOnlyList() throws {
        let test = try TestDomain()
        // The fixture's L1 is mapped read-only; read as a multicall entry, its first PTE is
        // an unknown op (-ENOSYS), whose result cannot be written back.
        let list = TestDomain.va(TestDomain.l1Frame.rawValue)
        let before = try test.read(list, count: 64)
        test.call(.multicall, list, 1)
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(try test.read(list, count: 64) == before)
        #expect(!test.isCrashed)
    }
}
