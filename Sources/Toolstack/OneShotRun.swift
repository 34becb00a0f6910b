import Backends
import Foundation
import Hypervisor
import ImageLoader
import KVM
import Machine
import XenABI

/// `domus run`: build one domain, run it in the foreground with its console on stdout,
/// and turn how it ended into an exit status.
public enum OneShotRun {
    /// Exit statuses of `domus run` (documented in the README).
    public enum ExitStatus: Int32, Sendable {
        case poweroff = 0
        case crash = 1
        case usage = 2
        case reboot = 3
        case hypervisorFault = 4
        case suspend = 5
        case watchdog = 6
        case softReset = 7
        case destroyed = 8
        case timeout = 124
    }

    public struct Options: Sendable {
        public var spec: DomainSpec
        public var verbose = false
        public var trace = false
        /// Write guest RIP samples (one every millisecond of each vCPU) to this file.
        public var sampleFile: String?
        public var timeoutSeconds: Double?
        public var statistics = false
        /// Connect the terminal to the guest's console both ways (Ctrl-] detaches and destroys).
        public var interactive = false
        public init(spec: DomainSpec) { self.spec = spec }
    }

    /// Result of a run, for callers that want more than the status (tests, benchmarks).
    public struct Outcome: Sendable {
        public let status: ExitStatus
        public let lifecycle: DomainLifecycle?
        public let elapsedSeconds: Double
        public let hypercalls: [UInt64: UInt64]
        /// Of `hypercalls`, those the in-VM ring-0 core completed without an exit.
        public var inVM: [UInt64: UInt64] = [:]
        /// Traps and upcalls the in-VM ring-0 core delivered to the guest kernel
        /// without an exit, by kind.
        public var deliveredInVM: [String: UInt64] = [:]
        public let exits: [String: UInt64]
        /// Host nanoseconds from exit to re-entry (blocked time left out), by exit kind
        /// and, for hypercall exits, by hypercall number.
        public var exitNanoseconds: [String: UInt64] = [:]
        public var hypercallExitNanoseconds: [UInt64: UInt64] = [:]
        /// What happened on exits and resumes that is not an exit itself.
        public var events: [String: UInt64] = [:]
        /// Seconds spent building the domain (decompressing and loading the kernel,
        /// page tables, start info), before its first instruction.
        public var buildSeconds: Double = 0
        /// Per vCPU: nanoseconds in guest code (inside KVM_RUN) and blocked
        /// (SCHEDOP_block, waiting for an event or timer), over `runNanoseconds`.
        public var vcpuTimes: [(guest: UInt64, blocked: UInt64)] = []
        public var runNanoseconds: UInt64 = 0
    }

    /// Runs the domain; console output goes to `output`, diagnostics to `diagnostics`.
    public static func run(_ options: Options, output: @escaping @Sendable ([UInt8]) -> Void,
                           diagnostics: @escaping @Sendable (String) -> Void) -> Outcome {
        let log = HypervisorLog(echoLevel: options.trace ? .trace : (options.verbose ? .debug : .warning),
                                sink: { diagnostics($0) })
        let start = HostClockReading.now()
        func failure(_ status: ExitStatus, _ message: String) -> Outcome {
            diagnostics("domus: \(message)")
            return Outcome(status: status, lifecycle: nil, elapsedSeconds: HostClockReading.since(start), hypercalls: [:], exits: [:])
        }
        if let age = HostClockReading.processAgeMilliseconds() { log.log(.debug, "domus: run starts \(age) ms after the process") }
        // The kernel decompresses on another thread while KVM is probed.
        let preload = DomainBuilder.startLoadingKernel(options.spec)
        let kvm: KVMSystem
        do { kvm = try KVMSystem() } catch {
            return failure(.crash, "cannot use /dev/kvm: \(error)")
        }
        let tscKHz: UInt64
        do { tscKHz = try kvm.guestTSCKHz() } catch {
            return failure(.crash, "cannot read the guest TSC frequency: \(error)")
        }
        let clock = KVMHostClock(tscHz: tscKHz * 1000)
        let hostLeaves = ((try? kvm.supportedCPUID()) ?? []).map {
            CPUIDPolicy.Leaf(function: $0.function, index: $0.index, eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx,
                             indexed: $0.flags & CPUIDEntry.significantIndex != 0)
        }
        let prepared: PreparedDomain
        do {
            prepared = try DomainBuilder.build(options.spec, log: log, clock: clock, cpuid: CPUIDPolicy(hostLeaves: hostLeaves),
                                               xenstore: XenStoreService(log: log), preload: preload, consoleOutput: output)
        } catch {
            return failure(error.isUserError ? .usage : .crash, error.description)
        }
        let buildSeconds = HostClockReading.since(start)
        let domain = prepared.domain
        domain.consoleIOSink.withLock { $0 = output }
        if options.trace { domain.trace.store(true, ordering: .relaxed) }
        let machine: DomainMachine
        do {
            machine = try DomainMachine(kvm: kvm, domain: domain, area: prepared.area, boot: prepared.boot, clock: clock,
                                        sampleInterval: options.sampleFile == nil ? nil : 1_000_000, apicTimer: options.spec.usesAPICTimer)
        } catch {
            return failure(.crash, "cannot create the domain's VM: \(error)")
        }
        var console: InteractiveConsole?
        if options.interactive {
            let interactive = InteractiveConsole()
            interactive.start(console: prepared.console) { [machine] in
                machine.destroy(reason: "console detached with Ctrl-]")
            }
            console = interactive
            diagnostics("domus: console attached to \(domain.name); Ctrl-] detaches and destroys the domain")
        }
        defer { console?.stop() }
        let runStart = HostClockReading.now()
        machine.start()
        if let age = HostClockReading.processAgeMilliseconds() { log.log(.debug, "domus: the domain starts \(age) ms after the process") }
        var timedOut = false
        if let timeout = options.timeoutSeconds {
            if !machine.waitUntilStopped(seconds: timeout) {
                timedOut = true
                // What each vCPU was waiting for, before the domain goes.
                for vcpu in domain.vcpus { diagnostics("domus: \(vcpu.stateSummary())") }
                machine.destroy(reason: "timed out after \(timeout) s")
                _ = machine.waitUntilStopped(seconds: 10)
            }
        } else {
            machine.waitUntilStopped()
        }
        prepared.console.drain()
        if let path = options.sampleFile {
            let samples = machine.guestSamples
            let text = "# domus guest samples: seconds since the vCPU started, vCPU, where (kernel, user, hypervisor), RIP\n"
                + samples.map(\.line).joined(separator: "\n") + "\n"
            if FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) {
                diagnostics("domus: \(samples.count) guest samples written to \(path)")
            } else {
                diagnostics("domus: cannot write the guest samples to \(path)")
            }
        }
        let lifecycle = domain.lifecycle.withLock { $0 }
        let status: ExitStatus
        switch lifecycle {
        case let .shutdown(reason):
            switch reason {
            case .poweroff: status = .poweroff
            case .reboot: status = .reboot
            case .crash: status = .crash
            case .suspend: status = .suspend
            case .watchdog: status = .watchdog
            case .softReset: status = .softReset
            }
            if reason != .poweroff { diagnostics("domus: domain \(domain.name) shut down: \(reason)") }
        case let .crashed(reason):
            status = .hypervisorFault
            diagnostics("domus: domain \(domain.name) crashed: \(reason)")
            if let report = machine.crashReport { diagnostics(report) }
        case .destroyed:
            console?.stop()
            status = timedOut ? .timeout : .destroyed
            if timedOut { diagnostics("domus: domain \(domain.name) did not finish within \(options.timeoutSeconds ?? 0) s; destroyed") }
        case .running, .paused:
            status = .crash
        }
        var outcome = Outcome(status: status, lifecycle: lifecycle, elapsedSeconds: HostClockReading.since(start),
                              hypercalls: domain.hypercallCounts(), exits: domain.exitCounts())
        outcome.inVM = domain.coreHandledCounts()
        outcome.deliveredInVM = domain.coreDeliveredCounts()
        outcome.events = domain.eventCounts()
        (outcome.exitNanoseconds, outcome.hypercallExitNanoseconds) = domain.exitNanoseconds()
        outcome.buildSeconds = buildSeconds
        outcome.runNanoseconds = UInt64(max(0, HostClockReading.since(runStart)) * 1e9)
        outcome.vcpuTimes = domain.vcpus.map { ($0.cpuTime.load(ordering: .relaxed), $0.blockedTime) }
        if options.statistics { diagnostics(statisticsReport(outcome)) }
        // A decompressed kernel still being written to the cache is finished first (a
        // guest that ends at once would otherwise leave only a temporary file).
        _ = DecompressedImageCache.waitForPendingWrites(seconds: 30)
        return outcome
    }

    /// Hypercall and exit counts, one per line, most frequent first.
    public static func statisticsReport(_ outcome: Outcome) -> String {
        var lines = ["domus: ran \(String(format: "%.3f", outcome.elapsedSeconds)) s (domain build \(String(format: "%.3f", outcome.buildSeconds)) s)"]
        let seconds = { (nanoseconds: UInt64) in String(format: "%.3f", Double(nanoseconds) / 1e9) }
        for (id, times) in outcome.vcpuTimes.enumerated() {
            // What is neither guest code nor blocked is the hypervisor's (exits, the
            // exit loop) or the host scheduler's.
            let other = outcome.runNanoseconds > times.guest &+ times.blocked ? outcome.runNanoseconds - times.guest - times.blocked : 0
            lines.append("domus: vCPU \(id): guest code \(seconds(times.guest)) s, blocked \(seconds(times.blocked)) s, hypervisor and host \(seconds(other)) s")
        }
        lines.append("domus: hypercalls:")
        let milliseconds = { (nanoseconds: UInt64) in String(format: "%.1f ms", Double(nanoseconds) / 1e6) }
        for (number, count) in outcome.hypercalls.sorted(by: { $0.value > $1.value }) {
            var notes: [String] = []
            if let inVM = outcome.inVM[number] { notes.append("\(inVM) in the VM, without an exit") }
            if let time = outcome.hypercallExitNanoseconds[number] { notes.append("\(milliseconds(time)) in the host on the exits") }
            lines.append("  \(Hypercall.name(of: number)) \(count)" + (notes.isEmpty ? "" : " (\(notes.joined(separator: "; ")))"))
        }
        if !outcome.deliveredInVM.isEmpty {
            lines.append("domus: delivered to the guest kernel in the VM, without an exit:")
            for (kind, count) in outcome.deliveredInVM.sorted(by: { $0.value > $1.value }) {
                lines.append("  \(kind) \(count)")
            }
        }
        lines.append("domus: exits (host time from the exit to the next entry, blocked time left out):")
        for (kind, count) in outcome.exits.sorted(by: { $0.value > $1.value }) {
            let time = outcome.exitNanoseconds[kind].map { ", \(milliseconds($0))" } ?? ""
            lines.append("  \(kind) \(count)\(time)")
        }
        if !outcome.events.isEmpty {
            lines.append("domus: on the way (not exits):")
            for (kind, count) in outcome.events.sorted(by: { $0.value > $1.value }) {
                lines.append("  \(kind) \(count)")
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// Wall-clock stopwatch.
enum HostClockReading {
    static func now() -> Date { Date() }
    static func since(_ start: Date) -> Double { Date().timeIntervalSince(start) }

    /// Milliseconds since this process started (from /proc/self/stat, to 10 ms), for
    /// the debug log's account of where a boot's time goes; nil where it is unknown.
    static func processAgeMilliseconds() -> Int? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command's closing parenthesis start at field 3; starttime is 22.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let started = Double(fields[19]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var boot = timespec()
        guard ticks > 0, clock_gettime(CLOCK_BOOTTIME, &boot) == 0 else { return nil }
        let now = Double(boot.tv_sec) + Double(boot.tv_nsec) / 1e9
        return Int(((now - started / ticks) * 1000).rounded())
    }
}
