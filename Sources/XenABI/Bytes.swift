/// Little-endian readers and writers for Xen's wire structs. Every ABI struct has an
/// explicit field-by-field codec; nothing relies on Swift's memory layout.

/// Reads little-endian fields from a byte array; reading past the end is a typed error.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public struct OutOfBounds: Error, Sendable { public let offset: Int; public let size: Int }

    @inline(__always)
    public func integer<T: FixedWidthInteger>(_ type: T.Type = T.self, at offset: Int) throws(OutOfBounds) -> T {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset <= bytes.count - size else { throw OutOfBounds(offset: offset, size: size) }
        var value: T = 0
        for index in 0..<size { value |= T(truncatingIfNeeded: bytes[offset + index]) << (8 * index) }
        return value
    }

    public func u8(_ offset: Int) throws(OutOfBounds) -> UInt8 { try integer(at: offset) }
    public func u16(_ offset: Int) throws(OutOfBounds) -> UInt16 { try integer(at: offset) }
    public func u32(_ offset: Int) throws(OutOfBounds) -> UInt32 { try integer(at: offset) }
    public func u64(_ offset: Int) throws(OutOfBounds) -> UInt64 { try integer(at: offset) }
    public func i64(_ offset: Int) throws(OutOfBounds) -> Int64 { try integer(at: offset) }
}

/// Builds a little-endian byte image of a fixed size.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]
    public init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// Stores `value` at `offset`. Offsets are the codec's own constants, inside `size`.
    public mutating func set<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset + size <= bytes.count else { return }
        for index in 0..<size { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    }

    /// Copies `source` to `offset`, truncated to `limit` bytes.
    public mutating func set(bytes source: [UInt8], at offset: Int, limit: Int) {
        let count = min(source.count, limit, max(0, bytes.count - offset))
        for index in 0..<count { bytes[offset + index] = source[index] }
    }
}

/// A struct with a fixed wire layout. `layoutFacts` name fields as Xen's headers do
/// ("start_info.nr_pages", "sizeof start_info"), so tests can compare them with the
/// offsets a C compiler computes from the real headers.
public protocol WireLayout {
    static var size: Int { get }
    static var layoutFacts: [(name: String, value: Int)] { get }
}
