// The in-process toolstack's API: the same operations as the wire requests, as
// Swift calls made with the privileged domain's rights and no connection (like
// libxenstore's xs_read/xs_write/... used by libxl).

extension XenStore {
    /// The value at `path`. Relative paths are relative to the privileged
    /// domain's home, as for a dom0 client.
    public func read(_ path: String) throws(XenStoreError) -> [UInt8] {
        var context = context(for: toolstackCaller)
        return try readValue(try toolstackPath(path), &context)
    }

    /// The value at `path` as UTF-8 text.
    public func readString(_ path: String) throws(XenStoreError) -> String {
        String(decoding: try read(path), as: UTF8.self)
    }

    /// The leaf names of the children of `path`, sorted.
    public func directory(_ path: String) throws(XenStoreError) -> [String] {
        var context = context(for: toolstackCaller)
        return try childNames(try toolstackPath(path), &context)
    }

    /// Whether a node exists at `path`.
    public func exists(_ path: String) -> Bool {
        guard let canonical = try? toolstackPath(path, allowSpecial: true) else { return false }
        return tree[canonical] != nil
    }

    /// The permissions of `path`; special paths (`@releaseDomain`) are allowed.
    public func permissions(_ path: String) throws(XenStoreError) -> XenStorePermissions {
        var context = context(for: toolstackCaller)
        return try permissions(try toolstackPath(path, allowSpecial: true), &context)
    }

    /// Sets the value at `path`, creating missing nodes. The returned output holds
    /// the watch events to deliver.
    public mutating func write(_ path: String, _ value: [UInt8]) throws(XenStoreError) -> XenStoreOutput {
        let canonical = try toolstackPath(path)
        guard value.count <= XenStoreMessage.payloadMax else { throw .E2BIG }
        return try collectingOutput { (store: inout XenStore) throws(XenStoreError) in
            var context = store.context(for: store.toolstackCaller)
            try store.writeValue(canonical, value, &context)
        }
    }

    /// Sets the value at `path` to UTF-8 text.
    public mutating func write(_ path: String, string: String) throws(XenStoreError) -> XenStoreOutput {
        try write(path, Array(string.utf8))
    }

    /// Creates `path` and missing ancestors with empty values.
    public mutating func mkdir(_ path: String) throws(XenStoreError) -> XenStoreOutput {
        let canonical = try toolstackPath(path)
        return try collectingOutput { (store: inout XenStore) throws(XenStoreError) in
            var context = store.context(for: store.toolstackCaller)
            try store.makeDirectory(canonical, &context)
        }
    }

    /// Removes `path` and its subtree.
    public mutating func rm(_ path: String) throws(XenStoreError) -> XenStoreOutput {
        let canonical = try toolstackPath(path)
        return try collectingOutput { (store: inout XenStore) throws(XenStoreError) in
            var context = store.context(for: store.toolstackCaller)
            try store.removeNode(canonical, &context)
        }
    }

    /// Replaces the permissions of `path`; special paths are allowed.
    public mutating func setPermissions(
        _ path: String, _ permissions: XenStorePermissions
    ) throws(XenStoreError) -> XenStoreOutput {
        let canonical = try toolstackPath(path, allowSpecial: true)
        return try collectingOutput { (store: inout XenStore) throws(XenStoreError) in
            var context = store.context(for: store.toolstackCaller)
            try store.setPermissions(canonical, permissions, &context)
        }
    }

    /// Introduces a domain: fires `@introduceDomain` the first time, and reports
    /// `XenStoreEvent.domainIntroduced`. `EINVAL` for a reserved domain id.
    public mutating func introduceDomain(_ domain: DomainID) throws(XenStoreError) -> XenStoreOutput {
        try collectingOutput { (store: inout XenStore) throws(XenStoreError) in
            try store.introduce(domain, gfn: nil, eventChannel: nil)
        }
    }

    /// Releases a domain (it was destroyed, or the toolstack says it died): closes
    /// its connections, drops their watches and transactions, removes the nodes
    /// it owns, and fires `@releaseDomain`. `EINVAL` for the privileged domain,
    /// `ENOENT` for a domain not introduced.
    public mutating func releaseDomain(_ domain: DomainID) throws(XenStoreError) -> XenStoreOutput {
        try collectingOutput { (store: inout XenStore) throws(XenStoreError) in
            try store.release(domain)
        }
    }

    /// Reports that a domain shut down (crash, poweroff, suspend): fires
    /// `@releaseDomain` once until the domain is resumed (`RESUME`), as xenstored
    /// does when it sees the domain's shutdown state.
    public mutating func domainDidShutDown(_ domain: DomainID) -> XenStoreOutput {
        (try? collectingOutput { (store: inout XenStore) throws(XenStoreError) in store.shutDown(domain) })
            ?? XenStoreOutput()
    }

    /// `/local/domain/<domid>`, a domain's home (`GET_DOMAIN_PATH`).
    public static func domainPath(_ domain: DomainID) -> String { XenStorePath.domainPath(domain) }

    private func toolstackPath(_ path: String, allowSpecial: Bool = false) throws(XenStoreError) -> String {
        try XenStorePath.canonicalize(
            Array(path.utf8)[...], home: privilegedDomain, allowSpecial: allowSpecial, relativeLimit: nil
        ).path
    }
}
