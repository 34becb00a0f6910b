// memory_op (MemoryOp.swift) and physdev_op (PhysdevOp.swift).

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

@Suite("memory_op")
struct MemoryOpTests {
    @Test("XENMEM_maximum_ram_page is the number of machine frames the M2P covers")
    func maximumRAMPage() throws {
        let test = try TestDomain()
        test.call(.memoryOp, MemoryOp.maximumRAMPage, 0)
        #expect(test.result == 512)
    }

    @Test("current/maximum_reservation and maximum_gpfn answer for DOMID_SELF and the domain's own id")
    func reservations() throws {
        let test = try TestDomain(id: 7)
        for domid in [DomainID.`self`, 7] {
            try test.write(domid, at: TestDomain.buffer)
            test.call(.memoryOp, MemoryOp.currentReservation, TestDomain.buffer)
            #expect(test.result == 512)
            test.call(.memoryOp, MemoryOp.maximumReservation, TestDomain.buffer)
            #expect(test.result == 512)
            test.call(.memoryOp, MemoryOp.maximumGPFN, TestDomain.buffer)
            #expect(test.result == 511)
        }
    }

    @Test("Reservations of other domains are -EPERM", arguments: [UInt16(0), 1, 8, DomainID.io, DomainID.invalid])
    func otherDomains(domid: UInt16) throws {
        let test = try TestDomain(id: 7)
        try test.write(domid, at: TestDomain.buffer)
        for command in [MemoryOp.currentReservation, MemoryOp.maximumReservation, MemoryOp.maximumGPFN] {
            test.call(.memoryOp, command, TestDomain.buffer)
            #expect(test.result == TestDomain.error(.EPERM))
        }
    }

    @Test("The command is the low 6 bits; the rest may carry a continuation")
    func commandMask() throws {
        let test = try TestDomain()
        try test.write(DomainID.`self`, at: TestDomain.buffer)
        test.call(.memoryOp, MemoryOp.currentReservation | (5 << 6), TestDomain.buffer)
        #expect(test.result == 512)
    }

    @Test("XENMEM_machphys_mapping describes the read-only M2P")
    func machphysMapping() throws {
        let test = try TestDomain()
        try test.write([UInt8](repeating: 0xaa, count: 32), at: TestDomain.buffer)
        test.call(.memoryOp, MemoryOp.machphysMapping, TestDomain.buffer)
        #expect(test.result == 0)
        let bytes = try test.read(TestDomain.buffer, count: 32)
        #expect(le(UInt64.self, bytes, at: 0) == 0xffff_8000_0000_0000, "v_start")
        #expect(le(UInt64.self, bytes, at: 8) == 0xffff_8000_0000_1000, "v_end: 512 entries of 8 bytes, one page")
        #expect(le(UInt64.self, bytes, at: 16) == 511, "max_mfn")
        #expect(bytes[24...].allSatisfy { $0 == 0xaa })
    }

    @Test("XENMEM_memory_map returns one e820 RAM entry covering the domain's pages")
    func memoryMap() throws {
        let test = try TestDomain()
        let entries = TestDomain.buffer + 0x100
        try test.write([UInt8](repeating: 0xaa, count: 48), at: entries)
        try test.write(le(UInt32(8)) + le(UInt32(0)) + le(entries), at: TestDomain.buffer)
        test.call(.memoryOp, MemoryOp.memoryMap, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(try test.read(UInt32.self, at: TestDomain.buffer) == 1, "nr_entries")
        let entry = try test.read(entries, count: 24)
        #expect(le(UInt64.self, entry, at: 0) == 0)
        #expect(le(UInt64.self, entry, at: 8) == 512 * 4096)
        #expect(le(UInt32.self, entry, at: 16) == 1, "E820_RAM")
        #expect(entry[20...].allSatisfy { $0 == 0xaa }, "entries are 20 bytes")
    }

    @Test("XENMEM_memory_map with no room is -EINVAL; with bad pointers -EFAULT")
    func memoryMapInvalid() throws {
        let test = try TestDomain()
        try test.write(le(UInt32(0)) + le(UInt32(0)) + le(TestDomain.buffer + 0x100), at: TestDomain.buffer)
        test.call(.memoryOp, MemoryOp.memoryMap, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EINVAL))
        try test.write(le(UInt32(1)) + le(UInt32(0)) + le(TestDomain.unmapped - 4), at: TestDomain.buffer)
        test.call(.memoryOp, MemoryOp.memoryMap, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EFAULT))
        test.call(.memoryOp, MemoryOp.memoryMap, TestDomain.unmapped - 8)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("Bad argument pointers are -EFAULT", arguments: [
        MemoryOp.currentReservation, MemoryOp.maximumReservation, MemoryOp.maximumGPFN, MemoryOp.machphysMapping,
    ])
    func badPointers(command: UInt64) throws {
        let test = try TestDomain()
        test.call(.memoryOp, command, TestDomain.unmapped)
        #expect(test.result == TestDomain.error(.EFAULT))
        test.call(.memoryOp, command, HypervisorVirtualLayout.machToPhysStart)
        #expect(test.result == TestDomain.error(.EFAULT))
    }

    @Test("Unimplemented memory_op commands are -ENOSYS", arguments: [
        MemoryOp.increaseReservation, MemoryOp.decreaseReservation, MemoryOp.populatePhysmap, MemoryOp.addToPhysmap,
        MemoryOp.exchange, MemoryOp.machphysMFNList,
    ])
    func unknown(command: UInt64) throws {
        let test = try TestDomain()
        test.call(.memoryOp, command, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.ENOSYS))
    }
}

@Suite("physdev_op")
struct PhysdevOpTests {
    @Test("PHYSDEVOP_set_iopl sets the virtual IOPL 0–3", arguments: [UInt32(0), 1, 2, 3])
    func setIOPL(level: UInt32) throws {
        let test = try TestDomain()
        try test.write(level, at: TestDomain.buffer)
        test.call(.physdevOp, PhysdevOp.setIOPL, TestDomain.buffer)
        #expect(test.result == 0)
        #expect(test.vcpu.virtualIOPL == UInt8(level))
    }

    @Test("An IOPL above 3 is -EINVAL; an unreadable argument -EFAULT")
    func setIOPLInvalid() throws {
        let test = try TestDomain()
        try test.write(UInt32(4), at: TestDomain.buffer)
        test.call(.physdevOp, PhysdevOp.setIOPL, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.EINVAL))
        test.call(.physdevOp, PhysdevOp.setIOPL, TestDomain.unmapped - 2)
        #expect(test.result == TestDomain.error(.EFAULT))
        #expect(test.vcpu.virtualIOPL == 0)
    }

    @Test("Other physdev_op commands are -ENOSYS", arguments: [PhysdevOp.eoi, PhysdevOp.pirqEOIGMFNv2, PhysdevOp.irqStatusQuery, PhysdevOp.setIOBitmap])
    func unknown(command: UInt64) throws {
        let test = try TestDomain()
        test.call(.physdevOp, command, TestDomain.buffer)
        #expect(test.result == TestDomain.error(.ENOSYS))
    }
}
