/*
 * The failsafe callback of the failsafe guest: Xen enters it when it cannot return
 * to the guest with the segments the guest gave (pv-boot-notes §3). The frame,
 * ascending from rsp: RCX, R11, DS, ES, FS, GS, RIP, CS, RFLAGS, RSP, SS. It is copied
 * to failsafe_frame and the kernel context saved before the bad iret is restored.
 */
    .text
    .globl failsafe_entry
failsafe_entry:
    lea failsafe_frame(%rip), %rdi
    mov %rsp, %rsi
    mov $11, %ecx
1:  mov (%rsi), %rax
    mov %rax, (%rdi)
    add $8, %rsi
    add $8, %rdi
    dec %ecx
    jnz 1b
    lea failsafe_context(%rip), %rdi
    mov $1, %esi
    jmp context_restore

/* void bad_iret(uint64_t rip, uint64_t cs): an iret to kernel mode with a CS the CPU refuses. */
    .globl bad_iret
bad_iret:
    mov %rsp, %rax
    pushq $0xe02b
    push %rax
    pushq $0x202
    push %rsi
    push %rdi
    pushq $0
    jmp hypercall_page + 23 * 32

    .section .note.GNU-stack, "", @progbits
