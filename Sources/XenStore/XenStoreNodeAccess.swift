// Node access through an optional transaction, permission checks, and watch firing:
// read_node/write_node/access_node and errno_from_parents of tools/xenstored/core.c,
// fire_watches of watch.c.

/// Who performs an operation, with which limits, inside which transaction.
struct XenStoreOperationContext: Sendable {
    var caller: XenStoreCaller
    /// Quotas of the caller's domain; nil for privileged callers, who have none.
    var limits: XenStoreQuotas?
    /// The transaction the request names, taken out of its connection for the
    /// duration of the request.
    var transaction: XenStoreTransaction?

    init(caller: XenStoreCaller, limits: XenStoreQuotas?, transaction: XenStoreTransaction? = nil) {
        self.caller = caller
        self.limits = limits
        self.transaction = transaction
    }
}

extension XenStore {
    /// A context for `caller` outside any transaction.
    func context(for caller: XenStoreCaller) -> XenStoreOperationContext {
        XenStoreOperationContext(caller: caller, limits: caller.privileged ? nil : quotas(for: caller.domain))
    }

    // MARK: - Reading and writing nodes through the transaction, if any

    /// The node at `path` as the context sees it. Inside a transaction the first
    /// access to a path records the committed generation, for conflict detection.
    func node(at path: String, _ context: inout XenStoreOperationContext) -> XenStoreNode? {
        guard var transaction = context.transaction else { return tree[path] }
        context.transaction = nil
        defer { context.transaction = transaction }
        switch transaction.overlay(path) {
        case .present(let node): return node
        case .removed: return nil
        case nil:
            observe(path, in: &transaction, limits: context.limits)
            return tree[path]
        }
    }

    /// Stores `node` at `path` with a new generation.
    mutating func store(_ node: XenStoreNode, at path: String, _ context: inout XenStoreOperationContext) {
        guard var transaction = context.transaction else {
            tree.put(node, at: path)
            return
        }
        context.transaction = nil
        defer { context.transaction = transaction }
        let old = visibleNode(path, in: &transaction, limits: context.limits)
        var node = node
        node.generation = tree.nextGeneration()
        adjustOwners(old: old?.permissions.owner, new: node.permissions.owner, in: &transaction)
        transaction.record(node, at: path)
    }

    /// Changes an existing node in place (used for child lists, which can be
    /// large): without a transaction the committed node is not copied; inside
    /// one, a node already in the overlay is not copied again.
    mutating func modifyNode(
        _ path: String, _ context: inout XenStoreOperationContext, _ body: (inout XenStoreNode) -> Void
    ) {
        guard var transaction = context.transaction else {
            tree.modify(path, body)
            return
        }
        context.transaction = nil
        defer { context.transaction = transaction }
        var node: XenStoreNode
        if let changed = transaction.changedNodes.removeValue(forKey: path) {
            node = consume changed
        } else {
            guard !transaction.removedPaths.contains(path) else { return }
            observe(path, in: &transaction, limits: context.limits)
            guard let committed = tree[path] else { return }
            node = committed
        }
        body(&node)
        node.generation = tree.nextGeneration()
        transaction.record(node, at: path)
    }

    /// Deletes the node at `path` (its children are the caller's business).
    mutating func delete(_ path: String, _ context: inout XenStoreOperationContext) {
        guard var transaction = context.transaction else {
            tree.remove(path)
            return
        }
        context.transaction = nil
        defer { context.transaction = transaction }
        let old = visibleNode(path, in: &transaction, limits: context.limits)
        adjustOwners(old: old?.permissions.owner, new: nil, in: &transaction)
        transaction.recordRemoval(of: path)
    }

    /// Nodes `domain` owns as the context sees them (committed plus the
    /// transaction's changes), for the `nodes` quota.
    func ownedCount(_ domain: DomainID, _ context: XenStoreOperationContext) -> Int {
        tree.ownedCount(domain) + (context.transaction?.ownerDeltas[domain] ?? 0)
    }

    private func visibleNode(
        _ path: String, in transaction: inout XenStoreTransaction, limits: XenStoreQuotas?
    ) -> XenStoreNode? {
        switch transaction.overlay(path) {
        case .present(let node): return node
        case .removed: return nil
        case nil:
            observe(path, in: &transaction, limits: limits)
            return tree[path]
        }
    }

    /// Records the committed state of `path` on first access (`access_node`),
    /// failing the transaction when it touches more than `transaction-nodes` paths.
    private func observe(_ path: String, in transaction: inout XenStoreTransaction, limits: XenStoreQuotas?) {
        guard transaction.observed[path] == nil else { return }
        if let limits, XenStoreQuotas.exceeds(transaction.observed.count + 1, limits.transactionNodes) {
            transaction.failure = transaction.failure ?? .ENOSPC
            return
        }
        let committed = tree[path]
        transaction.observed[path] = XenStoreTransaction.Observation(
            generation: committed?.generation, permissions: committed?.permissions)
    }

    private func adjustOwners(old: DomainID?, new: DomainID?, in transaction: inout XenStoreTransaction) {
        guard old != new else { return }
        if let old { transaction.ownerDeltas[old, default: 0] -= 1 }
        if let new { transaction.ownerDeltas[new, default: 0] += 1 }
    }

    // MARK: - Permission checks

    /// The node at `path` if the caller has `rights` on it.
    ///
    /// Failure hides what the caller may not know, as `get_node_chk_perm` and
    /// `errno_from_parents` do: an existing node without the rights gives
    /// `EACCES`, and a missing node gives `ENOENT` only if the nearest existing
    /// ancestor grants some of `rights`, else `EACCES`.
    func accessibleNode(
        _ path: String, needing rights: XenStoreRights, _ context: inout XenStoreOperationContext
    ) throws(XenStoreError) -> XenStoreNode {
        guard let node = node(at: path, &context) else {
            throw missingNodeError(path, needing: rights, &context)
        }
        guard node.permissions.rights(for: context.caller).isSuperset(of: rights) else { throw .EACCES }
        return node
    }

    /// `ENOENT` or `EACCES` for a missing node, decided by its nearest existing ancestor.
    func missingNodeError(
        _ path: String, needing rights: XenStoreRights, _ context: inout XenStoreOperationContext
    ) -> XenStoreError {
        var current = path
        while current != "/" {
            current = XenStorePath.parent(of: current)
            if let ancestor = node(at: current, &context) {
                let granted = ancestor.permissions.rights(for: context.caller)
                return granted.isDisjoint(with: rights) ? .EACCES : .ENOENT
            }
        }
        return .EACCES
    }

    // MARK: - Watches

    /// Reports a change of `path`. Outside a transaction the events go out now;
    /// inside one they are queued for the commit (`fire_watches`/`queue_watches`).
    ///
    /// - Parameter permissions: the permission lists that decide who may see the
    ///   event: a connection gets it if any of them lets it read (`watch_permitted`
    ///   checks the old permissions, the node's, then its parent's).
    mutating func fireWatches(
        _ path: String, match: XenStoreWatchMatch, visibleWith permissions: [XenStorePermissions],
        _ context: inout XenStoreOperationContext
    ) {
        if context.transaction != nil {
            context.transaction?.queueEvent(path: path, match: match)
            return
        }
        deliverWatchEvent(path, match: match, visibleWith: permissions)
    }

    /// Queues a `WATCH_EVENT` for every watch that matches `path` and whose
    /// connection may see it.
    mutating func deliverWatchEvent(
        _ path: String, match: XenStoreWatchMatch, visibleWith permissions: [XenStorePermissions]
    ) {
        let watchPaths = match == .subtree ? XenStorePath.watchCandidates(for: path) : [path]
        var allowed: [ConnectionID: Bool] = [:]
        for watchPath in watchPaths {
            for watch in watches.watches(on: watchPath) {
                let permitted: Bool
                if let known = allowed[watch.connection] {
                    permitted = known
                } else {
                    guard let connection = connections[watch.connection]?.identity else { continue }
                    let caller = caller(domain: connection.domain, privileged: connection.privileged)
                    permitted = permissions.contains { $0.allowsRead(caller) }
                    allowed[watch.connection] = permitted
                }
                if permitted { queueWatchEvent(watch, path: path) }
            }
        }
    }

    /// Queues one `WATCH_EVENT` for `watch` about `path`.
    mutating func queueWatchEvent(_ watch: XenStoreWatch, path: String) {
        if let event = watchEvent(watch, path: path) { outbox.messages.append(event) }
    }

    /// A `WATCH_EVENT` (`send_event`): `<epath>|<token>|` with `req_id` and `tx_id`
    /// 0, the event path made relative for relative watches. nil when longer
    /// than `XENSTORE_PAYLOAD_MAX`: xenstored drops such events.
    func watchEvent(_ watch: XenStoreWatch, path: String) -> XenStoreOutgoing? {
        let utf8 = path.utf8
        var payload: [UInt8] = []
        if watch.relativePrefixLength > 0 && utf8.count > watch.relativePrefixLength {
            payload.append(contentsOf: utf8.dropFirst(watch.relativePrefixLength))
        } else {
            payload.append(contentsOf: utf8)
        }
        payload.append(0)
        payload.append(contentsOf: watch.token)
        payload.append(0)
        guard payload.count <= XenStoreMessage.payloadMax else { return nil }
        let message = XenStoreMessage(type: .watchEvent, payload: payload)
        return XenStoreOutgoing(connection: watch.connection, message: message)
    }

    /// Fires a special watch (`fire_special_watches` in `tools/xenstored/domain.c`):
    /// watches on `name` and on `name/<domid>`, seen by connections that may read
    /// the special node or the root.
    mutating func fireSpecialWatch(_ name: String, domain: DomainID) {
        guard let node = tree[name] else { return }
        var permissions = [node.permissions]
        if let root = tree["/"] { permissions.append(root.permissions) }
        deliverWatchEvent(name, match: .exact, visibleWith: permissions)
        deliverWatchEvent("\(name)/\(domain.rawValue)", match: .exact, visibleWith: permissions)
    }
}
