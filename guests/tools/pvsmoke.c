/*
 * pvsmoke: a small runner for the test guests, to smoke-test them
 * without a full hypervisor.  It is NOT Domus and not a reference: it
 * implements only what the guests in this directory use, following Xen's
 * behaviour as read in Xen's source (pv/iret.c, x86_64/entry.S
 * create_bounce_frame, pv/hypercall.c, pv/traps.c), so that bugs in the
 * guests' own runtime (asm offsets, console ring, printf, trap stubs) show up
 * before the guests meet Domus.
 *
 * How it works: one KVM vCPU in long mode.  The guest kernel and user code run
 * at CPL 3 with Xen's flat selectors (0xe033/0xe02b), like on Xen.  Every IDT
 * vector is a `hlt` in ring 0, so each exception exits to this program, which
 * plays Xen: hypercalls, bounce frames, the iret hypercall, user/kernel
 * page-table switching.  It returns to the guest through a ring-0 trampoline
 * that applies pending page-table writes, loads cr3 and irets.  The p2m is
 * deliberately not the identity:
 * mfn = MFN_TOP - 1 - pfn.
 *
 * Built to survive quirky nested-KVM hosts (like the one it was written on,
 * where a CPL-3 `syscall` jumps to LSTAR without leaving CPL 3, `int n`
 * raises #UD, and CPL-3 loads through L4 slot 256 fault):
 * - the hypercall page stubs use `hlt` (a #GP at CPL 3) instead of `syscall`;
 * - LSTAR points at a user-readable page holding `hlt`, so a `syscall` exits
 *   here whether it arrives at CPL 0 (hlt) or, wrongly, at CPL 3 (#GP);
 * - a kernel-mode #PF on the M2P is served by emulating the load
 *   (`mov m64, r64` only);
 * - page-table entries are also written by the ring-0 trampoline, inside the
 *   VM, because a shadow-paging KVM does not see writes made from here.
 *
 * Usage: pvsmoke <guest-elf> [command line]
 * Exit status: 0 after SHUTDOWN_poweroff, 10 + reason for other shutdowns,
 * 2 when the guest crashed in a way Xen would have killed it, 3 on errors.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define __XEN_INTERFACE_VERSION__ 0x00040d00
#include <xen/xen.h>
#include <xen/callback.h>
#include <xen/event_channel.h>
#include <xen/sched.h>
#include <xen/version.h>
#include <xen/io/console.h>
#include <xen/elfnote.h>
#include <xen/errno.h>

#define PAGE 4096UL
#define MEM_SIZE (64UL << 20)
#define NR_PAGES 8192UL                 /* guest pseudo-physical pages (32 MiB) */
#define MFN_TOP 0x3000UL                /* guest mfns: MFN_TOP-NR_PAGES .. MFN_TOP-1 */
#define M2P_ENTRIES 0x4000UL

/* "Hypervisor" frames, at the bottom of machine memory, mapped at HV_VA + gpa. */
#define HV_VA       0xffff800040000000UL    /* L4 slot 256, second GiB */
#define STUBS_GPA   0x1000UL
#define GDT_GPA     0x10000UL               /* 16 pages */
#define IDT_GPA     0x20000UL
#define TSS_GPA     0x21000UL
#define STACK0_GPA  0x22000UL               /* 2 pages */
#define HV_L3_GPA   0x30000UL
#define HV_L2_M2P   0x31000UL
#define HV_L1_M2P   0x32000UL
#define HV_L2_HV    0x33000UL
#define M2P_GPA     0x40000UL               /* 32 pages */
#define SHINFO_GPA  0x80000UL

#define LSTAR_L3_GPA 0x35000UL             /* slot 257: the `syscall` landing page */
#define LSTAR_L2_GPA 0x36000UL
#define LSTAR_L1_GPA 0x37000UL
#define LSTAR_GPA    0x38000UL
#define LSTAR_VA     0xffff808000000000UL
#define M2P_VA       0xffff800000000000UL

#define SEL_R0_CS   0xe008
#define SEL_R0_DS   0xe010
#define SEL_TSS     0xe040
#define TRAMPOLINE_OFF   0x900

#define X86_IF 0x200UL
static const uint64_t PTE_P = 1, PTE_RW = 2, PTE_US = 4;
#define PTE_ADDR 0x000ffffffffff000UL

static uint8_t *mem;
static int vcpu_fd;
static struct kvm_run *run;

static start_info_t *si;
static struct shared_info *shinfo;
static uint64_t kernel_cr3, user_cr3;
static bool in_kernel = true;
static uint64_t kernel_sp;
static struct trap_info traps[256];
static uint64_t syscall_callback;
static bool syscall_masks_events;
static bool pinned[MFN_TOP];
static uint32_t console_port = 1, store_port = 2;
static uint64_t hypercall_page_va;
static unsigned long hypercalls;

struct guest {
    struct kvm_regs r;      /* rip, rsp, rflags are the guest's */
    uint64_t cs, ss;
};

static void die(const char *fmt, ...) __attribute__((noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pvsmoke: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(3);
}

static void drain_console(void);

static void crash(const struct guest *g, const char *fmt, ...) __attribute__((noreturn));
static void crash(const struct guest *g, const char *fmt, ...)
{
    va_list ap;
    drain_console();
    fflush(stdout);
    va_start(ap, fmt);
    fprintf(stderr, "pvsmoke: domain crash: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (g)
        fprintf(stderr, "  rip %llx rsp %llx rflags %llx cs %lx ss %lx rax %llx mode %s\n",
                g->r.rip, g->r.rsp, g->r.rflags, g->cs, g->ss, g->r.rax,
                in_kernel ? "kernel" : "user");
    exit(2);
}

/* ---- machine and pseudo-physical memory ---- */

static uint64_t pfn_to_mfn(uint64_t pfn) { return MFN_TOP - 1 - pfn; }
static uint64_t *m2p(void) { return (uint64_t *)(mem + M2P_GPA); }
static bool guest_owns(uint64_t mfn) { return mfn < MFN_TOP && mfn >= MFN_TOP - NR_PAGES; }
static void *frame(uint64_t mfn) { return mem + (mfn << 12); }
static void *pfn_ptr(uint64_t pfn) { return frame(pfn_to_mfn(pfn)); }

/* Walks the guest page tables; returns the machine address or -1. */
static int64_t translate(uint64_t cr3, uint64_t va, bool write)
{
    int64_t sva = (int64_t)va;
    if ((sva >> 47) != 0 && (sva >> 47) != -1)
        return -1;                                  /* non-canonical */
    unsigned slot = (va >> 39) & 511;
    if (slot >= 256 && slot < 272)
        return -1;                                  /* Xen's area: access_ok() fails */
    uint64_t table = cr3 & PTE_ADDR;
    for (int level = 4; level >= 1; level--) {
        uint64_t e = ((uint64_t *)(mem + table))[(va >> (12 + 9 * (level - 1))) & 511];
        if (!(e & PTE_P) || (write && !(e & PTE_RW)))
            return -1;
        table = e & PTE_ADDR;
        if (table >= MEM_SIZE)
            return -1;
    }
    return (int64_t)(table | (va & 0xfff));
}

static uint64_t current_cr3(void) { return in_kernel ? kernel_cr3 : user_cr3; }

static bool copy_from_guest(void *dst, uint64_t va, size_t n)
{
    while (n) {
        size_t chunk = PAGE - (va & 0xfff);
        if (chunk > n)
            chunk = n;
        int64_t pa = translate(current_cr3(), va, false);
        if (pa < 0)
            return false;
        memcpy(dst, mem + pa, chunk);
        dst = (uint8_t *)dst + chunk;
        va += chunk;
        n -= chunk;
    }
    return true;
}

static bool copy_to_guest(uint64_t va, const void *src, size_t n)
{
    while (n) {
        size_t chunk = PAGE - (va & 0xfff);
        if (chunk > n)
            chunk = n;
        int64_t pa = translate(current_cr3(), va, true);
        if (pa < 0)
            return false;
        memcpy(mem + pa, src, chunk);
        src = (const uint8_t *)src + chunk;
        va += chunk;
        n -= chunk;
    }
    return true;
}

/* ---- console ---- */

static void drain_console(void)
{
    if (!si)
        return;
    struct xencons_interface *c = frame(si->console.domU.mfn);
    while (c->out_cons != c->out_prod) {
        putchar(c->out[MASK_XENCONS_IDX(c->out_cons, c->out)]);
        c->out_cons++;
    }
    fflush(stdout);
}

/* ---- hypercalls ---- */

static void write_pte(uint64_t *entry, uint64_t value);

static uint64_t *l1_entry(uint64_t va)
{
    uint64_t table = kernel_cr3 & PTE_ADDR;
    for (int level = 4; level >= 2; level--) {
        uint64_t e = ((uint64_t *)(mem + table))[(va >> (12 + 9 * (level - 1))) & 511];
        if (!(e & PTE_P))
            return NULL;
        table = e & PTE_ADDR;
    }
    return &((uint64_t *)(mem + table))[(va >> 12) & 511];
}

static long update_va_mapping(uint64_t va, uint64_t pte, uint64_t flags)
{
    (void)flags;    /* every return to the guest reloads cr3, which flushes */
    uint64_t *l1e = l1_entry(va);
    if (!l1e)
        return -XEN_EINVAL;
    if (pte & PTE_P) {
        uint64_t mfn = (pte & PTE_ADDR) >> 12;
        if (!guest_owns(mfn) && mfn != SHINFO_GPA >> 12)
            return -XEN_EINVAL;
        if ((pte & PTE_RW) && guest_owns(mfn) && pinned[mfn])
            return -XEN_EINVAL;     /* a page-table frame may not be writable */
        pte |= PTE_US;              /* Xen's adjust_guest_l1e for 64-bit PV */
    }
    write_pte(l1e, pte);
    return 0;
}

/* Page-table frames must not be writable through the kernel's mappings. */
static bool mapped_writable(uint64_t mfn)
{
    uint64_t pfn = m2p()[mfn];
    int64_t pa = translate(kernel_cr3, pfn << 12, true);
    return pa >= 0 && (uint64_t)pa >> 12 == mfn;
}

static long validate_table(uint64_t mfn, int level)
{
    if (!guest_owns(mfn))
        return -XEN_EINVAL;
    if (mapped_writable(mfn)) {
        fprintf(stderr, "pvsmoke: L%d table mfn %lx is mapped writable\n", level, mfn);
        return -XEN_EINVAL;
    }
    if (level == 1)
        return 0;
    uint64_t *t = frame(mfn);
    for (unsigned i = 0; i < 512; i++) {
        if (level == 4 && i >= 256 && i < 272)
            continue;
        if (t[i] & PTE_P) {
            long rc = validate_table((t[i] & PTE_ADDR) >> 12, level - 1);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static long mmuext_op(uint64_t ops, uint64_t count, uint64_t done_va, uint64_t dom)
{
    (void)dom;
    for (uint64_t i = 0; i < count; i++) {
        struct mmuext_op op;
        if (!copy_from_guest(&op, ops + i * sizeof(op), sizeof(op)))
            return -XEN_EFAULT;
        uint64_t mfn = op.arg1.mfn;
        long rc;
        switch (op.cmd) {
        case MMUEXT_PIN_L4_TABLE:
            if ((rc = validate_table(mfn, 4)) != 0)
                return rc;
            write_pte((uint64_t *)frame(mfn) + 256, HV_L3_GPA | 0x67);  /* Xen's own slots */
            write_pte((uint64_t *)frame(mfn) + 257, LSTAR_L3_GPA | 0x67);
            pinned[mfn] = true;
            break;
        case MMUEXT_NEW_USER_BASEPTR:
            if (!guest_owns(mfn) || !pinned[mfn])
                return -XEN_EINVAL;
            user_cr3 = mfn << 12;
            break;
        default:
            return -XEN_ENOSYS;
        }
    }
    if (done_va) {
        uint32_t done = (uint32_t)count;
        copy_to_guest(done_va, &done, sizeof(done));
    }
    return 0;
}

static long console_io(uint64_t cmd, uint64_t count, uint64_t buf)
{
    if (cmd != CONSOLEIO_write)
        return -XEN_ENOSYS;
    char chunk[128];
    while (count) {
        size_t n = count < sizeof(chunk) ? count : sizeof(chunk);
        if (!copy_from_guest(chunk, buf, n))
            return -XEN_EFAULT;
        drain_console();
        printf("(console_io) %.*s", (int)n, chunk);
        fflush(stdout);
        buf += n;
        count -= n;
    }
    return 0;
}

static long xen_version(uint64_t cmd, uint64_t arg)
{
    switch (cmd) {
    case XENVER_version:
        return (4 << 16) | 17;
    case XENVER_extraversion: {
        xen_extraversion_t extra = ".0-pvsmoke";
        return copy_to_guest(arg, extra, sizeof(extra)) ? 0 : -XEN_EFAULT;
    }
    default:
        return -XEN_ENOSYS;
    }
}

static long dispatch(struct guest *g, uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3,
                     uint64_t a4, uint64_t a5);

static long multicall(struct guest *g, uint64_t list, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        multicall_entry_t e;
        uint64_t va = list + i * sizeof(e);
        if (!copy_from_guest(&e, va, sizeof(e)))
            return -XEN_EFAULT;
        if (e.op == __HYPERVISOR_multicall || e.op == __HYPERVISOR_iret)
            e.result = -XEN_EINVAL;
        else
            e.result = dispatch(g, e.op, e.args[0], e.args[1], e.args[2], e.args[3], e.args[4]);
        if (!copy_to_guest(va + offsetof(multicall_entry_t, result), &e.result, 8))
            return -XEN_EFAULT;
    }
    return 0;
}

static void shutdown_domain(unsigned reason)
{
    drain_console();
    printf("[pvsmoke] shutdown reason=%u after %lu hypercalls\n", reason, hypercalls);
    exit(reason == SHUTDOWN_poweroff ? 0 : 10 + (int)reason);
}

static long dispatch(struct guest *g, uint64_t nr, uint64_t a1, uint64_t a2, uint64_t a3,
                     uint64_t a4, uint64_t a5)
{
    (void)a5;
    hypercalls++;
    switch (nr) {
    case __HYPERVISOR_set_trap_table: {
        memset(traps, 0, sizeof(traps));
        for (unsigned i = 0; i < 256; i++) {
            struct trap_info t;
            if (!copy_from_guest(&t, a1 + i * sizeof(t), sizeof(t)))
                return -XEN_EFAULT;
            if (t.address == 0)
                break;
            traps[t.vector] = t;
        }
        return 0;
    }
    case __HYPERVISOR_stack_switch:
        kernel_sp = a2;
        return 0;
    case __HYPERVISOR_multicall:
        return multicall(g, a1, a2);
    case __HYPERVISOR_update_va_mapping:
        return update_va_mapping(a1, a2, a3);
    case __HYPERVISOR_xen_version:
        return xen_version(a1, a2);
    case __HYPERVISOR_console_io:
        return console_io(a1, a2, a3);
    case __HYPERVISOR_mmuext_op:
        return mmuext_op(a1, a2, a3, a4);
    case __HYPERVISOR_sched_op:
        if (a1 == SCHEDOP_yield) {
            drain_console();
            return 0;
        }
        if (a1 == SCHEDOP_shutdown) {
            struct sched_shutdown s;
            if (!copy_from_guest(&s, a2, sizeof(s)))
                return -XEN_EFAULT;
            shutdown_domain(s.reason);
        }
        return -XEN_ENOSYS;
    case __HYPERVISOR_callback_op: {
        struct callback_register cb;
        if (a1 != CALLBACKOP_register)
            return -XEN_ENOSYS;
        if (!copy_from_guest(&cb, a2, sizeof(cb)))
            return -XEN_EFAULT;
        if (cb.type != CALLBACKTYPE_syscall)
            return -XEN_EINVAL;
        syscall_callback = cb.address;
        syscall_masks_events = cb.flags & CALLBACKF_mask_events;
        return 0;
    }
    case __HYPERVISOR_event_channel_op: {
        struct evtchn_send send;
        if (a1 != EVTCHNOP_send)
            return -XEN_ENOSYS;
        if (!copy_from_guest(&send, a2, sizeof(send)))
            return -XEN_EFAULT;
        if (send.port == console_port)
            drain_console();
        else if (send.port != store_port)
            return -XEN_EINVAL;
        return 0;
    }
    default:
        return -XEN_ENOSYS;
    }
}

/* ---- bounce frames and iret (Xen's create_bounce_frame, pv/iret.c) ---- */

static void bounce(struct guest *g, uint64_t address, bool has_error, uint64_t error,
                   uint64_t rcx, uint64_t r11, bool mask_events)
{
    uint8_t saved_mask = shinfo->vcpu_info[0].evtchn_upcall_mask;
    uint64_t cs = g->cs, rsp;

    if (!address)
        crash(g, "no handler registered");
    if (!in_kernel) {
        in_kernel = true;
        rsp = kernel_sp;
    } else {
        rsp = g->r.rsp;
        cs &= ~3UL;
    }
    rsp &= ~15UL;
    uint64_t frame[8];
    unsigned n = 0;
    frame[n++] = rcx;
    frame[n++] = r11;
    if (has_error)
        frame[n++] = error;
    frame[n++] = g->r.rip;
    frame[n++] = (cs & 0xffff) | ((uint64_t)saved_mask << 32);
    frame[n++] = (g->r.rflags & ~X86_IF) | (saved_mask ? 0 : X86_IF);
    frame[n++] = g->r.rsp;
    frame[n++] = g->ss;
    rsp -= n * 8;
    if (!copy_to_guest(rsp, frame, n * 8))
        crash(g, "bounce frame not writable at %lx", rsp);
    if (mask_events)
        shinfo->vcpu_info[0].evtchn_upcall_mask = 1;
    g->r.rip = address;
    g->cs = FLAT_KERNEL_CS;
    g->ss = FLAT_KERNEL_SS;
    g->r.rsp = rsp;
    g->r.rflags &= ~(0x40000UL | 0x20000UL | 0x10000UL | 0x4000UL | 0x100UL);
}

static void exception(struct guest *g, unsigned vector, bool has_error, uint64_t error)
{
    struct trap_info *t = &traps[vector];
    if (!t->address)
        crash(g, "exception %u (error %lx) with no trap table entry", vector, error);
    bounce(g, t->address, has_error, error, g->r.rcx, g->r.r11, t->flags & 4);
}

static void do_iret(struct guest *g)
{
    struct iret_context c;
    if (!copy_from_guest(&c, g->r.rsp, sizeof(c)))
        crash(g, "iret frame unreadable at %llx", g->r.rsp);
    if ((c.cs & 3) == 3) {
        if (!user_cr3)
            crash(g, "iret to user mode without user page tables");
        in_kernel = false;
    }
    g->r.rip = c.rip;
    g->cs = (c.cs | 3) & 0xffff;
    g->r.rflags = (c.rflags & ~(0x3000UL | 0x20000UL)) | X86_IF;
    g->r.rsp = c.rsp;
    g->ss = (c.ss | 3) & 0xffff;
    if (!(c.flags & VGCF_in_syscall)) {
        g->r.r11 = c.r11;
        g->r.rcx = c.rcx;
    } else {
        g->r.rcx = g->r.rip;        /* the sysret that Xen then uses */
        g->r.r11 = g->r.rflags;
    }
    shinfo->vcpu_info[0].evtchn_upcall_mask = !(c.rflags & X86_IF);
    g->r.rax = c.rax;
}

/* ---- KVM plumbing ---- */

/* Page-table writes the trampoline repeats from ring 0 (see the top of the file). */
static struct { uint64_t va, value; } pending[256];
static unsigned npending;

static void write_pte(uint64_t *entry, uint64_t value)
{
    *entry = value;
    if (npending == sizeof(pending) / sizeof(pending[0]))
        die("too many page-table writes at once");
    pending[npending].va = HV_VA + (uint64_t)((uint8_t *)entry - mem);
    pending[npending++].value = value;
}

static void resume(struct guest *g)
{
    uint64_t top = HV_VA + STACK0_GPA + 2 * PAGE;
    uint64_t f[9 + 2 * 256];
    unsigned n = 0;
    f[n++] = npending;
    for (unsigned i = 0; i < npending; i++) {
        f[n++] = pending[i].va;
        f[n++] = pending[i].value;
    }
    npending = 0;
    f[n++] = current_cr3();
    f[n++] = g->r.rcx;
    f[n++] = g->r.rdx;
    f[n++] = g->r.rax;
    f[n++] = g->r.rip;
    f[n++] = g->cs;
    f[n++] = g->r.rflags | X86_IF | 2;
    f[n++] = g->r.rsp;
    f[n++] = g->ss;
    uint64_t sp = top - n * 8;
    memcpy(mem + (sp - HV_VA), f, n * 8);
    struct kvm_regs r = g->r;
    r.rsp = sp;
    r.rip = HV_VA + STUBS_GPA + TRAMPOLINE_OFF;
    r.rflags = 2;
    if (ioctl(vcpu_fd, KVM_SET_REGS, &r) < 0)
        die("KVM_SET_REGS: %m");
}

static bool has_error_code(unsigned v)
{
    return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21;
}

/*
 * A `syscall`, or the `hlt` of a hypercall stub standing in for one.  r holds
 * the registers as the instruction left them: rcx = return address,
 * r11 = rflags.
 */
static void handle_syscall(struct guest *g, const struct kvm_regs *r)
{
    g->r.rip = r->rcx;
    g->r.rflags = r->r11;
    g->r.rsp = r->rsp;
    g->cs = FLAT_KERNEL_CS;
    g->ss = FLAT_KERNEL_SS;
    if (in_kernel) {
        if (r->rax == __HYPERVISOR_iret) {
            do_iret(g);
        } else {
            g->r.rax = dispatch(g, r->rax, r->rdi, r->rsi, r->rdx, r->r10, r->r8);
            g->r.rcx = g->r.rip;        /* Xen returns with sysret */
            g->r.r11 = g->r.rflags;
        }
    } else if (syscall_callback) {
        g->cs = FLAT_USER_CS;
        g->ss = FLAT_USER_SS;
        bounce(g, syscall_callback, false, 0, r->rcx, r->r11, syscall_masks_events);
        g->r.rflags &= ~0x400UL;    /* DF */
    } else {
        g->cs = FLAT_USER_CS;
        g->ss = FLAT_USER_SS;
        g->r.rip = r->rcx - 2;          /* no callback: #UD on the syscall */
        exception(g, 6, false, 0);
    }
}

/* Emulates a kernel-mode `mov m64, r64` that faulted on the M2P. */
static bool emulate_m2p_load(struct guest *g, uint64_t cr2)
{
    uint8_t insn[16];
    if (cr2 < M2P_VA || cr2 + 8 > M2P_VA + M2P_ENTRIES * 8 || (cr2 & 7) ||
        !copy_from_guest(insn, g->r.rip, sizeof(insn)))
        return false;
    unsigned i = 0, rex = 0;
    if ((insn[i] & 0xf0) == 0x40)
        rex = insn[i++];
    if (!(rex & 8) || insn[i++] != 0x8b)
        return false;
    uint8_t modrm = insn[i++];
    unsigned mod = modrm >> 6, reg = ((modrm >> 3) & 7) | ((rex & 4) << 1), rm = modrm & 7;
    if (mod == 3)
        return false;
    if (rm == 4) {
        uint8_t sib = insn[i++];
        if (mod == 0 && (sib & 7) == 5)
            i += 4;
    } else if (mod == 0 && rm == 5) {
        i += 4;
    }
    i += mod == 1 ? 1 : mod == 2 ? 4 : 0;
    uint64_t value = m2p()[(cr2 - M2P_VA) / 8];
    __u64 *regs[16] = { &g->r.rax, &g->r.rcx, &g->r.rdx, &g->r.rbx, &g->r.rsp, &g->r.rbp,
                        &g->r.rsi, &g->r.rdi, &g->r.r8, &g->r.r9, &g->r.r10, &g->r.r11,
                        &g->r.r12, &g->r.r13, &g->r.r14, &g->r.r15 };
    *regs[reg] = value;
    g->r.rip += i;
    return true;
}

static void handle_hlt(void)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    struct guest g;
    if (ioctl(vcpu_fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &s) < 0)
        die("KVM_GET_REGS: %m");
    g.r = r;

    if (r.rip - 1 == LSTAR_VA) {
        /* `syscall` arrived at CPL 0, as it should. */
        handle_syscall(&g, &r);
        resume(&g);
        return;
    }
    uint64_t at = r.rip - 1 - (HV_VA + STUBS_GPA);
    if (at >= 256 * 16 || at % 16 != 0)
        die("hlt at unexpected rip %llx", r.rip);

    unsigned v = at / 16;
    uint64_t *hw = (uint64_t *)(mem + (r.rsp - HV_VA));
    bool err = has_error_code(v);
    uint64_t error = err ? *hw++ : 0;
    g.r.rip = hw[0];
    g.cs = hw[1];
    g.r.rflags = hw[2];
    g.r.rsp = hw[3];
    g.ss = hw[4];
    if ((g.cs & 3) != 3)
        die("exception %u in the runner's ring 0 at %llx", v, g.r.rip);

    if (v == 13 && g.r.rip == LSTAR_VA) {
        /* `syscall` that stayed at CPL 3 (quirky host): rcx/r11 are right. */
        struct kvm_regs call = g.r;
        handle_syscall(&g, &call);
    } else if (v == 13 && g.r.rip - hypercall_page_va < PAGE && in_kernel) {
        /* The `hlt` in a hypercall stub: treated exactly like `syscall`. */
        struct kvm_regs call = g.r;
        call.rcx = g.r.rip + 1;     /* return address */
        call.r11 = g.r.rflags;
        g.r = call;
        handle_syscall(&g, &call);
    } else if (v == 14 && in_kernel && emulate_m2p_load(&g, s.cr2)) {
        /* served */
    } else {
        if (getenv("PVSMOKE_DEBUG"))
            fprintf(stderr, "pvsmoke: exception %u error %lx at %llx cr2 %llx\n", v, error,
                    g.r.rip, s.cr2);
        if (v == 14) {
            shinfo->vcpu_info[0].arch.cr2 = s.cr2;
            error &= ~4UL;
            if (!in_kernel)
                error |= 4;
        }
        exception(&g, v, err, error);
    }
    resume(&g);
}

static void setup_cpu(uint64_t entry, uint64_t stack, uint64_t si_va, int kvm)
{
    /* Ring-0 stubs: every IDT vector and SYSCALL are `hlt`. */
    uint8_t *stubs = mem + STUBS_GPA;
    for (unsigned v = 0; v < 256; v++)
        stubs[v * 16] = 0xf4;
    /*
     * pop %rcx; 1: jrcxz 2f; pop %rax; pop %rdx; mov %rdx,(%rax); dec %rcx;
     * jmp 1b; 2: pop %rax; mov %rax,%cr3; pop %rcx; pop %rdx; pop %rax; iretq
     */
    static const uint8_t tramp[] = { 0x59, 0xe3, 0x0a, 0x58, 0x5a, 0x48, 0x89, 0x10, 0x48,
                                     0xff, 0xc9, 0xeb, 0xf4, 0x58, 0x0f, 0x22, 0xd8, 0x59,
                                     0x5a, 0x58, 0x48, 0xcf };
    memcpy(stubs + TRAMPOLINE_OFF, tramp, sizeof(tramp));

    uint64_t *gdt = (uint64_t *)(mem + GDT_GPA);
    gdt[SEL_R0_CS >> 3] = 0x00af9b000000ffffUL;
    gdt[SEL_R0_DS >> 3] = 0x00cf93000000ffffUL;
    gdt[FLAT_RING3_CS32 >> 3] = 0x00cffb000000ffffUL;
    gdt[FLAT_RING3_DS32 >> 3] = 0x00cff3000000ffffUL;
    gdt[FLAT_RING3_CS64 >> 3] = 0x00affb000000ffffUL;
    uint64_t tss = HV_VA + TSS_GPA;
    gdt[SEL_TSS >> 3] = 0x67 | ((tss & 0xffffff) << 16) | (0x89UL << 40) |
                        (((tss >> 24) & 0xff) << 56);
    gdt[(SEL_TSS >> 3) + 1] = tss >> 32;
    *(uint64_t *)(mem + TSS_GPA + 4) = HV_VA + STACK0_GPA + 2 * PAGE;   /* rsp0 */
    *(uint16_t *)(mem + TSS_GPA + 0x66) = 0x68;                        /* no I/O bitmap */

    uint64_t *idt = (uint64_t *)(mem + IDT_GPA);
    for (unsigned v = 0; v < 256; v++) {
        uint64_t off = HV_VA + STUBS_GPA + v * 16;
        unsigned dpl = (v == 3 || v == 4) ? 3 : 0;
        idt[2 * v] = (off & 0xffff) | ((uint64_t)SEL_R0_CS << 16) |
                     ((uint64_t)(0x8e | dpl << 5) << 40) | ((off >> 16 & 0xffff) << 48);
        idt[2 * v + 1] = off >> 32;
    }

    struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + 100 * sizeof(struct kvm_cpuid_entry2));
    cpuid->nent = 100;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
        die("KVM_GET_SUPPORTED_CPUID: %m");
    if (ioctl(vcpu_fd, KVM_SET_CPUID2, cpuid) < 0)
        die("KVM_SET_CPUID2: %m");

    struct kvm_sregs s;
    if (ioctl(vcpu_fd, KVM_GET_SREGS, &s) < 0)
        die("KVM_GET_SREGS: %m");
    struct kvm_segment code = { .base = 0, .limit = 0xffffffff, .selector = SEL_R0_CS,
                                .type = 11, .present = 1, .dpl = 0, .db = 0, .s = 1,
                                .l = 1, .g = 1 };
    struct kvm_segment data = { .base = 0, .limit = 0xffffffff, .selector = SEL_R0_DS,
                                .type = 3, .present = 1, .dpl = 0, .db = 1, .s = 1,
                                .l = 0, .g = 1 };
    struct kvm_segment null = { .unusable = 1 };
    s.cs = code;
    s.ss = data;
    s.ds = s.es = s.fs = s.gs = null;
    s.tr = (struct kvm_segment){ .base = tss, .limit = 0x67, .selector = SEL_TSS, .type = 11,
                                 .present = 1, .s = 0 };
    s.ldt = (struct kvm_segment){ .unusable = 1 };
    s.gdt.base = HV_VA + GDT_GPA;
    s.gdt.limit = 16 * PAGE - 1;
    s.idt.base = HV_VA + IDT_GPA;
    s.idt.limit = 256 * 16 - 1;
    s.cr0 = 0x80050033;     /* PG WP NE ET MP PE */
    s.cr4 = 0x620;          /* PAE OSFXSR OSXMMEXCPT */
    s.cr3 = kernel_cr3;
    s.efer = 0x501;         /* LMA LME SCE */
    if (ioctl(vcpu_fd, KVM_SET_SREGS, &s) < 0)
        die("KVM_SET_SREGS: %m");

    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[3];
    } msrs = { .hdr.nmsrs = 3 };
    msrs.e[0] = (struct kvm_msr_entry){ .index = 0xc0000081,       /* STAR */
                                        .data = (0xe023UL << 48) | ((uint64_t)SEL_R0_CS << 32) };
    msrs.e[1] = (struct kvm_msr_entry){ .index = 0xc0000082,       /* LSTAR */
                                        .data = LSTAR_VA };
    msrs.e[2] = (struct kvm_msr_entry){ .index = 0xc0000084, .data = 0x47700 };  /* FMASK */
    if (ioctl(vcpu_fd, KVM_SET_MSRS, &msrs) != 3)
        die("KVM_SET_MSRS failed");

    struct guest g = { 0 };
    g.r.rip = entry;
    g.r.rsp = stack;
    g.r.rsi = si_va;
    g.r.rflags = X86_IF | 2;
    g.cs = FLAT_KERNEL_CS;
    g.ss = FLAT_KERNEL_SS;
    resume(&g);
}

/* ---- domain building (as xg_dom_x86.c lays it out) ---- */

static void build(const char *path, const char *cmdline, uint64_t *entry_out,
                  uint64_t *stack_out, uint64_t *si_out)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die("%s: %m", path);
    uint8_t *img = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_machine != EM_X86_64)
        die("%s: not an x86-64 ELF", path);

    uint64_t entry = 0, hypercall_page = 0, virt_base = ~0UL, kend = 0;
    bool have_loader = false;
    Elf64_Phdr *ph = (Elf64_Phdr *)(img + eh->e_phoff);
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_NOTE)
            continue;
        uint8_t *p = img + ph[i].p_offset, *end = p + ph[i].p_filesz;
        while (p + 12 <= end) {
            uint32_t namesz = ((uint32_t *)p)[0], descsz = ((uint32_t *)p)[1],
                     type = ((uint32_t *)p)[2];
            char *name = (char *)p + 12;
            uint8_t *desc = p + 12 + ((namesz + 3) & ~3U);
            if (namesz == 4 && !strcmp(name, "Xen")) {
                uint64_t v = descsz == 8 ? *(uint64_t *)desc : 0;
                if (type == XEN_ELFNOTE_ENTRY) entry = v;
                if (type == XEN_ELFNOTE_HYPERCALL_PAGE) hypercall_page = v;
                if (type == XEN_ELFNOTE_VIRT_BASE) virt_base = v;
                if (type == XEN_ELFNOTE_LOADER) have_loader = !strcmp((char *)desc, "generic");
            }
            p = desc + ((descsz + 3) & ~3U);
        }
    }
    if (!entry || !hypercall_page || virt_base != 0 || !have_loader)
        die("%s: Xen notes missing (entry %lx hypercall_page %lx virt_base %lx loader %d)",
            path, entry, hypercall_page, virt_base, have_loader);

    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & (PF_R | PF_W | PF_X)))
            continue;
        for (uint64_t off = 0; off < ph[i].p_memsz; off++) {
            uint64_t pa = ph[i].p_paddr + off;
            uint8_t byte = off < ph[i].p_filesz ? img[ph[i].p_offset + off] : 0;
            ((uint8_t *)pfn_ptr(pa >> 12))[pa & 0xfff] = byte;
        }
        if (ph[i].p_paddr + ph[i].p_memsz > kend)
            kend = ph[i].p_paddr + ph[i].p_memsz;
    }
    uint64_t next = (kend + PAGE - 1) >> 12;

    /* p2m list, start_info, xenstore, console, page tables, boot stack. */
    uint64_t p2m_pfn = next;
    next += (NR_PAGES * 8 + PAGE - 1) / PAGE;
    uint64_t si_pfn = next++, store_pfn = next++, console_pfn = next++, pt_pfn = next;
    uint64_t n_l1 = 1, virt_end = 0;
    for (int iter = 0; iter < 8; iter++) {
        uint64_t end = (pt_pfn + 3 + n_l1 + 1) * PAGE + (512UL << 10);
        virt_end = (end + (4UL << 20) - 1) & ~((4UL << 20) - 1);
        n_l1 = virt_end >> 21;
    }
    uint64_t stack_pfn = pt_pfn + 3 + n_l1;

    for (uint64_t pfn = 0; pfn < NR_PAGES; pfn++) {
        ((uint64_t *)pfn_ptr(p2m_pfn + pfn / 512))[pfn % 512] = pfn_to_mfn(pfn);
        m2p()[pfn_to_mfn(pfn)] = pfn;
    }

    uint64_t *l4 = pfn_ptr(pt_pfn), *l3 = pfn_ptr(pt_pfn + 1), *l2 = pfn_ptr(pt_pfn + 2);
    l4[0] = (pfn_to_mfn(pt_pfn + 1) << 12) | 0x67;
    l4[256] = HV_L3_GPA | 0x67;
    l4[257] = LSTAR_L3_GPA | 0x67;
    ((uint64_t *)(mem + LSTAR_L3_GPA))[0] = LSTAR_L2_GPA | 0x67;
    ((uint64_t *)(mem + LSTAR_L2_GPA))[0] = LSTAR_L1_GPA | 0x67;
    ((uint64_t *)(mem + LSTAR_L1_GPA))[0] = LSTAR_GPA | 0x25;
    mem[LSTAR_GPA] = 0xf4;      /* hlt */
    l3[0] = (pfn_to_mfn(pt_pfn + 2) << 12) | 0x67;
    for (uint64_t i = 0; i < n_l1; i++) {
        uint64_t *l1 = pfn_ptr(pt_pfn + 3 + i);
        l2[i] = (pfn_to_mfn(pt_pfn + 3 + i) << 12) | 0x67;
        for (unsigned j = 0; j < 512; j++) {
            uint64_t pfn = i * 512 + j;
            bool is_pt = pfn >= pt_pfn && pfn < pt_pfn + 3 + n_l1;
            l1[j] = (pfn_to_mfn(pfn) << 12) | (is_pt ? 0x25 : 0x27);
        }
    }
    for (uint64_t pfn = pt_pfn; pfn < pt_pfn + 3 + n_l1; pfn++)
        pinned[pfn_to_mfn(pfn)] = true;
    kernel_cr3 = pfn_to_mfn(pt_pfn) << 12;

    /* The runner's own mappings in slot 256: M2P (user, read-only) and its frames. */
    uint64_t *hl3 = (uint64_t *)(mem + HV_L3_GPA);
    uint64_t *m2l2 = (uint64_t *)(mem + HV_L2_M2P), *m2l1 = (uint64_t *)(mem + HV_L1_M2P);
    uint64_t *hvl2 = (uint64_t *)(mem + HV_L2_HV);
    hl3[0] = HV_L2_M2P | 0x67;
    m2l2[0] = HV_L1_M2P | 0x67;
    for (unsigned j = 0; j < M2P_ENTRIES * 8 / PAGE; j++)
        m2l1[j] = (M2P_GPA + j * PAGE) | 0x25;
    hl3[1] = HV_L2_HV | 0x63;
    for (unsigned j = 0; j < MEM_SIZE >> 21; j++)
        hvl2[j] = (j << 21) | 0xe3;     /* 2 MiB pages: all of memory at HV_VA */

    memset(mem + SHINFO_GPA, 0, PAGE);
    shinfo = (struct shared_info *)(mem + SHINFO_GPA);
    for (unsigned i = 0; i < XEN_LEGACY_MAX_VCPUS; i++)
        shinfo->vcpu_info[i].evtchn_upcall_mask = 1;

    si = pfn_ptr(si_pfn);
    memset(si, 0, sizeof(*si));
    strcpy(si->magic, "xen-3.0-x86_64");
    si->nr_pages = NR_PAGES;
    si->shared_info = SHINFO_GPA;
    si->store_mfn = pfn_to_mfn(store_pfn);
    si->store_evtchn = store_port;
    si->console.domU.mfn = pfn_to_mfn(console_pfn);
    si->console.domU.evtchn = console_port;
    si->pt_base = pt_pfn << 12;
    si->nr_pt_frames = 3 + n_l1;
    si->mfn_list = p2m_pfn << 12;
    snprintf((char *)si->cmd_line, sizeof(si->cmd_line), "%s", cmdline);

    /*
     * The hypercall page: Xen's layout (pv_ring3_init_hypercall_page) except
     * that `hlt` (a #GP at CPL 3) replaces `syscall`, which this runner cannot
     * rely on (see the top of the file).  The stubs still save and restore
     * rcx and r11.
     */
    for (unsigned i = 0; i < PAGE / 32; i++) {
        uint64_t va = hypercall_page + i * 32;
        uint8_t *p = (uint8_t *)pfn_ptr(va >> 12) + (va & 0xfff);
        if (i == __HYPERVISOR_iret) {
            uint8_t s[] = { 0x51, 0x41, 0x53, 0x50, 0xb8, i, 0, 0, 0, 0xf4 };
            memcpy(p, s, sizeof(s));
        } else {
            uint8_t s[] = { 0x51, 0x41, 0x53, 0xb8, i, 0, 0, 0, 0xf4, 0x41, 0x5b, 0x59, 0xc3 };
            memcpy(p, s, sizeof(s));
        }
    }
    printf("[pvsmoke] %s: entry %lx, image end %lx, start_info pfn %lx, pt %lx+%lu, "
           "mapped to %lx, cmdline \"%s\"\n", path, entry, kend, si_pfn, pt_pfn, 3 + n_l1,
           virt_end, cmdline);
    hypercall_page_va = hypercall_page;
    *entry_out = entry;
    *stack_out = (stack_pfn + 1) << 12;
    *si_out = si_pfn << 12;
}

static void set_time(void)
{
    long khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
    if (khz <= 0)
        khz = 1000000;
    /* ns = ((ticks << shift) * mul) >> 32 with mul < 2^32. */
    int shift = 0;
    uint64_t hz = (uint64_t)khz * 1000;
    while (hz < 1000000000UL) {     /* keep mul < 2^32: a tick longer than 1 ns */
        hz <<= 1;
        shift++;
    }
    struct vcpu_time_info *t = &shinfo->vcpu_info[0].time;
    t->version = 2;
    t->tsc_to_system_mul = (uint32_t)((1000000000ULL << 32) / hz);
    t->tsc_shift = (int8_t)shift;
    t->flags = XEN_PVCLOCK_TSC_STABLE_BIT;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        die("usage: pvsmoke <guest-elf> [command line]");
    setvbuf(stdout, NULL, _IOLBF, 0);
    int kvm = open("/dev/kvm", O_RDWR);
    if (kvm < 0)
        die("/dev/kvm: %m");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = MEM_SIZE,
        .userspace_addr = (uint64_t)mem,
    };
    if (vm < 0 || mem == MAP_FAILED || ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        die("VM setup: %m");
    vcpu_fd = ioctl(vm, KVM_CREATE_VCPU, 0);
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu_fd, 0);
    if (vcpu_fd < 0 || run == MAP_FAILED)
        die("vCPU setup: %m");
    memset(m2p(), 0xff, M2P_ENTRIES * 8);

    uint64_t entry, stack, si_va;
    build(argv[1], argc > 2 ? argv[2] : "", &entry, &stack, &si_va);
    set_time();
    setup_cpu(entry, stack, si_va, kvm);

    for (;;) {
        if (ioctl(vcpu_fd, KVM_RUN, 0) < 0 && errno != EINTR)
            die("KVM_RUN: %m");
        switch (run->exit_reason) {
        case KVM_EXIT_HLT:
            handle_hlt();
            break;
        case KVM_EXIT_SHUTDOWN: {
            struct kvm_regs r;
            ioctl(vcpu_fd, KVM_GET_REGS, &r);
            drain_console();
            die("triple fault at rip %llx rsp %llx", r.rip, r.rsp);
        }
        case KVM_EXIT_FAIL_ENTRY:
            die("KVM_EXIT_FAIL_ENTRY %llx",
                (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        default: {
            struct kvm_regs r;
            ioctl(vcpu_fd, KVM_GET_REGS, &r);
            drain_console();
            die("unexpected exit %u at rip %llx", run->exit_reason, r.rip);
        }
        }
    }
}
