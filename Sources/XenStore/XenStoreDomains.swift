// Domain management: introduce, release, shutdown, resume and targets, after
// tools/xenstored/domain.c (introduce_domain, do_release, destroy_domain,
// domain_tree_remove, do_check_domain, do_resume, do_set_target).

extension XenStore {
    /// Marks `domain` introduced and reports it to the owner.
    ///
    /// The first introduction of a domain other than the privileged one fires
    /// `@introduceDomain`. Introducing it again (a toolstack rebinding the event
    /// channel after resume) resets its connections' watches and transactions,
    /// as `domain_conn_reset` does, and fires nothing.
    mutating func introduce(_ domain: DomainID, gfn: Int64?, eventChannel: UInt32?) throws(XenStoreError) {
        guard domain < .firstReserved else { throw .EINVAL }
        if introducedDomains.insert(domain).inserted {
            if domain != privilegedDomain { fireSpecialWatch(XenStorePath.introduceDomain, domain: domain) }
        } else {
            let affected = connections.values.filter { $0.domain == domain }.map(\.id)
            for connection in affected { resetWatches(connection: connection) }
        }
        outbox.events.append(.domainIntroduced(domain, gfn: gfn, eventChannel: eventChannel))
    }

    /// Forgets an introduced domain, as `do_release` and `destroy_domain` do:
    /// closes its connections (dropping their watches first, so that the removal
    /// of its nodes does not notify it), removes the nodes it owns with their
    /// subtrees (firing watches), strips it from other nodes' permissions so that
    /// a later domain with the same id inherits nothing, then fires `@releaseDomain`.
    ///
    /// - Throws: `EINVAL` for the privileged domain, `ENOENT` if not introduced.
    mutating func release(_ domain: DomainID) throws(XenStoreError) {
        guard domain != privilegedDomain, domain < .firstReserved else { throw .EINVAL }
        guard introducedDomains.remove(domain) != nil else { throw .ENOENT }
        let closed = connections.values.filter { $0.domain == domain }.map(\.id).sorted()
        for connection in closed { disconnect(connection) }
        removeNodes(of: domain)
        targets[domain] = nil
        targets = targets.filter { $0.value != domain }
        shutDownDomains.remove(domain)
        domainQuotas[domain] = nil
        fireSpecialWatch(XenStorePath.releaseDomain, domain: domain)
        outbox.events.append(.domainReleased(domain, closedConnections: closed))
    }

    /// A domain shut down (crashed, powered off, suspended): fires
    /// `@releaseDomain` once, until `RESUME` re-arms it (`do_check_domain`).
    mutating func shutDown(_ domain: DomainID) {
        guard introducedDomains.contains(domain), shutDownDomains.insert(domain).inserted else { return }
        fireSpecialWatch(XenStorePath.releaseDomain, domain: domain)
    }

    /// `RESUME`: re-arms the shutdown `@releaseDomain` event.
    mutating func resume(_ domain: DomainID) throws(XenStoreError) {
        guard domain != privilegedDomain, domain < .firstReserved else { throw .EINVAL }
        guard introducedDomains.contains(domain) else { throw .ENOENT }
        shutDownDomains.remove(domain)
    }

    /// `SET_TARGET`: `domain` gets the rights of `target` (a device model acting
    /// for its guest). Both must be introduced (`find_connected_domain`: `ENOENT`).
    mutating func setTarget(_ domain: DomainID, target: DomainID) throws(XenStoreError) {
        guard introducedDomains.contains(domain), introducedDomains.contains(target) else { throw .ENOENT }
        targets[domain] = target
    }

    /// Whether a domain is introduced; `DOMID_SELF` always is (`do_is_domain_introduced`).
    public func isDomainIntroduced(_ domain: DomainID) -> Bool {
        domain == .domidSelf || introducedDomains.contains(domain)
    }

    /// Removes what `domain` owns and its permission entries everywhere, visiting
    /// only nodes that mention it. Ancestors come first, so a removed subtree's
    /// own entries are skipped. The root and the special nodes are never removed:
    /// they pass to the privileged domain, as xenstored's `keep_orphans` mode does.
    private mutating func removeNodes(of domain: DomainID) {
        let paths = tree.paths(mentioning: domain).sorted { $0.utf8.count < $1.utf8.count }
        var context = context(for: toolstackCaller)
        for path in paths {
            guard var node = tree[path] else { continue }
            let removable = path.hasPrefix("/") && path != "/"
            if node.permissions.owner == domain && removable {
                try? removeNode(path, &context)
                continue
            }
            if node.permissions.owner == domain { node.permissions.owner = privilegedDomain }
            node.permissions.entries.removeAll { $0.domain == domain }
            tree.put(node, at: path, bumpGeneration: false)
        }
    }
}
