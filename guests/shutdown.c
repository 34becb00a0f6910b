/*
 * shutdown: SCHEDOP_shutdown with the reason named on the command line.
 *
 * cmd_line holds `reason=poweroff|reboot|suspend|crash|watchdog`.  The guest
 * prints "domus-test: shutdown reason=<name> code=<n>" and shuts down with
 * that reason; that marker is its last line (there is no PASS line: the
 * harness checks that the domain ended with the named reason).
 *
 * suspend follows Linux's HYPERVISOR_suspend: the start_info MFN goes in the
 * third argument (rdx) for the toolstack.  If the call returns (resumed, or a
 * cancelled suspend), the guest prints "domus-test: PASS shutdown" with the
 * return value and powers off.  A missing or unknown reason, or any other
 * shutdown returning, is a FAIL (then SHUTDOWN_crash).
 */
#include "runtime.h"

const char guest_name[] = "shutdown";

static const struct {
    const char *name;
    unsigned int code;
} reasons[] = {
    { "poweroff", SHUTDOWN_poweroff },
    { "reboot", SHUTDOWN_reboot },
    { "suspend", SHUTDOWN_suspend },
    { "crash", SHUTDOWN_crash },
    { "watchdog", SHUTDOWN_watchdog },
};

void guest_main(void)
{
    char value[32];

    if (!cmdline_get("reason", value, sizeof(value)))
        fail("no reason= in the command line \"%.*s\"", MAX_GUEST_CMDLINE,
             (const char *)start_info->cmd_line);

    for (unsigned i = 0; i < ARRAY_SIZE(reasons); i++) {
        if (strcmp(value, reasons[i].name) != 0)
            continue;
        unsigned int code = reasons[i].code;
        printk("domus-test: shutdown reason=%s code=%u\n", value, code);
        console_flush();

        struct sched_shutdown arg = { .reason = code };
        long rc;
        if (code == SHUTDOWN_suspend)
            rc = hypercall3(__HYPERVISOR_sched_op, SCHEDOP_shutdown, &arg,
                            virt_to_mfn(start_info));
        else
            rc = HYPERVISOR_sched_op(SCHEDOP_shutdown, &arg);

        if (code == SHUTDOWN_suspend) {
            /* Xen: 0 after resuming in a new domain, 1 if the suspend was cancelled. */
            console_init();     /* the console event channel may have changed */
            printk("domus-test: suspend returned %ld\n", rc);
            if (rc < 0)
                fail("SCHEDOP_shutdown(suspend) returned %ld", rc);
            finish();
        }
        fail("SCHEDOP_shutdown(%s) returned %ld", value, rc);
    }
    fail("unknown reason=%s (want poweroff, reboot, suspend, crash or watchdog)", value);
}
