// The xenstored role (Backends/XenStoreService.swift): a guest's xenstore ring
// (struct xenstore_domain_interface of public/io/xs_wire.h) served through its event
// channel, the toolstack's in-process calls, and local clients.

import Backends
import GuestMemory
import Hypervisor
import Testing
import XenABI
import XenStore

/// The guest's side of the xenstore ring, as Linux's xenbus_comms.c drives it.
final class XenStoreGuest {
    let test: BackendDomain
    let service: XenStoreService
    let port: UInt32
    private var decoder = XenStoreMessageDecoder()

    static let uuid = "6f3c2a8e-1d4b-4c6a-9e7f-0123456789ab"

    /// Attaches `test`'s domain with its ring in frame `BackendDomain.storeRingPFN`, indices
    /// starting at `start`, and writes its /local/domain/N layout as the toolstack does.
    init(test: BackendDomain, service: XenStoreService, start: UInt32 = 0, layout: Bool = true) throws {
        self.test = test
        self.service = service
        for offset in [XenStoreRing.requestConsumerOffset, XenStoreRing.requestProducerOffset,
                       XenStoreRing.responseConsumerOffset, XenStoreRing.responseProducerOffset] {
            try test.memory.write(start, at: BackendDomain.address(BackendDomain.storeRingPFN, offset))
        }
        port = try service.attach(test.domain, ring: BackendDomain.address(BackendDomain.storeRingPFN))
        if layout {
            try service.writeDomainLayout(test.domain, name: "guest\(test.domain.id)", uuid: Self.uuid, memoryKiB: 262_144,
                                          maxMemoryKiB: 524_288, consoleRing: BackendDomain.consoleRingPFN, consolePort: 7,
                                          storeRing: BackendDomain.storeRingPFN, storePort: port)
        }
    }

    func address(_ offset: Int) -> GuestPhysicalAddress { BackendDomain.address(BackendDomain.storeRingPFN, offset) }
    func index(_ offset: Int) throws -> UInt32 { try test.memory.read(UInt32.self, at: address(offset)) }
    func setIndex(_ offset: Int, _ value: UInt32) throws { try test.memory.write(value, at: address(offset)) }

    var requestConsumer: UInt32 { get throws { try index(XenStoreRing.requestConsumerOffset) } }
    var requestProducer: UInt32 { get throws { try index(XenStoreRing.requestProducerOffset) } }
    var responseConsumer: UInt32 { get throws { try index(XenStoreRing.responseConsumerOffset) } }
    var responseProducer: UInt32 { get throws { try index(XenStoreRing.responseProducerOffset) } }
    var ringError: UInt32 { get throws { try index(XenStoreRing.errorOffset) } }

    /// xb_write: bytes at req[MASK(prod)], then req_prod advanced. No notification.
    func writeRequestBytes(_ bytes: [UInt8]) throws {
        var producer = try requestProducer
        for byte in bytes {
            try test.memory.write(byte, at: address(XenStoreRing.requestOffset + Int(producer & 1023)))
            producer &+= 1
        }
        try setIndex(XenStoreRing.requestProducerOffset, producer)
    }

    /// Queues `message` and notifies the store.
    func request(_ message: XenStoreMessage) throws {
        try writeRequestBytes(message.encoded())
        try kick()
    }

    /// EVTCHNOP_send on the store's port.
    func kick() throws {
        #expect(try test.send(port: port) == 0)
    }

    /// xb_read: every response byte the store produced, decoded, with rsp_cons advanced.
    func responses() throws -> [XenStoreMessage] {
        let consumer = try responseConsumer
        let producer = try responseProducer
        let count = Int(producer &- consumer)
        #expect(count <= 1024)
        let bytes = try (0..<count).map {
            try test.memory.read(UInt8.self, at: address(XenStoreRing.responseOffset + Int((consumer &+ UInt32($0)) & 1023)))
        }
        try setIndex(XenStoreRing.responseConsumerOffset, producer)
        return try decoder.decodeAll(bytes)
    }
}

/// "a", "b" → "a\0b\0".
func strings(_ parts: String...) -> [UInt8] { parts.flatMap { Array($0.utf8) + [0] } }
func bytes(_ string: String) -> [UInt8] { Array(string.utf8) }

func reply(_ type: XenStoreMessageType, _ requestID: UInt32, _ payload: [UInt8], transaction: UInt32 = 0) -> XenStoreMessage {
    XenStoreMessage(type: type, requestID: requestID, transactionID: transaction, payload: payload)
}

func watchEvent(_ path: String, _ token: String) -> XenStoreMessage {
    XenStoreMessage(type: .watchEvent, payload: strings(path, token))
}

/// A service, one guest domain attached to it, and its ring.
func makeGuest(id: UInt16 = 1, start: UInt32 = 0) throws -> (BackendDomain, XenStoreService, XenStoreGuest) {
    let test = try BackendDomain(id: id)
    let service = XenStoreService(log: test.log)
    let guest = try XenStoreGuest(test: test, service: service, start: start)
    return (test, service, guest)
}

@Suite("XenStoreService: a guest's ring")
struct XenStoreRingServiceTests {
    @Test("attach binds a host event channel, introduces the domain and writes nothing yet")
    func attach() throws {
        let test = try BackendDomain()
        let service = XenStoreService(log: test.log)
        let local = Collector<XenStoreMessage>()
        let watcher = service.connectLocal(privileged: true) { local.append($0) }
        service.handle(XenStoreMessage(type: .watch, requestID: 1, strings: ["@introduceDomain", "intro"]), from: watcher)
        #expect(local.take() == [reply(.watch, 1, strings("OK")), watchEvent("@introduceDomain", "intro")])
        let guest = try XenStoreGuest(test: test, service: service, layout: false)
        #expect(guest.port == 1)
        let state = test.domain.state.withLock { $0.events[guest.port]?.state }
        guard case let .host(endpoint) = state else {
            Issue.record("port \(guest.port) is \(String(describing: state))")
            return
        }
        #expect(endpoint.name == "xenstore")
        #expect(local.take() == [watchEvent("@introduceDomain", "intro")])
        #expect(try guest.responseProducer == 0)
        #expect(!test.isPending(guest.port))
        #expect(try service.read { store throws(XenStoreError) in store.isDomainIntroduced(1) })
    }

    @Test("READ of the domain's name after writeDomainLayout: the reply carries the req_id, and the guest is notified")
    func readName() throws {
        let (test, _, guest) = try makeGuest()
        try guest.request(XenStoreMessage(type: .read, requestID: 0x1234, strings: ["/local/domain/1/name"]))
        #expect(try guest.responses() == [reply(.read, 0x1234, bytes("guest1"))])
        #expect(try guest.requestConsumer == 16 + 21)
        #expect(test.isPending(guest.port))
        #expect(try test.upcallPending() == 1)
    }

    @Test("Several requests in one notification are answered in order")
    func severalRequests() throws {
        let (_, _, guest) = try makeGuest()
        try guest.writeRequestBytes(XenStoreMessage(type: .read, requestID: 1, strings: ["domid"]).encoded())
        try guest.writeRequestBytes(XenStoreMessage(type: .getDomainPath, requestID: 2, strings: ["1"]).encoded())
        try guest.writeRequestBytes(XenStoreMessage(type: .read, requestID: 3, strings: ["/local/domain/1/memory/target"]).encoded())
        try guest.writeRequestBytes(XenStoreMessage(type: .read, requestID: 4, strings: ["store/port"]).encoded())
        try guest.kick()
        #expect(try guest.responses() == [
            reply(.read, 1, bytes("1")), reply(.getDomainPath, 2, strings("/local/domain/1")),
            reply(.read, 3, bytes("262144")), reply(.read, 4, bytes("\(guest.port)")),
        ])
    }

    @Test("WRITE into data/ succeeds and the toolstack sees it; the domain's own name is read-only to it")
    func write() throws {
        let (_, service, guest) = try makeGuest()
        try guest.request(XenStoreMessage(type: .write, requestID: 5, payload: strings("data/answer") + bytes("42")))
        try guest.request(XenStoreMessage(type: .write, requestID: 6, payload: strings("/local/domain/1/data/path") + bytes("x")))
        try guest.request(XenStoreMessage(type: .write, requestID: 7, payload: strings("/local/domain/1/name") + bytes("evil")))
        #expect(try guest.responses() == [reply(.write, 5, strings("OK")), reply(.write, 6, strings("OK")), reply(.error, 7, strings("EACCES"))])
        #expect(try service.read { store throws(XenStoreError) in try store.readString("/local/domain/1/data/answer") } == "42")
        #expect(try service.read { store throws(XenStoreError) in try store.readString("/local/domain/1/data/path") } == "x")
        #expect(try service.read { store throws(XenStoreError) in try store.readString("/local/domain/1/name") } == "guest1")
    }

    @Test("A domU may not read /local/domain; a missing node is ENOENT")
    func errors() throws {
        let (_, _, guest) = try makeGuest()
        try guest.request(XenStoreMessage(type: .read, requestID: 8, strings: ["/local/domain"]))
        try guest.request(XenStoreMessage(type: .directory, requestID: 9, strings: ["/local/domain"]))
        try guest.request(XenStoreMessage(type: .read, requestID: 10, strings: ["/local/domain/1/data/missing"]))
        try guest.request(XenStoreMessage(type: .read, requestID: 11, strings: ["/local/domain/1/device/vbd"]))
        #expect(try guest.responses() == [
            reply(.error, 8, strings("EACCES")), reply(.error, 9, strings("EACCES")),
            reply(.error, 10, strings("ENOENT")), reply(.error, 11, strings("ENOENT")),
        ])
    }

    @Test("WATCH answers OK, then fires at once; a toolstack write fires it again and notifies the guest")
    func watch() throws {
        let (test, service, guest) = try makeGuest()
        try guest.request(XenStoreMessage(type: .watch, requestID: 20, strings: ["/local/domain/1/data/w", "token-a"]))
        try guest.request(XenStoreMessage(type: .watch, requestID: 21, strings: ["data/r", "token-b"]))
        #expect(try guest.responses() == [
            reply(.watch, 20, strings("OK")), watchEvent("/local/domain/1/data/w", "token-a"),
            reply(.watch, 21, strings("OK")), watchEvent("data/r", "token-b"),
        ])
        try test.clearPending()
        try service.write("/local/domain/1/data/w/child", "1")
        #expect(try guest.responses() == [watchEvent("/local/domain/1/data/w/child", "token-a")])
        #expect(test.isPending(guest.port))
        try test.clearPending()
        try service.write("/local/domain/1/data/r", "2")
        #expect(try guest.responses() == [watchEvent("data/r", "token-b")])
        #expect(test.isPending(guest.port))
        // Writes elsewhere fire nothing and do not notify.
        try test.clearPending()
        try service.write("/local/domain/1/data/other", "3")
        #expect(try guest.responses() == [])
        #expect(!test.isPending(guest.port))
    }

    /// xenstored's do_write calls fire_watches before send_ack, so the writer's own
    /// event comes first; xenbus tells them apart by type.
    @Test("The guest's own write fires its own watch, the event ahead of the reply")
    func ownWrite() throws {
        let (_, _, guest) = try makeGuest()
        try guest.request(XenStoreMessage(type: .watch, requestID: 1, strings: ["data", "t"]))
        _ = try guest.responses()
        try guest.request(XenStoreMessage(type: .write, requestID: 2, payload: strings("data/k") + bytes("v")))
        #expect(try guest.responses() == [watchEvent("data/k", "t"), reply(.write, 2, strings("OK"))])
    }

    @Test("A message split across two notifications is assembled", arguments: [5, 16, 20, 35])
    func split(at cut: Int) throws {
        let (test, _, guest) = try makeGuest()
        let message = XenStoreMessage(type: .read, requestID: 77, strings: ["/local/domain/1/name"])
        let encoded = message.encoded()
        #expect(encoded.count == 37)
        try guest.writeRequestBytes(Array(encoded.prefix(cut)))
        try guest.kick()
        #expect(try guest.responses() == [])
        #expect(try guest.requestConsumer == UInt32(cut), "the partial message is taken off the ring")
        #expect(!test.isPending(guest.port))
        try guest.writeRequestBytes(Array(encoded.dropFirst(cut)))
        try guest.kick()
        #expect(try guest.responses() == [reply(.read, 77, bytes("guest1"))])
        #expect(try guest.requestConsumer == 37)
    }

    @Test("Requests and replies across the rings' ends and across 2^32", arguments: [UInt32(1000), 0xffff_fff0, 0xffff_fc10])
    func wrapAround(start: UInt32) throws {
        let (_, _, guest) = try makeGuest(start: start)
        for round in 0..<60 {
            let id = UInt32(round)
            try guest.request(XenStoreMessage(type: .write, requestID: id, payload: strings("data/k\(round % 3)") + bytes("value-\(round)")))
            try guest.request(XenStoreMessage(type: .read, requestID: 1000 + id, strings: ["data/k\(round % 3)"]))
            #expect(try guest.responses() == [reply(.write, id, strings("OK")), reply(.read, 1000 + id, bytes("value-\(round)"))])
        }
        #expect(try guest.requestConsumer == guest.requestProducer)
        #expect(try guest.requestConsumer &- start > 2048, "both rings went round more than once")
        #expect(try guest.responseProducer &- start > 2048)
    }

    @Test("Replies wait for ring space the guest frees, and go out on its next notification")
    func responseBackPressure() throws {
        let (test, service, guest) = try makeGuest()
        let big = String(repeating: "z", count: 1000)
        try service.write("/local/domain/1/data/big", big)
        for id: UInt32 in 1...3 {
            try guest.writeRequestBytes(XenStoreMessage(type: .read, requestID: id, strings: ["data/big"]).encoded())
        }
        try guest.kick()
        // Three replies of 16 + 1000 bytes; the ring holds 1024.
        #expect(try guest.responseProducer == 1024)
        #expect(try guest.responseConsumer == 0)
        var received = try guest.responses()
        #expect(received == [reply(.read, 1, bytes(big))])
        try test.clearPending()
        try guest.kick()
        received += try guest.responses()
        try guest.kick()
        received += try guest.responses()
        #expect(received == (1...3).map { reply(.read, $0, bytes(big)) })
        #expect(try guest.responseProducer == 3 * 1016)
        #expect(test.isPending(guest.port))
    }

    @Test("A request producer more than 1024 ahead breaks the ring: error field set, never served again")
    func brokenRequestRing() throws {
        let (test, service, guest) = try makeGuest()
        try guest.setIndex(XenStoreRing.requestProducerOffset, 1025)
        try guest.kick()
        #expect(try guest.ringError == XenStoreRing.errorRingIndex)
        #expect(try guest.responseProducer == 0)
        #expect(try guest.requestConsumer == 0)
        #expect(!test.isPending(guest.port))
        #expect(test.logged("d1: xenstore ring broken"))
        // Sane indices and a good request: still nothing.
        try guest.setIndex(XenStoreRing.requestProducerOffset, 0)
        try guest.request(XenStoreMessage(type: .read, requestID: 1, strings: ["name"]))
        #expect(try guest.responseProducer == 0)
        #expect(try guest.requestConsumer == 0)
        // Nor do watch events reach it.
        try service.write("/local/domain/1/data/x", "1")
        #expect(try guest.responseProducer == 0)
    }

    @Test("A broken ring of one domain does not stop the service for another")
    func brokenRingIsolation() throws {
        let first = try BackendDomain(id: 1)
        let second = try BackendDomain(id: 2)
        let service = XenStoreService(log: first.log)
        let guest1 = try XenStoreGuest(test: first, service: service)
        let guest2 = try XenStoreGuest(test: second, service: service)
        try guest1.setIndex(XenStoreRing.requestProducerOffset, 0x8000_0000)
        try guest1.kick()
        #expect(try guest1.ringError == XenStoreRing.errorRingIndex)
        try guest2.request(XenStoreMessage(type: .read, requestID: 4, strings: ["name"]))
        #expect(try guest2.responses() == [reply(.read, 4, bytes("guest2"))])
        #expect(try guest2.ringError == 0)
    }

    @Test("A header announcing more than 4096 payload bytes is a protocol error")
    func oversizedPayload() throws {
        let (_, _, guest) = try makeGuest()
        let header = XenStoreMessage(type: .write, requestID: 1).encoded()
        try guest.writeRequestBytes(Array(header.prefix(12)) + [0x01, 0x10, 0, 0])   // len 4097
        try guest.kick()
        #expect(try guest.ringError == XenStoreRing.errorProtocol)
        #expect(try guest.responseProducer == 0)
        try guest.request(XenStoreMessage(type: .read, requestID: 2, strings: ["name"]))
        #expect(try guest.responseProducer == 0)
    }

    @Test("A response consumer the guest moved past the producer breaks the ring")
    func brokenResponseRing() throws {
        let (test, _, guest) = try makeGuest()
        try guest.setIndex(XenStoreRing.responseConsumerOffset, 0xffff_f000)
        try guest.request(XenStoreMessage(type: .read, requestID: 1, strings: ["name"]))
        #expect(try guest.ringError == XenStoreRing.errorRingIndex)
        #expect(try guest.responseProducer == 0)
        #expect(!test.isPending(guest.port))
        #expect(test.logged("d1: xenstore response ring broken"))
    }

    @Test("detach releases the domain: @releaseDomain fires for a local watcher, its nodes go, its ring is no longer served")
    func detach() throws {
        let (test, service, guest) = try makeGuest()
        let local = Collector<XenStoreMessage>()
        let watcher = service.connectLocal(privileged: true) { local.append($0) }
        service.handle(XenStoreMessage(type: .watch, requestID: 1, strings: ["@releaseDomain", "rel"]), from: watcher)
        #expect(local.take() == [reply(.watch, 1, strings("OK")), watchEvent("@releaseDomain", "rel")])
        try guest.request(XenStoreMessage(type: .write, requestID: 2, payload: strings("data/mine") + bytes("1")))
        try guest.request(XenStoreMessage(type: .watch, requestID: 3, strings: ["data", "t"]))
        _ = try guest.responses()

        service.detach(domainID: 1)
        #expect(local.take() == [watchEvent("@releaseDomain", "rel")])
        #expect(try !service.read { store throws(XenStoreError) in store.isDomainIntroduced(1) })
        #expect(try !service.read { store throws(XenStoreError) in store.exists("/local/domain/1/data") })
        #expect(try !service.read { store throws(XenStoreError) in store.exists("/local/domain/1/data/mine") })
        // Nothing reaches its ring any more: no replies, no watch events.
        try test.clearPending()
        try guest.request(XenStoreMessage(type: .read, requestID: 4, strings: ["name"]))
        try service.write("/local/domain/1/data/again", "x")
        #expect(try guest.responses() == [])
        #expect(!test.isPending(guest.port))
        // Detaching again is harmless, and fires nothing.
        service.detach(domainID: 1)
        #expect(local.all.isEmpty)
    }
}

@Suite("XenStoreService: the toolstack and local clients")
struct XenStoreLocalTests {
    @Test("A local client gets its replies and watch events through its sink")
    func localClient() throws {
        let (_, service, guest) = try makeGuest()
        let sink = Collector<XenStoreMessage>()
        let client = service.connectLocal(privileged: true) { sink.append($0) }
        service.handle(XenStoreMessage(type: .read, requestID: 9, strings: ["/local/domain/1/name"]), from: client)
        service.handle(XenStoreMessage(type: .directory, requestID: 10, strings: ["/local/domain"]), from: client)
        service.handle(XenStoreMessage(type: .watch, requestID: 11, strings: ["/local/domain/1/data", "w"]), from: client)
        #expect(sink.take() == [
            reply(.read, 9, bytes("guest1")), reply(.directory, 10, strings("1")),
            reply(.watch, 11, strings("OK")), watchEvent("/local/domain/1/data", "w"),
        ])
        // The guest's write fires the local client's watch; the guest gets its reply.
        try guest.request(XenStoreMessage(type: .write, requestID: 1, payload: strings("data/from-guest") + bytes("hi")))
        #expect(try guest.responses() == [reply(.write, 1, strings("OK"))])
        #expect(sink.take() == [watchEvent("/local/domain/1/data/from-guest", "w")])
        // After disconnecting, nothing more.
        service.disconnectLocal(client)
        try service.write("/local/domain/1/data/later", "1")
        service.handle(XenStoreMessage(type: .read, requestID: 12, strings: ["/local/domain/1/name"]), from: client)
        #expect(sink.all.isEmpty)
    }

    @Test("An unprivileged local client has its domain's rights")
    func unprivilegedLocal() throws {
        let (_, service, _) = try makeGuest()
        let sink = Collector<XenStoreMessage>()
        let client = service.connectLocal(domain: 5, privileged: false) { sink.append($0) }
        service.handle(XenStoreMessage(type: .read, requestID: 1, strings: ["/local/domain/1/name"]), from: client)
        service.handle(XenStoreMessage(type: .introduce, requestID: 2, strings: ["9", "100", "3"]), from: client)
        #expect(sink.take() == [reply(.error, 1, strings("EACCES")), reply(.error, 2, strings("EACCES"))])
    }

    @Test("writeDomainLayout writes the nodes libxl writes, with the guest's rights")
    func domainLayout() throws {
        let (test, service, guest) = try makeGuest()
        let values = try service.read { store throws(XenStoreError) -> [String: String] in
            var values: [String: String] = [:]
            for key in ["name", "domid", "vm", "memory/static-max", "memory/target", "memory/videoram", "store/port", "store/ring-ref",
                        "console/port", "console/ring-ref", "console/type", "console/limit", "cpu/0/availability"] {
                values[key] = try store.readString("/local/domain/1/\(key)")
            }
            values["/vm/name"] = try store.readString("/vm/\(XenStoreGuest.uuid)/name")
            return values
        }
        #expect(values == [
            "name": "guest1", "domid": "1", "vm": "/vm/\(XenStoreGuest.uuid)", "memory/static-max": "524288",
            "memory/target": "262144", "memory/videoram": "-1", "store/port": "\(guest.port)", "store/ring-ref": "17",
            "console/port": "7", "console/ring-ref": "16", "console/type": "xenconsoled", "console/limit": "1048576",
            "cpu/0/availability": "online", "/vm/name": "guest1",
        ])
        #expect(test.domain.vcpus.count == 1)
        let home = try service.read { store throws(XenStoreError) in try store.permissions("/local/domain/1") }
        #expect(home == XenStorePermissions(owner: 0, entries: [XenStorePermission(domain: 1, access: .read)]))
        for directory in ["control", "data", "drivers", "feature", "attr", "error", "memory"] {
            let permissions = try service.read { store throws(XenStoreError) in try store.permissions("/local/domain/1/\(directory)") }
            #expect(permissions == XenStorePermissions(owner: 1), "\(directory)")
        }
        let device = try service.read { store throws(XenStoreError) in try store.permissions("/local/domain/1/device") }
        #expect(device == XenStorePermissions(owner: 0, entries: [XenStorePermission(domain: 1, access: .read)]))
        // The guest may write where libxl lets it, and not elsewhere.
        try guest.request(XenStoreMessage(type: .write, requestID: 1, payload: strings("control/feature-poweroff") + bytes("1")))
        try guest.request(XenStoreMessage(type: .write, requestID: 2, payload: strings("device/vif") + bytes("1")))
        try guest.request(XenStoreMessage(type: .mkdir, requestID: 3, strings: ["cpu/1"]))
        #expect(try guest.responses() == [reply(.write, 1, strings("OK")), reply(.error, 2, strings("EACCES")), reply(.error, 3, strings("EACCES"))])
    }
}
