import Hypervisor
import KVM
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Wakes a vCPU thread: out of a block (an eventfd it waits on) or out of the guest
/// (a kick that makes KVM_RUN return). The vCPU thread marks when it is in the guest,
/// so a wake only kicks when that is needed.
final class Wakeup: VCPUWaker, @unchecked Sendable {
    let notifier: EventNotifier
    let cpu: VirtualCPU
    /// True while the vCPU thread is in (or about to enter) KVM_RUN.
    let inGuest = Atomic<Bool>(false)

    init(cpu: VirtualCPU) throws(KVMError) {
        self.notifier = try EventNotifier()
        self.cpu = cpu
    }

    func wake() {
        notifier.signal()
        if inGuest.load(ordering: .sequentiallyConsistent) { cpu.kick() }
    }

    /// Waits until woken or until host monotonic time `deadline` (at most `cap` ns).
    func wait(until deadline: UInt64?, now: UInt64, cap: UInt64 = 1_000_000_000) {
        let limit = min(deadline.map { $0 > now ? $0 - now : 0 } ?? cap, cap)
        notifier.wait(nanoseconds: limit)
    }
}

/// Host monotonic and real time.
enum HostTime {
    static func monotonic() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
    }

    static func realtime() -> (seconds: UInt64, nanoseconds: UInt32) {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return (UInt64(spec.tv_sec), UInt32(spec.tv_nsec))
    }
}

/// The host clock a domain's time comes from: the host's monotonic and real clocks,
/// and the guest TSC (the host TSC plus the offset KVM gave the VM).
public final class KVMHostClock: HostClock, @unchecked Sendable {
    public let tscHz: UInt64
    private let offset = Atomic<UInt64>(0)

    public init(tscHz: UInt64) { self.tscHz = tscHz }

    /// Measures the guest TSC's offset from the host TSC on `cpu`.
    ///
    /// The guest's TSC was read somewhere between `before` and `after`; the offset is
    /// taken as if at `after`, the smallest it can be, so `guestTSC()` is never ahead
    /// of the TSC the guest reads. (A tsc_timestamp ahead of the guest's TSC makes the
    /// guest's pvclock delta negative, which it reads as a jump of years, and its
    /// timers land months ahead.) Of a few tries, the narrowest window wins: under
    /// emulation one ioctl can take hundreds of microseconds.
    func calibrate(with cpu: VirtualCPU) {
        var best: (window: UInt64, offset: UInt64)?
        for _ in 0..<5 {
            let before = VirtualCPU.hostTSC()
            guard let guest = try? cpu.getMSRs([MSR.tsc]).first else { continue }
            let after = VirtualCPU.hostTSC()
            let window = after &- before
            if window < (best?.window ?? .max) { best = (window, guest &- after) }
        }
        if let best { offset.store(best.offset, ordering: .releasing) }
    }

    public func monotonicNanoseconds() -> UInt64 { HostTime.monotonic() }
    public func wallClock() -> (seconds: UInt64, nanoseconds: UInt32) { HostTime.realtime() }
    public func guestTSC() -> UInt64 { VirtualCPU.hostTSC() &+ offset.load(ordering: .acquiring) }
}
