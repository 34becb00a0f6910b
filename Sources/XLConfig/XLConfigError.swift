// Errors and warnings about xl config files. Each renders as one line that names the
// file and line, and the key for anything beyond syntax.

/// Why a config file was refused.
public enum XLConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `guest.cfg:3:9: expected ...`: the text is not xl config syntax (libxlu's grammar).
    case syntax(SourceLocation, String)
    /// `guest.cfg:4: memory: expected an integer number of MiB, got the string "lots"`:
    /// a key has a value of the wrong type or out of range.
    case invalidValue(key: String, location: SourceLocation, message: String)
    /// `guest.cfg: name: ...`: a required key is absent.
    case missingKey(key: String, source: String, message: String)
    /// `guest.cfg:2: type = "hvm" is not supported by Domus yet`: valid for xl, but asks
    /// for something Domus cannot do at all, so no domain could be built from it.
    case unsupported(key: String, location: SourceLocation, message: String)
    /// `guest.cfg:7: disk[1] "/dev/vg/x,qcow3,xvdb": unknown format "qcow3"`: one entry of
    /// a device list (`disk`, `vif`) is invalid. `index` counts from 0, like xl's DEVIDs.
    case invalidDevice(key: String, index: Int, spec: String, location: SourceLocation, message: String)

    /// The key the error is about; `nil` for syntax errors.
    public var key: String? {
        switch self {
        case .syntax: nil
        case .invalidValue(let key, _, _), .missingKey(let key, _, _), .unsupported(let key, _, _),
            .invalidDevice(let key, _, _, _, _):
            key
        }
    }

    public var description: String {
        switch self {
        case .syntax(let location, let message):
            "\(location): \(message)"
        case .invalidValue(let key, let location, let message):
            "\(location.source):\(location.line): \(key): \(message)"
        case .missingKey(let key, let source, let message):
            "\(source): \(key): \(message)"
        case .unsupported(_, let location, let message):
            "\(location.source):\(location.line): \(message)"
        case .invalidDevice(let key, let index, let spec, let location, let message):
            "\(location.source):\(location.line): \(key)[\(index)] \(quoted(spec)): \(message)"
        }
    }
}

/// Something Domus noticed and went on past: an unknown key, a key xl knows that Domus
/// ignores, a deprecated spelling. Returned to the caller, never printed here.
public struct XLConfigWarning: Sendable, Hashable, CustomStringConvertible {
    public let key: String
    public let location: SourceLocation
    public let message: String

    public init(key: String, location: SourceLocation, message: String) {
        self.key = key
        self.location = location
        self.message = message
    }

    /// `guest.cfg:12: warning: memroy: unknown key, ignored (did you mean memory?)`
    public var description: String {
        "\(location.source):\(location.line): warning: \(key): \(message)"
    }
}

/// Why a specification string (a disk, a vif, a CPU list) was refused, without the config
/// context; `DomainConfiguration` wraps it with the file, line and key. The same parsers
/// can serve `xl block-attach` and `xl network-attach` style arguments.
public struct SpecStringError: Error, Sendable, Hashable, CustomStringConvertible {
    public let message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
