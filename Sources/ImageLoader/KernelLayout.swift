// ImageLoader layer: where a PV kernel goes in the guest's initial virtual mapping.

/// The virtual layout of a PV kernel in the initial domain, computed and checked as
/// Xen's libelf does (xen/common/libelf/libelf-dominfo.c `elf_xen_note_check` and
/// `elf_xen_addr_calc_check`, libelf-loader.c `elf_parse_binary`/`elf_load_binary`)
/// and as the domain builder places it (tools/libs/guest/xg_dom_core.c
/// `xc_dom_alloc_segment`).
///
/// Everything in the initial mapping satisfies `va = virtBase + pfn * 4096`, so the
/// domain builder puts the byte at virtual address `va` into guest frame
/// `(va - virtBase) / 4096`; see `pfn(of:)`.
///
/// Segments are placed by `p_paddr`, not `p_vaddr`: a segment's virtual address is
/// `p_paddr + virtOffset` with `virtOffset = virtBase - paddrOffset`. Debian's Linux 6.1
/// has a `.data..percpu` segment whose `p_vaddr` is 0, so only `p_paddr` gives the
/// right place.
public struct KernelLayout: Equatable, Sendable {
    /// x86 page size; the unit of guest frames.
    public static let pageSize: UInt64 = 4096

    /// One loadable segment and where it goes.
    public struct Segment: Equatable, Sendable {
        /// Index in the ELF program header table.
        public let programHeaderIndex: Int
        /// Destination virtual address: `p_paddr + virtOffset`.
        public let virtualAddress: UInt64
        /// `p_paddr` as written in the ELF file.
        public let physicalAddress: UInt64
        /// `p_vaddr` as written in the ELF file (informational; not used for placement).
        public let elfVirtualAddress: UInt64
        /// `p_offset`: where the bytes start in the ELF file.
        public let fileOffset: UInt64
        /// `p_filesz`: bytes copied from the file.
        public let fileSize: UInt64
        /// `p_memsz`: bytes occupied in memory; the tail past `fileSize` is zeroed.
        public let memorySize: UInt64
        /// `p_flags` (PF_R 4, PF_W 2, PF_X 1).
        public let flags: UInt32
    }

    /// VIRT_BASE, 0 when the note is absent (small PV kernels).
    public let virtBase: UInt64
    /// PADDR_OFFSET after libelf's defaulting.
    public let paddrOffset: UInt64
    /// `virtBase - paddrOffset` (modulo 2^64): added to `p_paddr` to get a virtual address.
    public let virtOffset: UInt64
    /// First virtual address of the kernel (`virt_kstart`); page aligned.
    public let kernelStart: UInt64
    /// End of the loaded bytes (`virt_kend`), exclusive and not rounded.
    public let imageEnd: UInt64
    /// `imageEnd` rounded up to a page: end of the kernel's pages, exclusive.
    public let kernelEnd: UInt64
    /// Virtual entry point: the ENTRY note, else `e_entry`.
    public let entry: UInt64
    /// Virtual address of the hypercall page, if the kernel asks for one.
    public let hypercallPage: UInt64?
    /// INIT_P2M: virtual address for the initial p2m list, if given.
    public let p2mBase: UInt64?
    /// Loadable segments in program header order.
    public let segments: [Segment]

    /// Guest frame of the kernel's first page.
    public var firstPFN: UInt64 { (kernelStart - virtBase) / Self.pageSize }
    /// Number of pages from `kernelStart` to `kernelEnd`.
    public var pageCount: UInt64 { (kernelEnd - kernelStart) / Self.pageSize }

    /// The guest frame that holds virtual address `address` in the initial mapping,
    /// `nil` below `virtBase`.
    public func pfn(of address: UInt64) -> UInt64? {
        address >= virtBase ? (address - virtBase) / Self.pageSize : nil
    }

    /// Computes and checks the layout of `elf` described by `notes`.
    ///
    /// Checks, each a typed error:
    /// - GUEST_OS starts with "linux" or LOADER with "generic" (no stricter than Xen:
    ///   any non-Linux kernel for the generic loader passes);
    /// - XEN_VERSION starts with "xen-3.0";
    /// - FEATURES requires nothing unknown and not dom0 (xg_dom_elfloader.c rejects
    ///   `!dom0` for a domU);
    /// - PADDR_OFFSET is not given without VIRT_BASE;
    /// - VIRT_BASE and the kernel start are page aligned (the builder's segment
    ///   allocator requires it);
    /// - `virtBase <= kernelStart < imageEnd` without wrapping;
    /// - `kernelStart <= entry < imageEnd` (libelf allows `entry == imageEnd`, which
    ///   cannot be code; Domus rejects it);
    /// - the hypercall page lies in `[kernelStart, imageEnd)` (Domus writes it into the
    ///   loaded kernel; Xen checks only that the frame is the guest's);
    /// - INIT_P2M lies outside `[kernelStart, imageEnd)`;
    /// - BSD_SYMTAB is not requested (Domus does not load symbol tables).
    public init(elf: ELFFile, notes: XenNotes) throws(ImageError) {
        try Self.checkGuest(notes)

        if notes.paddrOffset != nil, notes.virtBase == nil {
            throw .paddrOffsetWithoutVirtBase
        }
        let virtBase = notes.virtBase ?? 0
        guard virtBase % Self.pageSize == 0 else { throw .virtBaseNotPageAligned(virtBase) }
        // Legacy __xen_guest kernels wrote VIRT_BASE into p_paddr, so there the default
        // offset is VIRT_BASE; with ELF notes it is 0.
        let paddrOffset = notes.paddrOffset ?? (notes.source == .legacyGuestSection ? virtBase : 0)
        let virtOffset = virtBase &- paddrOffset

        let loadable = elf.loadableSegments
        guard !loadable.isEmpty else { throw .noLoadableSegments }
        // ELFFile checked that p_paddr + p_memsz does not overflow.
        let physicalStart = loadable.map(\.header.physicalAddress).min() ?? 0
        let physicalEnd = loadable.map { $0.header.physicalAddress + $0.header.memorySize }.max() ?? 0

        let kernelStart = physicalStart &+ virtOffset
        let imageEnd = physicalEnd &+ virtOffset
        guard kernelStart < imageEnd else {
            throw .kernelRangeInvalid(start: kernelStart, end: imageEnd)
        }
        guard kernelStart % Self.pageSize == 0 else { throw .kernelStartNotPageAligned(kernelStart) }
        let (roundedEnd, overflow) = imageEnd.addingReportingOverflow(Self.pageSize - 1)
        guard !overflow else { throw .kernelRangeInvalid(start: kernelStart, end: imageEnd) }
        let kernelEnd = roundedEnd & ~(Self.pageSize - 1)
        guard virtBase <= kernelStart else {
            throw .virtBaseAboveKernel(virtBase: virtBase, kernelStart: kernelStart)
        }

        let entry = notes.entry ?? elf.header.entry
        guard entry >= kernelStart, entry < imageEnd else {
            throw .entryOutsideKernel(entry: entry, start: kernelStart, end: imageEnd)
        }
        if let page = notes.hypercallPage, page < kernelStart || page >= imageEnd {
            throw .hypercallPageOutsideKernel(address: page, start: kernelStart, end: imageEnd)
        }
        if let p2m = notes.initP2M, p2m >= kernelStart, p2m < imageEnd {
            throw .p2mInsideKernel(address: p2m, start: kernelStart, end: imageEnd)
        }

        self.virtBase = virtBase
        self.paddrOffset = paddrOffset
        self.virtOffset = virtOffset
        self.kernelStart = kernelStart
        self.imageEnd = imageEnd
        self.kernelEnd = kernelEnd
        self.entry = entry
        self.hypercallPage = notes.hypercallPage
        self.p2mBase = notes.initP2M
        // Every segment lies within [physicalStart, physicalEnd], which maps without
        // wrapping onto [kernelStart, imageEnd], so these additions cannot wrap.
        self.segments = loadable.map { index, header in
            Segment(
                programHeaderIndex: index,
                virtualAddress: header.physicalAddress &+ virtOffset,
                physicalAddress: header.physicalAddress,
                elfVirtualAddress: header.virtualAddress,
                fileOffset: header.offset,
                fileSize: header.fileSize,
                memorySize: header.memorySize,
                flags: header.flags)
        }
    }

    /// The string and feature checks of libelf-dominfo.c `elf_xen_note_check` and
    /// xg_dom_elfloader.c `xc_dom_parse_elf_kernel`.
    private static func checkGuest(_ notes: XenNotes) throws(ImageError) {
        // Byte prefixes, as libelf's strncmp: no Unicode normalization.
        let isLinux = notes.guestOS?.utf8.starts(with: "linux".utf8) ?? false
        let isGeneric = notes.loader?.utf8.starts(with: "generic".utf8) ?? false
        guard isLinux || isGeneric else {
            throw .unsupportedGuest(guestOS: notes.guestOS, loader: notes.loader)
        }
        guard let version = notes.xenVersion, version.utf8.starts(with: "xen-3.0".utf8) else {
            throw .unsupportedXenVersion(notes.xenVersion)
        }
        if let unknown = notes.features?.unknownRequired.first {
            throw .unknownRequiredFeature(unknown)
        }
        if notes.requiredFeatureBits & XenFeature.dom0.bit != 0 {
            throw .requiresDom0
        }
        if notes.bsdSymtab == "yes" {
            throw .bsdSymtabUnsupported
        }
    }
}
