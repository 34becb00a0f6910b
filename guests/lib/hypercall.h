/*
 * Hypercall wrappers: `call hypercall_page + nr*32`.
 *
 * The stub Xen writes into the page (pv/hypercall.c pv_ring3_init_hypercall_page)
 * is `push %rcx; push %r11; mov $nr,%eax; syscall; pop %r11; pop %rcx; ret`:
 * arguments in rdi, rsi, rdx, r10, r8; result in rax; rcx and r11 are
 * preserved by the stub.  Argument registers are treated as clobbered (a
 * debug Xen overwrites the ones a hypercall uses), as Linux's
 * asm/xen/hypercall.h does.
 */
#ifndef GUEST_HYPERCALL_H
#define GUEST_HYPERCALL_H

#include "xen-abi.h"

extern char hypercall_page[4096];

/*
 * The arguments are evaluated into plain locals first: an argument that calls
 * a function would otherwise clobber register variables already loaded.
 */
#define _hypercall5(nr, a1, a2, a3, a4, a5) ({                              \
    unsigned long _v1 = (unsigned long)(a1), _v2 = (unsigned long)(a2);     \
    unsigned long _v3 = (unsigned long)(a3), _v4 = (unsigned long)(a4);     \
    unsigned long _v5 = (unsigned long)(a5);                                \
    register unsigned long _a1 asm("rdi") = _v1;                            \
    register unsigned long _a2 asm("rsi") = _v2;                            \
    register unsigned long _a3 asm("rdx") = _v3;                            \
    register unsigned long _a4 asm("r10") = _v4;                            \
    register unsigned long _a5 asm("r8") = _v5;                             \
    long _ret;                                                              \
    asm volatile("call hypercall_page + %c[off]"                            \
                 : "=a"(_ret), "+r"(_a1), "+r"(_a2), "+r"(_a3), "+r"(_a4),  \
                   "+r"(_a5)                                                \
                 : [off] "i"((nr) * 32)                                     \
                 : "memory");                                               \
    _ret;                                                                   \
})

#define hypercall0(nr)                 _hypercall5(nr, 0, 0, 0, 0, 0)
#define hypercall1(nr, a)              _hypercall5(nr, a, 0, 0, 0, 0)
#define hypercall2(nr, a, b)           _hypercall5(nr, a, b, 0, 0, 0)
#define hypercall3(nr, a, b, c)        _hypercall5(nr, a, b, c, 0, 0)
#define hypercall4(nr, a, b, c, d)     _hypercall5(nr, a, b, c, d, 0)

static inline long HYPERVISOR_set_trap_table(const struct trap_info *table)
{
    return hypercall1(__HYPERVISOR_set_trap_table, table);
}

static inline long HYPERVISOR_mmu_update(mmu_update_t *req, unsigned int count,
                                         unsigned int *done, domid_t dom)
{
    return hypercall4(__HYPERVISOR_mmu_update, req, count, done, dom);
}

static inline long HYPERVISOR_stack_switch(unsigned long ss, unsigned long sp)
{
    return hypercall2(__HYPERVISOR_stack_switch, ss, sp);
}

static inline long HYPERVISOR_multicall(multicall_entry_t *calls, unsigned int n)
{
    return hypercall2(__HYPERVISOR_multicall, calls, n);
}

static inline long HYPERVISOR_update_va_mapping(unsigned long va, uint64_t pte,
                                                unsigned long flags)
{
    return hypercall3(__HYPERVISOR_update_va_mapping, va, pte, flags);
}

static inline long HYPERVISOR_xen_version(int cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_xen_version, cmd, arg);
}

static inline long HYPERVISOR_memory_op(unsigned int cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_memory_op, cmd, arg);
}

static inline long HYPERVISOR_console_io(int cmd, unsigned int count, const void *buf)
{
    return hypercall3(__HYPERVISOR_console_io, cmd, count, buf);
}

static inline long HYPERVISOR_mmuext_op(struct mmuext_op *op, unsigned int count,
                                        unsigned int *done, domid_t dom)
{
    return hypercall4(__HYPERVISOR_mmuext_op, op, count, done, dom);
}

static inline long HYPERVISOR_sched_op(int cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_sched_op, cmd, arg);
}

static inline long HYPERVISOR_callback_op(int cmd, const void *arg)
{
    return hypercall2(__HYPERVISOR_callback_op, cmd, arg);
}

static inline long HYPERVISOR_event_channel_op(int cmd, void *arg)
{
    return hypercall2(__HYPERVISOR_event_channel_op, cmd, arg);
}

#endif
