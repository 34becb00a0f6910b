// The XenStore core: state, connections and watch delivery. Operations live in
// the other files of this target, one concern each.

/// A pure, in-memory XenStore daemon, behaving like C xenstored
/// (`tools/xenstored` in the Xen tree).
///
/// It performs no I/O and keeps no global state. The caller owns transport:
/// it calls `connect(domain:privileged:)` for each client (a domain's ring, or
/// the toolstack), feeds decoded requests to `handle(_:from:)`, and delivers the
/// returned messages. Every message from a guest is treated as hostile: malformed
/// input produces Xen's `XS_ERROR` reply, never a trap, and allocations a guest
/// can cause are bounded by `XenStoreQuotas`.
///
/// Not thread-safe: it is a value, and the caller serializes access (for example
/// behind a mutex).
public struct XenStore: Sendable {
    /// A domain id (`domid_t`).
    public struct DomainID: RawRepresentable, Hashable, Comparable, Sendable, ExpressibleByIntegerLiteral,
        CustomStringConvertible
    {
        public var rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        public init(_ rawValue: UInt16) { self.rawValue = rawValue }
        public init(integerLiteral value: UInt16) { self.rawValue = value }

        /// `DOMID_FIRST_RESERVED` and `DOMID_SELF` (`xen/include/public/xen.h`).
        public static let firstReserved = DomainID(0x7FF0)
        /// `DOMID_SELF`: `IS_DOMAIN_INTRODUCED` answers `T` for it.
        public static let domidSelf = DomainID(0x7FF0)
        /// `DOMID_ANY`: a permission entry for it applies to every domain.
        public static let any = DomainID(0x7FF5)

        public static func < (lhs: DomainID, rhs: DomainID) -> Bool { lhs.rawValue < rhs.rawValue }
        public var description: String { "\(rawValue)" }
    }

    /// Identifies one client connection of this store.
    public struct ConnectionID: Hashable, Comparable, Sendable, CustomStringConvertible {
        public let rawValue: UInt32
        public static func < (lhs: ConnectionID, rhs: ConnectionID) -> Bool { lhs.rawValue < rhs.rawValue }
        public var description: String { "connection \(rawValue)" }
    }

    /// A client: a domain's ring or a privileged in-process user.
    struct Connection: Sendable {
        let id: ConnectionID
        let domain: DomainID
        let privileged: Bool
        var transactions: [UInt32: XenStoreTransaction] = [:]
        var nextTransactionID: UInt32 = 1
        /// Bumped when the connection's transactions are discarded wholesale, so a
        /// request that had taken its transaction out does not put it back.
        var epoch: UInt64 = 0

        /// The identity alone. Copying it, unlike copying the connection, does
        /// not share the transactions' storage, which would make the next change
        /// to a transaction copy its whole overlay.
        var identity: Identity { Identity(id: id, domain: domain, privileged: privileged, epoch: epoch) }
    }

    /// Who a connection is, without its state.
    struct Identity: Sendable {
        let id: ConnectionID
        let domain: DomainID
        let privileged: Bool
        let epoch: UInt64
    }

    var tree = XenStoreNodeTree()
    var connections: [ConnectionID: Connection] = [:]
    private var lastConnectionID: UInt32 = 0
    var watches = XenStoreWatchRegistry()
    /// Domains introduced and not yet released (`domain->introduced`).
    var introducedDomains: Set<DomainID> = []
    /// Domains whose shutdown already fired `@releaseDomain` (`domain->shutdown`).
    var shutDownDomains: Set<DomainID> = []
    /// `SET_TARGET` links: domain → the domain whose rights it also has.
    var targets: [DomainID: DomainID] = [:]
    /// Limits for every unprivileged domain without its own (`SET_QUOTA` without domid).
    public var quotas: XenStoreQuotas
    /// Per-domain limits set by `SET_QUOTA <domid>`; dropped when the domain is released.
    var domainQuotas: [DomainID: XenStoreQuotas] = [:]
    /// The control domain: owner of the initial nodes, never released.
    public let privilegedDomain: DomainID
    /// Output produced by the operation in progress; drained into `XenStoreOutput`.
    var outbox = XenStoreOutput()

    /// Creates a store holding xenstored's initial nodes (`setup_structure` in
    /// `tools/xenstored/core.c`): `/`, `/tool`, `/tool/xenstored`, and the special
    /// nodes `@releaseDomain` (readable by any domain, so that guests may watch it)
    /// and `@introduceDomain`, all owned by the privileged domain, which counts as
    /// introduced.
    public init(quotas: XenStoreQuotas = XenStoreQuotas(), privilegedDomain: DomainID = 0) {
        self.quotas = quotas
        self.privilegedDomain = privilegedDomain
        let privateToControl = XenStorePermissions(owner: privilegedDomain)
        var root = XenStoreNode(permissions: privateToControl)
        root.addChild("tool")
        var tool = XenStoreNode(permissions: privateToControl)
        tool.addChild("xenstored")
        tree.put(root, at: "/")
        tree.put(tool, at: "/tool")
        tree.put(XenStoreNode(permissions: privateToControl), at: "/tool/xenstored")
        let readableByAll = XenStorePermissions(
            owner: privilegedDomain, entries: [XenStorePermission(domain: .any, access: .read)])
        tree.put(XenStoreNode(permissions: readableByAll), at: XenStorePath.releaseDomain)
        tree.put(XenStoreNode(permissions: privateToControl), at: XenStorePath.introduceDomain)
        introducedDomains.insert(privilegedDomain)
    }

    /// Opens a connection for `domain`. A privileged connection bypasses
    /// permissions and quotas and may send the privileged requests (the
    /// toolstack, or dom0's ring); a guest's ring is unprivileged.
    public mutating func connect(domain: DomainID, privileged: Bool) -> ConnectionID {
        lastConnectionID &+= 1
        while connections[ConnectionID(rawValue: lastConnectionID)] != nil || lastConnectionID == 0 {
            lastConnectionID &+= 1
        }
        let id = ConnectionID(rawValue: lastConnectionID)
        connections[id] = Connection(id: id, domain: domain, privileged: privileged)
        return id
    }

    /// Closes a connection, dropping its watches and open transactions (as
    /// xenstored's `destroy_conn`). Unknown ids are ignored.
    public mutating func disconnect(_ connection: ConnectionID) {
        watches.removeAll(for: connection)
        connections[connection] = nil
    }

    /// Whether a connection is open.
    public func isConnected(_ connection: ConnectionID) -> Bool { connections[connection] != nil }

    /// The limits that apply to `domain`.
    public func quotas(for domain: DomainID) -> XenStoreQuotas { domainQuotas[domain] ?? quotas }

    /// Gives `domain` its own limits (`SET_QUOTA <domid>`), or with nil makes it
    /// follow `quotas` again. Per-domain limits are forgotten when the domain is
    /// released.
    public mutating func setQuotas(_ limits: XenStoreQuotas?, for domain: DomainID) {
        domainQuotas[domain] = limits
    }

    /// Number of nodes in the store, special nodes included.
    public var nodeCount: Int { tree.count }

    /// The caller identity of a connection.
    func caller(domain: DomainID, privileged: Bool) -> XenStoreCaller {
        XenStoreCaller(domain: domain, privileged: privileged, target: targets[domain])
    }

    /// The in-process toolstack: the privileged domain, outside any connection.
    var toolstackCaller: XenStoreCaller {
        XenStoreCaller(domain: privilegedDomain, privileged: true, target: nil)
    }

    /// Discards a connection's open transactions, as `RESET_WATCHES` and a
    /// repeated `INTRODUCE` do (`conn_delete_all_transactions`).
    mutating func discardTransactions(of connection: ConnectionID) {
        connections[connection]?.transactions = [:]
        connections[connection]?.epoch &+= 1
    }
}

/// A message for one connection.
public struct XenStoreOutgoing: Sendable, Hashable {
    public var connection: XenStore.ConnectionID
    public var message: XenStoreMessage

    public init(connection: XenStore.ConnectionID, message: XenStoreMessage) {
        self.connection = connection
        self.message = message
    }
}

/// Something the store's owner must act on, reported instead of calling out so
/// that the core stays pure.
public enum XenStoreEvent: Sendable, Hashable {
    /// `INTRODUCE`: start serving the domain's ring. `gfn` and `eventChannel` are
    /// the request's arguments, nil when the toolstack API introduced the domain.
    /// Sent again for a domain already introduced, whose connection state (watches,
    /// transactions) the store has reset, as xenstored's `domain_conn_reset` does.
    case domainIntroduced(XenStore.DomainID, gfn: Int64?, eventChannel: UInt32?)
    /// `RELEASE` (or the toolstack's `releaseDomain`): stop serving the domain.
    /// The listed connections of that domain are already closed in the store.
    case domainReleased(XenStore.DomainID, closedConnections: [XenStore.ConnectionID])
}

/// What one call produced: messages to deliver, in order, and events for the owner.
public struct XenStoreOutput: Sendable, Hashable {
    public var messages: [XenStoreOutgoing] = []
    public var events: [XenStoreEvent] = []

    public init(messages: [XenStoreOutgoing] = [], events: [XenStoreEvent] = []) {
        self.messages = messages
        self.events = events
    }

    /// Messages for one connection, in order.
    public func messages(for connection: XenStore.ConnectionID) -> [XenStoreMessage] {
        messages.filter { $0.connection == connection }.map(\.message)
    }
}

extension XenStore {
    /// Runs `body` and returns everything it queued.
    mutating func collectingOutput(
        _ body: (inout XenStore) throws(XenStoreError) -> Void
    ) throws(XenStoreError) -> XenStoreOutput {
        outbox = XenStoreOutput()
        do {
            try body(&self)
        } catch {
            outbox = XenStoreOutput()
            throw error
        }
        let output = outbox
        outbox = XenStoreOutput()
        return output
    }
}
