// Wire format: message type numbers, error names, header encoding, the decoder.

import Testing
@testable import XenStore

@Suite struct WireTests {
    @Test func messageTypeNumbersMatchXsWire() {
        let expected: [(XenStoreMessageType, UInt32)] = [
            (.control, 0), (.directory, 1), (.read, 2), (.getPerms, 3), (.watch, 4), (.unwatch, 5),
            (.transactionStart, 6), (.transactionEnd, 7), (.introduce, 8), (.release, 9), (.getDomainPath, 10),
            (.write, 11), (.mkdir, 12), (.rm, 13), (.setPerms, 14), (.watchEvent, 15), (.error, 16),
            (.isDomainIntroduced, 17), (.resume, 18), (.setTarget, 19), (.resetWatches, 21),
            (.directoryPart, 22), (.getFeature, 23), (.setFeature, 24), (.getQuota, 25), (.setQuota, 26),
        ]
        for (type, number) in expected { #expect(type.rawValue == number, "\(type.name)") }
        #expect(XenStoreMessageType.allCases.count == expected.count)
        #expect(XenStoreMessageType(rawValue: 20) == nil, "XS_RESTRICT was removed")
        #expect(XenStoreMessageType.debug == .control)
        #expect(XenStoreMessageType.getPerms.name == "GET_PERMS")
    }

    @Test func errorTableMatchesXsdErrors() {
        let names = XenStoreError.allCases.map(\.name)
        #expect(names == [
            "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO", "ENOTEMPTY", "ENOSYS",
            "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
        ])
        #expect(XenStoreError.EINVAL.errno == 22)
        #expect(XenStoreError.EISCONN.errno == 106)
        #expect(XenStoreError.EAGAIN.payload == Array("EAGAIN\0".utf8))
        #expect(XenStoreError(payload: Array("ENOENT\0".utf8)) == .ENOENT)
        #expect(XenStoreError(payload: Array("EWHAT\0".utf8)) == nil)
    }

    @Test func encodesLittleEndianHeader() {
        let message = XenStoreMessage(type: .read, requestID: 0x0102_0304, transactionID: 7, payload: [0x61, 0])
        #expect(message.encoded() == [2, 0, 0, 0, 4, 3, 2, 1, 7, 0, 0, 0, 2, 0, 0, 0, 0x61, 0])
    }

    @Test func decodesByteByByte() throws {
        let first = XenStoreMessage(type: .write, requestID: 9, transactionID: 3, strings: ["a/b", "value"])
        let second = XenStoreMessage(type: .transactionStart, requestID: 10, payload: [])
        let third = XenStoreMessage(type: .read, requestID: 11, strings: ["x"])
        let stream = first.encoded() + second.encoded() + third.encoded()
        var decoder = XenStoreMessageDecoder()
        var decoded: [XenStoreMessage] = []
        for byte in stream {
            var input = [byte][...]
            while let message = try decoder.decode(from: &input) { decoded.append(message) }
            #expect(input.isEmpty)
        }
        #expect(decoded == [first, second, third])
        #expect(!decoder.hasPartialMessage)
    }

    @Test func decodesManyMessagesFromOneChunk() throws {
        let messages = (0..<20).map { XenStoreMessage(type: .read, requestID: UInt32($0), strings: ["node\($0)"]) }
        var decoder = XenStoreMessageDecoder()
        #expect(try decoder.decodeAll(messages.flatMap { $0.encoded() }) == messages)
    }

    @Test func decodesMaximumPayload() throws {
        let message = XenStoreMessage(type: .write, payload: [UInt8](repeating: 0x41, count: 4096))
        var decoder = XenStoreMessageDecoder()
        #expect(try decoder.decodeAll(message.encoded()) == [message])
    }

    @Test func rejectsOversizedPayloadAndStaysBroken() throws {
        var header = XenStoreMessage(type: .write).encoded()
        header[12] = 0x01
        header[13] = 0x10  // len = 4097
        let good = XenStoreMessage(type: .read, strings: ["a"]).encoded()
        var decoder = XenStoreMessageDecoder()
        var input = (good + header)[...]
        #expect(try decoder.decode(from: &input) != nil)
        #expect(throws: XenStoreTransportError.payloadTooLarge(length: 4097)) {
            _ = try decoder.decode(from: &input)
        }
        #expect(throws: XenStoreTransportError.payloadTooLarge(length: 4097)) {
            _ = try decoder.decodeAll(good)
        }
        #expect(XenStoreTransportError.payloadTooLarge(length: 4097).ringErrorCode == XenStoreRing.errorProtocol)
    }

    @Test func hugeLengthIsRejectedWithoutAllocating() {
        var header = XenStoreMessage(type: .write).encoded()
        header.replaceSubrange(12..<16, with: [0xFF, 0xFF, 0xFF, 0xFF])
        var decoder = XenStoreMessageDecoder()
        #expect(throws: XenStoreTransportError.payloadTooLarge(length: .max)) { _ = try decoder.decodeAll(header) }
    }

    @Test func truncatedHeaderWaitsForMore() throws {
        let bytes = XenStoreMessage(type: .read, requestID: 5, strings: ["abc"]).encoded()
        var decoder = XenStoreMessageDecoder()
        #expect(try decoder.decodeAll(Array(bytes[..<10])).isEmpty)
        #expect(decoder.hasPartialMessage)
        #expect(try decoder.decodeAll(Array(bytes[10...])).count == 1)
    }

    @Test func argumentSplittingFollowsGetStrings() {
        #expect(XenStoreWire.strings(Array("a\0b\0".utf8)).count == 2)
        #expect(XenStoreWire.strings(Array("a\0b".utf8)).count == 1)
        #expect(XenStoreWire.strings([]).isEmpty)
        #expect(XenStoreWire.singleArgument(Array("a\0".utf8)) == Array("a".utf8)[...])
        #expect(XenStoreWire.singleArgument(Array("a\0b\0".utf8)) == nil)
        #expect(XenStoreWire.singleArgument(Array("a".utf8)) == nil)
        #expect(XenStoreWire.singleArgument([]) == nil)
        #expect(XenStoreWire.domainID(Array("65535".utf8)[...]) == 65535)
        #expect(XenStoreWire.domainID(Array("65536".utf8)[...]) == nil)
        #expect(XenStoreWire.domainID(Array("5x".utf8)[...]) == nil)
        #expect(XenStoreWire.domainID(Array("".utf8)[...]) == nil)
        #expect(XenStoreWire.decimal(Array("99999999999999999999999999".utf8)[...], maximum: .max) == nil)
        #expect(XenStoreWire.signedDecimal(Array("-42".utf8)[...]) == -42)
    }
}
