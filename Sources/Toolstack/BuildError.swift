import ImageLoader

/// Why a domain could not be built. Each case reads as one line for the user; all of
/// them are the user's input being wrong (exit status 2) except `machine`.
public enum BuildError: Error, CustomStringConvertible {
    case kernel(ImageError)
    case initrd(path: String, reason: String)
    case memoryTooSmall(neededMiB: UInt64, givenMiB: UInt64)
    case invalidArgument(String)
    case unsupportedKernel(String)
    case machine(String)

    public var description: String {
        switch self {
        case let .kernel(error): return "\(error)"
        case let .initrd(path, reason): return "\(path): \(reason)"
        case let .memoryTooSmall(needed, given):
            return "memory too small: the image needs at least \(needed) MiB, the domain has \(given) MiB"
        case let .invalidArgument(message): return message
        case let .unsupportedKernel(message): return message
        case let .machine(message): return message
        }
    }

    /// Whether the error is the user's input (exit 2) rather than the host's.
    public var isUserError: Bool {
        if case .machine = self { return false }
        return true
    }
}
