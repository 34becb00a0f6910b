// XenStore message types: `enum xsd_sockmsg_type` of xen/include/public/io/xs_wire.h.

/// The `type` field of a XenStore message header.
///
/// The numbers are those of `enum xsd_sockmsg_type` in Xen's
/// `xen/include/public/io/xs_wire.h` and the table in `docs/misc/xenstore.txt`.
/// Value 20 was `XS_RESTRICT`, which Xen removed; it is deliberately absent, so a
/// message carrying it is an unknown type and gets `ENOSYS`, as C xenstored does.
public enum XenStoreMessageType: UInt32, Sendable, Hashable, CaseIterable {
    /// `XS_CONTROL` (alias `XS_DEBUG`): implementation specific commands. Optional.
    case control = 0
    /// `XS_DIRECTORY`: `<path>|` → the leaf names of the children, each NUL terminated.
    case directory = 1
    /// `XS_READ`: `<path>|` → the value, raw bytes without terminator.
    case read = 2
    /// `XS_GET_PERMS`: `<path>|` → permission strings such as `r0|`.
    case getPerms = 3
    /// `XS_WATCH`: `<wpath>|<token>|` → `OK|`, then a first `WATCH_EVENT`.
    case watch = 4
    /// `XS_UNWATCH`: `<wpath>|<token>|` → `OK|`.
    case unwatch = 5
    /// `XS_TRANSACTION_START`: `|` → `<transid>|` as unsigned decimal.
    case transactionStart = 6
    /// `XS_TRANSACTION_END`: `T|` commits, `F|` aborts.
    case transactionEnd = 7
    /// `XS_INTRODUCE`: `<domid>|<gfn>|<evtchn>|` (privileged).
    case introduce = 8
    /// `XS_RELEASE`: `<domid>|` (privileged).
    case release = 9
    /// `XS_GET_DOMAIN_PATH`: `<domid>|` → `/local/domain/<domid>|`.
    case getDomainPath = 10
    /// `XS_WRITE`: `<path>|<value|>`.
    case write = 11
    /// `XS_MKDIR`: `<path>|`.
    case mkdir = 12
    /// `XS_RM`: `<path>|`.
    case rm = 13
    /// `XS_SET_PERMS`: `<path>|<perm-as-string>|+`.
    case setPerms = 14
    /// `XS_WATCH_EVENT`: `<epath>|<token>|`, sent by the store only.
    case watchEvent = 15
    /// `XS_ERROR`: `E<name>|`, sent by the store only.
    case error = 16
    /// `XS_IS_DOMAIN_INTRODUCED`: `<domid>|` → `T|` or `F|` (privileged).
    case isDomainIntroduced = 17
    /// `XS_RESUME`: `<domid>|` (privileged).
    case resume = 18
    /// `XS_SET_TARGET`: `<domid>|<tdomid>|` (privileged).
    case setTarget = 19
    /// `XS_RESET_WATCHES`: `|`, drops the caller's watches and transactions.
    case resetWatches = 21
    /// `XS_DIRECTORY_PART`: `<path>|<offset>|` → `<gencnt>|<child>|*`.
    case directoryPart = 22
    /// `XS_GET_FEATURE`. Optional.
    case getFeature = 23
    /// `XS_SET_FEATURE`. Optional.
    case setFeature = 24
    /// `XS_GET_QUOTA`: `[[<domid>|]<quota>|]` → `<value>|` (privileged).
    case getQuota = 25
    /// `XS_SET_QUOTA`: `[<domid>|]<quota>|<value>|` (privileged).
    case setQuota = 26

    /// `XS_DEBUG`, the deprecated alias of `XS_CONTROL`.
    public static var debug: XenStoreMessageType { .control }

    /// The name xenstored uses in its logs (`wire_funcs[].str` in `tools/xenstored/core.c`).
    public var name: String {
        switch self {
        case .control: "CONTROL"
        case .directory: "DIRECTORY"
        case .read: "READ"
        case .getPerms: "GET_PERMS"
        case .watch: "WATCH"
        case .unwatch: "UNWATCH"
        case .transactionStart: "TRANSACTION_START"
        case .transactionEnd: "TRANSACTION_END"
        case .introduce: "INTRODUCE"
        case .release: "RELEASE"
        case .getDomainPath: "GET_DOMAIN_PATH"
        case .write: "WRITE"
        case .mkdir: "MKDIR"
        case .rm: "RM"
        case .setPerms: "SET_PERMS"
        case .watchEvent: "WATCH_EVENT"
        case .error: "ERROR"
        case .isDomainIntroduced: "IS_DOMAIN_INTRODUCED"
        case .resume: "RESUME"
        case .setTarget: "SET_TARGET"
        case .resetWatches: "RESET_WATCHES"
        case .directoryPart: "DIRECTORY_PART"
        case .getFeature: "GET_FEATURE"
        case .setFeature: "SET_FEATURE"
        case .getQuota: "GET_QUOTA"
        case .setQuota: "SET_QUOTA"
        }
    }
}
