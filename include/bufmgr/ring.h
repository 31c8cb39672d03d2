/* bufmgr/ring.h - a bounded (or growable) deque of void* guarded by one mutex.
 *
 * Header-only so the Cython extension and the C test harness compile the
 * same code. It knows nothing about Python: items are opaque pointers and
 * every function reports a status code; the caller owns the items it gets
 * back (got, evicted, refused or taken out by clear/shutdown).
 *
 * Locking protocol: every *_locked function must be called with r->mu held
 * (bm_ring_lock / bm_ring_trylock). Functions that take a deadline may wait
 * on a condition variable, which releases r->mu while asleep. None of them
 * allocates while waiting; only a push that must grow the storage mallocs.
 *
 * Accounting (invariant 4): at any moment with the mutex held
 *     puts == gets + dropped + cleared + count
 * where a refused drop_newest item counts in puts and dropped.
 */
#ifndef BUFMGR_RING_H
#define BUFMGR_RING_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Allocation hooks: a harness may define these before including the header
 * (e.g. to inject allocation failure on the growth path). */
#ifndef BM_MALLOC
#  define BM_MALLOC(n) malloc(n)
#endif
#ifndef BM_FREE
#  define BM_FREE(p) free(p)
#endif

#define BM_INITIAL_CAP 16

typedef enum {
    BM_OK = 0,
    BM_FULL = 1,      /* no room and the caller would not wait */
    BM_EMPTY = 2,     /* nothing queued and the caller would not wait */
    BM_TIMEOUT = 3,   /* the deadline passed while waiting */
    BM_SHUTDOWN = 4,  /* shut down (puts always; gets once drained) */
    BM_NOMEM = 5,     /* growing the storage failed; nothing changed */
    BM_INVALID = 6    /* task_done() called more times than items put */
} bm_status;

typedef enum {
    BM_POLICY_BLOCK = 0,       /* full: wait for room (or fail if not waiting) */
    BM_POLICY_DROP_OLDEST = 1, /* full: evict the oldest item, hand it back */
    BM_POLICY_DROP_NEWEST = 2  /* full: refuse the new item, hand it back */
} bm_policy;

typedef enum { BM_RUNNING = 0, BM_SHUT_GRACEFUL = 1, BM_SHUT_IMMEDIATE = 2 } bm_shutdown_mode;

typedef struct {
    uint64_t puts, gets, dropped, cleared, waits;
    size_t high_water, size, maxsize, unfinished;
    int shutdown;
} bm_stats;

/* Items taken out of the ring in one O(1) step (clear, get_latest,
 * immediate shutdown): the caller releases them after unlocking and then
 * frees `buf` with bm_items_free. */
typedef struct {
    void **buf;
    size_t cap, head, count;
} bm_items;

typedef struct {
    bm_mutex_t mu;
    bm_cond_t not_empty, not_full, all_done;
    void **buf;
    size_t cap, head, count;
    size_t maxsize; /* 0 = unbounded */
    int policy;
    int shutdown;
    size_t unfinished; /* for join(): put and not yet task_done/dropped */
    unsigned getters_waiting, putters_waiting, joiners_waiting;
    /* Of the waiting getters/putters, how many already have a wake-up on
     * its way (see bm__wake). Never more than the matching *_waiting. */
    unsigned getters_signaled, putters_signaled, joiners_signaled;
    /* Of the waiting getters/putters, how many are watchers (see
     * bm_ring_watch_locked): while any is, wake-ups are broadcast, because a
     * single signal may reach the real sleeper and leave the watcher asleep
     * until its deadline although its event happened. */
    unsigned getters_watching, putters_watching;
    uint64_t puts, gets, dropped, cleared, waits;
    size_t high_water;
} bm_ring;

static inline void *bm_items_at(const bm_items *it, size_t i) {
    size_t j = it->head + i;
    if (j >= it->cap) j -= it->cap;
    return it->buf[j];
}
static inline void bm_items_free(bm_items *it) {
    BM_FREE(it->buf);
    it->buf = NULL;
    it->cap = it->head = it->count = 0;
}

/* ---- lifetime --------------------------------------------------------- */

static inline int bm_ring_init(bm_ring *r, size_t maxsize, int policy) {
    memset(r, 0, sizeof(*r));
    r->maxsize = maxsize;
    r->policy = policy;
    if (bm_mutex_init(&r->mu)) return BM_NOMEM;
    if (bm_cond_init(&r->not_empty)) goto fail_mu;
    if (bm_cond_init(&r->not_full)) goto fail_ne;
    if (bm_cond_init(&r->all_done)) goto fail_nf;
    return BM_OK;
fail_nf:
    bm_cond_destroy(&r->not_full);
fail_ne:
    bm_cond_destroy(&r->not_empty);
fail_mu:
    bm_mutex_destroy(&r->mu);
    return BM_NOMEM;
}

/* The ring must be empty (take its items out first) and nobody waiting. */
static inline void bm_ring_destroy(bm_ring *r) {
    BM_FREE(r->buf);
    r->buf = NULL;
    bm_cond_destroy(&r->all_done);
    bm_cond_destroy(&r->not_full);
    bm_cond_destroy(&r->not_empty);
    bm_mutex_destroy(&r->mu);
}

/* After fork() only the calling thread exists in the child: a mutex another
 * thread held is in an unknown state. Re-create the primitives; counters and
 * items stay (a waiter from the parent does not exist in the child). */
static inline void bm_ring_reinit_after_fork(bm_ring *r) {
    bm_mutex_init(&r->mu);
    bm_cond_init(&r->not_empty);
    bm_cond_init(&r->not_full);
    bm_cond_init(&r->all_done);
    r->getters_waiting = r->putters_waiting = r->joiners_waiting = 0;
    r->getters_signaled = r->putters_signaled = r->joiners_signaled = 0;
    r->getters_watching = r->putters_watching = 0;
}

static inline void bm_ring_lock(bm_ring *r) { bm_mutex_lock(&r->mu); }
static inline int bm_ring_trylock(bm_ring *r) { return bm_mutex_trylock(&r->mu); }

/* Try to take the mutex, polling up to `spins` more times before giving
 * up. Every critical section is a handful of pointer moves and no holder
 * waits while holding the mutex (waits release it), so a running holder
 * lets go within about a hundred ns: polling is far cheaper than blocking,
 * which for a Python caller means handing the GIL to another thread. */
static inline int bm_ring_trylock_spin(bm_ring *r, int spins) {
    return bm_mutex_trylock_spin(&r->mu, spins);
}
static inline void bm_ring_unlock(bm_ring *r) { bm_mutex_unlock(&r->mu); }

/* ---- internals (mutex held) ------------------------------------------- */

static inline int bm__full(const bm_ring *r) { return r->maxsize && r->count >= r->maxsize; }

static inline int bm__grow(bm_ring *r) {
    size_t ncap = r->cap ? r->cap * 2 : BM_INITIAL_CAP;
    if (r->maxsize && ncap > r->maxsize) ncap = r->maxsize;
    if (ncap <= r->cap || ncap > SIZE_MAX / sizeof(void *)) return BM_NOMEM;
    void **nb = (void **)BM_MALLOC(ncap * sizeof(void *));
    if (!nb) return BM_NOMEM;
    for (size_t i = 0; i < r->count; i++) {
        size_t j = r->head + i;
        if (j >= r->cap) j -= r->cap;
        nb[i] = r->buf[j];
    }
    BM_FREE(r->buf);
    r->buf = nb;
    r->cap = ncap;
    r->head = 0;
    return BM_OK;
}

/* Append; room (w.r.t. maxsize) is already checked. */
static inline int bm__push(bm_ring *r, void *item) {
    if (r->count == r->cap && bm__grow(r) != BM_OK) return BM_NOMEM;
    size_t j = r->head + r->count;
    if (j >= r->cap) j -= r->cap;
    r->buf[j] = item;
    r->count++;
    r->puts++;
    r->unfinished++;
    if (r->count > r->high_water) r->high_water = r->count;
    return BM_OK;
}

static inline void *bm__pop_front(bm_ring *r) {
    void *item = r->buf[r->head];
    r->head++;
    if (r->head == r->cap) r->head = 0;
    r->count--;
    return item;
}

static inline void *bm__pop_back(bm_ring *r) {
    size_t j = r->head + r->count - 1;
    if (j >= r->cap) j -= r->cap;
    r->count--;
    return r->buf[j];
}

/* Wake sleepers on `cv` for `n` new items or free places (BM__ALL: all of
 * them, for shutdown or join). `waiting` threads sleep there and `*signaled`
 * of them already have a wake-up on its way, so only the others need one: a
 * consumer draining a full queue past seven parked producers sends seven
 * signals, not one per item (a redundant pthread_cond_signal still takes the
 * condvar's internal lock and often makes a futex syscall). */
#define BM__ALL SIZE_MAX
static inline void bm__wake(bm_cond_t *cv, unsigned waiting, unsigned *signaled, size_t n) {
    if (!n || waiting == *signaled) return;
    if (n == 1) {
        bm_cond_signal(cv);
        (*signaled)++;
    } else {
        bm_cond_broadcast(cv);
        *signaled = waiting;
    }
}

/* Bookkeeping after any return from a wait. We cannot tell a wake-up from a
 * timeout or a spurious return, so we assume we took a pending wake-up:
 * that can only under-count the wake-ups in flight, which costs a spare
 * signal later and never leaves a sleeper without one. */
#define BM__WAIT_DONE(waiting, signaled) \
    do {                                  \
        (waiting)--;                      \
        if (signaled) (signaled)--;       \
    } while (0)

/* An item left the queue without being got: it counts as done for join(). */
static inline void bm__retire(bm_ring *r, size_t n) {
    r->unfinished = r->unfinished > n ? r->unfinished - n : 0;
    if (r->unfinished == 0)
        bm__wake(&r->all_done, r->joiners_waiting, &r->joiners_signaled, BM__ALL);
}

static inline void bm__wake_putters(bm_ring *r, size_t freed) {
    bm__wake(&r->not_full, r->putters_waiting, &r->putters_signaled,
             r->putters_watching && freed ? BM__ALL : freed);
}

static inline void bm__wake_getters(bm_ring *r, size_t added) {
    bm__wake(&r->not_empty, r->getters_waiting, &r->getters_signaled,
             r->getters_watching && added ? BM__ALL : added);
}

static inline void bm__count_wait(bm_ring *r, int *waited) {
    if (waited && !*waited) {
        r->waits++;
        *waited = 1;
    }
}

/* Wait until `ready(r)` or shutdown or the deadline. Returns BM_OK when
 * ready, BM_SHUTDOWN, BM_TIMEOUT, or `nowait_status` for BM_NOWAIT.
 * Every wake-up re-checks the predicate, so a signal is never wasted on a
 * thread that then gives up while the condition holds (faster-fifo #24). */
#define BM__WAIT_FOR(r, cond, counter, signaled, ready, stop_on_shutdown, deadline, waited,       \
                     nowait_status)                                                            \
    do {                                                                                      \
        while (!(ready)) {                                                                    \
            if ((stop_on_shutdown) && (r)->shutdown) return BM_SHUTDOWN;                      \
            if ((deadline) == BM_NOWAIT) return (nowait_status);                              \
            bm__count_wait((r), (waited));                                                    \
            (r)->counter++;                                                                   \
            int bm__rc = bm_cond_wait_until(&(r)->cond, &(r)->mu, (deadline));                \
            BM__WAIT_DONE((r)->counter, (r)->signaled);                                       \
            if (bm__rc == BM_WAIT_TIMEDOUT && !(ready)) {                                     \
                if ((stop_on_shutdown) && (r)->shutdown) return BM_SHUTDOWN;                  \
                return BM_TIMEOUT;                                                            \
            }                                                                                 \
        }                                                                                     \
    } while (0)

/* ---- operations (mutex held) ------------------------------------------ */

/* Put one item. On BM_OK, *dropped is NULL, or the evicted oldest item
 * (drop_oldest), or `item` itself when refused (drop_newest); the caller
 * owns *dropped. On any other status the ring is unchanged and `item` is
 * still the caller's. Only BM_POLICY_BLOCK ever waits. */
static inline int bm_ring_put_locked(bm_ring *r, void *item, int64_t deadline, int *waited,
                                     void **dropped) {
    *dropped = NULL;
    if (r->shutdown) return BM_SHUTDOWN;
    if (bm__full(r)) {
        if (r->policy == BM_POLICY_DROP_NEWEST) {
            r->puts++;
            r->dropped++;
            *dropped = item;
            return BM_OK;
        }
        if (r->policy == BM_POLICY_DROP_OLDEST) {
            /* Evict under the same lock consumers take: the check-then-act
             * race of `if q.full(): q.get_nowait()` cannot happen here. */
            *dropped = bm__pop_front(r);
            r->dropped++;
            bm__retire(r, 1);
            int st = bm__push(r, item); /* count < cap now: cannot fail */
            (void)st;
            return BM_OK;
        }
        BM__WAIT_FOR(r, not_full, putters_waiting, putters_signaled, !bm__full(r) || r->shutdown, 0,
                     deadline, waited, BM_FULL);
        if (r->shutdown) return BM_SHUTDOWN;
    }
    if (bm__push(r, item) != BM_OK) return BM_NOMEM;
    bm__wake_getters(r, 1);
    return BM_OK;
}

/* Put items[0..n) in order, applying the policy to each. Returns how many
 * items were consumed (queued or dropped); *status says why it stopped
 * early (BM_FULL, BM_TIMEOUT, BM_SHUTDOWN, BM_NOMEM) or BM_OK. Dropped
 * items are appended to dropped[] (room for n), *ndropped counts them. */
static inline size_t bm_ring_put_many_locked(bm_ring *r, void *const *items, size_t n,
                                             int64_t deadline, int *waited, void **dropped,
                                             size_t *ndropped, int *status) {
    size_t i = 0, added = 0;
    *status = BM_OK;
    while (i < n) {
        void *d = NULL;
        if (r->shutdown) { *status = BM_SHUTDOWN; break; }
        if (bm__full(r)) {
            if (r->policy == BM_POLICY_BLOCK) {
                /* wake consumers for what we added before we sleep */
                bm__wake_getters(r, added);
                added = 0;
                int st = BM_OK;
                do {
                    if (r->shutdown) { st = BM_SHUTDOWN; break; }
                    if (deadline == BM_NOWAIT) { st = BM_FULL; break; }
                    bm__count_wait(r, waited);
                    r->putters_waiting++;
                    int rc = bm_cond_wait_until(&r->not_full, &r->mu, deadline);
                    BM__WAIT_DONE(r->putters_waiting, r->putters_signaled);
                    if (rc == BM_WAIT_TIMEDOUT && bm__full(r) && !r->shutdown) {
                        st = BM_TIMEOUT;
                        break;
                    }
                } while (bm__full(r));
                if (st != BM_OK) { *status = st; break; }
                continue;
            }
            int st = bm_ring_put_locked(r, items[i], BM_NOWAIT, waited, &d);
            (void)st; /* drop policies cannot fail once full */
            if (d) dropped[(*ndropped)++] = d;
            if (d != items[i]) added++;
            i++;
            continue;
        }
        if (bm__push(r, items[i]) != BM_OK) { *status = BM_NOMEM; break; }
        added++;
        i++;
    }
    bm__wake_getters(r, added);
    return i;
}

/* Get the oldest item into *out. */
static inline int bm_ring_get_locked(bm_ring *r, int64_t deadline, int *waited, void **out) {
    BM__WAIT_FOR(r, not_empty, getters_waiting, getters_signaled, r->count > 0, 1, deadline, waited,
                 BM_EMPTY);
    *out = bm__pop_front(r);
    r->gets++;
    bm__wake_putters(r, 1);
    return BM_OK;
}

/* Take up to `max` more queued items without waiting; returns how many. */
static inline size_t bm_ring_pop_many_locked(bm_ring *r, void **out, size_t max) {
    size_t n = 0;
    while (n < max && r->count) out[n++] = bm__pop_front(r);
    r->gets += n;
    bm__wake_putters(r, n);
    return n;
}

/* Get the newest item; every older queued item is moved to *discarded
 * (counted as dropped and done for join) for the caller to release. */
static inline int bm_ring_get_latest_locked(bm_ring *r, int64_t deadline, int *waited,
                                            void **out, bm_items *discarded) {
    discarded->buf = NULL;
    discarded->cap = discarded->head = discarded->count = 0;
    BM__WAIT_FOR(r, not_empty, getters_waiting, getters_signaled, r->count > 0, 1, deadline, waited,
                 BM_EMPTY);
    *out = bm__pop_back(r);
    r->gets++;
    size_t n = r->count;
    if (n) {
        /* O(1) under the lock: hand the whole storage over */
        discarded->buf = r->buf;
        discarded->cap = r->cap;
        discarded->head = r->head;
        discarded->count = n;
        r->buf = NULL;
        r->cap = r->head = r->count = 0;
        r->dropped += n;
        bm__retire(r, n);
    }
    bm__wake_putters(r, n + 1);
    return BM_OK;
}

/* Remove every queued item into *out (counted as cleared, done for join). */
static inline size_t bm_ring_clear_locked(bm_ring *r, bm_items *out) {
    size_t n = r->count;
    out->buf = r->buf;
    out->cap = r->cap;
    out->head = r->head;
    out->count = n;
    r->buf = NULL;
    r->cap = r->head = r->count = 0;
    r->cleared += n;
    bm__retire(r, n);
    bm__wake_putters(r, n);
    return n;
}

/* CPython 3.13 Queue.shutdown: puts fail from now on; gets drain then fail.
 * immediate also empties the queue into *out (cleared) so join() returns.
 * Either way every waiter is woken. `out` may be NULL when !immediate. */
static inline void bm_ring_shutdown_locked(bm_ring *r, int immediate, bm_items *out) {
    if (out) { out->buf = NULL; out->cap = out->head = out->count = 0; }
    if (r->shutdown < (immediate ? BM_SHUT_IMMEDIATE : BM_SHUT_GRACEFUL))
        r->shutdown = immediate ? BM_SHUT_IMMEDIATE : BM_SHUT_GRACEFUL;
    if (immediate && out) bm_ring_clear_locked(r, out);
    bm__wake(&r->not_empty, r->getters_waiting, &r->getters_signaled, BM__ALL);
    bm__wake(&r->not_full, r->putters_waiting, &r->putters_signaled, BM__ALL);
    bm__wake(&r->all_done, r->joiners_waiting, &r->joiners_signaled, BM__ALL);
}

static inline int bm_ring_task_done_locked(bm_ring *r) {
    if (r->unfinished == 0) return BM_INVALID;
    bm__retire(r, 1);
    return BM_OK;
}

/* Wait until every item put was task_done()'d, dropped or cleared. */
static inline int bm_ring_join_locked(bm_ring *r, int64_t deadline) {
    BM__WAIT_FOR(r, all_done, joiners_waiting, joiners_signaled, r->unfinished == 0, 0, deadline,
                 NULL, BM_TIMEOUT);
    return BM_OK;
}

static inline void bm_ring_stats_locked(const bm_ring *r, bm_stats *s) {
    s->puts = r->puts;
    s->gets = r->gets;
    s->dropped = r->dropped;
    s->cleared = r->cleared;
    s->waits = r->waits;
    s->high_water = r->high_water;
    s->size = r->count;
    s->maxsize = r->maxsize;
    s->unfinished = r->unfinished;
    s->shutdown = r->shutdown;
}

/* ---- watching without taking (queue.Queue's not_empty/not_full/all_tasks_done)
 *
 * queue.Queue exposes its three Condition objects; code such as
 * multiprocessing.dummy's Connection.poll() sleeps on `not_empty` without
 * getting anything. These calls let a binding offer that: a watcher sleeps
 * on the ring's own condition variable, counted among the getters (ITEMS),
 * putters (ROOM) or joiners (ALL_DONE), so the ring's ordinary signals wake
 * it, until the ring's event count for that kind moves away from the value
 * the watcher saw, or *kick (a counter the binding bumps, under the mutex,
 * for an explicit notify) moves away from kick_seen, or the deadline. */
typedef enum { BM_WATCH_ITEMS = 0, BM_WATCH_ROOM = 1, BM_WATCH_ALL_DONE = 2 } bm_watch;

/* A number that changes whenever the ring does something a watcher of
 * `kind` is woken for: ITEMS an item put (or a shutdown), ROOM a place freed
 * (or a shutdown), ALL_DONE the unfinished count changing or reaching 0 (or
 * a shutdown). The shutdown mode sits in the low two bits. */
static inline uint64_t bm_ring_events_locked(const bm_ring *r, int kind) {
    uint64_t mode = (uint64_t)r->shutdown & 3u;
    if (kind == BM_WATCH_ITEMS) return (r->puts << 2) | mode;
    if (kind == BM_WATCH_ROOM) return ((r->gets + r->dropped + r->cleared) << 2) | mode;
    if (r->unfinished == 0) return UINT64_MAX - 3 + mode;
    return ((uint64_t)r->unfinished << 2) | mode;
}

/* Returns BM_OK once the events or the kick moved, BM_TIMEOUT at the
 * deadline (BM_NOWAIT: check only). Takes nothing from the ring. A watcher
 * may have taken a wake-up the ring meant for a real getter or putter (a
 * condition variable wakes whichever sleeper it likes), so on the way out
 * it passes one on while items (room) are still there to be had. */
static inline int bm_ring_watch_locked(bm_ring *r, int kind, uint64_t seen,
                                       const volatile uint64_t *kick, uint64_t kick_seen,
                                       int64_t deadline) {
    bm_cond_t *cv = kind == BM_WATCH_ITEMS ? &r->not_empty
                    : kind == BM_WATCH_ROOM ? &r->not_full : &r->all_done;
    unsigned *waiting = kind == BM_WATCH_ITEMS ? &r->getters_waiting
                        : kind == BM_WATCH_ROOM ? &r->putters_waiting : &r->joiners_waiting;
    unsigned *signaled = kind == BM_WATCH_ITEMS ? &r->getters_signaled
                         : kind == BM_WATCH_ROOM ? &r->putters_signaled : &r->joiners_signaled;
    /* ALL_DONE needs no count: its only wake-up (unfinished reaching 0) is
     * a broadcast already. */
    unsigned none = 0;
    unsigned *watching = kind == BM_WATCH_ITEMS ? &r->getters_watching
                         : kind == BM_WATCH_ROOM ? &r->putters_watching : &none;
    int st = BM_OK;
    while (bm_ring_events_locked(r, kind) == seen && !(kick && *kick != kick_seen)) {
        if (deadline == BM_NOWAIT) { st = BM_TIMEOUT; break; }
        (*waiting)++;
        (*watching)++;
        int rc = bm_cond_wait_until(cv, &r->mu, deadline);
        (*watching)--;
        BM__WAIT_DONE(*waiting, *signaled);
        if (rc == BM_WAIT_TIMEDOUT && bm_ring_events_locked(r, kind) == seen
            && !(kick && *kick != kick_seen)) {
            st = BM_TIMEOUT;
            break;
        }
    }
    if (kind == BM_WATCH_ITEMS && r->count) bm__wake_getters(r, r->count);
    if (kind == BM_WATCH_ROOM && !bm__full(r))
        bm__wake_putters(r, r->maxsize ? r->maxsize - r->count : BM__ALL);
    return st;
}

/* Wake every sleeper on `kind`'s condition variable (a binding's explicit
 * notify, after bumping its kick counter under the mutex). Ordinary getters,
 * putters and joiners woken by it re-check their predicate and sleep again. */
static inline void bm_ring_kick_locked(bm_ring *r, int kind) {
    if (kind == BM_WATCH_ITEMS) {
        r->getters_signaled = r->getters_waiting;
        if (r->getters_waiting) bm_cond_broadcast(&r->not_empty);
    } else if (kind == BM_WATCH_ROOM) {
        r->putters_signaled = r->putters_waiting;
        if (r->putters_waiting) bm_cond_broadcast(&r->not_full);
    } else {
        r->joiners_signaled = r->joiners_waiting;
        if (r->joiners_waiting) bm_cond_broadcast(&r->all_done);
    }
}

/* queue.Queue lets `q.unfinished_tasks = 0` forgive outstanding tasks; set
 * the count to n <= the current one (BM_INVALID otherwise), waking joiners
 * when it reaches 0. */
static inline int bm_ring_set_unfinished_locked(bm_ring *r, size_t n) {
    if (n > r->unfinished) return BM_INVALID;
    bm__retire(r, r->unfinished - n);
    return BM_OK;
}

/* Index i (0 = oldest) of the queued items, or NULL when out of range. */
static inline void *bm_ring_peek_locked(const bm_ring *r, size_t i) {
    if (i >= r->count) return NULL;
    size_t j = r->head + i;
    if (j >= r->cap) j -= r->cap;
    return r->buf[j];
}

#ifdef __cplusplus
}
#endif
#endif /* BUFMGR_RING_H */
