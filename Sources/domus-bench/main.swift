import Foundation
import Synchronization
import Toolstack

/// `domus-bench`: Domus's figures, each beside a peer measured in the same invocation.
///
///     domus-bench hypercall [--calls N] [--runs R] [--guest PATH]
///
/// Null-hypercall round trip: the hcbench PV guest times N xen_version calls through
/// the hypercall page on Domus; the peer is the bare KVM round trip of BareRoundTrip
/// (the same ring-3 → #GP → ring-0 stub → host → iretq path with no hypervisor work).
/// Each is run R times and the median is reported. The same guest also times a
/// hypercall the ring-0 core completes without an exit, and an exit that KVM handles
/// in the kernel (`cpuid`), which frame what a trip to the host costs.
///
///     domus-bench create [--runs R] [--guest PATH]
///
/// Domain create-to-running time (CreateBench.swift): from the create request to the
/// first vCPU entering the guest, in-process and through domusd's control socket.
///
///     domus-bench xenstore [--operations N]
///
/// XenStore operations per second for a local client (XenStoreBench.swift).

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

func value(of flag: String, in arguments: [String]) -> String? {
    guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("domus-bench: \(message)\n".utf8))
    exit(2)
}

let arguments = Array(CommandLine.arguments.dropFirst())
let usage = "usage: domus-bench hypercall [--calls N] [--runs R] [--guest PATH]\n       domus-bench create [--runs R] [--guest PATH]\n       domus-bench xenstore [--operations N]"
guard let command = arguments.first, ["hypercall", "create", "xenstore"].contains(command) else { fail(usage) }
if command == "create" {
    CreateBench.main(arguments)
    exit(0)
}
if command == "xenstore" {
    XenStoreBench.main(arguments)
    exit(0)
}
let calls = value(of: "--calls", in: arguments).map { Int($0) ?? -1 } ?? 10_000
let runs = value(of: "--runs", in: arguments).map { Int($0) ?? -1 } ?? 5
guard calls > 0, calls <= 10_000_000 else { fail("--calls must be between 1 and 10000000") }
guard runs > 0, runs <= 100 else { fail("--runs must be between 1 and 100") }
let repository = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let guest = value(of: "--guest", in: arguments) ?? repository.appendingPathComponent("guests/build/hcbench").path
guard FileManager.default.fileExists(atPath: guest) else { fail("\(guest) not found: run `make -C guests`") }
if calls != 10_000 && value(of: "--guest", in: arguments) == nil {
    fail("the hcbench guest makes 10000 calls; --calls other than 10000 applies to the bare peer only with --guest")
}

/// The number after `key=` on the console's `domus-bench:` lines.
func reported(_ key: String, in text: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix("domus-bench: ") {
        for field in line.dropFirst("domus-bench: ".count).split(separator: " ") {
            let parts = field.split(separator: "=", maxSplits: 1)
            if parts.count == 2, parts[0] == key { return Double(parts[1]) }
        }
    }
    return nil
}

var bare: [Double] = []
var domus: [Double] = []
var inVM: [Double] = []
var cpuid: [Double] = []
for _ in 0..<runs {
    do { bare.append(try BareRoundTrip.run(calls: calls).nanosecondsPerCall) } catch {
        fail("the bare KVM round trip failed: \(error)")
    }
    let console = Mutex<[UInt8]>([])
    var options = OneShotRun.Options(spec: DomainSpec(kernelPath: guest, memoryMiB: 32))
    options.timeoutSeconds = 120
    let outcome = OneShotRun.run(options, output: { bytes in console.withLock { $0 += bytes } }, diagnostics: { _ in })
    let text = String(decoding: console.withLock { $0 }, as: UTF8.self)
    guard outcome.status == .poweroff, let number = reported("xen_version_ns", in: text),
          let syscallNs = reported("stack_switch_syscall_ns", in: text), let cpuidNs = reported("raw_cpuid_ns", in: text) else {
        fail("the hcbench guest did not report (status \(outcome.status))")
    }
    domus.append(number)
    inVM.append(syscallNs)
    cpuid.append(cpuidNs)
}
let bareNs = median(bare)
let domusNs = median(domus)
print("null hypercall round trip, \(calls) calls per run, median of \(runs) runs")
print(String(format: "  bare KVM (ring-3 #GP -> ring-0 stub -> host -> iretq)   %8.2f us", bareNs / 1000))
print(String(format: "  Domus xen_version via the hypercall page               %8.2f us", domusNs / 1000))
print(String(format: "  Domus over bare                                        %+7.1f %%", (domusNs / bareNs - 1) * 100))
print("and, for scale, in the same guest:")
print(String(format: "  stack_switch by syscall (ring-0 core; an exit on PVM)  %8.2f us", median(inVM) / 1000))
print(String(format: "  cpuid (an exit KVM handles in the kernel)              %8.2f us", median(cpuid) / 1000))
