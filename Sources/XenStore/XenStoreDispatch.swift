// Request dispatch: the wire_funcs table and process_message of
// tools/xenstored/core.c, and the argument parsing of each request type.

/// Properties of a request type (`XS_FLAG_*` in `tools/xenstored/core.c`).
struct XenStoreDispatchFlags: OptionSet, Sendable {
    let rawValue: UInt8
    /// Only privileged connections may send it; others get `EACCES` (`XS_FLAG_PRIV`).
    static let privileged = XenStoreDispatchFlags(rawValue: 1)
    /// The header's `tx_id` is ignored, not looked up (`XS_FLAG_NOTID`).
    static let ignoresTransaction = XenStoreDispatchFlags(rawValue: 2)
}

/// One request being served.
struct XenStoreRequest: Sendable {
    let connection: XenStore.ConnectionID
    let message: XenStoreMessage
    var context: XenStoreOperationContext
    /// Set when the request ended its transaction, which must not be put back.
    var transactionEnded = false
    /// Messages that must follow the reply (the first event of a new watch).
    var afterReply: [XenStoreOutgoing] = []

    /// The caller's canonical form of one path argument.
    func canonical(
        _ bytes: ArraySlice<UInt8>, allowSpecial: Bool
    ) throws(XenStoreError) -> (path: String, relative: Bool) {
        try XenStorePath.canonicalize(
            bytes, home: context.caller.domain, allowSpecial: allowSpecial,
            relativeLimit: context.limits?.pathLength)
    }

    /// The path of a one-argument request.
    func singlePath(allowSpecial: Bool = false) throws(XenStoreError) -> String {
        guard let argument = XenStoreWire.singleArgument(message.payload) else { throw .EINVAL }
        return try canonical(argument, allowSpecial: allowSpecial).path
    }

    /// The domain id of a one-argument request.
    func singleDomain() throws(XenStoreError) -> XenStore.DomainID {
        guard let argument = XenStoreWire.singleArgument(message.payload),
            let domain = XenStoreWire.domainID(argument)
        else { throw .EINVAL }
        return domain
    }
}

typealias XenStoreHandler = @Sendable (inout XenStore, inout XenStoreRequest) throws(XenStoreError) -> [UInt8]

/// A row of the dispatch table.
struct XenStoreDispatchEntry: Sendable {
    let flags: XenStoreDispatchFlags
    let handler: XenStoreHandler

    init(_ handler: @escaping XenStoreHandler, flags: XenStoreDispatchFlags = []) {
        self.flags = flags
        self.handler = handler
    }
}

extension XenStore {
    /// The request types served, as xenstored's `wire_funcs`. Types absent here
    /// (`CONTROL`, `WATCH_EVENT`, `ERROR`, `GET_FEATURE`, `SET_FEATURE`, the removed
    /// `RESTRICT`, unknown numbers) get `ENOSYS`, which `docs/misc/xenstore.txt`
    /// prescribes for unsupported types.
    static let dispatchTable: [XenStoreMessageType: XenStoreDispatchEntry] = [
        .directory: XenStoreDispatchEntry(handleDirectory),
        .read: XenStoreDispatchEntry(handleRead),
        .getPerms: XenStoreDispatchEntry(handleGetPerms),
        .watch: XenStoreDispatchEntry(handleWatch, flags: .ignoresTransaction),
        .unwatch: XenStoreDispatchEntry(handleUnwatch, flags: .ignoresTransaction),
        .transactionStart: XenStoreDispatchEntry(handleTransactionStart),
        .transactionEnd: XenStoreDispatchEntry(handleTransactionEnd),
        .introduce: XenStoreDispatchEntry(handleIntroduce, flags: .privileged),
        .release: XenStoreDispatchEntry(handleRelease, flags: .privileged),
        .getDomainPath: XenStoreDispatchEntry(handleGetDomainPath),
        .write: XenStoreDispatchEntry(handleWrite),
        .mkdir: XenStoreDispatchEntry(handleMkdir),
        .rm: XenStoreDispatchEntry(handleRm),
        .setPerms: XenStoreDispatchEntry(handleSetPerms),
        .isDomainIntroduced: XenStoreDispatchEntry(handleIsDomainIntroduced, flags: .privileged),
        .resume: XenStoreDispatchEntry(handleResume, flags: .privileged),
        .setTarget: XenStoreDispatchEntry(handleSetTarget, flags: .privileged),
        .resetWatches: XenStoreDispatchEntry(handleResetWatches),
        .directoryPart: XenStoreDispatchEntry(handleDirectoryPart),
        .getQuota: XenStoreDispatchEntry(handleGetQuota, flags: .privileged),
        .setQuota: XenStoreDispatchEntry(handleSetQuota, flags: .privileged),
    ]

    /// Serves one request from `connection` and returns the reply, followed or
    /// preceded by the watch events it caused for any connection, and any events
    /// for the owner.
    ///
    /// Like xenstored's `process_message`: an unknown type gets `ENOSYS`; a
    /// privileged type from an unprivileged connection gets `EACCES`; a `tx_id`
    /// naming no open transaction of this connection gets `ENOENT`; an error is an
    /// `XS_ERROR` reply with the request's `req_id` and `tx_id`. Events caused by
    /// a change come before the reply, as xenstored queues them; the first event
    /// of a new watch comes after it. A reply that would exceed
    /// `XENSTORE_PAYLOAD_MAX` becomes `E2BIG`. A message from a connection that is
    /// not open produces nothing.
    public mutating func handle(_ message: XenStoreMessage, from connection: ConnectionID) -> XenStoreOutput {
        guard let client = connections[connection]?.identity else { return XenStoreOutput() }
        outbox = XenStoreOutput()
        var afterReply: [XenStoreOutgoing] = []
        let reply: XenStoreMessage
        do {
            var payload = try dispatch(message, from: client, afterReply: &afterReply)
            if payload.count > XenStoreMessage.payloadMax {
                payload = XenStoreError.E2BIG.payload
                afterReply = []
                reply = XenStoreMessage(
                    type: .error, requestID: message.requestID, transactionID: message.transactionID, payload: payload)
            } else {
                reply = XenStoreMessage(
                    typeRawValue: message.typeRawValue, requestID: message.requestID,
                    transactionID: message.transactionID, payload: payload)
            }
        } catch {
            reply = XenStoreMessage(
                type: .error, requestID: message.requestID, transactionID: message.transactionID,
                payload: error.payload)
        }
        outbox.messages.append(XenStoreOutgoing(connection: connection, message: reply))
        outbox.messages.append(contentsOf: afterReply)
        let output = outbox
        outbox = XenStoreOutput()
        return output
    }

    private mutating func dispatch(
        _ message: XenStoreMessage, from client: Identity, afterReply: inout [XenStoreOutgoing]
    ) throws(XenStoreError) -> [UInt8] {
        guard message.payload.count <= XenStoreMessage.payloadMax else { throw .E2BIG }
        guard let type = message.type, let entry = Self.dispatchTable[type] else { throw .ENOSYS }
        if entry.flags.contains(.privileged) && !client.privileged { throw .EACCES }
        let caller = caller(domain: client.domain, privileged: client.privileged)
        var request = XenStoreRequest(
            connection: client.id, message: message,
            context: XenStoreOperationContext(
                caller: caller, limits: caller.privileged ? nil : quotas(for: caller.domain)))
        if !entry.flags.contains(.ignoresTransaction) && message.transactionID != 0 {
            // Moved, not copied, so that the handler's changes do not copy the overlay.
            request.context.transaction = connections[client.id]?.transactions.removeValue(
                forKey: message.transactionID)
            guard request.context.transaction != nil else { throw .ENOENT }
        }
        let failedBefore = request.context.transaction?.failure != nil
        let result: Result<[UInt8], XenStoreError>
        do {
            result = .success(try entry.handler(&self, &request))
        } catch {
            result = .failure(error)
        }
        // Put the transaction back unless the request ended it or the connection's
        // transactions were discarded meanwhile.
        if !request.transactionEnded, let transaction = request.context.transaction,
            connections[client.id]?.epoch == client.epoch
        {
            connections[client.id]?.transactions[transaction.id] = transaction
        }
        if !failedBefore, let failure = request.context.transaction?.failure, !request.transactionEnded {
            throw failure
        }
        afterReply = request.afterReply
        return try result.get()
    }
}
