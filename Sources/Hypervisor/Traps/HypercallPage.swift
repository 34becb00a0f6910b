/// The hypercall page (public/xen.h, XEN_ELFNOTE_HYPERCALL_PAGE): 128 stubs of 32
/// bytes, one per hypercall, that guests `call`. Domus's stubs leave the guest with
/// `int $0x82` (the vector 32-bit PV guests use on Xen) through a DPL-3 gate whose
/// ring-0 stub exits to the host; on hosts where a ring-3 `int $n` raises #UD instead
/// (PVM), the hypervisor recognises the #UD at a stub. Either way rcx and r11 are
/// preserved, and no `syscall` is needed. (A faulting `out` would also work, but
/// the #GP handler's port-I/O fast path would tax every hypercall.)
public enum HypercallPage {
    /// The interrupt vector of the stubs.
    public static let vector: UInt8 = 0x82
    /// Offset of the `int` in an ordinary stub.
    public static let exitOffset = 5
    /// Bytes of the `int $0x82` instruction.
    public static let exitInstruction: [UInt8] = [0xcd, vector]

    /// The page's 4096 bytes (hypercall_page_initialise_ring3_kernel's layout).
    public static func contents() -> [UInt8] {
        var page = [UInt8](repeating: 0xcc, count: 4096)   // int3 between stubs
        for number in 0..<128 {
            let base = number * 32
            var stub: [UInt8]
            if number == 23 {
                // iret: push the rcx/r11/rax part of iret_context, then leave; never returns.
                stub = [0x51, 0x41, 0x53, 0x50, 0xb8, 23, 0, 0, 0] + exitInstruction + [0x0f, 0x0b]
            } else {
                stub = [0xb8, UInt8(number), 0, 0, 0] + exitInstruction + [0xc3]
            }
            for (offset, byte) in stub.enumerated() { page[base + offset] = byte }
        }
        return page
    }

    /// Whether `offset` (relative to the page) is the exit instruction of a stub.
    public static func isExit(offsetInPage offset: UInt64) -> Bool {
        guard offset < 4096 else { return false }
        let inStub = offset % 32
        return offset / 32 == 23 ? inStub == 9 : inStub == UInt64(exitOffset)
    }
}
