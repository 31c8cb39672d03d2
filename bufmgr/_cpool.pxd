# Declarations of the C frame pool (include/bufmgr/pool.h). Every function is
# callable without the GIL; none of them touches Python objects.
#
# The shared statuses/policies (BM_OK, BM_FULL, BM_EMPTY, BM_TIMEOUT,
# BM_SHUTDOWN, BM_NOMEM, BM_INVALID, BM_POLICY_*, BM_NOWAIT, BM_FOREVER,
# bm_now_ns) are ring.h's and are declared once, in bufmgr/_cring.pxd;
# only the pool's own names are declared here so that a module cimporting
# both with `*` sees no duplicates.
from libc.stdint cimport int64_t, uint64_t

cdef extern from "bufmgr/pool.h" nogil:
    int BM_REFUSED
    int BM_TOOBIG
    int64_t BM_POOL_TS_NOW
    size_t BM_POOL_ALIGN

    ctypedef enum bm_slot_state:
        BM_SLOT_FREE
        BM_SLOT_WRITING
        BM_SLOT_QUEUED
        BM_SLOT_HELD

    ctypedef struct bm_slot:
        uint64_t seq
        uint64_t ordinal
        uint64_t gap
        int64_t timestamp_ns
        size_t nbytes
        int state
        int copying

    ctypedef struct bm_pool_stats:
        uint64_t puts, gets, dropped, cleared, underruns
        size_t high_water, size, held, free, writing, slots, frame_bytes
        int shutdown

    ctypedef struct bm_pool:
        size_t nslots, frame_bytes, stride
        size_t nqueued, nfree, nwriting, nheld
        int shutdown

    size_t bm_pool_alloc_size(size_t nslots, size_t frame_bytes, size_t *stride_out)
    int bm_pool_init(bm_pool *p, size_t nslots, size_t frame_bytes, int policy)
    void bm_pool_destroy(bm_pool *p)
    void bm_pool_reinit_after_fork(bm_pool *p)
    void bm_pool_lock(bm_pool *p)
    int bm_pool_trylock(bm_pool *p)
    int bm_pool_trylock_spin(bm_pool *p, int spins)
    void bm_pool_unlock(bm_pool *p)
    unsigned char *bm_pool_slot_data(const bm_pool *p, size_t slot)
    const bm_slot *bm_pool_slot(const bm_pool *p, size_t slot)

    int bm_pool_reserve_locked(bm_pool *p, int64_t deadline, int *waited, size_t *slot)
    int bm_pool_abort_locked(bm_pool *p, size_t slot)
    int bm_pool_commit_locked(bm_pool *p, size_t slot, size_t nbytes, uint64_t *seq)
    int bm_pool_commit_ts_locked(bm_pool *p, size_t slot, size_t nbytes, int64_t timestamp_ns,
                                 uint64_t *seq)
    size_t bm_pool_queued_at(const bm_pool *p, size_t i)
    int bm_pool_take_latest_locked(bm_pool *p, int64_t deadline, int *waited, size_t *slot,
                                   size_t *dropped_slots, size_t *ndropped)
    int bm_pool_take_locked(bm_pool *p, int64_t deadline, int *waited, size_t max_nbytes,
                            int copying, size_t *slot, size_t *need)
    int bm_pool_release_locked(bm_pool *p, size_t slot)
    size_t bm_pool_clear_locked(bm_pool *p)
    size_t bm_pool_shutdown_locked(bm_pool *p, int immediate)
    void bm_pool_stats_locked(const bm_pool *p, bm_pool_stats *s)
    int bm_pool_check_locked(const bm_pool *p)
