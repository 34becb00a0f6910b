import XenABI

/// callback_op and set_callbacks (public/callback.h).
enum CallbackOps {
    static func callbackOp(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        switch call.argument(0) {
        case CallbackOp.register:
            guard let request = try? CallbackRegister(decoding: try call.copyIn(call.argument(1), count: CallbackRegister.size)) else {
                throw .EFAULT
            }
            // An unknown type is -ENOSYS on Xen (register_guest_callback).
            guard let type = CallbackType(rawValue: request.type) else { throw .ENOSYS }
            try register(type, address: request.address, flags: request.flags, on: call.vcpu)
            return .value(0)
        case CallbackOp.unregister:
            let bytes = try call.copyIn(call.argument(1), count: 2)
            guard let type = CallbackType(rawValue: UInt16(bytes[0]) | UInt16(bytes[1]) << 8) else { throw .ENOSYS }
            // As on Xen, only the NMI callback can be unregistered; the others are
            // needed for the guest to work at all.
            guard type == .nmi else { throw .EINVAL }
            call.vcpu.callbacks[.nmi] = nil
            return .value(0)
        default:
            throw .ENOSYS
        }
    }

    /// set_callbacks(event, failsafe, syscall): the older way to register the three.
    static func setCallbacks(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        try register(.event, address: call.argument(0), flags: 0, on: call.vcpu)
        try register(.failsafe, address: call.argument(1), flags: 0, on: call.vcpu)
        try register(.syscall, address: call.argument(2), flags: 0, on: call.vcpu)
        return .value(0)
    }

    static func register(_ type: CallbackType, address: UInt64, flags: UInt16, on vcpu: VCPU) throws(XenError) {
        guard GuestVirtualAddressCheck.isCanonical(address) else { throw .EINVAL }
        vcpu.callbacks[type] = GuestCallback(address: address, masksEvents: flags & CallbackOp.flagMaskEvents != 0)
    }
}
