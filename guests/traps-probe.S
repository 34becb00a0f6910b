/*
 * Trap triggers for the traps guest.
 *
 * probe_run(struct probe *p) loads every general-purpose register from
 * p->in[] (order: rax rbx rcx rdx rsi rdi rbp rsp r8-r15; the rsp slot is
 * ignored), records the stack pointer in p->rsp (deliberately 8 mod 16, so
 * Xen's 16-byte alignment of the bounce frame shows), and jumps to p->target,
 * a trigger below.  Triggers end up at probe_resume, either by falling
 * through or because the trap handler set RIP there; probe_resume stores
 * every register into p->out[] and returns to the C caller.
 */
#define PROBE_IN    0
#define PROBE_OUT   (16 * 8)
#define PROBE_RSP   (32 * 8)
#define PROBE_TARGET (33 * 8)

    .text
    .globl probe_run
probe_run:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rdi, probe_current(%rip)
    mov %rsp, probe_saved_rsp(%rip)
    and $-16, %rsp
    sub $8, %rsp
    mov %rsp, PROBE_RSP(%rdi)
    mov PROBE_TARGET(%rdi), %rax
    mov %rax, probe_target(%rip)
    mov PROBE_IN + 0*8(%rdi), %rax
    mov PROBE_IN + 1*8(%rdi), %rbx
    mov PROBE_IN + 2*8(%rdi), %rcx
    mov PROBE_IN + 3*8(%rdi), %rdx
    mov PROBE_IN + 4*8(%rdi), %rsi
    mov PROBE_IN + 6*8(%rdi), %rbp
    mov PROBE_IN + 8*8(%rdi), %r8
    mov PROBE_IN + 9*8(%rdi), %r9
    mov PROBE_IN + 10*8(%rdi), %r10
    mov PROBE_IN + 11*8(%rdi), %r11
    mov PROBE_IN + 12*8(%rdi), %r12
    mov PROBE_IN + 13*8(%rdi), %r13
    mov PROBE_IN + 14*8(%rdi), %r14
    mov PROBE_IN + 15*8(%rdi), %r15
    mov PROBE_IN + 5*8(%rdi), %rdi
    jmp *probe_target(%rip)

    .globl probe_resume
probe_resume:
    mov %rdi, probe_scratch(%rip)
    mov probe_current(%rip), %rdi
    mov %rax, PROBE_OUT + 0*8(%rdi)
    mov %rbx, PROBE_OUT + 1*8(%rdi)
    mov %rcx, PROBE_OUT + 2*8(%rdi)
    mov %rdx, PROBE_OUT + 3*8(%rdi)
    mov %rsi, PROBE_OUT + 4*8(%rdi)
    mov %rbp, PROBE_OUT + 6*8(%rdi)
    mov %rsp, PROBE_OUT + 7*8(%rdi)
    mov %r8, PROBE_OUT + 8*8(%rdi)
    mov %r9, PROBE_OUT + 9*8(%rdi)
    mov %r10, PROBE_OUT + 10*8(%rdi)
    mov %r11, PROBE_OUT + 11*8(%rdi)
    mov %r12, PROBE_OUT + 12*8(%rdi)
    mov %r13, PROBE_OUT + 13*8(%rdi)
    mov %r14, PROBE_OUT + 14*8(%rdi)
    mov %r15, PROBE_OUT + 15*8(%rdi)
    mov probe_scratch(%rip), %rax
    mov %rax, PROBE_OUT + 5*8(%rdi)
    mov probe_saved_rsp(%rip), %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

/* The faulting instructions use no register, so every register is a witness. */
    .globl trig_ud2, trig_int3, trig_int3_next, trig_gp, trig_pf_read
    .globl trig_pf_write, trig_pf_far, trig_de
trig_ud2:
    ud2                                     /* #UD; handler skips to probe_resume */
trig_int3:
    int3                                    /* #BP; trap: RIP is the next instruction */
trig_int3_next:
    jmp probe_resume
trig_gp:
    movabs 0x8000000000000000, %al          /* non-canonical: #GP(0) */
trig_pf_read:
    cmpb $0, pf_page(%rip)                  /* not present: #PF, handler maps it, re-run */
    jmp probe_resume
trig_pf_write:
    movb $0, ro_page(%rip)                  /* read-only: #PF(P|W) */
trig_pf_far:
    movabs 0x00007f0000000000, %al          /* no page tables at all: #PF(0) */
trig_de:
    divq probe_zero(%rip)                   /* #DE */

    .bss
    .balign 8
probe_current:   .skip 8
probe_saved_rsp: .skip 8
probe_target:    .skip 8
probe_scratch:   .skip 8

/*
 * User-mode code (mapped into the user L4).  Loads user_regs_in, records rsp,
 * int3 (the handler returns here with the iret hypercall), stores every
 * register into user_regs_out, then ud2 (the handler goes back to the kernel).
 */
    .section .user_text, "ax"
    .globl user_trap_entry, user_int3, user_int3_next, user_ud2
user_trap_entry:
    mov %rsp, user_rsp_at_trap(%rip)
    mov user_regs_in + 0*8(%rip), %rax
    mov user_regs_in + 1*8(%rip), %rbx
    mov user_regs_in + 2*8(%rip), %rcx
    mov user_regs_in + 3*8(%rip), %rdx
    mov user_regs_in + 4*8(%rip), %rsi
    mov user_regs_in + 5*8(%rip), %rdi
    mov user_regs_in + 6*8(%rip), %rbp
    mov user_regs_in + 8*8(%rip), %r8
    mov user_regs_in + 9*8(%rip), %r9
    mov user_regs_in + 10*8(%rip), %r10
    mov user_regs_in + 11*8(%rip), %r11
    mov user_regs_in + 12*8(%rip), %r12
    mov user_regs_in + 13*8(%rip), %r13
    mov user_regs_in + 14*8(%rip), %r14
    mov user_regs_in + 15*8(%rip), %r15
user_int3:
    int3
user_int3_next:
    mov %rax, user_regs_out + 0*8(%rip)
    mov %rbx, user_regs_out + 1*8(%rip)
    mov %rcx, user_regs_out + 2*8(%rip)
    mov %rdx, user_regs_out + 3*8(%rip)
    mov %rsi, user_regs_out + 4*8(%rip)
    mov %rdi, user_regs_out + 5*8(%rip)
    mov %rbp, user_regs_out + 6*8(%rip)
    mov %rsp, user_regs_out + 7*8(%rip)
    mov %r8, user_regs_out + 8*8(%rip)
    mov %r9, user_regs_out + 9*8(%rip)
    mov %r10, user_regs_out + 10*8(%rip)
    mov %r11, user_regs_out + 11*8(%rip)
    mov %r12, user_regs_out + 12*8(%rip)
    mov %r13, user_regs_out + 13*8(%rip)
    mov %r14, user_regs_out + 14*8(%rip)
    mov %r15, user_regs_out + 15*8(%rip)
user_ud2:
    ud2

    .section .user_data, "aw", @nobits
    .balign 16
    .globl user_regs_in, user_regs_out, user_rsp_at_trap, user_stack_top
user_regs_in:     .skip 16*8
user_regs_out:    .skip 16*8
user_rsp_at_trap: .skip 8
    .balign 16
    .skip 4096
user_stack_top:

    .section .note.GNU-stack, "", @progbits
