/*
 * hcbench: the round-trip cost of a cheap hypercall.
 *
 * Maps shared_info, reads vcpu_info[0].time (retrying while the version is
 * odd or changes underneath), times 10000 calls of
 * xen_version(XENVER_version, NULL) with rdtsc, and converts TSC ticks to ns
 * with the pvclock scale: ns = ((ticks << shift, or >> -shift) * mul) >> 32.
 * Prints "domus-bench: xen_version_ns=<per-call ns> calls=10000".
 *
 * Then times 10000 stack_switch calls, which the ring-0 core completes inside the
 * VM, twice: through the hypercall page, and with a bare `syscall` as Linux makes
 * its hypercalls. Prints "domus-bench: stack_switch_page_ns=... stack_switch_syscall_ns=...".
 */
#include "runtime.h"

const char guest_name[] = "hcbench";

#define CALLS 10000

static inline uint64_t rdtsc_ordered(void)
{
    uint32_t lo, hi;

    asm volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
    return ((uint64_t)hi << 32) | lo;
}

static uint64_t ticks_to_ns(uint64_t ticks, uint32_t mul, int8_t shift)
{
    if (shift < 0)
        ticks >>= -shift;
    else
        ticks <<= shift;
    return (uint64_t)(((unsigned __int128)ticks * mul) >> 32);
}

void guest_main(void)
{
    struct shared_info *shared = map_shared_info();
    volatile struct vcpu_time_info *t = &shared->vcpu_info[0].time;
    uint32_t version, mul;
    int8_t shift;
    uint64_t system_time;
    unsigned tries = 0;

    do {
        version = t->version;
        rmb();
        mul = t->tsc_to_system_mul;
        shift = t->tsc_shift;
        system_time = t->system_time;
        rmb();
        if (++tries > 1000000)
            fail("vcpu_time_info.version never became stable (%u)", version);
    } while ((version & 1) || version != t->version);

    printk("domus-test: time version=%u tsc_to_system_mul=%u tsc_shift=%d system_time=%lu\n",
           version, mul, shift, system_time);
    if (mul == 0)
        fail("vcpu_info[0].time.tsc_to_system_mul is 0: time info not provided");

    long first = HYPERVISOR_xen_version(XENVER_version, NULL);
    if (first <= 0)
        fail("xen_version(XENVER_version) returned %ld", first);

    uint64_t start = rdtsc_ordered();
    for (unsigned i = 0; i < CALLS; i++)
        HYPERVISOR_xen_version(XENVER_version, NULL);
    uint64_t ticks = rdtsc_ordered() - start;

    uint64_t ns = ticks_to_ns(ticks, mul, shift);
    printk("domus-test: hcbench ticks=%lu total_ns=%lu ticks_per_call=%lu\n", ticks, ns,
           ticks / CALLS);
    printk("domus-bench: xen_version_ns=%lu calls=%u\n", ns / CALLS, CALLS);

    /* The stack the kernel is entered on stays what it is: rsp's page. */
    unsigned long sp;
    asm volatile("mov %%rsp, %0" : "=r"(sp));
    sp = (sp & ~4095UL) + 4096;
    start = rdtsc_ordered();
    for (unsigned i = 0; i < CALLS; i++)
        HYPERVISOR_stack_switch(FLAT_KERNEL_SS, sp);
    uint64_t page_ns = ticks_to_ns(rdtsc_ordered() - start, mul, shift);

    start = rdtsc_ordered();
    for (unsigned i = 0; i < CALLS; i++) {
        register unsigned long a1 asm("rdi") = FLAT_KERNEL_SS;
        register unsigned long a2 asm("rsi") = sp;
        long result;
        asm volatile("syscall"
                     : "=a"(result), "+r"(a1), "+r"(a2)
                     : "0"((unsigned long)__HYPERVISOR_stack_switch)
                     : "rcx", "r11", "rdx", "r10", "r8", "memory");
        if (result != 0)
            fail("stack_switch by syscall returned %ld", result);
    }
    uint64_t syscall_ns = ticks_to_ns(rdtsc_ordered() - start, mul, shift);
    start = rdtsc_ordered();
    for (unsigned i = 0; i < CALLS; i++) {
        uint32_t a = 0, b, c = 0, d;
        asm volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
    }
    uint64_t cpuid_ns = ticks_to_ns(rdtsc_ordered() - start, mul, shift);
    printk("domus-bench: raw_cpuid_ns=%lu\n", cpuid_ns / CALLS);
    printk("domus-bench: stack_switch_page_ns=%lu stack_switch_syscall_ns=%lu calls=%u\n",
           page_ns / CALLS, syscall_ns / CALLS, CALLS);
}
