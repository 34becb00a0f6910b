// Building a DomainConfiguration from parsed settings, following xl_parse.c
// `parse_config_data` for meaning and defaults, but refusing values of the wrong type where
// xl warns and carries on with its default.

extension DomainConfiguration {
    /// Parses config text, applies `xl create` command-line overrides (see
    /// `XLConfigFile.applyOverrides`), and builds the configuration.
    public init(parsing text: String, sourceName: String, overrides: [String] = []) throws(XLConfigError) {
        try self.init(parsing: Array(text.utf8), sourceName: sourceName, overrides: overrides)
    }

    /// The same, from the bytes of a config file as read from disk.
    public init(parsing bytes: [UInt8], sourceName: String, overrides: [String] = []) throws(XLConfigError) {
        var file = try XLConfigFile(parsing: bytes, sourceName: sourceName)
        try file.applyOverrides(overrides)
        try self.init(file: file)
    }

    /// Builds and validates the configuration a parsed file describes.
    public init(file: XLConfigFile) throws(XLConfigError) {
        var reader = SettingsReader(file: file)
        requestedDevices = reader.classifyKeys()
        sourceName = file.sourceName

        type = try reader.domainType()
        name = try reader.domainName()
        uuid = try reader.value("uuid", expected: "a UUID such as \"6b8a1f7e-4c2d-4f5e-9a1b-2c3d4e5f6a7b\"") {
            DomainUUID($0)
        }

        let memory = try reader.integer("memory", expected: "an integer number of MiB", in: 1...Self.maximumMemoryMiB)
        let maxMemory = try reader.integer("maxmem", expected: "an integer number of MiB", in: 1...Self.maximumMemoryMiB)
        memoryMiB = memory ?? maxMemory ?? Self.defaultMemoryMiB
        maxMemoryMiB = maxMemory ?? memoryMiB
        if let setting = file["maxmem"], maxMemoryMiB < memoryMiB {
            throw reader.invalid(setting, "maxmem (\(maxMemoryMiB) MiB) must be at least memory (\(memoryMiB) MiB)")
        }

        vcpus = try reader.integer("vcpus", expected: "an integer number of vCPUs", in: 1...Self.maximumVCPUs) ?? 1
        maxVCPUs =
            try reader.integer("maxvcpus", expected: "an integer number of vCPUs", in: 1...Self.maximumVCPUs) ?? vcpus
        if let setting = file["maxvcpus"], maxVCPUs < vcpus {
            throw reader.invalid(setting, "maxvcpus (\(maxVCPUs)) must be at least vcpus (\(vcpus))")
        }
        cpus = try reader.affinity("cpus", vcpuCount: maxVCPUs)
        cpusSoft = try reader.affinity("cpus_soft", vcpuCount: maxVCPUs)
        cpuWeight = try reader.integer("cpu_weight", expected: "an integer scheduler weight", in: 1...65535)
        cap = try reader.integer("cap", expected: "an integer percentage of one CPU", in: 0...65535)

        kernel = try reader.kernel()
        ramdisk = try reader.string("ramdisk", expected: "a path to the initial ramdisk").flatMap {
            $0.isEmpty ? nil : $0
        }
        cmdline = try reader.commandLine()

        onPoweroff = try reader.action("on_poweroff") ?? .destroy
        onReboot = try reader.action("on_reboot") ?? .restart
        onWatchdog = try reader.action("on_watchdog") ?? .destroy
        onCrash = try reader.action("on_crash") ?? .destroy
        onSoftReset = try reader.action("on_soft_reset") ?? .softReset

        disks = try reader.disks()
        vifs = try reader.vifs()
        warnings = reader.warnings
    }
}

/// Reads typed values out of an `XLConfigFile`, producing `XLConfigError`s that name the
/// key and collecting warnings.
struct SettingsReader {
    let file: XLConfigFile
    var warnings: [XLConfigWarning] = []

    init(file: XLConfigFile) {
        self.file = file
    }

    func invalid(_ setting: XLConfigSetting, _ message: String) -> XLConfigError {
        .invalidValue(key: setting.key, location: setting.location, message: message)
    }

    mutating func warn(_ setting: XLConfigSetting, _ message: String) {
        warnings.append(XLConfigWarning(key: setting.key, location: setting.location, message: message))
    }

    /// Warns about unknown and ignored keys; returns the device keys that ask for something.
    mutating func classifyKeys() -> [UnsupportedFeature] {
        var devices: [UnsupportedFeature] = []
        for key in file.keys {
            guard let setting = file[key] else { continue }
            switch KnownKeys.role(of: key) {
            case .modelled:
                break
            case .device(let what):
                if setting.effectiveValue != .list([]) {
                    devices.append(UnsupportedFeature(key: key, reason: "Domus does not support \(what) yet"))
                }
            case .ignored:
                warn(setting, "xl setting not implemented by Domus, ignored")
            case nil:
                let hint = KnownKeys.suggestion(for: key).map { " (did you mean \($0)?)" } ?? ""
                warn(setting, "unknown key, ignored\(hint)")
            }
        }
        return devices
    }

    /// A single string (an unquoted number counts, as in xl). `nil` if the key is unset.
    func string(_ key: String, expected: String) throws(XLConfigError) -> String? {
        guard let setting = file[key] else { return nil }
        guard let text = setting.effectiveValue.text else {
            throw invalid(setting, "expected \(expected), got \(setting.effectiveValue)")
        }
        return text
    }

    /// A string converted by `convert`, which returns `nil` for invalid text.
    func value<Value>(_ key: String, expected: String, _ convert: (String) -> Value?) throws(XLConfigError) -> Value? {
        guard let setting = file[key], let text = try string(key, expected: expected) else { return nil }
        guard let value = convert(text) else {
            throw invalid(setting, "expected \(expected), got \(quoted(text))")
        }
        return value
    }

    /// An integer, read like libxlu's `xlu_cfg_get_long`: decimal, 0x hex or 0 octal, from a
    /// number or a string holding one; `+=` is refused. Domus refuses what xl only warns about.
    mutating func integer(_ key: String, expected: String, in range: ClosedRange<Int>) throws(XLConfigError) -> Int? {
        guard let setting = file[key] else { return nil }
        let value = setting.effectiveValue
        guard let text = value.text else {
            throw invalid(setting, "expected \(expected), got \(value)")
        }
        guard setting.operation == .assign else {
            throw invalid(setting, "+= cannot be used with numbers; use \(key) = \(text)")
        }
        guard let number = parseIntegerLiteral(text) else {
            throw invalid(setting, "expected \(expected), got \(value)")
        }
        guard range.contains(number) else {
            throw invalid(setting, "expected \(expected) from \(range.lowerBound) to \(range.upperBound), got \(text)")
        }
        if isOctalLiteral(text) {
            warn(setting, "\(text) has a leading 0, so xl reads it as octal: \(number); write \(number) to say so")
        }
        return number
    }

    /// A list of strings, for `disk=` and `vif=`; `nil` if unset.
    func stringList(_ key: String, expected: String) throws(XLConfigError) -> (XLConfigSetting, [String])? {
        guard let setting = file[key] else { return nil }
        guard case .list(let values) = setting.effectiveValue else {
            throw invalid(
                setting, "expected a list of \(expected), as in \(key) = [ \"...\" ], got \(setting.effectiveValue)")
        }
        var strings: [String] = []
        for (index, value) in values.enumerated() {
            guard let text = value.text else {
                throw invalid(setting, "element \(index) must be a string, got \(value)")
            }
            strings.append(text)
        }
        return (setting, strings)
    }

    /// `type=` and the deprecated `builder=`; Domus refuses all but PV.
    mutating func domainType() throws(XLConfigError) -> DomainType {
        var type: DomainType?
        if let setting = file["type"], let text = try string("type", expected: "a guest type") {
            guard let parsed = DomainType(rawValue: text) else {
                throw invalid(setting, "unknown guest type \(quoted(text)); expected \"pv\", \"pvh\" or \"hvm\"")
            }
            type = parsed
        }
        if let setting = file["builder"], let text = try string("builder", expected: "a builder name") {
            let builderType: DomainType
            switch text {
            case "generic": builderType = .pv
            case "hvm": builderType = .hvm
            default: throw invalid(setting, "unknown builder \(quoted(text)); expected \"generic\" or \"hvm\"")
            }
            if let type, type != builderType {
                throw invalid(setting, "builder = \(quoted(text)) contradicts type = \"\(type.rawValue)\"")
            }
            if type == nil {
                warn(setting, "builder is deprecated; write type = \"\(builderType.rawValue)\"")
            }
            type = builderType
        }
        let resolved = type ?? .pv
        if resolved != .pv {
            let key = file["type"] != nil ? "type" : "builder"
            let written = (try? string(key, expected: "")) ?? resolved.rawValue
            if let setting = file[key] {
                throw .unsupported(
                    key: key, location: setting.location, message: "\(key) = \(quoted(written)) is not supported by Domus yet")
            }
        }
        return resolved
    }

    /// `name=`: required; see `DomainConfiguration.name` for the rules.
    func domainName() throws(XLConfigError) -> String {
        guard let setting = file["name"], let name = try string("name", expected: "a domain name") else {
            throw .missingKey(
                key: "name", source: file.sourceName, message: "a domain name is required, as in name = \"web1\"")
        }
        if name.isEmpty {
            throw invalid(setting, "the domain name must not be empty")
        }
        if name.count > 64 {
            throw invalid(setting, "the domain name has \(name.count) characters; at most 64 are allowed")
        }
        let allowed = name.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "_.+-".unicodeScalars.contains(scalar))
        }
        if !allowed {
            throw invalid(setting, "invalid domain name \(quoted(name)); use letters, digits, `_`, `.`, `+` and `-`")
        }
        if name.hasPrefix("-") {
            throw invalid(setting, "invalid domain name \(quoted(name)); it must not start with `-`")
        }
        if name.allSatisfy(\.isNumber) {
            throw invalid(setting, "invalid domain name \(quoted(name)); xl reads an all-digit name as a domain id")
        }
        if name == "Domain-0" {
            throw invalid(setting, "\"Domain-0\" is the name of the control domain")
        }
        return name
    }

    /// `cpus=`/`cpus_soft=`: a CPU list string for all vCPUs, or a list with one per vCPU.
    mutating func affinity(_ key: String, vcpuCount: Int) throws(XLConfigError) -> CPUAffinity? {
        guard let setting = file[key] else { return nil }
        func cpuList(_ text: String) throws(XLConfigError) -> CPUList {
            do {
                return try CPUList(parsing: text)
            } catch {
                throw invalid(setting, error.message)
            }
        }
        guard case .list(let values) = setting.effectiveValue else {
            return .allVCPUs(try cpuList(setting.effectiveValue.text ?? ""))
        }
        guard !values.isEmpty else { throw invalid(setting, "expected a CPU list, got an empty list") }
        var lists: [CPUList] = []
        for (index, value) in values.enumerated() {
            guard let text = value.text else {
                throw invalid(setting, "element \(index) must be a CPU list string, got \(value)")
            }
            lists.append(try cpuList(text))
        }
        if lists.count > vcpuCount {
            warn(setting, "\(lists.count) entries for \(vcpuCount) vCPUs; the extra entries are ignored, as in xl")
            lists = Array(lists.prefix(vcpuCount))
        }
        return .perVCPU(lists)
    }

    /// `kernel=`; `bootloader=` and `firmware=` are refused first, since they replace it.
    func kernel() throws(XLConfigError) -> String {
        for key in ["bootloader", "firmware"] {
            if let setting = file[key], let text = try string(key, expected: "a program name") {
                throw .unsupported(
                    key: key, location: setting.location,
                    message: "\(key) = \(quoted(text)) is not supported by Domus yet; boot the guest's kernel "
                        + "directly with kernel = \"/path/to/vmlinuz\" (and ramdisk = \"...\")")
            }
        }
        guard let setting = file["kernel"], let kernel = try string("kernel", expected: "a path to the kernel image")
        else {
            throw .missingKey(
                key: "kernel", source: file.sourceName,
                message: "a PV guest needs kernel = \"/path/to/vmlinuz\" (Domus runs no bootloader)")
        }
        guard !kernel.isEmpty else { throw invalid(setting, "the kernel path must not be empty") }
        return kernel
    }

    /// The kernel command line, exactly as xl_parse.c `parse_cmdline` composes it.
    mutating func commandLine() throws(XLConfigError) -> String? {
        let cmdline = try string("cmdline", expected: "a kernel command line string")
        let root = try string("root", expected: "a root device string")
        let extra = try string("extra", expected: "a kernel command line string")
        if let cmdline {
            if root != nil || extra != nil, let setting = file["cmdline"] {
                warn(setting, "ignoring root= and extra= in favour of cmdline=, as xl does")
            }
            return cmdline
        }
        switch (root, extra) {
        case (let root?, let extra?): return "root=\(root) \(extra)"
        case (let root?, nil): return "root=\(root)"
        case (nil, let extra?): return extra
        case (nil, nil): return nil
        }
    }

    /// One of the `on_*` event actions.
    func action(_ key: String) throws(XLConfigError) -> ShutdownAction? {
        let names = ShutdownAction.allCases.map(\.rawValue).joined(separator: ", ")
        guard let setting = file[key], let text = try string(key, expected: "an action (\(names))") else { return nil }
        guard let action = ShutdownAction(rawValue: text) else {
            throw invalid(setting, "unknown action \(quoted(text)); expected one of \(names)")
        }
        return action
    }

    /// `disk=[...]`, each parsed; two disks may not share a vdev.
    func disks() throws(XLConfigError) -> [DiskSpec] {
        guard let (setting, specs) = try stringList("disk", expected: "disk specifications") else { return [] }
        var disks: [DiskSpec] = []
        for (index, spec) in specs.enumerated() {
            let disk: DiskSpec
            do {
                disk = try DiskSpec.parse(spec)
            } catch {
                throw .invalidDevice(
                    key: "disk", index: index, spec: spec, location: setting.location, message: error.message)
            }
            if let earlier = disks.firstIndex(where: { $0.deviceNumber == disk.deviceNumber }) {
                throw .invalidDevice(
                    key: "disk", index: index, spec: spec, location: setting.location,
                    message: "vdev \(disk.vdev) is the same device as disk[\(earlier)]'s \(disks[earlier].vdev)")
            }
            disks.append(disk)
        }
        return disks
    }

    /// `vif=[...]`, each parsed; MACs and DEVIDs must be unique.
    mutating func vifs() throws(XLConfigError) -> [VifSpec] {
        guard let (setting, specs) = try stringList("vif", expected: "vif specifications") else { return [] }
        var vifs: [VifSpec] = []
        for (index, spec) in specs.enumerated() {
            var messages: [String] = []
            let vif: VifSpec
            do {
                vif = try VifSpec.parse(spec, warnings: &messages)
            } catch {
                throw .invalidDevice(key: "vif", index: index, spec: spec, location: setting.location, message: error.message)
            }
            for message in messages {
                warnings.append(XLConfigWarning(key: "vif[\(index)]", location: setting.location, message: message))
            }
            if let mac = vif.mac, let earlier = vifs.firstIndex(where: { $0.mac == mac }) {
                throw .invalidDevice(
                    key: "vif", index: index, spec: spec, location: setting.location,
                    message: "mac \(mac) is already used by vif[\(earlier)]")
            }
            let devid = vif.devid ?? index
            if let earlier = vifs.indices.first(where: { (vifs[$0].devid ?? $0) == devid }) {
                throw .invalidDevice(
                    key: "vif", index: index, spec: spec, location: setting.location,
                    message: "devid \(devid) is already used by vif[\(earlier)]")
            }
            vifs.append(vif)
        }
        return vifs
    }
}
