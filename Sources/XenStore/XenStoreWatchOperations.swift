// WATCH, UNWATCH and RESET_WATCHES: do_watch, do_unwatch of tools/xenstored/watch.c
// and do_reset_watches of domain.c.

extension XenStore {
    /// Adds a watch for `connection` and queues its first event.
    ///
    /// - Parameters:
    ///   - path: the canonical watched path.
    ///   - relative: whether the client gave a relative path; its events then
    ///     carry paths relative to `/local/domain/<domid>`.
    /// - Throws: `EEXIST` for a duplicate (same path and token), `ENOSPC` past
    ///   the `watches` quota.
    mutating func addWatch(
        connection: ConnectionID, path: String, relative: Bool, token: [UInt8], _ context: XenStoreOperationContext
    ) throws(XenStoreError) -> XenStoreWatch {
        guard let client = connections[connection]?.identity else { throw .EINVAL }
        if watches.contains(connection: connection, path: path, token: token) { throw .EEXIST }
        if let limits = context.limits, XenStoreQuotas.exceeds(watches.count(for: connection) + 1, limits.watches) {
            throw .ENOSPC
        }
        let prefix = relative ? XenStorePath.domainPath(client.domain).utf8.count + 1 : 0
        let watch = XenStoreWatch(connection: connection, path: path, token: token, relativePrefixLength: prefix)
        watches.add(watch)
        return watch
    }

    /// Removes a watch; `ENOENT` if the connection has none with that path and token.
    mutating func removeWatch(connection: ConnectionID, path: String, token: [UInt8]) throws(XenStoreError) {
        guard watches.remove(connection: connection, path: path, token: token) else { throw .ENOENT }
    }

    /// `RESET_WATCHES`: drops all of a connection's watches and transactions.
    mutating func resetWatches(connection: ConnectionID) {
        watches.removeAll(for: connection)
        discardTransactions(of: connection)
    }
}
