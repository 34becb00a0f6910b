import Foundation

// The control protocol between `domus` (or any client) and `domusd`: newline-delimited
// JSON on a Unix socket, one response per request, in order. docs/control-protocol.md
// describes every operation; these types are its single definition.

/// The operations domusd understands (the `op` field).
public enum ControlOperation: String, Sendable, CaseIterable {
    case ping
    case create
    case list
    case console
    case shutdown
    case reboot
    case destroy
    case pause
    case unpause
    case memSet = "mem-set"
    case memMax = "mem-max"
    case vcpuSet = "vcpu-set"
    case info
    case dmesg
    case rename
    case wait
}

/// One request: `op` and the fields that operation takes (the others are absent).
public struct ControlRequest: Codable, Sendable, Equatable {
    /// The operation (`ControlOperation`); kept as text so an unknown one gets a clear error.
    public var op: String
    /// The domain a request is about: a name or a decimal id, as xl takes them.
    public var domain: String?
    /// `create`: the config file's text (xl.cfg syntax).
    public var config: String?
    /// `create`: what to call the config in messages (its path).
    public var configName: String?
    /// `create`: `KEY=VALUE` overrides, as `xl create cfg KEY=VALUE...` takes them.
    public var overrides: [String]?
    /// `create`: the directory relative kernel and ramdisk paths are resolved against (the client's cwd).
    public var directory: String?
    /// `create`: switch the connection to the domain's console after the response.
    public var attach: Bool?
    /// `shutdown`, `reboot`: wait until the domain has gone (or shut down).
    public var wait: Bool?
    /// Seconds a waiting request waits at most (`shutdown`/`reboot` with `wait`, `destroy`, `wait`).
    public var timeout: Double?
    /// `mem-set`, `mem-max`: the new size in KiB.
    public var memoryKB: UInt64?
    /// `vcpu-set`: how many vCPUs the guest may have online.
    public var vcpus: Int?
    /// `rename`: the new name.
    public var name: String?
    /// `console`: how many bytes of earlier output to send first (all that is kept if absent).
    public var history: Int?
    /// `dmesg`: clear the log after reading it (`xl dmesg -c`).
    public var clear: Bool?
    /// `list`: include each domain's configuration (`xl list -l`).
    public var long: Bool?

    enum CodingKeys: String, CodingKey {
        case op, domain, config, overrides, directory, attach, wait, timeout, name, history, clear, long, vcpus
        case configName = "config_name"
        case memoryKB = "memory_kb"
    }

    public init(_ operation: ControlOperation, domain: String? = nil) {
        self.op = operation.rawValue
        self.domain = domain
    }

    public var operation: ControlOperation? { ControlOperation(rawValue: op) }
}

/// Why a request failed, so the client can choose an exit status.
public enum ControlErrorKind: String, Codable, Sendable {
    /// The request itself is malformed (missing field, bad value).
    case usage
    /// The domain's configuration is invalid (the parser's message).
    case config
    /// No such domain.
    case notFound = "not_found"
    /// The request conflicts with the state (name in use, domain not paused...).
    case conflict
    /// Valid, but Domus cannot do it (yet).
    case unsupported
    /// The host failed (KVM, memory).
    case host
    /// A bounded wait ran out.
    case timeout
    /// A Domus bug.
    case `internal`
}

/// An error as the daemon reports it: a kind and one line of text.
public struct ControlError: Error, Sendable, Equatable, CustomStringConvertible {
    public let kind: ControlErrorKind
    public let message: String
    public init(_ kind: ControlErrorKind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }
}

/// One response: `ok`, and either `error` or the fields the operation returns.
public struct ControlResponse: Codable, Sendable, Equatable {
    public var ok: Bool
    public var error: String?
    public var errorKind: ControlErrorKind?
    /// `create`, `rename`: the domain's id and name.
    public var domid: UInt16?
    public var name: String?
    /// `list`: Domain-0 first, then every domain by id.
    public var domains: [DomainStatus]?
    /// `info`: the host and hypervisor.
    public var host: HostInfo?
    /// `dmesg`: the hypervisor's log lines, oldest first.
    public var lines: [String]?
    /// `create`: the config's warnings (unknown keys and the like), one line each.
    public var warnings: [String]?
    /// `ping`: the daemon's version.
    public var version: String?
    /// `shutdown`/`reboot` with `wait`, `wait`: how the domain ended ("destroyed", "shutdown:poweroff", ...).
    public var outcome: String?

    enum CodingKeys: String, CodingKey {
        case ok, error, domid, name, domains, host, lines, warnings, version, outcome
        case errorKind = "error_kind"
    }

    public init(ok: Bool = true) { self.ok = ok }

    public static func failure(_ error: ControlError) -> ControlResponse {
        var response = ControlResponse(ok: false)
        response.error = error.message
        response.errorKind = error.kind
        return response
    }
}

/// A domain as `list` reports it: what libxl_dominfo holds.
public struct DomainStatus: Codable, Sendable, Equatable {
    public var domid: UInt16
    public var name: String
    public var uuid: String
    /// Memory the domain has, KiB (xl's Mem column is this / 1024).
    public var memoryKB: UInt64
    /// memory/target (mem-set), KiB.
    public var targetKB: UInt64
    /// memory/static-max (mem-max), KiB.
    public var maxMemoryKB: UInt64
    public var vcpusOnline: Int
    public var maxVCPUs: Int
    /// State flags, as `xl list` shows them in `rbpscd`.
    public var running: Bool
    public var blocked: Bool
    public var paused: Bool
    public var shutdown: Bool
    public var dying: Bool
    /// With `shutdown`: poweroff, reboot, suspend, crash, watchdog, soft_reset (libxl's names).
    public var shutdownReason: String?
    /// Why the hypervisor crashed the domain, if it did.
    public var crashDetail: String?
    /// Host CPU time the vCPUs ran guest code, nanoseconds.
    public var cpuTimeNS: UInt64
    /// When the domain was created, seconds since the Unix epoch (for `uptime`).
    public var startTime: Double
    public var vcpus: [VCPUStatus]
    /// `list` with `long`: the configuration, shaped like libxl's domain config JSON.
    public var config: DomainConfigJSON?

    enum CodingKeys: String, CodingKey {
        case domid, name, uuid, running, blocked, paused, shutdown, dying, vcpus, config
        case memoryKB = "memory_kb", targetKB = "target_kb", maxMemoryKB = "max_memory_kb"
        case vcpusOnline = "vcpus_online", maxVCPUs = "max_vcpus"
        case shutdownReason = "shutdown_reason", crashDetail = "crash_detail"
        case cpuTimeNS = "cpu_time_ns", startTime = "start_time"
    }

    public init(domid: UInt16, name: String, uuid: String = "00000000-0000-0000-0000-000000000000", memoryKB: UInt64,
                targetKB: UInt64? = nil, maxMemoryKB: UInt64? = nil, vcpusOnline: Int, maxVCPUs: Int? = nil,
                running: Bool = false, blocked: Bool = false, paused: Bool = false, shutdown: Bool = false, dying: Bool = false,
                shutdownReason: String? = nil, crashDetail: String? = nil, cpuTimeNS: UInt64 = 0, startTime: Double = 0,
                vcpus: [VCPUStatus] = [], config: DomainConfigJSON? = nil) {
        self.domid = domid
        self.name = name
        self.uuid = uuid
        self.memoryKB = memoryKB
        self.targetKB = targetKB ?? memoryKB
        self.maxMemoryKB = maxMemoryKB ?? memoryKB
        self.vcpusOnline = vcpusOnline
        self.maxVCPUs = maxVCPUs ?? vcpusOnline
        self.running = running
        self.blocked = blocked
        self.paused = paused
        self.shutdown = shutdown
        self.dying = dying
        self.shutdownReason = shutdownReason
        self.crashDetail = crashDetail
        self.cpuTimeNS = cpuTimeNS
        self.startTime = startTime
        self.vcpus = vcpus
        self.config = config
    }
}

/// One vCPU, as `xl vcpu-list` shows it.
public struct VCPUStatus: Codable, Sendable, Equatable {
    public var vcpu: Int
    public var online: Bool
    public var running: Bool
    public var blocked: Bool
    /// The host CPU its thread last ran on, if known.
    public var cpu: Int?
    public var cpuTimeNS: UInt64

    enum CodingKeys: String, CodingKey {
        case vcpu, online, running, blocked, cpu
        case cpuTimeNS = "cpu_time_ns"
    }

    public init(vcpu: Int, online: Bool, running: Bool, blocked: Bool, cpu: Int?, cpuTimeNS: UInt64) {
        self.vcpu = vcpu
        self.online = online
        self.running = running
        self.blocked = blocked
        self.cpu = cpu
        self.cpuTimeNS = cpuTimeNS
    }
}

/// The host and the hypervisor, for `xl info`.
public struct HostInfo: Codable, Sendable, Equatable {
    public var host: String
    public var release: String
    public var version: String
    public var machine: String
    public var nrCPUs: Int
    /// The guest TSC frequency KVM reports, MHz.
    public var cpuMHz: Double?
    public var totalMemoryMB: UInt64
    public var freeMemoryMB: UInt64
    /// Host uptime, seconds (Domain-0's uptime).
    public var uptimeSeconds: Double
    /// Host CPU time spent outside idle, nanoseconds (Domain-0's Time(s)).
    public var hostCPUTimeNS: UInt64
    public var xenMajor: Int
    public var xenMinor: Int
    public var xenExtra: String
    public var xenCaps: String
    public var xenPagesize: Int
    public var virtStart: UInt64
    /// The daemon's command line (xl shows Xen's).
    public var commandLine: String
    public var domusVersion: String
    public var compiler: String
    public var nrDomains: Int

    enum CodingKeys: String, CodingKey {
        case host, release, version, machine, compiler
        case nrCPUs = "nr_cpus", cpuMHz = "cpu_mhz", totalMemoryMB = "total_memory_mb", freeMemoryMB = "free_memory_mb"
        case uptimeSeconds = "uptime_seconds", hostCPUTimeNS = "host_cpu_time_ns"
        case xenMajor = "xen_major", xenMinor = "xen_minor", xenExtra = "xen_extra", xenCaps = "xen_caps"
        case xenPagesize = "xen_pagesize", virtStart = "virt_start", commandLine = "command_line"
        case domusVersion = "domus_version", nrDomains = "nr_domains"
    }
}

/// Newline-delimited JSON framing for requests and responses.
public enum ControlCodec {
    /// Largest request line the daemon reads (a config file rides in `create`).
    public static let maximumLineBytes = 1 << 20

    /// The JSON of `value` plus a newline. JSONEncoder escapes newlines inside strings,
    /// so the encoding is one line.
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        guard let data = try? encoder.encode(value) else { return Array("{\"ok\":false,\"error\":\"encoding failed\"}\n".utf8) }
        return [UInt8](data) + [0x0a]
    }

    /// Decodes one line (without its newline).
    public static func decode<T: Decodable>(_ type: T.Type, from line: [UInt8]) throws(ControlError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(line))
        } catch let DecodingError.keyNotFound(key, _) {
            throw ControlError(.usage, "malformed message: missing field \"\(key.stringValue)\"")
        } catch let DecodingError.typeMismatch(_, context) {
            throw ControlError(.usage, "malformed message: wrong type at \(path(context.codingPath))")
        } catch let DecodingError.valueNotFound(_, context) {
            throw ControlError(.usage, "malformed message: null at \(path(context.codingPath))")
        } catch {
            throw ControlError(.usage, "malformed message: not a JSON object")
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.isEmpty ? "the top level" : "\"" + keys.map(\.stringValue).joined(separator: ".") + "\""
    }
}
