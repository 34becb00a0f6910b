/*
 * A user address space for the user-mode tests, built the Xen way
 * (pv-boot-notes.md §3-4): own page-table frames, filled while writable,
 * then remapped read-only, the L4 pinned (Xen validates the whole tree and
 * fills its own L4 slots), installed with MMUEXT_NEW_USER_BASEPTR.
 *
 * It maps only .user_text (read-only) and .user_data (read-write), at the same
 * VAs as in the kernel, so user code can use RIP-relative addressing.  All of
 * those pages must sit in one 2 MiB region (one L1 table); the guests are
 * far smaller than that.
 */
#include "runtime.h"

static uint64_t user_l4[512] PAGE_ALIGNED;
static uint64_t user_l3[512] PAGE_ALIGNED;
static uint64_t user_l2[512] PAGE_ALIGNED;
static uint64_t user_l1[512] PAGE_ALIGNED;

/* The stack Xen switches to for traps from user mode (HYPERVISOR_stack_switch). */
static uint8_t kernel_stack[16384] __attribute__((aligned(16)));

static unsigned index_at(unsigned long va, unsigned level)
{
    return (va >> (PAGE_SHIFT + 9 * (level - 1))) & 511;
}

static void map_user_range(const char *start, const char *end, unsigned long flags)
{
    for (unsigned long va = (unsigned long)start; va < (unsigned long)end; va += PAGE_SIZE) {
        if (index_at(va, 4) != index_at((unsigned long)__user_text_start, 4) ||
            index_at(va, 3) != index_at((unsigned long)__user_text_start, 3) ||
            index_at(va, 2) != index_at((unsigned long)__user_text_start, 2))
            fail("user page %lx is not in the 2 MiB region of %p", va,
                 (void *)__user_text_start);
        user_l1[index_at(va, 1)] = ((uint64_t)virt_to_mfn((void *)va) << PAGE_SHIFT) | flags;
    }
}

uint64_t usermode_init(void)
{
    unsigned long base = (unsigned long)__user_text_start;
    long rc;

    if ((unsigned long)__user_text_start == (unsigned long)__user_text_end)
        fail("no .user_text to map");
    map_user_range(__user_text_start, __user_text_end, PTE_USER_RX);
    map_user_range(__user_data_start, __user_data_end, PTE_USER_RW);
    user_l2[index_at(base, 2)] = ((uint64_t)virt_to_mfn(user_l1) << PAGE_SHIFT) | PTE_TABLE;
    user_l3[index_at(base, 3)] = ((uint64_t)virt_to_mfn(user_l2) << PAGE_SHIFT) | PTE_TABLE;
    user_l4[index_at(base, 4)] = ((uint64_t)virt_to_mfn(user_l3) << PAGE_SHIFT) | PTE_TABLE;

    /* Page-table frames may have no writable mapping when Xen types them. */
    const void *tables[] = { user_l1, user_l2, user_l3, user_l4 };
    for (unsigned i = 0; i < ARRAY_SIZE(tables); i++) {
        rc = make_readonly(tables[i]);
        if (rc)
            fail("remapping user page table %u read-only: %ld", i, rc);
    }
    rc = mmuext(MMUEXT_PIN_L4_TABLE, virt_to_mfn(user_l4));
    if (rc)
        fail("MMUEXT_PIN_L4_TABLE(user L4, mfn %lx): %ld", virt_to_mfn(user_l4), rc);
    rc = mmuext(MMUEXT_NEW_USER_BASEPTR, virt_to_mfn(user_l4));
    if (rc)
        fail("MMUEXT_NEW_USER_BASEPTR: %ld", rc);

    uint64_t top = (uint64_t)(kernel_stack + sizeof(kernel_stack));
    rc = HYPERVISOR_stack_switch(FLAT_KERNEL_SS, top);
    if (rc)
        fail("stack_switch: %ld", rc);
    printk("user L4 mfn %lx pinned and installed; kernel stack top %lx\n",
           virt_to_mfn(user_l4), top);
    return top;
}
