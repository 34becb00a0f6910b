/// The guest-state hypercalls the core completes inside the VM: they only set fields
/// the host keeps in the vCPU block (or an MSR the entry code writes on the way out),
/// with the host's checks (`Hypervisor.GuestState`, `XenVersion`).
enum FastState {
    static let segmentBaseFS: UInt64 = 0
    static let segmentBaseGSUser: UInt64 = 1
    static let segmentBaseGSKernel: UInt64 = 2
    static let segmentBaseGSUserSelector: UInt64 = 3
    static let msrFSBase: UInt64 = 0xc000_0100
    static let msrGSBase: UInt64 = 0xc000_0101
    static let xenVersionVersion: UInt64 = 0

    @inline(__always) static func handled(_ regs: Words, _ result: UInt64) -> UInt64 {
        regs.setU64(UInt64(CoreLayout.savedRAX), result)
        return CoreLayout.resultHandled
    }

    @inline(__always) static func isCanonical(_ value: UInt64) -> Bool {
        let top = value >> 47
        return top == 0 || top == 0x1ffff
    }

    /// stack_switch(ss, sp): the stack the guest kernel is entered on from user mode.
    static func stackSwitch(_ regs: Words, _ vcpu: Words) -> UInt64 {
        vcpu.setU64(UInt64(CoreLayout.vcpuKernelSS), (regs.u64(UInt64(CoreLayout.savedRDI)) & 0xffff) | 3)
        vcpu.setU64(UInt64(CoreLayout.vcpuKernelSP), regs.u64(UInt64(CoreLayout.savedRSI)))
        return handled(regs, 0)
    }

    /// set_segment_base(which, base). A non-canonical base or an unknown `which` is
    /// the host's to refuse.
    static func setSegmentBase(_ regs: Words, _ vcpu: Words) -> UInt64 {
        let which = regs.u64(UInt64(CoreLayout.savedRDI))
        let base = regs.u64(UInt64(CoreLayout.savedRSI))
        switch which {
        case segmentBaseGSUserSelector:
            // A selector loaded into the user GS brings base 0 (64-bit data segments).
            vcpu.setU64(UInt64(CoreLayout.vcpuUserGSSelector), base & 0xffff)
            vcpu.setU64(UInt64(CoreLayout.vcpuInactiveGSBase), 0)
        case segmentBaseGSUser:
            guard isCanonical(base) else { return CoreLayout.resultDeferred }
            vcpu.setU64(UInt64(CoreLayout.vcpuInactiveGSBase), base)
        case segmentBaseFS, segmentBaseGSKernel:
            // Hypercalls come from guest kernel mode, whose FS and GS bases are loaded.
            guard isCanonical(base) else { return CoreLayout.resultDeferred }
            vcpu.setU64(UInt64(CoreLayout.vcpuRequestMSRValue), base)
            vcpu.setU64(UInt64(CoreLayout.vcpuRequestMSR), which == segmentBaseFS ? msrFSBase : msrGSBase)
        default:
            return CoreLayout.resultDeferred
        }
        return handled(regs, 0)
    }

    /// xen_version(XENVER_version). Linux also calls it to have pending events
    /// delivered (xen_force_evtchn_callback): with one pending and unmasked, the core
    /// delivers the upcall on the way back, as the host does.
    static func xenVersion(_ regs: Words, _ vcpu: Words, _ header: Words, view: GuestView) -> UInt64 {
        guard regs.u64(UInt64(CoreLayout.savedRDI)) == xenVersionVersion else { return CoreLayout.resultDeferred }
        guard FastTraps.deliverEvent(regs, vcpu, view: view) else { return CoreLayout.resultDeferred }
        return handled(regs, header.u64(UInt64(CoreLayout.headerXenVersion)))
    }
}
