/*
 * Entry point, Xen ELF notes and the hypercall page.
 *
 * Xen enters _start (the ENTRY note) in 64-bit mode with rsi = VA of
 * start_info, rsp = the boot stack at the end of the initial mapping,
 * cs = 0xe033, ss = 0xe02b and events masked.
 */
#include "xen-abi.h"

/* One Xen note (public/elfnote.h): name "Xen", type, then the descriptor. */
.macro xen_note_begin type
    .balign 4
    .long 2f - 1f           /* namesz */
    .long 4f - 3f           /* descsz */
    .long \type
1:  .asciz "Xen"
2:  .balign 4
3:
.endm
.macro xen_note_end
4:  .balign 4
.endm

#define XEN_NOTE_STRING(type, text) xen_note_begin type; .asciz text; xen_note_end
#define XEN_NOTE_QUAD(type, value)  xen_note_begin type; .quad value; xen_note_end

    .section .note.Xen, "a", @note
    XEN_NOTE_STRING(XEN_ELFNOTE_GUEST_OS, "Domus-test")
    XEN_NOTE_STRING(XEN_ELFNOTE_XEN_VERSION, "xen-3.0")
    XEN_NOTE_STRING(XEN_ELFNOTE_LOADER, "generic")
    XEN_NOTE_QUAD(XEN_ELFNOTE_VIRT_BASE, GUEST_VIRT_BASE)
    XEN_NOTE_QUAD(XEN_ELFNOTE_PADDR_OFFSET, 0)
    XEN_NOTE_QUAD(XEN_ELFNOTE_ENTRY, _start)
    XEN_NOTE_QUAD(XEN_ELFNOTE_HYPERCALL_PAGE, hypercall_page)
    XEN_NOTE_STRING(XEN_ELFNOTE_PAE_MODE, "yes")

    .section .text.entry, "ax"
    .globl _start
_start:
    cld
    mov %rsi, %r12                  /* start_info VA */
    /* Clear .bss (as Linux's startup_xen does) before using our stack in it. */
    lea __bss_start(%rip), %rdi
    lea __bss_end(%rip), %rcx
    sub %rdi, %rcx
    xor %eax, %eax
    rep stosb
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp
    mov %r12, %rdi
    call runtime_start              /* never returns */
1:  jmp 1b

/* Xen fills this page with the hypercall stubs (32 bytes each). */
    .section .hypercall_page, "ax"
    .balign 4096
    .globl hypercall_page
hypercall_page:
    .fill 4096, 1, 0

    .section .bss
    .balign 16
boot_stack:
    .skip 16384
    .globl boot_stack_top
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
