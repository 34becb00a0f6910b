/*
 * hcerrors: hypercall error returns and register preservation.
 *
 * - the hypercall page stub preserves rcx, r11 and the non-argument registers;
 * - unknown hypercall numbers return -ENOSYS: 47 and 60 through their
 *   hypercall-page slots, 47 and 1000 through a direct `syscall`;
 * - bad guest pointers return -EFAULT: console_io write from an unmapped
 *   page, from an address without page tables, and from a buffer running
 *   off a mapped page into an unmapped one; xen_version(XENVER_extraversion)
 *   into an unmapped page, a read-only page (left unchanged), a buffer
 *   running into an unmapped page, the hypervisor's M2P area and a
 *   non-canonical address; sched_op(SCHEDOP_shutdown) and EVTCHNOP_send with
 *   an unmapped argument; multicall with an unmapped list.
 *
 * A release build of Xen refuses CONSOLEIO_write from a domU with -EPERM;
 * when the valid write gets -EPERM, the console_io -EFAULT cases are
 * reported as skipped.
 */
#include "runtime.h"

const char guest_name[] = "hcerrors";

#define FAR_UNMAPPED_VA 0x00007f0000000000UL
#define NON_CANONICAL_VA 0x8000000000000000UL

/* Two pages: the first stays mapped, the second is unmapped. */
static uint8_t edge_pages[2 * PAGE_SIZE] PAGE_ALIGNED;
static uint8_t ro_page[PAGE_SIZE] PAGE_ALIGNED;
#define UNMAPPED_PAGE (edge_pages + PAGE_SIZE)

static long syscall_hypercall(unsigned long nr)
{
    long ret = (long)nr;

    /* A PV kernel may issue `syscall` itself (Linux does): rax = number. */
    asm volatile("syscall" : "+a"(ret) : : "rcx", "r11", "rdi", "rsi", "rdx", "r10", "r8",
                 "memory");
    return ret;
}

/*
 * xen_version(XENVER_version) through the page with rcx, r11, rbx, rbp, r9,
 * r12-r15 loaded with known values; returns how many of them changed.
 */
static unsigned check_preserved(void)
{
    static uint64_t regs[9];
    static const uint64_t want[9] = {
        0xc0c0c0c0c0c0c0c1UL, 0x1111111111111112UL, 0xb0b0b0b0b0b0b0b3UL,
        0xbabababababababaUL, 0x9999999999999995UL, 0x1212121212121216UL,
        0x1313131313131317UL, 0x1414141414141418UL, 0x1515151515151519UL,
    };
    const uint64_t *in = want;
    uint64_t *out = regs;
    long ret;
    unsigned bad = 0;

    /* in/out live in rdi/rsi, which are only reused once everything is loaded. */
    asm volatile(
        "push %%rbx; push %%rbp; push %%r12; push %%r13; push %%r14; push %%r15\n\t"
        "push %%rsi\n\t"
        "mov 0*8(%%rdi), %%rcx\n\t"
        "mov 1*8(%%rdi), %%r11\n\t"
        "mov 2*8(%%rdi), %%rbx\n\t"
        "mov 3*8(%%rdi), %%rbp\n\t"
        "mov 4*8(%%rdi), %%r9\n\t"
        "mov 5*8(%%rdi), %%r12\n\t"
        "mov 6*8(%%rdi), %%r13\n\t"
        "mov 7*8(%%rdi), %%r14\n\t"
        "mov 8*8(%%rdi), %%r15\n\t"
        "mov %[cmd], %%edi\n\t"
        "xor %%esi, %%esi\n\t"
        "call hypercall_page + %c[nr] * 32\n\t"
        "pop %%rdi\n\t"
        "mov %%rcx, 0*8(%%rdi)\n\t"
        "mov %%r11, 1*8(%%rdi)\n\t"
        "mov %%rbx, 2*8(%%rdi)\n\t"
        "mov %%rbp, 3*8(%%rdi)\n\t"
        "mov %%r9, 4*8(%%rdi)\n\t"
        "mov %%r12, 5*8(%%rdi)\n\t"
        "mov %%r13, 6*8(%%rdi)\n\t"
        "mov %%r14, 7*8(%%rdi)\n\t"
        "mov %%r15, 8*8(%%rdi)\n\t"
        "pop %%r15; pop %%r14; pop %%r13; pop %%r12; pop %%rbp; pop %%rbx"
        : "=a"(ret), "+D"(in), "+S"(out)
        : [cmd] "i"(XENVER_version), [nr] "i"(__HYPERVISOR_xen_version)
        : "rcx", "r11", "rdx", "r8", "r9", "r10", "memory");
    static const char *const names[9] = { "rcx", "r11", "rbx", "rbp", "r9",
                                          "r12", "r13", "r14", "r15" };
    for (unsigned i = 0; i < 9; i++) {
        if (regs[i] != want[i]) {
            printk("  %s is %lx after the hypercall, want %lx\n", names[i], regs[i], want[i]);
            bad++;
        }
    }
    check(ret > 0, "xen_version(XENVER_version) = %lx", ret);
    return bad;
}

static void expect(long got, long want, const char *what)
{
    check(got == want, "%s returns %ld (want %ld)", what, got, want);
}

void guest_main(void)
{
    long rc;
    xen_extraversion_t extra;

    check(check_preserved() == 0,
          "the hypercall stub preserves rcx, r11, rbx, rbp, r9, r12-r15");

    expect(hypercall0(47), -XEN_ENOSYS, "hypercall 47 (page slot)");
    expect(hypercall0(60), -XEN_ENOSYS, "hypercall 60 (page slot)");
    expect(syscall_hypercall(47), -XEN_ENOSYS, "hypercall 47 (direct syscall)");
    expect(syscall_hypercall(1000), -XEN_ENOSYS, "hypercall 1000 (direct syscall)");

    /* Set up the bad buffers. */
    memcpy(UNMAPPED_PAGE - 8, "partial\n", 8);
    /* If the unmap silently failed, reading this as an argument must not look valid. */
    memset(UNMAPPED_PAGE, 0xa5, PAGE_SIZE);
    memset(ro_page, 0x77, PAGE_SIZE);
    if ((rc = unmap_page(UNMAPPED_PAGE)) != 0)
        fail("unmapping the second edge page: %ld", rc);
    if ((rc = make_readonly(ro_page)) != 0)
        fail("remapping ro_page read-only: %ld", rc);

    static const char ok_msg[] = "hcerrors: console_io with a good buffer\n";
    long probe = console_io_write(ok_msg, sizeof(ok_msg) - 1);
    if (probe == -XEN_EPERM) {
        printk("domus-test: skip - CONSOLEIO_write refused (-EPERM): console_io EFAULT cases\n");
    } else {
        expect(probe, 0, "console_io write, good buffer");
        expect(console_io_write((const char *)UNMAPPED_PAGE, 16), -XEN_EFAULT,
               "console_io write from an unmapped page");
        expect(console_io_write((const char *)FAR_UNMAPPED_VA, 16), -XEN_EFAULT,
               "console_io write from an address without page tables");
        expect(console_io_write((const char *)UNMAPPED_PAGE - 8, 16), -XEN_EFAULT,
               "console_io write running into an unmapped page");
    }

    expect(HYPERVISOR_xen_version(XENVER_extraversion, extra), 0,
           "xen_version(extraversion), good buffer");
    expect(HYPERVISOR_xen_version(XENVER_extraversion, UNMAPPED_PAGE), -XEN_EFAULT,
           "xen_version(extraversion) into an unmapped page");
    expect(HYPERVISOR_xen_version(XENVER_extraversion, ro_page), -XEN_EFAULT,
           "xen_version(extraversion) into a read-only page");
    unsigned changed = 0;
    for (unsigned i = 0; i < PAGE_SIZE; i++)
        changed += ro_page[i] != 0x77;
    check(changed == 0, "the read-only page is unchanged (%u bytes differ)", changed);
    expect(HYPERVISOR_xen_version(XENVER_extraversion, UNMAPPED_PAGE - 8), -XEN_EFAULT,
           "xen_version(extraversion) running into an unmapped page");
    expect(HYPERVISOR_xen_version(XENVER_extraversion, (void *)MACH2PHYS_VIRT_START),
           -XEN_EFAULT, "xen_version(extraversion) into the M2P (hypervisor area)");
    expect(HYPERVISOR_xen_version(XENVER_extraversion, (void *)NON_CANONICAL_VA),
           -XEN_EFAULT, "xen_version(extraversion) to a non-canonical address");

    expect(HYPERVISOR_sched_op(SCHEDOP_shutdown, UNMAPPED_PAGE), -XEN_EFAULT,
           "sched_op(shutdown) with an unmapped argument");
    expect(HYPERVISOR_event_channel_op(EVTCHNOP_send, UNMAPPED_PAGE), -XEN_EFAULT,
           "event_channel_op(send) with an unmapped argument");
    expect(HYPERVISOR_multicall((multicall_entry_t *)UNMAPPED_PAGE, 1), -XEN_EFAULT,
           "multicall with an unmapped list");
}
