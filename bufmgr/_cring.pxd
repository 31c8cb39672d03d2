# Declarations of the C ring (include/bufmgr/ring.h). Every function is
# callable without the GIL; none of them touches Python objects.
from libc.stdint cimport int64_t, uint64_t

cdef extern from "bufmgr/ring.h" nogil:
    int64_t BM_NOWAIT
    int64_t BM_FOREVER

    ctypedef enum bm_status:
        BM_OK
        BM_FULL
        BM_EMPTY
        BM_TIMEOUT
        BM_SHUTDOWN
        BM_NOMEM
        BM_INVALID

    ctypedef enum bm_policy:
        BM_POLICY_BLOCK
        BM_POLICY_DROP_OLDEST
        BM_POLICY_DROP_NEWEST

    ctypedef struct bm_stats:
        uint64_t puts, gets, dropped, cleared, waits
        size_t high_water, size, maxsize, unfinished
        int shutdown

    ctypedef struct bm_items:
        void **buf
        size_t cap, head, count

    ctypedef struct bm_ring:
        void **buf
        size_t cap, head, count
        size_t maxsize
        size_t unfinished
        int shutdown
        uint64_t dropped

    int64_t bm_now_ns()
    void *bm_items_at(const bm_items *it, size_t i)
    void bm_items_free(bm_items *it)

    int bm_ring_init(bm_ring *r, size_t maxsize, int policy)
    void bm_ring_destroy(bm_ring *r)
    void bm_ring_reinit_after_fork(bm_ring *r)
    void bm_ring_lock(bm_ring *r)
    int bm_ring_trylock(bm_ring *r)
    int bm_ring_trylock_spin(bm_ring *r, int spins)
    void bm_ring_unlock(bm_ring *r)

    int bm_ring_put_locked(bm_ring *r, void *item, int64_t deadline, int *waited, void **dropped)
    size_t bm_ring_put_many_locked(bm_ring *r, void **items, size_t n, int64_t deadline,
                                   int *waited, void **dropped, size_t *ndropped, int *status)
    int bm_ring_get_locked(bm_ring *r, int64_t deadline, int *waited, void **out)
    size_t bm_ring_pop_many_locked(bm_ring *r, void **out, size_t max)
    int bm_ring_get_latest_locked(bm_ring *r, int64_t deadline, int *waited, void **out,
                                  bm_items *discarded)
    size_t bm_ring_clear_locked(bm_ring *r, bm_items *out)
    void bm_ring_shutdown_locked(bm_ring *r, int immediate, bm_items *out)
    int bm_ring_task_done_locked(bm_ring *r)
    int bm_ring_join_locked(bm_ring *r, int64_t deadline)
    void bm_ring_stats_locked(const bm_ring *r, bm_stats *s)

    # Watching without taking (FrameQueue's queue.Queue-style not_empty /
    # not_full / all_tasks_done, bufmgr/_compat.pxi), and the live `queue` view.
    ctypedef enum bm_watch:
        BM_WATCH_ITEMS
        BM_WATCH_ROOM
        BM_WATCH_ALL_DONE
    uint64_t bm_ring_events_locked(const bm_ring *r, int kind)
    int bm_ring_watch_locked(bm_ring *r, int kind, uint64_t seen, const uint64_t *kick,
                             uint64_t kick_seen, int64_t deadline)
    void bm_ring_kick_locked(bm_ring *r, int kind)
    int bm_ring_set_unfinished_locked(bm_ring *r, size_t n)
    void *bm_ring_peek_locked(const bm_ring *r, size_t i)
