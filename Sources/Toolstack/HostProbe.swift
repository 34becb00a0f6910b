import Foundation
import Hypervisor

/// This build's version.
public enum DomusVersion {
    public static let string = "0.2.0"

    /// The compiler that built Domus, for `xl info`'s cc_compiler.
    public static var compiler: String {
        #if compiler(>=6.3)
        return "Swift 6.3 or later"
        #elseif compiler(>=6.0)
        return "Swift 6"
        #else
        return "Swift"
        #endif
    }
}

/// What the host is, read from /proc (Linux), for `info`, `list`'s Domain-0 row and
/// `uptime`. Every reader returns a fallback rather than failing: a missing /proc file
/// gives an empty or zero value, never an error.
public enum HostProbe {
    /// The Xen address where the hypervisor's area starts on x86-64 (HYPERVISOR_VIRT_START).
    public static let hypervisorVirtStart: UInt64 = 0xffff_8000_0000_0000

    static func readText(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    static func firstLine(_ path: String) -> String {
        String(readText(path).split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
    }

    /// `MemTotal` and `MemAvailable` of /proc/meminfo, KiB.
    public static func memoryKB() -> (total: UInt64, available: UInt64) {
        parseMemInfo(readText("/proc/meminfo"))
    }

    static func parseMemInfo(_ text: String) -> (total: UInt64, available: UInt64) {
        var total: UInt64 = 0
        var available: UInt64?
        var free: UInt64 = 0
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == ":" })
            guard parts.count >= 2, let value = UInt64(parts[1]) else { continue }
            switch parts[0] {
            case "MemTotal": total = value
            case "MemAvailable": available = value
            case "MemFree": free = value
            default: break
            }
        }
        return (total, available ?? free)
    }

    /// Seconds since the host booted (/proc/uptime).
    public static func uptimeSeconds() -> Double {
        Double(readText("/proc/uptime").split(separator: " ").first ?? "") ?? 0
    }

    /// Host CPU time outside idle and iowait, nanoseconds (the `cpu` line of /proc/stat).
    public static func busyCPUTimeNS() -> UInt64 {
        parseBusyTime(readText("/proc/stat"))
    }

    static func parseBusyTime(_ text: String) -> UInt64 {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return 0 }
        let ticks = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard ticks.count >= 4 else { return 0 }
        // user nice system idle iowait irq softirq steal: skip idle (3) and iowait (4).
        var busy: UInt64 = 0
        for (index, value) in ticks.prefix(8).enumerated() where index != 3 && index != 4 { busy &+= value }
        let hertz = UInt64(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        return busy &* (1_000_000_000 / hertz)
    }

    /// Host CPUs.
    public static var cpuCount: Int { ProcessInfo.processInfo.processorCount }

    /// The host CPU a thread of this process named `threadName` last ran on
    /// (/proc/self/task/TID/stat field 39), if such a thread exists.
    public static func lastCPU(ofThreadsNamed names: Set<String>) -> [String: Int] {
        var found: [String: Int] = [:]
        guard !names.isEmpty, let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return found }
        for task in tasks {
            let name = firstLine("/proc/self/task/\(task)/comm")
            guard names.contains(name) else { continue }
            let stat = readText("/proc/self/task/\(task)/stat")
            // The command is in parentheses and may hold spaces: count fields after the last ')'.
            guard let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // Field 3 (state) is fields[0]; field 39 (processor) is fields[36].
            if fields.count > 36, let cpu = Int(fields[36]) { found[name] = cpu }
        }
        return found
    }

    /// The host's and hypervisor's description for `info`.
    public static func info(cpuMHz: Double?, domains: Int) -> HostInfo {
        let memory = memoryKB()
        var machine = firstLine("/proc/sys/kernel/arch")
        if machine.isEmpty {
            #if arch(x86_64)
            machine = "x86_64"
            #elseif arch(arm64)
            machine = "aarch64"
            #endif
        }
        return HostInfo(
            host: firstLine("/proc/sys/kernel/hostname"), release: firstLine("/proc/sys/kernel/osrelease"),
            version: firstLine("/proc/sys/kernel/version"), machine: machine, nrCPUs: cpuCount, cpuMHz: cpuMHz,
            totalMemoryMB: memory.total / 1024, freeMemoryMB: memory.available / 1024,
            uptimeSeconds: uptimeSeconds(), hostCPUTimeNS: busyCPUTimeNS(),
            xenMajor: Int(XenVersion.major), xenMinor: Int(XenVersion.minor), xenExtra: XenVersion.extraversion,
            xenCaps: XenVersion.capabilities.trimmingCharacters(in: .whitespaces), xenPagesize: 4096,
            virtStart: hypervisorVirtStart, commandLine: CommandLine.arguments.joined(separator: " "),
            domusVersion: DomusVersion.string, compiler: DomusVersion.compiler, nrDomains: domains)
    }
}
