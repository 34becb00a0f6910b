// READ, WRITE, MKDIR, RM, DIRECTORY, DIRECTORY_PART, GET_PERMS, SET_PERMS, GET_DOMAIN_PATH.

import Testing
@testable import XenStore

@Suite struct NodeTests {
    @Test func initialStructure() throws {
        let store = XenStore()
        #expect(try store.directory("/") == ["tool"])
        #expect(try store.directory("/tool") == ["xenstored"])
        #expect(store.exists("@releaseDomain") && store.exists("@introduceDomain"))
        #expect(try store.permissions("/").description == "n0")
        #expect(try store.permissions("@releaseDomain").description == "n0 r32757")
    }

    @Test func writeCreatesParentsAndReadReturnsValue() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        #expect(harness.write("/a/b/c", "hello", from: dom0) == nil)
        #expect(harness.read("/a/b/c", from: dom0) == "hello")
        #expect(harness.read("/a/b", from: dom0) == "")
        #expect(harness.request(.directory, ["/a"], from: dom0).strings == ["b"])
        #expect(harness.read("/a/x", from: dom0) == "!ENOENT")
    }

    @Test func replyEchoesHeader() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let message = XenStoreMessage(type: .mkdir, requestID: 77, transactionID: 0, strings: ["/x"])
        let output = harness.store.handle(message, from: dom0)
        let reply = reply(in: output, for: dom0)
        #expect(reply.type == .mkdir && reply.requestID == 77 && reply.transactionID == 0)
        #expect(reply.payload == Array("OK\0".utf8))
    }

    @Test func valuesAreBinary() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let value: [UInt8] = [0, 1, 0, 255]
        harness.send(.write, payload: Array("/bin\0".utf8) + value, from: dom0)
        #expect(harness.request(.read, ["/bin"], from: dom0).payload == value)
        harness.send(.write, payload: Array("/empty\0".utf8), from: dom0)
        #expect(harness.request(.read, ["/empty"], from: dom0).payload.isEmpty)
    }

    @Test func mkdirKeepsExistingValue() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = harness.write("/k", "v", from: dom0)
        #expect(harness.request(.mkdir, ["/k"], from: dom0).strings == ["OK"])
        #expect(harness.read("/k", from: dom0) == "v")
        #expect(harness.request(.mkdir, ["/m/n"], from: dom0).strings == ["OK"])
        #expect(harness.request(.directory, ["/m"], from: dom0).strings == ["n"])
    }

    @Test func rmRemovesSubtree() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = harness.write("/t/a/b", "1", from: dom0)
        _ = harness.write("/t/c", "2", from: dom0)
        #expect(harness.request(.rm, ["/t/a"], from: dom0).strings == ["OK"])
        #expect(harness.read("/t/a/b", from: dom0) == "!ENOENT")
        #expect(harness.request(.directory, ["/t"], from: dom0).strings == ["c"])
        #expect(!harness.store.exists("/t/a"))
    }

    @Test func rmOfMissingNodeNeedsParent() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = harness.write("/p", "", from: dom0)
        #expect(harness.request(.rm, ["/p/missing"], from: dom0).strings == ["OK"])
        #expect(harness.request(.rm, ["/nothere/missing"], from: dom0).errorName == "ENOENT")
    }

    @Test func rmOfRootIsRefused() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        #expect(harness.request(.rm, ["/"], from: dom0).errorName == "EINVAL")
        #expect(harness.store.exists("/tool"))
    }

    @Test func directoryIsSortedAndNulTerminated() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        for name in ["b", "a", "c"] { _ = harness.write("/d/\(name)", "", from: dom0) }
        let reply = harness.request(.directory, ["/d"], from: dom0)
        #expect(reply.payload == Array("a\0b\0c\0".utf8))
        #expect(harness.request(.directory, ["/d/a"], from: dom0).payload.isEmpty)
    }

    @Test func directoryTooLargeForOneReplyIsE2BIGButPartWorks() throws {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        let prefix = String(repeating: "n", count: 40)
        for index in 0..<200 { _ = try harness.store.mkdir("/big/\(prefix)\(1000 + index)") }
        #expect(harness.request(.directory, ["/big"], from: dom0).errorName == "E2BIG")

        var names: [String] = []
        var offset = 0
        var generation: String?
        while true {
            let reply = harness.request(.directoryPart, ["/big", "\(offset)"], from: dom0)
            #expect(reply.type == .directoryPart && reply.payload.count <= 4096)
            var parts = reply.payload.split(separator: 0, omittingEmptySubsequences: false).map {
                String(decoding: $0, as: UTF8.self)
            }
            let gen = parts.removeFirst()
            #expect(generation == nil || generation == gen)
            generation = gen
            // A list that ends carries an extra empty string.
            let ended = reply.payload.suffix(2) == [0, 0]
            let chunk = parts.filter { !$0.isEmpty }
            names += chunk
            offset += chunk.reduce(0) { $0 + $1.utf8.count + 1 }
            if ended { break }
        }
        #expect(names.count == 200)
        #expect(names == names.sorted())
        let past = harness.request(.directoryPart, ["/big", "999999"], from: dom0)
        #expect(past.payload == Array((generation ?? "").utf8) + [0, 0])
    }

    @Test func directoryPartGenerationChangesWithChildren() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = harness.write("/g/a", "", from: dom0)
        let before = harness.request(.directoryPart, ["/g", "0"], from: dom0).strings.first
        _ = harness.write("/g/b", "", from: dom0)
        let after = harness.request(.directoryPart, ["/g", "0"], from: dom0).strings.first
        #expect(before != nil && before != after)
        #expect(harness.request(.directoryPart, ["/g", "0"], from: dom0).payload == Array("\(after ?? "")\0a\0b\0\0".utf8))
    }

    @Test func getAndSetPerms() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = harness.write("/p", "", from: dom0)
        #expect(harness.request(.getPerms, ["/p"], from: dom0).payload == Array("n0\0".utf8))
        #expect(harness.request(.setPerms, ["/p", "b5", "r6", "w7"], from: dom0).strings == ["OK"])
        #expect(harness.request(.getPerms, ["/p"], from: dom0).strings == ["b5", "r6", "w7"])
        #expect(harness.request(.setPerms, ["@introduceDomain", "n0", "r5"], from: dom0).strings == ["OK"])
        #expect(harness.request(.getPerms, ["@introduceDomain"], from: dom0).strings == ["n0", "r5"])
    }

    @Test func newNodesInheritParentPermissions() {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = harness.write("/inherit", "", from: dom0)
        _ = harness.request(.setPerms, ["/inherit", "n3", "r4"], from: dom0)
        _ = harness.write("/inherit/x/y", "", from: dom0)
        #expect(harness.request(.getPerms, ["/inherit/x/y"], from: dom0).strings == ["n3", "r4"])
    }

    @Test func getDomainPath() {
        var harness = Harness()
        let guest = harness.connect(7)
        #expect(harness.request(.getDomainPath, ["5"], from: guest).payload == Array("/local/domain/5\0".utf8))
        #expect(harness.request(.getDomainPath, ["x"], from: guest).errorName == "EINVAL")
        #expect(harness.request(.getDomainPath, ["70000"], from: guest).errorName == "EINVAL")
    }

    @Test func relativePathsUseTheDomainHome() throws {
        var harness = Harness()
        let dom0 = harness.connect(0, privileged: true)
        _ = try harness.store.mkdir("/local/domain/5")
        _ = try harness.store.setPermissions("/local/domain/5", XenStorePermissions(owner: 5))
        let guest = harness.connect(5)
        #expect(harness.write("data/x", "1", from: guest) == nil)
        #expect(harness.read("/local/domain/5/data/x", from: dom0) == "1")
        #expect(harness.read("data/x", from: guest) == "1")
        #expect(harness.request(.getPerms, ["data/x"], from: guest).strings == ["n5"])
    }
}
