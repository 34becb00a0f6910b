import GuestMemory
import XenABI

/// What a hypercall asks of the vCPU after it returns.
public enum HypercallOutcome: Sendable, Equatable {
    /// Return `value` in rax.
    case value(UInt64)
    /// The handler rewrote the whole context (iret); rax is already set.
    case contextReplaced
    /// Return 0, then sleep until an event is pending or the timer fires (SCHEDOP_block).
    case block
    /// Return 0, then sleep until one of `ports` is pending or `deadline` (SCHEDOP_poll).
    case poll(ports: [UInt32], deadline: UInt64?)
    /// Return 0 and let others run.
    case yield
    /// The domain has shut down or crashed; the vCPU stops.
    case stop
}

/// One hypercall being handled: the calling vCPU, its arguments and its context.
public struct HypercallInvocation {
    public let vcpu: VCPU
    public let number: UInt64
    /// Arguments 1–5 (rdi, rsi, rdx, r10, r8).
    public let arguments: [UInt64]
    /// The caller's registers; iret replaces them.
    public var context: GuestContext
    /// Whether this call is an entry of a multicall batch.
    public let inMulticall: Bool

    public var domain: Domain { vcpu.domain }

    public func argument(_ index: Int) -> UInt64 { index < arguments.count ? arguments[index] : 0 }

    /// The guest's current address space, for copy_from_guest/copy_to_guest.
    public func guestMemory() throws(XenError) -> GuestPageWalker {
        guard let root = vcpu.activeTable else { throw .EFAULT }
        return GuestPageWalker(memory: domain.memory, root: root)
    }

    /// copy_from_guest of `count` bytes.
    public func copyIn(_ address: UInt64, count: Int) throws(XenError) -> [UInt8] {
        try guestMemory().read(GuestVirtualAddress(address), count: count)
    }

    /// copy_to_guest.
    public func copyOut(_ bytes: [UInt8], to address: UInt64) throws(XenError) {
        try guestMemory().write(bytes, to: GuestVirtualAddress(address))
    }
}

/// A hypercall handler: decode arguments, operate on hypervisor state, encode results.
/// Errors are Xen errno values; `Hypercalls.dispatch` turns them into -errno.
public typealias HypercallHandler = @Sendable (inout HypercallInvocation) throws(XenError) -> HypercallOutcome

/// The hypercall table: one entry per implemented hypercall, in one place. Everything
/// else returns -ENOSYS and says so in the log.
public enum Hypercalls {
    static let table: [Hypercall: HypercallHandler] = [
        .setTrapTable: GuestState.setTrapTable,
        .mmuUpdate: MMUOps.mmuUpdate,
        .setGDT: DescriptorTables.setGDT,
        .stackSwitch: GuestState.stackSwitch,
        .setCallbacks: CallbackOps.setCallbacks,
        .fpuTaskswitch: GuestState.fpuTaskswitch,
        .setDebugreg: GuestState.setDebugreg,
        .getDebugreg: GuestState.getDebugreg,
        .updateDescriptor: DescriptorTables.updateDescriptor,
        .memoryOp: MemoryOps.memoryOp,
        .multicall: Multicall.multicall,
        .updateVAMapping: MMUOps.updateVAMapping,
        .setTimerOp: VCPUOps.setTimerOp,
        .xenVersion: XenVersion.xenVersion,
        .consoleIO: ConsoleIOOp.consoleIO,
        .vmAssist: GuestState.vmAssist,
        .iret: Iret.iret,
        .vcpuOp: VCPUOps.vcpuOp,
        .setSegmentBase: GuestState.setSegmentBase,
        .mmuextOp: MMUOps.mmuextOp,
        .schedOp: SchedOps.schedOp,
        .callbackOp: CallbackOps.callbackOp,
        .eventChannelOp: EventChannelOps.eventChannelOp,
        .physdevOp: PhysdevOps.physdevOp,
        .grantTableOp: GrantTableOps.grantTableOp,
    ]

    /// Handles the hypercall in `context.rax` for `vcpu`: the entry point from the
    /// machine layer (a hypercall-page exit or a `syscall` from guest kernel mode).
    public static func handle(vcpu: VCPU, context: inout GuestContext) -> HypercallOutcome {
        let arguments = [context.rdi, context.rsi, context.rdx, context.r10, context.r8]
        var invocation = HypercallInvocation(vcpu: vcpu, number: context.rax, arguments: arguments,
                                             context: context, inMulticall: false)
        let outcome = dispatch(&invocation)
        context = invocation.context
        switch outcome {
        case let .value(value): context.rax = value
        case .block, .poll, .yield: context.rax = 0
        case .contextReplaced, .stop: break
        }
        return outcome
    }

    /// Runs one hypercall (also used for multicall entries).
    static func dispatch(_ invocation: inout HypercallInvocation) -> HypercallOutcome {
        let vcpu = invocation.vcpu
        let number = invocation.number
        vcpu.count(hypercall: number)
        let tracing = vcpu.domain.trace.load(ordering: .relaxed)
        guard let call = Hypercall(rawValue: number), let handler = table[call] else {
            vcpu.domain.log.log(.debug, "\(vcpu.name): \(Hypercall.name(of: number)) is not implemented: -ENOSYS")
            return .value(XenError.ENOSYS.hypercallReturnValue)
        }
        let outcome: HypercallOutcome
        do {
            outcome = try handler(&invocation)
        } catch {
            if tracing { vcpu.domain.log.log(.trace, "\(vcpu.name): \(call.name)(\(argumentList(invocation))) = -\(error.name)") }
            return .value(error.hypercallReturnValue)
        }
        if tracing {
            let result: String
            if case let .value(value) = outcome { result = hex(value) } else { result = "\(outcome)" }
            vcpu.domain.log.log(.trace, "\(vcpu.name): \(call.name)(\(argumentList(invocation))) = \(result)")
        }
        return outcome
    }

    private static func argumentList(_ invocation: HypercallInvocation) -> String {
        invocation.arguments.map(hex).joined(separator: ", ")
    }
}

/// "0x..." for logs.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
