import Backends
import Foundation
import GuestMemory
import Hypervisor
import ImageLoader
import Machine
import Synchronization
import XenABI

/// What to build: the equivalent of the kernel-related keys of an xl.cfg.
public struct DomainSpec: Sendable {
    public var name: String
    public var id: UInt16
    public var kernelPath: String
    public var initrdPath: String?
    public var commandLine: String
    public var memoryMiB: UInt64
    public var maxMemoryMiB: UInt64?
    public var vcpus: Int
    /// The domain's UUID (xl.cfg `uuid`); a random one if nil, as xl does.
    public var uuid: UUID?
    /// Whether the in-VM ring-0 core completes the hottest hypercalls inside the VM
    /// (else every hypercall leaves to the host; for comparison and debugging).
    public var ring0Core = true
    /// Run the guest's single-shot timer on each vCPU's local APIC inside the VM, where
    /// KVM allows it (`Ring0Core.FastTimer`), or with the host's thread timers; nil
    /// (the default): `usesAPICTimer` decides.
    public var apicTimer: Bool?
    /// Whether the domain's timer runs on the local APICs: as asked, else for a domain
    /// with one vCPU only. With two or more, bringing a vCPU back up after CPU hotplug
    /// leaves it stuck in the emulated AMD-V machine (docs/amdv-box.md), so those keep
    /// the host's timers unless asked.
    public var usesAPICTimer: Bool { apicTimer ?? (vcpus == 1) }
    /// Keep decompressed kernels for the next boot of the same image
    /// (`DecompressedImageCache.fromEnvironment`: $DOMUS_KERNEL_CACHE, or the user's cache
    /// directory).
    public var kernelCache = true

    public init(name: String = "domus", id: UInt16 = 1, kernelPath: String, initrdPath: String? = nil,
                commandLine: String = "", memoryMiB: UInt64 = 128, maxMemoryMiB: UInt64? = nil, vcpus: Int = 1,
                uuid: UUID? = nil) {
        self.name = name
        self.id = id
        self.kernelPath = kernelPath
        self.initrdPath = initrdPath
        self.commandLine = commandLine
        self.memoryMiB = memoryMiB
        self.maxMemoryMiB = maxMemoryMiB
        self.vcpus = vcpus
        self.uuid = uuid
    }
}

/// A domain whose memory is laid out and whose vCPU 0 is ready to start.
public struct PreparedDomain: Sendable {
    public let domain: Domain
    public let area: HypervisorArea
    public let boot: BootState
    public let console: ConsoleBackend
    public let kernel: LoadedKernel
    public let startInfo: StartInfo
}

/// Builds a PV domain the way Xen's libxenguest does (pv-boot-notes.md §1–2): loads the
/// kernel by p_paddr, writes start_info, the console and xenstore pages, the p2m list,
/// the initial 4-level page tables and the boot stack, then pins the page tables
/// (which validates them) and fills the hypercall page.
public enum DomainBuilder {
    /// XENFEAT bits a kernel may require: writable page tables (by emulation),
    /// page directories above 4 GiB, A/D-preserving updates, grant-map available bits.
    static let supportedFeatureBits: UInt32 = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 7)

    /// Largest initrd Domus reads (the domain's memory bounds it further).
    static let maximumInitrdBytes: UInt64 = 1 << 30

    /// Starts reading and decompressing `spec`'s kernel on another thread, so that what
    /// comes before the build (the KVM probe) runs beside it; pass it to `build`.
    public static func startLoadingKernel(_ spec: DomainSpec) -> KernelPreload {
        let cache = spec.kernelCache ? DecompressedImageCache.fromEnvironment() : nil
        return KernelPreload(path: spec.kernelPath, options: ImageLoadOptions(cache: cache))
    }

    /// Builds the domain; `preload` is `spec`'s kernel from `startLoadingKernel`, else the
    /// build starts loading it itself (and reads the initrd meanwhile).
    public static func build(_ spec: DomainSpec, log: HypervisorLog, clock: any HostClock, cpuid: CPUIDPolicy,
                             xenstore: XenStoreService? = nil, preload: KernelPreload? = nil,
                             consoleOutput: @escaping @Sendable ([UInt8]) -> Void) throws(BuildError) -> PreparedDomain {
        guard spec.memoryMiB > 0, spec.memoryMiB <= 1 << 20 else {
            throw .invalidArgument("--memory must be between 1 and 1048576 MiB, got \(spec.memoryMiB)")
        }
        guard spec.vcpus >= 1, spec.vcpus <= 64 else { throw .invalidArgument("vcpus must be between 1 and 64, got \(spec.vcpus)") }
        guard spec.commandLine.utf8.count < StartInfo.maxCommandLine else {
            throw .invalidArgument("the command line is \(spec.commandLine.utf8.count) bytes; Xen allows at most \(StartInfo.maxCommandLine - 1)")
        }
        var phases = BuildPhases()
        let load = preload.flatMap { $0.path == spec.kernelPath ? $0 : nil } ?? startLoadingKernel(spec)
        // The initrd is read while the kernel decompresses; a bad kernel is still the
        // error reported first.
        let initrdRead = Result { () throws(BuildError) -> [UInt8] in try readInitrd(spec.initrdPath, memoryMiB: spec.memoryMiB) }
        phases.end("initrd")
        let kernel: LoadedKernel
        do { kernel = try load.wait() } catch { throw .kernel(error) }
        let steps = kernel.steps.map { "\($0.name) \(BuildPhases.milliseconds($0.duration))" }.joined(separator: ", ")
        let loadTime = load.loadTime.map { " (loaded in \(BuildPhases.milliseconds($0)) ms: \(steps))" } ?? ""
        phases.end((kernel.fromCache ? "kernel wait, decompressed copy from \(load.options.cache?.directory ?? "the cache")" : "kernel wait") + loadTime)
        let missing = kernel.notes.requiredFeatureBits & ~supportedFeatureBits
        guard missing == 0 else {
            throw .unsupportedKernel("\(spec.kernelPath): the kernel requires Xen features Domus does not offer (XENFEAT mask \(hex(UInt64(missing))))")
        }
        let initrd = try initrdRead.get()
        let nrPages = spec.memoryMiB * 256
        let plan = PVLayout(kernel: kernel.layout, unmappedInitrd: kernel.notes.acceptsUnmappedInitrd,
                            initrdBytes: UInt64(initrd.count), nrPages: nrPages)
        // Leave the guest some memory of its own beyond what the builder uses.
        let needed = plan.end + 256
        guard needed <= nrPages else {
            throw .memoryTooSmall(neededMiB: (needed + 255) / 256, givenMiB: spec.memoryMiB)
        }

        let memory: GuestMemory
        let area: HypervisorArea
        do { (memory, area) = try DomainMachine.allocateMemory(ramFrames: nrPages, vcpuCount: spec.vcpus, fastPath: spec.ring0Core) } catch {
            throw .machine("cannot allocate \(spec.memoryMiB) MiB for the domain: \(error)")
        }
        let uuid = spec.uuid ?? UUID()
        let handle = withUnsafeBytes(of: uuid.uuid) { Array($0) }
        let domain = Domain(id: spec.id, name: spec.name, memory: memory, layout: area.domainLayout, vcpuCount: spec.vcpus,
                            log: log, clock: clock, cpuid: cpuid,
                            maximumFrames: (spec.maxMemoryMiB ?? spec.memoryMiB) * 256, handle: handle)
        phases.end("memory")
        do {
            try writeImage(kernel, initrd: initrd, plan: plan, memory: memory, nrPages: nrPages)
            phases.end("image")
            try writePageTables(plan, memory: memory)
            phases.end("page tables")
            try writeSharedInfo(memory, at: area.sharedInfo)
            if let hypercallPage = kernel.layout.hypercallPage, let pfn = kernel.layout.pfn(of: hypercallPage) {
                try memory.writeBytes(HypercallPage.contents(), at: GuestPhysicalAddress(pfn * pageSize))
                domain.setHypercallPage(hypercallPage)
            }
        } catch {
            throw .machine("cannot write the domain's memory: \(error)")
        }
        do {
            try domain.pinInitialPageTables(FrameNumber(plan.pageTables.lowerBound))
        } catch {
            throw .machine("the initial page tables did not validate (\(error)); this is a Domus bug")
        }
        domain.vcpus[0].pendingWork = PendingMachineWork()
        phases.end("pin")

        let console: ConsoleBackend
        do {
            console = try ConsoleBackend(domain: domain, ring: GuestPhysicalAddress(plan.console * pageSize), output: consoleOutput)
        } catch {
            throw .machine("cannot bind the console event channel: \(error)")
        }
        var storePort: UInt32 = 0
        if let xenstore {
            do {
                storePort = try xenstore.attach(domain, ring: GuestPhysicalAddress(plan.xenstore * pageSize))
                try xenstore.writeDomainLayout(domain, name: spec.name, uuid: uuid.uuidString.lowercased(),
                                               memoryKiB: spec.memoryMiB * 1024, maxMemoryKiB: (spec.maxMemoryMiB ?? spec.memoryMiB) * 1024,
                                               consoleRing: plan.console, consolePort: console.port,
                                               storeRing: plan.xenstore, storePort: storePort)
            } catch {
                throw .machine("cannot connect the domain to XenStore: \(error)")
            }
        }
        var info = StartInfo()
        info.nrPages = nrPages
        info.sharedInfo = area.sharedInfo.rawValue
        info.storeMFN = plan.xenstore
        info.storeEvtchn = storePort
        info.consoleMFN = plan.console
        info.consoleEvtchn = console.port
        info.ptBase = plan.virtual(plan.pageTables.lowerBound)
        info.nrPTFrames = plan.nrPTFrames
        info.mfnList = plan.p2mBase
        if let unmapped = plan.unmappedInitrd {
            info.modStart = unmapped.lowerBound
            info.modLen = UInt64(initrd.count)
            info.flags |= StartInfoFlags.modStartPFN
        } else if let mapped = plan.mappedInitrd {
            info.modStart = plan.virtual(mapped.lowerBound)
            info.modLen = UInt64(initrd.count)
        }
        info.commandLine = spec.commandLine
        if let list = plan.separateP2M, let tables = plan.separateP2MTables {
            info.firstP2MPFN = list.lowerBound
            info.nrP2MFrames = UInt64(list.count + tables.count)
        }
        do { try memory.writeBytes(info.encode(), at: GuestPhysicalAddress(plan.startInfo * pageSize)) } catch {
            throw .machine("cannot write start_info: \(error)")
        }
        let boot = BootState(rip: kernel.layout.entry, rsp: plan.virtual(plan.bootStack + 1), startInfo: plan.virtual(plan.startInfo))
        log.log(.debug, "d\(spec.id): build times: \(phases.summary)")
        log.log(.info, "d\(spec.id): built \(spec.name): \(nrPages) pages, kernel \(hex(kernel.layout.kernelStart))–\(hex(kernel.layout.kernelEnd)), entry \(hex(kernel.layout.entry)), start_info \(hex(boot.startInfo)), page tables at pfn \(hex(plan.pageTables.lowerBound)) (\(plan.nrPTFrames) frames), mapping up to \(hex(plan.mappedEnd))")
        return PreparedDomain(domain: domain, area: area, boot: boot, console: console, kernel: kernel, startInfo: info)
    }

    static func readInitrd(_ path: String?, memoryMiB: UInt64) throws(BuildError) -> [UInt8] {
        guard let path else { return [] }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw .initrd(path: path, reason: FileManager.default.fileExists(atPath: path) ? "cannot be read" : "no such file")
        }
        defer { try? handle.close() }
        let limit = min(maximumInitrdBytes, memoryMiB << 20)
        let data: Data
        do { data = try handle.read(upToCount: Int(limit) + 1) ?? Data() } catch {
            throw .initrd(path: path, reason: "read failed: \(error.localizedDescription)")
        }
        guard UInt64(data.count) <= limit else {
            throw .initrd(path: path, reason: "larger than the domain's memory allows (\(limit >> 20) MiB)")
        }
        return [UInt8](data)
    }

    static func writeImage(_ kernel: LoadedKernel, initrd: [UInt8], plan: PVLayout, memory: GuestMemory, nrPages: UInt64) throws(GuestMemoryError) {
        var pieces: [(bytes: ArraySlice<UInt8>, at: UInt64)] = kernel.layout.segments.map { segment in
            (kernel.contents(of: segment), segment.virtualAddress - kernel.layout.virtBase)
        }
        if let range = plan.mappedInitrd ?? plan.unmappedInitrd {
            pieces.append((initrd[...], range.lowerBound * pageSize))
        }
        try copyInParallel(pieces, into: memory)
        // The p2m list: identity, since a domain's machine frames are its VM's frames.
        let list = plan.separateP2M ?? plan.mappedP2M ?? 0..<0
        let entries = (0..<nrPages).map { UInt64(littleEndian: $0) }
        let failure = entries.withUnsafeBytes { bytes -> GuestMemoryError? in
            do throws(GuestMemoryError) { try memory.writeBytes(bytes, at: GuestPhysicalAddress(list.lowerBound * pageSize)) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }

    /// Copies `pieces` into guest memory in chunks spread over the host's CPUs: most of
    /// the time is the page faults on the domain's fresh memory (tens of MiB of kernel),
    /// which then happen side by side. Pieces that overlap (a kernel's segments may)
    /// are copied one after the other instead, in order, so the last one wins, as it
    /// always did.
    static func copyInParallel(_ pieces: [(bytes: ArraySlice<UInt8>, at: UInt64)], into memory: GuestMemory) throws(GuestMemoryError) {
        if overlap(pieces) {
            for piece in pieces { try memory.writeBytes(piece.bytes, at: GuestPhysicalAddress(piece.at)) }
            return
        }
        let chunkSize = 4 << 20
        var chunks: [(bytes: ArraySlice<UInt8>, at: UInt64)] = []
        for piece in pieces {
            var start = piece.bytes.startIndex
            while start < piece.bytes.endIndex {
                let end = min(start + chunkSize, piece.bytes.endIndex)
                chunks.append((piece.bytes[start..<end], piece.at + UInt64(start - piece.bytes.startIndex)))
                start = end
            }
        }
        let failure = Mutex<GuestMemoryError?>(nil)
        let work = chunks
        DispatchQueue.concurrentPerform(iterations: chunks.count) { index in
            do throws(GuestMemoryError) {
                try memory.writeBytes(work[index].bytes, at: GuestPhysicalAddress(work[index].at))
            } catch {
                failure.withLock { $0 = $0 ?? error }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
    }

    /// Whether any two of `pieces` share a byte (an empty piece shares none).
    static func overlap(_ pieces: [(bytes: ArraySlice<UInt8>, at: UInt64)]) -> Bool {
        let ranges = pieces.filter { !$0.bytes.isEmpty }
            .map { ($0.at, $0.at.addingReportingOverflow(UInt64($0.bytes.count))) }
            .sorted { $0.0 < $1.0 }
        if ranges.contains(where: { $0.1.overflow }) { return true }
        return zip(ranges, ranges.dropFirst()).contains { $0.1.partialValue > $1.0 }
    }

    /// Writes the initial page tables: [virt_base, mapped end) with 4 KiB pages, plus the
    /// p2m list at INIT_P2M with its own tables; page-table frames mapped read-only.
    static func writePageTables(_ plan: PVLayout, memory: GuestMemory) throws(GuestMemoryError) {
        let l4 = plan.pageTables.lowerBound
        var nextTable = l4 + 1
        var tablePFNs = Set(plan.pageTables)
        if let tables = plan.separateP2MTables { tablePFNs.formUnion(tables) }
        var upper: [Int: [UInt64: UInt64]] = [3: [:], 2: [:], 1: [:]]   // level -> (va prefix -> table pfn)
        let tableFlags = PTE.present | PTE.rw | PTE.user | PTE.accessed | PTE.dirty

        func table(level: Int, for virtual: UInt64, parent: UInt64, allocate: () -> UInt64) throws(GuestMemoryError) -> UInt64 {
            let shift = UInt64(12 + 9 * level)
            let key = virtual >> shift
            if let existing = upper[level]?[key] { return existing }
            let pfn = allocate()
            upper[level]?[key] = pfn
            let index = (virtual >> (shift)) & 511
            try memory.write(pfn << 12 | tableFlags, at: GuestPhysicalAddress(parent * pageSize + index * 8))
            return pfn
        }

        func map(_ virtual: UInt64, pfn: UInt64, allocate: () -> UInt64) throws(GuestMemoryError) {
            let l3 = try table(level: 3, for: virtual, parent: l4, allocate: allocate)
            let l2 = try table(level: 2, for: virtual, parent: l3, allocate: allocate)
            let l1 = try table(level: 1, for: virtual, parent: l2, allocate: allocate)
            let flags = tablePFNs.contains(pfn) ? PTE.present | PTE.accessed : PTE.present | PTE.rw | PTE.accessed
            try memory.write(pfn << 12 | flags, at: GuestPhysicalAddress(l1 * pageSize + ((virtual >> 12) & 511) * 8))
        }

        var virtual = plan.virtBase
        while virtual < plan.mappedEnd {
            try map(virtual, pfn: (virtual - plan.virtBase) / pageSize) {
                defer { nextTable += 1 }
                return nextTable
            }
            virtual += pageSize
        }
        if let list = plan.separateP2M, let tables = plan.separateP2MTables {
            var nextP2MTable = tables.lowerBound
            for (index, pfn) in list.enumerated() {
                try map(plan.p2mBase + UInt64(index) * pageSize, pfn: pfn) {
                    defer { nextP2MTable += 1 }
                    return nextP2MTable
                }
            }
        }
    }

    /// shared_info starts zeroed with every vCPU's events masked.
    static func writeSharedInfo(_ memory: GuestMemory, at address: GuestPhysicalAddress) throws(GuestMemoryError) {
        try memory.zero(at: address, count: pageSize)
        for vcpu in 0..<SharedInfoLayout.legacyVCPUs {
            try memory.write(UInt8(1), at: GuestPhysicalAddress(address.rawValue + UInt64(SharedInfoLayout.vcpuInfo(vcpu) + VCPUInfoLayout.upcallMask)))
        }
    }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

/// How long each step of a domain build took, for the debug log.
struct BuildPhases {
    private let clock = ContinuousClock()
    private var last: ContinuousClock.Instant
    private var parts: [(String, Duration)] = []

    init() { last = clock.now }

    mutating func end(_ name: String) {
        let now = clock.now
        parts.append((name, now - last))
        last = now
    }

    var summary: String {
        parts.map { name, duration in "\(name) \(Self.milliseconds(duration)) ms" }.joined(separator: ", ")
    }

    static func milliseconds(_ duration: Duration) -> Int {
        Int((Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15).rounded())
    }
}
