import Foundation

/// Output exactly as xl prints it (tools/xl/xl_info.c, xl_vcpu.c), from the daemon's
/// answers. Pure functions, so the formats are unit-tested.
public enum XLFormat {
    // MARK: list

    /// `xl list`'s header (list_domains).
    public static let listHeader = "Name                                        ID   Mem VCPUs\tState\tTime(s)"

    /// xl's shutdown_reason_letters, indexed by libxl_shutdown_reason.
    static let shutdownReasonLetters: [String: Character] = [
        "poweroff": "-", "reboot": "r", "suspend": "s", "crash": "c", "watchdog": "w", "soft_reset": "S",
    ]

    /// The six state letters `rbpscd`: running, blocked, paused, shutdown, the shutdown
    /// reason's letter (`c` for crash, `r` reboot, `s` suspend, `w` watchdog), dying.
    public static func stateLetters(_ status: DomainStatus) -> String {
        var letters = ""
        letters.append(status.running ? "r" : "-")
        letters.append(status.blocked ? "b" : "-")
        letters.append(status.paused ? "p" : "-")
        letters.append(status.shutdown ? "s" : "-")
        if status.shutdown {
            letters.append(status.shutdownReason.flatMap { shutdownReasonLetters[$0] } ?? "?")
        } else {
            letters.append("-")
        }
        letters.append(status.dying ? "d" : "-")
        return letters
    }

    /// One `xl list` row: `%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f`.
    public static func listRow(_ status: DomainStatus) -> String {
        pad(status.name, 40) + " " + right("\(status.domid)", 5) + " " + right("\(status.memoryKB / 1024)", 5) + " "
            + right("\(status.vcpusOnline)", 5) + "     " + stateLetters(status) + "  " + seconds(status.cpuTimeNS, width: 8)
    }

    /// `xl list`: the header and a row per domain.
    public static func list(_ domains: [DomainStatus]) -> String {
        ([listHeader] + domains.map(listRow)).joined(separator: "\n") + "\n"
    }

    /// `xl list -l`: a JSON array of `{"domid": N, "config": {...}}`, indented by four
    /// spaces as yajl's beautifier does.
    public static func listLong(_ domains: [DomainStatus]) -> String {
        let entries = domains.map { domain -> OrderedJSON in
            .object([("domid", .integer(Int64(domain.domid))), ("config", domain.config?.ordered ?? .null)])
        }
        return OrderedJSON.array(entries).text() + "\n"
    }

    // MARK: vcpu-list

    /// `xl vcpu-list`'s header.
    public static let vcpuListHeader = pad("Name", 32) + " " + right("ID", 5) + " " + right("VCPU", 5) + " " + right("CPU", 5)
        + " " + right("State", 5) + " " + right("Time(s)", 9) + " Affinity (Hard / Soft)"

    /// One vCPU row (print_vcpuinfo). Domus does not pin vCPUs, so affinity is `all / all`.
    public static func vcpuRow(_ domain: DomainStatus, _ vcpu: VCPUStatus) -> String {
        var row = pad(domain.name, 32) + " " + right("\(domain.domid)", 5) + " " + right("\(vcpu.vcpu)", 5)
        if !vcpu.online {
            row += right("-", 5) + right("-", 4) + "-p "
        } else {
            row += right(vcpu.cpu.map { "\($0)" } ?? "-", 5) + right(vcpu.running ? "r" : "-", 4) + (vcpu.blocked ? "b" : "-") + "- "
        }
        return row + seconds(vcpu.cpuTimeNS, width: 9) + "  all / all"
    }

    /// `xl vcpu-list`.
    public static func vcpuList(_ domains: [DomainStatus]) -> String {
        var lines = [vcpuListHeader]
        for domain in domains {
            for vcpu in domain.vcpus { lines.append(vcpuRow(domain, vcpu)) }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: uptime

    /// xl's uptime_to_string: `[D day(s), ]HH:MM:SS`, or `[D day(s), ]HH:MM` when short.
    public static func uptimeString(_ uptime: UInt64, short: Bool) -> String {
        let day = uptime / 86400
        let hour = (uptime % 86400) / 3600
        let minute = (uptime % 3600) / 60
        let second = uptime % 60
        let days = day > 1 ? "\(day) days, " : day == 1 ? "1 day, " : ""
        let clock = right("\(hour)", 2) + ":" + two(minute)
        return days + clock + (short ? "" : ":" + two(second))
    }

    /// `xl uptime [-s]`: `Name ID Uptime` rows (`%-33s %4d %s`), or in short mode
    /// ` HH:MM:SS up UPTIME, NAME (ID)` per domain, like uptime(1).
    public static func uptime(_ domains: [DomainStatus], now: Date, short: Bool, timeZone: TimeZone = .current) -> String {
        var lines: [String] = []
        if !short { lines.append(pad("Name", 33) + " " + right("ID", 4) + " Uptime") }
        let formatter = DateFormatter()
        formatter.dateFormat = "HH:mm:ss"
        formatter.timeZone = timeZone
        for domain in domains {
            let elapsed = UInt64(max(0, now.timeIntervalSince1970 - domain.startTime))
            if short {
                lines.append(" \(formatter.string(from: now)) up \(uptimeString(elapsed, short: true)), \(domain.name) (\(domain.domid))")
            } else {
                lines.append(pad(domain.name, 33) + " " + right("\(domain.domid)", 4) + " " + uptimeString(elapsed, short: false))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: info

    /// `xl info`'s `key : value` pairs that Domus can fill truthfully, in xl's order.
    public static func infoPairs(_ host: HostInfo) -> [(String, String)] {
        var pairs: [(String, String)] = [
            ("host", host.host), ("release", host.release), ("version", host.version), ("machine", host.machine),
            ("nr_cpus", "\(host.nrCPUs)"), ("max_cpu_id", "\(max(host.nrCPUs - 1, 0))"),
        ]
        if let mhz = host.cpuMHz {
            let khz = Int((mhz * 1000).rounded())
            pairs.append(("cpu_mhz", "\(khz / 1000)." + String(repeating: "0", count: 3 - "\(khz % 1000)".count) + "\(khz % 1000)"))
        }
        pairs += [
            ("virt_caps", "pv"),
            ("total_memory", "\(host.totalMemoryMB)"), ("free_memory", "\(host.freeMemoryMB)"),
            ("xen_major", "\(host.xenMajor)"), ("xen_minor", "\(host.xenMinor)"), ("xen_extra", host.xenExtra),
            ("xen_version", "\(host.xenMajor).\(host.xenMinor)\(host.xenExtra)"), ("xen_caps", host.xenCaps),
            ("xen_pagesize", "\(host.xenPagesize)"), ("platform_params", "virt_start=0x" + String(host.virtStart, radix: 16)),
            ("xen_commandline", host.commandLine), ("cc_compiler", host.compiler),
            ("domus_version", host.domusVersion), ("nr_domains", "\(host.nrDomains)"),
            ("xend_config_format", "4"),
        ]
        return pairs
    }

    /// `xl info`; with `only`, just the values of the keys starting with it, as xl's
    /// `xl info NAME` prints them.
    public static func info(_ host: HostInfo, only: String? = nil) -> String {
        let pairs = infoPairs(host)
        if let only {
            return pairs.filter { $0.0.hasPrefix(only) }.map { $0.1 + "\n" }.joined()
        }
        return pairs.map { pad($0.0, 23) + ": " + $0.1 + "\n" }.joined()
    }

    // MARK: Sizes

    /// A memory size as xl's parse_mem_size_kb reads it, in KiB: a number with an
    /// optional suffix `t`, `g`, `m` (the default), `k` or `b`, any case. Nil if invalid.
    public static func parseMemorySizeKB(_ text: String) -> UInt64? {
        let digits = text.prefix(while: { $0.isASCII && $0.isNumber })
        guard !digits.isEmpty, let number = UInt64(digits) else { return nil }
        let suffix = text.dropFirst(digits.count).lowercased()
        let shift: Int
        switch suffix {
        case "t": shift = 30
        case "g": shift = 20
        case "", "m": shift = 10
        case "k": shift = 0
        case "b": return number >> 10
        default: return nil
        }
        guard number <= UInt64.max >> shift else { return nil }
        return number << shift
    }

    // MARK: Helpers

    /// `%-Ns`: left-aligned in `width` (never truncated).
    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    /// `%Ns`: right-aligned in `width`.
    static func right(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }

    static func two(_ value: UInt64) -> String { value < 10 ? "0\(value)" : "\(value)" }

    /// `%W.1f` of nanoseconds as seconds.
    static func seconds(_ nanoseconds: UInt64, width: Int) -> String {
        right(String(format: "%.1f", Double(nanoseconds) / 1e9), width)
    }
}
