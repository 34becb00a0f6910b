import Backends
import Foundation
import Hypervisor
import XenStore

// Requests that change a running domain without ending it: pause, unpause, mem-set,
// mem-max, rename, and the console.

extension DomainManager {
    /// The record for a request that needs a built domain that has not finished.
    private func activeDomain(_ reference: String, for operation: String) throws(ControlError) -> (ManagedDomain, Domain) {
        try withDomain(reference) { record throws(ControlError) in
            guard record.phase == .active, let domain = record.domain, !domain.isFinished else {
                throw ControlError(.conflict, "cannot \(operation) domain \(record.id) (\(record.name)): it is not running")
            }
            return (record, domain)
        }
    }

    /// `pause` (xl pause): the vCPUs stop running guest code. Pausing a paused domain
    /// does nothing.
    public func pause(_ reference: String) throws(ControlError) {
        let (record, domain) = try activeDomain(reference, for: "pause")
        if domain.pause() { events.info("domain paused", ["domid": record.id]) }
    }

    /// `unpause` (xl unpause). Unpausing a running domain does nothing.
    public func unpause(_ reference: String) throws(ControlError) {
        let (record, domain) = try activeDomain(reference, for: "unpause")
        if domain.unpause() { events.info("domain unpaused", ["domid": record.id]) }
    }

    /// `mem-set` (libxl_set_memory_target): writes memory/target, which the guest's
    /// balloon driver follows. At most the domain's static maximum.
    public func setMemoryTarget(_ reference: String, kilobytes: UInt64) throws(ControlError) {
        let (record, _) = try activeDomain(reference, for: "set the memory of")
        let maximum = locked { record.maxMemoryKB }
        guard kilobytes > 0 else { throw ControlError(.usage, "the memory target must be more than 0") }
        guard kilobytes <= maximum else {
            throw ControlError(.conflict, "memory target \(kilobytes) KiB is above domain \(record.id)'s maximum of \(maximum) KiB (raise it with mem-max)")
        }
        do { try xenstore.write("/local/domain/\(record.id)/memory/target", "\(kilobytes)") } catch {
            throw ControlError(.internal, "cannot write memory/target: \(error)")
        }
        locked { record.targetKB = kilobytes }
        events.info("memory target set", ["domid": record.id, "target_kb": kilobytes])
    }

    /// `mem-max` (libxl_domain_setmaxmem): the static maximum, at least the current
    /// target; written to memory/static-max.
    public func setMemoryMaximum(_ reference: String, kilobytes: UInt64) throws(ControlError) {
        let (record, _) = try activeDomain(reference, for: "set the maximum memory of")
        let target = locked { record.targetKB }
        guard kilobytes >= target else {
            throw ControlError(.conflict, "maximum \(kilobytes) KiB is below domain \(record.id)'s memory target of \(target) KiB")
        }
        do { try xenstore.write("/local/domain/\(record.id)/memory/static-max", "\(kilobytes)") } catch {
            throw ControlError(.internal, "cannot write memory/static-max: \(error)")
        }
        locked { record.maxMemoryKB = kilobytes }
        events.info("memory maximum set", ["domid": record.id, "max_kb": kilobytes])
    }

    /// `vcpu-set` (libxl_set_vcpuonline): vCPUs 0..<count are available, the rest up to
    /// maxvcpus not; written to cpu/N/availability, which the guest's vCPU hotplug
    /// driver (Linux's xen-cpu-hotplug) watches to bring CPUs up or take them down.
    public func setOnlineVCPUs(_ reference: String, count: Int) throws(ControlError) {
        let (record, domain) = try activeDomain(reference, for: "set the vCPUs of")
        let maximum = domain.vcpus.count
        guard count >= 1 else { throw ControlError(.usage, "vcpu-set: a domain needs at least 1 vCPU, got \(count)") }
        guard count <= maximum else {
            throw ControlError(.conflict, "vcpu-set: \(count) vCPUs is more than domain \(record.id)'s maximum of \(maximum) (maxvcpus)")
        }
        for vcpu in 0..<maximum {
            do { try xenstore.write("/local/domain/\(record.id)/cpu/\(vcpu)/availability", vcpu < count ? "online" : "offline") } catch {
                throw ControlError(.internal, "cannot write cpu/\(vcpu)/availability: \(error)")
            }
        }
        events.info("vcpus set", ["domid": record.id, "vcpus": count])
    }

    /// `rename` (libxl_domain_rename): a new name, unique, with the rules of a config's
    /// `name`; written to /local/domain/N/name and /vm/UUID/name.
    public func rename(_ reference: String, to newName: String) throws(ControlError) {
        if let problem = Self.nameProblem(newName) { throw ControlError(.usage, problem) }
        let (record, vmPath): (ManagedDomain, String?) = try withDomain(reference) { record throws(ControlError) in
            if let other = domains.values.first(where: { $0.name == newName && $0 !== record }) {
                throw ControlError(.conflict, "domain with name \"\(newName)\" already exists (id \(other.id))")
            }
            record.name = newName
            return (record, record.vmPath)
        }
        try? xenstore.write("/local/domain/\(record.id)/name", newName)
        if let vmPath { try? xenstore.write("\(vmPath)/name", newName) }
        events.info("domain renamed", ["domid": record.id, "name": newName])
    }

    /// Why `name` cannot be a domain name (the rules of DomainConfiguration.name), or nil.
    public static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "the domain name must not be empty" }
        if name.count > 64 { return "the domain name has \(name.count) characters; at most 64 are allowed" }
        let allowed = name.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "_.+-".unicodeScalars.contains(scalar))
        }
        if !allowed { return "invalid domain name \"\(name)\"; use letters, digits, `_`, `.`, `+` and `-`" }
        if name.hasPrefix("-") { return "invalid domain name \"\(name)\"; it must not start with `-`" }
        if name.allSatisfy(\.isNumber) { return "invalid domain name \"\(name)\"; an all-digit name would read as a domain id" }
        if name == "Domain-0" { return "\"Domain-0\" is the name of the host" }
        return nil
    }

    // MARK: Console

    /// A console attachment: what was kept, and a way to send input.
    public struct ConsoleAttachment: Sendable {
        public let domid: UInt16
        public let history: [UInt8]
        let subscription: UInt64
        let log: ConsoleLog
        let backend: ConsoleBackend

        /// Puts input into the guest's console ring; returns how many bytes fit.
        public func send(_ bytes: [UInt8]) -> Int { backend.send(bytes) }

        /// Stops receiving output.
        public func detach() { log.unsubscribe(subscription) }
    }

    /// Attaches to a domain's console: `history` bytes of earlier output (all that is
    /// kept if nil), then every new byte through `output` (called on the guest's
    /// threads: it must not block). `.closed` comes when the domain ends, at once for a
    /// domain kept after it ended (on_* = preserve).
    public func attachConsole(_ reference: String, history: Int?,
                              output: @escaping @Sendable (ConsoleLog.Event) -> Void) throws(ControlError) -> ConsoleAttachment {
        let record = try withDomain(reference) { record throws(ControlError) in
            guard record.phase == .active || record.phase == .preserved, record.prepared != nil else {
                throw ControlError(.conflict, "domain \(record.id) (\(record.name)) has no console yet")
            }
            return record
        }
        guard let backend = record.prepared?.console else {
            throw ControlError(.conflict, "domain \(record.id) has no console")
        }
        guard let (id, kept) = record.console.subscribe(history: history, output) else {
            // A domain kept after it ended: what it printed, then the end of the stream.
            output(.closed)
            return ConsoleAttachment(domid: record.id, history: record.console.recent(history), subscription: 0,
                                     log: record.console, backend: backend)
        }
        return ConsoleAttachment(domid: record.id, history: kept, subscription: id, log: record.console, backend: backend)
    }

    /// The console output kept for a domain (tests; `console` with no live stream).
    public func consoleOutput(_ reference: String) throws(ControlError) -> [UInt8] {
        try withDomain(reference) { $0.console.recent() }
    }

    /// When the create request for `reference` arrived and when it was built, and the
    /// host CPU time its vCPU 0 has run (for the create-to-running figure).
    public func timing(_ reference: String) throws(ControlError) -> (requested: Date, created: Date, vcpu0: VCPU?) {
        try withDomain(reference) { ($0.requested, $0.created, $0.domain?.vcpus.first) }
    }
}
