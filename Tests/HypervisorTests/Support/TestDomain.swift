// The fixture every hypervisor test builds on: a domain over fake guest memory with a
// small set of validated, pinned page tables, a fake clock and a recording waker.

import GuestMemory
import Synchronization
import Testing
import XenABI

@testable import Hypervisor

/// A host clock the test moves by hand.
final class FakeClock: HostClock {
    let now = Atomic<UInt64>(5_000_000_000)
    let tsc = Atomic<UInt64>(0)
    let tscHz: UInt64 = 2_000_000_000

    func monotonicNanoseconds() -> UInt64 { now.load(ordering: .relaxed) }
    func wallClock() -> (seconds: UInt64, nanoseconds: UInt32) { (1_700_000_000, 0) }
    func guestTSC() -> UInt64 { tsc.load(ordering: .relaxed) }

    func advance(nanoseconds: UInt64) { now.add(nanoseconds, ordering: .relaxed) }
}

/// A `VCPUWaker` that counts wakes.
final class RecordingWaker: VCPUWaker {
    let count = Atomic<Int>(0)
    func wake() { count.add(1, ordering: .relaxed) }
    var wakes: Int { count.load(ordering: .relaxed) }
}

/// A domain with 512 RAM frames and this initial address space (VA = base + pfn·4K):
///
///     pfn 0           unused
///     pfn 1 ... 5     L4, L3, L2, L1 (pfns 0..<512), L1 (Xen pages): mapped read-only
///     pfn 8           code page (rip starts here)
///     pfn 9 ..< 16    kernel stack (rsp starts at the top, va(16))
///     pfn 16 ..< 64   the guest buffer, for hypercall arguments
///     pfn 64 ..< 256  more ordinary read-write pages
///     pfn 256 ..< 512 not mapped: free for tests (new page tables), and va(256)
///                     is an unmapped address
///
/// base + 2 MiB maps shared_info (entry 0) and the first grant frame (entry 1)
/// through the second L1.
final class TestDomain {
    static let ramFrames: UInt64 = 512
    static let virtualBase: UInt64 = 0xffff_ffff_8000_0000
    static let l4Frame = FrameNumber(1)
    static let l3Frame = FrameNumber(2)
    static let l2Frame = FrameNumber(3)
    static let l1Frame = FrameNumber(4)
    static let xenPagesL1Frame = FrameNumber(5)
    static let pageTableFrames: [FrameNumber] = [l4Frame, l3Frame, l2Frame, l1Frame, xenPagesL1Frame]
    static let codePFN: UInt64 = 8
    static let stackTopPFN: UInt64 = 16
    static let bufferPFN: UInt64 = 16
    static let bufferPages: UInt64 = 48
    static let mappedPFNs: Range<UInt64> = 0..<256
    static let firstFreePFN: UInt64 = 256
    /// Flags the fixture's tables use, as Xen's domain builder writes them.
    static let tableFlags: UInt64 = PTE.present | PTE.rw | PTE.user | PTE.accessed | PTE.dirty
    static let writableLeaf: UInt64 = PTE.present | PTE.rw | PTE.accessed
    static let readOnlyLeaf: UInt64 = PTE.present | PTE.accessed
    /// The entries the test layout asks for in the hypervisor's L4 slots.
    static let hypervisorSlots: [(slot: Int, entry: UInt64)] = [
        (256, 0x7_0000_0000 | PTE.present | PTE.user | PTE.accessed),
        (258, 0x7_0000_1000 | PTE.present | PTE.rw | PTE.accessed),
    ]

    let memory: GuestMemory
    let layout: DomainLayout
    let log: HypervisorLog
    let clock = FakeClock()
    let domain: Domain
    let wakers: [RecordingWaker]
    /// vCPU 0's registers, as the machine layer would pass them.
    var context = GuestContext()
    let console = ConsoleCapture()

    var vcpu: VCPU { domain.vcpus[0] }
    var waker: RecordingWaker { wakers[0] }

    init(vcpus: Int = 2, id: UInt16 = 1, cpuid: CPUIDPolicy = CPUIDPolicy(hostLeaves: [])) throws {
        var layout = DomainLayout.forTesting(ramFrames: Self.ramFrames)
        layout.hypervisorL4Entries = Self.hypervisorSlots
        self.layout = layout
        let ram = try GuestMemoryRegion(base: GuestPhysicalAddress(0), size: Self.ramFrames * pageSize, name: "ram", isGuestRAM: true)
        let extra = DomainLayout.testingExtraPages(ramFrames: Self.ramFrames)
        let xen = try GuestMemoryRegion(base: GuestPhysicalAddress(Self.ramFrames * pageSize), size: extra * pageSize,
                                        name: "hypervisor", isGuestRAM: false)
        memory = GuestMemory(regions: [ram, xen])
        log = HypervisorLog(capacity: 1024)
        domain = Domain(id: id, name: "test", memory: memory, layout: layout, vcpuCount: vcpus, log: log,
                        clock: clock, cpuid: cpuid, handle: Array(1...16))
        wakers = domain.vcpus.map { vcpu in
            let waker = RecordingWaker()
            vcpu.waker.withLock { $0 = waker }
            return waker
        }
        let sink = console
        domain.consoleIOSink.withLock { $0 = { bytes in sink.append(bytes) } }

        // shared_info as the builder leaves it: zero, every vCPU's events masked.
        for slot in 0..<SharedInfoLayout.legacyVCPUs {
            try memory.write(UInt8(1), at: sharedInfoField(SharedInfoLayout.vcpuInfo(slot) + VCPUInfoLayout.upcallMask))
        }
        try writeInitialPageTables()
        try domain.pinInitialPageTables(Self.l4Frame)
        vcpu.pendingWork = PendingMachineWork()

        context.cs = FlatSelector.kernelCS64
        context.ss = FlatSelector.kernelSS64
        context.rsp = Self.va(Self.stackTopPFN)
        context.rip = Self.va(Self.codePFN)
        context.rflags = RFlags.fixed | RFlags.interrupt
    }

    private func writeInitialPageTables() throws {
        let base = GuestVirtualAddress(Self.virtualBase)
        try memory.write(Self.l3Frame.rawValue << 12 | Self.tableFlags,
                         at: Self.entryAddress(Self.l4Frame, base.tableIndex(level: 4)))
        try memory.write(Self.l2Frame.rawValue << 12 | Self.tableFlags,
                         at: Self.entryAddress(Self.l3Frame, base.tableIndex(level: 3)))
        try memory.write(Self.l1Frame.rawValue << 12 | Self.tableFlags, at: Self.entryAddress(Self.l2Frame, 0))
        try memory.write(Self.xenPagesL1Frame.rawValue << 12 | Self.tableFlags, at: Self.entryAddress(Self.l2Frame, 1))
        for pfn in Self.mappedPFNs {
            let isTable = Self.pageTableFrames.contains(FrameNumber(pfn))
            try memory.write(pfn << 12 | (isTable ? Self.readOnlyLeaf : Self.writableLeaf),
                             at: Self.entryAddress(Self.l1Frame, Int(pfn)))
        }
        try memory.write(layout.sharedInfo.rawValue | Self.writableLeaf, at: Self.entryAddress(Self.xenPagesL1Frame, 0))
        try memory.write(layout.grantFrames.rawValue | Self.writableLeaf, at: Self.entryAddress(Self.xenPagesL1Frame, 1))
    }

    // MARK: Addresses

    /// The kernel virtual address of RAM frame `pfn`.
    static func va(_ pfn: UInt64) -> UInt64 { virtualBase + pfn * pageSize }
    /// Where shared_info is mapped.
    static let sharedInfoVA = virtualBase + (2 << 20)
    /// The guest buffer.
    static let buffer = va(bufferPFN)
    /// An address no page table maps.
    static let unmapped = va(firstFreePFN)

    /// Machine address of entry `index` of the table in `frame`.
    static func entryAddress(_ frame: FrameNumber, _ index: Int) -> GuestPhysicalAddress {
        GuestPhysicalAddress(frame.rawValue << 12 + UInt64(index) * 8)
    }

    /// Machine address of the fixture L1 entry that maps RAM frame `pfn`.
    static func l1Entry(mapping pfn: UInt64) -> GuestPhysicalAddress { entryAddress(l1Frame, Int(pfn)) }

    func sharedInfoField(_ offset: Int) -> GuestPhysicalAddress {
        GuestPhysicalAddress(layout.sharedInfo.rawValue + UInt64(offset))
    }

    /// The machine address of a field of vCPU `index`'s current vcpu_info.
    func vcpuInfoField(_ offset: Int, vcpu index: Int = 0) -> GuestPhysicalAddress {
        domain.vcpus[index].vcpuInfoField(offset)
    }

    // MARK: Hypercalls

    /// Makes hypercall `hypercall` from vCPU 0 with up to five arguments, as the machine
    /// layer does: rax = number, arguments in rdi, rsi, rdx, r10, r8.
    @discardableResult
    func call(_ hypercall: Hypercall, _ arguments: UInt64...) -> HypercallOutcome {
        call(number: hypercall.rawValue, arguments)
    }

    @discardableResult
    func call(number: UInt64, _ arguments: [UInt64]) -> HypercallOutcome {
        let padded = arguments + [UInt64](repeating: 0, count: max(0, 5 - arguments.count))
        context.rax = number
        context.rdi = padded[0]
        context.rsi = padded[1]
        context.rdx = padded[2]
        context.r10 = padded[3]
        context.r8 = padded[4]
        return Hypercalls.handle(vcpu: vcpu, context: &context)
    }

    /// An exception exit of vCPU 0, as the machine layer reports it.
    @discardableResult
    func exception(vector: UInt8, errorCode: UInt64, faultAddress: UInt64) -> ExitOutcome {
        Traps.exception(vcpu, &context, vector: vector, errorCode: errorCode, faultAddress: faultAddress)
    }

    /// rax as the guest reads it: the result, or -errno.
    var result: Int64 { Int64(bitPattern: context.rax) }

    /// -errno as a signed result, for comparisons with `result`.
    static func error(_ error: XenError) -> Int64 { -Int64(error.rawValue) }

    // MARK: Guest memory through the guest's page tables

    var walker: GuestPageWalker {
        get throws {
            let root = try #require(vcpu.kernelTable)
            return GuestPageWalker(memory: memory, root: root)
        }
    }

    func write(_ bytes: [UInt8], at address: UInt64) throws {
        try walker.write(bytes, to: GuestVirtualAddress(address))
    }

    func read(_ address: UInt64, count: Int) throws -> [UInt8] {
        try walker.read(GuestVirtualAddress(address), count: count)
    }

    func write<T: FixedWidthInteger>(_ value: T, at address: UInt64) throws {
        try walker.write(value, at: GuestVirtualAddress(address))
    }

    func read<T: FixedWidthInteger>(_ type: T.Type = T.self, at address: UInt64) throws -> T {
        try walker.read(type, at: GuestVirtualAddress(address))
    }

    /// Writes `bytes` at the code page and points rip at them.
    func placeCode(_ bytes: [UInt8], at address: UInt64 = TestDomain.va(TestDomain.codePFN)) throws {
        try write(bytes, at: address)
        context.rip = address
    }

    // MARK: Bookkeeping

    func pageInfo(_ frame: FrameNumber) -> PageInfo {
        domain.state.withLock { $0.pages[frame] } ?? PageInfo()
    }

    func pageInfo(_ pfn: UInt64) -> PageInfo { pageInfo(FrameNumber(pfn)) }

    /// Reads a 64-bit word of guest-physical memory.
    func physical(_ address: GuestPhysicalAddress) throws -> UInt64 {
        try memory.read(UInt64.self, at: address)
    }

    var isCrashed: Bool {
        if case .crashed = domain.lifecycle.withLock({ $0 }) { return true }
        return false
    }

    var lifecycle: DomainLifecycle { domain.lifecycle.withLock { $0 } }
}

/// Collects console_io output.
final class ConsoleCapture: Sendable {
    private let bytes = Mutex<[UInt8]>([])
    func append(_ more: [UInt8]) { bytes.withLock { $0 += more } }
    var output: [UInt8] { bytes.withLock { $0 } }
}

/// Little-endian bytes of an integer.
func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
}

/// Reads a little-endian integer from `bytes` at `offset`.
func le<T: FixedWidthInteger>(_ type: T.Type, _ bytes: [UInt8], at offset: Int = 0) -> T {
    var value: T = 0
    for index in 0..<MemoryLayout<T>.size { value |= T(truncatingIfNeeded: bytes[offset + index]) << (8 * index) }
    return value
}

/// A frame's address bits in a page-table entry.
func entry(_ pfn: UInt64, _ flags: UInt64) -> UInt64 { pfn << 12 | flags }
