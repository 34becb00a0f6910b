// The domain an xl config file describes (xl.cfg(5)), validated, with defaults applied as
// xl and libxl apply them.

/// A guest's virtualisation mode (xl.cfg(5), "Selecting Guest Type"). Domus builds `pv`
/// guests only; the others are parsed so the refusal can name them.
public enum DomainType: String, Sendable, Hashable, CaseIterable {
    case pv
    case pvh
    case hvm
}

/// What to do when a guest shuts down, reboots, crashes, trips the watchdog or soft-resets
/// (xl.cfg(5), "Event Actions"; xl_parse.c `action_on_shutdown_names`).
public enum ShutdownAction: String, Sendable, Hashable, CaseIterable {
    case destroy
    case restart
    case renameRestart = "rename-restart"
    case preserve
    case coredumpDestroy = "coredump-destroy"
    case coredumpRestart = "coredump-restart"
    case softReset = "soft-reset"

    /// The actions the Domus toolstack carries out. The others are valid xl and are parsed,
    /// but `DomainConfiguration.unsupportedFeatures()` lists any event set to them.
    public static let executedByDomus: Set<ShutdownAction> = [.destroy, .restart, .renameRestart, .preserve]

    public var isExecutedByDomus: Bool { Self.executedByDomus.contains(self) }
}

/// A domain UUID (xl.cfg(5) `uuid`), parsed as libxl does with libuuid's `uuid_parse`:
/// 32 hex digits in the 8-4-4-4-12 layout.
public struct DomainUUID: Sendable, Hashable, CustomStringConvertible {
    /// The 16 bytes, most significant first, as Xen's `xen_domain_handle_t` holds them.
    public let bytes: [UInt8]

    public init?(_ text: String) {
        let characters = Array(text.utf8)
        guard characters.count == 36 else { return nil }
        var bytes: [UInt8] = []
        var nibble: UInt8?
        for (index, character) in characters.enumerated() {
            if [8, 13, 18, 23].contains(index) {
                guard character == UInt8(ascii: "-") else { return nil }
                continue
            }
            let value: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = character - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = character - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let high = nibble {
                bytes.append(high << 4 | value)
                nibble = nil
            } else {
                nibble = value
            }
        }
        self.bytes = bytes
    }

    /// Lower-case 8-4-4-4-12 form, as `xl list -v` prints it.
    public var description: String {
        var text = ""
        for (index, byte) in bytes.enumerated() {
            if [4, 6, 8, 10].contains(index) { text += "-" }
            text += byte < 0x10 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
        }
        return text
    }
}

/// A host CPU list as `cpus=` and `cpus_soft=` take it (xl.cfg(5) `cpus="CPULIST"`;
/// xl_parse.c `parse_cpurange`): comma-separated terms, each `all`, `N` or `N-M`, optionally
/// prefixed `node:`/`nodes:` for whole NUMA nodes, and `^` to remove instead of add.
public struct CPUList: Sendable, Hashable, CustomStringConvertible {
    /// One comma-separated term.
    public struct Term: Sendable, Hashable {
        /// `^`: remove these CPUs rather than add them.
        public let isExcluded: Bool
        /// `node:`/`nodes:`: the numbers are NUMA nodes, not CPUs.
        public let isNodes: Bool
        /// The numbers named; `nil` for `all`.
        public let range: ClosedRange<Int>?
    }

    /// Larger CPU or node numbers are refused, to keep the numbers meaningful.
    public static let maximumIndex = 1 << 20

    public let terms: [Term]
    /// The list as written.
    public let text: String

    public init(parsing text: String) throws(SpecStringError) {
        var terms: [Term] = []
        for rawTerm in text.split(separator: ",", omittingEmptySubsequences: true) {
            var term = rawTerm.trimmingBlanks()
            let isExcluded = term.hasPrefix("^")
            if isExcluded { term = term.dropFirst() }
            var isNodes = false
            for prefix in ["nodes:", "node:"] where term.hasPrefix(prefix) {
                isNodes = true
                term = term.dropFirst(prefix.count)
                break
            }
            if term == "all" {
                guard !isExcluded else { throw SpecStringError("cannot combine \"^\" and \"all\" in \(quoted(text))") }
                terms.append(Term(isExcluded: false, isNodes: isNodes, range: nil))
                continue
            }
            let bounds = term.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
            guard let first = bounds.first.flatMap(decimal), let last = bounds.last.flatMap(decimal), first <= last,
                last <= Self.maximumIndex
            else {
                throw SpecStringError(
                    "invalid CPU range \(quoted(String(rawTerm))) in \(quoted(text)); "
                        + "expected all, N, N-M, node:N or ^N")
            }
            terms.append(Term(isExcluded: isExcluded, isNodes: isNodes, range: first...last))
        }
        guard !terms.isEmpty else { throw SpecStringError("empty CPU list") }
        self.terms = terms
        self.text = text
    }

    /// The host CPUs the list selects, applying terms left to right as xl does.
    /// `cpusOfNode` maps a NUMA node to its CPUs; CPUs at or beyond `hostCPUCount` are dropped.
    public func resolve(hostCPUCount: Int, cpusOfNode: (Int) -> [Int] = { _ in [] }) -> Set<Int> {
        var selected = Set<Int>()
        let host = 0..<max(hostCPUCount, 0)
        for term in terms {
            var cpus: [Int]
            switch (term.range, term.isNodes) {
            case (nil, _): cpus = Array(host)
            case (let range?, false):
                let upper = min(range.upperBound, host.upperBound - 1)
                cpus = range.lowerBound <= upper ? Array(range.lowerBound...upper) : []
            case (let range?, true): cpus = range.flatMap(cpusOfNode)
            }
            cpus = cpus.filter(host.contains)
            if term.isExcluded { selected.subtract(cpus) } else { selected.formUnion(cpus) }
        }
        return selected
    }

    public var description: String { text }
}

/// vCPU affinity (`cpus=` hard, `cpus_soft=` soft). A string applies to every vCPU; a list
/// gives vCPU i the i-th entry, as xl_parse.c `parse_vcpu_affinity` does.
public enum CPUAffinity: Sendable, Hashable {
    case allVCPUs(CPUList)
    case perVCPU([CPUList])
}

/// A thing a config asks for that Domus parses but cannot provide yet.
public struct UnsupportedFeature: Sendable, Hashable, CustomStringConvertible {
    /// The config key that asked for it.
    public let key: String
    /// What is missing, as one sentence fragment.
    public let reason: String

    public init(key: String, reason: String) {
        self.key = key
        self.reason = reason
    }

    public var description: String { "\(key): \(reason)" }
}

/// A domain as an xl config file describes it, validated. Build one with
/// `DomainConfiguration(file:)` or `DomainConfiguration(parsing:sourceName:overrides:)`.
///
/// Values, defaults and checks follow xl.cfg(5) and xl_parse.c `parse_config_data`; where
/// Domus is stricter than xl (xl warns about a wrong type and then uses the default, Domus
/// refuses it) the doc comment says so.
///
/// What Domus can run: PV guests booted directly from `kernel`. `type = "pvh"`/`"hvm"`,
/// `bootloader` and `firmware` are refused while parsing. Disks, vifs, device keys (`pci`,
/// `vfb`, `vtpm`, `channel`, `p9`, `usbdev`, `vnuma`, ...) and shutdown actions Domus does
/// not carry out are parsed and validated, then reported by `unsupportedFeatures()`: the
/// toolstack refuses to build a domain while that list is non-empty ("until the
/// block/network backends exist").
public struct DomainConfiguration: Sendable, Hashable {
    /// The name the config was read from; messages about it use this.
    public var sourceName: String
    /// `name=`: required. xl only asks that names be unique; Domus also requires
    /// `[A-Za-z0-9_.+-]`, at most 64 characters, not starting with `-`, not all digits (xl
    /// commands read an all-digit argument as a domain id) and not `Domain-0`.
    public var name: String
    /// `type=` or the deprecated `builder=` ("generic" is pv). Default `pv`, as on x86.
    public var type: DomainType
    /// `uuid=`; `nil` means the toolstack generates one, as xl does.
    public var uuid: DomainUUID?
    /// `memory=`, MiB. Default: `maxmem` if given, else 32 (libxl's default, libxl_create.c).
    public var memoryMiB: Int
    /// `maxmem=`, MiB, at least `memoryMiB`. Default: `memoryMiB`.
    public var maxMemoryMiB: Int
    /// `vcpus=`: vCPUs online at boot. Default 1. Domus refuses values below 1, which xl
    /// silently turns into 1.
    public var vcpus: Int
    /// `maxvcpus=`: vCPUs the guest may bring up, at least `vcpus`. Default: `vcpus`.
    public var maxVCPUs: Int
    /// `cpus=`: hard affinity. `nil`: no pinning.
    public var cpus: CPUAffinity?
    /// `cpus_soft=`: soft affinity. `nil`: none.
    public var cpusSoft: CPUAffinity?
    /// `cpu_weight=`, 1...65535 (credit schedulers). `nil`: the scheduler's default (256).
    public var cpuWeight: Int?
    /// `cap=`, percent of one CPU, 0 meaning none. `nil`: the scheduler's default (0).
    public var cap: Int?
    /// `kernel=`: path of the kernel image for direct boot. Required, since Domus runs no
    /// bootloader.
    public var kernel: String
    /// `ramdisk=`: path of the initial ramdisk.
    public var ramdisk: String?
    /// The kernel command line: `cmdline=` if set; otherwise `root=` and `extra=` combined
    /// exactly as xl_parse.c `parse_cmdline` does: `"root=<root> <extra>"`, `"root=<root>"`
    /// or `"<extra>"`. `nil` if none of the three is set.
    public var cmdline: String?
    /// `on_poweroff=`, default `destroy`.
    public var onPoweroff: ShutdownAction
    /// `on_reboot=`, default `restart`.
    public var onReboot: ShutdownAction
    /// `on_watchdog=`, default `destroy`.
    public var onWatchdog: ShutdownAction
    /// `on_crash=`, default `destroy`.
    public var onCrash: ShutdownAction
    /// `on_soft_reset=`, default `soft-reset`.
    public var onSoftReset: ShutdownAction
    /// `disk=[...]`, parsed and validated (xl-disk-configuration(5)).
    public var disks: [DiskSpec]
    /// `vif=[...]`, parsed and validated (xl-network-configuration(5)); a vif's DEVID is its
    /// index unless it sets `devid=`.
    public var vifs: [VifSpec]
    /// Device keys (`pci`, `vfb`, `vtpm`, ...) the config set to something non-empty, with what
    /// they ask for; part of `unsupportedFeatures()`.
    public var requestedDevices: [UnsupportedFeature]
    /// Everything noticed and ignored while reading: unknown keys, keys Domus ignores,
    /// deprecated spellings, octal numbers.
    public var warnings: [XLConfigWarning]

    /// libxl's memory default when neither `memory` nor `maxmem` is set (libxl_create.c).
    public static let defaultMemoryMiB = 32
    /// The largest `memory`/`maxmem` accepted: 16 TiB, so byte counts fit any arithmetic.
    public static let maximumMemoryMiB = 16 << 20
    /// The largest `vcpus`/`maxvcpus` accepted: a sanity bound; the hypervisor may allow fewer.
    public static let maximumVCPUs = 512

    /// What this configuration asks for that Domus cannot do yet, so the toolstack can
    /// refuse to build the domain with a clear message. Empty means Domus can build it.
    public func unsupportedFeatures() -> [UnsupportedFeature] {
        var features: [UnsupportedFeature] = []
        if !disks.isEmpty {
            features.append(
                UnsupportedFeature(
                    key: "disk",
                    reason: "\(disks.count) disk\(disks.count == 1 ? "" : "s") configured, but Domus has no block "
                        + "backend yet"))
        }
        if !vifs.isEmpty {
            features.append(
                UnsupportedFeature(
                    key: "vif",
                    reason: "\(vifs.count) vif\(vifs.count == 1 ? "" : "s") configured, but Domus has no network "
                        + "backend yet"))
        }
        let actions: [(String, ShutdownAction, ShutdownAction)] = [
            ("on_poweroff", onPoweroff, .destroy), ("on_reboot", onReboot, .restart),
            ("on_watchdog", onWatchdog, .destroy), ("on_crash", onCrash, .destroy),
            ("on_soft_reset", onSoftReset, .softReset),
        ]
        for (key, action, xlDefault) in actions where !action.isExecutedByDomus {
            // A PV guest cannot soft-reset, so xl's default for on_soft_reset never runs.
            if key == "on_soft_reset" && action == xlDefault { continue }
            features.append(
                UnsupportedFeature(key: key, reason: "the action \"\(action.rawValue)\" is not carried out by Domus yet"))
        }
        return features + requestedDevices
    }
}

extension Substring {
    /// Without leading and trailing spaces and tabs.
    func trimmingBlanks() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}

/// A plain decimal number, digits only, within `Int`.
func decimal(_ text: Substring) -> Int? {
    guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
        return nil
    }
    return Int(text)
}
