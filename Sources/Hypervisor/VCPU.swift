import GuestMemory
import Ring0Core
import Synchronization
import XenABI

/// Whether a PV vCPU is running its guest's kernel or a user process. Both run at
/// CPL 3; the hypervisor keeps the distinction (Xen's `TF_kernel_mode`).
public enum GuestMode: Sendable, Equatable {
    case kernel
    case user
}

/// A registered guest callback (event, failsafe, syscall, ...).
public struct GuestCallback: Sendable, Equatable {
    public var address: UInt64
    public var masksEvents: Bool
    public init(address: UInt64, masksEvents: Bool) { self.address = address; self.masksEvents = masksEvents }
}

/// Work the machine layer must do inside the VM before the guest runs again: page-table
/// stores to replay at ring 0 (so shadow-paging hosts see them) and TLB flushes.
public struct PendingMachineWork: Sendable, Equatable {
    /// Page-table entries written in guest memory, to replay inside the VM.
    public var pageTableStores: [(GuestPhysicalAddress, UInt64)] = []
    /// Linear addresses to invalidate.
    public var invalidations: [UInt64] = []
    /// Flush the whole (non-global) TLB.
    public var flushAll = false
    /// Flush the other vCPUs' TLBs too: a frame that was writable became a page table
    /// or descriptor page, and another vCPU may still hold a writable translation
    /// (Xen flushes every CPU that may, in `_get_page_type`). `VCPU.addWork` passes it on.
    public var flushOtherVCPUs = false

    public init() {}
    public var isEmpty: Bool { pageTableStores.isEmpty && invalidations.isEmpty && !flushAll && !flushOtherVCPUs }

    /// Adds `other`'s work to this.
    public mutating func merge(_ other: PendingMachineWork) {
        pageTableStores += other.pageTableStores
        invalidations += other.invalidations
        flushAll = flushAll || other.flushAll
        flushOtherVCPUs = flushOtherVCPUs || other.flushOtherVCPUs
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.flushAll == rhs.flushAll && lhs.flushOtherVCPUs == rhs.flushOtherVCPUs && lhs.invalidations == rhs.invalidations
            && lhs.pageTableStores.map(\.0) == rhs.pageTableStores.map(\.0)
            && lhs.pageTableStores.map(\.1) == rhs.pageTableStores.map(\.1)
    }
}

/// Something that can wake a vCPU: kick it out of the guest, or out of a block.
/// The machine layer provides it; tests use a recorder.
public protocol VCPUWaker: AnyObject, Sendable {
    func wake()
}

/// The PV state of one vCPU, as Xen keeps it in `struct vcpu` / `struct pv_vcpu`.
///
/// Owned by the thread that runs the vCPU: hypercalls and traps of this vCPU mutate it
/// on that thread only. Other threads reach it only through `wake()` and the
/// thread-safe `timer` state.
public final class VCPU: @unchecked Sendable {
    public let id: Int
    public unowned let domain: Domain

    // Mode and stacks.
    /// Kept in the core block: the in-VM core serves guest kernel mode, and its iret
    /// switches to user mode.
    public var mode: GuestMode {
        get { coreWord(CoreLayout.vcpuMode) == 0 ? .kernel : .user }
        set { setCoreWord(CoreLayout.vcpuMode, newValue == .kernel ? 0 : 1) }
    }
    // Kept in the core block, where the in-VM core sets them too (stack_switch).
    public var kernelSS: UInt16 {
        get { UInt16(truncatingIfNeeded: coreWord(CoreLayout.vcpuKernelSS)) }
        set { setCoreWord(CoreLayout.vcpuKernelSS, UInt64(newValue)) }
    }
    public var kernelSP: UInt64 {
        get { coreWord(CoreLayout.vcpuKernelSP) }
        set { setCoreWord(CoreLayout.vcpuKernelSP, newValue) }
    }

    // Page tables: the kernel and user L4 (Xen's guest_table and guest_table_user),
    // kept in the core block, where the in-VM core switches them too (under the lock).
    public var kernelTable: FrameNumber? {
        get { coreTable(CoreLayout.vcpuKernelTable) }
        set { setCoreTable(CoreLayout.vcpuKernelTable, newValue) }
    }
    public var userTable: FrameNumber? {
        get { coreTable(CoreLayout.vcpuUserTable) }
        set { setCoreTable(CoreLayout.vcpuUserTable, newValue) }
    }

    /// The GS base of the mode not currently active (Xen swaps them on mode switch).
    /// In the core block, like the user GS selector (set_segment_base).
    public var inactiveGSBase: UInt64 {
        get { coreWord(CoreLayout.vcpuInactiveGSBase) }
        set { setCoreWord(CoreLayout.vcpuInactiveGSBase, newValue) }
    }
    /// The user GS selector set by SEGBASE_GS_USER_SEL.
    public var userGSSelector: UInt16 {
        get { UInt16(truncatingIfNeeded: coreWord(CoreLayout.vcpuUserGSSelector)) }
        set { setCoreWord(CoreLayout.vcpuUserGSSelector, UInt64(newValue)) }
    }

    // Traps and callbacks (the in-VM core keeps a copy of the ones it delivers).
    public var trapTable = [TrapInfo?](repeating: nil, count: 256) {
        didSet { publishTrapsToCore() }
    }
    public var callbacks: [CallbackType: GuestCallback] = [:] {
        didSet { publishTrapsToCore() }
    }

    // Descriptor tables: the guest's GDT frames and entry count, and its LDT.
    public var gdtFrames: [FrameNumber] = []
    public var gdtEntries = 0
    /// Set when the guest's GDT changed and the hardware copy must be refreshed.
    public let gdtChanged = Atomic<Bool>(false)
    /// Set by another vCPU that wants this one's TLB flushed before it runs guest code.
    public let remoteFlush = Atomic<Bool>(false)
    public var ldtBase: UInt64 = 0
    public var ldtEntries = 0
    /// The frames holding the LDT (descriptor pages while in use).
    public var ldtFrames: [FrameNumber] = []
    /// Set when the LDT changed and the hardware copy must be refreshed.
    public let ldtChanged = Atomic<Bool>(false)

    /// Where this vCPU's vcpu_info lives (its shared_info slot, or where
    /// register_vcpu_info put it). Atomic: event senders on other threads read it.
    private let vcpuInfoRaw: Atomic<UInt64>
    public var vcpuInfoAddress: GuestPhysicalAddress {
        get { GuestPhysicalAddress(vcpuInfoRaw.load(ordering: .acquiring)) }
        set {
            vcpuInfoRaw.store(newValue.rawValue, ordering: .releasing)
            publishVCPUInfo()
        }
    }
    public var vcpuInfoRegistered = false
    /// Guest-virtual address of the runstate area, if registered.
    public var runstateArea: GuestVirtualAddress?
    /// A second copy of vcpu_time_info the guest asked for
    /// (VCPUOP_register_vcpu_time_memory_area): Linux maps it into its vDSO, so user
    /// space reads the clock without a system call.
    public var timeMemoryArea: GuestVirtualAddress?

    /// Virtual CR0.TS (fpu_taskswitch).
    public var virtualTS = false
    /// Virtual I/O privilege level (physdev_op set_iopl); the real IOPL stays 0.
    public var virtualIOPL: UInt8 {
        get { UInt8(truncatingIfNeeded: coreWord(CoreLayout.vcpuVirtualIOPL)) }
        set { setCoreWord(CoreLayout.vcpuVirtualIOPL, UInt64(newValue)) }
    }
    /// The user CS and SS the host last resumed guest user mode with, which the core's
    /// iret may return to (nil: none since the descriptor tables were last loaded).
    public var resumedUserSelectors: (cs: UInt16, ss: UInt16)? {
        get {
            let cs = coreWord(CoreLayout.vcpuUserCS)
            return cs == 0 ? nil : (UInt16(truncatingIfNeeded: cs), UInt16(truncatingIfNeeded: coreWord(CoreLayout.vcpuUserSS)))
        }
        set {
            setCoreWord(CoreLayout.vcpuUserCS, newValue.map { UInt64($0.cs) } ?? 0)
            setCoreWord(CoreLayout.vcpuUserSS, newValue.map { UInt64($0.ss) } ?? 0)
        }
    }
    public var debugRegisters = [UInt64](repeating: 0, count: 8)
    /// Whether the vCPU runs (VCPUOP_up/down). Atomic: other vCPUs change it.
    private let onlineFlag: Atomic<Bool>
    public var online: Bool {
        get { onlineFlag.load(ordering: .acquiring) }
        set { onlineFlag.store(newValue, ordering: .releasing) }
    }
    /// Whether the guest gave this vCPU an initial context (VCPUOP_initialise); vCPU 0
    /// starts with the domain builder's.
    public var initialised: Bool
    /// Taken by the one VCPUOP_initialise that may set this vCPU's context.
    let initialisationClaim: Atomic<Bool>
    /// The context VCPUOP_initialise gave, for the machine layer to load when the vCPU
    /// first runs (`VCPURunner.startFrom`).
    public var startContext: GuestContext?

    /// Per-vCPU counters: hypercalls by number, exits by kind.
    public var hypercallCounts = [UInt64](repeating: 0, count: 64)
    public var exitCounts: [String: UInt64] = [:]
    public var eventCounts: [String: UInt64] = [:]
    /// Host nanoseconds from each exit to the next entry into the guest (blocked time
    /// left out), by exit kind, and for hypercall exits by hypercall number.
    public var exitNanoseconds: [String: UInt64] = [:]
    public var hypercallExitNanoseconds: [UInt64: UInt64] = [:]
    /// What the last exit was, for `chargeExit`.
    private var lastExitKind: String?
    private var lastExitHypercall: UInt64?

    /// Work for the machine before the guest runs again.
    public var pendingWork = PendingMachineWork()

    /// Nanoseconds this vCPU spent blocked (for the runstate area).
    public var blockedTime: UInt64 = 0
    /// Nanoseconds of host CPU spent running this vCPU's guest code (xl's Time(s)).
    public let cpuTime = Atomic<UInt64>(0)

    /// Nanoseconds this vCPU has been running (or runnable) since boot.
    public func runningTime(now: UInt64) -> UInt64 { now > blockedTime ? now - blockedTime : 0 }

    /// Timer state, shared with other threads (the event path sets, the vCPU consumes).
    public let timer = Mutex<TimerState>(TimerState())
    public struct TimerState: Sendable {
        /// Single-shot deadline in system-time nanoseconds.
        public var deadline: UInt64?
        /// Periodic timer period (VCPUOP_set_periodic_timer), nanoseconds.
        public var period: UInt64?
        /// Next periodic expiry.
        public var periodicNext: UInt64?

        /// The earliest expiry of either timer.
        public var nextExpiry: UInt64? {
            switch (deadline, periodicNext) {
            case let (a?, b?): return min(a, b)
            case let (a?, nil): return a
            case let (nil, b?): return b
            default: return nil
            }
        }
    }

    /// How to wake this vCPU; set by the machine layer.
    public let waker = Mutex<(any VCPUWaker)?>(nil)
    /// Whether the vCPU is blocked in SCHEDOP_block (so event delivery must wake it).
    public let blocked = Atomic<Bool>(false)

    init(id: Int, domain: Domain, sharedInfo: GuestPhysicalAddress) {
        self.id = id
        self.domain = domain
        self.onlineFlag = Atomic(id == 0)
        self.initialised = id == 0
        self.initialisationClaim = Atomic(id == 0)
        self.vcpuInfoRaw = Atomic(sharedInfo.rawValue + UInt64(SharedInfoLayout.vcpuInfo(min(id, 31))))
    }

    /// Adds work for the machine before this vCPU runs again; a flush of the other
    /// vCPUs is asked of them at once (`flushRemotely`).
    public func addWork(_ work: PendingMachineWork) {
        var work = work
        if work.flushOtherVCPUs {
            work.flushOtherVCPUs = false
            flushRemotely(domain.vcpus.filter { $0 !== self })
        }
        pendingWork.merge(work)
    }

    /// Asks `targets` (other vCPUs of the domain) to flush their TLBs, kicking those in
    /// the guest. This vCPU does not run guest code again until each has done so or is
    /// not running guest code (`awaitedFlushes`), as Xen's flush IPIs are waited for.
    public func flushRemotely(_ targets: [VCPU]) {
        for target in targets where target !== self {
            target.remoteFlush.store(true, ordering: .sequentiallyConsistent)
            target.wake()
            if !awaitedFlushes.contains(where: { $0 === target }) { awaitedFlushes.append(target) }
        }
    }

    /// vCPUs this one asked to flush (`flushRemotely`) and must wait for.
    public var awaitedFlushes: [VCPU] = []

    /// Whether a flush asked of this vCPU is done as far as others must wait: it took
    /// the request (it flushes before its next guest instruction), or it runs no guest
    /// code now (blocked, down) and will take it before it does.
    public var remoteFlushSettled: Bool {
        !remoteFlush.load(ordering: .sequentiallyConsistent) || blocked.load(ordering: .sequentiallyConsistent)
            || waitingForFlushes.load(ordering: .sequentiallyConsistent) || !online
    }

    /// Set while this vCPU waits for others to take its flushes: it runs no guest code
    /// then, and takes flushes asked of it right after (two vCPUs flushing each other
    /// do not wait for each other).
    public let waitingForFlushes = Atomic<Bool>(false)

    /// Refreshes the guest's second copy of its time record, if it registered one
    /// (after the machine layer wrote a fresh vcpu_time_info).
    public func copyTimeInfoToRegisteredArea() { VCPUOps.copyTimeInfo(self) }

    /// Kicks or wakes this vCPU so it notices new events or timers.
    public func wake() {
        waker.withLock { $0 }?.wake()
    }

    /// The L4 the hardware must use now.
    public var activeTable: FrameNumber? { mode == .kernel ? kernelTable : userTable }

    /// "d<domain>v<vcpu>", Xen's way of naming a vCPU in logs.
    public var name: String { "d\(domain.id)v\(id)" }

    func count(hypercall number: UInt64) {
        if number < UInt64(hypercallCounts.count) { hypercallCounts[Int(number)] &+= 1 }
        // The first hypercall after an exit is the one that exited (a multicall's
        // entries come after it).
        if lastExitKind != nil && lastExitHypercall == nil { lastExitHypercall = number }
    }

    public func count(exit kind: String) {
        exitCounts[kind, default: 0] &+= 1
        lastExitKind = kind
        lastExitHypercall = nil
    }

    /// Charges `nanoseconds` of host time to the last exit counted (the runner calls
    /// this as it enters the guest again).
    public func chargeExit(_ nanoseconds: UInt64) {
        guard let kind = lastExitKind else { return }
        exitNanoseconds[kind, default: 0] &+= nanoseconds
        if let number = lastExitHypercall { hypercallExitNanoseconds[number, default: 0] &+= nanoseconds }
        lastExitKind = nil
        lastExitHypercall = nil
    }

    /// Counts something that happened on an exit or a resume but is not an exit itself
    /// (a resume through the apply routine, an upcall written in place, a wait).
    public func count(event kind: String) {
        eventCounts[kind, default: 0] &+= 1
    }

    // MARK: vcpu_info access

    /// Reads this vCPU's evtchn_upcall_mask.
    public func upcallMask() -> Bool {
        let value: UInt8 = (try? domain.memory.read(at: vcpuInfoField(VCPUInfoLayout.upcallMask))) ?? 1
        return value != 0
    }

    /// Sets this vCPU's evtchn_upcall_mask.
    public func setUpcallMask(_ masked: Bool) {
        try? domain.memory.write(UInt8(masked ? 1 : 0), at: vcpuInfoField(VCPUInfoLayout.upcallMask))
    }

    /// Whether an event upcall is pending (evtchn_upcall_pending).
    public func upcallPending() -> Bool {
        let value: UInt8 = (try? domain.memory.read(at: vcpuInfoField(VCPUInfoLayout.upcallPending))) ?? 0
        return value != 0
    }

    func vcpuInfoField(_ offset: Int) -> GuestPhysicalAddress {
        GuestPhysicalAddress(vcpuInfoAddress.rawValue &+ UInt64(offset))
    }
}

extension VCPU {
    /// One line of what the vCPU looks like from the hypervisor (for a domain that
    /// stopped making progress): mode, event mask and pending flag, its timer.
    public func stateSummary() -> String {
        let now = domain.systemTime()
        let timer: String
        if let expiry = self.timer.withLock({ $0.nextExpiry }) {
            timer = expiry <= now ? "timer due \((now - expiry) / 1_000_000) ms ago" : "timer in \((expiry - now) / 1_000_000) ms"
        } else {
            timer = "no timer"
        }
        var apic = ""
        if coreWord(CoreLayout.vcpuLocalTimer) != 0 {
            let due = localTimerDue
            apic = due == 0 ? ", local APIC timer not armed"
                : ", local APIC timer armed for \(due <= now ? "\((now - due) / 1_000_000) ms ago" : "in \((due - now) / 1_000_000) ms")"
        }
        return "\(name): \(online ? "online" : "down"), guest \(mode == .kernel ? "kernel" : "user") mode, "
            + "events \(upcallMask() ? "masked" : "unmasked"), upcall \(upcallPending() ? "pending" : "not pending"), \(timer)\(apic)"
    }
}
