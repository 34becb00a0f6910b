// The PV layout planner (PVLayout.swift) against pv-boot-notes.md §2.

import Testing

import ImageLoader
@testable import Toolstack

private let base: UInt64 = 0xffff_ffff_8000_0000

func kernelLayout(_ builder: ELFBuilder) throws -> KernelLayout {
    try KernelImage.load(bytes: builder.build()).layout
}

@Suite("PV layout planner")
struct PVLayoutTests {
    @Test("Debian's kernel with 512 MiB and an unmapped initrd: the example of pv-boot-notes.md")
    func debianExample() throws {
        let kernel = try kernelLayout(.debianLike(notes: linuxNotes(entry: 0xffff_ffff_8307_71c0)))
        #expect(kernel.kernelStart == 0xffff_ffff_8100_0000 && kernel.kernelEnd == 0xffff_ffff_84a0_0000)
        let initrd: UInt64 = 30 << 20
        let plan = PVLayout(kernel: kernel, unmappedInitrd: true, initrdBytes: initrd, nrPages: 512 * 256)
        #expect(plan.kernelFirstPFN == 0x1000 && plan.kernelPages == 0x3a00)
        #expect(plan.startInfo == 0x4a00)
        #expect(plan.virtual(plan.startInfo) == 0xffff_ffff_84a0_0000)
        #expect(plan.xenstore == 0x4a01)
        #expect(plan.console == 0x4a02)
        #expect(plan.pageTables == 0x4a03..<0x4a2c, "L4, L3, L2 and 38 L1s")
        #expect(plan.tableCounts == (1, 1, 38))
        #expect(plan.nrPTFrames == 41)
        #expect(plan.bootStack == 0x4a2c)
        #expect(plan.virtual(plan.bootStack + 1) == 0xffff_ffff_84a2_d000, "the initial rsp")
        #expect(plan.mappedEnd == 0xffff_ffff_84c0_0000)
        #expect(plan.unmappedInitrd == 0x4c00..<(0x4c00 + initrd / 4096))
        #expect(plan.mappedInitrd == nil && plan.mappedP2M == nil)
        // The p2m list: 131072 entries of 8 bytes = 256 pages, at INIT_P2M, then its L3, L2 and L1.
        let p2m = 0x4c00 + initrd / 4096
        #expect(plan.separateP2M == p2m..<(p2m + 256))
        #expect(plan.separateP2MTables == (p2m + 256)..<(p2m + 259))
        #expect(plan.p2mBase == 0x80_0000_0000)
        #expect(plan.end == p2m + 259)
    }

    @Test("Without an initrd, the p2m list follows the mapped area directly")
    func noInitrd() throws {
        let kernel = try kernelLayout(.debianLike(notes: linuxNotes(entry: 0xffff_ffff_8307_71c0)))
        let plan = PVLayout(kernel: kernel, unmappedInitrd: true, initrdBytes: 0, nrPages: 512 * 256)
        #expect(plan.unmappedInitrd == nil)
        #expect(plan.separateP2M == 0x4c00..<0x4d00)
        #expect(plan.startInfo == 0x4a00 && plan.pageTables == 0x4a03..<0x4a2c)
    }

    @Test("A kernel without MOD_START_PFN gets its initrd mapped right after the kernel")
    func mappedInitrd() throws {
        let kernel = try kernelLayout(.linuxLike(notes: linuxNotes(modStartPFN: false)))
        let plan = PVLayout(kernel: kernel, unmappedInitrd: false, initrdBytes: 3 * 4096 + 1, nrPages: 8192)
        #expect(plan.mappedInitrd == 0x1004..<0x1008)
        #expect(plan.startInfo == 0x1008)
        #expect(plan.unmappedInitrd == nil)
        #expect(plan.mappedEnd > plan.virtual(plan.bootStack))
    }

    @Test("A kernel without INIT_P2M gets the p2m list inside the initial mapping")
    func mappedP2M() throws {
        let kernel = try kernelLayout(.linuxLike(notes: linuxNotes(initP2M: false)))
        let plan = PVLayout(kernel: kernel, unmappedInitrd: true, initrdBytes: 0, nrPages: 8192)
        #expect(plan.mappedP2M == 0x1004..<0x1014, "8192 entries, 16 pages")
        #expect(plan.p2mBase == base + 0x1004 * 4096)
        #expect(plan.startInfo == 0x1014)
        #expect(plan.separateP2M == nil && plan.separateP2MTables == nil)
    }

    @Test("The mapping covers the tables, the stack and 512 KiB more, rounded up to 4 MiB")
    func mappingEnd() throws {
        let kernel = try kernelLayout(.linuxLike())
        let plan = PVLayout(kernel: kernel, unmappedInitrd: true, initrdBytes: 0, nrPages: 8192)
        #expect(plan.startInfo == 0x1004)
        #expect(plan.pageTables == 0x1007..<0x1014, "L4, L3, L2 and 10 L1s for 20 MiB")
        #expect(plan.bootStack == 0x1014)
        #expect(plan.mappedEnd == base + (20 << 20))
        #expect(plan.mappedEnd % (4 << 20) == 0)
        #expect(plan.mappedEnd >= plan.virtual(plan.bootStack + 1) + (512 << 10))
        #expect(PVLayout.mappingEnd(virtBase: base, lastPFN: 0x1400 - 128) == base + (20 << 20))
        #expect(PVLayout.mappingEnd(virtBase: base, lastPFN: 0x1400 - 127) == base + (24 << 20))
    }

    @Test("Table counts for a range: one table per 512 GiB, 1 GiB and 2 MiB span touched")
    func tableCounts() {
        #expect(PVLayout.tableCounts(from: base, to: base) == (0, 0, 0))
        #expect(PVLayout.tableCounts(from: base, to: base + 1) == (1, 1, 1))
        #expect(PVLayout.tableCounts(from: base, to: base + (4 << 20)) == (1, 1, 2))
        #expect(PVLayout.tableCounts(from: base + (2 << 20) - 4096, to: base + (2 << 20) + 4096) == (1, 1, 2))
        #expect(PVLayout.tableCounts(from: (1 << 30) - 4096, to: (1 << 30) + 4096) == (1, 2, 2))
        #expect(PVLayout.tableCounts(from: (512 << 30) - 4096, to: (512 << 30) + 4096) == (2, 2, 2))
        #expect(PVLayout.tableCounts(from: 0x80_0000_0000, to: 0x80_0000_0000 + (1 << 20)) == (1, 1, 1))
    }
}
