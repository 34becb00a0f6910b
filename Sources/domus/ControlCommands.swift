import ArgumentParser
import Foundation
import Toolstack
import XLConfig

/// A failure to report as one line on stderr (`domus: ...`) with an exit status.
struct CommandFailure: Error {
    let message: String
    let status: Int32

    init(_ message: String, status: Int32 = 1) {
        self.message = message
        self.status = status
    }

    /// The daemon's error: a bad config or request exits 2, anything else 1.
    init(_ error: ControlError) {
        self.message = error.message
        switch error.kind {
        case .config, .usage: status = 2
        default: status = 1
        }
    }
}

/// `--socket`, taken by every verb that talks to the daemon.
struct ConnectionOptions: ParsableArguments {
    @Option(help: ArgumentHelp("domusd's control socket.", discussion: "Default: $DOMUS_SOCKET, else \(ControlServer.defaultSocketPath).",
                               valueName: "path"))
    var socket: String?

    var path: String {
        socket ?? ProcessInfo.processInfo.environment["DOMUS_SOCKET"].flatMap { $0.isEmpty ? nil : $0 } ?? ControlServer.defaultSocketPath
    }

    func connect() throws -> ControlClient {
        do { return try ControlClient(socketPath: path) } catch { throw CommandFailure(error) }
    }

    /// Connects, sends one request and returns the response.
    @discardableResult
    func call(_ request: ControlRequest, timeout: Double = 30) throws -> ControlResponse {
        let client = try connect()
        defer { client.close() }
        do { return try client.call(request, timeout: timeout) } catch { throw CommandFailure(error) }
    }

    /// The domain `reference` names, as the daemon lists it (xl's find_domain).
    func find(_ reference: String) throws -> DomainStatus {
        var request = ControlRequest(.list, domain: reference)
        request.long = false
        guard let status = try call(request).domains?.first else {
            throw CommandFailure("domain \"\(reference)\" does not exist")
        }
        return status
    }
}

/// Attaches the terminal to a console connection until Ctrl-] or the domain ends.
func runConsole(_ client: ControlClient, name: String, domid: UInt16) {
    let (socket, pending) = client.takeConsoleStream()
    if isatty(STDIN_FILENO) == 1 {
        standardError.line("domus: console of \(name) (domain \(domid)); Ctrl-] detaches")
    }
    let ending = RemoteConsole(socket: socket, pending: pending, output: { standardOutput.write($0) }).run()
    if ending == .closed && isatty(STDIN_FILENO) == 1 {
        standardError.line("\r\ndomus: the console of \(name) closed (the domain ended)")
    }
}

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a domain from an xl config file.",
        discussion: """
            As xl create: `domus create [-c] CONFIG [KEY=VALUE...]`. Each KEY=VALUE is a config line \
            applied after the file (strings need their quotes: 'name="web2"'). Relative kernel and \
            ramdisk paths are taken from the current directory. Exit status 2 for a bad config.
            """)

    @OptionGroup var connection: ConnectionOptions
    @Flag(name: .customShort("c"), help: "Attach to the console after creating (Ctrl-] detaches).")
    var console = false
    @Option(name: .customShort("f"), help: "The config file (instead of the first argument).")
    var file: String?
    @Argument(help: "The config file, then KEY=VALUE overrides.")
    var arguments: [String] = []

    func run() throws {
        var remaining = arguments
        let path: String
        if let file {
            path = file
        } else if let index = remaining.firstIndex(where: { !$0.contains("=") }) {
            path = remaining.remove(at: index)
        } else {
            throw CommandFailure("create needs a config file: domus create [-c] CONFIG [KEY=VALUE...]", status: 2)
        }
        if let stray = remaining.first(where: { !$0.contains("=") }) {
            throw CommandFailure("unexpected argument \"\(stray)\": overrides are KEY=VALUE", status: 2)
        }
        standardError.line("Parsing config from \(path)")
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "no such file"
            throw CommandFailure("Failed to read config file: \(path): \(reason)", status: 2)
        }
        let text = String(decoding: data, as: UTF8.self)
        do {
            let parsed = try DomainConfiguration(parsing: [UInt8](data), sourceName: path, overrides: remaining)
            for warning in parsed.warnings { standardError.line(warning.description) }
        } catch {
            throw CommandFailure(error.description, status: 2)
        }
        var request = ControlRequest(.create)
        request.config = text
        request.configName = path
        request.overrides = remaining
        request.directory = FileManager.default.currentDirectoryPath
        request.attach = console
        let client = try connection.connect()
        defer { client.close() }
        let response: ControlResponse
        do { response = try client.call(request, timeout: 120) } catch { throw CommandFailure(error) }
        if console, let domid = response.domid {
            runConsole(client, name: response.name ?? path, domid: domid)
        }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List domains (Domain-0 is the host).")

    @OptionGroup var connection: ConnectionOptions
    @Flag(name: [.short, .long], help: "Print each domain's configuration as JSON, as xl list -l does.")
    var long = false
    @Argument(help: "Only these domains (names or ids).")
    var domains: [String] = []

    func run() throws {
        var statuses: [DomainStatus] = []
        let client = try connection.connect()
        defer { client.close() }
        for reference in domains.isEmpty ? [nil] : domains.map({ Optional($0) }) {
            var request = ControlRequest(.list, domain: reference)
            request.long = long
            do {
                statuses += try client.call(request).domains ?? []
            } catch let error where error.kind == .notFound {
                throw CommandFailure("Domain '\(reference ?? "")' does not exist.")
            } catch {
                throw CommandFailure(error)
            }
        }
        standardOutput.write(Array((long ? XLFormat.listLong(statuses) : XLFormat.list(statuses)).utf8))
    }
}

struct Console: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "console", abstract: "Attach to a domain's console (Ctrl-] detaches).")

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Bytes of earlier output to show first (default 4096; 0 for none).")
    var history = 4096
    @Argument(help: "The domain (name or id).")
    var domain: String

    func run() throws {
        let client = try connection.connect()
        defer { client.close() }
        var request = ControlRequest(.console, domain: domain)
        request.history = max(0, history)
        let response: ControlResponse
        do { response = try client.call(request) } catch { throw CommandFailure(error) }
        runConsole(client, name: domain, domid: response.domid ?? 0)
    }
}

/// `shutdown` and `reboot` share xl's main_shutdown_or_reboot.
struct ShutdownOrReboot {
    let connection: ConnectionOptions
    let reboot: Bool

    func run(domain: String?, all: Bool, wait: Bool, timeout: Double) throws {
        let targets: [DomainStatus]
        if all {
            targets = (try connection.call(ControlRequest(.list)).domains ?? []).filter { $0.domid != 0 && !$0.shutdown && !$0.dying }
        } else if let domain {
            targets = [try connection.find(domain)]
        } else {
            throw CommandFailure("You must specify -a or a domain id.", status: 2)
        }
        for target in targets {
            standardError.line("\(reboot ? "Rebooting" : "Shutting down") domain \(target.domid)")
            try connection.call(ControlRequest(reboot ? .reboot : .shutdown, domain: "\(target.domid)"))
        }
        guard wait else { return }
        standardError.line("Waiting for \(targets.count) domains")
        for target in targets {
            var request = ControlRequest(.wait, domain: "\(target.domid)")
            request.timeout = timeout
            let outcome: String
            do {
                let client = try connection.connect()
                defer { client.close() }
                outcome = try client.call(request, timeout: timeout + 10).outcome ?? "destroyed"
            } catch let error as ControlError where error.kind == .notFound {
                outcome = "destroyed"
            } catch let error as ControlError {
                throw CommandFailure(error)
            }
            if outcome.hasPrefix("shutdown:") {
                let reason = outcome.dropFirst("shutdown:".count)
                let code = ["poweroff": 0, "reboot": 1, "suspend": 2, "crash": 3, "watchdog": 4, "soft_reset": 5][String(reason)] ?? -1
                standardError.line("Domain \(target.domid) has been shut down, reason code \(code)")
            } else {
                standardError.line("Domain \(target.domid) has been destroyed")
            }
        }
    }
}

struct Shutdown: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shutdown",
        abstract: "Ask a domain to shut down (writes control/shutdown = poweroff).")

    @OptionGroup var connection: ConnectionOptions
    @Flag(name: [.short, .long], help: "Wait for the domain to go.")
    var wait = false
    @Flag(name: [.short, .long], help: "Every domain.")
    var all = false
    @Option(help: "With -w, give up after this many seconds.")
    var timeout: Double = 300
    @Argument(help: "The domain (name or id).")
    var domain: String?

    func run() throws {
        try ShutdownOrReboot(connection: connection, reboot: false).run(domain: domain, all: all, wait: wait, timeout: timeout)
    }
}

struct Reboot: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "reboot", abstract: "Ask a domain to reboot (writes control/shutdown = reboot).")

    @OptionGroup var connection: ConnectionOptions
    @Flag(name: [.short, .long], help: "Wait for the domain to go.")
    var wait = false
    @Flag(name: [.short, .long], help: "Every domain.")
    var all = false
    @Option(help: "With -w, give up after this many seconds.")
    var timeout: Double = 300
    @Argument(help: "The domain (name or id).")
    var domain: String?

    func run() throws {
        try ShutdownOrReboot(connection: connection, reboot: true).run(domain: domain, all: all, wait: wait, timeout: timeout)
    }
}

/// A verb that takes one domain and sends one request.
protocol SimpleDomainCommand: ParsableCommand {
    static var operation: ControlOperation { get }
    var connection: ConnectionOptions { get }
    var domain: String { get }
}

extension SimpleDomainCommand {
    func run() throws {
        try connection.call(ControlRequest(Self.operation, domain: domain), timeout: 60)
    }
}

struct Destroy: SimpleDomainCommand {
    static let configuration = CommandConfiguration(commandName: "destroy", abstract: "Destroy a domain at once.")
    static let operation = ControlOperation.destroy
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The domain (name or id).") var domain: String
}

struct Pause: SimpleDomainCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pause a domain.")
    static let operation = ControlOperation.pause
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The domain (name or id).") var domain: String
}

struct Unpause: SimpleDomainCommand {
    static let configuration = CommandConfiguration(commandName: "unpause", abstract: "Unpause a domain.")
    static let operation = ControlOperation.unpause
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The domain (name or id).") var domain: String
}
