import GuestMemory
import XenABI

/// What the vCPU does after the hypervisor handled an exit.
public enum ExitOutcome: Sendable, Equatable {
    /// Return to the guest with the (possibly changed) context.
    case resume
    /// Block until an event is pending or a timer fires.
    case block
    /// Block until one of the ports is pending or the deadline passes.
    case poll(ports: [UInt32], deadline: UInt64?)
    case yield
    /// The domain is finished (shut down or crashed).
    case stop
}

extension Traps {
    /// Handles a hypercall from the guest kernel and maps its outcome.
    public static func hypercall(_ vcpu: VCPU, _ context: inout GuestContext) -> ExitOutcome {
        switch Hypercalls.handle(vcpu: vcpu, context: &context) {
        case .value, .contextReplaced: return .resume
        case .block: return .block
        case let .poll(ports, deadline): return .poll(ports: ports, deadline: deadline)
        case .yield: return .yield
        case .stop: return .stop
        }
    }

    /// Handles an exception the guest raised (the vector's IDT stub left the VM):
    /// hypercall-page exits, privileged-instruction emulation, forced-emulation CPUID,
    /// or a bounce to the guest's own handler.
    public static func exception(_ vcpu: VCPU, _ context: inout GuestContext, vector: UInt8,
                                 errorCode: UInt64, faultAddress: UInt64) -> ExitOutcome {
        let domain = vcpu.domain
        if domain.trace.load(ordering: .relaxed) {
            domain.log.log(.trace, "\(vcpu.name): \(X86Exception.mnemonic(vector)) at \(hex(context.rip)) error \(hex(errorCode))"
                + (vector == X86Exception.pageFault ? " address \(hex(faultAddress))" : ""))
        }
        switch vector {
        case X86Exception.generalProtection:
            if errorCode & 2 != 0 {
                // `int n` through a gate the guest may not use directly.
                return softwareInterrupt(vcpu, &context, vector: UInt8(truncatingIfNeeded: errorCode >> 3), rip: context.rip)
            }
            if errorCode == 0, PrivilegedOps.emulate(vcpu, &context) {
                return domain.isFinished ? .stop : .resume
            }
            inject(vcpu, &context, vector: vector, errorCode: errorCode)
        case X86Exception.invalidOpcode:
            if PrivilegedOps.emulateForcedCPUID(vcpu, &context) { return .resume }
            // Hosts where a ring-3 `int n` raises #UD (PVM) instead of using the gate.
            let bytes = PrivilegedOps.fetch(vcpu, context)
            if bytes.count >= 2, bytes[0] == 0xcd {
                return softwareInterrupt(vcpu, &context, vector: bytes[1], rip: context.rip)
            }
            inject(vcpu, &context, vector: vector)
        case X86Exception.pageFault:
            if vcpu.mode == .kernel, errorCode & 3 == 3, WritablePageTables.emulate(vcpu, &context, faultAddress: faultAddress) {
                return domain.isFinished ? .stop : .resume
            }
            inject(vcpu, &context, vector: vector, errorCode: errorCode, faultAddress: faultAddress)
        case X86Exception.deviceNotAvailable:
            if vcpu.virtualTS {
                vcpu.virtualTS = false
                inject(vcpu, &context, vector: vector)
            }
        case X86Exception.nmi, X86Exception.doubleFault, X86Exception.machineCheck:
            domain.crash("\(vcpu.name): \(X86Exception.mnemonic(vector)) at \(hex(context.rip))")
        case HypercallPage.vector:
            // Through its DPL-3 gate: the saved rip is after the 2-byte `int`.
            return softwareInterrupt(vcpu, &context, vector: vector, rip: context.rip &- 2)
        default:
            if vector >= 32 {
                return softwareInterrupt(vcpu, &context, vector: vector, rip: context.rip &- 2)
            }
            inject(vcpu, &context, vector: vector, errorCode: X86Exception.hasErrorCode(vector) ? errorCode : nil)
        }
        return domain.isFinished ? .stop : .resume
    }

    /// An `int n` at `rip`: a hypercall-page exit, or a software interrupt delivered to
    /// the guest's handler when its trap table allows it from the current mode (DPL 3),
    /// else #GP with the IDT error code, as on Xen.
    static func softwareInterrupt(_ vcpu: VCPU, _ context: inout GuestContext, vector: UInt8, rip: UInt64) -> ExitOutcome {
        let domain = vcpu.domain
        context.rip = rip &+ 2
        if vector == HypercallPage.vector && isHypercallPageExit(vcpu, rip: rip) {
            if vcpu.mode == .kernel { return hypercall(vcpu, &context) }
            // From user mode the stub behaves like Xen's: a system call to the guest kernel.
            userSyscall(vcpu, &context, returnAddress: context.rip, flags: context.rflags)
            return domain.isFinished ? .stop : .resume
        }
        if let entry = vcpu.trapTable[Int(vector)], entry.dpl >= 3 {
            inject(vcpu, &context, vector: vector)
        } else {
            context.rip = rip
            inject(vcpu, &context, vector: X86Exception.generalProtection, errorCode: UInt64(vector) << 3 | 2)
        }
        return domain.isFinished ? .stop : .resume
    }

    /// Whether `rip` is the exit instruction of a hypercall-page stub.
    static func isHypercallPageExit(_ vcpu: VCPU, rip: UInt64) -> Bool {
        let page = vcpu.domain.hypercallPage.load(ordering: .relaxed)
        guard page != 0, rip >= page, rip - page < 4096 else { return false }
        return HypercallPage.isExit(offsetInPage: rip - page)
    }

    /// A `syscall` instruction: a hypercall from guest kernel mode, a system call bounced
    /// to the guest kernel from user mode. `returnAddress` and `flags` are what the CPU
    /// put in rcx and r11.
    public static func syscall(_ vcpu: VCPU, _ context: inout GuestContext, returnAddress: UInt64, flags: UInt64) -> ExitOutcome {
        context.rip = returnAddress
        context.rflags = flags | RFlags.fixed
        if vcpu.mode == .kernel {
            return hypercall(vcpu, &context)
        }
        userSyscall(vcpu, &context, returnAddress: returnAddress, flags: flags)
        return vcpu.domain.isFinished ? .stop : .resume
    }
}
