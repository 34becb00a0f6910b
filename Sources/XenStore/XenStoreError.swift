// Errors: the xsd_errors table of xs_wire.h, and the transport-level failures.

/// An error the store reports to a client.
///
/// The cases are exactly the `xsd_errors[]` table of Xen's
/// `xen/include/public/io/xs_wire.h`, in the same order. On the wire an error is
/// an `XS_ERROR` message whose payload is the case name followed by a NUL
/// (`"EINVAL\0"`); the numeric value is never transmitted (`docs/misc/xenstore.txt`,
/// "Error replies").
public enum XenStoreError: String, Error, Sendable, Hashable, CaseIterable {
    case EINVAL
    case EACCES
    case EEXIST
    case EISDIR
    case ENOENT
    case ENOMEM
    case ENOSPC
    case EIO
    case ENOTEMPTY
    case ENOSYS
    case EROFS
    case EBUSY
    case EAGAIN
    case EISCONN
    case E2BIG
    case EPERM

    /// The errno name, as sent in an `XS_ERROR` payload.
    public var name: String { rawValue }

    /// The positive errno value from Xen's `xen/include/public/errno.h`.
    public var errno: Int32 {
        switch self {
        case .EPERM: 1
        case .ENOENT: 2
        case .EIO: 5
        case .E2BIG: 7
        case .EAGAIN: 11
        case .ENOMEM: 12
        case .EACCES: 13
        case .EBUSY: 16
        case .EEXIST: 17
        case .EISDIR: 21
        case .EINVAL: 22
        case .ENOSPC: 28
        case .EROFS: 30
        case .ENOSYS: 38
        case .ENOTEMPTY: 39
        case .EISCONN: 106
        }
    }

    /// The `XS_ERROR` payload: the name and a terminating NUL.
    public var payload: [UInt8] { Array(rawValue.utf8) + [0] }

    /// Parses an `XS_ERROR` payload (`"EINVAL\0"`); a missing NUL is tolerated.
    public init?(payload: some Collection<UInt8>) {
        var bytes = Array(payload)
        if bytes.last == 0 { bytes.removeLast() }
        guard let error = XenStoreError(rawValue: String(decoding: bytes, as: UTF8.self)) else { return nil }
        self = error
    }
}

/// A transport failure that makes a connection's byte stream unusable.
///
/// xenstored does not answer these: it stops serving the connection and, when the
/// guest negotiated `XENSTORE_SERVER_FEATURE_ERROR`, writes `ringErrorCode` into the
/// ring's `error` field (`handle_input` in `tools/xenstored/core.c`,
/// `ignore_connection` in `domain.c`). The caller should do the same and drop
/// the connection.
public enum XenStoreTransportError: Error, Sendable, Hashable {
    /// A header announced more than `XENSTORE_PAYLOAD_MAX` (4096) payload bytes;
    /// "its xenstored connection will be immediately killed" (`docs/misc/xenstore.txt`).
    case payloadTooLarge(length: UInt32)
    /// The request ring's producer is more than a ring size ahead of its consumer.
    /// Both sides check `prod - cons <= XENSTORE_RING_SIZE` before using a ring
    /// (`check_indexes` in Linux `drivers/xen/xenbus/xenbus_comms.c` and in
    /// `tools/xenstored/domain.c`).
    case brokenRequestRing(consumer: UInt32, producer: UInt32)
    /// The response ring's producer is more than a ring size ahead of its consumer.
    case brokenResponseRing(consumer: UInt32, producer: UInt32)

    /// The value for the ring's `error` field: `XENSTORE_ERROR_PROTO` for an
    /// oversized payload, `XENSTORE_ERROR_RINGIDX` for bad indexes.
    public var ringErrorCode: UInt32 {
        switch self {
        case .payloadTooLarge: XenStoreRing.errorProtocol
        case .brokenRequestRing, .brokenResponseRing: XenStoreRing.errorRingIndex
        }
    }
}
