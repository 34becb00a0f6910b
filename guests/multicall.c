/*
 * multicall: HYPERVISOR_multicall with mixed entries, each result checked.
 *
 * Batch 1: xen_version(XENVER_version), console_io write, an unknown
 * hypercall (60: -ENOSYS in its result slot), xen_version(XENVER_extraversion)
 * into an unmapped page (-EFAULT), update_va_mapping of a scratch page onto
 * another page's frame, xen_version(XENVER_extraversion) into a buffer.
 * Failed entries must not stop the batch.  Results are compared with the
 * same calls made directly; the scratch page must then show the other page's
 * contents.  Batch 2 maps the scratch page back with update_va_mapping.
 */
#include "runtime.h"

const char guest_name[] = "multicall";

static uint8_t scratch_page[PAGE_SIZE] PAGE_ALIGNED;
static uint8_t target_page[PAGE_SIZE] PAGE_ALIGNED;
static uint8_t unmapped_page[PAGE_SIZE] PAGE_ALIGNED;

#define SENTINEL 0x5e47196e1UL

static void entry(multicall_entry_t *e, unsigned long op, unsigned long a0, unsigned long a1,
                  unsigned long a2)
{
    memset(e, 0, sizeof(*e));
    e->op = op;
    e->result = SENTINEL;
    e->args[0] = a0;
    e->args[1] = a1;
    e->args[2] = a2;
}

void guest_main(void)
{
    static const char msg[] = "multicall: console_io write from entry 1\n";
    static const char direct_msg[] = "multicall: console_io write made directly\n";
    static multicall_entry_t calls[6];
    xen_extraversion_t extra_direct = { 0 }, extra_batch = { 0 };
    unsigned long scratch_mfn = virt_to_mfn(scratch_page);
    unsigned long target_mfn = virt_to_mfn(target_page);
    long rc;

    memset(scratch_page, 0x11, PAGE_SIZE);
    memset(target_page, 0x22, PAGE_SIZE);
    if ((rc = unmap_page(unmapped_page)) != 0)
        fail("unmapping a page: %ld", rc);

    long version = HYPERVISOR_xen_version(XENVER_version, NULL);
    long console = console_io_write(direct_msg, sizeof(direct_msg) - 1);
    long extra_rc = HYPERVISOR_xen_version(XENVER_extraversion, extra_direct);
    printk("direct calls: xen_version %lx, console_io %ld, extraversion %ld \"%.*s\"\n",
           version, console, extra_rc, (int)sizeof(extra_direct), extra_direct);

    entry(&calls[0], __HYPERVISOR_xen_version, XENVER_version, 0, 0);
    entry(&calls[1], __HYPERVISOR_console_io, CONSOLEIO_write, sizeof(msg) - 1,
          (unsigned long)msg);
    entry(&calls[2], 60, 0, 0, 0);
    entry(&calls[3], __HYPERVISOR_xen_version, XENVER_extraversion,
          (unsigned long)unmapped_page, 0);
    entry(&calls[4], __HYPERVISOR_update_va_mapping, (unsigned long)scratch_page,
          ((uint64_t)target_mfn << PAGE_SHIFT) | PTE_KERNEL_RW, UVMF_INVLPG);
    entry(&calls[5], __HYPERVISOR_xen_version, XENVER_extraversion,
          (unsigned long)extra_batch, 0);

    rc = HYPERVISOR_multicall(calls, ARRAY_SIZE(calls));
    check(rc == 0, "multicall with 6 entries returns %ld", rc);
    for (unsigned i = 0; i < ARRAY_SIZE(calls); i++)
        printk("domus-test: entry %u op %lu result %ld\n", i, calls[i].op, (long)calls[i].result);

    check((long)calls[0].result == version, "entry 0 xen_version: result %lx == direct %lx",
          calls[0].result, version);
    check((long)calls[1].result == console, "entry 1 console_io: result %ld == direct %ld",
          (long)calls[1].result, console);
    check((long)calls[2].result == -XEN_ENOSYS, "entry 2 unknown op 60: result %ld == -ENOSYS",
          (long)calls[2].result);
    check((long)calls[3].result == -XEN_EFAULT,
          "entry 3 extraversion into an unmapped page: result %ld == -EFAULT",
          (long)calls[3].result);
    check(calls[4].result == 0, "entry 4 update_va_mapping: result %ld == 0",
          (long)calls[4].result);
    check(calls[5].result == 0, "entry 5 extraversion: result %ld == 0", (long)calls[5].result);
    check(memcmp(extra_batch, extra_direct, sizeof(extra_batch)) == 0,
          "entry 5 wrote the same extraversion as the direct call");
    check(scratch_page[0] == 0x22 && scratch_page[PAGE_SIZE - 1] == 0x22,
          "entry 4 took effect: the scratch VA shows the target page (%x)", scratch_page[0]);

    /* Writes through either mapping land in the same frame (volatile: C does not know they alias). */
    *(volatile uint8_t *)&scratch_page[1] = 0x33;
    check(*(volatile uint8_t *)&target_page[1] == 0x33, "scratch and target VAs share one frame");

    entry(&calls[0], __HYPERVISOR_update_va_mapping, (unsigned long)scratch_page,
          ((uint64_t)scratch_mfn << PAGE_SHIFT) | PTE_KERNEL_RW, UVMF_INVLPG);
    rc = HYPERVISOR_multicall(calls, 1);
    check(rc == 0 && calls[0].result == 0, "batch 2 update_va_mapping: %ld, result %ld", rc,
          (long)calls[0].result);
    check(scratch_page[0] == 0x11, "the scratch VA shows its own frame again (%x)",
          scratch_page[0]);

    rc = HYPERVISOR_multicall(calls, 0);
    check(rc == 0, "empty multicall returns %ld", rc);
}
