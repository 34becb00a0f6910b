import XenABI

/// event_channel_op (public/event_channel.h, xen/common/event_channel.c), 2-level ABI.
enum EventChannelOps {
    static func eventChannelOp(_ call: inout HypercallInvocation) throws(XenError) -> HypercallOutcome {
        let command = call.argument(0)
        let argument = call.argument(1)
        switch command {
        case EventChannelOp.allocUnbound:
            let reader = ByteReader(try call.copyIn(argument, count: 8))
            guard let dom = try? reader.u16(0), let remote = try? reader.u16(2) else { throw .EFAULT }
            guard dom == DomainID.`self` || dom == call.domain.id else { throw .EPERM }
            let remoteID = remote == DomainID.`self` ? call.domain.id : remote
            let port = try call.domain.state.withLock { state throws(XenError) in
                try state.events.allocate(.unbound(remoteDomain: remoteID))
            }
            try call.copyOut(u32(port), to: argument + 4)
            return .value(0)
        case EventChannelOp.bindInterdomain:
            let reader = ByteReader(try call.copyIn(argument, count: 12))
            guard let remoteDom = try? reader.u16(0), let remotePort = try? reader.u32(4) else { throw .EFAULT }
            let port = try bindInterdomain(call.domain, remoteID: remoteDom, remotePort: remotePort)
            try call.copyOut(u32(port), to: argument + 8)
            return .value(0)
        case EventChannelOp.bindVIRQ:
            let reader = ByteReader(try call.copyIn(argument, count: 12))
            guard let virq = try? reader.u32(0), let vcpu = try? reader.u32(4) else { throw .EFAULT }
            guard virq < VIRQ.count else { throw .EINVAL }
            guard Int(vcpu) < call.domain.vcpus.count else { throw .ENOENT }
            if !VIRQ.isPerVCPU(virq) && vcpu != 0 { throw .EINVAL }
            let port = try call.domain.state.withLock { state throws(XenError) in
                guard state.events.virqPort(vcpu: Int(vcpu), virq: virq) == nil else { throw .EEXIST }
                let port = try state.events.allocate(.virq(virq), notifyVCPU: Int(vcpu))
                state.events.bindVIRQ(vcpu: Int(vcpu), virq: virq, port: port)
                return port
            }
            if virq == VIRQ.timer { call.domain.publishTimerPorts() }
            try call.copyOut(u32(port), to: argument + 8)
            return .value(0)
        case EventChannelOp.bindIPI:
            let reader = ByteReader(try call.copyIn(argument, count: 8))
            guard let vcpu = try? reader.u32(0) else { throw .EFAULT }
            guard Int(vcpu) < call.domain.vcpus.count else { throw .ENOENT }
            let port = try call.domain.state.withLock { state throws(XenError) in
                try state.events.allocate(.ipi, notifyVCPU: Int(vcpu))
            }
            try call.copyOut(u32(port), to: argument + 4)
            return .value(0)
        case EventChannelOp.close:
            try close(call.domain, port: try readPort(call, argument))
            call.domain.publishTimerPorts()
            return .value(0)
        case EventChannelOp.send:
            try send(call.domain, port: try readPort(call, argument))
            return .value(0)
        case EventChannelOp.status:
            try call.copyOut(try status(call, argument), to: argument)
            return .value(0)
        case EventChannelOp.bindVCPU:
            let reader = ByteReader(try call.copyIn(argument, count: 8))
            guard let port = try? reader.u32(0), let vcpu = try? reader.u32(4) else { throw .EFAULT }
            guard Int(vcpu) < call.domain.vcpus.count else { throw .ENOENT }
            try call.domain.state.withLock { state throws(XenError) in
                guard var channel = state.events[port] else { throw .EINVAL }
                switch channel.state {
                case let .virq(virq) where VIRQ.isPerVCPU(virq): throw .EINVAL
                case .ipi, .free: throw .EINVAL
                default: break
                }
                channel.notifyVCPU = Int(vcpu)
                state.events.set(port, channel)
            }
            return .value(0)
        case EventChannelOp.unmask:
            let port = try readPort(call, argument)
            let target = call.domain.state.withLock { $0.events[port]?.notifyVCPU }
            guard let target else { throw .EINVAL }
            call.domain.unmask(port: port, vcpu: target)
            return .value(0)
        default:
            // FIFO events (init_control, expand_array, set_priority) and reset are not
            // offered; Linux then uses the 2-level ABI.
            call.domain.log.log(.debug, "\(call.vcpu.name): event_channel_op \(command) is not implemented: -ENOSYS")
            throw .ENOSYS
        }
    }

    static func u32(_ value: UInt32) -> [UInt8] {
        [UInt8(truncatingIfNeeded: value), UInt8(truncatingIfNeeded: value >> 8),
         UInt8(truncatingIfNeeded: value >> 16), UInt8(truncatingIfNeeded: value >> 24)]
    }

    static func readPort(_ call: HypercallInvocation, _ argument: UInt64) throws(XenError) -> UInt32 {
        let bytes = try call.copyIn(argument, count: 4)
        return UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24
    }

    /// Connects a new local port to `remotePort` of `remoteID`, which must be unbound
    /// and waiting for this domain. Locks are taken in domain-id order.
    static func bindInterdomain(_ domain: Domain, remoteID: UInt16, remotePort: UInt32) throws(XenError) -> UInt32 {
        guard let remote = domain.domain(remoteID) else { throw .ESRCH }
        if remote === domain {
            return try domain.state.withLock { state throws(XenError) in
                guard let channel = state.events[remotePort], case let .unbound(waiting) = channel.state,
                      waiting == domain.id else { throw .EINVAL }
                let local = try state.events.allocate(.interdomain(remoteDomain: domain.id, remotePort: remotePort))
                state.events.set(remotePort, EventChannel(state: .interdomain(remoteDomain: domain.id, remotePort: local),
                                                          notifyVCPU: channel.notifyVCPU))
                return local
            }
        }
        let (first, second) = domain.id < remote.id ? (domain, remote) : (remote, domain)
        return try first.state.withLock { firstState throws(XenError) in
            try second.state.withLock { secondState throws(XenError) in
                func body(_ local: inout DomainState, _ other: inout DomainState) throws(XenError) -> UInt32 {
                    guard let channel = other.events[remotePort], case let .unbound(waiting) = channel.state,
                          waiting == domain.id else { throw .EINVAL }
                    let port = try local.events.allocate(.interdomain(remoteDomain: remote.id, remotePort: remotePort))
                    other.events.set(remotePort, EventChannel(state: .interdomain(remoteDomain: domain.id, remotePort: port),
                                                              notifyVCPU: channel.notifyVCPU))
                    return port
                }
                return domain === first ? try body(&firstState, &secondState) : try body(&secondState, &firstState)
            }
        }
    }

    /// EVTCHNOP_send: raise the other end.
    static func send(_ domain: Domain, port: UInt32) throws(XenError) {
        let channel = domain.state.withLock { $0.events[port] }
        guard let channel else { throw .EINVAL }
        switch channel.state {
        case let .interdomain(remoteID, remotePort):
            guard let remote = domain.domain(remoteID) else { return }
            let target = remote.state.withLock { $0.events[remotePort]?.notifyVCPU } ?? 0
            remote.setPending(port: remotePort, vcpu: target)
        case .ipi:
            domain.setPending(port: port, vcpu: channel.notifyVCPU)
        case let .host(endpoint):
            endpoint.onSend()
        case .unbound:
            break   // no one to tell yet: dropped, as on Xen
        case .virq, .free:
            throw .EINVAL
        }
    }

    /// EVTCHNOP_close: free the port; an interdomain peer goes back to unbound.
    static func close(_ domain: Domain, port: UInt32) throws(XenError) {
        let channel = try domain.state.withLock { state throws(XenError) -> EventChannel in
            guard let channel = state.events[port], !channel.state.isFree else { throw .EINVAL }
            if case let .virq(virq) = channel.state {
                // A global VIRQ is registered on vCPU 0 even after bind_vcpu moved its port.
                state.events.unbindVIRQ(vcpu: VIRQ.isPerVCPU(virq) ? channel.notifyVCPU : 0, virq: virq)
            }
            state.events.set(port, EventChannel())
            return channel
        }
        _ = try? domain.memory.atomicFetchAnd(~(1 << UInt64(port % 64)),
                                              at: .init(domain.layout.sharedInfo.rawValue + UInt64(SharedInfoLayout.evtchnPending) + UInt64(port / 64) * 8))
        if case let .interdomain(remoteID, remotePort) = channel.state, let remote = domain.domain(remoteID) {
            remote.state.withLock { state in
                if let peer = state.events[remotePort], case .interdomain = peer.state {
                    state.events.set(remotePort, EventChannel(state: .unbound(remoteDomain: domain.id), notifyVCPU: peer.notifyVCPU))
                }
            }
        }
    }

    /// EVTCHNOP_status: struct evtchn_status.
    static func status(_ call: HypercallInvocation, _ argument: UInt64) throws(XenError) -> [UInt8] {
        let reader = ByteReader(try call.copyIn(argument, count: 8))
        guard let dom = try? reader.u16(0), let port = try? reader.u32(4) else { throw .EFAULT }
        guard dom == DomainID.`self` || dom == call.domain.id else { throw .EPERM }
        guard port > 0, port < UInt32(EventChannelTable.portCount) else { throw .EINVAL }
        let channel = call.domain.state.withLock { $0.events[port] } ?? EventChannel()
        var writer = ByteWriter(size: 24)
        writer.set(dom, at: 0)
        writer.set(port, at: 4)
        writer.set(UInt32(channel.notifyVCPU), at: 12)
        switch channel.state {
        case .free:
            writer.set(EventChannelStatus.closed, at: 8)
        case let .unbound(remote):
            writer.set(EventChannelStatus.unbound, at: 8)
            writer.set(remote, at: 16)
        case let .interdomain(remote, remotePort):
            writer.set(EventChannelStatus.interdomain, at: 8)
            writer.set(remote, at: 16)
            writer.set(remotePort, at: 20)
        case .host:
            writer.set(EventChannelStatus.interdomain, at: 8)
            writer.set(UInt16(0), at: 16)
        case let .virq(virq):
            writer.set(EventChannelStatus.virq, at: 8)
            writer.set(virq, at: 16)
        case .ipi:
            writer.set(EventChannelStatus.ipi, at: 8)
        }
        return writer.bytes
    }
}
