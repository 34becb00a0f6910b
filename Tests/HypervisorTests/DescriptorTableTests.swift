// set_gdt and update_descriptor (Hypercalls/DescriptorTables.swift, Memory/DescriptorRules.swift).

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

extension TestDomain {
    var gdtChanged: Bool { vcpu.gdtChanged.load(ordering: .relaxed) }
}

@Suite("set_gdt and update_descriptor")
struct DescriptorTableTests {
    /// Linux's 64-bit code and data descriptors (DPL 0; Xen raises them to 3 in hardware).
    static let kernelCode: UInt64 = 0x00af_9b00_0000_ffff
    static let kernelData: UInt64 = 0x00cf_9300_0000_ffff
    /// A present 64-bit TSS descriptor (system type 9): only Xen may install those.
    static let tss: UInt64 = 0x0000_8900_0000_0067
    static let frameList = TestDomain.buffer + 0x200

    func setGDT(_ test: TestDomain, frames: [UInt64], entries: UInt64) throws -> Int64 {
        try test.write(frames.flatMap(le), at: Self.frameList)
        test.call(.setGDT, Self.frameList, entries)
        return test.result
    }

    func writeDescriptors(_ test: TestDomain, pfn: UInt64, _ descriptors: [Int: UInt64]) throws {
        for (index, value) in descriptors {
            try test.memory.write(value, at: GuestPhysicalAddress(pfn * 4096 + UInt64(index) * 8))
        }
    }

    @Test("set_gdt takes frames of checked descriptors as seg_desc pages and flags the GDT for reload")
    func setGDT() throws {
        let test = try TestDomain()
        try writeDescriptors(test, pfn: 300, [2: Self.kernelCode, 3: Self.kernelData])
        #expect(try setGDT(test, frames: [300], entries: 16) == 0)
        #expect(test.vcpu.gdtFrames == [FrameNumber(300)])
        #expect(test.vcpu.gdtEntries == 16)
        #expect(test.gdtChanged)
        #expect(test.pageInfo(300) == PageInfo(type: .segmentDescriptor, typeCount: 1, pinned: false, mappings: 0))
        try test.checkPageBookkeeping()
    }

    @Test("A new GDT releases the old frames; an empty one releases them all")
    func replace() throws {
        let test = try TestDomain()
        #expect(try setGDT(test, frames: [300, 301], entries: 600) == 0)
        #expect(test.vcpu.gdtFrames == [FrameNumber(300), FrameNumber(301)])
        #expect(try setGDT(test, frames: [301], entries: 512) == 0)
        #expect(test.pageInfo(300).typeCount == 0 && test.pageInfo(301).typeCount == 1)
        #expect(try setGDT(test, frames: [], entries: 0) == 0)
        #expect(test.vcpu.gdtFrames.isEmpty && test.pageInfo(301).typeCount == 0)
        try test.checkPageBookkeeping()
    }

    @Test("GDT frames may be mapped read-only, never writable, in either order")
    func noWritableMappings() throws {
        let test = try TestDomain()
        #expect(try setGDT(test, frames: [20], entries: 8) == TestDomain.error(.EINVAL), "mapped writable")
        #expect(try setGDT(test, frames: [300], entries: 8) == 0)
        #expect(try test.setEntry(TestDomain.l1Entry(mapping: 300), entry(300, PTE.present | PTE.rw)) == TestDomain.error(.EINVAL))
        #expect(try test.setEntry(TestDomain.l1Entry(mapping: 300), entry(300, PTE.present)) == 0)
        try test.checkPageBookkeeping()
    }

    @Test("A frame with a system descriptor is refused and no reference is left behind")
    func systemDescriptor() throws {
        let test = try TestDomain()
        try writeDescriptors(test, pfn: 301, [5: Self.tss])
        #expect(try setGDT(test, frames: [300, 301], entries: 1024) == TestDomain.error(.EINVAL))
        #expect(test.pageInfo(300).typeCount == 0 && test.pageInfo(301).typeCount == 0)
        #expect(test.vcpu.gdtFrames.isEmpty && !test.gdtChanged)
        try test.checkPageBookkeeping()
    }

    @Test("Too many entries, frames outside RAM and page-table frames are -EINVAL; an unreadable list -EFAULT")
    func invalid() throws {
        let test = try TestDomain()
        #expect(try setGDT(test, frames: [300], entries: 7169) == TestDomain.error(.EINVAL))
        #expect(try setGDT(test, frames: [TestDomain.ramFrames], entries: 8) == TestDomain.error(.EINVAL))
        #expect(try setGDT(test, frames: [300, TestDomain.l1Frame.rawValue], entries: 1000) == TestDomain.error(.EINVAL))
        #expect(test.pageInfo(300).typeCount == 0)
        test.call(.setGDT, TestDomain.unmapped - 8, 1000)
        #expect(test.result == TestDomain.error(.EFAULT))
        try test.checkPageBookkeeping()
    }

    @Test("update_descriptor writes a checked descriptor into a GDT frame and flags every vCPU using it")
    func updateGDTDescriptor() throws {
        let test = try TestDomain(vcpus: 2)
        #expect(try setGDT(test, frames: [300], entries: 16) == 0)
        test.vcpu.gdtChanged.store(false, ordering: .relaxed)
        test.call(.updateDescriptor, 300 * 4096 + 6 * 8, Self.kernelData)
        #expect(test.result == 0)
        #expect(try test.physical(GuestPhysicalAddress(300 * 4096 + 48)) == Self.kernelData)
        #expect(test.gdtChanged)
        #expect(test.pageInfo(300).typeCount == 1)
        test.call(.updateDescriptor, 300 * 4096 + 7 * 8, Self.tss)
        #expect(test.result == TestDomain.error(.EINVAL))
        #expect(try test.physical(GuestPhysicalAddress(300 * 4096 + 56)) == 0)
    }

    @Test("update_descriptor on an ordinary page writes it; on a page table, misaligned or outside RAM it is -EINVAL")
    func updateOtherPages() throws {
        let test = try TestDomain()
        test.call(.updateDescriptor, 20 * 4096 + 8, Self.kernelCode)
        #expect(test.result == 0)
        #expect(try test.physical(GuestPhysicalAddress(20 * 4096 + 8)) == Self.kernelCode)
        #expect(test.pageInfo(20).typeCount == 1)
        for address: UInt64 in [TestDomain.l1Frame.rawValue * 4096, 20 * 4096 + 4, TestDomain.ramFrames * 4096, UInt64.max & ~7] {
            test.call(.updateDescriptor, address, Self.kernelCode)
            #expect(test.result == TestDomain.error(.EINVAL), "address \(address)")
        }
        try test.checkPageBookkeeping()
    }

    @Test("Descriptor rules: code/data and not-present are allowed, system descriptors are not; fixup sets DPL 3 and accessed")
    func rules() {
        #expect(DescriptorRules.isAllowed(0))
        #expect(DescriptorRules.isAllowed(Self.kernelCode) && DescriptorRules.isAllowed(Self.kernelData))
        #expect(DescriptorRules.isAllowed(Self.tss & ~(1 << 47)), "not present")
        #expect(!DescriptorRules.isAllowed(Self.tss))
        #expect(!DescriptorRules.isAllowed(0x0000_8c00_0000_0000), "call gate (not supported yet)")
        #expect(DescriptorRules.isAllowed(0x0000_8000_0000_0000), "type 0: upper half of a 16-byte descriptor")
        #expect(DescriptorRules.fixup(Self.kernelCode) == 0x00af_fb00_0000_ffff)
        #expect(DescriptorRules.fixup(Self.kernelData) == 0x00cf_f300_0000_ffff)
        #expect(DescriptorRules.fixup(Self.tss) == Self.tss)
    }
}
