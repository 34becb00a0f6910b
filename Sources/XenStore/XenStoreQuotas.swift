// Per-domain quotas: the quotas[] table and quota_adm[] names of tools/xenstored/domain.c.

/// Limits applied to unprivileged domains; the privileged domain has none.
///
/// Defaults and names are those of C xenstored's `quotas[]` and `quota_adm[]`
/// (`tools/xenstored/domain.c`); 0 disables a limit, as `SET_QUOTA` "0" does.
/// Each value is the largest amount allowed: a domain may own exactly `nodes`
/// nodes. A limit that is hit gives `ENOSPC`, which is what xenstored returns for
/// every quota (node count, node size, watches, transactions, permissions,
/// transaction nodes); an over-long path gives `EINVAL` as in `canonicalize`.
public struct XenStoreQuotas: Sendable, Hashable {
    /// `nodes`: nodes a domain may own.
    public var nodes: Int
    /// `node-size`: bytes of a node's value plus its children list (each child
    /// name and a NUL), the part of xenstored's node size a domain controls.
    public var nodeSize: Int
    /// `watches`: watches per connection.
    public var watches: Int
    /// `transactions`: open transactions per connection.
    public var transactions: Int
    /// `transaction-nodes`: distinct nodes one transaction may touch.
    public var transactionNodes: Int
    /// `node-permissions`: entries in one `SET_PERMS`.
    public var permissions: Int
    /// `path-max`: path length after any `/local/domain/<domid>/` prefix.
    public var pathLength: Int
    /// `outstanding`: replies queued for a domain before its requests stop being
    /// read. Reported by `GET_QUOTA` for compatibility but not enforced: the store
    /// answers each request at once, and `XenStoreRingChannel` applies flow control
    /// by queued bytes instead.
    public var outstandingRequests: Int

    public init(
        nodes: Int = 1000, nodeSize: Int = 2048, watches: Int = 128, transactions: Int = 10,
        transactionNodes: Int = 1024, permissions: Int = 5, pathLength: Int = 2048,
        outstandingRequests: Int = 20
    ) {
        self.nodes = nodes
        self.nodeSize = nodeSize
        self.watches = watches
        self.transactions = transactions
        self.transactionNodes = transactionNodes
        self.permissions = permissions
        self.pathLength = pathLength
        self.outstandingRequests = outstandingRequests
    }

    /// The quota names `GET_QUOTA` lists, in xenstored's order.
    public static let names = [
        "nodes", "watches", "outstanding", "transactions", "transaction-nodes", "node-permissions", "path-max",
        "node-size",
    ]

    /// The limit called `name` in `GET_QUOTA`/`SET_QUOTA`, or nil for an unknown name.
    public subscript(name name: String) -> Int? {
        get {
            switch name {
            case "nodes": nodes
            case "watches": watches
            case "outstanding": outstandingRequests
            case "transactions": transactions
            case "transaction-nodes": transactionNodes
            case "node-permissions": permissions
            case "path-max": pathLength
            case "node-size": nodeSize
            default: nil
            }
        }
        set {
            guard let newValue else { return }
            switch name {
            case "nodes": nodes = newValue
            case "watches": watches = newValue
            case "outstanding": outstandingRequests = newValue
            case "transactions": transactions = newValue
            case "transaction-nodes": transactionNodes = newValue
            case "node-permissions": permissions = newValue
            case "path-max": pathLength = newValue
            case "node-size": nodeSize = newValue
            default: break
            }
        }
    }

    /// Whether `amount` is over `limit`; a limit of 0 or less is disabled.
    static func exceeds(_ amount: Int, _ limit: Int) -> Bool {
        limit > 0 && amount > limit
    }
}
