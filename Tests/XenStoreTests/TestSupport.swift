// Helpers shared by the XenStore tests: sending requests and reading replies.

import Testing
@testable import XenStore

extension XenStoreMessage {
    /// The payload split at NULs, dropping the empty string after the final NUL.
    var strings: [String] {
        var parts = payload.split(separator: 0, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        if payload.last == 0 { parts.removeLast() }
        return parts
    }

    /// The error name of an `XS_ERROR` reply, or nil.
    var errorName: String? { type == .error ? strings.first : nil }
}

/// A store with a privileged toolstack connection and helpers to talk to it.
struct Harness {
    var store = XenStore()
    var nextRequestID: UInt32 = 1

    /// Opens a connection for `domain`.
    mutating func connect(_ domain: XenStore.DomainID, privileged: Bool = false) -> XenStore.ConnectionID {
        store.connect(domain: domain, privileged: privileged)
    }

    /// Sends a request whose payload is `strings`, each NUL terminated.
    @discardableResult
    mutating func send(
        _ type: XenStoreMessageType, _ strings: [String], from connection: XenStore.ConnectionID,
        transaction: UInt32 = 0
    ) -> XenStoreOutput {
        let message = XenStoreMessage(
            type: type, requestID: nextRequestID, transactionID: transaction, strings: strings)
        nextRequestID += 1
        return store.handle(message, from: connection)
    }

    /// Sends a request with a raw payload.
    @discardableResult
    mutating func send(
        _ type: XenStoreMessageType, payload: [UInt8], from connection: XenStore.ConnectionID,
        transaction: UInt32 = 0
    ) -> XenStoreOutput {
        let message = XenStoreMessage(type: type, requestID: nextRequestID, transactionID: transaction, payload: payload)
        nextRequestID += 1
        return store.handle(message, from: connection)
    }

    /// Sends a request and returns the reply to the sender.
    mutating func request(
        _ type: XenStoreMessageType, _ strings: [String], from connection: XenStore.ConnectionID,
        transaction: UInt32 = 0
    ) -> XenStoreMessage {
        reply(in: send(type, strings, from: connection, transaction: transaction), for: connection)
    }

    /// Writes `value` as `connection`; returns the error name or nil on success.
    mutating func write(_ path: String, _ value: String, from connection: XenStore.ConnectionID, transaction: UInt32 = 0)
        -> String?
    {
        var payload = Array(path.utf8) + [0]
        payload.append(contentsOf: value.utf8)
        let output = send(.write, payload: payload, from: connection, transaction: transaction)
        return reply(in: output, for: connection).errorName
    }

    /// Reads `path` as `connection`: the value, or the error name prefixed with "!".
    mutating func read(_ path: String, from connection: XenStore.ConnectionID, transaction: UInt32 = 0) -> String {
        let reply = request(.read, [path], from: connection, transaction: transaction)
        if let error = reply.errorName { return "!" + error }
        return String(decoding: reply.payload, as: UTF8.self)
    }

    /// Starts a transaction and returns its id.
    mutating func startTransaction(from connection: XenStore.ConnectionID) -> UInt32 {
        let reply = request(.transactionStart, [""], from: connection)
        return UInt32(reply.strings.first ?? "") ?? 0
    }
}

/// The one reply (not a watch event) for `connection` in `output`.
func reply(in output: XenStoreOutput, for connection: XenStore.ConnectionID) -> XenStoreMessage {
    let replies = output.messages(for: connection).filter { $0.type != .watchEvent }
    #expect(replies.count == 1)
    return replies.first ?? XenStoreMessage(type: .error, payload: [])
}

/// The watch events for `connection` in `output`, as (path, token) pairs.
func events(in output: XenStoreOutput, for connection: XenStore.ConnectionID) -> [[String]] {
    output.messages(for: connection).filter { $0.type == .watchEvent }.map(\.strings)
}

/// An in-memory xenstore interface page, standing in for guest memory.
struct FakeRingMemory: XenStoreRingMemory {
    var bytes = [UInt8](repeating: 0, count: XenStoreRing.interfaceSize)

    func load32(at offset: Int) -> UInt32 {
        UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
            | UInt32(bytes[offset + 3]) << 24
    }

    mutating func store32(_ value: UInt32, at offset: Int) {
        for index in 0..<4 { bytes[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    }

    func loadBytes(at offset: Int, count: Int) -> [UInt8] {
        precondition(offset >= 0 && count >= 0 && offset + count <= bytes.count, "codec stepped out of the page")
        return Array(bytes[offset..<offset + count])
    }

    mutating func storeBytes(_ data: ArraySlice<UInt8>, at offset: Int) {
        precondition(offset >= 0 && offset + data.count <= bytes.count, "codec stepped out of the page")
        bytes.replaceSubrange(offset..<offset + data.count, with: data)
    }

    /// Guest side: puts request bytes on the request ring (no overflow check; tests stay within the ring).
    mutating func guestProduce(_ data: [UInt8]) {
        var producer = load32(at: XenStoreRing.requestProducerOffset)
        for byte in data {
            bytes[XenStoreRing.requestOffset + Int(producer & 1023)] = byte
            producer &+= 1
        }
        store32(producer, at: XenStoreRing.requestProducerOffset)
    }

    /// Guest side: takes every response byte.
    mutating func guestConsume() -> [UInt8] {
        var consumer = load32(at: XenStoreRing.responseConsumerOffset)
        let producer = load32(at: XenStoreRing.responseProducerOffset)
        var data: [UInt8] = []
        while consumer != producer {
            data.append(bytes[XenStoreRing.responseOffset + Int(consumer & 1023)])
            consumer &+= 1
        }
        store32(consumer, at: XenStoreRing.responseConsumerOffset)
        return data
    }
}
