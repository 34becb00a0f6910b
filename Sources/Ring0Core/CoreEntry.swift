import CGuestAtomics

/// The core's entry point: ring0/entry.S calls it for every `int $0x82` (a
/// hypercall-page call), every `syscall` and every page fault from guest code, with
/// the guest's registers saved, on the vCPU's core stack; `entry` says which
/// (`CoreLayout.entry*`), `cr2` is the CPU's.
@_cdecl("domus_core_hypercall")
public func domusCoreHypercall(_ registers: UnsafeMutableRawPointer, _ vcpuBlock: UnsafeMutableRawPointer,
                               _ cr3: UInt64, _ entry: UInt64, _ cr2: UInt64) -> UInt64 {
    Core.enter(registers: registers, vcpuBlock: vcpuBlock, cr3: cr3, entry: entry, cr2: cr2)
}

/// Hypercalls completed inside the VM (see `FastMMU`). The host remains the reference:
/// the core either does exactly what the host would, or nothing at all.
public enum Core {
    static let mmuUpdate: UInt64 = 1
    static let mmuextOp: UInt64 = 26
    static let vcpuOp: UInt64 = 24
    static let vcpuOpIsUp: UInt64 = 3
    static let vcpuOpSetSingleshotTimer: UInt64 = 8
    static let stackSwitch: UInt64 = 3
    static let updateVAMapping: UInt64 = 14
    static let xenVersion: UInt64 = 17
    static let setSegmentBase: UInt64 = 25
    static let iret: UInt64 = 23
    static let enoent: UInt64 = UInt64(bitPattern: -2)
    static let domidSelf: UInt64 = 0x7ff0
    static let multicall: UInt64 = 13
    static let pinL1Table: UInt64 = 0
    static let unpinTable: UInt64 = 4
    static let newBaseptr: UInt64 = 5
    static let tlbFlushLocal: UInt64 = 6
    static let invlpgLocal: UInt64 = 7
    static let newUserBaseptr: UInt64 = 15

    /// Handles the way in of `entry` (a hypercall, a guest user-mode `syscall`, a page
    /// fault) with the guest's registers in `registers` (saved as `CoreLayout.saved*`)
    /// for the vCPU whose block is `vcpuBlock`, with the guest's `cr3` loaded. Returns
    /// `CoreLayout.resultHandled` (registers and frame rewritten, requests in the vCPU
    /// block) or `resultDeferred` (nothing changed, or for a batch done in part, its
    /// rest handed on: `continueInHost`).
    public static func enter(registers: UnsafeMutableRawPointer, vcpuBlock: UnsafeMutableRawPointer,
                             cr3: UInt64, entry: UInt64, cr2: UInt64) -> UInt64 {
        let vcpu = Words(base: vcpuBlock)
        let regs = Words(base: registers)
        if entry == CoreLayout.entryPageFault {
            guard let context = CoreContext(vcpu) else { return CoreLayout.resultDeferred }
            return FastTraps.pageFault(regs, vcpu, context: context, faultAddress: cr2, cr3: cr3)
        }
        if entry == CoreLayout.entryTimer {
            guard let context = CoreContext(vcpu) else { return CoreLayout.resultDeferred }
            return FastTimer.interrupt(regs, vcpu, context: context, now: cga_rdtsc())
        }
        if entry == CoreLayout.entryInvalidOpcode {
            guard let context = CoreContext(vcpu) else { return CoreLayout.resultDeferred }
            return FastCPUID.forcedEmulation(regs, vcpu, context: context, cr3: cr3)
        }
        if vcpu.u64(UInt64(CoreLayout.vcpuMode)) != 0 {
            // From guest user mode, a `syscall` is a system call for the guest kernel.
            guard entry == CoreLayout.entrySyscall, let context = CoreContext(vcpu) else { return CoreLayout.resultDeferred }
            return FastTraps.userSyscall(regs, vcpu, view: context.view)
        }
        return hypercall(registers: registers, vcpuBlock: vcpuBlock, cr3: cr3, entry: entry)
    }

    /// Handles the hypercall in `registers` from guest kernel mode (see `enter`).
    public static func hypercall(registers: UnsafeMutableRawPointer, vcpuBlock: UnsafeMutableRawPointer,
                                 cr3: UInt64, entry: UInt64) -> UInt64 {
        let vcpu = Words(base: vcpuBlock)
        let regs = Words(base: registers)
        let number = regs.u64(UInt64(CoreLayout.savedRAX))
        let result = attempt(regs, vcpu, cr3: cr3, number: number, entry: entry)
        vcpu.countCall(number, handled: result == CoreLayout.resultHandled)
        return result
    }

    private static func attempt(_ regs: Words, _ vcpu: Words, cr3: UInt64, number: UInt64, entry: UInt64) -> UInt64 {
        switch number {
        case mmuUpdate, mmuextOp, vcpuOp, stackSwitch, updateVAMapping, xenVersion, setSegmentBase, iret, multicall: break
        default: return CoreLayout.resultDeferred
        }
        guard let context = CoreContext(vcpu), vcpu.u64(UInt64(CoreLayout.vcpuMode)) == 0 else { return CoreLayout.resultDeferred }
        let header = context.header
        // A `syscall` in guest kernel mode is a hypercall; an `int $0x82` only when it
        // is the hypercall page's own (the saved rip follows it).
        if entry != CoreLayout.entrySyscall {
            let page = header.u64(UInt64(CoreLayout.headerHypercallPage))
            let offset = regs.u64(UInt64(CoreLayout.savedRIP)) &- 2 &- page
            guard entry == CoreLayout.entryHypercallPage, page != 0, offset < 4096, offset % 32 == 5 else {
                return CoreLayout.resultDeferred
            }
        }
        if number == multicall { return multicallBatch(regs, vcpu, view: context.view, cr3: cr3) }
        return pageTableOrState(regs, vcpu, context: context, cr3: cr3, number: number)
    }

    /// The hypercalls of `attempt` other than multicall, also the entries of one.
    static func pageTableOrState(_ regs: Words, _ vcpu: Words, context: CoreContext, cr3: UInt64, number: UInt64) -> UInt64 {
        let header = context.header
        let ramFrames = context.ramFrames
        let ram = context.ram
        switch number {
        case vcpuOp:
            if regs.u64(UInt64(CoreLayout.savedRDI)) == vcpuOpSetSingleshotTimer {
                return singleshotTimer(regs, vcpu, view: context.view, cr3: cr3)
            }
            return vcpuOperation(regs, header)
        case stackSwitch: return FastState.stackSwitch(regs, vcpu)
        case setSegmentBase: return FastState.setSegmentBase(regs, vcpu)
        case xenVersion: return FastState.xenVersion(regs, vcpu, header, view: context.view)
        case iret: return FastIret.iret(regs, vcpu, view: GuestView(ram: ram, ramFrames: ramFrames), cr3: cr3)
        default: break
        }
        let mmu = FastMMU(ram: ram, pages: PageInfoTable(words: context.pageInfo, frames: ramFrames),
                          ramFrames: ramFrames)
        let lock = CoreLock(header: header)
        let tag = vcpu.u64(UInt64(CoreLayout.vcpuID)) &+ 1
        if number == updateVAMapping { return vaMapping(regs, vcpu, mmu: mmu, lock: lock, tag: tag) }
        // DOMID_SELF or the domain's own id.
        let domid = regs.u64(UInt64(CoreLayout.savedR10)) & 0xffff
        guard domid == domidSelf || domid == header.u64(UInt64(CoreLayout.headerDomainID)) else {
            return CoreLayout.resultDeferred
        }
        // The count of done entries goes to the host (it may fault).
        guard regs.u64(UInt64(CoreLayout.savedRDX)) == 0 else { return CoreLayout.resultDeferred }

        let view = GuestView(ram: ram, ramFrames: ramFrames)
        let list = regs.u64(UInt64(CoreLayout.savedRDI))
        let count = regs.u64(UInt64(CoreLayout.savedRSI))

        if number == mmuUpdate {
            // Request by request (struct mmu_update: ptr, val); the host gets the rest
            // from the first it must do itself, or past `batchLimit`.
            guard count >= 1, count < 1 << 31 else { return CoreLayout.resultDeferred }
            guard lock.acquire(tag: tag) else { return CoreLayout.resultDeferred }
            var done: UInt64 = 0
            while done < count && done < batchLimit {
                let request = list &+ done &* 16
                guard let ptr = view.readWord(request, root: cr3), let value = view.readWord(request &+ 8, root: cr3),
                      mmu.updateEntry(ptr: ptr, value: value) else { break }
                done &+= 1
            }
            lock.release(tag: tag)
            guard done == count else { return continueInHost(regs, list: list, done: done, entrySize: 16, count: count) }
            regs.setU64(UInt64(CoreLayout.savedRAX), 0)
            return CoreLayout.resultHandled
        }
        return extendedOps(regs, vcpu, header, view: view, mmu: mmu, lock: lock, tag: tag, list: list, count: count, cr3: cr3)
    }

    /// update_va_mapping(va, val, flags) with a local flush or none: the L1 entry that
    /// maps `va` under the kernel's L4 becomes `val`, as one MMU_NORMAL_PT_UPDATE.
    private static func vaMapping(_ regs: Words, _ vcpu: Words, mmu: FastMMU, lock: CoreLock, tag: UInt64) -> UInt64 {
        let address = regs.u64(UInt64(CoreLayout.savedRDI))
        let value = regs.u64(UInt64(CoreLayout.savedRSI))
        let flags = regs.u64(UInt64(CoreLayout.savedRDX))
        let flushType = flags & 3
        guard flags & ~3 == 0, flushType != 3 else { return CoreLayout.resultDeferred }   // other vCPUs: the host's
        let root = vcpu.u64(UInt64(CoreLayout.vcpuKernelTable))
        guard root != CoreLayout.noFrame, let entry = GuestView(ram: mmu.ram, ramFrames: mmu.ramFrames).l1EntryAddress(address, root: root << 12),
              mmu.pages.type(entry >> 12) == PageTypeCode.l1 else { return CoreLayout.resultDeferred }
        guard lock.acquire(tag: tag) else { return CoreLayout.resultDeferred }
        let done = mmu.updateEntry(ptr: entry, value: value)
        lock.release(tag: tag)
        guard done else { return CoreLayout.resultDeferred }
        if flushType == 1 {
            vcpu.requestFlush()
        } else if flushType == 2 {
            vcpu.requestInvalidate(address)
        }
        regs.setU64(UInt64(CoreLayout.savedRAX), 0)
        return CoreLayout.resultHandled
    }

    /// vcpu_op(VCPUOP_is_up) for a vCPU id the domain does not have: -ENOENT. Linux
    /// asks this for every possible CPU (8192 with Debian's NR_CPUS) at boot.
    private static func vcpuOperation(_ regs: Words, _ header: Words) -> UInt64 {
        let command = regs.u64(UInt64(CoreLayout.savedRDI))
        let id = regs.u64(UInt64(CoreLayout.savedRSI)) & 0xffff_ffff   // an int in the ABI
        guard command == vcpuOpIsUp, id >= header.u64(UInt64(CoreLayout.headerVCPUCount)) else {
            return CoreLayout.resultDeferred
        }
        regs.setU64(UInt64(CoreLayout.savedRAX), enoent)
        return CoreLayout.resultHandled
    }

    /// vcpu_op(VCPUOP_set_singleshot_timer) for the calling vCPU with a deadline at or
    /// after the host's armed timer (which therefore fires first and finds it): the
    /// deadline is recorded for the host, rax 0. (The host's -ETIME for a past deadline
    /// cannot arise: the armed moment, and so the deadline, is still ahead.)
    private static func singleshotTimer(_ regs: Words, _ vcpu: Words, view: GuestView, cr3: UInt64) -> UInt64 {
        let id = regs.u64(UInt64(CoreLayout.savedRSI)) & 0xffff_ffff   // an int in the ABI
        guard id == vcpu.u64(UInt64(CoreLayout.vcpuID)),
              let deadline = view.readWord(regs.u64(UInt64(CoreLayout.savedRDX)), root: cr3),
              let flags = view.readWord(regs.u64(UInt64(CoreLayout.savedRDX)) &+ 8, root: cr3) else {
            return CoreLayout.resultDeferred
        }
        if vcpu.u64(UInt64(CoreLayout.vcpuLocalTimer)) != 0 {
            return FastTimer.singleshot(regs, vcpu, deadline: deadline, flags: flags & 0xffff_ffff, now: cga_rdtsc())
        }
        let armedAt = vcpu.u64(UInt64(CoreLayout.vcpuTimerArmedAt))
        guard armedAt != 0, deadline >= armedAt, cga_rdtsc() < vcpu.u64(UInt64(CoreLayout.vcpuTimerArmedTSC)) else {
            return CoreLayout.resultDeferred
        }
        vcpu.setU64(UInt64(CoreLayout.vcpuTimerDeadline), deadline)
        vcpu.setU64(UInt64(CoreLayout.vcpuTimerUpdated), 1)
        regs.setU64(UInt64(CoreLayout.savedRAX), 0)
        return CoreLayout.resultHandled
    }

    /// mmuext_op with one or two of NEW_BASEPTR, NEW_USER_BASEPTR, TLB_FLUSH_LOCAL and
    /// INVLPG_LOCAL (Linux's switch_mm issues the two base pointers together).
    private static func extendedOps(_ regs: Words, _ vcpu: Words, _ header: Words, view: GuestView, mmu: FastMMU, lock: CoreLock,
                                    tag: UInt64, list: UInt64, count: UInt64, cr3: UInt64) -> UInt64 {
        guard count >= 1 && count <= 2 else { return CoreLayout.resultDeferred }
        // struct mmuext_op: cmd (u32, padded), arg1 (u64), arg2 (u64).
        guard let command0 = view.readWord(list, root: cr3), let argument0 = view.readWord(list &+ 8, root: cr3) else {
            return CoreLayout.resultDeferred
        }
        if count == 1 && (command0 & 0xffff_ffff == pinL1Table || command0 & 0xffff_ffff == unpinTable) {
            guard lock.acquire(tag: tag) else { return CoreLayout.resultDeferred }
            var flush = false
            let onlyVCPU = header.u64(UInt64(CoreLayout.headerVCPUCount)) == 1
            let done = command0 & 0xffff_ffff == pinL1Table ? mmu.pinL1(argument0, onlyVCPU: onlyVCPU, flush: &flush) : mmu.unpin(argument0)
            lock.release(tag: tag)
            guard done else { return CoreLayout.resultDeferred }
            if flush { vcpu.requestFlush() }
            regs.setU64(UInt64(CoreLayout.savedRAX), 0)
            return CoreLayout.resultHandled
        }
        var command1: UInt64 = tlbFlushLocal
        var argument1: UInt64 = 0
        var flush = false
        if count == 2 {
            guard let command = view.readWord(list &+ 24, root: cr3), let argument = view.readWord(list &+ 32, root: cr3) else {
                return CoreLayout.resultDeferred
            }
            command1 = command
            argument1 = argument
        }
        let commands = (command0 & 0xffff_ffff, count == 2 ? command1 & 0xffff_ffff : UInt64.max)
        let arguments = (argument0, argument1)

        guard lock.acquire(tag: tag) else { return CoreLayout.resultDeferred }
        let oldKernel = vcpu.u64(UInt64(CoreLayout.vcpuKernelTable))
        var kernel = oldKernel
        var user = vcpu.u64(UInt64(CoreLayout.vcpuUserTable))
        var deltas = FrameDeltas()
        var invalidate: UInt64?
        var usable = true
        for index in 0..<2 {
            let command = index == 0 ? commands.0 : commands.1
            let argument = index == 0 ? arguments.0 : arguments.1
            if command == UInt64.max { break }
            switch command {
            case newBaseptr, newUserBaseptr:
                let isUser = command == newUserBaseptr
                let old = isUser ? user : kernel
                let new = isUser && argument == 0 ? CoreLayout.noFrame : argument
                guard mmu.canSwitchBase(from: old, to: new, deltas: deltas),
                      deltas.add(new, 1), deltas.add(old, -1) else { usable = false; break }
                if isUser { user = new } else { kernel = new }
            case tlbFlushLocal:
                flush = true
            case invlpgLocal:
                if invalidate == nil { invalidate = argument } else { flush = true }
            default:
                usable = false
            }
            if !usable { break }
        }
        guard usable else {
            lock.release(tag: tag)
            return CoreLayout.resultDeferred
        }
        deltas.apply(to: mmu.pages)
        vcpu.setU64(UInt64(CoreLayout.vcpuKernelTable), kernel)
        vcpu.setU64(UInt64(CoreLayout.vcpuUserTable), user)
        lock.release(tag: tag)

        // As the host's resume does: a new active table is loaded (which flushes);
        // otherwise the flushes asked for.
        if kernel != oldKernel && kernel != CoreLayout.noFrame && kernel << 12 != cr3 {
            vcpu.setU64(UInt64(CoreLayout.vcpuRequestCR3), kernel << 12)
        } else if flush {
            vcpu.requestFlush()
        } else if let invalidate {
            vcpu.requestInvalidate(invalidate)
        }
        regs.setU64(UInt64(CoreLayout.savedRAX), 0)
        return CoreLayout.resultHandled
    }
}

/// The domain's shared pages as the core reaches them: valid once the vCPU block
/// carries this layout's version and the host has enabled the core.
struct CoreContext {
    let header: Words
    let ram: Words
    let ramFrames: UInt64
    let pageInfo: Words

    init?(_ vcpu: Words) {
        guard vcpu.u64(UInt64(CoreLayout.vcpuVersion)) == CoreLayout.version,
              let headerBase = Self.pointer(vcpu.u64(UInt64(CoreLayout.vcpuDomainHeader))),
              let ramBase = Self.pointer(vcpu.u64(UInt64(CoreLayout.vcpuRAMBase))),
              let pageInfoBase = Self.pointer(vcpu.u64(UInt64(CoreLayout.vcpuPageInfo))) else { return nil }
        header = Words(base: headerBase)
        guard header.u64(UInt64(CoreLayout.headerEnabled)) != 0 else { return nil }
        ram = Words(base: ramBase)
        ramFrames = header.u64(UInt64(CoreLayout.headerRAMFrames))
        pageInfo = Words(base: pageInfoBase)
    }

    var view: GuestView { GuestView(ram: ram, ramFrames: ramFrames) }

    /// shared_info, where the host mapped it for the core.
    var sharedInfo: Words? { Self.pointer(header.u64(UInt64(CoreLayout.headerSharedInfo))).map { Words(base: $0) } }

    private static func pointer(_ value: UInt64) -> UnsafeMutableRawPointer? {
        UnsafeMutableRawPointer(bitPattern: UInt(truncatingIfNeeded: value))
    }
}
