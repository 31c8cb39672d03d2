/* tests/c/shm_stress.c - drives include/bufmgr/shmring.h (SharedFrameRing's
 * core) with no Python in the way; built and run by tests/c/run.sh under
 * ThreadSanitizer, AddressSanitizer+UBSan, plain -O2 and valgrind.
 *
 * 1 threads     (per policy) 2 producer x 3 consumer THREADS sharing one
 *               handle: every byte of every frame checked against its
 *               stamp, consumers hold frames for random times; zero torn,
 *               each frame at most once (exactly once under "block"),
 *               conservation, every slot free at the end.
 * 2 processes   (per policy) the same with 2 producer x 3 consumer forked
 *               PROCESSES, each attached by name; a shared bitmap catches
 *               duplicates.
 * 3 crashpoints a child SIGKILLs itself at each crash point inside the
 *               critical sections (BM_SHM_CRASHPOINTS), and inside the
 *               recovery itself: the survivor recovers the lock
 *               (EOWNERDEAD), the derived state and the counters; the
 *               identity holds exactly and every slot comes back.
 * 4 killloop    forked producers/consumers (some holding the lock through
 *               the test hook) SIGKILLed at random moments, respawned, for
 *               SHM_KILL_ITERS iterations (default 200): no hang (watchdog),
 *               no torn frame, counters conserve, all slots free at the end.
 * 5 validate    attach-time validation on empty, short, random, truncated,
 *               corrupted and other-version headers in exact-size buffers
 *               (ASan sees any read past them), real files too, bad names.
 * 5b layout     layout version 3: small frames keep the compact layout;
 *               frames >= 2 MiB get a 2 MiB-aligned data area, stride and
 *               file size; a large segment is mapped 2 MiB-aligned by its
 *               creator and an attacher, its data area advised
 *               MADV_HUGEPAGE (VmFlags "hg" in smaps, where THP exists),
 *               and a frame through it verifies.
 * 6 wakeups     shutdown wakes waiters blocked in other processes; a
 *               producer blocked on a full ring gets the slots of a consumer
 *               killed while holding them.
 * 7 watch       the asyncio watcher protocol (bm_shm_watch, bm_shm_nudge) in
 *               another process: woken by puts (200 rounds, 1-3 frames at a
 *               random moment around its sleep; every frame seen within
 *               10 s, every bump counted as remote), by nudges (a chain
 *               wake: woken, delta 0) and by shutdown.
 * Exit status 0 and the line "shm_stress: all scenarios passed" on success.
 */
#define _GNU_SOURCE
#define BM_SHM_CRASHPOINTS 1

#define HARNESS_HEADER "bufmgr/shmring.h"
#define HARNESS_SCALED_MIN 16
#define HARNESS_FRAMES 1
#include "harness.h"

#include <dirent.h>
#include <sys/wait.h>

static char g_name[96];
static int g_seg_counter;

static const char *new_name(void) {
    snprintf(g_name, sizeof g_name, "bufmgr-cstress-%d-%d", (int)getpid(), g_seg_counter++);
    return g_name;
}

/* frame contents (frame_key, frame_size, stamp, verify): harness.h */

static unsigned char *slot_data(bm_shm *r, uint32_t s) { return r->data + (size_t)s * r->h->g.stride; }

static void check_seg(bm_shm *r, const char *when) {
    CHECK(bm_shm_lock(r) == BM_OK, "lock");
    int bad = bm_shm_check_locked(r);
    bm_shm_stats s;
    bm_shm_stats_locked(r, &s);
    bm_shm_unlock(r);
    CHECK(bad == 0,
          "%s: invariant %d: puts=%llu next_seq=%llu gets=%llu dropped=%llu reclaimed=%llu "
          "cleared=%llu size=%llu free=%llu writing=%llu held=%llu",
          when, bad, (unsigned long long)s.puts, (unsigned long long)s.next_seq,
          (unsigned long long)s.gets, (unsigned long long)s.dropped,
          (unsigned long long)s.reclaimed, (unsigned long long)s.cleared,
          (unsigned long long)s.size, (unsigned long long)s.free,
          (unsigned long long)s.writing, (unsigned long long)s.held);
}

static bm_shm_stats stats_of(bm_shm *r) {
    bm_shm_stats s;
    CHECK(bm_shm_lock(r) == BM_OK, "lock");
    bm_shm_stats_locked(r, &s);
    bm_shm_unlock(r);
    return s;
}

static void create_seg(bm_shm *r, const char *name, size_t nslots, size_t fb, int policy) {
    int err = 0;
    int st = bm_shm_create(r, name, nslots, fb, 64, policy, 0, NULL, "", &err);
    CHECK(st == BM_OK, "create %s: %s errno %d", name, st_name(st), err);
}

static void attach_seg(bm_shm *r, const char *name) {
    char why[200];
    int err = 0;
    int st = bm_shm_attach(r, name, why, sizeof why, &err);
    CHECK(st == BM_OK, "attach %s: %d errno %d %s", name, st, err, why);
}

static void destroy_seg(bm_shm *r, const char *name) {
    uint64_t dev = r->dev, ino = r->ino;
    bm_shm_detach(r, NULL);
    CHECK(bm_shm_unlink_if_same(name, dev, ino) == 0, "unlink %s", name);
}

/* one put: reserve (waiting in slices), stamp, commit. 1 if queued. */
static int put_one(bm_shm *r, uint64_t key, size_t fb, int64_t deadline) {
    uint32_t s;
    int waited = 0, st;
    do {
        st = bm_shm_reserve(r, deadline == BM_NOWAIT ? BM_NOWAIT : bm_now_ns() + MS(20), &waited, &s);
    } while (st == BM_TIMEOUT && (deadline == BM_FOREVER || bm_now_ns() < deadline));
    if (st != BM_OK) return -st;
    size_t n = frame_size(key, fb);
    stamp(slot_data(r, s), key, n);
    st = bm_shm_commit(r, s, n, BM_SHM_TS_NOW, 0, NULL);
    return st == BM_OK ? 1 : -st;
}

/* ---- 1: threads sharing one handle ----------------------------------------- */

#define NPROD 2
#define NCONS 3

typedef struct {
    bm_shm *r;
    unsigned id;
    size_t n, fb;
    atomic_ulong *got;      /* per producer frames verified */
    atomic_uchar *seen;     /* [NPROD * n] */
    atomic_int *producers_left;
    uint32_t rng;
} worker_arg;

static void *producer_thread(void *p) {
    worker_arg *a = (worker_arg *)p;
    for (uint64_t i = 0; i < a->n; i++) {
        int st = put_one(a->r, frame_key(a->id, i), a->fb, BM_FOREVER);
        CHECK(st == 1 || st == -BM_REFUSED, "put: %d", st);
        if ((xorshift(&a->rng) & 63) == 0) sched_yield();
    }
    atomic_fetch_sub(a->producers_left, 1);
    return NULL;
}

static void consume_verify(worker_arg *a, bm_shm *r, uint32_t s) {
    uint64_t key;
    size_t nb = r->slots[s].nbytes;
    CHECK(verify(slot_data(r, s), nb, a->fb, &key) == 0, "torn frame in slot %u", s);
    unsigned p = (unsigned)(key >> 48) - 1;
    uint64_t n = key & 0xffffffffffffull;
    CHECK(p < NPROD && n < a->n, "bad key %llx", (unsigned long long)key);
    CHECK(atomic_exchange(&a->seen[p * a->n + n], 1) == 0, "frame %u/%llu delivered twice", p,
          (unsigned long long)n);
    atomic_fetch_add(&a->got[p], 1);
}

static void *consumer_thread(void *p) {
    worker_arg *a = (worker_arg *)p;
    for (;;) {
        uint32_t s;
        uint64_t need;
        int waited = 0;
        int st = bm_shm_take(a->r, bm_now_ns() + MS(10), &waited, UINT64_MAX, 0, &s, &need);
        if (st == BM_TIMEOUT) {
            if (atomic_load(a->producers_left) == 0) {
                st = bm_shm_take(a->r, BM_NOWAIT, NULL, UINT64_MAX, 0, &s, &need);
                if (st != BM_OK) break;
            } else {
                continue;
            }
        }
        CHECK(st == BM_OK, "take: %s", st_name(st));
        if ((xorshift(&a->rng) & 7) == 0) sleep_ns(US(xorshift(&a->rng) % 200)); /* hold it */
        consume_verify(a, a->r, s);
        CHECK(bm_shm_release(a->r, s) == BM_OK, "release");
    }
    return NULL;
}

static void scenario_threads(int policy) {
    bm_shm r;
    const char *name = new_name();
    size_t n = scaled(20000), fb = 256;
    create_seg(&r, name, 8, fb, policy);
    atomic_ulong got[NPROD] = {0};
    atomic_uchar *seen = calloc(NPROD * n, 1);
    atomic_int left = NPROD;
    worker_arg args[NPROD + NCONS];
    pthread_t th[NPROD + NCONS];
    for (unsigned i = 0; i < NPROD + NCONS; i++) {
        args[i] = (worker_arg){&r, i < NPROD ? i : i - NPROD, n, fb, got, seen, &left, 0x9e37u * (i + 1)};
        spawn(&th[i], i < NPROD ? producer_thread : consumer_thread, &args[i]);
    }
    for (unsigned i = 0; i < NPROD + NCONS; i++) reap(th[i]);
    check_seg(&r, "threads end");
    bm_shm_stats s = stats_of(&r);
    CHECK(s.free == s.slots && s.size == 0, "slots not all free");
    uint64_t total = got[0] + got[1];
    CHECK(s.gets == total, "gets %llu != verified %llu", (unsigned long long)s.gets,
          (unsigned long long)total);
    CHECK(s.puts == NPROD * n, "puts");
    if (policy == BM_POLICY_BLOCK) CHECK(total == NPROD * n && s.dropped == 0, "block lost frames");
    free(seen);
    destroy_seg(&r, name);
    printf("  threads %-11s: %llu frames, %llu delivered, %llu dropped\n", pol_name(policy),
           (unsigned long long)s.puts, (unsigned long long)s.gets, (unsigned long long)s.dropped);
}

/* ---- 2: processes ---------------------------------------------------------- */

typedef struct {
    atomic_ulong got[NPROD];
    atomic_int producers_left;
    atomic_int torn;
    atomic_ulong verified;
    atomic_uchar seen[];
} shared_tally;

static shared_tally *tally_new(size_t bits) {
    void *m = mmap(NULL, sizeof(shared_tally) + bits, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED, "mmap tally");
    return (shared_tally *)m;
}

static pid_t fork_child(void) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    return pid;
}

static int wait_child(pid_t pid) {
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    return status;
}

static void child_consumer(const char *name, shared_tally *t, size_t n, size_t fb, uint32_t seed,
                           int hold_lock) {
    bm_shm r;
    attach_seg(&r, name);
    for (;;) {
        uint32_t s;
        uint64_t need;
        int st = bm_shm_take(&r, bm_now_ns() + MS(10), NULL, UINT64_MAX, 0, &s, &need);
        if (st == BM_SHUTDOWN) break;
        if (st == BM_TIMEOUT) {
            if (atomic_load(&t->producers_left) == 0 &&
                bm_shm_take(&r, BM_NOWAIT, NULL, UINT64_MAX, 0, &s, &need) != BM_OK)
                break;
            if (st == BM_TIMEOUT && atomic_load(&t->producers_left) != 0) continue;
        }
        uint64_t key;
        if (verify(slot_data(&r, s), r.slots[s].nbytes, fb, &key) != 0) {
            atomic_fetch_add(&t->torn, 1);
            _exit(1);
        }
        unsigned p = (unsigned)(key >> 48) - 1;
        uint64_t k = key & 0xffffffffffffull;
        /* n == 1: the kill loop, where keys are only checked for integrity */
        if (p >= NPROD || (n > 1 && (k >= n || atomic_exchange(&t->seen[p * n + k], 1) != 0))) {
            atomic_fetch_add(&t->torn, 1);
            _exit(1);
        }
        atomic_fetch_add(&t->verified, 1);
        if ((xorshift(&seed) & 7) == 0) sleep_ns(US(xorshift(&seed) % 300));
        if (hold_lock && (xorshift(&seed) & 31) == 0) bm_shm_debug_hold_lock(&r, US(500 + xorshift(&seed) % 1500));
        bm_shm_release(&r, s);
    }
    bm_shm_detach(&r, NULL);
    _exit(0);
}

static void child_producer(const char *name, shared_tally *t, unsigned id, uint64_t from, uint64_t n,
                           size_t fb, uint32_t seed, int hold_lock) {
    bm_shm r;
    attach_seg(&r, name);
    for (uint64_t i = from; i < n; i++) {
        int st = put_one(&r, frame_key(id, i), fb, BM_FOREVER);
        if (st == -BM_SHUTDOWN) break;
        if (hold_lock && (xorshift(&seed) & 31) == 0) bm_shm_debug_hold_lock(&r, US(500 + xorshift(&seed) % 1500));
        if ((i & 7) == 7 && r.h->g.policy != BM_POLICY_BLOCK) sleep_ns(US(20)); /* let consumers keep up */
        if (from == 0 && i + 1 == n) atomic_fetch_sub(&t->producers_left, 1);
    }
    bm_shm_detach(&r, NULL);
    _exit(0);
}

static void scenario_processes(int policy) {
    bm_shm r;
    const char *name = new_name();
    size_t n = scaled(5000), fb = 512;
    create_seg(&r, name, 8, fb, policy);
    shared_tally *t = tally_new(NPROD * n);
    t->producers_left = NPROD;
    pid_t pids[NPROD + NCONS];
    for (unsigned i = 0; i < NPROD + NCONS; i++) {
        pids[i] = fork_child();
        if (pids[i] == 0) {
            if (i < NPROD) child_producer(name, t, i, 0, n, fb, 77 + i, 0);
            child_consumer(name, t, n, fb, 1234 + i, 0);
        }
    }
    for (unsigned i = 0; i < NPROD + NCONS; i++) {
        int status = wait_child(pids[i]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %u status %d", i, status);
    }
    CHECK(t->torn == 0, "torn or duplicated frames: %d", t->torn);
    check_seg(&r, "processes end");
    bm_shm_stats s = stats_of(&r);
    CHECK(s.free == s.slots, "slots not free");
    CHECK(s.gets == t->verified && s.puts == NPROD * n, "counts");
    CHECK(s.attached == 1, "participants left: %u", s.attached);
    if (policy == BM_POLICY_BLOCK) CHECK(s.gets == NPROD * n, "block lost frames");
    printf("  processes %-9s: %llu frames, %llu delivered, %llu dropped\n", pol_name(policy),
           (unsigned long long)s.puts, (unsigned long long)s.gets, (unsigned long long)s.dropped);
    munmap(t, sizeof(shared_tally) + NPROD * n);
    destroy_seg(&r, name);
}

/* ---- 3: crash points --------------------------------------------------------- */

/* Runs operations that pass every crash point; dies at bm_shm_crash_at. */
static void crash_child(const char *name, int point, size_t fb) {
    bm_shm r;
    bm_shm_crash_at = point;
    attach_seg(&r, name); /* 70 */
    uint32_t s;
    uint64_t need;
    int st = bm_shm_reserve(&r, BM_NOWAIT, NULL, &s); /* 10, 11 */
    if (st == BM_OK) bm_shm_abort(&r, s);             /* 20 */
    for (int i = 0; i < 6; i++) put_one(&r, frame_key(1, (uint64_t)i), fb, BM_NOWAIT); /* 30-32; 12-14 when full */
    if (bm_shm_take(&r, BM_NOWAIT, NULL, UINT64_MAX, 0, &s, &need) == BM_OK) /* 42, 43 */
        bm_shm_release(&r, s);                                                 /* 50 */
    if (bm_shm_take(&r, BM_NOWAIT, NULL, UINT64_MAX, 1, &s, &need) == BM_OK) /* 40, 41 */
        bm_shm_release(&r, s);
    put_one(&r, frame_key(1, 100), fb, BM_NOWAIT);
    bm_shm_lock(&r);
    bm_shm_clear_locked(&r); /* 60 */
    bm_shm_unlock(&r);
    /* a frame held and one being written at exit: leave frees them */
    bm_shm_reserve(&r, BM_NOWAIT, NULL, &s);
    bm_shm_detach(&r, NULL); /* 80 */
    _exit(2);                /* the crash point was not on the path */
}

static void scenario_crashpoints(void) {
    static const int points[] = {10, 11, 12, 13, 14, 20, 30, 31, 32, 40, 41, 42, 43, 50, 60, 70, 80};
    size_t fb = 128, nslots = 4;
    uint64_t recoveries = 0, reclaimed = 0, reclaimed_slots = 0;
    for (size_t k = 0; k < sizeof points / sizeof points[0]; k++) {
        int point = points[k];
        int policy = point == 14 ? BM_POLICY_DROP_NEWEST : BM_POLICY_DROP_OLDEST;
        bm_shm r;
        const char *name = new_name();
        create_seg(&r, name, nslots, fb, policy);
        /* the survivor holds a frame across the crash */
        CHECK(put_one(&r, frame_key(0, 0), fb, BM_NOWAIT) == 1, "prefill");
        uint32_t mine = 0;
        uint64_t need;
        CHECK(bm_shm_take(&r, BM_NOWAIT, NULL, UINT64_MAX, 0, &mine, &need) == BM_OK, "take");
        pid_t pid = fork_child();
        if (pid == 0) crash_child(name, point, fb);
        int status = wait_child(pid);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "crash point %d not reached (status %d)", point, status);
        bm_shm_stats before = stats_of(&r); /* takes the lock: EOWNERDEAD -> recovery */
        CHECK(bm_shm_reap(&r) <= 1, "reap");
        check_seg(&r, "after crash");
        uint64_t uk;
        CHECK(verify(slot_data(&r, mine), r.slots[mine].nbytes, fb, &uk) == 0 && uk == frame_key(0, 0),
              "the survivor's held frame changed under it");
        CHECK(bm_shm_release(&r, mine) == BM_OK, "release ours");
        /* drain what the dead one queued: every frame intact */
        uint32_t s = 0;
        while (bm_shm_take(&r, BM_NOWAIT, NULL, UINT64_MAX, 0, &s, &need) == BM_OK) {
            CHECK(verify(slot_data(&r, s), need, fb, &uk) == 0, "torn frame after crash %d", point);
            bm_shm_release(&r, s);
        }
        bm_shm_stats st = stats_of(&r);
        CHECK(st.free == nslots && st.attached == 1 && st.writing == 0 && st.held == 0,
              "point %d: slots not all back (free %llu attached %u)", point,
              (unsigned long long)st.free, st.attached);
        CHECK(put_one(&r, frame_key(0, 1), fb, BM_NOWAIT) == 1, "ring unusable after crash %d", point);
        check_seg(&r, "after reuse");
        recoveries += before.lock_recoveries;
        reclaimed += st.reclaimed;
        reclaimed_slots += st.reclaimed_slots;
        destroy_seg(&r, name);
    }
    /* a recoverer dies inside the recovery: the next locker recovers again */
    {
        bm_shm r;
        const char *name = new_name();
        create_seg(&r, name, nslots, fb, BM_POLICY_DROP_OLDEST);
        pid_t a = fork_child();
        if (a == 0) crash_child(name, 31, fb);
        wait_child(a);
        pid_t b = fork_child();
        if (b == 0) crash_child(name, 90, fb);
        int status = wait_child(b);
        CHECK(WIFSIGNALED(status), "recoverer did not die at 90");
        check_seg(&r, "after a dead recoverer");
        bm_shm_stats st = stats_of(&r);
        CHECK(st.lock_recoveries >= 2, "recoveries %llu", (unsigned long long)st.lock_recoveries);
        bm_shm_reap(&r);
        st = stats_of(&r);
        CHECK(st.free + st.size == nslots && st.attached == 1, "slots after dead recoverer");
        recoveries += st.lock_recoveries;
        destroy_seg(&r, name);
    }
    printf("  crashpoints: %zu points + a dead recoverer, %llu lock recoveries, %llu frames and "
           "%llu slots reclaimed\n",
           sizeof points / sizeof points[0], (unsigned long long)recoveries,
           (unsigned long long)reclaimed, (unsigned long long)reclaimed_slots);
}

/* ---- 4: kill loop ------------------------------------------------------------- */

static void scenario_killloop(void) {
    const char *e = getenv("SHM_KILL_ITERS");
    int iters = e && atoi(e) > 0 ? atoi(e) : 200;
    if (g_scale < 0.5) iters = iters / 10 < 10 ? 10 : iters / 10; /* valgrind */
    size_t fb = 256;
    uint64_t n = 1ull << 47; /* producers run until the shutdown */
    bm_shm r;
    const char *name = new_name();
    create_seg(&r, name, 6, fb, BM_POLICY_BLOCK);
    /* producers restart at a fresh key range each time (no duplicate keys) */
    shared_tally *t = tally_new(1);
    t->producers_left = 1 << 30;
    pid_t pids[4];
    uint32_t seed = 4242;
    unsigned gen = 0;
    for (int i = 0; i < 4; i++) {
        pids[i] = fork_child();
        if (pids[i] == 0) {
            if (i < 2) child_producer(name, t, (unsigned)i, (uint64_t)(gen++) << 24, n, fb, seed + i, 1);
            child_consumer(name, t, 1, fb, seed + 10 + i, 1);
        }
        gen++;
    }
    /* child_consumer's duplicate bitmap is disabled here (n = 1): keys are
     * checked for integrity only; duplicates are covered by scenario 2 */
    int killed_holding = 0;
    for (int it = 0; it < iters; it++) {
        sleep_ns(US(200 + xorshift(&seed) % 3000));
        int v = (int)(xorshift(&seed) % 4);
        kill(pids[v], SIGKILL);
        int status = wait_child(pids[v]);
        CHECK(WIFSIGNALED(status), "child %d ended on its own (status %d): torn frame?", v, status);
        /* did it die holding the lock? the next lock says so */
        uint64_t before = stats_of(&r).lock_recoveries;
        (void)before;
        pids[v] = fork_child();
        if (pids[v] == 0) {
            if (v < 2) child_producer(name, t, (unsigned)v, (uint64_t)(gen) << 24, n, fb, seed + it, 1);
            child_consumer(name, t, 1, fb, seed + 100 + it, 1);
        }
        gen++;
    }
    bm_shm_lock(&r);
    bm_shm_shutdown_locked(&r, 0);
    bm_shm_unlock(&r);
    for (int i = 0; i < 4; i++) {
        int status = wait_child(pids[i]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "survivor %d status %d", i, status);
    }
    CHECK(t->torn == 0, "torn frames: %d", t->torn);
    bm_shm_reap(&r);
    check_seg(&r, "killloop end");
    bm_shm_stats s = stats_of(&r);
    /* graceful shutdown: gets drained the queue */
    CHECK(s.free == s.slots && s.size == 0, "slots not all free: free %llu size %llu",
          (unsigned long long)s.free, (unsigned long long)s.size);
    CHECK(s.attached == 1, "participants left %u", s.attached);
    killed_holding = (int)s.lock_recoveries;
    printf("  killloop: %d kills, %llu frames, %llu verified, %d lock recoveries, %llu dead "
           "participants, %llu frames + %llu slots reclaimed, 0 hangs\n",
           iters, (unsigned long long)s.puts, (unsigned long long)t->verified, killed_holding,
           (unsigned long long)s.dead_participants, (unsigned long long)s.reclaimed,
           (unsigned long long)s.reclaimed_slots);
    CHECK(killed_holding > 0 || iters < 50, "no kill landed while the lock was held");
    munmap(t, sizeof(shared_tally) + 1);
    destroy_seg(&r, name);
}

/* ---- 5: validation ---------------------------------------------------------------- */

static int validate_copy(const unsigned char *src, size_t n, char *why, size_t wl) {
    unsigned char *buf = malloc(n ? n : 1); /* exact size: ASan flags any read past it */
    if (n) memcpy(buf, src, n);
    int st = bm_shm_validate(buf, n, 1, why, wl);
    free(buf);
    return st;
}

static void scenario_validate(void) {
    bm_shm r;
    char why[256];
    const char *name = new_name();
    create_seg(&r, name, 4, 100, BM_POLICY_DROP_OLDEST);
    size_t total = r.size;
    CHECK(validate_copy(r.base, total, why, sizeof why) == BM_OK, "valid one refused: %s", why);
    size_t cuts[] = {0, 1, 8, 11, 12, 13, 64, sizeof(bm_shm_header) - 1, sizeof(bm_shm_header),
                     sizeof(bm_shm_header) + 1, total - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        CHECK(validate_copy(r.base, cuts[i], why, sizeof why) == BM_SHM_BADSEG,
              "truncated to %zu accepted", cuts[i]);
    unsigned char *copy = malloc(sizeof(bm_shm_header));
    memcpy(copy, r.base, sizeof(bm_shm_header));
    /* another layout version */
    ((bm_shm_header *)copy)->g.version = BM_SHM_LAYOUT_VERSION + 1;
    char other[32];
    snprintf(other, sizeof other, "layout version %u", BM_SHM_LAYOUT_VERSION + 1);
    CHECK(validate_copy(copy, sizeof(bm_shm_header), why, sizeof why) == BM_SHM_VERSION &&
              strstr(why, other),
          "other version: %s", why);
    free(copy);
    /* random bytes and single-bit flips of the geometry */
    uint32_t seed = 99;
    unsigned char *junk = malloc(total);
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < total; i++) junk[i] = (unsigned char)xorshift(&seed);
        if (round & 1) memcpy(junk, &(uint64_t){BM_SHM_MAGIC}, 8); /* get past the magic */
        int st = bm_shm_validate(junk, total, 1, why, sizeof why);
        CHECK(st == BM_SHM_BADSEG || st == BM_SHM_VERSION, "random bytes accepted");
    }
    for (size_t bit = 0; bit < sizeof(bm_shm_geometry) * 8; bit += 7) {
        memcpy(junk, r.base, total);
        junk[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        CHECK(bm_shm_validate(junk, total, 1, why, sizeof why) != BM_OK, "bit %zu flip accepted", bit);
    }
    free(junk);
    /* real files: nonexistent, random bytes, truncated */
    int err = 0;
    bm_shm o;
    CHECK(bm_shm_attach(&o, "bufmgr-cstress-no-such", why, sizeof why, &err) == BM_SHM_ERRNO && err == ENOENT, "enoent");
    CHECK(bm_shm_attach(&o, "no-prefix", why, sizeof why, &err) == BM_SHM_BADNAME, "badname");
    CHECK(bm_shm_attach(&o, "bufmgr-../x", why, sizeof why, &err) == BM_SHM_BADNAME, "badname2");
    CHECK(!bm_shm_name_ok("bufmgr-") && bm_shm_name_ok("bufmgr-a.b_c-1"), "names");
    char path[128];
    snprintf(path, sizeof path, "/%s-junk", name);
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(fd >= 0, "shm_open junk");
    unsigned char rnd[5000];
    for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (unsigned char)xorshift(&seed);
    CHECK(write(fd, rnd, sizeof rnd) == (ssize_t)sizeof rnd, "write");
    close(fd);
    CHECK(bm_shm_attach(&o, path + 1, why, sizeof why, &err) == BM_SHM_BADSEG, "junk file accepted");
    shm_unlink(path);
    fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(write(fd, r.base, total / 2) == (ssize_t)(total / 2), "write half");
    close(fd);
    CHECK(bm_shm_attach(&o, path + 1, why, sizeof why, &err) == BM_SHM_BADSEG && strstr(why, "truncated"),
          "truncated file accepted: %s", why);
    shm_unlink(path);
    destroy_seg(&r, name);
    printf("  validate: truncations, 200 random headers, geometry bit flips, files: refused\n");
}

/* ---- 5b: layout (version 3: huge-page friendly for large frames) ------------------- */

/* 1 if the VMA starting at `addr` has VmFlags "hg" (MADV_HUGEPAGE) in /proc/self/smaps */
static int vma_has_hugepage_advice(const void *addr) {
    FILE *f = fopen("/proc/self/smaps", "r");
    CHECK(f != NULL, "open /proc/self/smaps");
    char line[512];
    int in = 0, found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = lo == (unsigned long)(uintptr_t)addr;
        } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            found = strstr(line, " hg") != NULL;
            break;
        }
    }
    fclose(f);
    return found;
}

static void scenario_layout(void) {
    const uint64_t H = BM_SHM_HUGE, P = BM_SHM_PAGE;
    /* small frames: the version-2 layout (64-byte stride, page-aligned data, no padding) */
    uint64_t small[] = {1, 100, 4096 + 13, 65536, H - 64, H - 1};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
        bm_shm_geometry g;
        CHECK(bm_shm_layout(&g, 8, small[i], 64) == BM_OK, "layout %llu", (unsigned long long)small[i]);
        CHECK(g.stride == ((small[i] + 63) & ~63ull) && g.data_off % P == 0 && g.data_off < H &&
                  g.total_bytes == g.data_off + 8 * g.stride,
              "small layout %llu: stride %llu data_off %llu total %llu", (unsigned long long)small[i],
              (unsigned long long)g.stride, (unsigned long long)g.data_off, (unsigned long long)g.total_bytes);
    }
    /* large frames: data area and file size in whole 2 MiB pages; the stride
     * too where that costs <= 1/16 of a frame, else whole 4 KiB pages */
    struct { uint64_t fb, stride; } large[] = {
        {H, H}, {H + 1, H + P}, {1920 * 1080 * 3, 3 * H}, {1280 * 720 * 3, 1280 * 720 * 3 /* 675 pages */}, {1280 * 720 * 3 + 100, 1280 * 720 * 3 + P},
        {1920 * 1080 * 4, 4 * H}, {3840 * 2160 * 3, 12 * H}, {16 * H + 1, 17 * H},
    };
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
        bm_shm_geometry g;
        for (uint64_t n = 1; n <= 9; n += 4) {
            CHECK(bm_shm_layout(&g, n, large[i].fb, 64) == BM_OK, "layout %llu", (unsigned long long)large[i].fb);
            CHECK(g.stride == large[i].stride && g.data_off % H == 0 && g.total_bytes % H == 0 &&
                      g.total_bytes >= g.data_off + n * g.stride && g.total_bytes < g.data_off + n * g.stride + H &&
                      g.data_off >= g.meta_off + n * g.meta_stride,
                  "large layout %llu x %llu: stride %llu data_off %llu total %llu",
                  (unsigned long long)n, (unsigned long long)large[i].fb, (unsigned long long)g.stride,
                  (unsigned long long)g.data_off, (unsigned long long)g.total_bytes);
        }
    }
    /* a real large-frame segment: mapped 2 MiB-aligned by its creator and by
     * an attacher, the data area advised MADV_HUGEPAGE where the kernel has
     * THP, and a frame through it intact */
    const size_t fb = 1920 * 1080 * 3;
    bm_shm r, o;
    const char *name = new_name();
    create_seg(&r, name, 3, fb, BM_POLICY_BLOCK);
    attach_seg(&o, name);
    int thp = access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0;
    bm_shm *hs[2] = {&r, &o};
    for (int k = 0; k < 2; k++) {
        bm_shm *h = hs[k];
        CHECK(((uintptr_t)h->base % H) == 0 && ((uintptr_t)h->data % H) == 0 && h->size % H == 0,
              "%s mapping not 2 MiB-aligned: base %p data %p", k ? "attacher" : "creator",
              (void *)h->base, (void *)h->data);
        for (uint32_t s = 0; s < 3; s++) CHECK(((uintptr_t)slot_data(h, s) % H) == 0, "slot %u not aligned", s);
        if (thp) CHECK(vma_has_hugepage_advice(h->data), "%s: data area not advised MADV_HUGEPAGE",
                       k ? "attacher" : "creator");
    }
    CHECK(put_one(&r, frame_key(0, 7), fb, BM_NOWAIT) == 1, "put a large frame");
    uint32_t s;
    uint64_t need = 0, key = 0;
    CHECK(bm_shm_take(&o, BM_NOWAIT, NULL, UINT64_MAX, 0, &s, &need) == BM_OK, "take");
    CHECK(verify(slot_data(&o, s), o.slots[s].nbytes, fb, &key) == 0 && key == frame_key(0, 7),
          "large frame torn");
    CHECK(bm_shm_release(&o, s) == BM_OK, "release");
    bm_shm_detach(&o, NULL);
    check_seg(&r, "layout");
    destroy_seg(&r, name);
    printf("  layout: small frames unchanged, large ones in whole 2 MiB pages, mappings aligned%s\n",
           thp ? ", data advised MADV_HUGEPAGE" : " (no THP in this kernel)");
}

/* ---- 6: cross-process wake-ups ------------------------------------------------------- */

static void scenario_wakeups(void) {
    size_t fb = 64;
    bm_shm r;
    const char *name = new_name();
    create_seg(&r, name, 2, fb, BM_POLICY_BLOCK);
    /* a getter blocked forever in another process: shutdown wakes it */
    pid_t g = fork_child();
    if (g == 0) {
        bm_shm c;
        attach_seg(&c, name);
        uint32_t s;
        uint64_t need;
        int st = bm_shm_take(&c, BM_FOREVER, NULL, UINT64_MAX, 0, &s, &need);
        _exit(st == BM_SHUTDOWN ? 0 : 10 + st);
    }
    while (stats_of(&r).getters_waiting == 0) sleep_ns(MS(1));
    int64_t t0 = bm_now_ns();
    bm_shm_lock(&r);
    bm_shm_shutdown_locked(&r, 0);
    bm_shm_unlock(&r);
    int status = wait_child(g);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "getter status %d", status);
    CHECK(bm_now_ns() - t0 < MS(5000), "shutdown wake took too long");
    destroy_seg(&r, name);

    /* a consumer killed holding every slot: a blocked producer gets them */
    name = new_name();
    create_seg(&r, name, 3, fb, BM_POLICY_BLOCK);
    pid_t c = fork_child();
    if (c == 0) {
        bm_shm cc;
        attach_seg(&cc, name);
        uint32_t s;
        uint64_t need;
        for (;;) bm_shm_take(&cc, bm_now_ns() + MS(50), NULL, UINT64_MAX, 0, &s, &need); /* never releases */
    }
    for (int i = 0; i < 3; i++) CHECK(put_one(&r, frame_key(0, (uint64_t)i), fb, BM_FOREVER) == 1, "put");
    while (stats_of(&r).held < 3) sleep_ns(MS(1));
    kill(c, SIGKILL);
    wait_child(c);
    /* every slot is held by the dead process; this put blocks until a reap */
    CHECK(put_one(&r, frame_key(0, 3), fb, bm_now_ns() + MS(5000)) == 1, "blocked producer not rescued");
    bm_shm_stats s = stats_of(&r);
    CHECK(s.reclaimed_slots == 3 && s.dead_participants == 1, "reclaimed %llu",
          (unsigned long long)s.reclaimed_slots);
    check_seg(&r, "after rescue");
    destroy_seg(&r, name);
    printf("  wakeups: shutdown woke a waiter in another process; a dead consumer's 3 slots rescued a blocked producer\n");
}

/* ---- 7: the asyncio watcher (bm_shm_watch / bm_shm_nudge) ------------------------------ */

/* What _Watcher._run in bufmgr/_shm.pyx does, in a forked child with its
 * own handle: prime, look before the first sleep, then per report take
 * every queued frame (as the coroutines it notifies would) and sleep on
 * the word again. The parent puts from its handle (remote bumps for the
 * watcher), nudges it, and finally shuts the ring down. */
typedef struct {
    atomic_ulong frames, reports, woken, chain, remote, own;
    atomic_int shut, bad;
} watch_tally;

static void child_watcher(const char *name, watch_tally *t, pid_t parent) {
    bm_shm c;
    attach_seg(&c, name);
    bm_shm_watch_state w;
    memset(&w, 0, sizeof w);
    CHECK(bm_shm_watch(&c, 1, &w, 0) == BM_OK, "prime"); /* primes: never sleeps */
    for (;;) {
        if (w.shutdown) {
            atomic_store(&t->shut, 1);
            break;
        }
        if (getppid() != parent) _exit(3); /* the parent failed a check: do not linger */
        for (;;) { /* "notify": the woken take what is there */
            uint32_t s;
            uint64_t need;
            if (bm_shm_take(&c, BM_NOWAIT, NULL, UINT64_MAX, 0, &s, &need) != BM_OK) break;
            CHECK(bm_shm_release(&c, s) == BM_OK, "release");
            atomic_fetch_add(&t->frames, 1);
        }
        CHECK(bm_shm_watch(&c, 1, &w, MS(50)) == BM_OK, "watch");
        atomic_fetch_add(&t->reports, 1);
        if (w.woken) atomic_fetch_add(&t->woken, 1);
        if (w.woken && w.delta == 0) atomic_fetch_add(&t->chain, 1);
        atomic_fetch_add(&t->remote, w.remote);
        atomic_fetch_add(&t->own, w.delta - w.remote);
        if (w.remote > w.delta) atomic_store(&t->bad, 1);
    }
    bm_shm_detach(&c, NULL);
    _exit(0);
}

/* until the watcher is counted as a sleeper of the word (bounded) */
static void until_watcher_sleeps(bm_shm *r, const char *when, int round) {
    int64_t deadline = bm_now_ns() + MS(10000);
    while (stats_of(r).getters_waiting == 0) {
        CHECK(bm_now_ns() < deadline, "%s round %d: the watcher never went back to sleep", when, round);
        sleep_ns(20000);
    }
}

static void until_count(atomic_ulong *v, unsigned long want, const char *what, int round) {
    int64_t deadline = bm_now_ns() + MS(10000);
    while (atomic_load(v) < want) {
        CHECK(bm_now_ns() < deadline, "round %d: %s: %lu of %lu within 10 s (a lost wake-up)", round, what,
              atomic_load(v), want);
        sleep_ns(20000);
    }
}

static void scenario_watch(void) {
    size_t fb = 64;
    bm_shm r;
    const char *name = new_name();
    create_seg(&r, name, 4, fb, BM_POLICY_BLOCK);
    watch_tally *t = (watch_tally *)tally_new(sizeof(watch_tally));
    memset(t, 0, sizeof *t);
    pid_t me = getpid(), wp = fork_child();
    if (wp == 0) child_watcher(name, t, me);
    uint32_t rng = 0x5eed7u;
    int rounds = (int)scaled(200);
    unsigned long put = 0;
    /* put wakes: 1-3 frames per round, at a random moment around the watcher's
     * futex sleep (before it, inside it) */
    for (int i = 0; i < rounds; i++) {
        until_watcher_sleeps(&r, "put", i);
        sleep_ns((int64_t)(xorshift(&rng) % 300) * 1000);
        unsigned k = 1 + xorshift(&rng) % 3;
        for (unsigned j = 0; j < k; j++)
            CHECK(put_one(&r, frame_key(0, put + j), fb, bm_now_ns() + MS(10000)) == 1, "put");
        put += k;
        until_count(&t->frames, put, "frames seen by the watcher", i);
    }
    CHECK(atomic_load(&t->remote) == put, "remote bumps %lu, commits %lu", atomic_load(&t->remote), put);
    CHECK(atomic_load(&t->own) == 0, "own bumps %lu in a handle that committed nothing",
          atomic_load(&t->own));
    /* nudge wakes: a FUTEX_WAKE with no bump is a chain wake (woken, delta 0).
     * Sent only while the watcher is counted; if it is not in FUTEX_WAIT yet
     * the nudge finds nobody (allowed: a real nudge follows a bump, which
     * makes such a sleeper return at once), so it is repeated */
    int nudges = (int)scaled(50);
    for (int i = 0; i < nudges; i++) {
        unsigned long before = atomic_load(&t->chain);
        int64_t deadline = bm_now_ns() + MS(10000);
        while (atomic_load(&t->chain) == before) {
            CHECK(bm_now_ns() < deadline, "nudge round %d: the watcher was never woken", i);
            until_watcher_sleeps(&r, "nudge", i);
            bm_shm_nudge(&r, 1);
            sleep_ns(MS(2));
        }
    }
    /* shutdown wakes it for good */
    until_watcher_sleeps(&r, "shutdown", 0);
    bm_shm_lock(&r);
    bm_shm_shutdown_locked(&r, 0);
    bm_shm_unlock(&r);
    int status = wait_child(wp);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "watcher status %d", status);
    CHECK(atomic_load(&t->shut) == 1 && atomic_load(&t->bad) == 0, "shutdown not seen / remote > delta");
    bm_shm_stats s = stats_of(&r);
    CHECK(s.gets == put && s.size == 0 && s.getters_waiting == 0, "gets %llu of %lu",
          (unsigned long long)s.gets, put);
    check_seg(&r, "after watch");
    printf("  watch: %d put rounds (%lu frames, %lu reports, %lu futex wake-ups), %d nudges, shutdown: "
           "all seen by a watcher in another process\n",
           rounds, put, atomic_load(&t->reports), atomic_load(&t->woken), nudges);
    munmap(t, sizeof(shared_tally) + sizeof(watch_tally));
    destroy_seg(&r, name);
}

static void check_no_leftovers(void) {
    DIR *d = opendir("/dev/shm");
    if (!d) return;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "bufmgr-cstress-%d-", (int)getpid());
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        CHECK(strncmp(de->d_name, prefix, strlen(prefix)) != 0, "left in /dev/shm: %s", de->d_name);
    closedir(d);
}

int main(void) {
    const char *scale = getenv("SHM_STRESS_SCALE");
    harness_start(scale ? scale : getenv("RING_STRESS_SCALE"));
    int pols[3] = {BM_POLICY_DROP_OLDEST, BM_POLICY_DROP_NEWEST, BM_POLICY_BLOCK};
    for (int i = 0; i < 3; i++) {
        begin("processes", 120);
        scenario_processes(pols[i]);
    }
    begin("crashpoints", 120);
    scenario_crashpoints();
    begin("killloop", 240);
    scenario_killloop();
    begin("validate", 60);
    scenario_validate();
    begin("layout", 60);
    scenario_layout();
    begin("wakeups", 60);
    scenario_wakeups();
    begin("watch", 120);
    scenario_watch();
    /* threads last: forked children would inherit the threads' TLS blocks
     * (valgrind reports them as possibly lost in every child) */
    for (int i = 0; i < 3; i++) {
        begin("threads", 120);
        scenario_threads(pols[i]);
    }
    check_no_leftovers();
    harness_finish("shm_stress", "BM_MALLOC");
    return 0;
}
