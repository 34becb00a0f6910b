import ArgumentParser
import Foundation
import Toolstack

/// `mem-set` and `mem-max` read sizes as xl does (parse_mem_size_kb).
func memoryKB(_ text: String) throws -> UInt64 {
    guard let kilobytes = XLFormat.parseMemorySizeKB(text) else { throw CommandFailure("invalid memory size: \(text)") }
    return kilobytes
}

struct MemSet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mem-set",
        abstract: "Set a domain's memory target (memory/target, which its balloon driver follows).",
        discussion: "MEM is a number with an optional suffix b, k, m (the default), g or t.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The domain (name or id).") var domain: String
    @Argument(help: "The target, as in 512m or 1g.") var memory: String

    func run() throws {
        var request = ControlRequest(.memSet, domain: domain)
        request.memoryKB = try memoryKB(memory)
        try connection.call(request)
    }
}

struct MemMax: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mem-max", abstract: "Set a domain's maximum memory (memory/static-max).",
        discussion: "MEM is a number with an optional suffix b, k, m (the default), g or t.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The domain (name or id).") var domain: String
    @Argument(help: "The maximum, as in 512m or 1g.") var memory: String

    func run() throws {
        var request = ControlRequest(.memMax, domain: domain)
        request.memoryKB = try memoryKB(memory)
        try connection.call(request)
    }
}

struct VcpuSet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vcpu-set",
        abstract: "Set how many vCPUs a domain may have online (cpu/N/availability, which its vCPU hotplug driver follows).")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The domain (name or id).") var domain: String
    @Argument(help: "The number of vCPUs, at most the domain's maxvcpus.") var vcpus: Int

    func run() throws {
        var request = ControlRequest(.vcpuSet, domain: domain)
        request.vcpus = vcpus
        try connection.call(request)
    }
}

struct VcpuList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vcpu-list", abstract: "List domains' vCPUs.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Only these domains (names or ids).") var domains: [String] = []

    func run() throws {
        var statuses: [DomainStatus] = []
        for reference in domains.isEmpty ? [nil] : domains.map({ Optional($0) }) {
            statuses += try connection.call(ControlRequest(.list, domain: reference)).domains ?? []
        }
        standardOutput.write(Array(XLFormat.vcpuList(statuses).utf8))
    }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Describe the host and the hypervisor, as xl info does.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "Print only the value of keys starting with this.") var key: String?

    func run() throws {
        guard let host = try connection.call(ControlRequest(.info)).host else { throw CommandFailure("domusd sent no host information") }
        standardOutput.write(Array(XLFormat.info(host, only: key).utf8))
    }
}

struct Dmesg: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dmesg", abstract: "Print the hypervisor's log.")
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let lines = try connection.call(ControlRequest(.dmesg)).lines ?? []
        standardOutput.write(Array(lines.map { $0 + "\n" }.joined().utf8))
    }
}

struct Uptime: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "uptime", abstract: "Print how long domains have been up.")
    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .short, help: "Short form, like uptime(1).") var short = false
    @Argument(help: "Only these domains (names or ids).") var domains: [String] = []

    func run() throws {
        var statuses: [DomainStatus] = []
        for reference in domains.isEmpty ? [nil] : domains.map({ Optional($0) }) {
            statuses += try connection.call(ControlRequest(.list, domain: reference)).domains ?? []
        }
        standardOutput.write(Array(XLFormat.uptime(statuses, now: Date(), short: short).utf8))
    }
}

struct Domid: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "domid", abstract: "Print the id of the domain with this name.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The domain's name.") var name: String

    func run() throws {
        let statuses: [DomainStatus]
        do {
            statuses = try connection.call(ControlRequest(.list)).domains ?? []
        }
        guard let status = statuses.first(where: { $0.name == name }) else {
            throw CommandFailure("Can't get domid of domain name '\(name)', maybe this domain does not exist.")
        }
        standardOutput.line("\(status.domid)")
    }
}

struct Domname: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "domname", abstract: "Print the name of the domain with this id.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The domain's id.") var id: String

    func run() throws {
        guard let domid = UInt16(id) else { throw CommandFailure("Invalid domain id.") }
        let statuses = try connection.call(ControlRequest(.list)).domains ?? []
        guard let status = statuses.first(where: { $0.domid == domid }) else {
            throw CommandFailure("Can't get domain name of domain id '\(domid)', maybe this domain does not exist.")
        }
        standardOutput.line(status.name)
    }
}

struct Rename: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rename", abstract: "Rename a domain.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The domain (name or id).") var domain: String
    @Argument(help: "Its new name.") var newName: String

    func run() throws {
        var request = ControlRequest(.rename, domain: domain)
        request.name = newName
        try connection.call(request)
    }
}
