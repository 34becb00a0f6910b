import GuestMemory
import XenABI

/// VCPUOP_initialise (xen/common/domain.c `default_initialise_vcpu`, and for PV
/// xen/arch/x86/domain.c `arch_set_info_guest`): the context a secondary vCPU starts
/// from once VCPUOP_up brings it online. Linux's `cpu_initialize_context` gives its
/// kernel page table, GDT frames, trap table, callbacks, kernel stack and GS base.
///
/// Everything is checked before anything changes; the page-table and descriptor-page
/// references are taken all or nothing. The vCPU starts on Xen's flat 64-bit code and
/// stack selectors (what Xen's RPL fixup of Linux's __KERNEL_CS/__KERNEL_DS amounts to
/// for a 64-bit PV kernel), whatever the context's cs and ss say. What Domus cannot load yet is refused with
/// -ENOSYS and said in the log: an FXSAVE image (VGCF_i387_valid), debug registers and
/// an LDT in the context (Linux gives none of them).
enum VCPUInitialise {
    static func initialise(_ target: VCPU, from address: UInt64, _ call: HypercallInvocation) throws(XenError) {
        // One initialisation at a time per vCPU; a vCPU that has a context keeps it.
        guard target.initialisationClaim.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            throw .EEXIST
        }
        var done = false
        defer { if !done { target.initialisationClaim.store(false, ordering: .releasing) } }
        guard !target.initialised else { throw .EEXIST }
        guard let context = try? VCPUGuestContext(decoding: try call.copyIn(address, count: VCPUGuestContext.size)) else {
            throw .EFAULT
        }
        try check(context, call)

        let domain = call.domain
        let env = domain.mmuEnvironment
        var work = PendingMachineWork()
        defer { call.vcpu.addWork(work) }
        let kernelTable = FrameNumber(context.controlRegisters[3] >> 12)
        let userTable = context.controlRegisters[1] == 0 ? nil : FrameNumber(context.controlRegisters[1] >> 12)
        guard domain.layout.isRAM(kernelTable), userTable.map({ domain.layout.isRAM($0) }) ?? true else { throw .EINVAL }
        try domain.state.withLock { state throws(XenError) in
            try state.getPageType(kernelTable, .l4, env, &work)
            if let userTable {
                do throws(XenError) { try state.getPageType(userTable, .l4, env, &work) } catch {
                    state.putPageType(kernelTable, env, &work)
                    throw error
                }
            }
        }
        let gdtFrames = context.gdtFrames.prefix(Int((context.gdtEntries + 511) / 512)).map { FrameNumber($0) }
        do throws(XenError) {
            try DescriptorTables.replaceDescriptorFrames(target.gdtFrames, with: Array(gdtFrames), call)
        } catch {
            domain.state.withLock { state in
                state.putPageType(kernelTable, env, &work)
                if let userTable { state.putPageType(userTable, env, &work) }
            }
            throw error
        }

        // Nothing below can fail.
        target.gdtFrames = Array(gdtFrames)
        target.gdtEntries = Int(context.gdtEntries)
        target.gdtChanged.store(true, ordering: .releasing)
        target.kernelTable = kernelTable
        target.userTable = userTable
        var traps = [TrapInfo?](repeating: nil, count: 256)
        for (vector, var trap) in context.traps.enumerated() where trap.address != 0 {
            trap.vector = UInt8(vector)
            trap.cs |= 3   // fixup_guest_code_selector: guest code runs in ring 3
            traps[vector] = trap
        }
        target.trapTable = traps
        target.callbacks = [:]
        if context.eventCallback != 0 { target.callbacks[.event] = GuestCallback(address: context.eventCallback, masksEvents: false) }
        if context.failsafeCallback != 0 {
            target.callbacks[.failsafe] = GuestCallback(address: context.failsafeCallback,
                                                        masksEvents: context.flags & VCPUGuestContext.failsafeMasksEvents != 0)
        }
        if context.syscallCallback != 0 {
            target.callbacks[.syscall] = GuestCallback(address: context.syscallCallback,
                                                       masksEvents: context.flags & VCPUGuestContext.syscallMasksEvents != 0)
        }
        target.kernelSS = UInt16(truncatingIfNeeded: context.kernelSS) | 3
        target.kernelSP = context.kernelSP
        let inKernel = context.flags & VCPUGuestContext.inKernel != 0
        target.mode = inKernel ? .kernel : .user
        target.inactiveGSBase = inKernel ? context.gsBaseUser : context.gsBaseKernel
        // Xen keeps the guest's IOPL as the vCPU's virtual IOPL and runs it with IF set.
        target.virtualIOPL = UInt8(truncatingIfNeeded: (context.rflags & RFlags.iopl) >> 12)
        var start = GuestContext()
        for (number, value) in context.registers.enumerated() { start.setRegister(number, value) }
        start.rip = context.rip
        start.rflags = (context.rflags & ~RFlags.iopl) | RFlags.interrupt | RFlags.fixed
        start.cs = inKernel ? FlatSelector.kernelCS64 : FlatSelector.userCS64
        start.ss = inKernel ? FlatSelector.kernelSS64 : FlatSelector.userSS64
        start.fsBase = context.fsBase
        start.gsBase = inKernel ? context.gsBaseKernel : context.gsBaseUser
        target.startContext = start
        target.initialised = true
        done = true
        domain.log.log(.debug, "\(target.name): initialised by \(call.vcpu.name): rip \(hex(start.rip)), kernel table \(kernelTable)")
    }

    /// What arch_set_info_guest refuses before it changes anything.
    private static func check(_ context: VCPUGuestContext, _ call: HypercallInvocation) throws(XenError) {
        let log = call.domain.log
        let name = call.vcpu.name
        if context.flags & VCPUGuestContext.fpuValid != 0 {
            log.log(.warning, "\(name): VCPUOP_initialise with an FPU image (VGCF_i387_valid) is not implemented: -ENOSYS")
            throw .ENOSYS
        }
        if context.debugRegisters.contains(where: { $0 != 0 }) {
            log.log(.warning, "\(name): VCPUOP_initialise with debug registers is not implemented: -ENOSYS")
            throw .ENOSYS
        }
        if context.ldtEntries != 0 {
            log.log(.warning, "\(name): VCPUOP_initialise with an LDT is not implemented: -ENOSYS")
            throw .ENOSYS
        }
        let addresses = [context.rip, context.registers[4], context.eventCallback, context.failsafeCallback,
                         context.syscallCallback, context.fsBase, context.gsBaseKernel, context.gsBaseUser, context.kernelSP]
            + context.traps.map(\.address)
        guard addresses.allSatisfy(GuestVirtualAddressCheck.isCanonical) else { throw .EINVAL }
        guard context.gdtEntries <= UInt64(FlatSelector.maxGuestGDTEntries) else { throw .EINVAL }
    }
}
