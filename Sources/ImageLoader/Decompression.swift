// ImageLoader layer: compression formats, and gzip/XZ decoding through zlib and liblzma.

import CCompression

/// Compression formats a Linux bzImage payload may use, with the magic numbers that
/// identify them (tools/libs/guest/xg_dom_bzimageloader.c
/// `xc_dom_probe_bzimage_kernel`). Domus decodes gzip and XZ, which cover Debian's
/// kernels; the others are recognized so the error can name them.
public enum Compression: String, Equatable, Sendable, CaseIterable {
    case gzip
    case bzip2
    case xz
    case zstd
    case lzma
    case lzo
    case lz4

    /// Human name used in messages.
    public var name: String {
        switch self {
        case .gzip: return "gzip"
        case .bzip2: return "bzip2"
        case .xz: return "XZ"
        case .zstd: return "zstd"
        case .lzma: return "LZMA"
        case .lzo: return "LZO"
        case .lz4: return "LZ4"
        }
    }

    /// The leading bytes that identify the format.
    public var magic: [UInt8] {
        switch self {
        case .gzip: return [0x1f, 0x8b]
        case .bzip2: return [0x42, 0x5a, 0x68]  // "BZh"
        case .xz: return [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]
        case .zstd: return [0x28, 0xb5, 0x2f, 0xfd]
        case .lzma: return [0x5d, 0x00]
        case .lzo: return [0x89, 0x4c, 0x5a, 0x4f, 0x00]  // "\x89LZO\0"
        case .lz4: return [0x02, 0x21]
        }
    }

    /// Whether Domus can decode this format.
    public var isSupported: Bool { self == .gzip || self == .xz }

    /// The format whose magic `bytes` start with, tried in Xen's order.
    public static func detect(_ bytes: ArraySlice<UInt8>) -> Compression? {
        allCases.first { bytes.starts(with: $0.magic) }
    }
}

/// gzip and XZ decoders with an output cap.
///
/// Domus's one-shot XZ decoder learns the exact decoded size from the stream's headers
/// before it allocates, and refuses a size past the cap. The streaming decoders (zlib,
/// and liblzma for XZ the one-shot decoder does not take) grow their output in chunks
/// and stop with `ImageError.decompressedSizeExceedsLimit` as soon as it would pass
/// the cap. Either way a decompression bomb costs at most the cap plus one chunk of
/// memory. Xen's loader trusts the 4-byte size trailer instead (checked against its
/// own limit in `xc_dom_kernel_check_size`); here the trailer is only a capacity hint.
enum Decompressor {
    /// Bytes produced per zlib/liblzma call.
    static let chunkSize = 1 << 20
    /// liblzma decoder memory limit; the value Xen uses (`LZMA_BLOCK_SIZE`).
    static let xzMemoryLimit: UInt64 = 256 << 20

    /// Decodes `input` in format `compression`; anything after the end of the first
    /// stream (such as a bzImage's size trailer) is ignored.
    static func decompress(
        _ input: ArraySlice<UInt8>, as compression: Compression, limit: Int, context: String
    ) throws(ImageError) -> [UInt8] {
        switch compression {
        case .gzip: return try gunzip(input, limit: limit)
        case .xz: return try unxz(input, limit: limit)
        case .bzip2, .zstd, .lzma, .lzo, .lz4:
            throw .unsupportedCompression(compression, context: context)
        }
    }

    /// A starting capacity for the output: the little-endian size in the last 4 bytes
    /// (gzip's ISIZE, the bzImage payload trailer), clamped to the cap.
    private static func capacityHint(_ input: ArraySlice<UInt8>, limit: Int) -> Int {
        guard input.count >= 4 else { return 0 }
        let trailer = Int(littleEndian(input.suffix(4)))
        return max(0, min(trailer, limit, 1 << 30))
    }

    /// Appends `chunk[0..<produced]` to `output` unless that would pass `limit`.
    private static func append(
        _ chunk: UnsafeMutableBufferPointer<UInt8>, produced: Int, to output: inout [UInt8],
        limit: Int, compression: Compression
    ) throws(ImageError) {
        guard produced <= limit - output.count else {
            throw .decompressedSizeExceedsLimit(compression, limit: limit)
        }
        // SAFETY: `produced <= chunk.count`: the decoder wrote at most the `avail_out`
        // bytes it was given, which is `chunk.count`.
        output.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[0..<produced]))
    }

    // MARK: gzip (zlib)

    /// Inflates a gzip stream: zlib `inflateInit2` with `16 + MAX_WBITS` (gzip wrapper
    /// only), as Xen's `xc_dom_try_gunzip` does.
    static func gunzip(_ input: ArraySlice<UInt8>, limit: Int) throws(ImageError) -> [UInt8] {
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        // SAFETY: allocated, initialized and freed in this function only. A zeroed
        // z_stream has Z_NULL allocators and no input, as inflateInit2 requires. zlib
        // keeps a back pointer to the stream, hence the heap allocation: the struct must
        // not move while zlib state exists.
        stream.initialize(to: z_stream())
        defer {
            stream.deinitialize(count: 1)
            stream.deallocate()
        }
        // SAFETY: the decoder writes at most `chunkSize` bytes per call into this buffer,
        // which lives until the function returns; it is read only up to what was written.
        let chunk = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: chunkSize)
        defer { chunk.deallocate() }

        // SAFETY: `stream` is a valid, initialized z_stream; the version string and
        // struct size let zlib check that its ABI matches the header.
        let initStatus = inflateInit2_(stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard initStatus == Z_OK else {
            throw .decompressorFailure(.gzip, "inflateInit2 returned \(initStatus)")
        }
        // SAFETY: inflateInit2 succeeded, so the stream owns zlib state to release.
        defer { inflateEnd(stream) }

        var output: [UInt8] = []
        output.reserveCapacity(capacityHint(input, limit: limit))
        let result: Result<Void, ImageError> = input.withUnsafeBufferPointer { source in
            var fed = 0
            while true {
                if stream.pointee.avail_in == 0, fed < source.count, let base = source.baseAddress {
                    // avail_in is 32-bit: feed at most 1 GiB at a time.
                    let amount = min(source.count - fed, 1 << 30)
                    // SAFETY: `base + fed ..< base + fed + amount` is inside `source`, which
                    // stays valid for this closure; zlib only reads through next_in.
                    stream.pointee.next_in = UnsafeMutablePointer(mutating: base + fed)
                    stream.pointee.avail_in = UInt32(amount)
                    fed += amount
                }
                // SAFETY: next_out/avail_out describe `chunk`, allocated above.
                stream.pointee.next_out = chunk.baseAddress
                stream.pointee.avail_out = UInt32(chunkSize)
                // SAFETY: the stream is initialized and its buffers are valid.
                let status = inflate(stream, Z_NO_FLUSH)
                let produced = chunkSize - Int(stream.pointee.avail_out)
                do throws(ImageError) {
                    try append(chunk, produced: produced, to: &output, limit: limit, compression: .gzip)
                } catch {
                    return .failure(error)
                }
                let inputLeft = stream.pointee.avail_in > 0 || fed < source.count
                switch status {
                case Z_STREAM_END:
                    return .success(())
                case Z_OK where produced > 0 || inputLeft:
                    continue
                case Z_OK, Z_BUF_ERROR:
                    // No progress possible: the input ended inside the stream.
                    return .failure(
                        inputLeft
                            ? .corruptCompressedData(.gzip, "decoder made no progress")
                            : .truncatedCompressedData(.gzip))
                case Z_DATA_ERROR:
                    return .failure(.corruptCompressedData(.gzip, zlibMessage(stream) ?? "invalid data"))
                case Z_NEED_DICT:
                    return .failure(.corruptCompressedData(.gzip, "stream needs a preset dictionary"))
                case Z_MEM_ERROR:
                    return .failure(.decompressorFailure(.gzip, "out of memory"))
                default:
                    return .failure(.decompressorFailure(.gzip, "inflate returned \(status)"))
                }
            }
        }
        try result.get()
        return output
    }

    /// zlib's message for the last error, if any.
    private static func zlibMessage(_ stream: UnsafeMutablePointer<z_stream>) -> String? {
        // SAFETY: zlib sets `msg` to nil or to a static NUL-terminated string.
        guard let message = stream.pointee.msg else { return nil }
        return String(cString: message)
    }

    // MARK: XZ

    /// Decodes an .xz stream: with Domus's one-shot decoder (`domus_xz.c`) when the
    /// stream uses what kernels use (LZMA2 after an optional x86 BCJ filter; check none,
    /// CRC32 or CRC64), otherwise with liblzma.
    ///
    /// The one-shot decoder first walks the stream's headers to learn the exact decoded
    /// size, so the cap is enforced before any output is allocated, then decodes straight
    /// into the result. It decodes Debian's kernel in ~60 % of liblzma's time in the
    /// emulated AMD-V box, where XZ is most of a cold boot's set-up.
    static func unxz(_ input: ArraySlice<UInt8>, limit: Int) throws(ImageError) -> [UInt8] {
        switch oneShotXZ(input, limit: limit) {
        case .decoded(let output): return output
        case .failed(let error): throw error
        case .unsupported: return try unxzWithLiblzma(input, limit: limit)
        }
    }

    enum OneShotOutcome {
        case decoded([UInt8])
        case failed(ImageError)
        /// Valid .xz the one-shot decoder leaves to liblzma.
        case unsupported
    }

    /// Domus's decoder alone; `unsupported` for streams it does not take.
    static func oneShotXZ(_ input: ArraySlice<UInt8>, limit: Int) -> OneShotOutcome {
        input.withUnsafeBufferPointer { source in
            var result = domus_xz_result()
            // SAFETY: `source` is valid for the call; the walker reads only inside it.
            let measured = domus_xz_measure(source.baseAddress, source.count, max(0, limit), &result)
            guard measured == DOMUS_XZ_OK else { return outcome(measured, result, limit: limit) }
            let size = result.output_size
            var status = DOMUS_XZ_OK
            // SAFETY: the decoder writes only inside `buffer` (capacity `size`, what the
            // walk measured) and says how much it wrote; nothing is kept on failure.
            let output = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
                status = domus_xz_decode(source.baseAddress, source.count, buffer.baseAddress, size, &result)
                count = status == DOMUS_XZ_OK ? min(result.output_size, size) : 0
            }
            guard status == DOMUS_XZ_OK else { return outcome(status, result, limit: limit) }
            return .decoded(output)
        }
    }

    private static func outcome(_ status: domus_xz_status, _ result: domus_xz_result, limit: Int) -> OneShotOutcome {
        let message = result.message.map { String(cString: $0) } ?? "invalid data"
        switch status {
        case DOMUS_XZ_TRUNCATED: return .failed(.truncatedCompressedData(.xz))
        case DOMUS_XZ_CORRUPT: return .failed(.corruptCompressedData(.xz, message))
        case DOMUS_XZ_TOO_LARGE: return .failed(.decompressedSizeExceedsLimit(.xz, limit: limit))
        case DOMUS_XZ_UNSUPPORTED: return .unsupported
        default: return .failed(.decompressorFailure(.xz, "one-shot decoder returned \(status.rawValue)"))
        }
    }

    // MARK: XZ (liblzma)

    /// Decodes an .xz stream with liblzma's `lzma_stream_decoder`, which handles every
    /// filter and check; as Xen's `xc_try_xz_decode`.
    static func unxzWithLiblzma(_ input: ArraySlice<UInt8>, limit: Int) throws(ImageError) -> [UInt8] {
        let stream = UnsafeMutablePointer<lzma_stream>.allocate(capacity: 1)
        // SAFETY: allocated, initialized and freed in this function only. A zeroed
        // lzma_stream is LZMA_STREAM_INIT. Heap-allocated so it does not move while
        // liblzma holds internal state for it.
        stream.initialize(to: lzma_stream())
        defer {
            stream.deinitialize(count: 1)
            stream.deallocate()
        }
        // SAFETY: the decoder writes at most `chunkSize` bytes per call into this buffer,
        // which lives until the function returns; it is read only up to what was written.
        let chunk = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: chunkSize)
        defer { chunk.deallocate() }

        // SAFETY: `stream` is a valid LZMA_STREAM_INIT stream.
        let initStatus = lzma_stream_decoder(stream, xzMemoryLimit, 0)
        // SAFETY: lzma_end is safe on any initialized stream, even after a failed init.
        defer { lzma_end(stream) }
        guard initStatus == LZMA_OK else {
            throw .decompressorFailure(.xz, "lzma_stream_decoder returned \(initStatus.rawValue)")
        }

        var output: [UInt8] = []
        output.reserveCapacity(capacityHint(input, limit: limit))
        let result: Result<Void, ImageError> = input.withUnsafeBufferPointer { source in
            // SAFETY: `source` stays valid for this closure, which is the whole decode;
            // liblzma only reads through next_in.
            stream.pointee.next_in = source.baseAddress
            stream.pointee.avail_in = source.count
            while true {
                // SAFETY: next_out/avail_out describe `chunk`, allocated above.
                stream.pointee.next_out = chunk.baseAddress
                stream.pointee.avail_out = chunkSize
                let inputBefore = stream.pointee.avail_in
                // SAFETY: the stream is initialized and its buffers are valid. All input is
                // present, so LZMA_FINISH lets liblzma report truncation as LZMA_BUF_ERROR.
                let status = lzma_code(stream, LZMA_FINISH)
                let produced = chunkSize - stream.pointee.avail_out
                do throws(ImageError) {
                    try append(chunk, produced: produced, to: &output, limit: limit, compression: .xz)
                } catch {
                    return .failure(error)
                }
                switch status {
                case LZMA_STREAM_END:
                    return .success(())
                case LZMA_OK:
                    if produced == 0, stream.pointee.avail_in == inputBefore {
                        return .failure(.truncatedCompressedData(.xz))
                    }
                    continue
                case LZMA_BUF_ERROR:
                    return .failure(.truncatedCompressedData(.xz))
                case LZMA_FORMAT_ERROR:
                    return .failure(.corruptCompressedData(.xz, "not in .xz format"))
                case LZMA_OPTIONS_ERROR:
                    return .failure(.corruptCompressedData(.xz, "unsupported options or filter"))
                case LZMA_DATA_ERROR:
                    return .failure(.corruptCompressedData(.xz, "invalid data"))
                case LZMA_MEM_ERROR:
                    return .failure(.decompressorFailure(.xz, "out of memory"))
                case LZMA_MEMLIMIT_ERROR:
                    return .failure(
                        .decompressorFailure(
                            .xz, "decoder needs more than \(xzMemoryLimit >> 20) MiB of memory"))
                default:
                    return .failure(.decompressorFailure(.xz, "lzma_code returned \(status.rawValue)"))
                }
            }
        }
        try result.get()
        return output
    }
}
