import Foundation
import KVM
import Synchronization
import Testing
import XenStore
@testable import Toolstack

/// Test support for the daemon tests: the PV test guests of guests/ and configs for them.
enum DaemonFixtures {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func guest(_ name: String) throws -> String {
        let path = repository.appendingPathComponent("guests/build/\(name)").path
        try #require(FileManager.default.fileExists(atPath: path), "guests/build/\(name) is missing: run `make -C guests` first")
        return path
    }

    /// An xl config for a test guest.
    static func config(name: String, guest: String, extra: String = "", memory: Int = 32) throws -> String {
        """
        name = "\(name)"
        kernel = "\(try Self.guest(guest))"
        memory = \(memory)
        \(extra)
        """
    }

    /// Lines of a structured log, collected.
    final class Lines: Sendable {
        private let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    /// A manager whose structured log lines are collected.
    static func manager(restartLimit: Int = 5) throws -> (DomainManager, Lines) {
        let lines = Lines()
        let events = StructuredLog(level: .debug) { lines.append($0) }
        var options = DomainManager.Options()
        options.restartLimit = restartLimit
        return (try DomainManager(options: options, events: events), lines)
    }

    /// A XenStore value, or nil.
    static func read(_ manager: DomainManager, _ path: String) -> String? {
        try? manager.xenstore.read { (store: XenStore) throws(XenStoreError) in try store.readString(path) }
    }

    static func exists(_ manager: DomainManager, _ path: String) -> Bool {
        (try? manager.xenstore.read { (store: XenStore) throws(XenStoreError) in store.exists(path) }) ?? false
    }

    /// Polls `condition` every 20 ms for up to `seconds`.
    static func eventually(_ seconds: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(20_000)
        }
        return try condition()
    }
}

@Suite("DomainManager without KVM")
struct DomainManagerConfigTests {
    @Test("names are checked as a config's name is")
    func names() {
        #expect(DomainManager.nameProblem("web-1") == nil)
        #expect(DomainManager.nameProblem("") != nil)
        #expect(DomainManager.nameProblem("123") != nil)
        #expect(DomainManager.nameProblem("Domain-0") != nil)
        #expect(DomainManager.nameProblem("a b") != nil)
        #expect(DomainManager.nameProblem("-x") != nil)
    }

    @Test("domain references: digits are ids")
    func references() {
        #expect(DomainManager.parseDomainID("7") == 7)
        #expect(DomainManager.parseDomainID("web") == nil)
        #expect(DomainManager.parseDomainID("99999999") == UInt16.max)
        #expect(DomainManager.parseDomainID("") == nil)
    }

    @Test("relative kernel paths resolve against the client's directory")
    func resolve() {
        #expect(DomainManager.resolve("guests/build/idle", against: "/src/domus") == "/src/domus/guests/build/idle")
        #expect(DomainManager.resolve("/boot/vmlinuz", against: "/src") == "/boot/vmlinuz")
        #expect(DomainManager.resolve("vmlinuz", against: nil) == "vmlinuz")
    }
}

@Suite("DomainManager with PV test guests", .serialized, .enabled(if: KVMSystem.isAvailable, "needs /dev/kvm"))
struct DomainManagerTests {
    @Test("hello powers off; with on_poweroff=destroy it disappears")
    func powerOffDestroys() throws {
        let (manager, _) = try DaemonFixtures.manager()
        let created = try manager.create(configText: try DaemonFixtures.config(name: "hello", guest: "hello"), sourceName: "hello.cfg")
        #expect(created.domid == 1)
        // By id: hello may be gone before the wait starts.
        #expect(try manager.waitForEnd(String(created.domid), timeout: 30) == .gone)
        #expect(try manager.list().map(\.name) == ["Domain-0"])
        #expect(!DaemonFixtures.exists(manager, "/local/domain/1"))
    }

    @Test("hello powers off; with on_poweroff=preserve it stays, shut down, until destroyed")
    func powerOffPreserves() throws {
        let (manager, _) = try DaemonFixtures.manager()
        _ = try manager.create(configText: try DaemonFixtures.config(name: "kept", guest: "hello", extra: "on_poweroff = \"preserve\""),
                               sourceName: "kept.cfg")
        #expect(try manager.waitForEnd("kept", timeout: 30) == .preserved("poweroff"))
        let status = try #require(try manager.list(only: "kept").first)
        #expect(status.shutdown && status.shutdownReason == "poweroff" && !status.running)
        #expect(XLFormat.stateLetters(status) == "---s--")
        #expect(String(decoding: try manager.consoleOutput("kept"), as: UTF8.self).contains("domus-test: PASS hello"))
        try manager.destroy("kept")
        #expect(try manager.list().count == 1)
    }

    @Test("a crashing guest with on_crash=restart restarts under a new id, at most restartLimit times")
    func crashRestarts() throws {
        let (manager, lines) = try DaemonFixtures.manager(restartLimit: 2)
        let config = try DaemonFixtures.config(name: "crasher", guest: "shutdown", extra: "extra = \"reason=crash\"\non_crash = \"restart\"")
        _ = try manager.create(configText: config, sourceName: "crasher.cfg")
        // The count is 0 for a moment during each restart too (the old domain goes
        // before the new one comes): wait for the refusal that ends it.
        #expect(DaemonFixtures.eventually(40) { manager.count == 0 && lines.all.contains { $0.contains("restarting too often") } })
        manager.settle()
        let log = lines.all
        #expect(log.filter { $0.contains("msg=\"domain restarted\"") }.count == 2, "\(log.joined(separator: "\n"))")
        #expect(log.contains { $0.contains("restarting too often") })
        #expect(log.contains { $0.contains("domid=3") })
    }

    @Test("idle: reboot through XenStore restarts it with the same name and a new id")
    func rebootRestarts() throws {
        let (manager, _) = try DaemonFixtures.manager()
        _ = try manager.create(configText: try DaemonFixtures.config(name: "idle", guest: "idle"), sourceName: "idle.cfg")
        #expect(DaemonFixtures.eventually { String(decoding: (try? manager.consoleOutput("idle")) ?? [], as: UTF8.self).contains("idle ready") })
        #expect(try manager.requestShutdown("idle", reboot: true, wait: true, timeout: 30) == .gone)
        #expect(DaemonFixtures.eventually { (try? manager.domainID("idle")) == 2 })
        try manager.destroy("idle")
        #expect(manager.count == 0)
    }

    @Test("two domains: one crashes, the other keeps running and shuts down cleanly")
    func crashIsolation() throws {
        let (manager, _) = try DaemonFixtures.manager()
        _ = try manager.create(configText: try DaemonFixtures.config(name: "survivor", guest: "idle"), sourceName: "survivor.cfg")
        #expect(DaemonFixtures.eventually { String(decoding: (try? manager.consoleOutput("survivor")) ?? [], as: UTF8.self).contains("idle ready") })
        let victim = try manager.create(configText: try DaemonFixtures.config(name: "victim", guest: "shutdown", extra: "extra = \"reason=crash\""),
                                        sourceName: "victim.cfg")
        #expect(try manager.waitForEnd(String(victim.domid), timeout: 30) == .gone)
        let survivor = try #require(try manager.list(only: "survivor").first)
        #expect(!survivor.shutdown && !survivor.dying && !survivor.paused)
        #expect(try manager.requestShutdown("survivor", reboot: false, wait: true, timeout: 30) == .gone)
        #expect(manager.count == 0)
    }

    @Test("pause, unpause and destroy an idle guest")
    func pauseUnpauseDestroy() throws {
        let (manager, _) = try DaemonFixtures.manager()
        _ = try manager.create(configText: try DaemonFixtures.config(name: "p", guest: "idle", extra: "vcpus = 2"), sourceName: "p.cfg")
        #expect(DaemonFixtures.eventually { String(decoding: (try? manager.consoleOutput("p")) ?? [], as: UTF8.self).contains("idle ready") })
        try manager.pause("p")
        var status = try #require(try manager.list(only: "p").first)
        #expect(status.paused && XLFormat.stateLetters(status) == "--p---")
        try manager.unpause("1")
        status = try #require(try manager.list(only: "p").first)
        #expect(!status.paused)
        #expect(status.vcpus.count == 2)
        // The idle guest sleeps in SCHEDOP_poll: blocked.
        #expect(DaemonFixtures.eventually { (try? manager.list(only: "p").first?.blocked) == true })
        try manager.destroy("p")
        #expect(try manager.list().count == 1)
        #expect(throws: ControlError.self) { try manager.pause("p") }
    }

    @Test("mem-set, mem-max, vcpu-set and rename write XenStore as libxl does")
    func memoryAndRename() throws {
        let (manager, _) = try DaemonFixtures.manager()
        _ = try manager.create(configText: try DaemonFixtures.config(name: "m", guest: "idle", extra: "maxmem = 64"), sourceName: "m.cfg")
        try manager.setMemoryTarget("m", kilobytes: 16384)
        #expect(DaemonFixtures.read(manager, "/local/domain/1/memory/target") == "16384")
        #expect(throws: ControlError.self) { try manager.setMemoryTarget("m", kilobytes: 1 << 20) }
        try manager.setMemoryMaximum("m", kilobytes: 49152)
        #expect(DaemonFixtures.read(manager, "/local/domain/1/memory/static-max") == "49152")
        // vcpu-set: within maxvcpus, written as cpu/N/availability.
        #expect(throws: ControlError.self) { try manager.setOnlineVCPUs("m", count: 2) }
        #expect(throws: ControlError.self) { try manager.setOnlineVCPUs("m", count: 0) }
        try manager.setOnlineVCPUs("m", count: 1)
        #expect(DaemonFixtures.read(manager, "/local/domain/1/cpu/0/availability") == "online")
        let id = try manager.create(configText: try DaemonFixtures.config(name: "v", guest: "idle", extra: "maxvcpus = 3"), sourceName: "v.cfg").domid
        let availability = { (vcpu: Int) in DaemonFixtures.read(manager, "/local/domain/\(id)/cpu/\(vcpu)/availability") }
        #expect([availability(0), availability(1), availability(2)] == ["online", "offline", "offline"])
        try manager.setOnlineVCPUs("v", count: 3)
        #expect([availability(0), availability(1), availability(2)] == ["online", "online", "online"])
        try manager.setOnlineVCPUs("v", count: 2)
        #expect([availability(0), availability(1), availability(2)] == ["online", "online", "offline"])
        #expect(throws: ControlError.self) { try manager.setOnlineVCPUs("v", count: 4) }
        try manager.destroy("v")
        try manager.rename("m", to: "renamed")
        #expect(DaemonFixtures.read(manager, "/local/domain/1/name") == "renamed")
        #expect(try manager.domainID("renamed") == 1)
        try manager.destroy("renamed")
    }

    @Test("bad configs are refused with the key named; names must be unique")
    func refusals() throws {
        let (manager, _) = try DaemonFixtures.manager()
        let lots = "name = \"x\"\nkernel = \"/nonexistent\"\nmemory = \"lots\"\n"
        let error = try #require(throws: ControlError.self) { try manager.create(configText: lots, sourceName: "lots.cfg") }
        #expect(error.kind == .config && error.message.contains("memory"), "\(error)")
        let disk = try DaemonFixtures.config(name: "d", guest: "idle", extra: "disk = [ \"/tmp/x.img,raw,xvda,rw\" ]")
        let diskError = try #require(throws: ControlError.self) { try manager.create(configText: disk, sourceName: "d.cfg") }
        #expect(diskError.kind == .unsupported && diskError.message.contains("disk"), "\(diskError)")
        let missing = "name = \"y\"\nkernel = \"/nonexistent/vmlinuz\"\n"
        let missingError = try #require(throws: ControlError.self) { try manager.create(configText: missing, sourceName: "y.cfg") }
        #expect(missingError.kind == .config && missingError.message.contains("/nonexistent/vmlinuz"), "\(missingError)")
        _ = try manager.create(configText: try DaemonFixtures.config(name: "same", guest: "idle"), sourceName: "a.cfg")
        let duplicate = try #require(throws: ControlError.self) {
            try manager.create(configText: try DaemonFixtures.config(name: "same", guest: "idle"), sourceName: "b.cfg")
        }
        #expect(duplicate.kind == .conflict)
        manager.closeAll()
        #expect(manager.count == 0)
    }
}

@Suite("DomainManager: rename-restart", .serialized, .enabled(if: KVMSystem.isAvailable, "needs /dev/kvm"))
struct RenameRestartTests {
    @Test("on_reboot=rename-restart keeps the old domain under a new name and starts a new one")
    func renameRestart() throws {
        let (manager, _) = try DaemonFixtures.manager()
        defer { manager.closeAll() }
        let config = try DaemonFixtures.config(name: "rr", guest: "shutdown", extra: "extra = \"reason=reboot\"\non_reboot = \"rename-restart\"")
        _ = try manager.create(configText: config, sourceName: "rr.cfg")
        // Each reboot keeps one more renamed domain; at the restart limit (5) the sixth
        // domain is destroyed instead of restarted.
        #expect(DaemonFixtures.eventually(30) { manager.count == 5 && (try? manager.domainID("rr")) == nil })
        manager.settle()
        let domains = try manager.list().dropFirst()
        #expect(domains.allSatisfy { $0.name.hasPrefix("rr-") && $0.shutdown && $0.shutdownReason == "reboot" })
        #expect(Set(domains.map(\.name)).count == domains.count, "renamed domains have unique names")
    }
}
