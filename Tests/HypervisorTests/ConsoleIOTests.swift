// console_io (ConsoleIO.swift) and the dispatch table's handling of unknown numbers.

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

@Suite("console_io")
struct ConsoleIOTests {
    @Test("CONSOLEIO_write delivers the guest's bytes to the console sink")
    func write() throws {
        let test = try TestDomain()
        let message = Array("hello from the guest\n".utf8)
        try test.write(message, at: TestDomain.buffer)
        #expect(test.call(.consoleIO, ConsoleIO.write, UInt64(message.count), TestDomain.buffer) == .value(0))
        #expect(test.result == 0)
        #expect(test.console.output == message)
    }

    @Test("A write spanning two pages arrives whole and in order")
    func writeAcrossPages() throws {
        let test = try TestDomain()
        let message = (0..<200).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let start = TestDomain.va(20) + 4096 - 100
        try test.write(message, at: start)
        test.call(.consoleIO, ConsoleIO.write, UInt64(message.count), start)
        #expect(test.result == 0)
        #expect(test.console.output == message)
    }

    @Test("An empty write succeeds and writes nothing")
    func emptyWrite() throws {
        let test = try TestDomain()
        test.call(.consoleIO, ConsoleIO.write, 0, TestDomain.unmapped)
        #expect(test.result == 0)
        #expect(test.console.output.isEmpty)
    }

    @Test("Without a sink, console_io output goes to the hypervisor log")
    func writeToLog() throws {
        let test = try TestDomain()
        test.domain.consoleIOSink.withLock { $0 = nil }
        try test.write(Array("boot message".utf8), at: TestDomain.buffer)
        test.call(.consoleIO, ConsoleIO.write, 12, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(test.log.lines().contains { $0.hasSuffix("(d1) boot message") })
    }

    @Test("CONSOLEIO_read is refused with -EPERM")
    func read() throws {
        let test = try TestDomain()
        test.call(.consoleIO, ConsoleIO.read, 16, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EPERM))
    }

    @Test("An unknown console_io command is -ENOSYS")
    func unknownCommand() throws {
        let test = try TestDomain()
        test.call(.consoleIO, 7, 16, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.ENOSYS))
    }

    @Test("A count above the 1 MiB limit is -EINVAL, before the buffer is touched")
    func hugeCount() throws {
        let test = try TestDomain()
        test.call(.consoleIO, ConsoleIO.write, UInt64(ConsoleIOOp.maximumWrite) + 1, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EINVAL))
        test.call(.consoleIO, ConsoleIO.write, UInt64.max, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EINVAL))
        #expect(test.console.output.isEmpty)
    }

    @Test("Bad buffers are -EFAULT and write nothing", arguments: [
        TestDomain.unmapped - 10,                    // runs into the unmapped page
        TestDomain.unmapped,                         // unmapped
        0x0000_8000_0000_0000,                       // non-canonical
        HypervisorVirtualLayout.hypervisorVirtStart, // the hypervisor hole
        0,                                           // NULL: nothing mapped at VA 0
    ])
    func badBuffer(address: UInt64) throws {
        let test = try TestDomain()
        test.call(.consoleIO, ConsoleIO.write, 20, address)
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(test.console.output.isEmpty)
    }
}

@Suite("Hypercall dispatch")
struct DispatchTests {
    @Test("Unimplemented and unknown hypercall numbers are -ENOSYS and logged", arguments: [
        Hypercall.platformOp.rawValue, Hypercall.xenpmuOp.rawValue, 11, 63, 64, 1000, UInt64.max,
    ])
    func unknownNumber(number: UInt64) throws {
        let test = try TestDomain()
        test.log.echo(to: { _ in }, level: .debug)
        let outcome = test.call(number: number, [1, 2, 3])
        #expect(outcome == .value(XenError.ENOSYS.hypercallReturnValue))
        #expect(test.result == -38)
        #expect(test.log.lines().contains { $0.contains("\(Hypercall.name(of: number)) is not implemented: -ENOSYS") })
        #expect(!test.isCrashed)
    }

    @Test("Each hypercall is counted per number")
    func counting() throws {
        let test = try TestDomain()
        test.call(.xenVersion, XenVersionCommand.version)
        test.call(.xenVersion, XenVersionCommand.version)
        test.call(.fpuTaskswitch, 0)
        #expect(test.vcpu.hypercallCounts[Int(Hypercall.xenVersion.rawValue)] == 2)
        #expect(test.domain.hypercallCounts() == [Hypercall.xenVersion.rawValue: 2, Hypercall.fpuTaskswitch.rawValue: 1])
    }

    @Test("Host time on an exit is charged to the exit's kind and to the hypercall that exited, not a multicall's entries")
    func exitTime() throws {
        let test = try TestDomain()
        test.vcpu.chargeExit(5)   // nothing exited yet: not charged
        #expect(test.domain.exitNanoseconds().byKind.isEmpty)
        test.vcpu.count(exit: "syscall")
        test.call(.multicall, 0, 0)
        test.call(.xenVersion, XenVersionCommand.version)
        test.vcpu.chargeExit(100)
        test.vcpu.count(exit: "signal")
        test.vcpu.chargeExit(30)
        test.vcpu.chargeExit(7)   // charged once per exit
        test.vcpu.count(exit: "syscall")
        test.call(.xenVersion, XenVersionCommand.version)
        test.vcpu.chargeExit(1)
        let times = test.domain.exitNanoseconds()
        #expect(times.byKind == ["syscall": 101, "signal": 30])
        #expect(times.byHypercall == [Hypercall.multicall.rawValue: 100, Hypercall.xenVersion.rawValue: 1])
    }

    @Test("Arguments come from rdi, rsi, rdx, r10 and r8; other registers are left alone")
    func argumentRegisters() throws {
        let test = try TestDomain()
        test.context.rbx = 0x1111
        test.context.rcx = 0x2222
        test.context.r11 = 0x3333
        // stack_switch(ss = rdi, sp = rsi)
        test.call(.stackSwitch, 0xe02b, 0xffff_ffff_8123_4560)
        #expect(test.vcpu.kernelSP == 0xffff_ffff_8123_4560)
        #expect(test.context.rbx == 0x1111 && test.context.rcx == 0x2222 && test.context.r11 == 0x3333)
    }

    @Test("Tracing logs each hypercall with its arguments and result")
    func tracing() throws {
        let test = try TestDomain()
        test.log.echo(to: { _ in }, level: .trace)
        test.domain.trace.store(true, ordering: .relaxed)
        test.call(.xenVersion, XenVersionCommand.pagesize)
        test.call(.consoleIO, ConsoleIO.read, 0, 0)
        let lines = test.log.lines()
        #expect(lines.contains { $0.contains("d1v0: xen_version(0x7, 0x0, 0x0, 0x0, 0x0) = 0x1000") })
        #expect(lines.contains { $0.contains("d1v0: console_io(0x1, 0x0, 0x0, 0x0, 0x0) = -EPERM") })
    }
}
