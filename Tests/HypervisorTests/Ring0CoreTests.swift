// The in-VM ring-0 core (Sources/Ring0Core) against the host's PV MMU: the core runs
// here on the fake guest memory of a TestDomain, through the same shared pages it uses
// in the VM, and every hypercall it completes must leave exactly the state the host's
// own handling leaves in a twin domain; every hypercall it defers must leave nothing
// changed, so that the host then handles it as if the core did not exist.

import GuestMemory
import Ring0Core
import Testing
import XenABI

@testable import Hypervisor

/// A TestDomain whose vCPU 0 can also enter the ring-0 core.
struct CoreHarness {
    let test: TestDomain
    /// The registers ring0/entry.S saves (15 registers, then the interrupt frame).
    let registers: UnsafeMutableRawPointer

    init(vcpus: Int = 2, cpuid: CPUIDPolicy = CPUIDPolicy(hostLeaves: [])) throws {
        test = try TestDomain(vcpus: vcpus, cpuid: cpuid)
        registers = UnsafeMutableRawPointer.allocate(byteCount: CoreLayout.savedSS + 8, alignment: 16)
        registers.initializeMemory(as: UInt8.self, repeating: 0, count: CoreLayout.savedSS + 8)
        // The pointers the machine layer writes for the VM's mappings, here the host's.
        let block = test.layout.coreVCPUBlock(0)
        try test.memory.write(try hostAddress(test.layout.coreHeader), at: GuestPhysicalAddress(block.rawValue + UInt64(CoreLayout.vcpuDomainHeader)))
        try test.memory.write(try hostAddress(GuestPhysicalAddress(0)), at: GuestPhysicalAddress(block.rawValue + UInt64(CoreLayout.vcpuRAMBase)))
        try test.memory.write(try hostAddress(test.layout.pageInfo), at: GuestPhysicalAddress(block.rawValue + UInt64(CoreLayout.vcpuPageInfo)))
        try test.memory.write(CoreLayout.version, at: GuestPhysicalAddress(block.rawValue + UInt64(CoreLayout.vcpuVersion)))
        test.domain.setCoreEnabled(true)
    }

    func hostAddress(_ address: GuestPhysicalAddress) throws -> UInt64 {
        let region = try #require(test.memory.regions.first { address.rawValue >= $0.base.rawValue && address.rawValue - $0.base.rawValue < $0.size })
        return region.hostAddress + (address.rawValue - region.base.rawValue)
    }

    func register(_ offset: Int) -> UInt64 { registers.load(fromByteOffset: offset, as: UInt64.self) }
    func setRegister(_ offset: Int, _ value: UInt64) { registers.storeBytes(of: value, toByteOffset: offset, as: UInt64.self) }

    /// Enters the core as ring0/entry.S does for hypercall `number` with `arguments`;
    /// returns rax when it completed the hypercall, nil when it deferred.
    func core(_ number: UInt64, _ arguments: [UInt64], entry: UInt64 = CoreLayout.entrySyscall,
              rip: UInt64 = TestDomain.va(TestDomain.codePFN)) throws -> UInt64? {
        let padded = arguments + [UInt64](repeating: 0, count: max(0, 5 - arguments.count))
        setRegister(CoreLayout.savedRAX, number)
        setRegister(CoreLayout.savedRDI, padded[0])
        setRegister(CoreLayout.savedRSI, padded[1])
        setRegister(CoreLayout.savedRDX, padded[2])
        setRegister(CoreLayout.savedR10, padded[3])
        setRegister(CoreLayout.savedR8, padded[4])
        setRegister(CoreLayout.savedRIP, rip)
        let block = try #require(UnsafeMutableRawPointer(bitPattern: UInt(try hostAddress(test.layout.coreVCPUBlock(0)))))
        let cr3 = try #require(test.vcpu.kernelTable).rawValue << 12
        let result = Core.enter(registers: registers, vcpuBlock: block, cr3: cr3, entry: entry, cr2: 0)
        if result == CoreLayout.resultDeferred {
            #expect(register(CoreLayout.savedRAX) == number, "a deferred hypercall keeps its registers")
            return nil
        }
        return register(CoreLayout.savedRAX)
    }

    func request(_ offset: Int) throws -> UInt64 {
        try test.memory.read(UInt64.self, at: GuestPhysicalAddress(test.layout.coreVCPUBlock(0).rawValue + UInt64(offset)))
    }

    func clearRequests() throws {
        for offset in [CoreLayout.vcpuRequestCR3, CoreLayout.vcpuRequestFlush, CoreLayout.vcpuRequestInvalidate] {
            try test.memory.write(UInt64(0), at: GuestPhysicalAddress(test.layout.coreVCPUBlock(0).rawValue + UInt64(offset)))
        }
    }

    func counter(_ base: Int, _ number: UInt64) -> UInt64 { test.vcpu.coreCounter(base, number) }
}

/// What the core and the host may change: page information, the page-table frames'
/// contents, and the vCPU's base pointers.
struct MMUState: Equatable {
    var pages: [PageInfo]
    var tables: [[UInt64]]
    var kernelTable: FrameNumber?
    var userTable: FrameNumber?

    static let watchedFrames: [UInt64] = [1, 2, 3, 4, 5, 200, 201, 202, 203]

    init(_ test: TestDomain) throws {
        pages = test.domain.state.withLock { $0.pages.frames }
        tables = try Self.watchedFrames.map { pfn in
            let bytes = try test.memory.readBytes(at: GuestPhysicalAddress(pfn << 12), count: 4096)
            return bytes.withUnsafeBytes { Array($0.bindMemory(to: UInt64.self)) }   // little-endian host
        }
        kernelTable = test.vcpu.kernelTable
        userTable = test.vcpu.userTable
    }

    /// The first few differences, for a readable failure.
    func differences(from other: MMUState) -> String {
        var lines: [String] = []
        for (pfn, (mine, theirs)) in zip(pages, other.pages).enumerated() where mine != theirs {
            lines.append("frame \(pfn): \(mine) instead of \(theirs)")
        }
        for (frame, (mine, theirs)) in zip(Self.watchedFrames, zip(tables, other.tables)) {
            for (index, (a, b)) in zip(mine, theirs).enumerated() where a != b {
                lines.append("entry \(index) of frame \(frame): \(hex(a)) instead of \(hex(b))")
            }
        }
        if kernelTable != other.kernelTable { lines.append("kernel table \(String(describing: kernelTable)) instead of \(String(describing: other.kernelTable))") }
        if userTable != other.userTable { lines.append("user table \(String(describing: userTable)) instead of \(String(describing: other.userTable))") }
        return lines.prefix(6).joined(separator: "; ")
    }

    private func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
}

extension SplitMix {
    fileprivate mutating func below(_ bound: UInt64) -> UInt64 { next() % bound }
    fileprivate mutating func pick<T>(_ choices: [T]) -> T { choices[Int(below(UInt64(choices.count)))] }
    fileprivate mutating func chance(_ percent: UInt64) -> Bool { below(100) < percent }
}

private let rwLeaf = PTE.present | PTE.rw | PTE.accessed
private let roLeaf = PTE.present | PTE.accessed
private let tableFlags = TestDomain.tableFlags

/// Sets up, identically in a domain, what the random operations work on: a second L4
/// (frame 200, sharing the kernel's L3) and two more L1s (201, 202), read-only where
/// the fixture maps them, and frame 203 read-only as a future L1.
private func prepare(_ test: TestDomain) throws {
    for pfn: UInt64 in [200, 201, 202, 203] {
        #expect(try test.setEntry(TestDomain.l1Entry(mapping: pfn), entry(pfn, roLeaf)) == 0)
    }
    let kernelIndex = GuestVirtualAddress(TestDomain.virtualBase).tableIndex(level: 4)
    try test.writeTable(200, [kernelIndex: TestDomain.l3Frame.rawValue << 12 | tableFlags])
    #expect(try test.pin(200, level: 4) == 0)
    #expect(try test.pin(201, level: 1) == 0)
    #expect(try test.setEntry(TestDomain.entryAddress(TestDomain.l2Frame, 2), entry(202, tableFlags)) == 0)
    test.vcpu.pendingWork = PendingMachineWork()
}

/// One random hypercall of the kinds Linux makes most: single-entry mmu_updates of L1
/// and L2 entries, and mmuext_op base-pointer switches and flushes (with some the core
/// must defer: batches, pins, machphys updates, bad values).
private func randomHypercall(_ random: inout SplitMix) -> (number: Hypercall, payload: [UInt8], count: UInt64, flags: UInt64) {
    if random.chance(15) {
        // update_va_mapping: the "payload" is the value, "count" the address.
        let address = random.chance(85) ? TestDomain.va(180 + random.below(90)) + random.below(4096)
            : random.pick([0x1000, 0xffff_8000_0000_1000, TestDomain.virtualBase + (4 << 20), 1 << 47])
        var flags = random.chance(85) ? random.pick([UVMF.none, UVMF.tlbFlush, UVMF.invlpg]) : random.pick([UVMF.all | UVMF.tlbFlush, 3, 0x5000 | UVMF.invlpg])
        if random.chance(1) { flags = random.next() }
        let frame = random.chance(85) ? 180 + random.below(90) : random.pick([1, 4, 200, 201, TestDomain.ramFrames + 3])
        var value = entry(frame, random.chance(85) ? random.pick([rwLeaf, roLeaf, rwLeaf | PTE.user | PTE.dirty]) : random.pick([0, PTE.pse | rwLeaf, rwLeaf | (1 << 62)]))
        if random.chance(2) { value = random.next() }
        return (.updateVAMapping, le(value), address, flags)
    }
    if random.chance(65) {
        let count: UInt64 = random.chance(85) ? 1 : random.pick([2, 3, 5])
        var payload: [UInt8] = []
        for _ in 0..<count {
            let command = random.chance(90) ? random.pick([MMUUpdateCommand.normalPTUpdate, MMUUpdateCommand.ptUpdatePreserveAD])
                : random.pick([MMUUpdateCommand.machphysUpdate, MMUUpdateCommand.ptUpdateNoTranslate])
            let slot: GuestPhysicalAddress
            var value: UInt64
            if random.chance(80) {
                let table = random.pick([TestDomain.l1Frame, TestDomain.l1Frame, FrameNumber(201), FrameNumber(202)])
                let index = random.chance(90) ? Int(180 + random.below(80)) : Int(random.pick([200, 201, 202, 203, 1, 4]))
                slot = TestDomain.entryAddress(table, index)
                let frame = random.chance(85) ? 180 + random.below(90)
                    : random.pick([1, 2, 4, 5, 200, 201, 202, 203, TestDomain.ramFrames + 3])
                var flags = random.chance(80) ? PTE.present : 0
                for bit in [PTE.rw, PTE.user, PTE.accessed, PTE.dirty, PTE.global, PTE.nx] where random.chance(45) { flags |= bit }
                if random.chance(4) { flags |= random.pick([PTE.pse, 1 << 62, 1 << 9]) }
                value = entry(frame, flags)
            } else {
                slot = TestDomain.entryAddress(random.chance(80) ? TestDomain.l2Frame : FrameNumber(200), Int(random.pick([2, 3, 4, 300, 510])))
                value = random.chance(25) ? 0 : entry(random.pick([201, 202, 203, 4, 190]), random.chance(90) ? tableFlags : tableFlags | PTE.pse)
            }
            if random.chance(2) { value = random.next() }
            payload += MMUUpdate(ptr: slot.rawValue | command, val: value).encode()
        }
        return (.mmuUpdate, payload, count, 0)
    }
    let count: UInt64 = random.chance(60) ? 2 : random.chance(85) ? 1 : 3
    var payload: [UInt8] = []
    for _ in 0..<count {
        let op: MMUExtOp
        switch random.below(10) {
        case 0, 1, 2: op = MMUExtOp(cmd: MMUExtCommand.newBaseptr, arg1: random.chance(90) ? random.pick([1, 200]) : random.pick([201, 4, 9999]))
        case 3, 4, 5: op = MMUExtOp(cmd: MMUExtCommand.newUserBaseptr, arg1: random.chance(90) ? random.pick([0, 1, 200]) : random.pick([201, 4]))
        case 6: op = MMUExtOp(cmd: MMUExtCommand.tlbFlushLocal)
        case 7: op = MMUExtOp(cmd: MMUExtCommand.invlpgLocal, arg1: TestDomain.va(200 + random.below(8)))
        case 8: op = MMUExtOp(cmd: random.pick([MMUExtCommand.pinL1Table, MMUExtCommand.unpinTable]),
                              arg1: random.chance(80) ? random.pick([203, 203, 201, 202]) : random.pick([4, 190, 200, 9999]))
        default: op = MMUExtOp(cmd: random.pick([MMUExtCommand.tlbFlushAll, MMUExtCommand.setLDT, 99]))
        }
        payload += op.encode()
    }
    return (.mmuextOp, payload, count, 0)
}

/// Where a random multicall's entries go, and each entry's own request list.
private let multicallList = TestDomain.buffer + 0xa000
private func entryList(_ index: Int) -> UInt64 { TestDomain.mmuList + 0x200 * UInt64(index) }

/// A random multicall of page-table hypercalls, as Linux batches them (with entries the
/// core leaves to the host mixed in): the list's address, its count, and the memory
/// to write (the entries, and each one's request list).
private func randomMulticall(_ random: inout SplitMix) -> (list: UInt64, count: UInt64, writes: [(UInt64, [UInt8])]) {
    // Now and then the list starts so that an entry straddles a page boundary.
    let list = random.chance(10) ? multicallList + 0x1000 - 0x60 : multicallList
    let count = 1 + random.below(5)
    var writes: [(UInt64, [UInt8])] = []
    var entries: [UInt8] = []
    for index in 0..<Int(count) {
        let call = randomHypercall(&random)
        let arguments: [UInt64]
        var op = call.number.rawValue
        if call.number == .updateVAMapping {
            arguments = [call.count, le(UInt64.self, call.payload), call.flags]
        } else {
            writes.append((entryList(index), call.payload))
            arguments = [entryList(index), call.count, 0, UInt64(DomainID.`self`)]
        }
        if random.chance(4) { op = random.pick([Hypercall.xenVersion.rawValue, Hypercall.multicall.rawValue, Hypercall.iret.rawValue]) }
        entries += MulticallEntry(op: op, result: 0x5a5a, args: arguments).encode()
    }
    writes.append((list, entries))
    return (list, count, writes)
}

/// Each entry's result field of a multicall list.
private func multicallResults(_ test: TestDomain, list: UInt64, count: UInt64) throws -> [UInt64] {
    try (0..<count).map { index in
        le(UInt64.self, try test.read(list + index * UInt64(MulticallEntry.size) + UInt64(MulticallEntry.resultOffset), count: 8))
    }
}

@Suite("The in-VM ring-0 core")
struct Ring0CoreTests {
    @Test("Completes what the host would, to the bit, and defers the rest untouched or continued (4000 random hypercalls)")
    func differential() throws {
        let reference = try TestDomain()
        let harness = try CoreHarness()
        let test = harness.test
        try prepare(reference)
        try prepare(test)
        #expect(try MMUState(reference) == MMUState(test))

        var random = SplitMix(seed: 0x646f_6d75_73)
        var completed: [Hypercall: Int] = [:]
        var deferred = 0
        var continued = 0
        for step in 0..<4000 {
            // Frame 203, while no table, gets new contents now and then (the same in
            // both domains), for pins to validate.
            if try reference.domain.state.withLock({ $0.pages[FrameNumber(203)]?.typeCount }) == 0 && random.chance(10) {
                var entries: [Int: UInt64] = [:]
                for _ in 0..<Int(random.below(6)) {
                    let frame = random.chance(85) ? 180 + random.below(90) : random.pick([1, 4, 200, 201, 203, TestDomain.ramFrames + 3])
                    entries[Int(random.below(512))] = entry(frame, random.pick([rwLeaf, roLeaf, roLeaf, rwLeaf | PTE.global, PTE.pse | rwLeaf]))
                }
                try reference.writeTable(203, entries)
                try test.writeTable(203, entries)
            }
            let number: Hypercall
            var arguments: [UInt64]
            var writes: [(UInt64, [UInt8])]
            var results: (list: UInt64, count: UInt64)?
            if random.chance(20) {
                let batch = randomMulticall(&random)
                number = .multicall
                arguments = [batch.list, batch.count]
                writes = batch.writes
                results = (batch.list, batch.count)
            } else {
                let call = randomHypercall(&random)
                number = call.number
                arguments = call.number == .updateVAMapping ? [call.count, le(UInt64.self, call.payload), call.flags]
                    : [TestDomain.mmuList, call.count, 0, UInt64(DomainID.`self`)]
                writes = call.number == .updateVAMapping ? [] : [(TestDomain.mmuList, call.payload)]
            }
            // The host, alone.
            for (address, bytes) in writes { try reference.write(bytes, at: address) }
            reference.call(number: number.rawValue, arguments)
            reference.vcpu.pendingWork = PendingMachineWork()
            // The core first, then the host if it deferred: with the registers as the
            // core left them (a batch done in part continues from where it stopped).
            for (address, bytes) in writes { try test.write(bytes, at: address) }
            let before = try MMUState(test)
            let entriesBefore = try results.map { try test.read($0.list, count: Int($0.count) * MulticallEntry.size) }
            let result: Int64
            if let rax = try harness.core(number.rawValue, arguments) {
                completed[number, default: 0] += 1
                result = Int64(bitPattern: rax)
            } else {
                deferred += 1
                let moved = [harness.register(CoreLayout.savedRDI), harness.register(CoreLayout.savedRSI)]
                // A multicall whose first entry, an mmu_update batch, was done in part
                // carries the rest in that entry's arguments.
                let entriesAfter = try results.map { try test.read($0.list, count: Int($0.count) * MulticallEntry.size) }
                if moved == Array(arguments.prefix(2)) && entriesAfter == entriesBefore {
                    let after = try MMUState(test)
                    if after != before { Issue.record("step \(step): a deferral changed state: \(after.differences(from: before))") }
                } else {
                    continued += 1
                    arguments[0] = moved[0]
                    arguments[1] = moved[1]
                }
                test.call(number: number.rawValue, arguments)
                result = test.result
            }
            if let results {
                let expected = try multicallResults(reference, list: results.list, count: results.count)
                let actual = try multicallResults(test, list: results.list, count: results.count)
                #expect(actual == expected, "step \(step): multicall results \(actual), the host's \(expected)")
            }
            test.vcpu.pendingWork = PendingMachineWork()
            try harness.clearRequests()
            #expect(result == reference.result, "step \(step): \(number) returned \(result), the host \(reference.result)")
            let expected = try MMUState(reference)
            let actual = try MMUState(test)
            if actual != expected { Issue.record("step \(step): \(number) left a different state: \(actual.differences(from: expected))") }
            if actual != expected || result != reference.result { break }
        }
        try test.checkPageBookkeeping()
        // Both paths were exercised, and the core's counters agree.
        #expect(completed[.mmuUpdate, default: 0] > 400 && completed[.mmuextOp, default: 0] > 100
                && completed[.updateVAMapping, default: 0] > 50 && completed[.multicall, default: 0] > 30
                && deferred > 300 && continued > 50,
                "completed \(completed), deferred \(deferred), continued \(continued)")
        // (mmu_updates completed inside multicalls count too.)
        #expect(harness.counter(CoreLayout.vcpuHandledCounts, Hypercall.multicall.rawValue) == UInt64(completed[.multicall, default: 0]))
        #expect(harness.counter(CoreLayout.vcpuHandledCounts, Hypercall.mmuUpdate.rawValue) > UInt64(completed[.mmuUpdate, default: 0]))
    }

    @Test("Linux's page-table batches (make read-only and pin an L1; unpin and make writable) complete in the VM as on the host")
    func pinBatches() throws {
        let reference = try TestDomain(vcpus: 1)
        let harness = try CoreHarness(vcpus: 1)
        let test = harness.test
        for domain in [reference, test] {
            try prepare(domain)
            // Frame 203 made writable once (a fresh page), then holding an L1's entries.
            #expect(try domain.setEntry(TestDomain.l1Entry(mapping: 203), entry(203, rwLeaf)) == 0)
            try domain.writeTable(203, [0: entry(190, rwLeaf), 1: entry(191, roLeaf), 7: entry(190, rwLeaf | PTE.user)])
        }
        let mapping = TestDomain.va(203)
        let pin = [MulticallEntry(op: Hypercall.updateVAMapping.rawValue, args: [mapping, entry(203, roLeaf), 0]),
                   MulticallEntry(op: Hypercall.mmuextOp.rawValue, args: [TestDomain.mmuList, 1, 0, UInt64(DomainID.`self`)])]
        let unpin = [MulticallEntry(op: Hypercall.mmuextOp.rawValue, args: [TestDomain.mmuList, 1, 0, UInt64(DomainID.`self`)]),
                     MulticallEntry(op: Hypercall.updateVAMapping.rawValue, args: [mapping, entry(203, rwLeaf), 0])]
        for (batch, op) in [(pin, MMUExtCommand.pinL1Table), (unpin, MMUExtCommand.unpinTable), (pin, MMUExtCommand.pinL1Table)] {
            for domain in [reference, test] {
                try domain.write(MMUExtOp(cmd: op, arg1: 203).encode(), at: TestDomain.mmuList)
                try domain.write(batch.flatMap { $0.encode() }, at: multicallList)
            }
            reference.call(.multicall, multicallList, 2)
            #expect(reference.result == 0)
            #expect(try harness.core(Hypercall.multicall.rawValue, [multicallList, 2]) == 0, "the core completes the batch")
            #expect(try multicallResults(test, list: multicallList, count: 2) == [0, 0])
            let expected = try MMUState(reference)
            let actual = try MMUState(test)
            #expect(actual == expected, "\(actual.differences(from: expected))")
        }
        // The first pin found the frame writable before: the TLB is flushed.
        #expect(try harness.request(CoreLayout.vcpuRequestFlush) == 1)
        #expect(test.domain.state.withLock { $0.pages[FrameNumber(203)] } == PageInfo(type: .l1, typeCount: 1, pinned: true, mappings: 1))
        #expect(try test.tableEntry(203, 1) == kernelL1(191, roLeaf))   // adjusted as Xen does
        try test.checkPageBookkeeping()

        // Pinned twice, or an L1 mapping itself writable: the host's (-EINVAL), nothing changed.
        try harness.clearRequests()
        let single = [TestDomain.mmuList, 1, 0, UInt64(DomainID.`self`)]
        try test.write(MMUExtOp(cmd: MMUExtCommand.pinL1Table, arg1: 203).encode(), at: TestDomain.mmuList)
        #expect(try harness.core(Hypercall.mmuextOp.rawValue, single) == nil)
        try test.writeTable(204, [3: entry(204, rwLeaf)])
        try test.write(MMUExtOp(cmd: MMUExtCommand.pinL1Table, arg1: 204).encode(), at: TestDomain.mmuList)
        let before = try MMUState(test)
        #expect(try harness.core(Hypercall.mmuextOp.rawValue, single) == nil)
        #expect(try MMUState(test) == before)
        test.call(.mmuextOp, single[0], single[1], single[2], single[3])
        #expect(test.result == -Int64(XenError.EINVAL.rawValue))
    }

    @Test("An L1 pin that must flush other vCPUs' TLBs is the host's, which asks them")
    func pinFlushesOtherVCPUs() throws {
        let harness = try CoreHarness(vcpus: 2)
        let test = harness.test
        try prepare(test)
        // Frame 204 mapped writable (a fresh page), then read-only: a writable
        // translation may linger in any vCPU's TLB.
        #expect(try test.setEntry(TestDomain.l1Entry(mapping: 204), entry(204, rwLeaf)) == 0)
        #expect(try test.setEntry(TestDomain.l1Entry(mapping: 204), entry(204, roLeaf)) == 0)
        test.vcpu.pendingWork = PendingMachineWork()
        let single = [TestDomain.mmuList, 1, 0, UInt64(DomainID.`self`)]
        try test.write(MMUExtOp(cmd: MMUExtCommand.pinL1Table, arg1: 204).encode(), at: TestDomain.mmuList)
        let before = try MMUState(test)
        #expect(try harness.core(Hypercall.mmuextOp.rawValue, single) == nil)
        #expect(try MMUState(test) == before)
        test.call(.mmuextOp, single[0], single[1], single[2], single[3])
        #expect(test.result == 0)
        #expect(test.vcpu.pendingWork.flushAll)
        let asked = test.domain.vcpus[1].remoteFlush.load(ordering: .acquiring)
        #expect(asked)
        // Pinning a frame never writable asks no one.
        test.domain.vcpus[1].remoteFlush.store(false, ordering: .releasing)
        test.vcpu.pendingWork = PendingMachineWork()
        try test.write(MMUExtOp(cmd: MMUExtCommand.unpinTable, arg1: 204).encode(), at: TestDomain.mmuList)
        #expect(try harness.core(Hypercall.mmuextOp.rawValue, single) == 0)
        try test.write(MMUExtOp(cmd: MMUExtCommand.pinL1Table, arg1: 204).encode(), at: TestDomain.mmuList)
        #expect(try harness.core(Hypercall.mmuextOp.rawValue, single) == 0, "an L1 again: no flush, so the core's")
        let askedAgain = test.domain.vcpus[1].remoteFlush.load(ordering: .acquiring)
        #expect(!askedAgain)
    }

    @Test("A base-pointer switch asks for the new CR3; flushes and invlpg are requested as asked")
    func requests() throws {
        let harness = try CoreHarness()
        let test = harness.test
        try prepare(test)
        try test.write(MMUExtOp(cmd: MMUExtCommand.newBaseptr, arg1: 200).encode(), at: TestDomain.mmuList)
        #expect(try harness.core(Hypercall.mmuextOp.rawValue, [TestDomain.mmuList, 1, 0, UInt64(DomainID.`self`)]) == 0)
        #expect(try harness.request(CoreLayout.vcpuRequestCR3) == 200 << 12)
        #expect(test.vcpu.kernelTable == FrameNumber(200))
        try harness.clearRequests()

        try test.write(MMUExtOp(cmd: MMUExtCommand.invlpgLocal, arg1: 0x1234_5000).encode(), at: TestDomain.mmuList)
        #expect(try harness.core(Hypercall.mmuextOp.rawValue, [TestDomain.mmuList, 1, 0, UInt64(DomainID.`self`)]) == 0)
        #expect(try harness.request(CoreLayout.vcpuRequestInvalidate) == 1)
        #expect(try harness.request(CoreLayout.vcpuInvalidateAddress) == 0x1234_5000)
        #expect(try harness.request(CoreLayout.vcpuRequestCR3) == 0)
        try harness.clearRequests()

        try test.write(MMUExtOp(cmd: MMUExtCommand.tlbFlushLocal).encode(), at: TestDomain.mmuList)
        #expect(try harness.core(Hypercall.mmuextOp.rawValue, [TestDomain.mmuList, 1, 0, UInt64(DomainID.`self`)]) == 0)
        #expect(try harness.request(CoreLayout.vcpuRequestFlush) == 1)
    }

    @Test("Defers when disabled, in guest user mode, for another domain, with a done pointer, or for other hypercalls")
    func deferrals() throws {
        let harness = try CoreHarness()
        let test = harness.test
        let slot = TestDomain.l1Entry(mapping: 190)
        try test.write(MMUUpdate(ptr: slot.rawValue, val: entry(190, rwLeaf)).encode(), at: TestDomain.mmuList)
        let update = Hypercall.mmuUpdate.rawValue
        let arguments = [TestDomain.mmuList, 1, 0, UInt64(DomainID.`self`)]

        test.domain.setCoreEnabled(false)
        #expect(try harness.core(update, arguments) == nil)
        test.domain.setCoreEnabled(true)
        // From guest user mode a `syscall` is a system call for the guest kernel (without
        // a syscall callback, the host's): not a hypercall, so not counted as one.
        test.vcpu.mode = .user
        #expect(try harness.core(update, arguments) == nil)
        test.vcpu.mode = .kernel
        #expect(try harness.core(update, [TestDomain.mmuList, 1, 0, 7]) == nil)
        #expect(try harness.core(update, [TestDomain.mmuList, 1, TestDomain.mmuDone, UInt64(DomainID.`self`)]) == nil)
        #expect(try harness.core(Hypercall.xenVersion.rawValue, [0, 0]) == nil)
        // The list must be mapped (the core never faults).
        #expect(try harness.core(update, [0x4000_0000, 1, 0, UInt64(DomainID.`self`)]) == nil)
        #expect(try test.physical(slot) == kernelL1(190, rwLeaf))   // unchanged: still the fixture's mapping
        #expect(harness.counter(CoreLayout.vcpuDeferredCounts, update) == 4)

        // The domain's own id is as good as DOMID_SELF.
        try test.write(MMUUpdate(ptr: slot.rawValue, val: entry(190, roLeaf)).encode(), at: TestDomain.mmuList)
        #expect(try harness.core(update, [TestDomain.mmuList, 1, 0, UInt64(test.domain.id)]) == 0)
        #expect(try test.physical(slot) == kernelL1(190, roLeaf))
        #expect(harness.counter(CoreLayout.vcpuHandledCounts, update) == 1)
    }

    @Test("An int $0x82 is a hypercall only from the hypercall page's own stubs")
    func hypercallPageEntry() throws {
        let harness = try CoreHarness()
        let test = harness.test
        let page = TestDomain.va(TestDomain.codePFN)
        test.domain.setHypercallPage(page)
        let slot = TestDomain.l1Entry(mapping: 190)
        try test.write(MMUUpdate(ptr: slot.rawValue, val: entry(190, roLeaf)).encode(), at: TestDomain.mmuList)
        let arguments = [TestDomain.mmuList, 1, 0, UInt64(DomainID.`self`)]
        let afterInt = page + UInt64(Hypercall.mmuUpdate.rawValue) * 32 + 7
        #expect(try harness.core(Hypercall.mmuUpdate.rawValue, arguments, entry: CoreLayout.entryHypercallPage, rip: afterInt + 1) == nil)
        #expect(try harness.core(Hypercall.mmuUpdate.rawValue, arguments, entry: CoreLayout.entryHypercallPage, rip: page + 0x2000) == nil)
        #expect(try harness.core(Hypercall.mmuUpdate.rawValue, arguments, entry: 7, rip: afterInt) == nil)
        #expect(try harness.core(Hypercall.mmuUpdate.rawValue, arguments, entry: CoreLayout.entryHypercallPage, rip: afterInt) == 0)
        #expect(try test.physical(slot) == kernelL1(190, roLeaf))
    }

    @Test("The core's copy of Xen's entry rules agrees with the host's")
    func entryRules() {
        #expect(CorePTE.present == PTE.present && CorePTE.rw == PTE.rw && CorePTE.user == PTE.user)
        #expect(CorePTE.accessed == PTE.accessed && CorePTE.dirty == PTE.dirty && CorePTE.pse == PTE.pse)
        #expect(CorePTE.global == PTE.global && CorePTE.nx == PTE.nx && CorePTE.addressMask == PTE.addressMask)
        #expect(PageTypeCode.writable == PageType.writable.rawValue && PageTypeCode.l1 == PageType.l1.rawValue)
        #expect(PageTypeCode.l4 == PageType.l4.rawValue && PageTypeCode.segmentDescriptor == PageType.segmentDescriptor.rawValue)
        #expect(CorePTE.firstHypervisorSlot == 256 && CorePTE.endHypervisorSlot == 272)
    }
}

@Suite("The in-VM ring-0 core: vcpu_op")
struct Ring0CoreVCPUOpTests {
    @Test("VCPUOP_is_up for vCPUs the domain lacks is -ENOENT as from the host; the rest is deferred")
    func isUp() throws {
        let harness = try CoreHarness()
        let test = harness.test   // two vCPUs
        let number = Hypercall.vcpuOp.rawValue
        for id: UInt64 in [0, 1, 2, 3, 8191, 0xffff_ffff, 0x1_0000_0001, 0x1_0000_0002] {
            let core = try harness.core(number, [VCPUOp.isUp, id, 0])
            test.call(.vcpuOp, VCPUOp.isUp, id, 0)
            if let core {
                #expect(Int64(bitPattern: core) == test.result, "vCPU \(id)")
                #expect(Int64(bitPattern: core) == TestDomain.error(.ENOENT))
            } else {
                #expect(id & 0xffff_ffff < 2, "vCPU \(id) exists, so only the host can answer")
            }
        }
        #expect(harness.counter(CoreLayout.vcpuHandledCounts, number) == 5)
        // Other commands go to the host, even for absent vCPUs.
        #expect(try harness.core(number, [VCPUOp.up, 5, 0]) == nil)
    }
}

@Suite("The in-VM ring-0 core: guest state")
struct Ring0CoreGuestStateTests {
    @Test("stack_switch and set_segment_base set what the host's handlers set")
    func guestState() throws {
        let harness = try CoreHarness()
        let reference = try TestDomain()
        let test = harness.test
        #expect(try harness.core(Hypercall.stackSwitch.rawValue, [0xe02b, 0xffff_c900_0001_3f58]) == 0)
        reference.call(.stackSwitch, 0xe02b, 0xffff_c900_0001_3f58)
        #expect(test.vcpu.kernelSS == reference.vcpu.kernelSS && test.vcpu.kernelSP == reference.vcpu.kernelSP)
        #expect(test.vcpu.kernelSS == 0xe02b && test.vcpu.kernelSP == 0xffff_c900_0001_3f58)

        test.vcpu.inactiveGSBase = 0x1234
        reference.vcpu.inactiveGSBase = 0x1234
        #expect(try harness.core(Hypercall.setSegmentBase.rawValue, [SegmentBase.gsUserSelector, 0x2b]) == 0)
        reference.call(.setSegmentBase, SegmentBase.gsUserSelector, 0x2b)
        #expect(test.vcpu.userGSSelector == reference.vcpu.userGSSelector && test.vcpu.inactiveGSBase == reference.vcpu.inactiveGSBase)

        #expect(try harness.core(Hypercall.setSegmentBase.rawValue, [SegmentBase.gsUser, 0x7fff_0000_1000]) == 0)
        reference.call(.setSegmentBase, SegmentBase.gsUser, 0x7fff_0000_1000)
        #expect(test.vcpu.inactiveGSBase == reference.vcpu.inactiveGSBase)

        // FS and the kernel GS are live registers: the core asks the entry code to write them.
        #expect(try harness.core(Hypercall.setSegmentBase.rawValue, [SegmentBase.fs, 0x7f00_0000_2000]) == 0)
        reference.call(.setSegmentBase, SegmentBase.fs, 0x7f00_0000_2000)
        #expect(try harness.request(CoreLayout.vcpuRequestMSR) == 0xc000_0100)
        #expect(try harness.request(CoreLayout.vcpuRequestMSRValue) == reference.context.fsBase)
        #expect(try harness.core(Hypercall.setSegmentBase.rawValue, [SegmentBase.gsKernel, 0xffff_8880_1f00_0000]) == 0)
        reference.call(.setSegmentBase, SegmentBase.gsKernel, 0xffff_8880_1f00_0000)
        #expect(try harness.request(CoreLayout.vcpuRequestMSR) == 0xc000_0101)
        #expect(try harness.request(CoreLayout.vcpuRequestMSRValue) == reference.context.gsBase)

        // What the host refuses, the core leaves to it.
        for (which, base): (UInt64, UInt64) in [(SegmentBase.fs, 1 << 47), (SegmentBase.gsUser, 0x8000_0000_0000_0000), (7, 0)] {
            #expect(try harness.core(Hypercall.setSegmentBase.rawValue, [which, base]) == nil)
            reference.call(.setSegmentBase, which, base)
            #expect(reference.result == TestDomain.error(.EINVAL))
        }
    }

    @Test("xen_version(XENVER_version) answers as the host (the upcall it may deliver: Ring0CoreTrapTests)")
    func xenVersion() throws {
        let harness = try CoreHarness()
        let test = harness.test
        // vcpu_info still in shared_info, outside RAM: the host's.
        #expect(try harness.core(Hypercall.xenVersion.rawValue, [0, 0]) == nil)
        // Registered in RAM (frame 100), as Linux does.
        let info = GuestPhysicalAddress(100 * 4096 + 64)
        test.vcpu.vcpuInfoAddress = info
        try test.memory.write(UInt8(0), at: info)
        try test.memory.write(UInt8(0), at: GuestPhysicalAddress(info.rawValue + 1))
        let version = try #require(try harness.core(Hypercall.xenVersion.rawValue, [0, 0]))
        test.call(.xenVersion, 0, 0)
        #expect(version == test.context.rax && version == 4 << 16 | 19)
        // Pending and masked: nothing to deliver yet.
        try test.memory.write(UInt8(1), at: info)
        try test.memory.write(UInt8(1), at: GuestPhysicalAddress(info.rawValue + 1))
        #expect(try harness.core(Hypercall.xenVersion.rawValue, [0, 0]) == version)
        // Pending and unmasked, but no event callback: nothing to deliver, as on the host.
        try test.memory.write(UInt8(0), at: GuestPhysicalAddress(info.rawValue + 1))
        #expect(try harness.core(Hypercall.xenVersion.rawValue, [0, 0]) == version)
        // Other commands copy structures: the host's.
        #expect(try harness.core(Hypercall.xenVersion.rawValue, [1, TestDomain.buffer]) == nil)
    }
}

@Suite("The in-VM ring-0 core: iret")
struct Ring0CoreIretTests {
    static let stack = TestDomain.buffer + 0x800
    static let info = GuestPhysicalAddress(100 * 4096 + 64)

    /// Xen's iret context: rax, r11, rcx, flags, rip, cs, rflags, rsp, ss.
    static func context(rip: UInt64 = 0xffff_ffff_8100_1234, cs: UInt64 = 0xe030, rflags: UInt64 = 0x246,
                        rsp: UInt64 = 0xffff_c900_0000_3f00, ss: UInt64 = 0xe02b, flags: UInt64 = 0) -> [UInt64] {
        [0x1111, 0x2222, 0x3333, flags, rip, cs, rflags, rsp, ss]
    }

    /// Both domains get the context on their stack and vcpu_info in RAM with `pending`
    /// and `masked`.
    static func prepare(_ test: TestDomain, _ words: [UInt64], pending: UInt8, masked: UInt8) throws {
        for (index, word) in words.enumerated() { try test.write(word, at: stack + UInt64(index) * 8) }
        test.vcpu.vcpuInfoAddress = info
        try test.memory.write(pending, at: info)
        try test.memory.write(masked, at: GuestPhysicalAddress(info.rawValue + 1))
    }

    /// Runs the iret in the core and in the host; when the core completes it, the
    /// registers, frame and event mask must be the host's. Returns whether it did.
    static let fastIOFlag = GuestPhysicalAddress(100 * 4096 + 2048)

    /// What a return to user mode needs: a user L4, the user selectors the host last
    /// resumed with (`userSelectors`), the fast-path flag's place, a virtual IOPL.
    struct UserSetup {
        var userSelectors: (cs: UInt16, ss: UInt16)? = (0x33, 0x2b)
        var userTable = true
        var iopl: UInt8 = 1
        var kernelGS: UInt64 = 0xffff_8880_1fc0_0000
        var userGS: UInt64 = 0x7f00_dead_0000
    }

    static func prepareUser(_ test: TestDomain, _ setup: UserSetup) {
        if setup.userTable { test.vcpu.userTable = test.vcpu.kernelTable }
        test.vcpu.resumedUserSelectors = setup.userSelectors
        test.vcpu.virtualIOPL = setup.iopl
        test.vcpu.inactiveGSBase = setup.userGS
        test.context.gsBase = setup.kernelGS
    }

    static func compare(_ words: [UInt64], pending: UInt8 = 0, masked: UInt8 = 1, user: UserSetup? = nil,
                        sourceLocation: SourceLocation = #_sourceLocation) throws -> Bool {
        let harness = try CoreHarness()
        let reference = try TestDomain()
        try prepare(harness.test, words, pending: pending, masked: masked)
        try prepare(reference, words, pending: pending, masked: masked)
        if let user {
            prepareUser(harness.test, user)
            prepareUser(reference, user)
            harness.test.vcpu.setCoreWord(CoreLayout.vcpuFastIOFlag, try harness.hostAddress(fastIOFlag))
            try harness.test.memory.write(UInt8(1), at: fastIOFlag)   // as in kernel mode with IOPL 1
        }
        harness.setRegister(CoreLayout.savedRSP, stack)
        harness.setRegister(CoreLayout.savedR11, 0xaaaa)
        harness.setRegister(CoreLayout.savedRCX, 0xbbbb)
        reference.context.rsp = stack
        reference.context.r11 = 0xaaaa
        reference.context.rcx = 0xbbbb
        let done = try harness.core(Hypercall.iret.rawValue, []) != nil
        let outcome = reference.call(.iret)
        let coreMask: UInt8 = try harness.test.memory.read(at: GuestPhysicalAddress(info.rawValue + 1))
        guard done else {
            #expect(coreMask == masked, "a deferred iret leaves the mask", sourceLocation: sourceLocation)
            #expect(harness.register(CoreLayout.savedRSP) == stack, sourceLocation: sourceLocation)
            #expect(harness.test.vcpu.mode == .kernel, "a deferred iret leaves the mode", sourceLocation: sourceLocation)
            #expect(try harness.request(CoreLayout.vcpuRequestCR3) == 0 && harness.request(CoreLayout.vcpuRequestSwapGS) == 0,
                    sourceLocation: sourceLocation)
            return false
        }
        #expect(outcome == .contextReplaced, sourceLocation: sourceLocation)
        let host = reference.context
        let core = (rax: harness.register(CoreLayout.savedRAX), r11: harness.register(CoreLayout.savedR11),
                    rcx: harness.register(CoreLayout.savedRCX), rip: harness.register(CoreLayout.savedRIP),
                    cs: harness.register(CoreLayout.savedCS), rflags: harness.register(CoreLayout.savedRFlags),
                    rsp: harness.register(CoreLayout.savedRSP), ss: harness.register(CoreLayout.savedSS))
        #expect(core.rax == host.rax && core.r11 == host.r11 && core.rcx == host.rcx, sourceLocation: sourceLocation)
        #expect(core.rip == host.rip && core.rsp == host.rsp, sourceLocation: sourceLocation)
        #expect(core.cs == UInt64(host.cs) && core.ss == UInt64(host.ss), sourceLocation: sourceLocation)
        #expect(core.rflags == host.rflags, "rflags \(String(core.rflags, radix: 16)) vs \(String(host.rflags, radix: 16))", sourceLocation: sourceLocation)
        let hostMask: UInt8 = try reference.memory.read(at: GuestPhysicalAddress(info.rawValue + 1))
        #expect(coreMask == hostMask, sourceLocation: sourceLocation)
        #expect(harness.test.vcpu.mode == reference.vcpu.mode, sourceLocation: sourceLocation)
        if reference.vcpu.mode == .user, let user {
            // The host toggled in the context; the core asks entry.S to load the user
            // L4 and exchange the GS bases (which it does with the MSR and the block).
            #expect(reference.context.gsBase == user.userGS && reference.vcpu.inactiveGSBase == user.kernelGS, sourceLocation: sourceLocation)
            #expect(try harness.request(CoreLayout.vcpuRequestSwapGS) == 1, sourceLocation: sourceLocation)
            #expect(harness.test.vcpu.inactiveGSBase == user.userGS, "swapped on the way out, not by the core", sourceLocation: sourceLocation)
            let userTable = try #require(reference.vcpu.userTable)
            #expect(try harness.request(CoreLayout.vcpuRequestCR3) == userTable.rawValue << 12, sourceLocation: sourceLocation)
            let flag: UInt8 = try harness.test.memory.read(at: fastIOFlag)
            #expect(flag == (user.iopl >= 3 ? 1 : 0), "Xen's iopl_ok for ring 3", sourceLocation: sourceLocation)
        } else {
            #expect(try harness.request(CoreLayout.vcpuRequestCR3) == 0 && harness.request(CoreLayout.vcpuRequestSwapGS) == 0,
                    sourceLocation: sourceLocation)
        }
        return true
    }

    @Test("returns to user mode with the selectors the host last resumed complete in the VM as the host's do")
    func kernelToUser() throws {
        let user = Self.context(rip: 0x40_1000, cs: 0x33, rsp: 0x7fff_0000_0000, ss: 0x2b)
        #expect(try Self.compare(user, user: UserSetup()))
        #expect(try Self.compare(user, user: UserSetup(iopl: 3)))                      // user mode may cli too
        #expect(try Self.compare(Self.context(rip: 0x40_1000, cs: 0x33, rflags: 0x46, rsp: 0x7fff_0000_0000, ss: 0x2b),
                                 user: UserSetup()))                                    // stays masked
        #expect(try Self.compare(Self.context(rip: 0x40_1000, cs: 0x33, rsp: 0x7fff_0000_0000, ss: 0x28),
                                 user: UserSetup()))                                    // ss's RPL forced, as the host does
    }

    @Test("a return to user mode the core cannot vouch for is the host's")
    func kernelToUserDeferred() throws {
        let user = Self.context(rip: 0x40_1000, cs: 0x33, rsp: 0x7fff_0000_0000, ss: 0x2b)
        #expect(try Self.compare(user, user: UserSetup(userSelectors: nil)) == false)         // none resumed yet
        #expect(try Self.compare(user, user: UserSetup(userSelectors: (0x23, 0x2b))) == false) // another CS
        #expect(try Self.compare(user, user: UserSetup(userSelectors: (0x33, 0x3b))) == false) // another SS
        #expect(try Self.compare(user, pending: 1, masked: 1, user: UserSetup()) == false)    // an event to deliver
        #expect(try Self.compare(Self.context(rip: 0x0000_8000_0000_0000, cs: 0x33, rsp: 0x7fff_0000_0000, ss: 0x2b), user: UserSetup()) == false)   // non-canonical
        // No user page tables: the host crashes the domain, as Xen does.
        let harness = try CoreHarness()
        try Self.prepare(harness.test, user, pending: 0, masked: 1)
        Self.prepareUser(harness.test, UserSetup(userTable: false))
        harness.test.vcpu.setCoreWord(CoreLayout.vcpuFastIOFlag, try harness.hostAddress(Self.fastIOFlag))
        harness.setRegister(CoreLayout.savedRSP, Self.stack)
        #expect(try harness.core(Hypercall.iret.rawValue, []) == nil)
    }

    @Test("kernel-to-kernel irets complete in the VM exactly as the host completes them")
    func kernelToKernel() throws {
        #expect(try Self.compare(Self.context()))                                   // unmasks
        #expect(try Self.compare(Self.context(rflags: 0x46)))                      // stays masked
        #expect(try Self.compare(Self.context(rflags: 0x46), pending: 1))          // masked: pending waits
        #expect(try Self.compare(Self.context(flags: 1 << 8)))                     // VGCF_in_syscall keeps r11, rcx
        #expect(try Self.compare(Self.context(rflags: 0x3246 | 1 << 17 | 1 << 8))) // IOPL, VM cleared; TF kept
        #expect(try Self.compare(Self.context(cs: 0xe033, ss: 0xe02b)) == false)   // RPL 3: a user return
    }

    @Test("what the core cannot do as the host does is deferred with nothing changed")
    func deferred() throws {
        // Unmasking with an event pending: the host must deliver it.
        #expect(try Self.compare(Self.context(), pending: 1, masked: 1) == false)
        // A return to user mode before the host has resumed user mode once: the host's.
        #expect(try Self.compare(Self.context(rip: 0x40_1000, cs: 0xe033, rsp: 0x7fff_0000_0000, ss: 0xe02b)) == false)
        // Unusual selectors, non-canonical addresses.
        #expect(try Self.compare(Self.context(cs: 0x10)) == false)
        #expect(try Self.compare(Self.context(ss: 0x18)) == false)
        #expect(try Self.compare(Self.context(rip: 0x0000_8000_0000_0000)) == false)
        #expect(try Self.compare(Self.context(rsp: 0xffff_0000_0000_0000)) == false)
    }

    @Test("an iret context the core cannot read, or vcpu_info outside RAM, is the host's")
    func unreadable() throws {
        let harness = try CoreHarness()
        try Self.prepare(harness.test, Self.context(), pending: 0, masked: 1)
        harness.setRegister(CoreLayout.savedRSP, TestDomain.unmapped - 16)
        #expect(try harness.core(Hypercall.iret.rawValue, []) == nil)
        harness.setRegister(CoreLayout.savedRSP, Self.stack + 4)   // misaligned
        #expect(try harness.core(Hypercall.iret.rawValue, []) == nil)
        let fresh = try CoreHarness()
        for (index, word) in Self.context().enumerated() { try fresh.test.write(word, at: Self.stack + UInt64(index) * 8) }
        fresh.setRegister(CoreLayout.savedRSP, Self.stack)   // vcpu_info still in shared_info
        #expect(try fresh.core(Hypercall.iret.rawValue, []) == nil)
    }
}

@Suite("The in-VM ring-0 core: single-shot timer")
struct Ring0CoreTimerTests {
    @Test("VCPUOP_set_singleshot_timer at or after the host's armed timer is taken in the VM for the host; the rest is the host's")
    func singleshot() throws {
        let harness = try CoreHarness()
        let test = harness.test
        let number = Hypercall.vcpuOp.rawValue
        let request = TestDomain.buffer + 0x100
        func set(_ deadline: UInt64, vcpu: UInt64 = 0) throws -> UInt64? {
            try test.write(deadline, at: request)
            try test.write(UInt64(VCPUOp.singleshotFuture), at: request + 8)
            return try harness.core(number, [VCPUOp.setSingleshotTimer, vcpu, request])
        }
        // Not armed: the host's.
        #expect(try set(5_000_000) == nil)
        // Armed for 4 ms, with the TSC moment still ahead.
        test.vcpu.publishArmedTimer(armedAt: 4_000_000, armedTSC: UInt64.max)
        #expect(try set(5_000_000) == 0)
        #expect(test.vcpu.takeCoreTimerDeadline() == 5_000_000)
        #expect(test.vcpu.timer.withLock { $0.deadline } == 5_000_000)
        #expect(test.vcpu.takeCoreTimerDeadline() == nil, "taken once")
        #expect(try set(4_000_000) == 0, "at the armed moment is still in time")
        // Earlier than the armed timer, for another vCPU, or with the armed moment past
        // (its TSC value behind): the host's.
        #expect(try set(3_999_999) == nil)
        #expect(try set(6_000_000, vcpu: 1) == nil)
        test.vcpu.publishArmedTimer(armedAt: 4_000_000, armedTSC: 1)
        #expect(try set(6_000_000) == nil)
        #expect(test.vcpu.takeCoreTimerDeadline() == 4_000_000, "only the deadlines it took")
        // A request it cannot read.
        test.vcpu.publishArmedTimer(armedAt: 4_000_000, armedTSC: UInt64.max)
        #expect(try harness.core(number, [VCPUOp.setSingleshotTimer, 0, TestDomain.unmapped]) == nil)
    }
}
