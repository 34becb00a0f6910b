import Foundation
import Synchronization

/// The daemon's own log: one logfmt line per event
/// (`time=2025-01-31T12:00:00.123Z level=info msg="domain created" domid=1 name=web`),
/// so that journald, `grep` and log shippers can all read it. Thread-safe.
public final class StructuredLog: Sendable {
    /// Severity, most severe first; `--log-level` keeps this level and the ones above it.
    public enum Level: Int, Sendable, Comparable, CaseIterable {
        case error = 0, warning, info, debug

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rawValue < rhs.rawValue }

        public var name: String {
            switch self {
            case .error: return "error"
            case .warning: return "warning"
            case .info: return "info"
            case .debug: return "debug"
            }
        }

        /// Parses `error`, `warning` (or `warn`), `info`, `debug`.
        public init?(name: String) {
            switch name.lowercased() {
            case "error": self = .error
            case "warning", "warn": self = .warning
            case "info": self = .info
            case "debug": self = .debug
            default: return nil
            }
        }
    }

    private let level: Level
    private let sink: @Sendable (String) -> Void
    private let clock: @Sendable () -> Date

    /// Logs lines at `level` and above to `sink` (one call per line, without the newline).
    public init(level: Level = .info, clock: @escaping @Sendable () -> Date = { Date() },
                sink: @escaping @Sendable (String) -> Void) {
        self.level = level
        self.sink = sink
        self.clock = clock
    }

    /// A log that writes to standard error.
    public static func standardError(level: Level) -> StructuredLog {
        let lock = Mutex<Void>(())
        return StructuredLog(level: level) { line in
            lock.withLock { _ in FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
    }

    /// A log that drops everything (tests, benchmarks).
    public static let discard = StructuredLog(level: .error) { _ in }

    public func wouldLog(_ level: Level) -> Bool { level <= self.level }

    /// Logs `message` with `fields` in the order given.
    public func log(_ level: Level, _ message: String, _ fields: KeyValuePairs<String, Any> = [:]) {
        guard wouldLog(level) else { return }
        sink(Self.format(time: clock(), level: level, message: message, fields: fields.map { ($0.key, "\($0.value)") }))
    }

    public func error(_ message: String, _ fields: KeyValuePairs<String, Any> = [:]) { log(.error, message, fields) }
    public func warning(_ message: String, _ fields: KeyValuePairs<String, Any> = [:]) { log(.warning, message, fields) }
    public func info(_ message: String, _ fields: KeyValuePairs<String, Any> = [:]) { log(.info, message, fields) }
    public func debug(_ message: String, _ fields: KeyValuePairs<String, Any> = [:]) { log(.debug, message, fields) }

    /// One logfmt line: `time`, `level`, `msg`, then the fields.
    static func format(time: Date, level: Level, message: String, fields: [(String, String)]) -> String {
        var line = "time=\(timestamp(time)) level=\(level.name) msg=\(quote(message))"
        for (key, value) in fields {
            line += " \(key)=\(quote(value))"
        }
        return line
    }

    /// RFC 3339 UTC with milliseconds.
    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    /// A logfmt value: bare if it is a plain word, else double-quoted with `\"`, `\\`
    /// and control characters escaped.
    static func quote(_ value: String) -> String {
        let plain = !value.isEmpty && value.unicodeScalars.allSatisfy { scalar in
            scalar.value > 0x20 && scalar.value < 0x7f && scalar != "\"" && scalar != "=" && scalar != "\\"
        }
        if plain { return value }
        var quoted = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            case "\r": quoted += "\\r"
            case "\t": quoted += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f {
                    quoted += String(format: "\\u%04x", scalar.value)
                } else {
                    quoted.unicodeScalars.append(scalar)
                }
            }
        }
        return quoted + "\""
    }
}
