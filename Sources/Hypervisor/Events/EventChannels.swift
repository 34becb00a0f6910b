import GuestMemory
import XenABI

/// Who is at the other end of an event channel that a backend in the hypervisor
/// process owns (the role Domain 0's drivers have on Xen).
public struct HostEndpoint: Sendable {
    /// Called (outside any domain lock) when the guest sends on the channel.
    public let onSend: @Sendable () -> Void
    public let name: String
    public init(name: String, onSend: @escaping @Sendable () -> Void) { self.name = name; self.onSend = onSend }
}

/// The state of one event channel port (Xen's ECS_* states).
public enum EventChannelState: Sendable {
    case free
    /// Allocated, waiting for `remoteDomain` to bind.
    case unbound(remoteDomain: UInt16)
    case interdomain(remoteDomain: UInt16, remotePort: UInt32)
    case virq(UInt32)
    case ipi
    /// Connected to a backend in the hypervisor process.
    case host(HostEndpoint)

    public var isFree: Bool { if case .free = self { return true } else { return false } }
}

/// One port.
public struct EventChannel: Sendable {
    public var state: EventChannelState = .free
    /// vCPU that gets the upcall.
    public var notifyVCPU = 0
}

/// A domain's event channels with the 2-level ABI: 4096 ports (64 × 64 bits). The
/// pending and mask bitmaps live in the guest's shared_info page; this table holds
/// what each port is bound to (xen/common/event_channel.c).
public struct EventChannelTable: Sendable {
    /// Ports of the 2-level ABI on x86-64 (EVTCHN_2L_NR_CHANNELS).
    public static let portCount = 4096
    public private(set) var ports: [EventChannel] = [EventChannel()]
    /// port bound to (vcpu, virq).
    var virqPorts: [Int: [UInt32: UInt32]] = [:]

    public init() {}

    public subscript(port: UInt32) -> EventChannel? {
        port > 0 && port < UInt32(ports.count) ? ports[Int(port)] : nil
    }

    /// Allocates the lowest free port (port 0 is never used).
    public mutating func allocate(_ state: EventChannelState, notifyVCPU: Int = 0) throws(XenError) -> UInt32 {
        if let index = ports.indices.dropFirst().first(where: { ports[$0].state.isFree }) {
            ports[index] = EventChannel(state: state, notifyVCPU: notifyVCPU)
            return UInt32(index)
        }
        guard ports.count < Self.portCount else { throw .ENOSPC }
        ports.append(EventChannel(state: state, notifyVCPU: notifyVCPU))
        return UInt32(ports.count - 1)
    }

    public mutating func set(_ port: UInt32, _ channel: EventChannel) {
        guard port > 0, port < UInt32(ports.count) else { return }
        ports[Int(port)] = channel
    }

    public func virqPort(vcpu: Int, virq: UInt32) -> UInt32? { virqPorts[vcpu]?[virq] }

    mutating func bindVIRQ(vcpu: Int, virq: UInt32, port: UInt32) { virqPorts[vcpu, default: [:]][virq] = port }

    mutating func unbindVIRQ(vcpu: Int, virq: UInt32) { virqPorts[vcpu]?[virq] = nil }
}

extension Domain {
    // MARK: 2-level delivery (xen/common/event_2l.c)

    private func bitmapWord(_ base: Int, _ port: UInt32) -> GuestPhysicalAddress {
        GuestPhysicalAddress(layout.sharedInfo.rawValue + UInt64(base) + UInt64(port / 64) * 8)
    }

    /// Marks `port` pending and, unless masked, raises an upcall on its vCPU
    /// (evtchn_2l_set_pending). Thread-safe: works on guest memory atomically.
    public func setPending(port: UInt32, vcpu index: Int) {
        guard port < UInt32(EventChannelTable.portCount), vcpus.indices.contains(index) else { return }
        let bit: UInt64 = 1 << UInt64(port % 64)
        do {
            let old = try memory.atomicFetchOr(bit, at: bitmapWord(SharedInfoLayout.evtchnPending, port))
            if old & bit != 0 { return }
            let mask = try memory.atomicLoad64(at: bitmapWord(SharedInfoLayout.evtchnMask, port))
            let raised = mask & bit == 0 && markSelectorPending(port: port, vcpu: vcpus[index])
            // evtchn_check_pollers: a vCPU in SCHEDOP_poll waits for the pending bit itself,
            // whatever the mask and the selector say, so wake the blocked ones to look
            // (the upcall above already woke its own vCPU).
            for (number, vcpu) in vcpus.enumerated() where vcpu.blocked.load(ordering: .acquiring) {
                if !(raised && number == index) { vcpu.wake() }
            }
        } catch {
            log.log(.warning, "d\(id): cannot reach shared_info to raise port \(port): \(error)")
        }
    }

    /// Sets the port's selector bit and the upcall flag, and kicks the vCPU if that is new.
    /// Returns whether it raised the upcall (which wakes the vCPU if it is blocked).
    @discardableResult
    private func markSelectorPending(port: UInt32, vcpu: VCPU) -> Bool {
        let selectorBit: UInt64 = 1 << UInt64(port / 64)
        let selector = vcpu.vcpuInfoField(VCPUInfoLayout.pendingSel)
        guard let oldSelector = try? memory.atomicFetchOr(selectorBit, at: selector) else { return false }
        if oldSelector & selectorBit != 0 { return false }
        markUpcallPending(vcpu)
        return true
    }

    /// vcpu_mark_events_pending.
    func markUpcallPending(_ vcpu: VCPU) {
        let flag = vcpu.vcpuInfoField(VCPUInfoLayout.upcallPending)
        if let old = try? memory.atomicExchange(1, at: flag), old == 0 {
            vcpu.wake()
        } else if vcpu.blocked.load(ordering: .acquiring) {
            vcpu.wake()
        }
    }

    /// Clears the mask bit of `port` and re-raises it if pending (evtchn_2l_unmask).
    func unmask(port: UInt32, vcpu index: Int) {
        guard port < UInt32(EventChannelTable.portCount), vcpus.indices.contains(index) else { return }
        let bit: UInt64 = 1 << UInt64(port % 64)
        guard let oldMask = try? memory.atomicFetchAnd(~bit, at: bitmapWord(SharedInfoLayout.evtchnMask, port)),
              oldMask & bit != 0,
              let pending = try? memory.atomicLoad64(at: bitmapWord(SharedInfoLayout.evtchnPending, port)),
              pending & bit != 0 else { return }
        markSelectorPending(port: port, vcpu: vcpus[index])
    }

    /// Whether `port` is pending in shared_info.
    public func isPending(port: UInt32) -> Bool {
        guard port < UInt32(EventChannelTable.portCount),
              let word = try? memory.atomicLoad64(at: bitmapWord(SharedInfoLayout.evtchnPending, port)) else { return false }
        return word & (1 << UInt64(port % 64)) != 0
    }

    /// Whether `port` is masked in shared_info.
    public func isMasked(port: UInt32) -> Bool {
        guard port < UInt32(EventChannelTable.portCount),
              let word = try? memory.atomicLoad64(at: bitmapWord(SharedInfoLayout.evtchnMask, port)) else { return true }
        return word & (1 << UInt64(port % 64)) != 0
    }

    // MARK: Host side

    /// Binds a new port to a backend in the hypervisor process; the guest sees an
    /// interdomain channel to domain 0.
    public func bindHostEndpoint(_ endpoint: HostEndpoint, notifyVCPU: Int = 0) throws(XenError) -> UInt32 {
        try state.withLock { state throws(XenError) in
            try state.events.allocate(.host(endpoint), notifyVCPU: notifyVCPU)
        }
    }

    /// A backend signals the guest on `port` (what `notify_remote_via_evtchn` does from dom0).
    public func notifyFromHost(port: UInt32) {
        let target = state.withLock { state -> Int? in
            guard let channel = state.events[port], case .host = channel.state else { return nil }
            return channel.notifyVCPU
        }
        if let target { setPending(port: port, vcpu: target) }
    }

    /// Raises a VIRQ on `vcpu` if the guest bound it (send_guest_vcpu_virq).
    public func raiseVIRQ(_ virq: UInt32, vcpu index: Int) {
        let port = state.withLock { $0.events.virqPort(vcpu: VIRQ.isPerVCPU(virq) ? index : 0, virq: virq) }
        if let port { setPending(port: port, vcpu: VIRQ.isPerVCPU(virq) ? index : (state.withLock { $0.events[port]?.notifyVCPU } ?? 0)) }
    }
}
