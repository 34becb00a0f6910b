// Hostile input: every malformed request gets an XS_ERROR reply, never a trap.

import Testing
@testable import XenStore

@Suite struct MalformedTests {
    @Test func unknownAndReplyOnlyTypesAreENOSYS() {
        var harness = Harness()
        let guest = harness.connect(3)
        for raw: UInt32 in [0, 15, 16, 20, 23, 24, 27, 0xFFFF, .max] {
            let output = harness.store.handle(XenStoreMessage(typeRawValue: raw, requestID: 5, payload: [0]), from: guest)
            let reply = reply(in: output, for: guest)
            #expect(reply.errorName == "ENOSYS", "type \(raw)")
            #expect(reply.requestID == 5)
        }
    }

    @Test func privilegedTypesFromGuestsAreEACCES() {
        var harness = Harness()
        let guest = harness.connect(3)
        let cases: [(XenStoreMessageType, [String])] = [
            (.introduce, ["4", "1", "1"]), (.release, ["4"]), (.isDomainIntroduced, ["4"]), (.resume, ["4"]),
            (.setTarget, ["4", "5"]), (.getQuota, []), (.setQuota, ["nodes", "1"]),
        ]
        for (type, arguments) in cases {
            #expect(harness.request(type, arguments, from: guest).errorName == "EACCES", "\(type.name)")
        }
    }

    @Test func missingNulTerminators() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        for type: XenStoreMessageType in [.read, .directory, .mkdir, .rm, .getPerms, .getDomainPath] {
            let output = harness.send(type, payload: Array("/tool".utf8), from: dom0)
            #expect(reply(in: output, for: dom0).errorName == "EINVAL", "\(type.name)")
            #expect(reply(in: harness.send(type, payload: [], from: dom0), for: dom0).errorName == "EINVAL")
        }
        #expect(reply(in: harness.send(.write, payload: Array("/x".utf8), from: dom0), for: dom0).errorName == "EINVAL")
        #expect(reply(in: harness.send(.watch, payload: Array("/x\0tok".utf8), from: dom0), for: dom0).errorName == "EINVAL")
        #expect(reply(in: harness.send(.transactionEnd, payload: Array("T".utf8), from: dom0), for: dom0).errorName
            == "EINVAL")
    }

    @Test func wrongArgumentCounts() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let cases: [(XenStoreMessageType, [String])] = [
            (.read, ["/a", "/b"]), (.mkdir, ["/a", "b"]), (.rm, []), (.watch, ["/a"]), (.watch, []),
            (.unwatch, ["/a"]), (.setPerms, ["/tool"]), (.setPerms, []), (.directoryPart, ["/tool"]),
            (.directoryPart, ["/tool", "0", "x"]), (.introduce, ["4", "1"]), (.release, []), (.release, ["4", "5"]),
            (.getDomainPath, ["1", "2"]), (.isDomainIntroduced, []), (.setTarget, ["1"]),
            (.setQuota, ["nodes"]), (.getQuota, ["1", "nodes", "x"]), (.transactionEnd, []),
        ]
        for (type, arguments) in cases {
            #expect(harness.request(type, arguments, from: dom0).errorName == "EINVAL", "\(type.name) \(arguments)")
        }
    }

    @Test func badPathsAndNumbers() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        #expect(harness.read("", from: dom0) == "!EINVAL")
        #expect(harness.read("/a//b", from: dom0) == "!EINVAL")
        #expect(harness.read("@releaseDomain", from: dom0) == "!EINVAL")
        #expect(harness.write("@releaseDomain", "x", from: dom0) == "EINVAL")
        #expect(harness.read("/bad char", from: dom0) == "!EINVAL")
        #expect(harness.request(.directoryPart, ["/tool", "-1"], from: dom0).errorName == "EINVAL")
        #expect(harness.request(.introduce, ["4", "1", "0"], from: dom0).errorName == "EINVAL")
        #expect(harness.request(.introduce, ["4", "1", "x"], from: dom0).errorName == "EINVAL")
        #expect(harness.request(.introduce, ["99999", "1", "1"], from: dom0).errorName == "EINVAL")
        #expect(harness.request(.introduce, ["32752", "1", "1"], from: dom0).errorName == "EINVAL")
        #expect(harness.request(.release, ["abc"], from: dom0).errorName == "EINVAL")
    }

    @Test func oversizedPayloadHandedInDirectlyIsE2BIG() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let message = XenStoreMessage(type: .write, payload: Array("/x\0".utf8) + [UInt8](repeating: 1, count: 4096))
        #expect(reply(in: harness.store.handle(message, from: dom0), for: dom0).errorName == "E2BIG")
    }

    @Test func unknownConnectionGetsNothing() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        harness.store.disconnect(dom0)
        #expect(harness.send(.read, ["/"], from: dom0).messages.isEmpty)
    }

    @Test func randomGarbageNeverTraps() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let guest = harness.connect(9)
        var generator = SplitMix64(seed: 0x5EED)
        let alphabet = Array("/a-_@0\0rwbnTF1".utf8)
        for _ in 0..<4000 {
            let type = UInt32(generator.next() % 28)
            let length = Int(generator.next() % 24)
            let payload = (0..<length).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
            let transaction = UInt32(generator.next() % 3)
            let sender = generator.next() % 2 == 0 ? dom0 : guest
            let message = XenStoreMessage(typeRawValue: type, requestID: 1, transactionID: transaction, payload: payload)
            let output = harness.store.handle(message, from: sender)
            #expect(output.messages(for: sender).filter { $0.type != .watchEvent }.count == 1)
        }
    }
}

/// A small deterministic generator for the fuzz test.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
