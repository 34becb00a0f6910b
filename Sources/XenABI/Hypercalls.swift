/// Hypercall numbers (public/xen.h, `__HYPERVISOR_*`).
public enum Hypercall: UInt64, Sendable, CaseIterable {
    case setTrapTable = 0
    case mmuUpdate = 1
    case setGDT = 2
    case stackSwitch = 3
    case setCallbacks = 4
    case fpuTaskswitch = 5
    case schedOpCompat = 6
    case platformOp = 7
    case setDebugreg = 8
    case getDebugreg = 9
    case updateDescriptor = 10
    case memoryOp = 12
    case multicall = 13
    case updateVAMapping = 14
    case setTimerOp = 15
    case eventChannelOpCompat = 16
    case xenVersion = 17
    case consoleIO = 18
    case physdevOpCompat = 19
    case grantTableOp = 20
    case vmAssist = 21
    case updateVAMappingOtherdomain = 22
    case iret = 23
    case vcpuOp = 24
    case setSegmentBase = 25
    case mmuextOp = 26
    case xsmOp = 27
    case nmiOp = 28
    case schedOp = 29
    case callbackOp = 30
    case xenoprofOp = 31
    case eventChannelOp = 32
    case physdevOp = 33
    case hvmOp = 34
    case sysctl = 35
    case domctl = 36
    case kexecOp = 37
    case tmemOp = 38
    case argoOp = 39
    case xenpmuOp = 40
    case dmOp = 41
    case hypfsOp = 42

    /// Xen's name for the hypercall, as in `__HYPERVISOR_<name>`.
    public var name: String {
        switch self {
        case .setTrapTable: return "set_trap_table"
        case .mmuUpdate: return "mmu_update"
        case .setGDT: return "set_gdt"
        case .stackSwitch: return "stack_switch"
        case .setCallbacks: return "set_callbacks"
        case .fpuTaskswitch: return "fpu_taskswitch"
        case .schedOpCompat: return "sched_op_compat"
        case .platformOp: return "platform_op"
        case .setDebugreg: return "set_debugreg"
        case .getDebugreg: return "get_debugreg"
        case .updateDescriptor: return "update_descriptor"
        case .memoryOp: return "memory_op"
        case .multicall: return "multicall"
        case .updateVAMapping: return "update_va_mapping"
        case .setTimerOp: return "set_timer_op"
        case .eventChannelOpCompat: return "event_channel_op_compat"
        case .xenVersion: return "xen_version"
        case .consoleIO: return "console_io"
        case .physdevOpCompat: return "physdev_op_compat"
        case .grantTableOp: return "grant_table_op"
        case .vmAssist: return "vm_assist"
        case .updateVAMappingOtherdomain: return "update_va_mapping_otherdomain"
        case .iret: return "iret"
        case .vcpuOp: return "vcpu_op"
        case .setSegmentBase: return "set_segment_base"
        case .mmuextOp: return "mmuext_op"
        case .xsmOp: return "xsm_op"
        case .nmiOp: return "nmi_op"
        case .schedOp: return "sched_op"
        case .callbackOp: return "callback_op"
        case .xenoprofOp: return "xenoprof_op"
        case .eventChannelOp: return "event_channel_op"
        case .physdevOp: return "physdev_op"
        case .hvmOp: return "hvm_op"
        case .sysctl: return "sysctl"
        case .domctl: return "domctl"
        case .kexecOp: return "kexec_op"
        case .tmemOp: return "tmem_op"
        case .argoOp: return "argo_op"
        case .xenpmuOp: return "xenpmu_op"
        case .dmOp: return "dm_op"
        case .hypfsOp: return "hypfs_op"
        }
    }

    /// A printable name for any hypercall number, known or not.
    public static func name(of number: UInt64) -> String {
        Hypercall(rawValue: number)?.name ?? "hypercall_\(number)"
    }
}
