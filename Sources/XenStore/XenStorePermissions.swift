// Node permissions: struct xs_permissions of xenstore_lib.h and perm_for_conn() in
// tools/xenstored/core.c.

/// The rights a permission entry grants: `XS_PERM_READ` and `XS_PERM_WRITE` of
/// Xen's `tools/include/xenstore_lib.h`, written as the letters `n`, `r`, `w`, `b`.
public struct XenStoreAccess: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let read = XenStoreAccess(rawValue: 1)
    public static let write = XenStoreAccess(rawValue: 2)
    /// `n`: no access.
    public static let none: XenStoreAccess = []
    /// `b`: read and write.
    public static let both: XenStoreAccess = [.read, .write]

    /// The letter used on the wire.
    public var letter: Character {
        switch (contains(.read), contains(.write)) {
        case (true, true): "b"
        case (true, false): "r"
        case (false, true): "w"
        case (false, false): "n"
        }
    }

    /// Parses a wire letter (`xenstore_strings_to_perms`).
    public init?(letter: UInt8) {
        switch letter {
        case UInt8(ascii: "n"): self = .none
        case UInt8(ascii: "r"): self = .read
        case UInt8(ascii: "w"): self = .write
        case UInt8(ascii: "b"): self = .both
        default: return nil
        }
    }
}

/// One permission entry: a domain and its rights, `r5` on the wire.
public struct XenStorePermission: Sendable, Hashable, CustomStringConvertible {
    public var domain: XenStore.DomainID
    public var access: XenStoreAccess

    public init(domain: XenStore.DomainID, access: XenStoreAccess) {
        self.domain = domain
        self.access = access
    }

    /// The wire form, letter then decimal domain id (`xenstore_perm_to_string`).
    public var description: String { "\(access.letter)\(domain.rawValue)" }

    /// Parses one wire string such as `b7`: a letter then a decimal domain id.
    init(wire bytes: ArraySlice<UInt8>) throws(XenStoreError) {
        guard let letter = bytes.first, let access = XenStoreAccess(letter: letter),
            let domain = XenStoreWire.domainID(bytes.dropFirst())
        else { throw .EINVAL }
        self.init(domain: domain, access: access)
    }
}

/// The permission list of a node.
///
/// As `docs/misc/xenstore.txt` describes: the first entry names the owner, who
/// always has full access, and its rights are those of every domain without an
/// entry of its own; the remaining entries grant rights to specific domains. The
/// privileged domain bypasses all of it.
public struct XenStorePermissions: Sendable, Hashable, CustomStringConvertible {
    public var owner: XenStore.DomainID
    /// Rights of domains that have no entry of their own.
    public var defaultAccess: XenStoreAccess
    /// Entries for specific domains, checked in order; the first match wins.
    public var entries: [XenStorePermission]

    public init(owner: XenStore.DomainID, defaultAccess: XenStoreAccess = .none, entries: [XenStorePermission] = []) {
        self.owner = owner
        self.defaultAccess = defaultAccess
        self.entries = entries
    }

    /// Builds permissions from a wire-ordered list, owner first; nil if empty.
    public init?(_ list: [XenStorePermission]) {
        guard let first = list.first else { return nil }
        self.init(owner: first.domain, defaultAccess: first.access, entries: Array(list.dropFirst()))
    }

    /// The wire-ordered list, owner first.
    public var list: [XenStorePermission] {
        [XenStorePermission(domain: owner, access: defaultAccess)] + entries
    }

    /// `r0 b5` style rendering, as `xenstore-ls -p` shows.
    public var description: String { list.map(\.description).joined(separator: " ") }

    /// The `XS_GET_PERMS` reply: each entry's wire form followed by a NUL.
    var wirePayload: [UInt8] {
        var payload: [UInt8] = []
        for entry in list {
            payload.append(contentsOf: entry.description.utf8)
            payload.append(0)
        }
        return payload
    }

    /// Every domain named in the list; used to find nodes to fix when a domain goes.
    var domains: Set<XenStore.DomainID> {
        var result: Set<XenStore.DomainID> = [owner]
        for entry in entries { result.insert(entry.domain) }
        return result
    }

    /// What `caller` may do, following `perm_for_conn` in `tools/xenstored/core.c`:
    /// the privileged domain and the owner (directly, through `SET_TARGET`, or as
    /// `DOMID_ANY`) get everything; otherwise the first matching entry decides, and
    /// without one the owner entry's rights apply.
    func rights(for caller: XenStoreCaller) -> XenStoreRights {
        if caller.privileged || caller.matches(owner) { return .all }
        for entry in entries where caller.matches(entry.domain) {
            return XenStoreRights(entry.access)
        }
        return XenStoreRights(defaultAccess)
    }

    /// Whether `caller` may read a node with these permissions.
    func allowsRead(_ caller: XenStoreCaller) -> Bool { rights(for: caller).contains(.read) }
}

/// Effective rights of a caller on a node: read and write as granted, plus
/// ownership (`XS_PERM_OWNER`), which `SET_PERMS` requires.
struct XenStoreRights: OptionSet, Sendable, Hashable {
    let rawValue: UInt8
    init(rawValue: UInt8) { self.rawValue = rawValue }
    init(_ access: XenStoreAccess) { self.init(rawValue: access.rawValue) }

    static let read = XenStoreRights(rawValue: 1)
    static let write = XenStoreRights(rawValue: 2)
    static let owner = XenStoreRights(rawValue: 8)
    static let all: XenStoreRights = [.read, .write, .owner]
}

/// Who is performing an operation: a connection's domain, or the in-process toolstack.
struct XenStoreCaller: Sendable, Hashable {
    var domain: XenStore.DomainID
    var privileged: Bool
    /// The domain this one acts for after `SET_TARGET` (a device model's guest).
    var target: XenStore.DomainID?

    /// `perm_allows_conn`: an entry applies to the caller's domain, to its target,
    /// and `DOMID_ANY` applies to everyone.
    func matches(_ domain: XenStore.DomainID) -> Bool {
        domain == self.domain || domain == target || domain == .any
    }
}
