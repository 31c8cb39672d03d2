/* tests/c/ring_stress_win.c - the C stress harnesses, built for Windows.
 *
 * Compiles tests/c/ring_stress.c unchanged (same scenarios, same checks) for
 * a _WIN32 target, so include/bufmgr/ring.h runs on the SRWLOCK +
 * CONDITION_VARIABLE + QueryPerformanceCounter branch of platform.h. Built by
 * .ci/windows.sh with x86_64-w64-mingw32-gcc -static and run under wine.
 * -DBM_WIN_HARNESS='"pool_stress.c"' wraps the pool harness the same way.
 *
 * The harnesses are written against POSIX. Its few POSIX calls belong to the
 * harness, not to the ring, and are mapped here onto plain Win32 before it
 * is included (the system headers are included first, so the macros below
 * only rename the harness's own uses):
 *   pthread_t / pthread_create / pthread_join -> _beginthreadex + a HANDLE
 *   nanosleep  -> Sleep for the whole milliseconds, then a yielding spin on
 *                 the monotonic clock (Sleep alone would turn the harness's
 *                 5-50 us pacing sleeps into >= 1 ms ones)
 *   sched_yield -> SwitchToThread
 *   signal(SIGALRM) / alarm -> a watchdog thread that calls the handler
 *   setvbuf(_IOLBF) -> _IONBF (the MS CRT has no line buffering; this keeps
 *                 every finished scenario's line visible if the watchdog fires)
 * No winpthreads function is called: the binary uses Win32 threads only, and
 * the ring itself uses nothing but platform.h.
 */
#ifndef _WIN32
#  error "ring_stress_win.c is the Windows build; on POSIX build ring_stress.c"
#endif

/* C99 printf formats (%zu, %llu) with mingw's msvcrt */
#define __USE_MINGW_ANSI_STDIO 1

#include <errno.h>
#include <process.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h> /* only for its include guard: nothing from it is used */

#include "bufmgr/platform.h" /* bm_now_ns, windows.h */

/* ---- threads ---------------------------------------------------------- */

typedef HANDLE rsw_thread_t;

typedef struct {
    void *(*fn)(void *);
    void *arg;
} rsw_start_t;

static unsigned __stdcall rsw_trampoline(void *p) {
    rsw_start_t s = *(rsw_start_t *)p;
    free(p);
    (void)s.fn(s.arg);
    return 0;
}

static int rsw_thread_create(rsw_thread_t *t, const void *attr, void *(*fn)(void *), void *arg) {
    (void)attr;
    rsw_start_t *s = malloc(sizeof *s);
    if (!s) return ENOMEM;
    s->fn = fn;
    s->arg = arg;
    uintptr_t h = _beginthreadex(NULL, 0, rsw_trampoline, s, 0, NULL);
    if (!h) {
        free(s);
        return errno ? errno : EAGAIN;
    }
    *t = (HANDLE)h;
    return 0;
}

static int rsw_thread_join(rsw_thread_t t, void **ret) {
    if (ret) *ret = NULL;
    if (WaitForSingleObject(t, INFINITE) != WAIT_OBJECT_0) return EINVAL;
    CloseHandle(t);
    return 0;
}

static int rsw_sched_yield(void) {
    SwitchToThread();
    return 0;
}

static int rsw_nanosleep(const struct timespec *req, struct timespec *rem) {
    int64_t ns = (int64_t)req->tv_sec * 1000000000LL + req->tv_nsec;
    int64_t end = bm_now_ns() + ns;
    if (ns >= 2000000) Sleep((DWORD)(ns / 1000000 - 1));
    while (bm_now_ns() < end)
        if (!SwitchToThread()) Sleep(0);
    (void)rem; /* only written on EINTR, which cannot happen here */
    return 0;
}

/* ---- SIGALRM watchdog ---------------------------------------------------- */

#ifndef SIGALRM
#  define SIGALRM 14
#endif

typedef void (*rsw_handler_t)(int);
static rsw_handler_t rsw_alarm_handler;        /* set before the thread starts */
static _Atomic int64_t rsw_alarm_deadline;     /* bm_now_ns() value; 0 = disarmed */
static atomic_int rsw_watchdog_started;

static unsigned __stdcall rsw_watchdog(void *p) {
    (void)p;
    for (;;) {
        Sleep(50);
        int64_t dl = atomic_load(&rsw_alarm_deadline);
        if (dl && bm_now_ns() >= dl && rsw_alarm_handler) {
            rsw_alarm_handler(SIGALRM); /* the harness's handler _exit()s */
            atomic_store(&rsw_alarm_deadline, 0);
        }
    }
    return 0;
}

static rsw_handler_t rsw_signal(int sig, rsw_handler_t fn) {
    if (sig != SIGALRM) return signal(sig, fn); /* the CRT's, for real signals */
    rsw_handler_t old = rsw_alarm_handler;
    rsw_alarm_handler = fn;
    if (!atomic_exchange(&rsw_watchdog_started, 1)) {
        uintptr_t h = _beginthreadex(NULL, 0, rsw_watchdog, NULL, 0, NULL);
        if (!h) {
            fputs("ring_stress_win: cannot start the watchdog thread\n", stderr);
            _exit(2);
        }
        CloseHandle((HANDLE)h);
    }
    return old;
}

static unsigned rsw_alarm(unsigned seconds) {
    int64_t now = bm_now_ns();
    int64_t dl = seconds ? now + (int64_t)seconds * 1000000000LL : 0;
    int64_t old = atomic_exchange(&rsw_alarm_deadline, dl);
    return old > now ? (unsigned)((old - now + 999999999LL) / 1000000000LL) : 0;
}

static int rsw_setvbuf(FILE *f, char *buf, int mode, size_t size) {
    if (mode == _IOLBF) return setvbuf(f, NULL, _IONBF, 0);
    return setvbuf(f, buf, mode, size);
}

#define pthread_t rsw_thread_t
#define pthread_create rsw_thread_create
#define pthread_join rsw_thread_join
#define sched_yield rsw_sched_yield
#define nanosleep rsw_nanosleep
#define signal rsw_signal
#define alarm rsw_alarm
#define setvbuf rsw_setvbuf

#ifndef BM_WIN_HARNESS
#  define BM_WIN_HARNESS "ring_stress.c"
#endif
#include BM_WIN_HARNESS
