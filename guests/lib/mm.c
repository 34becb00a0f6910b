/*
 * Frames and mappings.  Pseudo-physical frame numbers (pfn) and machine
 * frame numbers (mfn) are related only through the p2m (start_info.mfn_list)
 * and the read-only M2P, found with XENMEM_machphys_mapping as Linux does
 * (falling back to MACH2PHYS_VIRT_START); nothing assumes they are
 * equal.  Mappings change only through hypercalls (update_va_mapping,
 * mmuext_op), never by writing page tables.
 */
#include "runtime.h"

unsigned long pfn_to_mfn(unsigned long pfn)
{
    return ((const unsigned long *)start_info->mfn_list)[pfn];
}

static const volatile unsigned long *m2p;

unsigned long mfn_to_pfn(unsigned long mfn)
{
    if (!m2p) {
        struct xen_machphys_mapping mapping;
        if (HYPERVISOR_memory_op(XENMEM_machphys_mapping, &mapping) == 0)
            m2p = (const volatile unsigned long *)mapping.v_start;
        else
            m2p = (const volatile unsigned long *)MACH2PHYS_VIRT_START;
    }
    return m2p[mfn];
}

unsigned long virt_to_pfn(const void *va)
{
    return ((unsigned long)va - GUEST_VIRT_BASE) >> PAGE_SHIFT;
}

unsigned long virt_to_mfn(const void *va)
{
    return pfn_to_mfn(virt_to_pfn(va));
}

void *pfn_to_virt(unsigned long pfn)
{
    return (void *)(GUEST_VIRT_BASE + (pfn << PAGE_SHIFT));
}

long map_frame(const void *va, unsigned long mfn, unsigned long flags)
{
    return HYPERVISOR_update_va_mapping((unsigned long)va,
                                        ((uint64_t)mfn << PAGE_SHIFT) | flags,
                                        UVMF_INVLPG);
}

long unmap_page(const void *va)
{
    return HYPERVISOR_update_va_mapping((unsigned long)va, 0, UVMF_INVLPG);
}

long make_readonly(const void *va)
{
    return map_frame(va, virt_to_mfn(va), PTE_KERNEL_RO);
}

long make_writable(const void *va)
{
    return map_frame(va, virt_to_mfn(va), PTE_KERNEL_RW);
}

/* The page whose VA we reuse for shared_info; its own frame is left unmapped. */
static uint8_t shared_info_page[PAGE_SIZE] PAGE_ALIGNED;
static struct shared_info *shared_info;

struct shared_info *map_shared_info(void)
{
    if (!shared_info) {
        /* start_info.shared_info is a machine address. */
        long rc = HYPERVISOR_update_va_mapping((unsigned long)shared_info_page,
                                               start_info->shared_info | PTE_P |
                                                   PTE_RW | PTE_US,
                                               UVMF_INVLPG);
        if (rc)
            fail("mapping shared_info (maddr 0x%lx) failed: %ld",
                 start_info->shared_info, rc);
        shared_info = (struct shared_info *)shared_info_page;
    }
    return shared_info;
}

long mmuext(unsigned int cmd, unsigned long arg1)
{
    struct mmuext_op op = { .cmd = cmd };

    op.arg1.mfn = arg1;
    return HYPERVISOR_mmuext_op(&op, 1, NULL, DOMID_SELF);
}
