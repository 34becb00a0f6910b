// Transactions: tools/xenstored/transaction.c semantics.

import Testing
@testable import XenStore

@Suite struct TransactionTests {
    @Test func startReturnsDecimalIDs() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let reply = harness.request(.transactionStart, [""], from: dom0)
        #expect(reply.type == .transactionStart && reply.payload == Array("1\0".utf8))
        #expect(harness.startTransaction(from: dom0) == 2)
        // Ids are per connection.
        let other = harness.connect(0, privileged: true)
        #expect(harness.startTransaction(from: other) == 1)
    }

    @Test func commitAppliesChanges() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let tx = harness.startTransaction(from: dom0)
        #expect(harness.write("/t/a", "1", from: dom0, transaction: tx) == nil)
        #expect(harness.read("/t/a", from: dom0, transaction: tx) == "1")
        #expect(harness.read("/t/a", from: dom0) == "!ENOENT")
        #expect(harness.request(.directory, ["/t"], from: dom0, transaction: tx).strings == ["a"])
        #expect(harness.request(.transactionEnd, ["T"], from: dom0, transaction: tx).strings == ["OK"])
        #expect(harness.read("/t/a", from: dom0) == "1")
        #expect(harness.request(.transactionEnd, ["T"], from: dom0, transaction: tx).errorName == "ENOENT")
    }

    @Test func abortDiscardsChanges() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = harness.write("/keep", "old", from: dom0)
        let tx = harness.startTransaction(from: dom0)
        _ = harness.write("/keep", "new", from: dom0, transaction: tx)
        _ = harness.request(.rm, ["/tool"], from: dom0, transaction: tx)
        #expect(harness.read("/tool/xenstored", from: dom0, transaction: tx) == "!ENOENT")
        #expect(harness.request(.transactionEnd, ["F"], from: dom0, transaction: tx).strings == ["OK"])
        #expect(harness.read("/keep", from: dom0) == "old")
        #expect(harness.store.exists("/tool/xenstored"))
    }

    @Test func conflictingWriteGivesEAGAIN() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let other = harness.connect(0, privileged: true)
        _ = harness.write("/c", "0", from: dom0)
        let tx = harness.startTransaction(from: dom0)
        #expect(harness.read("/c", from: dom0, transaction: tx) == "0")
        _ = harness.write("/c", "other", from: other)
        _ = harness.write("/d", "mine", from: dom0, transaction: tx)
        #expect(harness.request(.transactionEnd, ["T"], from: dom0, transaction: tx).errorName == "EAGAIN")
        #expect(harness.read("/d", from: dom0) == "!ENOENT")
        #expect(harness.read("/c", from: dom0) == "other")
        // The transaction is gone after a failed commit.
        #expect(harness.read("/c", from: dom0, transaction: tx) == "!ENOENT")
    }

    @Test func conflictOnCreatedPathAndOnParentChildren() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let other = harness.connect(0, privileged: true)
        _ = harness.write("/dir", "", from: dom0)
        let tx = harness.startTransaction(from: dom0)
        _ = harness.write("/dir/mine", "1", from: dom0, transaction: tx)
        _ = harness.write("/dir/theirs", "2", from: other)  // changes /dir's children
        #expect(harness.request(.transactionEnd, ["T"], from: dom0, transaction: tx).errorName == "EAGAIN")

        let tx2 = harness.startTransaction(from: dom0)
        #expect(harness.read("/absent", from: dom0, transaction: tx2) == "!ENOENT")
        _ = harness.write("/absent", "now", from: other)
        #expect(harness.request(.transactionEnd, ["T"], from: dom0, transaction: tx2).errorName == "EAGAIN")
    }

    @Test func unrelatedChangesDoNotConflict() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let other = harness.connect(0, privileged: true)
        _ = harness.write("/x/a", "1", from: dom0)
        _ = harness.write("/y/b", "1", from: dom0)
        let tx = harness.startTransaction(from: dom0)
        _ = harness.write("/x/a", "2", from: dom0, transaction: tx)
        _ = harness.write("/y/b", "3", from: other)
        #expect(harness.request(.transactionEnd, ["T"], from: dom0, transaction: tx).strings == ["OK"])
        #expect(harness.read("/x/a", from: dom0) == "2")
    }

    @Test func badTransactionIDs() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        #expect(harness.read("/tool", from: dom0, transaction: 42) == "!ENOENT")
        #expect(harness.write("/z", "", from: dom0, transaction: 42) == "ENOENT")
        #expect(harness.request(.transactionEnd, ["T"], from: dom0).errorName == "ENOENT")
        let tx = harness.startTransaction(from: dom0)
        #expect(harness.request(.transactionEnd, ["X"], from: dom0, transaction: tx).errorName == "EINVAL")
        #expect(harness.request(.transactionEnd, ["TT"], from: dom0, transaction: tx).errorName == "EINVAL")
        #expect(harness.request(.transactionStart, [""], from: dom0, transaction: tx).errorName == "EBUSY")
        // Another connection cannot use this connection's transaction.
        let other = harness.connect(0, privileged: true)
        #expect(harness.read("/tool", from: other, transaction: tx) == "!ENOENT")
        // Error replies echo the tx id.
        let error = harness.request(.transactionEnd, ["X"], from: dom0, transaction: tx)
        #expect(error.transactionID == tx)
        #expect(harness.request(.transactionEnd, ["F"], from: dom0, transaction: tx).strings == ["OK"])
    }

    @Test func watchesFireOnCommitOnly() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let watcher = harness.connect(0, privileged: true)
        harness.send(.watch, ["/w", "tok"], from: watcher)
        let tx = harness.startTransaction(from: dom0)
        let during = harness.send(.write, ["/w/a", "1"], from: dom0, transaction: tx)
        #expect(events(in: during, for: watcher).isEmpty)
        let commit = harness.send(.transactionEnd, ["T"], from: dom0, transaction: tx)
        #expect(events(in: commit, for: watcher) == [["/w/a", "tok"]])

        let aborted = harness.startTransaction(from: dom0)
        harness.send(.write, ["/w/b", "1"], from: dom0, transaction: aborted)
        #expect(events(in: harness.send(.transactionEnd, ["F"], from: dom0, transaction: aborted), for: watcher).isEmpty)
    }

    @Test func commitEventsAreMergedPerPath() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let watcher = harness.connect(0, privileged: true)
        _ = harness.write("/m/a", "0", from: dom0)
        harness.send(.watch, ["/m", "t"], from: watcher)
        let tx = harness.startTransaction(from: dom0)
        harness.send(.write, ["/m/a", "1"], from: dom0, transaction: tx)
        harness.send(.write, ["/m/a", "2"], from: dom0, transaction: tx)
        let commit = harness.send(.transactionEnd, ["T"], from: dom0, transaction: tx)
        #expect(events(in: commit, for: watcher) == [["/m/a", "t"]])

        // A node created and removed inside one transaction never existed for
        // anyone: xenstored finds neither old nor new permissions and sends nothing.
        let tx2 = harness.startTransaction(from: dom0)
        harness.send(.write, ["/m/tmp", "1"], from: dom0, transaction: tx2)
        harness.send(.rm, ["/m/tmp"], from: dom0, transaction: tx2)
        let commit2 = harness.send(.transactionEnd, ["T"], from: dom0, transaction: tx2)
        #expect(events(in: commit2, for: watcher).isEmpty)
    }

    @Test func watchAndUnwatchIgnoreTransactionID() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let reply = harness.request(.watch, ["/i", "t"], from: dom0, transaction: 999)
        #expect(reply.strings == ["OK"])
        #expect(harness.request(.unwatch, ["/i", "t"], from: dom0, transaction: 999).strings == ["OK"])
    }

    @Test func resetWatchesDropsTransactions() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let tx = harness.startTransaction(from: dom0)
        #expect(harness.request(.resetWatches, [""], from: dom0).strings == ["OK"])
        #expect(harness.read("/tool", from: dom0, transaction: tx) == "!ENOENT")
        // Reset from inside the transaction drops it too.
        let tx2 = harness.startTransaction(from: dom0)
        #expect(harness.request(.resetWatches, [""], from: dom0, transaction: tx2).strings == ["OK"])
        #expect(harness.request(.transactionEnd, ["T"], from: dom0, transaction: tx2).errorName == "ENOENT")
    }

    @Test func removeInsideTransactionThenCommit() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = harness.write("/r/a/b", "1", from: dom0)
        let tx = harness.startTransaction(from: dom0)
        #expect(harness.request(.rm, ["/r/a"], from: dom0, transaction: tx).strings == ["OK"])
        #expect(harness.request(.directory, ["/r"], from: dom0, transaction: tx).payload.isEmpty)
        _ = harness.write("/r/a/c", "new", from: dom0, transaction: tx)
        #expect(harness.request(.transactionEnd, ["T"], from: dom0, transaction: tx).strings == ["OK"])
        #expect(harness.read("/r/a/b", from: dom0) == "!ENOENT")
        #expect(harness.read("/r/a/c", from: dom0) == "new")
        #expect(harness.request(.directory, ["/r/a"], from: dom0).strings == ["c"])
    }
}

@Suite struct GuestTransactionTests {
    @Test func permissionsApplyInsideTransactions() throws {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = try harness.store.mkdir("/local/domain/1")
        _ = try harness.store.setPermissions("/local/domain/1", XenStorePermissions(owner: 1))
        _ = try harness.store.write("/private", string: "p")
        let guest = harness.connect(1)
        let tx = harness.startTransaction(from: guest)
        #expect(harness.read("/private", from: guest, transaction: tx) == "!EACCES")
        #expect(harness.write("/private", "x", from: guest, transaction: tx) == "EACCES")
        #expect(harness.write("state", "4", from: guest, transaction: tx) == nil)
        #expect(harness.read("/local/domain/1/state", from: dom0) == "!ENOENT")
        #expect(harness.request(.transactionEnd, ["T"], from: guest, transaction: tx).strings == ["OK"])
        #expect(harness.read("/local/domain/1/state", from: dom0) == "4")
        #expect(harness.request(.getPerms, ["/local/domain/1/state"], from: dom0).strings == ["n1"])
    }

    @Test func disconnectDiscardsTransactions() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let tx = harness.startTransaction(from: dom0)
        _ = harness.write("/gone", "1", from: dom0, transaction: tx)
        harness.store.disconnect(dom0)
        let again = harness.connect(0, privileged: true)
        #expect(harness.read("/gone", from: again) == "!ENOENT")
        #expect(harness.read("/gone", from: again, transaction: tx) == "!ENOENT")
    }

    @Test func perDomainQuotasFromTheAPI() throws {
        var harness = Harness()
        _ = try harness.store.mkdir("/local/domain/2")
        _ = try harness.store.setPermissions("/local/domain/2", XenStorePermissions(owner: 2))
        harness.store.setQuotas(XenStoreQuotas(transactions: 1), for: 2)
        let guest = harness.connect(2)
        _ = harness.startTransaction(from: guest)
        #expect(harness.request(.transactionStart, [""], from: guest).errorName == "ENOSPC")
        harness.store.setQuotas(nil, for: 2)
        #expect(harness.request(.transactionStart, [""], from: guest).type == .transactionStart)
    }
}
