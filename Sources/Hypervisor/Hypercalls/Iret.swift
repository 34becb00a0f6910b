import XenABI

/// iret (xen/arch/x86/pv/iret.c): return from a bounce frame, to guest kernel or
/// guest user mode, restoring the event mask from the saved IF.
enum Iret {
    static func iret(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let vcpu = call.vcpu
        let saved: IretContext
        do {
            saved = try IretContext(decoding: try call.copyIn(call.context.rsp, count: IretContext.size))
        } catch {
            vcpu.domain.crash("\(vcpu.name): fault while reading the iret context at \(hex(call.context.rsp))")
            return .stop
        }
        if saved.cs & 3 == 3 {
            guard vcpu.userTable != nil else {
                vcpu.domain.crash("\(vcpu.name): iret to user mode with no user page tables")
                return .stop
            }
            if vcpu.mode == .kernel { Traps.toggleMode(vcpu, &call.context) }
        }
        var context = call.context
        context.rip = saved.rip
        context.cs = UInt16(truncatingIfNeeded: saved.cs) | 3
        context.rflags = (saved.rflags & ~(RFlags.iopl | RFlags.virtual8086)) | RFlags.interrupt | RFlags.fixed
        context.rsp = saved.rsp
        context.ss = UInt16(truncatingIfNeeded: saved.ss) | 3
        if saved.flags & VGCF.inSyscall == 0 {
            context.r11 = saved.r11
            context.rcx = saved.rcx
        }
        context.rax = saved.rax
        call.context = context
        vcpu.setUpcallMask(saved.rflags & RFlags.interrupt == 0)
        return .contextReplaced
    }
}
