/// Layout facts from Xen's public headers, for the XenABI tests. When the headers
/// are not installed (Debian: libxen-dev), the table is empty and the tests say so.
#include "cxenheaders.h"
#if __has_include(<xen/xen.h>)
#define __XEN_TOOLS__ 1
#include <stdint.h>
#include <xen/xen.h>
#include <xen/sched.h>
#include <xen/vcpu.h>
#include <xen/memory.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
#include <xen/callback.h>
#include <xen/physdev.h>
#include <xen/version.h>
#include <xen/io/console.h>
#include <xen/io/xs_wire.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
#define OFF(s, f) { #s "." #f, offsetof(struct s, f) }
#define OFFT(t, f) { #t "." #f, offsetof(t, f) }
#define SIZE(s) { "sizeof " #s, sizeof(struct s) }
#define SIZET(t) { "sizeof " #t, sizeof(t) }
static const cxen_layout_fact facts[] = {
    SIZE(start_info), OFF(start_info, magic), OFF(start_info, nr_pages), OFF(start_info, shared_info),
    OFF(start_info, flags), OFF(start_info, store_mfn), OFF(start_info, store_evtchn),
    OFF(start_info, console.domU.mfn), OFF(start_info, console.domU.evtchn), OFF(start_info, pt_base),
    OFF(start_info, nr_pt_frames), OFF(start_info, mfn_list), OFF(start_info, mod_start), OFF(start_info, mod_len),
    OFF(start_info, cmd_line), OFF(start_info, first_p2m_pfn), OFF(start_info, nr_p2m_frames),
    SIZE(shared_info), OFF(shared_info, vcpu_info), OFF(shared_info, evtchn_pending), OFF(shared_info, evtchn_mask),
    OFF(shared_info, wc_version), OFF(shared_info, wc_sec), OFF(shared_info, wc_nsec), OFF(shared_info, wc_sec_hi),
    OFF(shared_info, arch), OFF(shared_info, arch.max_pfn), OFF(shared_info, arch.pfn_to_mfn_frame_list_list),
    OFF(shared_info, arch.nmi_reason), OFF(shared_info, arch.p2m_cr3), OFF(shared_info, arch.p2m_vaddr),
    OFF(shared_info, arch.p2m_generation),
    SIZE(vcpu_info), OFF(vcpu_info, evtchn_upcall_pending), OFF(vcpu_info, evtchn_upcall_mask),
    OFF(vcpu_info, evtchn_pending_sel), OFF(vcpu_info, arch), OFF(vcpu_info, arch.cr2), OFF(vcpu_info, time),
    SIZE(vcpu_time_info), OFF(vcpu_time_info, version), OFF(vcpu_time_info, tsc_timestamp),
    OFF(vcpu_time_info, system_time), OFF(vcpu_time_info, tsc_to_system_mul), OFF(vcpu_time_info, tsc_shift),
    OFF(vcpu_time_info, flags),
    SIZE(trap_info), OFF(trap_info, vector), OFF(trap_info, flags), OFF(trap_info, cs), OFF(trap_info, address),
    SIZE(iret_context), OFF(iret_context, rax), OFF(iret_context, r11), OFF(iret_context, rcx), OFF(iret_context, flags),
    OFF(iret_context, rip), OFF(iret_context, cs), OFF(iret_context, rflags), OFF(iret_context, rsp), OFF(iret_context, ss),
    SIZE(mmu_update), OFF(mmu_update, ptr), OFF(mmu_update, val),
    SIZE(mmuext_op), OFF(mmuext_op, cmd), OFF(mmuext_op, arg1), OFF(mmuext_op, arg2),
    SIZE(multicall_entry), OFF(multicall_entry, op), OFF(multicall_entry, result), OFF(multicall_entry, args),
    SIZE(callback_register), OFF(callback_register, type), OFF(callback_register, flags), OFF(callback_register, address),
    SIZE(callback_unregister),
    SIZE(sched_shutdown), SIZE(sched_poll), OFF(sched_poll, ports), OFF(sched_poll, nr_ports), OFF(sched_poll, timeout),
    SIZE(vcpu_register_vcpu_info), OFF(vcpu_register_vcpu_info, mfn), OFF(vcpu_register_vcpu_info, offset),
    SIZE(vcpu_set_singleshot_timer), OFF(vcpu_set_singleshot_timer, timeout_abs_ns), OFF(vcpu_set_singleshot_timer, flags),
    SIZE(vcpu_runstate_info), OFF(vcpu_runstate_info, state), OFF(vcpu_runstate_info, state_entry_time), OFF(vcpu_runstate_info, time),
    SIZE(vcpu_register_runstate_memory_area),
    SIZE(xen_machphys_mapping), OFF(xen_machphys_mapping, v_start), OFF(xen_machphys_mapping, v_end), OFF(xen_machphys_mapping, max_mfn),
    SIZE(xen_memory_map), OFF(xen_memory_map, nr_entries), OFF(xen_memory_map, buffer),
    SIZE(xen_memory_reservation), OFF(xen_memory_reservation, extent_start), OFF(xen_memory_reservation, nr_extents),
    OFF(xen_memory_reservation, extent_order), OFF(xen_memory_reservation, mem_flags), OFF(xen_memory_reservation, domid),
    SIZE(evtchn_alloc_unbound), OFF(evtchn_alloc_unbound, dom), OFF(evtchn_alloc_unbound, remote_dom), OFF(evtchn_alloc_unbound, port),
    SIZE(evtchn_bind_interdomain), OFF(evtchn_bind_interdomain, remote_dom), OFF(evtchn_bind_interdomain, remote_port), OFF(evtchn_bind_interdomain, local_port),
    SIZE(evtchn_bind_virq), OFF(evtchn_bind_virq, virq), OFF(evtchn_bind_virq, vcpu), OFF(evtchn_bind_virq, port),
    SIZE(evtchn_bind_ipi), OFF(evtchn_bind_ipi, vcpu), OFF(evtchn_bind_ipi, port),
    SIZE(evtchn_close), SIZE(evtchn_send), SIZE(evtchn_unmask),
    SIZE(evtchn_status), OFF(evtchn_status, dom), OFF(evtchn_status, port), OFF(evtchn_status, status), OFF(evtchn_status, vcpu),
    OFF(evtchn_status, u), OFF(evtchn_status, u.unbound.dom), OFF(evtchn_status, u.interdomain.dom), OFF(evtchn_status, u.interdomain.port),
    OFF(evtchn_status, u.virq),
    SIZE(evtchn_bind_vcpu), OFF(evtchn_bind_vcpu, port), OFF(evtchn_bind_vcpu, vcpu),
    SIZE(evtchn_op),
    SIZE(grant_entry_v1), OFF(grant_entry_v1, flags), OFF(grant_entry_v1, domid), OFF(grant_entry_v1, frame),
    SIZE(gnttab_setup_table), OFF(gnttab_setup_table, dom), OFF(gnttab_setup_table, nr_frames), OFF(gnttab_setup_table, status), OFF(gnttab_setup_table, frame_list),
    SIZE(gnttab_query_size), OFF(gnttab_query_size, dom), OFF(gnttab_query_size, nr_frames), OFF(gnttab_query_size, max_nr_frames), OFF(gnttab_query_size, status),
    SIZE(gnttab_set_version), SIZE(gnttab_get_version),
    SIZE(gnttab_map_grant_ref), OFF(gnttab_map_grant_ref, host_addr), OFF(gnttab_map_grant_ref, flags), OFF(gnttab_map_grant_ref, ref),
    OFF(gnttab_map_grant_ref, dom), OFF(gnttab_map_grant_ref, status), OFF(gnttab_map_grant_ref, handle), OFF(gnttab_map_grant_ref, dev_bus_addr),
    SIZE(gnttab_unmap_grant_ref), OFF(gnttab_unmap_grant_ref, host_addr), OFF(gnttab_unmap_grant_ref, dev_bus_addr), OFF(gnttab_unmap_grant_ref, handle), OFF(gnttab_unmap_grant_ref, status),
    SIZE(gnttab_copy), OFF(gnttab_copy, source), OFF(gnttab_copy, dest), OFF(gnttab_copy, len), OFF(gnttab_copy, flags), OFF(gnttab_copy, status),
    OFF(gnttab_copy, source.u), OFF(gnttab_copy, source.domid), OFF(gnttab_copy, source.offset),
    SIZE(xencons_interface), OFF(xencons_interface, in), OFF(xencons_interface, out), OFF(xencons_interface, in_cons),
    OFF(xencons_interface, in_prod), OFF(xencons_interface, out_cons), OFF(xencons_interface, out_prod),
    SIZE(xenstore_domain_interface), OFF(xenstore_domain_interface, req), OFF(xenstore_domain_interface, rsp),
    OFF(xenstore_domain_interface, req_cons), OFF(xenstore_domain_interface, req_prod), OFF(xenstore_domain_interface, rsp_cons),
    OFF(xenstore_domain_interface, rsp_prod), OFF(xenstore_domain_interface, server_features), OFF(xenstore_domain_interface, connection),
    OFF(xenstore_domain_interface, error),
    SIZE(xsd_sockmsg),
    SIZE(physdev_set_iopl),
    SIZE(xen_feature_info), OFF(xen_feature_info, submap_idx), OFF(xen_feature_info, submap),
    SIZE(xen_platform_parameters),
    SIZE(blkif_request), OFF(blkif_request, operation), OFF(blkif_request, nr_segments), OFF(blkif_request, handle),
    OFF(blkif_request, id), OFF(blkif_request, sector_number), OFF(blkif_request, seg),
    SIZE(blkif_request_segment), SIZE(blkif_response), OFF(blkif_response, id), OFF(blkif_response, operation), OFF(blkif_response, status),
    SIZE(netif_tx_request), OFF(netif_tx_request, gref), OFF(netif_tx_request, offset), OFF(netif_tx_request, flags), OFF(netif_tx_request, id), OFF(netif_tx_request, size),
    SIZE(netif_tx_response), SIZE(netif_rx_request), SIZE(netif_rx_response), OFF(netif_rx_response, id), OFF(netif_rx_response, offset), OFF(netif_rx_response, flags), OFF(netif_rx_response, status),
    SIZE(netif_extra_info),
};
const cxen_layout_fact *cxen_layout_facts(unsigned long *count) {
    *count = sizeof facts / sizeof facts[0];
    return facts;
}
#else
const cxen_layout_fact *cxen_layout_facts(unsigned long *count) { *count = 0; return 0; }
#endif
