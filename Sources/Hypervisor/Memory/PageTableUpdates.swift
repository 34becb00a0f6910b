import GuestMemory
import XenABI

/// Validated changes to one page-table entry: what mmu_update, update_va_mapping and
/// writable page-table emulation share (xen/arch/x86/mm.c `mod_lN_entry`).
enum PageTableUpdates {
    /// Changes the entry at machine address `address`, or, if its frame is not an active
    /// page table, writes the word as ordinary writable memory.
    static func update(_ vcpu: VCPU, at address: GuestPhysicalAddress, to value: UInt64, preserveAD: Bool,
                       requireL1: Bool) throws(XenError) {
        _ = try modify(vcpu, at: address, requireL1: requireL1) { old in
            preserveAD ? value | (old & (PTE.accessed | PTE.dirty)) : value
        }
    }

    /// Replaces the entry at `address` with `transform(old)` after validating it, as one
    /// atomic step against the hardware setting A/D bits; returns the old entry. For a
    /// frame that is not an active page table (and not `requireL1`), writes plain memory.
    @discardableResult
    static func modify(_ vcpu: VCPU, at address: GuestPhysicalAddress, requireL1: Bool,
                       transform: (UInt64) -> UInt64) throws(XenError) -> UInt64 {
        let domain = vcpu.domain
        let frame = address.frame
        guard domain.layout.isRAM(frame), address.rawValue % 8 == 0 else { throw .EINVAL }
        var work = PendingMachineWork()
        defer { vcpu.addWork(work) }
        return try domain.state.withLock { state throws(XenError) -> UInt64 in
            let env = domain.mmuEnvironment
            let info = state.pages[frame] ?? PageInfo()
            guard let level = info.isActiveTable ? info.type.level : nil else {
                if requireL1 { throw .EINVAL }
                try state.getPageType(frame, .writable, env, &work)
                defer { state.putPageType(frame, env, &work) }
                let old: UInt64
                do { old = try domain.memory.read(at: address) } catch { throw .EFAULT }
                do { try domain.memory.write(transform(old), at: address) } catch { throw .EFAULT }
                return old
            }
            if requireL1 && level != 1 { throw .EINVAL }
            let index = Int(address.pageOffset / 8)
            if level == 4 && index >= HypervisorVirtualLayout.firstHypervisorL4Slot
                && index < HypervisorVirtualLayout.endHypervisorL4Slot {
                domain.log.log(.debug, "d\(domain.id): attempt to change the hypervisor's L4 slot \(index)")
                throw .EINVAL
            }
            while true {
                let old: UInt64
                do { old = try domain.memory.atomicLoad64(at: address) } catch { throw .EFAULT }
                let new = transform(old)
                if new == old { return old }
                try state.acquireEntry(new, level: level, env, &work)
                let stored = PageTableEntryRules.adjust(new, level: level)
                let found: UInt64
                do { found = try domain.memory.atomicCompareExchange(at: address, expected: old, desired: stored) } catch {
                    state.releaseEntry(new, level: level, env, &work)
                    throw .EFAULT
                }
                guard found == old else {
                    // The hardware changed A/D bits meanwhile: undo and try again.
                    state.releaseEntry(new, level: level, env, &work)
                    continue
                }
                work.pageTableStores.append((address, stored))
                state.releaseEntry(old, level: level, env, &work)
                return old
            }
        }
    }
}
