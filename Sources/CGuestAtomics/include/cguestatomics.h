#ifndef CGUESTATOMICS_H
#define CGUESTATOMICS_H
/// Sequentially consistent atomic operations on guest memory. Guests share bitmaps
/// and rings with the hypervisor (event channel pending/mask words, upcall flags,
/// ring indices) and update them with locked instructions; the hypervisor must too.
#include <stdint.h>
static inline uint64_t cga_fetch_or64(uint64_t *p, uint64_t v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t cga_fetch_and64(uint64_t *p, uint64_t v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t cga_load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void cga_store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint8_t cga_exchange8(uint8_t *p, uint8_t v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t cga_load32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void cga_store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t cga_compare_exchange64(uint64_t *p, uint64_t expected, uint64_t desired) {
    __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
static inline void cga_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
/// The spin-wait hint (`pause`), for the lock the host shares with the in-VM core.
static inline void cga_pause(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}
/// The time-stamp counter (the in-VM core compares it with the host's armed timer).
static inline uint64_t cga_rdtsc(void) {
#if defined(__x86_64__)
    return __builtin_ia32_rdtsc();
#else
    return 0;
#endif
}
#endif
