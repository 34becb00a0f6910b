/// Xen's forced-emulation CPUID (`ud2; .ascii "xen"; cpuid`, which Linux's PV code
/// uses for every CPUID it wants the hypervisor's view of), answered inside the VM
/// from the domain's policy as the host answers it (`Hypervisor.PrivilegedOps.cpuid`):
/// leaf 1 without OSXSAVE and with the vCPU's APIC id, Xen's leaves as the host fills
/// them. A leaf the host's table has and the core's copy lacks is left to the host.
enum FastCPUID {
    /// `ud2`, "xen", `cpuid`.
    static let sequence: UInt64 = 0xa2_0f6e_6578_0b0f
    static let sequenceMask: UInt64 = 0x00ff_ffff_ffff_ffff
    static let sequenceLength: UInt64 = 7

    static func forcedEmulation(_ regs: Words, _ vcpu: Words, context: CoreContext, cr3: UInt64) -> UInt64 {
        let rip = regs.u64(UInt64(CoreLayout.savedRIP))
        guard let code = InstructionBytes(view: context.view, address: rip, root: cr3), code.available >= sequenceLength,
              code.word & sequenceMask == sequence else { return CoreLayout.resultDeferred }
        let function = UInt32(truncatingIfNeeded: regs.u64(UInt64(CoreLayout.savedRAX)))
        let index = UInt32(truncatingIfNeeded: regs.u64(UInt64(CoreLayout.savedRCX)))
        guard var values = lookup(context.header, function: function, index: index) else { return CoreLayout.resultDeferred }
        if function == 1 {
            // OSXSAVE mirrors CR4.OSXSAVE, which a PV guest never has; APIC id = vCPU id.
            values.ecx &= ~(1 << 27)
            values.ebx = (values.ebx & 0x00ff_ffff) | UInt32(truncatingIfNeeded: vcpu.u64(UInt64(CoreLayout.vcpuID)) & 0xff) << 24
        }
        if function == 0x4000_0002 { values.ecx = 0; values.edx = 0 }
        if function == 0x4000_0001 { values.ebx = 0 }
        regs.setU64(UInt64(CoreLayout.savedRAX), UInt64(values.eax))
        regs.setU64(UInt64(CoreLayout.savedRBX), UInt64(values.ebx))
        regs.setU64(UInt64(CoreLayout.savedRCX), UInt64(values.ecx))
        regs.setU64(UInt64(CoreLayout.savedRDX), UInt64(values.edx))
        regs.setU64(UInt64(CoreLayout.savedRIP), rip &+ sequenceLength)
        vcpu.countInVM(CoreLayout.inVMCPUID)
        return CoreLayout.resultHandled
    }

    struct Values { var eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32 }

    /// The first entry for `function` whose index matches (or is not a sub-leaf), as the
    /// host's `CPUIDPolicy.lookup`; zeros for a leaf a complete table lacks; nil when
    /// the table is not complete and lacks it.
    static func lookup(_ header: Words, function: UInt32, index: UInt32) -> Values? {
        let count = header.u64(UInt64(CoreLayout.headerCPUIDCount))
        guard count <= UInt64(CoreLayout.cpuidCapacity) else { return nil }
        var entry: UInt64 = 0
        while entry < count {
            let base = UInt64(CoreLayout.headerCPUIDTable) &+ entry &* UInt64(CoreLayout.cpuidEntrySize)
            if header.u32(base) == function && (header.u32(base &+ 8) == 0 || header.u32(base &+ 4) == index) {
                return Values(eax: header.u32(base &+ 12), ebx: header.u32(base &+ 16),
                              ecx: header.u32(base &+ 20), edx: header.u32(base &+ 24))
            }
            entry &+= 1
        }
        guard header.u64(UInt64(CoreLayout.headerCPUIDComplete)) == 1 else { return nil }
        return Values(eax: 0, ebx: 0, ecx: 0, edx: 0)
    }
}
