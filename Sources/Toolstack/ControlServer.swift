import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// domusd's control socket: accepts connections on a Unix socket that only root, the
/// daemon's user and members of one group can reach, and serves each on its own
/// thread with `ControlHandler`. No client can block the daemon: every read has an
/// idle timeout, every write a deadline, and console output to a slow client is
/// queued up to a bound and then dropped.
public final class ControlServer: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// The socket's path (`--socket`).
        public var socketPath: String
        /// The group allowed besides root (`--group`), as a gid; nil: root only.
        public var groupID: UInt32?
        /// Connections served at once; more are refused with an error.
        public var maximumConnections = 64
        /// A connection with no request for this long is closed, seconds.
        public var idleTimeout: Double = 600
        /// A response or console write that cannot complete within this is abandoned, seconds.
        public var writeTimeout: Double = 10
        /// Console output queued for one slow client at most, bytes.
        public var consoleQueueBytes = 1 << 20

        public init(socketPath: String, groupID: UInt32? = nil) {
            self.socketPath = socketPath
            self.groupID = groupID
        }
    }

    /// Where domusd listens unless told otherwise.
    public static let defaultSocketPath = "/run/domus/domusd.sock"

    public let configuration: Configuration
    let handler: ControlHandler
    let events: StructuredLog
    private let listener: UnixSocket
    private let lock = NSCondition()
    private var connections: [ObjectIdentifier: UnixSocket] = [:]
    private var stopping = false
    private var acceptThreadDone = true

    /// Creates the socket's directory if missing (mode 0750, group `groupID`), removes a
    /// stale socket left by a daemon that died, and listens. Fails if another daemon
    /// answers on the path or something that is not a socket is there.
    public init(manager: DomainManager, events: StructuredLog, configuration: Configuration) throws(ControlError) {
        self.configuration = configuration
        self.handler = ControlHandler(manager: manager)
        self.events = events
        let path = configuration.socketPath
        try Self.prepareDirectory(for: path, groupID: configuration.groupID)
        try Self.removeStaleSocket(at: path)
        do {
            listener = try UnixSocket.listen(path: path)
        } catch {
            throw ControlError(.host, "cannot listen on \(path): \(error)")
        }
        // 0660 root:<group>: the group's members may connect, nobody else.
        _ = chown(path, uid_t(geteuid()), gid_t(configuration.groupID ?? getegid()))
        _ = chmod(path, configuration.groupID == nil ? 0o600 : 0o660)
    }

    static func prepareDirectory(for path: String, groupID: UInt32?) throws(ControlError) {
        let directory = (path as NSString).deletingLastPathComponent
        guard !directory.isEmpty else { return }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw ControlError(.host, "\(directory) is not a directory") }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o750])
        } catch {
            throw ControlError(.host, "cannot create \(directory): \(error.localizedDescription)")
        }
        _ = chown(directory, uid_t(geteuid()), gid_t(groupID ?? getegid()))
        _ = chmod(directory, 0o750)
    }

    static func removeStaleSocket(at path: String) throws(ControlError) {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return }
        guard attributes[.type] as? FileAttributeType == .typeSocket else {
            throw ControlError(.host, "\(path) exists and is not a socket; remove it or choose another --socket")
        }
        if (try? UnixSocket.connect(path: path, timeout: 1)) != nil {
            throw ControlError(.conflict, "another domusd is already listening on \(path)")
        }
        _ = unlink(path)
    }

    // MARK: Running

    /// Starts the accept loop on its own thread.
    public func start() {
        lock.lock()
        acceptThreadDone = false
        lock.unlock()
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "domusd-accept"
        thread.start()
        events.info("listening", ["socket": configuration.socketPath,
                                  "group": configuration.groupID.map { "\($0)" } ?? "none"])
    }

    private func acceptLoop() {
        defer {
            lock.lock()
            acceptThreadDone = true
            lock.broadcast()
            lock.unlock()
        }
        while !isStopping {
            let client: UnixSocket?
            do { client = try listener.accept(timeout: 0.25) } catch {
                events.error("accept failed", ["error": error.description])
                usleep(100_000)
                continue
            }
            guard let client else { continue }
            admit(client)
        }
    }

    private var isStopping: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    /// Checks who connected and starts the connection's thread, or refuses it.
    private func admit(_ client: UnixSocket) {
        let credentials = client.peerCredentials()
        guard let credentials, isAllowed(credentials) else {
            events.warning("connection refused", ["uid": credentials.map { "\($0.uid)" } ?? "unknown",
                                                  "pid": credentials.map { "\($0.pid)" } ?? "unknown"])
            try? client.write(ControlCodec.encode(ControlResponse.failure(ControlError(.usage, "permission denied"))), timeout: 1)
            client.close()
            return
        }
        lock.lock()
        let full = connections.count >= configuration.maximumConnections
        if !full { connections[ObjectIdentifier(client)] = client }
        lock.unlock()
        guard !full else {
            try? client.write(ControlCodec.encode(ControlResponse.failure(ControlError(.host, "too many connections"))), timeout: 1)
            client.close()
            return
        }
        let thread = Thread { [self] in
            serve(client, uid: credentials.uid)
            lock.lock()
            connections[ObjectIdentifier(client)] = nil
            lock.broadcast()
            lock.unlock()
            client.close()
        }
        thread.name = "domusd-client"
        thread.start()
    }

    /// Root, the daemon's own user, and the configured group's members (primary or
    /// supplementary) may use the daemon.
    func isAllowed(_ credentials: (pid: Int32, uid: UInt32, gid: UInt32)) -> Bool {
        if credentials.uid == 0 || credentials.uid == HostAccounts.effectiveUserID { return true }
        guard let group = configuration.groupID else { return false }
        return credentials.gid == group || HostAccounts.groups(ofProcess: credentials.pid).contains(group)
    }

    /// Serves requests until the client hangs up, idles out, or switches to a console.
    private func serve(_ client: UnixSocket, uid: UInt32) {
        let reader = LineReader(client)
        while true {
            let line: [UInt8]?
            do {
                line = try reader.readLine(maximumBytes: ControlCodec.maximumLineBytes, timeout: configuration.idleTimeout)
            } catch {
                if !error.isTimeout {
                    try? client.write(ControlCodec.encode(ControlResponse.failure(ControlError(.usage, error.description))),
                                      timeout: configuration.writeTimeout)
                }
                return
            }
            guard let line else { return }
            let request: ControlRequest
            do {
                request = try ControlCodec.decode(ControlRequest.self, from: line)
            } catch {
                guard send(.failure(error), to: client) else { return }
                continue
            }
            let started = Date()
            let response = handler.handle(request)
            log(request, response, uid: uid, seconds: Date().timeIntervalSince(started))
            guard send(response, to: client) else { return }
            let attach = request.operation == .console || (request.operation == .create && request.attach == true)
            if attach, response.ok, let domid = response.domid {
                let history = request.operation == .create ? nil : request.history
                ConsoleRelay(client: client, pending: reader.takeBuffered(), manager: handler.manager, domid: domid,
                             history: history, configuration: configuration, events: events).run()
                return
            }
        }
    }

    private func send(_ response: ControlResponse, to client: UnixSocket) -> Bool {
        do {
            try client.write(ControlCodec.encode(response), timeout: configuration.writeTimeout)
            return true
        } catch {
            events.warning("client did not take its response", ["error": error.description])
            return false
        }
    }

    private func log(_ request: ControlRequest, _ response: ControlResponse, uid: UInt32, seconds: Double) {
        let milliseconds = String(format: "%.1f", seconds * 1000)
        if response.ok {
            events.debug("request", ["op": request.op, "domain": request.domain ?? "-", "uid": uid, "ms": milliseconds])
        } else {
            events.info("request failed", ["op": request.op, "domain": request.domain ?? "-", "uid": uid,
                                           "error": response.error ?? "", "ms": milliseconds])
        }
    }

    /// Stops accepting, closes every connection and removes the socket file. Bounded.
    public func stop(timeout: Double = 5) {
        lock.lock()
        stopping = true
        for connection in connections.values { connection.shutdown() }
        let deadline = Date().addingTimeInterval(timeout)
        while (!acceptThreadDone || !connections.isEmpty) && lock.wait(until: deadline) {}
        lock.unlock()
        listener.close()
        _ = unlink(configuration.socketPath)
        events.info("stopped listening", ["socket": configuration.socketPath])
    }
}
