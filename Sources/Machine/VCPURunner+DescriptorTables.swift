import GuestMemory
import Hypervisor
import KVM
import XenABI

/// The guest's descriptor tables, copied (checked) into the vCPU's hardware GDT and LDT.
extension VCPURunner {
    /// The descriptor tables changed: user selectors the CPU accepted before may no
    /// longer be accepted, so the core's iret leaves user returns to the host until
    /// the host has resumed user mode again.
    func forgetUserSelectors() {
        publishedUserCS = 0
        publishedUserSS = 0
        vcpu.resumedUserSelectors = nil
    }

    /// Copies the guest's GDT (checked descriptors) into the hardware GDT.
    func loadGDT() {
        forgetUserSelectors()
        let base = area.gdt(vcpu.id).rawValue
        let entries = min(vcpu.gdtEntries, FlatSelector.maxGuestGDTEntries)
        for index in 0..<FlatSelector.maxGuestGDTEntries {
            var descriptor: UInt64 = 0
            if index < entries, index / 512 < vcpu.gdtFrames.count, let frame = vcpu.gdtFrames[index / 512].address {
                let raw: UInt64 = (try? domain.memory.read(at: GuestPhysicalAddress(frame.rawValue + UInt64(index % 512) * 8))) ?? 0
                descriptor = DescriptorRules.isAllowed(raw) ? DescriptorRules.fixup(raw) : 0
            }
            try? domain.memory.write(descriptor, at: GuestPhysicalAddress(base + UInt64(index) * 8))
        }
    }

    /// Copies the guest's LDT (checked descriptors) into the hardware LDT and points
    /// LDTR at it (or at nothing when the guest has no LDT).
    func loadLDT() {
        forgetUserSelectors()
        let base = area.ldt(vcpu.id).rawValue
        let entries = min(vcpu.ldtEntries, 8192)
        for index in 0..<entries {
            var descriptor: UInt64 = 0
            if index / 512 < vcpu.ldtFrames.count, let frame = vcpu.ldtFrames[index / 512].address {
                let raw: UInt64 = (try? domain.memory.read(at: GuestPhysicalAddress(frame.rawValue + UInt64(index % 512) * 8))) ?? 0
                descriptor = DescriptorRules.isAllowed(raw) ? DescriptorRules.fixup(raw) : 0
            }
            try? domain.memory.write(descriptor, at: GuestPhysicalAddress(base + UInt64(index) * 8))
        }
        var sregs = cpu.specialRegisters
        if entries == 0 {
            sregs.ldt = Segment(selector: 0, unusable: true)
        } else {
            let (low, high) = DescriptorTablesBuilder.ldtDescriptor(base: area.ldtVirtual(vcpu.id), entries: entries)
            let index = FlatSelector.firstReservedGDTEntry + 10
            try? domain.memory.write(low, at: GuestPhysicalAddress(area.gdt(vcpu.id).rawValue + UInt64(index) * 8))
            try? domain.memory.write(high, at: GuestPhysicalAddress(area.gdt(vcpu.id).rawValue + UInt64(index + 1) * 8))
            sregs.ldt = Segment(base: area.ldtVirtual(vcpu.id), limit: UInt32(entries * 8 - 1),
                                selector: DescriptorTablesBuilder.ldtSelector, type: 2, present: true)
        }
        cpu.specialRegisters = sregs
    }
}
