import GuestMemory
import ImageLoader
import XenABI

/// Where the domain builder puts things in a PV guest's pseudo-physical memory, as
/// Xen's libxenguest does (xg_dom_core.c `xc_dom_build_image`, xg_dom_x86.c): the
/// kernel, then start_info, xenstore and console pages, the initial page tables and the
/// boot stack, all mapped at virt_base + pfn·4096; then, unmapped, the initrd (when
/// the kernel takes it by pfn) and the p2m list at INIT_P2M with its own tables.
struct PVLayout: Equatable {
    let virtBase: UInt64
    let kernelFirstPFN: UInt64
    let kernelPages: UInt64
    /// Mapped initrd (kernels without MOD_START_PFN).
    var mappedInitrd: Range<UInt64>?
    /// p2m list inside the initial mapping (kernels without INIT_P2M).
    var mappedP2M: Range<UInt64>?
    var startInfo: UInt64 = 0
    var xenstore: UInt64 = 0
    var console: UInt64 = 0
    /// Initial page tables: L4, then L3s, L2s, L1s.
    var pageTables: Range<UInt64> = 0..<0
    var tableCounts: (l3: Int, l2: Int, l1: Int) = (0, 0, 0)
    var bootStack: UInt64 = 0
    /// End of the initial mapping (exclusive), as a virtual address.
    var mappedEnd: UInt64 = 0
    /// Unmapped initrd (MOD_START_PFN kernels).
    var unmappedInitrd: Range<UInt64>?
    /// p2m list at INIT_P2M and its page tables (L3, L2, L1s), unmapped elsewhere.
    var separateP2M: Range<UInt64>?
    var separateP2MTables: Range<UInt64>?
    var p2mBase: UInt64 = 0
    /// First pfn not used by the layout.
    var end: UInt64 = 0

    static func == (lhs: PVLayout, rhs: PVLayout) -> Bool {
        lhs.virtBase == rhs.virtBase && lhs.startInfo == rhs.startInfo && lhs.pageTables == rhs.pageTables
            && lhs.bootStack == rhs.bootStack && lhs.mappedEnd == rhs.mappedEnd && lhs.end == rhs.end
            && lhs.unmappedInitrd == rhs.unmappedInitrd && lhs.separateP2M == rhs.separateP2M
    }

    /// Extra mapped space after the boot stack, as Xen leaves (512 KiB, rounded to 4 MiB).
    static let extraMapped: UInt64 = 512 << 10
    static let mappingAlignment: UInt64 = 4 << 20

    /// Plans the layout for a kernel of `layout`, `nrPages` pages of RAM, an initrd of
    /// `initrdBytes` (0: none).
    init(kernel: KernelLayout, unmappedInitrd takesPFN: Bool, initrdBytes: UInt64, nrPages: UInt64) {
        virtBase = kernel.virtBase
        kernelFirstPFN = kernel.firstPFN
        kernelPages = kernel.pageCount
        var next = kernelFirstPFN + kernelPages
        let initrdPages = (initrdBytes + pageSize - 1) / pageSize
        if initrdPages > 0 && !takesPFN {
            mappedInitrd = next..<(next + initrdPages)
            next += initrdPages
        }
        let p2mPages = (nrPages * 8 + pageSize - 1) / pageSize
        let separate = kernel.p2mBase != nil
        if !separate {
            mappedP2M = next..<(next + p2mPages)
            next += p2mPages
        }
        startInfo = next; xenstore = next + 1; console = next + 2
        next += 3
        // Page tables must map themselves, the stack and the slack: iterate to a fixed point.
        var tables: UInt64 = 1
        while true {
            let mapEnd = Self.mappingEnd(virtBase: virtBase, lastPFN: next + tables + 1)
            let counts = Self.tableCounts(from: virtBase, to: mapEnd)
            let needed = UInt64(1 + counts.l3 + counts.l2 + counts.l1)
            if needed <= tables {
                tableCounts = counts
                mappedEnd = mapEnd
                break
            }
            tables = needed
        }
        pageTables = next..<(next + UInt64(1 + tableCounts.l3 + tableCounts.l2 + tableCounts.l1))
        next = pageTables.upperBound
        bootStack = next
        next += 1
        next = max(next, (mappedEnd - virtBase) / pageSize)
        if initrdPages > 0 && takesPFN {
            unmappedInitrd = next..<(next + initrdPages)
            next += initrdPages
        }
        if let base = kernel.p2mBase {
            p2mBase = base
            separateP2M = next..<(next + p2mPages)
            next += p2mPages
            let counts = Self.tableCounts(from: base, to: base + p2mPages * pageSize)
            let count = UInt64(counts.l3 + counts.l2 + counts.l1)
            separateP2MTables = next..<(next + count)
            next += count
        } else if let mapped = mappedP2M {
            p2mBase = virtBase + mapped.lowerBound * pageSize
        }
        end = next
    }

    static func mappingEnd(virtBase: UInt64, lastPFN: UInt64) -> UInt64 {
        let raw = virtBase + lastPFN * pageSize + extraMapped
        return (raw + mappingAlignment - 1) / mappingAlignment * mappingAlignment
    }

    /// Number of L3, L2 and L1 tables needed to map [start, end) with 4 KiB pages.
    static func tableCounts(from start: UInt64, to end: UInt64) -> (l3: Int, l2: Int, l1: Int) {
        guard end > start else { return (0, 0, 0) }
        func spans(_ shift: UInt64) -> Int { Int(((end - 1) >> shift) - (start >> shift) + 1) }
        return (spans(39), spans(30), spans(21))
    }

    func virtual(_ pfn: UInt64) -> UInt64 { virtBase + pfn * pageSize }
    var nrPTFrames: UInt64 { UInt64(pageTables.count) }
}
