/*
 * usersyscall: the `syscall` instruction in guest user mode.
 *
 * Registers CALLBACKTYPE_syscall with HYPERVISOR_callback_op, builds a user
 * address space (as traps does) and irets to user code that executes
 * `syscall`.  Xen enters the callback on the stack_switch stack with the frame
 * RCX, R11, RIP, CS, RFLAGS, RSP, SS where RCX = RIP = the user return
 * address and R11 = the user RFLAGS (as the CPU's syscall left them; Xen
 * replaces IF in the RFLAGS slot by !saved upcall mask), CS 0xe033, SS 0xe02b,
 * RSP the user rsp.  The first callback returns to user mode with the iret
 * hypercall and VGCF_in_syscall (the sysret-like return: rcx/r11 not
 * restored); the second goes back to the kernel.
 *
 * Separate from traps because a ring-3 syscall may not be runnable on every
 * nested-KVM host.
 */
#include "runtime.h"

const char guest_name[] = "usersyscall";

enum { RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, R8, R9, R10, R11, R12, R13, R14, R15, NREGS };
static const char *const reg_names[NREGS] = {
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
};

/* usersyscall-user.S */
extern char user_syscall_entry[], user_syscall1_next[], user_syscall2_next[];
extern uint64_t user_regs_in[NREGS], user_regs_out[NREGS], user_rsp_at_syscall;
extern uint8_t user_cf_after_return;
extern char user_stack_top[];

struct record {
    struct trap_frame frame;
    uint64_t frame_start, frame_end;
};

static struct record records[2];
static unsigned calls;
static struct kernel_context back_to_kernel;

static long on_trap(struct trap_frame *f)
{
    if (f->vector != TRAP_VECTOR_SYSCALL || calls >= 2)
        return -1;
    struct record *r = &records[calls++];
    r->frame = *f;
    r->frame_start = trap_frame_xen_start(f);
    r->frame_end = trap_frame_xen_end(f);
    if (calls == 2)
        context_restore(&back_to_kernel, 1);
    return VGCF_in_syscall;
}

static void check_call(const char *name, const struct record *r, uint64_t return_address,
                       bool carry, uint64_t kernel_stack_top)
{
    const struct trap_frame *f = &r->frame;
    unsigned bad = 0;

    trap_frame_print(f);
    check(f->rip == return_address, "%s: RIP %lx == user return address %lx", name, f->rip,
          return_address);
    check(f->rcx == return_address, "%s: RCX %lx == user return address", name, f->rcx);
    check((f->r11 & RFLAGS_STATUS) == (f->rflags & RFLAGS_STATUS),
          "%s: R11 %lx carries the user RFLAGS (frame RFLAGS %lx)", name, f->r11, f->rflags);
    check(!!(f->rflags & RFLAGS_CF) == carry, "%s: RFLAGS.CF == %d as set by the user code",
          name, carry);
    check((f->cs & 0xffff) == FLAT_USER_CS, "%s: CS %lx == %x", name, f->cs & 0xffff,
          FLAT_USER_CS);
    check(((f->cs >> 32) & 0xff) == 1, "%s: saved upcall mask (CS bits 32-39) is 1", name);
    check(!(f->rflags & RFLAGS_IF), "%s: RFLAGS.IF clear (events were masked)", name);
    check(f->ss == FLAT_USER_SS, "%s: SS %lx == %x", name, f->ss, FLAT_USER_SS);
    check(f->rsp == user_rsp_at_syscall, "%s: RSP %lx == user rsp %lx", name, f->rsp,
          user_rsp_at_syscall);
    check(r->frame_start == kernel_stack_top - 7 * 8 && r->frame_end == kernel_stack_top,
          "%s: 7-word frame %lx..%lx at the stack_switch stack top %lx", name, r->frame_start,
          r->frame_end, kernel_stack_top);

    /* Every register but rcx/r11 (which syscall itself overwrites). */
    const uint64_t got[NREGS] = {
        f->rax, f->rbx, 0, f->rdx, f->rsi, f->rdi, f->rbp, 0,
        f->r8, f->r9, f->r10, 0, f->r12, f->r13, f->r14, f->r15,
    };
    for (unsigned i = 0; i < NREGS; i++) {
        if (i == RCX || i == R11 || i == RSP)
            continue;
        if (got[i] != user_regs_in[i]) {
            printk("  %s: %s is %lx, want %lx\n", name, reg_names[i], got[i], user_regs_in[i]);
            bad++;
        }
    }
    check(bad == 0, "%s: registers other than rcx/r11 reach the callback unchanged", name);
}

void guest_main(void)
{
    struct callback_register cb = {
        .type = CALLBACKTYPE_syscall,
        .flags = CALLBACKF_mask_events,
        .address = (unsigned long)syscall_entry,
    };

    trap_hook = on_trap;
    traps_init();
    long rc = HYPERVISOR_callback_op(CALLBACKOP_register, &cb);
    if (!check(rc == 0, "CALLBACKOP_register(CALLBACKTYPE_syscall) returned %ld", rc))
        return;
    uint64_t kernel_stack_top = usermode_init();

    for (unsigned i = 0; i < NREGS; i++)
        user_regs_in[i] = 0x5c5c000000000000UL | ((uint64_t)i << 32) | (0x01010101U * (i + 1));
    if (context_save(&back_to_kernel) == 0)
        enter_user((uint64_t)user_syscall_entry, (uint64_t)user_stack_top, RFLAGS_RESERVED1);

    if (!check(calls == 2, "both user syscalls reached the callback (%u)", calls))
        return;
    check_call("syscall 1", &records[0], (uint64_t)user_syscall1_next, true, kernel_stack_top);
    check_call("syscall 2", &records[1], (uint64_t)user_syscall2_next, false, kernel_stack_top);

    unsigned bad = 0;
    for (unsigned i = 0; i < NREGS; i++) {
        if (i == RCX || i == R11 || i == RSP)
            continue;
        if (user_regs_out[i] != user_regs_in[i]) {
            printk("  after return: %s is %lx, want %lx\n", reg_names[i], user_regs_out[i],
                   user_regs_in[i]);
            bad++;
        }
    }
    check(bad == 0, "iret with VGCF_in_syscall: registers other than rcx/r11 survive");
    check(user_regs_out[RSP] == user_rsp_at_syscall, "iret with VGCF_in_syscall: user rsp %lx",
          user_regs_out[RSP]);
    check(user_cf_after_return == 1, "iret with VGCF_in_syscall: user RFLAGS.CF restored");
}
