/*
 * hello: console output both ways, start_info, and the p2m/M2P pair.
 *
 * Prints "Hello from a Xen PV guest" through the console ring and through
 * CONSOLEIO_write, prints the start_info fields, checks the magic, and checks
 * that the console and xenstore MFNs, start_info and our own image pages are
 * consistent in the M2P (machine_to_phys_mapping) and the p2m (mfn_list).
 */
#include "runtime.h"

const char guest_name[] = "hello";

static void check_frame(const char *what, unsigned long mfn)
{
    unsigned long pfn = mfn_to_pfn(mfn);

    printk("domus-test: %s mfn=0x%lx m2p=0x%lx\n", what, mfn, pfn);
    if (!check(pfn < start_info->nr_pages, "%s: M2P[0x%lx] = 0x%lx is below nr_pages", what,
               mfn, pfn))
        return;
    check(pfn_to_mfn(pfn) == mfn, "%s: p2m[M2P[mfn]] == mfn (p2m[0x%lx] = 0x%lx)", what, pfn,
          pfn_to_mfn(pfn));
}

static void check_page(const char *what, const void *va)
{
    unsigned long pfn = virt_to_pfn(va);
    unsigned long mfn = pfn_to_mfn(pfn);

    check(mfn_to_pfn(mfn) == pfn, "%s (va %p, pfn 0x%lx): M2P[p2m[pfn]] == pfn (mfn 0x%lx)",
          what, va, pfn, mfn);
}

void guest_main(void)
{
    static const char ring_msg[] = "Hello from a Xen PV guest\n";
    static const char io_msg[] = "Hello from a Xen PV guest (console_io)\n";
    start_info_t *si = start_info;

    console_write(ring_msg, sizeof(ring_msg) - 1);
    long rc = console_io_write(io_msg, sizeof(io_msg) - 1);
    printk("domus-test: console_io_write=%ld\n", rc);
    /* A release build of Xen refuses CONSOLEIO_write from a domU with -EPERM. */
    check(rc == 0 || rc == -XEN_EPERM, "CONSOLEIO_write returns 0 (or -EPERM when refused)");

    printk("domus-test: start_info.magic=%.*s\n", (int)sizeof(si->magic), si->magic);
    printk("domus-test: start_info.nr_pages=%lu\n", si->nr_pages);
    printk("domus-test: start_info.shared_info=0x%lx\n", si->shared_info);
    printk("domus-test: start_info.flags=0x%x\n", si->flags);
    printk("domus-test: start_info.store_mfn=0x%lx store_evtchn=%u\n", si->store_mfn,
           si->store_evtchn);
    printk("domus-test: start_info.console.mfn=0x%lx console.evtchn=%u\n",
           si->console.domU.mfn, si->console.domU.evtchn);
    printk("domus-test: start_info.pt_base=0x%lx nr_pt_frames=%lu\n", si->pt_base,
           si->nr_pt_frames);
    printk("domus-test: start_info.mfn_list=0x%lx\n", si->mfn_list);
    printk("domus-test: start_info.mod_start=0x%lx mod_len=%lu\n", si->mod_start, si->mod_len);
    printk("domus-test: start_info.first_p2m_pfn=0x%lx nr_p2m_frames=%lu\n",
           si->first_p2m_pfn, si->nr_p2m_frames);
    printk("domus-test: start_info.cmd_line=\"%.*s\"\n", MAX_GUEST_CMDLINE,
           (const char *)si->cmd_line);
    printk("domus-test: start_info at %p, image %p..%p\n", (void *)si, (void *)_image_start,
           (void *)_image_end);

    check(strncmp(si->magic, "xen-3.0-x86_64", sizeof(si->magic)) == 0,
          "start_info.magic is \"xen-3.0-x86_64\"");
    check(si->nr_pages > 0, "start_info.nr_pages is nonzero");
    check(si->console.domU.evtchn != 0, "console event channel is nonzero");

    long version = HYPERVISOR_xen_version(XENVER_version, NULL);
    xen_extraversion_t extra = { 0 };
    long rc_extra = HYPERVISOR_xen_version(XENVER_extraversion, extra);
    printk("domus-test: xen_version=%ld.%ld%.*s (rc %ld)\n", version >> 16, version & 0xffff,
           (int)sizeof(extra), extra, rc_extra);

    check_frame("console", si->console.domU.mfn);
    check_frame("store", si->store_mfn);
    check_page("start_info", si);
    check_page("console page", pfn_to_virt(mfn_to_pfn(si->console.domU.mfn)));
    check_page("image first page", _image_start);
    check_page("hypercall page", hypercall_page);
}
