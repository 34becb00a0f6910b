// Transactions: tools/xenstored/transaction.c, with a copy-on-write overlay instead
// of per-transaction database entries.

/// An open transaction of one connection.
///
/// Reads and writes inside it go through `overlay`, a copy-on-write layer over
/// the committed tree holding only the nodes this transaction changed. The first
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
    var overlay: [String: OverlayEntry] = [:]
    var observed: [String: Observation] = [:]
    var pendingEvents: [PendingEvent] = []
    private var pendingIndex: [String: Int] = [:]
    /// Change in the number of nodes each domain owns, relative to the committed tree.
    var ownerDeltas: [XenStore.DomainID: Int] = [:]
    /// Set when an operation hit a quota halfway; such a transaction cannot
    /// commit (xenstored's `trans->fail`).
    var failure: XenStoreError?

    init(id: UInt32) { self.id = id }

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
