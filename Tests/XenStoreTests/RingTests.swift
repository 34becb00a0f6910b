// The shared ring codec against an in-memory interface page.

import Testing
@testable import XenStore

@Suite struct RingTests {
    @Test func layoutMatchesXsWire() {
        #expect(XenStoreRing.responseOffset == 1024)
        #expect(XenStoreRing.requestConsumerOffset == 2048)
        #expect(XenStoreRing.responseProducerOffset == 2060)
        #expect(XenStoreRing.eventChannelPortOffset == 2076)
        #expect(XenStoreRing.interfaceSize == 2080)
    }

    @Test func readsRequestsAndAdvancesConsumer() throws {
        var memory = FakeRingMemory()
        memory.guestProduce([1, 2, 3])
        #expect(try XenStoreRing.readRequests(from: &memory) == [1, 2, 3])
        #expect(memory.load32(at: XenStoreRing.requestConsumerOffset) == 3)
        #expect(try XenStoreRing.readRequests(from: &memory).isEmpty)
    }

    @Test func requestWrapAround() throws {
        var memory = FakeRingMemory()
        memory.store32(1020, at: XenStoreRing.requestConsumerOffset)
        memory.store32(1020, at: XenStoreRing.requestProducerOffset)
        let data = (0..<10).map { UInt8($0 + 100) }
        memory.guestProduce(data)
        #expect(try XenStoreRing.readRequests(from: &memory) == data)
        #expect(memory.load32(at: XenStoreRing.requestConsumerOffset) == 1030)
    }

    @Test func indexesWrapAt32Bits() throws {
        var memory = FakeRingMemory()
        memory.store32(UInt32.max - 1, at: XenStoreRing.requestConsumerOffset)
        memory.store32(UInt32.max - 1, at: XenStoreRing.requestProducerOffset)
        memory.guestProduce([7, 8, 9, 10])
        #expect(memory.load32(at: XenStoreRing.requestProducerOffset) == 2)
        #expect(try XenStoreRing.readRequests(from: &memory) == [7, 8, 9, 10])
        #expect(memory.load32(at: XenStoreRing.requestConsumerOffset) == 2)
    }

    @Test func readHonoursLimit() throws {
        var memory = FakeRingMemory()
        memory.guestProduce(Array(repeating: 1, count: 100))
        #expect(try XenStoreRing.readRequests(from: &memory, limit: 30).count == 30)
        #expect(try XenStoreRing.readRequests(from: &memory).count == 70)
    }

    @Test func brokenRingsAreTypedErrors() {
        var memory = FakeRingMemory()
        memory.store32(0, at: XenStoreRing.requestConsumerOffset)
        memory.store32(1025, at: XenStoreRing.requestProducerOffset)
        #expect(throws: XenStoreTransportError.brokenRequestRing(consumer: 0, producer: 1025)) {
            _ = try XenStoreRing.readRequests(from: &memory)
        }
        memory.store32(10, at: XenStoreRing.requestConsumerOffset)
        memory.store32(5, at: XenStoreRing.requestProducerOffset)  // producer behind consumer
        #expect(throws: XenStoreTransportError.self) { _ = try XenStoreRing.readRequests(from: &memory) }

        memory.store32(100, at: XenStoreRing.responseConsumerOffset)
        memory.store32(2000, at: XenStoreRing.responseProducerOffset)
        #expect(throws: XenStoreTransportError.brokenResponseRing(consumer: 100, producer: 2000)) {
            _ = try XenStoreRing.writeResponses([1][...], to: &memory)
        }
        let error = XenStoreTransportError.brokenRequestRing(consumer: 0, producer: 0)
        XenStoreRing.reportError(error, in: &memory)
        #expect(memory.load32(at: XenStoreRing.errorOffset) == XenStoreRing.errorRingIndex)
    }

    @Test func exactlyFullRingIsNotBroken() throws {
        var memory = FakeRingMemory()
        memory.guestProduce(Array(repeating: 5, count: 1024))
        #expect(try XenStoreRing.readRequests(from: &memory).count == 1024)
    }

    @Test func writesResponsesUpToFreeSpaceWithWrap() throws {
        var memory = FakeRingMemory()
        memory.store32(1000, at: XenStoreRing.responseConsumerOffset)
        memory.store32(1000, at: XenStoreRing.responseProducerOffset)
        let data = (0..<1100).map { UInt8(truncatingIfNeeded: $0) }
        let written = try XenStoreRing.writeResponses(data[...], to: &memory)
        #expect(written == 1024)
        #expect(try XenStoreRing.writeResponses(data[1024...], to: &memory) == 0, "ring full")
        #expect(memory.guestConsume() == Array(data[..<1024]))
        #expect(try XenStoreRing.writeResponses(data[1024...], to: &memory) == 76)
        #expect(memory.guestConsume() == Array(data[1024...]))
    }

    @Test func channelRoundTripWithStore() throws {
        var store = XenStore()
        let connection = store.connect(domain: 0, privileged: true)
        var memory = FakeRingMemory()
        var channel = XenStoreRingChannel()
        let requests = [
            XenStoreMessage(type: .write, requestID: 1, payload: Array("/x\u{0}1".utf8)),
            XenStoreMessage(type: .read, requestID: 2, strings: ["/x"]),
        ]
        // Deliver the requests in two awkward pieces.
        let bytes = requests.flatMap { $0.encoded() }
        memory.guestProduce(Array(bytes[..<7]))
        let nothing = try channel.receive(from: &memory)
        #expect(nothing.isEmpty)
        memory.guestProduce(Array(bytes[7...]))
        let received = try channel.receive(from: &memory)
        #expect(received == requests)
        for request in received {
            for outgoing in store.handle(request, from: connection).messages { channel.send(outgoing.message) }
        }
        let flushed = try channel.flush(to: &memory)
        #expect(flushed > 0)
        var decoder = XenStoreMessageDecoder()
        let replies = try decoder.decodeAll(memory.guestConsume())
        #expect(replies.map(\.requestID) == [1, 2])
        #expect(replies.last?.payload == Array("1".utf8))
        #expect(channel.pendingByteCount == 0)
    }

    @Test func channelBuffersWhenRingIsFullAndPausesInput() throws {
        var memory = FakeRingMemory()
        var channel = XenStoreRingChannel(pausedInputThreshold: 2000, maximumPendingBytes: 3000)
        let reply = XenStoreMessage(type: .read, payload: [UInt8](repeating: 9, count: 1500))
        channel.send(reply)
        channel.send(reply)
        let first = try channel.flush(to: &memory)
        #expect(first == 1024)
        #expect(channel.pendingByteCount == 2 * 1516 - 1024)
        // Nothing is read while the guest leaves its responses unconsumed.
        memory.guestProduce(XenStoreMessage(type: .read, strings: ["/"]).encoded())
        let paused = try channel.receive(from: &memory)
        #expect(paused.isEmpty)
        _ = memory.guestConsume()
        let second = try channel.flush(to: &memory)
        #expect(second == 1024)
        let resumed = try channel.receive(from: &memory)
        #expect(resumed.count == 1)
        // Watch events are dropped past the maximum; replies never are.
        for _ in 0..<3 { channel.send(reply) }
        let eventKept = channel.send(XenStoreMessage(type: .watchEvent, strings: ["/a", "t"]))
        let replyKept = channel.send(XenStoreMessage(type: .read, payload: []))
        #expect(!eventKept && replyKept)
    }

    @Test func channelReportsProtocolViolations() {
        var memory = FakeRingMemory()
        var channel = XenStoreRingChannel()
        var header = XenStoreMessage(type: .write).encoded()
        header[13] = 0x20  // len = 8192
        memory.guestProduce(header)
        #expect(throws: XenStoreTransportError.payloadTooLarge(length: 8192)) {
            _ = try channel.receive(from: &memory)
        }
    }
}
