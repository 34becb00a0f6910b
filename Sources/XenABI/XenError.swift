/// Xen's error numbers, exactly as public/errno.h defines them. A hypercall that
/// fails returns the negated value in rax; that negation happens in one place,
/// `hypercallReturnValue`.
public enum XenError: Int32, Error, Sendable, CaseIterable, CustomStringConvertible {
    case EPERM = 1
    case ENOENT = 2
    case ESRCH = 3
    case EINTR = 4
    case EIO = 5
    case ENXIO = 6
    case E2BIG = 7
    case ENOEXEC = 8
    case EBADF = 9
    case ECHILD = 10
    case EAGAIN = 11
    case ENOMEM = 12
    case EACCES = 13
    case EFAULT = 14
    case EBUSY = 16
    case EEXIST = 17
    case EXDEV = 18
    case ENODEV = 19
    case ENOTDIR = 20
    case EISDIR = 21
    case EINVAL = 22
    case ENFILE = 23
    case EMFILE = 24
    case ENOSPC = 28
    case EROFS = 30
    case EMLINK = 31
    case EDOM = 33
    case ERANGE = 34
    case EDEADLK = 35
    case ENAMETOOLONG = 36
    case ENOLCK = 37
    case ENOSYS = 38
    case ENOTEMPTY = 39
    case ENODATA = 61
    case ETIME = 62
    case EBADMSG = 74
    case EOVERFLOW = 75
    case EILSEQ = 84
    case ERESTART = 85
    case ENOTSOCK = 88
    case EMSGSIZE = 90
    case EOPNOTSUPP = 95
    case EADDRINUSE = 98
    case EADDRNOTAVAIL = 99
    case ENOBUFS = 105
    case EISCONN = 106
    case ENOTCONN = 107
    case ETIMEDOUT = 110
    case ECONNREFUSED = 111

    /// The value a hypercall returns in rax for this error: -errno as a 64-bit word.
    public var hypercallReturnValue: UInt64 { UInt64(bitPattern: -Int64(rawValue)) }

    public var description: String { "\(name) (-\(rawValue))" }

    /// The symbolic name, e.g. "ENOSYS".
    public var name: String {
        switch self {
        case .EPERM: return "EPERM"
        case .ENOENT: return "ENOENT"
        case .ESRCH: return "ESRCH"
        case .EINTR: return "EINTR"
        case .EIO: return "EIO"
        case .ENXIO: return "ENXIO"
        case .E2BIG: return "E2BIG"
        case .ENOEXEC: return "ENOEXEC"
        case .EBADF: return "EBADF"
        case .ECHILD: return "ECHILD"
        case .EAGAIN: return "EAGAIN"
        case .ENOMEM: return "ENOMEM"
        case .EACCES: return "EACCES"
        case .EFAULT: return "EFAULT"
        case .EBUSY: return "EBUSY"
        case .EEXIST: return "EEXIST"
        case .EXDEV: return "EXDEV"
        case .ENODEV: return "ENODEV"
        case .ENOTDIR: return "ENOTDIR"
        case .EISDIR: return "EISDIR"
        case .EINVAL: return "EINVAL"
        case .ENFILE: return "ENFILE"
        case .EMFILE: return "EMFILE"
        case .ENOSPC: return "ENOSPC"
        case .EROFS: return "EROFS"
        case .EMLINK: return "EMLINK"
        case .EDOM: return "EDOM"
        case .ERANGE: return "ERANGE"
        case .EDEADLK: return "EDEADLK"
        case .ENAMETOOLONG: return "ENAMETOOLONG"
        case .ENOLCK: return "ENOLCK"
        case .ENOSYS: return "ENOSYS"
        case .ENOTEMPTY: return "ENOTEMPTY"
        case .ENODATA: return "ENODATA"
        case .ETIME: return "ETIME"
        case .EBADMSG: return "EBADMSG"
        case .EOVERFLOW: return "EOVERFLOW"
        case .EILSEQ: return "EILSEQ"
        case .ERESTART: return "ERESTART"
        case .ENOTSOCK: return "ENOTSOCK"
        case .EMSGSIZE: return "EMSGSIZE"
        case .EOPNOTSUPP: return "EOPNOTSUPP"
        case .EADDRINUSE: return "EADDRINUSE"
        case .EADDRNOTAVAIL: return "EADDRNOTAVAIL"
        case .ENOBUFS: return "ENOBUFS"
        case .EISCONN: return "EISCONN"
        case .ENOTCONN: return "ENOTCONN"
        case .ETIMEDOUT: return "ETIMEDOUT"
        case .ECONNREFUSED: return "ECONNREFUSED"
        }
    }
}
