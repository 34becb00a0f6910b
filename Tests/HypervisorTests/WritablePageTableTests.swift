// Writable page-table emulation (Memory/WritablePageTables.swift), reached as on the
// machine: a kernel-mode write fault (#PF, error code 3) on a read-only mapped L1.

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

private let rwLeaf = PTE.present | PTE.rw | PTE.accessed
private let roLeaf = PTE.present | PTE.accessed

extension TestDomain {
    /// The kernel virtual address of the fixture L1's entry for RAM frame `pfn`
    /// (the L1 itself is mapped read-only at va(4)).
    static func l1EntryVA(mapping pfn: UInt64) -> UInt64 { va(l1Frame.rawValue) + pfn * 8 }

    /// Runs `bytes` at the code page as a write fault on `address`.
    @discardableResult
    func writeFault(_ bytes: [UInt8], at address: UInt64, errorCode: UInt64 = 3) throws -> ExitOutcome {
        try placeCode(bytes)
        return Traps.exception(vcpu, &context, vector: 14, errorCode: errorCode, faultAddress: address)
    }
}

@Suite("Writable page tables (ptwr emulation)")
struct WritablePageTableTests {
    @Test("mov %rdx,(%rax): a new entry is validated, adjusted and written; rip steps over")
    func mov() throws {
        let test = try TestDomain()
        let target = TestDomain.l1EntryVA(mapping: 300)
        test.context.rax = target
        test.context.rdx = entry(300, rwLeaf)
        #expect(try test.writeFault([0x48, 0x89, 0x10], at: target) == .resume)
        #expect(test.context.rip == test.codeAddress + 3)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 300)) == kernelL1(300, rwLeaf))
        #expect(test.pageInfo(300) == PageInfo(type: .writable, typeCount: 1, pinned: false, mappings: 1))
        #expect(test.vcpu.pendingWork.pageTableStores.map(\.0) == [TestDomain.l1Entry(mapping: 300)])
        #expect(test.context.rdx == entry(300, rwLeaf))
        try test.checkPageBookkeeping()
    }

    @Test("xchg %rdx,(%rax) (ptep_get_and_clear): the entry is cleared and the old one returned")
    func xchg() throws {
        let test = try TestDomain()
        let target = TestDomain.l1EntryVA(mapping: 20)
        test.context.rax = target
        test.context.rdx = 0
        try test.writeFault([0x48, 0x87, 0x10], at: target)
        #expect(test.context.rdx == kernelL1(20, rwLeaf))
        #expect(try test.physical(TestDomain.l1Entry(mapping: 20)) == 0)
        #expect(test.pageInfo(20) == PageInfo(type: .writable, typeCount: 0, pinned: false, mappings: 0))
        #expect(test.context.rip == test.codeAddress + 3)
        try test.checkPageBookkeeping()
    }

    @Test("lock cmpxchg %rdx,(%rcx) that matches: entry replaced, ZF set")
    func cmpxchgSuccess() throws {
        let test = try TestDomain()
        let target = TestDomain.l1EntryVA(mapping: 20)
        test.context.rcx = target
        test.context.rax = kernelL1(20, rwLeaf)
        test.context.rdx = entry(20, roLeaf)
        test.context.rflags = RFlags.fixed | RFlags.interrupt | RFlags.carry | RFlags.sign
        try test.writeFault([0xf0, 0x48, 0x0f, 0xb1, 0x11], at: target)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 20)) == kernelL1(20, roLeaf))
        #expect(test.context.rflags & RFlags.zero != 0)
        #expect(test.context.rflags & (RFlags.carry | RFlags.sign) == 0)
        #expect(test.context.rflags & RFlags.interrupt != 0, "non-arithmetic flags are untouched")
        #expect(test.context.rax == kernelL1(20, rwLeaf))
        #expect(test.context.rip == test.codeAddress + 5)
        #expect(test.pageInfo(20).typeCount == 0)
        try test.checkPageBookkeeping()
    }

    @Test("lock cmpxchg that does not match: entry unchanged, rax = the entry, ZF clear")
    func cmpxchgFailure() throws {
        let test = try TestDomain()
        let target = TestDomain.l1EntryVA(mapping: 20)
        test.context.rcx = target
        test.context.rax = entry(20, rwLeaf)     // what the guest wrote, not what Xen stored
        test.context.rdx = 0
        test.context.rflags = RFlags.fixed | RFlags.interrupt | RFlags.zero
        try test.writeFault([0xf0, 0x48, 0x0f, 0xb1, 0x11], at: target)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 20)) == kernelL1(20, rwLeaf))
        #expect(test.context.rax == kernelL1(20, rwLeaf))
        #expect(test.context.rflags & RFlags.zero == 0)
        #expect(test.context.rflags & RFlags.carry != 0, "rax < entry")
        #expect(test.context.rip == test.codeAddress + 5)
        #expect(test.vcpu.pendingWork.pageTableStores.isEmpty)
        try test.checkPageBookkeeping()
    }

    @Test("lock btrq $1,(%rax) (ptep_set_wrprotect): RW cleared, CF = the old bit")
    func btr() throws {
        let test = try TestDomain()
        let target = TestDomain.l1EntryVA(mapping: 20)
        test.context.rax = target
        try test.writeFault([0xf0, 0x48, 0x0f, 0xba, 0x30, 0x01], at: target)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 20)) == kernelL1(20, roLeaf))
        #expect(test.context.rflags & RFlags.carry != 0)
        #expect(test.context.rip == test.codeAddress + 6)
        #expect(test.pageInfo(20).typeCount == 0 && test.pageInfo(20).mappings == 1)
        // Again: the bit is already clear, CF = 0; nothing to change.
        try test.writeFault([0xf0, 0x48, 0x0f, 0xba, 0x30, 0x01], at: target)
        #expect(test.context.rflags & RFlags.carry == 0)
        try test.checkPageBookkeeping()
    }

    @Test("lock andb $0xfd,(%rax): a byte-wide AND on the entry's low byte, with logic flags")
    func andByte() throws {
        let test = try TestDomain()
        let target = TestDomain.l1EntryVA(mapping: 20)
        test.context.rax = target
        test.context.rflags = RFlags.fixed | RFlags.interrupt | RFlags.carry | RFlags.overflow | RFlags.zero
        try test.writeFault([0xf0, 0x80, 0x20, 0xfd], at: target)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 20)) == kernelL1(20, roLeaf))
        // 0x27 & 0xfd = 0x25: not zero, not negative, odd parity; CF and OF cleared.
        #expect(test.context.rflags & WriteInstruction.arithmeticFlags == 0)
        #expect(test.context.rflags & RFlags.interrupt != 0)
        #expect(test.context.rip == test.codeAddress + 4)
        #expect(test.pageInfo(20).typeCount == 0)
    }

    @Test("A byte write at an offset inside the entry (andb $0xfe,1(%rax)) changes that byte only")
    func byteAtOffset() throws {
        let test = try TestDomain()
        let slot = TestDomain.l1Entry(mapping: 20)
        #expect(try test.setEntry(slot, entry(20, rwLeaf | PTE.global)) == 0)
        let target = TestDomain.l1EntryVA(mapping: 20)
        test.context.rax = target
        try test.writeFault([0xf0, 0x80, 0x60, 0x01, 0xfe], at: target + 1)
        #expect(try test.physical(slot) == kernelL1(20, rwLeaf))
        #expect(test.context.rip == test.codeAddress + 5)
    }

    @Test("Byte forms with high-byte registers: xchg %ah writes AH; a failed cmpxchg %ah writes AL, the accumulator")
    func highByteRegisters() throws {
        let test = try TestDomain()
        let target = TestDomain.l1EntryVA(mapping: 20)
        let low = kernelL1(20, PTE.present | PTE.rw | PTE.accessed) & 0xff     // 0x27
        // lock cmpxchg %ah,(%rdx): AL (0x34) differs from the entry's low byte.
        test.context.rdx = target
        test.context.rax = 0x1234
        try test.writeFault([0xf0, 0x0f, 0xb0, 0x22], at: target)
        #expect(test.context.rax == 0x1200 | low, "AL gets the entry's byte; AH (the source) is untouched")
        #expect(test.context.rip == test.codeAddress + 4)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 20)) == kernelL1(20, PTE.present | PTE.rw | PTE.accessed))
        // xchg %ah,(%rdx) with AH = 0x25 (RW cleared): AH gets the old byte.
        test.context.rax = 0x2500
        try test.writeFault([0x86, 0x22], at: target)
        #expect(test.context.rax == low << 8)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 20)) == kernelL1(20, PTE.present | PTE.accessed))
        try test.checkPageBookkeeping()
    }

    @Test("A 32-bit mov into the upper half sets NX")
    func upperHalf() throws {
        let test = try TestDomain()
        let target = TestDomain.l1EntryVA(mapping: 20)
        test.context.rax = target
        test.context.rdx = 0x8010_0000        // NX | _PAGE_GUEST_KERNEL, as the entry's upper half
        try test.writeFault([0x89, 0x50, 0x04], at: target + 4)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 20)) == kernelL1(20, rwLeaf) | PTE.nx)
        #expect(test.context.rip == test.codeAddress + 3)
    }

    @Test("An invalid new entry is not written: the #PF goes to the guest's handler, cr2 and error code intact")
    func invalidEntryInjectsPageFault() throws {
        let test = try TestDomain()
        test.setTrap(14)
        let target = TestDomain.l1EntryVA(mapping: 300)
        let initial = test.context
        for value in [entry(TestDomain.l2Frame.rawValue, rwLeaf), entry(300, rwLeaf | PTE.pcd), entry(9999, roLeaf)] {
            test.context = initial
            test.context.rax = target
            test.context.rdx = value
            #expect(try test.writeFault([0x48, 0x89, 0x10], at: target) == .resume)
            #expect(test.context.rip == TestDomain.handler + 14 * 0x10)
            #expect(Array(try test.frame(words: 8)[2...3]) == [3, test.codeAddress])
            #expect(try test.memory.read(UInt64.self, at: test.vcpuInfoField(VCPUInfoLayout.cr2)) == target)
            #expect(try test.physical(TestDomain.l1Entry(mapping: 300)) == 0)
        }
        try test.checkPageBookkeeping()
    }

    @Test("An invalid new entry with no #PF handler crashes the domain")
    func invalidEntryCrashes() throws {
        let test = try TestDomain()
        let target = TestDomain.l1EntryVA(mapping: 300)
        test.context.rax = target
        test.context.rdx = entry(TestDomain.l4Frame.rawValue, rwLeaf)
        #expect(try test.writeFault([0x48, 0x89, 0x10], at: target) == .stop)
        #expect(test.isCrashed)
    }

    /// (fault address, error code): a read-only upper-level table (L2, L4), a read fault
    /// and a not-present write on an L1 entry, an unmapped address.
    static let faultsNotEmulated: [(UInt64, UInt64)] = [
        (TestDomain.va(TestDomain.l2Frame.rawValue) + 8, 3),
        (TestDomain.va(TestDomain.l4Frame.rawValue) + 8, 3),
        (TestDomain.l1EntryVA(mapping: 300), 1),
        (TestDomain.l1EntryVA(mapping: 300), 2),
        (TestDomain.unmapped, 3),
    ]

    @Test("Only kernel-mode write faults on active L1 tables are emulated", arguments: faultsNotEmulated)
    func notEmulated(address: UInt64, errorCode: UInt64) throws {
        let test = try TestDomain()
        test.setTrap(14)
        let before = try test.physical(TestDomain.l1Entry(mapping: 300))
        test.context.rax = address
        test.context.rdx = entry(300, rwLeaf)
        try test.writeFault([0x48, 0x89, 0x10], at: address, errorCode: errorCode)
        #expect(test.context.rip == TestDomain.handler + 14 * 0x10)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 300)) == before)
    }

    @Test("A write fault from guest user mode is never emulated")
    func userModeWrite() throws {
        let test = try TestDomain()
        test.setTrap(14)
        try test.enterUserMode()
        let target = TestDomain.l1EntryVA(mapping: 300)
        test.context.rdx = entry(300, rwLeaf)
        try test.writeFault([0x48, 0x89, 0x10], at: target, errorCode: 7)
        #expect(test.context.rip == TestDomain.handler + 14 * 0x10)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 300)) == 0)
    }

    @Test("An instruction the emulator does not know is reflected as #PF and logged", arguments: [
        [UInt8(0xf3), 0x48, 0xa5],          // rep movsq
        [0x48, 0x8b, 0x10],                 // mov (%rax),%rdx: a read
        [0x66, 0x89, 0x10],                 // 16-bit mov
        [0x48, 0x89, 0xd0],                 // register to register
    ])
    func unknownInstruction(bytes: [UInt8]) throws {
        let test = try TestDomain()
        test.setTrap(14)
        let target = TestDomain.l1EntryVA(mapping: 20)
        test.context.rax = target
        test.context.rdx = 0
        try test.writeFault(bytes, at: target)
        #expect(test.context.rip == TestDomain.handler + 14 * 0x10)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 20)) == kernelL1(20, rwLeaf))
        #expect(test.log.lines().contains { $0.contains("by an instruction Domus does not emulate") })
    }

    @Test("A write that would cross the entry's end is not emulated")
    func crossingWrite() throws {
        let test = try TestDomain()
        test.setTrap(14)
        let target = TestDomain.l1EntryVA(mapping: 20) + 4
        test.context.rax = target
        test.context.rdx = 0
        try test.writeFault([0x48, 0x89, 0x10], at: target)
        #expect(test.context.rip == TestDomain.handler + 14 * 0x10)
        #expect(try test.physical(TestDomain.l1Entry(mapping: 20)) == kernelL1(20, rwLeaf))
    }

    @Test("Decoding: lengths and operands of the forms Linux uses")
    func decoding() throws {
        let cases: [([UInt8], WriteInstruction.Operation, Int, Int)] = [
            ([0x48, 0x89, 0x10], .mov, 8, 3),
            ([0x48, 0x89, 0x54, 0x24, 0x08], .mov, 8, 5),              // mov %rdx,8(%rsp): SIB + disp8
            ([0x48, 0x89, 0x90, 0x00, 0x10, 0x00, 0x00], .mov, 8, 7), // disp32
            ([0x48, 0xc7, 0x00, 0x00, 0x00, 0x00, 0x00], .mov, 8, 7), // movq $0,(%rax)
            ([0x48, 0x87, 0x10], .xchg, 8, 3),
            ([0xf0, 0x48, 0x0f, 0xb1, 0x11], .cmpxchg, 8, 5),
            ([0xf0, 0x48, 0x0f, 0xba, 0x30, 0x01], .btr, 8, 6),
            ([0xf0, 0x48, 0x0f, 0xb3, 0x10], .btr, 8, 5),
            ([0xf0, 0x80, 0x20, 0xfd], .and, 1, 4),
            ([0xf0, 0x48, 0x83, 0x20, 0xdf], .and, 8, 5),
            ([0xf0, 0x48, 0x09, 0x10], .or, 8, 4),
            ([0x89, 0x10], .mov, 4, 2),
        ]
        for (bytes, operation, size, length) in cases {
            let decoded = try #require(WriteInstruction(decoding: bytes), "\(bytes)")
            #expect(decoded.operation == operation && decoded.size == size && decoded.length == length, "\(bytes)")
        }
        #expect(WriteInstruction(decoding: [0x48, 0x89]) == nil, "truncated")
        #expect(WriteInstruction(decoding: []) == nil)
        // andq $-33,(%rax): the 8-bit immediate is sign-extended to 64 bits.
        let and = try #require(WriteInstruction(decoding: [0x48, 0x83, 0x20, 0xdf]))
        #expect(and.apply(to: ~0, offset: 0, source: and.sourceValue(GuestContext()), accumulator: 0).entry == ~UInt64(0x20))
    }
}

