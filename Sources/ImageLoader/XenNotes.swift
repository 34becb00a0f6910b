// ImageLoader layer: the Xen notes a PV kernel carries, as typed values.

/// The Xen ELF note types of xen/include/public/elfnote.h.
public enum XenNoteType: UInt32, CaseIterable, Sendable {
    case info = 0
    case entry = 1
    case hypercallPage = 2
    case virtBase = 3
    case paddrOffset = 4
    case xenVersion = 5
    case guestOS = 6
    case guestVersion = 7
    case loader = 8
    case paeMode = 9
    case features = 10
    case bsdSymtab = 11
    case hvStartLow = 12
    case l1MFNValid = 13
    case suspendCancel = 14
    case initP2M = 15
    case modStartPFN = 16
    case supportedFeatures = 17
    case phys32Entry = 18

    /// The name used in elfnote.h without the `XEN_ELFNOTE_` prefix.
    public var name: String {
        switch self {
        case .info: return "INFO"
        case .entry: return "ENTRY"
        case .hypercallPage: return "HYPERCALL_PAGE"
        case .virtBase: return "VIRT_BASE"
        case .paddrOffset: return "PADDR_OFFSET"
        case .xenVersion: return "XEN_VERSION"
        case .guestOS: return "GUEST_OS"
        case .guestVersion: return "GUEST_VERSION"
        case .loader: return "LOADER"
        case .paeMode: return "PAE_MODE"
        case .features: return "FEATURES"
        case .bsdSymtab: return "BSD_SYMTAB"
        case .hvStartLow: return "HV_START_LOW"
        case .l1MFNValid: return "L1_MFN_VALID"
        case .suspendCancel: return "SUSPEND_CANCEL"
        case .initP2M: return "INIT_P2M"
        case .modStartPFN: return "MOD_START_PFN"
        case .supportedFeatures: return "SUPPORTED_FEATURES"
        case .phys32Entry: return "PHYS32_ENTRY"
        }
    }

    /// The elfnote.h name of a raw note type, or its number if unknown.
    static func name(of type: UInt32) -> String {
        XenNoteType(rawValue: type)?.name ?? "type \(type)"
    }
}

/// One raw note named "Xen": its type and descriptor bytes.
public struct XenNote: Equatable, Sendable {
    public var type: UInt32
    public var descriptor: [UInt8]

    public init(type: UInt32, descriptor: [UInt8]) {
        self.type = type
        self.descriptor = descriptor
    }
}

/// Where the kernel's Xen metadata came from, in the order libelf looks
/// (libelf-dominfo.c `elf_xen_parse`).
public enum XenNotesSource: Equatable, Sendable {
    /// "Xen" notes in PT_NOTE segments.
    case programHeaderNotes
    /// "Xen" notes in SHT_NOTE sections, used only when no PT_NOTE carries any.
    case sectionNotes
    /// The legacy `__xen_guest` section string ("GUEST_OS=linux,XEN_VER=xen-3.0,…").
    case legacyGuestSection
}

/// The XENFEAT_* feature flags of xen/include/public/features.h, by bit number.
public enum XenFeature: UInt32, CaseIterable, Sendable {
    case writablePageTables = 0
    case writableDescriptorTables = 1
    case autoTranslatedPhysmap = 2
    case supervisorModeKernel = 3
    case paePgdirAbove4GB = 4
    case mmuPTUpdatePreserveAD = 5
    case highmemAssist = 6
    case gnttabMapAvailBits = 7
    case hvmCallbackVector = 8
    case hvmSafePVClock = 9
    case hvmPIRQs = 10
    case dom0 = 11
    case grantMapIdentity = 12
    case memoryOpVnodeSupported = 13
    case armSMCCCSupported = 14
    case linuxRSDPUnrestricted = 15
    case notDirectMapped = 16
    case directMapped = 17

    /// The name used in FEATURES strings: features.h without the `XENFEAT_` prefix.
    public var name: String {
        switch self {
        case .writablePageTables: return "writable_page_tables"
        case .writableDescriptorTables: return "writable_descriptor_tables"
        case .autoTranslatedPhysmap: return "auto_translated_physmap"
        case .supervisorModeKernel: return "supervisor_mode_kernel"
        case .paePgdirAbove4GB: return "pae_pgdir_above_4gb"
        case .mmuPTUpdatePreserveAD: return "mmu_pt_update_preserve_ad"
        case .highmemAssist: return "highmem_assist"
        case .gnttabMapAvailBits: return "gnttab_map_avail_bits"
        case .hvmCallbackVector: return "hvm_callback_vector"
        case .hvmSafePVClock: return "hvm_safe_pvclock"
        case .hvmPIRQs: return "hvm_pirqs"
        case .dom0: return "dom0"
        case .grantMapIdentity: return "grant_map_identity"
        case .memoryOpVnodeSupported: return "memory_op_vnode_supported"
        case .armSMCCCSupported: return "ARM_SMCCC_supported"
        case .linuxRSDPUnrestricted: return "linux_rsdp_unrestricted"
        case .notDirectMapped: return "not_direct_mapped"
        case .directMapped: return "direct_mapped"
        }
    }

    /// The feature with FEATURES-string name `name`, if features.h defines it.
    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }

    /// This feature's bit in submap 0 (every XENFEAT_* is below 32).
    public var bit: UInt32 { 1 << rawValue }
}

/// The FEATURES note: `|`-separated feature names, `!` marking the required ones.
///
/// Names are kept as written, unknown ones included; the bitmaps cover the names
/// features.h knows. Xen parses the same syntax in libelf-dominfo.c
/// `elf_xen_parse_features`.
public struct XenFeatures: Equatable, Sendable {
    /// Names given with a leading `!`, without it.
    public var required: [String]
    /// Names given without `!`.
    public var optional: [String]

    public init(required: [String] = [], optional: [String] = []) {
        self.required = required
        self.optional = optional
    }

    /// Parses a FEATURES string such as `"!writable_page_tables|pae_pgdir_above_4gb"`.
    /// Empty entries (`a||b`, a trailing `|`) are skipped.
    public init(parsing string: String) {
        var required: [String] = []
        var optional: [String] = []
        for entry in string.split(separator: "|", omittingEmptySubsequences: true) {
            if entry.first == "!" {
                let name = entry.dropFirst()
                if !name.isEmpty { required.append(String(name)) }
            } else {
                optional.append(String(entry))
            }
        }
        self.init(required: required, optional: optional)
    }

    /// Bits of the required names features.h knows.
    public var requiredBits: UInt32 { Self.bits(of: required) }
    /// Bits of all names features.h knows, required or not (a required feature is
    /// also supported, as in libelf).
    public var supportedBits: UInt32 { Self.bits(of: required + optional) }
    /// Required names features.h does not define.
    public var unknownRequired: [String] { required.filter { XenFeature(name: $0) == nil } }

    private static func bits(of names: [String]) -> UInt32 {
        names.reduce(0) { $0 | (XenFeature(name: $1)?.bit ?? 0) }
    }
}

/// One mask/value pair of L1_MFN_VALID: a non-present L1 entry carries a valid MFN
/// when `entry & mask == value`.
public struct L1MFNValidPair: Equatable, Sendable {
    public var mask: UInt64
    public var value: UInt64

    public init(mask: UInt64, value: UInt64) {
        self.mask = mask
        self.value = value
    }
}

/// Everything a PV kernel tells the domain builder through its Xen notes
/// (public/elfnote.h), one typed field per note; `nil` when the note is absent.
///
/// Numeric notes are 1, 2, 4 or 8 bytes, little-endian (libelf-tools.c
/// `elf_note_numeric`); string notes may or may not be NUL-terminated. When a note
/// appears twice the later one wins, as in libelf. Notes with types outside
/// elfnote.h's 1…18 (INFO included) are kept raw in `unknown`.
public struct XenNotes: Equatable, Sendable {
    public var source: XenNotesSource
    /// ENTRY: virtual address of the entry point.
    public var entry: UInt64?
    /// HYPERCALL_PAGE: virtual address of the hypercall transfer page. (From a legacy
    /// `__xen_guest` string, converted from its page number as libelf does.)
    public var hypercallPage: UInt64?
    /// VIRT_BASE: virtual address of guest pseudo-physical address 0.
    public var virtBase: UInt64?
    /// PADDR_OFFSET: subtracted from p_paddr to get the pseudo-physical address.
    public var paddrOffset: UInt64?
    /// XEN_VERSION, e.g. "xen-3.0".
    public var xenVersion: String?
    /// GUEST_OS, e.g. "linux".
    public var guestOS: String?
    /// GUEST_VERSION, e.g. "2.6".
    public var guestVersion: String?
    /// LOADER, e.g. "generic".
    public var loader: String?
    /// PAE_MODE: "yes", "no" or "bimodal" (x86-32 only).
    public var paeMode: String?
    /// FEATURES, parsed.
    public var features: XenFeatures?
    /// BSD_SYMTAB: "yes" if the kernel wants its symbol table loaded.
    public var bsdSymtab: String?
    /// HV_START_LOW: lowest start of the hypervisor hole (x86-32 only).
    public var hvStartLow: UInt64?
    /// L1_MFN_VALID mask/value pairs.
    public var l1MFNValid: [L1MFNValidPair]?
    /// SUSPEND_CANCEL: non-zero if cooperative suspend cancellation works.
    public var suspendCancel: UInt64?
    /// INIT_P2M: virtual address where the initial p2m list is to be mapped.
    public var initP2M: UInt64?
    /// MOD_START_PFN: non-zero if the initrd may be passed unmapped, by PFN.
    public var modStartPFN: UInt64?
    /// SUPPORTED_FEATURES: XENFEAT bitmap words (submap 0 first).
    public var supportedFeatures: [UInt32]?
    /// PHYS32_ENTRY: 32-bit physical entry point (PVH only; ignored for PV).
    public var phys32Entry: UInt64?
    /// "Xen" notes of types elfnote.h does not list, in file order.
    public var unknown: [XenNote]

    public init(source: XenNotesSource = .programHeaderNotes) {
        self.source = source
        self.unknown = []
    }

    /// XENFEAT bits the kernel can use: the FEATURES names plus SUPPORTED_FEATURES
    /// submap 0, combined as libelf does.
    public var supportedFeatureBits: UInt32 {
        (features?.supportedBits ?? 0) | (supportedFeatures?.first ?? 0)
    }

    /// XENFEAT bits the kernel cannot run without (the `!` names of FEATURES).
    public var requiredFeatureBits: UInt32 {
        features?.requiredBits ?? 0
    }

    /// Whether the initrd may be placed outside the initial mapping and passed by PFN
    /// (start_info flag SIF_MOD_START_PFN).
    public var acceptsUnmappedInitrd: Bool {
        (modStartPFN ?? 0) != 0
    }
}
