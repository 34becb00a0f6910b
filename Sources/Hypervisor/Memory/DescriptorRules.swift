/// Which segment descriptors a 64-bit PV guest may put in its GDT or LDT
/// (xen/arch/x86/pv/descriptor-tables.c `check_descriptor`).
public enum DescriptorRules {
    static let present: UInt64 = 1 << 47
    static let system: UInt64 = 1 << 44   // S bit: 1 = code/data
    static let dplShift: UInt64 = 45
    static let typeMask: UInt64 = 0xf << 40

    /// Whether `descriptor` is acceptable: not present, a code/data segment, or the
    /// harmless type 0 (the upper half of a 16-byte system descriptor). System
    /// descriptors (TSS, LDT, gates) are refused: only Xen installs those. (Xen also
    /// accepts checked call gates; Domus does not yet.)
    public static func isAllowed(_ descriptor: UInt64) -> Bool {
        if descriptor & present == 0 { return true }
        if descriptor & system != 0 { return true }
        return descriptor & typeMask == 0
    }

    /// The descriptor as the hardware GDT holds it: code/data segments get DPL 3 (the
    /// guest kernel runs in ring 3) and the accessed bit, so the CPU never has to write it.
    public static func fixup(_ descriptor: UInt64) -> UInt64 {
        guard descriptor & present != 0, descriptor & system != 0 else { return descriptor }
        return descriptor | (3 << dplShift) | (1 << 40)
    }
}
