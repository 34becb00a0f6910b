// ImageLoader layer: the Linux bzImage wrapper around a compressed ELF kernel.

/// The parts of a bzImage's real-mode setup header (Linux boot protocol ≥ 2.08,
/// Documentation/arch/x86/boot.rst) that locate the protected-mode ELF payload, as read
/// by tools/libs/guest/xg_dom_bzimageloader.c `xc_dom_probe_bzimage_kernel`.
public struct BzImageHeader: Equatable, Sendable {
    /// `setup_sects` @0x1f1: 512-byte sectors of setup code after the boot sector.
    public var setupSectors: UInt8
    /// `version` @0x206, e.g. 0x020f for 2.15.
    public var protocolVersion: UInt16
    /// `payload_offset` @0x248, relative to the protected-mode code.
    public var payloadOffset: UInt32
    /// `payload_length` @0x24c.
    public var payloadLength: UInt32

    /// `"HdrS"` @0x202.
    static let magic: [UInt8] = Array("HdrS".utf8)
    static let magicOffset = 0x202
    /// End of the fields Xen reads (`sizeof(struct setup_header)`).
    static let size = 0x250
    /// Boot protocol 2.08 added payload_offset/payload_length.
    static let minimumVersion: UInt16 = 0x0208

    /// Whether `bytes` carries the bzImage magic.
    static func hasMagic(_ bytes: [UInt8]) -> Bool {
        bytes.count >= magicOffset + magic.count
            && bytes[magicOffset..<(magicOffset + magic.count)].elementsEqual(magic)
    }

    /// Reads and checks the header of a bzImage.
    public init(bytes: [UInt8]) throws(ImageError) {
        let reader = ByteReader(bytes)
        guard Self.hasMagic(bytes) else { throw .unrecognizedFormat }
        guard bytes.count >= Self.size, let setupSectors = reader.u8(0x1f1),
            let version = reader.u16(0x206), let payloadOffset = reader.u32(0x248),
            let payloadLength = reader.u32(0x24c)
        else {
            throw .truncated("bzImage setup header needs \(hex(UInt64(Self.size))) bytes, file has \(bytes.count)")
        }
        guard version >= Self.minimumVersion else { throw .bzImageProtocolTooOld(version) }
        self.setupSectors = setupSectors
        self.protocolVersion = version
        self.payloadOffset = payloadOffset
        self.payloadLength = payloadLength
    }

    /// File offset of the payload: `(setup_sects + 1) * 512 + payload_offset`, where
    /// `setup_sects` 0 means 4 (boot protocol; Xen omits this legacy rule, which no
    /// 2.08+ kernel needs).
    public var payloadFileOffset: UInt64 {
        let sectors = setupSectors == 0 ? 4 : UInt64(setupSectors)
        return (sectors + 1) * 512 + UInt64(payloadOffset)
    }

    /// The payload bytes of `bytes`, the file this header came from.
    public func payload(in bytes: [UInt8]) throws(ImageError) -> ArraySlice<UInt8> {
        let offset = payloadFileOffset
        let length = UInt64(payloadLength)
        guard offset < UInt64(bytes.count),
            let payload = ByteReader(bytes).slice(offset: offset, length: length)
        else {
            throw .bzImagePayloadOutsideFile(offset: offset, length: length, fileSize: bytes.count)
        }
        return payload
    }
}
