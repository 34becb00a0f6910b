import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The client's side of `domus console` (xl console): the terminal in raw mode,
/// keystrokes to the daemon, the guest's output to the terminal, Ctrl-] to detach.
/// The terminal's settings are restored on every path out, signals included.
public final class RemoteConsole: @unchecked Sendable {
    /// How the session ended.
    public enum Ending: Sendable, Equatable {
        /// The user typed Ctrl-].
        case detached
        /// The daemon closed the console: the domain ended, or the daemon stopped.
        case closed
    }

    private let socket: UnixSocket
    private let pending: [UInt8]
    private let input: Int32
    private let output: @Sendable ([UInt8]) -> Void
    private let state = NSCondition()
    private var detached = false
    private var saved = termios()
    private var isRaw = false

    /// `socket` is the connection after its `console` response, `pending` any bytes of
    /// it already read; `input` the terminal (or any readable descriptor).
    public init(socket: UnixSocket, pending: [UInt8], input: Int32 = STDIN_FILENO,
                output: @escaping @Sendable ([UInt8]) -> Void) {
        self.socket = socket
        self.pending = pending
        self.input = input
        self.output = output
    }

    /// Relays until detached or closed.
    public func run() -> Ending {
        makeRaw()
        defer { restore() }
        if !pending.isEmpty { output(pending) }
        let inputDone = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            forwardInput()
            inputDone.signal()
        }
        thread.name = "console-input"
        thread.start()
        while true {
            let bytes: [UInt8]
            do { bytes = try socket.read(upTo: 16 << 10, timeout: 1) } catch {
                if error.isTimeout { continue }
                break
            }
            if bytes.isEmpty { break }
            output(bytes)
        }
        state.lock()
        let ending: Ending = detached ? .detached : .closed
        detached = true   // stops the input thread
        state.unlock()
        socket.shutdown()
        _ = inputDone.wait(timeout: .now() + 1)
        return ending
    }

    private var isDetached: Bool {
        state.lock()
        defer { state.unlock() }
        return detached
    }

    private func forwardInput() {
        var buffer = [UInt8](repeating: 0, count: 1024)
        while !isDetached {
            var descriptor = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, 100)
            if ready < 0 && errno != EINTR { return }
            guard ready > 0 else { continue }
            let count = read(input, &buffer, buffer.count)
            if count <= 0 { return }   // end of input: the console stays output-only
            var bytes = Array(buffer[0..<count])
            var detach = false
            if let escape = bytes.firstIndex(of: InteractiveConsole.escape) {
                bytes = Array(bytes[..<escape])
                detach = true
            }
            if !bytes.isEmpty {
                do { try socket.write(bytes, timeout: 10) } catch { return }
            }
            if detach {
                state.lock()
                detached = true
                state.unlock()
                socket.shutdown()
                return
            }
        }
    }

    private func makeRaw() {
        guard isatty(input) == 1, tcgetattr(input, &saved) == 0 else { return }
        var raw = saved
        cfmakeraw(&raw)
        raw.c_oflag = saved.c_oflag   // keep output processing for the guest's text
        guard tcsetattr(input, TCSANOW, &raw) == 0 else { return }
        isRaw = true
        Self.active = self
        for signalNumber in [SIGTERM, SIGHUP, SIGINT, SIGQUIT] {
            signal(signalNumber) { number in
                RemoteConsole.active?.restore()
                exit(128 + number)
            }
        }
    }

    private func restore() {
        guard isRaw else { return }
        _ = tcsetattr(input, TCSANOW, &saved)
        isRaw = false
    }

    /// The console whose terminal a signal handler must restore.
    nonisolated(unsafe) static var active: RemoteConsole?
}
