import Foundation

/// A connection to domusd: sends requests and reads their responses, each bounded by
/// a timeout. Not thread-safe: one conversation at a time.
public final class ControlClient: @unchecked Sendable {
    public let socketPath: String
    let socket: UnixSocket
    let reader: LineReader

    /// Connects to the daemon at `socketPath`. The error reads
    /// `cannot connect to domusd at PATH: ...`, with a hint when the daemon is not running.
    public init(socketPath: String = ControlServer.defaultSocketPath, timeout: Double = 5) throws(ControlError) {
        self.socketPath = socketPath
        do {
            socket = try UnixSocket.connect(path: socketPath, timeout: timeout)
        } catch {
            var message = "cannot connect to domusd at \(socketPath): \(error.description)"
            if error.code == ENOENT || error.code == ECONNREFUSED {
                message += " (is domusd running? start it with `domusd --socket \(socketPath)`)"
            } else if error.code == EACCES {
                message += " (run as root or as a member of domusd's --group)"
            }
            throw ControlError(.host, message)
        }
        reader = LineReader(socket)
    }

    /// Sends `request` and returns its response; a response with `ok: false` is thrown
    /// as the daemon's error.
    @discardableResult
    public func call(_ request: ControlRequest, timeout: Double = 30) throws(ControlError) -> ControlResponse {
        let response = try exchange(request, timeout: timeout)
        guard response.ok else {
            throw ControlError(response.errorKind ?? .internal, response.error ?? "domusd refused the request without saying why")
        }
        return response
    }

    /// Sends `request` and returns the response as it came, `ok` or not.
    public func exchange(_ request: ControlRequest, timeout: Double = 30) throws(ControlError) -> ControlResponse {
        do {
            try socket.write(ControlCodec.encode(request), timeout: timeout)
            guard let line = try reader.readLine(maximumBytes: 64 << 20, timeout: timeout) else {
                throw ControlError(.host, "domusd closed the connection without answering")
            }
            return try ControlCodec.decode(ControlResponse.self, from: line)
        } catch let error as SocketError {
            if error.isTimeout {
                throw ControlError(.timeout, "domusd did not answer \(request.op) within \(Int(timeout)) s")
            }
            throw ControlError(.host, "talking to domusd at \(socketPath): \(error.description)")
        } catch let error as ControlError {
            throw error
        } catch {
            throw ControlError(.internal, "\(error)")
        }
    }

    /// After a `console` response, the connection is the console's byte stream: the
    /// socket and any bytes of it already read.
    public func takeConsoleStream() -> (socket: UnixSocket, pending: [UInt8]) {
        (socket, reader.takeBuffered())
    }

    /// Closes the connection.
    public func close() { socket.close() }
}
