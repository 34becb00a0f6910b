/// The ring-0 code Domus places inside every VM: tiny stubs that leave to the host,
/// and the routine that performs, inside the VM, the page-table stores and TLB/CR3/MSR
/// work the host asks for (needed on shadow-paging hosts, where host-side writes to a
/// live page table go unnoticed; see docs/machine-probes.md).
///
/// Layout of the stubs page:
/// - 0x000 + 8·v: vector v's IDT stub: `out %al, $v; iretq` (the host rewrites the
///   frame at the IST top before the iretq runs).
/// - 0x800: the `syscall` (MSR_LSTAR) stub: `out %ax, $0; iretq`.
/// - 0x820: with the ring-0 core, MSR_LSTAR's stub instead: `int $0x84` into the core's
///   syscall gate (which defers to 0x800 what it does not complete); `ud2` after it.
/// - 0x900: the apply routine.
/// - 0xa00: the #GP handler with the port-I/O fast path (vector 13's IDT gate).
enum StubCode {
    static let vectorStubStride = 8
    static let syscallStubOffset = 0x800
    /// MSR_LSTAR's stub when the ring-0 core runs (see the layout above).
    static let coreSyscallStubOffset = 0x820
    /// The vector of the core's syscall gate (DPL 0: raised only by the stub).
    static let coreSyscallVector: UInt8 = 0x84
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

    /// The vector whose stub the ring-0 core jumps to when it completed a hypercall but
    /// the host wants the vCPU (ring0/entry.S). No gate of this vector is reachable
    /// from the guest (DPL 0), so its exits come from the core alone.
    static let attentionVector: UInt8 = 0x83

    static let generalProtectionOffset = 0xa00
    /// Never executed: a kicked vCPU's RIP points here, and the fetch faults from ring 3.
    static let kickOffset = 0xf00
    /// Where, below the IST top, the host keeps the byte that enables the port-I/O fast
    /// path (non-zero: the guest's virtual IOPL allows I/O in its current mode).
    static let fastIOFlagBelowTop: UInt64 = 512

    /// The #GP handler. Port I/O from ring 3 by a guest whose virtual IOPL allows it
    /// (Xen's iopl_ok) is emulated here without leaving the VM, as Xen does for a
    /// domain without I/O ports: reads see all ones, writes are dropped. That keeps
    /// probes such as Linux's PIT calibration (100 000 port reads at boot) off the
    /// exit path. Anything else leaves through `out %al,$13` like other vectors.
    ///
    ///     push %rax; push %rcx
    ///     testb $3, 32(%rsp); jz slow            # from ring 3 only
    ///     cmpb $0, -0x1c0(%rsp); je slow         # the flag, 512 bytes below the IST top
    ///     mov 24(%rsp),%rax; movzbl (%rax),%ecx  # the instruction at the guest rip
    ///     (0x66 prefix) ed/e5: ax = 0xffff; ef/e7: skip
    ///     ec/e4: al = 0xff; ed/e5: eax = 0xffffffff (upper half zeroed); ee/ef/e6/e7: skip
    ///     add <length>, 24(%rsp); pop %rcx; pop %rax; add $8,%rsp; iretq
    ///     slow: pop %rcx; pop %rax; out %al,$13; iretq
    static let generalProtection: [UInt8] = [
        0x50, 0x51, 0xf6, 0x44, 0x24, 0x20, 0x03, 0x0f, 0x84, 0xcc, 0x00, 0x00,
        0x00, 0x80, 0xbc, 0x24, 0x40, 0xfe, 0xff, 0xff, 0x00, 0x0f, 0x84, 0xbe,
        0x00, 0x00, 0x00, 0x48, 0x8b, 0x44, 0x24, 0x18, 0x0f, 0xb6, 0x08, 0x80,
        0xf9, 0x66, 0x75, 0x25, 0x0f, 0xb6, 0x48, 0x01, 0x80, 0xf9, 0xed, 0x74,
        0x54, 0x80, 0xf9, 0xe5, 0x74, 0x58, 0x80, 0xf9, 0xef, 0x0f, 0x84, 0x84,
        0x00, 0x00, 0x00, 0x80, 0xf9, 0xe7, 0x0f, 0x84, 0x83, 0x00, 0x00, 0x00,
        0xe9, 0x8c, 0x00, 0x00, 0x00, 0x80, 0xf9, 0xec, 0x74, 0x25, 0x80, 0xf9,
        0xe4, 0x74, 0x27, 0x80, 0xf9, 0xed, 0x74, 0x3b, 0x80, 0xf9, 0xe5, 0x74,
        0x48, 0x80, 0xf9, 0xee, 0x74, 0x55, 0x80, 0xf9, 0xef, 0x74, 0x50, 0x80,
        0xf9, 0xe6, 0x74, 0x53, 0x80, 0xf9, 0xe7, 0x74, 0x4e, 0xeb, 0x62, 0xc6,
        0x44, 0x24, 0x08, 0xff, 0xeb, 0x3d, 0xc6, 0x44, 0x24, 0x08, 0xff, 0xeb,
        0x3e, 0x66, 0xc7, 0x44, 0x24, 0x08, 0xff, 0xff, 0xeb, 0x35, 0x66, 0xc7,
        0x44, 0x24, 0x08, 0xff, 0xff, 0xeb, 0x34, 0xc7, 0x44, 0x24, 0x08, 0xff,
        0xff, 0xff, 0xff, 0xc7, 0x44, 0x24, 0x0c, 0x00, 0x00, 0x00, 0x00, 0xeb,
        0x12, 0xc7, 0x44, 0x24, 0x08, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x44, 0x24,
        0x0c, 0x00, 0x00, 0x00, 0x00, 0xeb, 0x08, 0x48, 0x83, 0x44, 0x24, 0x18,
        0x01, 0xeb, 0x0e, 0x48, 0x83, 0x44, 0x24, 0x18, 0x02, 0xeb, 0x06, 0x48,
        0x83, 0x44, 0x24, 0x18, 0x03, 0x59, 0x58, 0x48, 0x83, 0xc4, 0x08, 0x48,
        0xcf, 0x59, 0x58, 0xe6, 0x0d, 0x48, 0xcf,
    ]

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
        let coreSyscall: [UInt8] = [0xcd, coreSyscallVector, 0x0f, 0x0b]   // int $0x84 ; ud2
        for (offset, byte) in coreSyscall.enumerated() { page[coreSyscallStubOffset + offset] = byte }
        for (offset, byte) in applyRoutine.enumerated() { page[applyOffset + offset] = byte }
        for (offset, byte) in generalProtection.enumerated() { page[generalProtectionOffset + offset] = byte }
        return page
    }
}
