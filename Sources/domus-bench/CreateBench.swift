import Foundation
import Toolstack

/// `domus-bench create`: how long a small PV guest takes from `create` to running.
///
/// "Running" is the first vCPU entering the guest: the first KVM_RUN of vCPU 0. Its
/// start is found as the moment vCPU 0's CPU time first becomes non-zero (the time of
/// the first return from KVM_RUN) minus that CPU time (how long the first run lasted).
/// Two paths are measured: DomainManager.create in-process (parse, build, VM, start),
/// and a `create` request through domusd's control socket from a client (adding the
/// protocol and the socket). The guest is the idle PV test guest (32 MiB, 1 vCPU),
/// destroyed after each run. The peer is a bare KVM program reaching its first KVM_RUN
/// in a fresh 32 MiB VM.
enum CreateBench {
    struct Sample {
        /// From the request to create() returning (the domain's vCPU thread started).
        var created: Double
        /// From the request to the first guest entry.
        var running: Double
    }

    static func main(_ arguments: [String]) {
        let runs = value(of: "--runs", in: arguments).map { Int($0) ?? -1 } ?? 20
        guard runs > 0, runs <= 1000 else { fail("--runs must be between 1 and 1000") }
        // .build/<triple>/<configuration>/domus-bench, four levels under the repository.
        let repository = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let guest = value(of: "--guest", in: arguments) ?? repository.appendingPathComponent("guests/build/idle").path
        guard FileManager.default.fileExists(atPath: guest) else { fail("\(guest) not found: run `make -C guests`") }
        let config = "name = \"bench\"\nkernel = \"\(guest)\"\nmemory = 32\n"

        let manager: DomainManager
        do { manager = try DomainManager(events: .discard) } catch { fail("\(error)") }
        var direct: [Sample] = []
        for _ in 0..<runs {
            direct.append(measure(manager) {
                _ = try manager.create(configText: config, sourceName: "bench.cfg")
            })
        }

        let socket = NSTemporaryDirectory() + "domus-bench-\(getpid()).sock"
        let server: ControlServer
        do {
            server = try ControlServer(manager: manager, events: .discard, configuration: ControlServer.Configuration(socketPath: socket))
        } catch { fail("\(error)") }
        server.start()
        var request = ControlRequest(.create)
        request.config = config
        request.configName = "bench.cfg"
        var viaSocket: [Sample] = []
        for _ in 0..<runs {
            viaSocket.append(measure(manager) {
                let client = try ControlClient(socketPath: socket)
                defer { client.close() }
                try client.call(request, timeout: 30)
            })
        }
        server.stop()
        manager.closeAll()

        // The peer: the least a KVM program does to run code in a new VM of the same
        // size: allocate its memory, write page tables, GDT, IDT and TSS, create the VM
        // and a vCPU, set its registers, and reach KVM_RUN, all on one thread.
        var bare: [Double] = []
        for _ in 0..<runs {
            let start = Date()
            var entered: Double = 0
            do {
                _ = try BareRoundTrip.run(calls: 1, ramBytes: 32 << 20) { entered = Date().timeIntervalSince(start) }
            } catch { fail("the bare KVM peer failed: \(error)") }
            bare.append(entered)
        }

        print("domain create-to-running, idle PV test guest (32 MiB, 1 vCPU), median of \(runs) runs")
        print(String(format: "  in-process  create() returned %8.2f ms   first guest entry %8.2f ms",
                     median(direct.map(\.created)) * 1000, median(direct.map(\.running)) * 1000))
        print(String(format: "  via domusd  response received  %8.2f ms   first guest entry %8.2f ms",
                     median(viaSocket.map(\.created)) * 1000, median(viaSocket.map(\.running)) * 1000))
        print(String(format: "  bare KVM VM (32 MiB, no hypervisor) to its first KVM_RUN  %8.2f ms", median(bare) * 1000))
    }

    /// Runs `create`, finds vCPU 0's first entry, destroys the domain.
    static func measure(_ manager: DomainManager, _ create: () throws -> Void) -> Sample {
        let start = Date()
        do { try create() } catch { fail("create failed: \(error)") }
        let created = Date().timeIntervalSince(start)
        guard let vcpu = try? manager.timing("bench").vcpu0 else { fail("the domain has no vCPU 0") }
        let deadline = Date().addingTimeInterval(10)
        var running: Double?
        while Date() < deadline {
            let cpuTime = vcpu.cpuTime.load(ordering: .acquiring)
            if cpuTime > 0 {
                running = Date().timeIntervalSince(start) - Double(cpuTime) / 1e9
                break
            }
        }
        do { try manager.destroy("bench") } catch { fail("destroy failed: \(error)") }
        guard let running else { fail("vCPU 0 did not run within 10 s (cpu time \(vcpu.cpuTime.load(ordering: .acquiring)), domain \(String(describing: try? manager.list(only: "bench").first)))") }
        return Sample(created: created, running: max(running, 0))
    }
}
