/* tests/c/pool_stress.c - a stress harness that drives include/bufmgr/pool.h
 * (the FrameRing slot pool) directly, with no Python in the way. Meant to be
 * built and run like ring_stress.c: ThreadSanitizer, AddressSanitizer+UBSan,
 * plain -O2, valgrind.
 *
 * Scenario 1 (one per policy): 4 producers x 4 consumers. Producers reserve
 * a slot, stamp their (producer, n) key into EVERY byte of a frame of a size
 * derived from the key, and commit; consumers take, hold the slot for a
 * random short time, verify every byte against the key and the committed
 * nbytes, and release. Zero torn frames, each frame delivered at most once
 * (exactly once under "block"), per-producer order == pool seq order, the
 * counters add up, delivered + the frames' gaps == the last delivered
 * ordinal + 1, and every slot is free at the end. Under the drop policies
 * one take in eight is a take_latest (a preview consumer). Waits use short
 * deadlines (like the Python layer's 50 ms slices) and sometimes BM_FOREVER.
 * Scenario 2: shutdown (immediate and graceful) with blocked putters and
 * getters, a put mid-copy, and frames held across the shutdown.
 * Scenario 3: policies/underruns/BM_TOOBIG/abort, deterministic.
 * Scenario 4: sizes: overflow -> BM_INVALID, allocation failure -> BM_NOMEM,
 * 64-byte alignment, deadlines on the monotonic clock.
 * Scenario 5: capture (issue 14), deterministic: producer timestamps
 * (commit_ts), gaps across evictions / refusals / clears / take_latest,
 * take_latest's dropped slots and counters, a take_latest waiter woken by a
 * commit.
 *
 * The first failed check prints "FAIL [scenario] file:line: ..." and exits 1.
 * A watchdog (SIGALRM) turns a hang into exit 3 naming the scenario.
 * Environment: POOL_STRESS_SCALE (float, default RING_STRESS_SCALE or 1.0)
 * multiplies the frame counts (run.sh lowers it for valgrind).
 */
#define _POSIX_C_SOURCE 200809L

/* the allocation hooks (scenario 4), CHECK, watchdog, scaling, timing,
 * threads, PRNG; harness.h includes pool.h after defining BM_MALLOC */
#define HARNESS_HEADER "bufmgr/pool.h"
#define HARNESS_SCALED_MIN 16
#define HARNESS_FRAMES 1
#include "harness.h"

static void check_pool_locked(const bm_pool *p) {
    int bad = bm_pool_check_locked(p);
    bm_pool_stats s;
    bm_pool_stats_locked(p, &s);
    CHECK(bad == 0,
          "pool invariant %d broken: puts=%llu gets=%llu dropped=%llu cleared=%llu size=%zu "
          "free=%zu writing=%zu held=%zu slots=%zu",
          bad, (unsigned long long)s.puts, (unsigned long long)s.gets,
          (unsigned long long)s.dropped, (unsigned long long)s.cleared, s.size, s.free,
          s.writing, s.held, s.slots);
}

/* frame contents (frame_key, frame_size, stamp, verify): harness.h */

/* ---- scenario 1: 4 producers x 4 consumers, every policy ---------------- */

enum { NPROD = 4, NCONS = 4 };

typedef struct {
    bm_pool pool;
    int policy;
    size_t per, slots, frame_bytes;
    atomic_uchar *seen;       /* [NPROD * per]: delivered count per frame */
    uint64_t *seq_of;         /* [NPROD * per]: pool seq of the delivered frame */
    atomic_ulong refused, produced, delivered, torn, timeouts, holds, forever_waits;
    atomic_ulong gaps, latest_takes, latest_dropped; /* sum of delivered frames' gaps; take_latest calls */
    atomic_int producers_left;
} s1_t;

typedef struct {
    s1_t *c;
    unsigned id;
} s1_arg;

static void *s1_producer(void *a) {
    s1_arg *arg = a;
    s1_t *c = arg->c;
    bm_pool *p = &c->pool;
    uint32_t rng = 0x1234567u + arg->id * 7919u;
    for (uint64_t n = 0; n < c->per; n++) {
        uint64_t key = frame_key(arg->id, n);
        size_t nbytes = frame_size(key, c->frame_bytes);
        size_t slot = 0;
        int waited = 0, st;
        int forever = (xorshift(&rng) % 64) == 0;
        for (;;) {
            /* a 2 ms "slice" like the Python layer's, or no deadline at all */
            int64_t dl = forever ? BM_FOREVER : bm_now_ns() + MS(2);
            bm_pool_lock(p);
            st = bm_pool_reserve_locked(p, dl, &waited, &slot);
            if ((xorshift(&rng) & 255) == 0) check_pool_locked(p);
            bm_pool_unlock(p);
            if (st != BM_TIMEOUT) break;
            atomic_fetch_add(&c->timeouts, 1);
        }
        if (forever) atomic_fetch_add(&c->forever_waits, 1);
        atomic_fetch_add(&c->produced, 1);
        if (st == BM_REFUSED) {
            CHECK(c->policy != BM_POLICY_BLOCK, "block policy refused a put");
            atomic_fetch_add(&c->refused, 1);
            /* pace like a camera whose frames are being dropped, so the
             * consumers get a share of the frames under the drop policies */
            sleep_ns(US(xorshift(&rng) % 40));
            continue;
        }
        CHECK(st == BM_OK, "reserve: %s", st_name(st));
        unsigned char *dst = bm_pool_slot_data(p, slot);
        CHECK(((uintptr_t)dst & (BM_POOL_ALIGN - 1)) == 0, "slot %zu not 64-byte aligned", slot);
        /* WRITING: ours alone, no mutex held */
        stamp(dst, key, nbytes);
        if ((xorshift(&rng) & 15) == 0) sched_yield(); /* widen the window */
        uint64_t seq = 0;
        bm_pool_lock(p);
        st = bm_pool_commit_locked(p, slot, nbytes, &seq);
        bm_pool_unlock(p);
        CHECK(st == BM_OK, "commit: %s", st_name(st));
    }
    atomic_fetch_sub(&c->producers_left, 1);
    return NULL;
}

static void *s1_consumer(void *a) {
    s1_arg *arg = a;
    s1_t *c = arg->c;
    bm_pool *p = &c->pool;
    uint32_t rng = 0xCAFEF00Du + arg->id * 104729u;
    unsigned char *copy = malloc(c->frame_bytes);
    CHECK(copy, "out of memory");
    for (;;) {
        size_t slot = 0, need = 0;
        int waited = 0, st;
        int forever = (xorshift(&rng) % 64) == 0;
        int into = (xorshift(&rng) & 3) == 0; /* get_into style: copy then release */
        /* a preview consumer (drop policies only: "block" must deliver all) */
        int latest = !into && c->policy != BM_POLICY_BLOCK && (xorshift(&rng) & 7) == 0;
        for (;;) {
            int64_t dl = forever ? BM_FOREVER : bm_now_ns() + MS(2);
            bm_pool_lock(p);
            if (latest) {
                size_t nd = 0;
                st = bm_pool_take_latest_locked(p, dl, &waited, &slot, NULL, &nd);
                need = st == BM_OK ? p->meta[slot].nbytes : 0;
                atomic_fetch_add(&c->latest_dropped, (unsigned long)nd);
            } else {
                st = bm_pool_take_locked(p, dl, &waited, SIZE_MAX, into, &slot, &need);
            }
            bm_pool_unlock(p);
            if (st != BM_TIMEOUT) break;
            atomic_fetch_add(&c->timeouts, 1);
        }
        if (st == BM_SHUTDOWN) break;
        CHECK(st == BM_OK, "take: %s", st_name(st));
        /* HELD: metadata and bytes stay put until we release */
        const bm_slot *m = bm_pool_slot(p, slot);
        size_t nbytes = m->nbytes;
        uint64_t seq = m->seq;
        atomic_fetch_add(&c->gaps, (unsigned long)m->gap);
        if (latest) atomic_fetch_add(&c->latest_takes, 1);
        CHECK(nbytes == need, "need %zu != nbytes %zu", need, nbytes);
        const unsigned char *src = bm_pool_slot_data(p, slot);
        if (into) {
            memcpy(copy, src, nbytes);
            bm_pool_lock(p);
            CHECK(bm_pool_release_locked(p, slot) == BM_OK, "release");
            bm_pool_unlock(p);
            src = copy;
        } else {
            uint32_t r = xorshift(&rng);
            if ((r & 7) == 0) {
                atomic_fetch_add(&c->holds, 1);
                sleep_ns(US(r >> 24)); /* hold for up to ~255 us */
            } else if ((r & 7) == 1) {
                sched_yield();
            }
        }
        uint64_t key = 0;
        size_t bad = verify(src, nbytes, c->frame_bytes, &key);
        if (bad) {
            atomic_fetch_add(&c->torn, 1);
            CHECK(0, "torn frame: slot %zu seq %llu key %llx nbytes %zu, first bad byte %zu", slot,
                  (unsigned long long)seq, (unsigned long long)key, nbytes, bad - 1);
        }
        unsigned prod = (unsigned)(key >> 48) - 1;
        uint64_t n = key & ((1ull << 48) - 1);
        CHECK(prod < NPROD && n < c->per, "bad key %llx", (unsigned long long)key);
        size_t idx = prod * c->per + n;
        unsigned prev = atomic_fetch_add(&c->seen[idx], 1);
        CHECK(prev == 0, "frame (%u, %llu) delivered twice", prod, (unsigned long long)n);
        c->seq_of[idx] = seq; /* one writer per idx (checked above); read after join */
        atomic_fetch_add(&c->delivered, 1);
        if (!into) {
            bm_pool_lock(p);
            CHECK(bm_pool_release_locked(p, slot) == BM_OK, "release");
            /* releasing twice is refused, not a double free */
            CHECK(bm_pool_release_locked(p, slot) == BM_INVALID, "second release accepted");
            bm_pool_unlock(p);
        }
    }
    free(copy);
    return NULL;
}

static void scenario_mpmc(int policy) {
    int64_t t0 = bm_now_ns();
    s1_t *c = calloc(1, sizeof *c);
    CHECK(c, "out of memory");
    c->policy = policy;
    c->per = scaled(4000);
    c->slots = 6;                 /* fewer than producers + consumers: slots run out */
    c->frame_bytes = 4096 + 13;   /* not a multiple of 64: exercises the stride */
    c->seen = calloc(NPROD * c->per, sizeof *c->seen);
    c->seq_of = calloc(NPROD * c->per, sizeof *c->seq_of);
    CHECK(c->seen && c->seq_of, "out of memory");
    CHECK(bm_pool_init(&c->pool, c->slots, c->frame_bytes, policy) == BM_OK, "init");
    atomic_store(&c->producers_left, NPROD);

    pthread_t tp[NPROD], tc[NCONS];
    s1_arg ap[NPROD], ac[NCONS];
    for (unsigned i = 0; i < NCONS; i++) {
        ac[i].c = c;
        ac[i].id = i;
        spawn(&tc[i], s1_consumer, &ac[i]);
    }
    for (unsigned i = 0; i < NPROD; i++) {
        ap[i].c = c;
        ap[i].id = i;
        spawn(&tp[i], s1_producer, &ap[i]);
    }
    for (unsigned i = 0; i < NPROD; i++) reap(tp[i]);
    /* graceful: consumers drain what is queued, then get BM_SHUTDOWN */
    bm_pool_lock(&c->pool);
    bm_pool_shutdown_locked(&c->pool, 0);
    bm_pool_unlock(&c->pool);
    for (unsigned i = 0; i < NCONS; i++) reap(tc[i]);

    bm_pool_stats s;
    bm_pool_lock(&c->pool);
    check_pool_locked(&c->pool);
    bm_pool_stats_locked(&c->pool, &s);
    bm_pool_unlock(&c->pool);
    size_t total = NPROD * c->per;
    unsigned long refused = atomic_load(&c->refused), delivered = atomic_load(&c->delivered);
    CHECK(atomic_load(&c->torn) == 0, "torn frames");
    CHECK(s.free == c->slots && s.held == 0 && s.writing == 0 && s.size == 0,
          "slots not all free at the end: free=%zu held=%zu writing=%zu queued=%zu", s.free, s.held,
          s.writing, s.size);
    CHECK(s.puts == total, "puts %llu != produced %zu", (unsigned long long)s.puts, total);
    CHECK(s.gets == delivered, "gets %llu != delivered %lu", (unsigned long long)s.gets, delivered);
    CHECK(s.cleared == 0, "graceful shutdown cleared %llu", (unsigned long long)s.cleared);
    CHECK(s.dropped >= refused, "dropped %llu < refused %lu", (unsigned long long)s.dropped, refused);
    CHECK(delivered + s.dropped == total, "delivered %lu + dropped %llu != %zu", delivered,
          (unsigned long long)s.dropped, total);
    /* every put up to the last delivered one was delivered or counted in a gap */
    unsigned long gaps = atomic_load(&c->gaps);
    unsigned long latest_dropped = atomic_load(&c->latest_dropped);
    CHECK(delivered + gaps == c->pool.next_delivery && c->pool.next_delivery <= total,
          "delivered %lu + gaps %lu != next_delivery %llu (total %zu)", delivered, gaps,
          (unsigned long long)c->pool.next_delivery, total);
    if (policy == BM_POLICY_BLOCK) CHECK(gaps == 0, "block: gaps %lu", gaps);
    if (policy == BM_POLICY_BLOCK) {
        CHECK(s.dropped == 0 && refused == 0, "block policy dropped frames");
        CHECK(delivered == total, "block: lost frames");
    }
    if (policy == BM_POLICY_DROP_NEWEST)
        CHECK(s.dropped == refused + latest_dropped, "drop_newest evicted a queued frame");
    CHECK(s.underruns <= (policy == BM_POLICY_BLOCK ? s.puts : s.dropped), "underruns %llu",
          (unsigned long long)s.underruns);
    /* per producer: pool seq order == production order (FIFO, seq at commit) */
    for (unsigned p = 0; p < NPROD; p++) {
        uint64_t last = 0;
        int have = 0;
        for (size_t n = 0; n < c->per; n++) {
            size_t idx = p * c->per + n;
            if (!atomic_load(&c->seen[idx])) continue;
            CHECK(!have || c->seq_of[idx] > last, "producer %u frame %zu has seq %llu <= %llu", p,
                  n, (unsigned long long)c->seq_of[idx], (unsigned long long)last);
            last = c->seq_of[idx];
            have = 1;
        }
    }
    printf("[%s] ok: %s: %zu frames (4P x 4C, %zu slots of %zu B): delivered %lu, dropped %llu "
           "(refused %lu), underruns %llu, high_water %zu, %lu slice timeouts, %lu long holds, "
           "%lu take_latest (%lu older dropped), gaps add up, 0 torn, all slots free (%.2fs)\n",
           g_scenario, pol_name(policy), total, c->slots, c->frame_bytes, delivered, (unsigned long long)s.dropped,
           refused, (unsigned long long)s.underruns, s.high_water, atomic_load(&c->timeouts),
           atomic_load(&c->holds), atomic_load(&c->latest_takes), latest_dropped, secs_since(t0));
    bm_pool_destroy(&c->pool);
    free(c->seen);
    free(c->seq_of);
    free(c);
}

/* ---- scenario 2: shutdown ---------------------------------------------------- */

typedef struct {
    bm_pool *p;
    int putter;     /* else getter */
    int64_t timeout; /* BM_FOREVER or a far deadline */
    size_t max_nbytes; /* getters: 0 means any size */
    atomic_int started, done;
    int st;
    size_t slot;
    int64_t woke_ns;
} waiter_t;

static void *waiter_fn(void *a) {
    waiter_t *w = a;
    size_t slot = SIZE_MAX, need = 0;
    int waited = 0;
    int64_t dl = w->timeout == BM_FOREVER ? BM_FOREVER : bm_now_ns() + w->timeout;
    bm_pool_lock(w->p);
    atomic_store(&w->started, 1);
    if (w->putter)
        w->st = bm_pool_reserve_locked(w->p, dl, &waited, &slot);
    else
        w->st = bm_pool_take_locked(w->p, dl, &waited, w->max_nbytes ? w->max_nbytes : SIZE_MAX, 0,
                                    &slot, &need);
    w->slot = slot;
    bm_pool_unlock(w->p);
    w->woke_ns = bm_now_ns();
    atomic_store(&w->done, 1);
    return NULL;
}

static unsigned waiting(bm_pool *p, int putters) {
    bm_pool_lock(p);
    unsigned n = putters ? p->putters_waiting : p->getters_waiting;
    bm_pool_unlock(p);
    return n;
}

static void wait_for_waiters(bm_pool *p, int putters, unsigned n) {
    int64_t end = bm_now_ns() + MS(20000);
    while (waiting(p, putters) < n) {
        CHECK(bm_now_ns() < end, "waiters never blocked");
        sleep_ns(US(200));
    }
}

static int64_t put_frame(bm_pool *p, unsigned char v, size_t nbytes) {
    size_t slot = 0;
    uint64_t seq = 0;
    bm_pool_lock(p);
    int st = bm_pool_reserve_locked(p, BM_NOWAIT, NULL, &slot);
    if (st == BM_OK) {
        memset(bm_pool_slot_data(p, slot), v, nbytes);
        st = bm_pool_commit_locked(p, slot, nbytes, &seq);
    }
    bm_pool_unlock(p);
    return st == BM_OK ? (int64_t)seq : -(int64_t)st - 1;
}

static void scenario_shutdown(void) {
    int64_t t0 = bm_now_ns(), worst = 0;
    for (int round = 0; round < 6; round++) {
        int immediate = round & 1;
        /* A: 3 slots, block; 2 frames held, 1 queued -> putters block.
         * B: 2 slots, empty -> getters block. */
        bm_pool A, B;
        CHECK(bm_pool_init(&A, 3, 256, BM_POLICY_BLOCK) == BM_OK, "init A");
        CHECK(bm_pool_init(&B, 2, 256, BM_POLICY_BLOCK) == BM_OK, "init B");
        for (int i = 0; i < 3; i++) CHECK(put_frame(&A, (unsigned char)(0x10 + i), 200) == i, "fill A");
        size_t held[2], need;
        bm_pool_lock(&A);
        for (int i = 0; i < 2; i++)
            CHECK(bm_pool_take_locked(&A, BM_NOWAIT, NULL, SIZE_MAX, 0, &held[i], &need) == BM_OK,
                  "take A");
        bm_pool_unlock(&A);
        enum { NW = 4 };
        waiter_t wa[NW], wb[NW];
        pthread_t ta[NW], tb[NW];
        memset(wa, 0, sizeof wa);
        memset(wb, 0, sizeof wb);
        for (int i = 0; i < NW; i++) {
            wa[i].p = &A;
            wa[i].putter = 1;
            wa[i].timeout = (i & 1) ? MS(30000) : BM_FOREVER;
            spawn(&ta[i], waiter_fn, &wa[i]);
            wb[i].p = &B;
            wb[i].putter = 0;
            wb[i].timeout = (i & 1) ? MS(30000) : BM_FOREVER;
            spawn(&tb[i], waiter_fn, &wb[i]);
        }
        wait_for_waiters(&A, 1, NW);
        wait_for_waiters(&B, 0, NW);
        /* a put mid-copy on B when the shutdown lands */
        size_t wslot;
        bm_pool_lock(&B);
        CHECK(bm_pool_reserve_locked(&B, BM_NOWAIT, NULL, &wslot) == BM_OK, "reserve B");
        bm_pool_unlock(&B);
        int64_t ts = bm_now_ns();
        bm_pool_lock(&A);
        size_t cleared = bm_pool_shutdown_locked(&A, immediate);
        bm_pool_unlock(&A);
        bm_pool_lock(&B);
        bm_pool_shutdown_locked(&B, immediate);
        bm_pool_unlock(&B);
        CHECK(cleared == (immediate ? 1u : 0u), "shutdown cleared %zu", cleared);
        for (int i = 0; i < NW; i++) {
            reap(ta[i]);
            reap(tb[i]);
            CHECK(wa[i].st == BM_SHUTDOWN, "putter %d: %s", i, st_name(wa[i].st));
            CHECK(wb[i].st == BM_SHUTDOWN, "getter %d: %s", i, st_name(wb[i].st));
            if (wa[i].woke_ns - ts > worst) worst = wa[i].woke_ns - ts;
            if (wb[i].woke_ns - ts > worst) worst = wb[i].woke_ns - ts;
        }
        /* the copy finishes after the shutdown: commit refuses, slot freed */
        memset(bm_pool_slot_data(&B, wslot), 0x55, 100);
        uint64_t seq;
        bm_pool_lock(&B);
        CHECK(bm_pool_commit_locked(&B, wslot, 100, &seq) == BM_SHUTDOWN, "commit after shutdown");
        CHECK(B.nfree == 2, "slot not freed after a failed commit");
        CHECK(bm_pool_reserve_locked(&B, BM_NOWAIT, NULL, &wslot) == BM_SHUTDOWN, "reserve after");
        check_pool_locked(&B);
        bm_pool_unlock(&B);
        /* held frames stay intact across the shutdown and are released after */
        for (int i = 0; i < 2; i++) {
            const unsigned char *d = bm_pool_slot_data(&A, held[i]);
            for (int k = 0; k < 200; k++) CHECK(d[k] == 0x10 + i, "held frame %d changed", i);
        }
        bm_pool_lock(&A);
        size_t slot;
        int st = bm_pool_take_locked(&A, BM_NOWAIT, NULL, SIZE_MAX, 0, &slot, &need);
        if (immediate) {
            CHECK(st == BM_SHUTDOWN, "immediate: queued frame survived (%s)", st_name(st));
        } else {
            CHECK(st == BM_OK && A.meta[slot].seq == 2, "graceful: drain got %s", st_name(st));
            CHECK(bm_pool_release_locked(&A, slot) == BM_OK, "release drained");
            CHECK(bm_pool_take_locked(&A, BM_NOWAIT, NULL, SIZE_MAX, 0, &slot, &need) == BM_SHUTDOWN,
                  "graceful: drained then shutdown");
        }
        for (int i = 0; i < 2; i++) CHECK(bm_pool_release_locked(&A, held[i]) == BM_OK, "release held");
        check_pool_locked(&A);
        CHECK(A.nfree == 3, "A: slots not all free");
        bm_pool_stats s;
        bm_pool_stats_locked(&A, &s);
        CHECK(s.cleared == (immediate ? 1u : 0u) && s.puts == 3, "A counters");
        bm_pool_unlock(&A);
        bm_pool_destroy(&A);
        bm_pool_destroy(&B);
    }
    printf("[%s] ok: 6 rounds (immediate/graceful) with 4 blocked putters + 4 blocked getters, "
           "worst wake-up %.1f ms; a put mid-copy fails at commit and frees its slot; held frames "
           "survive; all slots free (%.2fs)\n",
           g_scenario, worst / 1e6, secs_since(t0));
}

/* ---- scenario 3: policies, underruns, BM_TOOBIG, abort (deterministic) ---- */

static void scenario_policies(void) {
    int64_t t0 = bm_now_ns();
    bm_pool p;
    size_t s0, s1, need, slot;
    uint64_t seq;
    bm_pool_stats s;

    /* drop_oldest: full of queued -> evicts the oldest; all held -> refused + underrun */
    CHECK(bm_pool_init(&p, 2, 64, BM_POLICY_DROP_OLDEST) == BM_OK, "init");
    CHECK(put_frame(&p, 1, 10) == 0 && put_frame(&p, 2, 20) == 1, "fill");
    CHECK(put_frame(&p, 3, 30) == 2, "evicting put");
    bm_pool_lock(&p);
    bm_pool_stats_locked(&p, &s);
    CHECK(s.dropped == 1 && s.puts == 3 && s.size == 2 && s.underruns == 0, "evict counters");
    CHECK(bm_pool_take_locked(&p, BM_NOWAIT, NULL, SIZE_MAX, 0, &s0, &need) == BM_OK &&
              p.meta[s0].seq == 1 && need == 20,
          "oldest left is seq 1");
    CHECK(bm_pool_take_locked(&p, BM_NOWAIT, NULL, 29, 1, &s1, &need) == BM_TOOBIG && need == 30,
          "TOOBIG names the size");
    CHECK(p.nqueued == 1 && p.gets == 1, "TOOBIG changed nothing");
    CHECK(bm_pool_take_locked(&p, BM_NOWAIT, NULL, 30, 1, &s1, &need) == BM_OK, "fits exactly");
    CHECK(bm_pool_reserve_locked(&p, BM_NOWAIT, NULL, &slot) == BM_REFUSED, "all held: refused");
    bm_pool_stats_locked(&p, &s);
    CHECK(s.dropped == 2 && s.underruns == 1 && s.puts == 4, "refused counters");
    CHECK(bm_pool_release_locked(&p, s0) == BM_OK && bm_pool_release_locked(&p, s1) == BM_OK, "rel");
    CHECK(bm_pool_release_locked(&p, s1) == BM_INVALID, "double release refused");
    CHECK(bm_pool_commit_locked(&p, s1, 1, &seq) == BM_INVALID, "commit of a free slot refused");
    CHECK(bm_pool_reserve_locked(&p, BM_NOWAIT, NULL, &slot) == BM_OK, "reserve");
    CHECK(bm_pool_commit_locked(&p, slot, 65, &seq) == BM_INVALID, "commit > frame_bytes refused");
    CHECK(bm_pool_abort_locked(&p, slot) == BM_OK && p.nfree == 2, "abort frees");
    check_pool_locked(&p);
    bm_pool_unlock(&p);
    bm_pool_destroy(&p);

    /* drop_newest: refused; underrun only when nothing is queued */
    CHECK(bm_pool_init(&p, 2, 64, BM_POLICY_DROP_NEWEST) == BM_OK, "init");
    CHECK(put_frame(&p, 1, 10) == 0 && put_frame(&p, 2, 20) == 1, "fill");
    CHECK(put_frame(&p, 3, 30) == -(int64_t)BM_REFUSED - 1, "refused");
    bm_pool_lock(&p);
    bm_pool_stats_locked(&p, &s);
    CHECK(s.dropped == 1 && s.underruns == 0 && s.size == 2, "refused w/ queued: no underrun");
    CHECK(bm_pool_take_locked(&p, BM_NOWAIT, NULL, SIZE_MAX, 0, &s0, &need) == BM_OK, "take");
    CHECK(bm_pool_take_locked(&p, BM_NOWAIT, NULL, SIZE_MAX, 0, &s1, &need) == BM_OK, "take");
    CHECK(bm_pool_reserve_locked(&p, BM_NOWAIT, NULL, &slot) == BM_REFUSED, "refused");
    bm_pool_stats_locked(&p, &s);
    CHECK(s.dropped == 2 && s.underruns == 1, "refused, all held: underrun");
    bm_pool_release_locked(&p, s0);
    bm_pool_release_locked(&p, s1);
    CHECK(bm_pool_clear_locked(&p) == 0, "clear empty");
    check_pool_locked(&p);
    bm_pool_unlock(&p);
    bm_pool_destroy(&p);

    /* block: BM_FULL without waiting; a wait starting with every slot held
     * counts one underrun (once per put, across slices); with frames queued none */
    CHECK(bm_pool_init(&p, 1, 64, BM_POLICY_BLOCK) == BM_OK, "init");
    CHECK(put_frame(&p, 1, 10) == 0, "fill");
    bm_pool_lock(&p);
    CHECK(bm_pool_reserve_locked(&p, BM_NOWAIT, NULL, &slot) == BM_FULL, "full");
    int waited = 0;
    CHECK(bm_pool_reserve_locked(&p, bm_now_ns() + MS(2), &waited, &slot) == BM_TIMEOUT, "timeout");
    CHECK(p.underruns == 0, "queued frame: not an underrun");
    CHECK(bm_pool_take_locked(&p, BM_NOWAIT, NULL, SIZE_MAX, 0, &s0, &need) == BM_OK, "take");
    waited = 0;
    for (int slice = 0; slice < 3; slice++)
        CHECK(bm_pool_reserve_locked(&p, bm_now_ns() + MS(1), &waited, &slot) == BM_TIMEOUT, "t/o");
    CHECK(p.underruns == 1, "one underrun per put, got %llu", (unsigned long long)p.underruns);
    CHECK(p.puts == 1 && p.dropped == 0, "block never counts refused puts");
    bm_pool_release_locked(&p, s0);
    CHECK(bm_pool_reserve_locked(&p, bm_now_ns() + MS(1), &waited, &slot) == BM_OK, "free now");
    CHECK(bm_pool_abort_locked(&p, slot) == BM_OK, "abort");
    /* clear counts cleared and keeps P2 */
    bm_pool_unlock(&p);
    CHECK(put_frame(&p, 5, 5) == 1, "put");
    bm_pool_lock(&p);
    CHECK(bm_pool_clear_locked(&p) == 1 && p.cleared == 1 && p.nfree == 1, "clear");
    check_pool_locked(&p);
    bm_pool_unlock(&p);
    bm_pool_destroy(&p);

    /* Two sleeping getters, one whose buffer is too small for the frame that
     * arrives: whichever the commit wakes, the other getter must get the frame
     * promptly (a BM_TOOBIG caller passes the wake-up on). */
    for (int round = 0; round < 8; round++) {
        CHECK(bm_pool_init(&p, 2, 64, BM_POLICY_BLOCK) == BM_OK, "init");
        waiter_t ws, wbig;
        memset(&ws, 0, sizeof ws);
        memset(&wbig, 0, sizeof wbig);
        ws.p = wbig.p = &p;
        ws.timeout = MS(200);
        ws.max_nbytes = 10;
        wbig.timeout = MS(20000);
        pthread_t tsmall, tbig;
        /* alternate which one sleeps first (condvars tend to wake FIFO) */
        spawn(round & 1 ? &tbig : &tsmall, waiter_fn, round & 1 ? &wbig : &ws);
        wait_for_waiters(&p, 0, 1);
        spawn(round & 1 ? &tsmall : &tbig, waiter_fn, round & 1 ? &ws : &wbig);
        wait_for_waiters(&p, 0, 2);
        int64_t tput = bm_now_ns();
        CHECK(put_frame(&p, 9, 50) == 0, "put");
        reap(tbig);
        CHECK(wbig.st == BM_OK, "the getter that fits got %s", st_name(wbig.st));
        CHECK(wbig.woke_ns - tput < MS(500), "stranded for %.1f ms", (wbig.woke_ns - tput) / 1e6);
        reap(tsmall);
        CHECK(ws.st == BM_TOOBIG || ws.st == BM_TIMEOUT, "small getter: %s", st_name(ws.st));
        bm_pool_lock(&p);
        CHECK(p.nheld == 1 && p.nqueued == 0, "held by the getter that fits");
        CHECK(bm_pool_release_locked(&p, wbig.slot) == BM_OK, "release");
        check_pool_locked(&p);
        bm_pool_unlock(&p);
        bm_pool_destroy(&p);
    }
    printf("[%s] ok: drop_oldest evicts/refuses, drop_newest refuses, block waits; underruns, "
           "BM_TOOBIG, abort, clear, double release refused (%.2fs)\n",
           g_scenario, secs_since(t0));
}

/* ---- scenario 4: sizes, allocation failure, alignment, deadlines ---------- */

static void scenario_sizes(void) {
    int64_t t0 = bm_now_ns();
    bm_pool p;
    CHECK(bm_pool_init(&p, 0, 64, BM_POLICY_BLOCK) == BM_INVALID, "0 slots");
    CHECK(bm_pool_init(&p, 4, 0, BM_POLICY_BLOCK) == BM_INVALID, "0 bytes");
    CHECK(bm_pool_init(&p, SIZE_MAX / 2, 4, BM_POLICY_BLOCK) == BM_INVALID, "overflow slots");
    CHECK(bm_pool_init(&p, 2, SIZE_MAX - 10, BM_POLICY_BLOCK) == BM_INVALID, "overflow bytes");
    CHECK(bm_pool_init(&p, 3, SIZE_MAX / 3, BM_POLICY_BLOCK) == BM_INVALID, "overflow product");
    long live0 = atomic_load(&g_alloc_live);
    atomic_store(&g_alloc_budget, 0);
    CHECK(bm_pool_init(&p, 4, 64, BM_POLICY_BLOCK) == BM_NOMEM, "malloc failure -> BM_NOMEM");
    atomic_store(&g_alloc_budget, -1);
    CHECK(atomic_load(&g_alloc_live) == live0, "nothing leaked on failure");
    size_t sizes[] = {1, 63, 64, 65, 1000, 6 * 1024 * 1024};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        CHECK(bm_pool_init(&p, 3, sizes[k], BM_POLICY_DROP_OLDEST) == BM_OK, "init %zu", sizes[k]);
        CHECK(atomic_load(&g_alloc_live) == live0 + 1, "one allocation per pool");
        for (size_t i = 0; i < 3; i++) {
            unsigned char *d = bm_pool_slot_data(&p, i);
            CHECK(((uintptr_t)d & 63) == 0, "slot %zu of %zu B not aligned", i, sizes[k]);
            memset(d, 0xAB, sizes[k]); /* ASan/valgrind: the whole slot is addressable */
        }
        /* a full-size frame round trip */
        CHECK(put_frame(&p, 0x5A, sizes[k]) == 0, "full-size put");
        bm_pool_lock(&p);
        size_t slot, need;
        CHECK(bm_pool_take_locked(&p, BM_NOWAIT, NULL, sizes[k], 0, &slot, &need) == BM_OK &&
                  need == sizes[k],
              "full-size take");
        bm_pool_release_locked(&p, slot);
        bm_pool_unlock(&p);
        bm_pool_destroy(&p);
    }
    CHECK(atomic_load(&g_alloc_live) == live0, "pool storage leaked");
    /* deadlines are absolute monotonic times: a 20 ms wait lasts >= 20 ms */
    CHECK(bm_pool_init(&p, 1, 64, BM_POLICY_BLOCK) == BM_OK, "init");
    bm_pool_lock(&p);
    size_t slot, need;
    int64_t a = bm_now_ns();
    CHECK(bm_pool_take_locked(&p, a + MS(20), NULL, SIZE_MAX, 0, &slot, &need) == BM_TIMEOUT, "t/o");
    int64_t el = bm_now_ns() - a;
    CHECK(el >= MS(20), "woke after %.2f ms, before the deadline", el / 1e6);
    a = bm_now_ns();
    CHECK(bm_pool_take_locked(&p, BM_NOWAIT, NULL, SIZE_MAX, 0, &slot, &need) == BM_EMPTY, "nowait");
    CHECK(bm_pool_take_locked(&p, a - MS(5), NULL, SIZE_MAX, 0, &slot, &need) == BM_TIMEOUT, "past");
    CHECK(bm_now_ns() - a < MS(100), "a past deadline waited");
    bm_pool_unlock(&p);
    bm_pool_destroy(&p);
    printf("[%s] ok: overflow -> BM_INVALID, malloc failure -> BM_NOMEM (no leak), one 64-byte "
           "aligned allocation per pool, monotonic deadlines (20 ms wait took %.1f ms) (%.2fs)\n",
           g_scenario, el / 1e6, secs_since(t0));
}

/* ---- scenario 5: timestamps, gaps, take_latest (deterministic) ---------- */

static void *latest_waiter_fn(void *a) {
    waiter_t *w = (waiter_t *)a;
    size_t slot = 0, nd = 0;
    size_t dropped[4];
    bm_pool_lock(w->p);
    w->st = bm_pool_take_latest_locked(w->p, bm_now_ns() + w->timeout, NULL, &slot, dropped, &nd);
    if (w->st == BM_OK) {
        w->slot = slot;
        bm_pool_release_locked(w->p, slot);
    }
    bm_pool_unlock(w->p);
    w->woke_ns = bm_now_ns();
    return NULL;
}

static void scenario_capture(void) {
    int64_t t0 = bm_now_ns();
    bm_pool p;
    size_t slot, s0, need, nd, dropped[8];
    uint64_t seq;
    bm_pool_stats s;

    /* producer timestamps: kept as given; BM_POOL_TS_NOW stamps the commit time */
    CHECK(bm_pool_init(&p, 4, 64, BM_POLICY_DROP_OLDEST) == BM_OK, "init");
    bm_pool_lock(&p);
    CHECK(bm_pool_reserve_locked(&p, BM_NOWAIT, NULL, &slot) == BM_OK, "reserve");
    CHECK(bm_pool_commit_ts_locked(&p, slot, 8, -5, &seq) == BM_INVALID, "negative ts refused");
    CHECK(bm_pool_commit_ts_locked(&p, slot, 8, INT64_MAX, &seq) == BM_OK && seq == 0, "ts max");
    CHECK(p.meta[slot].timestamp_ns == INT64_MAX, "producer ts kept");
    int64_t before = bm_now_ns();
    CHECK(bm_pool_reserve_locked(&p, BM_NOWAIT, NULL, &slot) == BM_OK, "reserve");
    CHECK(bm_pool_commit_ts_locked(&p, slot, 8, BM_POOL_TS_NOW, &seq) == BM_OK && seq == 1, "now");
    CHECK(p.meta[slot].timestamp_ns >= before && p.meta[slot].timestamp_ns <= bm_now_ns(),
          "TS_NOW is the commit time");
    /* gaps: the first delivery counts nothing lost */
    CHECK(bm_pool_take_locked(&p, BM_NOWAIT, NULL, SIZE_MAX, 0, &s0, &need) == BM_OK &&
              p.meta[s0].seq == 0 && p.meta[s0].gap == 0, "first gap 0");
    bm_pool_release_locked(&p, s0);
    bm_pool_unlock(&p);
    /* fill (seq 1 queued + 2, 3, 4), then 5 and 6 evict 1 and 2 */
    for (int i = 2; i <= 6; i++) CHECK(put_frame(&p, (unsigned char)i, 4) == i, "put %d", i);
    bm_pool_lock(&p);
    bm_pool_stats_locked(&p, &s);
    CHECK(s.dropped == 2 && s.size == 4, "two evictions");
    CHECK(bm_pool_take_locked(&p, BM_NOWAIT, NULL, SIZE_MAX, 0, &s0, &need) == BM_OK &&
              p.meta[s0].seq == 3 && p.meta[s0].gap == 2, "gap after two evictions: %llu",
          (unsigned long long)p.meta[s0].gap);
    bm_pool_release_locked(&p, s0);
    /* take_latest: 4, 5 dropped, 6 taken (gap 2); its dropped slots are named */
    CHECK(bm_pool_take_latest_locked(&p, BM_NOWAIT, NULL, &s0, dropped, &nd) == BM_OK, "latest");
    CHECK(p.meta[s0].seq == 6 && p.meta[s0].gap == 2 && nd == 2, "latest: seq %llu gap %llu nd %zu",
          (unsigned long long)p.meta[s0].seq, (unsigned long long)p.meta[s0].gap, nd);
    CHECK(p.meta[dropped[0]].state == BM_SLOT_FREE && p.meta[dropped[1]].state == BM_SLOT_FREE &&
              dropped[0] != dropped[1] && dropped[0] != s0 && dropped[1] != s0,
          "dropped slots are free");
    bm_pool_stats_locked(&p, &s);
    CHECK(s.dropped == 4 && s.size == 0 && s.held == 1 && s.gets == 3, "latest counters");
    CHECK(bm_pool_take_latest_locked(&p, BM_NOWAIT, NULL, &slot, dropped, &nd) == BM_EMPTY &&
              nd == 0, "latest never returns a frame twice");
    bm_pool_release_locked(&p, s0);
    check_pool_locked(&p);
    /* a clear and a drop_newest refusal count in the next gap too */
    bm_pool_unlock(&p);
    CHECK(put_frame(&p, 7, 4) == 7 && put_frame(&p, 8, 4) == 8, "put");
    bm_pool_lock(&p);
    CHECK(bm_pool_clear_locked(&p) == 2, "clear");
    p.policy = BM_POLICY_DROP_NEWEST;
    bm_pool_unlock(&p);
    for (int i = 0; i < 4; i++) CHECK(put_frame(&p, 9, 4) == 9 + i, "fill");
    CHECK(put_frame(&p, 13, 4) == -(int64_t)BM_REFUSED - 1, "refused");
    bm_pool_lock(&p);
    CHECK(bm_pool_take_latest_locked(&p, BM_NOWAIT, NULL, &s0, NULL, &nd) == BM_OK &&
              p.meta[s0].seq == 12 && nd == 3, "latest of four");
    /* ordinals: 0..6 = seqs 0..6; 7, 8 cleared; 9..12 -> ordinals 9..12; refused 13 */
    CHECK(p.meta[s0].gap == 12 - 7, "gap over clear + latest: %llu",
          (unsigned long long)p.meta[s0].gap);
    bm_pool_release_locked(&p, s0);
    bm_pool_unlock(&p);
    CHECK(put_frame(&p, 14, 4) == 13, "refused frames take no seq");
    bm_pool_lock(&p);
    CHECK(bm_pool_take_locked(&p, BM_NOWAIT, NULL, SIZE_MAX, 0, &s0, &need) == BM_OK &&
              p.meta[s0].gap == 1, "a refused put is one frame lost: gap %llu",
          (unsigned long long)p.meta[s0].gap);
    bm_pool_release_locked(&p, s0);
    bm_pool_stats_locked(&p, &s);
    CHECK(s.puts == s.gets + s.dropped + s.cleared + s.size, "P2");
    check_pool_locked(&p);
    bm_pool_unlock(&p);
    bm_pool_destroy(&p);

    /* a sleeping take_latest is woken by a commit */
    CHECK(bm_pool_init(&p, 2, 64, BM_POLICY_BLOCK) == BM_OK, "init");
    waiter_t w;
    memset(&w, 0, sizeof w);
    w.p = &p;
    w.timeout = MS(20000);
    pthread_t t;
    spawn(&t, latest_waiter_fn, &w);
    wait_for_waiters(&p, 0, 1);
    int64_t tput = bm_now_ns();
    CHECK(put_frame(&p, 1, 8) == 0, "put");
    reap(t);
    CHECK(w.st == BM_OK && w.woke_ns - tput < MS(5000), "latest waiter: %s", st_name(w.st));
    bm_pool_lock(&p);
    check_pool_locked(&p);
    CHECK(p.nfree == 2, "released");
    bm_pool_unlock(&p);
    bm_pool_destroy(&p);
    printf("[%s] ok: producer timestamps, gaps over evictions/refusals/clears/take_latest, "
           "take_latest drops and names older slots, wakes on commit (%.2fs)\n",
           g_scenario, secs_since(t0));
}

int main(void) {
    const char *sc = getenv("POOL_STRESS_SCALE");
    harness_start(sc ? sc : getenv("RING_STRESS_SCALE"));
    unsigned wd = 180; /* per scenario; generous for valgrind */

    begin("1a mpmc block", wd);
    scenario_mpmc(BM_POLICY_BLOCK);
    begin("1b mpmc drop_oldest", wd);
    scenario_mpmc(BM_POLICY_DROP_OLDEST);
    begin("1c mpmc drop_newest", wd);
    scenario_mpmc(BM_POLICY_DROP_NEWEST);
    begin("2 shutdown", wd);
    scenario_shutdown();
    begin("3 policies", wd);
    scenario_policies();
    begin("4 sizes and deadlines", wd);
    scenario_sizes();
    begin("5 capture", wd);
    scenario_capture();
    harness_finish("pool_stress", "pool");
    return 0;
}
