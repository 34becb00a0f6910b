import XenABI

/// physdev_op (public/physdev.h). A domU has no physical devices; it may only set its
/// virtual I/O privilege level.
enum PhysdevOps {
    static func physdevOp(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let command = call.argument(0)
        switch command {
        case PhysdevOp.setIOPL:
            let bytes = try call.copyIn(call.argument(1), count: 4)
            let level = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
            guard level <= 3 else { throw .EINVAL }
            call.vcpu.virtualIOPL = UInt8(level)
            return .value(0)
        default:
            call.domain.log.log(.debug, "\(call.vcpu.name): physdev_op \(command) is not implemented: -ENOSYS")
            throw .ENOSYS
        }
    }
}
