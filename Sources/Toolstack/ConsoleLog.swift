import Synchronization

/// A domain's console output as the daemon keeps it (xenconsoled's role): the most
/// recent `capacity` bytes, for clients that attach later, and the live stream fanned
/// out to every attached client.
///
/// Subscribers are called on the thread that appends (a vCPU or backend thread), so
/// they must not block; `ConsoleStream` queues for them.
public final class ConsoleLog: Sendable {
    /// What a subscriber receives.
    public enum Event: Sendable, Equatable {
        case output([UInt8])
        /// The domain is gone; no more output will come.
        case closed
    }

    private struct State {
        var bytes: [UInt8] = []
        var start = 0
        var total: UInt64 = 0
        var subscribers: [UInt64: @Sendable (Event) -> Void] = [:]
        var nextSubscriber: UInt64 = 1
        var isClosed = false
    }

    public let capacity: Int
    private let state = Mutex(State())

    public init(capacity: Int = 256 << 10) {
        self.capacity = max(1, capacity)
    }

    /// Records `bytes` and passes them to every subscriber.
    public func append(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        let subscribers: [@Sendable (Event) -> Void] = state.withLock { state in
            guard !state.isClosed else { return [] }
            state.total &+= UInt64(bytes.count)
            for byte in bytes.suffix(capacity) {
                if state.bytes.count < capacity {
                    state.bytes.append(byte)
                } else {
                    state.bytes[state.start] = byte
                    state.start = (state.start + 1) % capacity
                }
            }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber(.output(bytes)) }
    }

    /// The last `count` bytes kept (all of them if `count` is nil).
    public func recent(_ count: Int? = nil) -> [UInt8] {
        state.withLock { state in
            let ordered = Array(state.bytes[state.start...]) + Array(state.bytes[..<state.start])
            guard let count else { return ordered }
            return Array(ordered.suffix(max(0, count)))
        }
    }

    /// Bytes written since the domain started (including those no longer kept).
    public var totalBytes: UInt64 { state.withLock { $0.total } }

    /// Atomically takes the last `history` bytes and subscribes to what follows, so no
    /// output is lost or repeated in between. Returns nil if the log is closed.
    public func subscribe(history: Int?, _ subscriber: @escaping @Sendable (Event) -> Void) -> (id: UInt64, history: [UInt8])? {
        state.withLock { state -> (UInt64, [UInt8])? in
            guard !state.isClosed else { return nil }
            let ordered = Array(state.bytes[state.start...]) + Array(state.bytes[..<state.start])
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = subscriber
            return (id, history.map { Array(ordered.suffix(max(0, $0))) } ?? ordered)
        }
    }

    public func unsubscribe(_ id: UInt64) {
        _ = state.withLock { $0.subscribers.removeValue(forKey: id) }
    }

    /// Ends the stream: subscribers get `.closed` and are dropped. The kept bytes stay readable.
    public func close() {
        let subscribers: [@Sendable (Event) -> Void] = state.withLock { state in
            guard !state.isClosed else { return [] }
            state.isClosed = true
            defer { state.subscribers.removeAll() }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber(.closed) }
    }

    public var isClosed: Bool { state.withLock { $0.isClosed } }

    public var subscriberCount: Int { state.withLock { $0.subscribers.count } }
}
