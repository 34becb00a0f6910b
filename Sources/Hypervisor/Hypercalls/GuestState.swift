import XenABI

/// Hypercalls that set a vCPU's trap table, kernel stack, segment bases, debug
/// registers and VM assists (public/xen.h, arch-x86/xen-x86_64.h).
enum GuestState {
    /// set_trap_table: entries until one with address 0; a null list clears the table. A
    /// non-canonical handler address is -EINVAL (entries before it stay set, as on Xen).
    static func setTrapTable(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let list = call.argument(0)
        if list == 0 {
            call.vcpu.trapTable = [TrapInfo?](repeating: nil, count: 256)
            return .value(0)
        }
        for index in 0..<256 {
            let bytes = try call.copyIn(list &+ UInt64(index * TrapInfo.size), count: TrapInfo.size)
            guard var entry = try? TrapInfo(decoding: bytes) else { throw .EFAULT }
            if entry.address == 0 { break }
            // As Xen: a handler the CPU could never jump to is refused up front.
            guard GuestVirtualAddressCheck.isCanonical(entry.address) else { throw .EINVAL }
            entry.cs |= 3   // fixup_guest_code_selector: guest code runs in ring 3
            call.vcpu.trapTable[Int(entry.vector)] = entry
        }
        return .value(0)
    }

    /// stack_switch(ss, sp): the stack used when entering the guest kernel from user mode.
    static func stackSwitch(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        call.vcpu.kernelSS = UInt16(truncatingIfNeeded: call.argument(0)) | 3
        call.vcpu.kernelSP = call.argument(1)
        return .value(0)
    }

    /// fpu_taskswitch(set): the guest's virtual CR0.TS.
    static func fpuTaskswitch(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        call.vcpu.virtualTS = call.argument(0) != 0
        return .value(0)
    }

    static func setDebugreg(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let register = call.argument(0)
        guard register < 8, register != 4, register != 5 else { throw .EINVAL }
        let value = call.argument(1)
        if register < 4 {
            // Breakpoint addresses must be guest addresses.
            guard GuestPageWalker.isGuestAccessible(.init(value)) else { throw .EPERM }
        }
        call.vcpu.debugRegisters[Int(register)] = value
        return .value(0)
    }

    static func getDebugreg(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let register = call.argument(0)
        guard register < 8, register != 4, register != 5 else { throw .EINVAL }
        return .value(call.vcpu.debugRegisters[Int(register)])
    }

    /// VM assists a 64-bit PV guest may turn on (VM_ASSIST_VALID for PV64).
    static let validAssists: UInt64 = (1 << VMAssist.typeFourGBSegments) | (1 << VMAssist.typeFourGBSegmentsNotify)
        | (1 << VMAssist.typeWritablePagetables) | (1 << VMAssist.typePaeExtendedCR3)
        | (1 << VMAssist.typeArchRetainedWrites) | (1 << VMAssist.typeRunstateUpdateFlag) | (1 << VMAssist.typeM2PStrict)

    static func vmAssist(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let command = call.argument(0)
        let type = call.argument(1)
        guard type < 64, validAssists & (1 << type) != 0 else { throw .EINVAL }
        switch command {
        case VMAssist.cmdEnable:
            call.domain.state.withLock { $0.vmAssists |= 1 << type }
        case VMAssist.cmdDisable:
            call.domain.state.withLock { $0.vmAssists &= ~(1 << type) }
        default:
            throw .ENOSYS
        }
        return .value(0)
    }

    /// set_segment_base(which, base).
    static func setSegmentBase(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let which = call.argument(0)
        let base = call.argument(1)
        switch which {
        case SegmentBase.fs:
            guard GuestVirtualAddressCheck.isCanonical(base) else { throw .EINVAL }
            call.context.fsBase = base
        case SegmentBase.gsKernel:
            guard GuestVirtualAddressCheck.isCanonical(base) else { throw .EINVAL }
            call.context.gsBase = base
        case SegmentBase.gsUser:
            guard GuestVirtualAddressCheck.isCanonical(base) else { throw .EINVAL }
            call.vcpu.inactiveGSBase = base
        case SegmentBase.gsUserSelector:
            // Loading a selector into the user GS resets its base to the descriptor's,
            // which is 0 for 64-bit data segments.
            call.vcpu.userGSSelector = UInt16(truncatingIfNeeded: base)
            call.vcpu.inactiveGSBase = 0
        default:
            throw .EINVAL
        }
        return .value(0)
    }
}

/// Canonical-address check for raw values.
enum GuestVirtualAddressCheck {
    static func isCanonical(_ value: UInt64) -> Bool {
        let top = value >> 47
        return top == 0 || top == 0x1ffff
    }
}
