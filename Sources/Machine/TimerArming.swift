/// When a vCPU thread's host timer should fire next: the guest's timer deadline, a
/// short retry of a kick that could not land, and a watchdog, so that a due timer
/// whose kick went missing is noticed within `watchdog` nanoseconds while the guest
/// runs. Pure (host monotonic nanoseconds in, arming decisions out), so it is tested
/// without threads or signals.
struct TimerArming {
    /// The longest the thread timer stays unarmed while the guest runs.
    static let watchdog: UInt64 = 20_000_000
    /// How long to wait before kicking again (the stubs run a few hundred instructions).
    static let retry: UInt64 = 50_000

    /// When the timer fires next (host monotonic ns; 0: never armed).
    private(set) var armedAt: UInt64 = 0
    /// The guest deadline the timer was last armed for (nil: none).
    private var armedDeadline: UInt64?
    /// Whether the timer is armed for a kick retry instead.
    private var armedForRetry = false

    /// The time to arm the host timer for before the guest runs on, or nil when it is
    /// already armed right. `deadline` is the guest's next timer in host time;
    /// `retryKick` asks for a retry of a kick soon.
    ///
    /// A deadline already past is never armed: the runner has kicked the vCPU for it,
    /// and a timer armed in the past fires at once, leaves its signal pending and makes
    /// every KVM_RUN return before the guest runs — a livelock. Re-arming only when
    /// something changed keeps `timer_settime` off most exits.
    mutating func next(deadline: UInt64?, now: UInt64, retryKick: Bool) -> UInt64? {
        if retryKick {
            // Fire soon (or at the guest's deadline, if that comes first); the next
            // call re-arms for the guest's deadline.
            let retry = now &+ Self.retry
            armedAt = deadline.map { $0 > now && $0 < retry ? $0 : retry } ?? retry
            armedDeadline = nil
            armedForRetry = true
            return armedAt
        }
        guard deadline != armedDeadline || armedForRetry || armedAt <= now else { return nil }
        let watchdog = now &+ Self.watchdog
        let target = deadline.map { $0 > now ? min($0, watchdog) : watchdog } ?? watchdog
        armedAt = target
        armedDeadline = deadline
        armedForRetry = false
        return target
    }

    /// The timer was disarmed (the vCPU stopped running).
    mutating func disarmed() {
        self = TimerArming()
    }
}
