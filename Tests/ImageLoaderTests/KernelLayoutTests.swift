// Kernel layout: placement by p_paddr, libelf's defaults, and its sanity checks.

import Testing

@testable import ImageLoader

/// Loads a Linux-like image whose notes are `linuxNotes()` changed by `edit`.
private func loadLinuxLike(
    _ edit: (inout [TestNote]) -> Void = { _ in }, builder change: (inout ELFBuilder) -> Void = { _ in }
) throws(ImageError) -> LoadedKernel {
    var notes = linuxNotes()
    edit(&notes)
    var builder = ELFBuilder.linuxLike(notes: notes)
    change(&builder)
    return try KernelImage.load(bytes: builder.build())
}

private func removing(_ type: XenNoteType) -> (inout [TestNote]) -> Void {
    { notes in notes.removeAll { $0.type == type.rawValue } }
}

private func setting(_ note: TestNote) -> (inout [TestNote]) -> Void {
    { notes in
        notes.removeAll { $0.type == note.type }
        notes.append(note)
    }
}

@Suite("Kernel layout")
struct KernelLayoutTests {
    @Test("Linux-like kernel: segments placed by p_paddr + VIRT_BASE, not p_vaddr")
    func linuxLayout() throws {
        let kernel = try loadLinuxLike()
        let layout = kernel.layout
        #expect(kernel.format == .elf)
        #expect(layout.virtBase == 0xffff_ffff_8000_0000)
        #expect(layout.paddrOffset == 0)
        #expect(layout.virtOffset == 0xffff_ffff_8000_0000)
        #expect(layout.kernelStart == 0xffff_ffff_8100_0000)
        #expect(layout.imageEnd == 0xffff_ffff_8100_3800)
        #expect(layout.kernelEnd == 0xffff_ffff_8100_4000)
        #expect(layout.entry == 0xffff_ffff_8100_0100)
        #expect(layout.hypercallPage == nil)
        #expect(layout.p2mBase == 0x80_0000_0000)
        #expect(layout.firstPFN == 0x1000)
        #expect(layout.pageCount == 4)
        #expect(layout.pfn(of: 0xffff_ffff_8100_2fff) == 0x1002)
        #expect(layout.pfn(of: 0x1000) == nil)
        #expect(layout.segments.count == 2)
        let percpu = layout.segments[1]
        #expect(percpu.programHeaderIndex == 1)
        #expect(percpu.elfVirtualAddress == 0)
        #expect(percpu.physicalAddress == 0x100_2000)
        #expect(percpu.virtualAddress == 0xffff_ffff_8100_2000)
        #expect(percpu.fileSize == 0x800)
        #expect(percpu.memorySize == 0x1800)
        #expect(kernel.contents(of: percpu) == pattern(0x800, seed: 2)[...])
        #expect(kernel.contents(of: layout.segments[0]) == pattern(0x2000, seed: 1)[...])
    }

    @Test("VIRT_BASE absent: 0, as for small PV kernels; entry falls back to e_entry")
    func defaults() throws {
        let kernel = try loadLinuxLike(
            { notes in
                notes.removeAll { [3, 4, 1, 15].contains($0.type) }
            },
            builder: { $0.entry = 0x100_0040 })
        #expect(kernel.layout.virtBase == 0)
        #expect(kernel.layout.paddrOffset == 0)
        #expect(kernel.layout.kernelStart == 0x100_0000)
        #expect(kernel.layout.entry == 0x100_0040)
        #expect(kernel.layout.firstPFN == 0x1000)
    }

    @Test("Explicit PADDR_OFFSET: older kernels with virtual addresses in p_paddr")
    func explicitPaddrOffset() throws {
        let kernel = try loadLinuxLike(
            setting(.number(.paddrOffset, 0xffff_ffff_8000_0000)),
            builder: { builder in
                builder.segments[0].physicalAddress = 0xffff_ffff_8100_0000
                builder.segments[1].physicalAddress = 0xffff_ffff_8100_2000
            })
        #expect(kernel.layout.virtOffset == 0)
        #expect(kernel.layout.kernelStart == 0xffff_ffff_8100_0000)
        #expect(kernel.layout.segments[1].virtualAddress == 0xffff_ffff_8100_2000)
    }

    @Test("PADDR_OFFSET without VIRT_BASE")
    func paddrOffsetWithoutVirtBase() {
        expectError(.paddrOffsetWithoutVirtBase) { () throws(ImageError) in
            try loadLinuxLike(removing(.virtBase))
        }
    }

    @Test("XEN_VERSION must start with xen-3.0")
    func xenVersion() throws {
        expectError(.unsupportedXenVersion("xen-2.0")) { () throws(ImageError) in
            try loadLinuxLike(setting(.string(.xenVersion, "xen-2.0")))
        }
        expectError(.unsupportedXenVersion(nil)) { () throws(ImageError) in
            try loadLinuxLike(removing(.xenVersion))
        }
        #expect(
            ImageError.unsupportedXenVersion("xen-2.0").description
                == "kernel is not built for Xen 3.0 (XEN_VERSION \"xen-2.0\")")
        _ = try loadLinuxLike(setting(.string(.xenVersion, "xen-3.0-x86_64")))
    }

    @Test("GUEST_OS linux or LOADER generic, no stricter than Xen")
    func guestChecks() throws {
        // A non-Linux kernel built for the generic loader is fine.
        let netbsd = try loadLinuxLike(setting(.string(.guestOS, "NetBSD")))
        #expect(netbsd.notes.guestOS == "NetBSD")
        // Linux without a LOADER note is fine.
        _ = try loadLinuxLike(removing(.loader))
        expectError(.unsupportedGuest(guestOS: "NetBSD", loader: nil)) { () throws(ImageError) in
            try loadLinuxLike { notes in
                notes.removeAll { $0.type == XenNoteType.loader.rawValue || $0.type == XenNoteType.guestOS.rawValue }
                notes.append(.string(.guestOS, "NetBSD"))
            }
        }
        expectError(.unsupportedGuest(guestOS: nil, loader: "custom")) { () throws(ImageError) in
            try loadLinuxLike { notes in
                notes.removeAll { $0.type == XenNoteType.loader.rawValue || $0.type == XenNoteType.guestOS.rawValue }
                notes.append(.string(.loader, "custom"))
            }
        }
    }

    @Test("Entry point outside [kstart, kend)")
    func entryOutside() {
        expectError(
            .entryOutsideKernel(entry: 0xffff_ffff_80ff_f000, start: 0xffff_ffff_8100_0000, end: 0xffff_ffff_8100_3800)
        ) {
            () throws(ImageError) in try loadLinuxLike(setting(.number(.entry, 0xffff_ffff_80ff_f000)))
        }
        expectError(
            .entryOutsideKernel(entry: 0xffff_ffff_8100_3800, start: 0xffff_ffff_8100_0000, end: 0xffff_ffff_8100_3800)
        ) {
            () throws(ImageError) in try loadLinuxLike(setting(.number(.entry, 0xffff_ffff_8100_3800)))
        }
        // Without an ENTRY note, e_entry (a physical address here) is checked the same way.
        expectError(.entryOutsideKernel(entry: 0x100_0000, start: 0xffff_ffff_8100_0000, end: 0xffff_ffff_8100_3800)) {
            () throws(ImageError) in try loadLinuxLike(removing(.entry))
        }
    }

    @Test("Hypercall page inside the kernel, or an error")
    func hypercallPage() throws {
        let kernel = try loadLinuxLike(setting(.number(.hypercallPage, 0xffff_ffff_8100_1000)))
        #expect(kernel.layout.hypercallPage == 0xffff_ffff_8100_1000)
        #expect(kernel.layout.pfn(of: 0xffff_ffff_8100_1000) == 0x1001)
        expectError(
            .hypercallPageOutsideKernel(
                address: 0xffff_ffff_8200_0000, start: 0xffff_ffff_8100_0000, end: 0xffff_ffff_8100_3800)
        ) {
            () throws(ImageError) in try loadLinuxLike(setting(.number(.hypercallPage, 0xffff_ffff_8200_0000)))
        }
    }

    @Test("INIT_P2M inside the kernel")
    func p2mInside() {
        expectError(
            .p2mInsideKernel(address: 0xffff_ffff_8100_2000, start: 0xffff_ffff_8100_0000, end: 0xffff_ffff_8100_3800)
        ) {
            () throws(ImageError) in try loadLinuxLike(setting(.number(.initP2M, 0xffff_ffff_8100_2000)))
        }
    }

    @Test("Alignment and ordering of VIRT_BASE and the kernel start")
    func alignment() {
        expectError(.virtBaseNotPageAligned(0xffff_ffff_8000_0800)) { () throws(ImageError) in
            try loadLinuxLike(setting(.number(.virtBase, 0xffff_ffff_8000_0800)))
        }
        expectError(.kernelStartNotPageAligned(0xffff_ffff_8100_0200)) { () throws(ImageError) in
            try loadLinuxLike(builder: { $0.segments[0].physicalAddress = 0x100_0200 })
        }
        // VIRT_BASE above the kernel: only possible when PADDR_OFFSET shifts it down.
        expectError(.virtBaseAboveKernel(virtBase: 0xffff_ffff_8000_0000, kernelStart: 0xffff_ffff_7f00_0000)) {
            () throws(ImageError) in try loadLinuxLike(setting(.number(.paddrOffset, 0x200_0000)))
        }
    }

    @Test("Kernel range wrapping past 2^64")
    func rangeWraps() {
        // p_paddr + VIRT_BASE wraps for the second segment only.
        expectError(.kernelRangeInvalid(start: 0xffff_ffff_8100_0000, end: 0x1800)) { () throws(ImageError) in
            try loadLinuxLike(builder: { $0.segments[1].physicalAddress = 0x8000_0000 })
        }
    }

    @Test("Required features: unknown names and dom0 are refused")
    func requiredFeatures() {
        expectError(.unknownRequiredFeature("frobnicate")) { () throws(ImageError) in
            try loadLinuxLike(setting(.string(.features, "!writable_page_tables|!frobnicate")))
        }
        expectError(.requiresDom0) { () throws(ImageError) in
            try loadLinuxLike(setting(.string(.features, "!dom0")))
        }
    }

    @Test("BSD_SYMTAB=yes is refused; no loadable segments is an error")
    func otherRefusals() {
        expectError(.bsdSymtabUnsupported) { () throws(ImageError) in
            try loadLinuxLike(setting(.string(.bsdSymtab, "yes")))
        }
        expectError(.noLoadableSegments) { () throws(ImageError) in
            try loadLinuxLike(builder: { builder in
                for index in builder.segments.indices { builder.segments[index].flags = 0 }
            })
        }
    }
}

@Suite("Error messages")
struct ErrorMessageTests {
    @Test("File-derived strings cannot break the one-line message")
    func controlCharactersEscaped() {
        let error = ImageError.unsupportedGuest(guestOS: "evil\nFAKE: ok\u{1b}[2J", loader: nil)
        #expect(error.description
            == "kernel is neither for Linux nor for the generic loader "
            + "(GUEST_OS \"evil\\u{a}FAKE: ok\\u{1b}[2J\", LOADER absent)")
        let long = ImageError.unsupportedXenVersion(String(repeating: "x", count: 500))
        #expect(long.description.count < 120)
        #expect(ImageError.unreadable(path: "/a\nb", reason: "Permission denied").description
            == "cannot read kernel file /a\\u{a}b: Permission denied")
    }
}
