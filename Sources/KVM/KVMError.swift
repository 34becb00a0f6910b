#if canImport(Glibc)
import Glibc
#endif

/// A failed KVM operation: which one, and the errno the kernel gave.
public struct KVMError: Error, Sendable, CustomStringConvertible {
    public let operation: String
    public let errno: Int32

    public init(_ operation: String, errno: Int32) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        // SAFETY: strerror returns a pointer to a static or thread-local string.
        let message = String(cString: strerror(errno))
        return "\(operation): \(message) (errno \(errno))"
    }
}
