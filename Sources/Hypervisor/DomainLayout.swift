import GuestMemory
import Ring0Core
import XenABI

/// Where a domain's pieces live in its VM's guest-physical space.
///
/// Guest RAM is frames [0, ramFrames). Above it, outside RAM, the hypervisor keeps its
/// own pages (GDT, IDT, stubs, M2P, its page tables) and the Xen-owned pages a guest
/// may map (shared_info, grant-table frames). A guest page-table entry may reference
/// only its RAM frames and those mappable Xen pages.
public struct DomainLayout: Sendable, Equatable {
    /// Number of guest RAM frames (the domain's nr_pages).
    public var ramFrames: UInt64
    /// Machine address of the shared_info page (outside RAM).
    public var sharedInfo: GuestPhysicalAddress
    /// First grant-table frame (outside RAM) and how many there are.
    public var grantFrames: GuestPhysicalAddress
    public var grantFrameCount: Int
    /// The machine-to-phys table: one u64 per machine frame, starting with frame 0.
    public var machineToPhys: GuestPhysicalAddress
    /// How many machine frames the M2P covers.
    public var machineToPhysEntries: UInt64
    /// Where the guest finds the M2P (XENMEM_machphys_mapping's v_start).
    public var machineToPhysVirtual: UInt64
    /// Entries for L4 slots 256..<272 that every pinned guest L4 must carry
    /// (slot number, entry value). Zero entries are written as 0.
    public var hypervisorL4Entries: [(slot: Int, entry: UInt64)]
    /// Guest-physical base of the supervisor-only direct map of guest RAM, as a
    /// guest-virtual address: RAM frame f is at `directMapBase + f * 4096`.
    public var directMapBase: UInt64
    /// The state the host shares with the in-VM ring-0 core (Ring0Core's `CoreLayout`),
    /// outside RAM: the domain header page, the page information table (one entry per
    /// RAM frame), and one block per vCPU, `coreVCPUStride` bytes apart.
    public var coreHeader: GuestPhysicalAddress
    public var pageInfo: GuestPhysicalAddress
    public var coreVCPUBlocks: GuestPhysicalAddress
    public var coreVCPUStride: UInt64

    public init(ramFrames: UInt64, sharedInfo: GuestPhysicalAddress, grantFrames: GuestPhysicalAddress, grantFrameCount: Int,
                machineToPhys: GuestPhysicalAddress, machineToPhysEntries: UInt64,
                machineToPhysVirtual: UInt64 = HypervisorVirtualLayout.machToPhysStart,
                hypervisorL4Entries: [(slot: Int, entry: UInt64)], directMapBase: UInt64,
                coreHeader: GuestPhysicalAddress, pageInfo: GuestPhysicalAddress,
                coreVCPUBlocks: GuestPhysicalAddress, coreVCPUStride: UInt64) {
        self.ramFrames = ramFrames
        self.sharedInfo = sharedInfo
        self.grantFrames = grantFrames
        self.grantFrameCount = grantFrameCount
        self.machineToPhys = machineToPhys
        self.machineToPhysEntries = machineToPhysEntries
        self.machineToPhysVirtual = machineToPhysVirtual
        self.hypervisorL4Entries = hypervisorL4Entries
        self.directMapBase = directMapBase
        self.coreHeader = coreHeader
        self.pageInfo = pageInfo
        self.coreVCPUBlocks = coreVCPUBlocks
        self.coreVCPUStride = coreVCPUStride
    }

    /// Guest-physical address of vCPU `vcpu`'s core block.
    public func coreVCPUBlock(_ vcpu: Int) -> GuestPhysicalAddress {
        GuestPhysicalAddress(coreVCPUBlocks.rawValue + UInt64(vcpu) * coreVCPUStride)
    }

    /// Pages the page information table of `ramFrames` frames takes.
    public static func pageInfoPages(ramFrames: UInt64) -> UInt64 {
        (ramFrames * UInt64(CoreLayout.pageInfoSize) + pageSize - 1) / pageSize
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.ramFrames == rhs.ramFrames && lhs.sharedInfo == rhs.sharedInfo && lhs.grantFrames == rhs.grantFrames
            && lhs.grantFrameCount == rhs.grantFrameCount && lhs.machineToPhys == rhs.machineToPhys
            && lhs.machineToPhysEntries == rhs.machineToPhysEntries && lhs.directMapBase == rhs.directMapBase
            && lhs.machineToPhysVirtual == rhs.machineToPhysVirtual
            && lhs.coreHeader == rhs.coreHeader && lhs.pageInfo == rhs.pageInfo
            && lhs.coreVCPUBlocks == rhs.coreVCPUBlocks && lhs.coreVCPUStride == rhs.coreVCPUStride
            && lhs.hypervisorL4Entries.map(\.slot) == rhs.hypervisorL4Entries.map(\.slot)
            && lhs.hypervisorL4Entries.map(\.entry) == rhs.hypervisorL4Entries.map(\.entry)
    }

    /// Whether `frame` is guest RAM.
    public func isRAM(_ frame: FrameNumber) -> Bool { frame.rawValue < ramFrames }

    /// Whether `frame` is a Xen page the guest may map (shared_info, grant frames).
    public func isMappableXenPage(_ frame: FrameNumber) -> Bool {
        if frame == sharedInfo.frame { return true }
        let first = grantFrames.frame.rawValue
        return frame.rawValue >= first && frame.rawValue < first + UInt64(grantFrameCount)
    }

    /// vCPU blocks the test layout has room for.
    public static let testingMaxVCPUs: UInt64 = 16

    /// A layout for unit tests: RAM of `ramFrames` pages, Xen pages right above it,
    /// then the M2P and the core's shared state.
    public static func forTesting(ramFrames: UInt64) -> DomainLayout {
        let above = ramFrames * pageSize
        let m2pPages = (ramFrames * 8 + pageSize - 1) / pageSize
        let header = above + (5 + m2pPages) * pageSize
        let pageInfo = header + pageSize
        let blocks = pageInfo + pageInfoPages(ramFrames: ramFrames) * pageSize
        return DomainLayout(ramFrames: ramFrames, sharedInfo: GuestPhysicalAddress(above),
                            grantFrames: GuestPhysicalAddress(above + pageSize), grantFrameCount: 4,
                            machineToPhys: GuestPhysicalAddress(above + 5 * pageSize),
                            machineToPhysEntries: ramFrames, hypervisorL4Entries: [],
                            directMapBase: 0xffff_8100_0000_0000,
                            coreHeader: GuestPhysicalAddress(header), pageInfo: GuestPhysicalAddress(pageInfo),
                            coreVCPUBlocks: GuestPhysicalAddress(blocks), coreVCPUStride: pageSize)
    }

    /// Pages of guest-physical space the test layout needs above RAM.
    public static func testingExtraPages(ramFrames: UInt64) -> UInt64 {
        5 + (ramFrames * 8 + pageSize - 1) / pageSize + 1 + pageInfoPages(ramFrames: ramFrames) + testingMaxVCPUs
    }
}
