import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a socket operation failed: what was attempted and the errno text.
public struct SocketError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let code: Int32
    /// The operation ran out of time (no errno).
    public var isTimeout: Bool { code == ETIMEDOUT }

    init(_ message: String, code: Int32 = errno) {
        self.code = code
        self.message = code == 0 ? message : "\(message): \(String(cString: strerror(code)))"
    }

    static func timeout(_ what: String) -> SocketError { SocketError("\(what): timed out", code: ETIMEDOUT) }

    public var description: String { message }
}

/// A connected or listening Unix stream socket. Every wait is bounded by a timeout
/// (poll), writes never raise SIGPIPE, and the descriptor is closed exactly once.
///
/// This file is the toolstack's one place for socket syscalls and the pointers they
/// need; each `unsafe` use says why it is sound.
public final class UnixSocket: @unchecked Sendable {
    public let descriptor: Int32
    private let closeLock = NSLock()
    private var isClosed = false

    init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    deinit { close() }

    // MARK: Addresses

    /// Runs `body` with a sockaddr_un for `path`.
    private static func withAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) throws(SocketError) -> T {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw SocketError("socket path \(path) is empty or longer than \(capacity - 1) bytes", code: 0)
        }
        // SAFETY: sun_path is a fixed-size byte array inside `address`; `bytes` plus its
        // NUL fit (checked above), and the raw buffer does not outlive the call.
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        // SAFETY: sockaddr_un begins with the same family field as sockaddr; the kernel
        // reads `length` bytes, which lie inside `address`.
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    private static func makeSocket() throws(SocketError) -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw SocketError("socket") }
        return descriptor
    }

    // MARK: Listening

    /// Binds and listens on `path`. The file is created with mode 0600 (the caller
    /// widens it); an existing file at `path` is an error.
    public static func listen(path: String, backlog: Int32 = 32) throws(SocketError) -> UnixSocket {
        let descriptor = try makeSocket()
        let socket = UnixSocket(descriptor: descriptor)
        let previous = umask(0o177)
        defer { umask(previous) }
        let bound = try withAddress(path) { bind(descriptor, $0, $1) }
        guard bound == 0 else { throw SocketError("bind \(path)") }
        guard Glibc.listen(descriptor, backlog) == 0 else { throw SocketError("listen \(path)") }
        return socket
    }

    /// Waits up to `timeout` seconds for a connection; nil if none came.
    public func accept(timeout: Double) throws(SocketError) -> UnixSocket? {
        guard try poll(events: Int16(POLLIN), timeout: timeout) else { return nil }
        let client = Glibc.accept(descriptor, nil, nil)
        guard client >= 0 else {
            if errno == EAGAIN || errno == EINTR || errno == ECONNABORTED { return nil }
            throw SocketError("accept")
        }
        _ = fcntl(client, F_SETFD, FD_CLOEXEC)
        return UnixSocket(descriptor: client)
    }

    // MARK: Connecting

    /// Connects to the socket at `path`, waiting at most `timeout` seconds.
    public static func connect(path: String, timeout: Double) throws(SocketError) -> UnixSocket {
        let descriptor = try makeSocket()
        let socket = UnixSocket(descriptor: descriptor)
        let flags = fcntl(descriptor, F_GETFL)
        _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK)
        let result = try withAddress(path) { Glibc.connect(descriptor, $0, $1) }
        if result != 0 {
            guard errno == EINPROGRESS || errno == EAGAIN else { throw SocketError("connect") }
            guard try socket.poll(events: Int16(POLLOUT), timeout: timeout) else { throw SocketError.timeout("connect") }
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &failure, &length)
            guard failure == 0 else { throw SocketError("connect", code: failure) }
        }
        _ = fcntl(descriptor, F_SETFL, flags)
        return socket
    }

    // MARK: I/O

    /// Waits for `events`; false on timeout (nil waits without end).
    func poll(events: Int16, timeout: Double?) throws(SocketError) -> Bool {
        var entry = pollfd(fd: descriptor, events: events, revents: 0)
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        while true {
            let remaining = deadline.map { max(0, $0.timeIntervalSinceNow) }
            let milliseconds = remaining.map { Int32(min($0 * 1000, Double(Int32.max)).rounded(.up)) } ?? -1
            let result = Glibc.poll(&entry, 1, milliseconds)
            if result > 0 { return true }
            if result == 0 { return false }
            if errno != EINTR { throw SocketError("poll") }
        }
    }

    /// Reads up to `count` bytes, waiting at most `timeout` seconds (nil: no limit).
    /// Returns [] at end of stream; throws a timeout error if nothing came.
    public func read(upTo count: Int, timeout: Double?) throws(SocketError) -> [UInt8] {
        guard try poll(events: Int16(POLLIN), timeout: timeout) else { throw SocketError.timeout("read") }
        var buffer = [UInt8](repeating: 0, count: max(1, count))
        while true {
            // SAFETY: recv writes at most buffer.count bytes into the array's storage.
            let received = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if received >= 0 { return Array(buffer.prefix(received)) }
            if errno == EINTR { continue }
            if errno == ECONNRESET { return [] }
            throw SocketError("read")
        }
    }

    /// Writes all of `bytes`, giving up after `timeout` seconds in all.
    public func write(_ bytes: [UInt8], timeout: Double) throws(SocketError) {
        let deadline = Date().addingTimeInterval(timeout)
        var offset = 0
        while offset < bytes.count {
            guard try poll(events: Int16(POLLOUT), timeout: max(0, deadline.timeIntervalSinceNow)) else {
                throw SocketError.timeout("write")
            }
            // SAFETY: send reads at most the remaining count of bytes from the array's storage.
            let sent = bytes.withUnsafeBytes { raw in
                send(descriptor, raw.baseAddress.map { $0 + offset }, raw.count - offset, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if sent > 0 {
                offset += sent
            } else if sent < 0 && errno != EINTR && errno != EAGAIN {
                throw SocketError("write")
            }
        }
    }

    /// The connected peer's pid, uid and gid (SO_PEERCRED).
    public func peerCredentials() -> (pid: Int32, uid: UInt32, gid: UInt32)? {
        // struct ucred is three 32-bit fields: pid, uid, gid.
        var fields = [UInt32](repeating: 0, count: 3)
        var length = socklen_t(12)
        // SAFETY: the kernel writes at most `length` (12) bytes into the 12-byte array.
        let result = fields.withUnsafeMutableBytes { getsockopt(descriptor, SOL_SOCKET, SO_PEERCRED, $0.baseAddress, &length) }
        guard result == 0, length == 12 else { return nil }
        return (Int32(bitPattern: fields[0]), fields[1], fields[2])
    }

    /// Ends both directions: a thread polling this socket wakes at once.
    public func shutdown() {
        closeLock.lock()
        defer { closeLock.unlock() }
        if !isClosed { _ = Glibc.shutdown(descriptor, Int32(SHUT_RDWR)) }
    }

    /// Ends the sending direction (the peer reads end of stream).
    public func shutdownWrite() {
        closeLock.lock()
        defer { closeLock.unlock() }
        if !isClosed { _ = Glibc.shutdown(descriptor, Int32(SHUT_WR)) }
    }

    /// Closes the descriptor (once).
    public func close() {
        closeLock.lock()
        defer { closeLock.unlock() }
        guard !isClosed else { return }
        isClosed = true
        _ = Glibc.close(descriptor)
    }
}

/// Splits a socket's byte stream into lines, keeping what follows the last line for
/// whoever reads the stream next (the console after a `console` response).
public final class LineReader: @unchecked Sendable {
    public let socket: UnixSocket
    private var buffer: [UInt8] = []

    public init(_ socket: UnixSocket) { self.socket = socket }

    /// The next line without its newline; nil at end of stream. A line longer than
    /// `maximumBytes` is an error, and so is no complete line within `timeout` seconds.
    public func readLine(maximumBytes: Int, timeout: Double?) throws(SocketError) -> [UInt8]? {
        let deadline = timeout.map { Date().addingTimeInterval($0) }
        while true {
            if let newline = buffer.firstIndex(of: 0x0a) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                return line
            }
            guard buffer.count <= maximumBytes else {
                throw SocketError("message longer than \(maximumBytes) bytes", code: 0)
            }
            let remaining = deadline.map { max(0, $0.timeIntervalSinceNow) }
            let chunk = try socket.read(upTo: 64 << 10, timeout: remaining)
            if chunk.isEmpty {
                if buffer.isEmpty { return nil }
                throw SocketError("connection closed in the middle of a message", code: 0)
            }
            buffer += chunk
        }
    }

    /// Bytes read past the last line returned, removed from the reader.
    public func takeBuffered() -> [UInt8] {
        defer { buffer = [] }
        return buffer
    }
}

/// Users and groups, for the socket's ownership and who may use it.
public enum HostAccounts {
    /// The id of group `name` (getgrnam), or nil.
    public static func groupID(named name: String) -> UInt32? {
        if let number = UInt32(name) { return number }
        // SAFETY: getgrnam returns a pointer to static storage, read at once.
        guard let entry = getgrnam(name) else { return nil }
        return entry.pointee.gr_gid
    }

    /// The supplementary groups of process `pid` (the `Groups:` line of /proc/PID/status).
    public static func groups(ofProcess pid: Int32) -> [UInt32] {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") }) else { return [] }
        return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
    }

    public static var effectiveUserID: UInt32 { geteuid() }
}
