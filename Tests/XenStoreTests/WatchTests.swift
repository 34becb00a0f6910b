// Watches: tools/xenstored/watch.c and the special watches of domain.c.

import Testing
@testable import XenStore

@Suite struct WatchTests {
    @Test func watchRepliesOKThenFiresOnce() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let output = harness.send(.watch, ["/a", "token"], from: dom0)
        let messages = output.messages(for: dom0)
        #expect(messages.count == 2)
        #expect(messages.first?.type == .watch && messages.first?.strings == ["OK"])
        #expect(messages.last?.type == .watchEvent && messages.last?.strings == ["/a", "token"])
        #expect(messages.last?.requestID == 0 && messages.last?.transactionID == 0)
    }

    @Test func ancestorWatchFiresWithModifiedPath() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let watcher = harness.connect(0, privileged: true)
        harness.send(.watch, ["/a", "t1"], from: watcher)
        harness.send(.watch, ["/", "root"], from: watcher)
        harness.send(.watch, ["/a/b/c/d", "below"], from: watcher)
        let output = harness.send(.write, ["/a/b/c", "v"], from: dom0)
        #expect(events(in: output, for: watcher) == [["/a/b/c", "t1"], ["/a/b/c", "root"]])
        // Events precede the writer's reply, as xenstored queues them.
        #expect(output.messages.last?.connection == dom0)
    }

    @Test func watchesOnUnrelatedPathsDoNotFire() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        harness.send(.watch, ["/ab", "t"], from: dom0)
        let output = harness.send(.write, ["/abc", "v"], from: dom0)
        #expect(events(in: output, for: dom0).isEmpty)
    }

    @Test func mkdirSetPermsAndRmFire() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        harness.send(.watch, ["/n", "t"], from: dom0)
        #expect(events(in: harness.send(.mkdir, ["/n/x"], from: dom0), for: dom0) == [["/n/x", "t"]])
        #expect(events(in: harness.send(.mkdir, ["/n/x"], from: dom0), for: dom0).isEmpty, "no change, no event")
        #expect(events(in: harness.send(.setPerms, ["/n/x", "r0"], from: dom0), for: dom0) == [["/n/x", "t"]])
        #expect(events(in: harness.send(.rm, ["/n/x"], from: dom0), for: dom0) == [["/n/x", "t"]])
        #expect(events(in: harness.send(.rm, ["/n/x"], from: dom0), for: dom0).isEmpty)
    }

    @Test func rmFiresForWatchedDescendants() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let watcher = harness.connect(0, privileged: true)
        _ = harness.write("/r/a/b", "", from: dom0)
        _ = harness.write("/r/a/c", "", from: dom0)
        harness.send(.watch, ["/r/a/b", "child"], from: watcher)
        harness.send(.watch, ["/r", "parent"], from: watcher)
        harness.send(.watch, ["/r/a/b/never", "deeper"], from: watcher)
        let output = harness.send(.rm, ["/r/a"], from: dom0)
        #expect(events(in: output, for: watcher) == [["/r/a/b", "child"], ["/r/a", "parent"]])
    }

    @Test func relativeWatchGetsRelativePaths() throws {
        var harness = Harness()
        _ = try harness.store.mkdir("/local/domain/3")
        _ = try harness.store.setPermissions("/local/domain/3", XenStorePermissions(owner: 3))
        let guest = harness.connect(3)
        let first = harness.send(.watch, ["device", "dev"], from: guest)
        #expect(events(in: first, for: guest) == [["device", "dev"]])
        let output = harness.send(.write, ["device/vif/0", "x"], from: guest)
        #expect(events(in: output, for: guest) == [["device/vif/0", "dev"]])
        // Absolute watch on the same node reports absolute paths.
        harness.send(.watch, ["/local/domain/3/device", "abs"], from: guest)
        let second = harness.send(.write, ["device/vif/1", "x"], from: guest)
        #expect(events(in: second, for: guest) == [["device/vif/1", "dev"], ["/local/domain/3/device/vif/1", "abs"]])
    }

    @Test func eventsOnlyReachReaders() throws {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = try harness.store.mkdir("/local/domain/1")
        _ = try harness.store.setPermissions("/local/domain/1", XenStorePermissions(owner: 1))
        let guest1 = harness.connect(1)
        let guest2 = harness.connect(2)
        // Guest 2 may watch anything, but only hears about what it can read.
        harness.send(.watch, ["/local/domain/1", "spy"], from: guest2)
        harness.send(.watch, ["/local/domain/1", "own"], from: guest1)
        let output = harness.send(.write, ["/local/domain/1/secret", "x"], from: guest1)
        #expect(events(in: output, for: guest2).isEmpty)
        #expect(events(in: output, for: guest1) == [["/local/domain/1/secret", "own"]])
        // Once readable, guest 2 hears about changes.
        harness.send(.setPerms, ["/local/domain/1/secret", "n1", "r2"], from: guest1)
        let later = harness.send(.write, ["/local/domain/1/secret", "y"], from: dom0)
        #expect(events(in: later, for: guest2) == [["/local/domain/1/secret", "spy"]])
    }

    @Test func removedNodeEventSeenByThoseWhoCouldReadIt() throws {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = try harness.store.mkdir("/local/domain/1")
        _ = try harness.store.setPermissions(
            "/local/domain/1", XenStorePermissions(owner: 1, entries: [XenStorePermission(domain: 2, access: .read)]))
        _ = try harness.store.write("/local/domain/1/gone", string: "")
        let guest2 = harness.connect(2)
        let guest3 = harness.connect(3)
        harness.send(.watch, ["/local/domain/1/gone", "t"], from: guest2)
        harness.send(.watch, ["/local/domain/1/gone", "t"], from: guest3)
        let output = harness.send(.rm, ["/local/domain/1/gone"], from: dom0)
        #expect(events(in: output, for: guest2) == [["/local/domain/1/gone", "t"]])
        #expect(events(in: output, for: guest3).isEmpty)
    }

    @Test func unwatchAndDuplicates() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        harness.send(.watch, ["/u", "t"], from: dom0)
        #expect(harness.request(.watch, ["/u", "t"], from: dom0).errorName == "EEXIST")
        let second = harness.send(.watch, ["/u", "t2"], from: dom0)
        #expect(reply(in: second, for: dom0).strings == ["OK"])
        #expect(harness.request(.unwatch, ["/u", "t"], from: dom0).strings == ["OK"])
        #expect(harness.request(.unwatch, ["/u", "t"], from: dom0).errorName == "ENOENT")
        #expect(events(in: harness.send(.write, ["/u", ""], from: dom0), for: dom0) == [["/u", "t2"]])
        #expect(harness.request(.unwatch, ["/u"], from: dom0).errorName == "EINVAL")
        #expect(harness.request(.unwatch, ["/u", "t2", "x"], from: dom0).errorName == "EINVAL")
    }

    @Test func tokensAreBytes() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let token: [UInt8] = [0xFF, 0x01, 0x80]
        let output = harness.send(.watch, payload: Array("/b\0".utf8) + token + [0], from: dom0)
        #expect(output.messages(for: dom0).last?.payload == Array("/b\0".utf8) + token + [0])
    }

    @Test func resetWatches() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let watcher = harness.connect(0, privileged: true)
        harness.send(.watch, ["/x", "a"], from: watcher)
        harness.send(.watch, ["/y", "b"], from: watcher)
        #expect(harness.request(.resetWatches, [""], from: watcher).strings == ["OK"])
        #expect(events(in: harness.send(.write, ["/x", ""], from: dom0), for: watcher).isEmpty)
        #expect(harness.store.watches.count(for: watcher) == 0)
    }

    @Test func disconnectDropsWatches() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let watcher = harness.connect(0, privileged: true)
        harness.send(.watch, ["/x", "a"], from: watcher)
        harness.store.disconnect(watcher)
        #expect(harness.send(.write, ["/x", ""], from: dom0).messages.count == 1)
        #expect(harness.send(.read, ["/x"], from: watcher).messages.isEmpty)
    }

    @Test func watchDepthArgumentIsNotOffered() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        #expect(harness.request(.watch, ["/x", "t", "1"], from: dom0).errorName == "EINVAL")
        #expect(harness.request(.watch, ["/x"], from: dom0).errorName == "EINVAL")
        #expect(harness.request(.watch, ["/x/", "t"], from: dom0).errorName == "EINVAL")
    }

    @Test func introduceAndReleaseFireSpecialWatches() throws {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let guest = harness.connect(4)
        harness.send(.watch, ["@introduceDomain", "in"], from: dom0)
        harness.send(.watch, ["@releaseDomain", "out"], from: dom0)
        harness.send(.watch, ["@releaseDomain/7", "out7"], from: dom0)
        harness.send(.watch, ["@introduceDomain", "in"], from: guest)
        harness.send(.watch, ["@releaseDomain", "out"], from: guest)

        let introduced = harness.send(.introduce, ["7", "123", "5"], from: dom0)
        #expect(events(in: introduced, for: dom0) == [["@introduceDomain", "in"]])
        #expect(events(in: introduced, for: guest).isEmpty, "@introduceDomain is private to dom0")
        #expect(introduced.events == [.domainIntroduced(7, gfn: 123, eventChannel: 5)])

        let released = harness.send(.release, ["7"], from: dom0)
        #expect(events(in: released, for: dom0) == [["@releaseDomain", "out"], ["@releaseDomain/7", "out7"]])
        #expect(events(in: released, for: guest) == [["@releaseDomain", "out"]], "@releaseDomain is readable by all")
        #expect(released.events == [.domainReleased(7, closedConnections: [])])
    }

    @Test func shutdownFiresReleaseOnceUntilResume() throws {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = try harness.store.introduceDomain(6)
        harness.send(.watch, ["@releaseDomain", "r"], from: dom0)
        #expect(events(in: harness.store.domainDidShutDown(6), for: dom0) == [["@releaseDomain", "r"]])
        #expect(events(in: harness.store.domainDidShutDown(6), for: dom0).isEmpty)
        #expect(harness.request(.resume, ["6"], from: dom0).strings == ["OK"])
        #expect(events(in: harness.store.domainDidShutDown(6), for: dom0) == [["@releaseDomain", "r"]])
    }

    @Test func oversizedEventsAreDropped() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let path = "/" + String(repeating: "p", count: 2000)
        let token = String(repeating: "t", count: 2090)
        let output = harness.send(.watch, [path, token], from: dom0)
        #expect(reply(in: output, for: dom0).strings == ["OK"])
        #expect(events(in: output, for: dom0).count == 1)
        let write = harness.send(.write, [path + "/child", ""], from: dom0)
        #expect(reply(in: write, for: dom0).strings == ["OK"])
        #expect(events(in: write, for: dom0).isEmpty)
    }
}
