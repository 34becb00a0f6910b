/// The memory the in-VM ring-0 core shares with the host hypervisor.
///
/// The core (this module, compiled with Embedded Swift for `x86_64-unknown-none-elf`
/// and placed in every domain's hypervisor area, see ring0/ and docs/ARCHITECTURE.md)
/// handles the hottest hypercalls without leaving the VM. It and the host's
/// `Hypervisor` module keep one copy of the PV MMU's bookkeeping, laid out here, in
/// supervisor-only pages of the hypervisor area; the host reaches it through
/// `GuestMemory`, the core through the hypervisor's own mappings.
///
/// Everything is little-endian and naturally aligned.
public enum CoreLayout {
    /// Bumped whenever a layout below changes; the host writes it into every vCPU block
    /// and the core refuses to run (takes the slow path) on a mismatch.
    public static let version: UInt64 = 0x444f_4d55_5330_0009   // "DOMUS0" + 9

    // MARK: Page information: one entry per RAM frame (Xen's page_info)

    public static let pageInfoSize = 16
    /// u32: references to the frame's type (Xen's type_info count).
    public static let pageInfoTypeCount = 0
    /// u32: present entries of validated L1 tables that map the frame.
    public static let pageInfoMappings = 4
    /// u8: the frame's type (`PageTypeCode`).
    public static let pageInfoType = 8
    /// u8: 1 while pinned (MMUEXT_PIN_Lx_TABLE).
    public static let pageInfoPinned = 9

    // MARK: The domain header (one page)

    /// u64 spin lock over the page information and the vCPUs' base pointers: 0 when
    /// free, else the owner's tag (`hostLockTag`, or 1 + vCPU id for the core).
    public static let headerLock = 0x00
    /// u64: the domain's id (for DOMID_SELF checks).
    public static let headerDomainID = 0x08
    /// u64: number of RAM frames.
    public static let headerRAMFrames = 0x10
    /// u64: guest-virtual address of the hypercall page (0: none yet).
    public static let headerHypercallPage = 0x18
    /// u64: non-zero while the fast paths may run (zero while hypercalls are traced).
    public static let headerEnabled = 0x20
    /// u64: the domain's number of vCPUs (ids at or above it do not exist).
    public static let headerVCPUCount = 0x28
    /// u64: what XENVER_version returns (major << 16 | minor).
    public static let headerXenVersion = 0x30
    /// u64: the core's pointer to shared_info (its event bitmaps), 0 when it has none.
    public static let headerSharedInfo = 0x38
    /// u64, set by the host: a bit for each vCPU blocked in SCHEDOP_poll. An event the
    /// core raises then goes to the host too, which wakes them (Xen's
    /// evtchn_check_pollers).
    public static let headerPollers = 0x50
    /// u64: entries in the CPUID table below, and 1 when it holds every leaf of the
    /// domain's policy (a leaf not found then reads as zeros, as from the host).
    public static let headerCPUIDCount = 0x40
    public static let headerCPUIDComplete = 0x48
    /// The domain's CPUID policy (`Hypervisor.CPUIDPolicy`), in its lookup order:
    /// entries of `cpuidEntrySize` bytes — u32 function, u32 index, u32 1 when the
    /// index selects a sub-leaf, u32 eax, ebx, ecx, edx — up to the page's end.
    public static let headerCPUIDTable = 0x100
    public static let cpuidEntrySize = 32
    public static let cpuidCapacity = (4096 - headerCPUIDTable) / cpuidEntrySize

    /// The lock tag the host uses.
    public static let hostLockTag: UInt64 = 0x8000_0000_0000_0000

    // MARK: A vCPU block (one page per vCPU)

    /// u64: `version`.
    public static let vcpuVersion = 0x000
    /// u64: where the core finds the domain header (a pointer in the core's address space).
    public static let vcpuDomainHeader = 0x008
    /// u64: where the core finds guest RAM frame 0 (the direct map).
    public static let vcpuRAMBase = 0x010
    /// u64: where the core finds page information entry 0.
    public static let vcpuPageInfo = 0x018
    /// u64: the vCPU's id.
    public static let vcpuID = 0x020
    /// u64: the kernel L4's frame number, or `noFrame`.
    public static let vcpuKernelTable = 0x028
    /// u64: the user L4's frame number, or `noFrame`.
    public static let vcpuUserTable = 0x030
    /// u64: 0 in guest kernel mode, 1 in guest user mode.
    public static let vcpuMode = 0x038
    /// u64, set by the core: the CR3 value to load before returning (0: none).
    public static let vcpuRequestCR3 = 0x040
    /// u64, set by the core: 1 to flush the TLB (non-global) before returning.
    public static let vcpuRequestFlush = 0x048
    /// u64, set by the core: a linear address to invalidate before returning (with
    /// `vcpuRequestInvalidate` = 1).
    public static let vcpuRequestInvalidate = 0x050
    public static let vcpuInvalidateAddress = 0x058
    /// u8, set by the host: something (an event, a timer) wants the hypervisor, so the
    /// core's return path must leave to the host instead of returning to the guest.
    /// Its offset is fixed in ring0/entry.S (relative to the interrupt frame).
    public static let vcpuAttention = 0x060
    /// u64, set by the host: the guest-physical address of the vCPU's vcpu_info when
    /// it is in RAM (the core reaches it through the direct map), else `noFrame`.
    /// Its offset is fixed in ring0/entry.S.
    public static let vcpuInfo = 0x068
    /// u64: the guest kernel's stack selector and pointer (stack_switch).
    public static let vcpuKernelSS = 0x070
    public static let vcpuKernelSP = 0x078
    /// u64: the user GS selector (SEGBASE_GS_USER_SEL).
    public static let vcpuUserGSSelector = 0x080
    /// u64: the GS base of the guest mode not running (Xen's gs_base_user in kernel mode).
    public static let vcpuInactiveGSBase = 0x088
    /// u64, set by the core: an MSR to write before returning (0: none), and its value.
    public static let vcpuRequestMSR = 0x090
    public static let vcpuRequestMSRValue = 0x098
    /// u64, set by the core: 1 to exchange the GS base with `vcpuInactiveGSBase` before
    /// returning (a switch between guest kernel and guest user mode).
    public static let vcpuRequestSwapGS = 0x0a0
    /// u64, set by the host: the user CS and SS it last resumed guest user mode with,
    /// under the descriptor tables now loaded (0: none). The core returns to user mode
    /// only with these, which the CPU is known to accept.
    public static let vcpuUserCS = 0x0a8
    public static let vcpuUserSS = 0x0b0
    /// u64, set by the host: the domain's virtual IOPL (PHYSDEVOP_set_iopl).
    public static let vcpuVirtualIOPL = 0x0b8
    /// u64: where the core finds the vCPU's #GP fast-path flag byte (a pointer in the
    /// core's address space; 0: unknown): set while the current guest mode may `cli`.
    public static let vcpuFastIOFlag = 0x0c0
    /// u64, set by the host: the guest's page-fault handler (its trap table's entry 14;
    /// 0: none) and whether it masks events (bit 0).
    public static let vcpuPageFaultHandler = 0x0c8
    public static let vcpuPageFaultFlags = 0x0d0
    /// u64, set by the host: the syscall callback (0: none) and whether it masks events.
    public static let vcpuSyscallCallback = 0x0d8
    public static let vcpuSyscallCallbackFlags = 0x0e0
    /// u64, set by the host: the event callback (0: none); upcalls always mask events.
    public static let vcpuEventCallback = 0x0e8
    /// u64, set by ring0/entry.S: the error code of the exception being handled.
    /// Its offset is fixed in ring0/entry.S.
    public static let vcpuTrapErrorCode = 0x0f8
    /// u64 counters, by hypercall number (0..<64): hypercalls the core completed.
    public static let vcpuHandledCounts = 0x100
    /// u64 counters, by hypercall number (0..<64): hypercalls the core left to the host.
    public static let vcpuDeferredCounts = 0x300
    public static let counterSlots = 64
    /// u64 counters of what the core delivered to the guest kernel without an exit,
    /// indexed by `inVM*`.
    public static let vcpuInVMCounts = 0x500
    public static let inVMPageFault = 0
    public static let inVMUserSyscall = 1
    public static let inVMEventUpcall = 2
    public static let inVMPageTableWrite = 3
    public static let inVMCPUID = 4
    public static let inVMTimer = 5
    public static let inVMCounterSlots = 8

    /// u64, set by the host: when its timer for this vCPU fires next while the guest
    /// runs, in guest system time, and the guest TSC value at (a little before) that
    /// moment; 0: not armed. The core takes a single-shot deadline at or after it
    /// without the host (the host sees it when its timer fires), as long as the TSC
    /// says that moment has not come yet.
    public static let vcpuTimerArmedAt = 0x580
    public static let vcpuTimerArmedTSC = 0x588
    /// u64, set by the core: the single-shot deadline it took (system time ns), and 1
    /// in `vcpuTimerUpdated` until the host has copied it.
    public static let vcpuTimerDeadline = 0x590
    public static let vcpuTimerUpdated = 0x598

    /// The in-VM timer (`FastTimer`), where the VM has KVM's local APIC with its
    /// TSC-deadline timer: the core arms it for the guest's single-shot deadlines and
    /// takes its interrupt, raising VIRQ_TIMER without the host.
    /// u64, set by the host: 1 when the vCPU's local APIC timer is the guest's timer.
    public static let vcpuLocalTimer = 0x5a0
    /// u64, set by the core and by the host (never both at once: the host only while
    /// the vCPU is out of the VM): the deadline the APIC timer is armed for (system
    /// time ns), 0 for none.
    public static let vcpuTimerDue = 0x5a8
    /// u64, set by the host: the event channel bound to this vCPU's VIRQ_TIMER, 0 for
    /// none (the host then raises it).
    public static let vcpuTimerPort = 0x5b0
    /// u64, set by the host: guest system time and guest TSC at one moment, and TSC
    /// ticks per nanosecond as a 32.32 fixed-point number, for deadlines in TSC ticks.
    public static let vcpuTimeBase = 0x5b8
    public static let vcpuTSCBase = 0x5c0
    public static let vcpuTSCPerNanosecond = 0x5c8
    /// u64, for ring0/entry.S: a TSC value to write to IA32_TSC_DEADLINE on the way
    /// out, 0 for none.
    public static let vcpuRequestDeadline = 0x5d0

    /// The registers of a multicall entry the core runs (laid out as `saved*`).
    public static let vcpuScratchRegisters = 0x600

    /// The flight recorder: the last `recorderSlots` ways into and out of the core and
    /// the host (what, rip, cr3, rsp; u64 each), in a ring, so that a vCPU that dies
    /// inside the VM (a triple fault, which leaves no state behind) says what it did
    /// last. u64 `vcpuRecorderEnabled`, set by the host: non-zero to record (ring0/entry.S
    /// skips the recording otherwise); u64 `vcpuRecorderCount`: events recorded so far
    /// (the next slot is count % slots). Offsets fixed in ring0/entry.S.
    public static let vcpuRecorderEnabled = 0x7f8
    public static let vcpuRecorderCount = 0x800
    public static let vcpuRecorder = 0x840
    public static let recorderSlots = 32
    public static let recorderEntrySize = 32
    /// The "what" word: the entry kind (`entry*`) in the low byte, or'ed with one of these.
    public static let recordCoreEntry: UInt64 = 0x000
    /// The core returns to the guest (rip, rsp: the frame it returns with; cr3 loaded).
    public static let recordCoreReturn: UInt64 = 0x100
    /// The core leaves to the host (deferred).
    public static let recordCoreDefer: UInt64 = 0x200
    /// The host resumed the vCPU (rip, rsp: what KVM_RUN starts with).
    public static let recordHostResume: UInt64 = 0x400
    /// The vCPU exited to the host (the exit reason's code in bits 16 and up).
    public static let recordHostExit: UInt64 = 0x800

    /// A base-pointer field holding no table.
    public static let noFrame: UInt64 = ~0

    // MARK: The saved registers (ring0/entry.S pushes them below the interrupt frame)

    public static let savedR15 = 0, savedR14 = 8, savedR13 = 16, savedR12 = 24, savedR11 = 32
    public static let savedR10 = 40, savedR9 = 48, savedR8 = 56, savedRBP = 64, savedRDI = 72
    public static let savedRSI = 80, savedRDX = 88, savedRCX = 96, savedRBX = 104, savedRAX = 112
    /// The interrupt frame the CPU pushed: rip, cs, rflags, rsp, ss.
    public static let savedRIP = 120, savedCS = 128, savedRFlags = 136, savedRSP = 144, savedSS = 152

    // MARK: How the guest came in (ring0/entry.S's 4th argument)

    /// `int $0x82` from the hypercall page.
    public static let entryHypercallPage: UInt64 = 0
    /// `syscall` (MSR_LSTAR's stub raises the core's gate from ring 0).
    public static let entrySyscall: UInt64 = 1
    /// A page fault from guest code (the error code is in `vcpuTrapErrorCode`, the
    /// faulting address is cr2).
    public static let entryPageFault: UInt64 = 2
    /// An invalid-opcode exception from guest code (Xen's forced-emulation prefix).
    public static let entryInvalidOpcode: UInt64 = 3
    /// The local APIC timer's interrupt (`FastTimer.timerVector`), from guest code;
    /// entry.S has already signalled the end of the interrupt.
    public static let entryTimer: UInt64 = 4

    // MARK: What the core returns to ring0/entry.S

    /// Not handled: leave to the host with the registers as they were.
    public static let resultDeferred: UInt64 = 0
    /// Handled: rax holds the result; perform the requests in the vCPU block, return.
    public static let resultHandled: UInt64 = 1
}

/// Frame types as stored in `CoreLayout.pageInfoType` (the host's `PageType` raw values).
public enum PageTypeCode {
    public static let none: UInt8 = 0
    public static let writable: UInt8 = 1
    public static let l1: UInt8 = 2
    public static let l2: UInt8 = 3
    public static let l3: UInt8 = 4
    public static let l4: UInt8 = 5
    public static let segmentDescriptor: UInt8 = 6
}
