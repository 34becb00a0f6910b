// Helpers for the PV MMU tests: hypercall wrappers and a checker that recomputes every
// frame's type count and mapping count from the page tables themselves.

import GuestMemory
import Testing
import XenABI

@testable import Hypervisor

extension TestDomain {
    /// mmu_update/mmuext_op lists live in frame 24, the done count in frame 23, so tests
    /// can remap frames 20–22 freely.
    static let mmuList = buffer + 0x8000
    static let mmuDone = buffer + 0x7ff0

    /// mmu_update with `requests` (ptr | command, val); returns the result and the done count.
    @discardableResult
    func mmuUpdate(_ requests: [(ptr: UInt64, val: UInt64)], domid: UInt16 = DomainID.`self`) throws -> (result: Int64, done: UInt32) {
        try write(requests.flatMap { MMUUpdate(ptr: $0.ptr, val: $0.val).encode() }, at: Self.mmuList)
        try write(UInt32(0xdead), at: Self.mmuDone)
        call(.mmuUpdate, Self.mmuList, UInt64(requests.count), Self.mmuDone, UInt64(domid))
        return (result, try read(UInt32.self, at: Self.mmuDone))
    }

    /// One NORMAL_PT_UPDATE of the entry at machine address `address`.
    @discardableResult
    func setEntry(_ address: GuestPhysicalAddress, _ value: UInt64) throws -> Int64 {
        try mmuUpdate([(address.rawValue | MMUUpdateCommand.normalPTUpdate, value)]).result
    }

    /// mmuext_op with `ops`; returns the result and the done count.
    @discardableResult
    func mmuext(_ ops: [MMUExtOp], domid: UInt16 = DomainID.`self`) throws -> (result: Int64, done: UInt32) {
        try write(ops.flatMap { $0.encode() }, at: Self.mmuList)
        try write(UInt32(0xdead), at: Self.mmuDone)
        call(.mmuextOp, Self.mmuList, UInt64(ops.count), Self.mmuDone, UInt64(domid))
        return (result, try read(UInt32.self, at: Self.mmuDone))
    }

    /// Whether vCPU `index` was flagged for a TLB flush by another vCPU.
    func remoteFlushed(_ index: Int) -> Bool { domain.vcpus[index].remoteFlush.load(ordering: .relaxed) }
    var remoteFlushes: [Bool] { domain.vcpus.indices.map(remoteFlushed) }

    @discardableResult
    func pin(_ pfn: UInt64, level: Int) throws -> Int64 {
        try mmuext([MMUExtOp(cmd: UInt32(level - 1), arg1: pfn)]).result
    }

    @discardableResult
    func unpin(_ pfn: UInt64) throws -> Int64 {
        try mmuext([MMUExtOp(cmd: MMUExtCommand.unpinTable, arg1: pfn)]).result
    }

    /// Writes entries of a table under construction directly (the frame is not mapped
    /// anywhere, so this is what the guest could have done through any mapping).
    func writeTable(_ pfn: UInt64, _ entries: [Int: UInt64]) throws {
        for (index, value) in entries {
            try memory.write(value, at: Self.entryAddress(FrameNumber(pfn), index))
        }
    }

    func tableEntry(_ pfn: UInt64, _ index: Int) throws -> UInt64 {
        try physical(Self.entryAddress(FrameNumber(pfn), index))
    }

    /// Recomputes from the active page tables what every frame's bookkeeping must be
    /// (Xen's invariants: each present L1 entry holds a mapping reference, each RW one a
    /// writable type reference; each present Ln entry a type reference on its Ln-1 table;
    /// pins, base pointers and GDT frames one more) and records an issue for every difference.
    /// `extraWritable` are writable references held for other reasons (vcpu_info pages).
    func checkPageBookkeeping(extraWritable: [UInt64: UInt32] = [:], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let pages = domain.state.withLock { $0.pages.frames }
        var expectedCount = [UInt32](repeating: 0, count: pages.count)
        var expectedMappings = [UInt32](repeating: 0, count: pages.count)
        for (pfn, info) in pages.enumerated() where info.isActiveTable {
            let level = try #require(info.type.level)
            for index in 0..<512 {
                if level == 4 && index >= 256 && index < 272 { continue }
                let value = try tableEntry(UInt64(pfn), index)
                guard value & PTE.present != 0 else { continue }
                let target = Int((value & PTE.addressMask) >> 12)
                guard target < pages.count else { continue }
                if level == 1 {
                    expectedMappings[target] += 1
                    if value & PTE.rw != 0 { expectedCount[target] += 1 }
                } else {
                    expectedCount[target] += 1
                    #expect(pages[target].type == PageType.table(level: level - 1),
                            "frame \(target) referenced from L\(level) \(pfn)[\(index)] is \(pages[target].type)", sourceLocation: sourceLocation)
                }
            }
        }
        for (pfn, info) in pages.enumerated() where info.pinned { expectedCount[pfn] += 1 }
        for vcpu in domain.vcpus {
            if let table = vcpu.kernelTable { expectedCount[Int(table.rawValue)] += 1 }
            if let table = vcpu.userTable { expectedCount[Int(table.rawValue)] += 1 }
            for frame in vcpu.gdtFrames { expectedCount[Int(frame.rawValue)] += 1 }
        }
        for (pfn, extra) in extraWritable { expectedCount[Int(pfn)] += extra }
        for (pfn, info) in pages.enumerated() {
            #expect(info.typeCount == expectedCount[pfn], "type count of frame \(pfn) (\(info.type))", sourceLocation: sourceLocation)
            #expect(info.mappings == expectedMappings[pfn], "mappings of frame \(pfn)", sourceLocation: sourceLocation)
            if info.pinned { #expect(info.typeCount > 0 && info.type.level != nil, "pinned frame \(pfn)", sourceLocation: sourceLocation) }
        }
    }
}

/// The entry Xen stores for a guest's present L1 entry without _PAGE_USER.
func kernelL1(_ pfn: UInt64, _ flags: UInt64) -> UInt64 {
    pfn << 12 | flags | PTE.user | PTE.guestKernel
}
