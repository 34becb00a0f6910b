// INTRODUCE, RELEASE, IS_DOMAIN_INTRODUCED, RESUME and the toolstack's domain calls.

import Testing
@testable import XenStore

@Suite struct DomainTests {
    @Test func introduceReportsAndIsDomainIntroducedAnswers() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        #expect(harness.request(.isDomainIntroduced, ["3"], from: dom0).payload == Array("F\0".utf8))
        let output = harness.send(.introduce, ["3", "-5", "9"], from: dom0)
        #expect(reply(in: output, for: dom0).strings == ["OK"])
        #expect(output.events == [.domainIntroduced(3, gfn: -5, eventChannel: 9)])
        #expect(harness.request(.isDomainIntroduced, ["3"], from: dom0).strings == ["T"])
        #expect(harness.request(.isDomainIntroduced, ["0"], from: dom0).strings == ["T"])
        #expect(harness.request(.isDomainIntroduced, ["32752"], from: dom0).strings == ["T"], "DOMID_SELF")
        // An unparsable gfn is passed on as nil; xenstored ignores it.
        let again = harness.send(.introduce, ["4", "junk", "9", "extra"], from: dom0)
        #expect(again.events == [.domainIntroduced(4, gfn: nil, eventChannel: 9)])
    }

    @Test func reintroduceResetsTheDomainsConnectionState() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        harness.send(.introduce, ["3", "1", "1"], from: dom0)
        let guest = harness.connect(3)
        harness.send(.watch, ["@releaseDomain", "w"], from: guest)
        let tx = harness.startTransaction(from: guest)
        harness.send(.watch, ["@introduceDomain", "i"], from: dom0)
        let again = harness.send(.introduce, ["3", "1", "2"], from: dom0)
        #expect(events(in: again, for: dom0).isEmpty, "@introduceDomain fires only the first time")
        #expect(again.events == [.domainIntroduced(3, gfn: 1, eventChannel: 2)])
        #expect(harness.store.watches.count(for: guest) == 0)
        #expect(harness.request(.transactionEnd, ["F"], from: guest, transaction: tx).errorName == "ENOENT")
    }

    @Test func releaseClosesConnectionsAndRemovesOwnedNodes() throws {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        harness.send(.introduce, ["5", "1", "1"], from: dom0)
        let home = XenStore.domainPath(5)
        _ = try harness.store.mkdir(home)
        _ = try harness.store.setPermissions(
            home, XenStorePermissions(owner: 0, entries: [XenStorePermission(domain: 5, access: .read)]))
        _ = try harness.store.mkdir(home + "/data")
        _ = try harness.store.setPermissions(home + "/data", XenStorePermissions(owner: 5))
        _ = try harness.store.write("/backend/vbd/5/0", string: "x")
        _ = try harness.store.setPermissions(
            "/backend/vbd/5/0", XenStorePermissions(owner: 0, entries: [XenStorePermission(domain: 5, access: .read)]))
        let guest = harness.connect(5)
        #expect(harness.write("data/mine/deep", "1", from: guest) == nil)
        harness.send(.watch, ["data", "own"], from: guest)
        harness.send(.watch, ["/local/domain/5/data/mine", "w"], from: dom0)
        harness.send(.watch, ["@releaseDomain", "r"], from: dom0)

        let output = harness.send(.release, ["5"], from: dom0)
        #expect(reply(in: output, for: dom0).strings == ["OK"])
        #expect(output.events == [.domainReleased(5, closedConnections: [guest])])
        #expect(output.messages(for: guest).isEmpty, "the released domain hears nothing")
        #expect(events(in: output, for: dom0) == [["/local/domain/5/data/mine", "w"], ["@releaseDomain", "r"]])
        #expect(!harness.store.isConnected(guest))
        #expect(!harness.store.exists(home + "/data"))
        #expect(harness.store.exists(home), "owned by dom0, removed by the toolstack itself")
        #expect(try harness.store.permissions(home).description == "n0")
        #expect(try harness.store.permissions("/backend/vbd/5/0").description == "n0")
        #expect(harness.store.tree.ownedCount(5) == 0)
        #expect(harness.request(.isDomainIntroduced, ["5"], from: dom0).strings == ["F"])
    }

    @Test func releaseErrors() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        #expect(harness.request(.release, ["0"], from: dom0).errorName == "EINVAL")
        #expect(harness.request(.release, ["8"], from: dom0).errorName == "ENOENT")
        #expect(harness.request(.resume, ["8"], from: dom0).errorName == "ENOENT")
        #expect(harness.request(.resume, ["0"], from: dom0).errorName == "EINVAL")
    }

    @Test func releaseDropsTargetsAndDomainQuotas() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        harness.send(.introduce, ["1", "1", "1"], from: dom0)
        harness.send(.introduce, ["2", "1", "1"], from: dom0)
        harness.send(.setTarget, ["2", "1"], from: dom0)
        harness.send(.setQuota, ["1", "nodes", "3"], from: dom0)
        harness.send(.release, ["1"], from: dom0)
        #expect(harness.store.targets.isEmpty)
        #expect(harness.store.quotas(for: 1).nodes == 1000)
    }

    @Test func toolstackDomainCalls() throws {
        var store = XenStore()
        let watcher = store.connect(domain: 0, privileged: true)
        _ = store.handle(XenStoreMessage(type: .watch, strings: ["@introduceDomain", "i"]), from: watcher)
        let introduced = try store.introduceDomain(9)
        #expect(introduced.events == [.domainIntroduced(9, gfn: nil, eventChannel: nil)])
        #expect(events(in: introduced, for: watcher) == [["@introduceDomain", "i"]])
        #expect(store.isDomainIntroduced(9))
        #expect(throws: XenStoreError.EINVAL) { try store.introduceDomain(.firstReserved) }
        #expect(throws: XenStoreError.EINVAL) { try store.releaseDomain(0) }
        #expect(throws: XenStoreError.ENOENT) { try store.releaseDomain(10) }
        let released = try store.releaseDomain(9)
        #expect(released.events == [.domainReleased(9, closedConnections: [])])
        #expect(!store.isDomainIntroduced(9))
    }
}
