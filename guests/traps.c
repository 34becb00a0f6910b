/*
 * traps: exception delivery through the trap table, the bounce frame, and
 * the iret hypercall, in kernel mode and from user mode.
 *
 * Kernel mode: #UD (ud2), #BP (int3), #GP(0) (non-canonical load), #PF
 * (unmapped page, fixed by mapping it back; read-only page; address without
 * page tables) and #DE (divide by zero).  For each, the handler records the
 * frame and fixes up; the checks compare it with what Xen documents: RCX/R11
 * and every other register as set just before the trap, the error code, RIP
 * (the faulting instruction, or the next one for int3), CS 0xe030 with the
 * saved upcall mask in bits 32-39, RFLAGS.IF = !mask, SS 0xe02b, RSP the
 * pre-trap rsp, the frame's top at that rsp rounded down to 16, cr2 in
 * vcpu_info.arch.cr2; and that every register survives the iret hypercall.
 *
 * User mode: a user L4, stack_switch, iret to RPL-3 code which does int3
 * (handler returns to user mode) and ud2 (handler goes back to the kernel).
 */
#include "runtime.h"

const char guest_name[] = "traps";

enum { RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, R8, R9, R10, R11, R12, R13, R14, R15, NREGS };
static const char *const reg_names[NREGS] = {
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
};

struct probe {
    uint64_t in[NREGS];
    uint64_t out[NREGS];
    uint64_t rsp;
    uint64_t target;
};
_Static_assert(__builtin_offsetof(struct probe, rsp) == 32 * 8, "probe layout (traps-probe.S)");

/* traps-probe.S */
void probe_run(struct probe *p);
extern char probe_resume[], trig_ud2[], trig_int3[], trig_int3_next[], trig_gp[],
    trig_pf_read[], trig_pf_write[], trig_pf_far[], trig_de[];
extern char user_trap_entry[], user_int3[], user_int3_next[], user_ud2[];
extern uint64_t user_regs_in[NREGS], user_regs_out[NREGS], user_rsp_at_trap;
extern char user_stack_top[];

/* Pages the #PF cases use (referenced from traps-probe.S). */
uint8_t pf_page[PAGE_SIZE] PAGE_ALIGNED;
uint8_t ro_page[PAGE_SIZE] PAGE_ALIGNED;
const uint64_t probe_zero = 0;
#define FAR_UNMAPPED_VA 0x00007f0000000000UL

enum fixup {
    FIX_SKIP,           /* continue at probe_resume */
    FIX_NONE,           /* return to the frame's RIP as is */
    FIX_MAP_PF_PAGE,    /* map pf_page back, re-run the instruction */
    FIX_TO_KERNEL,      /* leave user mode: back to the saved kernel context */
};

struct expectation {
    const char *name;
    uint64_t vector;
    const char *trigger;    /* expected RIP */
    uint64_t error_code;
    uint64_t cr2;           /* #PF only */
    enum fixup fixup;
};

struct record {
    struct trap_frame frame;
    uint64_t frame_start, frame_end;
    uint64_t cr2;
    uint8_t upcall_mask;    /* vcpu_info's mask while the handler ran */
};

static struct shared_info *shared;
static const struct expectation *plan;
static unsigned plan_len, plan_next;
static struct record records[2];
static unsigned long pf_page_mfn;
static struct kernel_context user_exit;

static long on_trap(struct trap_frame *f)
{
    if (plan_next >= plan_len || f->vector != plan[plan_next].vector)
        return -1;
    const struct expectation *e = &plan[plan_next];
    struct record *r = &records[plan_next++];

    r->frame = *f;
    r->frame_start = trap_frame_xen_start(f);
    r->frame_end = trap_frame_xen_end(f);
    r->cr2 = shared->vcpu_info[0].arch.cr2;
    r->upcall_mask = shared->vcpu_info[0].evtchn_upcall_mask;

    switch (e->fixup) {
    case FIX_SKIP:
        f->rip = (uint64_t)probe_resume;
        break;
    case FIX_NONE:
        break;
    case FIX_MAP_PF_PAGE:
        if (map_frame(pf_page, pf_page_mfn, PTE_KERNEL_RW) != 0)
            fail("%s: mapping pf_page back failed", e->name);
        break;
    case FIX_TO_KERNEL:
        context_restore(&user_exit, 1);
    }
    return 0;
}

static void check_registers(const char *name, const char *when, const uint64_t *want,
                            const uint64_t *got, bool with_rsp)
{
    unsigned bad = 0;

    for (unsigned i = 0; i < NREGS; i++) {
        if (i == RSP && !with_rsp)
            continue;
        if (want[i] != got[i]) {
            printk("  %s: %s is %lx, want %lx\n", name, reg_names[i], got[i], want[i]);
            bad++;
        }
    }
    check(bad == 0, "%s: all registers %s (%u differ)", name, when, bad);
}

static void frame_registers(const struct trap_frame *f, uint64_t *regs, uint64_t rsp)
{
    regs[RAX] = f->rax; regs[RBX] = f->rbx; regs[RCX] = f->rcx; regs[RDX] = f->rdx;
    regs[RSI] = f->rsi; regs[RDI] = f->rdi; regs[RBP] = f->rbp; regs[RSP] = rsp;
    regs[R8] = f->r8; regs[R9] = f->r9; regs[R10] = f->r10; regs[R11] = f->r11;
    regs[R12] = f->r12; regs[R13] = f->r13; regs[R14] = f->r14; regs[R15] = f->r15;
}

/* The checks common to kernel- and user-mode frames. */
static void check_frame(const struct expectation *e, const struct record *r, bool user,
                        uint64_t rsp, uint64_t frame_top, uint8_t mask, const uint64_t *regs)
{
    const struct trap_frame *f = &r->frame;
    uint64_t want_cs = user ? FLAT_USER_CS : (FLAT_KERNEL_CS & ~3UL);
    uint64_t want_ss = user ? FLAT_USER_SS : FLAT_KERNEL_SS;
    uint64_t regs_at_trap[NREGS];

    trap_frame_print(f);
    check(f->rip == (uint64_t)e->trigger, "%s: RIP %lx == %p", e->name, f->rip, e->trigger);
    if (vector_has_error_code(e->vector))
        check(f->error_code == e->error_code, "%s: error code %lx == %lx", e->name,
              f->error_code, e->error_code);
    check((f->cs & 0xffff) == want_cs, "%s: CS %lx == %lx", e->name, f->cs & 0xffff, want_cs);
    check(((f->cs >> 32) & 0xff) == mask, "%s: CS bits 32-39 (saved upcall mask) %lx == %x",
          e->name, (f->cs >> 32) & 0xff, mask);
    check(!!(f->rflags & RFLAGS_IF) == !mask, "%s: RFLAGS %lx has IF == !saved mask", e->name,
          f->rflags);
    check(f->rflags & RFLAGS_RESERVED1, "%s: RFLAGS bit 1 set", e->name);
    check(f->ss == want_ss, "%s: SS %lx == %lx", e->name, f->ss, want_ss);
    check(f->rsp == rsp, "%s: RSP %lx == pre-trap rsp %lx", e->name, f->rsp, rsp);
    check(r->frame_end == frame_top, "%s: frame %lx..%lx ends at %lx", e->name, r->frame_start,
          r->frame_end, frame_top);
    check(f->rcx == regs[RCX] && f->r11 == regs[R11], "%s: frame RCX %lx R11 %lx == %lx %lx",
          e->name, f->rcx, f->r11, regs[RCX], regs[R11]);
    frame_registers(f, regs_at_trap, regs[RSP]);
    check_registers(e->name, "at the handler equal those before the trap", regs, regs_at_trap,
                    false);
    if (e->vector == 14)
        check(r->cr2 == e->cr2, "%s: vcpu_info.arch.cr2 %lx == %lx", e->name, r->cr2, e->cr2);
}

static void fill_registers(uint64_t *regs, unsigned seed)
{
    for (unsigned i = 0; i < NREGS; i++)
        regs[i] = 0x5eed000000000000UL | ((uint64_t)seed << 40) | ((uint64_t)i << 32) |
                  (0x01010101U * (i + 1));
}

static void kernel_case(unsigned seed, const struct expectation *e)
{
    static struct probe probe;
    uint8_t mask = shared->vcpu_info[0].evtchn_upcall_mask;

    printk("%s:\n", e->name);
    fill_registers(probe.in, seed);
    probe.target = (uint64_t)(e->vector == 3 ? trig_int3 : e->trigger);
    plan = e;
    plan_len = 1;
    plan_next = 0;
    probe_run(&probe);
    plan_len = 0;

    if (!check(plan_next == 1, "%s: handler ran", e->name))
        return;
    probe.in[RSP] = probe.rsp;
    check_frame(e, &records[0], false, probe.rsp, probe.rsp & ~15UL, mask, probe.in);
    check_registers(e->name, "survive the iret hypercall", probe.in, probe.out, true);
    check(shared->vcpu_info[0].evtchn_upcall_mask == mask, "%s: upcall mask %u after iret",
          e->name, mask);
}

static void kernel_cases(void)
{
    const struct expectation cases[] = {
        { "#UD ud2", 6, trig_ud2, 0, 0, FIX_SKIP },
        { "#BP int3", 3, trig_int3_next, 0, 0, FIX_NONE },
        { "#GP non-canonical load", 13, trig_gp, 0, 0, FIX_SKIP },
        { "#PF unmapped page", 14, trig_pf_read, 0, (uint64_t)pf_page, FIX_MAP_PF_PAGE },
        { "#PF write to read-only page", 14, trig_pf_write, 3, (uint64_t)ro_page, FIX_SKIP },
        { "#PF no page tables", 14, trig_pf_far, 0, FAR_UNMAPPED_VA, FIX_SKIP },
        { "#DE divide by zero", 0, trig_de, 0, 0, FIX_SKIP },
    };
    long rc;

    pf_page_mfn = virt_to_mfn(pf_page);
    pf_page[0] = 0xa5;
    ro_page[0] = 0x5a;
    if ((rc = make_readonly(ro_page)) != 0)
        fail("remapping ro_page read-only: %ld", rc);

    for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
        if (cases[i].fixup == FIX_MAP_PF_PAGE && (rc = unmap_page(pf_page)) != 0)
            fail("unmapping pf_page: %ld", rc);
        kernel_case(i + 1, &cases[i]);
    }
    check(pf_page[0] == 0xa5, "#PF unmapped page: remapped page kept its contents (%x)",
          pf_page[0]);
    check(ro_page[0] == 0x5a, "#PF write to read-only page: page unchanged (%x)", ro_page[0]);
}

static void user_cases(void)
{
    static const struct expectation steps[] = {
        { "user #BP int3", 3, user_int3_next, 0, 0, FIX_NONE },
        { "user #UD ud2", 6, user_ud2, 0, 0, FIX_TO_KERNEL },
    };
    uint64_t kernel_stack_top = usermode_init();
    /* Events stay masked in user mode: RFLAGS.IF clear in the iret frame. */
    uint8_t mask = 1;

    printk("user mode:\n");
    fill_registers(user_regs_in, 0x55);
    plan = steps;
    plan_len = ARRAY_SIZE(steps);
    plan_next = 0;
    if (context_save(&user_exit) == 0)
        enter_user((uint64_t)user_trap_entry, (uint64_t)user_stack_top, RFLAGS_RESERVED1);
    plan_len = 0;

    check(plan_next == 2, "user mode: int3 and ud2 both reached their handlers (%u)",
          plan_next);
    if (plan_next < 1)
        return;
    user_regs_in[RSP] = user_rsp_at_trap;
    check(user_rsp_at_trap == (uint64_t)user_stack_top, "user mode: started on the user stack");
    check_frame(&steps[0], &records[0], true, user_rsp_at_trap, kernel_stack_top, mask,
                user_regs_in);
    check(records[0].frame_end == kernel_stack_top,
          "user #BP int3: frame is on the stack_switch stack");
    if (plan_next < 2)
        return;
    check_frame(&steps[1], &records[1], true, user_rsp_at_trap, kernel_stack_top, mask,
                user_regs_in);
    check_registers("user #BP int3", "survive the iret hypercall back to user mode",
                    user_regs_in, user_regs_out, true);
    check(shared->vcpu_info[0].evtchn_upcall_mask == 1, "back in the kernel, events masked");
}

void guest_main(void)
{
    shared = map_shared_info();
    trap_hook = on_trap;
    traps_init();
    check(shared->vcpu_info[0].evtchn_upcall_mask == 1, "events are masked at start");
    kernel_cases();
    user_cases();
}
