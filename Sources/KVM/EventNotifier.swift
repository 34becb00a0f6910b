import CKVM
#if canImport(Glibc)
import Glibc
#endif

/// An eventfd: one thread signals, another waits with a timeout. Used to wake vCPU
/// threads blocked in SCHEDOP_block.
public final class EventNotifier: @unchecked Sendable {
    let descriptor: Int32

    public init() throws(KVMError) {
        let descriptor = ckvm_eventfd()
        guard descriptor >= 0 else { throw KVMError("eventfd", errno: errno) }
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    public func signal() {
        var one: UInt64 = 1
        // SAFETY: writes 8 bytes from a local integer to our own eventfd.
        _ = withUnsafeBytes(of: &one) { write(descriptor, $0.baseAddress, 8) }
    }

    /// Waits until signalled or `nanoseconds` pass; clears the signal.
    public func wait(nanoseconds: UInt64) {
        if nanoseconds > 0 {
            let milliseconds = Int32(min((nanoseconds + 999_999) / 1_000_000, UInt64(Int32.max)))
            _ = ckvm_wait_readable(descriptor, milliseconds)
        }
        var value: UInt64 = 0
        // SAFETY: reads 8 bytes into a local integer from our own non-blocking eventfd.
        _ = withUnsafeMutableBytes(of: &value) { read(descriptor, $0.baseAddress, 8) }
    }
}
