// Wire handlers: argument parsing and reply encoding for each request type, after
// the do_* functions of tools/xenstored/core.c, transaction.c, watch.c and domain.c.
// Each turns a payload into a call on the store and the result into reply bytes.

extension XenStore {
    // MARK: - Nodes

    static func handleRead(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError) -> [UInt8] {
        let path = try request.singlePath()
        return try store.readValue(path, &request.context)
    }

    static func handleDirectory(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        let path = try request.singlePath()
        var payload: [UInt8] = []
        for name in try store.childNames(path, &request.context) {
            payload.append(contentsOf: name.utf8)
            payload.append(0)
        }
        return payload
    }

    /// `<path>|<offset>|`: exactly two NULs in the payload (`send_directory_part`).
    static func handleDirectoryPart(_ store: inout XenStore, _ request: inout XenStoreRequest)
        throws(XenStoreError) -> [UInt8]
    {
        let payload = request.message.payload
        let arguments = XenStoreWire.strings(payload)
        guard XenStoreWire.nulCount(payload) == 2, arguments.count == 2,
            let offset = XenStoreWire.decimal(arguments[1], maximum: Int(UInt32.max))
        else { throw .EINVAL }
        let path = try request.canonical(arguments[0], allowSpecial: false).path
        return try store.directoryPart(path, offset: offset, &request.context)
    }

    /// `<path>|<value|>`: the value is everything after the first NUL, NULs included.
    static func handleWrite(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        let payload = request.message.payload
        guard let nul = payload.firstIndex(of: 0) else { throw .EINVAL }
        let path = try request.canonical(payload[..<nul], allowSpecial: false).path
        try store.writeValue(path, Array(payload[(nul + 1)...]), &request.context)
        return XenStoreWire.ok
    }

    static func handleMkdir(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        try store.makeDirectory(try request.singlePath(), &request.context)
        return XenStoreWire.ok
    }

    static func handleRm(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError) -> [UInt8] {
        try store.removeNode(try request.singlePath(), &request.context)
        return XenStoreWire.ok
    }

    static func handleGetPerms(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        let path = try request.singlePath(allowSpecial: true)
        return try store.permissions(path, &request.context).wirePayload
    }

    /// `<path>|<perm>|+`: at least one permission string (`do_set_perms` counts NULs).
    static func handleSetPerms(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        let arguments = XenStoreWire.strings(request.message.payload)
        guard arguments.count >= 2 else { throw .EINVAL }
        if let limits = request.context.limits, XenStoreQuotas.exceeds(arguments.count - 1, limits.permissions) {
            throw .ENOSPC
        }
        var list: [XenStorePermission] = []
        for argument in arguments.dropFirst() { list.append(try XenStorePermission(wire: argument)) }
        guard let permissions = XenStorePermissions(list) else { throw .EINVAL }
        let path = try request.canonical(arguments[0], allowSpecial: true).path
        try store.setPermissions(path, permissions, &request.context)
        return XenStoreWire.ok
    }

    // MARK: - Watches

    /// `<wpath>|<token>|`. The optional `<depth>|` of `XENSTORE_SERVER_FEATURE_WATCHDEPTH`
    /// is not offered, so three arguments are `EINVAL`, as for a xenstored without it.
    static func handleWatch(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        let arguments = XenStoreWire.strings(request.message.payload)
        guard arguments.count == 2 else { throw .EINVAL }
        let (path, relative) = try request.canonical(arguments[0], allowSpecial: true)
        let watch = try store.addWatch(
            connection: request.connection, path: path, relative: relative, token: Array(arguments[1]),
            request.context)
        if let first = store.watchEvent(watch, path: path) { request.afterReply.append(first) }
        return XenStoreWire.ok
    }

    static func handleUnwatch(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        let arguments = XenStoreWire.strings(request.message.payload)
        guard arguments.count == 2 else { throw .EINVAL }
        let path = try request.canonical(arguments[0], allowSpecial: true).path
        try store.removeWatch(connection: request.connection, path: path, token: Array(arguments[1]))
        return XenStoreWire.ok
    }

    static func handleResetWatches(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        store.resetWatches(connection: request.connection)
        request.transactionEnded = true
        return XenStoreWire.ok
    }

    // MARK: - Transactions

    static func handleTransactionStart(_ store: inout XenStore, _ request: inout XenStoreRequest)
        throws(XenStoreError) -> [UInt8]
    {
        let id = try store.startTransaction(on: request.connection, request.context)
        return XenStoreWire.terminated("\(id)")
    }

    /// `T|` commits, `F|` aborts; either way the transaction is over.
    static func handleTransactionEnd(_ store: inout XenStore, _ request: inout XenStoreRequest)
        throws(XenStoreError) -> [UInt8]
    {
        guard let argument = XenStoreWire.singleArgument(request.message.payload), argument.count == 1,
            let verdict = argument.first, verdict == UInt8(ascii: "T") || verdict == UInt8(ascii: "F")
        else { throw .EINVAL }
        guard let transaction = request.context.transaction else { throw .ENOENT }
        request.context.transaction = nil
        request.transactionEnded = true
        if verdict == UInt8(ascii: "T") { try store.commit(transaction, request.context) }
        return XenStoreWire.ok
    }

    // MARK: - Domains

    /// `<domid>|<gfn>|<evtchn>|`: the event channel must be positive (`do_introduce`);
    /// the gfn is passed on as given, or nil when it is not a number.
    static func handleIntroduce(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        let arguments = XenStoreWire.strings(request.message.payload)
        guard arguments.count >= 3, let domain = XenStoreWire.domainID(arguments[0]),
            let port = XenStoreWire.decimal(arguments[2], maximum: Int(UInt32.max)), port > 0
        else { throw .EINVAL }
        try store.introduce(domain, gfn: XenStoreWire.signedDecimal(arguments[1]), eventChannel: UInt32(port))
        return XenStoreWire.ok
    }

    static func handleRelease(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        try store.release(try request.singleDomain())
        return XenStoreWire.ok
    }

    static func handleResume(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        try store.resume(try request.singleDomain())
        return XenStoreWire.ok
    }

    static func handleIsDomainIntroduced(_ store: inout XenStore, _ request: inout XenStoreRequest)
        throws(XenStoreError) -> [UInt8]
    {
        XenStoreWire.terminated(store.isDomainIntroduced(try request.singleDomain()) ? "T" : "F")
    }

    static func handleSetTarget(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        let arguments = XenStoreWire.strings(request.message.payload)
        guard arguments.count >= 2, let domain = XenStoreWire.domainID(arguments[0]),
            let target = XenStoreWire.domainID(arguments[1])
        else { throw .EINVAL }
        try store.setTarget(domain, target: target)
        return XenStoreWire.ok
    }

    static func handleGetDomainPath(_ store: inout XenStore, _ request: inout XenStoreRequest)
        throws(XenStoreError) -> [UInt8]
    {
        XenStoreWire.terminated(XenStorePath.domainPath(try request.singleDomain()))
    }

    // MARK: - Quotas

    /// `[[<domid>|]<quota>|]`: no argument lists the quota names, one gives the
    /// global value, two a domain's (`do_get_quota`).
    static func handleGetQuota(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        let arguments = XenStoreWire.strings(request.message.payload)
        let quotas: XenStoreQuotas
        switch arguments.count {
        case 0: return XenStoreWire.terminated(XenStoreQuotas.names.joined(separator: " "))
        case 1: quotas = store.quotas
        case 2: quotas = store.quotas(for: try store.knownDomain(arguments[0]))
        default: throw .EINVAL
        }
        guard let value = quotas[name: String(decoding: arguments[arguments.count - 1], as: UTF8.self)] else {
            throw .EINVAL
        }
        return XenStoreWire.terminated("\(value)")
    }

    /// `[<domid>|]<quota>|<value>|`; 0 disables a quota (`do_set_quota`).
    static func handleSetQuota(_ store: inout XenStore, _ request: inout XenStoreRequest) throws(XenStoreError)
        -> [UInt8]
    {
        let arguments = XenStoreWire.strings(request.message.payload)
        guard arguments.count == 2 || arguments.count == 3,
            let value = XenStoreWire.decimal(arguments[arguments.count - 1], maximum: Int(UInt32.max) - 1)
        else { throw .EINVAL }
        let name = String(decoding: arguments[arguments.count - 2], as: UTF8.self)
        guard store.quotas[name: name] != nil else { throw .EINVAL }
        if arguments.count == 2 {
            store.quotas[name: name] = value
        } else {
            let domain = try store.knownDomain(arguments[0])
            var quotas = store.quotas(for: domain)
            quotas[name: name] = value
            store.domainQuotas[domain] = quotas
        }
        return XenStoreWire.ok
    }

    /// A domid argument naming an introduced domain: `EINVAL` if malformed, `ENOENT` if unknown.
    private func knownDomain(_ bytes: ArraySlice<UInt8>) throws(XenStoreError) -> DomainID {
        guard let domain = XenStoreWire.domainID(bytes) else { throw .EINVAL }
        guard introducedDomains.contains(domain) else { throw .ENOENT }
        return domain
    }
}
