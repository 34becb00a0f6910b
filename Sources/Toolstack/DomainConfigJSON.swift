import Foundation
import XLConfig

/// A domain's configuration in the shape of libxl's `libxl_domain_config` JSON, which
/// `xl list -l` prints (libxl_types.idl: `c_info`, `b_info` with `type.pv`, the
/// `on_*` actions with libxl's enum names). Only the fields Domus models are present.
public struct DomainConfigJSON: Codable, Sendable, Equatable {
    public struct CreateInfo: Codable, Sendable, Equatable {
        public var type: String
        public var name: String
        public var uuid: String?
    }

    public struct PVInfo: Codable, Sendable, Equatable {
        public var kernel: String?
        public var cmdline: String?
        public var ramdisk: String?
    }

    public struct BuildInfo: Codable, Sendable, Equatable {
        public var maxVCPUs: Int
        /// Online vCPUs at boot, as libxl's bitmap prints: the set bit numbers.
        public var availVCPUs: [Int]
        public var maxMemoryKB: UInt64
        public var targetMemoryKB: UInt64
        public var pv: PVInfo?

        enum CodingKeys: String, CodingKey {
            case maxVCPUs = "max_vcpus", availVCPUs = "avail_vcpus", maxMemoryKB = "max_memkb"
            case targetMemoryKB = "target_memkb", pv = "type.pv"
        }
    }

    public var createInfo: CreateInfo
    public var buildInfo: BuildInfo
    public var onPoweroff: String?
    public var onReboot: String?
    public var onWatchdog: String?
    public var onCrash: String?
    public var onSoftReset: String?

    enum CodingKeys: String, CodingKey {
        case createInfo = "c_info", buildInfo = "b_info"
        case onPoweroff = "on_poweroff", onReboot = "on_reboot", onWatchdog = "on_watchdog", onCrash = "on_crash"
        case onSoftReset = "on_soft_reset"
    }

    /// The JSON for a domain built from `configuration` (with paths as the daemon resolved them).
    public init(_ configuration: DomainConfiguration, name: String, uuid: String, kernel: String, ramdisk: String?) {
        createInfo = CreateInfo(type: configuration.type.rawValue, name: name, uuid: uuid)
        buildInfo = BuildInfo(maxVCPUs: configuration.maxVCPUs, availVCPUs: Array(0..<configuration.vcpus),
                              maxMemoryKB: UInt64(configuration.maxMemoryMiB) * 1024,
                              targetMemoryKB: UInt64(configuration.memoryMiB) * 1024,
                              pv: PVInfo(kernel: kernel, cmdline: configuration.cmdline, ramdisk: ramdisk))
        onPoweroff = Self.libxlName(configuration.onPoweroff)
        onReboot = Self.libxlName(configuration.onReboot)
        onWatchdog = Self.libxlName(configuration.onWatchdog)
        onCrash = Self.libxlName(configuration.onCrash)
        onSoftReset = Self.libxlName(configuration.onSoftReset)
    }

    /// Domain-0's entry: the host.
    public init(hostName: String, cpus: Int, memoryKB: UInt64) {
        createInfo = CreateInfo(type: "pv", name: hostName, uuid: "00000000-0000-0000-0000-000000000000")
        buildInfo = BuildInfo(maxVCPUs: cpus, availVCPUs: Array(0..<max(cpus, 0)), maxMemoryKB: memoryKB,
                              targetMemoryKB: memoryKB, pv: nil)
    }

    /// libxl_action_on_shutdown's JSON names (`rename-restart` is `rename_restart`).
    static func libxlName(_ action: ShutdownAction) -> String {
        action.rawValue.replacingOccurrences(of: "-", with: "_")
    }
}

/// A JSON value whose objects keep their key order, printed as yajl's beautifier
/// prints (four-space indent, `"key": value`), so `domus list -l` reads like `xl list -l`.
public indirect enum OrderedJSON: Sendable, Equatable {
    case string(String)
    case integer(Int64)
    case bool(Bool)
    case null
    case array([OrderedJSON])
    case object([(String, OrderedJSON)])

    public static func == (lhs: OrderedJSON, rhs: OrderedJSON) -> Bool { lhs.text() == rhs.text() }

    /// The printed value, nested `level` deep.
    public func text(level: Int = 0) -> String {
        let indent = String(repeating: "    ", count: level + 1)
        let closing = String(repeating: "    ", count: level)
        switch self {
        case let .string(value): return Self.quote(value)
        case let .integer(value): return "\(value)"
        case let .bool(value): return value ? "true" : "false"
        case .null: return "null"
        case let .array(values):
            if values.isEmpty { return "[\n\(closing)]" }
            return "[\n" + values.map { indent + $0.text(level: level + 1) }.joined(separator: ",\n") + "\n\(closing)]"
        case let .object(pairs):
            if pairs.isEmpty { return "{\n\(closing)}" }
            return "{\n" + pairs.map { indent + Self.quote($0.0) + ": " + $0.1.text(level: level + 1) }.joined(separator: ",\n")
                + "\n\(closing)}"
        }
    }

    static func quote(_ value: String) -> String {
        var quoted = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            case "\r": quoted += "\\r"
            case "\t": quoted += "\\t"
            default:
                if scalar.value < 0x20 {
                    quoted += String(format: "\\u%04x", scalar.value)
                } else {
                    quoted.unicodeScalars.append(scalar)
                }
            }
        }
        return quoted + "\""
    }
}

extension DomainConfigJSON {
    /// The configuration with libxl's key order (libxl_types.idl).
    public var ordered: OrderedJSON {
        var createInfo: [(String, OrderedJSON)] = [("type", .string(self.createInfo.type)), ("name", .string(self.createInfo.name))]
        if let uuid = self.createInfo.uuid { createInfo.append(("uuid", .string(uuid))) }
        var buildInfo: [(String, OrderedJSON)] = [
            ("max_vcpus", .integer(Int64(self.buildInfo.maxVCPUs))),
            ("avail_vcpus", .array(self.buildInfo.availVCPUs.map { .integer(Int64($0)) })),
            ("max_memkb", .integer(Int64(clamping: self.buildInfo.maxMemoryKB))),
            ("target_memkb", .integer(Int64(clamping: self.buildInfo.targetMemoryKB))),
        ]
        if let pv = self.buildInfo.pv {
            var fields: [(String, OrderedJSON)] = []
            if let kernel = pv.kernel { fields.append(("kernel", .string(kernel))) }
            if let cmdline = pv.cmdline { fields.append(("cmdline", .string(cmdline))) }
            if let ramdisk = pv.ramdisk { fields.append(("ramdisk", .string(ramdisk))) }
            buildInfo.append(("type.pv", .object(fields)))
        }
        var pairs: [(String, OrderedJSON)] = [("c_info", .object(createInfo)), ("b_info", .object(buildInfo))]
        for (key, value) in [("on_poweroff", onPoweroff), ("on_reboot", onReboot), ("on_watchdog", onWatchdog),
                             ("on_crash", onCrash), ("on_soft_reset", onSoftReset)] {
            if let value { pairs.append((key, .string(value))) }
        }
        return .object(pairs)
    }
}
