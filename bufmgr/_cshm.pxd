# Declarations of the shared-memory frame pool (include/bufmgr/shmring.h).
# Every function is callable without the GIL; none touches Python objects.
# The statuses shared with ring.h/pool.h are redeclared here (this pxd is
# cimported by bufmgr/_shm.pyx alone, so nothing is declared twice there).
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

cdef extern from "bufmgr/shmring.h" nogil:
    int BM_OK, BM_FULL, BM_EMPTY, BM_TIMEOUT, BM_SHUTDOWN, BM_NOMEM, BM_INVALID
    int BM_REFUSED, BM_TOOBIG
    int BM_POLICY_BLOCK, BM_POLICY_DROP_OLDEST, BM_POLICY_DROP_NEWEST
    int64_t BM_NOWAIT, BM_FOREVER
    int64_t bm_now_ns()
    void bm_cpu_relax()

    int BM_SHM_ERRNO, BM_SHM_BADSEG, BM_SHM_VERSION, BM_SHM_TOOMANY, BM_SHM_BADNAME
    int BM_SHM_NOTOWNER, BM_SHM_BROKEN
    unsigned BM_SHM_LAYOUT_VERSION, BM_SHM_MAX_PARTICIPANTS, BM_SHM_MAX_SLOTS, BM_SHM_MAX_METADATA
    int BM_SHM_MAX_NDIM, BM_SHM_DTYPE_LEN, BM_SHM_NAME_MAX
    int64_t BM_SHM_TS_NOW
    uint32_t BM_SHM_NOBODY
    int BM_SLOT_FREE, BM_SLOT_WRITING, BM_SLOT_QUEUED, BM_SLOT_HELD

    ctypedef struct bm_shm_geometry:
        uint64_t nslots, frame_bytes, stride, metadata_bytes, meta_stride
        uint64_t data_off, total_bytes
        uint32_t policy, ndim
        uint64_t shape[8]
        char dtype[16]

    ctypedef struct bm_shm_slot:
        uint64_t seq
        int64_t timestamp_ns
        uint64_t nbytes
        uint64_t gap
        uint32_t state, owner, owner_gen, meta_len
        uint64_t frame_seq

    ctypedef struct bm_shm_header:
        bm_shm_geometry g
        int32_t creator_pid
        uint32_t shutdown
        uint64_t nqueued, nfree, nheld, dropped

    ctypedef struct bm_shm:
        unsigned char *base
        size_t size
        bm_shm_header *h
        bm_shm_slot *slots
        unsigned char *meta
        unsigned char *data
        uint32_t me, me_gen
        uint64_t dev, ino
        uint32_t own_data_bumps, own_space_bumps

    ctypedef struct bm_shm_stats:
        uint64_t puts, gets, dropped, cleared, underruns, reclaimed, high_water
        uint64_t reclaimed_slots, lock_recoveries, dead_participants, next_seq
        uint64_t size, held, free, writing, slots, frame_bytes, metadata_bytes
        uint32_t attached, shutdown, getters_waiting, putters_waiting

    ctypedef struct bm_shm_info:
        int32_t creator_pid
        int creator_alive
        uint32_t attached, alive
        int32_t pids[64]
        uint64_t nslots, frame_bytes, total_bytes

    int bm_shm_name_ok(const char *name)
    int bm_shm_create(bm_shm *r, const char *name, uint64_t nslots, uint64_t frame_bytes,
                      uint64_t metadata_bytes, int policy, uint32_t ndim, const uint64_t *shape,
                      const char *dtype, int *err)
    int bm_shm_attach(bm_shm *r, const char *name, char *why, size_t whylen, int *err)
    int bm_shm_rejoin(bm_shm *r)
    int bm_shm_leave_locked(bm_shm *r, uint32_t *remaining)
    void bm_shm_detach(bm_shm *r, uint32_t *remaining)
    int bm_shm_unlink_if_same(const char *name, uint64_t dev, uint64_t ino)
    int bm_shm_unlink_name(const char *name)
    int bm_shm_peek(const char *name, bm_shm_info *info, char *why, size_t whylen, int *err)
    int bm_shm_validate(const unsigned char *base, size_t size, int need_ready, char *why,
                        size_t whylen)

    int bm_shm_lock(bm_shm *r)
    int bm_shm_trylock_spin(bm_shm *r, int spins)
    void bm_shm_unlock(bm_shm *r)

    int bm_shm_reserve_locked(bm_shm *r, int64_t deadline, int *waited, uint32_t *slot)
    int bm_shm_abort_locked(bm_shm *r, uint32_t slot)
    int bm_shm_commit_locked(bm_shm *r, uint32_t slot, uint64_t nbytes, int64_t timestamp_ns,
                             uint32_t meta_len, uint64_t *seq)
    int bm_shm_take_locked(bm_shm *r, int64_t deadline, int *waited, uint64_t max_nbytes,
                           int latest, uint32_t *slot, uint64_t *need)
    int bm_shm_release_locked(bm_shm *r, uint32_t slot)
    uint64_t bm_shm_clear_locked(bm_shm *r)
    uint64_t bm_shm_shutdown_locked(bm_shm *r, int immediate)
    void bm_shm_stats_locked(const bm_shm *r, bm_shm_stats *s)
    int bm_shm_check_locked(const bm_shm *r)

    int bm_shm_reserve(bm_shm *r, int64_t deadline, int *waited, uint32_t *slot)
    int bm_shm_take(bm_shm *r, int64_t deadline, int *waited, uint64_t max_nbytes, int latest,
                    uint32_t *slot, uint64_t *need)
    int bm_shm_reap(bm_shm *r)
    void bm_shm_debug_hold_lock(bm_shm *r, int64_t ns)
    uint32_t bm_shm_word(const bm_shm *r, int getter)
    int bm_shm_wait_word(bm_shm *r, int getter, uint32_t seen, int64_t rel_ns)
    void bm_shm_wake(bm_shm *r, int getter, int n)

    # the asyncio watcher (bufmgr/_shm.pyx _Watcher)
    ctypedef struct bm_shm_watch_state:
        uint32_t word, own
        int primed
        uint32_t remote, delta
        int woken
        uint64_t avail
        uint32_t shutdown
        uint32_t others_waiting
    int bm_shm_watch(bm_shm *r, int getter, bm_shm_watch_state *w, int64_t rel_ns)
    void bm_shm_nudge(bm_shm *r, int getter)
