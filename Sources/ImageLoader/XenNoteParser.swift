// ImageLoader layer: finding and decoding a kernel's Xen notes.

extension XenNotes {
    /// Reads the Xen metadata of `elf` the way libelf does (libelf-dominfo.c
    /// `elf_xen_parse`, PV case):
    /// 1. "Xen" notes from every PT_NOTE segment, skipping those with `p_offset` 0
    ///    (some binutils versions emit such broken note segments);
    /// 2. if none carries a Xen note, "Xen" notes from every SHT_NOTE section
    ///    (e.g. `.note.Xen`);
    /// 3. if still none, the legacy `__xen_guest` section string.
    ///
    /// Throws `ImageError.noXenNotes` when all three come up empty: the image is a
    /// plain ELF, not a Xen PV kernel.
    public init(elf: ELFFile) throws(ImageError) {
        var budget = NoteBudget()
        var notes = XenNotes(source: .programHeaderNotes)
        var found = 0
        for (index, segment) in elf.programHeaders.enumerated()
        where segment.type == ProgramHeader.typeNote && segment.offset != 0 {
            found += try notes.apply(
                noteArea: elf.contents(of: segment), describedAs: "PT_NOTE segment \(index)",
                budget: &budget)
        }
        if found == 0 {
            notes = XenNotes(source: .sectionNotes)
            for (index, section) in elf.sections.enumerated()
            where index > 0 && section.type == SectionHeader.typeNote {
                let label = "SHT_NOTE section \(index)" + (section.name.map { " (\($0))" } ?? "")
                found += try notes.apply(
                    noteArea: elf.contents(of: section), describedAs: label, budget: &budget)
            }
        }
        if found == 0, let guestSection = elf.section(named: "__xen_guest") {
            notes = XenNotes(source: .legacyGuestSection)
            try notes.applyLegacyGuestInfo(cString(elf.contents(of: guestSection)))
            found = 1
        }
        guard found > 0 else { throw .noXenNotes }
        self = notes
    }

    /// Decodes the notes in one PT_NOTE segment or SHT_NOTE section and applies the
    /// ones named "Xen". Returns how many there were.
    ///
    /// Layout per note (`Elf64_Nhdr`): namesz, descsz, type as 32-bit words, then the
    /// name and the descriptor, each padded to 4 bytes (libelf-tools.c
    /// `elf_note_next`). Fewer than 12 trailing bytes are padding.
    mutating func apply(
        noteArea: ArraySlice<UInt8>, describedAs label: String, budget: inout NoteBudget
    ) throws(ImageError) -> Int {
        try budget.spend(bytes: noteArea.count)
        let area = ByteReader(Array(noteArea))
        var position: UInt64 = 0
        var count = 0
        let headerSize: UInt64 = 12
        while position + headerSize <= UInt64(area.count) {
            guard let nameSize = area.u32(position), let descriptorSize = area.u32(position + 4),
                let type = area.u32(position + 8)
            else { throw .truncatedNote(label) }
            // 32-bit sizes in 64-bit arithmetic: none of these sums can overflow.
            let nameStart = position + headerSize
            let descriptorStart = alignUp4(nameStart + UInt64(nameSize))
            let descriptorEnd = descriptorStart + UInt64(descriptorSize)
            guard let name = area.slice(offset: nameStart, length: UInt64(nameSize)),
                let descriptor = area.slice(offset: descriptorStart, length: UInt64(descriptorSize))
            else { throw .truncatedNote(label) }
            position = alignUp4(descriptorEnd)
            try budget.spendNote()
            guard cString(name) == "Xen" else { continue }
            try apply(XenNote(type: type, descriptor: Array(descriptor)))
            count += 1
        }
        return count
    }

    /// Stores one "Xen" note in its typed field.
    mutating func apply(_ note: XenNote) throws(ImageError) {
        guard let type = XenNoteType(rawValue: note.type), type != .info else {
            unknown.append(note)
            return
        }
        let bytes = note.descriptor[...]
        switch type {
        case .info:
            unknown.append(note)
        case .entry: entry = try numeric(note)
        case .hypercallPage: hypercallPage = try numeric(note)
        case .virtBase: virtBase = try numeric(note)
        case .paddrOffset: paddrOffset = try numeric(note)
        case .hvStartLow: hvStartLow = try numeric(note)
        case .suspendCancel: suspendCancel = try numeric(note)
        case .initP2M: initP2M = try numeric(note)
        case .modStartPFN: modStartPFN = try numeric(note)
        case .phys32Entry: phys32Entry = try numeric(note)
        case .xenVersion: xenVersion = cString(bytes)
        case .guestOS: guestOS = cString(bytes)
        case .guestVersion: guestVersion = cString(bytes)
        case .loader: loader = cString(bytes)
        case .paeMode: paeMode = cString(bytes)
        case .bsdSymtab: bsdSymtab = cString(bytes)
        case .features: features = XenFeatures(parsing: cString(bytes))
        case .l1MFNValid:
            guard !bytes.isEmpty, bytes.count % 16 == 0 else {
                throw .malformedNote(
                    type: note.type,
                    reason: "value is \(bytes.count) bytes; expected 64-bit mask/value pairs")
            }
            l1MFNValid = stride(from: bytes.startIndex, to: bytes.endIndex, by: 16).map {
                L1MFNValidPair(
                    mask: littleEndian(bytes[$0..<($0 + 8)]),
                    value: littleEndian(bytes[($0 + 8)..<($0 + 16)]))
            }
        case .supportedFeatures:
            guard !bytes.isEmpty, bytes.count % 4 == 0 else {
                throw .malformedNote(
                    type: note.type,
                    reason: "value is \(bytes.count) bytes; expected 32-bit bitmap words")
            }
            supportedFeatures = stride(from: bytes.startIndex, to: bytes.endIndex, by: 4).map {
                UInt32(truncatingIfNeeded: littleEndian(bytes[$0..<($0 + 4)]))
            }
        }
    }

    /// A numeric note's value. libelf reads 1, 2, 4 or 8 bytes and silently takes 0
    /// for any other size; a typed error is clearer than a zero entry point.
    private func numeric(_ note: XenNote) throws(ImageError) -> UInt64 {
        switch note.descriptor.count {
        case 1, 2, 4, 8:
            return littleEndian(note.descriptor[...])
        default:
            throw .malformedNote(
                type: note.type,
                reason: "numeric value is \(note.descriptor.count) bytes; expected 1, 2, 4 or 8")
        }
    }

    /// Applies the legacy `__xen_guest` string: comma-separated `NAME=VALUE` pairs
    /// (libelf-dominfo.c `elf_xen_parse_guest_info`). Numbers follow `strtoull(…, 0)`:
    /// `0x` hex, leading `0` octal, else decimal. HYPERCALL_PAGE is a page number
    /// relative to VIRT_BASE and becomes a virtual address; unknown names are ignored.
    mutating func applyLegacyGuestInfo(_ text: String) throws(ImageError) {
        var hypercallPageNumber: UInt64?
        for item in text.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts.first ?? "")
            let value = parts.dropFirst().first.map(String.init) ?? ""
            switch name {
            case "LOADER": loader = value
            case "GUEST_OS": guestOS = value
            case "GUEST_VER": guestVersion = value
            case "XEN_VER": xenVersion = value
            case "PAE": paeMode = value
            case "BSD_SYMTAB": bsdSymtab = "yes"
            case "FEATURES": features = XenFeatures(parsing: value)
            case "VIRT_BASE": virtBase = try legacyNumber(name, value)
            case "VIRT_ENTRY": entry = try legacyNumber(name, value)
            case "ELF_PADDR_OFFSET": paddrOffset = try legacyNumber(name, value)
            case "HYPERCALL_PAGE": hypercallPageNumber = try legacyNumber(name, value)
            default: continue
            }
        }
        if let page = hypercallPageNumber {
            let (shifted, lost) = page.multipliedReportingOverflow(by: KernelLayout.pageSize)
            let (address, wrapped) = shifted.addingReportingOverflow(virtBase ?? 0)
            guard !lost, !wrapped else {
                throw .malformedGuestInfo("HYPERCALL_PAGE \(hex(page)) is beyond the address space")
            }
            hypercallPage = address
        }
    }

    private func legacyNumber(_ name: String, _ value: String) throws(ImageError) -> UInt64 {
        guard let number = parseCNumber(value) else {
            throw .malformedGuestInfo("\(name) value \(quoted(value)) is not a number")
        }
        return number
    }
}

/// Bounds the work and memory note parsing may take. Segments and sections may all
/// point at the same bytes, so without a bound a small file could make the parser
/// scan, and keep copies of, the same notes tens of thousands of times.
struct NoteBudget {
    /// Notes examined across all areas: libelf's `ELF_MAX_TOTAL_NOTE_COUNT`.
    static let maxNotes = 65536
    /// Note-area bytes scanned across all areas; Debian's kernel has about 500.
    static let maxBytes = 16 << 20

    private(set) var notes = 0
    private(set) var bytes = 0

    mutating func spend(bytes count: Int) throws(ImageError) {
        guard count <= Self.maxBytes - bytes else {
            throw .tooManyNotes("ELF note areas exceed \(Self.maxBytes >> 20) MiB in total")
        }
        bytes += count
    }

    mutating func spendNote() throws(ImageError) {
        guard notes < Self.maxNotes else {
            throw .tooManyNotes("more than \(Self.maxNotes) ELF notes")
        }
        notes += 1
    }
}

/// Parses an unsigned C integer literal as `strtoull(text, NULL, 0)` would accept it
/// whole: `0x`/`0X` hex, leading-`0` octal, otherwise decimal. `nil` on anything else
/// or on overflow.
func parseCNumber(_ text: String) -> UInt64? {
    let trimmed = text.drop(while: { $0 == " " || $0 == "\t" })
    if trimmed.hasPrefix("0x") || trimmed.hasPrefix("0X") {
        return UInt64(trimmed.dropFirst(2), radix: 16)
    }
    if trimmed.count > 1, trimmed.hasPrefix("0") {
        return UInt64(trimmed.dropFirst(), radix: 8)
    }
    return UInt64(trimmed, radix: 10)
}

private func alignUp4(_ value: UInt64) -> UInt64 {
    (value + 3) & ~3
}
