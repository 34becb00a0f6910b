import Backends
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Connects the terminal to a domain's console both ways, as `xl console` does: the
/// terminal in raw mode, keystrokes into the console's input ring, Ctrl-] to detach.
/// The terminal's settings are restored when the console stops, on every path.
public final class InteractiveConsole: @unchecked Sendable {
    /// Ctrl-] (the escape character of `xl console` and telnet).
    public static let escape: UInt8 = 0x1d

    private let input: Int32
    private var saved = termios()
    private var isRaw = false
    private let stopped = NSCondition()
    private var running = true
    private var thread: Thread?

    public init(input: Int32 = STDIN_FILENO) {
        self.input = input
    }

    /// Puts the terminal in raw mode (if it is one) and forwards input to `console`.
    /// `onDetach` runs when the user types Ctrl-].
    public func start(console: ConsoleBackend, onDetach: @escaping @Sendable () -> Void) {
        if isatty(input) == 1, tcgetattr(input, &saved) == 0 {
            var raw = saved
            cfmakeraw(&raw)
            raw.c_oflag = saved.c_oflag   // keep output processing for the guest's text
            if tcsetattr(input, TCSANOW, &raw) == 0 {
                isRaw = true
                Self.active = self
                signal(SIGTERM) { _ in InteractiveConsole.active?.restore(); exit(143) }
                signal(SIGHUP) { _ in InteractiveConsole.active?.restore(); exit(129) }
            }
        }
        let thread = Thread { [self] in forward(to: console, onDetach: onDetach) }
        thread.name = "console-input"
        self.thread = thread
        thread.start()
    }

    private func forward(to console: ConsoleBackend, onDetach: @Sendable () -> Void) {
        var buffer = [UInt8](repeating: 0, count: 256)
        while isRunning {
            var descriptor = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 100) > 0 else { continue }
            let count = read(input, &buffer, buffer.count)
            if count <= 0 { break }   // end of input: the console stays output-only
            var bytes = Array(buffer[0..<count])
            if let escape = bytes.firstIndex(of: Self.escape) {
                bytes = Array(bytes[..<escape])
                send(bytes, to: console)
                onDetach()
                break
            }
            send(bytes, to: console)
        }
    }

    /// Sends everything, waiting while the guest's input ring is full.
    private func send(_ bytes: [UInt8], to console: ConsoleBackend) {
        var remaining = bytes[...]
        var attempts = 0
        while !remaining.isEmpty && isRunning && attempts < 500 {
            let written = console.send(Array(remaining))
            remaining = remaining.dropFirst(written)
            if written == 0 { attempts += 1; usleep(10_000) }
        }
    }

    private var isRunning: Bool {
        stopped.lock(); defer { stopped.unlock() }
        return running
    }

    /// Stops forwarding and restores the terminal.
    public func stop() {
        stopped.lock(); running = false; stopped.unlock()
        restore()
    }

    private func restore() {
        if isRaw {
            _ = tcsetattr(input, TCSANOW, &saved)
            isRaw = false
        }
    }

    deinit { restore() }

    /// The console whose terminal a signal handler must restore.
    nonisolated(unsafe) static var active: InteractiveConsole?
}
