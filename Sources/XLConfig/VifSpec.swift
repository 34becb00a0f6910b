// Network interface specification strings: the entries of `vif = [ ... ]`.
//
// Follows xl-network-configuration(5), xl_parse.c `parse_nic_config` and libxlu_vif.c
// (rate parsing), written afresh.

/// A MAC address (xl-network-configuration(5) `mac`).
public struct MACAddress: Sendable, Hashable, CustomStringConvertible {
    /// Xen's Organizationally Unique Identifier, `00:16:3e`, from which toolstacks pick
    /// addresses when none is given.
    public static let xenOUI: [UInt8] = [0x00, 0x16, 0x3E]

    /// Six bytes, first byte first.
    public let bytes: [UInt8]

    /// Six groups of two hex digits separated by `:` (or all by `-`), in either case:
    /// `00:16:3E:74:3d:76`.
    public init?(_ text: String) {
        let separator: Character = text.contains("-") ? "-" : ":"
        let groups = text.split(separator: separator, omittingEmptySubsequences: false)
        guard groups.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for group in groups {
            guard group.count == 2, group.allSatisfy(\.isHexDigit), let byte = UInt8(group, radix: 16) else { return nil }
            bytes.append(byte)
        }
        self.bytes = bytes
    }

    /// Bit 0 of the first byte: a group address, which no interface may use as its own.
    public var isMulticast: Bool { (bytes.first ?? 0) & 0x01 != 0 }
    /// Bit 1 of the first byte: locally administered rather than vendor-assigned.
    public var isLocallyAdministered: Bool { (bytes.first ?? 0) & 0x02 != 0 }
    /// All zero: libxl reads this as "not set" and generates one.
    public var isZero: Bool { bytes.allSatisfy { $0 == 0 } }

    /// Lower-case, colon-separated.
    public var description: String {
        bytes.map { $0 < 0x10 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: ":")
    }
}

/// Outgoing rate limit (`rate=RATE/s[@INTERVAL]`): a credit of `bytesPerInterval`
/// replenished every `intervalMicroseconds`, as libxlu_vif.c computes it.
public struct VifRate: Sendable, Hashable {
    public let bytesPerInterval: UInt64
    public let intervalMicroseconds: UInt32
    /// The rate as written.
    public let text: String

    /// libxlu's default replenishment interval, 50 ms.
    public static let defaultIntervalMicroseconds: UInt32 = 50_000

    /// `10Mb/s`, `250KB/s`, `1MB/s@20ms`: a positive integer, an optional `G`/`M`/`K`
    /// (powers of 1000), `B` for bytes or `b` for bits, `/s`; then optionally `@` and an
    /// interval in `s` (default unit), `ms` or `us`.
    public init(parsing text: String) throws(SpecStringError) {
        let parts = text.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        let ratePart = parts.first ?? ""
        guard !ratePart.isEmpty else { throw SpecStringError("no rate specified in \(quoted(text))") }
        guard ratePart.hasSuffix("/s"), ratePart.count > 3 else {
            throw SpecStringError("invalid rate \(quoted(text)); expected a rate such as 10Mb/s, 250KB/s or 1MB/s@20ms")
        }
        var amount = ratePart.dropLast(2)
        let isBits = amount.last == "b"
        guard amount.last == "b" || amount.last == "B" else {
            throw SpecStringError("invalid rate \(quoted(text)); the unit must be B (bytes) or b (bits) per second")
        }
        amount = amount.dropLast()
        var multiplier: UInt64 = 1
        switch amount.last {
        case "G": multiplier = 1_000_000_000
        case "M": multiplier = 1_000_000
        case "K": multiplier = 1_000
        default: break
        }
        if multiplier != 1 { amount = amount.dropLast() }
        guard let count = decimal(amount) else {
            throw SpecStringError("invalid rate \(quoted(text)); expected a rate such as 10Mb/s, 250KB/s or 1MB/s@20ms")
        }
        guard count > 0, count <= Int(UInt32.max) else { throw SpecStringError("rate overflow in \(quoted(text))") }
        var bytesPerSecond = UInt64(count) * multiplier
        if isBits { bytesPerSecond /= 8 }

        var interval = UInt64(Self.defaultIntervalMicroseconds)
        if let intervalText = parts.dropFirst().first {
            var value = intervalText
            if value.hasSuffix("s") { value = value.dropLast() }
            var unit: UInt64 = 1_000_000
            if value.hasSuffix("m") {
                unit = 1_000
                value = value.dropLast()
            } else if value.hasSuffix("u") {
                unit = 1
                value = value.dropLast()
            }
            guard let number = decimal(value) else {
                throw SpecStringError(
                    "invalid replenishment interval \(quoted(String(intervalText))); expected e.g. 20ms, 500us or 1s")
            }
            guard number > 0, number <= Int(UInt32.max) else {
                throw SpecStringError("replenishment interval overflow in \(quoted(text))")
            }
            interval = UInt64(number) * unit
            guard interval <= UInt64(UInt32.max) else {
                throw SpecStringError("replenishment interval overflow in \(quoted(text))")
            }
        }
        let (product, overflow) = bytesPerSecond.multipliedReportingOverflow(by: interval)
        guard !overflow else { throw SpecStringError("rate overflow in \(quoted(text))") }
        bytesPerInterval = product / 1_000_000
        intervalMicroseconds = UInt32(interval)
        self.text = text
    }
}

/// `type=` of a vif: meaningful for HVM guests only.
public enum VifType: String, Sendable, Hashable, CaseIterable {
    /// A paravirtualised device only.
    case vif
    /// An emulated device plus a paravirtualised one (HVM default).
    case ioemu
}

/// One `vif=` entry, parsed and validated (xl-network-configuration(5)). Every field is
/// optional; `nil` means the toolstack's default.
public struct VifSpec: Sendable, Hashable {
    /// `mac=`; `nil` (or all zero) means generate one in Xen's OUI.
    public var mac: MACAddress?
    /// `bridge=`; default xenbr0.
    public var bridge: String?
    /// `gatewaydev=` (or the deprecated `netdev=`), for the vif-route script.
    public var gatewayDevice: String?
    /// `ip=`: address(es) for the hotplug script.
    public var ip: String?
    /// `script=`: hotplug script; default vif-bridge.
    public var script: String?
    /// `backend=`: backend domain name or id; default domain 0.
    public var backendDomain: String?
    /// `vifname=`: backend interface name; default `vifDOMID.DEVID`.
    public var vifname: String?
    /// `model=`: emulated NIC model (HVM only).
    public var model: String?
    /// `type=` (HVM only).
    public var type: VifType?
    /// `rate=`.
    public var rate: VifRate?
    /// `devid=`; default the entry's index in `vif=`.
    public var devid: Int?
    /// `mtu=`.
    public var mtu: Int?
    /// `vlan=`, as written (e.g. `10p/20`).
    public var vlan: String?
    /// `trusted` / `untrusted`.
    public var trusted: Bool?
    /// COLO parameters (`colo_*=`, `forwarddev=`), by key; xl documents them as unstable.
    public var coloOptions: [String: String]

    public init() {
        coloOptions = [:]
    }

    /// Linux limits interface names to 15 bytes (IFNAMSIZ - 1).
    public static let maximumVifnameLength = 15

    /// Parses one vif specification string: comma-separated `key=value` pairs and flags,
    /// blanks around each ignored, empty pieces skipped. Unknown keys are ignored with a
    /// message appended to `warnings`, as xl prints and goes on.
    public static func parse(_ spec: String, warnings: inout [String]) throws(SpecStringError) -> VifSpec {
        var vif = VifSpec()
        for piece in spec.split(separator: ",", omittingEmptySubsequences: true) {
            let token = piece.trimmingBlanks()
            if token.isEmpty { continue }
            if token == "trusted" || token == "untrusted" {
                vif.trusted = token == "trusted"
                continue
            }
            guard let equals = token.firstIndex(of: "=") else {
                warnings.append("unrecognized vif parameter `\(token)`, ignored")
                continue
            }
            let key = String(token[..<equals])
            let value = String(token[token.index(after: equals)...])
            try vif.apply(key: key, value: value, warnings: &warnings)
        }
        return vif
    }

    private mutating func apply(key: String, value: String, warnings: inout [String]) throws(SpecStringError) {
        switch key {
        case "mac":
            guard let address = MACAddress(value) else {
                throw SpecStringError(
                    "invalid mac \(quoted(value)); expected six two-digit hex groups such as 00:16:3e:12:34:56")
            }
            guard !address.isMulticast else {
                throw SpecStringError(
                    "mac \(address) is a multicast address (low bit of the first byte set); an interface "
                        + "needs a unicast address")
            }
            mac = address.isZero ? nil : address
        case "bridge": bridge = value
        case "gatewaydev": gatewayDevice = value
        case "netdev":
            warnings.append("the netdev parameter is deprecated, use gatewaydev instead")
            gatewayDevice = value
        case "ip": ip = value
        case "script": script = value
        case "backend": backendDomain = value
        case "vifname":
            guard !value.isEmpty, value.utf8.count <= Self.maximumVifnameLength,
                !value.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace })
            else {
                throw SpecStringError(
                    "invalid vifname \(quoted(value)); interface names have 1 to \(Self.maximumVifnameLength) "
                        + "characters and no `/`, `:` or blanks")
            }
            vifname = value
        case "model": model = value
        case "type":
            guard let parsed = VifType(rawValue: value) else {
                throw SpecStringError("invalid type \(quoted(value)); expected vif or ioemu")
            }
            type = parsed
        case "rate": rate = try VifRate(parsing: value)
        case "devid":
            guard let number = decimal(Substring(value)), number <= Int(Int32.max) else {
                throw SpecStringError("invalid devid \(quoted(value)); expected a non-negative integer")
            }
            devid = number
        case "mtu":
            guard let number = decimal(Substring(value)), (68...65535).contains(number) else {
                throw SpecStringError("invalid mtu \(quoted(value)); expected an integer from 68 to 65535")
            }
            mtu = number
        case "vlan": vlan = value
        case "accel":
            warnings.append("the accel parameter for vifs is not supported, ignored")
        case "forwarddev":
            coloOptions[key] = value
        case _ where key.hasPrefix("colo_"):
            coloOptions[key] = value
        default:
            warnings.append("unrecognized vif parameter `\(key)=`, ignored")
        }
    }
}
