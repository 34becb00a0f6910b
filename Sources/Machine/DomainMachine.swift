import Foundation
import GuestMemory
import Hypervisor
import KVM
import Ring0Core
import XenABI

/// Where a PV guest starts (the domain builder decides).
public struct BootState: Sendable, Equatable {
    public var rip: UInt64
    public var rsp: UInt64
    /// rsi: the guest-virtual address of start_info.
    public var startInfo: UInt64
    public var rflags: UInt64 = 0x202
    public init(rip: UInt64, rsp: UInt64, startInfo: UInt64) {
        self.rip = rip
        self.rsp = rsp
        self.startInfo = startInfo
    }
}

/// Errors setting up a domain's VM.
public enum MachineError: Error, CustomStringConvertible {
    case kvm(KVMError)
    case memory(GuestMemoryError)
    case noKernelPageTable

    public var description: String {
        switch self {
        case let .kvm(error): return "KVM: \(error)"
        case let .memory(error): return "guest memory: \(error)"
        case .noKernelPageTable: return "the domain has no kernel page table to start with"
        }
    }
}

/// The KVM side of one domain: its VM, memory slots, vCPUs and their threads.
public final class DomainMachine: @unchecked Sendable {
    public let domain: Domain
    public let area: HypervisorArea
    let vm: VirtualMachine
    let runners: [VCPURunner]
    private var threads: [Thread] = []
    private let finished = DispatchGroup()

    /// Guest memory for a domain of `ramFrames` pages and `vcpuCount` vCPUs: RAM from 0
    /// and the hypervisor area above it.
    /// `fastPath`: whether the in-VM ring-0 core may complete hypercalls (and, where ring
    /// 0 runs natively, handle page faults and forced-emulation CPUID).
    public static func allocateMemory(ramFrames: UInt64, vcpuCount: Int, fastPath: Bool = true) throws(MachineError) -> (GuestMemory, HypervisorArea) {
        let area = HypervisorArea(ramFrames: ramFrames, vcpuCount: vcpuCount, fastPath: fastPath,
                                  coreTraps: fastPath && HostCPU.hasHardwareVirtualization,
                                  replaysPageTableStores: !HostCPU.hasHardwareVirtualization)
        do {
            let ram = try GuestMemoryRegion(base: GuestPhysicalAddress(0), size: ramFrames * pageSize, name: "ram", isGuestRAM: true)
            let hypervisor = try GuestMemoryRegion(base: GuestPhysicalAddress(area.base), size: area.totalPages * pageSize,
                                                   name: "hypervisor", isGuestRAM: false)
            let memory = GuestMemory(regions: [ram, hypervisor])
            try area.install(into: memory)
            return (memory, area)
        } catch {
            throw .memory(error)
        }
    }

    /// Creates the VM for `domain` (whose memory came from `allocateMemory`) with vCPU 0
    /// ready to start at `boot`.
    /// `sampleInterval`: record where each vCPU is this often (nanoseconds), for
    /// `guestSamples`; nil for no sampling.
    /// `apicTimer`: run the guest's single-shot timer on each vCPU's local APIC, inside
    /// the VM (`FastTimer`), where KVM and the host allow it.
    public init(kvm: KVMSystem, domain: Domain, area: HypervisorArea, boot: BootState, clock: KVMHostClock,
                sampleInterval: UInt64? = nil, apicTimer: Bool = false) throws(MachineError) {
        self.domain = domain
        self.area = area
        guard let root = domain.vcpus.first?.kernelTable?.address else { throw .noKernelPageTable }
        do {
            vm = try kvm.createVirtualMachine()
            try? vm.setTSSAddress(0xfffb_d000)
            for (slot, region) in domain.memory.regions.enumerated() {
                try vm.setMemoryRegion(slot: UInt32(slot), guestPhysical: region.base.rawValue, size: region.size,
                                       hostAddress: region.hostAddress)
            }
            let localTimer = apicTimer && Self.createLocalTimers(vm, area: area, domain: domain)
            if localTimer || !apicTimer {   // (a fallback says why itself)
                domain.log.log(.debug, "d\(domain.id): the guest's single-shot timer runs "
                    + (localTimer ? "on each vCPU's local APIC, inside the VM" : "on the host's thread timers"))
            }
            let hostLeaves = try kvm.supportedCPUID()
            var runners: [VCPURunner] = []
            for vcpu in domain.vcpus {
                let cpu = try vm.createVirtualCPU(id: UInt32(vcpu.id))
                try cpu.setCPUID(Self.kvmCPUID(domain.cpuid, host: hostLeaves, localTimer: localTimer))
                try Self.configure(cpu, vcpu: vcpu.id, area: area, cr3: root.rawValue,
                                   boot: vcpu.id == 0 ? boot : nil)
                if localTimer { try Self.configureLocalTimer(cpu, vcpu: vcpu.id) }
                if vcpu.id == 0 { clock.calibrate(with: cpu) }
                runners.append(try VCPURunner(vcpu: vcpu, cpu: cpu, area: area, sampleInterval: sampleInterval, localTimer: localTimer))
            }
            self.runners = runners
        } catch {
            throw .kvm(error)
        }
        VirtualCPU.installKickHandler()
        TimeKeeper.updateWallClock(domain)
        for vcpu in domain.vcpus { TimeKeeper.update(vcpu) }
    }

    /// The CPUID table KVM answers native `cpuid` with: the PV policy, plus, for the
    /// local APIC timer, x2APIC and the TSC-deadline timer (KVM accepts the MSRs only
    /// for a vCPU whose table has them; the guest kernel asks the policy instead).
    static func kvmCPUID(_ policy: CPUIDPolicy, host: [CPUIDEntry], localTimer: Bool = false) -> [CPUIDEntry] {
        policy.leaves.map {
            var ecx = $0.ecx
            if localTimer && $0.function == 1 { ecx |= Self.cpuidX2APIC | Self.cpuidTSCDeadline }
            return CPUIDEntry(function: $0.function, index: $0.index, flags: $0.indexed ? CPUIDEntry.significantIndex : 0,
                              eax: $0.eax, ebx: $0.ebx, ecx: ecx, edx: $0.edx)
        }
    }

    static let cpuidX2APIC: UInt32 = 1 << 21
    static let cpuidTSCDeadline: UInt32 = 1 << 24

    /// Creates KVM's in-kernel local APICs for the guest's timer, where ring 0 runs
    /// natively (the core takes the interrupt) and KVM has the TSC-deadline timer;
    /// says whether it did. Before any vCPU exists.
    static func createLocalTimers(_ vm: VirtualMachine, area: HypervisorArea, domain: Domain) -> Bool {
        guard area.coreTraps, domain.vcpus.count <= 64, vm.hasLocalAPICTimer else {
            domain.log.log(.info, "d\(domain.id): no local APIC timer here (it needs ring 0 run natively, at most 64 vCPUs and KVM's in-kernel APIC with the TSC-deadline timer); the host times the guest")
            return false
        }
        do {
            try vm.createInterruptController()
            return true
        } catch {
            domain.log.log(.info, "d\(domain.id): no local APIC timer (\(error)); the host times the guest")
            return false
        }
    }

    /// Puts the vCPU's local APIC in x2APIC mode (no MMIO page) with its timer in
    /// TSC-deadline mode on `FastTimer.timerVector`, every other interrupt source
    /// masked, and lets a vCPU other than the first run without INIT and SIPI.
    static func configureLocalTimer(_ cpu: VirtualCPU, vcpu: Int) throws(KVMError) {
        let enabled: UInt64 = 1 << 11, x2apic: UInt64 = 1 << 10, bootstrap: UInt64 = 1 << 8
        let masked: UInt64 = 1 << 16, tscDeadlineMode: UInt64 = 2 << 17
        try cpu.setMSRs([(MSR.apicBase, 0xfee0_0000 | enabled | x2apic | (vcpu == 0 ? bootstrap : 0))])
        try cpu.setMSRs([
            (MSR.x2apicSpurious, 0x100 | 0xff),   // software-enabled, spurious vector 0xff
            (MSR.x2apicTPR, 0),
            (MSR.x2apicLINT0, masked),
            (MSR.x2apicLINT1, masked),
            (MSR.x2apicErrorLVT, masked),
            (MSR.x2apicTimerLVT, tscDeadlineMode | UInt64(FastTimer.timerVector)),
            (MSR.tscDeadline, 0),
        ])
        if vcpu != 0 { try cpu.makeRunnable() }
    }

    /// Puts a vCPU in 64-bit mode at ring 3 with Xen's GDT selectors, the IDT, the TSS
    /// and the syscall MSRs pointing at the hypervisor's stubs.
    static func configure(_ cpu: VirtualCPU, vcpu: Int, area: HypervisorArea, cr3: UInt64, boot: BootState?) throws(KVMError) {
        var sregs = try cpu.getSpecialRegisters()
        sregs.cr0 = 0x8001_0033   // PG, WP, NE, ET, MP, PE
        sregs.cr4 = 0x620         // PAE, OSFXSR, OSXMMEXCPT
        sregs.efer = 0xd01        // SCE, LME, LMA, NXE
        sregs.cr3 = cr3
        sregs.cs = Segment(base: 0, limit: 0xffff_ffff, selector: FlatSelector.kernelCS64, type: 11, present: true, dpl: 3,
                           db: false, s: true, l: true, g: true)
        let data = Segment(base: 0, limit: 0xffff_ffff, selector: FlatSelector.kernelSS64, type: 3, present: true, dpl: 3,
                           db: true, s: true, l: false, g: true)
        sregs.ss = data
        let null = Segment(selector: 0, unusable: true)
        sregs.ds = null; sregs.es = null; sregs.fs = null; sregs.gs = null
        sregs.gdt = DescriptorTable(base: area.gdtVirtual(vcpu), limit: 0xffff)
        sregs.idt = DescriptorTable(base: area.idtVirtual, limit: 0xfff)
        sregs.tr = Segment(base: area.tssVirtual(vcpu), limit: 0x67, selector: DescriptorTablesBuilder.tssSelector,
                           type: 11, present: true)
        sregs.ldt = Segment(selector: 0, unusable: true)
        try cpu.setSpecialRegisters(sregs)
        try cpu.setMSRs([
            (MSR.star, UInt64(FlatSelector.ring3CS32) << 48 | UInt64(FlatSelector.ring0CS64) << 32),
            (MSR.lstar, area.syscallEntryVirtual),
            (MSR.cstar, area.syscallStubVirtual),   // compatibility-mode syscalls: never the core
            (MSR.sfmask, RFlags.trap | RFlags.interrupt | RFlags.direction | RFlags.alignmentCheck | RFlags.nestedTask),
            (MSR.kernelGSBase, area.kernelGSBase(vcpu)),
        ])
        var regs = Registers()
        if let boot {
            regs.rip = boot.rip
            regs.rsp = boot.rsp
            regs.rsi = boot.startInfo
            regs.rflags = boot.rflags | RFlags.fixed
        }
        try cpu.setRegisters(regs)
    }

    /// Starts a thread per vCPU.
    public func start() {
        for runner in runners {
            finished.enter()
            let group = finished
            let name = "d\(domain.id)v\(runner.vcpu.id)"
            let thread = Thread {
                // The kernel's thread name (what top -H and /proc show; Foundation does
                // not set it on Linux): the toolstack finds a vCPU's host CPU by it.
                try? name.write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
                runner.run()
                group.leave()
            }
            thread.name = name
            thread.stackSize = 8 << 20
            threads.append(thread)
            thread.start()
        }
    }

    /// Waits until every vCPU thread has stopped (the domain finished).
    public func waitUntilStopped() {
        finished.wait()
    }

    /// Waits up to `seconds`; returns whether every vCPU thread stopped.
    public func waitUntilStopped(seconds: Double) -> Bool {
        finished.wait(timeout: .now() + seconds) == .success
    }

    /// Stops the domain: it is crashed with `reason` if still running, and its vCPUs
    /// leave the guest.
    public func destroy(reason: String = "destroyed") {
        if !domain.isFinished { domain.destroy(reason) }
        for runner in runners { runner.wakeup.wake() }
    }

    /// The crash report of the vCPU the crash reason names ("d1v1: triple fault"), else
    /// of the first vCPU that saw the domain crash, if any.
    public var crashReport: String? {
        if case let .crashed(reason) = domain.lifecycle.withLock({ $0 }),
           let own = runners.first(where: { reason.hasPrefix("\($0.vcpu.name):") })?.crashReport {
            return own
        }
        return runners.lazy.compactMap { $0.crashReport }.first
    }

    /// The guest RIP samples of every vCPU, in time order (empty unless sampling was
    /// asked for; read after the vCPUs stopped).
    public var guestSamples: [GuestSample] {
        runners.flatMap(\.samples).sorted { $0.nanoseconds < $1.nanoseconds }
    }
}

/// What the host CPU offers KVM.
enum HostCPU {
    /// Whether KVM runs guests with hardware virtualization (the host CPU shows `svm` or
    /// `vmx` in /proc/cpuinfo), so that ring-0 guest code runs natively. Without it (a
    /// nested "PVM" KVM, docs/machine-probes.md) ring-0 code is emulated instruction by
    /// instruction, and a trap is cheaper taken straight to the host than through the
    /// in-VM core.
    static let hasHardwareVirtualization: Bool = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return false }
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            let flags = line.split(separator: " ")
            return flags.contains("svm") || flags.contains("vmx")
        }
        return false
    }()
}
