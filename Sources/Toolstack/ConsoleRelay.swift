import Foundation

/// Bytes waiting to go to one client, bounded: when the client is slower than the
/// guest, the oldest bytes are dropped (a console is a live view; the log keeps the
/// rest). Producers never block.
final class ByteQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var chunks: [[UInt8]] = []
    private var count = 0
    private var closed = false
    private let limit: Int
    private(set) var dropped = 0

    init(limit: Int) { self.limit = max(1, limit) }

    func push(_ bytes: [UInt8]) {
        condition.lock()
        defer { condition.unlock() }
        guard !closed, !bytes.isEmpty else { return }
        chunks.append(bytes)
        count += bytes.count
        while count > limit, let first = chunks.first {
            chunks.removeFirst()
            count -= first.count
            dropped += first.count
        }
        condition.signal()
    }

    /// Puts `bytes` before everything queued, even after `close` (the history that
    /// precedes the live output a subscriber may already have queued).
    func pushFirst(_ bytes: [UInt8]) {
        condition.lock()
        defer { condition.unlock() }
        guard !bytes.isEmpty else { return }
        chunks.insert(bytes, at: 0)
        count += bytes.count
        condition.signal()
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// Everything queued, waiting up to `timeout` seconds; nil once closed and empty.
    func pop(timeout: Double) -> [UInt8]? {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(timeout)
        while chunks.isEmpty && !closed {
            if !condition.wait(until: deadline) { return [] }
        }
        if chunks.isEmpty { return nil }
        let bytes = chunks.flatMap { $0 }
        chunks.removeAll()
        count = 0
        return bytes
    }
}

/// The daemon's side of an attached console: after the `console` response the
/// connection carries raw bytes, the guest's output to the client and the client's
/// keystrokes to the guest's input ring, until the client hangs up or the domain ends
/// (then the daemon closes the connection).
struct ConsoleRelay {
    let client: UnixSocket
    /// Bytes the client sent after its request line (already read).
    let pending: [UInt8]
    let manager: DomainManager
    let domid: UInt16
    let history: Int?
    let configuration: ControlServer.Configuration
    let events: StructuredLog

    /// How long input may wait for room in the guest's input ring before it is dropped.
    static let inputPatience: Double = 5

    func run() {
        let queue = ByteQueue(limit: configuration.consoleQueueBytes)
        let attachment: DomainManager.ConsoleAttachment
        do {
            attachment = try manager.attachConsole("\(domid)", history: history) { event in
                switch event {
                case let .output(bytes): queue.push(bytes)
                case .closed: queue.close()
                }
            }
        } catch {
            events.info("console attach failed", ["domid": domid, "error": error.message])
            return
        }
        events.info("console attached", ["domid": domid])
        queue.pushFirst(attachment.history)
        let writerDone = DispatchSemaphore(value: 0)
        let writer = Thread { [client, configuration] in
            defer { writerDone.signal() }
            while let bytes = queue.pop(timeout: 1) {
                guard !bytes.isEmpty else { continue }
                do { try client.write(bytes, timeout: configuration.writeTimeout) } catch { break }
            }
            // The domain ended (or the client stopped reading): hang up.
            client.shutdown()
        }
        writer.name = "domusd-console-out"
        writer.start()

        forward(pending, to: attachment)
        // A console may sit idle for hours: poll in one-second steps until the client
        // hangs up, or the writer hangs up because the domain ended or the daemon stops.
        while true {
            let bytes: [UInt8]
            do { bytes = try client.read(upTo: 4096, timeout: 1) } catch {
                if error.isTimeout { continue }
                break
            }
            if bytes.isEmpty { break }
            forward(bytes, to: attachment)
        }
        attachment.detach()
        queue.close()
        client.shutdown()
        _ = writerDone.wait(timeout: .now() + configuration.writeTimeout + 1)
        events.info("console detached", ["domid": domid])
    }

    /// Puts client input into the guest's ring, waiting (bounded) while it is full.
    private func forward(_ bytes: [UInt8], to attachment: DomainManager.ConsoleAttachment) {
        var remaining = bytes[...]
        let deadline = Date().addingTimeInterval(Self.inputPatience)
        while !remaining.isEmpty {
            let written = attachment.send(Array(remaining))
            remaining = remaining.dropFirst(written)
            if written == 0 {
                guard Date() < deadline else {
                    events.warning("console input dropped: the guest does not read it", ["domid": domid, "bytes": remaining.count])
                    return
                }
                usleep(10_000)
            }
        }
    }
}

/// A thread that runs closures one at a time, in order: the manager's lifecycle queue.
/// A dedicated thread rather than a dispatch queue, so that work starts at once even
/// when every dispatch worker is busy (Linux's libdispatch adds workers only once a
/// second).
final class SerialWorker: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var running = false

    init(name: String) {
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Queues `job`; returns at once.
    func async(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Whether no job is queued or running.
    var isIdle: Bool {
        condition.lock()
        defer { condition.unlock() }
        return jobs.isEmpty && !running
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            running = true
            condition.unlock()
            job()
            condition.lock()
            running = false
            condition.broadcast()
            condition.unlock()
        }
    }
}
