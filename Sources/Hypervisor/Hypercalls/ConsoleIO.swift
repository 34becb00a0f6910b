import XenABI

/// console_io (public/xen.h `CONSOLEIO_*`): the hypervisor's own console. Xen lets only
/// privileged domains use it unless built for debugging; Domus accepts writes from
/// every domain (they are the earliest output a PV kernel can make) and refuses reads.
enum ConsoleIOOp {
    /// Largest write Domus accepts in one call.
    static let maximumWrite = 1 << 20

    static func consoleIO(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let command = call.argument(0)
        let count = call.argument(1)
        let buffer = call.argument(2)
        switch command {
        case ConsoleIO.write:
            guard count <= UInt64(maximumWrite) else { throw .EINVAL }
            let bytes = try call.copyIn(buffer, count: Int(count))
            call.domain.writeConsoleIO(bytes)
            return .value(0)
        case ConsoleIO.read:
            throw .EPERM
        default:
            throw .ENOSYS
        }
    }
}
