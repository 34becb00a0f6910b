import CGuestAtomics

/// The guest's single-shot timer inside the VM, where the VM has KVM's local APIC
/// with its TSC-deadline timer (`CoreLayout.vcpuLocalTimer`):
///
/// - VCPUOP_set_singleshot_timer records the deadline for the host (as the core
///   always has) and arms the APIC timer for it: ring0/entry.S writes
///   IA32_TSC_DEADLINE on the way out;
/// - the timer's interrupt (`timerVector`) comes to entry.S, which signals its end
///   and calls the core: a deadline that has come is cleared, VIRQ_TIMER is raised on
///   the vCPU's port as Xen's 2-level event channels do (evtchn_2l_set_pending), and
///   the upcall is delivered when the guest takes events (`FastTraps.deliverEvent`).
///
/// So a guest tick costs no exit to the host. The host stays the reference: it reads
/// the deadline back at every exit, keeps periodic timers and anything the core
/// defers (no port bound, a vcpu_info it cannot reach, a deadline already past with
/// VCPU_SSHOTTMR_future), and raises VIRQ_TIMER itself for a deadline it finds due.
public enum FastTimer {
    /// The local APIC timer's vector (its IDT gate leads to domus_core_timer_entry).
    public static let timerVector: UInt8 = 0xec
    /// VCPU_SSHOTTMR_future: a deadline already past is -ETIME (the host's answer).
    static let singleshotFuture: UInt64 = 1
    /// shared_info (x86-64): evtchn_pending[64] and evtchn_mask[64] after the 32
    /// vcpu_infos; in a vcpu_info, evtchn_upcall_pending at 0, evtchn_pending_sel at 8.
    static let sharedPending: UInt64 = 0x800
    static let sharedMask: UInt64 = 0xa00
    static let ports: UInt64 = 64 * 64
    static let infoPendingSelector: UInt64 = 8
    /// The furthest ahead the APIC timer is armed, in TSC ticks (~25 minutes at 3 GHz):
    /// KVM turns a deadline into nanoseconds with ticks × 10⁶ / kHz, which must not
    /// overflow. A later deadline is armed again when this one fires.
    public static let maximumAhead: UInt64 = 1 << 42

    /// What to write to IA32_TSC_DEADLINE for `target` at TSC `now`.
    public static func armable(_ target: UInt64, now: UInt64) -> UInt64 {
        target > now && target - now > maximumAhead ? now &+ maximumAhead : target
    }

    /// The guest TSC value at guest system time `time` (ns), from the base the host
    /// published; 1 (long past) for a time at or before the base, `UInt64.max` for
    /// one beyond reach.
    public static func tsc(at time: UInt64, timeBase: UInt64, tscBase: UInt64, ticksPerNanosecond: UInt64) -> UInt64 {
        guard time > timeBase else { return 1 }
        let (high, low) = (time &- timeBase).multipliedFullWidth(by: ticksPerNanosecond)
        guard high >> 32 == 0 else { return UInt64.max }
        let (sum, overflow) = tscBase.addingReportingOverflow(high << 32 | low >> 32)
        return overflow ? UInt64.max : max(1, sum)
    }

    /// How late past its deadline the timer fires (ns), so that the guest, whose clock
    /// rounds the TSC a little differently, never finds it early (Xen's timer_slop
    /// allows 50 µs).
    public static let lateness: UInt64 = 1_000

    /// The TSC value to arm for `deadline`.
    static func target(_ deadline: UInt64, _ vcpu: Words) -> UInt64 { tsc(at: deadline &+ lateness, vcpu) }

    static func tsc(at time: UInt64, _ vcpu: Words) -> UInt64 {
        tsc(at: time, timeBase: vcpu.u64(UInt64(CoreLayout.vcpuTimeBase)), tscBase: vcpu.u64(UInt64(CoreLayout.vcpuTSCBase)),
            ticksPerNanosecond: vcpu.u64(UInt64(CoreLayout.vcpuTSCPerNanosecond)))
    }

    /// VCPUOP_set_singleshot_timer(`deadline`, `flags`) for the calling vCPU.
    static func singleshot(_ regs: Words, _ vcpu: Words, deadline: UInt64, flags: UInt64, now: UInt64) -> UInt64 {
        guard deadline != 0, flags & ~singleshotFuture == 0 else { return CoreLayout.resultDeferred }
        let target = target(deadline, vcpu)
        if flags & singleshotFuture != 0 && now >= tsc(at: deadline, vcpu) { return CoreLayout.resultDeferred }
        vcpu.setU64(UInt64(CoreLayout.vcpuTimerDeadline), deadline)
        vcpu.setU64(UInt64(CoreLayout.vcpuTimerUpdated), 1)
        vcpu.setU64(UInt64(CoreLayout.vcpuTimerDue), deadline)
        vcpu.setU64(UInt64(CoreLayout.vcpuRequestDeadline), armable(target, now: now))
        regs.setU64(UInt64(CoreLayout.savedRAX), 0)
        return CoreLayout.resultHandled
    }

    /// The APIC timer's interrupt, from guest code whose registers are in `regs`, at
    /// TSC `now`. Handled: nothing due (a deadline the host took over, or moved), the
    /// timer armed again (too early), or VIRQ_TIMER raised and its upcall delivered if
    /// the guest takes it. Deferred (entry.S then leaves through the attention stub):
    /// what the host must do.
    static func interrupt(_ regs: Words, _ vcpu: Words, context: CoreContext, now: UInt64) -> UInt64 {
        guard vcpu.u64(UInt64(CoreLayout.vcpuLocalTimer)) != 0 else { return CoreLayout.resultDeferred }
        let due = vcpu.u64(UInt64(CoreLayout.vcpuTimerDue))
        guard due != 0 else { return CoreLayout.resultHandled }
        let target = target(due, vcpu)
        if now < target {
            vcpu.setU64(UInt64(CoreLayout.vcpuRequestDeadline), armable(target, now: now))
            return CoreLayout.resultHandled
        }
        let port = vcpu.u64(UInt64(CoreLayout.vcpuTimerPort))
        let info = vcpu.u64(UInt64(CoreLayout.vcpuInfo))
        let view = context.view
        guard port != 0, port < ports, let shared = context.sharedInfo,
              info != CoreLayout.noFrame, info & 7 == 0, (info &+ 16) >> 12 < view.ramFrames else {
            return CoreLayout.resultDeferred
        }
        vcpu.setU64(UInt64(CoreLayout.vcpuTimerDue), 0)
        vcpu.setU64(UInt64(CoreLayout.vcpuTimerDeadline), 0)
        vcpu.setU64(UInt64(CoreLayout.vcpuTimerUpdated), 1)
        raise(port: port, shared: shared, ram: view.ram, info: info)
        vcpu.countInVM(CoreLayout.inVMTimer)
        // A vCPU blocked in SCHEDOP_poll waits for pending bits: the host wakes it
        // (read after the raise, so a poller that came first is seen).
        guard cga_load64(context.header.pointer(UInt64(CoreLayout.headerPollers))) == 0 else { return CoreLayout.resultDeferred }
        // Code the guest does not own (the host's kick page) is the host's to resume;
        // the event waits for it.
        guard GuestView.isGuestAddress(regs.u64(UInt64(CoreLayout.savedRIP))) else { return CoreLayout.resultDeferred }
        return FastTraps.deliverEvent(regs, vcpu, view: view) ? CoreLayout.resultHandled : CoreLayout.resultDeferred
    }

    /// Marks `port` pending, and unless it is masked or its selector bit was already
    /// set, the selector bit and evtchn_upcall_pending of the vcpu_info at `info`.
    static func raise(port: UInt64, shared: Words, ram: Words, info: UInt64) {
        let word = port >> 6
        let bit: UInt64 = 1 << (port & 63)
        guard cga_fetch_or64(shared.pointer(sharedPending &+ word &* 8), bit) & bit == 0 else { return }
        guard shared.atomicLoad(sharedMask &+ word &* 8) & bit == 0 else { return }
        let selector: UInt64 = 1 << word
        guard cga_fetch_or64(ram.pointer(info &+ infoPendingSelector), selector) & selector == 0 else { return }
        _ = ram.exchangeU8(info, 1)
    }
}
