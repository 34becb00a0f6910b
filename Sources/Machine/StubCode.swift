/// The ring-0 code Domus places inside every VM: tiny stubs that leave to the host,
/// and the routine that performs, inside the VM, the page-table stores and TLB/CR3/MSR
/// work the host asks for (needed on shadow-paging hosts, where host-side writes to a
/// live page table go unnoticed; see docs/machine-probes.md).
///
/// Layout of the stubs page:
/// - 0x000 + 8·v: vector v's IDT stub: `out %al, $v; iretq` (the host rewrites the
///   frame at the IST top before the iretq runs).
/// - 0x800: the `syscall` (MSR_LSTAR) stub: `out %ax, $0; iretq`.
/// - 0x900: the apply routine.
enum StubCode {
    static let vectorStubStride = 8
    static let syscallStubOffset = 0x800
    static let applyOffset = 0x900
    /// Port of the syscall stub's 2-byte `out`.
    static let syscallPort: UInt16 = 0
    /// Port of the apply routine's 4-byte `out` ("give me more work").
    static let applyMorePort: UInt16 = 0

    /// Offset of the `iretq` in a vector stub.
    static let vectorStubIretOffset = 2
    /// Offset of the `iretq` in the syscall stub.
    static let syscallStubIretOffset = 3

    /// Apply-routine operations: {op, a, b} triples of u64.
    enum Operation: UInt64 {
        /// End: restore rax=a, rcx=b, rdx/rsi from the next two words, iretq.
        case end = 0
        /// *(u64 *)a = b.
        case store = 1
        /// invlpg a.
        case invalidate = 2
        /// cr3 = a.
        case loadCR3 = 3
        /// wrmsr(a, b).
        case writeMSR = 4
        /// Reload cr3 (flush the non-global TLB).
        case flushAll = 5
        /// Leave to the host for more operations; it resets rsi to the buffer.
        case more = 6
    }

    /// The apply routine (assembled from this source; rsi points at the operations):
    ///
    ///     loop: mov (%rsi),%rax; mov 8(%rsi),%rcx; mov 16(%rsi),%rdx; add $24,%rsi
    ///           cmp $1,%rax; je store;   cmp $2,%rax; je invlpg; cmp $3,%rax; je loadcr3
    ///           cmp $4,%rax; je wrmsr;   cmp $5,%rax; je flush;  cmp $6,%rax; je more
    ///           mov %rcx,%rax; mov %rdx,%rcx; mov (%rsi),%rdx; mov 8(%rsi),%rsi; iretq
    ///     store:   mov %rdx,(%rcx); jmp loop
    ///     invlpg:  invlpg (%rcx); jmp loop
    ///     loadcr3: mov %rcx,%cr3; jmp loop
    ///     wrmsr:   mov %rdx,%rax; shr $32,%rdx; wrmsr; jmp loop
    ///     flush:   mov %cr3,%rax; mov %rax,%cr3; jmp loop
    ///     more:    out %eax,$0; jmp loop
    static let applyRoutine: [UInt8] = [
        0x48, 0x8b, 0x06, 0x48, 0x8b, 0x4e, 0x08, 0x48, 0x8b, 0x56, 0x10, 0x48,
        0x83, 0xc6, 0x18, 0x48, 0x83, 0xf8, 0x01, 0x74, 0x2d, 0x48, 0x83, 0xf8,
        0x02, 0x74, 0x2c, 0x48, 0x83, 0xf8, 0x03, 0x74, 0x2b, 0x48, 0x83, 0xf8,
        0x04, 0x74, 0x2a, 0x48, 0x83, 0xf8, 0x05, 0x74, 0x2f, 0x48, 0x83, 0xf8,
        0x06, 0x74, 0x31, 0x48, 0x89, 0xc8, 0x48, 0x89, 0xd1, 0x48, 0x8b, 0x16,
        0x48, 0x8b, 0x76, 0x08, 0x48, 0xcf, 0x48, 0x89, 0x11, 0xeb, 0xb9, 0x0f,
        0x01, 0x39, 0xeb, 0xb4, 0x0f, 0x22, 0xd9, 0xeb, 0xaf, 0x48, 0x89, 0xd0,
        0x48, 0xc1, 0xea, 0x20, 0x0f, 0x30, 0xeb, 0xa4, 0x0f, 0x20, 0xd8, 0x0f,
        0x22, 0xd8, 0xeb, 0x9c, 0xe7, 0x00, 0xeb, 0x98,
    ]

    /// Offset of the final `iretq` inside the apply routine.
    static let applyIretOffset = 0x40

    /// The whole 4 KiB stubs page.
    static func page() -> [UInt8] {
        var page = [UInt8](repeating: 0xcc, count: 4096)
        for vector in 0..<256 {
            let base = vector * vectorStubStride
            let stub: [UInt8] = [0xe6, UInt8(vector), 0x48, 0xcf]   // out %al,$v ; iretq
            for (offset, byte) in stub.enumerated() { page[base + offset] = byte }
        }
        let syscall: [UInt8] = [0x66, 0xe7, 0x00, 0x48, 0xcf]   // out %ax,$0 ; iretq
        for (offset, byte) in syscall.enumerated() { page[syscallStubOffset + offset] = byte }
        for (offset, byte) in applyRoutine.enumerated() { page[applyOffset + offset] = byte }
        return page
    }
}
