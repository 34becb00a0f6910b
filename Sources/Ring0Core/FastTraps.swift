/// Bounces to the guest kernel completed inside the VM, with the host's rules
/// (`Hypervisor.Traps.bounce`, Xen's create_bounce_frame in x86_64/entry.S):
///
/// - a page fault the guest takes (`#PF` from guest user or kernel mode) goes to the
///   handler of its trap table, with cr2 in vcpu_info and the error code's user bit
///   saying which mode faulted;
/// - a `syscall` from guest user mode goes to the syscall callback;
/// - an event upcall is delivered on the way back from a hypercall that found one
///   pending and unmasked (Linux's xen_force_evtchn_callback calls xen_version).
///
/// The frame is Xen's: rcx, r11, [error code], rip, cs (RPL 0 for kernel mode, the
/// saved event mask in bits 32+), rflags (IF from the saved mask, the virtual IOPL),
/// rsp, ss, on the kernel stack of stack_switch (from user mode, which also switches to
/// the kernel's page tables and GS base) or below the current one (kernel mode),
/// 16-byte aligned.
///
/// A kernel write to one of its page tables is emulated (`FastPTWrite`) or left to the
/// host, never bounced here. Left to the host, untouched: the kick page and the hypervisor's own addresses, no handler, no
/// kernel page tables, a stack the core cannot write, and a bounce after which an
/// unmasked event would still wait (the host delivers both).
enum FastTraps {
    static let pageFaultVector: UInt64 = 14
    static let interruptFlag: UInt64 = 1 << 9
    static let iopl: UInt64 = 3 << 12
    static let fixed: UInt64 = 1 << 1
    static let direction: UInt64 = 1 << 10
    /// Cleared in the rflags the handler starts with (TF, NT, RF, VM, AC).
    static let clearedOnBounce: UInt64 = (1 << 8) | (1 << 14) | (1 << 16) | (1 << 17) | (1 << 18)
    /// Page-fault error code bits.
    static let errorPresent: UInt64 = 1, errorWrite: UInt64 = 2, errorUser: UInt64 = 4
    /// vcpu_info: evtchn_upcall_pending, evtchn_upcall_mask, arch.cr2.
    static let infoPending: UInt64 = 0, infoMask: UInt64 = 1, infoCR2: UInt64 = 0x10

    /// `#PF` from guest code (entry.S saved the error code in the vCPU block).
    static func pageFault(_ regs: Words, _ vcpu: Words, context: CoreContext, faultAddress: UInt64, cr3: UInt64) -> UInt64 {
        let view = context.view
        let rip = regs.u64(UInt64(CoreLayout.savedRIP))
        // The kick page, and faults at the stubs (a `syscall` on hosts that jump to
        // MSR_LSTAR in ring 3), are the host's; so is any address it must report.
        guard GuestView.isGuestAddress(faultAddress), GuestView.isGuestAddress(rip) else { return CoreLayout.resultDeferred }
        let user = vcpu.u64(UInt64(CoreLayout.vcpuMode)) != 0
        var errorCode = vcpu.u64(UInt64(CoreLayout.vcpuTrapErrorCode))
        // A kernel write to a present read-only page may be a write to one of its page
        // tables (writable page tables): emulated here in the common cases, else the
        // host's, which emulates it or delivers the fault.
        if !user && errorCode & (errorPresent | errorWrite) == errorPresent | errorWrite {
            return FastPTWrite.emulate(regs, vcpu, context: context, faultAddress: faultAddress, cr3: cr3)
        }
        let handler = vcpu.u64(UInt64(CoreLayout.vcpuPageFaultHandler))
        guard handler != 0 else { return CoreLayout.resultDeferred }
        errorCode = (errorCode & ~errorUser) | (user ? errorUser : 0)
        let masks = vcpu.u64(UInt64(CoreLayout.vcpuPageFaultFlags)) & 1 != 0
        return bounce(regs, vcpu, view: view, handler: handler, masksEvents: masks, errorCode: errorCode,
                      faultAddress: faultAddress, counter: CoreLayout.inVMPageFault)
    }

    /// `syscall` from guest user mode: the guest kernel's syscall callback, with the
    /// user's return address in rip and rcx and its flags in r11 (Xen's lstar_enter).
    static func userSyscall(_ regs: Words, _ vcpu: Words, view: GuestView) -> UInt64 {
        let handler = vcpu.u64(UInt64(CoreLayout.vcpuSyscallCallback))
        guard handler != 0 else { return CoreLayout.resultDeferred }
        let flags = regs.u64(UInt64(CoreLayout.savedR11))
        // entry.S made the frame the guest's: rip from rcx, the flat selectors; the
        // flags are r11's, as the CPU saved them.
        let saved = regs.u64(UInt64(CoreLayout.savedRFlags))
        regs.setU64(UInt64(CoreLayout.savedRFlags), flags | fixed)
        let masks = vcpu.u64(UInt64(CoreLayout.vcpuSyscallCallbackFlags)) & 1 != 0
        let result = bounce(regs, vcpu, view: view, handler: handler, masksEvents: masks, errorCode: nil,
                            faultAddress: nil, counter: CoreLayout.inVMUserSyscall)
        guard result == CoreLayout.resultHandled else {
            regs.setU64(UInt64(CoreLayout.savedRFlags), saved)
            return result
        }
        regs.setU64(UInt64(CoreLayout.savedRFlags), regs.u64(UInt64(CoreLayout.savedRFlags)) & ~direction)
        return result
    }

    /// After a hypercall the core completed from guest kernel mode: the event upcall,
    /// if one is pending and unmasked and a callback is registered. Returns false when
    /// one waits but the core cannot deliver it (the host must).
    static func deliverEvent(_ regs: Words, _ vcpu: Words, view: GuestView) -> Bool {
        let info = vcpu.u64(UInt64(CoreLayout.vcpuInfo))
        guard info != CoreLayout.noFrame, info >> 12 < view.ramFrames, (info &+ infoCR2 &+ 8) >> 12 < view.ramFrames else {
            return false
        }
        guard view.ram.u8(info &+ infoPending) != 0, view.ram.u8(info &+ infoMask) == 0 else { return true }
        let handler = vcpu.u64(UInt64(CoreLayout.vcpuEventCallback))
        guard handler != 0 else { return true }   // as the host: nowhere to deliver it
        return bounce(regs, vcpu, view: view, handler: handler, masksEvents: true, errorCode: nil,
                      faultAddress: nil, counter: CoreLayout.inVMEventUpcall) == CoreLayout.resultHandled
    }

    /// Builds the bounce frame and points the saved frame at `handler` (the host's
    /// `Traps.bounce`, then its resume: IF set, IOPL clear). Changes nothing when it
    /// defers.
    static func bounce(_ regs: Words, _ vcpu: Words, view: GuestView, handler: UInt64, masksEvents: Bool,
                       errorCode: UInt64?, faultAddress: UInt64?, counter: Int) -> UInt64 {
        let info = vcpu.u64(UInt64(CoreLayout.vcpuInfo))
        guard info != CoreLayout.noFrame, info >> 12 < view.ramFrames, (info &+ infoCR2 &+ 8) >> 12 < view.ramFrames else {
            return CoreLayout.resultDeferred
        }
        let kernelTable = vcpu.u64(UInt64(CoreLayout.vcpuKernelTable))
        guard kernelTable != CoreLayout.noFrame, kernelTable < view.ramFrames else { return CoreLayout.resultDeferred }
        let user = vcpu.u64(UInt64(CoreLayout.vcpuMode)) != 0
        let savedMask = view.ram.u8(info &+ infoMask) != 0 ? UInt64(1) : 0
        // With events unmasked after the bounce, a pending one would be delivered on top:
        // the host does both.
        if !masksEvents && savedMask == 0 && view.ram.u8(info &+ infoPending) != 0 { return CoreLayout.resultDeferred }
        // The fast-path flag of kernel mode (Xen's iopl_ok: the kernel counts as ring 1).
        let virtualIOPL = vcpu.u64(UInt64(CoreLayout.vcpuVirtualIOPL))
        var fastIOFlag: UnsafeMutableRawPointer?
        if user {
            guard let flag = UnsafeMutableRawPointer(bitPattern: UInt(truncatingIfNeeded: vcpu.u64(UInt64(CoreLayout.vcpuFastIOFlag)))) else {
                return CoreLayout.resultDeferred
            }
            fastIOFlag = flag
        }

        let rip = regs.u64(UInt64(CoreLayout.savedRIP))
        var savedCS = regs.u64(UInt64(CoreLayout.savedCS)) & 0xffff
        let savedRSP = regs.u64(UInt64(CoreLayout.savedRSP))
        let savedSS = regs.u64(UInt64(CoreLayout.savedSS)) & 0xffff
        let rflags = regs.u64(UInt64(CoreLayout.savedRFlags))
        var stack: UInt64
        if user {
            stack = vcpu.u64(UInt64(CoreLayout.vcpuKernelSP))
        } else {
            stack = savedRSP
            savedCS &= ~3   // tells the guest it was in kernel context
        }
        stack &= ~0xf
        var frameRFlags = rflags & ~(interruptFlag | iopl)
        if savedMask == 0 { frameRFlags |= interruptFlag }
        frameRFlags |= (virtualIOPL & 3) << 12

        // rcx, r11, [error code], rip, cs, rflags, rsp, ss.
        let words: UInt64 = errorCode == nil ? 7 : 8
        let frameBytes = words &* 8
        guard stack >= frameBytes else { return CoreLayout.resultDeferred }
        let base = stack &- frameBytes
        // Both ends of the frame through the kernel's page tables, writable (a frame
        // spans at most two pages), before anything is written.
        let root = kernelTable << 12
        guard let first = view.translate(base, root: root, write: true),
              let last = view.translate(stack &- 8, root: root, write: true) else { return CoreLayout.resultDeferred }
        let split = (base | 0xfff) &+ 1   // the first byte of the next page
        func put(_ index: UInt64, _ value: UInt64) {
            let address = base &+ index &* 8
            let physical = address < split ? first &+ index &* 8 : last &- (stack &- 8 &- address)
            view.ram.setU64(physical, value)
        }
        var index: UInt64 = 0
        put(index, regs.u64(UInt64(CoreLayout.savedRCX))); index &+= 1
        put(index, regs.u64(UInt64(CoreLayout.savedR11))); index &+= 1
        if let errorCode { put(index, errorCode); index &+= 1 }
        put(index, rip); index &+= 1
        put(index, savedCS | savedMask << 32); index &+= 1
        put(index, frameRFlags); index &+= 1
        put(index, savedRSP); index &+= 1
        put(index, savedSS)

        if let faultAddress { view.ram.setU64(info &+ infoCR2, faultAddress) }
        if masksEvents { view.ram.setU8(info &+ infoMask, 1) }
        regs.setU64(UInt64(CoreLayout.savedRIP), handler)
        regs.setU64(UInt64(CoreLayout.savedCS), FastIret.flatKernelCS)
        regs.setU64(UInt64(CoreLayout.savedSS), FastIret.flatKernelSS)
        regs.setU64(UInt64(CoreLayout.savedRSP), base)
        regs.setU64(UInt64(CoreLayout.savedRFlags), ((rflags & ~(clearedOnBounce | iopl)) | interruptFlag | fixed))
        if let fastIOFlag { switchToKernel(vcpu, fastIOFlag: fastIOFlag, virtualIOPL: virtualIOPL) }
        vcpu.countInVM(counter)
        return CoreLayout.resultHandled
    }

    /// Guest user mode to guest kernel mode (the host's `Traps.toggleMode` and its
    /// resume): the kernel L4 is loaded and the GS bases exchanged on the way out.
    private static func switchToKernel(_ vcpu: Words, fastIOFlag: UnsafeMutableRawPointer, virtualIOPL: UInt64) {
        vcpu.setU64(UInt64(CoreLayout.vcpuMode), 0)
        vcpu.setU64(UInt64(CoreLayout.vcpuRequestCR3), vcpu.u64(UInt64(CoreLayout.vcpuKernelTable)) << 12)
        vcpu.setU64(UInt64(CoreLayout.vcpuRequestSwapGS), 1)
        Words(base: fastIOFlag).setU8(0, virtualIOPL >= 1 ? 1 : 0)
    }
}
