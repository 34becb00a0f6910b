// Payload argument parsing: get_string(), get_strings() and onearg() of
// tools/xenstored/core.c, and parse_domid() of domain.c.

/// Splits request payloads into their NUL-terminated arguments.
///
/// Payloads come from guests and are hostile: every function here only slices
/// the payload (at most `XENSTORE_PAYLOAD_MAX` bytes) and never traps.
enum XenStoreWire {
    /// The single argument of a one-argument request, without its NUL, or nil.
    ///
    /// Like `onearg`: the payload must be non-empty and contain exactly one NUL,
    /// as its last byte.
    static func singleArgument(_ payload: [UInt8]) -> ArraySlice<UInt8>? {
        guard let nul = payload.firstIndex(of: 0), nul == payload.count - 1 else { return nil }
        return payload[..<nul]
    }

    /// The NUL-terminated strings at the start of the payload, without their NULs.
    ///
    /// Like `get_strings`: bytes after the last NUL are not a string and are
    /// ignored, so `"a\0b"` has one argument.
    static func strings(_ payload: [UInt8]) -> [ArraySlice<UInt8>] {
        var result: [ArraySlice<UInt8>] = []
        var start = payload.startIndex
        while let nul = payload[start...].firstIndex(of: 0) {
            result.append(payload[start..<nul])
            start = nul + 1
        }
        return result
    }

    /// The number of NULs in the payload (`xenstore_count_strings`).
    static func nulCount(_ payload: [UInt8]) -> Int {
        payload.reduce(0) { $1 == 0 ? $0 + 1 : $0 }
    }

    /// A decimal domain id from 0 to 65535, or nil (`parse_domid`, which
    /// rejects trailing characters and values above 65535; this also rejects
    /// an empty string and signs, which no real client sends).
    static func domainID(_ bytes: ArraySlice<UInt8>) -> XenStore.DomainID? {
        guard let value = decimal(bytes, maximum: Int(UInt16.max)) else { return nil }
        return XenStore.DomainID(rawValue: UInt16(value))
    }

    /// A non-negative decimal number no larger than `maximum`, or nil.
    static func decimal(_ bytes: ArraySlice<UInt8>, maximum: Int) -> Int? {
        guard !bytes.isEmpty else { return nil }
        var value = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            let (shifted, overflowed) = value.multipliedReportingOverflow(by: 10)
            let (sum, carried) = shifted.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            guard !overflowed, !carried, sum <= maximum else { return nil }
            value = sum
        }
        return value
    }

    /// A signed decimal number that fits in 64 bits, or nil; the `<gfn>` of
    /// `XS_INTRODUCE` is "represented in signed decimal (!)" (`docs/misc/xenstore.txt`).
    static func signedDecimal(_ bytes: ArraySlice<UInt8>) -> Int64? {
        var digits = bytes
        let negative = digits.first == UInt8(ascii: "-")
        if negative { digits = digits.dropFirst() }
        guard let magnitude = decimal(digits, maximum: Int(Int64.max)) else { return nil }
        return negative ? -Int64(magnitude) : Int64(magnitude)
    }

    /// A string followed by its NUL, the usual reply shape.
    static func terminated(_ string: String) -> [UInt8] {
        Array(string.utf8) + [0]
    }

    /// The `OK\0` acknowledgement (`send_ack`).
    static let ok: [UInt8] = terminated("OK")
}
