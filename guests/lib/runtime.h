/*
 * The test-guest runtime: what every guest can use.
 *
 * A guest provides `guest_name` and `guest_main()`; lib/start.S and
 * lib/runtime.c do the rest (stack, console, final PASS/FAIL line, shutdown).
 */
#ifndef GUEST_RUNTIME_H
#define GUEST_RUNTIME_H

#include <stdarg.h>
#include "xen-abi.h"
#include "hypercall.h"

/* ---- linker script ---- */
extern char _image_start[], _image_end[];

/* ---- provided by each guest ---- */
extern const char guest_name[];
void guest_main(void);

/* ---- runtime.c ---- */
extern start_info_t *start_info;

/* Record one check: prints "domus-test: ok - <what>" or "domus-test: not ok - <what>". */
bool check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Fails the test now: "domus-test: FAIL <name>: <what>", then SHUTDOWN_crash. */
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Final line and shutdown: PASS and poweroff if every check passed, else FAIL and crash. */
void finish(void) __attribute__((noreturn));
/* SCHEDOP_shutdown after flushing the console; only returns if the hypercall does. */
long shutdown(unsigned int reason);
/* Value of `key=` in start_info.cmd_line, copied into buf (NUL-terminated); false if absent. */
bool cmdline_get(const char *key, char *buf, size_t size);

/* ---- console.c ---- */
void console_init(void);
void console_write(const char *s, size_t n);
/* Waits (bounded) until the backend consumed everything written so far. */
void console_flush(void);
/* CONSOLEIO_write straight to the hypervisor console. */
long console_io_write(const char *s, size_t n);

/* ---- printf.c ---- */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vprintk(const char *fmt, va_list ap);

/* ---- string.c ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* ---- mm.c: frames, the p2m (start_info.mfn_list) and the M2P ---- */
#define PAGE_ALIGNED __attribute__((aligned(4096)))

unsigned long pfn_to_mfn(unsigned long pfn);
unsigned long mfn_to_pfn(unsigned long mfn);          /* machine_to_phys_mapping[mfn] */
unsigned long virt_to_pfn(const void *va);            /* initial mapping only */
unsigned long virt_to_mfn(const void *va);
void *pfn_to_virt(unsigned long pfn);
/* update_va_mapping(va, mfn<<12 | flags, UVMF_INVLPG); returns the hypercall result. */
long map_frame(const void *va, unsigned long mfn, unsigned long flags);
long unmap_page(const void *va);
/* Remaps a page of the initial mapping read-only (for page-table frames). */
long make_readonly(const void *va);
long make_writable(const void *va);
/* Maps start_info.shared_info on a reserved page (once); fails the test on error. */
struct shared_info *map_shared_info(void);
long mmuext(unsigned int cmd, unsigned long arg1);

/* ---- traps.c / trap_entry.S ---- */
/*
 * What the trap stubs (trap_entry.S) save, ascending from the pointer the handler
 * gets.  Xen's bounce frame (RCX, R11, [error code], RIP, CS, RFLAGS, RSP, SS)
 * is turned into this: RCX and R11 are popped into the register area, a 0
 * error code is pushed for vectors without one, then the vector.
 */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector;
    uint64_t error_code;
    /* Xen's frame from here on. */
    uint64_t rip, cs, rflags, rsp, ss;
};

/*
 * A guest's trap hook: return a negative value if the trap was not expected
 * (the runtime then reports it and crashes), otherwise the `flags` word for
 * the iret hypercall (0, or VGCF_in_syscall) used to return to f->rip.  The
 * hook may change f's registers and rip.
 */
typedef long (*trap_hook_t)(struct trap_frame *f);
extern trap_hook_t trap_hook;

/* Installs handlers for the exceptions Xen can bounce to a PV guest. */
void traps_init(void);
bool vector_has_error_code(uint64_t vector);
/* Address of the first word (RCX) of the bounce frame Xen wrote. */
uint64_t trap_frame_xen_start(const struct trap_frame *f);
/* One past the last word (SS) of the bounce frame. */
uint64_t trap_frame_xen_end(const struct trap_frame *f);
void trap_frame_print(const struct trap_frame *f);

/* setjmp/longjmp for going back to the kernel context from a handler. */
struct kernel_context { uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip; };
long context_save(struct kernel_context *c) __attribute__((returns_twice));
void context_restore(struct kernel_context *c, long value) __attribute__((noreturn));

/* Entry points in trap_entry.S. */
extern char syscall_entry[];

/* ---- usermode.c ---- */
/*
 * Builds a user L4 mapping the .user_text pages (read-only) and .user_data
 * pages (read-write) at the same VAs as in the kernel, pins it, installs it
 * with MMUEXT_NEW_USER_BASEPTR, and sets the kernel stack with stack_switch.
 * Returns the kernel stack top the bounce frames will sit under.
 */
uint64_t usermode_init(void);
/* iret hypercall to user mode (CS 0xe033, SS 0xe02b, RPL 3). Never returns. */
void enter_user(uint64_t rip, uint64_t rsp, uint64_t rflags) __attribute__((noreturn));
extern char __user_text_start[], __user_text_end[];
extern char __user_data_start[], __user_data_end[];

/* Barriers: x86 keeps stores ordered, so compiler barriers are enough (Linux virt_wmb). */
#define barrier() asm volatile("" ::: "memory")
#define wmb() barrier()
#define rmb() barrier()

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
