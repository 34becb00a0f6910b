// Quotas: tools/xenstored/domain.c accounting, all answered with ENOSPC.

import Testing
@testable import XenStore

@Suite struct QuotaTests {
    /// A store with small quotas and a guest owning its home.
    func setup(_ quotas: XenStoreQuotas) throws -> (Harness, XenStore.ConnectionID, XenStore.ConnectionID) {
        var harness = Harness()
        harness.store = XenStore(quotas: quotas)
        let dom0 = harness.connect(0, privileged: true)
        _ = try harness.store.mkdir("/local/domain/1")
        _ = try harness.store.setPermissions("/local/domain/1", XenStorePermissions(owner: 1))
        _ = try harness.store.introduceDomain(1)
        let guest = harness.connect(1)
        return (harness, dom0, guest)
    }

    @Test func nodeCount() throws {
        var (harness, dom0, guest) = try setup(XenStoreQuotas(nodes: 4))
        // The home counts: the guest owns 1 node.
        #expect(harness.write("a", "", from: guest) == nil)
        #expect(harness.write("b/c", "", from: guest) == nil)
        #expect(harness.write("d", "", from: guest) == "ENOSPC")
        #expect(harness.write("e/f/g", "", from: guest) == "ENOSPC")
        #expect(harness.read("e", from: guest) == "!ENOENT", "a refused write creates nothing")
        // Privileged writers are not limited, but a node they create under the
        // guest's home inherits the guest as owner and counts for it.
        #expect(harness.write("/local/domain/1/d", "", from: dom0) == nil)
        #expect(harness.store.tree.ownedCount(1) == 5)
        // Removal frees quota: b and c go, leaving home, a, d.
        #expect(harness.request(.rm, ["b"], from: guest).strings == ["OK"])
        #expect(harness.write("x", "", from: guest) == nil)
        #expect(harness.write("y", "", from: guest) == "ENOSPC")
    }

    @Test func nodeCountInsideTransactionIsCheckedAtCommitToo() throws {
        var (harness, _, guest) = try setup(XenStoreQuotas(nodes: 3))
        let tx = harness.startTransaction(from: guest)
        #expect(harness.write("a", "", from: guest, transaction: tx) == nil)
        #expect(harness.write("b", "", from: guest, transaction: tx) == nil)
        #expect(harness.write("c", "", from: guest, transaction: tx) == "ENOSPC")
        // Meanwhile the guest uses its last node outside the transaction.
        #expect(harness.write("z", "", from: guest) == nil)
        #expect(harness.request(.transactionEnd, ["T"], from: guest, transaction: tx).errorName != nil)
    }

    @Test func nodeSize() throws {
        var (harness, dom0, guest) = try setup(XenStoreQuotas(nodeSize: 16))
        #expect(harness.write("v", String(repeating: "x", count: 16), from: guest) == nil)
        #expect(harness.write("v", String(repeating: "x", count: 17), from: guest) == "ENOSPC")
        #expect(harness.write("w", String(repeating: "x", count: 17), from: guest) == "ENOSPC")
        #expect(harness.write("/local/domain/1/v", String(repeating: "x", count: 100), from: dom0) == nil)
        // The children list counts too: the home holds "v\0" (2 bytes); a
        // 13-character child makes it 16, a 14-character one 17.
        #expect(harness.write("abcdefghijklm", "", from: guest) == nil)
        #expect(harness.request(.rm, ["abcdefghijklm"], from: guest).strings == ["OK"])
        #expect(harness.write("abcdefghijklmn", "", from: guest) == "ENOSPC")
    }

    @Test func watches() throws {
        var (harness, dom0, guest) = try setup(XenStoreQuotas(watches: 2))
        #expect(harness.request(.watch, ["a", "1"], from: guest).strings == ["OK"])
        #expect(harness.request(.watch, ["a", "2"], from: guest).strings == ["OK"])
        #expect(harness.request(.watch, ["a", "3"], from: guest).errorName == "ENOSPC")
        #expect(harness.request(.unwatch, ["a", "1"], from: guest).strings == ["OK"])
        #expect(harness.request(.watch, ["a", "3"], from: guest).strings == ["OK"])
        for index in 0..<10 { #expect(harness.request(.watch, ["/x", "\(index)"], from: dom0).strings == ["OK"]) }
    }

    @Test func transactions() throws {
        var (harness, dom0, guest) = try setup(XenStoreQuotas(transactions: 2))
        let first = harness.startTransaction(from: guest)
        _ = harness.startTransaction(from: guest)
        #expect(harness.request(.transactionStart, [""], from: guest).errorName == "ENOSPC")
        _ = harness.request(.transactionEnd, ["F"], from: guest, transaction: first)
        #expect(harness.request(.transactionStart, [""], from: guest).type == .transactionStart)
        for _ in 0..<5 { #expect(harness.request(.transactionStart, [""], from: dom0).type == .transactionStart) }
    }

    @Test func transactionNodes() throws {
        var (harness, _, guest) = try setup(XenStoreQuotas(transactionNodes: 4))
        let tx = harness.startTransaction(from: guest)
        #expect(harness.write("a", "", from: guest, transaction: tx) == nil)  // touches home, a
        #expect(harness.read("b", from: guest, transaction: tx) == "!ENOENT")  // b
        #expect(harness.read("c", from: guest, transaction: tx) == "!ENOENT")  // c
        #expect(harness.read("d", from: guest, transaction: tx) == "!ENOSPC")
        #expect(harness.request(.transactionEnd, ["T"], from: guest, transaction: tx).errorName == "ENOSPC")
    }

    @Test func permissionsPerNode() throws {
        var (harness, _, guest) = try setup(XenStoreQuotas(permissions: 2))
        _ = harness.write("p", "", from: guest)
        #expect(harness.request(.setPerms, ["p", "n1", "r2"], from: guest).strings == ["OK"])
        #expect(harness.request(.setPerms, ["p", "n1", "r2", "r3"], from: guest).errorName == "ENOSPC")
    }

    @Test func pathLength() throws {
        var (harness, dom0, guest) = try setup(XenStoreQuotas(pathLength: 10))
        #expect(harness.write("0123456789", "", from: guest) == nil)
        #expect(harness.write("0123456789a", "", from: guest) == "EINVAL")
        #expect(harness.write("/local/domain/1/0123456789a", "", from: dom0) == nil)
    }

    @Test func zeroDisablesAQuota() throws {
        var (harness, _, guest) = try setup(XenStoreQuotas(nodes: 0))
        for index in 0..<50 { #expect(harness.write("n\(index)", "", from: guest) == nil) }
    }

    @Test func getAndSetQuotaRequests() throws {
        var (harness, dom0, guest) = try setup(XenStoreQuotas())
        #expect(harness.request(.getQuota, [], from: dom0).strings.first?.contains("nodes") == true)
        #expect(harness.request(.getQuota, ["nodes"], from: dom0).strings == ["1000"])
        #expect(harness.request(.setQuota, ["1", "nodes", "2"], from: dom0).strings == ["OK"])
        #expect(harness.request(.getQuota, ["1", "nodes"], from: dom0).strings == ["2"])
        #expect(harness.request(.getQuota, ["nodes"], from: dom0).strings == ["1000"])
        #expect(harness.write("a", "", from: guest) == nil)
        #expect(harness.write("b", "", from: guest) == "ENOSPC")
        #expect(harness.request(.setQuota, ["watches", "7"], from: dom0).strings == ["OK"])
        #expect(harness.store.quotas.watches == 7)
        #expect(harness.request(.getQuota, ["bogus"], from: dom0).errorName == "EINVAL")
        #expect(harness.request(.getQuota, ["9", "nodes"], from: dom0).errorName == "ENOENT")
        #expect(harness.request(.setQuota, ["nodes", "x"], from: dom0).errorName == "EINVAL")
        #expect(harness.request(.setQuota, ["nodes", "4294967295"], from: dom0).errorName == "EINVAL")
        #expect(harness.request(.getQuota, ["nodes"], from: guest).errorName == "EACCES")
    }
}
