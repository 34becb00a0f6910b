import Hypervisor
import KVM

/// How a vCPU's crash is reported: the reason, its registers and stack
/// (`CrashReport`), and its flight recorder; for a triple fault, what is known of the
/// state it died in.
extension VCPURunner {
    /// A shutdown exit (a triple fault). KVM on AMD resets a vCPU at one (the VMCB is
    /// undefined after it): its registers then say nothing, and the report shows the
    /// last state the host resumed the guest with instead (the core may have resumed it
    /// since), the exit before it with what its CR3 names now, and the flight
    /// recorders, this vCPU's and the others'.
    func reportTripleFault() {
        let before = previousExit.map {
            "; the exit before it: \($0.exit), rip \(hex($0.rip)) then, cr3 " + CrashReport.describeRoot(cr3: $0.cr3, vcpu: vcpu, probe: $0.rip)
        } ?? ""
        let sregs = cpu.specialRegisters
        let reset = sregs.cr0 & 1 == 0 || (cpu.registers.rip == 0xfff0 && sregs.cs.selector == 0xf000)
        let slots = "; " + CrashReport.hypervisorSlots(of: vcpu)
        if reset, let lastResumed {
            crash("triple fault (KVM reset the vCPU; shown: the last state the host resumed the guest with\(before)\(slots))",
                  context: lastResumed)
        } else {
            crash("triple fault (" + (before + slots).dropFirst(2) + ")")
        }
        // What the other vCPUs did meanwhile (a snapshot: they may still be running).
        guard recorder != nil else { return }
        for other in domain.vcpus where other !== vcpu {
            let events = FlightRecorder(memory: domain.memory, area: area, vcpu: other.id).lines()
            guard !events.isEmpty else { continue }
            crashReport? += "\n  \(other.name)'s flight recorder meanwhile:\n" + events.joined(separator: "\n")
        }
    }

    /// Crashes the domain for `reason`; the first crash of the vCPU keeps its report
    /// (registers from `saved`, else as KVM holds them, the stack, the flight recorder).
    func crash(_ reason: String, context saved: GuestContext? = nil) {
        domain.crash("\(vcpu.name): \(reason)")
        guard crashReport == nil else { return }
        crashReport = CrashReport.describe(vcpu: vcpu, reason: reason, context: saved ?? liveContext())
        if let events = recorder?.lines(), !events.isEmpty {
            crashReport? += "\n  its last ways into and out of the core and the host (flight recorder, oldest first):\n"
                + events.joined(separator: "\n")
        }
    }

    /// The vCPU's general registers, RIP and RFLAGS as KVM holds them now.
    func liveContext() -> GuestContext {
        let regs = cpu.registers
        var context = GuestContext()
        context.rax = regs.rax; context.rbx = regs.rbx; context.rcx = regs.rcx; context.rdx = regs.rdx
        context.rsi = regs.rsi; context.rdi = regs.rdi; context.rsp = regs.rsp; context.rbp = regs.rbp
        context.r8 = regs.r8; context.r9 = regs.r9; context.r10 = regs.r10; context.r11 = regs.r11
        context.r12 = regs.r12; context.r13 = regs.r13; context.r14 = regs.r14; context.r15 = regs.r15
        context.rip = regs.rip; context.rflags = regs.rflags
        return context
    }

    /// Signal exits in a row at one RIP after which a vCPU is reported as making no
    /// progress (6 s with the 20 ms watchdog alone).
    static let noProgressExits = 300

    /// At a signal exit: a vCPU found at the same RIP `noProgressExits` times in a row
    /// is reported once, with what KVM holds for it — a guest spinning on one
    /// instruction, or an entry that never retires its first instruction.
    func noteProgress(_ sregs: SpecialRegisters) {
        let regs = cpu.registers
        sameRIPExits = regs.rip == previousExit?.rip ? sameRIPExits + 1 : 0
        guard sameRIPExits == Self.noProgressExits else { return }
        let state = (try? cpu.multiprocessingState()).map { $0 == 0 ? "runnable" : "state \($0)" } ?? "unknown"
        let deadline = localTimer ? ((try? cpu.getMSRs([MSR.tscDeadline]))?.first).map { ", TSC deadline \(hex($0))" } ?? "" : ""
        domain.log.log(.warning, "\(vcpu.name): no progress: at \(hex(regs.rip)) (cs \(hex(UInt64(sregs.cs.selector))), rflags \(hex(regs.rflags))) "
            + "through \(Self.noProgressExits) signal exits; KVM: \(state), \(cpu.hasEventInFlight ? "an event" : "no event") in flight\(deadline)")
    }
}

