import GuestMemory
import Hypervisor
import Synchronization
import XenABI
import XenStore

/// The XenStore daemon's role (xenstored): one store shared by every domain, served
/// to each domain through its xenstore ring page (start_info.store_mfn) and event
/// channel, and to the toolstack in-process. The store itself is the pure `XenStore`
/// core; this class moves messages between it and guest memory.
///
/// Thread-safe: guests' notifications arrive on their vCPU threads.
public final class XenStoreService: Sendable {
    struct RingConnection {
        let domain: Domain
        let ring: GuestPhysicalAddress
        let port: UInt32
        var channel = XenStoreRingChannel()
        var broken = false
    }

    struct State {
        var store: XenStore
        var rings: [XenStore.ConnectionID: RingConnection] = [:]
        var byDomain: [UInt16: XenStore.ConnectionID] = [:]
        var localSinks: [XenStore.ConnectionID: @Sendable (XenStoreMessage) -> Void] = [:]
    }

    private let state: Mutex<State>
    private let log: HypervisorLog

    public init(log: HypervisorLog, quotas: XenStoreQuotas = XenStoreQuotas()) {
        self.log = log
        var store = XenStore(quotas: quotas)
        // The store's skeleton, as xenstored starts with it.
        _ = try? store.mkdir("/local/domain")
        _ = try? store.mkdir("/vm")
        _ = try? store.mkdir("/tool")
        state = Mutex(State(store: store))
    }

    // MARK: Guest rings

    /// Starts serving `domain`'s xenstore ring at `ring`; returns the event channel port
    /// (start_info.store_evtchn). The domain is introduced (`@introduceDomain` fires).
    public func attach(_ domain: Domain, ring: GuestPhysicalAddress) throws(XenError) -> UInt32 {
        // The service is held by the endpoint; the domain is not (the service holds
        // it until `detach`).
        let domainID = domain.id
        let endpoint = HostEndpoint(name: "xenstore") { [self] in
            self.serve(domainID: domainID)
        }
        let port = try domain.bindHostEndpoint(endpoint)
        let output: XenStoreOutput = state.withLock { state in
            let connection = state.store.connect(domain: XenStore.DomainID(domain.id), privileged: false)
            state.rings[connection] = RingConnection(domain: domain, ring: ring, port: port)
            state.byDomain[domain.id] = connection
            return (try? state.store.introduceDomain(XenStore.DomainID(domain.id))) ?? XenStoreOutput()
        }
        deliver(output)
        return port
    }

    /// Stops serving a domain (it was destroyed): closes its connection and fires
    /// `@releaseDomain`.
    public func detach(domainID: UInt16) {
        let output: XenStoreOutput = state.withLock { state in
            if let connection = state.byDomain.removeValue(forKey: domainID) {
                state.rings[connection] = nil
                state.store.disconnect(connection)
            }
            return (try? state.store.releaseDomain(XenStore.DomainID(domainID))) ?? XenStoreOutput()
        }
        deliver(output)
    }

    /// The guest signalled its ring: handle every complete request in it.
    func serve(domainID: UInt16) {
        let output: XenStoreOutput? = state.withLock { state -> XenStoreOutput? in
            guard let connection = state.byDomain[domainID], var ring = state.rings[connection], !ring.broken else { return nil }
            var memory = GuestRingMemory(memory: ring.domain.memory, base: ring.ring)
            let messages: [XenStoreMessage]
            do throws(XenStoreTransportError) {
                messages = try ring.channel.receive(from: &memory)
            } catch {
                ring.broken = true
                XenStoreRing.reportError(error, in: &memory)
                state.rings[connection] = ring
                log.log(.warning, "d\(domainID): xenstore ring broken (\(error)); the connection is closed")
                return nil
            }
            state.rings[connection] = ring
            if ring.domain.trace.load(ordering: .relaxed) {
                log.log(.trace, "d\(domainID): xenstore ring notified: \(messages.count) request(s)")
            }
            var combined = XenStoreOutput()
            for message in messages {
                if ring.domain.trace.load(ordering: .relaxed) {
                    log.log(.trace, "d\(domainID): xenstore \(Self.describe(message))")
                }
                let result = state.store.handle(message, from: connection)
                if ring.domain.trace.load(ordering: .relaxed) {
                    for reply in result.messages where reply.connection == connection {
                        log.log(.trace, "d\(domainID): xenstore reply \(Self.describe(reply.message))")
                    }
                }
                combined.messages += result.messages
                combined.events += result.events
            }
            return combined
        }
        if let output { deliver(output) }
        // Responses may have been waiting for ring space the guest just freed.
        flush(domainID: domainID)
    }

    /// Routes messages to their connections and writes the rings.
    private func deliver(_ output: XenStoreOutput) {
        var touched = Set<UInt16>()
        var local: [(@Sendable (XenStoreMessage) -> Void, XenStoreMessage)] = []
        state.withLock { state in
            for outgoing in output.messages {
                if var ring = state.rings[outgoing.connection] {
                    ring.channel.send(outgoing.message)
                    state.rings[outgoing.connection] = ring
                    touched.insert(ring.domain.id)
                } else if let sink = state.localSinks[outgoing.connection] {
                    local.append((sink, outgoing.message))
                }
            }
        }
        for domainID in touched { flush(domainID: domainID) }
        for (sink, message) in local { sink(message) }
    }

    /// Writes queued responses into a domain's ring and notifies it.
    private func flush(domainID: UInt16) {
        let notify: (Domain, UInt32)? = state.withLock { state -> (Domain, UInt32)? in
            guard let connection = state.byDomain[domainID], var ring = state.rings[connection], !ring.broken else { return nil }
            var memory = GuestRingMemory(memory: ring.domain.memory, base: ring.ring)
            let written: Int
            do throws(XenStoreTransportError) { written = try ring.channel.flush(to: &memory) } catch {
                ring.broken = true
                XenStoreRing.reportError(error, in: &memory)
                state.rings[connection] = ring
                log.log(.warning, "d\(domainID): xenstore response ring broken (\(error)); the connection is closed")
                return nil
            }
            state.rings[connection] = ring
            return written > 0 ? (ring.domain, ring.port) : nil
        }
        if let (domain, port) = notify { domain.notifyFromHost(port: port) }
    }

    /// "TYPE payload" with NULs shown as spaces, for traces.
    static func describe(_ message: XenStoreMessage) -> String {
        let type = message.type.map { "\($0)" } ?? "type \(message.typeRawValue)"
        let text = String(decoding: message.payload.prefix(120).map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
        return "\(type) tx \(message.transactionID) req \(message.requestID): \(text)"
    }

    // MARK: The toolstack

    /// Runs toolstack operations on the store (privileged, no connection) and delivers
    /// the watch events they fire.
    @discardableResult
    public func modify<T>(_ body: (inout XenStore) throws(XenStoreError) -> (T, XenStoreOutput)) throws(XenStoreError) -> T {
        let (value, output) = try state.withLock { state throws(XenStoreError) in try body(&state.store) }
        deliver(output)
        return value
    }

    /// Reads with the toolstack's rights.
    public func read<T>(_ body: (XenStore) throws(XenStoreError) -> T) throws(XenStoreError) -> T {
        try state.withLock { state throws(XenStoreError) in try body(state.store) }
    }

    /// Writes `value` at `path` with the toolstack's rights.
    public func write(_ path: String, _ value: String) throws(XenStoreError) {
        try modify { store throws(XenStoreError) in ((), try store.write(path, string: value)) }
    }

    /// A connection for a local client (the daemon's socket clients): messages go in
    /// with `handle`, replies and watch events come back through `sink`.
    public func connectLocal(domain: UInt16 = 0, privileged: Bool, sink: @escaping @Sendable (XenStoreMessage) -> Void) -> XenStore.ConnectionID {
        state.withLock { state in
            let connection = state.store.connect(domain: XenStore.DomainID(domain), privileged: privileged)
            state.localSinks[connection] = sink
            return connection
        }
    }

    public func disconnectLocal(_ connection: XenStore.ConnectionID) {
        state.withLock { state in
            state.localSinks[connection] = nil
            state.store.disconnect(connection)
        }
    }

    /// Handles a message from a local client.
    public func handle(_ message: XenStoreMessage, from connection: XenStore.ConnectionID) {
        let output = state.withLock { $0.store.handle(message, from: connection) }
        deliver(output)
    }

    // MARK: Domain layout

    /// Writes the nodes the toolstack creates for a new domain under /local/domain/N
    /// (libxl__domain_make and libxl__build_post): name, domid, vm, memory, cpu
    /// availability, console ring and port, and the directories the guest may write.
    public func writeDomainLayout(_ domain: Domain, name: String, uuid: String, memoryKiB: UInt64, maxMemoryKiB: UInt64,
                                  consoleRing: UInt64, consolePort: UInt32, storeRing: UInt64, storePort: UInt32) throws(XenStoreError) {
        let id = XenStore.DomainID(domain.id)
        let home = "/local/domain/\(domain.id)"
        let readOnly = XenStorePermissions(owner: 0, entries: [XenStorePermission(domain: id, access: .read)])
        let readWrite = XenStorePermissions(owner: id)
        try modify { store throws(XenStoreError) in
            var output = XenStoreOutput()
            func merge(_ next: XenStoreOutput) { output.messages += next.messages; output.events += next.events }
            merge(try store.mkdir(home))
            merge(try store.setPermissions(home, readOnly))
            merge(try store.write("/vm/\(uuid)/name", string: name))
            merge(try store.write("/vm/\(uuid)/uuid", string: uuid))
            for (key, value) in [("name", name), ("domid", "\(domain.id)"), ("vm", "/vm/\(uuid)"),
                                 ("memory/static-max", "\(maxMemoryKiB)"), ("memory/target", "\(memoryKiB)"),
                                 ("memory/videoram", "-1"), ("store/port", "\(storePort)"), ("store/ring-ref", "\(storeRing)"),
                                 ("console/port", "\(consolePort)"), ("console/ring-ref", "\(consoleRing)"),
                                 ("console/type", "xenconsoled"), ("console/limit", "1048576")] {
                merge(try store.write("\(home)/\(key)", string: value))
            }
            // Every vCPU the domain has is available, as xl marks vcpus= (the daemon
            // rewrites these for maxvcpus). A vCPU the guest has not brought up yet is
            // still available: "offline" would make Linux's xen-cpu-hotplug unplug it.
            for vcpu in 0..<domain.vcpus.count {
                merge(try store.write("\(home)/cpu/\(vcpu)/availability", string: "online"))
            }
            for directory in ["device", "control", "data", "drivers", "feature", "attr", "error"] {
                merge(try store.mkdir("\(home)/\(directory)"))
            }
            merge(try store.setPermissions("\(home)/device", readOnly))
            for writable in ["control", "data", "drivers", "feature", "attr", "error", "memory"] {
                merge(try store.setPermissions("\(home)/\(writable)", readWrite))
            }
            merge(try store.setPermissions("\(home)/control", readWrite))
            return ((), output)
        }
    }
}

/// The xenstore ring page in guest memory, for the ring codec: ring indices with
/// acquire/release ordering (atomic 32-bit accesses), bytes copied.
struct GuestRingMemory: XenStoreRingMemory {
    let memory: GuestMemory
    let base: GuestPhysicalAddress

    func address(_ offset: Int) -> GuestPhysicalAddress { GuestPhysicalAddress(base.rawValue + UInt64(offset)) }

    func load32(at offset: Int) -> UInt32 {
        (try? memory.atomicLoad32(at: address(offset))) ?? 0
    }

    mutating func store32(_ value: UInt32, at offset: Int) {
        try? memory.atomicStore32(value, at: address(offset))
    }

    func loadBytes(at offset: Int, count: Int) -> [UInt8] {
        (try? memory.readBytes(at: address(offset), count: count)) ?? [UInt8](repeating: 0, count: count)
    }

    mutating func storeBytes(_ bytes: ArraySlice<UInt8>, at offset: Int) {
        try? memory.writeBytes(bytes, at: address(offset))
    }
}
