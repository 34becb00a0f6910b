// Disk specification strings: the entries of `disk = [ ... ]`.
//
// Follows xl-disk-configuration(5) and the rules of tools/libs/util/libxlu_disk_l.l and
// libxlu_disk.c (written afresh): comma-separated positional parameters
// `target,format,vdev,access`, `key=value` parameters and flags in any order, `target=`
// last, and xend's deprecated prefixes such as `phy:` and `raw:`.

/// The image format of a disk's target (xl-disk-configuration(5) `format`).
public enum DiskFormat: String, Sendable, Hashable, CaseIterable {
    case raw
    case qcow
    case qcow2
    case vhd
    case qed
    /// No medium: an empty CD-ROM drive.
    case empty
}

/// Which backend implementation serves the disk (`backendtype=`).
public enum DiskBackendType: String, Sendable, Hashable, CaseIterable {
    case phy
    case tap
    case qdisk
    case standalone
}

/// The protocol the guest sees (`specification=`).
public enum DiskSpecification: String, Sendable, Hashable, CaseIterable {
    case xen
    case virtio
}

/// The COLO replication parameters of a disk (xl-disk-configuration(5), "COLO Parameters").
public struct DiskCOLOOptions: Sendable, Hashable {
    /// `colo` / `no-colo`; `nil` if neither was given.
    public var isEnabled: Bool?
    public var host: String?
    public var port: Int?
    public var export: String?
    public var activeDisk: String?
    public var hiddenDisk: String?
}

/// One `disk=` entry, parsed and validated (xl-disk-configuration(5)).
public struct DiskSpec: Sendable, Hashable {
    /// The block device, image file or script argument. `nil` only for an empty CD-ROM
    /// drive. libxl prepends `/dev/` to a `phy` target not starting with `/`; this is the
    /// text as written.
    public var target: String?
    /// Default `raw`; `empty` for a CD-ROM drive without a target.
    public var format: DiskFormat
    /// The guest's name for the disk (`xvda`, `hdc`, `sdb3`, `d1p2`, or a raw device
    /// number), see xen-vbd-interface(7).
    public var vdev: String
    /// The xenstore device number (the VBD's DEVID) that `vdev` encodes.
    public var deviceNumber: Int
    /// `access=r`/`ro`, and always for CD-ROMs. Default read-write.
    public var isReadOnly: Bool
    /// `cdrom` or `devtype=cdrom`.
    public var isCDROM: Bool
    /// CD-ROMs are removable; nothing else is.
    public var isRemovable: Bool { isCDROM }
    /// `backend=`: the backend domain's name; `nil` for domain 0.
    public var backendDomain: String?
    /// `backendtype=`; `nil` lets the toolstack choose.
    public var backendType: DiskBackendType?
    /// `specification=`; `nil` means xen.
    public var specification: DiskSpecification?
    /// `script=` (or the deprecated `iscsi:`-style prefixes, which become `block-iscsi`).
    public var script: String?
    /// `direct-io-safe`.
    public var isDirectIOSafe: Bool
    /// `discard` / `no-discard`; `nil` if neither (the backend's default, on).
    public var discard: Bool?
    /// `trusted` / `untrusted`; `nil` if neither (trusted).
    public var trusted: Bool?
    /// `grant_usage=1` / `0`; `nil` for the default.
    public var grantUsage: Bool?
    public var colo: DiskCOLOOptions

    /// Parses one disk specification string.
    public static func parse(_ spec: String) throws(SpecStringError) -> DiskSpec {
        var parser = DiskSpecParser(spec: spec)
        return try parser.parse()
    }
}

/// State while reading one disk spec: the fields so far and which positional parameter
/// comes next, as libxlu_disk_l.l tracks them.
private struct DiskSpecParser {
    let spec: String
    var target: String?
    var format: DiskFormat?
    var vdev: String?
    var isReadOnly = false
    var accessSetPositionally = false
    var isCDROM = false
    var backendDomain: String?
    var backendType: DiskBackendType?
    var specification: DiskSpecification?
    var script: String?
    var isDirectIOSafe = false
    var discard: Bool?
    var trusted: Bool?
    var grantUsage: Bool?
    var colo = DiskCOLOOptions()
    /// A deprecated prefix was seen, so the second positional parameter is the vdev.
    var hadDeprecatedPrefix = false

    init(spec: String) {
        self.spec = spec
    }

    private static let knownPrefixes: Set<String> = [
        "raw", "qcow", "qcow2", "vhd", "iscsi", "nbd", "enbd", "drbd", "tapdisk", "tap", "tap2", "aio", "ioemu",
        "file", "phy",
    ]

    mutating func parse() throws(SpecStringError) -> DiskSpec {
        var rest = Substring(spec)
        while true {
            rest = rest.drop(while: { $0 == " " || $0 == "\t" || $0 == "\n" })
            if rest.isEmpty { break }
            // `target=` swallows the rest of the spec, commas included.
            if rest.hasPrefix("target=") {
                var value = rest.dropFirst("target=".count)
                if value.hasSuffix(",") { value = value.dropLast() }
                try Self.saveString(&target, String(value), name: "target")
                break
            }
            if let (prefix, remainder) = Self.deprecatedPrefix(rest) {
                try applyPrefix(prefix)
                rest = remainder
                continue
            }
            let token: Substring
            if let comma = rest.firstIndex(of: ",") {
                token = rest[..<comma]
                rest = rest[rest.index(after: comma)...]
            } else {
                token = rest
                rest = rest[rest.endIndex...]
            }
            try apply(token: token.trimmingBlanks())
        }
        return try finish()
    }

    /// `name:` at the start of `text`, for a deprecated prefix. Known prefixes match
    /// whatever follows; other lower-case words followed by `:` and then a character that
    /// cannot continue a vdev (so `hdc:cdrom` is not a prefix) are unknown prefixes.
    private static func deprecatedPrefix(_ text: Substring) -> (String, Substring)? {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let name = text[..<colon]
        guard let first = name.first, first.isASCII, first.isLowercase,
            name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber) })
        else { return nil }
        let remainder = text[text.index(after: colon)...]
        if !knownPrefixes.contains(String(name)) {
            if let next = remainder.first, next.isASCII, next.isLowercase || next.isNumber { return nil }
        }
        return (String(name), remainder)
    }

    private mutating func applyPrefix(_ prefix: String) throws(SpecStringError) {
        hadDeprecatedPrefix = true
        switch prefix {
        case "raw", "qcow", "qcow2", "vhd":
            try setFormat(prefix)
        case "iscsi", "nbd", "enbd", "drbd":
            try Self.saveString(&script, "block-" + prefix, name: "script")
        case "tapdisk", "tap", "tap2", "aio", "ioemu", "file", "phy":
            break  // xend needed these; libxl strips and ignores them.
        default:
            throw SpecStringError("unknown deprecated disk prefix `\(prefix):`")
        }
    }

    private mutating func apply(token: Substring) throws(SpecStringError) {
        if let equals = token.firstIndex(of: "=") {
            let key = String(token[..<equals])
            let value = String(token[token.index(after: equals)...].trimmingBlanks())
            try apply(key: key, value: value, token: token)
            return
        }
        switch token {
        case "cdrom": isCDROM = true
        case "direct-io-safe": isDirectIOSafe = true
        case "discard": discard = true
        case "no-discard": discard = false
        case "colo": colo.isEnabled = true
        case "no-colo": colo.isEnabled = false
        case "trusted": trusted = true
        case "untrusted": trusted = false
        default: try applyPositional(String(token))
        }
    }

    private mutating func apply(key: String, value: String, token: Substring) throws(SpecStringError) {
        switch key {
        case "format": try setFormat(value)
        case "vdev": try Self.saveString(&vdev, value, name: "vdev")
        case "access": try setAccess(value)
        case "devtype":
            switch value {
            case "cdrom": isCDROM = true
            case "disk": isCDROM = false
            default: throw SpecStringError("unknown devtype \(quoted(value)); expected cdrom or disk")
            }
        case "backend": try Self.saveString(&backendDomain, value, name: "backend")
        case "backendtype":
            guard let type = DiskBackendType(rawValue: value) else {
                throw SpecStringError("unknown backendtype \(quoted(value)); expected phy, qdisk, standalone or tap")
            }
            try Self.setOnce(&backendType, type, name: "backendtype")
        case "specification":
            guard let specificationValue = DiskSpecification(rawValue: value) else {
                throw SpecStringError("unknown specification \(quoted(value)); expected xen or virtio")
            }
            try Self.setOnce(&specification, specificationValue, name: "specification")
        case "script": try Self.saveString(&script, value, name: "script")
        case "grant_usage":
            switch value {
            case "1": grantUsage = true
            case "0": grantUsage = false
            default: throw SpecStringError("grant_usage must be 0 or 1, got \(quoted(value))")
            }
        case "colo-host": try Self.saveString(&colo.host, value, name: "colo-host")
        case "colo-export": try Self.saveString(&colo.export, value, name: "colo-export")
        case "active-disk": try Self.saveString(&colo.activeDisk, value, name: "active-disk")
        case "hidden-disk": try Self.saveString(&colo.hiddenDisk, value, name: "hidden-disk")
        case "colo-port":
            guard let port = decimal(Substring(value)), (1...65535).contains(port) else {
                throw SpecStringError("colo-port must be a port number from 1 to 65535, got \(quoted(value))")
            }
            colo.port = port
        case "mode":
            throw SpecStringError("unknown parameter `mode=`; xl spells it access=\(value)")
        default:
            let looksLikeKey =
                key.first.map { $0.isASCII && $0.isLowercase } == true
                && key.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_") }
            if looksLikeKey {
                throw SpecStringError("unknown parameter `\(key)=`")
            }
            throw SpecStringError(
                "bad disk syntax near \(quoted(String(token))); a target containing `=` or `,` must be given "
                    + "last as target=...")
        }
    }

    /// Positional parameters fill target, format, vdev, access in turn. After a deprecated
    /// prefix, or once `format=` was given, the second one is the vdev (old xend syntax).
    private mutating func applyPositional(_ value: String) throws(SpecStringError) {
        if target == nil {
            target = value
        } else if !hadDeprecatedPrefix && format == nil {
            if target == "" && value.contains(":") {
                // xend's empty CD-ROM: `,hdc:cdrom,r`.
                try setVdevAndDevtype(value)
                format = .empty
            } else {
                do {
                    try setFormat(value)
                } catch {
                    throw SpecStringError(
                        "\(error.message) (positional parameters are target,format,vdev,access; "
                            + "\(quoted(value)) is in the format position)")
                }
            }
        } else if vdev == nil {
            if value.contains(":") {
                try setVdevAndDevtype(value)
            } else {
                try Self.saveString(&vdev, value, name: "vdev")
            }
        } else if !accessSetPositionally {
            accessSetPositionally = true
            try setAccess(value)
        } else {
            throw SpecStringError("too many positional parameters, near \(quoted(value))")
        }
    }

    /// The deprecated `vdev:devtype` form, split at the last colon.
    private mutating func setVdevAndDevtype(_ value: String) throws(SpecStringError) {
        guard let colon = value.lastIndex(of: ":") else { return }
        try Self.saveString(&vdev, String(value[..<colon]), name: "vdev")
        switch value[value.index(after: colon)...] {
        case "cdrom": isCDROM = true
        case "disk": isCDROM = false
        case let other: throw SpecStringError("unknown deprecated device type `\(other)` in \(quoted(value))")
        }
    }

    private mutating func setFormat(_ value: String) throws(SpecStringError) {
        guard let parsed = value.isEmpty ? .raw : DiskFormat(rawValue: value) else {
            throw SpecStringError("unknown format \(quoted(value)); expected raw, qcow, qcow2, vhd, qed or empty")
        }
        try Self.setOnce(&format, parsed, name: "format")
    }

    /// `r`/`ro` read-only; `w`/`rw`/empty read-write.
    private mutating func setAccess(_ value: String) throws(SpecStringError) {
        switch value {
        case "r", "ro": isReadOnly = true
        case "w", "rw", "": isReadOnly = false
        default: throw SpecStringError("unknown access \(quoted(value)); expected r, ro, w or rw")
        }
    }

    /// An enum parameter may be repeated only with the same value.
    private static func setOnce<Value: Equatable>(_ field: inout Value?, _ value: Value, name: String) throws(SpecStringError)
    {
        if let existing = field, existing != value {
            throw SpecStringError("\(name) respecified")
        }
        field = value
    }

    /// A string parameter may be given once; an earlier empty value may be replaced.
    private static func saveString(_ field: inout String?, _ value: String, name: String) throws(SpecStringError) {
        if let existing = field, !existing.isEmpty {
            throw SpecStringError("\(name) respecified, near \(quoted(value))")
        }
        field = value
    }

    /// Applies libxlu_disk.c's defaults and checks.
    private mutating func finish() throws(SpecStringError) -> DiskSpec {
        var finalFormat = format ?? .raw
        if isCDROM {
            isReadOnly = true
            if target == nil || target == "" { finalFormat = .empty }
        }
        guard let vdev, !vdev.isEmpty else {
            throw SpecStringError("no vdev specified; give the guest's device name, as in vdev=xvda")
        }
        guard let deviceNumber = virtualDiskDeviceNumber(vdev) else {
            throw SpecStringError(
                "invalid vdev \(quoted(vdev)); expected a name like xvda, xvdb2, hdc, sda1 or d0p1 "
                    + "(see xen-vbd-interface(7))")
        }
        let finalTarget = target.flatMap { $0.isEmpty ? nil : $0 }
        if finalTarget == nil && !isCDROM {
            throw SpecStringError("no target specified (and device not removable)")
        }
        return DiskSpec(
            target: finalTarget, format: finalFormat, vdev: vdev, deviceNumber: deviceNumber, isReadOnly: isReadOnly,
            isCDROM: isCDROM, backendDomain: backendDomain.flatMap { $0.isEmpty ? nil : $0 }, backendType: backendType,
            specification: specification, script: script.flatMap { $0.isEmpty ? nil : $0 },
            isDirectIOSafe: isDirectIOSafe, discard: discard, trusted: trusted, grantUsage: grantUsage, colo: colo)
    }
}

/// The xenstore device number of a vdev, as xen-vbd-interface(7) encodes it and libxl's
/// `libxl__device_disk_dev_number` computes it; `nil` if the name is not valid.
///
///     1 << 28 | disk << 8 | partition    xvd, disk or partition beyond 15
///     202 << 8 | disk << 4 | partition   xvd, disks and partitions up to 15
///     8 << 8 | disk << 4 | partition     sd, disks and partitions up to 15
///     3 << 8 | disk << 6 | partition     hd, disks 0..1, partitions 0..63
///     22 << 8 | (disk-2) << 6 | partition   hd, disks 2..3
///
/// A plain number (decimal, 0x hex or 0 octal) is taken as the device number itself.
func virtualDiskDeviceNumber(_ vdev: String) -> Int? {
    func xvd(_ disk: Int, _ partition: Int) -> Int {
        disk <= 15 && partition <= 15 ? (202 << 8) | (disk << 4) | partition : (1 << 28) | (disk << 8) | partition
    }
    // d<disk>p<partition>, and d<disk> for the whole disk as xen-vbd-interface(7) lists it.
    if vdev.hasPrefix("d") {
        let body = vdev.dropFirst()
        let parts = body.split(separator: "p", maxSplits: 1, omittingEmptySubsequences: false)
        if let disk = parts.first.flatMap(decimal), disk < 1 << 20 {
            if parts.count == 1 { return xvd(disk, 0) }
            if let partition = parts.last.flatMap(decimal), partition < 256 { return xvd(disk, partition) }
        }
    }
    if let (disk, partition) = driveLetters(vdev, prefix: "xvd", maxDisk: (1 << 20) - 1, maxPartition: 255) {
        return xvd(disk, partition)
    }
    if let number = parseIntegerLiteral(vdev), number >= 0, number <= Int(Int32.max) {
        return number
    }
    if let (disk, partition) = driveLetters(vdev, prefix: "hd", maxDisk: 3, maxPartition: 63) {
        return ((disk < 2 ? 3 : 22) << 8) | ((disk & 1) << 6) | partition
    }
    if let (disk, partition) = driveLetters(vdev, prefix: "sd", maxDisk: 15, maxPartition: 15) {
        return (8 << 8) | (disk << 4) | partition
    }
    return nil
}

/// `<prefix><letters><partition>`: letters count in bijective base 26 (`a` = 0, `z` = 25,
/// `aa` = 26), the partition is decimal without leading zeros, 0 if absent.
private func driveLetters(_ vdev: String, prefix: String, maxDisk: Int, maxPartition: Int) -> (Int, Int)? {
    guard vdev.hasPrefix(prefix) else { return nil }
    var rest = Substring(vdev).dropFirst(prefix.count)
    var disk = -1
    while let letter = rest.first?.asciiValue, letter >= UInt8(ascii: "a"), letter <= UInt8(ascii: "z") {
        disk = (disk + 1) * 26 + Int(letter - UInt8(ascii: "a"))
        guard disk <= maxDisk else { return nil }
        rest = rest.dropFirst()
    }
    guard disk >= 0 else { return nil }
    if rest.isEmpty { return (disk, 0) }
    guard !rest.hasPrefix("0"), let partition = decimal(rest), partition <= maxPartition else { return nil }
    return (disk, partition)
}
