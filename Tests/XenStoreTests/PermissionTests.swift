// Permissions: perm_for_conn, errno_from_parents and do_set_perms of tools/xenstored/core.c.

import Testing
@testable import XenStore

@Suite struct PermissionTests {
    /// dom0 plus guests 1 and 2, each with a writable home as libxl sets up.
    struct Setup {
        var harness = Harness()
        let dom0: XenStore.ConnectionID
        let guest1: XenStore.ConnectionID
        let guest2: XenStore.ConnectionID

        init() throws {
            dom0 = harness.connect(0, privileged: true)
            guest1 = harness.connect(1)
            guest2 = harness.connect(2)
            for domain: XenStore.DomainID in [1, 2] {
                let home = XenStore.domainPath(domain)
                _ = try harness.store.mkdir(home)
                _ = try harness.store.setPermissions(home, XenStorePermissions(owner: domain))
            }
        }
    }

    @Test func guestCannotReadOrWriteAnotherGuestsNodes() throws {
        var setup = try Setup()
        #expect(setup.harness.write("/local/domain/1/secret", "x", from: setup.guest1) == nil)
        #expect(setup.harness.read("/local/domain/1/secret", from: setup.guest2) == "!EACCES")
        #expect(setup.harness.write("/local/domain/1/secret", "y", from: setup.guest2) == "EACCES")
        #expect(setup.harness.write("/local/domain/1/new", "y", from: setup.guest2) == "EACCES")
        #expect(setup.harness.request(.rm, ["/local/domain/1/secret"], from: setup.guest2).errorName == "EACCES")
        #expect(setup.harness.request(.directory, ["/local/domain/1"], from: setup.guest2).errorName == "EACCES")
        #expect(setup.harness.request(.getPerms, ["/local/domain/1"], from: setup.guest2).errorName == "EACCES")
        #expect(setup.harness.read("/local/domain/1/secret", from: setup.guest1) == "x")
    }

    @Test func missingNodeUnderUnreadableParentIsEACCES() throws {
        var setup = try Setup()
        #expect(setup.harness.read("/local/domain/1/nothere", from: setup.guest2) == "!EACCES")
        #expect(setup.harness.read("/local/domain/1/nothere", from: setup.guest1) == "!ENOENT")
        #expect(setup.harness.read("/tool/nothere", from: setup.guest1) == "!EACCES")
        #expect(setup.harness.read("/tool/nothere", from: setup.dom0) == "!ENOENT")
    }

    @Test func privilegedBypassesPermissions() throws {
        var setup = try Setup()
        _ = setup.harness.write("/local/domain/1/x", "v", from: setup.guest1)
        #expect(setup.harness.read("/local/domain/1/x", from: setup.dom0) == "v")
        #expect(setup.harness.write("/local/domain/1/x", "w", from: setup.dom0) == nil)
    }

    @Test func defaultAndSpecificEntries() throws {
        var setup = try Setup()
        _ = setup.harness.write("/local/domain/1/shared", "s", from: setup.guest1)
        // Default r for everyone, but guest 2 explicitly has nothing.
        _ = setup.harness.request(.setPerms, ["/local/domain/1/shared", "r1", "n2"], from: setup.guest1)
        let guest3 = setup.harness.connect(3)
        #expect(setup.harness.read("/local/domain/1/shared", from: guest3) == "s")
        #expect(setup.harness.read("/local/domain/1/shared", from: setup.guest2) == "!EACCES")
        #expect(setup.harness.write("/local/domain/1/shared", "t", from: guest3) == "EACCES")
        // Write-only entry: guest 2 may write but not read.
        _ = setup.harness.request(.setPerms, ["/local/domain/1/shared", "n1", "w2"], from: setup.guest1)
        #expect(setup.harness.write("/local/domain/1/shared", "t", from: setup.guest2) == nil)
        #expect(setup.harness.read("/local/domain/1/shared", from: setup.guest2) == "!EACCES")
        #expect(setup.harness.read("/local/domain/1/shared", from: setup.guest1) == "t")
    }

    @Test func ownerHasFullAccessWhateverTheDefault() throws {
        var setup = try Setup()
        _ = setup.harness.write("/local/domain/1/mine", "m", from: setup.guest1)
        _ = setup.harness.request(.setPerms, ["/local/domain/1/mine", "n1"], from: setup.guest1)
        #expect(setup.harness.read("/local/domain/1/mine", from: setup.guest1) == "m")
    }

    @Test func unprivilegedCreatorOwnsNewNodes() throws {
        var setup = try Setup()
        _ = try setup.harness.store.mkdir("/shared")
        _ = try setup.harness.store.setPermissions(
            "/shared", XenStorePermissions(owner: 0, entries: [XenStorePermission(domain: 1, access: .both)]))
        #expect(setup.harness.write("/shared/a/b", "x", from: setup.guest1) == nil)
        #expect(setup.harness.request(.getPerms, ["/shared/a/b"], from: setup.guest1).strings == ["n1", "b1"])
        #expect(setup.harness.request(.getPerms, ["/shared/a"], from: setup.guest1).strings == ["n1", "b1"])
    }

    @Test func setPermsByNonOwnerIsRefused() throws {
        var setup = try Setup()
        _ = setup.harness.write("/local/domain/1/n", "", from: setup.guest1)
        _ = setup.harness.request(.setPerms, ["/local/domain/1/n", "n1", "b2"], from: setup.guest1)
        // Guest 2 can write the node but does not own it.
        #expect(setup.harness.write("/local/domain/1/n", "x", from: setup.guest2) == nil)
        #expect(setup.harness.request(.setPerms, ["/local/domain/1/n", "b2"], from: setup.guest2).errorName == "EACCES")
        #expect(setup.harness.request(.setPerms, ["/local/domain/1/n", "n2"], from: setup.guest2).errorName == "EACCES")
    }

    @Test func ownerCannotGiveNodeAway() throws {
        var setup = try Setup()
        _ = setup.harness.write("/local/domain/1/n", "", from: setup.guest1)
        #expect(setup.harness.request(.setPerms, ["/local/domain/1/n", "n2"], from: setup.guest1).errorName == "EPERM")
        #expect(setup.harness.request(.setPerms, ["/local/domain/1/n", "n2"], from: setup.dom0).strings == ["OK"])
    }

    @Test func malformedPermissionStrings() throws {
        var setup = try Setup()
        _ = setup.harness.write("/p", "", from: setup.dom0)
        for bad in [["/p"], ["/p", "x1"], ["/p", "r"], ["/p", "r-1"], ["/p", "r70000"], ["/p", "r1x"], ["/p", ""]] {
            #expect(setup.harness.request(.setPerms, bad, from: setup.dom0).errorName == "EINVAL", "\(bad)")
        }
        #expect(setup.harness.request(.setPerms, ["/p", "r32757"], from: setup.dom0).errorName == "ENOENT")
    }

    @Test func setTargetGrantsTheTargetsRights() throws {
        var setup = try Setup()
        _ = try setup.harness.store.introduceDomain(1)
        _ = try setup.harness.store.introduceDomain(2)
        _ = setup.harness.write("/local/domain/1/dm", "v", from: setup.guest1)
        #expect(setup.harness.read("/local/domain/1/dm", from: setup.guest2) == "!EACCES")
        #expect(setup.harness.request(.setTarget, ["2", "1"], from: setup.dom0).strings == ["OK"])
        #expect(setup.harness.read("/local/domain/1/dm", from: setup.guest2) == "v")
        #expect(setup.harness.write("/local/domain/1/dm", "w", from: setup.guest2) == nil)
        #expect(setup.harness.request(.setTarget, ["2", "9"], from: setup.dom0).errorName == "ENOENT")
        #expect(setup.harness.request(.setTarget, ["2"], from: setup.dom0).errorName == "EINVAL")
        #expect(setup.harness.request(.setTarget, ["2", "1"], from: setup.guest1).errorName == "EACCES")
    }

    @Test func domidAnyEntryAppliesToEveryone() throws {
        var setup = try Setup()
        _ = setup.harness.write("/pub", "p", from: setup.dom0)
        _ = setup.harness.request(.setPerms, ["/pub", "n0", "r32757"], from: setup.dom0)
        #expect(setup.harness.read("/pub", from: setup.guest1) == "p")
        #expect(setup.harness.read("/pub", from: setup.guest2) == "p")
    }
}
