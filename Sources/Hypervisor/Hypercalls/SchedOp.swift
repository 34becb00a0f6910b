import XenABI

/// sched_op (public/sched.h).
enum SchedOps {
    /// Most ports SCHEDOP_poll accepts (Xen's limit).
    static let maximumPollPorts: UInt32 = 128

    static func schedOp(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let command = call.argument(0)
        let argument = call.argument(1)
        switch command {
        case SchedOp.yield:
            return .yield
        case SchedOp.block:
            // vcpu_block_enable_events: unmask, then sleep unless something is pending.
            call.vcpu.setUpcallMask(false)
            return call.vcpu.upcallPending() ? .value(0) : .block
        case SchedOp.shutdown:
            let bytes = try call.copyIn(argument, count: 4)
            let raw = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
            guard let reason = ShutdownReason(rawValue: raw) else { throw .EINVAL }
            call.domain.log.log(.info, "d\(call.domain.id): shutdown requested by \(call.vcpu.name): \(reason)")
            call.domain.shutdown(reason)
            return .stop
        case SchedOp.shutdownCode:
            let bytes = try call.copyIn(argument, count: 4)
            let raw = UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
            guard ShutdownReason(rawValue: raw) != nil else { throw .EINVAL }
            call.domain.shutdownCode.store(raw, ordering: .relaxed)
            return .value(0)
        case SchedOp.poll:
            let poll = try SchedPoll(try call.copyIn(argument, count: SchedPoll.size))
            guard poll.nrPorts <= maximumPollPorts else { throw .EINVAL }
            let raw = try call.copyIn(poll.ports, count: Int(poll.nrPorts) * 4)
            // Events may be enabled: Linux's PV spinlocks poll with them on, and BUG()
            // on any error. As Xen's do_poll, an upcall the vCPU would take at once
            // ends the poll (the runner also wakes for one that arrives).
            if call.vcpu.upcallPending() && !call.vcpu.upcallMask() { return .value(0) }
            var ports: [UInt32] = []
            for index in 0..<Int(poll.nrPorts) {
                let port = UInt32(raw[4 * index]) | UInt32(raw[4 * index + 1]) << 8
                    | UInt32(raw[4 * index + 2]) << 16 | UInt32(raw[4 * index + 3]) << 24
                guard port < UInt32(EventChannelTable.portCount) else { throw .EINVAL }
                if call.domain.isPending(port: port) { return .value(0) }
                ports.append(port)
            }
            return .poll(ports: ports, deadline: poll.timeout == 0 ? nil : poll.timeout)
        case SchedOp.remoteShutdown:
            // Only a privileged domain may shut down another.
            throw .EPERM
        default:
            call.domain.log.log(.debug, "\(call.vcpu.name): sched_op \(command) is not implemented: -ENOSYS")
            throw .ENOSYS
        }
    }
}

extension SchedPoll {
    init(_ bytes: [UInt8]) throws(XenError) {
        do { try self.init(decoding: bytes) } catch { throw .EFAULT }
    }
}
