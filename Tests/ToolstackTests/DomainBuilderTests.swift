// The PV domain builder (DomainBuilder.swift) with synthetic kernels in temporary files.

import Foundation
import GuestMemory
import Hypervisor
import ImageLoader
import Testing
import XenABI

@testable import Toolstack

private let base: UInt64 = 0xffff_ffff_8000_0000

/// Builds a domain of `memoryMiB` from `kernel` (and an initrd of `initrd` bytes, if any).
func buildDomain(_ kernel: ELFBuilder = .linuxLike(), memoryMiB: UInt64 = 32, initrd: [UInt8]? = nil,
                 commandLine: String = "console=hvc0 root=/dev/xvda1", directory: TemporaryDirectory) throws -> PreparedDomain {
    let kernelPath = try directory.file("vmlinux", kernel.build())
    let initrdPath = try initrd.map { try directory.file("initrd.img", $0) }
    let spec = DomainSpec(name: "test", id: 3, kernelPath: kernelPath, initrdPath: initrdPath, commandLine: commandLine,
                          memoryMiB: memoryMiB)
    return try DomainBuilder.build(spec, log: HypervisorLog(), clock: StillClock(), cpuid: CPUIDPolicy(hostLeaves: []),
                                   consoleOutput: { _ in })
}

/// Runs `build` and returns the BuildError it throws, or records an issue.
func buildError(_ build: () throws -> PreparedDomain) -> BuildError? {
    do {
        _ = try build()
        Issue.record("the build succeeded")
        return nil
    } catch let error as BuildError {
        return error
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

@Suite("Domain builder")
struct DomainBuilderTests {
    static let initrd = pattern(3 * 4096 + 100, seed: 9)

    @Test("The local APIC timer: by default for one vCPU only; asked for or refused, as asked")
    func apicTimerDefault() {
        var one = DomainSpec(kernelPath: "k", vcpus: 1)
        var two = DomainSpec(kernelPath: "k", vcpus: 2)
        #expect(one.usesAPICTimer)
        #expect(!two.usesAPICTimer)
        one.apicTimer = false
        two.apicTimer = true
        #expect(!one.usesAPICTimer)
        #expect(two.usesAPICTimer)
    }

    @Test("The image is copied in 4 MiB chunks on several threads: every byte lands, nothing else is written")
    func parallelCopy() throws {
        let memory = try GuestMemory(ramBytes: 32 << 20)
        let big = (0..<((9 << 20) + 5)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 12) }
        let small: [UInt8] = [1, 2, 3]
        try DomainBuilder.copyInParallel([(big[10...], 0x10_0000), (small[...], 0x1_800_000)], into: memory)
        #expect(try memory.readBytes(at: GuestPhysicalAddress(0x10_0000), count: big.count - 10) == Array(big[10...]))
        #expect(try memory.readBytes(at: GuestPhysicalAddress(0x1_800_000), count: 3) == small)
        #expect(try memory.readBytes(at: GuestPhysicalAddress(0x10_0000 + UInt64(big.count - 10)), count: 64) == [UInt8](repeating: 0, count: 64))
        #expect(try memory.readBytes(at: GuestPhysicalAddress(0xF_FFC0), count: 64) == [UInt8](repeating: 0, count: 64))
        // Overlapping pieces (an ELF's segments may overlap) land in order: the last wins.
        let first = [UInt8](repeating: 1, count: 5 << 20), second = [UInt8](repeating: 2, count: 16)
        let overlapping: [(bytes: ArraySlice<UInt8>, at: UInt64)] = [(first[...], 0), (second[...], 0x10)]
        let apart: [(bytes: ArraySlice<UInt8>, at: UInt64)] = [(first[...], 0), (second[...], 5 << 20)]
        #expect(DomainBuilder.overlap(overlapping))
        #expect(!DomainBuilder.overlap(apart))
        try DomainBuilder.copyInParallel(overlapping, into: memory)
        let expected: [UInt8] = [1] + second + [1]
        let landed = try memory.readBytes(at: GuestPhysicalAddress(0x0f), count: 18)
        #expect(landed == expected)
        // A piece outside the domain's memory is the guest-memory error, not a crash.
        #expect(throws: GuestMemoryError.self) {
            try DomainBuilder.copyInParallel([(small[...], (32 << 20) - 1)], into: memory)
        }
    }

    @Test("The kernel lands by p_paddr; memory past p_filesz is zero")
    func image() throws {
        let directory = try TemporaryDirectory()
        let prepared = try buildDomain(directory: directory)
        let memory = prepared.domain.memory
        #expect(try memory.readBytes(at: GuestPhysicalAddress(0x100_0000), count: 0x2000) == pattern(0x2000, seed: 1))
        #expect(try memory.readBytes(at: GuestPhysicalAddress(0x100_2000), count: 0x800) == pattern(0x800, seed: 2),
                "the segment whose p_vaddr is 0")
        #expect(try memory.readBytes(at: GuestPhysicalAddress(0x100_2800), count: 0x1000).allSatisfy { $0 == 0 })
        #expect(try memory.readBytes(at: GuestPhysicalAddress(0), count: 0x1000).allSatisfy { $0 == 0 })
    }

    @Test("start_info: magic, sizes, frames, page tables, p2m, unmapped initrd by PFN, command line")
    func startInfo() throws {
        let directory = try TemporaryDirectory()
        let prepared = try buildDomain(initrd: Self.initrd, directory: directory)
        let info = prepared.startInfo
        #expect(info.magic == "xen-3.0-x86_64")
        #expect(info.nrPages == 8192)
        #expect(info.sharedInfo == prepared.area.sharedInfo.rawValue)
        #expect(info.storeMFN == 0x1005 && info.storeEvtchn == 0)
        #expect(info.consoleMFN == 0x1006)
        #expect(info.consoleEvtchn == prepared.console.port && info.consoleEvtchn != 0)
        #expect(info.ptBase == base + 0x1007 * 4096)
        #expect(info.nrPTFrames == 13, "L4, L3, L2 and 10 L1s for [base, base + 20 MiB)")
        #expect(info.mfnList == 0x80_0000_0000)
        #expect(info.flags == StartInfoFlags.modStartPFN)
        #expect(info.modStart == 0x1400)
        #expect(info.modLen == UInt64(Self.initrd.count))
        #expect(info.commandLine == "console=hvc0 root=/dev/xvda1")
        #expect(info.firstP2MPFN == 0x1404, "after the 4 initrd pages")
        #expect(info.nrP2MFrames == 16 + 3, "the list and its L3, L2, L1")
        // What the guest reads is what the builder reports.
        let bytes = try prepared.domain.memory.readBytes(at: GuestPhysicalAddress(0x1004 * 4096), count: StartInfo.size)
        #expect(try StartInfo(decoding: bytes) == info)
        #expect(try prepared.domain.memory.readBytes(at: GuestPhysicalAddress(0x1400 * 4096), count: Self.initrd.count) == Self.initrd)
    }

    @Test("Boot registers: rip at ENTRY, rsp above the boot stack, rsi at start_info")
    func bootState() throws {
        let directory = try TemporaryDirectory()
        let prepared = try buildDomain(directory: directory)
        #expect(prepared.boot.rip == 0xffff_ffff_8100_0100)
        #expect(prepared.boot.rsp == base + 0x1015 * 4096)
        #expect(prepared.boot.startInfo == base + 0x1004 * 4096)
        #expect(prepared.boot.rflags == 0x202)
    }

    @Test("The initial page tables map [virt_base, mapped end) 1:1 by PFN, page-table frames read-only; they are pinned")
    func pageTables() throws {
        let directory = try TemporaryDirectory()
        let prepared = try buildDomain(directory: directory)
        let domain = prepared.domain
        let l4 = try #require(domain.vcpus[0].kernelTable)
        #expect(l4 == FrameNumber(0x1007))
        let walker = GuestPageWalker(memory: domain.memory, root: l4)
        for pfn: UInt64 in [0, 1, 0xfff, 0x1000, 0x1004, 0x1007, 0x1013, 0x1014, 0x13ff] {
            #expect(try walker.translate(GuestVirtualAddress(base + pfn * 4096 + 8), write: false) == GuestPhysicalAddress(pfn * 4096 + 8),
                    "pfn \(pfn)")
            let entryAddress = try #require(walker.l1EntryAddress(for: GuestVirtualAddress(base + pfn * 4096)))
            let entry = try domain.memory.read(UInt64.self, at: entryAddress)
            let isTable = (0x1007..<0x1014).contains(pfn)
            #expect((entry & PTE.rw != 0) == !isTable, "pfn \(pfn): page-table frames are read-only")
        }
        #expect(throws: XenError.EFAULT) { try walker.translate(GuestVirtualAddress(base + (20 << 20)), write: false) }
        #expect(throws: XenError.EFAULT) { try walker.translate(GuestVirtualAddress(base - 4096), write: false) }
        // Validated and pinned: the L4 carries the hypervisor's slots.
        let info = try #require(domain.state.withLock { $0.pages[l4] })
        #expect(info.type == .l4 && info.pinned && info.typeCount == 2)
        for (slot, entry) in prepared.area.l4Entries {
            #expect(try domain.memory.read(UInt64.self, at: GuestPhysicalAddress(0x1007 * 4096 + UInt64(slot) * 8)) == entry)
        }
        #expect(domain.vcpus[0].pendingWork.isEmpty)
    }

    @Test("The p2m list at INIT_P2M maps each PFN to itself")
    func p2m() throws {
        let directory = try TemporaryDirectory()
        let prepared = try buildDomain(directory: directory)
        let walker = GuestPageWalker(memory: prepared.domain.memory, root: try #require(prepared.domain.vcpus[0].kernelTable))
        for pfn: UInt64 in [0, 1, 0x1000, 0x1fff, 8191] {
            #expect(try walker.read(UInt64.self, at: GuestVirtualAddress(0x80_0000_0000 + pfn * 8)) == pfn)
        }
        #expect(throws: XenError.EFAULT) { try walker.read(UInt64.self, at: GuestVirtualAddress(0x80_0000_0000 + 8192 * 8)) }
    }

    @Test("A kernel without INIT_P2M finds the p2m list inside its mapping")
    func mappedP2M() throws {
        let directory = try TemporaryDirectory()
        let prepared = try buildDomain(.linuxLike(notes: linuxNotes(initP2M: false)), directory: directory)
        #expect(prepared.startInfo.mfnList == base + 0x1004 * 4096)
        #expect(prepared.startInfo.firstP2MPFN == 0 && prepared.startInfo.nrP2MFrames == 0)
        let walker = GuestPageWalker(memory: prepared.domain.memory, root: try #require(prepared.domain.vcpus[0].kernelTable))
        #expect(try walker.read(UInt64.self, at: GuestVirtualAddress(prepared.startInfo.mfnList + 0x1234 * 8)) == 0x1234)
    }

    @Test("A kernel without MOD_START_PFN gets its initrd mapped, by virtual address")
    func mappedInitrd() throws {
        let directory = try TemporaryDirectory()
        let prepared = try buildDomain(.linuxLike(notes: linuxNotes(modStartPFN: false)), initrd: Self.initrd, directory: directory)
        #expect(prepared.startInfo.flags & StartInfoFlags.modStartPFN == 0)
        #expect(prepared.startInfo.modStart == base + 0x1004 * 4096)
        #expect(prepared.startInfo.modLen == UInt64(Self.initrd.count))
        let walker = GuestPageWalker(memory: prepared.domain.memory, root: try #require(prepared.domain.vcpus[0].kernelTable))
        #expect(try walker.read(GuestVirtualAddress(prepared.startInfo.modStart), count: Self.initrd.count) == Self.initrd)
    }

    @Test("The hypercall page, when the kernel asks for one, is filled and registered")
    func hypercallPage() throws {
        let directory = try TemporaryDirectory()
        let prepared = try buildDomain(.linuxLike(notes: linuxNotes(hypercallPage: 0xffff_ffff_8100_1000)), directory: directory)
        #expect(try prepared.domain.memory.readBytes(at: GuestPhysicalAddress(0x100_1000), count: 4096) == HypercallPage.contents())
        #expect(prepared.domain.hypercallPage.load(ordering: .relaxed) == 0xffff_ffff_8100_1000)
        let plain = try buildDomain(directory: directory)
        #expect(plain.domain.hypercallPage.load(ordering: .relaxed) == 0)
    }

    @Test("shared_info starts with every vCPU's events masked")
    func sharedInfo() throws {
        let directory = try TemporaryDirectory()
        let prepared = try buildDomain(directory: directory)
        let sharedInfo = prepared.area.sharedInfo.rawValue
        for vcpu in 0..<32 {
            let mask = try prepared.domain.memory.read(UInt8.self, at: GuestPhysicalAddress(sharedInfo + UInt64(vcpu * 64 + 1)))
            #expect(mask == 1)
        }
        #expect(try prepared.domain.memory.read(UInt64.self, at: GuestPhysicalAddress(sharedInfo + 0x800)) == 0)
    }

    @Test("A command line of 1023 bytes fits; 1024 bytes is refused")
    func commandLineLength() throws {
        let directory = try TemporaryDirectory()
        let longest = String(repeating: "a", count: 1023)
        #expect(try buildDomain(commandLine: longest, directory: directory).startInfo.commandLine == longest)
        let error = buildError { try buildDomain(commandLine: longest + "b", directory: directory) }
        guard case let .invalidArgument(message)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(message.contains("1024 bytes") && message.contains("1023"))
        #expect(error?.isUserError == true)
    }

    @Test("A missing kernel file is a kernel error naming the path")
    func missingKernel() throws {
        let directory = try TemporaryDirectory()
        let path = directory.url.appendingPathComponent("absent").path
        let spec = DomainSpec(kernelPath: path, memoryMiB: 32)
        let error = buildError {
            try DomainBuilder.build(spec, log: HypervisorLog(), clock: StillClock(), cpuid: CPUIDPolicy(hostLeaves: []), consoleOutput: { _ in })
        }
        guard case let .kernel(imageError)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(imageError == .fileNotFound(path: path))
    }

    @Test("A missing initrd is an initrd error")
    func missingInitrd() throws {
        let directory = try TemporaryDirectory()
        let kernelPath = try directory.file("vmlinux", ELFBuilder.linuxLike().build())
        let initrdPath = directory.url.appendingPathComponent("absent.img").path
        let spec = DomainSpec(kernelPath: kernelPath, initrdPath: initrdPath, memoryMiB: 32)
        let error = buildError {
            try DomainBuilder.build(spec, log: HypervisorLog(), clock: StillClock(), cpuid: CPUIDPolicy(hostLeaves: []), consoleOutput: { _ in })
        }
        guard case let .initrd(path, reason)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(path == initrdPath && reason == "no such file")
    }

    @Test("A bad kernel is reported before a missing initrd, though the initrd is read while it loads")
    func kernelErrorFirst() throws {
        let directory = try TemporaryDirectory()
        let kernelPath = try directory.file("vmlinux", [0x7f, 0x45, 0x4c, 0x46, 1, 1, 1])
        let initrdPath = directory.url.appendingPathComponent("absent.img").path
        let spec = DomainSpec(kernelPath: kernelPath, initrdPath: initrdPath, memoryMiB: 32)
        let error = buildError {
            try DomainBuilder.build(spec, log: HypervisorLog(), clock: StillClock(), cpuid: CPUIDPolicy(hostLeaves: []), consoleOutput: { _ in })
        }
        guard case .kernel? = error else { Issue.record("got \(String(describing: error))"); return }
    }

    @Test("A preloaded kernel is used for its own path only")
    func preloadForAnotherPath() throws {
        let directory = try TemporaryDirectory()
        let kernelPath = try directory.file("vmlinux", ELFBuilder.linuxLike().build())
        let otherPath = try directory.file("other", [0x7f, 0x45, 0x4c, 0x46])
        let spec = DomainSpec(kernelPath: kernelPath, memoryMiB: 32)
        let build = { (preload: KernelPreload) throws -> PreparedDomain in
            try DomainBuilder.build(spec, log: HypervisorLog(), clock: StillClock(), cpuid: CPUIDPolicy(hostLeaves: []),
                                    preload: preload, consoleOutput: { _ in })
        }
        // A preload of another file is ignored: the spec's kernel is loaded.
        var other = spec
        other.kernelPath = otherPath
        #expect(try build(DomainBuilder.startLoadingKernel(other)).startInfo.nrPages == 32 * 256)
        #expect(try build(DomainBuilder.startLoadingKernel(spec)).kernel.layout.entry == KernelImage.load(path: kernelPath).layout.entry)
    }

    @Test("Too little memory for the image is memoryTooSmall with the size that would do")
    func tooLittleMemory() throws {
        let directory = try TemporaryDirectory()
        // 16 MiB: the kernel alone starts at 16 MiB. The plan needs 0x1400 pfns of mapping,
        // 8 p2m pages and 3 p2m tables, plus 256 pages of slack: 5387 pages, 22 MiB.
        let error = buildError { try buildDomain(memoryMiB: 16, directory: directory) }
        guard case let .memoryTooSmall(needed, given)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(given == 16)
        #expect(needed == 22)
        #expect(try buildDomain(memoryMiB: 22, directory: directory).startInfo.nrPages == 22 * 256)
        let short = buildError { try buildDomain(memoryMiB: 21, directory: directory) }
        guard case .memoryTooSmall(22, 21)? = short else { Issue.record("got \(String(describing: short))"); return }
    }

    @Test("Invalid memory sizes and vCPU counts are refused before anything is read")
    func invalidArguments() throws {
        for (memory, vcpus) in [(UInt64(0), 1), ((1 << 20) + 1, 1), (32, 0), (32, 65)] {
            let spec = DomainSpec(kernelPath: "/nonexistent", memoryMiB: memory, vcpus: vcpus)
            let error = buildError {
                try DomainBuilder.build(spec, log: HypervisorLog(), clock: StillClock(), cpuid: CPUIDPolicy(hostLeaves: []), consoleOutput: { _ in })
            }
            guard case .invalidArgument? = error else { Issue.record("memory \(memory) vcpus \(vcpus): got \(String(describing: error))"); continue }
        }
    }

    @Test("A kernel that requires a feature Domus does not offer is refused")
    func unsupportedFeature() throws {
        let directory = try TemporaryDirectory()
        let kernel = ELFBuilder.linuxLike(notes: linuxNotes(features: "!writable_page_tables|!supervisor_mode_kernel"))
        let error = buildError { try buildDomain(kernel, directory: directory) }
        guard case let .unsupportedKernel(message)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(message.contains("0x8"))
    }
}
