import Testing

@testable import Machine

/// The vCPU thread's host timer: when it is armed, and that it is never armed in the
/// past (which made every KVM_RUN return at once, a livelock seen on Linux boots).
@Suite("vCPU thread timer arming")
struct TimerArmingTests {
    let ms: UInt64 = 1_000_000

    @Test("a future deadline is armed once, and not again until it changes")
    func futureDeadline() {
        var arming = TimerArming()
        #expect(arming.next(deadline: 1_000 + 5 * ms, now: 1_000, retryKick: false) == 1_000 + 5 * ms)
        #expect(arming.next(deadline: 1_000 + 5 * ms, now: 2_000, retryKick: false) == nil)
        #expect(arming.next(deadline: 1_000 + 3 * ms, now: 3_000, retryKick: false) == 1_000 + 3 * ms)
    }

    @Test("a far deadline or none arms the watchdog")
    func watchdog() {
        var arming = TimerArming()
        #expect(arming.next(deadline: nil, now: 10, retryKick: false) == 10 + TimerArming.watchdog)
        #expect(arming.next(deadline: nil, now: 20, retryKick: false) == nil)
        // Once the watchdog fired, it is armed again.
        let later = 10 + TimerArming.watchdog + 1
        #expect(arming.next(deadline: nil, now: later, retryKick: false) == later + TimerArming.watchdog)
        var far = TimerArming()
        #expect(far.next(deadline: 1_000 * ms, now: 0, retryKick: false) == TimerArming.watchdog)
    }

    @Test("a deadline already past is never armed in the past, however often asked")
    func pastDeadline() {
        var arming = TimerArming()
        var now: UInt64 = 100 * ms
        let deadline: UInt64 = 50 * ms
        for _ in 0..<1000 {
            if let target = arming.next(deadline: deadline, now: now, retryKick: false) {
                #expect(target > now)
            }
            now += 7_000
        }
        // Asked again at once, it does not re-arm (no timer_settime per exit).
        let armed = arming.armedAt
        #expect(arming.next(deadline: deadline, now: armed - 1, retryKick: false) == nil)
    }

    @Test("a kick retry fires soon, or at the deadline if that is sooner, then the deadline is re-armed")
    func retry() {
        var arming = TimerArming()
        #expect(arming.next(deadline: 10 * ms, now: 0, retryKick: true) == TimerArming.retry)
        #expect(arming.next(deadline: 10 * ms, now: 1_000, retryKick: false) == 10 * ms)
        #expect(arming.next(deadline: 20_000, now: 0, retryKick: true) == 20_000)
        // A past deadline does not make the retry fire in the past.
        #expect(arming.next(deadline: 5, now: 1_000, retryKick: true) == 1_000 + TimerArming.retry)
    }

    @Test("after disarming, the next call arms again")
    func disarm() {
        var arming = TimerArming()
        #expect(arming.next(deadline: 5 * ms, now: 0, retryKick: false) == 5 * ms)
        arming.disarmed()
        #expect(arming.next(deadline: 5 * ms, now: 0, retryKick: false) == 5 * ms)
    }
}

/// The guest's tick, predicted so the host timer is armed before the guest asks.
@Suite("Tick prediction")
struct TickPredictorTests {
    let ms: UInt64 = 1_000_000

    @Test("two deadlines a tick apart predict the next, a margin early; irregular ones predict nothing")
    func prediction() {
        var ticks = TickPredictor()
        #expect(ticks.predicted(now: 0) == nil)
        ticks.fired(100 * ms)
        #expect(ticks.predicted(now: 100 * ms) == nil, "one deadline is no tick yet")
        ticks.fired(104 * ms + 3_000)
        #expect(ticks.predicted(now: 104 * ms + 3_000) == 108 * ms + 6_000 - TickPredictor.margin)
        #expect(ticks.predicted(now: 109 * ms) == nil, "a prediction already past is none")
        ticks.fired(160 * ms)   // 56 ms later: not a tick
        #expect(ticks.predicted(now: 160 * ms) == nil)
        ticks.fired(160 * ms + 100_000)   // 0.1 ms later: not a tick either
        #expect(ticks.predicted(now: 160 * ms) == nil)
        ticks.fired(164 * ms)
        #expect(ticks.predicted(now: 164 * ms) != nil)
    }

    @Test("with no deadline set, the prediction is armed; a deadline set wins over it")
    func arming() {
        var arming = TimerArming()
        #expect(arming.next(deadline: nil, predicted: 4 * ms, now: 0, retryKick: false) == 4 * ms)
        #expect(arming.next(deadline: nil, predicted: 4 * ms, now: 1_000, retryKick: false) == nil, "already armed for it")
        #expect(arming.next(deadline: 5 * ms, predicted: 4 * ms, now: 2_000, retryKick: false) == 5 * ms)
        #expect(arming.next(deadline: nil, predicted: 50 * ms, now: 3_000, retryKick: false) == 3_000 + TimerArming.watchdog,
                "never later than the watchdog")
    }
}
