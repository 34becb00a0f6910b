// Machine layer: the guest's timers as the vCPU thread keeps them — the host's thread
// timer, the core's deadlines copied back at each exit, and the local APIC timer.

import Foundation
import Hypervisor
import KVM
import Ring0Core
import XenABI

extension VCPURunner {
    /// Arms the thread timer for the guest's next timer, a kick retry or the watchdog,
    /// unless it already is.
    func armTimer() {
        // With the local APIC timer, the single-shot deadline is the VM's own.
        let deadline = vcpu.timer.withLock { localTimer ? $0.periodicNext : $0.nextExpiry }.map { domain.bootTime &+ $0 }
        let retry = retryKick
        retryKick = false
        let now = HostTime.monotonic()
        let predicted = area.coreTraps && !localTimer ? ticks.predicted(now: now &- domain.bootTime).map { domain.bootTime &+ $0 } : nil
        if let target = arming.next(deadline: deadline, predicted: predicted, now: now, retryKick: retry), let timer {
            timer.arm(at: target)
            publishArmedTimer(at: target, now: now)
        }
    }

    /// Before entering the VM, with the local APIC timer: the single-shot deadline the
    /// host's state holds (the core's, copied at the exit, or one the host set or
    /// fired) becomes the core's `vcpuTimerDue`, and the APIC timer is armed for a
    /// deadline the core did not arm itself. One left armed for a deadline that is gone
    /// finds nothing due when it fires.
    func armLocalTimer() {
        guard localTimer else { return }
        // The core's due deadline always equals `armedLocalDeadline` here: the core
        // changes it only with a deadline the exit's sync copied back.
        let deadline = vcpu.timer.withLock { $0.deadline } ?? 0
        guard deadline != armedLocalDeadline else { return }
        vcpu.localTimerDue = deadline
        if deadline != 0 {
            do {
                try cpu.setMSRs([(MSR.tscDeadline, vcpu.localTimerTSC(for: deadline, now: domain.clock.guestTSC()))])
                vcpu.count(event: "local APIC timer armed by the host")
            } catch {
                domain.log.log(.warning, "\(vcpu.name): cannot arm the local APIC timer: \(error)")
            }
        }
        armedLocalDeadline = deadline
    }

    /// Tells the core when the host timer fires (system time, and the guest TSC a
    /// microsecond before that moment), so it can take later single-shot deadlines
    /// without an exit; 0 when it is not armed.
    func publishArmedTimer(at target: UInt64?, now: UInt64) {
        guard area.coreTraps else { return }
        var armedAt: UInt64 = 0
        var armedTSC: UInt64 = 0
        if let target, target > now &+ 1_000 {
            armedAt = target &- domain.bootTime
            let ticksAhead = Double(target - now - 1_000) * Double(domain.clock.tscHz) / 1e9
            armedTSC = domain.clock.guestTSC() &+ UInt64(ticksAhead)
        }
        vcpu.publishArmedTimer(armedAt: armedAt, armedTSC: armedTSC)
    }

    /// Copies a single-shot deadline the core took (`CoreLayout.vcpuTimerDeadline`)
    /// into the host's timer state; done first on every exit.
    func syncCoreTimer() {
        guard area.coreTraps else { return }
        // A deadline the core took, it also armed (0: the core fired it).
        if let deadline = vcpu.takeCoreTimerDeadline(), localTimer { armedLocalDeadline = deadline }
    }

    /// After a signal: a guest deadline due within `TickPredictor.nearWindow` is waited
    /// for here (the host timer was armed a little early, for the predicted tick), so
    /// the upcall goes out now instead of after another exit.
    func waitForNearDeadline() {
        guard area.coreTraps, !localTimer, let deadline = vcpu.timer.withLock({ $0.deadline }) else { return }
        let now = domain.systemTime()
        guard deadline > now, deadline - now <= TickPredictor.nearWindow else { return }
        var target = timespec()
        let host = domain.bootTime &+ deadline
        target.tv_sec = Int(host / 1_000_000_000)
        target.tv_nsec = Int(host % 1_000_000_000)
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, nil) == EINTR, !domain.isFinished {}
        vcpu.count(event: "waited for a deadline due within \(TickPredictor.nearWindow / 1000) us")
    }

    func checkTimers() {
        let now = domain.systemTime()
        var firedDeadline: UInt64?
        let fired = vcpu.timer.withLock { timer -> Bool in
            var fired = false
            if let deadline = timer.deadline, deadline <= now {
                timer.deadline = nil
                fired = true
                firedDeadline = deadline
            }
            if let next = timer.periodicNext, let period = timer.period, next <= now {
                let missed = (now - next) / period + 1
                timer.periodicNext = next &+ missed &* period
                fired = true
            }
            return fired
        }
        if let firedDeadline { ticks.fired(firedDeadline) }
        if fired {
            TimeKeeper.update(vcpu)
            lastTimeUpdate = domain.clock.monotonicNanoseconds()
            domain.raiseVIRQ(VIRQ.timer, vcpu: vcpu.id)
        }
    }
}
