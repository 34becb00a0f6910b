// Tree operations on canonical paths: do_read, do_write, do_mkdir, do_rm,
// send_directory, send_directory_part, do_get_perms and do_set_perms of
// tools/xenstored/core.c. Each checks everything before changing anything, so a
// failed operation leaves the store as it was.

extension XenStore {
    /// `READ`: the value of a node the caller may read.
    func readValue(_ path: String, _ context: inout XenStoreOperationContext) throws(XenStoreError) -> [UInt8] {
        try accessibleNode(path, needing: .read, &context).value
    }

    /// `DIRECTORY`: the children's leaf names.
    func childNames(_ path: String, _ context: inout XenStoreOperationContext) throws(XenStoreError) -> [String] {
        try accessibleNode(path, needing: .read, &context).sortedChildren
    }

    /// `DIRECTORY_PART`: `<gencnt>|` then the children list from byte `offset`,
    /// cut so that the reply fits `XENSTORE_PAYLOAD_MAX`; a final extra NUL marks
    /// the end of the list (`send_directory_part`).
    func directoryPart(
        _ path: String, offset: Int, _ context: inout XenStoreOperationContext
    ) throws(XenStoreError) -> [UInt8] {
        let node = try accessibleNode(path, needing: .read, &context)
        var reply = XenStoreWire.terminated("\(node.generation)")
        var list: [UInt8] = []
        list.reserveCapacity(node.childrenByteCount)
        for name in node.sortedChildren {
            list.append(contentsOf: name.utf8)
            list.append(0)
        }
        guard offset < list.count else {
            reply.append(0)
            return reply
        }
        let room = XenStoreMessage.payloadMax - reply.count - 1
        var end = offset
        while end < list.count {
            guard let nul = list[end...].firstIndex(of: 0), nul + 1 - offset <= room else { break }
            end = nul + 1
        }
        reply.append(contentsOf: list[offset..<end])
        if end == list.count { reply.append(0) }
        return reply
    }

    /// `WRITE`: sets the value, creating the node and missing ancestors.
    mutating func writeValue(
        _ path: String, _ value: [UInt8], _ context: inout XenStoreOperationContext
    ) throws(XenStoreError) {
        guard var node = node(at: path, &context) else {
            let error = missingNodeError(path, needing: .write, &context)
            guard error == .ENOENT else { throw error }
            try createNode(path, value: value, &context)
            return
        }
        guard node.permissions.rights(for: context.caller).contains(.write) else { throw .EACCES }
        if let limits = context.limits, XenStoreQuotas.exceeds(value.count + node.childrenByteCount, limits.nodeSize) {
            throw .ENOSPC
        }
        node.value = value
        store(node, at: path, &context)
        fireWatches(path, match: .subtree, visibleWith: visibility(of: node, at: path, &context), &context)
    }

    /// `MKDIR`: creates the node and missing ancestors with empty values; an
    /// existing node the caller may write is left alone.
    mutating func makeDirectory(_ path: String, _ context: inout XenStoreOperationContext) throws(XenStoreError) {
        if let node = node(at: path, &context) {
            guard node.permissions.rights(for: context.caller).contains(.write) else { throw .EACCES }
            return
        }
        let error = missingNodeError(path, needing: .write, &context)
        guard error == .ENOENT else { throw error }
        try createNode(path, value: [], &context)
    }

    /// Creates `path` with `value`, and every missing ancestor with an empty value
    /// (`construct_node`/`create_node`). New nodes take the permissions of the
    /// nearest existing ancestor; an unprivileged creator becomes their owner.
    /// Only `path` fires watches, as in `do_write`.
    private mutating func createNode(
        _ path: String, value: [UInt8], _ context: inout XenStoreOperationContext
    ) throws(XenStoreError) {
        let (ancestorPath, ancestorPermissions, ancestorSize, missing) = try nearestAncestor(of: path, &context)
        let names = missing.map(XenStorePath.baseName(of:))
        let topName = names[names.count - 1]
        if let limits = context.limits {
            // Each new node but `path` holds one child name and its NUL.
            let largestNewNode = ([value.count] + names.dropLast().map { $0.utf8.count + 1 }).max() ?? 0
            if XenStoreQuotas.exceeds(ownedCount(context.caller.domain, context) + missing.count, limits.nodes)
                || XenStoreQuotas.exceeds(ancestorSize + topName.utf8.count + 1, limits.nodeSize)
                || XenStoreQuotas.exceeds(largestNewNode, limits.nodeSize)
            {
                throw .ENOSPC
            }
        }
        if let failure = context.transaction?.failure { throw failure }

        var permissions = ancestorPermissions
        if !context.caller.privileged { permissions.owner = context.caller.domain }
        modifyNode(ancestorPath, &context) { $0.addChild(topName) }
        for depth in missing.indices.reversed() {
            var node = XenStoreNode(value: depth == 0 ? value : [], permissions: permissions)
            if depth > 0 { node.addChild(names[depth - 1]) }
            store(node, at: missing[depth], &context)
        }
        let parentPermissions = missing.count > 1 ? permissions : ancestorPermissions
        fireWatches(path, match: .subtree, visibleWith: [permissions, parentPermissions], &context)
    }

    /// The nearest existing ancestor of a missing `path` (its path, permissions
    /// and size) and the missing paths from `path` up to it, `path` first.
    /// Returns no node, so that the caller holds no copy of the ancestor while
    /// it changes the ancestor's child list.
    private func nearestAncestor(
        of path: String, _ context: inout XenStoreOperationContext
    ) throws(XenStoreError) -> (path: String, permissions: XenStorePermissions, size: Int, missing: [String]) {
        var missing = [path]
        var ancestorPath = XenStorePath.parent(of: path)
        while true {
            if let ancestor = node(at: ancestorPath, &context) {
                return (ancestorPath, ancestor.permissions, ancestor.size, missing)
            }
            // The root always exists; reaching past it means a damaged tree.
            guard ancestorPath != "/" else { throw .EIO }
            missing.append(ancestorPath)
            ancestorPath = XenStorePath.parent(of: ancestorPath)
        }
    }

    /// `RM`: removes a node and everything below it. A missing node is fine if
    /// its parent exists; `/` cannot be removed (`do_rm`).
    mutating func removeNode(_ path: String, _ context: inout XenStoreOperationContext) throws(XenStoreError) {
        guard let node = node(at: path, &context) else {
            let error = missingNodeError(path, needing: .write, &context)
            guard error == .ENOENT else { throw error }
            guard self.node(at: XenStorePath.parent(of: path), &context) != nil else { throw .ENOENT }
            return
        }
        guard node.permissions.rights(for: context.caller).contains(.write) else { throw .EACCES }
        guard path != "/" else { throw .EINVAL }
        let parentPath = XenStorePath.parent(of: path)
        guard let parentPermissions = self.node(at: parentPath, &context)?.permissions else { throw .EINVAL }
        let doomed = subtree(of: path, node, parentPermissions: parentPermissions, &context)
        if let failure = context.transaction?.failure { throw failure }

        // Children before parents, firing as each goes, like `delnode_sub`.
        for entry in doomed.reversed() {
            delete(entry.path, &context)
            fireWatches(
                entry.path, match: entry.path == path ? .subtree : .exact,
                visibleWith: [entry.node.permissions, entry.parentPermissions], &context)
        }
        modifyNode(parentPath, &context) { $0.removeChild(XenStorePath.baseName(of: path)) }
    }

    /// The nodes of the subtree at `path` in pre-order, each with its parent's
    /// permissions. Iterative, so deep trees cannot exhaust the stack.
    private func subtree(
        of path: String, _ root: XenStoreNode, parentPermissions: XenStorePermissions,
        _ context: inout XenStoreOperationContext
    ) -> [(path: String, node: XenStoreNode, parentPermissions: XenStorePermissions)] {
        var result: [(path: String, node: XenStoreNode, parentPermissions: XenStorePermissions)] = []
        var stack = [(path: path, node: root, parentPermissions: parentPermissions)]
        while let entry = stack.popLast() {
            result.append(entry)
            for name in entry.node.sortedChildren.reversed() {
                let childPath = XenStorePath.child(name, of: entry.path)
                if let child = node(at: childPath, &context) {
                    stack.append((childPath, child, entry.node.permissions))
                }
            }
        }
        return result
    }

    /// `GET_PERMS`: the permission list of a node the caller may read.
    func permissions(
        _ path: String, _ context: inout XenStoreOperationContext
    ) throws(XenStoreError) -> XenStorePermissions {
        try accessibleNode(path, needing: .read, &context).permissions
    }

    /// `SET_PERMS`: replaces the permission list. Only the owner (or a privileged
    /// caller) may do it, and only a privileged caller may change the owner
    /// (`do_set_perms`: `EACCES`, then `EPERM`).
    mutating func setPermissions(
        _ path: String, _ permissions: XenStorePermissions, _ context: inout XenStoreOperationContext
    ) throws(XenStoreError) {
        if let limits = context.limits, XenStoreQuotas.exceeds(permissions.list.count, limits.permissions) {
            throw .ENOSPC
        }
        // xenstored marks an owner it cannot resolve as ignored and answers ENOENT.
        guard permissions.owner != .any else { throw .ENOENT }
        var node = try accessibleNode(path, needing: [.write, .owner], &context)
        if !context.caller.privileged && permissions.owner != node.permissions.owner { throw .EPERM }
        let old = node.permissions
        node.permissions = permissions
        store(node, at: path, &context)
        var visibility = [old]
        visibility.append(contentsOf: self.visibility(of: node, at: path, &context))
        fireWatches(path, match: .subtree, visibleWith: visibility, &context)
    }

    /// The permission lists deciding who sees an event on an existing node: its
    /// own and its parent's.
    private func visibility(
        of node: XenStoreNode, at path: String, _ context: inout XenStoreOperationContext
    ) -> [XenStorePermissions] {
        guard path != "/", let parent = self.node(at: XenStorePath.parent(of: path), &context) else {
            return [node.permissions]
        }
        return [node.permissions, parent.permissions]
    }
}
