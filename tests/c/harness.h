/* tests/c/harness.h - what the C stress harnesses (ring_stress.c,
 * pool_stress.c, shm_stress.c) share: the BM_MALLOC/BM_FREE allocation hooks, failure
 * reporting (CHECK, FAILF), the SIGALRM watchdog, item-count scaling,
 * sleeping and timing, thread start/join, a xorshift PRNG, and main's
 * start/finish (scale, watchdog, leak check, the final "passed" line).
 *
 * A harness includes this header INSTEAD of the header under test, after
 * defining _POSIX_C_SOURCE and:
 *   HARNESS_HEADER      the header under test ("bufmgr/ring.h" or
 *                       "bufmgr/pool.h"); included here AFTER the allocation
 *                       hooks are defined, so that every allocation it makes
 *                       goes through them (ring.h only picks BM_MALLOC up if
 *                       it is defined before ring.h is first included)
 *   HARNESS_SCALED_MIN  the smallest item count scaled() returns
 * and, for the frame-contents helpers (frame_key, frame_size, stamp,
 * verify: pool_stress.c and shm_stress.c), HARNESS_FRAMES.
 *
 * Everything is static: each harness is one translation unit (and
 * tests/c/ring_stress_win.c includes a harness .c whole, after mapping its
 * POSIX calls to Win32; the system headers below are the ones it includes
 * before that mapping).
 */
#ifndef BUFMGR_TESTS_HARNESS_H
#define BUFMGR_TESTS_HARNESS_H

#if !defined(HARNESS_HEADER) || !defined(HARNESS_SCALED_MIN)
#  error "define HARNESS_HEADER and HARNESS_SCALED_MIN before including harness.h"
#endif
#ifdef BUFMGR_RING_H
#  error "harness.h must come before bufmgr/ring.h (and pool.h): the BM_MALLOC hooks would be ignored"
#endif

#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>
#include <sched.h>

/* ---- allocation hooks, defined before including the header under test ---- */

static atomic_long g_alloc_budget = -1; /* < 0: unlimited; else allocations left */
static atomic_long g_alloc_live;        /* BM_MALLOC'd minus BM_FREE'd blocks */
static atomic_ulong g_alloc_calls, g_alloc_refused;

static void *hook_malloc(size_t n) {
    atomic_fetch_add(&g_alloc_calls, 1);
    long b = atomic_load(&g_alloc_budget);
    while (b >= 0) {
        if (b == 0) {
            atomic_fetch_add(&g_alloc_refused, 1);
            return NULL;
        }
        if (atomic_compare_exchange_weak(&g_alloc_budget, &b, b - 1)) break;
    }
    void *p = malloc(n);
    if (p) atomic_fetch_add(&g_alloc_live, 1);
    return p;
}

static void hook_free(void *p) {
    if (p) atomic_fetch_sub(&g_alloc_live, 1);
    free(p);
}

#define BM_MALLOC(n) hook_malloc(n)
#define BM_FREE(p) hook_free(p)

#include HARNESS_HEADER

/* ---- failure reporting ------------------------------------------------- */

static const char *g_scenario = "init"; /* written by main between scenarios only */

static void fail_at(const char *file, int line, const char *what, const char *fmt, ...) {
    fprintf(stderr, "FAIL [%s] %s:%d: ", g_scenario, file, line);
    if (what) fprintf(stderr, "check `%s` failed: ", what);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    fflush(stdout);
    _exit(1);
}

#define FAILF(...) fail_at(__FILE__, __LINE__, NULL, __VA_ARGS__)
#define CHECK(c, ...)                                                   \
    do {                                                                \
        if (!(c)) fail_at(__FILE__, __LINE__, #c, __VA_ARGS__);         \
    } while (0)

static const char *st_name(int st) {
    switch (st) {
    case BM_OK: return "BM_OK";
    case BM_FULL: return "BM_FULL";
    case BM_EMPTY: return "BM_EMPTY";
    case BM_TIMEOUT: return "BM_TIMEOUT";
    case BM_SHUTDOWN: return "BM_SHUTDOWN";
    case BM_NOMEM: return "BM_NOMEM";
    case BM_INVALID: return "BM_INVALID";
#ifdef BM_REFUSED /* pool.h's own statuses */
    case BM_REFUSED: return "BM_REFUSED";
    case BM_TOOBIG: return "BM_TOOBIG";
#endif
    default: return "?";
    }
}

static const char *pol_name(int p) {
    return p == BM_POLICY_BLOCK ? "block" : p == BM_POLICY_DROP_OLDEST ? "drop_oldest" : "drop_newest";
}

/* ---- watchdog: set by harness_start(), armed by begin() per scenario ---- */

static void on_alarm(int sig) {
    (void)sig;
    static const char a[] = "FAIL [watchdog] scenario did not finish in time: ";
    ssize_t rc = write(2, a, sizeof a - 1);
    rc = write(2, g_scenario, strlen(g_scenario));
    rc = write(2, "\n", 1);
    (void)rc;
    _exit(3);
}

/* ---- scaling, time, threads, PRNG ------------------------------------------ */

static double g_scale = 1.0;
static size_t scaled(size_t n) {
    size_t v = (size_t)((double)n * g_scale);
    return v < HARNESS_SCALED_MIN ? HARNESS_SCALED_MIN : v;
}

#define MS(x) ((int64_t)(x) * 1000000LL)
#define US(x) ((int64_t)(x) * 1000LL)

static void sleep_ns(int64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static double secs_since(int64_t t0) { return (double)(bm_now_ns() - t0) / 1e9; }

static void spawn(pthread_t *t, void *(*fn)(void *), void *arg) {
    int rc = pthread_create(t, NULL, fn, arg);
    CHECK(rc == 0, "pthread_create: %d", rc);
}

static void reap(pthread_t t) {
    int rc = pthread_join(t, NULL);
    CHECK(rc == 0, "pthread_join: %d", rc);
}

static uint32_t xorshift(uint32_t *s) {
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* ---- main: harness_start(), begin() per scenario, harness_finish() ---------- */

static int64_t g_main_t0;
static long g_main_live0;

/* Line-buffered stdout (every finished scenario's line shows even if the
 * watchdog fires), g_scale from `scale` (an environment value; unset or not
 * > 0: 1.0), the watchdog handler. */
static void harness_start(const char *scale) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (scale && atof(scale) > 0) g_scale = atof(scale);
    signal(SIGALRM, on_alarm);
    g_main_t0 = bm_now_ns();
    g_main_live0 = atomic_load(&g_alloc_live);
}

static void begin(const char *name, unsigned watchdog_s) {
    g_scenario = name;
    alarm(watchdog_s);
}

/* The watchdog off, no BM_MALLOC block leaked since harness_start(), then
 * the final line tests/c/run.sh looks for ("<harness>: all scenarios passed"). */
static void harness_finish(const char *harness, const char *what) {
    alarm(0);
    g_scenario = "end";
    long live = atomic_load(&g_alloc_live) - g_main_live0;
    CHECK(live == 0, "%ld %s allocations leaked", live, what);
    printf("%s: all scenarios passed (scale %.2f, %.2fs)\n", harness, g_scale,
           secs_since(g_main_t0));
}

#ifdef HARNESS_FRAMES
/* ---- frame contents (pool_stress.c, shm_stress.c) -------------------------- */

/* Frame (producer p, number n): a 64-bit key, a size derived from it, and a
 * byte pattern derived from (key, offset): a frame mixing two writes, a
 * stale tail, a shifted copy or a wrong nbytes cannot verify. */
static uint64_t frame_key(unsigned p, uint64_t n) { return ((uint64_t)(p + 1) << 48) | n; }

static size_t frame_size(uint64_t key, size_t frame_bytes) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t lo = frame_bytes / 2;
    return lo + (size_t)((h >> 20) % (frame_bytes - lo + 1)); /* [fb/2, fb] */
}

static inline unsigned char pattern(uint64_t key, size_t i) {
    uint64_t x = key ^ ((uint64_t)i * 0xD6E8FEB86659FD93ull);
    return (unsigned char)(x ^ (x >> 29) ^ (x >> 47));
}

static void stamp(unsigned char *dst, uint64_t key, size_t nbytes) {
    /* the key itself first, so a reader can tell which frame it has */
    size_t i = 0;
    for (; i < 8 && i < nbytes; i++) dst[i] = (unsigned char)(key >> (8 * i));
    for (; i < nbytes; i++) dst[i] = pattern(key, i);
}

/* 0 if intact; else 1 + the first bad offset */
static size_t verify(const unsigned char *src, size_t nbytes, size_t frame_bytes, uint64_t *key_out) {
    uint64_t key = 0;
    for (size_t i = 0; i < 8; i++) key |= (uint64_t)src[i] << (8 * i);
    *key_out = key;
    if (frame_size(key, frame_bytes) != nbytes) return 1;
    for (size_t i = 8; i < nbytes; i++)
        if (src[i] != pattern(key, i)) return 1 + i;
    return 0;
}
#endif /* HARNESS_FRAMES */

#endif /* BUFMGR_TESTS_HARNESS_H */
