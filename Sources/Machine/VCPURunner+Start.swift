import Foundation
import Hypervisor
import KVM
import XenABI

/// A secondary vCPU's first entry (VCPUOP_initialise), and the wait for the remote TLB
/// flushes this vCPU asked of others before it runs guest code again.
extension VCPURunner {
    /// Longest wait for other vCPUs to take a flush this one asked of them.
    static let remoteFlushWait: UInt64 = 500_000_000

    /// Waits until the vCPUs this one asked to flush have taken the request (or run no
    /// guest code), before this one runs guest code again (first thing before every
    /// resume, ahead of taking the flushes asked of this one). Bounded: a vCPU that does
    /// not answer in time is logged, and the wait given up (it still flushes before it
    /// next runs guest code).
    func waitForRemoteFlushes() {
        guard !vcpu.awaitedFlushes.isEmpty else { return }
        let start = HostTime.monotonic()
        var waited = false
        vcpu.waitingForFlushes.store(true, ordering: .sequentiallyConsistent)
        defer { vcpu.waitingForFlushes.store(false, ordering: .sequentiallyConsistent) }
        for target in vcpu.awaitedFlushes {
            while !target.remoteFlushSettled && !domain.isFinished {
                if HostTime.monotonic() &- start > Self.remoteFlushWait {
                    domain.log.log(.warning, "\(vcpu.name): \(target.name) did not take a TLB flush within \(Self.remoteFlushWait / 1_000_000) ms; going on")
                    break
                }
                waited = true
                usleep(20)
            }
        }
        vcpu.awaitedFlushes.removeAll()
        if waited { vcpu.count(event: "waited for other vCPUs to take a TLB flush") }
    }

    /// A secondary vCPU's first entry, from the context VCPUOP_initialise gave: the vCPU
    /// still sits where `DomainMachine.configure` put it (ring 3, the flat selectors),
    /// so the context's registers, page table and segment bases are loaded as they are.
    func startFrom(_ initial: GuestContext) {
        var context = initial
        prepareResume(&context)
        lastResumed = context
        // Not yet run: kvm_run's register copy is not valid, so ask KVM.
        guard var sregs = try? cpu.getSpecialRegisters() else {
            crash("cannot read the special registers of a vCPU about to start")
            return
        }
        if let table = vcpu.activeTable?.address?.rawValue { sregs.cr3 = table }
        sregs.fs.base = context.fsBase
        sregs.gs.base = context.gsBase
        cpu.specialRegisters = sregs
        var regs = generalRegisters(context)
        regs.rsp = context.rsp
        regs.rip = context.rip
        regs.rflags = (context.rflags & ~RFlags.iopl) | RFlags.interrupt | RFlags.fixed
        cpu.registers = regs
        domain.log.log(.debug, "\(vcpu.name): starts at \(hex(context.rip))")
    }
}
