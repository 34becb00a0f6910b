/*
 * idle: a guest that stays up until the toolstack asks it to stop.
 *
 * It behaves like a minimal Linux as far as the toolstack can tell:
 *   - it watches control/shutdown in XenStore (io/xs_wire.h over the ring at
 *     start_info.store_mfn) and, when the toolstack writes "poweroff",
 *     "reboot", "halt" or "crash" there, acknowledges by writing "" (as
 *     Linux's drivers/xen/manage.c does) and shuts down with that reason;
 *   - it echoes console input back to the console ('\r' becomes "\r\n").
 * Between events it sleeps in SCHEDOP_poll on the store and console event
 * channels (events stay masked, so no upcall handler is needed).
 *
 * Lines: "domus-test: start idle", "domus-test: idle ready", then on a
 * request "domus-test: idle control/shutdown=<value>" and the PASS line for
 * poweroff (SHUTDOWN_poweroff), or SHUTDOWN_reboot / SHUTDOWN_crash.
 * An xl config for it: name = "idle"; kernel = "guests/build/idle"; memory = 32.
 */
#include "runtime.h"
#include <xen/io/xs_wire.h>

const char guest_name[] = "idle";

static volatile struct xenstore_domain_interface *store;
static volatile struct xencons_interface *cons;
static struct shared_info *shared;
static evtchn_port_t store_port, console_port;
static bool shutdown_watch_fired;
static uint32_t next_request_id = 1;

static void notify(evtchn_port_t port)
{
    struct evtchn_send send = { .port = port };

    HYPERVISOR_event_channel_op(EVTCHNOP_send, &send);
}

static void clear_pending(evtchn_port_t port)
{
    __atomic_fetch_and(&shared->evtchn_pending[port / 64], ~(1UL << (port % 64)),
                       __ATOMIC_SEQ_CST);
}

/* Sleeps until the store or the console event channel is signalled. */
static void wait_for_event(void)
{
    evtchn_port_t ports[2] = { store_port, console_port };
    struct sched_poll poll = { .nr_ports = 2, .timeout = 0 };

    set_xen_guest_handle(poll.ports, ports);
    HYPERVISOR_sched_op(SCHEDOP_poll, &poll);
}

static void ring_write(const void *data, size_t len)
{
    const char *bytes = data;

    while (len > 0) {
        XENSTORE_RING_IDX cons_idx = store->req_cons, prod = store->req_prod;

        rmb();
        size_t room = XENSTORE_RING_SIZE - (prod - cons_idx);
        if (room == 0 || room > XENSTORE_RING_SIZE) {
            notify(store_port);
            HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
            continue;
        }
        size_t chunk = len < room ? len : room;
        for (size_t i = 0; i < chunk; i++)
            store->req[MASK_XENSTORE_IDX(prod + i)] = bytes[i];
        wmb();
        store->req_prod = prod + (XENSTORE_RING_IDX)chunk;
        bytes += chunk;
        len -= chunk;
    }
    notify(store_port);
}

/* Copies `len` bytes at offset `skip` of the unread response data. */
static void ring_peek(void *out, size_t skip, size_t len)
{
    char *bytes = out;
    XENSTORE_RING_IDX at = store->rsp_cons + (XENSTORE_RING_IDX)skip;

    for (size_t i = 0; i < len; i++)
        bytes[i] = store->rsp[MASK_XENSTORE_IDX(at + i)];
}

/*
 * Takes one complete message off the response ring; returns false if none is
 * there yet.  Watch events only set `shutdown_watch_fired`.
 */
static bool ring_read(struct xsd_sockmsg *header, char *payload, size_t size)
{
    XENSTORE_RING_IDX available = store->rsp_prod - store->rsp_cons;

    rmb();
    if (available < sizeof(*header))
        return false;
    ring_peek(header, 0, sizeof(*header));
    if (header->len > XENSTORE_PAYLOAD_MAX)
        fail("xenstore response of %u bytes", header->len);
    if (available < sizeof(*header) + header->len)
        return false;
    size_t copy = header->len < size - 1 ? header->len : size - 1;
    ring_peek(payload, sizeof(*header), copy);
    payload[copy] = '\0';
    barrier();
    store->rsp_cons += (XENSTORE_RING_IDX)(sizeof(*header) + header->len);
    notify(store_port);
    if (header->type == XS_WATCH_EVENT) {
        shutdown_watch_fired = true;
        return ring_read(header, payload, size);
    }
    return true;
}

/* One request, waiting for its reply; returns the reply type. */
static uint32_t xs_request(uint32_t type, const char *payload, size_t len, char *reply,
                           size_t size)
{
    struct xsd_sockmsg header = { .type = type, .req_id = next_request_id++, .len = (uint32_t)len };

    ring_write(&header, sizeof(header));
    ring_write(payload, len);
    for (;;) {
        struct xsd_sockmsg response;

        clear_pending(store_port);
        if (ring_read(&response, reply, size)) {
            if (response.req_id == header.req_id)
                return response.type;
            continue;
        }
        wait_for_event();
    }
}

static void echo_console_input(void)
{
    XENCONS_RING_IDX c = cons->in_cons, p = cons->in_prod;

    rmb();
    if (p - c > sizeof(cons->in))
        fail("console input ring indices %u/%u", c, p);
    while (c != p) {
        char ch = cons->in[MASK_XENCONS_IDX(c, cons->in)];

        c++;
        if (ch == '\r')
            console_write("\r\n", 2);
        else
            console_write(&ch, 1);
    }
    barrier();
    cons->in_cons = c;
    notify(console_port);
}

static const struct {
    const char *value;
    unsigned int reason;
} requests[] = {
    { "poweroff", SHUTDOWN_poweroff },
    { "halt", SHUTDOWN_poweroff },
    { "reboot", SHUTDOWN_reboot },
    { "crash", SHUTDOWN_crash },
};

static void check_shutdown_request(void)
{
    static const char path[] = "control/shutdown";
    char value[64];

    shutdown_watch_fired = false;
    if (xs_request(XS_READ, path, sizeof(path), value, sizeof(value)) != XS_READ)
        return;   /* no such node (yet) */
    if (value[0] == '\0')
        return;
    printk("domus-test: idle control/shutdown=%s\n", value);
    for (unsigned int i = 0; i < ARRAY_SIZE(requests); i++) {
        if (strcmp(value, requests[i].value) != 0)
            continue;
        /* Acknowledge as Linux does: the toolstack sees the request was taken. */
        char reply[32];
        xs_request(XS_WRITE, path, sizeof(path), reply, sizeof(reply));
        if (requests[i].reason == SHUTDOWN_poweroff)
            finish();
        shutdown(requests[i].reason);
        fail("SCHEDOP_shutdown(%u) returned", requests[i].reason);
    }
    printk("domus-test: idle ignores control/shutdown=%s\n", value);
}

void guest_main(void)
{
    static const char watch[] = "control/shutdown\0idle";
    char reply[64];

    shared = map_shared_info();
    store = pfn_to_virt(mfn_to_pfn(start_info->store_mfn));
    cons = pfn_to_virt(mfn_to_pfn(start_info->console.domU.mfn));
    store_port = start_info->store_evtchn;
    console_port = start_info->console.domU.evtchn;

    uint32_t type = xs_request(XS_WATCH, watch, sizeof(watch), reply, sizeof(reply));
    if (type != XS_WATCH)
        fail("XS_WATCH control/shutdown failed: %s", reply);
    printk("domus-test: idle ready\n");
    for (;;) {
        struct xsd_sockmsg header;

        clear_pending(store_port);
        clear_pending(console_port);
        echo_console_input();
        while (ring_read(&header, reply, sizeof(reply)))
            ;   /* stray replies; watch events set the flag */
        if (shutdown_watch_fired) {
            check_shutdown_request();
            continue;
        }
        wait_for_event();
    }
}
