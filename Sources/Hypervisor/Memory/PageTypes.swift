import GuestMemory
import Ring0Core
import XenABI

/// The one type a guest frame has at a time (Xen's PGT_*): a frame used as a page
/// table can never be mapped writable, and a frame mapped writable cannot become a
/// page table until every writable mapping is gone.
public enum PageType: UInt8, Sendable, Equatable, CustomStringConvertible {
    case none
    case writable
    case l1, l2, l3, l4
    case segmentDescriptor

    /// The page-table level (1–4), or nil.
    public var level: Int? {
        switch self {
        case .l1: return 1
        case .l2: return 2
        case .l3: return 3
        case .l4: return 4
        default: return nil
        }
    }

    public static func table(level: Int) -> PageType {
        switch level {
        case 1: return .l1
        case 2: return .l2
        case 3: return .l3
        default: return .l4
        }
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .writable: return "writable"
        case .l1: return "L1"
        case .l2: return "L2"
        case .l3: return "L3"
        case .l4: return "L4"
        case .segmentDescriptor: return "seg_desc"
        }
    }
}

/// Bookkeeping for one guest RAM frame (Xen's `page_info` type_info and count_info).
public struct PageInfo: Sendable, Equatable {
    /// Current type. Kept when `typeCount` drops to 0, so the next use knows what the
    /// frame was (a formerly writable frame needs a TLB flush before it becomes a table).
    public var type: PageType = .none
    /// References to the type: page-table entries, pins, base pointers, GDT use.
    public var typeCount: UInt32 = 0
    /// Pinned by MMUEXT_PIN_Lx_TABLE.
    public var pinned = false
    /// Present entries in validated L1 tables that map this frame (read-only or writable).
    public var mappings: UInt32 = 0

    public init(type: PageType = .none, typeCount: UInt32 = 0, pinned: Bool = false, mappings: UInt32 = 0) {
        self.type = type
        self.typeCount = typeCount
        self.pinned = pinned
        self.mappings = mappings
    }

    /// Whether the frame currently is a validated page table.
    public var isActiveTable: Bool { typeCount > 0 && type.level != nil }
}

/// The type bookkeeping of all RAM frames of a domain, kept in the page information
/// table the host shares with the in-VM ring-0 core (`Ring0Core.CoreLayout.pageInfo*`,
/// at `DomainLayout.pageInfo`): both sides change it only under the domain's lock.
public struct PageTypeTable: @unchecked Sendable {
    let memory: GuestMemory
    let base: GuestPhysicalAddress
    public let frameCount: UInt64

    public init(memory: GuestMemory, base: GuestPhysicalAddress, frameCount: UInt64) {
        self.memory = memory
        self.base = base
        self.frameCount = frameCount
    }

    private func entry(_ frame: FrameNumber, _ field: Int) -> GuestPhysicalAddress {
        GuestPhysicalAddress(base.rawValue + frame.rawValue * UInt64(CoreLayout.pageInfoSize) + UInt64(field))
    }

    public subscript(frame: FrameNumber) -> PageInfo? {
        guard frame.rawValue < frameCount,
              let count: UInt32 = try? memory.read(at: entry(frame, CoreLayout.pageInfoTypeCount)),
              let mappings: UInt32 = try? memory.read(at: entry(frame, CoreLayout.pageInfoMappings)),
              let type: UInt8 = try? memory.read(at: entry(frame, CoreLayout.pageInfoType)),
              let pinned: UInt8 = try? memory.read(at: entry(frame, CoreLayout.pageInfoPinned)) else { return nil }
        return PageInfo(type: PageType(rawValue: type) ?? .none, typeCount: count, pinned: pinned != 0, mappings: mappings)
    }

    mutating func update(_ frame: FrameNumber, _ change: (inout PageInfo) -> Void) {
        guard var info = self[frame] else { return }
        change(&info)
        try? memory.write(info.typeCount, at: entry(frame, CoreLayout.pageInfoTypeCount))
        try? memory.write(info.mappings, at: entry(frame, CoreLayout.pageInfoMappings))
        try? memory.write(info.type.rawValue, at: entry(frame, CoreLayout.pageInfoType))
        try? memory.write(UInt8(info.pinned ? 1 : 0), at: entry(frame, CoreLayout.pageInfoPinned))
    }

    /// Every frame's information (diagnostics and tests).
    public var frames: [PageInfo] {
        (0..<frameCount).map { self[FrameNumber($0)] ?? PageInfo() }
    }
}

/// Flag rules for page-table entries of a 64-bit PV guest (xen/arch/x86/mm.c
/// `base_disallow_mask`, `L1_DISALLOW_MASK`, `l1_disallow_mask`; pv/mm.h `adjust_guest_l*e`).
public enum PageTableEntryRules {
    /// Flags a guest may use at L2–L4: P, RW, U, A, D, AVAIL, AVAIL_HIGH, NX.
    static let allowedUpper: UInt64 = PTE.present | PTE.rw | PTE.user | PTE.accessed | PTE.dirty | PTE.avail
        | PTE.availHigh | PTE.nx
    /// Flags a domU may use at L1: the above plus G; never the grant marker, and no
    /// cache attributes (PWT, PCD, PAT) for a domain without I/O rights.
    static let allowedL1: UInt64 = (allowedUpper | PTE.global) & ~PTE.grantTable

    /// The flag bits of an entry (everything but the frame address).
    static func flags(_ entry: UInt64) -> UInt64 { entry & ~PTE.addressMask }

    /// Whether a present entry at `level` uses only allowed flags.
    public static func flagsAllowed(_ entry: UInt64, level: Int) -> Bool {
        let allowed = level == 1 ? allowedL1 : allowedUpper
        return flags(entry) & ~allowed == 0
    }

    /// The entry as Xen stores it for a 64-bit PV guest: present entries get _PAGE_USER
    /// (the guest kernel runs in ring 3); L1 entries that lacked it also get
    /// _PAGE_GUEST_KERNEL so the guest can tell its kernel mappings; L4 entries also get
    /// _PAGE_ACCESSED (adjust_guest_l4e).
    public static func adjust(_ entry: UInt64, level: Int) -> UInt64 {
        guard entry & PTE.present != 0 else { return entry }
        switch level {
        case 1: return entry & PTE.user != 0 ? entry : entry | PTE.user | PTE.guestKernel
        case 4: return entry | PTE.user | PTE.accessed
        default: return entry | PTE.user
        }
    }

    /// The frame an entry points to.
    public static func frame(_ entry: UInt64) -> FrameNumber {
        FrameNumber((entry & PTE.addressMask) >> pageShift)
    }
}
