// Watches: tools/xenstored/watch.c, indexed by path.

/// How a change matches watches (`enum watch_match` in `tools/xenstored/watch.h`).
enum XenStoreWatchMatch: Sendable, Hashable {
    /// Watches on the path or any ancestor fire (writes, and the top of a removal).
    case subtree
    /// Only watches on the path itself fire (nodes below a removed node, special events).
    case exact
}

/// One registered watch.
struct XenStoreWatch: Sendable, Hashable {
    var connection: XenStore.ConnectionID
    /// Canonical (absolute or special) path.
    var path: String
    var token: [UInt8]
    /// Bytes to strip from event paths: the `/local/domain/<domid>/` prefix when
    /// the watch was registered with a relative path, else 0 (`prefix_len`).
    var relativePrefixLength: Int
}

/// All watches, indexed by watched path so that a change of `/a/b/c` looks up
/// only `/a/b/c`, `/a/b`, `/a` and `/` instead of scanning every watch of every
/// connection as `fire_watches` does.
struct XenStoreWatchRegistry: Sendable {
    private var byPath: [String: [XenStoreWatch]] = [:]
    /// Per connection: watched paths and how many of its watches are on each.
    private var pathsByConnection: [XenStore.ConnectionID: [String: Int]] = [:]
    private var counts: [XenStore.ConnectionID: Int] = [:]

    /// Watches on exactly `path`, in registration order.
    func watches(on path: String) -> [XenStoreWatch] { byPath[path] ?? [] }

    /// Number of watches a connection has.
    func count(for connection: XenStore.ConnectionID) -> Int {
        counts[connection] ?? 0
    }

    func contains(connection: XenStore.ConnectionID, path: String, token: [UInt8]) -> Bool {
        byPath[path]?.contains { $0.connection == connection && $0.token == token } ?? false
    }

    mutating func add(_ watch: XenStoreWatch) {
        byPath[watch.path, default: []].append(watch)
        pathsByConnection[watch.connection, default: [:]][watch.path, default: 0] += 1
        counts[watch.connection, default: 0] += 1
    }

    /// Removes one watch; false if there was none.
    mutating func remove(connection: XenStore.ConnectionID, path: String, token: [UInt8]) -> Bool {
        guard let index = byPath[path]?.firstIndex(where: { $0.connection == connection && $0.token == token })
        else { return false }
        byPath[path]?.remove(at: index)
        if byPath[path]?.isEmpty == true { byPath[path] = nil }
        pathsByConnection[connection]?[path, default: 1] -= 1
        if pathsByConnection[connection]?[path] == 0 { pathsByConnection[connection]?[path] = nil }
        if pathsByConnection[connection]?.isEmpty == true { pathsByConnection[connection] = nil }
        counts[connection, default: 1] -= 1
        if counts[connection] == 0 { counts[connection] = nil }
        return true
    }

    /// Removes every watch of a connection (`conn_delete_all_watches`).
    mutating func removeAll(for connection: XenStore.ConnectionID) {
        counts[connection] = nil
        guard let paths = pathsByConnection.removeValue(forKey: connection) else { return }
        for path in paths.keys {
            byPath[path]?.removeAll { $0.connection == connection }
            if byPath[path]?.isEmpty == true { byPath[path] = nil }
        }
    }
}
