/*
 * User-mode code for the usersyscall guest (mapped into the user L4).
 *
 * Loads user_regs_in into every register but rsp, records rsp, sets CF and
 * executes `syscall` (first).  The callback returns with the iret hypercall
 * and VGCF_in_syscall, like a sysret, so rcx and r11 are not restored; the
 * code then stores every register into user_regs_out, clears CF and executes
 * `syscall` again (second), after which the callback goes back to the kernel.
 */
    .section .user_text, "ax"
    .globl user_syscall_entry, user_syscall1_next, user_syscall2_next
user_syscall_entry:
    mov %rsp, user_rsp_at_syscall(%rip)
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
    stc
    syscall
user_syscall1_next:
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
    setc user_cf_after_return(%rip)
    clc
    syscall
user_syscall2_next:
    ud2                                 /* not reached */

    .section .user_data, "aw", @nobits
    .balign 16
    .globl user_regs_in, user_regs_out, user_rsp_at_syscall, user_cf_after_return
    .globl user_stack_top
user_regs_in:         .skip 16*8
user_regs_out:        .skip 16*8
user_rsp_at_syscall:  .skip 8
user_cf_after_return: .skip 8
    .balign 16
    .skip 4096
user_stack_top:

    .section .note.GNU-stack, "", @progbits
