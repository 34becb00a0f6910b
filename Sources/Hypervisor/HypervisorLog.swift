import Synchronization

/// The hypervisor's log: what `xl dmesg` shows on Xen. A bounded ring of lines kept
/// in memory, optionally echoed to a sink (stderr for `domus run --verbose`).
/// Thread-safe: vCPU threads and backends write to it concurrently.
public final class HypervisorLog: Sendable {
    public enum Level: Int, Sendable, Comparable {
        case error = 0, warning, info, debug, trace
        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }
        var tag: String {
            switch self {
            case .error: return "error"
            case .warning: return "warning"
            case .info: return "info"
            case .debug: return "debug"
            case .trace: return "trace"
            }
        }
    }

    private struct State {
        var lines: [String] = []
        var start = 0
        var echoLevel: Level
        var sink: (@Sendable (String) -> Void)?
    }

    private let state: Mutex<State>
    /// Lines kept for `dmesg`.
    public let capacity: Int

    public init(capacity: Int = 4096, echoLevel: Level = .warning, sink: (@Sendable (String) -> Void)? = nil) {
        self.capacity = max(1, capacity)
        state = Mutex(State(echoLevel: echoLevel, sink: sink))
    }

    /// Sets what is echoed where (nil: nothing).
    public func echo(to sink: (@Sendable (String) -> Void)?, level: Level) {
        state.withLock { $0.sink = sink; $0.echoLevel = level }
    }

    /// Whether a line at `level` would be echoed (callers skip building trace strings otherwise).
    public func wouldEcho(_ level: Level) -> Bool {
        state.withLock { $0.sink != nil && level <= $0.echoLevel }
    }

    /// Records a line. Debug and trace lines are kept only when echoed, so a busy guest
    /// cannot flush the ring with them.
    public func log(_ level: Level, _ message: @autoclosure () -> String) {
        let echo = state.withLock { ($0.sink, level <= $0.echoLevel) }
        if level >= .debug && !echo.1 { return }
        let line = "(domus) [\(level.tag)] \(message())"
        state.withLock { state in
            if state.lines.count < capacity {
                state.lines.append(line)
            } else {
                state.lines[state.start] = line
                state.start = (state.start + 1) % capacity
            }
        }
        if let sink = echo.0, echo.1 { sink(line) }
    }

    /// The kept lines, oldest first.
    public func lines() -> [String] {
        state.withLock { state in
            Array(state.lines[state.start...]) + Array(state.lines[..<state.start])
        }
    }
}
