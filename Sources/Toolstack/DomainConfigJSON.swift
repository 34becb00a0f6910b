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
