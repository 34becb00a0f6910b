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
/// Each is run R times and the median is reported.
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

var bare: [Double] = []
var domus: [Double] = []
for _ in 0..<runs {
    do { bare.append(try BareRoundTrip.run(calls: calls).nanosecondsPerCall) } catch {
        fail("the bare KVM round trip failed: \(error)")
    }
    let console = Mutex<[UInt8]>([])
    var options = OneShotRun.Options(spec: DomainSpec(kernelPath: guest, memoryMiB: 32))
    options.timeoutSeconds = 120
    let outcome = OneShotRun.run(options, output: { bytes in console.withLock { $0 += bytes } }, diagnostics: { _ in })
    let text = String(decoding: console.withLock { $0 }, as: UTF8.self)
    guard outcome.status == .poweroff, let line = text.split(separator: "\n").first(where: { $0.hasPrefix("domus-bench: xen_version_ns=") }),
          let number = line.split(separator: "=").dropFirst().first.flatMap({ Double($0.split(separator: " ").first ?? "") }) else {
        fail("the hcbench guest did not report (status \(outcome.status))")
    }
    domus.append(number)
}
let bareNs = median(bare)
let domusNs = median(domus)
print("null hypercall round trip, \(calls) calls per run, median of \(runs) runs")
print(String(format: "  bare KVM (ring-3 #GP -> ring-0 stub -> host -> iretq)   %8.2f us", bareNs / 1000))
print(String(format: "  Domus xen_version via the hypercall page               %8.2f us", domusNs / 1000))
print(String(format: "  Domus over bare                                        %+7.1f %%", (domusNs / bareNs - 1) * 100))
