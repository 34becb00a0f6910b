/*
 * Trap entry and exit.
 *
 * Xen bounces an exception to the address in our trap table with this frame
 * at rsp (ascending): RCX, R11, [error code], RIP, CS, RFLAGS, RSP, SS
 * (pv-boot-notes.md §3; Xen entry.S create_bounce_frame).  Like Linux, each
 * stub pops RCX and R11 back into their registers; it then pushes a 0 error
 * code where the CPU gives none, and the vector, and saves the registers as
 * struct trap_frame (runtime.h) for trap_dispatch().
 *
 * trap_dispatch returns the iret `flags` word.  It is stored in the error
 * code slot, which then sits right under RIP: exactly the iret hypercall's
 * frame (flags, RIP, CS, RFLAGS, RSP, SS).  With rax, r11 and rcx restored,
 * `jmp hypercall_page + 23*32` (whose stub pushes rcx, r11, rax) returns.
 */
#include "xen-abi.h"

#define IRET_STUB (hypercall_page + __HYPERVISOR_iret * 32)

.macro trap_stub name, vector, has_error_code
    .globl \name
\name:
    pop %rcx
    pop %r11
    .if \has_error_code == 0
    push $0
    .endif
    push $\vector
    jmp trap_common
.endm

    .text
    trap_stub trap_divide_error,        0,  0
    trap_stub trap_debug,               1,  0
    trap_stub trap_int3,                3,  0
    trap_stub trap_overflow,            4,  0
    trap_stub trap_bounds,              5,  0
    trap_stub trap_invalid_op,          6,  0
    trap_stub trap_no_device,           7,  0
    trap_stub trap_invalid_tss,         10, 1
    trap_stub trap_segment_not_present, 11, 1
    trap_stub trap_stack_segment,       12, 1
    trap_stub trap_general_protection,  13, 1
    trap_stub trap_page_fault,          14, 1
    trap_stub trap_coprocessor_error,   16, 0
    trap_stub trap_alignment_check,     17, 1
    trap_stub trap_simd_error,          19, 0
    /* CALLBACKTYPE_syscall: frame RCX, R11, RIP, CS, RFLAGS, RSP, SS. */
    trap_stub syscall_entry, TRAP_VECTOR_SYSCALL, 0

trap_common:
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
    /*
     * Xen aligned its frame's top to 16; 7 + 15 words below it keep rsp
     * 16-byte aligned for the call.
     */
    mov %rsp, %rdi
    cld
    call trap_dispatch
    mov %rax, 16*8(%rsp)            /* error code slot := iret flags */
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
    add $8, %rsp                    /* drop the vector */
    jmp IRET_STUB

/* long context_save(struct kernel_context *c): 0 now, `value` after restore. */
    .globl context_save
context_save:
    mov %rbx, 0*8(%rdi)
    mov %rbp, 1*8(%rdi)
    mov %r12, 2*8(%rdi)
    mov %r13, 3*8(%rdi)
    mov %r14, 4*8(%rdi)
    mov %r15, 5*8(%rdi)
    lea 8(%rsp), %rax
    mov %rax, 6*8(%rdi)
    mov (%rsp), %rax
    mov %rax, 7*8(%rdi)
    xor %eax, %eax
    ret

/* void context_restore(struct kernel_context *c, long value) */
    .globl context_restore
context_restore:
    mov 0*8(%rdi), %rbx
    mov 1*8(%rdi), %rbp
    mov 2*8(%rdi), %r12
    mov 3*8(%rdi), %r13
    mov 4*8(%rdi), %r14
    mov 5*8(%rdi), %r15
    mov 6*8(%rdi), %rsp
    mov %rsi, %rax
    jmp *7*8(%rdi)

/*
 * void enter_user(uint64_t rip, uint64_t rsp, uint64_t rflags)
 * The iret hypercall with an RPL-3 CS switches Xen to guest user mode
 * (pv/iret.c): frame flags 0, RIP, CS, RFLAGS, RSP, SS.
 */
    .globl enter_user
enter_user:
    pushq $FLAT_USER_SS
    push %rsi
    push %rdx
    pushq $FLAT_USER_CS
    push %rdi
    pushq $0
    jmp IRET_STUB

    .section .note.GNU-stack, "", @progbits
