#ifndef CKVM_H
#define CKVM_H
/// C shim for the KVM layer: <linux/kvm.h> and non-variadic ioctl wrappers,
/// which Swift cannot call directly. Nothing else in Domus includes kernel headers.
#include <linux/kvm.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <poll.h>

#pragma clang diagnostic ignored "-Wgnu-variable-sized-type-not-at-end"
#pragma clang assume_nonnull begin

/// ioctl with no argument. Returns the ioctl result; -1 with errno on failure.
int ckvm_ioctl_none(int fd, unsigned long request);
/// ioctl with an integer argument.
int ckvm_ioctl_int(int fd, unsigned long request, unsigned long arg);
/// ioctl with a pointer argument.
int ckvm_ioctl_ptr(int fd, unsigned long request, void *arg);

/// Request numbers (function-like macros in <linux/kvm.h>, so not importable).
static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long CKVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long CKVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long CKVM_GET_FPU = KVM_GET_FPU;
static const unsigned long CKVM_SET_FPU = KVM_SET_FPU;
static const unsigned long CKVM_GET_TSC_KHZ = KVM_GET_TSC_KHZ;
static const unsigned long CKVM_KVMCLOCK_CTRL = KVM_KVMCLOCK_CTRL;
static const unsigned long CKVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
static const unsigned long CKVM_SET_MP_STATE = KVM_SET_MP_STATE;
static const unsigned long CKVM_GET_MP_STATE = KVM_GET_MP_STATE;
static const int CKVM_CAP_IRQCHIP = KVM_CAP_IRQCHIP;
static const int CKVM_CAP_TSC_DEADLINE_TIMER = KVM_CAP_TSC_DEADLINE_TIMER;
static const unsigned int CKVM_MP_STATE_RUNNABLE = KVM_MP_STATE_RUNNABLE;

/// A kvm_msrs header followed by room for up to 16 entries.
typedef struct {
    struct kvm_msrs header;
    struct kvm_msr_entry entries[16];
} ckvm_msr_list;

/// A kvm_cpuid2 header followed by room for up to 128 entries.
typedef struct {
    struct kvm_cpuid2 header;
    struct kvm_cpuid_entry2 entries[128];
} ckvm_cpuid_list;

/// Exit-info accessors for the anonymous unions of struct kvm_run.
static inline struct kvm_regs *ckvm_run_sync_regs(struct kvm_run *run) { return &run->s.regs.regs; }
static inline struct kvm_sregs *ckvm_run_sync_sregs(struct kvm_run *run) { return &run->s.regs.sregs; }
static inline uint8_t ckvm_run_io_direction(const struct kvm_run *run) { return run->io.direction; }
static inline uint8_t ckvm_run_io_size(const struct kvm_run *run) { return run->io.size; }
static inline uint16_t ckvm_run_io_port(const struct kvm_run *run) { return run->io.port; }
static inline uint32_t ckvm_run_io_count(const struct kvm_run *run) { return run->io.count; }
static inline uint64_t ckvm_run_io_data_offset(const struct kvm_run *run) { return run->io.data_offset; }
static inline uint64_t ckvm_run_mmio_phys_addr(const struct kvm_run *run) { return run->mmio.phys_addr; }
static inline uint32_t ckvm_run_mmio_len(const struct kvm_run *run) { return run->mmio.len; }
static inline uint8_t ckvm_run_mmio_is_write(const struct kvm_run *run) { return run->mmio.is_write; }
static inline uint8_t *ckvm_run_mmio_data(struct kvm_run *run) { return run->mmio.data; }
static inline uint64_t ckvm_run_fail_entry_reason(const struct kvm_run *run) { return run->fail_entry.hardware_entry_failure_reason; }
static inline uint32_t ckvm_run_internal_suberror(const struct kvm_run *run) { return run->internal.suberror; }
static inline uint32_t ckvm_run_system_event_type(const struct kvm_run *run) { return run->system_event.type; }

/// Installs a no-op handler for `signo` without SA_RESTART, so a signal sent to a
/// vCPU thread makes KVM_RUN return EINTR (the kick).
int ckvm_install_kick_handler(int signo);

/// Blocks `signo` in the calling thread and has KVM unblock it only while vCPU `vcpu_fd`
/// runs (KVM_SET_SIGNAL_MASK): a kick or timer signal that arrives while the thread is
/// outside KVM_RUN stays pending and makes the next KVM_RUN return at once, so it is
/// never lost between the last check and the guest entry.
int ckvm_deliver_only_in_guest(int vcpu_fd, int signo);

/// Whether KVM holds an event for vCPU `vcpu_fd` that it will deliver at the next
/// entry (an exception, interrupt or NMI injected or pending, KVM_GET_VCPU_EVENTS):
/// 1 yes, 0 no, -1 with errno when the ioctl fails.
int ckvm_event_in_flight(int vcpu_fd);

/// Consumes a pending `signo` without waiting (after KVM_RUN returned EINTR: the
/// signal stays pending once the thread's own mask, which blocks it, is back).
void ckvm_consume_signal(int signo);


/// Atomically sets kvm_run.immediate_exit, so a kick from another thread is seen by
/// the next or current KVM_RUN.
static inline void ckvm_set_immediate_exit(struct kvm_run *run, uint8_t value) {
    __atomic_store_n(&run->immediate_exit, value, __ATOMIC_SEQ_CST);
}
/// Reads the host's time-stamp counter.
static inline uint64_t ckvm_rdtsc(void) {
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

/// A per-thread POSIX timer that sends `signo` to thread `tid` when it expires
/// (SIGEV_THREAD_ID). Returns 0 and fills *timer_id, or -1 with errno.
/// The timer is returned as an integer: glibc's first timer_t is 0.
int ckvm_thread_timer_create(int signo, int tid, intptr_t *timer_id);
/// Arms the timer for absolute CLOCK_MONOTONIC time `ns` (0 disarms).
int ckvm_thread_timer_arm(intptr_t timer_id, uint64_t ns);
int ckvm_thread_timer_delete(intptr_t timer_id);
/// The calling thread's kernel thread id.
int ckvm_gettid(void);
/// An eventfd for waking a blocked vCPU thread.
static inline int ckvm_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }
/// Waits up to `milliseconds` for the eventfd to become readable; returns poll's result.
static inline int ckvm_wait_readable(int fd, int milliseconds) {
    struct pollfd descriptor = { .fd = fd, .events = POLLIN, .revents = 0 };
    return poll(&descriptor, 1, milliseconds);
}
#pragma clang assume_nonnull end
#endif
