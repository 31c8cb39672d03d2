/* bufmgr/pool.h - a fixed pool of equal-size frame slots with a FIFO of
 * queued slots, guarded by one mutex.
 *
 * Header-only so the Cython extension (FrameRing) and the C harness
 * (tests/c/pool_stress.c) compile the same code. It knows nothing about
 * Python: every function reports a status code (ring.h's bm_status plus
 * BM_REFUSED / BM_TOOBIG below).
 *
 * Storage is ONE allocation made by bm_pool_init: the slot data (slot i at
 * data + i * stride, stride = frame_bytes rounded up to 64, data 64-byte
 * aligned) followed by the per-slot metadata, the FIFO of queued slot
 * indices and the free stack. Nothing is allocated after init.
 *
 * Slot states (invariant P1, mutex held):
 *     nslots == nfree + nwriting + nqueued + nheld
 *   FREE    on the free stack; nobody touches its bytes.
 *   WRITING reserved by one producer, which copies into it WITHOUT the mutex,
 *           then commits (-> QUEUED) or aborts (-> FREE).
 *   QUEUED  in the FIFO; seq/timestamp_ns/nbytes are set; bytes immutable.
 *   HELD    taken by one consumer (a frame object, or a copy in progress
 *           when `copying` is set), which reads it WITHOUT the mutex, then
 *           releases it (-> FREE).
 * A slot's bytes are only ever touched by the one thread (or frame) that
 * owns it in WRITING/HELD, so copies run outside the mutex and cannot tear.
 *
 * Locking protocol: every *_locked function must be called with p->mu held
 * (bm_pool_lock / bm_pool_trylock). Functions taking a deadline may sleep on
 * a condition variable (which releases the mutex) until that absolute
 * bm_now_ns() deadline; BM_NOWAIT never sleeps, BM_FOREVER has no deadline.
 * Callers that must stay interruptible pass short deadlines (slices) and
 * call again; the `waited` flag carries "already counted" across slices.
 *
 * Accounting (invariant P2, mutex held):
 *     puts == gets + dropped + cleared + nqueued
 * where a put refused by a drop policy counts in puts and dropped, a frame
 * evicted by drop_oldest (or skipped by a take_latest) counts in dropped, and
 * frames emptied by clear() or an immediate shutdown count in cleared. seq is
 * assigned at commit, so FIFO order == seq order; refused puts get no seq.
 *
 * Gaps (issue 14): every put, refused ones too, has an ordinal, the value of
 * `puts` when it was counted, so FIFO order == ordinal order as well. A take
 * sets the slot's gap to the number of ordinals between the previously
 * delivered frame (any consumer, any take) and this one: the frames dropped,
 * refused or cleared in between (before the first delivery: since the start).
 */
#ifndef BUFMGR_POOL_H
#define BUFMGR_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ring.h" /* bm_status, bm_policy, BM_MALLOC/BM_FREE, platform.h */

#ifdef __cplusplus
extern "C" {
#endif

/* Statuses beyond ring.h's bm_status. */
#define BM_REFUSED 7 /* a drop policy refused the put (counted in puts+dropped) */
#define BM_TOOBIG 8  /* the oldest frame is larger than the caller's buffer; nothing changed */

/* commit_ts: stamp the frame with bm_now_ns() at commit instead of a
 * producer's timestamp (which must be >= 0). */
#define BM_POOL_TS_NOW ((int64_t)-1)

#define BM_POOL_ALIGN 64

typedef enum {
    BM_SLOT_FREE = 0,
    BM_SLOT_WRITING = 1,
    BM_SLOT_QUEUED = 2,
    BM_SLOT_HELD = 3
} bm_slot_state;

typedef struct {
    uint64_t seq;         /* valid from commit until the slot is freed */
    uint64_t ordinal;     /* QUEUED/HELD: `puts` when this put was counted (gaps) */
    uint64_t gap;         /* HELD: ordinals skipped since the previous delivery */
    int64_t timestamp_ns; /* the producer's, or bm_now_ns() at commit */
    size_t nbytes;        /* bytes written (<= frame_bytes) */
    int state;            /* bm_slot_state */
    int copying;          /* HELD by a copy in progress (get_into), not a frame */
} bm_slot;

typedef struct {
    uint64_t puts, gets, dropped, cleared, underruns;
    size_t high_water, size, held, free, writing, slots, frame_bytes;
    int shutdown;
} bm_pool_stats;

typedef struct {
    bm_mutex_t mu;
    bm_cond_t not_empty; /* a frame was queued (getters wait) */
    bm_cond_t slot_free; /* a slot became free (putters of "block" wait) */
    void *block;         /* the one allocation */
    unsigned char *data; /* 64-byte aligned slot storage */
    bm_slot *meta;       /* [nslots] */
    size_t *fifo;        /* [nslots] ring of queued slot indices, oldest at fifo[head] */
    size_t *free_stack;  /* [nslots] free slot indices, top at free_stack[nfree-1] */
    size_t nslots, frame_bytes, stride;
    size_t head, nqueued, nfree, nwriting, nheld;
    int policy;
    int shutdown; /* bm_shutdown_mode */
    unsigned getters_waiting, putters_waiting;
    uint64_t next_seq;
    uint64_t next_delivery; /* ordinal of the last frame taken + 1 (0: none yet) */
    uint64_t puts, gets, dropped, cleared, underruns;
    size_t high_water;
} bm_pool;

/* ---- lifetime --------------------------------------------------------- */

/* Bytes the single allocation needs, or 0 when the sizes overflow size_t. */
static inline size_t bm_pool_alloc_size(size_t nslots, size_t frame_bytes, size_t *stride_out) {
    const size_t a = BM_POOL_ALIGN;
    if (nslots == 0 || frame_bytes == 0 || frame_bytes > SIZE_MAX - (a - 1)) return 0;
    size_t stride = (frame_bytes + (a - 1)) & ~(a - 1);
    if (nslots > SIZE_MAX / stride) return 0;
    size_t data = nslots * stride;
    size_t per_meta = sizeof(bm_slot) + 2 * sizeof(size_t);
    if (nslots > SIZE_MAX / per_meta) return 0;
    size_t meta = nslots * per_meta;
    if (data > SIZE_MAX - meta - (a - 1)) return 0;
    if (stride_out) *stride_out = stride;
    return data + meta + (a - 1);
}

/* BM_OK; BM_INVALID when nslots/frame_bytes are 0 or their product (plus
 * metadata) overflows size_t; BM_NOMEM when allocation or the primitives fail. */
static inline int bm_pool_init(bm_pool *p, size_t nslots, size_t frame_bytes, int policy) {
    size_t stride = 0;
    memset(p, 0, sizeof(*p));
    size_t total = bm_pool_alloc_size(nslots, frame_bytes, &stride);
    if (total == 0) return BM_INVALID;
    void *block = BM_MALLOC(total);
    if (!block) return BM_NOMEM;
    uintptr_t base = ((uintptr_t)block + (BM_POOL_ALIGN - 1)) & ~(uintptr_t)(BM_POOL_ALIGN - 1);
    p->block = block;
    p->data = (unsigned char *)base;
    /* data is a multiple of 64 long, so the metadata after it is aligned too */
    p->meta = (bm_slot *)(p->data + nslots * stride);
    p->fifo = (size_t *)(p->meta + nslots);
    p->free_stack = p->fifo + nslots;
    p->nslots = nslots;
    p->frame_bytes = frame_bytes;
    p->stride = stride;
    p->policy = policy;
    for (size_t i = 0; i < nslots; i++) {
        p->meta[i].seq = 0;
        p->meta[i].ordinal = 0;
        p->meta[i].gap = 0;
        p->meta[i].timestamp_ns = 0;
        p->meta[i].nbytes = 0;
        p->meta[i].state = BM_SLOT_FREE;
        p->meta[i].copying = 0;
        /* pop order 0, 1, 2, ...: slot 0 is on top */
        p->free_stack[i] = nslots - 1 - i;
    }
    p->nfree = nslots;
    if (bm_mutex_init(&p->mu)) goto fail_block;
    if (bm_cond_init(&p->not_empty)) goto fail_mu;
    if (bm_cond_init(&p->slot_free)) goto fail_ne;
    return BM_OK;
fail_ne:
    bm_cond_destroy(&p->not_empty);
fail_mu:
    bm_mutex_destroy(&p->mu);
fail_block:
    BM_FREE(block);
    memset(p, 0, sizeof(*p));
    return BM_NOMEM;
}

/* Nobody may be waiting or holding a slot's bytes any more. */
static inline void bm_pool_destroy(bm_pool *p) {
    if (!p->block) return;
    bm_cond_destroy(&p->slot_free);
    bm_cond_destroy(&p->not_empty);
    bm_mutex_destroy(&p->mu);
    BM_FREE(p->block);
    p->block = NULL;
    p->data = NULL;
}

static inline void bm_pool_lock(bm_pool *p) { bm_mutex_lock(&p->mu); }
static inline int bm_pool_trylock(bm_pool *p) { return bm_mutex_trylock(&p->mu); }
/* See bm_ring_trylock_spin: critical sections here are O(1) too (frame
 * bytes are copied outside the mutex). */
static inline int bm_pool_trylock_spin(bm_pool *p, int spins) {
    return bm_mutex_trylock_spin(&p->mu, spins);
}
static inline void bm_pool_unlock(bm_pool *p) { bm_mutex_unlock(&p->mu); }

static inline unsigned char *bm_pool_slot_data(const bm_pool *p, size_t slot) {
    return p->data + slot * p->stride;
}
static inline const bm_slot *bm_pool_slot(const bm_pool *p, size_t slot) { return &p->meta[slot]; }

/* ---- internals (mutex held) ------------------------------------------- */

static inline size_t bm_pool__pop_free(bm_pool *p) { return p->free_stack[--p->nfree]; }

static inline void bm_pool__push_free(bm_pool *p, size_t s) {
    p->meta[s].state = BM_SLOT_FREE;
    p->meta[s].copying = 0;
    p->free_stack[p->nfree++] = s;
}

static inline size_t bm_pool__pop_queued(bm_pool *p) {
    size_t s = p->fifo[p->head];
    if (++p->head == p->nslots) p->head = 0;
    p->nqueued--;
    return s;
}

static inline void bm_pool__push_queued(bm_pool *p, size_t s) {
    size_t j = p->head + p->nqueued;
    if (j >= p->nslots) j -= p->nslots;
    p->fifo[j] = s;
    p->nqueued++;
}

static inline void bm_pool__wake_putters(bm_pool *p, size_t freed) {
    if (!p->putters_waiting || !freed) return;
    if (freed == 1) bm_cond_signal(&p->slot_free);
    else bm_cond_broadcast(&p->slot_free);
}

static inline void bm_pool__wake_getter(bm_pool *p) {
    if (p->getters_waiting) bm_cond_signal(&p->not_empty);
}

/* ---- operations (mutex held) ------------------------------------------ */

/* Reserve a slot for writing into *slot (state WRITING).
 *   a free slot if any; else by policy:
 *   drop_oldest: evict the oldest QUEUED frame (dropped++) and reuse its
 *                slot; none queued (all writing/held) -> BM_REFUSED
 *                (puts++, dropped++, underruns++).
 *   drop_newest: BM_REFUSED (puts++, dropped++; underruns++ too when no
 *                slot is queued either).
 *   block:       wait until `deadline` for a free slot: BM_FULL for
 *                BM_NOWAIT, BM_TIMEOUT when it passes. When the put starts
 *                waiting (first time *waited goes 0 -> 1) while no slot is
 *                queued (every slot writing/held), underruns++ (once per put).
 * BM_SHUTDOWN once shut down (checked first, and again after every wake-up).
 * `waited` may be NULL for a call that never waits. */
static inline int bm_pool_reserve_locked(bm_pool *p, int64_t deadline, int *waited, size_t *slot) {
    if (p->shutdown) return BM_SHUTDOWN;
    if (p->nfree == 0) {
        if (p->policy == BM_POLICY_DROP_OLDEST) {
            if (p->nqueued) {
                size_t s = bm_pool__pop_queued(p);
                p->dropped++;
                p->meta[s].state = BM_SLOT_WRITING;
                p->nwriting++;
                *slot = s;
                return BM_OK;
            }
            p->puts++;
            p->dropped++;
            p->underruns++;
            return BM_REFUSED;
        }
        if (p->policy == BM_POLICY_DROP_NEWEST) {
            p->puts++;
            p->dropped++;
            if (p->nqueued == 0) p->underruns++;
            return BM_REFUSED;
        }
        /* block: every wake-up re-checks the predicate, so a signal is never
         * wasted on a thread that then gives up while a slot is free. */
        while (p->nfree == 0) {
            if (p->shutdown) return BM_SHUTDOWN;
            if (deadline == BM_NOWAIT) return BM_FULL;
            if (waited && !*waited) {
                *waited = 1;
                if (p->nqueued == 0) p->underruns++;
            }
            p->putters_waiting++;
            int rc = bm_cond_wait_until(&p->slot_free, &p->mu, deadline);
            p->putters_waiting--;
            if (rc == BM_WAIT_TIMEDOUT && p->nfree == 0) {
                if (p->shutdown) return BM_SHUTDOWN;
                return BM_TIMEOUT;
            }
        }
        if (p->shutdown) return BM_SHUTDOWN;
    }
    size_t s = bm_pool__pop_free(p);
    p->meta[s].state = BM_SLOT_WRITING;
    p->nwriting++;
    *slot = s;
    return BM_OK;
}

/* Give a WRITING slot back unused (-> FREE). BM_INVALID if not WRITING. */
static inline int bm_pool_abort_locked(bm_pool *p, size_t slot) {
    if (slot >= p->nslots || p->meta[slot].state != BM_SLOT_WRITING) return BM_INVALID;
    p->nwriting--;
    bm_pool__push_free(p, slot);
    bm_pool__wake_putters(p, 1);
    return BM_OK;
}

/* Queue a WRITING slot holding `nbytes` bytes: seq = next_seq++, ordinal =
 * puts++, timestamp_ns = `timestamp_ns` (>= 0) or now for BM_POOL_TS_NOW,
 * high_water. Shut down meanwhile (either mode): the slot goes back to FREE
 * and BM_SHUTDOWN. BM_INVALID if not WRITING or the timestamp is another
 * negative value. */
static inline int bm_pool_commit_ts_locked(bm_pool *p, size_t slot, size_t nbytes,
                                           int64_t timestamp_ns, uint64_t *seq) {
    if (slot >= p->nslots || p->meta[slot].state != BM_SLOT_WRITING || nbytes > p->frame_bytes ||
        (timestamp_ns < 0 && timestamp_ns != BM_POOL_TS_NOW))
        return BM_INVALID;
    if (p->shutdown) {
        bm_pool_abort_locked(p, slot);
        return BM_SHUTDOWN;
    }
    bm_slot *m = &p->meta[slot];
    p->nwriting--;
    m->seq = p->next_seq++;
    m->ordinal = p->puts;
    m->gap = 0;
    m->timestamp_ns = timestamp_ns == BM_POOL_TS_NOW ? bm_now_ns() : timestamp_ns;
    m->nbytes = nbytes;
    m->state = BM_SLOT_QUEUED;
    bm_pool__push_queued(p, slot);
    p->puts++;
    if (p->nqueued > p->high_water) p->high_water = p->nqueued;
    if (seq) *seq = m->seq;
    bm_pool__wake_getter(p);
    return BM_OK;
}

/* commit_ts stamped now (the frame's timestamp is the commit time). */
static inline int bm_pool_commit_locked(bm_pool *p, size_t slot, size_t nbytes, uint64_t *seq) {
    return bm_pool_commit_ts_locked(p, slot, nbytes, BM_POOL_TS_NOW, seq);
}

/* The i-th queued slot, oldest first (i < nqueued). */
static inline size_t bm_pool_queued_at(const bm_pool *p, size_t i) {
    size_t j = p->head + i;
    if (j >= p->nslots) j -= p->nslots;
    return p->fifo[j];
}

/* A queued slot is being delivered (taken): its gap since the previous delivery. */
static inline void bm_pool__deliver(bm_pool *p, size_t s) {
    bm_slot *m = &p->meta[s];
    m->gap = m->ordinal - p->next_delivery; /* FIFO order == ordinal order: >= 0 */
    p->next_delivery = m->ordinal + 1;
}

/* Wait until a frame is queued (take's wait): BM_OK, BM_EMPTY for
 * BM_NOWAIT, BM_TIMEOUT, BM_SHUTDOWN once shut down and drained. */
static inline int bm_pool__wait_queued(bm_pool *p, int64_t deadline, int *waited) {
    while (p->nqueued == 0) {
        if (p->shutdown) return BM_SHUTDOWN;
        if (deadline == BM_NOWAIT) return BM_EMPTY;
        if (waited) *waited = 1;
        p->getters_waiting++;
        int rc = bm_cond_wait_until(&p->not_empty, &p->mu, deadline);
        p->getters_waiting--;
        if (rc == BM_WAIT_TIMEDOUT && p->nqueued == 0) {
            if (p->shutdown) return BM_SHUTDOWN;
            return BM_TIMEOUT;
        }
    }
    return BM_OK;
}

/* Take the oldest queued frame into *slot (state HELD; `copying` marks a
 * holder that is a copy in progress rather than a frame object); gets++.
 * Waits until `deadline` for one: BM_EMPTY for BM_NOWAIT, BM_TIMEOUT when it
 * passes, BM_SHUTDOWN once shut down AND nothing is queued (gets drain).
 * When the oldest frame is larger than `max_nbytes`, nothing changes:
 * BM_TOOBIG with its size in *need (pass SIZE_MAX for "any size"). */
static inline int bm_pool_take_locked(bm_pool *p, int64_t deadline, int *waited,
                                      size_t max_nbytes, int copying, size_t *slot, size_t *need) {
    int st = bm_pool__wait_queued(p, deadline, waited);
    if (st != BM_OK) return st;
    size_t s = p->fifo[p->head];
    if (p->meta[s].nbytes > max_nbytes) {
        if (need) *need = p->meta[s].nbytes;
        /* we may have consumed the wake-up meant for a getter that can take it */
        bm_pool__wake_getter(p);
        return BM_TOOBIG;
    }
    bm_pool__pop_queued(p);
    bm_pool__deliver(p, s);
    p->meta[s].state = BM_SLOT_HELD;
    p->meta[s].copying = copying ? 1 : 0;
    p->nheld++;
    p->gets++;
    *slot = s;
    if (need) *need = p->meta[s].nbytes;
    /* chain: more frames and more sleeping getters (a signal was consumed by a
     * BM_TOOBIG caller, or several commits raced one wake-up) */
    if (p->nqueued) bm_pool__wake_getter(p);
    return BM_OK;
}

/* Take the NEWEST queued frame into *slot (HELD by a frame object); every
 * older queued frame is freed and counted in dropped (its gap shows in the
 * taken frame's), and its slot index written to dropped_slots[0..*ndropped)
 * when dropped_slots is not NULL (room for nslots - 1 entries), so a caller
 * can release what it kept per slot. gets++. Waits like take. */
static inline int bm_pool_take_latest_locked(bm_pool *p, int64_t deadline, int *waited,
                                             size_t *slot, size_t *dropped_slots,
                                             size_t *ndropped) {
    size_t n = 0;
    int st = bm_pool__wait_queued(p, deadline, waited);
    if (ndropped) *ndropped = 0;
    if (st != BM_OK) return st;
    while (p->nqueued > 1) {
        size_t d = bm_pool__pop_queued(p);
        bm_pool__push_free(p, d);
        p->dropped++;
        if (dropped_slots) dropped_slots[n] = d;
        n++;
    }
    size_t s = bm_pool__pop_queued(p);
    p->head = 0; /* empty now */
    bm_pool__deliver(p, s);
    p->meta[s].state = BM_SLOT_HELD;
    p->meta[s].copying = 0;
    p->nheld++;
    p->gets++;
    *slot = s;
    if (ndropped) *ndropped = n;
    bm_pool__wake_putters(p, n);
    return BM_OK;
}

/* A HELD slot's holder is done (-> FREE). BM_INVALID if not HELD. */
static inline int bm_pool_release_locked(bm_pool *p, size_t slot) {
    if (slot >= p->nslots || p->meta[slot].state != BM_SLOT_HELD) return BM_INVALID;
    p->nheld--;
    bm_pool__push_free(p, slot);
    bm_pool__wake_putters(p, 1);
    return BM_OK;
}

/* Free every queued frame (counted as cleared); returns how many. */
static inline size_t bm_pool_clear_locked(bm_pool *p) {
    size_t n = p->nqueued;
    while (p->nqueued) bm_pool__push_free(p, bm_pool__pop_queued(p));
    p->head = 0;
    p->cleared += n;
    bm_pool__wake_putters(p, n);
    return n;
}

/* Shut down: puts fail from now on (and a put mid-copy fails at commit);
 * gets drain the queue then fail. immediate also frees the queued frames
 * (cleared); HELD frames stay valid until released. Every waiter wakes.
 * Returns how many frames were cleared. */
static inline size_t bm_pool_shutdown_locked(bm_pool *p, int immediate) {
    size_t n = 0;
    int mode = immediate ? BM_SHUT_IMMEDIATE : BM_SHUT_GRACEFUL;
    if (p->shutdown < mode) p->shutdown = mode;
    if (immediate) n = bm_pool_clear_locked(p);
    bm_cond_broadcast(&p->not_empty);
    bm_cond_broadcast(&p->slot_free);
    return n;
}

static inline void bm_pool_stats_locked(const bm_pool *p, bm_pool_stats *s) {
    s->puts = p->puts;
    s->gets = p->gets;
    s->dropped = p->dropped;
    s->cleared = p->cleared;
    s->underruns = p->underruns;
    s->high_water = p->high_water;
    s->size = p->nqueued;
    s->held = p->nheld;
    s->free = p->nfree;
    s->writing = p->nwriting;
    s->slots = p->nslots;
    s->frame_bytes = p->frame_bytes;
    s->shutdown = p->shutdown;
}

/* O(nslots) consistency check for tests: 0 when invariants P1/P2 hold and
 * every slot's state matches the FIFO and the free stack; else a nonzero
 * code naming the first broken rule. */
static inline int bm_pool_check_locked(const bm_pool *p) {
    size_t c[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < p->nslots; i++) {
        int st = p->meta[i].state;
        if (st < 0 || st > 3) return 1;
        c[st]++;
    }
    if (c[BM_SLOT_FREE] != p->nfree || c[BM_SLOT_WRITING] != p->nwriting ||
        c[BM_SLOT_QUEUED] != p->nqueued || c[BM_SLOT_HELD] != p->nheld)
        return 2;
    if (p->nfree + p->nwriting + p->nqueued + p->nheld != p->nslots) return 3;
    for (size_t i = 0; i < p->nfree; i++)
        if (p->meta[p->free_stack[i]].state != BM_SLOT_FREE) return 4;
    uint64_t prev = 0, prev_ord = 0;
    if (p->next_delivery > p->puts) return 9;
    for (size_t i = 0; i < p->nqueued; i++) {
        size_t j = p->head + i;
        if (j >= p->nslots) j -= p->nslots;
        const bm_slot *m = &p->meta[p->fifo[j]];
        if (m->state != BM_SLOT_QUEUED) return 5;
        if (i && m->seq <= prev) return 6; /* FIFO order == seq order */
        prev = m->seq;
        /* FIFO order == ordinal order, all after the last delivery (gaps >= 0) */
        if (m->ordinal < p->next_delivery || m->ordinal >= p->puts) return 9;
        if (i && m->ordinal <= prev_ord) return 9;
        prev_ord = m->ordinal;
    }
    if (p->puts != p->gets + p->dropped + p->cleared + p->nqueued) return 7;
    if (p->nqueued > p->high_water || p->high_water > p->nslots) return 8;
    return 0;
}

/* After fork() only the calling thread exists in the child: re-create the
 * primitives, and free the slots that belonged to threads that are gone (a
 * WRITING slot, or a HELD one being copied out). The forking thread is never
 * inside a put/get_into at that point. Frame-held slots stay held (the frame
 * objects were copied into the child too). */
static inline void bm_pool_reinit_after_fork(bm_pool *p) {
    bm_mutex_init(&p->mu);
    bm_cond_init(&p->not_empty);
    bm_cond_init(&p->slot_free);
    p->getters_waiting = p->putters_waiting = 0;
    for (size_t i = 0; i < p->nslots; i++) {
        bm_slot *m = &p->meta[i];
        if (m->state == BM_SLOT_WRITING) {
            p->nwriting--;
            bm_pool__push_free(p, i);
        } else if (m->state == BM_SLOT_HELD && m->copying) {
            p->nheld--;
            bm_pool__push_free(p, i);
        }
    }
}

#ifdef __cplusplus
}
#endif
#endif /* BUFMGR_POOL_H */
