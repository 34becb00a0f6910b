// The syntax tree of an xl config file: settings in order, with where each came from.
//
// Follows libxlu (tools/libs/util/libxlu_cfg_y.y, libxlu_cfg.c) and the SYNTAX section of
// xl.cfg(5).

/// A place in a config source: the file (or "command line argument N"), a 1-based line
/// and a 1-based column counted in characters.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    /// The name of the source, as given to the parser: usually the config file's path.
    public let source: String
    public let line: Int
    public let column: Int

    public init(source: String, line: Int, column: Int) {
        self.source = source
        self.line = line
        self.column = column
    }

    /// `source:line:column`, the form compilers use, so editors can jump to it.
    public var description: String { "\(source):\(line):\(column)" }
}

/// A value as xl's grammar has it (xl.cfg(5), SYNTAX).
///
/// libxlu keeps numbers as text until a key asks for a number (`xlu_cfg_get_long` runs
/// `strtol(text, 0)` then), so a number keeps its spelling here too: `name = 1234` is the
/// name "1234", and `memory = "512"` is 512 MiB, exactly as in xl.
public enum XLConfigValue: Sendable, Hashable, CustomStringConvertible {
    /// An unquoted integer, as written: `512`, `0x200`, or `01000` (octal, as C's `strtol`).
    case number(String)
    /// A quoted string with its escapes resolved.
    case string(String)
    /// `[ value, value, ... ]`; lists may nest and mix types.
    case list([XLConfigValue])

    /// The text of an atom (number or string); `nil` for a list.
    public var text: String? {
        switch self {
        case .number(let text), .string(let text): text
        case .list: nil
        }
    }

    /// How error messages name this value: `the number 12`, `the string "lots"`, `a list`.
    public var description: String {
        switch self {
        case .number(let text): "the number \(text)"
        case .string(let text): "the string \(quoted(text))"
        case .list(let values): values.isEmpty ? "an empty list" : "a list"
        }
    }
}

/// One `KEY = VALUE` or `KEY += VALUE` statement.
public struct XLConfigSetting: Sendable, Hashable {
    /// `=` replaces any earlier value; `+=` appends to it (libxlu `XLU_OP_ADDITION`).
    public enum Operation: Sendable, Hashable {
        case assign
        case append
    }

    public let key: String
    public let operation: Operation
    /// The value exactly as this statement wrote it.
    public let value: XLConfigValue
    /// The value the key has after this statement: for `+=`, the earlier value with this
    /// one appended (strings are concatenated, lists joined), as libxlu's
    /// `xlu__cfg_concat_vals` does. For `=`, the same as `value`.
    public let effectiveValue: XLConfigValue
    /// Where the key starts.
    public let location: SourceLocation
    /// Where the value starts.
    public let valueLocation: SourceLocation

    public init(
        key: String, operation: Operation, value: XLConfigValue, effectiveValue: XLConfigValue,
        location: SourceLocation, valueLocation: SourceLocation
    ) {
        self.key = key
        self.operation = operation
        self.value = value
        self.effectiveValue = effectiveValue
        self.location = location
        self.valueLocation = valueLocation
    }
}

/// A parsed xl config: every setting in the order it was read, file first, then any
/// command-line overrides.
///
/// A later setting of a key overrides an earlier one; `+=` appends to it. This is xl's
/// behaviour: libxlu pushes each setting on the front of a list and looks keys up from the
/// front, so the last one wins.
public struct XLConfigFile: Sendable, Hashable {
    /// The name the file was parsed under, used in every message about it.
    public let sourceName: String
    /// Every statement, in reading order.
    public private(set) var settings: [XLConfigSetting] = []
    /// Index in `settings` of the last statement of each key.
    private var lastSettingIndex: [String: Int] = [:]

    /// An empty config named `sourceName`.
    public init(sourceName: String) {
        self.sourceName = sourceName
    }

    /// Parses xl config text (xl.cfg(5), SYNTAX).
    public init(parsing text: String, sourceName: String) throws(XLConfigError) {
        try self.init(parsing: Array(text.utf8), sourceName: sourceName)
    }

    /// Parses xl config bytes as read from a file. Strings must be UTF-8.
    public init(parsing bytes: [UInt8], sourceName: String) throws(XLConfigError) {
        self.init(sourceName: sourceName)
        try append(parsing: bytes, sourceName: sourceName)
    }

    /// Parses more config text as if it followed what was read so far: its settings
    /// override earlier ones and its `+=` append to them.
    public mutating func append(parsing bytes: [UInt8], sourceName: String) throws(XLConfigError) {
        var parser = XLConfigParser(bytes: bytes, sourceName: sourceName)
        try parser.parse(into: &self)
    }

    /// Applies `xl create CFG KEY=VALUE...` overrides: xl appends each argument as one more
    /// line after the file (xl_vmcontrol.c, `extra_config`), so each is a config line that
    /// may hold several `;`-separated settings, and strings need their quotes:
    /// `'name="web2"'`, `memory=1024`, `'extra="single"; vcpus=2'`.
    ///
    /// The caller picks the overrides out of the command line; xl takes every argument that
    /// contains `=`. Argument N (from 1) is reported as the source `command line argument N`.
    public mutating func applyOverrides(_ arguments: [String]) throws(XLConfigError) {
        for (index, argument) in arguments.enumerated() {
            try append(parsing: Array(argument.utf8), sourceName: "command line argument \(index + 1)")
        }
    }

    /// The effective setting of `key`: its last statement, whose `effectiveValue` includes
    /// any `+=` appends. `nil` if the key was never set.
    public subscript(key: String) -> XLConfigSetting? {
        guard let index = lastSettingIndex[key] else { return nil }
        return settings[index]
    }

    /// Each key that was set, once, in the order of its first appearance.
    public var keys: [String] {
        var seen = Set<String>()
        return settings.compactMap { seen.insert($0.key).inserted ? $0.key : nil }
    }

    /// Records a statement, resolving `+=` against the key's current value.
    mutating func record(
        key: String, operation: XLConfigSetting.Operation, value: XLConfigValue,
        location: SourceLocation, valueLocation: SourceLocation
    ) throws(XLConfigError) {
        var effective = value
        if operation == .append, let previous = self[key]?.effectiveValue {
            switch (previous, value) {
            case (.list(let earlier), .list(let later)):
                effective = .list(earlier + later)
            case (.list, _), (_, .list):
                throw .syntax(
                    valueLocation,
                    "`\(key) +=` cannot add \(value.kindName) to \(previous.kindName); "
                        + "both sides of += must be strings or both lists")
            default:
                effective = .string((previous.text ?? "") + (value.text ?? ""))
            }
        }
        lastSettingIndex[key] = settings.count
        settings.append(
            XLConfigSetting(
                key: key, operation: operation, value: value, effectiveValue: effective,
                location: location, valueLocation: valueLocation))
    }
}

extension XLConfigValue {
    /// `a list` or `a string`, for += mismatch messages.
    var kindName: String {
        switch self {
        case .list: "a list"
        case .number, .string: "a string"
        }
    }
}

/// `text` in double quotes with `"` and `\` and control characters escaped, so messages
/// show exactly what was read.
func quoted(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\t": result += "\\t"
        case "\r": result += "\\r"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16)
                result += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result + "\""
}
