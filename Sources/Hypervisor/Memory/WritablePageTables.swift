import GuestMemory
import XenABI

/// Writable page-table emulation (xen/arch/x86/pv/ro-page-fault.c, "ptwr"): a guest
/// kernel write to one of its own page tables, which are mapped read-only, is decoded,
/// validated like an mmu_update and applied.
enum WritablePageTables {
    /// Emulates the faulting write if it targets an active page table of this domain.
    /// Returns false when the fault is not such a write (the caller injects #PF).
    static func emulate(_ vcpu: VCPU, _ context: inout GuestContext, faultAddress: UInt64) -> Bool {
        false
    }
}
