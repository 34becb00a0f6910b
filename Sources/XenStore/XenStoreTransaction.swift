// Transactions: tools/xenstored/transaction.c, with a copy-on-write overlay instead
// of per-transaction database entries.

/// An open transaction of one connection.
///
/// Reads and writes inside it go through an overlay over the committed tree
/// holding only what this transaction changed: `changedNodes` and `removedPaths`. The first
/// time the transaction touches a path it records the committed generation it saw
/// (`observed`); committing fails with `EAGAIN` if any of those generations moved,
/// which is C xenstored's rule (`finalize_transaction` compares each accessed
/// node's generation). Watch events are queued and fire only on commit.
struct XenStoreTransaction: Sendable {
    /// What the transaction sees at a path it has changed.
    enum OverlayEntry: Sendable {
        case present(XenStoreNode)
        case removed
    }

    /// The committed state of a path when the transaction first touched it.
    struct Observation: Sendable {
        /// nil when no node existed (xenstored's `NO_GENERATION`).
        var generation: UInt64?
        /// The permissions then, used to decide who may see the commit's events
        /// (`accessed_node.perms`).
        var permissions: XenStorePermissions?
    }

    /// A queued watch event (`queue_watches`): one per path, subtree matching wins.
    struct PendingEvent: Sendable {
        var path: String
        var match: XenStoreWatchMatch
    }

    let id: UInt32
    /// Nodes written inside the transaction, as it sees them.
    var changedNodes: [String: XenStoreNode] = [:]
    /// Paths removed inside the transaction (and not written again since).
    var removedPaths: Set<String> = []
    var observed: [String: Observation] = [:]
    var pendingEvents: [PendingEvent] = []
    private var pendingIndex: [String: Int] = [:]
    /// Change in the number of nodes each domain owns, relative to the committed tree.
    var ownerDeltas: [XenStore.DomainID: Int] = [:]
    /// Set when an operation hit a quota halfway; such a transaction cannot
    /// commit (xenstored's `trans->fail`).
    var failure: XenStoreError?

    init(id: UInt32) { self.id = id }

    /// The transaction's own view of `path`, or nil when it has not changed it.
    func overlay(_ path: String) -> OverlayEntry? {
        if let node = changedNodes[path] { return .present(node) }
        return removedPaths.contains(path) ? .removed : nil
    }

    /// Records a write of `node` at `path`.
    mutating func record(_ node: XenStoreNode, at path: String) {
        removedPaths.remove(path)
        changedNodes[path] = node
    }

    /// Records the removal of `path`.
    mutating func recordRemoval(of path: String) {
        changedNodes[path] = nil
        removedPaths.insert(path)
    }

    /// Queues an event for commit, merging with an earlier one for the same path.
    mutating func queueEvent(path: String, match: XenStoreWatchMatch) {
        if let index = pendingIndex[path] {
            if match == .subtree { pendingEvents[index].match = .subtree }
            return
        }
        pendingIndex[path] = pendingEvents.count
        pendingEvents.append(PendingEvent(path: path, match: match))
    }
}
