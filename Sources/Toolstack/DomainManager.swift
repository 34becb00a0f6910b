import Backends
import Foundation
import Hypervisor
import KVM
import Machine
import XenABI
import XenStore
import XLConfig

/// Owns every domain of a daemon, as libxl and xenstored together do on Xen: allocates
/// domain ids, builds domains from xl configurations, runs them, keeps their console
/// output, serves them one shared XenStore, and carries out on_poweroff, on_reboot,
/// on_crash and on_watchdog when they end.
///
/// A domain's end is handled on one serial queue (`lifecycle`), so an action never runs
/// on the vCPU thread that ended the domain and two ends never race. A guest can only
/// end its own domain: a crash is a state of that domain, never an error of the manager.
///
/// Lock order: the manager's `lock` before any `Domain` lock; nothing is called on a
/// domain that calls back into the manager while the lock is held.
public final class DomainManager: @unchecked Sendable {
    /// Tunables; the defaults suit the daemon.
    public struct Options: Sendable {
        /// A domain restarted this many times within `restartWindow` seconds is destroyed
        /// instead of restarted again (a guest that crashes at boot would loop forever).
        public var restartLimit = 5
        public var restartWindow: Double = 60
        /// Console output kept per domain, bytes.
        public var consoleBytes = 256 << 10
        /// How long to wait for a domain's vCPU threads to stop, seconds.
        public var stopTimeout: Double = 10
        public init() {}
    }

    public let options: Options
    /// The hypervisor's log, shared by every domain (`dmesg`).
    public let log: HypervisorLog
    /// Dom0's XenStore, shared by every domain and the toolstack.
    public let xenstore: XenStoreService
    let events: StructuredLog
    let kvm: KVMSystem
    let tscKHz: UInt64
    let cpuid: CPUIDPolicy

    let lock = NSCondition()
    var domains: [UInt16: ManagedDomain] = [:]
    /// Ids of domains that existed and are gone (most recent last, bounded), so that a
    /// wait on a domain that ended before the wait began answers `.gone`.
    var departed: [UInt16] = []
    private var nextID: UInt16 = 1
    var restarts: [String: [Date]] = [:]
    var isClosing = false
    let lifecycle = SerialWorker(name: "domus-lifecycle")

    /// Domain ids are 1..<DOMID_FIRST_RESERVED (0x7ff0), as Xen allocates them.
    static let firstReservedID: UInt16 = 0x7ff0

    /// Opens /dev/kvm and sets up the shared XenStore. `events` receives the daemon's
    /// structured log; `log` is the hypervisor log (a fresh one if nil).
    public init(options: Options = Options(), events: StructuredLog, log: HypervisorLog? = nil) throws(ControlError) {
        self.options = options
        self.events = events
        let hypervisorLog = log ?? HypervisorLog(capacity: 4096, echoLevel: .warning) { line in
            events.warning("hypervisor", ["line": line])
        }
        self.log = hypervisorLog
        do { kvm = try KVMSystem() } catch {
            throw ControlError(.host, "cannot use /dev/kvm: \(error)")
        }
        do { tscKHz = try kvm.guestTSCKHz() } catch {
            throw ControlError(.host, "cannot read the guest TSC frequency: \(error)")
        }
        let hostLeaves = ((try? kvm.supportedCPUID()) ?? []).map {
            CPUIDPolicy.Leaf(function: $0.function, index: $0.index, eax: $0.eax, ebx: $0.ebx, ecx: $0.ecx, edx: $0.edx,
                             indexed: $0.flags & CPUIDEntry.significantIndex != 0)
        }
        cpuid = CPUIDPolicy(hostLeaves: hostLeaves)
        xenstore = XenStoreService(log: hypervisorLog)
        // Domain-0's own nodes, which xl reads for its name.
        try? xenstore.write("/local/domain/0/name", "Domain-0")
        try? xenstore.write("/local/domain/0/domid", "0")
    }

    /// The guest TSC frequency, MHz (`info`'s cpu_mhz).
    public var cpuMHz: Double { Double(tscKHz) / 1000 }

    // MARK: Creating

    /// What `create` returns.
    public struct Created: Sendable {
        public let domid: UInt16
        public let name: String
        public let warnings: [String]
    }

    /// Parses `configText` (xl.cfg) with `overrides`, refuses what Domus cannot run, and
    /// builds and starts the domain. Relative kernel and ramdisk paths are resolved
    /// against `directory`.
    public func create(configText: String, sourceName: String, overrides: [String] = [], directory: String? = nil,
                       requested: Date = Date()) throws(ControlError) -> Created {
        let configuration: DomainConfiguration
        do {
            configuration = try DomainConfiguration(parsing: configText, sourceName: sourceName, overrides: overrides)
        } catch {
            throw ControlError(.config, error.description)
        }
        let unsupported = configuration.unsupportedFeatures()
        guard unsupported.isEmpty else {
            let reasons = unsupported.map(\.description).joined(separator: "; ")
            throw ControlError(.unsupported, "\(sourceName): cannot create \(configuration.name): \(reasons)")
        }
        let blueprint = ManagedDomain.Blueprint(
            configuration: configuration,
            kernelPath: Self.resolve(configuration.kernel, against: directory),
            ramdiskPath: configuration.ramdisk.map { Self.resolve($0, against: directory) })
        let record = try launch(blueprint, name: configuration.name, requested: requested)
        return Created(domid: record.id, name: configuration.name, warnings: configuration.warnings.map(\.description))
    }

    static func resolve(_ path: String, against directory: String?) -> String {
        guard !path.hasPrefix("/"), let directory, !directory.isEmpty else { return path }
        return URL(fileURLWithPath: directory).appendingPathComponent(path).standardizedFileURL.path
    }

    /// Reserves an id and the name, builds the domain and starts it.
    @discardableResult
    func launch(_ blueprint: ManagedDomain.Blueprint, name: String, requested: Date) throws(ControlError) -> ManagedDomain {
        let record: ManagedDomain = try reserve(blueprint, name: name, requested: requested)
        do {
            try build(record)
        } catch {
            lock.lock()
            if domains[record.id] === record { domains[record.id] = nil }
            lock.broadcast()
            lock.unlock()
            events.warning("domain creation failed", ["domid": record.id, "name": name, "error": error.message])
            throw error
        }
        events.info("domain created", ["domid": record.id, "name": name, "memory_mib": blueprint.configuration.memoryMiB,
                                       "vcpus": blueprint.configuration.vcpus, "kernel": blueprint.kernelPath])
        return record
    }

    private func reserve(_ blueprint: ManagedDomain.Blueprint, name: String, requested: Date) throws(ControlError) -> ManagedDomain {
        lock.lock()
        defer { lock.unlock() }
        guard !isClosing else { throw ControlError(.conflict, "domusd is shutting down") }
        if let existing = domains.values.first(where: { $0.name == name }) {
            throw ControlError(.conflict, "domain with name \"\(name)\" already exists (id \(existing.id))")
        }
        guard let id = allocateID() else {
            throw ControlError(.host, "no free domain id (\(domains.count) domains exist)")
        }
        let record = ManagedDomain(id: id, name: name, blueprint: blueprint, consoleBytes: options.consoleBytes,
                                   requested: requested)
        domains[id] = record
        return record
    }

    /// The next free id after the last one given, wrapping below DOMID_FIRST_RESERVED.
    /// Called with the lock held.
    private func allocateID() -> UInt16? {
        for _ in 1..<Self.firstReservedID {
            let candidate = nextID
            nextID = nextID + 1 >= Self.firstReservedID ? 1 : nextID + 1
            if domains[candidate] == nil { return candidate }
        }
        return nil
    }

    /// Builds the domain's memory and VM (DomainBuilder, DomainMachine), connects it to
    /// XenStore and starts vCPU 0. On failure everything attached so far is released.
    private func build(_ record: ManagedDomain) throws(ControlError) {
        let configuration = record.blueprint.configuration
        let clock = KVMHostClock(tscHz: tscKHz * 1000)
        let spec = DomainSpec(name: record.name, id: record.id, kernelPath: record.blueprint.kernelPath,
                              initrdPath: record.blueprint.ramdiskPath, commandLine: configuration.cmdline ?? "",
                              memoryMiB: UInt64(configuration.memoryMiB), maxMemoryMiB: UInt64(configuration.maxMemoryMiB),
                              vcpus: configuration.maxVCPUs, uuid: UUID(uuidString: record.uuid))
        let console = record.console
        let prepared: PreparedDomain
        do {
            prepared = try DomainBuilder.build(spec, log: log, clock: clock, cpuid: cpuid, xenstore: xenstore,
                                               consoleOutput: { console.append($0) })
        } catch {
            // The builder attaches XenStore last, so a failure before it leaves nothing behind.
            xenstore.detach(domainID: record.id)
            throw ControlError(error.isUserError ? .config : .host, "\(configuration.sourceName): \(error.description)")
        }
        let domain = prepared.domain
        let home = "/local/domain/\(record.id)"
        let vmPath = (try? xenstore.read { store throws(XenStoreError) in try store.readString("\(home)/vm") })
        // xl marks the vCPUs online at boot (vcpus=) available and the rest (up to maxvcpus) offline.
        for vcpu in 0..<configuration.maxVCPUs {
            try? xenstore.write("\(home)/cpu/\(vcpu)/availability", vcpu < configuration.vcpus ? "online" : "offline")
        }
        domain.peers.withLock { $0 = { [weak self] id in self?.domainObject(id) } }
        domain.onFinish.withLock {
            $0 = { [weak self, weak record] end in
                guard let self, let record else { return }
                self.lifecycle.async { self.domainEnded(record, end) }
            }
        }
        let machine: DomainMachine
        do {
            machine = try DomainMachine(kvm: kvm, domain: domain, area: prepared.area, boot: prepared.boot, clock: clock,
                                        apicTimer: spec.usesAPICTimer)
        } catch {
            domain.onFinish.withLock { $0 = nil }
            domain.peers.withLock { $0 = nil }
            releaseStore(id: record.id, vmPath: vmPath)
            throw ControlError(.host, "cannot create the domain's VM: \(error)")
        }
        lock.lock()
        guard domains[record.id] === record, record.phase == .building, !isClosing else {
            lock.unlock()
            domain.onFinish.withLock { $0 = nil }
            domain.peers.withLock { $0 = nil }
            releaseStore(id: record.id, vmPath: vmPath)
            throw ControlError(.conflict, "domain \(record.id) was destroyed while being created")
        }
        record.prepared = prepared
        record.machine = machine
        record.vmPath = vmPath
        record.phase = .active
        lock.broadcast()
        lock.unlock()
        machine.start()
    }

    /// The Domain object with id `id` (for interdomain event channels and grant copies).
    func domainObject(_ id: UInt16) -> Domain? {
        lock.lock()
        defer { lock.unlock() }
        return domains[id]?.domain
    }

    /// Releases a domain's XenStore connection and nodes (libxl__destroy_domid's xs_rm of
    /// /local/domain/N and /vm/UUID).
    func releaseStore(id: UInt16, vmPath: String?) {
        xenstore.detach(domainID: id)
        try? xenstore.modify { store throws(XenStoreError) in ((), try store.rm("/local/domain/\(id)")) }
        if let vmPath, vmPath.hasPrefix("/vm/") {
            try? xenstore.modify { store throws(XenStoreError) in ((), try store.rm(vmPath)) }
        }
    }

    // MARK: Finding domains

    /// Resolves a domain reference as xl's find_domain does: all digits is an id,
    /// anything else a name. Called with the lock held.
    func lookup(_ reference: String) throws(ControlError) -> ManagedDomain {
        if let id = Self.parseDomainID(reference) {
            if id == 0 {
                throw ControlError(.unsupported, "domain 0 is the host (Domain-0); domus cannot do that to it")
            }
            guard let record = domains[id] else { throw ControlError(.notFound, "domain \(id) does not exist") }
            return record
        }
        if reference == "Domain-0" {
            throw ControlError(.unsupported, "Domain-0 is the host; domus cannot do that to it")
        }
        guard let record = domains.values.first(where: { $0.name == reference }) else {
            throw ControlError(.notFound, "domain \"\(reference)\" does not exist")
        }
        return record
    }

    /// A decimal domain id, or nil if `text` is not all digits.
    static func parseDomainID(_ text: String) -> UInt16? {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return UInt16(text) ?? UInt16.max
    }

    /// Runs `body` on the record `reference` names, with the lock held.
    func withDomain<T>(_ reference: String, _ body: (ManagedDomain) throws(ControlError) -> T) throws(ControlError) -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(try lookup(reference))
    }

    /// The id of the domain `reference` names.
    public func domainID(_ reference: String) throws(ControlError) -> UInt16 {
        try withDomain(reference) { $0.id }
    }

    // MARK: Listing

    /// Domain-0 (the host) and every domain, by id; only `only` if given.
    public func list(only reference: String? = nil, long: Bool = false) throws(ControlError) -> [DomainStatus] {
        let host = hostStatus(long: long)
        // /proc is read without the lock held.
        let names = locked { Set(domains.values.flatMap { record in (record.domain?.vcpus ?? []).map(\.name) }) }
        let cpus = HostProbe.lastCPU(ofThreadsNamed: names)
        lock.lock()
        defer { lock.unlock() }
        if let reference {
            if reference == "0" || reference == "Domain-0" { return [host] }
            return [try lookup(reference).status(long: long, hostCPUs: cpus)]
        }
        return [host] + domains.keys.sorted().compactMap { domains[$0]?.status(long: long, hostCPUs: cpus) }
    }

    /// The host as Domain-0: its memory, CPUs and busy CPU time.
    func hostStatus(long: Bool) -> DomainStatus {
        let memory = HostProbe.memoryKB()
        let cpus = HostProbe.cpuCount
        let busy = HostProbe.busyCPUTimeNS()
        let vcpus = (0..<cpus).map { VCPUStatus(vcpu: $0, online: true, running: true, blocked: false, cpu: $0, cpuTimeNS: busy / UInt64(max(cpus, 1))) }
        var status = DomainStatus(domid: 0, name: "Domain-0", memoryKB: memory.total, vcpusOnline: cpus, running: true,
                                  cpuTimeNS: busy, startTime: Date().timeIntervalSince1970 - HostProbe.uptimeSeconds(),
                                  vcpus: vcpus)
        if long { status.config = DomainConfigJSON(hostName: "Domain-0", cpus: cpus, memoryKB: memory.total) }
        return status
    }

    /// Number of domains (not counting Domain-0).
    public var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return domains.count
    }

    /// The host's description for `info`.
    public func hostInfo() -> HostInfo {
        HostProbe.info(cpuMHz: cpuMHz, domains: count)
    }
}
