// TRANSACTION_START/END and the commit: do_transaction_start, do_transaction_end
// and finalize_transaction of tools/xenstored/transaction.c.

extension XenStore {
    /// Opens a transaction on `connection` and returns its id.
    ///
    /// Ids are per connection, start at 1 and skip ids in use (and 0, which means
    /// "no transaction"). Nested transactions are refused with `EBUSY`; more than
    /// the `transactions` quota with `ENOSPC`.
    mutating func startTransaction(
        on connection: ConnectionID, _ context: XenStoreOperationContext
    ) throws(XenStoreError) -> UInt32 {
        guard context.transaction == nil else { throw .EBUSY }
        guard let open = connections[connection]?.transactions.count,
            var id = connections[connection]?.nextTransactionID
        else { throw .EINVAL }
        if let limits = context.limits, XenStoreQuotas.exceeds(open + 1, limits.transactions) { throw .ENOSPC }
        while id == 0 || connections[connection]?.transactions[id] != nil { id &+= 1 }
        connections[connection]?.nextTransactionID = id &+ 1
        connections[connection]?.transactions[id] = XenStoreTransaction(id: id)
        return id
    }

    /// Applies a transaction to the committed tree, or throws without changing it.
    ///
    /// `EAGAIN` if any path the transaction read or wrote changed since (its
    /// generation differs from the one first observed); `ENOSPC` if the nodes it
    /// creates would put a domain over its `nodes` quota (`acc_fix_domains`); the
    /// recorded error if an operation inside it failed halfway. On success the
    /// queued watch events fire, seen by connections that could read the node
    /// before or after the change (`finalize_transaction` passes the old permissions).
    mutating func commit(
        _ transaction: XenStoreTransaction, _ context: XenStoreOperationContext
    ) throws(XenStoreError) {
        if let failure = transaction.failure { throw failure }
        for (path, observation) in transaction.observed where tree[path]?.generation != observation.generation {
            throw .EAGAIN
        }
        if !context.caller.privileged {
            for (domain, delta) in transaction.ownerDeltas where delta > 0 {
                if XenStoreQuotas.exceeds(tree.ownedCount(domain) + delta, quotas(for: domain).nodes) {
                    throw .ENOSPC
                }
            }
        }
        for path in transaction.removedPaths { tree.remove(path) }
        for (path, node) in transaction.changedNodes { tree.put(node, at: path) }
        for event in transaction.pendingEvents {
            var visibility: [XenStorePermissions] = []
            if let old = transaction.observed[event.path]?.permissions { visibility.append(old) }
            if let node = tree[event.path] {
                visibility.append(node.permissions)
                if event.path != "/", let parent = tree[XenStorePath.parent(of: event.path)] {
                    visibility.append(parent.permissions)
                }
            }
            deliverWatchEvent(event.path, match: event.match, visibleWith: visibility)
        }
    }
}
