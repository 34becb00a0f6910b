import Foundation
import GuestMemory
import Hypervisor
import KVM
import Ring0Core
import XenABI

/// The exit loop of one vCPU, on its own thread.
///
/// Every entry into the hypervisor is a ring-0 stub exit: an exception or interrupt
/// vector's IDT stub, the `syscall` stub, or the apply routine asking for more work.
/// The runner turns the exit into a `GuestContext`, lets the hypervisor core handle
/// it, then resumes through the stub's `iretq` with a rewritten frame — first running
/// the apply routine if page-table stores, TLB flushes, a CR3 or segment-base change
/// are needed (docs/ARCHITECTURE.md, "Machine").
final class VCPURunner: @unchecked Sendable {
    let vcpu: VCPU
    let cpu: VirtualCPU
    let area: HypervisorArea
    let wakeup: Wakeup
    var domain: Domain { vcpu.domain }

    var timer: ThreadTimer?
    /// Operations still to run in the VM when the buffer overflowed.
    private var pendingOperations: [(UInt64, UInt64, UInt64)] = []
    private var pendingRestore: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    var lastTimeUpdate: UInt64 = 0
    /// The user-mode CS/SS last returned to (the syscall stub does not record them).
    private var userCS = FlatSelector.userCS64
    private var userSS = FlatSelector.userSS64
    var crashReport: String?
    /// The user selectors last published to the core (`VCPU.resumedUserSelectors`).
    var publishedUserCS: UInt16 = 0
    var publishedUserSS: UInt16 = 0
    /// The context the vCPU was last resumed with (for the failsafe callback, when the
    /// CPU refuses it).
    var lastResumed: GuestContext?

    /// Guest RIP samples (`DomainMachine.sampleInterval`): host nanoseconds since the
    /// vCPU started, and where it was.
    private(set) var samples: [GuestSample] = []
    private let sampling: Bool
    private var startedAt: UInt64 = 0
    /// The vCPU's flight recorder, kept where ring 0 runs natively (`FlightRecorder`).
    let recorder: FlightRecorder?

    /// Whether the guest's single-shot timer runs on the vCPU's local APIC, inside the
    /// VM (`FastTimer`); else the host's thread timer times it.
    let localTimer: Bool
    /// The deadline the host last armed the local APIC timer for (0: none).
    var armedLocalDeadline: UInt64 = 0
    /// Signal exits in a row that found the vCPU at the same RIP (`noteProgress`).
    var sameRIPExits = 0

    init(vcpu: VCPU, cpu: VirtualCPU, area: HypervisorArea, sampleInterval: UInt64? = nil, localTimer: Bool = false) throws(KVMError) {
        self.vcpu = vcpu
        self.cpu = cpu
        self.area = area
        self.localTimer = localTimer
        self.sampling = sampleInterval != nil
        self.arming = TimerArming(watchdog: sampleInterval ?? TimerArming.watchdog)
        self.wakeup = try Wakeup(cpu: cpu)
        self.recorder = area.coreTraps ? FlightRecorder(memory: vcpu.domain.memory, area: area, vcpu: vcpu.id) : nil
        recorder?.enable(true)
        vcpu.waker.withLock { $0 = wakeup }
    }

    // MARK: Loop

    func run() {
        cpu.bindCurrentThread()
        startedAt = HostTime.monotonic()
        do { timer = try ThreadTimer() } catch {
            domain.log.log(.warning, "\(vcpu.name): no host timer (\(error)); guest timers fire only at the next exit")
        }
        vcpu.enableLocalTimer(localTimer)
        while !domain.isFinished {
            syncCoreEnabled()
            if (!vcpu.online || domain.isPaused) && !stoppedInsideCore {
                // Down (VCPUOP_down), never started, or the domain is paused: wait.
                wakeup.wait(until: nil, now: domain.clock.monotonicNanoseconds())
                continue
            }
            if let start = vcpu.startContext {
                vcpu.startContext = nil
                startFrom(start)
                if domain.isFinished { break }
            }
            wakeup.inGuest.store(true, ordering: .sequentiallyConsistent)
            if atGuestLevel() && needsAttention() { enterKickStub() }
            armTimer()   // after the kick: a kick put off asks for a retry
            armLocalTimer()
            let entered = HostTime.monotonic()
            if let exitedAt {
                let blocked = vcpu.blockedTime &- blockedAtExit
                let spent = entered &- exitedAt
                vcpu.chargeExit(spent > blocked ? spent - blocked : 0)
            }
            if let recorder {
                let regs = cpu.registers
                recorder.record(CoreLayout.recordHostResume, rip: regs.rip, cr3: cpu.cr3, rsp: regs.rsp)
            }
            let exit = cpu.runOnce()
            let now = HostTime.monotonic()
            vcpu.cpuTime.add(now &- entered, ordering: .relaxed)
            exitedAt = now
            blockedAtExit = vcpu.blockedTime
            wakeup.inGuest.store(false, ordering: .sequentiallyConsistent)
            cpu.clearKick()
            let exitRegisters = cpu.registers
            let exitCR3 = cpu.cr3
            recorder?.record(CoreLayout.recordHostExit | FlightRecorder.exitCode(exit) << 16,
                             rip: exitRegisters.rip, cr3: exitCR3, rsp: exitRegisters.rsp)
            handle(exit)
            previousExit = (exit, exitRegisters.rip, exitCR3)
        }
        timer?.arm(at: nil)
        arming.disarmed()
        publishArmedTimer(at: nil, now: 0)
        // A vCPU stopped inside the core for good must not keep the core's lock.
        domain.memory.releaseSpinLock(at: coreLockWord, tag: UInt64(vcpu.id) + 1)
    }

    /// When the last KVM_RUN returned, and the vCPU's blocked time then (for the
    /// per-exit host time of --stats).
    private var exitedAt: UInt64?
    private var blockedAtExit: UInt64 = 0
    /// The last exit handled, and the vCPU's RIP and CR3 when it happened (a stub's RIP,
    /// for a stub exit), for a triple fault's report.
    var previousExit: (exit: VMExit, rip: UInt64, cr3: UInt64)?

    // MARK: The in-VM core

    /// Where the domain's core lock lives.
    private var coreLockWord: GuestPhysicalAddress {
        GuestPhysicalAddress(domain.layout.coreHeader.rawValue + UInt64(CoreLayout.headerLock))
    }

    /// Whether the last exit interrupted the vCPU inside the core's own code (possibly
    /// holding its lock), not on its way back to the guest.
    private var stoppedInsideCore = false
    /// Whether this runner raised the core's attention flag.
    private var attentionRaised = false
    private var coreEnabled: Bool?

    /// Lets the core run unless the domain traces every hypercall, or it has no core.
    private func syncCoreEnabled() {
        let enabled = area.fastPath && !domain.trace.load(ordering: .relaxed)
        if enabled != coreEnabled {
            domain.setCoreEnabled(enabled)
            coreEnabled = enabled
        }
    }

    /// Asks the core to leave to the host instead of returning to the guest.
    private func raiseAttention() {
        try? domain.memory.write(UInt8(1), at: GuestPhysicalAddress(area.coreBlock(vcpu.id).rawValue + UInt64(CoreLayout.vcpuAttention)))
        attentionRaised = true
    }

    private func clearAttention() {
        guard attentionRaised else { return }
        try? domain.memory.write(UInt8(0), at: GuestPhysicalAddress(area.coreBlock(vcpu.id).rawValue + UInt64(CoreLayout.vcpuAttention)))
        attentionRaised = false
    }

    /// A vCPU interrupted (by a kick or its timer) in the hypervisor's ring-0 code while
    /// something wants it: on a return path, where the guest's whole state is in the
    /// registers and the frame, it is handled as a kick now; inside the core, the core
    /// is asked to leave instead of returning. Returns whether it was handled.
    private func interruptedInRing0(_ sregs: SpecialRegisters) -> Bool {
        let regs = cpu.registers
        stoppedInsideCore = area.isInsideCore(regs.rip)
        guard needsAttention() else { return false }
        if area.isReturnPoint(regs.rip) && regs.rsp == area.frameVirtual(vcpu.id) {
            if cpu.hasEventInFlight {
                // The iretq's own fault (a bad guest frame) on its way in: moving RIP
                // would make it look like one in the hypervisor. Let it land first.
                retryKick = true
                vcpu.count(event: "kick retried (an exception in flight)")
                return false
            }
            stoppedInsideCore = false
            vcpu.count(event: "signal taken as a kick (on the way back to the guest)")
            resumeFromFrame(regs: regs, sregs: sregs)
            return true
        }
        if stoppedInsideCore {
            raiseAttention()
        } else {
            // In a stub that returns to the guest without asking (the #GP port-I/O
            // path, the apply routine): kick again shortly, when it is likely back in
            // guest code, rather than wait for its next exit.
            retryKick = true
            vcpu.count(event: "kick retried (vCPU in a ring-0 stub)")
        }
        return false
    }

    /// Set when a kick could not land (the vCPU in ring-0 code, or an exception in
    /// flight): the thread timer fires again shortly (`TimerArming.retry`).
    var retryKick = false

    /// Resumes the guest whose state is in the registers and the IST frame (after the
    /// core completed a hypercall and left for attention, or at a return point), after
    /// the usual work before resuming (timers, events).
    private func resumeFromFrame(regs: Registers, sregs: SpecialRegisters) {
        guard let words = try? (0..<5).map({ (index: Int) throws -> UInt64 in
            try domain.memory.read(UInt64.self, at: GuestPhysicalAddress(area.frame(vcpu.id).rawValue + UInt64(index) * 8))
        }), words[1] & 3 == 3 else {
            crash("no guest frame to resume at the return point")
            return
        }
        let context = makeContext(regs, sregs, frame: words)
        finish(.resume, context, entry: context, sregs: sregs, stubReturn: area.vectorStubVirtual(Int(StubCode.attentionVector)) + 2)
    }

    /// A vCPU interrupted by a signal in guest kernel code that something wants (a timer,
    /// an event): when what must happen before it runs on is only an upcall on its own
    /// stack — no mode switch, no page-table or descriptor work, no exception on its way
    /// in — it is done here, with the registers KVM holds, instead of through a kick
    /// (which costs a second exit). Returns whether it did; nothing changed otherwise.
    private func deliverInPlace(_ sregs: SpecialRegisters) -> Bool {
        guard vcpu.mode == .kernel, sregs.cs.selector == FlatSelector.kernelCS64, sregs.ss.selector == FlatSelector.kernelSS64,
              kickReturn == nil, vcpu.pendingWork.isEmpty, !vcpu.remoteFlush.load(ordering: .acquiring),
              !vcpu.gdtChanged.load(ordering: .acquiring), !vcpu.ldtChanged.load(ordering: .acquiring),
              !cpu.hasEventInFlight, !softEventMayBeInFlight(sregs) else { return false }
        let regs = cpu.registers
        var context = makeContext(regs, sregs)
        context.rip = regs.rip
        context.rflags = regs.rflags
        context.cs = sregs.cs.selector
        context.ss = sregs.ss.selector
        let entry = context
        prepareResume(&context)
        if domain.isFinished {
            if case let .crashed(reason) = domain.lifecycle.withLock({ $0 }), crashReport == nil {
                crashReport = CrashReport.describe(vcpu: vcpu, reason: reason, context: entry)
            }
            return true
        }
        lastResumed = context
        var updated = generalRegisters(context)
        updated.rsp = context.rsp
        updated.rip = context.rip
        updated.rflags = (context.rflags & ~RFlags.iopl) | RFlags.interrupt | RFlags.fixed
        if updated != regs { cpu.registers = updated }
        // An upcall from kernel mode stays in kernel mode, on the flat selectors, with the
        // same segment bases and no work for the apply routine. Should anything else be
        // needed, the vCPU is kicked from where it now is, and the host's usual resume
        // does the rest.
        guard vcpu.mode == .kernel, context.cs | 3 == sregs.cs.selector, context.ss | 3 == sregs.ss.selector,
              context.fsBase == sregs.fs.base, context.gsBase == sregs.gs.base, vcpu.pendingWork.isEmpty else {
            domain.log.log(.debug, "\(vcpu.name): a delivery in place needs more than the registers; kicking")
            interruptedInGuest = true
            enterKickStub()
            return true
        }
        vcpu.count(event: "upcall written at a signal exit (no kick)")
        return true
    }

    /// At most this many samples are kept per vCPU (an hour at one a millisecond).
    static let sampleLimit = 3_600_000

    /// Records where a signal found the vCPU (`--sample-guest`).
    private func sample(_ sregs: SpecialRegisters) {
        guard samples.count < Self.sampleLimit else { return }
        let regs = cpu.registers
        let ring3 = sregs.cs.selector & 3 == 3
        let place: GuestSample.Place = !ring3 ? .hypervisor : (vcpu.mode == .kernel ? .kernel : .user)
        samples.append(GuestSample(nanoseconds: HostTime.monotonic() &- startedAt, vcpu: vcpu.id, place: place, rip: regs.rip))
    }

    /// Whether the vCPU was interrupted (a kick or a timer signal) in guest code, ring 3,
    /// not inside a stub. (The selector's RPL is used: some hosts report a DPL of 3 for
    /// ring-0 code.)
    private var interruptedInGuest = false
    private func atGuestLevel() -> Bool { interruptedInGuest && cpu.specialRegisters.cs.selector & 3 == 3 }

    /// Brings a vCPU interrupted in guest code into the hypervisor: its RIP is pointed
    /// at the kick address, a supervisor-only page of the hypervisor, so the next
    /// instruction fetch faults (#PF) through the IST into a stub exit, which is
    /// handled as a kick with the saved RIP put back. (KVM_INTERRUPT is not used: KVM
    /// injects a queued interrupt at the next entry whatever the target, which can be
    /// the hypervisor's own ring-0 code; nor KVM_SET_SREGS to ring 0, which some hosts
    /// (PVM) do not honour.)
    private func enterKickStub() {
        interruptedInGuest = false
        guard kickReturn == nil else { return }   // already on its way (interrupted again before the fault)
        if cpu.hasEventInFlight {
            // Interrupted between an exception (the guest's port I/O #GP, say) and its
            // delivery: a new RIP would become the exception's return address. Let the
            // exception be delivered first, and kick again shortly.
            retryKick = true
            vcpu.count(event: "kick retried (an exception in flight)")
            return
        }
        if softEventMayBeInFlight(cpu.specialRegisters) {
            retryKick = true
            vcpu.count(event: "kick retried (a software interrupt at the guest's RIP)")
            return
        }
        var regs = cpu.registers
        kickReturn = regs.rip
        regs.rip = area.kickVirtual
        cpu.registers = regs
    }

    /// Whether a software interrupt or exception may be on its way into the guest: the
    /// instruction at RIP (after any prefixes) is int3, int n, into or int1, or cannot
    /// be read. KVM_GET_VCPU_EVENTS leaves such events out (`hasEventInFlight` cannot
    /// see them: KVM expects the instruction to run again), yet KVM re-injects one that
    /// an exit caught mid-delivery at the next entry. On Intel it does so with the
    /// saved instruction length at whatever RIP then is: a RIP moved meanwhile (a kick,
    /// an upcall delivered in place) would take a bogus #BP or interrupt there. (On
    /// AMD, KVM first checks that the same instruction is at RIP, and drops the event
    /// otherwise.) So RIP stays, and the kick is retried.
    private func softEventMayBeInFlight(_ sregs: SpecialRegisters) -> Bool {
        let walker = GuestPageWalker(memory: domain.memory, root: PageTableEntryRules.frame(sregs.cr3))
        let rip = cpu.registers.rip
        return SoftwareInterruptInstruction.mayBeAt { offset in
            try? walker.read(UInt8.self, at: GuestVirtualAddress(rip &+ UInt64(offset)))
        }
    }

    /// The guest RIP a pending kick replaced (see `enterKickStub`).
    private var kickReturn: UInt64?

    /// Whether something needs the hypervisor before the guest runs on.
    private func needsAttention() -> Bool {
        if vcpu.remoteFlush.load(ordering: .acquiring) || vcpu.gdtChanged.load(ordering: .acquiring) { return true }
        if let expiry = vcpu.timer.withLock({ $0.nextExpiry }), expiry <= domain.systemTime() { return true }
        return vcpu.upcallPending() && !vcpu.upcallMask()
    }

    /// When the thread timer fires next (see `TimerArming`).
    var arming: TimerArming
    /// The guest's tick, for arming the host timer before the guest asks (`TickPredictor`).
    var ticks = TickPredictor()

    private func handle(_ exit: VMExit) {
        syncCoreTimer()
        if case .interrupted = exit { interruptedInGuest = true } else { interruptedInGuest = false }
        stoppedInsideCore = false
        clearAttention()
        switch exit {
        case let .io(port, _, size, _):
            let sregs = cpu.specialRegisters
            guard sregs.cs.selector & 3 == 0 else {
                crash("port I/O from the guest (port \(hex(UInt64(port)))) reached the host; this host lets ring 3 do I/O, which Domus does not support")
                return
            }
            switch size {
            case 1: handleVector(UInt8(truncatingIfNeeded: port), sregs: sregs)
            case 2: handleSyscallStub(sregs: sregs)
            case 4: continueOperations()
            default: crash("unexpected \(size)-byte port exit from the hypervisor's stubs")
            }
        case .interrupted:
            vcpu.count(exit: "signal")
            let sregs = cpu.specialRegisters
            noteProgress(sregs)
            if sampling { sample(sregs) }
            waitForNearDeadline()
            if sregs.cs.selector & 3 == 0 {
                if interruptedInRing0(sregs) { interruptedInGuest = false }
            } else if needsAttention() && deliverInPlace(sregs) {
                interruptedInGuest = false
            }
        case .shutdown:
            reportTripleFault()
        case let .mmio(address, _, isWrite, _):
            crash("guest-physical access \(hex(address)) (\(isWrite ? "write" : "read")) outside the domain's memory")
        case .halt:
            crash("unexpected hlt")
        case let .failEntry(reason):
            crash("VM entry failed (hardware reason \(hex(reason)))")
        case let .internalError(suberror):
            crash("KVM internal error \(suberror)")
        case let .systemEvent(type):
            crash("KVM system event \(type)")
        case let .unknown(reason):
            crash("unknown KVM exit \(reason)")
        }
    }

    // MARK: Exits

    private func handleVector(_ vector: UInt8, sregs: SpecialRegisters) {
        let regs = cpu.registers
        let hasError = vector < 32 && X86Exception.hasErrorCode(vector)
        let top = area.istStack(vcpu.id).rawValue + pageSize
        let frameBase = GuestPhysicalAddress(top - (hasError ? 48 : 40))
        guard let words = try? (0..<(hasError ? 6 : 5)).map({ (index: Int) throws -> UInt64 in
            try domain.memory.read(UInt64.self, at: GuestPhysicalAddress(frameBase.rawValue + UInt64(index) * 8))
        }) else {
            crash("cannot read the exception frame")
            return
        }
        let errorCode = hasError ? words[0] : 0
        let frame = Array(words.suffix(5))   // rip, cs, rflags, rsp, ss
        if frame[1] & 3 == 0 {
            hypervisorFault(vector: vector, errorCode: errorCode, rip: frame[0], regs: regs, sregs: sregs)
            return
        }
        var context = makeContext(regs, sregs, frame: frame)
        let entry = context
        let outcome: ExitOutcome
        if vector == StubCode.attentionVector {
            // The core completed a hypercall (rax holds its result) and left because
            // something wants the vCPU: resume through the usual path.
            vcpu.count(exit: "attention from the in-VM core")
            // It may have raised an event without waking a vCPU that polls for it.
            domain.wakePollers()
            outcome = .resume
        } else if vector == X86Exception.pageFault && frame[0] == area.kickVirtual, let saved = kickReturn {
            kickReturn = nil
            vcpu.count(exit: "kick")
            context.rip = saved
            outcome = .resume
        } else if (vector == X86Exception.generalProtection || vector == X86Exception.pageFault)
                    && (frame[0] == area.syscallEntryVirtual || frame[0] == area.syscallStubVirtual) {
            // Hosts whose ring-3 `syscall` jumps to MSR_LSTAR without changing privilege
            // (PVM): fetching the supervisor-only stub faults (#PF), or its first
            // instruction does (#GP); the syscall's state is in rcx and r11.
            vcpu.count(exit: "syscall (via a fault at the stub)")
            context.rip = regs.rcx
            outcome = Traps.syscall(vcpu, &context, returnAddress: regs.rcx, flags: regs.r11)
        } else {
            vcpu.count(exit: vector < 32 ? X86Exception.mnemonic(vector) : "vector \(vector)")
            outcome = Traps.exception(vcpu, &context, vector: vector, errorCode: errorCode, faultAddress: sregs.cr2)
        }
        finish(outcome, context, entry: entry, sregs: sregs, stubReturn: regs.rip)
    }

    private func handleSyscallStub(sregs: SpecialRegisters) {
        vcpu.count(exit: "syscall")
        let regs = cpu.registers
        var context = makeContext(regs, sregs)
        context.cs = vcpu.mode == .kernel ? FlatSelector.kernelCS64 : userCS
        context.ss = vcpu.mode == .kernel ? FlatSelector.kernelSS64 : userSS
        context.rip = regs.rcx
        context.rflags = regs.r11
        let entry = context
        let outcome = Traps.syscall(vcpu, &context, returnAddress: regs.rcx, flags: regs.r11)
        finish(outcome, context, entry: entry, sregs: sregs, stubReturn: regs.rip)
    }

    /// The guest's context from the registers and an interrupt frame (rip, cs,
    /// rflags, rsp, ss) the CPU pushed at the IST top.
    private func makeContext(_ regs: Registers, _ sregs: SpecialRegisters, frame: [UInt64]) -> GuestContext {
        var context = makeContext(regs, sregs)
        context.rip = frame[0]
        context.cs = UInt16(truncatingIfNeeded: frame[1])
        context.rflags = frame[2]
        context.rsp = frame[3]
        context.ss = UInt16(truncatingIfNeeded: frame[4])
        return context
    }

    /// KVM registers holding `context`'s general-purpose registers but rsp (rip, rsp
    /// and rflags are the caller's to set: the guest's, or the stub's frame).
    func generalRegisters(_ context: GuestContext) -> Registers {
        var regs = Registers()
        regs.rax = context.rax; regs.rbx = context.rbx; regs.rcx = context.rcx; regs.rdx = context.rdx
        regs.rsi = context.rsi; regs.rdi = context.rdi; regs.rbp = context.rbp
        regs.r8 = context.r8; regs.r9 = context.r9; regs.r10 = context.r10; regs.r11 = context.r11
        regs.r12 = context.r12; regs.r13 = context.r13; regs.r14 = context.r14; regs.r15 = context.r15
        return regs
    }

    private func makeContext(_ regs: Registers, _ sregs: SpecialRegisters) -> GuestContext {
        var context = GuestContext()
        context.rax = regs.rax; context.rbx = regs.rbx; context.rcx = regs.rcx; context.rdx = regs.rdx
        context.rsi = regs.rsi; context.rdi = regs.rdi; context.rsp = regs.rsp; context.rbp = regs.rbp
        context.r8 = regs.r8; context.r9 = regs.r9; context.r10 = regs.r10; context.r11 = regs.r11
        context.r12 = regs.r12; context.r13 = regs.r13; context.r14 = regs.r14; context.r15 = regs.r15
        context.ds = sregs.ds.selector; context.es = sregs.es.selector
        context.fs = sregs.fs.selector; context.gs = sregs.gs.selector
        context.fsBase = sregs.fs.base
        context.gsBase = sregs.gs.base
        return context
    }

    // MARK: After the core

    private func finish(_ outcome: ExitOutcome, _ handled: GuestContext, entry: GuestContext, sregs: SpecialRegisters, stubReturn: UInt64) {
        var context = handled
        switch outcome {
        case .stop:
            if case let .crashed(reason) = domain.lifecycle.withLock({ $0 }) {
                crashReport = CrashReport.describe(vcpu: vcpu, reason: reason, context: entry)
            }
            return
        case .block:
            block(ports: nil, deadline: nil)
        case let .poll(ports, deadline):
            block(ports: ports, deadline: deadline)
        case .yield:
            sched_yield()
        case .resume:
            break
        }
        waitWhileDown()
        prepareResume(&context)
        if domain.isFinished {
            if case let .crashed(reason) = domain.lifecycle.withLock({ $0 }), crashReport == nil {
                crashReport = CrashReport.describe(vcpu: vcpu, reason: reason, context: entry)
            }
            return
        }
        resume(context, sregs: sregs, stubReturn: stubReturn)
    }

    /// A vCPU that took itself down (VCPUOP_down) stays in the hypercall until it is
    /// brought up again, as Xen deschedules it there: only then are its timers, the TLB
    /// flushes others asked of it meanwhile and its events taken, on the way back.
    private func waitWhileDown() {
        var waited = false
        while !vcpu.online && !domain.isFinished {
            wakeup.wait(until: nil, now: domain.clock.monotonicNanoseconds())
            waited = true
        }
        if waited { domain.log.log(.debug, "\(vcpu.name): up again") }
    }

    /// Timers, remote flushes, GDT changes and event upcalls, before the guest runs.
    func prepareResume(_ context: inout GuestContext) {
        waitForRemoteFlushes()
        checkTimers()
        if vcpu.remoteFlush.exchange(false, ordering: .acquiringAndReleasing) { vcpu.pendingWork.flushAll = true }
        if vcpu.gdtChanged.exchange(false, ordering: .acquiringAndReleasing) { loadGDT() }
        if vcpu.ldtChanged.exchange(false, ordering: .acquiringAndReleasing) { loadLDT() }
        let now = domain.clock.monotonicNanoseconds()
        if now &- lastTimeUpdate > 1_000_000_000 {
            TimeKeeper.update(vcpu)
            lastTimeUpdate = now
        }
        Traps.deliverPendingEvents(vcpu, &context)
        let mode = vcpu.mode
        if mode == .user {
            userCS = context.cs
            userSS = context.ss
            // The core's iret may return to user mode with these (see FastIret).
            if context.cs | 3 != publishedUserCS || context.ss | 3 != publishedUserSS {
                publishedUserCS = context.cs | 3
                publishedUserSS = context.ss | 3
                vcpu.resumedUserSelectors = (publishedUserCS, publishedUserSS)
            }
        }
        // Xen's iopl_ok: the guest kernel counts as ring 1, its user mode as ring 3.
        // (Written every time: the core's iret to user mode sets it too.)
        let fastIO = vcpu.virtualIOPL >= (mode == .kernel ? 1 : 3)
        try? domain.memory.write(UInt8(fastIO ? 1 : 0), at: area.fastIOFlag(vcpu.id))
    }

    /// Blocks the vCPU (SCHEDOP_block, or SCHEDOP_poll when `ports` is given).
    private func block(ports: [UInt32]?, deadline: UInt64?) {
        vcpu.blocked.store(true, ordering: .sequentiallyConsistent)
        if ports != nil { domain.setPolling(vcpu.id, true) }
        defer { if ports != nil { domain.setPolling(vcpu.id, false) } }
        let start = domain.systemTime()
        while !domain.isFinished {
            checkTimers()
            if let ports {
                if ports.contains(where: { domain.isPending(port: $0) }) { break }
                // An upcall the vCPU would take ends the poll, as in Xen (whose vcpu_kick
                // also ends it for a masked one: a spurious wake-up Linux does not need).
                if vcpu.upcallPending() && !vcpu.upcallMask() { break }
                if let deadline, domain.systemTime() >= deadline { break }
            } else if vcpu.upcallPending() {
                break
            }
            let expiry = [vcpu.timer.withLock { $0.nextExpiry }, deadline].compactMap { $0 }.min()
            wakeup.wait(until: expiry.map { domain.bootTime &+ $0 }, now: domain.clock.monotonicNanoseconds())
        }
        vcpu.blocked.store(false, ordering: .sequentiallyConsistent)
        vcpu.blockedTime &+= domain.systemTime() &- start
        vcpu.count(event: "blocked (SCHEDOP_block or poll)")
    }

    // MARK: Resuming

    /// Returns to the guest through the stub's iretq: writes the interrupt frame and the
    /// registers, and routes through the apply routine when there is work for it.
    private func resume(_ context: GuestContext, sregs: SpecialRegisters, stubReturn: UInt64) {
        lastResumed = context
        var operations: [(UInt64, UInt64, UInt64)] = []
        let work = vcpu.pendingWork
        vcpu.pendingWork = PendingMachineWork()
        // The host already wrote these entries into guest memory; a shadow-paging host
        // (PVM) only sees them when the VM stores them itself, hardware nested paging
        // sees them at once (the flushes below still apply).
        if area.replaysPageTableStores {
            for (address, value) in work.pageTableStores where address.rawValue < area.ramFrames * pageSize {
                operations.append((StubCode.Operation.store.rawValue, HypervisorArea.directMapVirtual + address.rawValue, value))
            }
        }
        let cr3 = vcpu.activeTable?.address?.rawValue ?? sregs.cr3
        if cr3 != sregs.cr3 {
            operations.append((StubCode.Operation.loadCR3.rawValue, cr3, 0))
        } else if work.flushAll {
            operations.append((StubCode.Operation.flushAll.rawValue, 0, 0))
        } else {
            for address in work.invalidations { operations.append((StubCode.Operation.invalidate.rawValue, address, 0)) }
        }
        if context.fsBase != sregs.fs.base {
            operations.append((StubCode.Operation.writeMSR.rawValue, UInt64(MSR.fsBase), context.fsBase))
        }
        if context.gsBase != sregs.gs.base {
            operations.append((StubCode.Operation.writeMSR.rawValue, UInt64(MSR.gsBase), context.gsBase))
        }

        let rflags = (context.rflags & ~RFlags.iopl) | RFlags.interrupt | RFlags.fixed
        let frame = [context.rip, UInt64(context.cs | 3), rflags, context.rsp, UInt64(context.ss | 3)]
        for (index, word) in frame.enumerated() {
            try? domain.memory.write(word, at: GuestPhysicalAddress(area.frame(vcpu.id).rawValue + UInt64(index) * 8))
        }

        var regs = generalRegisters(context)
        regs.rsp = area.frameVirtual(vcpu.id)
        regs.rflags = RFlags.fixed
        if operations.isEmpty {
            regs.rip = stubReturn   // the stub's `out`; KVM completes it and the iretq follows
        } else {
            pendingOperations = operations
            pendingRestore = (context.rax, context.rcx, context.rdx, context.rsi)
            regs.rip = area.applyVirtual
            regs.rsi = writeOperationChunk()
            vcpu.count(event: "resume through the apply routine")
        }
        cpu.registers = regs
    }

    /// Writes the next chunk of operations into the buffer, ending with END (and the
    /// registers to restore) or MORE; returns the buffer's guest-virtual address.
    private func writeOperationChunk() -> UInt64 {
        let capacity = area.operationCapacity - 2
        let chunk = pendingOperations.prefix(capacity)
        pendingOperations.removeFirst(chunk.count)
        var words: [UInt64] = []
        words.reserveCapacity((chunk.count + 2) * 3)
        for (op, a, b) in chunk { words += [op, a, b] }
        if pendingOperations.isEmpty {
            words += [StubCode.Operation.end.rawValue, pendingRestore.0, pendingRestore.1, pendingRestore.2, pendingRestore.3, 0]
        } else {
            words += [StubCode.Operation.more.rawValue, 0, 0]
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(words.count * 8)
        for word in words { for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) } }
        try? domain.memory.writeBytes(bytes, at: area.operationBuffer(vcpu.id))
        return area.operationBufferVirtual(vcpu.id)
    }

    /// The apply routine ran out of buffer: give it the next chunk.
    private func continueOperations() {
        guard !pendingOperations.isEmpty else {
            crash("the apply routine asked for more work than was queued")
            return
        }
        var regs = cpu.registers
        regs.rsi = writeOperationChunk()
        cpu.registers = regs
    }

    // MARK: Faults

    /// An exception inside the hypervisor's own ring-0 code: a return to the guest with
    /// a frame the CPU refused (bad selector, non-canonical address), or a bug.
    private func hypervisorFault(vector: UInt8, errorCode: UInt64, rip: UInt64, regs: Registers, sregs: SpecialRegisters) {
        let stub = rip &- area.stubsVirtual
        let atIret = rip >= area.stubsVirtual && stub < pageSize && area.stubsPageBytes(at: Int(stub)) == [0x48, 0xcf]
        if atIret, [X86Exception.generalProtection, X86Exception.segmentNotPresent, X86Exception.stackFault].contains(vector),
           var context = lastResumed {
            // The CPU refused the guest's own frame: Xen delivers the failsafe callback.
            vcpu.count(exit: "failsafe")
            forgetUserSelectors()
            let reason = "returning to cs \(hex(UInt64(context.cs))) ss \(hex(UInt64(context.ss))) rip \(hex(context.rip)) raised \(X86Exception.mnemonic(vector)) (error \(hex(errorCode)))"
            guard Traps.failsafe(vcpu, &context, reason: reason) else {
                crashReport = CrashReport.describe(vcpu: vcpu, reason: reason, context: context)
                return
            }
            // The stub whose iretq faulted is gone; return through the vector stub's iretq.
            resume(context, sregs: sregs, stubReturn: regs.rip)
            return
        }
        if area.isInsideCore(rip) {
            domain.memory.releaseSpinLock(at: coreLockWord, tag: UInt64(vcpu.id) + 1)
            crash("\(X86Exception.mnemonic(vector)) (error \(hex(errorCode))) in the ring-0 core at image offset \(hex(rip - area.coreCodeVirtual)) (cr2 \(hex(sregs.cr2)))")
            return
        }
        let target = lastResumed.map { "returning to rip \(hex($0.rip)) cs \(hex(UInt64($0.cs))) rsp \(hex($0.rsp)) ss \(hex(UInt64($0.ss)))" } ?? ""
        crash("\(X86Exception.mnemonic(vector)) (error \(hex(errorCode))) in the hypervisor's ring-0 code at \(hex(rip)) \(target)")
    }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// Where a signal found a vCPU (a sampling profile of the guest, `--sample-guest`).
public struct GuestSample: Sendable {
    public enum Place: String, Sendable { case kernel, user, hypervisor }
    public var nanoseconds: UInt64
    public var vcpu: Int
    public var place: Place
    public var rip: UInt64

    /// One line of the samples file: seconds, vCPU, where, RIP.
    public var line: String {
        String(format: "%.6f %d ", Double(nanoseconds) / 1e9, vcpu) + place.rawValue + " " + String(format: "%016lx", rip)
    }
}
