/*
 * The PV console: the xencons_interface ring on start_info.console.domU.mfn
 * (io/console.h), notified through start_info.console.domU.evtchn.
 * Same protocol as Linux's hvc_xen.c: copy into out[], write barrier,
 * advance out_prod, EVTCHNOP_send; when the ring is full, SCHEDOP_yield.
 */
#include "runtime.h"

static volatile struct xencons_interface *ring;
static evtchn_port_t ring_port;

void console_init(void)
{
    unsigned long pfn = mfn_to_pfn(start_info->console.domU.mfn);

    ring = pfn_to_virt(pfn);
    ring_port = start_info->console.domU.evtchn;
}

static void notify(void)
{
    struct evtchn_send send = { .port = ring_port };

    HYPERVISOR_event_channel_op(EVTCHNOP_send, &send);
}

void console_write(const char *s, size_t n)
{
    while (n > 0) {
        XENCONS_RING_IDX cons = ring->out_cons;
        XENCONS_RING_IDX prod = ring->out_prod;
        size_t room;

        rmb();
        room = sizeof(ring->out) - (prod - cons);
        if (room == 0 || room > sizeof(ring->out)) {
            /* Full (or a confused backend): let the backend run. */
            notify();
            HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
            continue;
        }
        size_t chunk = n < room ? n : room;
        for (size_t i = 0; i < chunk; i++)
            ring->out[MASK_XENCONS_IDX(prod + i, ring->out)] = s[i];
        wmb();
        ring->out_prod = prod + (XENCONS_RING_IDX)chunk;
        notify();
        s += chunk;
        n -= chunk;
    }
}

void console_flush(void)
{
    for (unsigned int i = 0; i < 100000 && ring->out_cons != ring->out_prod; i++)
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
}

long console_io_write(const char *s, size_t n)
{
    return HYPERVISOR_console_io(CONSOLEIO_write, (unsigned int)n, s);
}
