import Foundation

/// Turns control requests into DomainManager calls and their results into responses.
/// Knows nothing of sockets (the server does), so every operation is testable directly.
public struct ControlHandler: Sendable {
    public let manager: DomainManager

    /// The longest any request may ask the daemon to wait, seconds.
    public static let maximumTimeout: Double = 3600

    public init(manager: DomainManager) {
        self.manager = manager
    }

    /// Handles one request. `console` (and `create` with `attach`) need the connection
    /// and are finished by the server after this returns.
    public func handle(_ request: ControlRequest) -> ControlResponse {
        do {
            return try respond(to: request)
        } catch {
            return .failure(error)
        }
    }

    private func respond(to request: ControlRequest) throws(ControlError) -> ControlResponse {
        guard let operation = request.operation else {
            let known = ControlOperation.allCases.map(\.rawValue).joined(separator: ", ")
            throw ControlError(.usage, "unknown op \"\(request.op)\"; expected one of \(known)")
        }
        var response = ControlResponse()
        switch operation {
        case .ping:
            response.version = DomusVersion.string
        case .create:
            guard let config = request.config else { throw ControlError(.usage, "create needs \"config\": the config file's text") }
            let created = try manager.create(configText: config, sourceName: request.configName ?? "<config>",
                                             overrides: request.overrides ?? [], directory: request.directory)
            response.domid = created.domid
            response.name = created.name
            response.warnings = created.warnings
        case .list:
            response.domains = try manager.list(only: request.domain, long: request.long ?? false)
        case .console:
            // The server attaches; here only the reference is checked.
            response.domid = try manager.domainID(try domain(request))
        case .shutdown, .reboot:
            let ending = try manager.requestShutdown(try domain(request), reboot: operation == .reboot, wait: request.wait ?? false,
                                                     timeout: timeout(request, default: 60))
            response.outcome = ending?.description
        case .destroy:
            try manager.destroy(try domain(request), timeout: timeout(request, default: 30))
        case .pause:
            try manager.pause(try domain(request))
        case .unpause:
            try manager.unpause(try domain(request))
        case .memSet:
            try manager.setMemoryTarget(try domain(request), kilobytes: try memory(request))
        case .memMax:
            try manager.setMemoryMaximum(try domain(request), kilobytes: try memory(request))
        case .vcpuSet:
            guard let count = request.vcpus else { throw ControlError(.usage, "vcpu-set needs \"vcpus\"") }
            try manager.setOnlineVCPUs(try domain(request), count: count)
        case .info:
            response.host = manager.hostInfo()
        case .dmesg:
            if request.clear == true { throw ControlError(.unsupported, "dmesg: clearing the hypervisor log is not supported") }
            response.lines = manager.log.lines()
        case .rename:
            guard let name = request.name else { throw ControlError(.usage, "rename needs \"name\": the new name") }
            let reference = try domain(request)
            try manager.rename(reference, to: name)
            response.domid = try manager.domainID(name)
            response.name = name
        case .wait:
            response.outcome = try manager.waitForEnd(try domain(request), timeout: timeout(request, default: 60)).description
        }
        return response
    }

    private func domain(_ request: ControlRequest) throws(ControlError) -> String {
        guard let domain = request.domain, !domain.isEmpty else {
            throw ControlError(.usage, "\(request.op) needs \"domain\": a domain name or id")
        }
        return domain
    }

    private func memory(_ request: ControlRequest) throws(ControlError) -> UInt64 {
        guard let kilobytes = request.memoryKB else { throw ControlError(.usage, "\(request.op) needs \"memory_kb\"") }
        return kilobytes
    }

    private func timeout(_ request: ControlRequest, default value: Double) -> Double {
        guard let requested = request.timeout, requested.isFinite else { return value }
        return min(max(requested, 0), Self.maximumTimeout)
    }
}
