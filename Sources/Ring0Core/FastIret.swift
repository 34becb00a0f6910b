/// iret from guest kernel mode back to guest kernel mode (the return from every event
/// upcall and exception the guest kernel takes in kernel context), completed inside
/// the VM with the host's rules (`Hypervisor.Iret`, Xen's pv/iret.c):
///
/// - the guest's stack holds Xen's iret context: rax, r11, rcx, flags, rip, cs,
///   rflags, rsp, ss;
/// - rax (and r11, rcx unless VGCF_in_syscall) are restored, the frame becomes the
///   guest's rip/cs/rflags/rsp/ss with IOPL and VM cleared and IF set, and the event
///   mask becomes the saved IF's opposite.
///
/// Left to the host, untouched: returns to user mode (a page-table and GS switch),
/// selectors other than the flat kernel ones, non-canonical addresses, a context the
/// core cannot read, and an unmasking with an event pending (which the host must
/// deliver on the way back).
enum FastIret {
    static let flatKernelCS: UInt64 = 0xe033
    static let flatKernelSS: UInt64 = 0xe02b
    static let inSyscall: UInt64 = 1 << 8
    static let interruptFlag: UInt64 = 1 << 9
    static let iopl: UInt64 = 3 << 12
    static let virtual8086: UInt64 = 1 << 17
    static let fixed: UInt64 = 1 << 1

    static func iret(_ regs: Words, _ vcpu: Words, view: GuestView, cr3: UInt64) -> UInt64 {
        let stack = regs.u64(UInt64(CoreLayout.savedRSP))
        guard let rax = view.readWord(stack, root: cr3), let r11 = view.readWord(stack &+ 8, root: cr3),
              let rcx = view.readWord(stack &+ 16, root: cr3), let flags = view.readWord(stack &+ 24, root: cr3),
              let rip = view.readWord(stack &+ 32, root: cr3), let cs = view.readWord(stack &+ 40, root: cr3),
              let rflags = view.readWord(stack &+ 48, root: cr3), let rsp = view.readWord(stack &+ 56, root: cr3),
              let ss = view.readWord(stack &+ 64, root: cr3) else { return CoreLayout.resultDeferred }
        // Kernel to kernel only, on the flat selectors the CPU always accepts.
        guard cs & 3 == 0, (cs & 0xffff) | 3 == flatKernelCS, (ss & 0xffff) | 3 == flatKernelSS,
              FastState.isCanonical(rip), FastState.isCanonical(rsp) else { return CoreLayout.resultDeferred }
        let info = vcpu.u64(UInt64(CoreLayout.vcpuInfo))
        guard info != CoreLayout.noFrame, info >> 12 < view.ramFrames, (info &+ 2) >> 12 < view.ramFrames else {
            return CoreLayout.resultDeferred
        }
        // The mask is set before the pending flag is read, with a full barrier between:
        // a host thread raising an event sets the flag before it looks at the mask and
        // kicks, so either the core sees the event here, or the kick sees it unmasked
        // and makes the vCPU leave for the host (attention, or a kick at the return).
        let masks = rflags & interruptFlag == 0
        let oldMask = view.ram.exchangeU8(info &+ 1, masks ? 1 : 0)
        if !masks && view.ram.u8(info) != 0 {
            // Unmasking with an event pending: the host delivers it as it resumes.
            view.ram.setU8(info &+ 1, oldMask)
            return CoreLayout.resultDeferred
        }
        regs.setU64(UInt64(CoreLayout.savedRAX), rax)
        if flags & inSyscall == 0 {
            regs.setU64(UInt64(CoreLayout.savedR11), r11)
            regs.setU64(UInt64(CoreLayout.savedRCX), rcx)
        }
        regs.setU64(UInt64(CoreLayout.savedRIP), rip)
        regs.setU64(UInt64(CoreLayout.savedCS), flatKernelCS)
        regs.setU64(UInt64(CoreLayout.savedRFlags), (rflags & ~(iopl | virtual8086)) | interruptFlag | fixed)
        regs.setU64(UInt64(CoreLayout.savedRSP), rsp)
        regs.setU64(UInt64(CoreLayout.savedSS), flatKernelSS)
        return CoreLayout.resultHandled
    }
}
