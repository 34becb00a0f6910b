import CKVM
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Why `KVM_RUN` returned.
public enum VMExit: Sendable, Equatable {
    /// Port I/O: `out` (isWrite) or `in`, of `size` bytes, `count` repetitions.
    case io(port: UInt16, isWrite: Bool, size: UInt8, count: UInt32)
    /// An access to guest-physical memory no slot backs. For a read, the value to load
    /// is given with `completeMMIORead` before the next run.
    case mmio(address: UInt64, length: UInt32, isWrite: Bool, data: UInt64)
    case halt
    /// Triple fault or similar: the vCPU cannot continue.
    case shutdown
    case failEntry(reason: UInt64)
    case internalError(suberror: UInt32)
    case systemEvent(type: UInt32)
    /// A signal (a kick) or immediate_exit interrupted the run.
    case interrupted
    case unknown(reason: UInt32)
}

/// A KVM vCPU: its fd, its shared `kvm_run` area, register access and `KVM_RUN`.
///
/// Registers are synchronised through `kvm_run` (KVM_CAP_SYNC_REGS): after every exit
/// `registers` and `specialRegisters` hold the vCPU's state without further ioctls;
/// assigning them marks them dirty and KVM loads them on the next run.
public final class VirtualCPU: @unchecked Sendable {
    public let id: UInt32
    let fd: Int32
    let run: UnsafeMutablePointer<kvm_run>
    let runSize: Int
    let vm: VirtualMachine
    private let thread = Mutex<pthread_t?>(nil)

    /// The signal used to kick vCPU threads out of KVM_RUN.
    public static let kickSignal = SIGUSR1

    init(id: UInt32, fd: Int32, run: UnsafeMutableRawPointer, runSize: Int, vm: VirtualMachine) {
        self.id = id
        self.fd = fd
        // SAFETY: the kernel maps a struct kvm_run at offset 0 of the vCPU mapping.
        self.run = run.bindMemory(to: kvm_run.self, capacity: 1)
        self.runSize = runSize
        self.vm = vm
    }

    deinit {
        // SAFETY: unmaps the kvm_run mapping created in `createVirtualCPU`, once.
        munmap(UnsafeMutableRawPointer(run), runSize)
        close(fd)
    }

    /// Installs the process-wide no-op handler for the kick signal (idempotent).
    public static func installKickHandler() {
        _ = ckvm_install_kick_handler(kickSignal)
    }

    // MARK: Running

    /// Enters the guest until the next exit.
    public func runOnce() -> VMExit {
        // SAFETY: `run` is this vCPU's live kvm_run mapping; only this thread runs it.
        run.pointee.kvm_valid_regs = UInt64(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS)
        let result = ckvm_ioctl_none(fd, CKVM_RUN)
        if result < 0 {
            let error = errno
            if error == EINTR || error == EAGAIN {
                if signalsOnlyInGuest { ckvm_consume_signal(VirtualCPU.kickSignal) }
                return .interrupted
            }
            return .internalError(suberror: UInt32(bitPattern: -error))
        }
        return decodeExit()
    }

    private func decodeExit() -> VMExit {
        // SAFETY: reads the exit union of this vCPU's kvm_run after KVM_RUN returned.
        let reason = Int32(run.pointee.exit_reason)
        switch reason {
        case KVM_EXIT_IO:
            return .io(port: ckvm_run_io_port(run), isWrite: ckvm_run_io_direction(run) == UInt8(KVM_EXIT_IO_OUT),
                       size: ckvm_run_io_size(run), count: ckvm_run_io_count(run))
        case KVM_EXIT_MMIO:
            let length = ckvm_run_mmio_len(run)
            var data: UInt64 = 0
            let bytes = ckvm_run_mmio_data(run)
            for index in 0..<Int(min(length, 8)) { data |= UInt64(bytes[index]) << (8 * UInt64(index)) }
            return .mmio(address: ckvm_run_mmio_phys_addr(run), length: length, isWrite: ckvm_run_mmio_is_write(run) != 0, data: data)
        case KVM_EXIT_HLT: return .halt
        case KVM_EXIT_SHUTDOWN: return .shutdown
        case KVM_EXIT_FAIL_ENTRY: return .failEntry(reason: ckvm_run_fail_entry_reason(run))
        case KVM_EXIT_INTERNAL_ERROR: return .internalError(suberror: ckvm_run_internal_suberror(run))
        case KVM_EXIT_SYSTEM_EVENT: return .systemEvent(type: ckvm_run_system_event_type(run))
        case KVM_EXIT_INTR: return .interrupted
        default: return .unknown(reason: UInt32(bitPattern: reason))
        }
    }

    /// Gives the value an MMIO read loads; KVM completes the instruction on the next run.
    public func completeMMIORead(_ value: UInt64) {
        // SAFETY: writes the 8-byte mmio.data of this vCPU's kvm_run before the next KVM_RUN.
        let bytes = ckvm_run_mmio_data(run)
        for index in 0..<8 { bytes[index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
    }

    /// Completes a pending I/O or MMIO exit without running guest code (KVM_RUN with
    /// immediate_exit), so that registers can then be replaced safely.
    public func completePendingIO() {
        ckvm_set_immediate_exit(run, 1)
        _ = ckvm_ioctl_none(fd, CKVM_RUN)
        ckvm_set_immediate_exit(run, 0)
    }

    // MARK: Kicks

    /// Whether the kick signal is blocked outside KVM_RUN on the bound thread.
    private var signalsOnlyInGuest = false

    /// Records the calling thread as the one that runs this vCPU, and blocks the kick
    /// signal there except inside KVM_RUN, so that a kick or timer signal arriving
    /// while the thread is in the hypervisor makes the next KVM_RUN return at once.
    public func bindCurrentThread() {
        thread.withLock { $0 = pthread_self() }
        signalsOnlyInGuest = ckvm_deliver_only_in_guest(fd, VirtualCPU.kickSignal) == 0
    }

    /// Makes the current or next KVM_RUN return `.interrupted` (any thread).
    public func kick() {
        ckvm_set_immediate_exit(run, 1)
        thread.withLock { handle in
            if let handle { pthread_kill(handle, VirtualCPU.kickSignal) }
        }
    }

    /// Whether KVM will deliver an exception, interrupt or NMI at the next entry: the
    /// guest's RIP must not be rewritten then, or the event would be delivered with the
    /// new RIP as its return address. (When the ioctl fails, assumes there is one.)
    public var hasEventInFlight: Bool { ckvm_event_in_flight(fd) != 0 }

    /// Clears a kick once the vCPU thread has noticed it.
    public func clearKick() {
        ckvm_set_immediate_exit(run, 0)
    }

    // MARK: Synchronised registers

    /// General registers as of the last exit (or as last assigned).
    public var registers: Registers {
        // SAFETY: kvm_run's sync area is valid after an exit; only the vCPU thread uses it.
        get { Registers(run.pointee.s.regs.regs) }
        set {
            run.pointee.s.regs.regs = newValue.kvm
            run.pointee.kvm_dirty_regs |= UInt64(KVM_SYNC_X86_REGS)
        }
    }

    /// Special registers as of the last exit (or as last assigned).
    public var specialRegisters: SpecialRegisters {
        // SAFETY: as for `registers`.
        get { SpecialRegisters(run.pointee.s.regs.sregs) }
        set {
            run.pointee.s.regs.sregs = newValue.kvm
            run.pointee.kvm_dirty_regs |= UInt64(KVM_SYNC_X86_SREGS)
        }
    }

    /// CR3 as of the last exit (or as last assigned), without converting the rest of
    /// the special registers (the exit path reads it for every exit).
    public var cr3: UInt64 {
        // SAFETY: as for `registers`.
        run.pointee.s.regs.sregs.cr3
    }

    // MARK: Direct register ioctls (setup and slow paths)

    public func getRegisters() throws(KVMError) -> Registers {
        var regs = kvm_regs()
        guard withUnsafeMutablePointer(to: &regs, { ckvm_ioctl_ptr(fd, CKVM_GET_REGS, $0) }) == 0 else {
            throw KVMError("KVM_GET_REGS", errno: errno)
        }
        return Registers(regs)
    }

    public func setRegisters(_ registers: Registers) throws(KVMError) {
        var regs = registers.kvm
        guard withUnsafeMutablePointer(to: &regs, { ckvm_ioctl_ptr(fd, CKVM_SET_REGS, $0) }) == 0 else {
            throw KVMError("KVM_SET_REGS", errno: errno)
        }
    }

    public func getSpecialRegisters() throws(KVMError) -> SpecialRegisters {
        var sregs = kvm_sregs()
        guard withUnsafeMutablePointer(to: &sregs, { ckvm_ioctl_ptr(fd, CKVM_GET_SREGS, $0) }) == 0 else {
            throw KVMError("KVM_GET_SREGS", errno: errno)
        }
        return SpecialRegisters(sregs)
    }

    public func setSpecialRegisters(_ registers: SpecialRegisters) throws(KVMError) {
        var sregs = registers.kvm
        guard withUnsafeMutablePointer(to: &sregs, { ckvm_ioctl_ptr(fd, CKVM_SET_SREGS, $0) }) == 0 else {
            throw KVMError("KVM_SET_SREGS", errno: errno)
        }
    }

    /// Sets the CPUID leaves the guest sees.
    public func setCPUID(_ entries: [CPUIDEntry]) throws(KVMError) {
        var list = ckvm_cpuid_list()
        let count = min(entries.count, 128)
        list.header.nent = UInt32(count)
        withUnsafeMutableBytes(of: &list.entries) { raw in
            let slots = raw.bindMemory(to: kvm_cpuid_entry2.self)
            for index in 0..<count {
                let e = entries[index]
                var k = kvm_cpuid_entry2()
                k.function = e.function; k.index = e.index; k.flags = e.flags
                k.eax = e.eax; k.ebx = e.ebx; k.ecx = e.ecx; k.edx = e.edx
                slots[index] = k
            }
        }
        guard withUnsafeMutablePointer(to: &list, { ckvm_ioctl_ptr(fd, CKVM_SET_CPUID2, $0) }) == 0 else {
            throw KVMError("KVM_SET_CPUID2", errno: errno)
        }
    }

    /// Writes model-specific registers.
    public func setMSRs(_ msrs: [(index: UInt32, value: UInt64)]) throws(KVMError) {
        var list = ckvm_msr_list()
        let count = min(msrs.count, 16)
        list.header.nmsrs = UInt32(count)
        withUnsafeMutableBytes(of: &list.entries) { raw in
            let slots = raw.bindMemory(to: kvm_msr_entry.self)
            for index in 0..<count {
                var entry = kvm_msr_entry()
                entry.index = msrs[index].index
                entry.data = msrs[index].value
                slots[index] = entry
            }
        }
        let written = withUnsafeMutablePointer(to: &list) { ckvm_ioctl_ptr(fd, CKVM_SET_MSRS, $0) }
        guard written == count else { throw KVMError("KVM_SET_MSRS (wrote \(written) of \(count))", errno: errno) }
    }

    /// KVM_SET_MP_STATE RUNNABLE: with the in-kernel local APIC, a vCPU other than the
    /// first otherwise waits for INIT and SIPI, which a PV guest never sends.
    public func makeRunnable() throws(KVMError) {
        var state = kvm_mp_state(mp_state: CKVM_MP_STATE_RUNNABLE)
        guard withUnsafeMutablePointer(to: &state, { ckvm_ioctl_ptr(fd, CKVM_SET_MP_STATE, $0) }) == 0 else {
            throw KVMError("KVM_SET_MP_STATE", errno: errno)
        }
    }

    /// KVM's multiprocessing state of the vCPU (KVM_GET_MP_STATE: 0 runnable, 1
    /// uninitialised, 2 init received, 3 halted, 4 SIPI received, ...).
    public func multiprocessingState() throws(KVMError) -> UInt32 {
        var state = kvm_mp_state(mp_state: 0)
        guard withUnsafeMutablePointer(to: &state, { ckvm_ioctl_ptr(fd, CKVM_GET_MP_STATE, $0) }) == 0 else {
            throw KVMError("KVM_GET_MP_STATE", errno: errno)
        }
        return state.mp_state
    }

    /// Reads model-specific registers.
    public func getMSRs(_ indices: [UInt32]) throws(KVMError) -> [UInt64] {
        var list = ckvm_msr_list()
        let count = min(indices.count, 16)
        list.header.nmsrs = UInt32(count)
        withUnsafeMutableBytes(of: &list.entries) { raw in
            let slots = raw.bindMemory(to: kvm_msr_entry.self)
            for index in 0..<count {
                var entry = kvm_msr_entry()
                entry.index = indices[index]
                slots[index] = entry
            }
        }
        let read = withUnsafeMutablePointer(to: &list) { ckvm_ioctl_ptr(fd, CKVM_GET_MSRS, $0) }
        guard read == count else { throw KVMError("KVM_GET_MSRS (read \(read) of \(count))", errno: errno) }
        return withUnsafeBytes(of: &list.entries) { raw in
            let slots = raw.bindMemory(to: kvm_msr_entry.self)
            return (0..<count).map { slots[$0].data }
        }
    }

    /// The guest TSC frequency in kHz (KVM_GET_TSC_KHZ).
    public func tscKHz() throws(KVMError) -> UInt64 {
        let result = ckvm_ioctl_none(fd, CKVM_GET_TSC_KHZ)
        guard result > 0 else { throw KVMError("KVM_GET_TSC_KHZ", errno: errno) }
        return UInt64(result)
    }

    /// The host's TSC now.
    public static func hostTSC() -> UInt64 { ckvm_rdtsc() }
}

/// Model-specific register numbers Domus uses.
public enum MSR {
    public static let efer: UInt32 = 0xc000_0080
    public static let star: UInt32 = 0xc000_0081
    public static let lstar: UInt32 = 0xc000_0082
    public static let cstar: UInt32 = 0xc000_0083
    public static let sfmask: UInt32 = 0xc000_0084
    public static let fsBase: UInt32 = 0xc000_0100
    public static let gsBase: UInt32 = 0xc000_0101
    public static let kernelGSBase: UInt32 = 0xc000_0102
    public static let tsc: UInt32 = 0x10
    public static let pat: UInt32 = 0x277
    public static let apicBase: UInt32 = 0x1b
    public static let tscDeadline: UInt32 = 0x6e0
    /// x2APIC registers (0x800 + the xAPIC offset / 16).
    public static let x2apicTPR: UInt32 = 0x808
    public static let x2apicSpurious: UInt32 = 0x80f
    public static let x2apicTimerLVT: UInt32 = 0x832
    public static let x2apicLINT0: UInt32 = 0x835
    public static let x2apicLINT1: UInt32 = 0x836
    public static let x2apicErrorLVT: UInt32 = 0x837
    public static let sysenterCS: UInt32 = 0x174
    public static let sysenterESP: UInt32 = 0x175
    public static let sysenterEIP: UInt32 = 0x176
}

/// A CLOCK_MONOTONIC timer that signals one thread (SIGEV_THREAD_ID), so a vCPU
/// thread inside KVM_RUN is interrupted when the guest's timer is due.
public final class ThreadTimer: @unchecked Sendable {
    let timer: Int

    /// Creates a timer that sends the kick signal to the calling thread.
    public init() throws(KVMError) {
        var raw: Int = 0
        guard ckvm_thread_timer_create(VirtualCPU.kickSignal, ckvm_gettid(), &raw) == 0 else {
            throw KVMError("timer_create", errno: errno)
        }
        timer = raw
    }

    deinit { _ = ckvm_thread_timer_delete(timer) }

    /// Arms for absolute CLOCK_MONOTONIC nanoseconds; nil disarms.
    public func arm(at nanoseconds: UInt64?) {
        _ = ckvm_thread_timer_arm(timer, nanoseconds.map { max($0, 1) } ?? 0)
    }
}
