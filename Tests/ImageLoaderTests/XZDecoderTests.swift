// Domus's one-shot XZ decoder against liblzma: random data of every shape, every
// option the decoder takes, several blocks, and corrupt or cut streams.

import CCompression
import Testing

@testable import ImageLoader

/// How liblzma is asked to encode a test stream.
struct XZEncoding: CustomStringConvertible {
    var preset: UInt32 = 1
    var lc: UInt32 = 3
    var lp: UInt32 = 0
    var pb: UInt32 = 2
    var dictionarySize: UInt32 = 1 << 20
    var x86 = false
    var x86Start: UInt32 = 0
    /// 0x03 (delta) before LZMA2: a chain the one-shot decoder leaves to liblzma.
    var delta = false
    var check = LZMA_CHECK_CRC32
    /// A full flush (a new block) after every this many input bytes.
    var blockSize: Int?

    var description: String {
        "preset \(preset) lc \(lc) lp \(lp) pb \(pb) dict \(dictionarySize) x86 \(x86)@\(x86Start) "
            + "delta \(delta) check \(check.rawValue) blocks \(blockSize.map(String.init) ?? "one")"
    }
}

/// Encodes with liblzma's stream encoder; a full flush between blocks.
func encodeXZ(_ data: [UInt8], _ encoding: XZEncoding) throws -> [UInt8] {
    var lzma = lzma_options_lzma()
    try #require(lzma_lzma_preset(&lzma, encoding.preset) == 0, "lzma_lzma_preset failed")
    lzma.lc = encoding.lc
    lzma.lp = encoding.lp
    lzma.pb = encoding.pb
    lzma.dict_size = encoding.dictionarySize
    var bcj = lzma_options_bcj()
    bcj.start_offset = encoding.x86Start
    var delta = lzma_options_delta()
    delta.type = LZMA_DELTA_TYPE_BYTE
    delta.dist = 4

    let stream = UnsafeMutablePointer<lzma_stream>.allocate(capacity: 1)
    stream.initialize(to: lzma_stream())
    defer {
        lzma_end(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }
    // SAFETY: the option structs outlive the encoder's initialization, which copies them.
    let initStatus = withUnsafeMutablePointer(to: &lzma) { lzmaPointer in
        withUnsafeMutablePointer(to: &bcj) { bcjPointer in
            withUnsafeMutablePointer(to: &delta) { deltaPointer in
                var filters: [lzma_filter] = []
                if encoding.x86 { filters.append(lzma_filter(id: 0x04, options: UnsafeMutableRawPointer(bcjPointer))) }
                if encoding.delta {
                    filters.append(lzma_filter(id: 0x03, options: UnsafeMutableRawPointer(deltaPointer)))
                }
                filters.append(lzma_filter(id: 0x21, options: UnsafeMutableRawPointer(lzmaPointer)))
                filters.append(lzma_filter(id: lzma_vli.max, options: nil))
                return lzma_stream_encoder(stream, &filters, encoding.check)
            }
        }
    }
    try #require(initStatus == LZMA_OK, "lzma_stream_encoder failed: \(initStatus.rawValue)")

    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    let pieceSize = max(1, encoding.blockSize ?? max(1, data.count))
    var starts = Array(stride(from: 0, to: data.count, by: pieceSize))
    if starts.isEmpty { starts = [0] }
    try data.withUnsafeBufferPointer { source in
        for (index, start) in starts.enumerated() {
            let last = index == starts.count - 1
            let end = min(data.count, start + pieceSize)
            stream.pointee.next_in = source.baseAddress.map { $0 + start }
            stream.pointee.avail_in = end - start
            while true {
                let (status, produced) = chunk.withUnsafeMutableBufferPointer { out in
                    stream.pointee.next_out = out.baseAddress
                    stream.pointee.avail_out = out.count
                    let status = lzma_code(stream, last ? LZMA_FINISH : LZMA_FULL_FLUSH)
                    return (status, out.count - stream.pointee.avail_out)
                }
                output.append(contentsOf: chunk[0..<produced])
                if status == LZMA_STREAM_END { break }
                try #require(status == LZMA_OK, "lzma_code failed: \(status.rawValue)")
            }
        }
    }
    return output
}

/// Test data of several shapes: text (matches and reps), x86-like code (E8/E9 with
/// 00/FF bytes for the BCJ filter), noise (stored chunks), runs (long matches).
func testData(_ random: inout SplitMix64, size: Int) -> [UInt8] {
    let words = ["domus", "xen", "grant", "event", "channel", "page", "table", " ", "\n", "hypercall", "ring"]
    var data: [UInt8] = []
    data.reserveCapacity(size)
    while data.count < size {
        let span = Int.random(in: 1...4096, using: &random)
        switch Int.random(in: 0..<4, using: &random) {
        case 0:
            while data.count < size, span > 0, Int.random(in: 0..<64, using: &random) != 0 {
                data += Array((words.randomElement(using: &random) ?? " ").utf8)
            }
        case 1:
            for _ in 0..<span {
                let roll = Int.random(in: 0..<8, using: &random)
                data.append(
                    roll == 0 ? 0xE8 : roll == 1 ? 0xE9 : roll < 4 ? (Bool.random(using: &random) ? 0 : 0xFF)
                        : UInt8.random(in: 0...255, using: &random))
            }
        case 2:
            for _ in 0..<span { data.append(UInt8.random(in: 0...255, using: &random)) }
        default:
            data += [UInt8](repeating: UInt8.random(in: 0...255, using: &random), count: span)
        }
    }
    return Array(data.prefix(size))
}

/// Whether two byte arrays are equal; a difference is described, not dumped whole.
func sameBytes(_ a: [UInt8], _ b: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
    if a == b { return true }
    let first = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
    Issue.record("\(a.count) and \(b.count) bytes, first difference at \(first)", sourceLocation: sourceLocation)
    return false
}

@Suite("One-shot XZ decoder")
struct XZDecoderTests {
    /// A random encoding the one-shot decoder takes.
    static func randomEncoding(_ random: inout SplitMix64) -> XZEncoding {
        var encoding = XZEncoding()
        encoding.preset = UInt32.random(in: 0...3, using: &random)
        encoding.lc = UInt32.random(in: 0...4, using: &random)
        encoding.lp = UInt32.random(in: 0...(4 - encoding.lc), using: &random)
        encoding.pb = UInt32.random(in: 0...4, using: &random)
        encoding.dictionarySize = [4096, 6144, 1 << 16, 3 << 16, 1 << 20].randomElement(using: &random) ?? 4096
        encoding.x86 = Bool.random(using: &random)
        encoding.x86Start = Bool.random(using: &random) ? 0 : UInt32.random(in: 0...UInt32.max, using: &random) & ~3
        encoding.check = [LZMA_CHECK_NONE, LZMA_CHECK_CRC32, LZMA_CHECK_CRC64].randomElement(using: &random)
            ?? LZMA_CHECK_CRC32
        encoding.blockSize = Bool.random(using: &random) ? nil : Int.random(in: 1...100_000, using: &random)
        return encoding
    }

    @Test("Decodes liblzma's output for every option it takes, byte for byte")
    func differential() throws {
        var random = SplitMix64(state: 0x5eed)
        for round in 0..<60 {
            let size = [0, 1, 5, 4096, 70_000, 300_000].randomElement(using: &random) ?? 0
            let data = testData(&random, size: size)
            let encoding = Self.randomEncoding(&random)
            let compressed = try encodeXZ(data, encoding)
            guard case .decoded(let output) = Decompressor.oneShotXZ(compressed[...], limit: 1 << 30) else {
                Issue.record("round \(round) (\(encoding), \(size) bytes) did not decode")
                continue
            }
            #expect(sameBytes(output, data), "round \(round): \(encoding), \(size) bytes")
            // Anything after the stream (a bzImage's size trailer) is ignored.
            let trailed = compressed + [1, 2, 3, 4]
            guard case .decoded(let again) = Decompressor.oneShotXZ(trailed[...], limit: 1 << 30) else {
                Issue.record("round \(round) with a trailer did not decode")
                continue
            }
            #expect(sameBytes(again, data))
        }
    }

    @Test("A kernel-sized output (pages prefaulted by a second thread while it decodes) is byte for byte liblzma's input")
    func largeOutput() throws {
        var random = SplitMix64(state: 0x1a76e)
        // Past the 4 MiB from which the decoder prefaults its output on another thread;
        // not a multiple of the page size, so the last page is partly outside the buffer.
        let data = testData(&random, size: (9 << 20) + 123)
        var encoding = XZEncoding()
        encoding.x86 = true
        encoding.check = LZMA_CHECK_CRC32
        let compressed = try encodeXZ(data, encoding)
        guard case .decoded(let output) = Decompressor.oneShotXZ(compressed[...], limit: 1 << 30) else {
            Issue.record("a \(data.count)-byte stream did not decode")
            return
        }
        #expect(sameBytes(output, data))
    }

    @Test("Streams it does not take go to liblzma and still decode")
    func fallback() throws {
        var random = SplitMix64(state: 7)
        let data = testData(&random, size: 50_000)
        for encoding in [XZEncoding(check: LZMA_CHECK_SHA256), XZEncoding(delta: true)] {
            let compressed = try encodeXZ(data, encoding)
            guard case .unsupported = Decompressor.oneShotXZ(compressed[...], limit: 1 << 30) else {
                Issue.record("\(encoding) should be left to liblzma")
                continue
            }
            #expect(try Decompressor.decompress(compressed[...], as: .xz, limit: 1 << 30, context: "test") == data)
        }
    }

    @Test("The size is known before decoding: the cap holds without allocating")
    func limit() throws {
        var random = SplitMix64(state: 11)
        let data = testData(&random, size: 100_000)
        let compressed = try encodeXZ(data, XZEncoding(blockSize: 30_000))
        var result = domus_xz_result()
        let status = compressed.withUnsafeBufferPointer {
            domus_xz_measure($0.baseAddress, $0.count, data.count, &result)
        }
        #expect(status == DOMUS_XZ_OK && result.output_size == data.count && result.input_used == compressed.count)
        guard case .failed(let error) = Decompressor.oneShotXZ(compressed[...], limit: data.count - 1) else {
            Issue.record("a stream one byte over the cap decoded")
            return
        }
        #expect(error == .decompressedSizeExceedsLimit(.xz, limit: data.count - 1))
        // A buffer smaller than the stream is refused, not overrun.
        var small = [UInt8](repeating: 0, count: data.count - 1)
        let decoded = compressed.withUnsafeBufferPointer { input in
            small.withUnsafeMutableBufferPointer { output in
                domus_xz_decode(input.baseAddress, input.count, output.baseAddress, output.count, &result)
            }
        }
        #expect(decoded == DOMUS_XZ_OUTPUT_TOO_SMALL)
    }

    @Test("Empty, short and foreign inputs")
    func shortInputs() {
        for (input, expected) in [
            ([], ImageError.truncatedCompressedData(.xz)),
            ([0xFD, 0x37], .truncatedCompressedData(.xz)),
            ([0x1F, 0x8B, 8, 0], .corruptCompressedData(.xz, "not in .xz format")),
        ] as [([UInt8], ImageError)] {
            guard case .failed(let error) = Decompressor.oneShotXZ(input[...], limit: 1 << 20) else {
                Issue.record("\(input) did not fail")
                continue
            }
            #expect(error == expected)
        }
    }

    @Test("Corrupt and cut streams: an error, or liblzma's very output")
    func hostile() throws {
        var random = SplitMix64(state: 0xbad)
        var rejectedByBoth = 0
        for round in 0..<300 {
            let data = testData(&random, size: Int.random(in: 0...20_000, using: &random))
            var encoding = Self.randomEncoding(&random)
            // Without a check, damage to the LZMA data is only caught by the decoder's own rules.
            if Bool.random(using: &random) { encoding.check = LZMA_CHECK_NONE }
            var stream = try encodeXZ(data, encoding)
            switch Int.random(in: 0..<3, using: &random) {
            case 0:
                stream = Array(stream.prefix(Int.random(in: 0..<stream.count, using: &random)))
            case 1:
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    let index = Int.random(in: 0..<stream.count, using: &random)
                    stream[index] ^= UInt8.random(in: 1...255, using: &random)
                }
            default:
                let index = Int.random(in: 0..<stream.count, using: &random)
                stream[index] = UInt8.random(in: 0...255, using: &random)
            }
            let reference: [UInt8]? = try? Decompressor.unxzWithLiblzma(stream[...], limit: 1 << 24)
            switch Decompressor.oneShotXZ(stream[...], limit: 1 << 24) {
            case .decoded(let output):
                #expect(
                    reference.map { sameBytes(output, $0) } ?? false,
                    "round \(round): decoded what liblzma did not (\(encoding))")
            case .failed(let error):
                if let reference {
                    Issue.record("round \(round): liblzma decoded \(reference.count) bytes, we said \(error)")
                } else {
                    rejectedByBoth += 1
                }
            case .unsupported:
                // Damage to a header can make a valid-looking chain this decoder leaves to
                // liblzma, which then decides.
                break
            }
        }
        #expect(rejectedByBoth > 100)
    }
}
