import Foundation
import Hypervisor
import Machine
import XenABI
import XLConfig

/// One domain the daemon owns: its configuration, its VM once built, its console log,
/// and the toolstack's own bookkeeping (name, memory target, phase).
///
/// The mutable fields are guarded by the `DomainManager`'s lock; the `Domain` and its
/// machine have their own synchronisation.
final class ManagedDomain: @unchecked Sendable {
    /// Where the toolstack is with the domain. The guest's own state (running, paused,
    /// shut down) is `Domain.lifecycle`.
    enum Phase: Equatable {
        /// Being built: the id and name are reserved, the VM does not exist yet.
        case building
        /// Built and started; `Domain.lifecycle` says what the guest does.
        case active
        /// Finished and kept (on_* = preserve, or renamed by rename-restart) until destroyed.
        case preserved
        /// Being torn down.
        case dying
    }

    /// The config and the paths it resolved to, enough to build the domain again on restart.
    struct Blueprint: Sendable {
        var configuration: DomainConfiguration
        var kernelPath: String
        var ramdiskPath: String?
    }

    let id: UInt16
    let blueprint: Blueprint
    let console: ConsoleLog
    let created: Date
    /// When the create request arrived (for the create-to-running figure).
    let requested: Date

    var name: String
    var phase: Phase = .building
    var prepared: PreparedDomain?
    var machine: DomainMachine?
    /// memory/target and memory/static-max, KiB (mem-set, mem-max).
    var targetKB: UInt64
    var maxMemoryKB: UInt64
    var uuid: String
    /// The /vm/<uuid> path the builder wrote, removed with the domain.
    var vmPath: String?

    init(id: UInt16, name: String, blueprint: Blueprint, consoleBytes: Int, requested: Date) {
        self.id = id
        self.name = name
        self.blueprint = blueprint
        self.console = ConsoleLog(capacity: consoleBytes)
        self.created = Date()
        self.requested = requested
        self.targetKB = UInt64(blueprint.configuration.memoryMiB) * 1024
        self.maxMemoryKB = UInt64(blueprint.configuration.maxMemoryMiB) * 1024
        self.uuid = blueprint.configuration.uuid?.description ?? UUID().uuidString.lowercased()
    }

    var domain: Domain? { prepared?.domain }

    /// The guest's lifecycle, or nil before it is built.
    var lifecycle: DomainLifecycle? { domain?.lifecycle.withLock { $0 } }

    /// A snapshot for `list`. Called with the manager's lock held; reads only atomics
    /// and the domain's own locks.
    func status(long: Bool, hostCPUs: [String: Int]) -> DomainStatus {
        let configuration = blueprint.configuration
        let memoryKB = domain.map { $0.layout.ramFrames * 4 } ?? UInt64(configuration.memoryMiB) * 1024
        var status = DomainStatus(domid: id, name: name, uuid: uuid, memoryKB: memoryKB, targetKB: targetKB,
                                  maxMemoryKB: maxMemoryKB, vcpusOnline: 0, maxVCPUs: configuration.maxVCPUs,
                                  startTime: created.timeIntervalSince1970)
        if long {
            status.config = DomainConfigJSON(configuration, name: name, uuid: uuid, kernel: blueprint.kernelPath,
                                             ramdisk: blueprint.ramdiskPath)
        }
        guard let domain else {
            status.paused = true   // Xen builds a domain paused and unpauses it at the end.
            status.vcpusOnline = configuration.vcpus
            status.dying = phase == .dying
            return status
        }
        let lifecycle = domain.lifecycle.withLock { $0 }
        var vcpus: [VCPUStatus] = []
        var allBlocked = true
        for vcpu in domain.vcpus {
            let online = vcpu.online
            let blocked = vcpu.blocked.load(ordering: .relaxed)
            if online && !blocked { allBlocked = false }
            vcpus.append(VCPUStatus(vcpu: vcpu.id, online: online, running: online && !blocked && lifecycle == .running,
                                    blocked: online && blocked, cpu: online ? hostCPUs[vcpu.name] : nil,
                                    cpuTimeNS: vcpu.cpuTime.load(ordering: .relaxed)))
        }
        status.vcpus = vcpus
        status.vcpusOnline = vcpus.filter(\.online).count
        status.cpuTimeNS = domain.cpuTime
        switch lifecycle {
        case .running:
            status.blocked = allBlocked
            status.running = !allBlocked
        case .paused:
            status.paused = true
        case let .shutdown(reason):
            status.shutdown = true
            status.shutdownReason = Self.libxlName(reason)
        case let .crashed(detail):
            // Xen's domain_crash is a shutdown with reason crash.
            status.shutdown = true
            status.shutdownReason = "crash"
            status.crashDetail = detail
        case .destroyed:
            status.dying = true
        }
        if phase == .dying { status.dying = true }
        return status
    }

    /// libxl_shutdown_reason's names.
    static func libxlName(_ reason: ShutdownReason) -> String {
        switch reason {
        case .poweroff: return "poweroff"
        case .reboot: return "reboot"
        case .suspend: return "suspend"
        case .crash: return "crash"
        case .watchdog: return "watchdog"
        case .softReset: return "soft_reset"
        }
    }
}
