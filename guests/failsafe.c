/*
 * failsafe: the failsafe callback (CALLBACKTYPE_failsafe).
 *
 * Registers a failsafe callback, then makes the iret hypercall return to kernel mode
 * with a code selector whose descriptor is not present (index 0x200, an empty entry of
 * the guest's part of the GDT). The CPU refuses it on the way back to the guest;
 * Xen then enters the failsafe callback with DS, ES, FS, GS, RIP, CS, RFLAGS, RSP,
 * SS of the refused frame. Checks the frame and that events were masked (the
 * callback was registered with CALLBACKF_mask_events), then powers off.
 */
#include "runtime.h"

const char guest_name[] = "failsafe";

uint64_t failsafe_frame[11];
struct kernel_context failsafe_context;
void failsafe_entry(void);
void bad_iret(uint64_t rip, uint64_t cs) __attribute__((noreturn));

static void never_reached(void)
{
    fail("the iret with a bad CS returned to its target");
}

void guest_main(void)
{
    struct callback_register cb = {
        .type = CALLBACKTYPE_failsafe,
        .flags = CALLBACKF_mask_events,
        .address = (unsigned long)failsafe_entry,
    };
    long rc = HYPERVISOR_callback_op(CALLBACKOP_register, &cb);
    check(rc == 0, "CALLBACKOP_register(CALLBACKTYPE_failsafe) returns 0 (got %ld)", rc);

    const uint64_t bad_cs = 0x1000;   /* RPL 0: stays in kernel mode; Xen makes it 0x1003 */
    if (context_save(&failsafe_context) == 0)
        bad_iret((uint64_t)(unsigned long)never_reached, bad_cs);

    printk("failsafe frame: rcx %lx r11 %lx ds %lx es %lx fs %lx gs %lx rip %lx cs %lx rflags %lx rsp %lx ss %lx\n",
           failsafe_frame[0], failsafe_frame[1], failsafe_frame[2], failsafe_frame[3], failsafe_frame[4],
           failsafe_frame[5], failsafe_frame[6], failsafe_frame[7], failsafe_frame[8], failsafe_frame[9],
           failsafe_frame[10]);
    check(failsafe_frame[6] == (uint64_t)(unsigned long)never_reached, "the frame's RIP is the refused target");
    check((failsafe_frame[7] & 0xfffc) == (bad_cs & 0xfffc), "the frame's CS is the refused selector (0x%lx)",
          failsafe_frame[7] & 0xffff);
    check((failsafe_frame[10] & 0xffff) == 0xe02b, "the frame's SS is the one given (0x%lx)", failsafe_frame[10] & 0xffff);
    struct shared_info *shared = map_shared_info();
    check(shared->vcpu_info[0].evtchn_upcall_mask == 1, "events were masked on entry (CALLBACKF_mask_events)");
}
