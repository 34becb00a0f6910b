import ArgumentParser
import Dispatch
import Foundation
import Toolstack

/// `domusd`: the domain daemon. Owns every domain (each a KVM VM in this process),
/// serves the control socket the `domus` verbs use, and logs logfmt lines to stderr.
struct Domusd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "domusd",
        abstract: "The Domus domain daemon: runs domains and serves the domus CLI.",
        discussion: """
            Listens on a Unix socket (mode 0660, owner root and --group; its directory is \
            created 0750 if missing) for the newline-delimited JSON requests of \
            docs/control-protocol.md. Root, the daemon's own user and members of --group may \
            connect. SIGTERM or SIGINT destroys every domain, removes the socket and exits 0. \
            Exit status 1 if the daemon cannot start (no /dev/kvm, socket in use).
            """)

    @Option(help: ArgumentHelp("The control socket.", valueName: "path"))
    var socket = ControlServer.defaultSocketPath
    @Option(help: ArgumentHelp("The group that owns the socket; its members may use the daemon (name or gid).", valueName: "name"))
    var group = "root"
    @Option(help: ArgumentHelp("error, warning, info or debug.", valueName: "level"))
    var logLevel = "info"
    @Option(help: "Restarts (on_reboot/on_crash = restart) allowed per domain name within a minute before it is destroyed instead.")
    var restartLimit = 5

    func validate() throws {
        guard StructuredLog.Level(name: logLevel) != nil else {
            throw ValidationError("--log-level must be error, warning, info or debug")
        }
        guard restartLimit >= 0 else { throw ValidationError("--restart-limit must not be negative") }
    }

    func run() throws {
        let level = StructuredLog.Level(name: logLevel) ?? .info
        let events = StructuredLog.standardError(level: level)
        signal(SIGPIPE, SIG_IGN)
        guard let groupID = HostAccounts.groupID(named: group) else {
            events.error("no such group", ["group": group])
            throw ExitCode(1)
        }
        var options = DomainManager.Options()
        options.restartLimit = restartLimit
        let started: (DomainManager, ControlServer)
        switch Self.start(options: options, events: events, level: level, socket: socket, groupID: groupID) {
        case let .success(pair): started = pair
        case let .failure(error):
            events.error("cannot start", ["error": error.message])
            throw ExitCode(1)
        }
        let (manager, server) = started

        // Signals are taken on a dispatch queue, never in a handler.
        let stop = DispatchSemaphore(value: 0)
        var sources: [DispatchSourceSignal] = []
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                events.info("signal received", ["signal": number == SIGTERM ? "TERM" : "INT"])
                stop.signal()
            }
            source.resume()
            sources.append(source)
        }
        server.start()
        events.info("domusd started", ["version": DomusVersion.string, "pid": getpid(), "socket": socket])
        stop.wait()
        server.stop()
        manager.closeAll()
        events.info("domusd stopped")
        _ = sources
    }

    /// Opens /dev/kvm and the control socket.
    static func start(options: DomainManager.Options, events: StructuredLog, level: StructuredLog.Level, socket: String,
                      groupID: UInt32?) -> Result<(DomainManager, ControlServer), ControlError> {
        Result { () throws(ControlError) -> (DomainManager, ControlServer) in
            let manager = try DomainManager(options: options, events: events)
            if level == .debug {
                manager.log.echo(to: { events.debug("hypervisor", ["line": $0]) }, level: .debug)
            }
            let server = try ControlServer(manager: manager, events: events,
                                           configuration: ControlServer.Configuration(socketPath: socket, groupID: groupID))
            return (manager, server)
        }
    }
}

Domusd.main()
