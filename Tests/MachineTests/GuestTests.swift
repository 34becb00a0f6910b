import Foundation
import KVM
import Synchronization
import Testing
@testable import Toolstack

/// The PV test guests of guests/ (built by `make -C guests`), booted on /dev/kvm.
/// Each prints `domus-test: PASS <name>` and powers off, or prints FAIL and crashes.
@Suite(.serialized, .enabled(if: KVMSystem.isAvailable, "needs a usable /dev/kvm"))
struct GuestTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    struct Run {
        let status: OneShotRun.ExitStatus
        let console: String
        let diagnostics: String
        let outcome: OneShotRun.Outcome
    }

    static func boot(_ guest: String, cmdline: String = "", memory: UInt64 = 32, timeout: Double = 60) throws -> Run {
        let path = repository.appendingPathComponent("guests/build/\(guest)").path
        try #require(FileManager.default.fileExists(atPath: path), "guests/build/\(guest) is missing: run `make -C guests` first")
        let console = Mutex<[UInt8]>([])
        let diagnostics = Mutex<[String]>([])
        var options = OneShotRun.Options(spec: DomainSpec(kernelPath: path, commandLine: cmdline, memoryMiB: memory))
        options.timeoutSeconds = timeout
        let outcome = OneShotRun.run(options, output: { bytes in console.withLock { $0 += bytes } },
                                     diagnostics: { line in diagnostics.withLock { $0.append(line) } })
        return Run(status: outcome.status, console: String(decoding: console.withLock { $0 }, as: UTF8.self),
                   diagnostics: diagnostics.withLock { $0.joined(separator: "\n") }, outcome: outcome)
    }

    static func expectPass(_ guest: String, _ run: Run) {
        #expect(run.console.contains("domus-test: PASS \(guest)"), "console:\n\(run.console)\ndiagnostics:\n\(run.diagnostics)")
        #expect(!run.console.contains("domus-test: not ok"), "console:\n\(run.console)")
        #expect(run.status == .poweroff, "diagnostics:\n\(run.diagnostics)")
    }

    @Test("hello: console ring and console_io, start_info, M2P/p2m")
    func hello() throws {
        let run = try Self.boot("hello")
        Self.expectPass("hello", run)
        #expect(run.console.contains("Hello from a Xen PV guest\n"))
        #expect(run.console.contains("Hello from a Xen PV guest (console_io)"))
    }

    @Test("shutdown reasons become exit statuses", arguments: [
        ("poweroff", OneShotRun.ExitStatus.poweroff), ("reboot", .reboot), ("crash", .crash), ("watchdog", .watchdog),
    ])
    func shutdown(reason: String, status: OneShotRun.ExitStatus) throws {
        let run = try Self.boot("shutdown", cmdline: "reason=\(reason)")
        #expect(run.console.contains("domus-test: shutdown reason=\(reason)"), "console:\n\(run.console)")
        #expect(run.status == status, "diagnostics:\n\(run.diagnostics)")
    }

    @Test("traps: #UD #BP #GP #PF #DE frames, user-mode round trip")
    func traps() throws { Self.expectPass("traps", try Self.boot("traps")) }

    @Test("syscall from guest user mode reaches the syscall callback")
    func userSyscall() throws { Self.expectPass("usersyscall", try Self.boot("usersyscall")) }

    @Test("hypercall errors: -ENOSYS, -EFAULT")
    func hypercallErrors() throws { Self.expectPass("hcerrors", try Self.boot("hcerrors")) }

    @Test("LDT: MMUEXT_SET_LDT, a segment loaded from it, update_descriptor")
    func ldt() throws { Self.expectPass("ldt", try Self.boot("ldt")) }

    @Test("failsafe callback when the CPU refuses the guest's iret frame")
    func failsafe() throws { Self.expectPass("failsafe", try Self.boot("failsafe")) }

    @Test("multicall")
    func multicall() throws { Self.expectPass("multicall", try Self.boot("multicall")) }

    @Test("hypercall benchmark guest runs and reports")
    func hypercallBenchmark() throws {
        let run = try Self.boot("hcbench")
        Self.expectPass("hcbench", run)
        #expect(run.console.contains("domus-bench: xen_version_ns="))
    }

    @Test("a kernel that does not exist is bad input (exit 2)")
    func missingKernel() {
        var options = OneShotRun.Options(spec: DomainSpec(kernelPath: "/nonexistent/kernel"))
        options.timeoutSeconds = 5
        let lines = Mutex<[String]>([])
        let outcome = OneShotRun.run(options, output: { _ in }, diagnostics: { line in lines.withLock { $0.append(line) } })
        #expect(outcome.status == .usage)
        #expect(lines.withLock { $0 }.joined().contains("/nonexistent/kernel"))
    }

    @Test("memory too small for the image is bad input (exit 2)")
    func memoryTooSmall() throws {
        let path = Self.repository.appendingPathComponent("guests/build/hello").path
        try #require(FileManager.default.fileExists(atPath: path), "run `make -C guests` first")
        var options = OneShotRun.Options(spec: DomainSpec(kernelPath: path, memoryMiB: 1))
        options.timeoutSeconds = 5
        let lines = Mutex<[String]>([])
        let outcome = OneShotRun.run(options, output: { _ in }, diagnostics: { line in lines.withLock { $0.append(line) } })
        #expect(outcome.status == .usage)
        #expect(lines.withLock { $0 }.joined().contains("memory too small"))
    }

    @Test("a guest that never finishes is destroyed at the timeout (exit 124)")
    func timeout() throws {
        // hcbench takes far longer than 50 ms, so the deadline always hits first.
        let path = Self.repository.appendingPathComponent("guests/build/hcbench").path
        try #require(FileManager.default.fileExists(atPath: path), "run `make -C guests` first")
        var options = OneShotRun.Options(spec: DomainSpec(kernelPath: path, memoryMiB: 32))
        options.timeoutSeconds = 0.05
        let outcome = OneShotRun.run(options, output: { _ in }, diagnostics: { _ in })
        #expect(outcome.status == .timeout)
    }
}
