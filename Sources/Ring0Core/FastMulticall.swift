/// multicall, and the continuation of batches, inside the VM.
///
/// Linux batches its page-table work: a page becoming an L1 is an update_va_mapping
/// (read-only) and an MMUEXT_PIN_L1_TABLE in one multicall, a freed one the reverse,
/// and lazy MMU mode gathers mmu_update requests into one entry. The core completes
/// the entries it can, in order, writing each result into its entry as the host does.
/// At the first entry it cannot, the host gets the rest: the list and count in rdi and
/// rsi are moved past what was done, which is how Xen itself presents a preempted
/// batch when it continues it (the guest's hypercall wrappers treat the argument
/// registers as clobbered). A batch the core cannot start is deferred untouched.
extension Core {
    /// Most entries (or mmu_update requests) the core completes per entry into it, so
    /// that a huge batch cannot keep the vCPU in ring 0; the host does the rest.
    static let batchLimit: UInt64 = 512

    /// struct multicall_entry: op, result, args[6] (u64 each).
    static let multicallEntrySize: UInt64 = 64

    static func multicallBatch(_ regs: Words, _ vcpu: Words, view: GuestView, cr3: UInt64) -> UInt64 {
        let list = regs.u64(UInt64(CoreLayout.savedRDI))
        let count = regs.u64(UInt64(CoreLayout.savedRSI))
        guard count >= 1, let context = CoreContext(vcpu) else { return CoreLayout.resultDeferred }
        let ram = context.ram
        let scratch = Words(base: vcpu.base + CoreLayout.vcpuScratchRegisters)
        var done: UInt64 = 0
        while done < count && done < batchLimit {
            let entry = list &+ done &* multicallEntrySize
            // The entry within one page, writable (its result, and a continuation's
            // arguments, are written back); only the page-table family: the others
            // are rare in batches, and some (iret, a nested multicall) must not run
            // inside one at all.
            guard entry & 0xfff <= 0x1000 &- multicallEntrySize, let slot = view.translate(entry, root: cr3, write: true) else { break }
            let op = ram.u64(slot)
            guard op == mmuUpdate || op == mmuextOp || op == updateVAMapping else { break }
            scratch.setU64(UInt64(CoreLayout.savedRAX), op)
            scratch.setU64(UInt64(CoreLayout.savedRDI), ram.u64(slot &+ 16))
            scratch.setU64(UInt64(CoreLayout.savedRSI), ram.u64(slot &+ 24))
            scratch.setU64(UInt64(CoreLayout.savedRDX), ram.u64(slot &+ 32))
            scratch.setU64(UInt64(CoreLayout.savedR10), ram.u64(slot &+ 40))
            scratch.setU64(UInt64(CoreLayout.savedR8), ram.u64(slot &+ 48))
            guard pageTableOrState(scratch, vcpu, context: context, cr3: cr3, number: op) == CoreLayout.resultHandled else {
                // An mmu_update the core began and handed on has moved its own list
                // and count past what it did: the entry carries them to the host.
                ram.setU64(slot &+ 16, scratch.u64(UInt64(CoreLayout.savedRDI)))
                ram.setU64(slot &+ 24, scratch.u64(UInt64(CoreLayout.savedRSI)))
                break
            }
            ram.setU64(slot &+ 8, scratch.u64(UInt64(CoreLayout.savedRAX)))
            vcpu.countCall(op, handled: true)   // under its own number
            done &+= 1
            // Later entries would read memory through the tables the guest just left.
            if vcpu.u64(UInt64(CoreLayout.vcpuRequestCR3)) != 0 { break }
        }
        guard done == count else { return continueInHost(regs, list: list, done: done, entrySize: multicallEntrySize, count: count) }
        regs.setU64(UInt64(CoreLayout.savedRAX), 0)
        return CoreLayout.resultHandled
    }

    /// Defers the rest of a batch whose first `done` entries the core completed: the
    /// host gets the same hypercall for the remaining entries. With nothing done, the
    /// registers are left untouched.
    static func continueInHost(_ regs: Words, list: UInt64, done: UInt64, entrySize: UInt64, count: UInt64) -> UInt64 {
        if done > 0 {
            regs.setU64(UInt64(CoreLayout.savedRDI), list &+ done &* entrySize)
            regs.setU64(UInt64(CoreLayout.savedRSI), count &- done)
        }
        return CoreLayout.resultDeferred
    }
}
