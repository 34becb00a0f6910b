import Foundation
import KVM
import Testing
@testable import Toolstack

/// A daemon on a temporary socket, for one test: the manager, the server, and the path.
final class TestDaemon: @unchecked Sendable {
    let directory: String
    let path: String
    let manager: DomainManager
    let server: ControlServer
    let lines = DaemonFixtures.Lines()

    init() throws {
        directory = NSTemporaryDirectory() + "domus-daemon-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        path = directory + "/domusd.sock"
        let events = StructuredLog(level: .debug) { [lines] in lines.append($0) }
        manager = try DomainManager(events: events)
        server = try ControlServer(manager: manager, events: events, configuration: ControlServer.Configuration(socketPath: path))
        server.start()
    }

    func client() throws -> ControlClient { try ControlClient(socketPath: path, timeout: 5) }

    func call(_ request: ControlRequest, timeout: Double = 30) throws -> ControlResponse {
        let client = try client()
        defer { client.close() }
        return try client.call(request, timeout: timeout)
    }

    func stop() {
        server.stop()
        manager.closeAll()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Reads from `socket` until `needle` has been seen or `seconds` pass.
    static func read(_ socket: UnixSocket, until needle: String, seconds: Double = 15, initial: [UInt8] = []) -> String {
        var bytes = initial
        let deadline = Date().addingTimeInterval(seconds)
        while !String(decoding: bytes, as: UTF8.self).contains(needle), Date() < deadline {
            guard let chunk = try? socket.read(upTo: 4096, timeout: max(0.01, deadline.timeIntervalSinceNow)), !chunk.isEmpty else { break }
            bytes += chunk
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

@Suite("domusd on a socket, driven by the client code", .serialized, .enabled(if: KVMSystem.isAvailable, "needs /dev/kvm"))
struct DaemonTests {
    @Test("create, list, console both ways, destroy, stop")
    func lifecycleOverTheSocket() throws {
        let daemon = try TestDaemon()
        defer { daemon.stop() }
        #expect(try daemon.call(ControlRequest(.ping)).version == DomusVersion.string)
        let attributes = try FileManager.default.attributesOfItem(atPath: daemon.path)
        #expect(attributes[.type] as? FileAttributeType == .typeSocket)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)

        var create = ControlRequest(.create)
        create.config = try DaemonFixtures.config(name: "idle", guest: "idle")
        create.configName = "idle.cfg"
        let created = try daemon.call(create)
        #expect(created.domid == 1 && created.name == "idle")

        let listed = try daemon.call(ControlRequest(.list)).domains ?? []
        #expect(listed.map(\.name) == ["Domain-0", "idle"])
        let table = XLFormat.list(listed)
        #expect(table.hasPrefix(XLFormat.listHeader + "\nDomain-0 "))
        #expect(table.contains("\nidle                                         1    32     1     "))

        // The console: the guest's output, then keystrokes echoed back.
        let console = try daemon.client()
        defer { console.close() }
        #expect(try console.call(ControlRequest(.console, domain: "idle")).domid == 1)
        let (socket, pending) = console.takeConsoleStream()
        #expect(TestDaemon.read(socket, until: "idle ready", initial: pending).contains("domus-test: idle ready"))
        try socket.write(Array("ping\r".utf8), timeout: 5)
        #expect(TestDaemon.read(socket, until: "ping\r\n").contains("ping\r\n"))

        // Destroying the domain closes its console.
        try daemon.call(ControlRequest(.destroy, domain: "1"))
        #expect(DaemonFixtures.eventually(10) { (try? socket.read(upTo: 4096, timeout: 0.2)) == [] })
        #expect(try daemon.call(ControlRequest(.list)).domains?.count == 1)

        daemon.server.stop()
        #expect(!FileManager.default.fileExists(atPath: daemon.path))
    }

    @Test("errors: unknown op, bad config, no such domain, malformed line; the connection survives")
    func errors() throws {
        let daemon = try TestDaemon()
        defer { daemon.stop() }
        let client = try daemon.client()
        defer { client.close() }
        let unknown = try client.exchange(ControlRequest(op: "explode"))
        #expect(!unknown.ok && unknown.errorKind == .usage && (unknown.error ?? "").contains("mem-set"))

        var lots = ControlRequest(.create)
        lots.config = "name = \"x\"\nkernel = \"/boot/vmlinuz\"\nmemory = \"lots\"\n"
        lots.configName = "lots.cfg"
        let refused = try client.exchange(lots)
        #expect(!refused.ok && refused.errorKind == .config)
        #expect((refused.error ?? "").contains("lots.cfg:3") && (refused.error ?? "").contains("memory"), "\(refused.error ?? "")")

        let missing = try client.exchange(ControlRequest(.destroy, domain: "nosuch"))
        #expect(!missing.ok && missing.errorKind == .notFound)
        let noDomain = try client.exchange(ControlRequest(.pause))
        #expect(!noDomain.ok && noDomain.errorKind == .usage)
        let dom0 = try client.exchange(ControlRequest(.destroy, domain: "0"))
        #expect(!dom0.ok && dom0.errorKind == .unsupported)

        // A line that is not JSON gets an error response, and the next request works.
        try client.socket.write(Array("this is not json\n".utf8), timeout: 5)
        let line = try #require(try client.reader.readLine(maximumBytes: 1 << 16, timeout: 10))
        let response = try ControlCodec.decode(ControlResponse.self, from: line)
        #expect(!response.ok && response.errorKind == .usage)
        #expect(try client.call(ControlRequest(.ping)).ok)
    }

    @Test("shutdown with wait: the idle guest acts on control/shutdown and is gone")
    func shutdownWait() throws {
        let daemon = try TestDaemon()
        defer { daemon.stop() }
        var create = ControlRequest(.create)
        create.config = try DaemonFixtures.config(name: "idle", guest: "idle")
        try daemon.call(create)
        #expect(DaemonFixtures.eventually { String(decoding: (try? daemon.manager.consoleOutput("idle")) ?? [], as: UTF8.self).contains("idle ready") })
        var shutdown = ControlRequest(.shutdown, domain: "idle")
        shutdown.wait = true
        shutdown.timeout = 30
        #expect(try daemon.call(shutdown, timeout: 40).outcome == "destroyed")
        #expect(try daemon.call(ControlRequest(.list)).domains?.count == 1)
    }

    @Test("a second daemon on the same socket is refused; a stale socket is replaced")
    func socketOwnership() throws {
        let daemon = try TestDaemon()
        let second = #expect(throws: ControlError.self) {
            _ = try ControlServer(manager: daemon.manager, events: .discard,
                                  configuration: ControlServer.Configuration(socketPath: daemon.path))
        }
        #expect(second?.kind == .conflict && (second?.message ?? "").contains("already listening"))
        // Left behind by a daemon that died: a socket file nobody listens on.
        daemon.server.stop()
        let stale = try UnixSocket.listen(path: daemon.path)
        stale.close()
        #expect(FileManager.default.fileExists(atPath: daemon.path))
        let replacement = try ControlServer(manager: daemon.manager, events: .discard,
                                            configuration: ControlServer.Configuration(socketPath: daemon.path))
        replacement.start()
        #expect(try daemon.call(ControlRequest(.ping)).ok)
        replacement.stop()
        daemon.stop()
    }

    @Test("a client that vanishes mid-request or stops reading its console does not block the daemon")
    func vanishingClients() throws {
        let daemon = try TestDaemon()
        defer { daemon.stop() }
        // Half a request, then gone.
        let half = try UnixSocket.connect(path: daemon.path, timeout: 5)
        try half.write(Array("{\"op\":\"li".utf8), timeout: 5)
        half.close()
        // A console client that never reads while the guest writes.
        var create = ControlRequest(.create)
        create.config = try DaemonFixtures.config(name: "idle", guest: "idle")
        try daemon.call(create)
        let silent = try daemon.client()
        try silent.call(ControlRequest(.console, domain: "idle"))
        // The daemon still answers, and destroys the domain at once.
        #expect(try daemon.call(ControlRequest(.ping)).ok)
        let started = Date()
        try daemon.call(ControlRequest(.destroy, domain: "idle"))
        #expect(Date().timeIntervalSince(started) < 5)
        silent.close()
    }
}

/// Where `swift build` put domusd and domus: beside the test bundle.
enum Binaries {
    static let directory: URL = {
        let candidates = [Bundle.main.executableURL?.deletingLastPathComponent(), Bundle.main.bundleURL,
                          Bundle.main.bundleURL.deletingLastPathComponent(),
                          DaemonFixtures.repository.appendingPathComponent(".build/debug")].compactMap { $0 }
        return candidates.first { holdsBinaries($0) } ?? candidates[0]
    }()

    static func holdsBinaries(_ directory: URL) -> Bool {
        FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("domusd").path)
            && FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("domus").path)
    }

    static var exist: Bool { holdsBinaries(directory) }
}

/// The real binaries, as a user runs them: domusd in the background, domus verbs.
@Suite("domusd and domus binaries", .serialized,
       .enabled(if: KVMSystem.isAvailable && Binaries.exist, "needs /dev/kvm and a built domusd (swift build)"))
struct BinaryTests {
    static let binaries = Binaries.directory

    struct Result {
        let status: Int32
        let output: String
        let errors: String
    }

    /// Runs a binary to completion, killing it after `timeout` seconds.
    static func run(_ name: String, _ arguments: [String], timeout: Double = 60) throws -> Result {
        let process = Process()
        process.executableURL = binaries.appendingPathComponent(name)
        process.arguments = arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return Result(status: process.terminationStatus,
                      output: String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
                      errors: String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    @Test("start domusd, create a domain from a config, list it with xl's header, destroy it, SIGTERM")
    func endToEnd() throws {
        let directory = NSTemporaryDirectory() + "domus-binary-test-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/run/domusd.sock"
        let daemon = Process()
        daemon.executableURL = Self.binaries.appendingPathComponent("domusd")
        daemon.arguments = ["--socket", socket, "--log-level", "debug"]
        let log = Pipe()
        daemon.standardError = log
        daemon.standardInput = FileHandle.nullDevice
        try daemon.run()
        defer {
            if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) }
        }
        #expect(DaemonFixtures.eventually(10) { FileManager.default.fileExists(atPath: socket) })

        // A config the project did not write: an idle PV guest kernel, xl's syntax.
        let config = directory + "/guest.cfg"
        try """
            # hand-written, as for xl
            name = "quiet"
            kernel = "\(try DaemonFixtures.guest("idle"))"
            memory = 32
            vcpus = 1
            on_crash = "destroy"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let created = try Self.run("domus", ["create", config, "--socket", socket])
        #expect(created.status == 0, "\(created.errors)")
        #expect(created.errors.contains("Parsing config from \(config)"))
        let listed = try Self.run("domus", ["--socket", socket, "list"])
        #expect(listed.status == 0)
        #expect(listed.output.hasPrefix("Name                                        ID   Mem VCPUs\tState\tTime(s)\nDomain-0 "))
        #expect(listed.output.contains("\nquiet                                        1    32     1     "), "\(listed.output)")
        #expect(try Self.run("domus", ["domid", "quiet", "--socket", socket]).output == "1\n")
        #expect(try Self.run("domus", ["destroy", "quiet", "--socket", socket]).status == 0)
        #expect(!(try Self.run("domus", ["list", "--socket", socket]).output.contains("quiet")))

        // memory = "lots" is refused before anything is sent, naming the key.
        try "name = \"x\"\nkernel = \"/boot/vmlinuz\"\nmemory = \"lots\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let lots = try Self.run("domus", ["create", config, "--socket", socket])
        #expect(lots.status == 2 && lots.errors.contains("memory"), "\(lots.errors)")

        kill(daemon.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(15)
        while daemon.isRunning && Date() < deadline { usleep(20_000) }
        #expect(!daemon.isRunning)
        if !daemon.isRunning { #expect(daemon.terminationStatus == 0) }
        #expect(!FileManager.default.fileExists(atPath: socket))
        let text = String(decoding: log.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains("level=info msg=\"domain created\" domid=1 name=quiet"), "\(text)")
        #expect(text.contains("msg=\"domusd stopped\""))

        // No daemon: one clear line, exit 1.
        let absent = try Self.run("domus", ["list", "--socket", socket])
        #expect(absent.status == 1 && absent.errors.hasPrefix("domus: cannot connect to domusd at \(socket): "), "\(absent.errors)")
    }
}

extension ControlRequest {
    /// A request with an arbitrary op, for testing how unknown ones are refused.
    init(op: String) {
        self.init(.ping)
        self.op = op
    }
}
