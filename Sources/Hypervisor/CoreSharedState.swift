import GuestMemory
import Ring0Core
import Synchronization
import XenABI

/// The domain's state behind its lock. Taking it takes two locks: the host's mutex,
/// then the spin lock the in-VM ring-0 core uses (in the core header, see
/// `Ring0Core.CoreLayout`), because both change the page information and the vCPUs'
/// base pointers. The core holds its lock for a few hundred instructions; if the lock
/// stays taken for `stuckLimit` (its vCPU stopped inside the core, which only happens
/// when the domain is being torn down or the core is broken), the host takes it over
/// and says so in the log.
public final class DomainStateLock: @unchecked Sendable {
    private let mutex: Mutex<DomainState>
    private let memory: GuestMemory
    private let lockWord: GuestPhysicalAddress
    private let log: HypervisorLog
    private let domainID: UInt16
    static let stuckLimit: UInt64 = 2_000_000_000

    init(_ state: DomainState, memory: GuestMemory, lockWord: GuestPhysicalAddress, log: HypervisorLog, domainID: UInt16) {
        self.mutex = Mutex(state)
        self.memory = memory
        self.lockWord = lockWord
        self.log = log
        self.domainID = domainID
    }

    public func withLock<Result, E: Error>(_ body: (inout sending DomainState) throws(E) -> sending Result) throws(E) -> sending Result {
        try mutex.withLock { state throws(E) -> sending Result in
            let tag = CoreLayout.hostLockTag
            if !memory.acquireSpinLock(at: lockWord, tag: tag, limitNanoseconds: Self.stuckLimit) {
                let holder = memory.stealSpinLock(at: lockWord, tag: tag)
                log.log(.error, "d\(domainID): the ring-0 core lock stayed taken (holder \(holder)); the host took it over")
            }
            defer { memory.releaseSpinLock(at: lockWord, tag: tag) }
            return try body(&state)
        }
    }
}

extension Domain {
    /// Writes each vCPU's VIRQ_TIMER port into its core block (0: none), for the
    /// core's local timer (`FastTimer`); after every bind and close.
    public func publishTimerPorts() {
        let ports = state.withLock { state in vcpus.indices.map { state.events.virqPort(vcpu: $0, virq: VIRQ.timer) } }
        for (vcpu, port) in zip(vcpus, ports) { vcpu.setCoreWord(CoreLayout.vcpuTimerPort, UInt64(port ?? 0)) }
    }

    /// Marks vCPU `index` as blocked in SCHEDOP_poll, or no longer (the core's
    /// `headerPollers`).
    public func setPolling(_ index: Int, _ polling: Bool) {
        guard index >= 0, index < 64 else { return }
        let word = GuestPhysicalAddress(layout.coreHeader.rawValue + UInt64(CoreLayout.headerPollers))
        let bit: UInt64 = 1 << UInt64(index)
        _ = try? polling ? memory.atomicFetchOr(bit, at: word) : memory.atomicFetchAnd(~bit, at: word)
    }

    /// Wakes the vCPUs blocked in SCHEDOP_poll (`setPolling`), to look at their ports
    /// again: after the core raised an event without the host.
    public func wakePollers() {
        let word = GuestPhysicalAddress(layout.coreHeader.rawValue + UInt64(CoreLayout.headerPollers))
        guard let pollers = try? memory.atomicLoad64(at: word), pollers != 0 else { return }
        for (index, vcpu) in vcpus.enumerated() where index < 64 && pollers & (1 << UInt64(index)) != 0 { vcpu.wake() }
    }

    /// Writes the parts of the core header the host owns (done at creation).
    func initialiseCoreHeader() {
        let header = layout.coreHeader.rawValue
        try? memory.write(UInt64(0), at: GuestPhysicalAddress(header + UInt64(CoreLayout.headerLock)))
        try? memory.write(UInt64(id), at: GuestPhysicalAddress(header + UInt64(CoreLayout.headerDomainID)))
        try? memory.write(layout.ramFrames, at: GuestPhysicalAddress(header + UInt64(CoreLayout.headerRAMFrames)))
        try? memory.write(UInt64(vcpus.count), at: GuestPhysicalAddress(header + UInt64(CoreLayout.headerVCPUCount)))
        try? memory.write(XenVersion.major << 16 | XenVersion.minor, at: GuestPhysicalAddress(header + UInt64(CoreLayout.headerXenVersion)))
        try? memory.write(UInt64(0), at: GuestPhysicalAddress(header + UInt64(CoreLayout.headerEnabled)))
        publishCPUIDPolicy()
    }

    /// Copies the CPUID policy into the core header, in lookup order, so the core can
    /// answer forced-emulation CPUID; says whether it all fit.
    func publishCPUIDPolicy() {
        let header = layout.coreHeader.rawValue
        let leaves = cpuid.leaves.prefix(CoreLayout.cpuidCapacity)
        for (index, leaf) in leaves.enumerated() {
            let base = header + UInt64(CoreLayout.headerCPUIDTable + index * CoreLayout.cpuidEntrySize)
            let words: [UInt32] = [leaf.function, leaf.index, leaf.indexed ? 1 : 0, leaf.eax, leaf.ebx, leaf.ecx, leaf.edx, 0]
            for (offset, word) in words.enumerated() {
                try? memory.write(word, at: GuestPhysicalAddress(base + UInt64(offset * 4)))
            }
        }
        try? memory.write(UInt64(leaves.count), at: GuestPhysicalAddress(header + UInt64(CoreLayout.headerCPUIDCount)))
        let complete: UInt64 = cpuid.leaves.count <= CoreLayout.cpuidCapacity ? 1 : 0
        try? memory.write(complete, at: GuestPhysicalAddress(header + UInt64(CoreLayout.headerCPUIDComplete)))
    }

    /// Records the guest-virtual address of the hypercall page (the domain builder does,
    /// from the kernel's XEN_ELFNOTE_HYPERCALL_PAGE).
    public func setHypercallPage(_ address: UInt64) {
        hypercallPage.store(address, ordering: .releasing)
        try? memory.write(address, at: GuestPhysicalAddress(layout.coreHeader.rawValue + UInt64(CoreLayout.headerHypercallPage)))
    }

    /// Lets the in-VM core complete hypercalls (or stops it: while tracing, every
    /// hypercall must reach the host).
    public func setCoreEnabled(_ enabled: Bool) {
        try? memory.write(UInt64(enabled ? 1 : 0), at: GuestPhysicalAddress(layout.coreHeader.rawValue + UInt64(CoreLayout.headerEnabled)))
    }

    /// What the in-VM core delivered to guest kernels without an exit, by kind, across
    /// vCPUs: page faults and user-mode system calls bounced, event upcalls, writes to
    /// page tables emulated.
    public func coreDeliveredCounts() -> [String: UInt64] {
        let kinds = [(CoreLayout.inVMPageFault, "#PF"), (CoreLayout.inVMUserSyscall, "system call from user mode"),
                     (CoreLayout.inVMEventUpcall, "event upcall"),
                     (CoreLayout.inVMPageTableWrite, "page-table write emulated (#PF)"),
                     (CoreLayout.inVMCPUID, "forced-emulation CPUID (#UD)"),
                     (CoreLayout.inVMTimer, "timer interrupt (VIRQ_TIMER raised)")]
        var totals: [String: UInt64] = [:]
        for vcpu in vcpus {
            for (slot, name) in kinds {
                let count = vcpu.coreCounter(CoreLayout.vcpuInVMCounts, UInt64(slot))
                if count > 0 { totals[name, default: 0] += count }
            }
        }
        return totals
    }

    /// Hypercalls the in-VM core completed, by number, across vCPUs.
    public func coreHandledCounts() -> [UInt64: UInt64] {
        var totals: [UInt64: UInt64] = [:]
        for vcpu in vcpus {
            for number in 0..<UInt64(CoreLayout.counterSlots) {
                let count = vcpu.coreCounter(CoreLayout.vcpuHandledCounts, number)
                if count > 0 { totals[number, default: 0] += count }
            }
        }
        return totals
    }
}

extension VCPU {
    /// Guest-physical address of a field of this vCPU's core block.
    func coreField(_ offset: Int) -> GuestPhysicalAddress {
        GuestPhysicalAddress(domain.layout.coreVCPUBlock(id).rawValue + UInt64(offset))
    }

    func coreWord(_ offset: Int) -> UInt64 { (try? domain.memory.read(at: coreField(offset))) ?? 0 }
    func setCoreWord(_ offset: Int, _ value: UInt64) { try? domain.memory.write(value, at: coreField(offset)) }

    func coreCounter(_ base: Int, _ number: UInt64) -> UInt64 {
        (try? domain.memory.read(at: coreField(base + Int(number) * 8))) ?? 0
    }

    /// Reads a base-pointer field of the core block.
    func coreTable(_ offset: Int) -> FrameNumber? {
        guard let value: UInt64 = try? domain.memory.read(at: coreField(offset)), value != CoreLayout.noFrame else { return nil }
        return FrameNumber(value)
    }

    func setCoreTable(_ offset: Int, _ frame: FrameNumber?) {
        try? domain.memory.write(frame?.rawValue ?? CoreLayout.noFrame, at: coreField(offset))
    }

    /// Writes the parts of the core block the hypervisor core owns (at creation).
    func initialiseCoreBlock() {
        try? domain.memory.write(UInt64(id), at: coreField(CoreLayout.vcpuID))
        setCoreTable(CoreLayout.vcpuKernelTable, nil)
        setCoreTable(CoreLayout.vcpuUserTable, nil)
        try? domain.memory.write(UInt64(0), at: coreField(CoreLayout.vcpuMode))
        kernelSS = FlatSelector.kernelSS64
        kernelSP = 0
        userGSSelector = 0
        inactiveGSBase = 0
        virtualIOPL = 0
        resumedUserSelectors = nil
        publishVCPUInfo()
        publishTrapsToCore()
    }

    /// Tells the core when the host's timer for this vCPU fires (system time, and the
    /// guest TSC at that moment); zeros when it is not armed.
    public func publishArmedTimer(armedAt: UInt64, armedTSC: UInt64) {
        setCoreWord(CoreLayout.vcpuTimerArmedAt, armedAt)
        setCoreWord(CoreLayout.vcpuTimerArmedTSC, armedTSC)
    }

    /// Gives the core the pair of guest system time and guest TSC that the vCPU's
    /// time info now holds, and the TSC rate, for the deadlines it arms (`FastTimer`).
    public func publishTimeBase(systemTime: UInt64, tsc: UInt64, tscHz: UInt64) {
        setCoreWord(CoreLayout.vcpuTimeBase, systemTime)
        setCoreWord(CoreLayout.vcpuTSCBase, tsc)
        // Ticks per nanosecond in 32.32 fixed point, rounded up so that a deadline is
        // never armed early.
        let (quotient, remainder) = (tscHz << 32).quotientAndRemainder(dividingBy: 1_000_000_000)
        setCoreWord(CoreLayout.vcpuTSCPerNanosecond, quotient + (remainder == 0 ? 0 : 1))
    }

    /// The IA32_TSC_DEADLINE value for `deadline` (guest system time) at guest TSC
    /// `now`: the core's own conversion (`FastTimer.target`), from the base published
    /// above, a little late and capped as the core caps it.
    public func localTimerTSC(for deadline: UInt64, now: UInt64) -> UInt64 {
        let target = FastTimer.tsc(at: deadline &+ FastTimer.lateness, timeBase: coreWord(CoreLayout.vcpuTimeBase),
                                   tscBase: coreWord(CoreLayout.vcpuTSCBase),
                                   ticksPerNanosecond: coreWord(CoreLayout.vcpuTSCPerNanosecond))
        return FastTimer.armable(target, now: now)
    }

    /// Whether the guest's single-shot timer runs on this vCPU's local APIC (FastTimer).
    public func enableLocalTimer(_ enabled: Bool) { setCoreWord(CoreLayout.vcpuLocalTimer, enabled ? 1 : 0) }

    /// The deadline the local APIC timer is armed for (0: none), as the core last set
    /// it or the host did.
    public var localTimerDue: UInt64 {
        get { coreWord(CoreLayout.vcpuTimerDue) }
        set { setCoreWord(CoreLayout.vcpuTimerDue, newValue) }
    }

    /// A single-shot deadline the core took since the last call, now copied into the
    /// host's timer state; nil when there was none.
    public func takeCoreTimerDeadline() -> UInt64? {
        guard coreWord(CoreLayout.vcpuTimerUpdated) != 0 else { return nil }
        let deadline = coreWord(CoreLayout.vcpuTimerDeadline)
        setCoreWord(CoreLayout.vcpuTimerUpdated, 0)
        // 0: the core's local timer fired it (the core never takes a deadline of 0).
        timer.withLock { $0.deadline = deadline == 0 ? nil : deadline }
        return deadline
    }

    /// Copies what the core delivers to the guest kernel without the host: the page
    /// fault handler of the trap table, the syscall and event callbacks (0: none).
    func publishTrapsToCore() {
        let pageFault = trapTable[Int(X86Exception.pageFault)]
        setCoreWord(CoreLayout.vcpuPageFaultHandler, pageFault?.address ?? 0)
        setCoreWord(CoreLayout.vcpuPageFaultFlags, pageFault?.masksEvents == true ? 1 : 0)
        let syscall = callbacks[.syscall]
        setCoreWord(CoreLayout.vcpuSyscallCallback, syscall?.address ?? 0)
        setCoreWord(CoreLayout.vcpuSyscallCallbackFlags, syscall?.masksEvents == true ? 1 : 0)
        setCoreWord(CoreLayout.vcpuEventCallback, callbacks[.event]?.address ?? 0)
    }

    /// Tells the core where the vcpu_info is, when it is in RAM (the direct map covers
    /// RAM only; a vcpu_info still in shared_info stays the host's).
    func publishVCPUInfo() {
        let address = vcpuInfoAddress.rawValue
        let inRAM = address &+ UInt64(VCPUInfoLayout.size) <= domain.layout.ramFrames * pageSize
        try? domain.memory.write(inRAM ? address : CoreLayout.noFrame, at: coreField(CoreLayout.vcpuInfo))
    }
}
