import Foundation
import Hypervisor
import XenABI
import XenStore
import XLConfig

// How domains end: the on_* actions (xl_vmcontrol.c handle_domain_death), destroy,
// shutdown and reboot requests through XenStore, and waiting for a domain to go.

extension DomainManager {
    /// What became of a domain a caller waited for.
    public enum Ending: Sendable, Equatable, CustomStringConvertible {
        /// It no longer exists (destroyed, or restarted under a new id).
        case gone
        /// It is kept shut down (on_* = preserve) with this reason.
        case preserved(String)

        public var description: String {
            switch self {
            case .gone: return "destroyed"
            case let .preserved(reason): return "shutdown:\(reason)"
            }
        }
    }

    // MARK: The end of a domain (on the lifecycle queue)

    /// The domain finished (its onFinish fired): wait for its vCPUs to leave the guest,
    /// flush its console, and carry out the action its configuration names.
    func domainEnded(_ record: ManagedDomain, _ end: DomainLifecycle) {
        guard let machine = record.machine, let prepared = record.prepared else { return }
        events.debug("domain ended", ["domid": record.id, "state": "\(end)"])
        if !machine.waitUntilStopped(seconds: options.stopTimeout) {
            events.error("vCPU threads did not stop", ["domid": record.id, "seconds": options.stopTimeout])
        }
        events.debug("vCPUs stopped", ["domid": record.id])
        prepared.console.drain()
        let configuration = record.blueprint.configuration
        let name = locked { record.name }
        let action: ShutdownAction
        let reason: String
        switch end {
        case .destroyed, .running, .paused:
            // The toolstack destroyed it (or a stray call): nothing to carry out.
            remove(record, why: "destroyed")
            return
        case let .shutdown(shutdownReason):
            reason = ManagedDomain.libxlName(shutdownReason)
            switch shutdownReason {
            case .poweroff: action = configuration.onPoweroff
            case .reboot: action = configuration.onReboot
            case .crash: action = configuration.onCrash
            case .watchdog: action = configuration.onWatchdog
            case .suspend: action = .preserve   // xl: "Domain has suspended." and leaves it be.
            case .softReset: action = .destroy  // PV guests cannot soft-reset; unsupportedFeatures refuses the action.
            }
            events.info("domain shut down", ["domid": record.id, "name": name, "reason": reason, "action": action.rawValue])
        case let .crashed(detail):
            reason = "crash"
            action = configuration.onCrash
            var fields: KeyValuePairs<String, Any> = ["domid": record.id, "name": name, "reason": detail, "action": action.rawValue]
            if let report = machine.crashReport {
                log.log(.error, "d\(record.id): crash report:\n\(report)")
                fields = ["domid": record.id, "name": name, "reason": detail, "action": action.rawValue, "report": report]
            }
            events.error("domain crashed", fields)
        }
        try? xenstore.modify { (store: inout XenStore) throws(XenStoreError) in
            ((), store.domainDidShutDown(XenStore.DomainID(record.id)))
        }
        switch action {
        case .preserve:
            preserve(record)
        case .restart, .coredumpRestart:
            restart(record, name: name, rename: false)
        case .renameRestart:
            restart(record, name: name, rename: true)
        case .destroy, .coredumpDestroy, .softReset:
            remove(record, why: "on_\(reason == "poweroff" ? "poweroff" : reason) = \(action.rawValue)")
        }
    }

    private func preserve(_ record: ManagedDomain) {
        locked {
            if record.phase == .active { record.phase = .preserved }
            lock.broadcast()
        }
        record.console.close()
    }

    /// Destroys the domain and builds a new one from the same configuration (a new id,
    /// as xl does), unless it has restarted `restartLimit` times within `restartWindow`.
    /// With `rename`, the old domain is kept, renamed `<name>-<UTC time>` (xl's
    /// preserve_domain suffix), instead of destroyed.
    private func restart(_ record: ManagedDomain, name: String, rename: Bool) {
        let now = Date()
        let allowed: Bool = locked {
            var recent = (restarts[name] ?? []).filter { now.timeIntervalSince($0) < options.restartWindow }
            let allowed = recent.count < options.restartLimit && !isClosing
            if allowed { recent.append(now) }
            restarts[name] = recent
            return allowed
        }
        guard allowed else {
            events.error("domain restarting too often; destroying it instead",
                         ["domid": record.id, "name": name, "limit": options.restartLimit, "window_s": options.restartWindow])
            log.log(.error, "d\(record.id): \(name) restarted \(options.restartLimit) times within \(Int(options.restartWindow)) s; destroyed instead")
            remove(record, why: "restart limit reached")
            return
        }
        if rename {
            let renamed = locked { () -> String in
                let formatter = DateFormatter()
                formatter.dateFormat = "yyyyMMdd'T'HHmm'Z'"
                formatter.timeZone = TimeZone(identifier: "UTC")
                var candidate = "\(name)-\(formatter.string(from: now))"
                if domains.values.contains(where: { $0.name == candidate }) { candidate += "-\(record.id)" }
                record.name = candidate
                if record.phase == .active { record.phase = .preserved }
                return candidate
            }
            try? xenstore.write("/local/domain/\(record.id)/name", renamed)
            if let vmPath = locked({ record.vmPath }) { try? xenstore.write("\(vmPath)/name", renamed) }
            record.console.close()
            events.info("domain preserved under a new name", ["domid": record.id, "name": renamed])
        } else {
            remove(record, why: "restarting")
        }
        do {
            let next = try launch(record.blueprint, name: name, requested: Date())
            events.info("domain restarted", ["old_domid": record.id, "domid": next.id, "name": name])
        } catch {
            events.error("domain restart failed", ["name": name, "error": error.message])
        }
    }

    /// Tears a domain down: stops its vCPUs, closes its console, releases its XenStore
    /// connection and nodes, and forgets it. Runs on the lifecycle queue; a second call
    /// for the same domain does nothing.
    func remove(_ record: ManagedDomain, why: String) {
        let proceed: Bool = locked {
            guard record.phase != .dying, domains[record.id] === record else { return false }
            record.phase = .dying
            lock.broadcast()
            return true
        }
        guard proceed else { return }
        if let machine = record.machine {
            machine.destroy(reason: why)
            if !machine.waitUntilStopped(seconds: options.stopTimeout) {
                events.error("vCPU threads did not stop; releasing the domain anyway", ["domid": record.id])
            }
        }
        record.prepared?.console.drain()
        record.console.close()
        if let domain = record.domain {
            domain.onFinish.withLock { $0 = nil }
            domain.peers.withLock { $0 = nil }
        }
        releaseStore(id: record.id, vmPath: locked { record.vmPath })
        let name: String = locked {
            domains[record.id] = nil
            departed.append(record.id)
            if departed.count > 256 { departed.removeFirst(departed.count - 256) }
            lock.broadcast()
            return record.name
        }
        events.info("domain destroyed", ["domid": record.id, "name": name, "reason": why])
    }

    // MARK: Requests

    /// `destroy`: stops the domain at once and removes it; returns when it is gone
    /// (or throws `.timeout` after `timeout` seconds).
    public func destroy(_ reference: String, timeout: Double = 30) throws(ControlError) {
        let deadline = Date().addingTimeInterval(max(0, timeout))
        let record: ManagedDomain = try withDomain(reference) { record throws(ControlError) in
            // A domain being built (a restart, say) is destroyed once it exists.
            while record.phase == .building {
                if !lock.wait(until: deadline) {
                    throw ControlError(.timeout, "domain \(record.id) was still being created after \(Int(timeout)) s")
                }
            }
            return record
        }
        if let machine = record.machine, let domain = record.domain, !domain.isFinished {
            // onFinish queues the removal.
            machine.destroy(reason: "destroyed by the toolstack")
        } else {
            lifecycle.async { self.remove(record, why: "destroyed by the toolstack") }
        }
        guard waitUntilGone(record, timeout: timeout) else {
            throw ControlError(.timeout, "domain \(record.id) was not gone after \(Int(timeout)) s")
        }
    }

    /// `shutdown` and `reboot`: asks the guest through XenStore (control/shutdown =
    /// "poweroff" / "reboot", libxl_domain_shutdown / libxl_domain_reboot), which Linux's
    /// xenbus acts on. With `wait`, returns how the domain ended, or throws `.timeout`.
    @discardableResult
    public func requestShutdown(_ reference: String, reboot: Bool, wait: Bool, timeout: Double = 60) throws(ControlError) -> Ending? {
        let record: ManagedDomain = try withDomain(reference) { record throws(ControlError) in
            guard record.phase == .active, let domain = record.domain, !domain.isFinished else {
                throw ControlError(.conflict, "domain \(record.id) (\(record.name)) is not running")
            }
            return record
        }
        let value = reboot ? "reboot" : "poweroff"
        do {
            try xenstore.write("/local/domain/\(record.id)/control/shutdown", value)
        } catch {
            throw ControlError(.internal, "cannot write control/shutdown for domain \(record.id): \(error)")
        }
        events.info(reboot ? "reboot requested" : "shutdown requested", ["domid": record.id, "name": locked { record.name }])
        guard wait else { return nil }
        return try waitForEnd(record, timeout: timeout)
    }

    /// `wait`: until the domain named `reference` is gone or kept shut down.
    public func waitForEnd(_ reference: String, timeout: Double) throws(ControlError) -> Ending {
        let record: ManagedDomain
        do { record = try withDomain(reference) { $0 } } catch {
            // A domain id that existed and is gone already ended.
            if let id = UInt16(reference), locked({ departed.contains(id) && domains[id] == nil }) { return .gone }
            throw error
        }
        return try waitForEnd(record, timeout: timeout)
    }

    func waitForEnd(_ record: ManagedDomain, timeout: Double) throws(ControlError) -> Ending {
        let deadline = Date().addingTimeInterval(max(0, timeout))
        lock.lock()
        defer { lock.unlock() }
        while true {
            if domains[record.id] !== record { return .gone }
            if record.phase == .preserved {
                switch record.lifecycle {
                case let .shutdown(reason)?: return .preserved(ManagedDomain.libxlName(reason))
                case .crashed?: return .preserved("crash")
                default: return .preserved("unknown")
                }
            }
            if !lock.wait(until: deadline) {
                throw ControlError(.timeout, "domain \(record.id) (\(record.name)) did not shut down within \(Int(timeout)) s")
            }
        }
    }

    private func waitUntilGone(_ record: ManagedDomain, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(max(0, timeout))
        lock.lock()
        defer { lock.unlock() }
        while domains[record.id] === record {
            if !lock.wait(until: deadline) { return false }
        }
        return true
    }

    /// Waits until no domain is being built or torn down and every domain's end has
    /// been handled (tests, and the daemon before it exits).
    public func settle(timeout: Double = 10) {
        let done = DispatchSemaphore(value: 0)
        lifecycle.async { done.signal() }
        _ = done.wait(timeout: .now() + max(0, timeout))
    }

    /// Destroys every domain and refuses new ones (the daemon is exiting). Bounded by
    /// `timeout` seconds in all.
    public func closeAll(timeout: Double = 20) {
        // Domains still being built see `isClosing` and give up by themselves.
        let records: [ManagedDomain] = locked {
            isClosing = true
            return domains.values.filter { $0.phase != .building }
        }
        for record in records {
            if let machine = record.machine, let domain = record.domain, !domain.isFinished {
                machine.destroy(reason: "domusd is exiting")
            } else {
                lifecycle.async { self.remove(record, why: "domusd is exiting") }
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        lock.lock()
        while !domains.isEmpty {
            if !lock.wait(until: deadline) { break }
        }
        let left = domains.count
        lock.unlock()
        if left > 0 { events.error("domains left at exit", ["count": left]) }
    }

    /// Runs `body` with the lock held.
    func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }
}
