// The toolstack's in-process API.

import Testing
@testable import XenStore

@Suite struct ToolstackTests {
    @Test func readWriteDirectoryRm() throws {
        var store = XenStore()
        let output = try store.write("/vm/uuid/name", string: "guest")
        #expect(output.messages.isEmpty)
        #expect(try store.readString("/vm/uuid/name") == "guest")
        #expect(try store.read("/vm/uuid/name") == Array("guest".utf8))
        #expect(try store.directory("/vm") == ["uuid"])
        _ = try store.mkdir("/vm/uuid/empty")
        #expect(try store.directory("/vm/uuid") == ["empty", "name"])
        _ = try store.rm("/vm")
        #expect(throws: XenStoreError.ENOENT) { try store.read("/vm/uuid/name") }
        #expect(!store.exists("/vm"))
    }

    @Test func errorsAreTyped() throws {
        var store = XenStore()
        #expect(throws: XenStoreError.EINVAL) { try store.read("/bad//path") }
        #expect(throws: XenStoreError.EINVAL) { try store.write("/x/", string: "") }
        #expect(throws: XenStoreError.EINVAL) { try store.rm("/") }
        #expect(throws: XenStoreError.ENOENT) { try store.rm("/no/such") }
        #expect(throws: XenStoreError.E2BIG) { try store.write("/big", [UInt8](repeating: 0, count: 5000)) }
        #expect(throws: XenStoreError.ENOENT) { try store.directory("/none") }
    }

    @Test func relativePathsAreDom0s() throws {
        var store = XenStore()
        _ = try store.write("name", string: "Domain-0")
        #expect(try store.readString("/local/domain/0/name") == "Domain-0")
    }

    @Test func writesNotifyGuestWatches() throws {
        var store = XenStore()
        _ = try store.mkdir("/local/domain/4/device/vif/0")
        _ = try store.setPermissions("/local/domain/4", XenStorePermissions(owner: 4))
        _ = try store.setPermissions("/local/domain/4/device/vif/0", XenStorePermissions(owner: 4))
        let guest = store.connect(domain: 4, privileged: false)
        _ = store.handle(XenStoreMessage(type: .watch, strings: ["device", "dev"]), from: guest)
        let output = try store.write("/local/domain/4/device/vif/0/state", string: "1")
        #expect(events(in: output, for: guest) == [["device/vif/0/state", "dev"]])
        let removed = try store.rm("/local/domain/4/device")
        #expect(events(in: removed, for: guest).contains(["device", "dev"]))
    }

    @Test func permissionsRoundTrip() throws {
        var store = XenStore()
        _ = try store.mkdir("/p")
        let permissions = XenStorePermissions(
            owner: 3, defaultAccess: .read, entries: [XenStorePermission(domain: 4, access: .both)])
        _ = try store.setPermissions("/p", permissions)
        #expect(try store.permissions("/p") == permissions)
        #expect(permissions.description == "r3 b4")
        #expect(XenStorePermissions([]) == nil)
        #expect(XenStorePermissions(permissions.list) == permissions)
        _ = try store.setPermissions("@releaseDomain", XenStorePermissions(owner: 0))
        #expect(try store.permissions("@releaseDomain").description == "n0")
    }

    @Test func storeIsAValue() throws {
        var original = XenStore()
        _ = try original.write("/a", string: "1")
        var copy = original
        _ = try copy.write("/a", string: "2")
        #expect(try original.readString("/a") == "1")
        #expect(try copy.readString("/a") == "2")
    }
}
