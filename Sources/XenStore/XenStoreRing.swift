// The shared-page transport: struct xenstore_domain_interface of
// xen/include/public/io/xs_wire.h, served as xenstored's readchn/writechn do
// (tools/xenstored/domain.c).

/// Byte access to a domain's 0x820-byte xenstore interface page.
///
/// The codec never holds a pointer: each call takes the memory as a parameter,
/// so the same code runs against guest memory and against a test fake. Offsets
/// are relative to the start of the interface and always within
/// `XenStoreRing.interfaceSize`; `count` never exceeds the ring size.
///
/// For real shared memory, `load32` must be an acquire load and `store32` a
/// release store, giving the ordering xenstored gets from `xen_mb`/`xen_wmb`:
/// ring bytes are read only after the producer index that covers them, and an
/// index is published only after the bytes it covers are written.
public protocol XenStoreRingMemory {
    /// Loads the little-endian 32-bit word at `offset`.
    func load32(at offset: Int) -> UInt32
    /// Stores `value` as a little-endian 32-bit word at `offset`.
    mutating func store32(_ value: UInt32, at offset: Int)
    /// Copies `count` bytes starting at `offset`.
    func loadBytes(at offset: Int, count: Int) -> [UInt8]
    /// Copies `bytes` to `offset`.
    mutating func storeBytes(_ bytes: ArraySlice<UInt8>, at offset: Int)
}

/// Layout and codec of the xenstore ring page (`struct xenstore_domain_interface`).
///
/// Two 1024-byte rings with free-running 32-bit indexes, masked with 1023 to
/// address bytes (`MASK_XENSTORE_IDX`). The guest produces requests and the
/// store consumes them; the store produces responses and watch events and the
/// guest consumes them. A ring whose `prod - cons` exceeds 1024 is broken.
public enum XenStoreRing {
    /// `XENSTORE_RING_SIZE`.
    public static let size = 1024
    /// Offset of `req[]`.
    public static let requestOffset = 0x000
    /// Offset of `rsp[]`.
    public static let responseOffset = 0x400
    /// Offset of `req_cons`, advanced by the store.
    public static let requestConsumerOffset = 0x800
    /// Offset of `req_prod`, advanced by the guest.
    public static let requestProducerOffset = 0x804
    /// Offset of `rsp_cons`, advanced by the guest.
    public static let responseConsumerOffset = 0x808
    /// Offset of `rsp_prod`, advanced by the store.
    public static let responseProducerOffset = 0x80C
    /// Offset of `server_features`.
    public static let serverFeaturesOffset = 0x810
    /// Offset of `connection`.
    public static let connectionOffset = 0x814
    /// Offset of `error`.
    public static let errorOffset = 0x818
    /// Offset of `evtchn_port`.
    public static let eventChannelPortOffset = 0x81C
    /// Size of `struct xenstore_domain_interface`.
    public static let interfaceSize = 0x820

    /// `XENSTORE_SERVER_FEATURE_RECONNECTION`.
    public static let featureReconnection: UInt32 = 1
    /// `XENSTORE_SERVER_FEATURE_ERROR`.
    public static let featureError: UInt32 = 2
    /// `XENSTORE_CONNECTED`.
    public static let connected: UInt32 = 0
    /// `XENSTORE_RECONNECT`.
    public static let reconnect: UInt32 = 1
    /// `XENSTORE_ERROR_NONE`.
    public static let errorNone: UInt32 = 0
    /// `XENSTORE_ERROR_COMM`.
    public static let errorCommunication: UInt32 = 1
    /// `XENSTORE_ERROR_RINGIDX`.
    public static let errorRingIndex: UInt32 = 2
    /// `XENSTORE_ERROR_PROTO`.
    public static let errorProtocol: UInt32 = 3

    /// Takes up to `limit` bytes the guest has produced on the request ring and
    /// advances `req_cons` past them (`readchn`). Returns an empty array when
    /// nothing is pending.
    public static func readRequests(
        from memory: inout some XenStoreRingMemory, limit: Int = size
    ) throws(XenStoreTransportError) -> [UInt8] {
        let consumer = memory.load32(at: requestConsumerOffset)
        let producer = memory.load32(at: requestProducerOffset)
        let available = producer &- consumer
        guard available <= UInt32(size) else {
            throw .brokenRequestRing(consumer: consumer, producer: producer)
        }
        let count = min(Int(available), max(limit, 0))
        guard count > 0 else { return [] }
        let start = Int(consumer & UInt32(size - 1))
        let first = min(count, size - start)
        var bytes = memory.loadBytes(at: requestOffset + start, count: first)
        if first < count {
            bytes.append(contentsOf: memory.loadBytes(at: requestOffset, count: count - first))
        }
        memory.store32(consumer &+ UInt32(count), at: requestConsumerOffset)
        return bytes
    }

    /// Writes as much of `bytes` as the response ring has room for and advances
    /// `rsp_prod` (`writechn`). Returns how many bytes were written; the rest
    /// must be retried once the guest has consumed some.
    public static func writeResponses(
        _ bytes: ArraySlice<UInt8>, to memory: inout some XenStoreRingMemory
    ) throws(XenStoreTransportError) -> Int {
        let consumer = memory.load32(at: responseConsumerOffset)
        let producer = memory.load32(at: responseProducerOffset)
        let used = producer &- consumer
        guard used <= UInt32(size) else {
            throw .brokenResponseRing(consumer: consumer, producer: producer)
        }
        let count = min(bytes.count, size - Int(used))
        guard count > 0 else { return 0 }
        let start = Int(producer & UInt32(size - 1))
        let first = min(count, size - start)
        let chunk = bytes.prefix(count)
        memory.storeBytes(chunk.prefix(first), at: responseOffset + start)
        if first < count {
            memory.storeBytes(chunk.dropFirst(first), at: responseOffset)
        }
        memory.store32(producer &+ UInt32(count), at: responseProducerOffset)
        return count
    }

    /// Records why the store stopped serving the ring, for guests that
    /// negotiated `XENSTORE_SERVER_FEATURE_ERROR` (`ignore_connection`).
    public static func reportError(_ error: XenStoreTransportError, in memory: inout some XenStoreRingMemory) {
        memory.store32(error.ringErrorCode, at: errorOffset)
    }
}

/// One domain's ring connection: framing state on top of `XenStoreRing`.
///
/// Holds the partial request being reassembled and the response bytes the ring
/// had no room for. Flow control follows xenstored's `conn_can_read`: while more
/// than `pausedInputThreshold` response bytes wait, no further requests are
/// read, so a guest that does not consume its replies cannot make the store
/// queue more of them. Watch events beyond `maximumPendingBytes` are dropped, as
/// xenstored drops events past a domain's memory quota.
public struct XenStoreRingChannel: Sendable {
    /// Response bytes above which requests are left in the ring.
    public var pausedInputThreshold: Int
    /// Response bytes above which watch events are dropped.
    public var maximumPendingBytes: Int

    private var decoder = XenStoreMessageDecoder()
    private var pending: [UInt8] = []
    private var pendingStart = 0

    public init(pausedInputThreshold: Int = 64 * 1024, maximumPendingBytes: Int = 1024 * 1024) {
        self.pausedInputThreshold = pausedInputThreshold
        self.maximumPendingBytes = maximumPendingBytes
    }

    /// Response bytes not yet written to the ring.
    public var pendingByteCount: Int { pending.count - pendingStart }

    /// Reads pending request bytes and returns the messages they complete.
    /// Reads nothing while too many responses are waiting.
    public mutating func receive(from memory: inout some XenStoreRingMemory) throws(XenStoreTransportError)
        -> [XenStoreMessage]
    {
        guard pendingByteCount <= pausedInputThreshold else { return [] }
        var input = try XenStoreRing.readRequests(from: &memory)[...]
        var messages: [XenStoreMessage] = []
        while let message = try decoder.decode(from: &input) { messages.append(message) }
        return messages
    }

    /// Queues a message for the guest. Returns false if it was a watch event
    /// dropped because too much output is already waiting; replies are always kept.
    @discardableResult
    public mutating func send(_ message: XenStoreMessage) -> Bool {
        if message.type == .watchEvent && pendingByteCount > maximumPendingBytes { return false }
        pending.append(contentsOf: message.encoded())
        return true
    }

    /// Writes queued bytes into the response ring; returns how many were written
    /// (non-zero means the guest should be notified).
    public mutating func flush(to memory: inout some XenStoreRingMemory) throws(XenStoreTransportError) -> Int {
        let written = try XenStoreRing.writeResponses(pending[pendingStart...], to: &memory)
        pendingStart += written
        if pendingStart == pending.count {
            pending.removeAll(keepingCapacity: true)
            pendingStart = 0
        } else if pendingStart > 4 * XenStoreRing.size && pendingStart * 2 > pending.count {
            pending.removeFirst(pendingStart)
            pendingStart = 0
        }
        return written
    }
}
