import GuestMemory
import Ring0Core
import Synchronization
import XenABI

/// A domain's life, as `xl list` shows it.
public enum DomainLifecycle: Sendable, Equatable {
    case running
    case paused
    /// The guest asked to shut down (SCHEDOP_shutdown).
    case shutdown(ShutdownReason)
    /// The hypervisor crashed the domain for `reason`.
    case crashed(reason: String)
    /// The toolstack destroyed it.
    case destroyed

    public var isFinished: Bool {
        switch self {
        case .running, .paused: return false
        case .shutdown, .crashed, .destroyed: return true
        }
    }
}

/// Where the hypervisor gets time from. The real one reads the host clock and TSC;
/// tests use a fake.
public protocol HostClock: Sendable {
    /// Host monotonic time, nanoseconds.
    func monotonicNanoseconds() -> UInt64
    /// Host real time: seconds and nanoseconds since the Unix epoch.
    func wallClock() -> (seconds: UInt64, nanoseconds: UInt32)
    /// The guest's time-stamp counter now.
    func guestTSC() -> UInt64
    /// Guest TSC frequency, Hz.
    var tscHz: UInt64 { get }
}

/// One Xen domain: its memory, its vCPUs, and the state its hypercalls change.
///
/// Lock order: `Domain.state` of the lower domain id before that of a higher one; a
/// vCPU's own fields are touched only by its thread, so they need no lock.
public final class Domain: @unchecked Sendable {
    public let id: UInt16
    public let name: String
    public let memory: GuestMemory
    public let layout: DomainLayout
    /// The most frames the domain may have (xl's maxmem).
    public let maximumFrames: UInt64
    /// The CPUID values a PV guest of this domain sees.
    public let cpuid: CPUIDPolicy
    /// Guest-virtual address of the hypercall page, if the kernel asked for one.
    public let hypercallPage = Atomic<UInt64>(0)
    public let log: HypervisorLog
    public let clock: any HostClock
    public private(set) var vcpus: [VCPU] = []

    /// Domain-wide state shared by its vCPUs, backends and the in-VM core.
    public let state: DomainStateLock
    /// Lifecycle (running, shut down, crashed).
    public let lifecycle = Mutex<DomainLifecycle>(.running)
    /// Called once when the domain shuts down or crashes (any thread).
    public let onFinish = Mutex<(@Sendable (DomainLifecycle) -> Void)?>(nil)
    /// Where console_io writes go (Xen's hypervisor console). Defaults to the log.
    public let consoleIOSink = Mutex<(@Sendable ([UInt8]) -> Void)?>(nil)
    /// Finds another domain by id, for interdomain event channels and grant copies.
    /// Set by the toolstack that owns all domains.
    public let peers = Mutex<(@Sendable (UInt16) -> Domain?)?>(nil)
    /// Trace every hypercall and exit of this domain to the log.
    public let trace = Atomic<Bool>(false)
    /// SCHEDOP_shutdown_code: the reason to report if the domain stops without saying.
    public let shutdownCode = Atomic<UInt32>(UInt32.max)
    /// The domain's UUID (xen_domain_handle_t), 16 bytes.
    public let handle: [UInt8]

    /// Host monotonic time at which this domain's system time is 0.
    public let bootTime: UInt64

    public init(id: UInt16, name: String, memory: GuestMemory, layout: DomainLayout, vcpuCount: Int,
                log: HypervisorLog, clock: any HostClock, cpuid: CPUIDPolicy = CPUIDPolicy(hostLeaves: []),
                maximumFrames: UInt64? = nil, handle: [UInt8] = [UInt8](repeating: 0, count: 16)) {
        self.id = id
        self.cpuid = cpuid
        self.maximumFrames = max(maximumFrames ?? layout.ramFrames, layout.ramFrames)
        self.handle = Array((handle + [UInt8](repeating: 0, count: 16)).prefix(16))
        self.name = name
        self.memory = memory
        self.layout = layout
        self.log = log
        self.clock = clock
        self.bootTime = clock.monotonicNanoseconds()
        self.state = DomainStateLock(DomainState(pages: PageTypeTable(memory: memory, base: layout.pageInfo, frameCount: layout.ramFrames)),
                                     memory: memory, lockWord: GuestPhysicalAddress(layout.coreHeader.rawValue + UInt64(CoreLayout.headerLock)),
                                     log: log, domainID: id)
        self.vcpus = (0..<max(1, vcpuCount)).map { VCPU(id: $0, domain: self, sharedInfo: layout.sharedInfo) }
        initialiseCoreHeader()
        for vcpu in vcpus { vcpu.initialiseCoreBlock() }
    }

    /// Nanoseconds since the domain booted: Xen's "system time".
    public func systemTime() -> UInt64 {
        clock.monotonicNanoseconds() &- bootTime
    }

    /// Marks the domain shut down with `reason` (first call wins) and notifies the owner.
    public func shutdown(_ reason: ShutdownReason) {
        finish(.shutdown(reason))
    }

    /// Crashes the domain: the hypervisor stops running it and says why.
    public func crash(_ reason: String) {
        log.log(.error, "d\(id) crashed: \(reason)")
        finish(.crashed(reason: reason))
    }

    /// Pauses the domain (xl pause): its vCPUs stop running guest code until `unpause`.
    @discardableResult
    public func pause() -> Bool {
        let changed = lifecycle.withLock { state -> Bool in
            guard state == .running else { return false }
            state = .paused
            return true
        }
        if changed { for vcpu in vcpus { vcpu.wake() } }
        return changed
    }

    /// Lets a paused domain run again.
    @discardableResult
    public func unpause() -> Bool {
        let changed = lifecycle.withLock { state -> Bool in
            guard state == .paused else { return false }
            state = .running
            return true
        }
        if changed { for vcpu in vcpus { vcpu.wake() } }
        return changed
    }

    public var isPaused: Bool { lifecycle.withLock { $0 == .paused } }

    /// Nanoseconds of host CPU the domain's vCPUs spent running guest code.
    public var cpuTime: UInt64 { vcpus.reduce(0) { $0 &+ $1.cpuTime.load(ordering: .relaxed) } }

    /// Destroys the domain on the toolstack's request.
    public func destroy(_ reason: String) {
        log.log(.info, "d\(id) destroyed: \(reason)")
        finish(.destroyed)
    }

    private func finish(_ end: DomainLifecycle) {
        let changed = lifecycle.withLock { current -> Bool in
            if current.isFinished { return false }
            current = end
            return true
        }
        guard changed else { return }
        for vcpu in vcpus { vcpu.wake() }
        if let handler = onFinish.withLock({ $0 }) { handler(end) }
    }

    public var isFinished: Bool { lifecycle.withLock { $0.isFinished } }

    /// What the page-type operations need from this domain.
    var mmuEnvironment: MMUEnvironment {
        MMUEnvironment(memory: memory, layout: layout, log: log, domainID: id)
    }

    /// The domain with id `id`: this one, or a peer.
    public func domain(_ id: UInt16) -> Domain? {
        if id == DomainID.`self` || id == self.id { return self }
        return peers.withLock { $0 }?(id)
    }

    /// Writes console_io output.
    func writeConsoleIO(_ bytes: [UInt8]) {
        if let sink = consoleIOSink.withLock({ $0 }) {
            sink(bytes)
        } else {
            log.log(.info, "(d\(id)) " + String(decoding: bytes, as: UTF8.self))
        }
    }

    /// Total hypercalls by number across vCPUs (for diagnostics), including those the
    /// in-VM core completed.
    public func hypercallCounts() -> [UInt64: UInt64] {
        var totals = coreHandledCounts()
        for vcpu in vcpus {
            for (number, count) in vcpu.hypercallCounts.enumerated() where count > 0 {
                totals[UInt64(number), default: 0] += count
            }
        }
        return totals
    }

    /// Total exits by kind across vCPUs.
    public func exitCounts() -> [String: UInt64] {
        var totals: [String: UInt64] = [:]
        for vcpu in vcpus {
            for (kind, count) in vcpu.exitCounts { totals[kind, default: 0] += count }
        }
        return totals
    }

    /// Host time spent on exits, by exit kind and by hypercall number, across vCPUs.
    public func exitNanoseconds() -> (byKind: [String: UInt64], byHypercall: [UInt64: UInt64]) {
        var kinds: [String: UInt64] = [:]
        var hypercalls: [UInt64: UInt64] = [:]
        for vcpu in vcpus {
            for (kind, time) in vcpu.exitNanoseconds { kinds[kind, default: 0] += time }
            for (number, time) in vcpu.hypercallExitNanoseconds { hypercalls[number, default: 0] += time }
        }
        return (kinds, hypercalls)
    }

    /// Totals of `VCPU.count(event:)` across vCPUs.
    public func eventCounts() -> [String: UInt64] {
        var totals: [String: UInt64] = [:]
        for vcpu in vcpus {
            for (kind, count) in vcpu.eventCounts { totals[kind, default: 0] += count }
        }
        return totals
    }
}

/// The domain-wide state behind `Domain.state`'s lock.
public struct DomainState: Sendable {
    /// Frame types and counts of guest RAM (the PV MMU's bookkeeping).
    public var pages: PageTypeTable
    /// Event channels.
    public var events = EventChannelTable()
    /// Grant-table bookkeeping.
    public var grants = GrantTableState()
    /// VM assists the guest enabled (bit per VMASST_TYPE_*).
    public var vmAssists: UInt64 = 0

    init(pages: PageTypeTable) {
        self.pages = pages
    }
}

extension Domain {
    /// What the toolstack does once the initial page tables are written (Xen's
    /// bootlate_pv): pin the L4 — which validates the whole tree — and make it vCPU 0's
    /// page table base.
    public func pinInitialPageTables(_ l4: FrameNumber) throws(XenError) {
        var work = PendingMachineWork()
        let env = mmuEnvironment
        try state.withLock { state throws(XenError) in
            try state.getPageType(l4, .l4, env, &work)
            state.pages.update(l4) { $0.pinned = true }
            try state.getPageType(l4, .l4, env, &work)
        }
        vcpus[0].kernelTable = l4
    }
}
