// The PV MMU: page types, pinning and validation (Memory/PageTypes.swift,
// PageTypeOperations.swift) driven through mmuext_op and mmu_update (MMUOps.swift).

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

/// Flags as Xen's domain builder writes them.
private let rwLeaf = PTE.present | PTE.rw | PTE.accessed
private let roLeaf = PTE.present | PTE.accessed
private let table = PTE.present | PTE.rw | PTE.user | PTE.accessed | PTE.dirty

@Suite("PV MMU: the initial page tables")
struct InitialPageTableTests {
    @Test("Pinning the initial L4 validated the whole tree: types, counts and the pin")
    func types() throws {
        let test = try TestDomain()
        #expect(test.pageInfo(TestDomain.l4Frame) == PageInfo(type: .l4, typeCount: 2, pinned: true, mappings: 1),
                "one reference for the pin, one for vCPU 0's base pointer")
        #expect(test.pageInfo(TestDomain.l3Frame) == PageInfo(type: .l3, typeCount: 1, pinned: false, mappings: 1))
        #expect(test.pageInfo(TestDomain.l2Frame) == PageInfo(type: .l2, typeCount: 1, pinned: false, mappings: 1))
        #expect(test.pageInfo(TestDomain.l1Frame) == PageInfo(type: .l1, typeCount: 1, pinned: false, mappings: 1))
        #expect(test.pageInfo(TestDomain.xenPagesL1Frame) == PageInfo(type: .l1, typeCount: 1, pinned: false, mappings: 1))
        #expect(test.pageInfo(16) == PageInfo(type: .writable, typeCount: 1, pinned: false, mappings: 1))
        #expect(test.pageInfo(300) == PageInfo())
        #expect(test.vcpu.kernelTable == TestDomain.l4Frame)
        try test.checkPageBookkeeping()
    }

    @Test("Validation forced _PAGE_USER as adjust_guest_l*e does")
    func userForcing() throws {
        let test = try TestDomain()
        #expect(try test.physical(TestDomain.l1Entry(mapping: 16)) == kernelL1(16, rwLeaf))
        #expect(try test.physical(TestDomain.l1Entry(mapping: 2)) == kernelL1(2, roLeaf))
        #expect(try test.physical(TestDomain.l1Entry(mapping: 300)) == 0, "absent entries stay 0")
        #expect(try test.physical(TestDomain.entryAddress(TestDomain.xenPagesL1Frame, 0))
                == kernelL1(TestDomain.ramFrames, rwLeaf), "shared_info")
        #expect(try test.tableEntry(TestDomain.l2Frame.rawValue, 0) == 4 << 12 | table)
    }

    @Test("The hypervisor's L4 slots were written into the pinned L4: its entries, zero elsewhere")
    func hypervisorSlots() throws {
        let test = try TestDomain()
        for slot in 256..<272 {
            let expected = TestDomain.hypervisorSlots.first { $0.slot == slot }?.entry ?? 0
            #expect(try test.tableEntry(TestDomain.l4Frame.rawValue, slot) == expected, "slot \(slot)")
        }
        #expect(try test.tableEntry(TestDomain.l4Frame.rawValue, 511) == 2 << 12 | table)
    }
}

@Suite("PV MMU: pinning and unpinning")
struct PinningTests {
    /// L4 300 → L3 301 → L2 302 → L1 303, which maps 304 RW and 305 RO. Flags as a guest
    /// might write them: no U, no A in the upper levels.
    func buildTree(_ test: TestDomain) throws {
        try test.writeTable(300, [0: entry(301, PTE.present | PTE.rw)])
        try test.writeTable(301, [3: entry(302, PTE.present | PTE.rw)])
        try test.writeTable(302, [7: entry(303, PTE.present | PTE.rw)])
        try test.writeTable(303, [0: entry(304, PTE.present | PTE.rw), 1: entry(305, PTE.present | PTE.user), 2: 0x0000_0abc_0000_0000])
    }

    @Test("Pinning an L4 validates the tree below it; unpinning releases it all again")
    func pinAndUnpinTree() throws {
        let test = try TestDomain()
        try buildTree(test)
        #expect(try test.pin(300, level: 4) == 0)
        #expect(test.pageInfo(300) == PageInfo(type: .l4, typeCount: 1, pinned: true, mappings: 0))
        #expect(test.pageInfo(301) == PageInfo(type: .l3, typeCount: 1, pinned: false, mappings: 0))
        #expect(test.pageInfo(302) == PageInfo(type: .l2, typeCount: 1, pinned: false, mappings: 0))
        #expect(test.pageInfo(303) == PageInfo(type: .l1, typeCount: 1, pinned: false, mappings: 0))
        #expect(test.pageInfo(304) == PageInfo(type: .writable, typeCount: 1, pinned: false, mappings: 1))
        #expect(test.pageInfo(305) == PageInfo(type: .none, typeCount: 0, pinned: false, mappings: 1))
        try test.checkPageBookkeeping()

        #expect(try test.unpin(300) == 0)
        for pfn: UInt64 in 300...305 {
            #expect(test.pageInfo(pfn).typeCount == 0 && test.pageInfo(pfn).mappings == 0 && !test.pageInfo(pfn).pinned, "frame \(pfn)")
        }
        try test.checkPageBookkeeping()
        // A second unpin has nothing to unpin.
        #expect(try test.unpin(300) == TestDomain.error(.EINVAL))
    }

    @Test("Validation adds U at every level, A at L4, and marks kernel L1 entries _PAGE_GUEST_KERNEL")
    func adjustedEntries() throws {
        let test = try TestDomain()
        try buildTree(test)
        #expect(try test.pin(300, level: 4) == 0)
        #expect(try test.tableEntry(300, 0) == entry(301, PTE.present | PTE.rw | PTE.user | PTE.accessed), "adjust_guest_l4e")
        #expect(try test.tableEntry(301, 3) == entry(302, PTE.present | PTE.rw | PTE.user), "adjust_guest_l3e")
        #expect(try test.tableEntry(302, 7) == entry(303, PTE.present | PTE.rw | PTE.user), "adjust_guest_l2e")
        #expect(try test.tableEntry(303, 0) == kernelL1(304, PTE.present | PTE.rw), "adjust_guest_l1e: kernel page")
        #expect(try test.tableEntry(303, 1) == entry(305, PTE.present | PTE.user), "a user page is left alone")
        #expect(try test.tableEntry(303, 2) == 0x0000_0abc_0000_0000, "non-present entries are not touched")
        // Each rewritten entry is recorded for replay in the VM.
        let stores = test.vcpu.pendingWork.pageTableStores.map(\.0)
        #expect(stores.contains(TestDomain.entryAddress(FrameNumber(300), 0)))
        #expect(stores.contains(TestDomain.entryAddress(FrameNumber(303), 0)))
        #expect(!stores.contains(TestDomain.entryAddress(FrameNumber(303), 1)))
    }

    @Test("Pinning each level alone gives that type", arguments: [1, 2, 3, 4])
    func pinEachLevel(level: Int) throws {
        let test = try TestDomain()
        #expect(try test.pin(310, level: level) == 0)
        #expect(test.pageInfo(310) == PageInfo(type: .table(level: level), typeCount: 1, pinned: true, mappings: 0))
        #expect(try test.pin(310, level: level) == TestDomain.error(.EINVAL), "already pinned")
        #expect(test.pageInfo(310).typeCount == 1)
        #expect(try test.unpin(310) == 0)
        #expect(test.pageInfo(310).typeCount == 0)
        try test.checkPageBookkeeping()
    }

    @Test("A frame mapped writable anywhere cannot be pinned as a page table", arguments: [1, 2, 3, 4])
    func writableFrameRefusesToPin(level: Int) throws {
        let test = try TestDomain()
        #expect(try test.pin(20, level: level) == TestDomain.error(.EINVAL))
        #expect(test.pageInfo(20) == PageInfo(type: .writable, typeCount: 1, pinned: false, mappings: 1))
        try test.checkPageBookkeeping()
    }

    @Test("An L1 that maps itself writable cannot be pinned")
    func selfWritable() throws {
        let test = try TestDomain()
        try test.writeTable(310, [0: entry(311, rwLeaf), 5: entry(310, rwLeaf)])
        #expect(try test.pin(310, level: 1) == TestDomain.error(.EINVAL))
        #expect(test.pageInfo(310) == PageInfo())
        #expect(test.pageInfo(311) == PageInfo(type: .writable, typeCount: 0, pinned: false, mappings: 0),
                "the reference taken for entry 0 was released again")
        try test.checkPageBookkeeping()
    }

    @Test("An L2 whose entry points at a writable frame cannot be pinned")
    func upperLevelToWritable() throws {
        let test = try TestDomain()
        try test.writeTable(310, [0: entry(20, table)])
        #expect(try test.pin(310, level: 2) == TestDomain.error(.EINVAL))
        #expect(test.pageInfo(310) == PageInfo())
        try test.checkPageBookkeeping()
    }

    @Test("A frame that is already a table of another level cannot be pinned")
    func typeConflict() throws {
        let test = try TestDomain()
        #expect(try test.pin(TestDomain.l1Frame.rawValue, level: 2) == TestDomain.error(.EINVAL))
        #expect(try test.pin(TestDomain.l3Frame.rawValue, level: 4) == TestDomain.error(.EINVAL))
        #expect(try test.pin(TestDomain.l1Frame.rawValue, level: 1) == 0, "the same level is fine")
        #expect(test.pageInfo(TestDomain.l1Frame) == PageInfo(type: .l1, typeCount: 2, pinned: true, mappings: 1))
        try test.checkPageBookkeeping()
    }

    @Test("Pinning or unpinning a frame outside RAM is -EINVAL")
    func outsideRAM() throws {
        let test = try TestDomain()
        for pfn in [TestDomain.ramFrames, TestDomain.ramFrames + 5, 1 << 40] {
            #expect(try test.pin(pfn, level: 1) == TestDomain.error(.EINVAL))
            #expect(try test.unpin(pfn) == TestDomain.error(.EINVAL))
        }
    }

    @Test("Tables shared by two trees are counted once per reference")
    func sharedSubtree() throws {
        let test = try TestDomain()
        try test.writeTable(300, [511: entry(TestDomain.l3Frame.rawValue, table)])
        #expect(try test.pin(300, level: 4) == 0)
        #expect(test.pageInfo(TestDomain.l3Frame).typeCount == 2)
        try test.checkPageBookkeeping()
        #expect(try test.unpin(300) == 0)
        #expect(test.pageInfo(TestDomain.l3Frame).typeCount == 1)
        #expect(test.pageInfo(TestDomain.l2Frame).typeCount == 1, "the shared subtree stays validated")
        try test.checkPageBookkeeping()
    }

    @Test("The hypervisor's L4 slots are ignored while validating and overwritten")
    func hypervisorSlotsOverwritten() throws {
        let test = try TestDomain()
        // Garbage a guest cannot map: entries pointing outside RAM, with bad flags.
        try test.writeTable(300, [256: 0x7_0000_0000 | PTE.present | PTE.pcd, 260: entry(9999, table), 271: entry(20, table)])
        #expect(try test.pin(300, level: 4) == 0)
        for slot in 256..<272 {
            let expected = TestDomain.hypervisorSlots.first { $0.slot == slot }?.entry ?? 0
            #expect(try test.tableEntry(300, slot) == expected, "slot \(slot)")
        }
        #expect(test.pageInfo(20).typeCount == 1, "slot 271 took no reference")
        try test.checkPageBookkeeping()
    }

    @Test("A failed validation leaves no references behind")
    func rollback() throws {
        let test = try TestDomain()
        try test.writeTable(310, [0: entry(330, rwLeaf), 1: entry(331, roLeaf), 2: entry(332, rwLeaf | PTE.pcd)])
        #expect(try test.pin(310, level: 1) == TestDomain.error(.EINVAL))
        #expect(test.pageInfo(310).typeCount == 0 && test.pageInfo(310).type == .none)
        #expect(test.pageInfo(330).typeCount == 0 && test.pageInfo(330).mappings == 0)
        #expect(test.pageInfo(331).mappings == 0)
        try test.checkPageBookkeeping()
        // A deeper failure: L3 → L2 → L1 where the L1 is bad.
        try test.writeTable(320, [0: entry(321, table)])
        try test.writeTable(321, [0: entry(310, table), 1: entry(322, table)])
        try test.writeTable(322, [0: entry(333, rwLeaf)])
        #expect(try test.pin(320, level: 3) == TestDomain.error(.EINVAL))
        for pfn: UInt64 in [310, 320, 321, 322, 330, 331, 333] {
            #expect(test.pageInfo(pfn).typeCount == 0 && test.pageInfo(pfn).mappings == 0, "frame \(pfn)")
        }
        try test.checkPageBookkeeping()
    }

    @Test("A frame that was writable gets a full TLB flush when it becomes a table; a fresh one does not")
    func flushWhenWritableBecomesTable() throws {
        let test = try TestDomain()
        #expect(try test.setEntry(TestDomain.l1Entry(mapping: 20), 0) == 0)
        #expect(test.pageInfo(20) == PageInfo(type: .writable, typeCount: 0, pinned: false, mappings: 0))
        test.vcpu.pendingWork = PendingMachineWork()
        #expect(try test.pin(310, level: 1) == 0)
        #expect(!test.vcpu.pendingWork.flushAll)
        #expect(try test.pin(20, level: 1) == 0)
        #expect(test.vcpu.pendingWork.flushAll)
        #expect(test.pageInfo(20).type == .l1)
    }

    @Test("A pinned table can be mapped read-only but never writable")
    func pinnedTableMappings() throws {
        let test = try TestDomain()
        #expect(try test.pin(300, level: 1) == 0)
        #expect(try test.setEntry(TestDomain.l1Entry(mapping: 300), entry(300, rwLeaf)) == TestDomain.error(.EINVAL))
        #expect(try test.physical(TestDomain.l1Entry(mapping: 300)) == 0)
        #expect(try test.setEntry(TestDomain.l1Entry(mapping: 300), entry(300, roLeaf)) == 0)
        #expect(test.pageInfo(300) == PageInfo(type: .l1, typeCount: 1, pinned: true, mappings: 1))
        // And the read-only mapping cannot be upgraded.
        #expect(try test.setEntry(TestDomain.l1Entry(mapping: 300), entry(300, rwLeaf)) == TestDomain.error(.EINVAL))
        #expect(try test.physical(TestDomain.l1Entry(mapping: 300)) == kernelL1(300, roLeaf))
        try test.checkPageBookkeeping()
    }
}

@Suite("PV MMU: entry validation")
struct EntryValidationTests {
    @Test("L1 flags a domU may use are accepted", arguments: [
        PTE.global, PTE.nx, PTE.avail, PTE.availHigh & ~PTE.grantTable, PTE.dirty, PTE.user, PTE.guestKernel,
    ])
    func allowedL1Flags(flags: UInt64) throws {
        let test = try TestDomain()
        #expect(try test.setEntry(TestDomain.l1Entry(mapping: 300), entry(300, rwLeaf | flags)) == 0)
        try test.checkPageBookkeeping()
    }

    @Test("L1 entries with PWT, PCD, PAT or _PAGE_GNTTAB (bit 62) are refused", arguments: [
        PTE.pwt, PTE.pcd, PTE.pat, PTE.grantTable,
    ])
    func disallowedL1Flags(flags: UInt64) throws {
        let test = try TestDomain()
        #expect(try test.setEntry(TestDomain.l1Entry(mapping: 300), entry(300, rwLeaf | flags)) == TestDomain.error(.EINVAL))
        #expect(try test.physical(TestDomain.l1Entry(mapping: 300)) == 0)
        #expect(test.pageInfo(300) == PageInfo())
        try test.writeTable(310, [9: entry(300, roLeaf | flags)])
        #expect(try test.pin(310, level: 1) == TestDomain.error(.EINVAL))
    }

    @Test("Upper-level entries with PSE, G, PWT or PCD are refused", arguments: [PTE.pse, PTE.global, PTE.pwt, PTE.pcd])
    func disallowedUpperFlags(flags: UInt64) throws {
        let test = try TestDomain()
        #expect(try test.setEntry(TestDomain.entryAddress(TestDomain.l2Frame, 5), entry(310, table | flags)) == TestDomain.error(.EINVAL))
        #expect(try test.tableEntry(TestDomain.l2Frame.rawValue, 5) == 0)
        #expect(test.pageInfo(310) == PageInfo())
        try test.writeTable(320, [1: entry(310, table | flags)])
        #expect(try test.pin(320, level: 3) == TestDomain.error(.EINVAL))
        #expect(try test.pin(320, level: 4) == TestDomain.error(.EINVAL))
    }

    @Test("Upper-level entries may use NX and the available bits, including bit 62")
    func allowedUpperFlags() throws {
        let test = try TestDomain()
        #expect(try test.setEntry(TestDomain.entryAddress(TestDomain.l2Frame, 5), entry(310, table | PTE.nx | PTE.avail | PTE.availHigh)) == 0)
        #expect(test.pageInfo(310).type == .l1)
        try test.checkPageBookkeeping()
    }

    @Test("An L1 entry may map shared_info and grant frames, nothing else outside RAM")
    func framesOutsideRAM() throws {
        let test = try TestDomain()
        let slot = TestDomain.l1Entry(mapping: 300)
        let sharedInfo = test.layout.sharedInfo.frame.rawValue
        let grants = test.layout.grantFrames.frame.rawValue
        #expect(try test.setEntry(slot, entry(sharedInfo, rwLeaf)) == 0)
        for grant in grants..<(grants + UInt64(test.layout.grantFrameCount)) {
            #expect(try test.setEntry(slot, entry(grant, rwLeaf)) == 0, "grant frame \(grant)")
        }
        let m2p = test.layout.machineToPhys.frame.rawValue
        for frame: UInt64 in [m2p, grants + UInt64(test.layout.grantFrameCount), 100_000, (1 << 40) - 1] {
            #expect(try test.setEntry(slot, entry(frame, roLeaf)) == TestDomain.error(.EINVAL), "frame \(frame)")
        }
        #expect(try test.physical(slot) == kernelL1(grants + 3, rwLeaf))
        try test.checkPageBookkeeping()
    }

    @Test("Upper-level entries must point at RAM")
    func upperOutsideRAM() throws {
        let test = try TestDomain()
        #expect(try test.setEntry(TestDomain.entryAddress(TestDomain.l2Frame, 5), entry(test.layout.sharedInfo.frame.rawValue, table))
                == TestDomain.error(.EINVAL))
        #expect(try test.setEntry(TestDomain.entryAddress(TestDomain.l3Frame, 0), entry(1 << 30, table)) == TestDomain.error(.EINVAL))
    }

    @Test("adjust() follows Xen's adjust_guest_l1e…l4e")
    func adjustRules() {
        let p = PTE.present
        #expect(PageTableEntryRules.adjust(0x1000 | p, level: 1) == 0x1000 | p | PTE.user | PTE.guestKernel)
        #expect(PageTableEntryRules.adjust(0x1000 | p | PTE.user, level: 1) == 0x1000 | p | PTE.user)
        #expect(PageTableEntryRules.adjust(0x1000 | p, level: 2) == 0x1000 | p | PTE.user)
        #expect(PageTableEntryRules.adjust(0x1000 | p, level: 3) == 0x1000 | p | PTE.user)
        #expect(PageTableEntryRules.adjust(0x1000 | p, level: 4) == 0x1000 | p | PTE.user | PTE.accessed)
        for level in 1...4 {
            #expect(PageTableEntryRules.adjust(0x1000 | PTE.rw, level: level) == 0x1000 | PTE.rw, "not present, level \(level)")
        }
    }
}
