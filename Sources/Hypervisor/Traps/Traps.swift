import GuestMemory
import XenABI

/// Mode switches and bounce frames: how the hypervisor hands control to the guest
/// kernel (xen/arch/x86/x86_64/entry.S `create_bounce_frame`, pv/traps.c).
public enum Traps {
    /// Switches between guest kernel and guest user mode (toggle_guest_mode): swaps the
    /// GS bases; the page tables follow from `vcpu.activeTable`.
    public static func toggleMode(_ vcpu: VCPU, _ context: inout GuestContext) {
        let active = context.gsBase
        context.gsBase = vcpu.inactiveGSBase
        vcpu.inactiveGSBase = active
        vcpu.mode = vcpu.mode == .kernel ? .user : .kernel
    }

    /// Builds a bounce frame on the guest kernel stack and points the vCPU at `handler`,
    /// as Xen's create_bounce_frame does. From user mode the vCPU switches to kernel
    /// mode and the kernel stack of stack_switch. Crashes the domain and returns false
    /// if the frame cannot be written.
    @discardableResult
    public static func bounce(_ vcpu: VCPU, _ context: inout GuestContext, to handler: UInt64,
                              errorCode: UInt64? = nil, segments: [UInt64]? = nil, masksEvents: Bool, what: String) -> Bool {
        let domain = vcpu.domain
        let savedMask: UInt64 = vcpu.upcallMask() ? 1 : 0
        var savedCS = UInt64(context.cs)
        let savedRSP = context.rsp
        let savedSS = UInt64(context.ss)
        var stack: UInt64
        if vcpu.mode == .user {
            toggleMode(vcpu, &context)
            stack = vcpu.kernelSP
        } else {
            stack = context.rsp
            savedCS &= ~3   // tells the guest it was in kernel context
        }
        stack &= ~0xf
        var rflags = context.rflags & ~(RFlags.interrupt | RFlags.iopl)
        if savedMask == 0 { rflags |= RFlags.interrupt }
        rflags |= UInt64(vcpu.virtualIOPL) << 12

        var frame: [UInt64] = [context.rcx, context.r11]
        if let segments { frame += segments }
        if let errorCode { frame.append(errorCode) }
        frame += [context.rip, savedCS | (savedMask << 32), rflags, savedRSP, savedSS]
        let frameBytes = UInt64(frame.count * 8)
        guard stack >= frameBytes, GuestPageWalker.isGuestAccessible(.init(stack &- frameBytes)),
              GuestPageWalker.isGuestAccessible(.init(stack &- 1)) else {
            domain.crash("\(vcpu.name): bad kernel stack \(hex(stack)) while delivering \(what)")
            return false
        }
        let base = stack - frameBytes
        var bytes = [UInt8]()
        bytes.reserveCapacity(frame.count * 8)
        for word in frame { for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) } }
        guard let root = vcpu.kernelTable else {
            domain.crash("\(vcpu.name): no kernel page tables while delivering \(what)")
            return false
        }
        do {
            try GuestPageWalker(memory: domain.memory, root: root).write(bytes, to: GuestVirtualAddress(base))
        } catch {
            domain.crash("\(vcpu.name): cannot write the bounce frame for \(what) at \(hex(base)): kernel stack not mapped writable")
            return false
        }
        context.rsp = base
        context.rip = handler
        context.cs = FlatSelector.kernelCS64
        context.ss = FlatSelector.kernelSS64
        context.rflags &= ~(RFlags.alignmentCheck | RFlags.virtual8086 | RFlags.resume | RFlags.nestedTask | RFlags.trap)
        if masksEvents { vcpu.setUpcallMask(true) }
        if domain.trace.load(ordering: .relaxed) {
            domain.log.log(.trace, "\(vcpu.name): bounce \(what) to \(hex(handler)), frame at \(hex(base))")
        }
        return true
    }

    /// Delivers an exception to the guest's handler from its trap table (pv_inject_event).
    /// A vector without a handler crashes the domain, as on Xen.
    @discardableResult
    public static func inject(_ vcpu: VCPU, _ context: inout GuestContext, vector: UInt8,
                              errorCode: UInt64? = nil, faultAddress: UInt64? = nil) -> Bool {
        let domain = vcpu.domain
        guard let handler = vcpu.trapTable[Int(vector)], handler.address != 0 else {
            domain.crash("\(vcpu.name): unhandled \(X86Exception.mnemonic(vector)) at \(hex(context.rip))"
                + (errorCode.map { " error \(hex($0))" } ?? "") + (faultAddress.map { " address \(hex($0))" } ?? "")
                + " and no handler in the trap table")
            return false
        }
        var code = errorCode
        if vector == X86Exception.pageFault, let address = faultAddress {
            try? domain.memory.write(address, at: vcpu.vcpuInfoField(VCPUInfoLayout.cr2))
            // The error code's user bit tells the guest which of its modes faulted.
            if var value = code {
                value &= ~4
                if vcpu.mode == .user { value |= 4 }
                code = value
            }
        }
        return bounce(vcpu, &context, to: handler.address, errorCode: code, masksEvents: handler.masksEvents,
                      what: X86Exception.mnemonic(vector))
    }

    /// Delivers a pending event upcall if there is one and events are not masked
    /// (the check Xen makes on every return to the guest). Returns whether it did.
    @discardableResult
    public static func deliverPendingEvents(_ vcpu: VCPU, _ context: inout GuestContext) -> Bool {
        guard vcpu.upcallPending(), !vcpu.upcallMask() else { return false }
        guard let callback = vcpu.callbacks[.event], callback.address != 0 else { return false }
        return bounce(vcpu, &context, to: callback.address, masksEvents: true, what: "event upcall")
    }

    /// Returning to the guest failed because the CPU refused its segments (a bad CS or
    /// SS in its iret frame): deliver the failsafe callback with DS, ES, FS, GS in the
    /// frame, as Xen's failsafe path does; without one the domain is crashed.
    @discardableResult
    public static func failsafe(_ vcpu: VCPU, _ context: inout GuestContext, reason: String) -> Bool {
        guard let callback = vcpu.callbacks[.failsafe], callback.address != 0 else {
            vcpu.domain.crash("\(vcpu.name): \(reason), and no failsafe callback is registered")
            return false
        }
        let segments = [UInt64(context.ds), UInt64(context.es), UInt64(context.fs), UInt64(context.gs)]
        return bounce(vcpu, &context, to: callback.address, segments: segments, masksEvents: callback.masksEvents,
                      what: "failsafe callback (\(reason))")
    }

    /// A `syscall` from guest user mode: bounce to the guest kernel's syscall callback
    /// with the user's return address and flags (entry.S lstar_enter/switch_to_kernel).
    public static func userSyscall(_ vcpu: VCPU, _ context: inout GuestContext, returnAddress: UInt64, flags: UInt64) {
        guard let callback = vcpu.callbacks[.syscall], callback.address != 0 else {
            inject(vcpu, &context, vector: X86Exception.invalidOpcode)
            return
        }
        context.rip = returnAddress
        context.rflags = flags | RFlags.fixed
        context.cs = FlatSelector.userCS64
        context.ss = FlatSelector.userSS64
        context.rcx = returnAddress
        context.r11 = flags
        bounce(vcpu, &context, to: callback.address, masksEvents: callback.masksEvents, what: "syscall")
        context.rflags &= ~RFlags.direction
    }
}
