/*
 * Runtime: start-up, the check/PASS/FAIL protocol, shutdown, command line.
 *
 * Output protocol (see README.md): human-readable lines, machine-checkable
 * lines starting with "domus-test: ", and exactly one final line
 * "domus-test: PASS <name>" (then SHUTDOWN_poweroff) or
 * "domus-test: FAIL <name>: <what>" (then SHUTDOWN_crash).
 */
#include "runtime.h"

start_info_t *start_info;

static unsigned int checks_failed;
static char first_failure[160];

void runtime_start(start_info_t *si)
{
    start_info = si;
    console_init();
    printk("domus-test: start %s\n", guest_name);
    guest_main();
    finish();
}

bool check(bool ok, const char *fmt, ...)
{
    char what[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    printk("domus-test: %s - %s\n", ok ? "ok" : "not ok", what);
    if (!ok && checks_failed++ == 0)
        memcpy(first_failure, what, sizeof(first_failure));
    return ok;
}

long shutdown(unsigned int reason)
{
    struct sched_shutdown arg = { .reason = reason };

    console_flush();
    return HYPERVISOR_sched_op(SCHEDOP_shutdown, &arg);
}

static void __attribute__((noreturn)) stop(unsigned int reason)
{
    long rc = shutdown(reason);

    /* Not a "domus-test:" line: the PASS/FAIL line stays the last one. */
    printk("SCHEDOP_shutdown(%u) returned %ld\n", reason, rc);
    if (reason != SHUTDOWN_crash)
        shutdown(SHUTDOWN_crash);
    for (;;)
        HYPERVISOR_sched_op(SCHEDOP_yield, NULL);
}

void fail(const char *fmt, ...)
{
    char what[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    printk("domus-test: FAIL %s: %s\n", guest_name, what);
    stop(SHUTDOWN_crash);
}

void finish(void)
{
    if (checks_failed)
        fail("%u check(s) failed, first: %s", checks_failed, first_failure);
    printk("domus-test: PASS %s\n", guest_name);
    stop(SHUTDOWN_poweroff);
}

bool cmdline_get(const char *key, char *buf, size_t size)
{
    const char *p = (const char *)start_info->cmd_line;
    const char *end = p + strnlen(p, MAX_GUEST_CMDLINE);
    size_t keylen = strlen(key);

    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        const char *word = p;
        while (p < end && *p != ' ')
            p++;
        if ((size_t)(p - word) > keylen && strncmp(word, key, keylen) == 0 &&
            word[keylen] == '=') {
            size_t n = (size_t)(p - word) - keylen - 1;
            if (n >= size)
                n = size - 1;
            memcpy(buf, word + keylen + 1, n);
            buf[n] = '\0';
            return true;
        }
    }
    return false;
}
