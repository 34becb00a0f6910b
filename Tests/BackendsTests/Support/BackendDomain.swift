// The fixture of the backend tests: a domain over fake guest memory with just enough of
// an address space for its vCPU 0 to make hypercalls (event_channel_op), a fake clock,
// and helpers for shared_info's event bitmaps. (Test targets cannot share code; this
// follows Tests/HypervisorTests/Support/TestDomain.swift in a smaller form.)

import GuestMemory
import Hypervisor
import Synchronization
import Testing
import XenABI

/// A host clock that stands still.
final class FixedClock: HostClock {
    func monotonicNanoseconds() -> UInt64 { 5_000_000_000 }
    func wallClock() -> (seconds: UInt64, nanoseconds: UInt32) { (1_700_000_000, 0) }
    func guestTSC() -> UInt64 { 0 }
    let tscHz: UInt64 = 2_000_000_000
}

/// A domain with 64 RAM frames, mapped at `virtualBase + pfn·4K` by four page tables:
///
///     pfn 1 ... 4     L4, L3, L2, L1: mapped read-only
///     pfn 8           hypercall arguments
///     pfn 16, 17      console ring, xenstore ring (any RAM frame would do)
final class BackendDomain {
    static let ramFrames: UInt64 = 64
    static let virtualBase: UInt64 = 0xffff_ffff_8000_0000
    static let l4Frame = FrameNumber(1)
    static let tableFrames: [UInt64] = [1, 2, 3, 4]
    static let argumentPFN: UInt64 = 8
    static let consoleRingPFN: UInt64 = 16
    static let storeRingPFN: UInt64 = 17

    let memory: GuestMemory
    let layout: DomainLayout
    let log = HypervisorLog(capacity: 1024)
    let domain: Domain
    var context = GuestContext()

    init(id: UInt16 = 1, vcpus: Int = 1) throws {
        layout = DomainLayout.forTesting(ramFrames: Self.ramFrames)
        let ram = try GuestMemoryRegion(base: GuestPhysicalAddress(0), size: Self.ramFrames * 4096, name: "ram", isGuestRAM: true)
        let extra = DomainLayout.testingExtraPages(ramFrames: Self.ramFrames)
        let xen = try GuestMemoryRegion(base: GuestPhysicalAddress(Self.ramFrames * 4096), size: extra * 4096,
                                        name: "hypervisor", isGuestRAM: false)
        memory = GuestMemory(regions: [ram, xen])
        domain = Domain(id: id, name: "backend-test", memory: memory, layout: layout, vcpuCount: vcpus, log: log, clock: FixedClock())
        try writePageTables()
        try domain.pinInitialPageTables(Self.l4Frame)
        context.cs = FlatSelector.kernelCS64
        context.ss = FlatSelector.kernelSS64
    }

    private func writePageTables() throws {
        let table = PTE.present | PTE.rw | PTE.user | PTE.accessed | PTE.dirty
        let base = GuestVirtualAddress(Self.virtualBase)
        try memory.write(2 << 12 | table, at: Self.entry(1, base.tableIndex(level: 4)))
        try memory.write(3 << 12 | table, at: Self.entry(2, base.tableIndex(level: 3)))
        try memory.write(4 << 12 | table, at: Self.entry(3, base.tableIndex(level: 2)))
        for pfn in 0..<Self.ramFrames {
            let flags = Self.tableFrames.contains(pfn) ? PTE.present | PTE.accessed : PTE.present | PTE.rw | PTE.accessed
            try memory.write(pfn << 12 | flags, at: Self.entry(4, Int(pfn)))
        }
    }

    static func entry(_ frame: UInt64, _ index: Int) -> GuestPhysicalAddress { GuestPhysicalAddress(frame << 12 + UInt64(index) * 8) }
    static func va(_ pfn: UInt64) -> UInt64 { virtualBase + pfn * 4096 }
    static func address(_ pfn: UInt64, _ offset: Int = 0) -> GuestPhysicalAddress { GuestPhysicalAddress(pfn << 12 + UInt64(offset)) }

    // MARK: Hypercalls

    /// Makes hypercall `hypercall` from vCPU 0 (rax = number, arguments in rdi, rsi, rdx).
    func call(_ hypercall: Hypercall, _ arguments: UInt64...) -> Int64 {
        let padded = arguments + [UInt64](repeating: 0, count: max(0, 3 - arguments.count))
        context.rax = hypercall.rawValue
        context.rdi = padded[0]
        context.rsi = padded[1]
        context.rdx = padded[2]
        _ = Hypercalls.handle(vcpu: domain.vcpus[0], context: &context)
        return Int64(bitPattern: context.rax)
    }

    /// EVTCHNOP_send on `port`, as the guest's notify_remote_via_evtchn does.
    @discardableResult
    func send(port: UInt32) throws -> Int64 {
        try memory.write(port, at: Self.address(Self.argumentPFN))
        return call(.eventChannelOp, EventChannelOp.send, Self.va(Self.argumentPFN))
    }

    // MARK: shared_info

    func isPending(_ port: UInt32) -> Bool { domain.isPending(port: port) }

    /// Clears every pending bit, selector and upcall flag, as the guest's upcall handler would.
    func clearPending() throws {
        for word in 0..<64 {
            try memory.write(UInt64(0), at: GuestPhysicalAddress(layout.sharedInfo.rawValue + UInt64(SharedInfoLayout.evtchnPending + 8 * word)))
        }
        for vcpu in domain.vcpus {
            try memory.write(UInt64(0), at: Self.field(vcpu, VCPUInfoLayout.pendingSel))
            try memory.write(UInt8(0), at: Self.field(vcpu, VCPUInfoLayout.upcallPending))
        }
    }

    static func field(_ vcpu: VCPU, _ offset: Int) -> GuestPhysicalAddress {
        GuestPhysicalAddress(vcpu.vcpuInfoAddress.rawValue + UInt64(offset))
    }

    func upcallPending(vcpu: Int = 0) throws -> UInt8 {
        try memory.read(UInt8.self, at: Self.field(domain.vcpus[vcpu], VCPUInfoLayout.upcallPending))
    }

    func logged(_ text: String) -> Bool { log.lines().contains { $0.contains(text) } }
}

/// Collects what a backend hands out, in order.
final class Collector<Element: Sendable>: Sendable {
    private let items = Mutex<[Element]>([])
    func append(_ item: Element) { items.withLock { $0.append(item) } }
    func append(contentsOf more: [Element]) { items.withLock { $0 += more } }
    var all: [Element] { items.withLock { $0 } }
    func take() -> [Element] { items.withLock { items in defer { items = [] }; return items } }
}
