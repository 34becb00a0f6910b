/// Constants of Xen's public ABI, grouped by header. Values are Xen's; names follow
/// Xen's with the prefix dropped.

/// Domain ids (public/xen.h).
public enum DomainID {
    public static let first: UInt16 = 0
    /// Largest id of a real domain.
    public static let firstReserved: UInt16 = 0x7ff0
    public static let `self`: UInt16 = 0x7ff0
    public static let io: UInt16 = 0x7ff1
    public static let xen: UInt16 = 0x7ff2
    public static let cow: UInt16 = 0x7ff3
    public static let invalid: UInt16 = 0x7ff4
    public static let idle: UInt16 = 0x7fff
}

/// Segment selectors reserved by Xen in every PV guest's GDT
/// (public/arch-x86/xen-x86_64.h).
public enum FlatSelector {
    public static let ring0CS64: UInt16 = 0xe008
    public static let ring0DS64: UInt16 = 0xe010
    public static let ring3CS32: UInt16 = 0xe023
    public static let ring3DS32: UInt16 = 0xe02b
    public static let ring3SS32: UInt16 = 0xe02b
    public static let ring3CS64: UInt16 = 0xe033
    public static let ring3DS64: UInt16 = 0x0000
    public static let ring3SS64: UInt16 = 0xe02b
    public static let kernelCS64: UInt16 = ring3CS64
    public static let kernelSS64: UInt16 = ring3SS64
    public static let kernelDS64: UInt16 = ring3DS64
    public static let userCS64: UInt16 = ring3CS64
    public static let userSS64: UInt16 = ring3SS64
    public static let userDS64: UInt16 = ring3DS64
    /// First GDT entry Xen reserves: 14 pages of 512 descriptors (arch-x86/xen.h).
    public static let firstReservedGDTEntry = 14 * 512
    /// First GDT byte Xen reserves.
    public static let firstReservedGDTByte = firstReservedGDTEntry * 8
    /// Highest number of guest GDT entries `set_gdt` accepts.
    public static let maxGuestGDTEntries = firstReservedGDTEntry
}

/// The x86-64 PV hypervisor hole and machine-to-phys table (public/arch-x86/xen-x86_64.h).
public enum HypervisorVirtualLayout {
    public static let hypervisorVirtStart: UInt64 = 0xffff_8000_0000_0000
    public static let hypervisorVirtEnd: UInt64 = 0xffff_8800_0000_0000
    public static let machToPhysStart: UInt64 = 0xffff_8000_0000_0000
    public static let machToPhysEnd: UInt64 = 0xffff_8040_0000_0000
    /// L4 slots owned by the hypervisor in every guest L4 (256 ..< 272).
    public static let firstHypervisorL4Slot = 256
    public static let endHypervisorL4Slot = 272
}

/// `SCHEDOP_*` (public/sched.h).
public enum SchedOp {
    public static let yield: UInt64 = 0
    public static let block: UInt64 = 1
    public static let shutdown: UInt64 = 2
    public static let poll: UInt64 = 3
    public static let remoteShutdown: UInt64 = 4
    public static let shutdownCode: UInt64 = 5
    public static let watchdog: UInt64 = 6
    public static let pinOverride: UInt64 = 7
}

/// `SHUTDOWN_*` reasons (public/sched.h).
public enum ShutdownReason: UInt32, Sendable, CustomStringConvertible {
    case poweroff = 0
    case reboot = 1
    case suspend = 2
    case crash = 3
    case watchdog = 4
    case softReset = 5

    public var description: String {
        switch self {
        case .poweroff: return "poweroff"
        case .reboot: return "reboot"
        case .suspend: return "suspend"
        case .crash: return "crash"
        case .watchdog: return "watchdog"
        case .softReset: return "soft_reset"
        }
    }
}

/// `CONSOLEIO_*` (public/xen.h).
public enum ConsoleIO {
    public static let write: UInt64 = 0
    public static let read: UInt64 = 1
}

/// `XENVER_*` (public/version.h).
public enum XenVersionCommand {
    public static let version: UInt64 = 0
    public static let extraversion: UInt64 = 1
    public static let compileInfo: UInt64 = 2
    public static let capabilities: UInt64 = 3
    public static let changeset: UInt64 = 4
    public static let platformParameters: UInt64 = 5
    public static let getFeatures: UInt64 = 6
    public static let pagesize: UInt64 = 7
    public static let guestHandle: UInt64 = 8
    public static let commandline: UInt64 = 9
    public static let buildID: UInt64 = 10
}

/// `XENFEAT_*` bit numbers (public/features.h).
public enum XenFeature {
    public static let writablePageTables = 0
    public static let writableDescriptorTables = 1
    public static let autoTranslatedPhysmap = 2
    public static let supervisorModeKernel = 3
    public static let paePgdirAbove4GB = 4
    public static let mmuPtUpdatePreserveAD = 5
    public static let highmemAssist = 6
    public static let gnttabMapAvailBits = 7
    public static let hvmCallbackVector = 8
    public static let hvmSafePVClock = 9
    public static let hvmPIRQs = 10
    public static let dom0 = 11
    public static let grantMapIdentity = 12
    public static let memoryOpVnodeSupported = 13
    public static let ARMSMCCCSupported = 14
    public static let linuxRSDPUnrestricted = 15
    public static let notDirectMapped = 16
    public static let directMapped = 17
    public static let runstatePhysArea = 18
    public static let vcpuTimePhysArea = 19
}

/// `VMASST_*` (public/xen.h).
public enum VMAssist {
    public static let cmdEnable: UInt64 = 0
    public static let cmdDisable: UInt64 = 1
    public static let typeFourGBSegments: UInt64 = 0
    public static let typeFourGBSegmentsNotify: UInt64 = 1
    public static let typeWritablePagetables: UInt64 = 2
    public static let typePaeExtendedCR3: UInt64 = 3
    public static let typeArchRetainedWrites: UInt64 = 4
    public static let typeRunstateUpdateFlag: UInt64 = 5
    public static let typeM2PStrict: UInt64 = 32
}

/// `CALLBACKTYPE_*`, `CALLBACKOP_*`, `CALLBACKF_*` (public/callback.h).
public enum CallbackType: UInt16, Sendable, CaseIterable {
    case event = 0
    case failsafe = 1
    case syscall = 2
    case nmi = 4
    case sysenter = 5
    case syscall32 = 7
}

public enum CallbackOp {
    public static let register: UInt64 = 0
    public static let unregister: UInt64 = 1
    /// CALLBACKF_mask_events: mask events while the callback runs.
    public static let flagMaskEvents: UInt16 = 1
}

/// `VCPUOP_*` (public/vcpu.h).
public enum VCPUOp {
    public static let initialise: UInt64 = 0
    public static let up: UInt64 = 1
    public static let down: UInt64 = 2
    public static let isUp: UInt64 = 3
    public static let getRunstateInfo: UInt64 = 4
    public static let registerRunstateMemoryArea: UInt64 = 5
    public static let setPeriodicTimer: UInt64 = 6
    public static let stopPeriodicTimer: UInt64 = 7
    public static let setSingleshotTimer: UInt64 = 8
    public static let stopSingleshotTimer: UInt64 = 9
    public static let registerVCPUInfo: UInt64 = 10
    public static let sendNMI: UInt64 = 11
    public static let getPhysid: UInt64 = 12
    public static let registerVCPUTimeMemoryArea: UInt64 = 13
    public static let registerRunstatePhysArea: UInt64 = 14
    public static let registerVCPUTimePhysArea: UInt64 = 15
    /// VCPU_SSHOTTMR_future: fail with -ETIME if the deadline has passed.
    public static let singleshotFuture: UInt32 = 1
}

/// `XENMEM_*` (public/memory.h).
public enum MemoryOp {
    public static let increaseReservation: UInt64 = 0
    public static let decreaseReservation: UInt64 = 1
    public static let maximumRAMPage: UInt64 = 2
    public static let currentReservation: UInt64 = 3
    public static let maximumReservation: UInt64 = 4
    public static let machphysMFNList: UInt64 = 5
    public static let populatePhysmap: UInt64 = 6
    public static let addToPhysmap: UInt64 = 7
    public static let memoryMap: UInt64 = 9
    public static let machineMemoryMap: UInt64 = 10
    public static let exchange: UInt64 = 11
    public static let machphysMapping: UInt64 = 12
    public static let maximumGPFN: UInt64 = 14
    public static let machphysCompatMFNList: UInt64 = 25
    public static let getSharingFreedPages: UInt64 = 18
    /// The command is in the low 6 bits; the rest can carry a continuation.
    public static let commandMask: UInt64 = 0x3f
}

/// Page-table update commands (public/xen.h `MMU_*`).
public enum MMUUpdateCommand {
    public static let normalPTUpdate: UInt64 = 0
    public static let machphysUpdate: UInt64 = 1
    public static let ptUpdatePreserveAD: UInt64 = 2
    public static let ptUpdateNoTranslate: UInt64 = 3
}

/// `MMUEXT_*` (public/xen.h).
public enum MMUExtCommand {
    public static let pinL1Table: UInt32 = 0
    public static let pinL2Table: UInt32 = 1
    public static let pinL3Table: UInt32 = 2
    public static let pinL4Table: UInt32 = 3
    public static let unpinTable: UInt32 = 4
    public static let newBaseptr: UInt32 = 5
    public static let tlbFlushLocal: UInt32 = 6
    public static let invlpgLocal: UInt32 = 7
    public static let tlbFlushMulti: UInt32 = 8
    public static let invlpgMulti: UInt32 = 9
    public static let tlbFlushAll: UInt32 = 10
    public static let invlpgAll: UInt32 = 11
    public static let flushCacheGlobal: UInt32 = 12
    public static let setLDT: UInt32 = 13
    public static let newUserBaseptr: UInt32 = 15
    public static let clearPage: UInt32 = 16
    public static let copyPage: UInt32 = 17
    public static let markSuper: UInt32 = 19
    public static let unmarkSuper: UInt32 = 20
}

/// `UVMF_*` flags of update_va_mapping (public/xen.h).
public enum UVMF {
    public static let none: UInt64 = 0
    public static let tlbFlush: UInt64 = 1
    public static let invlpg: UInt64 = 2
    public static let flushTypeMask: UInt64 = 3
    public static let multi: UInt64 = 0
    public static let local: UInt64 = 0
    public static let all: UInt64 = 4
}

/// `SEGBASE_*` (public/arch-x86/xen-x86_64.h).
public enum SegmentBase {
    public static let fs: UInt64 = 0
    public static let gsUser: UInt64 = 1
    public static let gsKernel: UInt64 = 2
    public static let gsUserSelector: UInt64 = 3
}

/// `VGCF_*` (public/arch-x86/xen.h).
public enum VGCF {
    public static let inKernel: UInt64 = 1 << 2
    public static let online: UInt64 = 1 << 5
    public static let inSyscall: UInt64 = 1 << 8
    public static let failsafeDisablesEvents: UInt64 = 1 << 3
    public static let syscallDisablesEvents: UInt64 = 1 << 4
}

/// `EVTCHNOP_*` (public/event_channel.h).
public enum EventChannelOp {
    public static let bindInterdomain: UInt64 = 0
    public static let bindVIRQ: UInt64 = 1
    public static let bindPIRQ: UInt64 = 2
    public static let close: UInt64 = 3
    public static let send: UInt64 = 4
    public static let status: UInt64 = 5
    public static let allocUnbound: UInt64 = 6
    public static let bindIPI: UInt64 = 7
    public static let bindVCPU: UInt64 = 8
    public static let unmask: UInt64 = 9
    public static let reset: UInt64 = 10
    public static let initControl: UInt64 = 11
    public static let expandArray: UInt64 = 12
    public static let setPriority: UInt64 = 13
    public static let resetCont: UInt64 = 14
}

/// `EVTCHNSTAT_*` (public/event_channel.h).
public enum EventChannelStatus {
    public static let closed: UInt32 = 0
    public static let unbound: UInt32 = 1
    public static let interdomain: UInt32 = 2
    public static let pirq: UInt32 = 3
    public static let virq: UInt32 = 4
    public static let ipi: UInt32 = 5
}

/// `VIRQ_*` (public/xen.h).
public enum VIRQ {
    public static let timer: UInt32 = 0
    public static let debug: UInt32 = 1
    public static let console: UInt32 = 2
    public static let domExc: UInt32 = 3
    public static let tbuf: UInt32 = 4
    public static let debugger: UInt32 = 6
    public static let xenoprof: UInt32 = 7
    public static let conRing: UInt32 = 8
    public static let pcpuState: UInt32 = 9
    public static let memEvent: UInt32 = 10
    public static let argo: UInt32 = 11
    public static let enomem: UInt32 = 12
    public static let xenpmu: UInt32 = 13
    public static let count: UInt32 = 24
    /// Per-vCPU VIRQs (bound per vCPU); the rest are global (bound on vCPU 0).
    public static func isPerVCPU(_ virq: UInt32) -> Bool {
        virq == timer || virq == debug || virq == xenoprof || virq == xenpmu
    }
}

/// `GNTTABOP_*` (public/grant_table.h).
public enum GrantTableOp {
    public static let mapGrantRef: UInt64 = 0
    public static let unmapGrantRef: UInt64 = 1
    public static let setupTable: UInt64 = 2
    public static let dumpTable: UInt64 = 3
    public static let transfer: UInt64 = 4
    public static let copy: UInt64 = 5
    public static let querySize: UInt64 = 6
    public static let unmapAndReplace: UInt64 = 7
    public static let setVersion: UInt64 = 8
    public static let getStatusFrames: UInt64 = 9
    public static let getVersion: UInt64 = 10
    public static let swapGrantRef: UInt64 = 11
    public static let cacheFlush: UInt64 = 12
}

/// `PHYSDEVOP_*` (public/physdev.h).
public enum PhysdevOp {
    public static let eoi: UInt64 = 12
    public static let pirqEOIGMFN: UInt64 = 17
    public static let irqStatusQuery: UInt64 = 5
    public static let setIOPL: UInt64 = 6
    public static let setIOBitmap: UInt64 = 7
    public static let pirqEOIGMFNv2: UInt64 = 28
}

/// `SIF_*` start_info flags (public/xen.h).
public enum StartInfoFlags {
    public static let privileged: UInt32 = 1 << 0
    public static let initDomain: UInt32 = 1 << 1
    public static let multibootModule: UInt32 = 1 << 2
    public static let modStartPFN: UInt32 = 1 << 3
    public static let virtP2MForTools: UInt32 = 1 << 4
}

/// Trap numbers that push an error code (x86 architecture).
public enum X86Exception {
    public static let divideError: UInt8 = 0
    public static let debug: UInt8 = 1
    public static let nmi: UInt8 = 2
    public static let breakpoint: UInt8 = 3
    public static let overflow: UInt8 = 4
    public static let bounds: UInt8 = 5
    public static let invalidOpcode: UInt8 = 6
    public static let deviceNotAvailable: UInt8 = 7
    public static let doubleFault: UInt8 = 8
    public static let invalidTSS: UInt8 = 10
    public static let segmentNotPresent: UInt8 = 11
    public static let stackFault: UInt8 = 12
    public static let generalProtection: UInt8 = 13
    public static let pageFault: UInt8 = 14
    public static let floatingPoint: UInt8 = 16
    public static let alignmentCheck: UInt8 = 17
    public static let machineCheck: UInt8 = 18
    public static let simd: UInt8 = 19
    public static let virtualization: UInt8 = 20
    public static let controlProtection: UInt8 = 21

    /// Whether the CPU pushes an error code for `vector` (8, 10–14, 17, 21).
    public static func hasErrorCode(_ vector: UInt8) -> Bool {
        switch vector {
        case 8, 10, 11, 12, 13, 14, 17, 21: return true
        default: return false
        }
    }

    /// Short mnemonic, e.g. "#PF".
    public static func mnemonic(_ vector: UInt8) -> String {
        // A switch, not a dictionary: this names every exception exit's counter.
        switch vector {
        case 0: return "#DE"
        case 1: return "#DB"
        case 2: return "NMI"
        case 3: return "#BP"
        case 4: return "#OF"
        case 5: return "#BR"
        case 6: return "#UD"
        case 7: return "#NM"
        case 8: return "#DF"
        case 10: return "#TS"
        case 11: return "#NP"
        case 12: return "#SS"
        case 13: return "#GP"
        case 14: return "#PF"
        case 16: return "#MF"
        case 17: return "#AC"
        case 18: return "#MC"
        case 19: return "#XM"
        case 20: return "#VE"
        case 21: return "#CP"
        default: return "vector \(vector)"
        }
    }
}

/// x86 page-table entry bits (as Xen's page.h uses them).
public enum PTE {
    public static let present: UInt64 = 1 << 0
    public static let rw: UInt64 = 1 << 1
    public static let user: UInt64 = 1 << 2
    public static let pwt: UInt64 = 1 << 3
    public static let pcd: UInt64 = 1 << 4
    public static let accessed: UInt64 = 1 << 5
    public static let dirty: UInt64 = 1 << 6
    public static let pse: UInt64 = 1 << 7
    public static let pat: UInt64 = 1 << 7
    public static let global: UInt64 = 1 << 8
    public static let avail: UInt64 = 0x7 << 9
    /// _PAGE_GUEST_KERNEL (x86_64/page.h): marks entries Xen made user-accessible for the guest kernel.
    public static let guestKernel: UInt64 = 1 << 52
    /// _PAGE_GNTTAB: Xen's internal marker for grant mappings; never allowed from a guest.
    public static let grantTable: UInt64 = 1 << 62
    public static let nx: UInt64 = 1 << 63
    /// Physical-address bits of an entry (bits 12..51).
    public static let addressMask: UInt64 = 0x000f_ffff_ffff_f000
    /// Available-to-software bits in the high word (bits 52..62).
    public static let availHigh: UInt64 = 0x7ff0_0000_0000_0000
}

/// Grant-table entry flags, GNTST_* statuses and GNTCOPY_* flags (public/grant_table.h).
public enum GrantFlags {
    public static let typeMask: UInt16 = 3
    public static let permitAccess: UInt16 = 1
    public static let readonly: UInt16 = 1 << 2
    public static let reading: UInt16 = 1 << 3
    public static let writing: UInt16 = 1 << 4
    public static let subPage: UInt16 = 1 << 8
    /// Size of a v1 entry.
    public static let entrySize = 8
    public static let entriesPerFrame = 512
}

public enum GrantStatus: Int16, Sendable {
    case okay = 0
    case generalError = -1
    case badDomain = -2
    case badGrantReference = -3
    case badHandle = -4
    case badVirtualAddress = -5
    case badDeviceAddress = -6
    case noDeviceSpace = -7
    case permissionDenied = -8
    case badPage = -9
    case badCopyArgument = -10
    case addressTooBig = -11
    case tryAgain = -12
    case noSpace = -13
}

public enum GrantCopyFlags {
    public static let sourceGrantReference: UInt16 = 1 << 0
    public static let destinationGrantReference: UInt16 = 1 << 1
}
