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
            if isHypercallPageExit(vcpu, context) {
                if vcpu.mode == .kernel {
                    context.rip &+= UInt64(HypercallPage.exitInstruction.count)
                    return hypercall(vcpu, &context)
                }
                // From user mode the stub behaves like Xen's: a system call to the guest kernel.
                userSyscall(vcpu, &context, returnAddress: context.rip &+ 2, flags: context.rflags)
                return domain.isFinished ? .stop : .resume
            }
            if errorCode & 2 != 0 {
                // `int n` through a gate the guest may not use directly: deliver it to the
                // guest's handler if its trap table allows software interrupts.
                let target = UInt8(truncatingIfNeeded: errorCode >> 3)
                if let entry = vcpu.trapTable[Int(target)], entry.dpl >= 3 {
                    context.rip &+= 2
                    inject(vcpu, &context, vector: target)
                    return domain.isFinished ? .stop : .resume
                }
            }
            if errorCode == 0, PrivilegedOps.emulate(vcpu, &context) {
                return domain.isFinished ? .stop : .resume
            }
            inject(vcpu, &context, vector: vector, errorCode: errorCode)
        case X86Exception.invalidOpcode:
            if PrivilegedOps.emulateForcedCPUID(vcpu, &context) { return .resume }
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
        default:
            inject(vcpu, &context, vector: vector, errorCode: X86Exception.hasErrorCode(vector) ? errorCode : nil)
        }
        return domain.isFinished ? .stop : .resume
    }

    /// Whether the fault is the exit instruction of a hypercall-page stub.
    static func isHypercallPageExit(_ vcpu: VCPU, _ context: GuestContext) -> Bool {
        let page = vcpu.domain.hypercallPage.load(ordering: .relaxed)
        guard page != 0, context.rip >= page, context.rip - page < 4096 else { return false }
        return HypercallPage.isExit(offsetInPage: context.rip - page)
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
