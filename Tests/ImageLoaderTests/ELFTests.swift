// ELF64 parsing: structure, bounds checks, and rejection of unsupported files.

import Testing

@testable import ImageLoader

/// Expects `body` to throw exactly `expected`.
func expectError<T>(
    _ expected: ImageError, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws(ImageError) -> T
) {
    do {
        let value = try body()
        Issue.record("expected \(expected), got \(value)", sourceLocation: sourceLocation)
    } catch {
        #expect(error == expected, sourceLocation: sourceLocation)
        #expect(!error.description.contains("\n"), sourceLocation: sourceLocation)
    }
}

@Suite("ELF64 parsing")
struct ELFTests {
    @Test("A well-formed ELF64 parses with headers, segments and named sections")
    func parsesWellFormed() throws {
        let builder = ELFBuilder.linuxLike()
        let elf = try ELFFile(bytes: builder.build())
        #expect(elf.header.type == 2)
        #expect(elf.header.machine == 62)
        #expect(elf.header.entry == 0x100_0000)
        #expect(elf.programHeaders.count == 3)
        #expect(elf.loadableSegments.map(\.index) == [0, 1])
        let percpu = elf.programHeaders[1]
        #expect(percpu.physicalAddress == 0x100_2000)
        #expect(percpu.virtualAddress == 0)
        #expect(percpu.fileSize == 0x800)
        #expect(percpu.memorySize == 0x1800)
        #expect(percpu.flags == 6)
        #expect(elf.contents(of: percpu) == pattern(0x800, seed: 2)[...])
        #expect(elf.programHeaders[2].type == ProgramHeader.typeNote)
        #expect(elf.sections.map(\.name) == ["", ".note.Xen", ".shstrtab"])
        let notes = try #require(elf.section(named: ".note.Xen"))
        #expect(notes.type == SectionHeader.typeNote)
        #expect(elf.contents(of: notes).count == linuxNotes().flatMap(\.encoded).count)
    }

    @Test("PT_LOAD segments without R/W/X are not loadable")
    func loadableNeedsPermission() throws {
        var builder = ELFBuilder.linuxLike()
        builder.segments[1].flags = 0
        let elf = try ELFFile(bytes: builder.build())
        #expect(elf.loadableSegments.map(\.index) == [0])
    }

    @Test("Bytes without ELF, bzImage or compression magic are rejected")
    func badMagic() {
        var bytes = ELFBuilder.linuxLike().build()
        bytes[1] = 0x46
        expectError(.unrecognizedFormat) { () throws(ImageError) in try KernelImage.load(bytes: bytes) }
        expectError(.unrecognizedFormat) { () throws(ImageError) in try KernelImage.load(bytes: []) }
        #expect(ImageError.unrecognizedFormat.description == "not an ELF64 or bzImage kernel")
    }

    @Test("A file cut inside the ELF header is truncated")
    func truncatedHeader() {
        let bytes = Array(ELFBuilder.linuxLike().build().prefix(40))
        expectError(.truncated("ELF64 header needs 64 bytes, file has 40")) { () throws(ImageError) in
            try ELFFile(bytes: bytes)
        }
        expectError(.truncated("ELF identification is cut short")) { () throws(ImageError) in
            try ELFFile(bytes: [0x7f, 0x45, 0x4c, 0x46])
        }
    }

    @Test("32-bit, big-endian, non-executable and non-x86-64 ELF files are refused")
    func unsupportedKinds() {
        var builder = ELFBuilder.linuxLike()
        builder.elfClass = 1
        expectError(.unsupportedELF("32-bit (ELFCLASS32) kernel; Domus boots only x86-64 PV kernels")) {
            () throws(ImageError) in try KernelImage.load(bytes: builder.build())
        }
        builder = ELFBuilder.linuxLike()
        builder.dataEncoding = 2
        expectError(.unsupportedELF("big-endian kernel; x86-64 kernels are little-endian")) {
            () throws(ImageError) in try ELFFile(bytes: builder.build())
        }
        builder = ELFBuilder.linuxLike()
        builder.type = 3
        expectError(.unsupportedELF("ELF type 3 (ET_DYN, a shared object or PIE); a kernel must be ET_EXEC")) {
            () throws(ImageError) in try ELFFile(bytes: builder.build())
        }
        builder = ELFBuilder.linuxLike()
        builder.machine = 3
        expectError(.unsupportedELF("machine 3 is not x86-64 (EM_X86_64, 62)")) {
            () throws(ImageError) in try ELFFile(bytes: builder.build())
        }
        builder = ELFBuilder.linuxLike()
        builder.elfClass = 9
        expectError(.malformedELF("unknown ELF class 9")) { () throws(ImageError) in
            try ELFFile(bytes: builder.build())
        }
    }

    @Test("Program header table past the end of the file")
    func programHeadersTruncated() {
        var bytes = ELFBuilder.linuxLike().build()
        setLittleEndian(&bytes, at: 32, UInt64(bytes.count - 100), count: 8)  // e_phoff
        expectError(
            .truncated(
                "3 program headers at offset \(hex(UInt64(bytes.count - 100))) run past the end of the \(bytes.count)-byte file"
            )
        ) {
            () throws(ImageError) in try ELFFile(bytes: bytes)
        }
        // An e_phoff near 2^64 must not wrap around into the file.
        setLittleEndian(&bytes, at: 32, UInt64.max - 8, count: 8)
        #expect(throws: ImageError.self) { try ELFFile(bytes: bytes) }
    }

    @Test("Wrong program or section header entry sizes")
    func entrySizes() {
        var bytes = ELFBuilder.linuxLike().build()
        setLittleEndian(&bytes, at: 54, 32, count: 2)
        expectError(.malformedELF("program header entry size is 32, expected 56")) { () throws(ImageError) in
            try ELFFile(bytes: bytes)
        }
        bytes = ELFBuilder.linuxLike().build()
        setLittleEndian(&bytes, at: 58, 40, count: 2)
        expectError(.malformedELF("section header entry size is 40, expected 64")) { () throws(ImageError) in
            try ELFFile(bytes: bytes)
        }
    }

    @Test("A segment whose bytes lie beyond the file")
    func segmentBeyondFile() throws {
        let (original, offsets) = ELFBuilder.linuxLike().buildWithOffsets()
        var bytes = original
        let header = offsets.programHeader(0)
        setLittleEndian(&bytes, at: header + 8, UInt64(bytes.count - 0x100), count: 8)  // p_offset
        expectError(
            .segmentOutsideFile(index: 0, offset: UInt64(bytes.count - 0x100), size: 0x2000, fileSize: bytes.count)
        ) {
            () throws(ImageError) in try ELFFile(bytes: bytes)
        }
        // p_offset + p_filesz overflowing 64 bits.
        bytes = original
        setLittleEndian(&bytes, at: header + 8, UInt64.max - 0xfff, count: 8)
        expectError(.segmentOutsideFile(index: 0, offset: UInt64.max - 0xfff, size: 0x2000, fileSize: bytes.count)) {
            () throws(ImageError) in try ELFFile(bytes: bytes)
        }
        // Huge p_filesz.
        bytes = original
        setLittleEndian(&bytes, at: header + 32, UInt64.max, count: 8)
        setLittleEndian(&bytes, at: header + 40, UInt64.max, count: 8)
        #expect(throws: ImageError.self) { try ELFFile(bytes: bytes) }
    }

    @Test("A loadable segment with p_filesz > p_memsz")
    func fileSizeAboveMemorySize() {
        var builder = ELFBuilder.linuxLike()
        builder.segments[1].memorySize = 0x400
        expectError(.segmentFileSizeExceedsMemorySize(index: 1, fileSize: 0x800, memorySize: 0x400)) {
            () throws(ImageError) in try ELFFile(bytes: builder.build())
        }
    }

    @Test("A loadable segment whose p_paddr + p_memsz wraps")
    func addressOverflow() {
        var builder = ELFBuilder.linuxLike()
        builder.segments[1].physicalAddress = UInt64.max - 0x1000
        expectError(.segmentAddressOverflow(index: 1, address: UInt64.max - 0x1000, size: 0x1800)) {
            () throws(ImageError) in try ELFFile(bytes: builder.build())
        }
    }

    @Test("Section header table and sections outside the file")
    func sectionsOutsideFile() {
        let (original, offsets) = ELFBuilder.linuxLike().buildWithOffsets()
        var bytes = original
        setLittleEndian(&bytes, at: 40, UInt64(bytes.count - 64), count: 8)  // e_shoff
        expectError(
            .truncated(
                "3 section headers at offset \(hex(UInt64(bytes.count - 64))) run past the end of the \(bytes.count)-byte file"
            )
        ) {
            () throws(ImageError) in try ELFFile(bytes: bytes)
        }
        bytes = original
        let section = offsets.sectionHeader(1)
        setLittleEndian(&bytes, at: section + 32, 0x10_0000, count: 8)  // sh_size
        expectError(
            .sectionOutsideFile(index: 1, offset: UInt64(offsets.noteArea), size: 0x10_0000, fileSize: bytes.count)
        ) {
            () throws(ImageError) in try ELFFile(bytes: bytes)
        }
        bytes = original
        setLittleEndian(&bytes, at: section + 24, UInt64.max, count: 8)  // sh_offset
        #expect(throws: ImageError.self) { try ELFFile(bytes: bytes) }
        // SHT_NOBITS sections occupy no file bytes and are not range-checked.
        bytes = original
        setLittleEndian(&bytes, at: section + 4, UInt64(SectionHeader.typeNoBits), count: 4)
        setLittleEndian(&bytes, at: section + 24, UInt64.max, count: 8)
        #expect(throws: Never.self) { try ELFFile(bytes: bytes) }
    }

    @Test("Section-name table index out of range; name offsets past the table")
    func sectionNames() throws {
        let (original, offsets) = ELFBuilder.linuxLike().buildWithOffsets()
        var bytes = original
        setLittleEndian(&bytes, at: 62, 7, count: 2)
        expectError(.malformedELF("section-name string table index 7 is out of range (3 sections)")) {
            () throws(ImageError) in try ELFFile(bytes: bytes)
        }
        bytes = original
        setLittleEndian(&bytes, at: offsets.sectionHeader(1), 0xffff_ffff, count: 4)
        let elf = try ELFFile(bytes: bytes)
        #expect(elf.sections[1].name == nil)
        // Names longer than 255 bytes are not resolved.
        var builder = ELFBuilder.linuxLike()
        builder.extraSections = [
            .init(name: String(repeating: "n", count: 255), type: 1, contents: [1]),
            .init(name: String(repeating: "l", count: 256), type: 1, contents: [2]),
        ]
        let named = try ELFFile(bytes: builder.build())
        #expect(named.sections[2].name?.count == 255)
        #expect(named.sections[3].name == nil)
        // No table at all: names are nil, parsing succeeds.
        bytes = original
        setLittleEndian(&bytes, at: 62, 0, count: 2)
        #expect(try ELFFile(bytes: bytes).sections.allSatisfy { $0.name == nil })
    }
}

/// SplitMix64: a small seeded generator so the mutation test is reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var value = state
        value = (value ^ (value >> 30)) &* 0xbf58_476d_1ce4_e5b9
        value = (value ^ (value >> 27)) &* 0x94d0_49bb_1331_11eb
        return value ^ (value >> 31)
    }
}

@Suite("Hostile input")
struct HostileInputTests {
    /// Random byte and field corruption of valid images must end in a result or an
    /// `ImageError`, never a trap. Header fields get whole 64-bit garbage values so
    /// offsets, sizes and counts hit their overflow paths.
    @Test("Mutated ELF and bzImage files never crash the loader")
    func mutations() throws {
        let elf = ELFBuilder.linuxLike().build()
        let bzImage = makeBzImage(payload: try gzip(elf), uncompressedSize: elf.count)
        var generator = SplitMix64(state: 0x00d0_0500)
        let options = ImageLoadOptions(maxDecompressedSize: 1 << 20)
        var loaded = 0
        var rejected = 0
        for round in 0..<3000 {
            var bytes = round % 3 == 0 ? bzImage : elf
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                if Bool.random(using: &generator) {
                    // A whole 8-byte field: in the ELF/bzImage and program headers, or
                    // anywhere (the section headers are at the end of the ELF file).
                    let end = Bool.random(using: &generator) ? min(bytes.count, 0x260) : bytes.count
                    let offset = Int.random(in: 0..<(end - 8), using: &generator)
                    setLittleEndian(&bytes, at: offset, generator.next(), count: 8)
                } else {
                    let index = Int.random(in: 0..<bytes.count, using: &generator)
                    bytes[index] = UInt8.random(in: 0...255, using: &generator)
                }
            }
            do {
                _ = try KernelImage.load(bytes: bytes, options: options)
                loaded += 1
            } catch {
                #expect(!error.description.isEmpty && !error.description.contains("\n"))
                rejected += 1
            }
        }
        #expect(loaded + rejected == 3000)
        #expect(rejected > 0)
    }
}
