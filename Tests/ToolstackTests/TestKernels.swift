// Synthetic PV kernels for the Toolstack tests: a trimmed copy of the ELF64 builder in
// Tests/ImageLoaderTests/TestImages.swift (test targets cannot share code).

import Foundation
import Hypervisor
import ImageLoader
import Synchronization
import Testing

/// One Xen ELF note: owner "Xen", type, descriptor.
struct TestNote {
    var type: UInt32
    var descriptor: [UInt8]

    static func number(_ type: XenNoteType, _ value: UInt64) -> TestNote {
        TestNote(type: type.rawValue, descriptor: littleEndianBytes(value, count: 8))
    }

    static func string(_ type: XenNoteType, _ value: String, terminated: Bool = true) -> TestNote {
        TestNote(type: type.rawValue, descriptor: Array(value.utf8) + (terminated ? [0] : []))
    }

    /// `Elf64_Nhdr` + name + descriptor, each padded to 4 bytes.
    var encoded: [UInt8] {
        let name = Array("Xen".utf8) + [0]
        return littleEndianBytes(UInt64(name.count), count: 4) + littleEndianBytes(UInt64(descriptor.count), count: 4)
            + littleEndianBytes(UInt64(type), count: 4) + padded4(name) + padded4(descriptor)
    }
}

/// The notes of Debian's Linux 6.1 (pv-boot-notes.md §1), with `entry` and optional extras.
func linuxNotes(entry: UInt64 = 0xffff_ffff_8100_0100, initP2M: Bool = true, modStartPFN: Bool = true,
                hypercallPage: UInt64? = nil, features: String = "!writable_page_tables|pae_pgdir_above_4gb") -> [TestNote] {
    var notes: [TestNote] = [
        .string(.guestOS, "linux"),
        .string(.guestVersion, "2.6"),
        .string(.xenVersion, "xen-3.0"),
        .number(.virtBase, 0xffff_ffff_8000_0000),
        .number(.paddrOffset, 0),
        .number(.entry, entry),
        .string(.features, features, terminated: false),
        .string(.loader, "generic"),
    ]
    if initP2M { notes.append(.number(.initP2M, 0x80_0000_0000)) }
    if modStartPFN { notes.append(.number(.modStartPFN, 1)) }
    if let hypercallPage { notes.append(.number(.hypercallPage, hypercallPage)) }
    return notes
}

/// Builds small little-endian x86-64 ELF64 executables: header, program headers, segment
/// contents, then a PT_NOTE segment and a `.note.Xen` section over the notes.
struct ELFBuilder {
    struct Segment {
        var flags: UInt32 = 5
        var physicalAddress: UInt64
        var virtualAddress: UInt64
        var contents: [UInt8]
        var memorySize: UInt64
    }

    var entry: UInt64 = 0x100_0000
    var segments: [Segment]
    var notes: [TestNote]

    /// A Linux-like kernel: text at paddr 16 MiB and a `.data..percpu`-style segment
    /// whose p_vaddr is 0 and whose memory size exceeds its file size.
    static func linuxLike(notes: [TestNote] = linuxNotes()) -> ELFBuilder {
        ELFBuilder(segments: [
            Segment(physicalAddress: 0x100_0000, virtualAddress: 0xffff_ffff_8100_0000, contents: pattern(0x2000, seed: 1), memorySize: 0x2000),
            Segment(flags: 6, physicalAddress: 0x100_2000, virtualAddress: 0, contents: pattern(0x800, seed: 2), memorySize: 0x1800),
        ], notes: notes)
    }

    /// Debian 6.1's segments (pv-boot-notes.md §1) with one page of file contents each.
    static func debianLike(notes: [TestNote]) -> ELFBuilder {
        ELFBuilder(segments: [
            Segment(physicalAddress: 0x100_0000, virtualAddress: 0xffff_ffff_8100_0000, contents: pattern(0x1000, seed: 1), memorySize: 0x18e_6498),
            Segment(flags: 6, physicalAddress: 0x2a0_0000, virtualAddress: 0xffff_ffff_82a0_0000, contents: pattern(0x1000, seed: 2), memorySize: 0x64_2000),
            Segment(flags: 6, physicalAddress: 0x304_2000, virtualAddress: 0, contents: pattern(0x1000, seed: 3), memorySize: 0x3_5000),
            Segment(flags: 7, physicalAddress: 0x307_7000, virtualAddress: 0xffff_ffff_8307_7000, contents: pattern(0x1000, seed: 4), memorySize: 0x198_9000),
        ], notes: notes)
    }

    func build() -> [UInt8] {
        let noteArea = notes.flatMap(\.encoded)
        let programHeaderCount = segments.count + 1
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
            programHeaders.append(Self.programHeader(type: 1, flags: segment.flags, offset: UInt64(offset),
                                                     virtualAddress: segment.virtualAddress, physicalAddress: segment.physicalAddress,
                                                     fileSize: UInt64(segment.contents.count), memorySize: segment.memorySize))
        }
        let noteOffset = appendBlob(noteArea)
        programHeaders.append(Self.programHeader(type: 4, flags: 4, offset: UInt64(noteOffset), virtualAddress: 0, physicalAddress: 0,
                                                 fileSize: UInt64(noteArea.count), memorySize: UInt64(noteArea.count)))
        let names: [UInt8] = [0] + Array(".note.Xen".utf8) + [0] + Array(".shstrtab".utf8) + [0]
        let namesOffset = appendBlob(names)
        while file.count % 8 != 0 { file.append(0) }
        let sectionHeaderOffset = file.count
        let sections: [(name: Int, type: UInt32, offset: Int, size: Int)] = [
            (0, 0, 0, 0), (1, 7, noteOffset, noteArea.count), (11, 3, namesOffset, names.count),
        ]
        for section in sections {
            file += littleEndianBytes(UInt64(section.name), count: 4) + littleEndianBytes(UInt64(section.type), count: 4)
            file += littleEndianBytes(0, count: 16)
            file += littleEndianBytes(UInt64(section.offset), count: 8) + littleEndianBytes(UInt64(section.size), count: 8)
            file += littleEndianBytes(0, count: 8) + littleEndianBytes(section.type == 7 ? 4 : 1, count: 8) + littleEndianBytes(0, count: 8)
        }
        var header: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        header += littleEndianBytes(2, count: 2) + littleEndianBytes(62, count: 2) + littleEndianBytes(1, count: 4)
        header += littleEndianBytes(entry, count: 8) + littleEndianBytes(64, count: 8) + littleEndianBytes(UInt64(sectionHeaderOffset), count: 8)
        header += littleEndianBytes(0, count: 4) + littleEndianBytes(64, count: 2) + littleEndianBytes(56, count: 2)
        header += littleEndianBytes(UInt64(programHeaderCount), count: 2) + littleEndianBytes(64, count: 2)
        header += littleEndianBytes(UInt64(sections.count), count: 2) + littleEndianBytes(2, count: 2)
        file.replaceSubrange(0..<64, with: header)
        for (index, programHeader) in programHeaders.enumerated() {
            file.replaceSubrange((64 + index * 56)..<(64 + (index + 1) * 56), with: programHeader)
        }
        return file
    }

    private static func programHeader(type: UInt32, flags: UInt32, offset: UInt64, virtualAddress: UInt64, physicalAddress: UInt64,
                                      fileSize: UInt64, memorySize: UInt64) -> [UInt8] {
        littleEndianBytes(UInt64(type), count: 4) + littleEndianBytes(UInt64(flags), count: 4)
            + littleEndianBytes(offset, count: 8) + littleEndianBytes(virtualAddress, count: 8)
            + littleEndianBytes(physicalAddress, count: 8) + littleEndianBytes(fileSize, count: 8)
            + littleEndianBytes(memorySize, count: 8) + littleEndianBytes(0x1000, count: 8)
    }
}

func littleEndianBytes(_ value: UInt64, count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

func padded4(_ bytes: [UInt8]) -> [UInt8] {
    bytes + [UInt8](repeating: 0, count: (4 - bytes.count % 4) % 4)
}

/// Deterministic non-trivial bytes, so copies can be checked.
func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &* 7) }
}

/// A directory under the system temporary directory, removed when the value goes away.
final class TemporaryDirectory {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("domus-toolstack-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    /// Writes `bytes` to `name` and returns the path.
    func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = url.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}

/// A host clock that stands still.
final class StillClock: HostClock {
    func monotonicNanoseconds() -> UInt64 { 1_000_000 }
    func wallClock() -> (seconds: UInt64, nanoseconds: UInt32) { (1_700_000_000, 0) }
    func guestTSC() -> UInt64 { 0 }
    let tscHz: UInt64 = 2_000_000_000
}
