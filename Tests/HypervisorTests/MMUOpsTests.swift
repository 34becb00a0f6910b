// mmu_update, update_va_mapping and mmuext_op (Hypercalls/MMUOps.swift,
// Memory/PageTableUpdates.swift).

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

private let rwLeaf = PTE.present | PTE.rw | PTE.accessed
private let roLeaf = PTE.present | PTE.accessed
private let table = PTE.present | PTE.rw | PTE.user | PTE.accessed | PTE.dirty

@Suite("mmu_update")
struct MMUUpdateTests {
    @Test("NORMAL_PT_UPDATE validates, adjusts, stores the entry and records the store for replay")
    func normalUpdate() throws {
        let test = try TestDomain()
        let slot = TestDomain.l1Entry(mapping: 300)
        let (result, done) = try test.mmuUpdate([(slot.rawValue, entry(300, rwLeaf))])
        #expect(result == 0 && done == 1)
        #expect(try test.physical(slot) == kernelL1(300, rwLeaf))
        #expect(test.pageInfo(300) == PageInfo(type: .writable, typeCount: 1, pinned: false, mappings: 1))
        #expect(test.vcpu.pendingWork.pageTableStores.map(\.0) == [slot])
        #expect(test.vcpu.pendingWork.pageTableStores.map(\.1) == [kernelL1(300, rwLeaf)])
        #expect(!test.vcpu.pendingWork.flushAll && test.vcpu.pendingWork.invalidations.isEmpty)
        // The new mapping works for the hypervisor's own accesses.
        try test.write(UInt64(0x5151), at: TestDomain.va(300))
        #expect(try test.memory.read(UInt64.self, at: GuestPhysicalAddress(300 * 4096)) == 0x5151)
        try test.checkPageBookkeeping()
    }

    @Test("Replacing and clearing entries moves the references along")
    func replaceAndClear() throws {
        let test = try TestDomain()
        let slot = TestDomain.l1Entry(mapping: 300)
        #expect(try test.setEntry(slot, entry(300, rwLeaf)) == 0)
        #expect(try test.setEntry(slot, entry(301, roLeaf)) == 0)
        #expect(test.pageInfo(300) == PageInfo(type: .writable, typeCount: 0, pinned: false, mappings: 0))
        #expect(test.pageInfo(301) == PageInfo(type: .none, typeCount: 0, pinned: false, mappings: 1))
        #expect(try test.setEntry(slot, 0) == 0)
        #expect(test.pageInfo(301).mappings == 0)
        #expect(try test.physical(slot) == 0)
        try test.checkPageBookkeeping()
    }

    @Test("Rewriting the same value changes nothing and records no store")
    func sameValue() throws {
        let test = try TestDomain()
        let slot = TestDomain.l1Entry(mapping: 20)
        #expect(try test.setEntry(slot, kernelL1(20, rwLeaf)) == 0)
        #expect(test.vcpu.pendingWork.pageTableStores.isEmpty)
        #expect(test.pageInfo(20).typeCount == 1)
    }

    @Test("PT_UPDATE_PRESERVE_AD keeps the accessed and dirty bits the hardware set")
    func preserveAD() throws {
        let test = try TestDomain()
        let slot = TestDomain.l1Entry(mapping: 20)
        try test.memory.write(kernelL1(20, rwLeaf | PTE.dirty), at: slot)   // the CPU set D
        let (result, _) = try test.mmuUpdate([(slot.rawValue | MMUUpdateCommand.ptUpdatePreserveAD, entry(20, PTE.present))])
        #expect(result == 0)
        #expect(try test.physical(slot) == kernelL1(20, PTE.present | PTE.accessed | PTE.dirty))
        #expect(test.pageInfo(20).typeCount == 0, "now read-only")
        // A plain update does not preserve them.
        #expect(try test.setEntry(slot, entry(20, PTE.present)) == 0)
        #expect(try test.physical(slot) == kernelL1(20, PTE.present))
        try test.checkPageBookkeeping()
    }

    @Test("MMU_MACHPHYS_UPDATE writes the M2P entry of the frame ptr names")
    func machphysUpdate() throws {
        let test = try TestDomain()
        let (result, done) = try test.mmuUpdate([(7 << 12 | MMUUpdateCommand.machphysUpdate, 0x1234)])
        #expect(result == 0 && done == 1)
        #expect(try test.memory.read(UInt64.self, at: GuestPhysicalAddress(test.layout.machineToPhys.rawValue + 7 * 8)) == 0x1234)
        #expect(try test.mmuUpdate([(TestDomain.ramFrames << 12 | MMUUpdateCommand.machphysUpdate, 1)]).result == TestDomain.error(.EINVAL))
    }

    @Test("An update on a frame that is no page table is a plain write of the word")
    func writablePage() throws {
        let test = try TestDomain()
        let address = GuestPhysicalAddress(20 * 4096 + 0x18)
        #expect(try test.setEntry(address, 0xdead_beef) == 0)
        #expect(try test.physical(address) == 0xdead_beef)
        #expect(test.pageInfo(20).typeCount == 1, "the temporary writable reference was dropped")
        // A descriptor page cannot be written that way.
        test.domain.state.withLock { $0.pages.update(FrameNumber(330)) { $0.type = .segmentDescriptor; $0.typeCount = 1 } }
        #expect(try test.setEntry(GuestPhysicalAddress(330 * 4096), 1) == TestDomain.error(.EINVAL))
    }

    @Test("Upper-level updates validate the new table and release the old one")
    func upperLevel() throws {
        let test = try TestDomain()
        try test.writeTable(310, [4: entry(311, rwLeaf)])
        let slot = TestDomain.entryAddress(TestDomain.l2Frame, 2)
        #expect(try test.setEntry(slot, entry(310, PTE.present | PTE.rw)) == 0)
        #expect(try test.physical(slot) == entry(310, PTE.present | PTE.rw | PTE.user))
        #expect(test.pageInfo(310) == PageInfo(type: .l1, typeCount: 1, pinned: false, mappings: 0))
        #expect(test.pageInfo(311).typeCount == 1)
        // The new L1 is reachable: base + 4 MiB + 4 pages.
        try test.write(UInt32(77), at: TestDomain.virtualBase + (4 << 20) + 4 * 4096)
        #expect(try test.memory.read(UInt32.self, at: GuestPhysicalAddress(311 * 4096)) == 77)
        #expect(try test.setEntry(slot, 0) == 0)
        #expect(test.pageInfo(310).typeCount == 0 && test.pageInfo(311).typeCount == 0)
        try test.checkPageBookkeeping()
    }

    @Test("The hypervisor's L4 slots cannot be changed; other L4 slots can")
    func hypervisorSlots() throws {
        let test = try TestDomain()
        for slot in [256, 257, 263, 271] {
            let address = TestDomain.entryAddress(TestDomain.l4Frame, slot)
            let before = try test.physical(address)
            #expect(try test.setEntry(address, 0) == TestDomain.error(.EINVAL), "slot \(slot)")
            #expect(try test.setEntry(address, entry(310, table)) == TestDomain.error(.EINVAL), "slot \(slot)")
            #expect(try test.physical(address) == before)
        }
        let userSlot = TestDomain.entryAddress(TestDomain.l4Frame, 255)
        #expect(try test.setEntry(userSlot, entry(310, PTE.present | PTE.rw)) == 0)
        #expect(try test.physical(userSlot) == entry(310, PTE.present | PTE.rw | PTE.user | PTE.accessed))
        #expect(test.pageInfo(310).type == .l3)
        try test.checkPageBookkeeping()
    }

    @Test("A batch stops at the first failure; done counts the updates applied")
    func batchFailure() throws {
        let test = try TestDomain()
        let (result, done) = try test.mmuUpdate([
            (TestDomain.l1Entry(mapping: 300).rawValue, entry(300, rwLeaf)),
            (TestDomain.l1Entry(mapping: 301).rawValue, entry(TestDomain.l1Frame.rawValue, rwLeaf)),   // a table, writable
            (TestDomain.l1Entry(mapping: 302).rawValue, entry(302, rwLeaf)),
        ])
        #expect(result == TestDomain.error(.EINVAL))
        #expect(done == 1)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 300)) != 0)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 301)) == 0)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 302)) == 0)
        try test.checkPageBookkeeping()
    }

    @Test("Bad requests: entries outside RAM, unknown commands, foreign domains")
    func badRequests() throws {
        let test = try TestDomain()
        #expect(try test.setEntry(test.layout.sharedInfo, 0) == TestDomain.error(.EINVAL), "ptr outside RAM")
        #expect(try test.setEntry(GuestPhysicalAddress(1 << 45), 0) == TestDomain.error(.EINVAL))
        #expect(try test.mmuUpdate([(TestDomain.l1Entry(mapping: 300).rawValue | MMUUpdateCommand.ptUpdateNoTranslate, 0)]).result
                == TestDomain.error(.EINVAL))
        #expect(try test.mmuUpdate([(TestDomain.l1Entry(mapping: 300).rawValue, 0)], domid: 0).result == TestDomain.error(.ESRCH))
        #expect(try test.mmuUpdate([(TestDomain.l1Entry(mapping: 300).rawValue, 0)], domid: 1).result == 0, "its own id")
    }

    @Test("An unreadable request list is -EFAULT with done = 0; an unwritable done pointer is -EFAULT")
    func badPointers() throws {
        let test = try TestDomain()
        try test.write(UInt32(0xdead), at: TestDomain.mmuDone)
        test.call(.mmuUpdate, TestDomain.unmapped - 8, 1, TestDomain.mmuDone, UInt64(DomainID.`self`))
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(try test.read(UInt32.self, at: TestDomain.mmuDone) == 0)
        try test.write(MMUUpdate(ptr: TestDomain.l1Entry(mapping: 300).rawValue, val: entry(300, roLeaf)).encode(), at: TestDomain.mmuList)
        test.call(.mmuUpdate, TestDomain.mmuList, 1, TestDomain.unmapped, UInt64(DomainID.`self`))
        #expect(test.result == TestDomain.error(.EFAULT))
        test.call(.mmuUpdate, TestDomain.mmuList, 1, 0, UInt64(DomainID.`self`))
        #expect(test.result == 0, "a null done pointer is allowed")
        try test.checkPageBookkeeping()
    }

    @Test("A long random sequence of valid and invalid updates keeps every count exact")
    func randomSequence() throws {
        let test = try TestDomain()
        // A second L1 to play with, hooked in at base + 4 MiB.
        #expect(try test.setEntry(TestDomain.entryAddress(TestDomain.l2Frame, 2), entry(310, table)) == 0)
        var random = SplitMix(seed: 0x5eed)
        let candidates: [UInt64] = [300, 301, 302, 303, 304, 20, 21, 310, TestDomain.l1Frame.rawValue, TestDomain.l4Frame.rawValue,
                                    TestDomain.ramFrames, TestDomain.ramFrames + 1, 9999]
        let flagChoices: [UInt64] = [0, rwLeaf, roLeaf, rwLeaf | PTE.user, rwLeaf | PTE.pcd, roLeaf | PTE.nx, rwLeaf | PTE.grantTable]
        var accepted = 0
        for _ in 0..<600 {
            let l1: UInt64 = random.next() % 2 == 0 ? 310 : TestDomain.l1Frame.rawValue
            let index = 300 + Int(random.next() % 16)
            let target = candidates[Int(random.next() % UInt64(candidates.count))]
            let flags = flagChoices[Int(random.next() % UInt64(flagChoices.count))]
            let command = random.next() % 3 == 0 ? MMUUpdateCommand.ptUpdatePreserveAD : MMUUpdateCommand.normalPTUpdate
            let ptr = TestDomain.entryAddress(FrameNumber(l1), index).rawValue | command
            if try test.mmuUpdate([(ptr, flags == 0 ? 0 : entry(target, flags))]).result == 0 { accepted += 1 }
        }
        #expect(accepted > 100)
        try test.checkPageBookkeeping()
        // Clearing everything brings every counted frame back to zero.
        for l1: UInt64 in [310, TestDomain.l1Frame.rawValue] {
            for index in 300..<316 { #expect(try test.setEntry(TestDomain.entryAddress(FrameNumber(l1), index), 0) == 0) }
        }
        for pfn: UInt64 in [300, 301, 302, 303, 304] {
            #expect(test.pageInfo(pfn).typeCount == 0 && test.pageInfo(pfn).mappings == 0, "frame \(pfn)")
        }
        try test.checkPageBookkeeping()
    }
}

@Suite("update_va_mapping")
struct UpdateVAMappingTests {
    @Test("UVMF_INVLPG | UVMF_LOCAL: the entry is stored and one invalidation recorded")
    func invlpgLocal() throws {
        let test = try TestDomain()
        test.call(.updateVAMapping, TestDomain.va(300), entry(300, rwLeaf), UVMF.invlpg | UVMF.local)
        #expect(test.result == 0)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 300)) == kernelL1(300, rwLeaf))
        #expect(test.vcpu.pendingWork.invalidations == [TestDomain.va(300)])
        #expect(!test.vcpu.pendingWork.flushAll)
        #expect(test.vcpu.pendingWork.pageTableStores.map(\.0) == [TestDomain.l1Entry(mapping: 300)])
        try test.write(UInt8(1), at: TestDomain.va(300))
    }

    @Test("UVMF_TLB_FLUSH asks for a full flush; UVMF_NONE for none")
    func flushTypes() throws {
        let test = try TestDomain()
        test.call(.updateVAMapping, TestDomain.va(300), entry(300, roLeaf), UVMF.none)
        #expect(test.result == 0)
        #expect(test.vcpu.pendingWork.invalidations.isEmpty && !test.vcpu.pendingWork.flushAll)
        #expect(test.vcpu.pendingWork.pageTableStores.count == 1)
        test.call(.updateVAMapping, TestDomain.va(300), entry(301, roLeaf), UVMF.tlbFlush)
        #expect(test.vcpu.pendingWork.flushAll)
        #expect(test.vcpu.pendingWork.invalidations.isEmpty)
    }

    @Test("UVMF_ALL flushes this vCPU and flags the others for a remote flush")
    func all() throws {
        let test = try TestDomain(vcpus: 3)
        test.call(.updateVAMapping, TestDomain.va(300), entry(300, roLeaf), UVMF.invlpg | UVMF.all)
        #expect(test.result == 0)
        #expect(test.vcpu.pendingWork.invalidations == [TestDomain.va(300)])
        #expect(!test.remoteFlushed(0))
        for index in 1..<3 {
            #expect(test.remoteFlushed(index))
            #expect(test.wakers[index].wakes == 1)
        }
    }

    @Test("A vCPU mask pointer (UVMF_MULTI) flushes exactly the vCPUs it names")
    func multi() throws {
        let test = try TestDomain(vcpus: 3)
        let mask = TestDomain.buffer + 0x100
        try test.write(UInt64(0b100), at: mask)
        test.call(.updateVAMapping, TestDomain.va(300), entry(300, roLeaf), mask | UVMF.tlbFlush)
        #expect(test.result == 0)
        #expect(!test.vcpu.pendingWork.flushAll)
        #expect(!test.remoteFlushed(1))
        #expect(test.remoteFlushed(2))
        try test.write(UInt64(0b001), at: mask)
        test.call(.updateVAMapping, TestDomain.va(300), entry(301, roLeaf), mask | UVMF.tlbFlush)
        #expect(test.vcpu.pendingWork.flushAll)
    }

    @Test("An unreadable vCPU mask is -EFAULT (the entry is already updated, as on Xen)")
    func badMask() throws {
        let test = try TestDomain()
        test.call(.updateVAMapping, TestDomain.va(300), entry(300, roLeaf), TestDomain.unmapped | UVMF.invlpg)
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(try test.physical(TestDomain.l1Entry(mapping: 300)) == kernelL1(300, roLeaf))
    }

    @Test("Addresses without an L1, non-canonical ones and the hypervisor hole are -EINVAL", arguments: [
        TestDomain.virtualBase + (8 << 20),     // L2 entry not present
        0x0000_1000_0000_0000,                  // L4 entry not present
        0x0000_8000_0000_0000,                  // non-canonical
        0xffff_8000_0000_1000,                  // the hypervisor hole
    ])
    func badAddress(address: UInt64) throws {
        let test = try TestDomain()
        test.call(.updateVAMapping, address, entry(300, roLeaf), UVMF.invlpg)
        #expect(test.result == TestDomain.error(.EINVAL))
        #expect(test.vcpu.pendingWork.isEmpty)
    }

    @Test("An invalid entry is -EINVAL and nothing is flushed")
    func badEntry() throws {
        let test = try TestDomain()
        test.call(.updateVAMapping, TestDomain.va(300), entry(TestDomain.l2Frame.rawValue, rwLeaf), UVMF.tlbFlush)
        #expect(test.result == TestDomain.error(.EINVAL))
        test.call(.updateVAMapping, TestDomain.va(300), entry(300, rwLeaf | PTE.pcd), UVMF.tlbFlush)
        #expect(test.result == TestDomain.error(.EINVAL))
        #expect(test.vcpu.pendingWork.isEmpty)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 300)) == 0)
    }

    @Test("Linux's boot sequence: remap a table read-only, then pin it")
    func remapReadOnlyThenPin() throws {
        let test = try TestDomain()
        test.call(.updateVAMapping, TestDomain.va(40), entry(40, roLeaf), UVMF.invlpg)
        #expect(test.result == 0)
        #expect(test.pageInfo(40).typeCount == 0)
        #expect(try test.pin(40, level: 1) == 0)
        #expect(test.vcpu.pendingWork.flushAll, "the frame was writable until just now")
        try test.checkPageBookkeeping()
    }
}

@Suite("mmuext_op")
struct MMUExtOpTests {
    @Test("NEW_BASEPTR switches vCPU 0's kernel L4, moving the base-pointer reference")
    func newBaseptr() throws {
        let test = try TestDomain()
        // A second L4 that maps the kernel through the same L3.
        try test.writeTable(300, [511: entry(TestDomain.l3Frame.rawValue, table)])
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.newBaseptr, arg1: 300)]).result == 0)
        #expect(test.vcpu.kernelTable == FrameNumber(300))
        #expect(test.vcpu.activeTable == FrameNumber(300))
        #expect(test.pageInfo(300) == PageInfo(type: .l4, typeCount: 1, pinned: false, mappings: 0))
        #expect(test.pageInfo(TestDomain.l4Frame).typeCount == 1, "only the pin is left")
        #expect(try test.tableEntry(300, 256) == TestDomain.hypervisorSlots[0].entry)
        try test.checkPageBookkeeping()
        // And back: the unpinned L4 loses its last reference and is devalidated.
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.newBaseptr, arg1: TestDomain.l4Frame.rawValue)]).result == 0)
        #expect(test.pageInfo(300).typeCount == 0)
        #expect(test.pageInfo(TestDomain.l3Frame).typeCount == 1)
        try test.checkPageBookkeeping()
    }

    @Test("NEW_BASEPTR to the current L4 keeps the counts")
    func newBaseptrSame() throws {
        let test = try TestDomain()
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.newBaseptr, arg1: TestDomain.l4Frame.rawValue)]).result == 0)
        #expect(test.pageInfo(TestDomain.l4Frame).typeCount == 2)
    }

    @Test("NEW_BASEPTR refuses writable frames, other table types and frames outside RAM")
    func newBaseptrInvalid() throws {
        let test = try TestDomain()
        for pfn in [20, TestDomain.l3Frame.rawValue, TestDomain.ramFrames, 1 << 40] {
            #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.newBaseptr, arg1: pfn)]).result == TestDomain.error(.EINVAL), "frame \(pfn)")
        }
        #expect(test.vcpu.kernelTable == TestDomain.l4Frame)
        try test.checkPageBookkeeping()
    }

    @Test("NEW_USER_BASEPTR sets and clears the user L4")
    func newUserBaseptr() throws {
        let test = try TestDomain()
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.newUserBaseptr, arg1: 301)]).result == 0)
        #expect(test.vcpu.userTable == FrameNumber(301))
        #expect(test.pageInfo(301) == PageInfo(type: .l4, typeCount: 1, pinned: false, mappings: 0))
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.newUserBaseptr, arg1: 302)]).result == 0)
        #expect(test.pageInfo(301).typeCount == 0 && test.pageInfo(302).typeCount == 1)
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.newUserBaseptr, arg1: 0)]).result == 0)
        #expect(test.vcpu.userTable == nil)
        #expect(test.pageInfo(302).typeCount == 0)
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.newUserBaseptr, arg1: 20)]).result == TestDomain.error(.EINVAL))
        try test.checkPageBookkeeping()
    }

    @Test("Local flushes record work for this vCPU")
    func localFlushes() throws {
        let test = try TestDomain()
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.invlpgLocal, arg1: 0xffff_ffff_8123_4000)]).result == 0)
        #expect(test.vcpu.pendingWork.invalidations == [0xffff_ffff_8123_4000])
        #expect(!test.vcpu.pendingWork.flushAll)
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.tlbFlushLocal)]).result == 0)
        #expect(test.vcpu.pendingWork.flushAll)
    }

    @Test("Multi and all flushes reach the named vCPUs")
    func remoteFlushes() throws {
        let test = try TestDomain(vcpus: 3)
        let mask = TestDomain.buffer + 0x100
        try test.write(UInt64(0b010), at: mask)
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.tlbFlushMulti, arg2: mask)]).result == 0)
        #expect(test.remoteFlushes == [false, true, false])
        #expect(test.vcpu.pendingWork.isEmpty)

        try test.write(UInt64(0b101), at: mask)
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.invlpgMulti, arg1: 0x4000, arg2: mask)]).result == 0)
        #expect(test.vcpu.pendingWork.invalidations == [0x4000])
        #expect(test.remoteFlushed(2))

        let fresh = try TestDomain(vcpus: 2)
        #expect(try fresh.mmuext([MMUExtOp(cmd: MMUExtCommand.tlbFlushAll)]).result == 0)
        #expect(fresh.vcpu.pendingWork.flushAll && fresh.remoteFlushed(1))
        let other = try TestDomain(vcpus: 2)
        #expect(try other.mmuext([MMUExtOp(cmd: MMUExtCommand.invlpgAll, arg1: 0x5000)]).result == 0)
        #expect(other.vcpu.pendingWork.invalidations == [0x5000] && other.remoteFlushed(1))

        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.tlbFlushMulti, arg2: TestDomain.unmapped)]).result == TestDomain.error(.EFAULT))
    }

    @Test("A remote flush is waited for until the target takes it or runs no guest code")
    func remoteFlushWaits() throws {
        let test = try TestDomain(vcpus: 3)
        let mask = TestDomain.buffer + 0x100
        try test.write(UInt64(0b110), at: mask)
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.tlbFlushMulti, arg2: mask)]).result == 0)
        let (one, two) = (test.domain.vcpus[1], test.domain.vcpus[2])
        #expect(test.vcpu.awaitedFlushes.map(\.id) == [1, 2])
        // Asked twice, waited for once.
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.tlbFlushMulti, arg2: mask)]).result == 0)
        #expect(test.vcpu.awaitedFlushes.map(\.id) == [1, 2])
        // Down: nothing to wait for. Up and running guest code: wait until it takes it.
        #expect(one.remoteFlushSettled)
        one.online = true
        two.online = true
        #expect(!one.remoteFlushSettled && !two.remoteFlushSettled)
        one.remoteFlush.store(false, ordering: .releasing)   // what its resume does
        #expect(one.remoteFlushSettled)
        two.blocked.store(true, ordering: .releasing)
        #expect(two.remoteFlushSettled)
        two.blocked.store(false, ordering: .releasing)
        two.waitingForFlushes.store(true, ordering: .releasing)
        #expect(two.remoteFlushSettled, "a vCPU waiting for its own flushes takes this one before it runs guest code")
    }

    @Test("CLEAR_PAGE zeroes a writable frame; COPY_PAGE copies one")
    func clearAndCopy() throws {
        let test = try TestDomain()
        try test.memory.writeBytes([UInt8](repeating: 0xab, count: 4096), at: GuestPhysicalAddress(20 * 4096))
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.copyPage, arg1: 21, arg2: 20)]).result == 0)
        #expect(try test.memory.readBytes(at: GuestPhysicalAddress(21 * 4096), count: 4096) == [UInt8](repeating: 0xab, count: 4096))
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.clearPage, arg1: 20)]).result == 0)
        #expect(try test.memory.readBytes(at: GuestPhysicalAddress(20 * 4096), count: 4096) == [UInt8](repeating: 0, count: 4096))
        #expect(test.pageInfo(20).typeCount == 1 && test.pageInfo(21).typeCount == 1)
        try test.checkPageBookkeeping()
    }

    @Test("CLEAR_PAGE and COPY_PAGE refuse page tables and frames outside RAM")
    func clearAndCopyInvalid() throws {
        let test = try TestDomain()
        let l1 = TestDomain.l1Frame.rawValue
        let before = try test.memory.readBytes(at: GuestPhysicalAddress(l1 * 4096), count: 4096)
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.clearPage, arg1: l1)]).result == TestDomain.error(.EINVAL))
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.copyPage, arg1: l1, arg2: 20)]).result == TestDomain.error(.EINVAL))
        #expect(try test.memory.readBytes(at: GuestPhysicalAddress(l1 * 4096), count: 4096) == before)
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.clearPage, arg1: TestDomain.ramFrames)]).result == TestDomain.error(.EINVAL))
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.copyPage, arg1: 20, arg2: TestDomain.ramFrames)]).result == TestDomain.error(.EINVAL))
        try test.checkPageBookkeeping()
    }

    @Test("SET_LDT: its pages become descriptor pages while in use; no entries clears it")
    func setLDT() throws {
        let test = try TestDomain()
        // A page mapped writable cannot hold an LDT.
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.setLDT, arg1: TestDomain.va(40), arg2: 16)]).result == TestDomain.error(.EINVAL))
        #expect(test.vcpu.ldtFrames.isEmpty)
        // Misaligned, or more than 8192 entries.
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.setLDT, arg1: TestDomain.va(40) + 8, arg2: 1)]).result == TestDomain.error(.EINVAL))
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.setLDT, arg1: TestDomain.va(40), arg2: 8193)]).result == TestDomain.error(.EINVAL))
        // Mapped read-only, it can: the frame becomes a descriptor page.
        test.call(.updateVAMapping, TestDomain.va(40), 40 << 12 | PTE.present | PTE.accessed, UVMF.invlpg)
        #expect(test.result == 0)
        _ = test.vcpu.ldtChanged.exchange(false, ordering: .relaxed)
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.setLDT, arg1: TestDomain.va(40), arg2: 16)]).result == 0)
        #expect(test.vcpu.ldtFrames == [FrameNumber(40)] && test.vcpu.ldtEntries == 16)
        let changed = test.vcpu.ldtChanged.load(ordering: .relaxed)
        #expect(changed)
        #expect(test.pageInfo(40).type == .segmentDescriptor && test.pageInfo(40).typeCount == 1)
        test.call(.updateVAMapping, TestDomain.va(40), 40 << 12 | PTE.present | PTE.rw | PTE.accessed, UVMF.invlpg)
        #expect(test.result == TestDomain.error(.EINVAL), "an LDT page cannot be mapped writable while in use")
        // No entries: the LDT is dropped and the page is an ordinary page again.
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.setLDT, arg1: 0, arg2: 0)]).result == 0)
        #expect(test.vcpu.ldtFrames.isEmpty && test.vcpu.ldtEntries == 0)
        #expect(test.pageInfo(40).typeCount == 0)
    }

    @Test("Unknown and unsupported commands", arguments: [
        (MMUExtCommand.flushCacheGlobal, XenError.EACCES), (MMUExtCommand.markSuper, .EOPNOTSUPP), (MMUExtCommand.unmarkSuper, .EOPNOTSUPP),
        (UInt32(14), .ENOSYS), (UInt32(18), .ENOSYS), (UInt32(99), .ENOSYS),
    ])
    func unknown(command: UInt32, error: XenError) throws {
        let test = try TestDomain()
        #expect(try test.mmuext([MMUExtOp(cmd: command, arg1: 20)]).result == TestDomain.error(error))
    }

    @Test("A batch stops at the first failure; done counts the operations applied")
    func batch() throws {
        let test = try TestDomain()
        let (result, done) = try test.mmuext([
            MMUExtOp(cmd: MMUExtCommand.pinL1Table, arg1: 300),
            MMUExtOp(cmd: MMUExtCommand.pinL1Table, arg1: 20),
            MMUExtOp(cmd: MMUExtCommand.pinL1Table, arg1: 301),
        ])
        #expect(result == TestDomain.error(.EINVAL) && done == 1)
        #expect(test.pageInfo(300).pinned && !test.pageInfo(301).pinned)
        #expect(try test.mmuext([MMUExtOp(cmd: MMUExtCommand.tlbFlushLocal)], domid: 5).result == TestDomain.error(.ESRCH))
        test.call(.mmuextOp, TestDomain.unmapped - 8, 1, TestDomain.mmuDone, UInt64(DomainID.`self`))
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(try test.read(UInt32.self, at: TestDomain.mmuDone) == 0)
    }
}

/// A small deterministic generator for the randomized tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
