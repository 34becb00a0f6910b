// Xen notes: where they are found, how each type is decoded, and the legacy string.

import Testing

@testable import ImageLoader

@Suite("Xen notes")
struct XenNotesTests {
    @Test("Every elfnote.h type decodes into its typed field")
    func allTypes() throws {
        let notes: [TestNote] = [
            .number(.entry, 0xffff_ffff_8100_0100),
            .number(.hypercallPage, 0xffff_ffff_8100_1000),
            .number(.virtBase, 0xffff_ffff_8000_0000),
            .number(.paddrOffset, 0, bytes: 4),
            .string(.xenVersion, "xen-3.0"),
            .string(.guestOS, "linux"),
            .string(.guestVersion, "2.6", terminated: false),
            .string(.loader, "generic"),
            .string(.paeMode, "yes"),
            .string(.features, "!writable_page_tables|pae_pgdir_above_4gb|future_thing", terminated: false),
            .string(.bsdSymtab, "no"),
            .number(.hvStartLow, 0xffff_8000_0000_0000),
            TestNote(type: 13, descriptor: littleEndianBytes(1, count: 8) + littleEndianBytes(1, count: 8)),
            .number(.suspendCancel, 1, bytes: 4),
            .number(.initP2M, 0x80_0000_0000),
            .number(.modStartPFN, 1, bytes: 4),
            TestNote(type: 17, descriptor: littleEndianBytes(0x8801, count: 4)),
            .number(.phys32Entry, 0x100_0850, bytes: 4),
            TestNote(type: 0, descriptor: Array("NAME=value\0".utf8)),
            TestNote(type: 0x1000001, descriptor: [1, 2, 3]),
            TestNote(name: "GNU", type: 3, descriptor: [9, 9, 9, 9]),
        ]
        let elf = try ELFFile(bytes: ELFBuilder.linuxLike(notes: notes).build())
        let parsed = try XenNotes(elf: elf)
        #expect(parsed.source == .programHeaderNotes)
        #expect(parsed.entry == 0xffff_ffff_8100_0100)
        #expect(parsed.hypercallPage == 0xffff_ffff_8100_1000)
        #expect(parsed.virtBase == 0xffff_ffff_8000_0000)
        #expect(parsed.paddrOffset == 0)
        #expect(parsed.xenVersion == "xen-3.0")
        #expect(parsed.guestOS == "linux")
        #expect(parsed.guestVersion == "2.6")
        #expect(parsed.loader == "generic")
        #expect(parsed.paeMode == "yes")
        #expect(parsed.features?.required == ["writable_page_tables"])
        #expect(parsed.features?.optional == ["pae_pgdir_above_4gb", "future_thing"])
        #expect(parsed.bsdSymtab == "no")
        #expect(parsed.hvStartLow == 0xffff_8000_0000_0000)
        #expect(parsed.l1MFNValid == [L1MFNValidPair(mask: 1, value: 1)])
        #expect(parsed.suspendCancel == 1)
        #expect(parsed.initP2M == 0x80_0000_0000)
        #expect(parsed.modStartPFN == 1)
        #expect(parsed.acceptsUnmappedInitrd)
        #expect(parsed.supportedFeatures == [0x8801])
        #expect(parsed.phys32Entry == 0x100_0850)
        #expect(
            parsed.unknown == [
                XenNote(type: 0, descriptor: Array("NAME=value\0".utf8)),
                XenNote(type: 0x1000001, descriptor: [1, 2, 3]),
            ])
        // writable_page_tables (0) and pae_pgdir_above_4gb (4) from FEATURES, plus 0x8801.
        #expect(parsed.supportedFeatureBits == 0x8811)
        #expect(parsed.requiredFeatureBits == 0x1)
    }

    @Test("Numeric notes of 1, 2, 4 and 8 bytes; other sizes are errors")
    func numericSizes() throws {
        for size in [1, 2, 4, 8] {
            var notes = XenNotes()
            try notes.apply(XenNote(type: 3, descriptor: littleEndianBytes(0x1122_3344_5566_7788, count: size)))
            #expect(notes.virtBase == 0x1122_3344_5566_7788 & (UInt64.max >> (64 - 8 * UInt64(size))))
        }
        var notes = XenNotes()
        expectError(.malformedNote(type: 1, reason: "numeric value is 3 bytes; expected 1, 2, 4 or 8")) {
            () throws(ImageError) in try notes.apply(XenNote(type: 1, descriptor: [1, 2, 3]))
        }
        #expect(ImageError.malformedNote(type: 1, reason: "x").description == "malformed Xen note ENTRY: x")
        expectError(.malformedNote(type: 13, reason: "value is 8 bytes; expected 64-bit mask/value pairs")) {
            () throws(ImageError) in try notes.apply(XenNote(type: 13, descriptor: [UInt8](repeating: 0, count: 8)))
        }
        expectError(.malformedNote(type: 17, reason: "value is 6 bytes; expected 32-bit bitmap words")) {
            () throws(ImageError) in try notes.apply(XenNote(type: 17, descriptor: [UInt8](repeating: 0, count: 6)))
        }
    }

    @Test("A repeated note: the later one wins")
    func laterNoteWins() throws {
        let notes = linuxNotes() + [.string(.guestOS, "linux-new")]
        let parsed = try XenNotes(elf: ELFFile(bytes: ELFBuilder.linuxLike(notes: notes).build()))
        #expect(parsed.guestOS == "linux-new")
    }

    @Test("Notes only in a SHT_NOTE section (.note.Xen) are found")
    func sectionOnly() throws {
        var builder = ELFBuilder.linuxLike()
        builder.notePlacement = .sectionOnly
        let elf = try ELFFile(bytes: builder.build())
        #expect(!elf.programHeaders.contains { $0.type == ProgramHeader.typeNote })
        let kernel = try KernelImage.load(bytes: builder.build())
        #expect(kernel.notes.source == .sectionNotes)
        #expect(kernel.notes.virtBase == 0xffff_ffff_8000_0000)
        #expect(kernel.layout.kernelStart == 0xffff_ffff_8100_0000)
    }

    @Test("A PT_NOTE with p_offset 0 is skipped, as libelf does; sections are used")
    func noteSegmentAtOffsetZero() throws {
        let (original, offsets) = ELFBuilder.linuxLike().buildWithOffsets()
        var bytes = original
        let noteHeader = offsets.programHeader(try #require(offsets.noteSegmentIndex))
        setLittleEndian(&bytes, at: noteHeader + 8, 0, count: 8)
        let notes = try XenNotes(elf: ELFFile(bytes: bytes))
        #expect(notes.source == .sectionNotes)
    }

    @Test("PT_NOTE segments without Xen notes fall back to sections")
    func nonXenNoteSegment() throws {
        let (original, offsets) = ELFBuilder.linuxLike().buildWithOffsets()
        var bytes = original
        // Point the section at an intact copy of the notes, then rename every owner in
        // the original area, which the PT_NOTE segment still covers, to "Qen".
        let area = Array(bytes[offsets.noteArea...].prefix(linuxNotes().flatMap(\.encoded).count))
        let sectionHeader = offsets.sectionHeader(1)
        setLittleEndian(&bytes, at: sectionHeader + 24, UInt64(bytes.count), count: 8)
        bytes += area
        var position = offsets.noteArea
        while position < offsets.noteArea + area.count {
            let nameSize = Int(littleEndian(bytes[position..<(position + 4)]))
            let descriptorSize = Int(littleEndian(bytes[(position + 4)..<(position + 8)]))
            bytes[position + 12] = UInt8(ascii: "Q")  // "Xen" -> "Qen"
            position += 12 + (nameSize + 3) / 4 * 4 + (descriptorSize + 3) / 4 * 4
        }
        let notes = try XenNotes(elf: ELFFile(bytes: bytes))
        #expect(notes.source == .sectionNotes)
        #expect(notes.guestOS == "linux")
    }

    @Test("No Xen notes and no __xen_guest: not a PV kernel")
    func missingNotes() {
        let builder = ELFBuilder.linuxLike(notes: [TestNote(name: "GNU", type: 3, descriptor: [1, 2, 3, 4])])
        expectError(.noXenNotes) { () throws(ImageError) in try KernelImage.load(bytes: builder.build()) }
        expectError(.noXenNotes) { () throws(ImageError) in
            try KernelImage.load(bytes: ELFBuilder.linuxLike(notes: []).build())
        }
        #expect(ImageError.noXenNotes.description.contains("no Xen notes (__xen_guest / .note.Xen)"))
    }

    @Test("A note that overruns its segment is an error")
    func truncatedNote() {
        let (original, offsets) = ELFBuilder.linuxLike().buildWithOffsets()
        var bytes = original
        setLittleEndian(&bytes, at: offsets.noteArea + 4, 0x1000, count: 4)  // descsz of the first note
        expectError(.truncatedNote("PT_NOTE segment 2")) { () throws(ImageError) in
            try XenNotes(elf: ELFFile(bytes: bytes))
        }
        // Same through the section only.
        var builder = ELFBuilder.linuxLike()
        builder.notePlacement = .sectionOnly
        let (sectionBytes, sectionOffsets) = builder.buildWithOffsets()
        bytes = sectionBytes
        setLittleEndian(&bytes, at: sectionOffsets.noteArea, 0xffff_ffff, count: 4)  // namesz
        expectError(.truncatedNote("SHT_NOTE section 1 (.note.Xen)")) { () throws(ImageError) in
            try XenNotes(elf: ELFFile(bytes: bytes))
        }
    }

    @Test("Note parsing is bounded: at most 65536 notes and 16 MiB of note bytes")
    func noteBudget() throws {
        // 1 MiB of zeros is 87381 empty notes.
        var builder = ELFBuilder.linuxLike()
        builder.notePlacement = .sectionOnly
        builder.notes = []
        builder.extraSections = [.init(name: ".note.zero", type: 7, contents: [UInt8](repeating: 0, count: 1 << 20))]
        expectError(.tooManyNotes("more than 65536 ELF notes")) { () throws(ImageError) in
            try XenNotes(elf: ELFFile(bytes: builder.build()))
        }

        // Seventeen PT_NOTE segments over the same 1 MiB note.
        let bigNote = TestNote(name: "GNU", type: 1, descriptor: [UInt8](repeating: 7, count: (1 << 20) - 16))
        builder = ELFBuilder.linuxLike()
        builder.extraSections = [.init(name: ".note.big", type: 1, contents: bigNote.encoded)]
        for _ in 0..<17 {
            builder.segments.append(
                .init(type: 4, flags: 4, physicalAddress: 0, virtualAddress: 0, contents: [0], memorySize: 1))
        }
        let (original, offsets) = builder.buildWithOffsets()
        var bytes = original
        let bigSection = offsets.sectionHeader(2)
        let areaOffset = littleEndian(bytes[(bigSection + 24)..<(bigSection + 32)])
        for index in 2..<19 {
            setLittleEndian(&bytes, at: offsets.programHeader(index) + 8, areaOffset, count: 8)
            setLittleEndian(&bytes, at: offsets.programHeader(index) + 32, UInt64(bigNote.encoded.count), count: 8)
        }
        expectError(.tooManyNotes("ELF note areas exceed 16 MiB in total")) { () throws(ImageError) in
            try XenNotes(elf: ELFFile(bytes: bytes))
        }
    }

    @Test("Legacy __xen_guest string")
    func legacyGuestSection() throws {
        let text =
            "GUEST_OS=linux,GUEST_VER=2.6,XEN_VER=xen-3.0,VIRT_BASE=0xC0000000,"
            + "VIRT_ENTRY=0xC0100000,HYPERCALL_PAGE=0x102,LOADER=generic,"
            + "FEATURES=writable_page_tables|!pae_pgdir_above_4gb,PAE=yes[extended-cr3],BOGUS\0junk"
        var builder = ELFBuilder(
            segments: [
                .init(
                    physicalAddress: 0xc010_0000, virtualAddress: 0xc010_0000, contents: pattern(0x3000, seed: 3),
                    memorySize: 0x4000)
            ],
            notes: [])
        builder.extraSections = [.init(name: "__xen_guest", type: 1, contents: Array(text.utf8))]
        let kernel = try KernelImage.load(bytes: builder.build())
        let notes = kernel.notes
        #expect(notes.source == .legacyGuestSection)
        #expect(notes.guestOS == "linux")
        #expect(notes.guestVersion == "2.6")
        #expect(notes.xenVersion == "xen-3.0")
        #expect(notes.virtBase == 0xc000_0000)
        #expect(notes.entry == 0xc010_0000)
        #expect(notes.loader == "generic")
        #expect(notes.paeMode == "yes[extended-cr3]")
        #expect(notes.features == XenFeatures(required: ["pae_pgdir_above_4gb"], optional: ["writable_page_tables"]))
        // HYPERCALL_PAGE is a page number relative to VIRT_BASE.
        #expect(notes.hypercallPage == 0xc010_2000)
        // Legacy PADDR_OFFSET defaults to VIRT_BASE: p_paddr held the virtual address.
        #expect(kernel.layout.paddrOffset == 0xc000_0000)
        #expect(kernel.layout.kernelStart == 0xc010_0000)
        #expect(kernel.layout.kernelEnd == 0xc010_4000)
        #expect(kernel.layout.firstPFN == 0x100)
        #expect(kernel.layout.hypercallPage == 0xc010_2000)
    }

    @Test("Legacy __xen_guest with a non-numeric value")
    func legacyBadNumber() {
        var builder = ELFBuilder.linuxLike(notes: [])
        builder.extraSections = [.init(name: "__xen_guest", type: 1, contents: Array("VIRT_BASE=0xZZ".utf8))]
        expectError(.malformedGuestInfo("VIRT_BASE value \"0xZZ\" is not a number")) { () throws(ImageError) in
            try KernelImage.load(bytes: builder.build())
        }
    }

    @Test("C-style numbers as strtoull(…, 0) reads them")
    func cNumbers() {
        #expect(parseCNumber("0x1F") == 31)
        #expect(parseCNumber("0X10") == 16)
        #expect(parseCNumber("017") == 15)
        #expect(parseCNumber("0") == 0)
        #expect(parseCNumber("42") == 42)
        #expect(parseCNumber("0x") == nil)
        #expect(parseCNumber("09") == nil)
        #expect(parseCNumber("") == nil)
        #expect(parseCNumber("0x10000000000000000") == nil)
    }

    @Test("FEATURES strings split into required and optional names")
    func features() {
        let features = XenFeatures(parsing: "!writable_page_tables||pae_pgdir_above_4gb|!|!dom0|mystery|")
        #expect(features.required == ["writable_page_tables", "dom0"])
        #expect(features.optional == ["pae_pgdir_above_4gb", "mystery"])
        #expect(features.requiredBits == XenFeature.writablePageTables.bit | XenFeature.dom0.bit)
        #expect(features.supportedBits == 0x1 | 0x10 | 0x800)
        #expect(features.unknownRequired.isEmpty)
        #expect(XenFeatures(parsing: "!frobnicate").unknownRequired == ["frobnicate"])
        #expect(XenFeature(name: "gnttab_map_avail_bits") == .gnttabMapAvailBits)
        #expect(XenFeatures(parsing: "") == XenFeatures())
    }
}
