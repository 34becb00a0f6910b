// ImageLoader layer: the one error type every parser in this target throws.

/// Why a kernel image could not be loaded.
///
/// Kernel images are user input and may be hostile, so every malformed case ends here
/// instead of trapping. `description` is a one-line message fit for the CLI to print
/// before exiting with status 2. Cases mirror the places where Xen's own loaders fail
/// (tools/libs/guest/xg_dom_bzimageloader.c, xg_dom_elfloader.c,
/// xen/common/libelf/libelf-dominfo.c), with the reason spelled out.
public enum ImageError: Error, Equatable, Sendable, CustomStringConvertible {
    // MARK: Files

    /// The kernel file does not exist.
    case fileNotFound(path: String)
    /// The kernel path names a directory.
    case isDirectory(path: String)
    /// The kernel file exists but could not be read.
    case unreadable(path: String, reason: String)
    /// The kernel file is larger than the configured limit.
    case fileTooLarge(path: String, limit: Int)

    // MARK: Format detection

    /// The bytes are neither ELF64, bzImage, nor a gzip/XZ-compressed ELF.
    case unrecognizedFormat
    /// An ELF file that Domus cannot boot: wrong class, byte order, machine or type.
    case unsupportedELF(String)
    /// A compression format that Domus recognizes but does not decode.
    case unsupportedCompression(Compression, context: String)

    // MARK: ELF structure

    /// The file ends before a structure that it declares.
    case truncated(String)
    /// A header field has a value that makes the file unusable.
    case malformedELF(String)
    /// A program header's file range lies outside the file or overflows.
    case segmentOutsideFile(index: Int, offset: UInt64, size: UInt64, fileSize: Int)
    /// A loadable segment's file size exceeds its memory size.
    case segmentFileSizeExceedsMemorySize(index: Int, fileSize: UInt64, memorySize: UInt64)
    /// A segment's address range wraps around the 64-bit address space.
    case segmentAddressOverflow(index: Int, address: UInt64, size: UInt64)
    /// A section's file range lies outside the file or overflows.
    case sectionOutsideFile(index: Int, offset: UInt64, size: UInt64, fileSize: Int)
    /// No PT_LOAD segment with any of R/W/X set.
    case noLoadableSegments

    // MARK: Xen notes

    /// Neither PT_NOTE/SHT_NOTE "Xen" notes nor a `__xen_guest` section.
    case noXenNotes
    /// A note header or payload runs past the end of its segment or section.
    case truncatedNote(String)
    /// More notes, or note bytes, than any kernel has (see `NoteBudget`).
    case tooManyNotes(String)
    /// A Xen note whose value has a size or content that cannot be interpreted.
    case malformedNote(type: UInt32, reason: String)
    /// A value in the legacy `__xen_guest` string that cannot be parsed.
    case malformedGuestInfo(String)

    // MARK: Layout checks (libelf-dominfo.c elf_xen_note_check, elf_xen_addr_calc_check)

    /// Neither GUEST_OS starts with "linux" nor LOADER with "generic".
    case unsupportedGuest(guestOS: String?, loader: String?)
    /// XEN_VERSION is missing or does not start with "xen-3.0".
    case unsupportedXenVersion(String?)
    /// PADDR_OFFSET is given without VIRT_BASE.
    case paddrOffsetWithoutVirtBase
    /// VIRT_BASE is not page aligned.
    case virtBaseNotPageAligned(UInt64)
    /// The kernel's start address is not page aligned.
    case kernelStartNotPageAligned(UInt64)
    /// The kernel's virtual range is empty, inverted or wraps around.
    case kernelRangeInvalid(start: UInt64, end: UInt64)
    /// VIRT_BASE lies above the kernel's first byte.
    case virtBaseAboveKernel(virtBase: UInt64, kernelStart: UInt64)
    /// The entry point is outside the loaded kernel.
    case entryOutsideKernel(entry: UInt64, start: UInt64, end: UInt64)
    /// The hypercall page is outside the loaded kernel.
    case hypercallPageOutsideKernel(address: UInt64, start: UInt64, end: UInt64)
    /// INIT_P2M points into the loaded kernel.
    case p2mInsideKernel(address: UInt64, start: UInt64, end: UInt64)
    /// FEATURES requires a feature that Xen does not know.
    case unknownRequiredFeature(String)
    /// FEATURES requires dom0 (XENFEAT_dom0); Domus boots only unprivileged guests.
    case requiresDom0
    /// BSD_SYMTAB asks for the symbol table to be loaded after the kernel.
    case bsdSymtabUnsupported

    // MARK: bzImage and compression

    /// The bzImage boot protocol is older than 2.08, which has no payload fields.
    case bzImageProtocolTooOld(UInt16)
    /// The bzImage payload range lies outside the file.
    case bzImagePayloadOutsideFile(offset: UInt64, length: UInt64, fileSize: Int)
    /// The bzImage payload starts with no known compression magic.
    case bzImageUnknownPayload
    /// A payload or compressed file decompressed to something that is not ELF.
    case payloadNotELF(String)
    /// The compressed stream ends before its end marker.
    case truncatedCompressedData(Compression)
    /// The compressed stream is corrupt.
    case corruptCompressedData(Compression, String)
    /// Decompressing would exceed the configured output limit.
    case decompressedSizeExceedsLimit(Compression, limit: Int)
    /// The decompressor could not be set up (out of memory or library error).
    case decompressorFailure(Compression, String)

    /// One line: control characters from file-derived strings (note values, section
    /// names) or paths are escaped, so a hostile image cannot forge terminal output.
    public var description: String {
        singleLine(message)
    }

    private var message: String {
        switch self {
        case .fileNotFound(let path):
            return "kernel file \(path) does not exist"
        case .isDirectory(let path):
            return "kernel path \(path) is a directory, not a file"
        case .unreadable(let path, let reason):
            return "cannot read kernel file \(path): \(reason)"
        case .fileTooLarge(let path, let limit):
            return "kernel file \(path) is larger than the \(mebibytes(limit)) limit"
        case .unrecognizedFormat:
            return "not an ELF64 or bzImage kernel"
        case .unsupportedELF(let reason):
            return "unsupported ELF kernel: \(reason)"
        case .unsupportedCompression(let compression, let context):
            return "\(context) is \(compression.name)-compressed, which Domus does not support"
        case .truncated(let what):
            return "truncated kernel image: \(what)"
        case .malformedELF(let reason):
            return "malformed ELF kernel: \(reason)"
        case .segmentOutsideFile(let index, let offset, let size, let fileSize):
            return "ELF segment \(index) (file offset \(hex(offset)), size \(hex(size))) "
                + "lies outside the \(hex(UInt64(fileSize)))-byte file"
        case .segmentFileSizeExceedsMemorySize(let index, let fileSize, let memorySize):
            return "ELF segment \(index) has file size \(hex(fileSize)) larger than "
                + "its memory size \(hex(memorySize))"
        case .segmentAddressOverflow(let index, let address, let size):
            return "ELF segment \(index) at \(hex(address)) with size \(hex(size)) "
                + "wraps around the address space"
        case .sectionOutsideFile(let index, let offset, let size, let fileSize):
            return "ELF section \(index) (file offset \(hex(offset)), size \(hex(size))) "
                + "lies outside the \(hex(UInt64(fileSize)))-byte file"
        case .noLoadableSegments:
            return "ELF kernel has no loadable (PT_LOAD) segments"
        case .noXenNotes:
            return "no Xen notes (__xen_guest / .note.Xen): not a Xen PV kernel"
        case .truncatedNote(let what):
            return "truncated ELF note in \(what)"
        case .tooManyNotes(let what):
            return "implausible kernel image: \(what)"
        case .malformedNote(let type, let reason):
            return "malformed Xen note \(XenNoteType.name(of: type)): \(reason)"
        case .malformedGuestInfo(let reason):
            return "malformed __xen_guest section: \(reason)"
        case .unsupportedGuest(let guestOS, let loader):
            return "kernel is neither for Linux nor for the generic loader "
                + "(GUEST_OS \(quoted(guestOS)), LOADER \(quoted(loader)))"
        case .unsupportedXenVersion(let version):
            return "kernel is not built for Xen 3.0 (XEN_VERSION \(quoted(version)))"
        case .paddrOffsetWithoutVirtBase:
            return "Xen notes set PADDR_OFFSET but not VIRT_BASE"
        case .virtBaseNotPageAligned(let base):
            return "VIRT_BASE \(hex(base)) is not page aligned"
        case .kernelStartNotPageAligned(let start):
            return "kernel start address \(hex(start)) is not page aligned"
        case .kernelRangeInvalid(let start, let end):
            return "kernel virtual range \(hex(start))-\(hex(end)) is empty or wraps around"
        case .virtBaseAboveKernel(let virtBase, let kernelStart):
            return "VIRT_BASE \(hex(virtBase)) lies above the kernel start \(hex(kernelStart))"
        case .entryOutsideKernel(let entry, let start, let end):
            return "entry point \(hex(entry)) is outside the kernel image "
                + "\(hex(start))-\(hex(end))"
        case .hypercallPageOutsideKernel(let address, let start, let end):
            return "hypercall page \(hex(address)) is outside the kernel image "
                + "\(hex(start))-\(hex(end))"
        case .p2mInsideKernel(let address, let start, let end):
            return "INIT_P2M address \(hex(address)) lies inside the kernel image "
                + "\(hex(start))-\(hex(end))"
        case .unknownRequiredFeature(let name):
            return "kernel requires unknown Xen feature \(quoted(name))"
        case .requiresDom0:
            return "kernel requires dom0 (FEATURES !dom0); Domus boots only unprivileged guests"
        case .bsdSymtabUnsupported:
            return "kernel asks for its symbol table to be loaded (BSD_SYMTAB), which Domus does not support"
        case .bzImageProtocolTooOld(let version):
            return "bzImage boot protocol \(version >> 8).\(twoDigits(version & 0xff)) "
                + "is older than 2.08, which Xen requires"
        case .bzImagePayloadOutsideFile(let offset, let length, let fileSize):
            return "bzImage payload (offset \(hex(offset)), length \(hex(length))) "
                + "lies outside the \(hex(UInt64(fileSize)))-byte file"
        case .bzImageUnknownPayload:
            return "bzImage payload has an unknown compression format"
        case .payloadNotELF(let what):
            return "\(what) does not contain an ELF kernel"
        case .truncatedCompressedData(let compression):
            return "\(compression.name) data is truncated"
        case .corruptCompressedData(let compression, let reason):
            return "\(compression.name) data is corrupt: \(reason)"
        case .decompressedSizeExceedsLimit(let compression, let limit):
            return "\(compression.name) data decompresses to more than the "
                + "\(mebibytes(limit)) limit"
        case .decompressorFailure(let compression, let reason):
            return "\(compression.name) decompressor failed: \(reason)"
        }
    }
}

/// `0x…` rendering used in messages.
func hex(_ value: UInt64) -> String {
    "0x" + String(value, radix: 16)
}

private func twoDigits(_ value: UInt16) -> String {
    value < 10 ? "0\(value)" : "\(value)"
}

/// A file-derived value in quotes, shortened to 64 characters; "absent" for `nil`.
func quoted(_ value: String?) -> String {
    guard let value else { return "absent" }
    let shown = value.count > 64 ? value.prefix(64) + "…" : Substring(value)
    return "\"\(shown)\""
}

/// `text` with control characters (newlines included) written as `\u{…}` escapes.
private func singleLine(_ text: String) -> String {
    var result = ""
    for scalar in text.unicodeScalars {
        if scalar.properties.generalCategory == .control {
            result += "\\u{" + String(scalar.value, radix: 16) + "}"
        } else {
            result.unicodeScalars.append(scalar)
        }
    }
    return result
}

private func mebibytes(_ bytes: Int) -> String {
    bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : "\(bytes)-byte"
}
