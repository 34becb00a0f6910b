/// When a vCPU thread's host timer should fire next: the guest's timer deadline, a
/// short retry of a kick that could not land, and a watchdog, so that a due timer
/// whose kick went missing is noticed within `watchdog` nanoseconds while the guest
/// runs. Pure (host monotonic nanoseconds in, arming decisions out), so it is tested
/// without threads or signals.
struct TimerArming {
    /// The longest the thread timer stays unarmed while the guest runs.
    static let watchdog: UInt64 = 20_000_000
    /// This instance's watchdog: `watchdog`, or shorter to sample the guest's RIP.
    let watchdogInterval: UInt64

    init(watchdog: UInt64 = TimerArming.watchdog) {
        watchdogInterval = max(100_000, min(watchdog, Self.watchdog))
    }
    /// How long to wait before kicking again (the stubs run a few hundred instructions).
    static let retry: UInt64 = 50_000

    /// When the timer fires next (host monotonic ns; 0: never armed).
    private(set) var armedAt: UInt64 = 0
    /// The guest deadline the timer was last armed for (nil: none).
    private var armedDeadline: UInt64?
    /// Whether the timer is armed for a kick retry instead.
    private var armedForRetry = false

    /// The time to arm the host timer for before the guest runs on, or nil when it is
    /// already armed right. `deadline` is the guest's next timer in host time, or, when
    /// it has none set, `predicted` (`TickPredictor`); `retryKick` asks for a retry of
    /// a kick soon.
    ///
    /// A deadline already past is never armed: the runner has kicked the vCPU for it,
    /// and a timer armed in the past fires at once, leaves its signal pending and makes
    /// every KVM_RUN return before the guest runs — a livelock. Re-arming only when
    /// something changed keeps `timer_settime` off most exits.
    mutating func next(deadline: UInt64?, predicted: UInt64? = nil, now: UInt64, retryKick: Bool) -> UInt64? {
        if retryKick {
            // Fire soon (or at the guest's deadline, if that comes first); the next
            // call re-arms for the guest's deadline.
            let retry = now &+ Self.retry
            armedAt = deadline.map { $0 > now && $0 < retry ? $0 : retry } ?? retry
            armedDeadline = nil
            armedForRetry = true
            return armedAt
        }
        let wanted = deadline ?? predicted
        guard wanted != armedDeadline || armedForRetry || armedAt <= now else { return nil }
        let watchdog = now &+ watchdogInterval
        let target = wanted.map { $0 > now ? min($0, watchdog) : watchdog } ?? watchdog
        armedAt = target
        armedDeadline = wanted
        armedForRetry = false
        return target
    }

    /// The timer was disarmed (the vCPU stopped running).
    mutating func disarmed() {
        self = TimerArming(watchdog: watchdogInterval)
    }
}

/// Predicts a guest's next single-shot deadline from the last ones that fired. A busy
/// Linux re-arms its tick every 1/HZ on a grid, from its timer interrupt: if the host's
/// timer is already armed for (a little before) that moment when the guest asks, the
/// in-VM core takes the request without an exit (`CoreLayout.vcpuTimerArmedAt`).
/// Pure: system-time nanoseconds in, a moment to arm for out.
struct TickPredictor {
    /// How far before the predicted deadline to arm, so that the small jitter of the
    /// guest's own deadlines (the time between its two clock reads) still falls after
    /// it; the host then waits out the rest (`nearWindow`).
    static let margin: UInt64 = 30_000
    /// A deadline due within this of the host timer firing is waited for there rather
    /// than re-armed (which would cost another exit).
    static let nearWindow: UInt64 = 150_000
    /// Intervals taken as a periodic tick (Linux's HZ is 100 to 1000).
    static let shortest: UInt64 = 500_000
    static let longest: UInt64 = 20_000_000

    private var last: UInt64?
    private var interval: UInt64?

    /// A single-shot deadline fired.
    mutating func fired(_ deadline: UInt64) {
        if let last, deadline > last, deadline - last >= Self.shortest, deadline - last <= Self.longest {
            interval = deadline - last
        } else {
            interval = nil
        }
        last = deadline
    }

    /// When to arm the host timer while the guest has no deadline set: `margin` before
    /// the next deadline of the tick seen so far, if that is still ahead of `now`.
    func predicted(now: UInt64) -> UInt64? {
        guard let last, let interval else { return nil }
        let next = last &+ interval &- Self.margin
        return next > now ? next : nil
    }
}
