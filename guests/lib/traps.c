/*
 * The trap table and the C side of trap handling.
 */
#include "runtime.h"

trap_hook_t trap_hook;

extern char trap_divide_error[], trap_debug[], trap_int3[], trap_overflow[],
    trap_bounds[], trap_invalid_op[], trap_no_device[], trap_invalid_tss[],
    trap_segment_not_present[], trap_stack_segment[], trap_general_protection[],
    trap_page_fault[], trap_coprocessor_error[], trap_alignment_check[],
    trap_simd_error[];

/*
 * trap_info.flags: bits 0-1 are the DPL a software interrupt needs (the
 * guest kernel also runs in ring 3, so int3 needs DPL 3 from either mode),
 * bit 2 would mask events on entry; events stay masked in these guests anyway.
 */
#define TRAP(vec, dpl, handler) \
    { .vector = (vec), .flags = (dpl), .cs = FLAT_KERNEL_CS, .address = (unsigned long)(handler) }

void traps_init(void)
{
    static const struct trap_info table[] = {
        TRAP(0, 0, trap_divide_error),
        TRAP(1, 0, trap_debug),
        TRAP(3, 3, trap_int3),
        TRAP(4, 3, trap_overflow),
        TRAP(5, 0, trap_bounds),
        TRAP(6, 0, trap_invalid_op),
        TRAP(7, 0, trap_no_device),
        TRAP(10, 0, trap_invalid_tss),
        TRAP(11, 0, trap_segment_not_present),
        TRAP(12, 0, trap_stack_segment),
        TRAP(13, 0, trap_general_protection),
        TRAP(14, 0, trap_page_fault),
        TRAP(16, 0, trap_coprocessor_error),
        TRAP(17, 0, trap_alignment_check),
        TRAP(19, 0, trap_simd_error),
        { 0, 0, 0, 0 },     /* terminator: address 0 */
    };
    long rc = HYPERVISOR_set_trap_table(table);

    if (rc)
        fail("set_trap_table returned %ld", rc);
}

bool vector_has_error_code(uint64_t vector)
{
    return vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 ||
           vector == 21;
}

uint64_t trap_frame_xen_start(const struct trap_frame *f)
{
    unsigned words = 2 + (vector_has_error_code(f->vector) ? 1 : 0);

    return (uint64_t)&f->rip - words * 8;
}

uint64_t trap_frame_xen_end(const struct trap_frame *f)
{
    return (uint64_t)&f->ss + 8;
}

void trap_frame_print(const struct trap_frame *f)
{
    printk("  vector %lu error %lx rip %lx cs %lx rflags %lx rsp %lx ss %lx\n",
           f->vector, f->error_code, f->rip, f->cs, f->rflags, f->rsp, f->ss);
    printk("  rax %lx rbx %lx rcx %lx rdx %lx rsi %lx rdi %lx rbp %lx\n",
           f->rax, f->rbx, f->rcx, f->rdx, f->rsi, f->rdi, f->rbp);
    printk("  r8 %lx r9 %lx r10 %lx r11 %lx r12 %lx r13 %lx r14 %lx r15 %lx\n",
           f->r8, f->r9, f->r10, f->r11, f->r12, f->r13, f->r14, f->r15);
    printk("  frame at %lx..%lx\n", trap_frame_xen_start(f), trap_frame_xen_end(f));
}

uint64_t trap_dispatch(struct trap_frame *f)
{
    long flags = trap_hook ? trap_hook(f) : -1;

    if (flags < 0) {
        printk("unexpected trap:\n");
        trap_frame_print(f);
        fail("unexpected trap %lu at rip %lx (error code %lx)", f->vector, f->rip,
             f->error_code);
    }
    return (uint64_t)flags;
}
