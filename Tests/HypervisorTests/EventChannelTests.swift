// event_channel_op (EventChannelOp.swift) and 2-level delivery (Events/EventChannels.swift).

import GuestMemory
import Synchronization
import Testing
import XenABI

@testable import Hypervisor

/// event_channel_op calls with their argument structs in the guest buffer.
struct EventChannelClient {
    let test: TestDomain
    var argument: UInt64 { TestDomain.buffer }

    func op(_ command: UInt64, _ bytes: [UInt8]) throws -> Int64 {
        try test.write(bytes, at: argument)
        test.call(.eventChannelOp, command, argument)
        return test.result
    }

    /// EVTCHNOP_alloc_unbound {dom, remote_dom, port}.
    func allocUnbound(dom: UInt16 = DomainID.`self`, remote: UInt16) throws -> UInt32 {
        try #require(try op(EventChannelOp.allocUnbound, le(dom) + le(remote) + le(UInt32(0))) == 0)
        return try test.read(UInt32.self, at: argument + 4)
    }

    /// EVTCHNOP_bind_interdomain {remote_dom, remote_port, local_port}.
    func bindInterdomain(remote: UInt16, port: UInt32) throws -> UInt32 {
        try #require(try op(EventChannelOp.bindInterdomain, le(remote) + le(UInt16(0)) + le(port) + le(UInt32(0))) == 0)
        return try test.read(UInt32.self, at: argument + 8)
    }

    /// EVTCHNOP_bind_virq {virq, vcpu, port}.
    func bindVIRQ(_ virq: UInt32, vcpu: UInt32 = 0) throws -> UInt32 {
        try #require(try op(EventChannelOp.bindVIRQ, le(virq) + le(vcpu) + le(UInt32(0))) == 0)
        return try test.read(UInt32.self, at: argument + 8)
    }

    /// EVTCHNOP_bind_ipi {vcpu, port}.
    func bindIPI(vcpu: UInt32 = 0) throws -> UInt32 {
        try #require(try op(EventChannelOp.bindIPI, le(vcpu) + le(UInt32(0))) == 0)
        return try test.read(UInt32.self, at: argument + 4)
    }

    func send(_ port: UInt32) throws -> Int64 { try op(EventChannelOp.send, le(port)) }
    func close(_ port: UInt32) throws -> Int64 { try op(EventChannelOp.close, le(port)) }
    func unmask(_ port: UInt32) throws -> Int64 { try op(EventChannelOp.unmask, le(port)) }
    func bindVCPU(_ port: UInt32, vcpu: UInt32) throws -> Int64 { try op(EventChannelOp.bindVCPU, le(port) + le(vcpu)) }

    /// EVTCHNOP_status: (status, vcpu, u's first u32, u's second u32).
    func status(_ port: UInt32, dom: UInt16 = DomainID.`self`) throws -> (status: UInt32, vcpu: UInt32, u0: UInt32, u1: UInt32) {
        let result = try op(EventChannelOp.status, le(dom) + le(UInt16(0)) + le(port) + [UInt8](repeating: 0, count: 16))
        try #require(result == 0)
        let bytes = try test.read(argument, count: 24)
        #expect(le(UInt16.self, bytes, at: 0) == dom)
        #expect(le(UInt32.self, bytes, at: 4) == port)
        return (le(UInt32.self, bytes, at: 8), le(UInt32.self, bytes, at: 12), le(UInt32.self, bytes, at: 16), le(UInt32.self, bytes, at: 20))
    }

    // shared_info and vcpu_info words.
    func pendingWord(_ word: Int) throws -> UInt64 {
        try test.memory.read(at: test.sharedInfoField(SharedInfoLayout.evtchnPending + 8 * word))
    }
    func maskWord(_ word: Int) throws -> UInt64 {
        try test.memory.read(at: test.sharedInfoField(SharedInfoLayout.evtchnMask + 8 * word))
    }
    func setMask(_ port: UInt32) throws {
        let address = test.sharedInfoField(SharedInfoLayout.evtchnMask + 8 * Int(port / 64))
        try test.memory.write(try test.memory.read(UInt64.self, at: address) | 1 << UInt64(port % 64), at: address)
    }
    func selector(vcpu: Int = 0) throws -> UInt64 {
        try test.memory.read(at: test.vcpuInfoField(VCPUInfoLayout.pendingSel, vcpu: vcpu))
    }
    func upcallPending(vcpu: Int = 0) throws -> UInt8 {
        try test.memory.read(at: test.vcpuInfoField(VCPUInfoLayout.upcallPending, vcpu: vcpu))
    }
    func channel(_ port: UInt32) -> EventChannelState? { test.domain.state.withLock { $0.events[port]?.state } }
}

/// A state without the host endpoint's closure, for comparisons.
enum ChannelState: Equatable {
    case free, unbound(UInt16), interdomain(UInt16, UInt32), virq(UInt32), ipi, host(String)
    init?(_ state: EventChannelState?) {
        switch state {
        case nil: return nil
        case .free?: self = .free
        case let .unbound(remote)?: self = .unbound(remote)
        case let .interdomain(remote, port)?: self = .interdomain(remote, port)
        case let .virq(virq)?: self = .virq(virq)
        case .ipi?: self = .ipi
        case let .host(endpoint)?: self = .host(endpoint.name)
        }
    }
}

@Suite("event_channel_op: binding")
struct EventChannelBindingTests {
    @Test("alloc_unbound allocates the lowest free port (never 0), waiting for the remote domain")
    func allocUnbound() throws {
        let test = try TestDomain(id: 3)
        let events = EventChannelClient(test: test)
        #expect(try events.allocUnbound(remote: 0) == 1)
        #expect(try events.allocUnbound(remote: DomainID.`self`) == 2)
        #expect(try events.allocUnbound(dom: 3, remote: 5) == 3)
        #expect(ChannelState(events.channel(1)) == .unbound(0))
        #expect(ChannelState(events.channel(2)) == .unbound(3), "DOMID_SELF is resolved to the domain's id")
        #expect(ChannelState(events.channel(3)) == .unbound(5))
        #expect(try events.close(2) == 0)
        #expect(try events.allocUnbound(remote: 0) == 2, "a closed port is reused first")
    }

    @Test("alloc_unbound for another domain is -EPERM; a bad argument -EFAULT")
    func allocUnboundInvalid() throws {
        let test = try TestDomain(id: 3)
        let events = EventChannelClient(test: test)
        #expect(try events.op(EventChannelOp.allocUnbound, le(UInt16(4)) + le(UInt16(0)) + le(UInt32(0))) == TestDomain.error(.EPERM))
        test.call(.eventChannelOp, EventChannelOp.allocUnbound, TestDomain.unmapped - 4)
        #expect(test.result == TestDomain.error(.EFAULT))
        // dom and remote_dom on a writable page, port on the read-only L4: as on Xen, the
        // port is allocated before the result is copied out, and stays allocated.
        let straddling = TestDomain.va(TestDomain.l4Frame.rawValue) - 4
        try test.write(le(DomainID.`self`) + le(UInt16(0)), at: straddling)
        test.call(.eventChannelOp, EventChannelOp.allocUnbound, straddling)
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(ChannelState(events.channel(1)) == .unbound(0))
    }

    @Test("bind_interdomain within one domain connects both ends")
    func bindInterdomainLoopback() throws {
        let test = try TestDomain(id: 3)
        let events = EventChannelClient(test: test)
        let waiting = try events.allocUnbound(remote: DomainID.`self`)
        let local = try events.bindInterdomain(remote: DomainID.`self`, port: waiting)
        #expect(local == waiting + 1)
        #expect(ChannelState(events.channel(waiting)) == .interdomain(3, local))
        #expect(ChannelState(events.channel(local)) == .interdomain(3, waiting))
    }

    @Test("bind_interdomain to a port that is not unbound for this domain is -EINVAL; to an unknown domain -ESRCH")
    func bindInterdomainInvalid() throws {
        let test = try TestDomain(id: 3)
        let events = EventChannelClient(test: test)
        let forOther = try events.allocUnbound(remote: 9)
        let ipi = try events.bindIPI()
        for port in [forOther, ipi, 77, 0] {
            #expect(try events.op(EventChannelOp.bindInterdomain, le(DomainID.`self`) + le(UInt16(0)) + le(port) + le(UInt32(0)))
                    == TestDomain.error(.EINVAL), "port \(port)")
        }
        #expect(try events.op(EventChannelOp.bindInterdomain, le(UInt16(9)) + le(UInt16(0)) + le(UInt32(1)) + le(UInt32(0)))
                == TestDomain.error(.ESRCH))
        test.call(.eventChannelOp, EventChannelOp.bindInterdomain, TestDomain.unmapped - 8)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("bind_interdomain to another domain connects ports in both domains")
    func bindInterdomainPeers() throws {
        let front = try TestDomain(id: 3)
        let back = try TestDomain(id: 5)
        let (frontDomain, backDomain) = (front.domain, back.domain)
        front.domain.peers.withLock { $0 = { [weak backDomain] id in id == 5 ? backDomain : nil } }
        back.domain.peers.withLock { $0 = { [weak frontDomain] id in id == 3 ? frontDomain : nil } }
        let backEvents = EventChannelClient(test: back)
        let frontEvents = EventChannelClient(test: front)
        let waiting = try backEvents.allocUnbound(remote: 3)
        let local = try frontEvents.bindInterdomain(remote: 5, port: waiting)
        #expect(ChannelState(frontEvents.channel(local)) == .interdomain(5, waiting))
        #expect(ChannelState(backEvents.channel(waiting)) == .interdomain(3, local))
        // Sending from the front end raises the back end's port.
        #expect(try frontEvents.send(local) == 0)
        #expect(try backEvents.pendingWord(0) == 1 << UInt64(waiting))
        #expect(try frontEvents.pendingWord(0) == 0)
        // Closing the front end puts the back end's port back to unbound, waiting for domain 3.
        #expect(try frontEvents.close(local) == 0)
        #expect(ChannelState(backEvents.channel(waiting)) == .unbound(3))
    }

    @Test("bind_virq binds each VIRQ once per vCPU; global VIRQs only on vCPU 0")
    func bindVIRQ() throws {
        let test = try TestDomain(vcpus: 2)
        let events = EventChannelClient(test: test)
        let timer0 = try events.bindVIRQ(VIRQ.timer, vcpu: 0)
        let timer1 = try events.bindVIRQ(VIRQ.timer, vcpu: 1)
        let console = try events.bindVIRQ(VIRQ.console, vcpu: 0)
        #expect([timer0, timer1, console] == [1, 2, 3])
        #expect(ChannelState(events.channel(timer1)) == .virq(VIRQ.timer))
        #expect(test.domain.state.withLock { $0.events[timer1]?.notifyVCPU } == 1)
        func bind(_ virq: UInt32, _ vcpu: UInt32) throws -> Int64 {
            try events.op(EventChannelOp.bindVIRQ, le(virq) + le(vcpu) + le(UInt32(0)))
        }
        #expect(try bind(VIRQ.timer, 0) == TestDomain.error(.EEXIST))
        #expect(try bind(VIRQ.console, 0) == TestDomain.error(.EEXIST))
        #expect(try bind(VIRQ.console, 1) == TestDomain.error(.EINVAL), "a global VIRQ on vCPU 1")
        #expect(try bind(VIRQ.debug, 2) == TestDomain.error(.ENOENT))
        #expect(try bind(VIRQ.count, 0) == TestDomain.error(.EINVAL))
        #expect(try bind(0xffff_ffff, 0) == TestDomain.error(.EINVAL))
        test.call(.eventChannelOp, EventChannelOp.bindVIRQ, TestDomain.unmapped)
        #expect(test.result == TestDomain.error(.EFAULT))
        // Closing a VIRQ port lets it be bound again.
        #expect(try events.close(timer0) == 0)
        #expect(try events.bindVIRQ(VIRQ.timer, vcpu: 0) == timer0)
    }

    @Test("Closing a global VIRQ that bind_vcpu moved to another vCPU unbinds it: it can be bound again and raises nothing")
    func closeMovedGlobalVIRQ() throws {
        let test = try TestDomain(vcpus: 2)
        let events = EventChannelClient(test: test)
        let console = try events.bindVIRQ(VIRQ.console)
        #expect(try events.bindVCPU(console, vcpu: 1) == 0)
        #expect(try events.close(console) == 0)
        #expect(test.domain.state.withLock { $0.events.virqPort(vcpu: 0, virq: VIRQ.console) } == nil)
        // The freed port is reused by an IPI; the VIRQ must not raise it.
        let ipi = try events.bindIPI()
        #expect(ipi == console)
        test.domain.raiseVIRQ(VIRQ.console, vcpu: 0)
        #expect(try events.pendingWord(0) == 0)
        let again = try events.bindVIRQ(VIRQ.console)
        #expect(ChannelState(events.channel(again)) == .virq(VIRQ.console))
    }

    @Test("bind_ipi binds a port to a vCPU; an unknown vCPU is -ENOENT")
    func bindIPI() throws {
        let test = try TestDomain(vcpus: 2)
        let events = EventChannelClient(test: test)
        let port = try events.bindIPI(vcpu: 1)
        #expect(ChannelState(events.channel(port)) == .ipi)
        #expect(test.domain.state.withLock { $0.events[port]?.notifyVCPU } == 1)
        #expect(try events.op(EventChannelOp.bindIPI, le(UInt32(2)) + le(UInt32(0))) == TestDomain.error(.ENOENT))
    }

    @Test("All 4095 usable ports can be allocated; the next is -ENOSPC")
    func exhaustion() throws {
        let test = try TestDomain()
        let ports = try test.domain.state.withLock { state in
            try (1..<4096).map { _ in try state.events.allocate(.ipi) }
        }
        #expect(ports.last == 4095)
        let events = EventChannelClient(test: test)
        #expect(try events.op(EventChannelOp.bindIPI, le(UInt32(0)) + le(UInt32(0))) == TestDomain.error(.ENOSPC))
    }

    @Test("close frees a port and clears its pending bit; closing a free or invalid port is -EINVAL")
    func close() throws {
        let test = try TestDomain()
        let events = EventChannelClient(test: test)
        let port = try events.bindIPI()
        #expect(try events.send(port) == 0)
        #expect(try events.pendingWord(0) == 1 << UInt64(port))
        #expect(try events.close(port) == 0)
        #expect(ChannelState(events.channel(port)) == .free)
        #expect(try events.pendingWord(0) == 0)
        for bad: UInt32 in [port, 0, 4095, 4096, 0xffff_ffff] {
            #expect(try events.close(bad) == TestDomain.error(.EINVAL), "port \(bad)")
        }
        test.call(.eventChannelOp, EventChannelOp.close, TestDomain.unmapped - 2)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("status reports each state with its details")
    func status() throws {
        let test = try TestDomain(vcpus: 2, id: 3)
        let events = EventChannelClient(test: test)
        let unbound = try events.allocUnbound(remote: 7)
        let waiting = try events.allocUnbound(remote: DomainID.`self`)
        let connected = try events.bindInterdomain(remote: DomainID.`self`, port: waiting)
        let virq = try events.bindVIRQ(VIRQ.timer, vcpu: 1)
        let ipi = try events.bindIPI(vcpu: 1)
        let host = try test.domain.bindHostEndpoint(HostEndpoint(name: "console") {})

        #expect(try events.status(unbound) == (EventChannelStatus.unbound, 0, 7, 0))
        #expect(try events.status(waiting) == (EventChannelStatus.interdomain, 0, 3, connected))
        #expect(try events.status(connected) == (EventChannelStatus.interdomain, 0, 3, waiting))
        #expect(try events.status(virq) == (EventChannelStatus.virq, 1, VIRQ.timer, 0))
        #expect(try events.status(ipi) == (EventChannelStatus.ipi, 1, 0, 0))
        #expect(try events.status(host).status == EventChannelStatus.interdomain)
        #expect(try events.status(host).u0 & 0xffff == 0, "a host backend looks like domain 0")
        #expect(try events.status(100) == (EventChannelStatus.closed, 0, 0, 0))
        #expect(try events.status(ipi, dom: 3).status == EventChannelStatus.ipi)
    }

    @Test("status of another domain is -EPERM; of ports 0 and ≥ 4096 -EINVAL")
    func statusInvalid() throws {
        let test = try TestDomain(id: 3)
        let events = EventChannelClient(test: test)
        func status(_ dom: UInt16, _ port: UInt32) throws -> Int64 {
            try events.op(EventChannelOp.status, le(dom) + le(UInt16(0)) + le(port) + [UInt8](repeating: 0, count: 16))
        }
        #expect(try status(4, 1) == TestDomain.error(.EPERM))
        #expect(try status(DomainID.`self`, 0) == TestDomain.error(.EINVAL))
        #expect(try status(DomainID.`self`, 4096) == TestDomain.error(.EINVAL))
        test.call(.eventChannelOp, EventChannelOp.status, TestDomain.unmapped - 4)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("bind_vcpu moves unbound, interdomain and global-VIRQ ports; IPIs, per-vCPU VIRQs and free ports are -EINVAL")
    func bindVCPU() throws {
        let test = try TestDomain(vcpus: 2)
        let events = EventChannelClient(test: test)
        let unbound = try events.allocUnbound(remote: 0)
        let console = try events.bindVIRQ(VIRQ.console)
        let timer = try events.bindVIRQ(VIRQ.timer)
        let ipi = try events.bindIPI()
        #expect(try events.bindVCPU(unbound, vcpu: 1) == 0)
        #expect(try events.bindVCPU(console, vcpu: 1) == 0)
        #expect(test.domain.state.withLock { [$0.events[unbound]?.notifyVCPU, $0.events[console]?.notifyVCPU] } == [1, 1])
        #expect(try events.bindVCPU(timer, vcpu: 1) == TestDomain.error(.EINVAL))
        #expect(try events.bindVCPU(ipi, vcpu: 1) == TestDomain.error(.EINVAL))
        #expect(try events.bindVCPU(100, vcpu: 1) == TestDomain.error(.EINVAL))
        #expect(try events.bindVCPU(unbound, vcpu: 2) == TestDomain.error(.ENOENT))
        test.call(.eventChannelOp, EventChannelOp.bindVCPU, TestDomain.unmapped - 4)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("FIFO and other unimplemented commands are -ENOSYS, so Linux falls back to 2-level", arguments: [
        EventChannelOp.initControl, EventChannelOp.expandArray, EventChannelOp.setPriority, EventChannelOp.reset, EventChannelOp.bindPIRQ, 99,
    ])
    func unknown(command: UInt64) throws {
        let test = try TestDomain()
        test.call(.eventChannelOp, command, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.ENOSYS))
    }
}

@Suite("event_channel_op: 2-level delivery")
struct EventDeliveryTests {
    @Test("send on an IPI sets pending, the selector bit and upcall_pending, and wakes the vCPU once")
    func sendIPI() throws {
        let test = try TestDomain()
        let events = EventChannelClient(test: test)
        let port = try events.bindIPI()
        #expect(try events.send(port) == 0)
        #expect(try events.pendingWord(0) == 1 << UInt64(port))
        #expect(try events.selector() == 1)
        #expect(try events.upcallPending() == 1)
        #expect(test.waker.wakes == 1)
        // Already pending: nothing changes, no second kick.
        #expect(try events.send(port) == 0)
        #expect(test.waker.wakes == 1)
    }

    @Test("An IPI for vCPU 1 is flagged in vCPU 1's vcpu_info only")
    func sendIPIOtherVCPU() throws {
        let test = try TestDomain(vcpus: 2)
        let events = EventChannelClient(test: test)
        let port = try events.bindIPI(vcpu: 1)
        #expect(try events.send(port) == 0)
        #expect(try events.selector(vcpu: 1) == 1 && events.upcallPending(vcpu: 1) == 1)
        #expect(try events.selector(vcpu: 0) == 0 && events.upcallPending(vcpu: 0) == 0)
        #expect(test.wakers[1].wakes == 1 && test.wakers[0].wakes == 0)
    }

    @Test("Ports map to word port/64, bit port%64, selector bit port/64", arguments: [UInt32(1), 63, 64, 130, 4095])
    func bitmapLayout(port: UInt32) throws {
        let test = try TestDomain()
        let events = EventChannelClient(test: test)
        test.domain.setPending(port: port, vcpu: 0)
        for word in 0..<64 {
            #expect(try events.pendingWord(word) == (word == Int(port / 64) ? 1 << UInt64(port % 64) : 0))
        }
        #expect(try events.selector() == 1 << UInt64(port / 64))
        #expect(test.domain.isPending(port: port))
        #expect(!test.domain.isPending(port: port ^ 1))
    }

    @Test("A masked port becomes pending without selector, upcall or wake; unmask re-raises it")
    func maskedThenUnmasked() throws {
        let test = try TestDomain()
        let events = EventChannelClient(test: test)
        let port = try events.bindIPI()
        try events.setMask(port)
        #expect(test.domain.isMasked(port: port))
        #expect(try events.send(port) == 0)
        #expect(try events.pendingWord(0) == 1 << UInt64(port))
        #expect(try events.selector() == 0 && events.upcallPending() == 0)
        #expect(test.waker.wakes == 0)
        #expect(try events.unmask(port) == 0)
        #expect(try events.maskWord(0) == 0)
        #expect(try events.selector() == 1 && events.upcallPending() == 1)
        #expect(test.waker.wakes == 1)
    }

    @Test("unmask of a port that is not pending only clears the mask")
    func unmaskIdle() throws {
        let test = try TestDomain()
        let events = EventChannelClient(test: test)
        let port = try events.bindIPI()
        try events.setMask(port)
        #expect(try events.unmask(port) == 0)
        #expect(try events.maskWord(0) == 0)
        #expect(try events.selector() == 0 && events.upcallPending() == 0)
        #expect(try events.unmask(3000) == TestDomain.error(.EINVAL))
    }

    @Test("A selector bit already set means no new upcall (the guest has not scanned that word yet)")
    func selectorAlreadySet() throws {
        let test = try TestDomain()
        let events = EventChannelClient(test: test)
        test.domain.setPending(port: 5, vcpu: 0)
        try test.memory.write(UInt8(0), at: test.vcpuInfoField(VCPUInfoLayout.upcallPending))
        test.domain.setPending(port: 6, vcpu: 0)
        #expect(try events.pendingWord(0) == 0b110_0000)
        #expect(try events.upcallPending() == 0)
        #expect(test.waker.wakes == 1)
    }

    @Test("A blocked vCPU is woken even when upcall_pending was already set")
    func wakeBlocked() throws {
        let test = try TestDomain()
        try test.memory.write(UInt8(1), at: test.vcpuInfoField(VCPUInfoLayout.upcallPending))
        test.vcpu.blocked.store(true, ordering: .releasing)
        test.domain.setPending(port: 9, vcpu: 0)
        #expect(test.waker.wakes == 1)
    }

    @Test("send on an interdomain loopback raises the other end")
    func sendInterdomain() throws {
        let test = try TestDomain()
        let events = EventChannelClient(test: test)
        let waiting = try events.allocUnbound(remote: DomainID.`self`)
        let local = try events.bindInterdomain(remote: DomainID.`self`, port: waiting)
        #expect(try events.send(local) == 0)
        #expect(try events.pendingWord(0) == 1 << UInt64(waiting))
        #expect(try events.send(waiting) == 0)
        #expect(try events.pendingWord(0) == 1 << UInt64(waiting) | 1 << UInt64(local))
    }

    @Test("close of one end of an interdomain channel returns the other end to unbound")
    func closeInterdomain() throws {
        let test = try TestDomain(id: 3)
        let events = EventChannelClient(test: test)
        let waiting = try events.allocUnbound(remote: DomainID.`self`)
        let local = try events.bindInterdomain(remote: DomainID.`self`, port: waiting)
        #expect(try events.close(local) == 0)
        #expect(ChannelState(events.channel(waiting)) == .unbound(3))
        #expect(try events.status(waiting) == (EventChannelStatus.unbound, 0, 3, 0))
        #expect(try events.send(waiting) == 0, "sending on an unbound port is dropped")
        #expect(try events.pendingWord(0) == 0)
    }

    @Test("send to a host endpoint calls the backend; from the host, notifyFromHost raises the guest's port")
    func hostEndpoint() throws {
        let test = try TestDomain()
        let events = EventChannelClient(test: test)
        let sends = Atomic<Int>(0)
        let port = try test.domain.bindHostEndpoint(HostEndpoint(name: "console") { sends.add(1, ordering: .relaxed) })
        #expect(ChannelState(events.channel(port)) == .host("console"))
        #expect(try events.send(port) == 0)
        #expect(sends.load(ordering: .relaxed) == 1)
        #expect(try events.pendingWord(0) == 0, "sending does not raise the guest's own port")
        test.domain.notifyFromHost(port: port)
        #expect(try events.pendingWord(0) == 1 << UInt64(port))
        test.domain.notifyFromHost(port: port + 1)   // not a host port: ignored
        #expect(try events.pendingWord(0) == 1 << UInt64(port))
    }

    @Test("send on an unbound port is dropped; on a VIRQ or free port it is -EINVAL")
    func sendInvalid() throws {
        let test = try TestDomain()
        let events = EventChannelClient(test: test)
        let unbound = try events.allocUnbound(remote: 0)
        let virq = try events.bindVIRQ(VIRQ.timer)
        #expect(try events.send(unbound) == 0)
        #expect(try events.pendingWord(0) == 0)
        #expect(try events.send(virq) == TestDomain.error(.EINVAL))
        #expect(try events.send(50) == TestDomain.error(.EINVAL))
        #expect(try events.send(0) == TestDomain.error(.EINVAL))
        test.call(.eventChannelOp, EventChannelOp.send, TestDomain.unmapped - 1)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("raiseVIRQ raises a bound VIRQ on its vCPU and ignores unbound ones")
    func raiseVIRQ() throws {
        let test = try TestDomain(vcpus: 2)
        let events = EventChannelClient(test: test)
        let timer1 = try events.bindVIRQ(VIRQ.timer, vcpu: 1)
        let console = try events.bindVIRQ(VIRQ.console)
        #expect(try events.bindVCPU(console, vcpu: 1) == 0)
        test.domain.raiseVIRQ(VIRQ.timer, vcpu: 0)
        #expect(try events.pendingWord(0) == 0)
        test.domain.raiseVIRQ(VIRQ.timer, vcpu: 1)
        #expect(try events.pendingWord(0) == 1 << UInt64(timer1))
        test.domain.raiseVIRQ(VIRQ.console, vcpu: 0)
        #expect(try events.pendingWord(0) == 1 << UInt64(timer1) | 1 << UInt64(console))
        #expect(try events.upcallPending(vcpu: 1) == 1 && events.upcallPending(vcpu: 0) == 0,
                "a global VIRQ goes to the vCPU its port is bound to")
    }

    @Test("Delivery never faults the host when shared_info is unreachable")
    func unreachableSharedInfo() throws {
        let test = try TestDomain()
        test.domain.setPending(port: 4096, vcpu: 0)
        test.domain.setPending(port: 1, vcpu: 5)
        #expect(!test.domain.isPending(port: 4096))
        #expect(test.domain.isMasked(port: 4096))
    }
}

@Suite("event_channel_op: pollers")
struct EventChannelPollerTests {
    @Test("A vCPU blocked in SCHEDOP_poll is woken when a masked port becomes pending (evtchn_check_pollers)")
    func wakePollerOnMaskedPort() throws {
        let test = try TestDomain()
        let events = EventChannelClient(test: test)
        try events.setMask(9)
        test.vcpu.blocked.store(true, ordering: .releasing)
        test.domain.setPending(port: 9, vcpu: 0)
        #expect(test.waker.wakes == 1)
        #expect(try events.upcallPending() == 0)
    }

    @Test("... and when the port's selector bit is already set")
    func wakePollerOnSetSelector() throws {
        let test = try TestDomain()
        test.domain.setPending(port: 5, vcpu: 0)
        test.vcpu.blocked.store(true, ordering: .releasing)
        test.domain.setPending(port: 6, vcpu: 0)
        #expect(test.waker.wakes == 2)
    }
}
