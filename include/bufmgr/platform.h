/* bufmgr/platform.h - the one portability seam of the C ring.
 *
 * A mutex, a condition variable with a timed wait against an absolute
 * MONOTONIC deadline, and a monotonic clock in nanoseconds:
 *   POSIX   : pthread_mutex_t + pthread_cond_t bound to CLOCK_MONOTONIC
 *             (macOS lacks pthread_condattr_setclock: relative waits there)
 *   _WIN32  : SRWLOCK + CONDITION_VARIABLE, QueryPerformanceCounter
 * Wall-clock time is never used, so a clock step cannot stretch a timeout.
 * Nothing here knows about Python.
 */
#ifndef BUFMGR_PLATFORM_H
#define BUFMGR_PLATFORM_H

#include <stdint.h>

#if defined(_WIN32)
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  include <windows.h>
typedef SRWLOCK bm_mutex_t;
typedef CONDITION_VARIABLE bm_cond_t;
#else
#  include <errno.h>
#  include <pthread.h>
#  include <time.h>
typedef pthread_mutex_t bm_mutex_t;
typedef pthread_cond_t bm_cond_t;
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* A hint for busy-wait loops: lets the sibling hyper-thread run and saves
 * power while we poll a lock that is about to be released. */
#if defined(_WIN32)
#  define bm_cpu_relax() YieldProcessor()
#elif defined(__x86_64__) || defined(__i386__)
#  define bm_cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#  define bm_cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#  define bm_cpu_relax() ((void)0)
#endif

/* Result of a timed wait. Callers re-check their predicate either way. */
#define BM_WAIT_WOKEN 0
#define BM_WAIT_TIMEDOUT 1

/* Deadlines are absolute bm_now_ns() values; these two are special. */
#define BM_NOWAIT ((int64_t)0)
#define BM_FOREVER ((int64_t)-1)

#if defined(_WIN32)

static inline int64_t bm_now_ns(void) {
    static LARGE_INTEGER freq; /* benign race: every thread writes the same value */
    LARGE_INTEGER now;
    if (freq.QuadPart == 0) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    /* split to avoid overflowing int64 for long uptimes */
    return (int64_t)(now.QuadPart / freq.QuadPart) * 1000000000LL +
           (int64_t)(now.QuadPart % freq.QuadPart) * 1000000000LL / freq.QuadPart;
}

static inline int bm_mutex_init(bm_mutex_t *m) { InitializeSRWLock(m); return 0; }
static inline void bm_mutex_destroy(bm_mutex_t *m) { (void)m; }
static inline void bm_mutex_lock(bm_mutex_t *m) { AcquireSRWLockExclusive(m); }
static inline int bm_mutex_trylock(bm_mutex_t *m) { return TryAcquireSRWLockExclusive(m) != 0; }
static inline void bm_mutex_unlock(bm_mutex_t *m) { ReleaseSRWLockExclusive(m); }

static inline int bm_cond_init(bm_cond_t *c) { InitializeConditionVariable(c); return 0; }
static inline void bm_cond_destroy(bm_cond_t *c) { (void)c; }
static inline void bm_cond_signal(bm_cond_t *c) { WakeConditionVariable(c); }
static inline void bm_cond_broadcast(bm_cond_t *c) { WakeAllConditionVariable(c); }

static inline int bm_cond_wait_until(bm_cond_t *c, bm_mutex_t *m, int64_t deadline) {
    DWORD ms = INFINITE;
    if (deadline != BM_FOREVER) {
        int64_t left = deadline - bm_now_ns();
        if (left <= 0) return BM_WAIT_TIMEDOUT;
        /* round up so we never wake (and spin) just before the deadline */
        int64_t l_ms = (left + 999999) / 1000000;
        ms = l_ms >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)l_ms;
    }
    if (!SleepConditionVariableSRW(c, m, ms, 0) && GetLastError() == ERROR_TIMEOUT) {
        /* the kernel may end the sleep a little early: only a passed
         * deadline is a timeout, otherwise the caller re-checks and waits on */
        return (deadline != BM_FOREVER && bm_now_ns() >= deadline) ? BM_WAIT_TIMEDOUT
                                                                     : BM_WAIT_WOKEN;
    }
    return BM_WAIT_WOKEN;
}

#else /* POSIX */

static inline int64_t bm_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int bm_mutex_init(bm_mutex_t *m) { return pthread_mutex_init(m, NULL); }
static inline void bm_mutex_destroy(bm_mutex_t *m) { pthread_mutex_destroy(m); }
static inline void bm_mutex_lock(bm_mutex_t *m) { pthread_mutex_lock(m); }
static inline int bm_mutex_trylock(bm_mutex_t *m) { return pthread_mutex_trylock(m) == 0; }
static inline void bm_mutex_unlock(bm_mutex_t *m) { pthread_mutex_unlock(m); }

static inline int bm_cond_init(bm_cond_t *c) {
#if defined(__APPLE__)
    return pthread_cond_init(c, NULL);
#else
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc) return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (!rc) rc = pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
#endif
}
static inline void bm_cond_destroy(bm_cond_t *c) { pthread_cond_destroy(c); }
static inline void bm_cond_signal(bm_cond_t *c) { pthread_cond_signal(c); }
static inline void bm_cond_broadcast(bm_cond_t *c) { pthread_cond_broadcast(c); }

static inline int bm_cond_wait_until(bm_cond_t *c, bm_mutex_t *m, int64_t deadline) {
    if (deadline == BM_FOREVER) {
        pthread_cond_wait(c, m);
        return BM_WAIT_WOKEN;
    }
#if defined(__APPLE__)
    int64_t left = deadline - bm_now_ns();
    if (left <= 0) return BM_WAIT_TIMEDOUT;
    struct timespec rel = {(time_t)(left / 1000000000LL), (long)(left % 1000000000LL)};
    return pthread_cond_timedwait_relative_np(c, m, &rel) == ETIMEDOUT ? BM_WAIT_TIMEDOUT
                                                                       : BM_WAIT_WOKEN;
#else
    if (deadline < 0) return BM_WAIT_TIMEDOUT; /* long past: EINVAL would make callers spin */
    struct timespec abs = {(time_t)(deadline / 1000000000LL), (long)(deadline % 1000000000LL)};
    int rc = pthread_cond_timedwait(c, m, &abs);
    /* anything but a wake-up (ETIMEDOUT, EINVAL) ends the wait: callers re-check */
    return rc == 0 ? BM_WAIT_WOKEN : BM_WAIT_TIMEDOUT;
#endif
}

#endif /* _WIN32 */

/* trylock, then up to `spins` more tries with a CPU pause between them. */
static inline int bm_mutex_trylock_spin(bm_mutex_t *m, int spins) {
    for (;;) {
        if (bm_mutex_trylock(m)) return 1;
        if (spins-- <= 0) return 0;
        bm_cpu_relax();
    }
}

#ifdef __cplusplus
}
#endif
#endif /* BUFMGR_PLATFORM_H */
