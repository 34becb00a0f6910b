// Synthetic kernel images for the ImageLoader tests: an ELF64 builder, Xen notes,
// a bzImage wrapper, and gzip/XZ encoders from zlib and liblzma.

import CCompression
import ImageLoader
import Testing

/// One note to put in a note area: owner name, type, descriptor.
struct TestNote {
    var name: String = "Xen"
    var type: UInt32
    var descriptor: [UInt8]

    static func number(_ type: XenNoteType, _ value: UInt64, bytes: Int = 8) -> TestNote {
        TestNote(type: type.rawValue, descriptor: littleEndianBytes(value, count: bytes))
    }

    static func string(_ type: XenNoteType, _ value: String, terminated: Bool = true) -> TestNote {
        TestNote(type: type.rawValue, descriptor: Array(value.utf8) + (terminated ? [0] : []))
    }

    /// `Elf64_Nhdr` + name + descriptor, each padded to 4 bytes.
    var encoded: [UInt8] {
        let name = Array(self.name.utf8) + [0]
        var bytes = littleEndianBytes(UInt64(name.count), count: 4)
        bytes += littleEndianBytes(UInt64(descriptor.count), count: 4)
        bytes += littleEndianBytes(UInt64(type), count: 4)
        bytes += padded4(name)
        bytes += padded4(descriptor)
        return bytes
    }
}

/// The notes of a typical Linux x86-64 PV kernel (Debian 6.1's set, HYPERCALL_PAGE
/// left out like there).
func linuxNotes(entry: UInt64 = 0xffff_ffff_8100_0100) -> [TestNote] {
    [
        .string(.guestOS, "linux"),
        .string(.guestVersion, "2.6"),
        .string(.xenVersion, "xen-3.0"),
        .number(.virtBase, 0xffff_ffff_8000_0000),
        .number(.paddrOffset, 0),
        .number(.entry, entry),
        .number(.initP2M, 0x80_0000_0000),
        .string(.features, "!writable_page_tables|pae_pgdir_above_4gb", terminated: false),
        .string(.loader, "generic"),
    ]
}

/// Where the builder puts the note area.
enum NotePlacement {
    /// A PT_NOTE segment and a `.note.Xen` SHT_NOTE section over the same bytes.
    case segmentAndSection
    /// Only a `.note.Xen` SHT_NOTE section.
    case sectionOnly
}

/// Builds small little-endian x86-64 ELF64 executables.
///
/// File layout: ELF header, program headers, then each blob (segment contents,
/// notes, extra sections, `.shstrtab`) 8-aligned, then the section header table.
struct ELFBuilder {
    struct Segment {
        var type: UInt32 = 1
        var flags: UInt32 = 5  // R+X
        var physicalAddress: UInt64
        var virtualAddress: UInt64
        var contents: [UInt8]
        var memorySize: UInt64
    }

    struct Section {
        var name: String
        var type: UInt32
        var contents: [UInt8]
    }

    var elfClass: UInt8 = 2
    var dataEncoding: UInt8 = 1
    var type: UInt16 = 2
    var machine: UInt16 = 62
    var entry: UInt64 = 0x100_0000
    var segments: [Segment]
    var notes: [TestNote]
    var notePlacement: NotePlacement = .segmentAndSection
    var extraSections: [Section] = []

    /// A Linux-like kernel: text at paddr 16 MiB (VA 0xffffffff81000000) and a
    /// `.data..percpu`-style segment whose p_vaddr is 0.
    static func linuxLike(notes: [TestNote] = linuxNotes()) -> ELFBuilder {
        ELFBuilder(
            segments: [
                Segment(
                    physicalAddress: 0x100_0000, virtualAddress: 0xffff_ffff_8100_0000,
                    contents: pattern(0x2000, seed: 1), memorySize: 0x2000),
                Segment(
                    flags: 6, physicalAddress: 0x100_2000, virtualAddress: 0,
                    contents: pattern(0x800, seed: 2), memorySize: 0x1800),
            ],
            notes: notes)
    }

    /// Byte offsets of things in the built file, for tests that corrupt them.
    struct Offsets {
        var programHeaders: Int
        var sectionHeaders: Int
        var noteArea: Int
        /// Program header index of the PT_NOTE segment, if any.
        var noteSegmentIndex: Int?

        func programHeader(_ index: Int) -> Int { programHeaders + index * 56 }
        func sectionHeader(_ index: Int) -> Int { sectionHeaders + index * 64 }
    }

    func build() -> [UInt8] { buildWithOffsets().bytes }

    func buildWithOffsets() -> (bytes: [UInt8], offsets: Offsets) {
        let noteArea = notes.flatMap(\.encoded)
        let hasNoteSegment = notePlacement == .segmentAndSection && !notes.isEmpty
        let programHeaderCount = segments.count + (hasNoteSegment ? 1 : 0)
        var file = [UInt8](repeating: 0, count: 64 + programHeaderCount * 56)

        func appendBlob(_ blob: [UInt8]) -> Int {
            while file.count % 8 != 0 { file.append(0) }
            let offset = file.count
            file += blob
            return offset
        }

        var programHeaders: [[UInt8]] = []
        for segment in segments {
            let offset = appendBlob(segment.contents)
            programHeaders.append(
                Self.programHeader(
                    type: segment.type, flags: segment.flags, offset: UInt64(offset),
                    virtualAddress: segment.virtualAddress, physicalAddress: segment.physicalAddress,
                    fileSize: UInt64(segment.contents.count), memorySize: segment.memorySize))
        }
        // Sections: null, .note.Xen (if notes), extras, .shstrtab.
        var sections: [(name: String, type: UInt32, offset: Int, size: Int)] = [("", 0, 0, 0)]
        let noteOffset = notes.isEmpty ? 0 : appendBlob(noteArea)
        if !notes.isEmpty {
            sections.append((".note.Xen", 7, noteOffset, noteArea.count))
            if hasNoteSegment {
                programHeaders.append(
                    Self.programHeader(
                        type: 4, flags: 4, offset: UInt64(noteOffset), virtualAddress: 0,
                        physicalAddress: 0, fileSize: UInt64(noteArea.count),
                        memorySize: UInt64(noteArea.count)))
            }
        }
        for extra in extraSections {
            sections.append((extra.name, extra.type, appendBlob(extra.contents), extra.contents.count))
        }
        var names: [UInt8] = [0]
        var nameOffsets: [Int] = []
        for section in sections + [(".shstrtab", 3, 0, 0)] {
            if section.name.isEmpty {
                nameOffsets.append(0)
            } else {
                nameOffsets.append(names.count)
                names += Array(section.name.utf8) + [0]
            }
        }
        sections.append((".shstrtab", 3, appendBlob(names), names.count))

        while file.count % 8 != 0 { file.append(0) }
        let sectionHeaderOffset = file.count
        for (index, section) in sections.enumerated() {
            var header = littleEndianBytes(UInt64(nameOffsets[index]), count: 4)
            header += littleEndianBytes(UInt64(section.type), count: 4)
            header += littleEndianBytes(0, count: 8)  // flags
            header += littleEndianBytes(0, count: 8)  // addr
            header += littleEndianBytes(UInt64(section.offset), count: 8)
            header += littleEndianBytes(UInt64(section.size), count: 8)
            header += littleEndianBytes(0, count: 8)  // link, info
            header += littleEndianBytes(section.type == 7 ? 4 : 1, count: 8)
            header += littleEndianBytes(0, count: 8)  // entsize
            file += header
        }

        var header: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, elfClass, dataEncoding, 1, 0]
        header += [UInt8](repeating: 0, count: 8)
        header += littleEndianBytes(UInt64(type), count: 2)
        header += littleEndianBytes(UInt64(machine), count: 2)
        header += littleEndianBytes(1, count: 4)
        header += littleEndianBytes(entry, count: 8)
        header += littleEndianBytes(64, count: 8)
        header += littleEndianBytes(UInt64(sectionHeaderOffset), count: 8)
        header += littleEndianBytes(0, count: 4)
        header += littleEndianBytes(64, count: 2)
        header += littleEndianBytes(56, count: 2)
        header += littleEndianBytes(UInt64(programHeaderCount), count: 2)
        header += littleEndianBytes(64, count: 2)
        header += littleEndianBytes(UInt64(sections.count), count: 2)
        header += littleEndianBytes(UInt64(sections.count - 1), count: 2)
        file.replaceSubrange(0..<64, with: header)
        for (index, programHeader) in programHeaders.enumerated() {
            file.replaceSubrange((64 + index * 56)..<(64 + (index + 1) * 56), with: programHeader)
        }
        let offsets = Offsets(
            programHeaders: 64, sectionHeaders: sectionHeaderOffset, noteArea: noteOffset,
            noteSegmentIndex: hasNoteSegment ? segments.count : nil)
        return (file, offsets)
    }

    private static func programHeader(
        type: UInt32, flags: UInt32, offset: UInt64, virtualAddress: UInt64,
        physicalAddress: UInt64, fileSize: UInt64, memorySize: UInt64
    ) -> [UInt8] {
        littleEndianBytes(UInt64(type), count: 4) + littleEndianBytes(UInt64(flags), count: 4)
            + littleEndianBytes(offset, count: 8) + littleEndianBytes(virtualAddress, count: 8)
            + littleEndianBytes(physicalAddress, count: 8) + littleEndianBytes(fileSize, count: 8)
            + littleEndianBytes(memorySize, count: 8) + littleEndianBytes(0x1000, count: 8)
    }
}

// MARK: bzImage

/// Wraps `payload` in a minimal bzImage: boot sector + setup sectors with a 2.08+
/// setup header, then the payload followed by the 4-byte uncompressed-size trailer
/// Linux appends (counted in payload_length).
func makeBzImage(
    payload: [UInt8], uncompressedSize: Int, setupSectors: UInt8 = 2, version: UInt16 = 0x020f,
    payloadOffset: UInt32 = 0x40
) -> [UInt8] {
    let sectors = setupSectors == 0 ? 4 : Int(setupSectors)
    let protectedModeStart = (sectors + 1) * 512
    var file = [UInt8](repeating: 0, count: protectedModeStart + Int(payloadOffset))
    file[0x1f1] = setupSectors
    file.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
    setLittleEndian(&file, at: 0x206, UInt64(version), count: 2)
    setLittleEndian(&file, at: 0x248, UInt64(payloadOffset), count: 4)
    setLittleEndian(&file, at: 0x24c, UInt64(payload.count + 4), count: 4)
    file += payload
    file += littleEndianBytes(UInt64(uncompressedSize), count: 4)
    file += [UInt8](repeating: 0xcc, count: 100)  // trailing data after the payload
    return file
}

// MARK: Compression

/// gzip-compresses `data` with zlib (deflateInit2, 16 + MAX_WBITS).
func gzip(_ data: [UInt8]) throws -> [UInt8] {
    // Heap-allocated: zlib checks that the stream does not move between calls.
    let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    stream.initialize(to: z_stream())
    defer {
        stream.deinitialize(count: 1)
        stream.deallocate()
    }
    // SAFETY: zeroed stream, valid version string and struct size.
    let status = deflateInit2_(
        stream, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
        Int32(MemoryLayout<z_stream>.size))
    try #require(status == Z_OK, "deflateInit2 failed")
    defer { deflateEnd(stream) }
    var output = [UInt8](repeating: 0, count: Int(deflateBound(stream, UInt(data.count))) + 64)
    var input = data
    let (result, produced) = input.withUnsafeMutableBufferPointer { source in
        output.withUnsafeMutableBufferPointer { destination in
            // SAFETY: both buffers outlive the deflate call; deflateBound sized the output.
            stream.pointee.next_in = source.baseAddress
            stream.pointee.avail_in = UInt32(source.count)
            stream.pointee.next_out = destination.baseAddress
            stream.pointee.avail_out = UInt32(destination.count)
            let result = deflate(stream, Z_FINISH)
            return (result, destination.count - Int(stream.pointee.avail_out))
        }
    }
    try #require(result == Z_STREAM_END, "deflate did not finish")
    return Array(output[0..<produced])
}

/// XZ-compresses `data` with liblzma; with `x86Filter` the x86 BCJ filter precedes
/// LZMA2, as in Linux's `xz_wrap.sh` for x86 kernels.
func xz(_ data: [UInt8], x86Filter: Bool = true) throws -> [UInt8] {
    var options = lzma_options_lzma()
    try #require(lzma_lzma_preset(&options, 1) == 0, "lzma_lzma_preset failed")
    // Filter IDs from lzma/bcj.h and lzma/lzma12.h (function-like macros Swift cannot
    // import): LZMA_FILTER_X86 0x04, LZMA_FILTER_LZMA2 0x21; LZMA_VLI_UNKNOWN ends the list.
    let filterX86: lzma_vli = 0x04
    let filterLZMA2: lzma_vli = 0x21
    var output = [UInt8](repeating: 0, count: Int(lzma_stream_buffer_bound(data.count)) + 64)
    var outputPosition = 0
    let status = withUnsafeMutablePointer(to: &options) { optionsPointer in
        var filters: [lzma_filter] = []
        if x86Filter { filters.append(lzma_filter(id: filterX86, options: nil)) }
        filters.append(lzma_filter(id: filterLZMA2, options: UnsafeMutableRawPointer(optionsPointer)))
        filters.append(lzma_filter(id: lzma_vli.max, options: nil))
        // SAFETY: filters, input and output are valid for the call; output is sized by
        // lzma_stream_buffer_bound.
        return lzma_stream_buffer_encode(
            &filters, LZMA_CHECK_CRC32, nil, data, data.count, &output, &outputPosition, output.count)
    }
    try #require(status == LZMA_OK, "lzma_stream_buffer_encode failed")
    return Array(output[0..<outputPosition])
}

// MARK: Bytes

func littleEndianBytes(_ value: UInt64, count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

func setLittleEndian(_ bytes: inout [UInt8], at offset: Int, _ value: UInt64, count: Int) {
    bytes.replaceSubrange(offset..<(offset + count), with: littleEndianBytes(value, count: count))
}

func padded4(_ bytes: [UInt8]) -> [UInt8] {
    bytes + [UInt8](repeating: 0, count: (4 - bytes.count % 4) % 4)
}

/// Deterministic non-trivial bytes, so copies can be checked.
func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &* 7) }
}
