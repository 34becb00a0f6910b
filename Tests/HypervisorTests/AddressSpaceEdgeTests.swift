// Guest pointers at the edges of the address space: ranges that would wrap past
// 2^64 or cross into non-canonical space must be -EFAULT, never a host crash.

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

private let table = PTE.present | PTE.rw | PTE.user | PTE.accessed | PTE.dirty
private let rwLeaf = PTE.present | PTE.rw | PTE.accessed

extension TestDomain {
    /// Maps RAM frame 70 at the very last page (0xfffffffffffff000) and frame 71 at
    /// virtual address 0, as a hostile kernel could, through validated mmu_updates.
    func mapBothEnds() throws {
        // Top: fixture L3[511] → L2 330 → [511] L1 331 → [511] frame 70.
        try writeTable(331, [511: entry(70, rwLeaf)])
        try writeTable(330, [511: entry(331, table)])
        #expect(try setEntry(Self.entryAddress(Self.l3Frame, 511), entry(330, table)) == 0)
        // Bottom: L4[0] → L3 332 → L2 333 → L1 334 → [0] frame 71.
        try writeTable(334, [0: entry(71, rwLeaf)])
        try writeTable(333, [0: entry(334, table)])
        try writeTable(332, [0: entry(333, table)])
        #expect(try setEntry(Self.entryAddress(Self.l4Frame, 0), entry(332, table)) == 0)
        #expect(try read(UInt8.self, at: 0xffff_ffff_ffff_f000) == 0)
        #expect(try read(UInt8.self, at: 0) == 0)
    }
}

@Suite("Guest pointers at the ends of the address space")
struct AddressSpaceEdgeTests {
    @Test("The page walker refuses a range that wraps past the top of the address space")
    func walkerWrap() throws {
        let test = try TestDomain()
        try test.mapBothEnds()
        let walker = try test.walker
        #expect(throws: XenError.EFAULT) { try walker.read(GuestVirtualAddress(0xffff_ffff_ffff_fffd), count: 4) }
        #expect(throws: XenError.EFAULT) { try walker.write([1, 2, 3, 4], to: GuestVirtualAddress(0xffff_ffff_ffff_fffe)) }
        #expect(try walker.read(GuestVirtualAddress(0xffff_ffff_ffff_fff0), count: 15).count == 15, "up to the last byte but one is fine")
        #expect(try test.memory.read(UInt32.self, at: GuestPhysicalAddress(71 * 4096)) == 0, "nothing written at VA 0")
    }

    @Test("A range running from canonical user space into the non-canonical hole is -EFAULT")
    func nonCanonicalCrossing() throws {
        let test = try TestDomain()
        // Map the last user page, 0x00007ffffffff000, through L4[255].
        try test.writeTable(342, [511: entry(72, rwLeaf)])
        try test.writeTable(341, [511: entry(342, table)])
        try test.writeTable(340, [511: entry(341, table)])
        #expect(try test.setEntry(TestDomain.entryAddress(TestDomain.l4Frame, 255), entry(340, table)) == 0)
        let walker = try test.walker
        #expect(try walker.read(GuestVirtualAddress(0x0000_7fff_ffff_fff8), count: 8).count == 8)
        #expect(throws: XenError.EFAULT) { try walker.read(GuestVirtualAddress(0x0000_7fff_ffff_fffc), count: 8) }
    }

    /// Before the page walker refused wrapping ranges, each of these copied its argument in
    /// (wrapping to VA 0) and then computed `argument + offset` for the result, which
    /// overflowed and trapped: a guest could crash the host process.
    @Test("Hypercall arguments just below 2^64 fail cleanly instead of trapping on overflow", arguments: [
        UInt64.max, UInt64.max - 2, UInt64.max - 3, UInt64.max - 6, UInt64.max - 7,
    ])
    func hypercallsAtTheTop(address: UInt64) throws {
        let test = try TestDomain()
        try test.mapBothEnds()
        test.call(.xenVersion, XenVersionCommand.getFeatures, address)
        #expect(test.result == TestDomain.error(.EFAULT), "the result cannot be written below 2^64")
        // The small arguments may be read from the last page (as zeros); none may wrap.
        for command in [EventChannelOp.allocUnbound, EventChannelOp.bindIPI, EventChannelOp.bindVIRQ, EventChannelOp.bindInterdomain,
                        EventChannelOp.status, EventChannelOp.send] {
            test.call(.eventChannelOp, command, address)
            #expect(test.result < 0, "event_channel_op \(command)")
        }
        for command in [MemoryOp.memoryMap, MemoryOp.machphysMapping, MemoryOp.currentReservation] {
            test.call(.memoryOp, command, address)
            #expect(test.result < 0, "memory_op \(command)")
        }
        test.call(.consoleIO, ConsoleIO.write, 16, address)
        #expect(test.result == TestDomain.error(.EFAULT))
        test.call(.multicall, address, 1)
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(try test.memory.read(UInt64.self, at: GuestPhysicalAddress(71 * 4096)) == 0, "nothing was written at VA 0")
        #expect(!test.isCrashed)
    }
}
