#include "ckvm.h"
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

int ckvm_ioctl_none(int fd, unsigned long request) { return ioctl(fd, request, 0); }
int ckvm_ioctl_int(int fd, unsigned long request, unsigned long arg) { return ioctl(fd, request, arg); }
int ckvm_ioctl_ptr(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }

static void ckvm_kick_handler(int signo) { (void)signo; }

int ckvm_install_kick_handler(int signo) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = ckvm_kick_handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    return sigaction(signo, &action, 0);
}

int ckvm_deliver_only_in_guest(int vcpu_fd, int signo) {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, signo);
    if (pthread_sigmask(SIG_BLOCK, &block, 0) != 0) return -1;
    sigset_t running;
    if (pthread_sigmask(SIG_BLOCK, 0, &running) != 0) return -1;
    sigdelset(&running, signo);
    /* struct kvm_signal_mask carries the kernel's 8-byte sigset, the first word of glibc's. */
    struct { struct kvm_signal_mask header; unsigned char set[8]; } mask;
    mask.header.len = 8;
    memcpy(mask.set, &running, 8);
    if (ioctl(vcpu_fd, KVM_SET_SIGNAL_MASK, &mask) != 0) {
        pthread_sigmask(SIG_UNBLOCK, &block, 0);   /* keep the signal deliverable anywhere */
        return -1;
    }
    return 0;
}

int ckvm_event_in_flight(int vcpu_fd) {
    struct kvm_vcpu_events events;
    memset(&events, 0, sizeof events);
    if (ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &events) != 0) return -1;
    return (events.exception.injected || events.exception.pending
            || events.interrupt.injected || events.nmi.injected || events.nmi.pending) ? 1 : 0;
}

void ckvm_consume_signal(int signo) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    struct timespec none = {0, 0};
    while (sigtimedwait(&set, 0, &none) == signo) {}
}

int ckvm_thread_timer_create(int signo, int tid, intptr_t *timer_id) {
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = signo;
    event._sigev_un._tid = tid;
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0) return -1;
    *timer_id = (intptr_t)timer;
    return 0;
}

int ckvm_thread_timer_arm(intptr_t timer_id, uint64_t ns) {
    struct itimerspec spec;
    memset(&spec, 0, sizeof spec);
    spec.it_value.tv_sec = (time_t)(ns / 1000000000ull);
    spec.it_value.tv_nsec = (long)(ns % 1000000000ull);
    return timer_settime((timer_t)timer_id, ns ? TIMER_ABSTIME : 0, &spec, 0);
}

int ckvm_thread_timer_delete(intptr_t timer_id) { return timer_delete((timer_t)timer_id); }

int ckvm_gettid(void) { return (int)syscall(SYS_gettid); }
