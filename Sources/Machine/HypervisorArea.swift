import GuestMemory
import Hypervisor
import Ring0Core
import XenABI

/// The part of a domain's VM that belongs to the hypervisor: guest-physical pages
/// above the domain's RAM, mapped at guest-virtual addresses in the hypervisor's L4
/// slots (256–259) of every guest L4.
///
/// Guest-physical layout (pages from `base`):
///
///     0            shared_info (guest-mappable)
///     1 ..< 33     grant-table frames (guest-mappable)
///     33           stubs page        (ring-0 code)
///     34           IDT
///     35 ..< 43    the ring-0 core's code (Ring0CoreImage)
///     43           the core header   (Ring0Core.CoreLayout)
///     44 + 45·v    vCPU v: GDT (16 pages), TSS, IST stack, operation buffer (8 pages),
///                  LDT (16 pages), core block, core stack (2 pages)
///     ...          page information table (16 bytes per RAM frame)
///     ...          M2P (8 bytes per RAM frame)
///     ...          the hypervisor's own page tables
///
/// Guest-virtual layout:
///
///     0xffff800000000000  slot 256  M2P, read-only, user-readable (as on Xen)
///     0xffff818000000000  slot 259  the same M2P again: the address XENMEM_machphys_mapping
///                                   reports, because some hosts (PVM) fault every ring-3
///                                   access to slot 256 (docs/machine-probes.md)
///     0xffff808000000000  slot 257  stubs, IDT, core code and header, shared_info (for the
///                                   core), per-vCPU pages,
///                                   page information (at +0x40_0000_0000); supervisor only
///     0xffff810000000000  slot 258  direct map of guest RAM; supervisor only
public struct HypervisorArea: Sendable {
    public static let grantFrames = 32
    static let corePages: UInt64 = 8
    static let pagesPerVCPU = 45
    static let gdtPages = 16
    static let operationBufferPages = 8

    public let ramFrames: UInt64
    public let vcpuCount: Int
    /// First guest-physical address of the area.
    public let base: UInt64
    public let m2pPages: UInt64
    public let pageInfoPages: UInt64
    public let totalPages: UInt64
    /// Whether the hypercall gate leads to the in-VM ring-0 core (else every hypercall
    /// leaves to the host).
    public let fastPath: Bool
    /// Whether page faults and invalid opcodes from guest code go to the core first
    /// (which bounces or emulates them without an exit). Only where ring-0 code runs natively: on a
    /// host that emulates it, the core's path costs more than the exit it saves.
    public let coreTraps: Bool
    /// Whether page-table entries the host writes must be stored again from inside the
    /// VM: on shadow-paging hosts (PVM) a host-side write to a live page table goes
    /// unseen (docs/machine-probes.md); with hardware nested paging the guest's tables
    /// are read from its memory directly.
    public let replaysPageTableStores: Bool

    // Guest-virtual bases.
    public static let m2pVirtual: UInt64 = 0xffff_8000_0000_0000
    public static let privateVirtual: UInt64 = 0xffff_8080_0000_0000
    public static let directMapVirtual: UInt64 = 0xffff_8100_0000_0000
    public static let m2pAliasVirtual: UInt64 = 0xffff_8180_0000_0000
    static let coreCodeVirtualOffset: UInt64 = 0x2000
    static let coreHeaderVirtualOffset: UInt64 = 0xa000
    /// shared_info again, for the core (its event bitmaps; `FastTimer`).
    static let sharedInfoVirtualOffset: UInt64 = 0xb000
    static let perVCPUVirtualOffset: UInt64 = 0x10_0000
    /// Per-vCPU blocks are this far apart and aligned to it (ring0/entry.S finds its
    /// vCPU's block by masking the stack pointer).
    static let perVCPUVirtualStride: UInt64 = 0x4_0000
    static let pageInfoVirtualOffset: UInt64 = 0x40_0000_0000
    /// Offsets inside a per-vCPU block (ring0/entry.S repeats the core's).
    static let coreBlockOffset: UInt64 = 0x2a000
    static let coreStackTopOffset: UInt64 = 0x2d000

    public init(ramFrames: UInt64, vcpuCount: Int, fastPath: Bool = true, coreTraps: Bool = false,
                replaysPageTableStores: Bool = true) {
        self.fastPath = fastPath
        self.coreTraps = fastPath && coreTraps
        self.replaysPageTableStores = replaysPageTableStores
        self.ramFrames = ramFrames
        self.vcpuCount = vcpuCount
        let gib: UInt64 = 1 << 30
        self.base = max(gib, (ramFrames * pageSize + gib - 1) / gib * gib)
        self.m2pPages = max(1, (ramFrames * 8 + pageSize - 1) / pageSize)
        self.pageInfoPages = max(1, DomainLayout.pageInfoPages(ramFrames: ramFrames))
        let fixed = 44 + UInt64(vcpuCount * Self.pagesPerVCPU) + pageInfoPages + m2pPages
        self.totalPages = fixed + Self.pageTablePages(
            ramFrames: ramFrames, pages: Self.privateMappings(vcpuCount: vcpuCount, pageInfoPages: pageInfoPages, m2pPages: m2pPages,
                                                              page: { _ in GuestPhysicalAddress(0) }))
    }

    // MARK: Guest-physical addresses

    func page(_ index: UInt64) -> GuestPhysicalAddress { GuestPhysicalAddress(base + index * pageSize) }
    public var sharedInfo: GuestPhysicalAddress { page(0) }
    public var grantTable: GuestPhysicalAddress { page(1) }
    var stubs: GuestPhysicalAddress { page(33) }
    var idt: GuestPhysicalAddress { page(34) }
    var coreCode: GuestPhysicalAddress { page(35) }
    var coreHeader: GuestPhysicalAddress { page(43) }
    func vcpuBlock(_ vcpu: Int) -> UInt64 { 44 + UInt64(vcpu * Self.pagesPerVCPU) }
    func gdt(_ vcpu: Int) -> GuestPhysicalAddress { page(vcpuBlock(vcpu)) }
    func tss(_ vcpu: Int) -> GuestPhysicalAddress { page(vcpuBlock(vcpu) + 16) }
    func istStack(_ vcpu: Int) -> GuestPhysicalAddress { page(vcpuBlock(vcpu) + 17) }
    func operationBuffer(_ vcpu: Int) -> GuestPhysicalAddress { page(vcpuBlock(vcpu) + 18) }
    func ldt(_ vcpu: Int) -> GuestPhysicalAddress { page(vcpuBlock(vcpu) + 26) }
    func coreBlock(_ vcpu: Int) -> GuestPhysicalAddress { page(vcpuBlock(vcpu) + 42) }
    var pageInfo: GuestPhysicalAddress { page(44 + UInt64(vcpuCount * Self.pagesPerVCPU)) }
    var m2p: GuestPhysicalAddress { page(44 + UInt64(vcpuCount * Self.pagesPerVCPU) + pageInfoPages) }
    var firstPageTablePage: UInt64 { 44 + UInt64(vcpuCount * Self.pagesPerVCPU) + pageInfoPages + m2pPages }

    // MARK: Guest-virtual addresses

    var stubsVirtual: UInt64 { Self.privateVirtual }
    var idtVirtual: UInt64 { Self.privateVirtual + 0x1000 }
    var coreCodeVirtual: UInt64 { Self.privateVirtual + Self.coreCodeVirtualOffset }
    var coreHeaderVirtual: UInt64 { Self.privateVirtual + Self.coreHeaderVirtualOffset }
    var pageInfoVirtual: UInt64 { Self.privateVirtual + Self.pageInfoVirtualOffset }
    func vcpuVirtual(_ vcpu: Int) -> UInt64 {
        Self.privateVirtual + Self.perVCPUVirtualOffset + UInt64(vcpu) * Self.perVCPUVirtualStride
    }
    func gdtVirtual(_ vcpu: Int) -> UInt64 { vcpuVirtual(vcpu) }
    func tssVirtual(_ vcpu: Int) -> UInt64 { vcpuVirtual(vcpu) + 0x10000 }
    /// Top of the IST stack: the CPU pushes exception frames just below it.
    func istTopVirtual(_ vcpu: Int) -> UInt64 { vcpuVirtual(vcpu) + 0x12000 }
    func operationBufferVirtual(_ vcpu: Int) -> UInt64 { vcpuVirtual(vcpu) + 0x12000 }
    func ldtVirtual(_ vcpu: Int) -> UInt64 { vcpuVirtual(vcpu) + 0x1a000 }
    func coreBlockVirtual(_ vcpu: Int) -> UInt64 { vcpuVirtual(vcpu) + Self.coreBlockOffset }
    var syscallStubVirtual: UInt64 { stubsVirtual + UInt64(StubCode.syscallStubOffset) }
    /// MSR_LSTAR: where ring 0 runs natively, the core's own `syscall` entry; else the
    /// core's syscall stub (`int $0x84`) when the core runs, or the slow stub.
    var syscallEntryVirtual: UInt64 {
        if coreTraps { return coreCodeVirtual + Ring0CoreImage.lstarEntryOffset }
        return stubsVirtual + UInt64(fastPath ? StubCode.coreSyscallStubOffset : StubCode.syscallStubOffset)
    }

    /// MSR_KERNEL_GS_BASE of `vcpu` where the core takes `syscall` directly: its frame
    /// address (`frameVirtual`), which ring0/entry.S reaches with `swapgs`. The guest
    /// never sees it (a PV kernel cannot `swapgs`); 0 otherwise.
    func kernelGSBase(_ vcpu: Int) -> UInt64 { coreTraps ? frameVirtual(vcpu) : 0 }
    /// Where, below the IST top, the frame address is kept again for that entry (below
    /// the #GP fast-path flag, where no exception frame or saved register reaches).
    static let lstarFrameSlotBelowTop: UInt64 = 520
    /// An address in the supervisor-only stubs page a kicked vCPU is sent to, so that
    /// its next instruction fetch faults into the hypervisor.
    var kickVirtual: UInt64 { stubsVirtual + UInt64(StubCode.kickOffset) }
    /// Two bytes of the stubs page at `offset` (for recognising where a fault happened).
    func stubsPageBytes(at offset: Int) -> [UInt8] {
        let page = StubCode.page()
        guard offset >= 0, offset + 2 <= page.count else { return [] }
        return Array(page[offset..<(offset + 2)])
    }
    var applyVirtual: UInt64 { stubsVirtual + UInt64(StubCode.applyOffset) }
    func vectorStubVirtual(_ vector: Int) -> UInt64 { stubsVirtual + UInt64(vector * StubCode.vectorStubStride) }
    /// Guest-physical address of the interrupt frame (rip, cs, rflags, rsp, ss) at the IST top.
    func frame(_ vcpu: Int) -> GuestPhysicalAddress { GuestPhysicalAddress(istStack(vcpu).rawValue + pageSize - 40) }
    func frameVirtual(_ vcpu: Int) -> UInt64 { istTopVirtual(vcpu) - 40 }
    /// The byte enabling the #GP port-I/O fast path of `vcpu`.
    func fastIOFlag(_ vcpu: Int) -> GuestPhysicalAddress {
        GuestPhysicalAddress(istStack(vcpu).rawValue + pageSize - StubCode.fastIOFlagBelowTop)
    }
    /// Capacity of the operation buffer in {op, a, b} triples.
    var operationCapacity: Int { Int(UInt64(Self.operationBufferPages) * pageSize / 24) }

    // MARK: Page tables

    /// One 4 KiB mapping of the area: where, what, how, and under which L3 (0: the
    /// M2P's, 1: the private area's).
    struct Mapping {
        let virtual: UInt64
        let physical: GuestPhysicalAddress
        let flags: UInt64
        let l3: Int
    }

    /// The 4 KiB mappings of the M2P and the private area (`page` turns an area page
    /// index into its guest-physical address).
    static func privateMappings(vcpuCount: Int, pageInfoPages: UInt64, m2pPages: UInt64,
                                page: (UInt64) -> GuestPhysicalAddress) -> [Mapping] {
        var mappings: [Mapping] = []
        let data = PTE.present | PTE.rw | PTE.accessed | PTE.dirty | PTE.nx
        let perVCPUBase: UInt64 = 44
        let pageInfoBase = perVCPUBase + UInt64(vcpuCount * pagesPerVCPU)
        let m2pBase = pageInfoBase + pageInfoPages
        // M2P: read-only for the guest.
        for index in 0..<m2pPages {
            mappings.append(Mapping(virtual: m2pVirtual + index * pageSize, physical: page(m2pBase + index),
                                    flags: PTE.present | PTE.user | PTE.accessed | PTE.nx, l3: 0))
        }
        // Stubs and core code (executable, read-only), IDT (read-only), core header.
        mappings.append(Mapping(virtual: privateVirtual, physical: page(33), flags: PTE.present | PTE.accessed, l3: 1))
        mappings.append(Mapping(virtual: privateVirtual + 0x1000, physical: page(34), flags: PTE.present | PTE.accessed | PTE.nx, l3: 1))
        for index in 0..<corePages {
            mappings.append(Mapping(virtual: privateVirtual + coreCodeVirtualOffset + index * pageSize, physical: page(35 + index),
                                    flags: PTE.present | PTE.accessed, l3: 1))
        }
        mappings.append(Mapping(virtual: privateVirtual + coreHeaderVirtualOffset, physical: page(43), flags: data, l3: 1))
        mappings.append(Mapping(virtual: privateVirtual + sharedInfoVirtualOffset, physical: page(0), flags: data, l3: 1))
        for vcpu in 0..<vcpuCount {
            let virtual = privateVirtual + perVCPUVirtualOffset + UInt64(vcpu) * perVCPUVirtualStride
            for index in 0..<UInt64(pagesPerVCPU) {
                mappings.append(Mapping(virtual: virtual + index * pageSize, physical: page(perVCPUBase + UInt64(vcpu * pagesPerVCPU) + index),
                                        flags: data, l3: 1))
            }
        }
        for index in 0..<pageInfoPages {
            mappings.append(Mapping(virtual: privateVirtual + pageInfoVirtualOffset + index * pageSize, physical: page(pageInfoBase + index),
                                    flags: data, l3: 1))
        }
        return mappings
    }

    /// Pages of page tables the area needs: three L3s, the L2s and L1s of `pages`, and
    /// the direct map's L2s and its one L1 for a last partial 2 MiB.
    static func pageTablePages(ramFrames: UInt64, pages: [Mapping]) -> UInt64 {
        var l2Keys = Set<UInt64>()
        var l1Keys = Set<UInt64>()
        for mapping in pages {
            l2Keys.insert(mapping.virtual >> 30)
            l1Keys.insert(mapping.virtual >> 21)
        }
        let directL2 = (ramFrames * pageSize + (1 << 30) - 1) >> 30
        return 3 + UInt64(l2Keys.count) + UInt64(l1Keys.count) + directL2 + 1
    }

    /// The entries for L4 slots 256–259, as the core installs them into guest L4s.
    public var l4Entries: [(slot: Int, entry: UInt64)] {
        let flags = PTE.present | PTE.rw | PTE.accessed
        return [
            (256, page(firstPageTablePage).rawValue | flags | PTE.user),
            (257, page(firstPageTablePage + 1).rawValue | flags),
            (258, page(firstPageTablePage + 2).rawValue | flags),
            (259, page(firstPageTablePage).rawValue | flags | PTE.user),
        ]
    }

    /// The core's view of this layout.
    public var domainLayout: DomainLayout {
        DomainLayout(ramFrames: ramFrames, sharedInfo: sharedInfo, grantFrames: grantTable, grantFrameCount: Self.grantFrames,
                     machineToPhys: m2p, machineToPhysEntries: ramFrames, machineToPhysVirtual: Self.m2pAliasVirtual,
                     hypervisorL4Entries: l4Entries,
                     directMapBase: Self.directMapVirtual,
                     coreHeader: coreHeader, pageInfo: pageInfo,
                     coreVCPUBlocks: coreBlock(0), coreVCPUStride: UInt64(Self.pagesPerVCPU) * pageSize)
    }

    /// Writes the hypervisor's page tables, stubs, core, IDT, TSSs, reserved GDT entries,
    /// an identity M2P and the core's pointers into `memory`.
    func install(into memory: GuestMemory) throws(GuestMemoryError) {
        var allocator = firstPageTablePage + 3
        func allocate() -> GuestPhysicalAddress { defer { allocator += 1 }; return page(allocator) }
        let l3s = [page(firstPageTablePage), page(firstPageTablePage + 1)]
        let l3Direct = page(firstPageTablePage + 2)
        let table = PTE.present | PTE.rw | PTE.accessed

        // The 4 KiB mappings, creating tables on the way.
        var l2Cache: [UInt64: GuestPhysicalAddress] = [:]
        var l1Cache: [UInt64: GuestPhysicalAddress] = [:]
        for mapping in Self.privateMappings(vcpuCount: vcpuCount, pageInfoPages: pageInfoPages, m2pPages: m2pPages, page: page) {
            let va = GuestVirtualAddress(mapping.virtual)
            let tableFlags = table | (mapping.flags & PTE.user)
            let l3Slot = GuestPhysicalAddress(l3s[mapping.l3].rawValue + UInt64(va.tableIndex(level: 3)) * 8)
            let l2Key = mapping.virtual >> 30
            let l2: GuestPhysicalAddress
            if let cached = l2Cache[l2Key] { l2 = cached } else {
                l2 = allocate(); l2Cache[l2Key] = l2
                try memory.write(l2.rawValue | tableFlags, at: l3Slot)
            }
            let l1Key = mapping.virtual >> 21
            let l1: GuestPhysicalAddress
            if let cached = l1Cache[l1Key] { l1 = cached } else {
                l1 = allocate(); l1Cache[l1Key] = l1
                try memory.write(l1.rawValue | tableFlags, at: GuestPhysicalAddress(l2.rawValue + UInt64(va.tableIndex(level: 2)) * 8))
            }
            try memory.write(mapping.physical.rawValue | mapping.flags, at: GuestPhysicalAddress(l1.rawValue + UInt64(va.tableIndex(level: 1)) * 8))
        }
        for frame in 0..<ramFrames { try memory.write(frame, at: GuestPhysicalAddress(m2p.rawValue + frame * 8)) }

        // Direct map of RAM: 2 MiB pages, and 4 KiB pages for a last partial 2 MiB.
        let data = PTE.present | PTE.rw | PTE.accessed | PTE.dirty | PTE.nx
        let ramBytes = ramFrames * pageSize
        var offset: UInt64 = 0
        var directL2: [UInt64: GuestPhysicalAddress] = [:]
        func directL2Table(_ gib: UInt64) throws(GuestMemoryError) -> GuestPhysicalAddress {
            if let cached = directL2[gib] { return cached }
            let l2 = allocate(); directL2[gib] = l2
            try memory.write(l2.rawValue | table, at: GuestPhysicalAddress(l3Direct.rawValue + gib * 8))
            return l2
        }
        while offset + (1 << 21) <= ramBytes {
            let l2 = try directL2Table(offset >> 30)
            try memory.write(offset | data | PTE.pse, at: GuestPhysicalAddress(l2.rawValue + ((offset >> 21) & 511) * 8))
            offset += 1 << 21
        }
        if offset < ramBytes {
            let l2 = try directL2Table(offset >> 30)
            let l1 = allocate()
            try memory.write(l1.rawValue | table, at: GuestPhysicalAddress(l2.rawValue + ((offset >> 21) & 511) * 8))
            while offset < ramBytes {
                try memory.write(offset | data, at: GuestPhysicalAddress(l1.rawValue + ((offset >> 12) & 511) * 8))
                offset += pageSize
            }
        }

        // Code, descriptor tables, TSSs.
        try memory.writeBytes(StubCode.page(), at: stubs)
        try memory.writeBytes(Ring0CoreImage.bytes, at: coreCode)
        let coreEntries = fastPath ? DescriptorTablesBuilder.CoreEntries(hypercall: coreCodeVirtual + Ring0CoreImage.entryOffset,
                                                 syscall: coreCodeVirtual + Ring0CoreImage.syscallEntryOffset,
                                                 generalProtection: coreCodeVirtual + Ring0CoreImage.generalProtectionEntryOffset,
                                                 pageFault: coreTraps ? coreCodeVirtual + Ring0CoreImage.pageFaultEntryOffset : nil,
                                                 invalidOpcode: coreTraps ? coreCodeVirtual + Ring0CoreImage.invalidOpcodeEntryOffset : nil,
                                                 timer: coreTraps ? coreCodeVirtual + Ring0CoreImage.timerEntryOffset : nil) : nil
        try memory.writeBytes(DescriptorTablesBuilder.idt(stubs: stubsVirtual, coreEntries: coreEntries), at: idt)
        for vcpu in 0..<vcpuCount {
            try memory.writeBytes(DescriptorTablesBuilder.tss(istTop: istTopVirtual(vcpu)), at: tss(vcpu))
            for (index, descriptor) in DescriptorTablesBuilder.reservedGDTEntries(tss: tssVirtual(vcpu)) {
                try memory.write(descriptor, at: GuestPhysicalAddress(gdt(vcpu).rawValue + UInt64(index) * 8))
            }
            // The core's pointers, then the version that tells it they are valid.
            let block = coreBlock(vcpu).rawValue
            try memory.write(coreHeaderVirtual, at: GuestPhysicalAddress(block + UInt64(CoreLayout.vcpuDomainHeader)))
            try memory.write(Self.directMapVirtual, at: GuestPhysicalAddress(block + UInt64(CoreLayout.vcpuRAMBase)))
            try memory.write(pageInfoVirtual, at: GuestPhysicalAddress(block + UInt64(CoreLayout.vcpuPageInfo)))
            try memory.write(istTopVirtual(vcpu) - StubCode.fastIOFlagBelowTop, at: GuestPhysicalAddress(block + UInt64(CoreLayout.vcpuFastIOFlag)))
            try memory.write(frameVirtual(vcpu), at: GuestPhysicalAddress(istStack(vcpu).rawValue + pageSize - Self.lstarFrameSlotBelowTop))
            try memory.write(CoreLayout.version, at: GuestPhysicalAddress(block + UInt64(CoreLayout.vcpuVersion)))
        }
        try memory.write(Self.privateVirtual + Self.sharedInfoVirtualOffset,
                         at: GuestPhysicalAddress(coreHeader.rawValue + UInt64(CoreLayout.headerSharedInfo)))
    }

    /// Where, in the VM, execution has the guest's whole state in its registers and the
    /// interrupt frame at the IST top, about to return to the guest: the stubs' `iretq`s
    /// and the core's return path. A vCPU interrupted there can be treated as a kick.
    /// Whether `rip` is in the core's code.
    /// Whether `rip` is in the core's code, or at its syscall stub (about to enter it).
    func isInsideCore(_ rip: UInt64) -> Bool {
        if fastPath && rip == stubsVirtual + UInt64(StubCode.coreSyscallStubOffset) { return true }
        return rip >= coreCodeVirtual && rip - coreCodeVirtual < UInt64(Ring0CoreImage.bytes.count)
    }

    func isReturnPoint(_ rip: UInt64) -> Bool {
        if rip >= coreCodeVirtual + Ring0CoreImage.returnPathStart && rip < coreCodeVirtual + Ring0CoreImage.returnPathEnd {
            return true
        }
        let offset = rip &- stubsVirtual
        guard offset < pageSize else { return false }
        return stubsPageBytes(at: Int(offset)) == [0x48, 0xcf]
    }
}

/// Descriptor tables of Xen's reserved range (arch-x86/xen-x86_64.h selectors).
enum DescriptorTablesBuilder {
    static let tssSelector: UInt16 = 0xe040
    /// Xen's LDT selector (LDT_ENTRY, the reserved entry after the TSS).
    static let ldtSelector: UInt16 = 0xe050

    /// The 16-byte LDT descriptor for `entries` descriptors at `base`.
    static func ldtDescriptor(base: UInt64, entries: Int) -> (UInt64, UInt64) {
        let limit = UInt64(max(entries, 1) * 8 - 1)
        let low = (limit & 0xffff) | (base & 0xff_ffff) << 16 | 0x82 << 40 | ((limit >> 16) & 0xf) << 48 | ((base >> 24) & 0xff) << 56
        return (low, base >> 32)
    }

    /// (GDT index, descriptor) for Xen's reserved selectors and the TSS.
    static func reservedGDTEntries(tss: UInt64) -> [(Int, UInt64)] {
        let first = FlatSelector.firstReservedGDTEntry
        let tssLimit: UInt64 = 0x67
        // Type 0xb: a busy 64-bit TSS, since TR is loaded directly with it.
        let tssLow = tssLimit | (tss & 0xff_ffff) << 16 | 0x8b << 40 | ((tss >> 24) & 0xff) << 56
        return [
            (first + 1, 0x00af_9b00_0000_ffff),   // 0xe008 ring-0 code, 64-bit
            (first + 2, 0x00cf_9300_0000_ffff),   // 0xe010 ring-0 data
            (first + 4, 0x00cf_fb00_0000_ffff),   // 0xe023 ring-3 code, 32-bit
            (first + 5, 0x00cf_f300_0000_ffff),   // 0xe02b ring-3 data
            (first + 6, 0x00af_fb00_0000_ffff),   // 0xe033 ring-3 code, 64-bit
            (first + 8, tssLow),   // 0xe040 TSS
            (first + 9, tss >> 32),
        ]
    }

    /// The core's entry points the IDT leads to (`pageFault`, `invalidOpcode`: nil to
    /// leave #PF, #UD to their stubs).
    struct CoreEntries {
        var hypercall: UInt64
        var syscall: UInt64
        var generalProtection: UInt64
        var pageFault: UInt64?
        var invalidOpcode: UInt64?
        var timer: UInt64?
    }

    /// 256 interrupt gates: ring-0 code, IST 1, DPL 0 except #BP, #OF and 0x82 (DPL 3,
    /// so `int3`, `into` and the hypercall page's `int $0x82` reach their stubs). When
    /// the ring-0 core runs, the hypercall vector, the core's syscall vector, #GP and
    /// (where ring 0 runs natively) #PF, #UD and the local APIC timer's vector lead to
    /// its entries.
    static func idt(stubs: UInt64, coreEntries: CoreEntries? = nil) -> [UInt8] {
        var writer = ByteWriter(size: 4096)
        for vector in 0..<256 {
            var handler = vector == 13 ? stubs + UInt64(StubCode.generalProtectionOffset)
                : stubs + UInt64(vector * StubCode.vectorStubStride)
            if let coreEntries {
                if vector == Int(HypercallPage.vector) { handler = coreEntries.hypercall }
                if vector == Int(StubCode.coreSyscallVector) { handler = coreEntries.syscall }
                if vector == Int(X86Exception.generalProtection) { handler = coreEntries.generalProtection }
                if vector == Int(X86Exception.pageFault), let pageFault = coreEntries.pageFault { handler = pageFault }
                if vector == Int(X86Exception.invalidOpcode), let invalidOpcode = coreEntries.invalidOpcode { handler = invalidOpcode }
                if vector == Int(FastTimer.timerVector), let timer = coreEntries.timer { handler = timer }
            }
            // #BP, #OF and the hypercall vector are reachable from ring 3.
            let dpl: UInt64 = (vector == 3 || vector == 4 || vector == Int(HypercallPage.vector)) ? 3 : 0
            let low = (handler & 0xffff) | UInt64(FlatSelector.ring0CS64) << 16 | 1 << 32 /* IST1 */
                | (0x8e | dpl << 5) << 40 | ((handler >> 16) & 0xffff) << 48
            writer.set(low, at: vector * 16)
            writer.set(handler >> 32, at: vector * 16 + 8)
        }
        return writer.bytes
    }

    /// A 64-bit TSS whose IST1 is the vCPU's stack and whose I/O bitmap is absent, so
    /// every port access from ring 3 faults.
    static func tss(istTop: UInt64) -> [UInt8] {
        var writer = ByteWriter(size: 0x68)
        writer.set(istTop, at: 0x04)   // RSP0 (unused: every gate uses IST1)
        writer.set(istTop, at: 0x24)   // IST1
        writer.set(UInt16(0x68), at: 0x66)   // I/O map base beyond the limit
        return writer.bytes
    }
}
