// ImageLoader layer: bounds-checked little-endian reads from image bytes.

/// Little-endian field reads from untrusted bytes that never trap.
///
/// Every read checks its range first and returns `nil` when it would leave the buffer,
/// so parsers turn a short file into an `ImageError` instead of crashing. Offsets are
/// `UInt64` because they come straight from 64-bit ELF fields.
struct ByteReader {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var count: Int { bytes.count }

    /// The index range `[offset, offset + length)` if it lies inside the buffer.
    func range(offset: UInt64, length: UInt64) -> Range<Int>? {
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= UInt64(bytes.count) else { return nil }
        return Int(offset)..<Int(end)
    }

    /// The bytes in `[offset, offset + length)`, or `nil` if out of bounds.
    func slice(offset: UInt64, length: UInt64) -> ArraySlice<UInt8>? {
        guard let range = range(offset: offset, length: length) else { return nil }
        return bytes[range]
    }

    func u8(_ offset: UInt64) -> UInt8? {
        guard let range = range(offset: offset, length: 1) else { return nil }
        return bytes[range.lowerBound]
    }

    func u16(_ offset: UInt64) -> UInt16? {
        guard let range = range(offset: offset, length: 2) else { return nil }
        return UInt16(truncatingIfNeeded: littleEndian(bytes[range]))
    }

    func u32(_ offset: UInt64) -> UInt32? {
        guard let range = range(offset: offset, length: 4) else { return nil }
        return UInt32(truncatingIfNeeded: littleEndian(bytes[range]))
    }

    func u64(_ offset: UInt64) -> UInt64? {
        guard let range = range(offset: offset, length: 8) else { return nil }
        return littleEndian(bytes[range])
    }
}

/// The little-endian unsigned value of up to 8 bytes.
func littleEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    var value: UInt64 = 0
    for (shift, byte) in zip(stride(from: 0, to: 64, by: 8), bytes) {
        value |= UInt64(byte) << UInt64(shift)
    }
    return value
}

/// The text of `bytes` up to the first NUL (or all of it if there is none).
///
/// Xen's string notes are ASCIZ, but Linux emits FEATURES with `.ascii` and relies on
/// the note padding for the terminator, so both forms are accepted. Invalid UTF-8 is
/// replaced rather than rejected: the values are only compared and printed.
func cString(_ bytes: ArraySlice<UInt8>) -> String {
    let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
    return String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self)
}
