import GuestMemory
import XenABI

/// What the type operations need besides the table: guest memory, the layout, and a
/// place to record page-table stores and flushes for the machine layer.
struct MMUEnvironment {
    let memory: GuestMemory
    let layout: DomainLayout
    let log: HypervisorLog
    let domainID: UInt16
}

extension DomainState {
    // MARK: Type references (Xen's get_page_type / put_page_type)

    /// Takes a reference of `type` on `frame`, validating the frame's contents when it
    /// becomes a page table (or descriptor page). Fails with EINVAL on a type conflict
    /// or invalid contents.
    mutating func getPageType(_ frame: FrameNumber, _ type: PageType, _ env: MMUEnvironment,
                              _ work: inout PendingMachineWork) throws(XenError) {
        guard let info = pages[frame] else { throw .EINVAL }
        if info.typeCount > 0 {
            guard info.type == type else {
                env.log.log(.debug, "d\(env.domainID): \(frame) is \(info.type) (count \(info.typeCount)), wanted \(type)")
                throw .EINVAL
            }
            guard info.typeCount < UInt32.max - 1 else { throw .EINVAL }
            pages.update(frame) { $0.typeCount += 1 }
            return
        }
        // First reference: the type may change. A frame that was writable may still be
        // writable in some TLB, this vCPU's or another's; flush before it becomes a
        // table or descriptor page.
        if info.type == .writable && type != .writable {
            work.flushAll = true
            work.flushOtherVCPUs = true
        }
        pages.update(frame) { $0.type = type; $0.typeCount = 1 }
        do {
            if let level = type.level {
                try validateTable(frame, level: level, env, &work)
            } else if type == .segmentDescriptor {
                try validateDescriptorPage(frame, env)
            }
        } catch {
            pages.update(frame) { $0.typeCount = 0; $0.type = .none }
            throw error
        }
    }

    /// Drops a type reference; a table whose last reference goes releases what its
    /// entries referenced.
    mutating func putPageType(_ frame: FrameNumber, _ env: MMUEnvironment, _ work: inout PendingMachineWork) {
        guard let info = pages[frame], info.typeCount > 0 else {
            env.log.log(.warning, "d\(env.domainID): type reference underflow on \(frame)")
            return
        }
        pages.update(frame) { $0.typeCount -= 1 }
        if info.typeCount == 1, let level = info.type.level {
            devalidateTable(frame, level: level, env, &work)
        }
    }

    // MARK: Entries

    /// Takes the references a present entry at `level` needs (get_page_from_lNe).
    mutating func acquireEntry(_ entry: UInt64, level: Int, _ env: MMUEnvironment,
                               _ work: inout PendingMachineWork) throws(XenError) {
        guard entry & PTE.present != 0 else { return }
        guard PageTableEntryRules.flagsAllowed(entry, level: level) else {
            env.log.log(.debug, "d\(env.domainID): bad L\(level) flags in entry 0x\(String(entry, radix: 16))")
            throw .EINVAL
        }
        let target = PageTableEntryRules.frame(entry)
        if level == 1 {
            if env.layout.isMappableXenPage(target) { return }
            guard env.layout.isRAM(target) else {
                env.log.log(.debug, "d\(env.domainID): L1 entry maps \(target), not the domain's")
                throw .EINVAL
            }
            if entry & PTE.rw != 0 { try getPageType(target, .writable, env, &work) }
            pages.update(target) { $0.mappings &+= 1 }
        } else {
            guard env.layout.isRAM(target) else {
                env.log.log(.debug, "d\(env.domainID): L\(level) entry points at \(target), not the domain's")
                throw .EINVAL
            }
            try getPageType(target, .table(level: level - 1), env, &work)
        }
    }

    /// Releases what `acquireEntry` took (put_page_from_lNe).
    mutating func releaseEntry(_ entry: UInt64, level: Int, _ env: MMUEnvironment, _ work: inout PendingMachineWork) {
        guard entry & PTE.present != 0 else { return }
        let target = PageTableEntryRules.frame(entry)
        if level == 1 {
            guard env.layout.isRAM(target) else { return }
            pages.update(target) { if $0.mappings > 0 { $0.mappings -= 1 } }
            if entry & PTE.rw != 0 { putPageType(target, env, &work) }
        } else if env.layout.isRAM(target) {
            putPageType(target, env, &work)
        }
    }

    // MARK: Tables

    private static func isHypervisorSlot(_ index: Int) -> Bool {
        index >= HypervisorVirtualLayout.firstHypervisorL4Slot && index < HypervisorVirtualLayout.endHypervisorL4Slot
    }

    /// Validates every entry of `frame` as a level-`level` table (alloc_lN_table);
    /// undoes partial work on failure. An L4 gets the hypervisor's slots written in.
    private mutating func validateTable(_ frame: FrameNumber, level: Int, _ env: MMUEnvironment,
                                        _ work: inout PendingMachineWork) throws(XenError) {
        guard let base = frame.address else { throw .EINVAL }
        var acquired: [(Int, UInt64)] = []
        for index in 0..<512 {
            if level == 4 && Self.isHypervisorSlot(index) { continue }
            let address = GuestPhysicalAddress(base.rawValue + UInt64(index) * 8)
            guard let entry: UInt64 = try? env.memory.read(at: address) else { throw .EFAULT }
            do {
                try acquireEntry(entry, level: level, env, &work)
            } catch {
                for (_, taken) in acquired.reversed() { releaseEntry(taken, level: level, env, &work) }
                env.log.log(.debug, "d\(env.domainID): validating \(frame) as L\(level): entry \(index) = 0x\(String(entry, radix: 16)) refused")
                throw error
            }
            if entry & PTE.present != 0 {
                acquired.append((index, entry))
                let adjusted = PageTableEntryRules.adjust(entry, level: level)
                if adjusted != entry { writeEntry(address, adjusted, env, &work) }
            }
        }
        if level == 4 { installHypervisorSlots(in: frame, env, &work) }
    }

    /// Releases the references a validated table held (free_lN_table).
    private mutating func devalidateTable(_ frame: FrameNumber, level: Int, _ env: MMUEnvironment,
                                          _ work: inout PendingMachineWork) {
        guard let base = frame.address else { return }
        for index in 0..<512 {
            if level == 4 && Self.isHypervisorSlot(index) { continue }
            let address = GuestPhysicalAddress(base.rawValue + UInt64(index) * 8)
            guard let entry: UInt64 = try? env.memory.read(at: address) else { continue }
            releaseEntry(entry, level: level, env, &work)
        }
    }

    /// Writes the hypervisor's L4 slots into a guest L4 (init_xen_l4_slots).
    mutating func installHypervisorSlots(in frame: FrameNumber, _ env: MMUEnvironment, _ work: inout PendingMachineWork) {
        guard let base = frame.address else { return }
        var values = [UInt64](repeating: 0, count: HypervisorVirtualLayout.endHypervisorL4Slot - HypervisorVirtualLayout.firstHypervisorL4Slot)
        for (slot, entry) in env.layout.hypervisorL4Entries where Self.isHypervisorSlot(slot) {
            values[slot - HypervisorVirtualLayout.firstHypervisorL4Slot] = entry
        }
        for (offset, value) in values.enumerated() {
            let address = GuestPhysicalAddress(base.rawValue + UInt64(HypervisorVirtualLayout.firstHypervisorL4Slot + offset) * 8)
            let current: UInt64? = try? env.memory.read(at: address)
            if current != value { writeEntry(address, value, env, &work) }
        }
    }

    /// Checks a page of descriptors for use as GDT/LDT frames (alloc_segdesc_page).
    private func validateDescriptorPage(_ frame: FrameNumber, _ env: MMUEnvironment) throws(XenError) {
        guard let base = frame.address else { throw .EINVAL }
        for index in 0..<512 {
            guard let descriptor: UInt64 = try? env.memory.read(at: GuestPhysicalAddress(base.rawValue + UInt64(index) * 8)) else {
                throw .EFAULT
            }
            guard DescriptorRules.isAllowed(descriptor) else { throw .EINVAL }
        }
    }

    /// Writes a page-table entry in guest memory and records it for replay in the VM.
    func writeEntry(_ address: GuestPhysicalAddress, _ value: UInt64, _ env: MMUEnvironment, _ work: inout PendingMachineWork) {
        do {
            try env.memory.write(value, at: address)
            work.pageTableStores.append((address, value))
        } catch {
            env.log.log(.error, "d\(env.domainID): page-table write to \(address) failed: \(error)")
        }
    }
}
