// The committed node database: the nodes hashtable of tools/xenstored/core.c with
// its generation counter and per-domain node accounting.

/// One node: a value, children, permissions and a generation count.
///
/// The generation changes on every modification of the node (xenstored's
/// `node_hdr.generation`, set from a global counter in `access_node`); transactions
/// compare generations to detect conflicting changes, and `DIRECTORY_PART`
/// returns it so that a client can tell whether a listing changed between calls.
struct XenStoreNode: Sendable {
    var value: [UInt8]
    var permissions: XenStorePermissions
    private(set) var children: Set<String> = []
    /// Bytes of the children list as xenstored stores it: each name and a NUL.
    private(set) var childrenByteCount = 0
    var generation: UInt64 = 0

    init(value: [UInt8] = [], permissions: XenStorePermissions) {
        self.value = value
        self.permissions = permissions
    }

    /// The size charged against the `node-size` quota.
    var size: Int { value.count + childrenByteCount }

    /// Children in a stable order: byte-wise sorted leaf names.
    var sortedChildren: [String] { children.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) } }

    mutating func addChild(_ name: String) {
        if children.insert(name).inserted { childrenByteCount += name.utf8.count + 1 }
    }

    mutating func removeChild(_ name: String) {
        if children.remove(name) != nil { childrenByteCount -= name.utf8.count + 1 }
    }
}

/// The committed tree, keyed by canonical path.
///
/// A flat dictionary gives O(1) lookup for any path; each node keeps the set of
/// its children's names. The tree also keeps, per domain, how many nodes it owns
/// (the `nodes` quota, xenstored's `domain_nbentry_*`) and which nodes mention it
/// in their permissions, so that releasing a domain touches only those nodes
/// instead of walking the whole store as `domain_tree_remove` does.
struct XenStoreNodeTree: Sendable {
    private var nodes: [String: XenStoreNode] = [:]
    private(set) var lastGeneration: UInt64 = 0
    private var ownedCounts: [XenStore.DomainID: Int] = [:]
    private var pathsByDomain: [XenStore.DomainID: Set<String>] = [:]

    subscript(path: String) -> XenStoreNode? { nodes[path] }

    var count: Int { nodes.count }

    /// Nodes owned by `domain`, committed ones only.
    func ownedCount(_ domain: XenStore.DomainID) -> Int { ownedCounts[domain] ?? 0 }

    /// Paths of nodes whose permissions name `domain` as owner or entry.
    func paths(mentioning domain: XenStore.DomainID) -> Set<String> { pathsByDomain[domain] ?? [] }

    /// A fresh generation number, larger than every one handed out before.
    mutating func nextGeneration() -> UInt64 {
        lastGeneration &+= 1
        return lastGeneration
    }

    /// Stores `node` at `path`. With `bumpGeneration` the node gets a new
    /// generation, which is how every client-visible change is recorded; without
    /// it the node keeps the generation it carries (used when the store fixes
    /// permissions on its own, as `write_node_raw` does without `access_node`).
    mutating func put(_ node: XenStoreNode, at path: String, bumpGeneration: Bool = true) {
        var node = node
        if bumpGeneration { node.generation = nextGeneration() }
        let old = nodes.updateValue(node, forKey: path)
        reindex(path, old: old?.permissions, new: node.permissions)
    }

    /// Changes the node at `path` in place and gives it a new generation. The
    /// node is taken out of the dictionary while `body` runs, so mutating its
    /// children set does not copy it.
    mutating func modify(_ path: String, _ body: (inout XenStoreNode) -> Void) {
        guard var node = nodes.removeValue(forKey: path) else { return }
        let permissions = node.permissions
        body(&node)
        node.generation = nextGeneration()
        nodes[path] = node
        reindex(path, old: permissions, new: node.permissions)
    }

    /// Removes the node at `path` only (not its children) and returns it.
    @discardableResult
    mutating func remove(_ path: String) -> XenStoreNode? {
        guard let old = nodes.removeValue(forKey: path) else { return nil }
        reindex(path, old: old.permissions, new: nil)
        return old
    }

    private mutating func reindex(_ path: String, old: XenStorePermissions?, new: XenStorePermissions?) {
        guard old != new else { return }
        if let old { ownedCounts[old.owner, default: 0] -= 1 }
        if let new { ownedCounts[new.owner, default: 0] += 1 }
        let oldDomains = old?.domains ?? []
        let newDomains = new?.domains ?? []
        for domain in oldDomains.subtracting(newDomains) {
            pathsByDomain[domain]?.remove(path)
            if pathsByDomain[domain]?.isEmpty == true { pathsByDomain[domain] = nil }
        }
        for domain in newDomains.subtracting(oldDomains) {
            pathsByDomain[domain, default: []].insert(path)
        }
    }
}
