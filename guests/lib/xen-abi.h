/*
 * The Xen PV ABI as the test guests see it: Xen's own public headers
 * (Debian's libxen-dev, /usr/include/xen) plus the few constants of our
 * image layout.  Nothing here describes Domus; everything is Xen's contract.
 */
#ifndef GUEST_XEN_ABI_H
#define GUEST_XEN_ABI_H

#ifndef __ASSEMBLY__
#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>
#endif

#define __XEN_INTERFACE_VERSION__ 0x00040d00

#include <xen/xen.h>          /* usable from assembly too */
#include <xen/elfnote.h>
#ifndef __ASSEMBLY__
#include <xen/sched.h>
#include <xen/event_channel.h>
#include <xen/callback.h>
#include <xen/vcpu.h>
#include <xen/memory.h>
#include <xen/version.h>
#include <xen/io/console.h>
#include <xen/errno.h>
#endif

/*
 * Image layout.  The Xen VIRT_BASE note is 0, so every page of the initial
 * mapping sits at VA = pfn * 4096 (xg_dom_core.c: VA = virt_base + pfn·4K).
 * The image itself is linked at LINK_ADDRESS (lib/guest.lds).
 */
#define GUEST_VIRT_BASE   0x0UL
#define PAGE_SHIFT        12
#define PAGE_SIZE         (1UL << PAGE_SHIFT)

/* Vector used by the trap stubs for the syscall callback (not a CPU vector). */
#define TRAP_VECTOR_SYSCALL 0x100

/* x86 page-table entry bits. */
#define PTE_P   0x001UL
#define PTE_RW  0x002UL
#define PTE_US  0x004UL
#define PTE_A   0x020UL
#define PTE_D   0x040UL
#define PTE_KERNEL_RW (PTE_P | PTE_RW | PTE_A | PTE_D)
#define PTE_KERNEL_RO (PTE_P | PTE_A)
#define PTE_USER_RW   (PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D)
#define PTE_USER_RX   (PTE_P | PTE_US | PTE_A)
/* Non-leaf entries (L2-L4), as Xen's domain builder writes them. */
#define PTE_TABLE     (PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D)

#define RFLAGS_CF 0x001UL
#define RFLAGS_RESERVED1 0x002UL
#define RFLAGS_IF 0x200UL
/* Arithmetic flags plus DF: what a trap must carry through unchanged. */
#define RFLAGS_STATUS 0xcd5UL

#ifndef __ASSEMBLY__
/* Layout checks against the public headers (pv-boot-notes.md offsets). */
_Static_assert(sizeof(start_info_t) == 0x490, "start_info size");
_Static_assert(offsetof(start_info_t, console.domU.mfn) == 0x48, "console mfn");
_Static_assert(offsetof(start_info_t, cmd_line) == 0x80, "cmd_line");
_Static_assert(sizeof(struct vcpu_info) == 64, "vcpu_info size");
_Static_assert(offsetof(struct vcpu_info, arch.cr2) == 0x10, "vcpu_info.arch.cr2");
_Static_assert(offsetof(struct vcpu_info, time) == 0x20, "vcpu_info.time");
_Static_assert(sizeof(multicall_entry_t) == 0x40, "multicall_entry size");
_Static_assert(sizeof(struct trap_info) == 16, "trap_info size");
_Static_assert(offsetof(struct xencons_interface, out_prod) == 0xc0c, "out_prod");
_Static_assert(sizeof(struct mmuext_op) == 24, "mmuext_op size");
_Static_assert(sizeof(struct callback_register) == 16, "callback_register size");
#endif

#endif
