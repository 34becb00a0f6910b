// The xsd_sockmsg framing of xs_wire.h: a 16-byte little-endian header and a payload.

/// One XenStore message: `struct xsd_sockmsg` followed by its payload.
///
/// The header is four little-endian `uint32_t` fields, `type`, `req_id`, `tx_id`
/// and `len` (`xen/include/public/io/xs_wire.h`). The type is kept as its raw
/// number so that a message of an unknown type still round-trips and can be
/// answered with `ENOSYS`, as xenstored's `process_message` does.
public struct XenStoreMessage: Sendable, Hashable {
    /// Size of `struct xsd_sockmsg`.
    public static let headerSize = 16
    /// `XENSTORE_PAYLOAD_MAX`: the largest payload either side may send.
    public static let payloadMax = 4096

    /// The `type` field; see `type` for the decoded value.
    public var typeRawValue: UInt32
    /// `req_id`: chosen by the client and echoed in the reply.
    public var requestID: UInt32
    /// `tx_id`: the transaction the request belongs to, 0 for none.
    public var transactionID: UInt32
    /// The bytes after the header; `len` is their count.
    public var payload: [UInt8]

    /// The message type, or nil when the number is not one Xen defines.
    public var type: XenStoreMessageType? { XenStoreMessageType(rawValue: typeRawValue) }

    public init(typeRawValue: UInt32, requestID: UInt32 = 0, transactionID: UInt32 = 0, payload: [UInt8] = []) {
        self.typeRawValue = typeRawValue
        self.requestID = requestID
        self.transactionID = transactionID
        self.payload = payload
    }

    public init(type: XenStoreMessageType, requestID: UInt32 = 0, transactionID: UInt32 = 0, payload: [UInt8] = []) {
        self.init(typeRawValue: type.rawValue, requestID: requestID, transactionID: transactionID, payload: payload)
    }

    /// A request whose payload is `strings`, each followed by a NUL, the usual
    /// payload shape of `docs/misc/xenstore.txt` (`<path>|<token>|`).
    public init(type: XenStoreMessageType, requestID: UInt32 = 0, transactionID: UInt32 = 0, strings: [String]) {
        var payload: [UInt8] = []
        for string in strings {
            payload.append(contentsOf: string.utf8)
            payload.append(0)
        }
        self.init(type: type, requestID: requestID, transactionID: transactionID, payload: payload)
    }

    /// The header followed by the payload, as written to a socket or ring.
    ///
    /// The `len` field is the payload count; keeping it within `payloadMax` is the
    /// sender's duty (the store never produces a longer reply, see `XenStore.handle`).
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.headerSize + payload.count)
        for field in [typeRawValue, requestID, transactionID, UInt32(truncatingIfNeeded: payload.count)] {
            appendLittleEndian(field, to: &bytes)
        }
        bytes.append(contentsOf: payload)
        return bytes
    }
}

private func appendLittleEndian(_ value: UInt32, to bytes: inout [UInt8]) {
    bytes.append(UInt8(truncatingIfNeeded: value))
    bytes.append(UInt8(truncatingIfNeeded: value >> 8))
    bytes.append(UInt8(truncatingIfNeeded: value >> 16))
    bytes.append(UInt8(truncatingIfNeeded: value >> 24))
}

/// Reassembles messages from a byte stream delivered in arbitrary pieces.
///
/// It follows xenstored's `handle_input` (`tools/xenstored/core.c`): read the
/// 16-byte header, reject a `len` above `XENSTORE_PAYLOAD_MAX` as a protocol
/// violation, then read exactly `len` payload bytes. At most one partial message
/// is buffered (16 + 4096 bytes), so a hostile stream cannot make it grow. After a
/// protocol error the stream has lost framing: every later call throws the same
/// error, and the caller should drop the connection.
public struct XenStoreMessageDecoder: Sendable {
    private var header: [UInt8] = []
    private var pending: XenStoreMessage?
    private var expectedPayload = 0
    private var failure: XenStoreTransportError?

    public init() {}

    /// True when a message has been started but not finished.
    public var hasPartialMessage: Bool { !header.isEmpty || pending != nil }

    /// Consumes bytes from the front of `input` until one message is complete and
    /// returns it, or until `input` is empty and returns nil (keeping the partial
    /// message for the next call). Call it in a loop until it returns nil.
    public mutating func decode(
        from input: inout ArraySlice<UInt8>
    ) throws(XenStoreTransportError) -> XenStoreMessage? {
        if let failure { throw failure }
        while !input.isEmpty {
            if var message = pending {
                let take = min(expectedPayload - message.payload.count, input.count)
                message.payload.append(contentsOf: input.prefix(take))
                input.removeFirst(take)
                if message.payload.count == expectedPayload {
                    pending = nil
                    return message
                }
                pending = message
                continue
            }
            let take = min(XenStoreMessage.headerSize - header.count, input.count)
            header.append(contentsOf: input.prefix(take))
            input.removeFirst(take)
            guard header.count == XenStoreMessage.headerSize else { continue }
            let length = littleEndianWord(at: 12)
            guard length <= UInt32(XenStoreMessage.payloadMax) else {
                let error = XenStoreTransportError.payloadTooLarge(length: length)
                failure = error
                throw error
            }
            var message = XenStoreMessage(
                typeRawValue: littleEndianWord(at: 0), requestID: littleEndianWord(at: 4),
                transactionID: littleEndianWord(at: 8))
            header.removeAll(keepingCapacity: true)
            expectedPayload = Int(length)
            if expectedPayload == 0 { return message }
            message.payload.reserveCapacity(expectedPayload)
            pending = message
        }
        return nil
    }

    /// Decodes every complete message in `bytes`; convenient when errors need no
    /// per-message handling. Messages completed before a protocol error in the same
    /// call are lost; use `decode(from:)` to handle them one at a time.
    public mutating func decodeAll(_ bytes: [UInt8]) throws(XenStoreTransportError) -> [XenStoreMessage] {
        var input = bytes[...]
        var messages: [XenStoreMessage] = []
        while let message = try decode(from: &input) { messages.append(message) }
        return messages
    }

    private func littleEndianWord(at offset: Int) -> UInt32 {
        UInt32(header[offset]) | UInt32(header[offset + 1]) << 8
            | UInt32(header[offset + 2]) << 16 | UInt32(header[offset + 3]) << 24
    }
}
