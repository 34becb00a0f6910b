// bzImage unwrapping, gzip/XZ payloads, compressed ELF files, and hostile streams.

import Testing

@testable import ImageLoader

@Suite("bzImage and compression")
struct BzImageTests {
    let elf = ELFBuilder.linuxLike().build()

    @Test("bzImage with a gzip payload")
    func gzipPayload() throws {
        let image = makeBzImage(payload: try gzip(elf), uncompressedSize: elf.count)
        let kernel = try KernelImage.load(bytes: image)
        #expect(kernel.format == .bzImage(payload: .gzip))
        #expect(kernel.elf.bytes == elf)
        #expect(kernel.layout.kernelStart == 0xffff_ffff_8100_0000)
    }

    @Test("bzImage with an XZ payload using the x86 BCJ filter")
    func xzPayload() throws {
        let image = makeBzImage(payload: try xz(elf, x86Filter: true), uncompressedSize: elf.count)
        let kernel = try KernelImage.load(bytes: image)
        #expect(kernel.format == .bzImage(payload: .xz))
        #expect(kernel.elf.bytes == elf)
    }

    @Test("bzImage with an uncompressed ELF payload; setup_sects 0 means 4")
    func rawPayload() throws {
        let image = makeBzImage(payload: elf, uncompressedSize: elf.count, setupSectors: 0, payloadOffset: 0)
        let header = try BzImageHeader(bytes: image)
        #expect(header.payloadFileOffset == 5 * 512)
        #expect(header.protocolVersion == 0x020f)
        let kernel = try KernelImage.load(bytes: image)
        #expect(kernel.format == .bzImage(payload: nil))
        // payload_length covers the 4-byte size trailer too; trailing bytes are harmless.
        #expect(kernel.elf.bytes.count == elf.count + 4)
        #expect(kernel.elf.bytes.starts(with: elf))
    }

    @Test("A gzip- or XZ-compressed ELF file given directly")
    func compressedELF() throws {
        #expect(try KernelImage.load(bytes: gzip(elf)).format == .compressedELF(.gzip))
        #expect(try KernelImage.load(bytes: xz(elf, x86Filter: false)).format == .compressedELF(.xz))
    }

    @Test("Boot protocol older than 2.08")
    func oldProtocol() throws {
        let image = makeBzImage(payload: try gzip(elf), uncompressedSize: elf.count, version: 0x0207)
        expectError(.bzImageProtocolTooOld(0x0207)) { () throws(ImageError) in try KernelImage.load(bytes: image) }
        #expect(
            ImageError.bzImageProtocolTooOld(0x0207).description
                == "bzImage boot protocol 2.07 is older than 2.08, which Xen requires")
    }

    @Test("bzImage header cut short")
    func truncatedHeader() throws {
        let image = Array(makeBzImage(payload: try gzip(elf), uncompressedSize: elf.count).prefix(0x230))
        expectError(.truncated("bzImage setup header needs 0x250 bytes, file has 560")) { () throws(ImageError) in
            try KernelImage.load(bytes: image)
        }
    }

    @Test("Payload offset or length outside the file")
    func payloadOutside() throws {
        var image = makeBzImage(payload: try gzip(elf), uncompressedSize: elf.count)
        let length = UInt64(image.count)
        setLittleEndian(&image, at: 0x24c, length, count: 4)
        expectError(.bzImagePayloadOutsideFile(offset: 3 * 512 + 0x40, length: length, fileSize: image.count)) {
            () throws(ImageError) in try KernelImage.load(bytes: image)
        }
        setLittleEndian(&image, at: 0x248, 0xffff_ff00, count: 4)
        setLittleEndian(&image, at: 0x24c, 0x100, count: 4)
        expectError(.bzImagePayloadOutsideFile(offset: 3 * 512 + 0xffff_ff00, length: 0x100, fileSize: image.count)) {
            () throws(ImageError) in try KernelImage.load(bytes: image)
        }
    }

    @Test(
        "Recognized but unsupported payload compressions",
        arguments: [
            Compression.bzip2, .lzma, .lzo, .lz4, .zstd,
        ])
    func unsupported(_ compression: Compression) {
        let payload = compression.magic + [UInt8](repeating: 0x55, count: 64)
        let image = makeBzImage(payload: payload, uncompressedSize: 1 << 20)
        expectError(.unsupportedCompression(compression, context: "bzImage payload")) { () throws(ImageError) in
            try KernelImage.load(bytes: image)
        }
        // The same magic at the start of a kernel file.
        expectError(.unsupportedCompression(compression, context: "kernel file")) { () throws(ImageError) in
            try KernelImage.load(bytes: payload)
        }
    }

    @Test("The zstd message names the format")
    func zstdMessage() {
        #expect(
            ImageError.unsupportedCompression(.zstd, context: "bzImage payload").description
                == "bzImage payload is zstd-compressed, which Domus does not support")
    }

    @Test("Payload with no known magic")
    func unknownPayload() {
        let image = makeBzImage(payload: [0x12, 0x34, 0x56, 0x78], uncompressedSize: 4)
        expectError(.bzImageUnknownPayload) { () throws(ImageError) in try KernelImage.load(bytes: image) }
    }

    @Test("Payload that decompresses to something other than ELF")
    func payloadNotELF() throws {
        let text = Array(repeating: Array("not a kernel ".utf8), count: 20).flatMap { $0 }
        let image = makeBzImage(payload: try gzip(text), uncompressedSize: text.count)
        expectError(.payloadNotELF("bzImage gzip payload")) { () throws(ImageError) in
            try KernelImage.load(bytes: image)
        }
        let compressedText = try xz(text)
        expectError(.payloadNotELF("XZ-compressed kernel file")) { () throws(ImageError) in
            try KernelImage.load(bytes: compressedText)
        }
    }

    @Test("Decompression bombs stop at the cap", arguments: [Compression.gzip, .xz])
    func bomb(_ compression: Compression) throws {
        let zeros = [UInt8](repeating: 0, count: 3 << 20)
        let compressed = compression == .gzip ? try gzip(zeros) : try xz(zeros)
        #expect(compressed.count < 64 << 10)
        let image = makeBzImage(payload: compressed, uncompressedSize: 16)
        let options = ImageLoadOptions(maxDecompressedSize: 2 << 20)
        expectError(.decompressedSizeExceedsLimit(compression, limit: 2 << 20)) { () throws(ImageError) in
            try KernelImage.load(bytes: image, options: options)
        }
        #expect(
            ImageError.decompressedSizeExceedsLimit(compression, limit: 2 << 20).description
                == "\(compression.name) data decompresses to more than the 2 MiB limit")
        // Exactly at the cap is allowed.
        let exact = try Decompressor.decompress(compressed[...], as: compression, limit: 3 << 20, context: "test")
        #expect(exact.count == 3 << 20)
        expectError(.decompressedSizeExceedsLimit(compression, limit: (3 << 20) - 1)) { () throws(ImageError) in
            try Decompressor.decompress(compressed[...], as: compression, limit: (3 << 20) - 1, context: "test")
        }
    }

    @Test("Truncated gzip and XZ streams", arguments: [Compression.gzip, .xz])
    func truncated(_ compression: Compression) throws {
        let compressed = compression == .gzip ? try gzip(elf) : try xz(elf)
        for keep in [compressed.count / 2, compressed.count - 1, compression.magic.count] {
            let cut = Array(compressed.prefix(keep))
            expectError(.truncatedCompressedData(compression)) { () throws(ImageError) in
                try Decompressor.decompress(cut[...], as: compression, limit: 1 << 20, context: "test")
            }
        }
        // Through a bzImage too (no trailer, so the stream really is cut).
        var image = makeBzImage(payload: Array(compressed.prefix(compressed.count / 2)), uncompressedSize: elf.count)
        image.removeLast(100 + 4)
        setLittleEndian(&image, at: 0x24c, UInt64(compressed.count / 2), count: 4)
        expectError(.truncatedCompressedData(compression)) { () throws(ImageError) in try KernelImage.load(bytes: image)
        }
        #expect(ImageError.truncatedCompressedData(compression).description == "\(compression.name) data is truncated")
    }

    @Test("Corrupt gzip and XZ streams", arguments: [Compression.gzip, .xz])
    func corrupt(_ compression: Compression) throws {
        var compressed = compression == .gzip ? try gzip(elf) : try xz(elf)
        for index in stride(from: 20, to: compressed.count - 20, by: 7) { compressed[index] ^= 0x5a }
        do {
            let output = try Decompressor.decompress(compressed[...], as: compression, limit: 1 << 20, context: "test")
            Issue.record("corrupt \(compression.name) data decoded to \(output.count) bytes")
        } catch {
            guard case .corruptCompressedData(let reported, _) = error else {
                Issue.record("expected corruptCompressedData, got \(error)")
                return
            }
            #expect(reported == compression)
        }
    }

    @Test("Compression magic detection")
    func detection() {
        #expect(Compression.detect([0x1f, 0x8b, 8]) == .gzip)
        #expect(Compression.detect([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0]) == .xz)
        #expect(Compression.detect([0xfd, 0x37, 0x7a, 0x58, 0x5a]) == nil)
        #expect(Compression.detect(Array("BZh9".utf8)[...]) == .bzip2)
        #expect(Compression.detect([0x89, 0x4c, 0x5a, 0x4f, 0x00]) == .lzo)
        #expect(Compression.detect([0x28, 0xb5, 0x2f, 0xfd]) == .zstd)
        #expect(Compression.detect([0x7f, 0x45]) == nil)
        #expect(Compression.detect([]) == nil)
    }
}
