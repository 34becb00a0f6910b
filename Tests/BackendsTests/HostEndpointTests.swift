// The event-channel host endpoints the backends bind (Hypervisor/Events/EventChannels.swift:
// bindHostEndpoint, notifyFromHost), seen from the guest through event_channel_op.

import Backends
import GuestMemory
import Hypervisor
import Synchronization
import Testing
import XenABI
import XenStore

extension BackendDomain {
    /// event_channel_op `command` with `bytes` as its argument struct; returns the result
    /// and the struct as the hypervisor left it.
    func eventChannelOp(_ command: UInt64, _ bytes: [UInt8]) throws -> (result: Int64, bytes: [UInt8]) {
        try memory.writeBytes(bytes, at: Self.address(Self.argumentPFN))
        let result = call(.eventChannelOp, command, Self.va(Self.argumentPFN))
        return (result, try memory.readBytes(at: Self.address(Self.argumentPFN), count: bytes.count))
    }

    func setMask(_ port: UInt32, _ masked: Bool) throws {
        let word = GuestPhysicalAddress(layout.sharedInfo.rawValue + UInt64(SharedInfoLayout.evtchnMask) + UInt64(port / 64) * 8)
        let bit: UInt64 = 1 << UInt64(port % 64)
        let value: UInt64 = try memory.read(at: word)
        try memory.write(masked ? value | bit : value & ~bit, at: word)
    }

    func selector(vcpu: Int) throws -> UInt64 {
        try memory.read(UInt64.self, at: Self.field(domain.vcpus[vcpu], VCPUInfoLayout.pendingSel))
    }
}

private func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
}

private func le32(_ bytes: [UInt8], at offset: Int) -> UInt32 {
    (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * $1) }
}

@Suite("Host endpoints as the guest sees them")
struct HostEndpointTests {
    @Test("The console and xenstore ports are interdomain channels to domain 0 in EVTCHNOP_status")
    func status() throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        let service = XenStoreService(log: test.log)
        let store = try XenStoreGuest(test: test, service: service, layout: false)
        #expect(console.backend.port == 1)
        #expect(store.port == 2)
        for port in [console.backend.port, store.port] {
            let (result, bytes) = try test.eventChannelOp(EventChannelOp.status, le(DomainID.`self`) + le(UInt16(0)) + le(port) + [UInt8](repeating: 0xff, count: 16))
            #expect(result == 0)
            #expect(le32(bytes, at: 8) == EventChannelStatus.interdomain)
            #expect(le32(bytes, at: 12) == 0, "notified on vCPU 0")
            #expect(le32(bytes, at: 16) & 0xffff == 0, "remote domain 0")
        }
    }

    @Test("A notification on a masked port stays pending without an upcall until the guest unmasks it")
    func masked() throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        let port = console.backend.port
        try test.setMask(port, true)
        #expect(console.backend.send(Array("k".utf8)) == 1)
        #expect(test.isPending(port))
        #expect(try test.upcallPending() == 0)
        #expect(try test.selector(vcpu: 0) == 0)
        #expect(try test.eventChannelOp(EventChannelOp.unmask, le(port)).result == 0)
        #expect(try test.upcallPending() == 1)
        #expect(try test.selector(vcpu: 0) == 1)
    }

    @Test("EVTCHNOP_bind_vcpu moves a backend's notifications to another vCPU")
    func bindVCPU() throws {
        let test = try BackendDomain(vcpus: 2)
        let console = try ConsoleRing(test: test)
        let port = console.backend.port
        #expect(try test.eventChannelOp(EventChannelOp.bindVCPU, le(port) + le(UInt32(1))).result == 0)
        #expect(console.backend.send(Array("k".utf8)) == 1)
        #expect(test.isPending(port))
        #expect(try test.upcallPending(vcpu: 0) == 0)
        #expect(try test.upcallPending(vcpu: 1) == 1)
        #expect(try test.selector(vcpu: 1) == 1)
    }

    @Test("Once the guest closes a backend's port, the backend no longer signals it, nor a port reusing its number")
    func closedPort() throws {
        let test = try BackendDomain()
        let console = try ConsoleRing(test: test)
        let port = console.backend.port
        #expect(try test.eventChannelOp(EventChannelOp.close, le(port)).result == 0)
        #expect(test.domain.state.withLock { $0.events[port]?.state.isFree } == true)
        #expect(console.backend.send(Array("k".utf8)) == 1, "the ring still takes the bytes")
        #expect(!test.isPending(port))
        // The guest's send on the closed port is refused and does not reach the backend.
        try console.guestWrite(Array("out".utf8))
        #expect(try test.send(port: port) == -Int64(XenError.EINVAL.rawValue))
        #expect(console.output.all.isEmpty)
        // The number is reused for an IPI: the backend's notifications still go nowhere.
        let (result, bytes) = try test.eventChannelOp(EventChannelOp.bindIPI, le(UInt32(0)) + le(UInt32(0)))
        #expect(result == 0)
        #expect(le32(bytes, at: 4) == port)
        #expect(console.backend.send(Array("k".utf8)) == 1)
        #expect(!test.isPending(port))
    }
}
