/// iret (the return from every event upcall, exception and system call the guest
/// kernel takes), completed inside the VM with the host's rules (`Hypervisor.Iret`,
/// Xen's pv/iret.c):
///
/// - the guest's stack holds Xen's iret context: rax, r11, rcx, flags, rip, cs,
///   rflags, rsp, ss;
/// - rax (and r11, rcx unless VGCF_in_syscall) are restored, the frame becomes the
///   guest's rip/cs/rflags/rsp/ss with IOPL and VM cleared and IF set, and the event
///   mask becomes the saved IF's opposite;
/// - a return to user mode (RPL 3 in the saved cs) also switches to the user page
///   tables, exchanges the GS bases and sets the #GP fast path for user mode, as the
///   host's toggle does.
///
/// Left to the host, untouched: user selectors other than the ones the host last
/// resumed user mode with, kernel selectors other than the flat ones, no user page
/// tables, non-canonical addresses, a context the core cannot read, and an unmasking
/// with an event pending (which the host must deliver on the way back).
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
        guard FastState.isCanonical(rip), FastState.isCanonical(rsp) else { return CoreLayout.resultDeferred }
        let toUser = cs & 3 == 3
        let returnCS: UInt64, returnSS: UInt64
        var fastIOFlag: UnsafeMutableRawPointer?
        if toUser {
            // The selectors the host last resumed user mode with (the CPU accepted
            // them under the descriptor tables still loaded), the user L4, and a place
            // for the #GP fast-path flag.
            returnCS = vcpu.u64(UInt64(CoreLayout.vcpuUserCS))
            returnSS = vcpu.u64(UInt64(CoreLayout.vcpuUserSS))
            guard returnCS != 0, cs & 0xffff == returnCS, (ss & 0xffff) | 3 == returnSS,
                  vcpu.u64(UInt64(CoreLayout.vcpuUserTable)) != CoreLayout.noFrame,
                  let flag = UnsafeMutableRawPointer(bitPattern: UInt(truncatingIfNeeded: vcpu.u64(UInt64(CoreLayout.vcpuFastIOFlag)))) else {
                return CoreLayout.resultDeferred
            }
            fastIOFlag = flag
        } else {
            // Kernel to kernel, on the flat selectors the CPU always accepts.
            guard (cs & 0xffff) | 3 == flatKernelCS, (ss & 0xffff) | 3 == flatKernelSS else {
                return CoreLayout.resultDeferred
            }
            returnCS = flatKernelCS
            returnSS = flatKernelSS
        }
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
        regs.setU64(UInt64(CoreLayout.savedCS), returnCS)
        regs.setU64(UInt64(CoreLayout.savedRFlags), (rflags & ~(iopl | virtual8086)) | interruptFlag | fixed)
        regs.setU64(UInt64(CoreLayout.savedRSP), rsp)
        regs.setU64(UInt64(CoreLayout.savedSS), returnSS)
        if let fastIOFlag { switchToUser(vcpu, fastIOFlag: fastIOFlag) }
        return CoreLayout.resultHandled
    }

    /// Guest kernel mode to guest user mode (the host's `Traps.toggleMode` and its
    /// resume): the user L4 is loaded and the GS bases exchanged on the way out, and
    /// the #GP fast path follows Xen's iopl_ok for ring 3.
    private static func switchToUser(_ vcpu: Words, fastIOFlag: UnsafeMutableRawPointer) {
        vcpu.setU64(UInt64(CoreLayout.vcpuMode), 1)
        vcpu.setU64(UInt64(CoreLayout.vcpuRequestCR3), vcpu.u64(UInt64(CoreLayout.vcpuUserTable)) << 12)
        vcpu.setU64(UInt64(CoreLayout.vcpuRequestSwapGS), 1)
        Words(base: fastIOFlag).setU8(0, vcpu.u64(UInt64(CoreLayout.vcpuVirtualIOPL)) >= 3 ? 1 : 0)
    }
}
