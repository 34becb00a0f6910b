/*
 * ring0/entry.S — the entry of Domus's in-VM ring-0 core (Sources/Ring0Core).
 *
 * Two ways in, both IST 1, so the guest's interrupt frame is at the top of the vCPU's
 * IST stack:
 *   - domus_core_entry: the hypercall gate (int $0x82 from the hypercall page);
 *   - domus_core_syscall_entry: gate 0x84, which the `syscall` entry (MSR_LSTAR, the
 *     way Linux makes hypercalls since XSA-466) raises from ring 0 with the guest's
 *     rsp still loaded; it rewrites the frame into the guest's (rip from rcx, rflags
 *     from r11, the guest's flat selectors) as if the guest had executed an `int`.
 * The guest's registers are saved below the frame, the core (Embedded Swift) runs
 * on the vCPU's own core stack, and then either
 *   - it completed the hypercall: its TLB/CR3/MSR/GS-swap requests are carried out, the registers
 *     (with the result in rax) restored, and the guest resumed with iretq — unless
 *     the host flagged that it wants the vCPU (an event or timer is due), in which
 *     case the vector-0x83 stub leaves to the host, which resumes the guest itself;
 *   - or it deferred: the registers are restored untouched and the vector-0x82 stub
 *     leaves to the host exactly as if the gate pointed there (int $0x82), or the
 *     slow `syscall` stub does, with the guest's rsp back (syscall). A batch the core
 *     completed in part (multicall, mmu_update) defers its rest: its list and count
 *     registers moved on, its TLB requests carried out first.
 *
 * A third way in, domus_core_pf_entry (gate 14 where ring 0 runs natively), hands a
 * page fault from guest code to the core, which bounces it to the guest kernel's
 * handler (FastTraps); the error code waits in the vCPU block meanwhile, and a
 * deferred fault leaves through vector 14's stub with its frame as the CPU pushed it.
 *
 * domus_core_timer_entry (the local APIC timer's gate, where the VM has one) signals
 * the end of the interrupt and hands it to the core (FastTimer), which raises
 * VIRQ_TIMER and delivers the upcall; anything it defers leaves through the attention
 * stub, as a flagged return does. The core's deadlines reach IA32_TSC_DEADLINE with
 * the other requests on the way out.
 *
 * domus_core_ud_entry (gate 6, likewise) answers Xen's forced-emulation CPUID
 * (FastCPUID); anything else leaves through vector 6's stub.
 *
 * Another way in, domus_core_gp_entry (gate 13), completes a guest `cli` that its
 * virtual IOPL allows (Linux's this_cpu_cmpxchg16b_emu runs one per early slab
 * allocation) by setting the vCPU's event mask, and passes every other #GP to the
 * stubs page's handler untouched.
 *
 * Where the host enables it, each way into the core and each way out (return or
 * deferral) is written into the vCPU's flight recorder (RECORD; see
 * Sources/Machine/FlightRecorder.swift), which crash reports end with.
 *
 * The offsets below repeat Sources/Machine/HypervisorArea.swift and
 * Sources/Ring0Core/CoreLayout.swift; Tests/MachineTests checks that they agree.
 * The image is linked at 0 (ring0/core.ld) and is position-independent: it only
 * needs to lie STUBS_TO_CORE bytes above the stubs page.
 */
    .equ VCPU_BLOCK_MASK,      0x3ffff      /* HypervisorArea.perVCPUVirtualStride - 1 */
    .equ IST_TOP,              0x12000      /* the IST stack's top inside a vCPU's block */
    .equ CORE_BLOCK,           0x2a000      /* HypervisorArea.coreBlockOffset */
    .equ CORE_STACK_TOP,       0x2d000      /* HypervisorArea.coreStackTopOffset */
    .equ REQUEST_CR3,          0x40         /* CoreLayout.vcpuRequestCR3 */
    .equ REQUEST_FLUSH,        0x48         /* CoreLayout.vcpuRequestFlush */
    .equ REQUEST_INVALIDATE,   0x50         /* CoreLayout.vcpuRequestInvalidate */
    .equ INVALIDATE_ADDRESS,   0x58         /* CoreLayout.vcpuInvalidateAddress */
    .equ ATTENTION,            0x60         /* CoreLayout.vcpuAttention */
    .equ REQUEST_MSR,          0x90         /* CoreLayout.vcpuRequestMSR */
    .equ REQUEST_MSR_VALUE,    0x98         /* CoreLayout.vcpuRequestMSRValue */
    .equ REQUEST_SWAP_GS,      0xa0         /* CoreLayout.vcpuRequestSwapGS */
    .equ INACTIVE_GS_BASE,     0x88         /* CoreLayout.vcpuInactiveGSBase */
    .equ MSR_GS_BASE,          0xc0000101
    .equ STUBS_TO_CORE,        0x2000       /* HypervisorArea.coreCodeVirtualOffset */
    .equ STUB_STRIDE,          8            /* StubCode.vectorStubStride */
    .equ HYPERCALL_VECTOR,     0x82
    .equ SYSCALL_STUB,         0x800        /* StubCode.syscallStubOffset */
    .equ GUEST_CS,             0xe033       /* FlatSelector.kernelCS64 (RPL 3) */
    .equ GUEST_SS,             0xe02b       /* FlatSelector.kernelSS64 (RPL 3) */
    .equ RFLAGS_IOPL,          0x3000
    .equ RFLAGS_GUEST_SET,     0x202        /* IF and the fixed bit, as the host resumes */
    .equ KIND_HYPERCALL_PAGE,  0            /* CoreLayout.entryHypercallPage */
    .equ KIND_SYSCALL,         1            /* CoreLayout.entrySyscall */
    .equ KIND_PAGE_FAULT,      2            /* CoreLayout.entryPageFault */
    .equ KIND_INVALID_OPCODE,  3            /* CoreLayout.entryInvalidOpcode */
    .equ KIND_TIMER,           4            /* CoreLayout.entryTimer */
    .equ REQUEST_DEADLINE,     0x5d0        /* CoreLayout.vcpuRequestDeadline */
    .equ MSR_TSC_DEADLINE,     0x6e0
    .equ MSR_X2APIC_EOI,       0x80b
    .equ INVALID_OPCODE_VECTOR, 6
    .equ TRAP_ERROR_CODE,      0xf8         /* CoreLayout.vcpuTrapErrorCode */
    .equ PAGE_FAULT_VECTOR,    14
    .equ LSTAR_SELF,           -480         /* HypervisorArea.lstarFrameSlotBelowTop - 40: the slot, from the frame */
    .equ FAST_IO_BELOW_TOP,    512          /* StubCode.fastIOFlagBelowTop */
    .equ FAST_IO_FLAG,         IST_TOP - FAST_IO_BELOW_TOP  /* set: virtual IOPL allows cli */
    .equ VCPU_INFO,            0x68         /* CoreLayout.vcpuInfo */
    .equ RAM_BASE,             0x10         /* CoreLayout.vcpuRAMBase */
    .equ UPCALL_MASK,          1            /* vcpu_info.evtchn_upcall_mask */
    .equ GP_STUB,              0xa00        /* StubCode.generalProtectionOffset */
    .equ ATTENTION_VECTOR,     0x83
    .equ RECORDER_ENABLED,     0x7f8        /* CoreLayout.vcpuRecorderEnabled */
    .equ RECORDER_COUNT,       0x800        /* CoreLayout.vcpuRecorderCount */
    .equ RECORDER,             0x840        /* CoreLayout.vcpuRecorder */
    .equ RECORDER_SLOT_MASK,   31           /* CoreLayout.recorderSlots - 1 */
    .equ RECORDER_ENTRY_SHIFT, 5            /* log2 CoreLayout.recorderEntrySize */
    .equ RECORD_CORE_RETURN,   0x100        /* CoreLayout.recordCoreReturn */
    .equ RECORD_CORE_DEFER,    0x200        /* CoreLayout.recordCoreDefer */
    .equ SAVED_RIP,            120          /* CoreLayout.savedRIP */
    .equ SAVED_RSP,            144          /* CoreLayout.savedRSP */
    /* On the return path rsp points at the interrupt frame, 40 bytes below IST_TOP. */
    .equ ATTENTION_FROM_FRAME, CORE_BLOCK + ATTENTION - (IST_TOP - 40)

    .section .text.entry,"ax",@progbits
    .macro SAVE_REGISTERS
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    .endm
    /* The flight recorder (CoreLayout.vcpuRecorder): one entry of what, the saved
     * frame's rip and rsp, and cr3, when the host enabled it. \block is the core block,
     * \regs the saved registers; \t1 and \t2 are clobbered. */
    .macro RECORD block, regs, what, t1, t2
    cmpq $0, RECORDER_ENABLED(\block)
    je 9f
    mov RECORDER_COUNT(\block), \t1
    lea 1(\t1), \t2
    mov \t2, RECORDER_COUNT(\block)
    and $RECORDER_SLOT_MASK, \t1
    shl $RECORDER_ENTRY_SHIFT, \t1
    lea RECORDER(\block, \t1), \t1
    mov \what, 0(\t1)
    mov SAVED_RIP(\regs), \t2
    mov \t2, 8(\t1)
    mov %cr3, \t2
    mov \t2, 16(\t1)
    mov SAVED_RSP(\regs), \t2
    mov \t2, 24(\t1)
9:
    .endm

    .macro RESTORE_REGISTERS
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    .endm

    .globl domus_core_entry
domus_core_entry:
    SAVE_REGISTERS
    mov $KIND_HYPERCALL_PAGE, %ecx      /* 4th argument: the way in */
    jmp .Lcommon

    .globl domus_core_lstar_entry
domus_core_lstar_entry:
    /* MSR_LSTAR where ring 0 runs natively: `syscall` lands here at CPL 0 with the
     * guest's rsp, rcx = rip, r11 = rflags and IF clear (SFMASK). MSR_KERNEL_GS_BASE
     * holds this vCPU's frame address (40 bytes below its IST top), and a slot below
     * the frame holds that address again, so the frame `int $0x84` would push is built
     * here without the IDT, the TSS or a second trap. */
    swapgs
    mov %rsp, %gs:24                    /* frame.rsp: the guest's */
    mov %gs:LSTAR_SELF, %rsp            /* onto the frame */
    swapgs                              /* the guest's GS base again */
    /* fall through: the rest of the frame (rip, cs, rflags, ss) is filled below */

    .globl domus_core_syscall_entry
domus_core_syscall_entry:
    /* The frame holds the `int $0x84` of the syscall stub; make it the guest's. */
    mov %rcx, 0(%rsp)
    movq $GUEST_CS, 8(%rsp)
    mov %r11, 16(%rsp)
    andq $~RFLAGS_IOPL, 16(%rsp)
    orq $RFLAGS_GUEST_SET, 16(%rsp)
    movq $GUEST_SS, 32(%rsp)
    SAVE_REGISTERS
    mov $KIND_SYSCALL, %ecx
    jmp .Lcommon

    .globl domus_core_pf_entry
domus_core_pf_entry:
    /* The frame: error code, rip, cs, rflags, rsp, ss. */
    testb $3, 16(%rsp)
    jz .Lpf_stub                        /* from ring 0: the hypervisor's own fault */
    push %rax
    push %rcx
    mov %rsp, %rax
    and $~VCPU_BLOCK_MASK, %rax         /* the vCPU's block */
    mov 16(%rsp), %rcx                  /* the error code */
    mov %rcx, CORE_BLOCK + TRAP_ERROR_CODE(%rax)
    pop %rcx
    pop %rax
    add $8, %rsp                        /* the frame is now as an int's */
    SAVE_REGISTERS
    mov $KIND_PAGE_FAULT, %ecx
    jmp .Lcommon

    .globl domus_core_timer_entry
domus_core_timer_entry:
    /* From guest code only: the hypervisor's ring-0 code runs with IF clear. */
    testb $3, 8(%rsp)
    jz .Ltimer_ring0
    SAVE_REGISTERS
    mov $MSR_X2APIC_EOI, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    mov $KIND_TIMER, %ecx
    jmp .Lcommon
.Ltimer_ring0:
    /* Not expected; ended and dropped (the host checks the guest's timer at its next
     * exit, which that ring-0 code is on its way to). */
    push %rax
    push %rcx
    push %rdx
    mov $MSR_X2APIC_EOI, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    pop %rdx
    pop %rcx
    pop %rax
    iretq

    .globl domus_core_ud_entry
domus_core_ud_entry:
    testb $3, 8(%rsp)
    jz .Lud_stub                        /* from ring 0: the hypervisor's own fault */
    SAVE_REGISTERS
    mov $KIND_INVALID_OPCODE, %ecx

.Lcommon:
    mov %rsp, %rdi                      /* 1st argument: the saved registers */
    mov %rsp, %rsi
    and $~VCPU_BLOCK_MASK, %rsi         /* the vCPU's block */
    lea CORE_STACK_TOP(%rsi), %rsp      /* onto the core stack */
    add $CORE_BLOCK, %rsi               /* 2nd argument: the core block */
    mov %cr3, %rdx                      /* 3rd argument: the guest's page table */
    mov %cr2, %r8                       /* 5th argument: the faulting address */
    RECORD %rsi, %rdi, %rcx, %r9, %r10  /* what: the kind (CoreLayout.recordCoreEntry) */
    push %rdi
    push %rsi
    push %rcx
    sub $8, %rsp                        /* keep the stack 16-byte aligned at the call */
    cld
    call domus_core_hypercall
    add $8, %rsp
    pop %rcx
    pop %rsi
    pop %rsp                            /* back to the saved registers */
    mov %rax, %r9                       /* the result and the kind, past the requests */
    mov %rcx, %r8

    /* The requests are carried out on a deferral too: a batch the core completed in
     * part (multicall, mmu_update) may have asked for TLB work before handing the
     * rest to the host. A deferral with nothing done asks for nothing. */
    mov REQUEST_CR3(%rsi), %rax
    test %rax, %rax
    jz 1f
    movq $0, REQUEST_CR3(%rsi)
    mov %rax, %cr3
    jmp 3f
1:  cmpq $0, REQUEST_FLUSH(%rsi)
    je 2f
    movq $0, REQUEST_FLUSH(%rsi)
    mov %cr3, %rax
    mov %rax, %cr3
2:  cmpq $0, REQUEST_INVALIDATE(%rsi)
    je 3f
    movq $0, REQUEST_INVALIDATE(%rsi)
    mov INVALIDATE_ADDRESS(%rsi), %rax
    invlpg (%rax)
3:  mov REQUEST_MSR(%rsi), %rcx         /* FS or GS base (set_segment_base) */
    test %rcx, %rcx
    jz 5f
    movq $0, REQUEST_MSR(%rsi)
    mov REQUEST_MSR_VALUE(%rsi), %rax
    mov %rax, %rdx
    shr $32, %rdx
    wrmsr
5:  mov REQUEST_DEADLINE(%rsi), %rax     /* the guest's timer (FastTimer) */
    test %rax, %rax
    jz 10f
    movq $0, REQUEST_DEADLINE(%rsi)
    mov %rax, %rdx
    shr $32, %rdx
    mov $MSR_TSC_DEADLINE, %ecx
    wrmsr
10: cmpq $0, REQUEST_SWAP_GS(%rsi)      /* a switch to guest user mode (iret) */
    je 6f
    movq $0, REQUEST_SWAP_GS(%rsi)
    mov $MSR_GS_BASE, %ecx
    rdmsr
    shl $32, %rdx
    or %rdx, %rax                       /* the mode left's GS base */
    xchg INACTIVE_GS_BASE(%rsi), %rax   /* ... kept; the mode entered's loaded */
    mov %rax, %rdx
    shr $32, %rdx
    wrmsr
6:  mov $RECORD_CORE_DEFER, %rdx
    mov $RECORD_CORE_RETURN, %rax
    test %r9, %r9
    cmovnz %rax, %rdx
    or %r8, %rdx
    RECORD %rsi, %rsp, %rdx, %rax, %rcx
    mov %r8, %rcx
    test %r9, %r9
    jz .Ldeferred
    RESTORE_REGISTERS
    /* From here to domus_core_return_path_end the guest's whole state is in the
     * registers and the frame: the host may treat an interruption here as a kick. */
    .globl domus_core_return_path
domus_core_return_path:
    cmpb $0, ATTENTION_FROM_FRAME(%rsp)
    jne domus_core_entry - STUBS_TO_CORE + ATTENTION_VECTOR * STUB_STRIDE
    iretq
    .globl domus_core_return_path_end
domus_core_return_path_end:

.Ldeferred:
    cmp $KIND_SYSCALL, %ecx
    je 4f
    cmp $KIND_PAGE_FAULT, %ecx
    je 7f
    cmp $KIND_INVALID_OPCODE, %ecx
    je 8f
    cmp $KIND_TIMER, %ecx
    je 11f
    RESTORE_REGISTERS
    jmp domus_core_entry - STUBS_TO_CORE + HYPERCALL_VECTOR * STUB_STRIDE
11: RESTORE_REGISTERS
    jmp domus_core_entry - STUBS_TO_CORE + ATTENTION_VECTOR * STUB_STRIDE
4:  RESTORE_REGISTERS
    mov 24(%rsp), %rsp                  /* the guest's rsp, as at the `syscall` */
    jmp domus_core_entry - STUBS_TO_CORE + SYSCALL_STUB
7:  RESTORE_REGISTERS
    sub $8, %rsp                        /* the error code goes back under the frame */
    push %rax
    mov %rsp, %rax
    and $~VCPU_BLOCK_MASK, %rax
    mov CORE_BLOCK + TRAP_ERROR_CODE(%rax), %rax
    mov %rax, 8(%rsp)
    pop %rax
.Lpf_stub:
    jmp domus_core_entry - STUBS_TO_CORE + PAGE_FAULT_VECTOR * STUB_STRIDE
8:  RESTORE_REGISTERS
.Lud_stub:
    jmp domus_core_entry - STUBS_TO_CORE + INVALID_OPCODE_VECTOR * STUB_STRIDE

    .globl domus_core_gp_entry
domus_core_gp_entry:
    /* The frame: error code, rip, cs, rflags, rsp, ss. */
    testb $3, 16(%rsp)
    jz .Lgp_slow                        /* from ring 0: the hypervisor's own fault */
    push %rax
    push %rcx
    mov %rsp, %rcx
    and $~VCPU_BLOCK_MASK, %rcx         /* the vCPU's block */
    cmpb $0, FAST_IO_FLAG(%rcx)
    je .Lgp_slow_restore
    mov 24(%rsp), %rax                  /* the guest's rip */
    cmpb $0xfa, (%rax)                  /* cli, without prefixes */
    jne .Lgp_slow_restore
    mov CORE_BLOCK + VCPU_INFO(%rcx), %rax
    cmp $-1, %rax
    je .Lgp_slow_restore                /* vcpu_info outside RAM: the host's */
    add CORE_BLOCK + RAM_BASE(%rcx), %rax
    movb $1, UPCALL_MASK(%rax)
    incq 24(%rsp)                       /* past the cli */
    pop %rcx
    pop %rax
    add $8, %rsp                        /* the error code: now the frame is as on the return path */
    jmp domus_core_return_path
.Lgp_slow_restore:
    pop %rcx
    pop %rax
.Lgp_slow:
    jmp domus_core_entry - STUBS_TO_CORE + GP_STUB
