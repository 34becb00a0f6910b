/*
 * ldt: a local descriptor table set with MMUEXT_SET_LDT.
 *
 * The LDT page is made read-only (Xen requires descriptor pages to have no writable
 * mapping), holds one 32-bit data segment with base 0x12345000, and is installed with
 * MMUEXT_SET_LDT. Loading its selector (index 1, TI=1, RPL 3) into %fs must give %fs
 * the descriptor's base: a read through %fs:0 sees the word at that address, which is
 * the `window` page mapped there. HYPERVISOR_update_descriptor then changes the base
 * and a reload of %fs follows it. A write to the read-only LDT page is refused by the
 * hypervisor (#PF), and an LDT page cannot be mapped writable while in use.
 */
#include "runtime.h"

const char guest_name[] = "ldt";

static uint8_t ldt_page[PAGE_SIZE] PAGE_ALIGNED;
static uint8_t window_a[PAGE_SIZE] PAGE_ALIGNED;
static uint8_t window_b[PAGE_SIZE] PAGE_ALIGNED;

/* A present, DPL 3, read/write data segment with a 32-bit base and 4 GiB limit. */
static uint64_t data_descriptor(uint32_t base)
{
    return 0x00cff2000000ffffULL | ((uint64_t)(base & 0xffffff) << 16) | ((uint64_t)(base >> 24) << 56);
}

static uint64_t read_fs_word(uint16_t selector)
{
    uint64_t value;
    __asm__ volatile("mov %1, %%fs\n\tmov %%fs:0, %0" : "=r"(value) : "r"(selector) : "memory");
    return value;
}

void guest_main(void)
{
    uint32_t base_a = (uint32_t)(unsigned long)window_a;
    uint32_t base_b = (uint32_t)(unsigned long)window_b;
    *(volatile uint64_t *)window_a = 0xaaaa1111;
    *(volatile uint64_t *)window_b = 0xbbbb2222;

    uint64_t *descriptors = (uint64_t *)ldt_page;
    memset(ldt_page, 0, PAGE_SIZE);
    descriptors[1] = data_descriptor(base_a);
    check(make_readonly(ldt_page) == 0, "the LDT page is mapped read-only");

    struct mmuext_op op = { .cmd = MMUEXT_SET_LDT };
    op.arg1.linear_addr = (unsigned long)ldt_page;
    op.arg2.nr_ents = 2;
    long rc = HYPERVISOR_mmuext_op(&op, 1, NULL, DOMID_SELF);
    check(rc == 0, "MMUEXT_SET_LDT with 2 entries returns 0 (got %ld)", rc);

    uint16_t selector = (1 << 3) | 4 | 3;
    uint64_t seen = read_fs_word(selector);
    check(seen == 0xaaaa1111, "%%fs from the LDT selector has the descriptor's base (read 0x%lx)", seen);

    unsigned long maddr = (virt_to_mfn(ldt_page) << PAGE_SHIFT) + 8;
    rc = hypercall2(__HYPERVISOR_update_descriptor, maddr, data_descriptor(base_b));
    check(rc == 0, "update_descriptor on the LDT page returns 0 (got %ld)", rc);
    seen = read_fs_word(selector);
    check(seen == 0xbbbb2222, "after update_descriptor, a reload of %%fs sees the new base (read 0x%lx)", seen);

    rc = make_writable(ldt_page);
    check(rc != 0, "the LDT page cannot be mapped writable while in use (got %ld)", rc);

    op.arg1.linear_addr = 0;
    op.arg2.nr_ents = 0;
    rc = HYPERVISOR_mmuext_op(&op, 1, NULL, DOMID_SELF);
    check(rc == 0, "MMUEXT_SET_LDT with no entries returns 0 (got %ld)", rc);
    rc = make_writable(ldt_page);
    check(rc == 0, "after the LDT is dropped, its page can be writable again (got %ld)", rc);
    __asm__ volatile("mov %0, %%fs" : : "r"((uint16_t)0));
}
