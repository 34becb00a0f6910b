// load(path:): file errors, and Debian's real Linux 6.1 kernel when one is available.

import Foundation
import Testing

@testable import ImageLoader

/// A fresh directory under the system temporary directory, removed by the caller.
private func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("domus-imageloader-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite("Kernel files")
struct KernelFileTests {
    @Test("A background load gives what load(path:) gives, errors included")
    func preload() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("vmlinuz").path
        let elf = ELFBuilder.linuxLike().build()
        try Data(makeBzImage(payload: try gzip(elf), uncompressedSize: 0)).write(to: URL(fileURLWithPath: path))

        let preload = KernelPreload(path: path, options: ImageLoadOptions())
        let kernel = try preload.wait()
        let direct = try KernelImage.load(path: path)
        #expect(kernel.format == .bzImage(payload: .gzip))
        #expect(kernel.elf.bytes == direct.elf.bytes && kernel.layout.entry == direct.layout.entry)
        #expect(preload.loadTime != nil)
        // A second wait returns the same kernel at once.
        #expect(try preload.wait().elf.bytes == elf)

        let missing = directory.appendingPathComponent("absent").path
        let failing = KernelPreload(path: missing, options: ImageLoadOptions())
        expectError(.fileNotFound(path: missing)) { () throws(ImageError) in try failing.wait() }
        let small = KernelPreload(path: path, options: ImageLoadOptions(maxDecompressedSize: elf.count - 1))
        expectError(.decompressedSizeExceedsLimit(.gzip, limit: elf.count - 1)) { () throws(ImageError) in try small.wait() }
    }

    @Test("Loading from a path; missing, directory and oversized files name the path")
    func fileErrors() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("vmlinuz").path
        let bytes = makeBzImage(payload: try gzip(ELFBuilder.linuxLike().build()), uncompressedSize: 0)
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let kernel = try KernelImage.load(path: path)
        #expect(kernel.format == .bzImage(payload: .gzip))

        let missing = directory.appendingPathComponent("absent").path
        expectError(.fileNotFound(path: missing)) { () throws(ImageError) in try KernelImage.load(path: missing) }
        #expect(ImageError.fileNotFound(path: missing).description == "kernel file \(missing) does not exist")
        expectError(.isDirectory(path: directory.path)) { () throws(ImageError) in
            try KernelImage.load(path: directory.path)
        }
        let small = ImageLoadOptions(maxFileSize: bytes.count - 1)
        expectError(.fileTooLarge(path: path, limit: bytes.count - 1)) { () throws(ImageError) in
            try KernelImage.load(path: path, options: small)
        }
        let exact = ImageLoadOptions(maxFileSize: bytes.count)
        #expect(try KernelImage.load(path: path, options: exact).format == .bzImage(payload: .gzip))
    }

    @Test("A character device is read only up to the limit")
    func endlessFile() {
        let options = ImageLoadOptions(maxFileSize: 1 << 16)
        expectError(.fileTooLarge(path: "/dev/zero", limit: 1 << 16)) { () throws(ImageError) in
            try KernelImage.load(path: "/dev/zero", options: options)
        }
    }
}

/// Where to find a real Debian kernel: `DOMUS_TEST_LINUX_KERNEL`, else the newest
/// `/boot/vmlinuz-*`. `nil` when there is none.
private let realKernelPath: String? = {
    if let path = ProcessInfo.processInfo.environment["DOMUS_TEST_LINUX_KERNEL"], !path.isEmpty {
        return path
    }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? []
    return names.filter { $0.hasPrefix("vmlinuz-") }.sorted().last.map { "/boot/" + $0 }
}()

@Suite("Debian Linux kernel")
struct RealKernelTests {
    /// Skipped, with this reason printed, on machines without a kernel image. To run it:
    /// `apt-get download linux-image-6.1.0-NN-amd64-unsigned`, `dpkg -x` it, and point
    /// DOMUS_TEST_LINUX_KERNEL at the extracted boot/vmlinuz-*.
    @Test(
        "Debian 6.1 vmlinuz loads with the notes and layout of pv-boot-notes.md",
        .enabled(
            if: realKernelPath != nil,
            "no Linux kernel: neither DOMUS_TEST_LINUX_KERNEL nor /boot/vmlinuz-* exists"))
    func debianKernel() throws {
        let path = try #require(realKernelPath)
        let kernel = try KernelImage.load(path: path)
        let notes = kernel.notes
        let layout = kernel.layout

        #expect(kernel.format == .bzImage(payload: .xz))
        #expect(notes.source == .programHeaderNotes)
        #expect(notes.guestOS == "linux")
        #expect(notes.xenVersion == "xen-3.0")
        #expect(notes.loader == "generic")
        #expect(notes.virtBase == 0xffff_ffff_8000_0000)
        #expect(notes.paddrOffset == 0)
        #expect(notes.initP2M == 0x80_0000_0000)
        #expect(notes.features == XenFeatures(parsing: "!writable_page_tables|pae_pgdir_above_4gb"))
        #expect(notes.features?.required == ["writable_page_tables"])
        #expect(notes.hypercallPage == nil)
        #expect(notes.modStartPFN == 1)
        #expect(notes.l1MFNValid == [L1MFNValidPair(mask: 1, value: 1)])
        #expect(notes.supportedFeatures?.first.map { $0 & 0x8801 == 0x8801 } == true)
        #expect(notes.hvStartLow == 0xffff_8000_0000_0000)

        #expect(layout.virtBase == 0xffff_ffff_8000_0000)
        #expect(layout.kernelStart == 0xffff_ffff_8100_0000)
        #expect(layout.firstPFN == 0x1000)
        #expect(layout.kernelEnd > layout.kernelStart)
        #expect(layout.kernelEnd % KernelLayout.pageSize == 0)
        #expect(layout.entry == notes.entry)
        #expect(layout.entry >= layout.kernelStart && layout.entry < layout.kernelEnd)
        #expect(layout.p2mBase == 0x80_0000_0000)
        for segment in layout.segments {
            #expect(segment.virtualAddress == segment.physicalAddress &+ 0xffff_ffff_8000_0000)
            #expect(kernel.contents(of: segment).count == Int(segment.fileSize))
        }
        // The .data..percpu segment: p_vaddr 0, placed by p_paddr.
        let percpu = try #require(layout.segments.first { $0.elfVirtualAddress == 0 })
        #expect(percpu.virtualAddress > layout.kernelStart)
    }
}
