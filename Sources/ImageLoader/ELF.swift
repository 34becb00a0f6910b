// ImageLoader layer: ELF64 parsing, bounds-checked.

/// The ELF64 file header fields Domus uses (System V gABI, `Elf64_Ehdr`).
public struct ELFHeader: Equatable, Sendable {
    /// `e_type`; always `ET_EXEC` (2) once parsed.
    public var type: UInt16
    /// `e_machine`; always `EM_X86_64` (62) once parsed.
    public var machine: UInt16
    /// `e_entry`. Xen prefers the ENTRY note and falls back to this.
    public var entry: UInt64
    public var programHeaderOffset: UInt64
    public var sectionHeaderOffset: UInt64
    public var flags: UInt32
    public var headerSize: UInt16
    public var programHeaderEntrySize: UInt16
    public var programHeaderCount: UInt16
    public var sectionHeaderEntrySize: UInt16
    public var sectionHeaderCount: UInt16
    /// `e_shstrndx`: index of the section-name string table, 0 if none.
    public var sectionNameTableIndex: UInt16

    /// Size of `Elf64_Ehdr`.
    public static let size = 64
    /// `ET_EXEC`: the only type Xen's PV loader accepts in practice.
    public static let typeExecutable: UInt16 = 2
    /// `EM_X86_64`.
    public static let machineX86_64: UInt16 = 62
}

/// One ELF64 program header (`Elf64_Phdr`).
public struct ProgramHeader: Equatable, Sendable {
    public var type: UInt32
    public var flags: UInt32
    public var offset: UInt64
    public var virtualAddress: UInt64
    public var physicalAddress: UInt64
    public var fileSize: UInt64
    public var memorySize: UInt64
    public var alignment: UInt64

    public static let size = 56
    public static let typeLoad: UInt32 = 1
    public static let typeNote: UInt32 = 4
    public static let flagExecute: UInt32 = 1
    public static let flagWrite: UInt32 = 2
    public static let flagRead: UInt32 = 4

    /// A PT_LOAD with any of R/W/X set: what libelf copies into the guest
    /// (libelf-tools.c `elf_phdr_is_loadable`).
    public var isLoadable: Bool {
        type == Self.typeLoad
            && flags & (Self.flagRead | Self.flagWrite | Self.flagExecute) != 0
    }
}

/// One ELF64 section header (`Elf64_Shdr`) with its name resolved.
public struct SectionHeader: Equatable, Sendable {
    /// Name from the section-name string table; `nil` if there is no table, the
    /// offset is outside it, or the name is longer than `maxNameLength` bytes.
    public var name: String?
    public var type: UInt32
    public var flags: UInt64
    public var address: UInt64
    public var offset: UInt64
    public var size: UInt64
    public var link: UInt32
    public var info: UInt32
    public var alignment: UInt64
    public var entrySize: UInt64

    public static let size = 64
    /// Longest section name resolved.
    public static let maxNameLength = 255
    public static let typeNull: UInt32 = 0
    public static let typeStringTable: UInt32 = 3
    public static let typeNote: UInt32 = 7
    public static let typeNoBits: UInt32 = 8

    /// Whether the section occupies bytes in the file.
    public var hasFileContents: Bool {
        type != Self.typeNull && type != Self.typeNoBits
    }
}

/// A parsed, bounds-checked little-endian x86-64 ELF64 executable.
///
/// Construction validates everything later reads depend on: the header, that the
/// program and section header tables are inside the file, that every segment's and
/// every section's file range is inside the file, and for loadable segments that
/// `p_filesz <= p_memsz` and `p_paddr + p_memsz` does not wrap. Xen's libelf does
/// fewer of these checks up front (libelf-loader.c `elf_init`) and relies on per-access
/// checks instead; checking once keeps every later accessor total.
public struct ELFFile: Sendable {
    /// The whole file.
    public let bytes: [UInt8]
    public let header: ELFHeader
    public let programHeaders: [ProgramHeader]
    /// Section headers, index 0 (`SHN_UNDEF`) included, empty if the file has none.
    public let sections: [SectionHeader]

    /// ELF identification bytes `\x7fELF`.
    static let magic: [UInt8] = [0x7f, 0x45, 0x4c, 0x46]

    /// Whether `bytes` starts with the ELF magic (any class or byte order).
    static func hasMagic(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.starts(with: magic)
    }

    /// Parses and validates `bytes` as an x86-64 ELF64 executable.
    public init(bytes: [UInt8]) throws(ImageError) {
        let reader = ByteReader(bytes)
        guard Self.hasMagic(bytes[...]) else { throw .unrecognizedFormat }
        guard let elfClass = reader.u8(4), let dataEncoding = reader.u8(5) else {
            throw .truncated("ELF identification is cut short")
        }
        switch elfClass {
        case 2: break
        case 1: throw .unsupportedELF("32-bit (ELFCLASS32) kernel; Domus boots only x86-64 PV kernels")
        default: throw .malformedELF("unknown ELF class \(elfClass)")
        }
        switch dataEncoding {
        case 1: break
        case 2: throw .unsupportedELF("big-endian kernel; x86-64 kernels are little-endian")
        default: throw .malformedELF("unknown ELF data encoding \(dataEncoding)")
        }
        let header = try Self.parseHeader(reader)
        self.bytes = bytes
        self.header = header
        self.programHeaders = try Self.parseProgramHeaders(reader, header: header)
        self.sections = try Self.parseSections(reader, header: header)
    }

    /// Loadable segments (see `ProgramHeader.isLoadable`) with their table indices.
    public var loadableSegments: [(index: Int, header: ProgramHeader)] {
        programHeaders.enumerated()
            .filter { $0.element.isLoadable }
            .map { (index: $0.offset, header: $0.element) }
    }

    /// The file bytes of a segment of this file (`p_filesz` bytes at `p_offset`).
    ///
    /// Ranges were validated at parse time; a header that is not from this file and
    /// does not fit gives an empty slice.
    public func contents(of segment: ProgramHeader) -> ArraySlice<UInt8> {
        ByteReader(bytes).slice(offset: segment.offset, length: segment.fileSize) ?? []
    }

    /// The file bytes of a section of this file; empty for SHT_NOBITS.
    public func contents(of section: SectionHeader) -> ArraySlice<UInt8> {
        guard section.hasFileContents else { return [] }
        return ByteReader(bytes).slice(offset: section.offset, length: section.size) ?? []
    }

    /// The first section called `name`, as libelf's `elf_shdr_by_name` finds it.
    public func section(named name: String) -> SectionHeader? {
        sections.first { $0.name == name }
    }

    // MARK: Parsing

    private static func parseHeader(_ reader: ByteReader) throws(ImageError) -> ELFHeader {
        guard reader.count >= ELFHeader.size,
            let type = reader.u16(16), let machine = reader.u16(18), let entry = reader.u64(24),
            let phoff = reader.u64(32), let shoff = reader.u64(40), let flags = reader.u32(48),
            let ehsize = reader.u16(52), let phentsize = reader.u16(54),
            let phnum = reader.u16(56), let shentsize = reader.u16(58),
            let shnum = reader.u16(60), let shstrndx = reader.u16(62)
        else {
            throw .truncated("ELF64 header needs \(ELFHeader.size) bytes, file has \(reader.count)")
        }
        guard type == ELFHeader.typeExecutable else {
            throw .unsupportedELF("ELF type \(type) (\(elfTypeName(type))); a kernel must be ET_EXEC")
        }
        guard machine == ELFHeader.machineX86_64 else {
            throw .unsupportedELF("machine \(machine) is not x86-64 (EM_X86_64, 62)")
        }
        if phnum > 0, Int(phentsize) != ProgramHeader.size {
            throw .malformedELF("program header entry size is \(phentsize), expected \(ProgramHeader.size)")
        }
        if shnum > 0, Int(shentsize) != SectionHeader.size {
            throw .malformedELF("section header entry size is \(shentsize), expected \(SectionHeader.size)")
        }
        return ELFHeader(
            type: type, machine: machine, entry: entry,
            programHeaderOffset: phoff, sectionHeaderOffset: shoff, flags: flags,
            headerSize: ehsize, programHeaderEntrySize: phentsize, programHeaderCount: phnum,
            sectionHeaderEntrySize: shentsize, sectionHeaderCount: shnum,
            sectionNameTableIndex: shstrndx)
    }

    private static func parseProgramHeaders(
        _ reader: ByteReader, header: ELFHeader
    ) throws(ImageError) -> [ProgramHeader] {
        let count = Int(header.programHeaderCount)
        let tableSize = UInt64(count * ProgramHeader.size)
        guard reader.range(offset: header.programHeaderOffset, length: tableSize) != nil else {
            throw .truncated(
                "\(count) program headers at offset \(hex(header.programHeaderOffset)) "
                    + "run past the end of the \(reader.count)-byte file")
        }
        var result: [ProgramHeader] = []
        result.reserveCapacity(count)
        for index in 0..<count {
            // In range: the whole table was checked above.
            let base = header.programHeaderOffset + UInt64(index * ProgramHeader.size)
            guard let type = reader.u32(base), let flags = reader.u32(base + 4),
                let offset = reader.u64(base + 8), let vaddr = reader.u64(base + 16),
                let paddr = reader.u64(base + 24), let filesz = reader.u64(base + 32),
                let memsz = reader.u64(base + 40), let align = reader.u64(base + 48)
            else { throw .truncated("program header \(index)") }
            let segment = ProgramHeader(
                type: type, flags: flags, offset: offset, virtualAddress: vaddr,
                physicalAddress: paddr, fileSize: filesz, memorySize: memsz, alignment: align)
            guard reader.range(offset: offset, length: filesz) != nil else {
                throw .segmentOutsideFile(index: index, offset: offset, size: filesz, fileSize: reader.count)
            }
            if segment.isLoadable {
                guard filesz <= memsz else {
                    throw .segmentFileSizeExceedsMemorySize(index: index, fileSize: filesz, memorySize: memsz)
                }
                guard !paddr.addingReportingOverflow(memsz).overflow else {
                    throw .segmentAddressOverflow(index: index, address: paddr, size: memsz)
                }
            }
            result.append(segment)
        }
        return result
    }

    private static func parseSections(
        _ reader: ByteReader, header: ELFHeader
    ) throws(ImageError) -> [SectionHeader] {
        let count = Int(header.sectionHeaderCount)
        guard count > 0 else { return [] }
        let tableSize = UInt64(count * SectionHeader.size)
        guard reader.range(offset: header.sectionHeaderOffset, length: tableSize) != nil else {
            throw .truncated(
                "\(count) section headers at offset \(hex(header.sectionHeaderOffset)) "
                    + "run past the end of the \(reader.count)-byte file")
        }
        var result: [SectionHeader] = []
        result.reserveCapacity(count)
        var nameOffsets: [UInt32] = []
        nameOffsets.reserveCapacity(count)
        for index in 0..<count {
            let base = header.sectionHeaderOffset + UInt64(index * SectionHeader.size)
            guard let name = reader.u32(base), let type = reader.u32(base + 4),
                let flags = reader.u64(base + 8), let address = reader.u64(base + 16),
                let offset = reader.u64(base + 24), let size = reader.u64(base + 32),
                let link = reader.u32(base + 40), let info = reader.u32(base + 44),
                let align = reader.u64(base + 48), let entsize = reader.u64(base + 56)
            else { throw .truncated("section header \(index)") }
            let section = SectionHeader(
                name: nil, type: type, flags: flags, address: address, offset: offset,
                size: size, link: link, info: info, alignment: align, entrySize: entsize)
            if index > 0, section.hasFileContents,
                reader.range(offset: offset, length: size) == nil
            {
                throw .sectionOutsideFile(index: index, offset: offset, size: size, fileSize: reader.count)
            }
            result.append(section)
            nameOffsets.append(name)
        }

        let nameTableIndex = Int(header.sectionNameTableIndex)
        guard nameTableIndex != 0 else { return result }
        guard nameTableIndex < count else {
            throw .malformedELF(
                "section-name string table index \(nameTableIndex) is out of range (\(count) sections)")
        }
        let table = result[nameTableIndex]
        guard table.hasFileContents,
            let names = reader.slice(offset: table.offset, length: table.size)
        else { return result }
        for index in result.indices where Int(nameOffsets[index]) < names.count {
            let start = names.startIndex + Int(nameOffsets[index])
            let candidate = names[start...].prefix(SectionHeader.maxNameLength + 1)
            // Bounded so that thousands of headers sharing one huge unterminated string
            // cannot multiply it in memory; no section Domus looks for has a long name.
            if candidate.contains(0) { result[index].name = cString(candidate) }
        }
        return result
    }

    private static func elfTypeName(_ type: UInt16) -> String {
        switch type {
        case 0: return "ET_NONE"
        case 1: return "ET_REL, an object file"
        case 3: return "ET_DYN, a shared object or PIE"
        case 4: return "ET_CORE, a core dump"
        default: return "unknown"
        }
    }
}
