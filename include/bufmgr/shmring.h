/* bufmgr/shmring.h - a frame pool that lives entirely in a named POSIX
 * shared-memory segment, shared by processes that may die at any instant.
 *
 * Header-only, like pool.h, so the Cython extension (bufmgr/_shm.pyx:
 * SharedFrameRing) and the C harness (tests/c/shm_stress.c) compile the same
 * code. Linux only: it needs robust process-shared mutexes and futexes.
 * Nothing here knows about Python; every function returns a status code
 * (ring.h's bm_status, pool.h's BM_REFUSED/BM_TOOBIG, BM_SHM_* below).
 *
 * ---- Segment layout, version 3 (BM_SHM_LAYOUT_VERSION) ---------------------
 *   [0, header)         bm_shm_header: geometry (immutable, hashed), the
 *                       robust mutex, two futex words, counters, derived
 *                       queue state, the participants table
 *   slots_off           bm_shm_slot[nslots]: per-slot descriptors (the truth)
 *   fifo_off            uint32[nslots]: ring of QUEUED slot indices (derived)
 *   free_off            uint32[nslots]: stack of FREE slot indices (derived)
 *   meta_off            nslots * meta_stride bytes: per-slot metadata area
 *   data_off (page)     nslots * stride bytes: frame data, 64-byte aligned slots
 * Large frames (frame_bytes >= BM_SHM_HUGE, 2 MiB) get a huge-page friendly
 * layout (new in version 3): data_off and the file size are multiples of
 * 2 MiB, and so is the stride when rounding it up costs at most 1/16 of a
 * frame (6,220,800 B -> 6 MiB: +1.1%), else the stride is whole 4 KiB
 * pages. Where the system gives shared memory transparent huge pages
 * (tmpfs mounted huge=advise/always/within_size, or shmem_enabled=force),
 * every slot is then covered by whole 2 MiB pages; bm_shm__map places such
 * mappings at 2 MiB-aligned addresses and madvise(MADV_HUGEPAGE)s the data
 * area (huge=advise needs that; elsewhere it is a no-op, errors ignored).
 * Every mapping is then populated (bm_shm__populate): the creator's
 * allocates the whole segment up front, so a /dev/shm too small fails
 * create() with ENOSPC rather than a later SIGBUS, and no process takes a
 * page fault per 4 KiB on its first pass through the slots. The header
 * area up to its last page in use and the data area are populated, not
 * the gap up to the 2 MiB boundary; the slots' padding is (at most 1/16
 * of a frame).
 * Every offset is a pure function of (nslots, frame_bytes, metadata_bytes);
 * bm_shm_validate recomputes them and checks them, the sizes, the magic, the
 * version, sizeof(header), sizeof(pthread_mutex_t) and an FNV-1a hash of
 * the geometry against the file's st_size BEFORE anything past the header
 * is touched: a foreign, truncated, corrupted or other-version segment is
 * refused with a message, never read out of bounds.
 *
 * ---- Slot states and ownership ---------------------------------------------
 * FREE / WRITING / QUEUED / HELD as in pool.h. A WRITING or HELD slot names
 * its owner: (participant index + 1, the entry's generation). A participant
 * is one attachment of one process: (pid, /proc/<pid>/stat starttime), so a
 * recycled pid is never mistaken for the dead process. Frame bytes and
 * metadata are written and read OUTSIDE the mutex by the slot's owner only.
 *
 * ---- Crash safety (invariant 6) ---------------------------------------------
 * Any process may be SIGKILLed at any instruction, also inside a critical
 * section. Recovery is simple and total:
 *  - The lock is a PTHREAD_MUTEX_ROBUST | PTHREAD_PROCESS_SHARED mutex. The
 *    next locker after a dead owner gets EOWNERDEAD and calls
 *    bm_shm__recover_locked: reap participants that are dead, then REBUILD
 *    every derived field (FIFO order from the QUEUED slots' seq, the free
 *    stack, the counts, the waiter totals, next_seq) from the per-slot state
 *    array, then repair the counters (below), then pthread_mutex_consistent.
 *    Every step is idempotent: a recoverer that dies too is recovered by
 *    the next one.
 *  - Each slot state change is ONE aligned 32-bit store with release order,
 *    made after the descriptor fields it publishes (BM_SHM_ORDER between
 *    steps whose order recovery relies on). A slot that is WRITING or HELD
 *    by a participant that is gone is FREED (reclaimed_slots++): a
 *    half-written frame is never delivered, a dead consumer's frames come
 *    back. Liveness is checked (kill(pid, 0) + zombie state + starttime) on
 *    every wait slice that times out (rate-limited to one scan per 50 ms per
 *    segment), before a drop policy would refuse or a put would block for
 *    lack of a free slot, at join and at leave.
 *  - Waiting never uses a process-shared condvar (a waiter killed inside
 *    pthread_cond_wait can wedge glibc's condvar): sleepers FUTEX_WAIT on a
 *    32-bit word (data_word for getters, space_word for putters) that
 *    wakers bump under the mutex, FUTEX_WAKE only when a waiter count says
 *    someone may sleep, in slices of at most BM_SHM_SLICE_NS. Waiter counts
 *    are kept per participant, so a dead sleeper's count is dropped with it.
 *
 * ---- Accounting (invariant 4), exact at every lock acquisition -------------
 *     puts == next_seq == gets + dropped + reclaimed + cleared + size
 *     slots == free + writing + queued + held
 * Every put is given an ordinal (the slot's `seq` field, from next_seq),
 * also one refused by a drop policy (counted in puts and dropped), so
 * ordinal gaps are exactly the frames a consumer missed (Frame.gap). The
 * seq a frame is known by (frame_seq, from next_frame_seq) numbers only the
 * frames committed, as pool.h's seq does (refused puts get none): FIFO
 * order is the order of both. gets counts frames at delivery (like pool.h). reclaimed
 * counts FRAMES whose fate a crash left undetermined: a seq was assigned,
 * but the frame was neither got, dropped, cleared nor left queued (e.g. a
 * producer killed between assigning the seq and queueing the slot).
 * reclaimed_slots counts SLOTS taken back from dead participants (a dead
 * consumer's held frames, which were already counted in gets, and a dead
 * producer's half-written slots, which never had a seq): not part of the
 * identity. Repair: puts = max(puts, next_seq); then any shortfall of the
 * right-hand side is added to reclaimed (and an excess, impossible with the
 * write order used here, raises puts and next_seq).
 */
#ifndef BUFMGR_SHMRING_H
#define BUFMGR_SHMRING_H

#if !defined(__linux__)
#  error "bufmgr/shmring.h needs Linux (robust process-shared mutexes, futexes)"
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "pool.h" /* bm_status, BM_REFUSED/BM_TOOBIG, slot states, policies, bm_now_ns */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- statuses beyond ring.h / pool.h ---------------------------------------- */
#define BM_SHM_ERRNO 20    /* a system call failed: errno in *err */
#define BM_SHM_BADSEG 21   /* not a (valid, complete) bufmgr segment: see why[] */
#define BM_SHM_VERSION 22  /* a bufmgr segment of another layout version */
#define BM_SHM_TOOMANY 23  /* the participants table is full */
#define BM_SHM_BADNAME 24  /* name fails bm_shm_name_ok */
#define BM_SHM_NOTOWNER 25 /* the slot is not WRITING/HELD by this participant */
#define BM_SHM_BROKEN 26   /* the mutex is ENOTRECOVERABLE (cannot happen by design) */

#define BM_SHM_MAGIC 0x314d485346554d42ull /* "BMUFSHM1" little-endian */
#define BM_SHM_LAYOUT_VERSION 3u /* 2: frame_seq (FrameRing's seq numbering), *_woken;
                                  * 3: 2 MiB-aligned data area for large frames */
#define BM_SHM_MAX_PARTICIPANTS 64u
#define BM_SHM_MAX_NDIM 8
#define BM_SHM_DTYPE_LEN 16
#define BM_SHM_NAME_PREFIX "bufmgr-"
#define BM_SHM_NAME_MAX 120 /* bytes, prefix included, no leading '/' */
#define BM_SHM_MAX_SLOTS (1u << 24)
#define BM_SHM_MAX_METADATA (1u << 20)
#define BM_SHM_ALIGN 64u
#define BM_SHM_PAGE 4096u
#define BM_SHM_HUGE (2u << 20) /* x86-64/arm64 PMD size: frames this large get the huge layout */
#define BM_SHM_SLICE_NS 50000000LL /* longest single futex sleep: 50 ms (invariant 3) */
#define BM_SHM_REAP_EVERY_NS 50000000LL /* liveness scans: at most one per 50 ms per segment */
/* Before a waiter registers as a sleeper it spins, mutex NOT held, for at
 * most this long watching its futex word (a peer process on another core
 * usually commits / frees within a microsecond or two): that saves the
 * FUTEX_WAIT + FUTEX_WAKE pair and a context switch per hand-off. Bounded
 * and once per wait slice (<= 4 us per 50 ms while idle): never a busy-wait
 * while idle. 0 disables it (-DBM_SHM_SPIN_NS=0). */
#ifndef BM_SHM_SPIN_NS
#  define BM_SHM_SPIN_NS 4000LL
#endif
#define BM_SHM_NOBODY UINT32_MAX
#define BM_SHM_TS_NOW INT64_MIN /* commit: timestamp = bm_now_ns() */

/* Compiler barrier: keeps the program order of stores that recovery relies
 * on (a SIGKILLed process's executed stores all reach memory; only the
 * compiler could reorder them). */
#define BM_SHM_ORDER() __atomic_signal_fence(__ATOMIC_SEQ_CST)

/* Test-only crash points: the C harness defines BM_SHM_CRASHPOINTS and sets
 * bm_shm_crash_at to make the process SIGKILL itself at point N (each point
 * sits between two stores of a critical section). */
#ifdef BM_SHM_CRASHPOINTS
static int bm_shm_crash_at = -1;
#  define BM_SHM_CRASH(n)                                   \
    do {                                                    \
        if (bm_shm_crash_at == (n)) raise(SIGKILL);         \
    } while (0)
#else
#  define BM_SHM_CRASH(n) ((void)0)
#endif

/* ---- shared structures (all fixed-width; layout checked by version+sizes) --- */

typedef struct {
    uint64_t magic;
    uint32_t version;
    uint32_t header_bytes; /* sizeof(bm_shm_header) */
    uint64_t total_bytes;  /* == the file's st_size */
    uint64_t nslots, frame_bytes, stride, metadata_bytes, meta_stride;
    uint64_t slots_off, fifo_off, free_off, meta_off, data_off;
    uint32_t policy, max_participants;
    uint32_t ndim, mutex_bytes;
    uint64_t shape[BM_SHM_MAX_NDIM];
    char dtype[BM_SHM_DTYPE_LEN]; /* e.g. numpy's dtype.str "<f4"; "" = bytes */
} bm_shm_geometry;

typedef struct {
    int32_t pid;          /* 0: entry unused (atomic: read without the mutex) */
    uint32_t gen;         /* bumped at each join: (index, gen) names a participant */
    uint64_t start_token; /* /proc/<pid>/stat starttime; 0 when unreadable */
    uint32_t getters_waiting, putters_waiting; /* its sleepers right now */
    uint32_t creator;
    uint32_t pad;
} bm_shm_participant;

typedef struct {
    uint64_t seq;          /* QUEUED/HELD: the put's ordinal (refused puts have one too) */
    int64_t timestamp_ns;  /* QUEUED/HELD: the producer's or bm_now_ns() at commit */
    uint64_t nbytes;       /* QUEUED/HELD: bytes written (<= frame_bytes) */
    uint64_t gap;          /* HELD: ordinals skipped since the previous delivery */
    uint32_t state;        /* bm_slot_state: ONE release store per transition */
    uint32_t owner;        /* WRITING/HELD: participant index + 1; else 0 */
    uint32_t owner_gen;    /* WRITING/HELD: that participant's gen */
    uint32_t meta_len;     /* QUEUED/HELD: bytes of metadata in the slot's area */
    uint64_t frame_seq;    /* QUEUED/HELD: Frame.seq: committed frames only (pool.h's seq) */
    uint64_t pad;
} bm_shm_slot; /* 64 bytes */

typedef struct {
    bm_shm_geometry g;
    uint64_t geometry_check; /* FNV-1a of g */
    int32_t creator_pid;
    uint32_t ready; /* 1 once the creator finished initialising (release store, last) */
    uint64_t creator_token;
    /* ---- under mu ---- */
    _Alignas(64) pthread_mutex_t mu;
    _Alignas(64) uint32_t data_word; /* getters FUTEX_WAIT here; bumped on commit/shutdown */
    uint32_t space_word;             /* putters FUTEX_WAIT here; bumped when a slot frees */
    uint32_t getters_waiting, putters_waiting; /* sums of the participants' counts */
    /* of those, how many a FUTEX_WAKE was already sent to (each returning
     * sleeper takes one back): wakers only call FUTEX_WAKE while some
     * sleeper is still owed one, not on every commit/free until the woken
     * sleeper is back under the mutex. Always <= *_waiting; a rebuild
     * resets them to 0 (at worst a spare wake-up, never a missing one). */
    uint32_t getters_woken, putters_woken;
    uint32_t shutdown;               /* bm_shutdown_mode */
    uint32_t attached;               /* participants registered */
    uint32_t has_delivered, pad0;
    uint64_t head, nqueued, nfree, nwriting, nheld; /* derived: rebuilt by recovery */
    uint64_t next_seq, last_delivered; /* ordinals (puts, refused ones too) */
    uint64_t next_frame_seq;           /* frames committed: the next frame_seq */
    uint64_t puts, gets, dropped, cleared, underruns, reclaimed, high_water;
    uint64_t reclaimed_slots, lock_recoveries, dead_participants;
    int64_t last_reap_ns; /* atomic */
    bm_shm_participant parts[BM_SHM_MAX_PARTICIPANTS];
} bm_shm_header;

/* ---- the process-local handle ------------------------------------------------ */

typedef struct {
    unsigned char *base;
    size_t size;
    bm_shm_header *h;
    bm_shm_slot *slots;
    uint32_t *fifo, *free_stack;
    unsigned char *meta, *data;
    uint32_t me, me_gen; /* this attachment's participant entry (BM_SHM_NOBODY: none) */
    int32_t me_pid;
    uint64_t dev, ino;   /* of the file, to unlink only our own segment */
    int wake_get, wake_put; /* pending FUTEX_WAKE counts, under mu; sent after unlock */
    /* bumps of data_word / space_word made through THIS handle by an
     * operation (commit, free, shutdown; not a recovery's rebuild), under mu.
     * The process-local layer wakes its own asyncio waiters directly after
     * such an operation, so its watcher (bm_shm_watch) counts only the other
     * bumps. Wraps like the words. */
    uint32_t own_data_bumps, own_space_bumps;
} bm_shm;

typedef struct {
    uint64_t puts, gets, dropped, cleared, underruns, reclaimed, high_water;
    uint64_t reclaimed_slots, lock_recoveries, dead_participants, next_seq;
    uint64_t size, held, free, writing, slots, frame_bytes, metadata_bytes;
    uint32_t attached, shutdown, getters_waiting, putters_waiting;
} bm_shm_stats;

/* For `bufmgr shm list`: a read-only look at a segment. */
typedef struct {
    int32_t creator_pid;
    int creator_alive;
    uint32_t attached, alive;
    int32_t pids[BM_SHM_MAX_PARTICIPANTS];
    uint64_t nslots, frame_bytes, total_bytes;
} bm_shm_info;

/* ---- small helpers ----------------------------------------------------------- */

static inline uint64_t bm_shm__round(uint64_t x, uint64_t a, int *ovf) {
    if (x > UINT64_MAX - (a - 1)) {
        *ovf = 1;
        return 0;
    }
    return (x + (a - 1)) & ~(a - 1);
}

static inline uint64_t bm_shm__mul(uint64_t a, uint64_t b, int *ovf) {
    if (a && b > UINT64_MAX / a) {
        *ovf = 1;
        return 0;
    }
    return a * b;
}

static inline uint64_t bm_shm__add(uint64_t a, uint64_t b, int *ovf) {
    if (a > UINT64_MAX - b) {
        *ovf = 1;
        return 0;
    }
    return a + b;
}

static inline uint64_t bm_shm__fnv(const void *p, size_t n) {
    const unsigned char *c = (const unsigned char *)p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* "bufmgr-" + 1..(NAME_MAX-7) of [A-Za-z0-9_.-]. 1 if valid. */
static inline int bm_shm_name_ok(const char *name) {
    size_t plen = sizeof(BM_SHM_NAME_PREFIX) - 1, n = strlen(name);
    if (n <= plen || n > BM_SHM_NAME_MAX || strncmp(name, BM_SHM_NAME_PREFIX, plen) != 0) return 0;
    for (size_t i = plen; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static inline void bm_shm__path(char *out, const char *name) {
    out[0] = '/';
    memcpy(out + 1, name, strlen(name) + 1);
}

/* Fill every geometry field from the three sizes. BM_INVALID when out of
 * range or the total overflows. Pure: attach re-runs it to check a header. */
static inline int bm_shm_layout(bm_shm_geometry *g, uint64_t nslots, uint64_t frame_bytes,
                                uint64_t metadata_bytes) {
    int ovf = 0;
    if (nslots == 0 || nslots > BM_SHM_MAX_SLOTS || frame_bytes == 0 ||
        metadata_bytes > BM_SHM_MAX_METADATA)
        return BM_INVALID;
    g->nslots = nslots;
    g->frame_bytes = frame_bytes;
    g->metadata_bytes = metadata_bytes;
    int huge = frame_bytes >= BM_SHM_HUGE;
    g->stride = bm_shm__round(frame_bytes, BM_SHM_ALIGN, &ovf);
    if (huge) {
        uint64_t whole = bm_shm__round(frame_bytes, BM_SHM_HUGE, &ovf);
        g->stride = whole - frame_bytes <= frame_bytes / 16 ? whole
                                                            : bm_shm__round(frame_bytes, BM_SHM_PAGE, &ovf);
    }
    g->meta_stride = bm_shm__round(metadata_bytes, 8, &ovf);
    uint64_t off = bm_shm__round(sizeof(bm_shm_header), BM_SHM_ALIGN, &ovf);
    g->slots_off = off;
    off += nslots * sizeof(bm_shm_slot); /* nslots <= 2^24: no overflow */
    g->fifo_off = off;
    off += bm_shm__round(nslots * 4, BM_SHM_ALIGN, &ovf);
    g->free_off = off;
    off += bm_shm__round(nslots * 4, BM_SHM_ALIGN, &ovf);
    g->meta_off = off;
    off += nslots * g->meta_stride;
    g->data_off = bm_shm__round(off, huge ? BM_SHM_HUGE : BM_SHM_PAGE, &ovf);
    off = bm_shm__add(g->data_off, bm_shm__mul(nslots, g->stride, &ovf), &ovf);
    if (huge) off = bm_shm__round(off, BM_SHM_HUGE, &ovf); /* the last slot's tail: whole pages too */
    g->total_bytes = off;
    if (ovf || off > (uint64_t)(SIZE_MAX / 2) || off > (uint64_t)INT64_MAX) return BM_INVALID;
    return BM_OK;
}

/* mmap `size` bytes of `fd` MAP_SHARED. A mapping of 2 MiB or more is
 * placed at a 2 MiB-aligned address (reserve size + 2 MiB of PROT_NONE
 * address space, map the file over its aligned part with MAP_FIXED, unmap
 * the rest): a huge page can back a range only where the virtual and the
 * file offset agree modulo 2 MiB, and the kernel aligns shared file
 * mappings itself only where it thinks huge pages possible. The result is
 * unmapped with munmap(base, size) like any mapping. */
static inline unsigned char *bm_shm__map(size_t size, int prot, int fd) {
    if (size >= BM_SHM_HUGE && size <= SIZE_MAX - BM_SHM_HUGE) {
        size_t span = size + BM_SHM_HUGE;
        unsigned char *res = (unsigned char *)mmap(NULL, span, PROT_NONE,
                                                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (res != MAP_FAILED) {
            uintptr_t a = ((uintptr_t)res + (BM_SHM_HUGE - 1)) & ~(uintptr_t)(BM_SHM_HUGE - 1);
            unsigned char *aligned = (unsigned char *)a;
            /* replaces our own reservation only: no other mapping is touched */
            unsigned char *p = (unsigned char *)mmap(aligned, size, prot, MAP_SHARED | MAP_FIXED, fd, 0);
            if (p == MAP_FAILED) {
                int e = errno;
                munmap(res, span);
                errno = e;
                return (unsigned char *)MAP_FAILED;
            }
            size_t mapped = (size + (BM_SHM_PAGE - 1)) & ~(size_t)(BM_SHM_PAGE - 1);
            if (aligned > res) munmap(res, (size_t)(aligned - res));
            if (aligned + mapped < res + span) munmap(aligned + mapped, (size_t)(res + span - (aligned + mapped)));
            return p;
        }
    }
    return (unsigned char *)mmap(NULL, size, prot, MAP_SHARED, fd, 0);
}

/* Ask for transparent huge pages on a large-frame segment's data area
 * (whole 2 MiB pages by the layout): needed where /dev/shm is mounted
 * huge=advise, harmless elsewhere. Advice only: EINVAL (no THP in this
 * kernel), or anything else, changes nothing. */
static inline void bm_shm__advise(unsigned char *base, const bm_shm_geometry *g) {
#ifdef MADV_HUGEPAGE
    if (g->frame_bytes >= BM_SHM_HUGE && ((uintptr_t)base & (BM_SHM_HUGE - 1)) == 0)
        (void)madvise(base + g->data_off, (size_t)(g->total_bytes - g->data_off), MADV_HUGEPAGE);
#else
    (void)base;
    (void)g;
#endif
}

/* Fault the whole mapping in now, writable (MADV_POPULATE_WRITE, Linux
 * 5.14+), after bm_shm__advise so huge pages are used where allowed. For
 * the creator this allocates the segment's memory: a /dev/shm too small
 * for it fails here, with ENOSPC, instead of a SIGBUS in whichever process
 * first touches the missing page; and no process pays a page fault per
 * 4 KiB on its first pass through the slots (a 6 MB slot: 1,519 faults,
 * ~5 ms on the machine in the README, on the producer's copy). 0, or the
 * errno that makes creation fail; a kernel without it (EINVAL) faults
 * pages in on first touch as before. */
static inline int bm_shm__populate_range(unsigned char *p, size_t n) {
#ifdef MADV_POPULATE_WRITE
    for (;;) {
        if (n == 0 || madvise(p, n, MADV_POPULATE_WRITE) == 0) return 0;
        int e = errno;
        if (e == EINTR || e == EAGAIN) continue;
        if (e == EFAULT) return ENOSPC; /* "a SIGBUS would have been generated": tmpfs is full */
        if (e == ENOMEM || e == EHWPOISON) return e;
        return 0; /* EINVAL, EPERM...: not supported here, lazily faulted */
    }
#else
    (void)p;
    (void)n;
    return 0;
#endif
}

static inline int bm_shm__populate(unsigned char *base, const bm_shm_geometry *g) {
    uint64_t head = (g->meta_off + g->nslots * g->meta_stride + (BM_SHM_PAGE - 1)) & ~(uint64_t)(BM_SHM_PAGE - 1);
    if (head > g->data_off) head = g->data_off;
    int e = bm_shm__populate_range(base, (size_t)head);
    return e ? e : bm_shm__populate_range(base + g->data_off, (size_t)(g->total_bytes - g->data_off));
}

static inline void bm_shm__bind(bm_shm *r, unsigned char *base, size_t size) {
    r->base = base;
    r->size = size;
    r->h = (bm_shm_header *)base;
    r->slots = (bm_shm_slot *)(base + r->h->g.slots_off);
    r->fifo = (uint32_t *)(base + r->h->g.fifo_off);
    r->free_stack = (uint32_t *)(base + r->h->g.free_off);
    r->meta = base + r->h->g.meta_off;
    r->data = base + r->h->g.data_off;
}

/* Validate a mapping of `size` bytes (the file's st_size) as a bufmgr
 * segment of this layout version (BM_SHM_LAYOUT_VERSION), reading only its first sizeof(bm_shm_header) bytes (and
 * none at all when it is shorter). BM_OK, BM_SHM_VERSION or BM_SHM_BADSEG,
 * with a sentence in why[]. `need_ready` also requires the creator to have
 * finished (ready == 1). */
static inline int bm_shm_validate(const unsigned char *base, size_t size, int need_ready,
                                  char *why, size_t whylen) {
#define BM_SHM__BAD(...)                                  \
    do {                                                  \
        if (why && whylen) snprintf(why, whylen, __VA_ARGS__); \
        return BM_SHM_BADSEG;                             \
    } while (0)
    /* work on an aligned copy of at most `size` bytes: `base` may be any
     * buffer (a test's bytes object), and nothing past `size` is read */
    bm_shm_header copy;
    const bm_shm_header *h = &copy;
    memset(&copy, 0, sizeof copy);
    if (size) memcpy(&copy, base, size < sizeof copy ? size : sizeof copy);
    if (size < sizeof(uint64_t) + sizeof(uint32_t))
        BM_SHM__BAD("segment is truncated: %zu bytes, smaller than any header", size);
    if (h->g.magic != BM_SHM_MAGIC) BM_SHM__BAD("not a bufmgr segment (bad magic number)");
    if (h->g.version != BM_SHM_LAYOUT_VERSION) {
        if (why && whylen)
            snprintf(why, whylen, "segment has layout version %u; this bufmgr reads version %u",
                     (unsigned)h->g.version, (unsigned)BM_SHM_LAYOUT_VERSION);
        return BM_SHM_VERSION;
    }
    if (size < sizeof(bm_shm_header))
        BM_SHM__BAD("segment is truncated: %zu bytes, the header alone needs %zu", size,
                    sizeof(bm_shm_header));
    if (h->g.header_bytes != sizeof(bm_shm_header) || h->g.mutex_bytes != sizeof(pthread_mutex_t))
        BM_SHM__BAD("segment was made by an incompatible build (header %u bytes, here %zu)",
                    (unsigned)h->g.header_bytes, sizeof(bm_shm_header));
    if (h->geometry_check != bm_shm__fnv(&h->g, sizeof(h->g)))
        BM_SHM__BAD("segment header is corrupted (geometry checksum mismatch)");
    bm_shm_geometry want;
    memset(&want, 0, sizeof(want));
    if (bm_shm_layout(&want, h->g.nslots, h->g.frame_bytes, h->g.metadata_bytes) != BM_OK)
        BM_SHM__BAD("segment header is corrupted (sizes out of range)");
    if (want.stride != h->g.stride || want.meta_stride != h->g.meta_stride ||
        want.slots_off != h->g.slots_off || want.fifo_off != h->g.fifo_off ||
        want.free_off != h->g.free_off || want.meta_off != h->g.meta_off ||
        want.data_off != h->g.data_off || want.total_bytes != h->g.total_bytes)
        BM_SHM__BAD("segment header is corrupted (inconsistent offsets)");
    if (h->g.total_bytes != (uint64_t)size)
        BM_SHM__BAD("segment is truncated or padded: %zu bytes, its header says %llu", size,
                    (unsigned long long)h->g.total_bytes);
    if (h->g.policy > BM_POLICY_DROP_NEWEST || h->g.max_participants != BM_SHM_MAX_PARTICIPANTS ||
        h->g.ndim > BM_SHM_MAX_NDIM || memchr(h->g.dtype, 0, BM_SHM_DTYPE_LEN) == NULL)
        BM_SHM__BAD("segment header is corrupted (policy, participants, shape or dtype)");
    if (need_ready && h->ready != 1)
        BM_SHM__BAD("segment is not initialised (its creator is still setting it up, or died doing so)");
    return BM_OK;
#undef BM_SHM__BAD
}

/* ---- liveness ------------------------------------------------------------------ */

/* /proc/<pid>/stat: state letter and starttime (field 22). 0 on success. */
static inline int bm_shm__proc_stat(int32_t pid, char *state, uint64_t *start) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may contain spaces and ')' */
    if (!p || p[1] != ' ') return -1;
    p += 2;
    *state = *p;
    /* fields after comm: 3=state ... 22=starttime: skip 19 separators */
    for (int f = 3; f < 22; f++) {
        p = strchr(p, ' ');
        if (!p) return -1;
        p++;
    }
    *start = strtoull(p, NULL, 10);
    return 0;
}

static inline uint64_t bm_shm_start_token(int32_t pid) {
    char st;
    uint64_t t = 0;
    return bm_shm__proc_stat(pid, &st, &t) == 0 ? t : 0;
}

/* 0 when the process (pid, token) is gone: no such pid, a zombie, or the
 * pid now belongs to a process started at another time. 1 otherwise
 * (including when /proc cannot tell: a live process is never reaped). */
static inline int bm_shm_pid_alive(int32_t pid, uint64_t token) {
    if (pid <= 0) return 0;
    if (kill(pid, 0) != 0 && errno == ESRCH) return 0;
    char st;
    uint64_t start;
    if (bm_shm__proc_stat(pid, &st, &start) == 0) {
        if (st == 'Z' || st == 'X' || st == 'x') return 0;
        if (token && start != token) return 0;
    } else if (errno == ENOENT) {
        return 0;
    }
    return 1;
}

/* ---- futex ----------------------------------------------------------------------- */

/* Not FUTEX_PRIVATE: the word is shared between processes. */
static inline void bm_shm__futex_wait(uint32_t *word, uint32_t seen, int64_t rel_ns) {
    if (rel_ns <= 0) return;
    struct timespec ts = {(time_t)(rel_ns / 1000000000LL), (long)(rel_ns % 1000000000LL)};
    syscall(SYS_futex, word, FUTEX_WAIT, seen, &ts, NULL, 0); /* EAGAIN/EINTR/ETIMEDOUT: re-check */
}

static inline void bm_shm__futex_wake(uint32_t *word, int n) {
    syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* ---- derived-state rebuild and recovery (mutex held) ----------------------------- */

static inline int bm_shm__owner_live_entry(const bm_shm *r, const bm_shm_slot *s) {
    uint32_t o = s->owner;
    if (o == 0 || o > BM_SHM_MAX_PARTICIPANTS) return 0;
    const bm_shm_participant *p = &r->h->parts[o - 1];
    return __atomic_load_n(&p->pid, __ATOMIC_RELAXED) != 0 && p->gen == s->owner_gen;
}

static inline void bm_shm__sift(const bm_shm *r, uint32_t *a, uint64_t start, uint64_t end) {
    uint64_t root = start;
    while (2 * root + 1 < end) {
        uint64_t child = 2 * root + 1, sw = root;
        if (r->slots[a[sw]].seq < r->slots[a[child]].seq) sw = child;
        if (child + 1 < end && r->slots[a[sw]].seq < r->slots[a[child + 1]].seq) sw = child + 1;
        if (sw == root) return;
        uint32_t t = a[root];
        a[root] = a[sw];
        a[sw] = t;
        root = sw;
    }
}

/* heapsort a[0..n) by slot seq: O(n log n), no allocation */
static inline void bm_shm__sort_by_seq(const bm_shm *r, uint32_t *a, uint64_t n) {
    if (n < 2) return;
    for (uint64_t s = n / 2; s-- > 0;) bm_shm__sift(r, a, s, n);
    for (uint64_t end = n - 1; end > 0; end--) {
        uint32_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        bm_shm__sift(r, a, 0, end);
    }
}

/* Rebuild everything derived from the slot states and repair the counters
 * (see the header comment). Idempotent; wakes every sleeper afterwards. */
static inline void bm_shm__rebuild_locked(bm_shm *r) {
    bm_shm_header *h = r->h;
    uint64_t n = h->g.nslots, nq = 0, nf = 0, nw = 0, nh = 0, maxseq1 = 0, maxfseq1 = 0;
    for (uint64_t i = 0; i < n; i++) {
        bm_shm_slot *s = &r->slots[i];
        uint32_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
        if (st > BM_SLOT_HELD) st = BM_SLOT_FREE; /* garbage: nobody can own it */
        if ((st == BM_SLOT_WRITING || st == BM_SLOT_HELD) && !bm_shm__owner_live_entry(r, s)) {
            /* owner gone: a half-written frame is never delivered; a dead
             * consumer's frame (already counted in gets) comes back */
            st = BM_SLOT_FREE;
            h->reclaimed_slots++;
        }
        if (st == BM_SLOT_FREE) {
            s->owner = 0;
            __atomic_store_n(&s->state, BM_SLOT_FREE, __ATOMIC_RELEASE);
            r->free_stack[nf++] = (uint32_t)i;
        } else if (st == BM_SLOT_QUEUED) {
            r->fifo[nq++] = (uint32_t)i;
            if (s->seq + 1 > maxseq1) maxseq1 = s->seq + 1;
            if (s->frame_seq + 1 > maxfseq1) maxfseq1 = s->frame_seq + 1;
        } else if (st == BM_SLOT_HELD) {
            nh++;
            if (s->seq + 1 > maxseq1) maxseq1 = s->seq + 1;
            if (s->frame_seq + 1 > maxfseq1) maxfseq1 = s->frame_seq + 1;
        } else {
            nw++;
        }
    }
    bm_shm__sort_by_seq(r, r->fifo, nq); /* FIFO order == seq order */
    h->head = 0;
    h->nqueued = nq;
    h->nfree = nf;
    h->nwriting = nw;
    h->nheld = nh;
    if (h->next_seq < maxseq1) h->next_seq = maxseq1;
    if (h->next_frame_seq < maxfseq1) h->next_frame_seq = maxfseq1;
    uint32_t gw = 0, pw = 0, att = 0;
    for (uint32_t i = 0; i < BM_SHM_MAX_PARTICIPANTS; i++) {
        bm_shm_participant *p = &h->parts[i];
        if (__atomic_load_n(&p->pid, __ATOMIC_RELAXED) == 0) continue;
        att++;
        gw += p->getters_waiting;
        pw += p->putters_waiting;
    }
    h->getters_waiting = gw;
    h->putters_waiting = pw;
    h->getters_woken = h->putters_woken = 0;
    h->attached = att;
    if (h->high_water < nq) h->high_water = nq;
    if (h->high_water > n) h->high_water = n;
    if (h->shutdown > BM_SHUT_IMMEDIATE) h->shutdown = BM_SHUT_IMMEDIATE;
    /* counters: every seq ever assigned is one frame put */
    if (h->puts < h->next_seq) h->puts = h->next_seq;
    uint64_t rhs = h->gets + h->dropped + h->reclaimed + h->cleared + h->nqueued;
    if (h->puts > rhs) {
        h->reclaimed += h->puts - rhs;
    } else if (h->puts < rhs) {
        h->puts = rhs;
        if (h->next_seq < rhs) h->next_seq = rhs;
    }
    if (h->next_frame_seq > h->next_seq) h->next_frame_seq = h->next_seq; /* (corruption only) */
    __atomic_add_fetch(&h->data_word, 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&h->space_word, 1, __ATOMIC_RELEASE);
    r->wake_get = r->wake_put = INT_MAX;
}

/* Drop participant entry i (dead, or leaving): its waiter counts go, its
 * slots are freed by the rebuild the caller runs next. */
static inline void bm_shm__drop_entry_locked(bm_shm *r, uint32_t i) {
    bm_shm_participant *p = &r->h->parts[i];
    p->getters_waiting = p->putters_waiting = 0;
    p->creator = 0;
    BM_SHM_ORDER();
    __atomic_store_n(&p->pid, 0, __ATOMIC_RELEASE);
}

/* Liveness scan with the mutex held: reap every dead participant other than
 * ourselves; rebuild if any. Returns how many were reaped. */
static inline int bm_shm__reap_locked(bm_shm *r) {
    bm_shm_header *h = r->h;
    int reaped = 0;
    __atomic_store_n(&h->last_reap_ns, bm_now_ns(), __ATOMIC_RELAXED);
    for (uint32_t i = 0; i < BM_SHM_MAX_PARTICIPANTS; i++) {
        bm_shm_participant *p = &h->parts[i];
        int32_t pid = __atomic_load_n(&p->pid, __ATOMIC_RELAXED);
        if (pid == 0 || pid == (int32_t)getpid()) continue; /* we are alive */
        if (!bm_shm_pid_alive(pid, p->start_token)) {
            bm_shm__drop_entry_locked(r, i);
            h->dead_participants++;
            reaped++;
        }
    }
    if (reaped) bm_shm__rebuild_locked(r);
    return reaped;
}

static inline int bm_shm__reap_due(const bm_shm *r) {
    return bm_now_ns() - __atomic_load_n(&r->h->last_reap_ns, __ATOMIC_RELAXED) >=
           BM_SHM_REAP_EVERY_NS;
}

/* EOWNERDEAD: the previous owner died inside a critical section. */
static inline void bm_shm__recover_locked(bm_shm *r) {
    r->h->lock_recoveries++;
    BM_SHM_CRASH(90); /* a recoverer may die too: the next locker recovers again */
    bm_shm__reap_locked(r);
    bm_shm__rebuild_locked(r); /* always: the dead owner may have been mid-update */
}

/* ---- lock ------------------------------------------------------------------------ */

static inline int bm_shm__locked(bm_shm *r, int rc) {
    if (rc == 0) return BM_OK;
    if (rc == EOWNERDEAD) {
        bm_shm__recover_locked(r);
        pthread_mutex_consistent(&r->h->mu);
        return BM_OK;
    }
    return rc == EBUSY ? BM_FULL : BM_SHM_BROKEN;
}

/* BM_OK with the mutex held (recovered first if its owner died), or
 * BM_SHM_BROKEN. */
static inline int bm_shm_lock(bm_shm *r) { return bm_shm__locked(r, pthread_mutex_lock(&r->h->mu)); }

/* 1 with the mutex held; 0 when busy (or broken: bm_shm_lock then says so). */
static inline int bm_shm_trylock(bm_shm *r) {
    return bm_shm__locked(r, pthread_mutex_trylock(&r->h->mu)) == BM_OK;
}

static inline int bm_shm_trylock_spin(bm_shm *r, int spins) {
    for (;;) {
        if (bm_shm_trylock(r)) return 1;
        if (spins-- <= 0) return 0;
        bm_cpu_relax();
    }
}

/* Unlock, then send the wake-ups the critical section asked for (outside
 * the mutex, so a woken sleeper does not at once block on it). */
static inline void bm_shm_unlock(bm_shm *r) {
    int wg = r->wake_get, wp = r->wake_put;
    r->wake_get = r->wake_put = 0;
    pthread_mutex_unlock(&r->h->mu);
    if (wg) bm_shm__futex_wake(&r->h->data_word, wg);
    if (wp) bm_shm__futex_wake(&r->h->space_word, wp);
}

static inline void bm_shm__want_wake(int *pending, int n) {
    if (*pending < n) *pending = n;
}

/* Mutex held, after the state change a sleeper waits for (and the word's
 * bump, when there is one): ask for a FUTEX_WAKE of up to n sleepers of the
 * word, sent after unlock -- only if some registered sleeper is not owed
 * one yet (see getters_woken). No lost wake-up: a sleeper registers (and
 * reads its `seen`) under the mutex, so every wake-up it is owed comes from
 * a critical section after its registration, whose bump makes its
 * FUTEX_WAIT return at once if it is not asleep in the kernel yet; it takes
 * its credit back only when it is under the mutex again. */
static inline void bm_shm__need_wake(bm_shm *r, int getter, int n) {
    bm_shm_header *h = r->h;
    uint32_t waiting = getter ? h->getters_waiting : h->putters_waiting;
    uint32_t *woken = getter ? &h->getters_woken : &h->putters_woken;
#ifdef BM_SHM_NO_CREDITS /* A/B switch: the pre-credit behaviour (a wake per change while anyone sleeps) */
    if (waiting && n > 0) bm_shm__want_wake(getter ? &r->wake_get : &r->wake_put, n);
    return;
#endif
    if (waiting <= *woken || n <= 0) return;
    uint32_t owed = waiting - *woken;
    *woken += (uint32_t)n >= owed ? owed : (uint32_t)n;
    bm_shm__want_wake(getter ? &r->wake_get : &r->wake_put, n);
}

/* Mutex held again after a sleep on the word: this sleeper is no longer
 * counted, and takes back one wake-up credit (if any was given). */
static inline void bm_shm__slept(bm_shm *r, int getter, bm_shm_participant *me) {
    bm_shm_header *h = r->h;
    uint32_t *waiting = getter ? &h->getters_waiting : &h->putters_waiting;
    uint32_t *woken = getter ? &h->getters_woken : &h->putters_woken;
    if (*waiting) (*waiting)--;
    if (*woken) (*woken)--;
    if (*woken > *waiting) *woken = *waiting;
    if (me) {
        uint32_t *mine = getter ? &me->getters_waiting : &me->putters_waiting;
        if (*mine) (*mine)--;
    }
}

static inline void bm_shm__wake_getters(bm_shm *r, int n) {
    __atomic_add_fetch(&r->h->data_word, 1, __ATOMIC_RELEASE);
    r->own_data_bumps++;
    bm_shm__need_wake(r, 1, n);
}

static inline void bm_shm__wake_putters(bm_shm *r, int n) {
    __atomic_add_fetch(&r->h->space_word, 1, __ATOMIC_RELEASE);
    r->own_space_bumps++;
    bm_shm__need_wake(r, 0, n);
}

/* Mutex held on entry and on return (released meanwhile): spin for at most
 * BM_SHM_SPIN_NS (and not past `deadline`) until `word` leaves `seen`.
 * 1 if it moved (the caller re-checks its predicate instead of sleeping). */
static inline int bm_shm__spin_locked(bm_shm *r, uint32_t *word, uint32_t seen, int64_t deadline) {
    if (BM_SHM_SPIN_NS <= 0) return 0;
    int64_t end = bm_now_ns() + BM_SHM_SPIN_NS;
    if (deadline != BM_FOREVER && deadline < end) end = deadline;
    bm_shm_unlock(r);
    int moved = 0;
    for (unsigned i = 1;; i++) {
        if (__atomic_load_n(word, __ATOMIC_ACQUIRE) != seen) {
            moved = 1;
            break;
        }
        bm_cpu_relax();
        if ((i & 31) == 0 && bm_now_ns() >= end) break;
    }
    bm_shm_lock(r); /* BM_SHM_BROKEN cannot happen: every recoverer marks it consistent */
    return moved || __atomic_load_n(word, __ATOMIC_ACQUIRE) != seen;
}

/* Sleep (mutex held on entry and on return) until `word` moves, a slice
 * passes or `deadline`. A slice that times out also runs a liveness scan
 * when one is due (a dead consumer's slots must come back to a blocked
 * producer). BM_WAIT_TIMEDOUT once the deadline has passed. */
static inline int bm_shm__sleep_locked(bm_shm *r, int getter, int64_t deadline) {
    bm_shm_header *h = r->h;
    uint32_t *word = getter ? &h->data_word : &h->space_word;
    bm_shm_participant *me = r->me < BM_SHM_MAX_PARTICIPANTS ? &h->parts[r->me] : NULL;
    uint32_t seen = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    if (bm_shm__spin_locked(r, word, seen, deadline)) return BM_WAIT_WOKEN;
    if (deadline != BM_FOREVER && bm_now_ns() >= deadline) return BM_WAIT_TIMEDOUT;
    if (getter) {
        h->getters_waiting++;
        if (me) me->getters_waiting++;
    } else {
        h->putters_waiting++;
        if (me) me->putters_waiting++;
    }
    bm_shm_unlock(r);
    int64_t now = bm_now_ns();
    int64_t rel = deadline == BM_FOREVER ? BM_SHM_SLICE_NS : deadline - now;
    if (rel > BM_SHM_SLICE_NS) rel = BM_SHM_SLICE_NS;
    bm_shm__futex_wait(word, seen, rel);
    int timed_out_slice = __atomic_load_n(word, __ATOMIC_ACQUIRE) == seen;
    bm_shm_lock(r); /* BM_SHM_BROKEN cannot happen: every recoverer marks it consistent */
    /* our entry cannot have been reaped (we are alive), and a rebuild
     * recomputes the totals from the entries, ours included */
    bm_shm__slept(r, getter, me);
    if (timed_out_slice && bm_shm__reap_due(r)) bm_shm__reap_locked(r);
    if (deadline != BM_FOREVER && bm_now_ns() >= deadline) return BM_WAIT_TIMEDOUT;
    return BM_WAIT_WOKEN;
}

/* ---- slot bookkeeping (mutex held) --------------------------------------------- */

static inline int bm_shm__me_ok(const bm_shm *r) { return r->me < BM_SHM_MAX_PARTICIPANTS; }

static inline void bm_shm__set_state(bm_shm_slot *s, uint32_t st) {
    BM_SHM_ORDER();
    __atomic_store_n(&s->state, st, __ATOMIC_RELEASE);
    BM_SHM_ORDER();
}

/* Pop a FREE slot; an index that does not check out (corruption) makes us
 * rebuild and retry. Caller checked nfree > 0. */
static inline int bm_shm__pop_free(bm_shm *r, uint32_t *out) {
    for (int tries = 0; tries < 2; tries++) {
        bm_shm_header *h = r->h;
        if (h->nfree == 0 || h->nfree > h->g.nslots) {
            bm_shm__rebuild_locked(r);
            continue;
        }
        uint32_t s = r->free_stack[h->nfree - 1];
        if (s >= h->g.nslots || r->slots[s].state != BM_SLOT_FREE) {
            bm_shm__rebuild_locked(r);
            continue;
        }
        h->nfree--;
        *out = s;
        return 1;
    }
    return 0;
}

/* The oldest (at=0) or newest (at=nqueued-1) queued slot index, checked. */
static inline int bm_shm__peek_queued(bm_shm *r, uint64_t at, uint32_t *out) {
    for (int tries = 0; tries < 2; tries++) {
        bm_shm_header *h = r->h;
        uint64_t n = h->g.nslots;
        if (h->nqueued == 0) return 0;
        if (h->nqueued > n || h->head >= n) {
            bm_shm__rebuild_locked(r);
            continue;
        }
        uint64_t j = h->head + at;
        if (j >= n) j -= n;
        uint32_t s = r->fifo[j];
        if (s >= n || r->slots[s].state != BM_SLOT_QUEUED) {
            bm_shm__rebuild_locked(r);
            continue;
        }
        *out = s;
        return 1;
    }
    return 0;
}

static inline void bm_shm__pop_head(bm_shm *r) {
    bm_shm_header *h = r->h;
    if (++h->head == h->g.nslots) h->head = 0;
    h->nqueued--;
}

static inline void bm_shm__push_free(bm_shm *r, uint32_t s) {
    r->slots[s].owner = 0;
    bm_shm__set_state(&r->slots[s], BM_SLOT_FREE);
    r->free_stack[r->h->nfree++] = s;
}

static inline void bm_shm__own(bm_shm *r, uint32_t s, uint32_t state) {
    bm_shm_slot *sl = &r->slots[s];
    sl->owner = r->me + 1;
    sl->owner_gen = r->me_gen;
    bm_shm__set_state(sl, state);
}

static inline int bm_shm__mine(const bm_shm *r, uint32_t s, uint32_t state) {
    if (s >= r->h->g.nslots) return 0;
    const bm_shm_slot *sl = &r->slots[s];
    return sl->state == state && sl->owner == r->me + 1 && sl->owner_gen == r->me_gen;
}

/* A put that finds no slot it may use: one reap attempt (a dead consumer
 * may be holding the slots). 1 if that freed a slot. */
static inline int bm_shm__reap_for_space(bm_shm *r) {
    if (!bm_shm__reap_due(r)) return 0;
    bm_shm__reap_locked(r);
    return r->h->nfree > 0;
}

/* ---- operations (mutex held; bm_shm_lock / bm_shm_unlock around them) ---------- */

/* Reserve a slot for writing (-> WRITING, owned by us), pool.h semantics:
 * free slot; else drop_oldest evicts the oldest queued frame (dropped++);
 * else the policy refuses (BM_REFUSED: puts++, dropped++, an ordinal
 * consumed but no frame_seq, as pool.h; underruns++ when nothing was
 * queued) or, for "block", waits until `deadline` (BM_FULL for BM_NOWAIT,
 * BM_TIMEOUT). BM_SHUTDOWN once shut down.
 * *waited (may be NULL) carries "underrun already counted" across slices. */
static inline int bm_shm_reserve_locked(bm_shm *r, int64_t deadline, int *waited, uint32_t *slot) {
    bm_shm_header *h = r->h;
    if (!bm_shm__me_ok(r)) return BM_SHM_NOTOWNER;
    for (;;) {
        if (h->shutdown) return BM_SHUTDOWN;
        uint32_t s;
        if (h->nfree && bm_shm__pop_free(r, &s)) {
            BM_SHM_CRASH(10);
            bm_shm__own(r, s, BM_SLOT_WRITING);
            BM_SHM_CRASH(11);
            h->nwriting++;
            if (h->nfree) bm_shm__need_wake(r, 0, 1); /* chain */
            *slot = s;
            return BM_OK;
        }
        if (h->g.policy == BM_POLICY_DROP_OLDEST && bm_shm__peek_queued(r, 0, &s)) {
            bm_shm__pop_head(r);
            BM_SHM_CRASH(12);
            bm_shm__own(r, s, BM_SLOT_WRITING);
            BM_SHM_CRASH(13);
            h->nwriting++;
            h->dropped++;
            *slot = s;
            return BM_OK;
        }
        if (bm_shm__reap_for_space(r)) continue;
        if (h->g.policy != BM_POLICY_BLOCK) {
            uint64_t queued = h->nqueued;
            h->next_seq++; /* the refused frame's ordinal: consumers see the gap */
            BM_SHM_CRASH(14);
            h->puts++;
            h->dropped++;
            if (queued == 0) h->underruns++;
            return BM_REFUSED;
        }
        if (deadline == BM_NOWAIT) return BM_FULL;
        if (waited && !*waited) {
            *waited = 1;
            if (h->nqueued == 0) h->underruns++;
        }
        if (bm_shm__sleep_locked(r, 0, deadline) == BM_WAIT_TIMEDOUT && h->nfree == 0) {
            return h->shutdown ? BM_SHUTDOWN : BM_TIMEOUT;
        }
    }
}

/* Give a WRITING slot of ours back unused. */
static inline int bm_shm_abort_locked(bm_shm *r, uint32_t slot) {
    if (!bm_shm__mine(r, slot, BM_SLOT_WRITING)) return BM_SHM_NOTOWNER;
    bm_shm__push_free(r, slot);
    BM_SHM_CRASH(20);
    r->h->nwriting--;
    bm_shm__wake_putters(r, 1);
    return BM_OK;
}

/* Queue our WRITING slot: nbytes of data and meta_len of metadata written;
 * timestamp_ns (BM_SHM_TS_NOW: bm_now_ns()). ordinal (slot seq) = next_seq++,
 * *seq = frame_seq = next_frame_seq++, puts++.
 * Shut down meanwhile: the slot is freed, BM_SHUTDOWN. */
static inline int bm_shm_commit_locked(bm_shm *r, uint32_t slot, uint64_t nbytes,
                                       int64_t timestamp_ns, uint32_t meta_len, uint64_t *seq) {
    bm_shm_header *h = r->h;
    if (!bm_shm__mine(r, slot, BM_SLOT_WRITING)) return BM_SHM_NOTOWNER;
    if (nbytes > h->g.frame_bytes || meta_len > h->g.metadata_bytes) return BM_INVALID;
    if (h->shutdown) {
        bm_shm_abort_locked(r, slot);
        return BM_SHUTDOWN;
    }
    bm_shm_slot *sl = &r->slots[slot];
    sl->seq = h->next_seq;
    sl->frame_seq = h->next_frame_seq;
    sl->timestamp_ns = timestamp_ns == BM_SHM_TS_NOW ? bm_now_ns() : timestamp_ns;
    sl->nbytes = nbytes;
    sl->meta_len = meta_len;
    sl->gap = 0;
    BM_SHM_ORDER();
    h->next_seq++;
    h->next_frame_seq++; /* a crash before this store: that frame_seq is reused (never seen) */
    BM_SHM_CRASH(30); /* seq taken, slot still WRITING: recovery counts it reclaimed */
    sl->owner = 0;
    bm_shm__set_state(sl, BM_SLOT_QUEUED);
    BM_SHM_CRASH(31); /* QUEUED but not in the FIFO: the rebuild puts it there */
    uint64_t j = h->head + h->nqueued;
    if (j >= h->g.nslots) j -= h->g.nslots;
    r->fifo[j] = slot;
    h->nqueued++;
    h->nwriting--;
    BM_SHM_CRASH(32);
    h->puts++;
    if (h->nqueued > h->high_water) h->high_water = h->nqueued;
    if (seq) *seq = sl->frame_seq;
    bm_shm__wake_getters(r, 1);
    return BM_OK;
}

/* Take a queued frame (-> HELD by us): the oldest, or with `latest` the
 * newest (every older one is dropped and counted). Waits like pool.h's
 * take. *gap: seqs skipped since the previous delivery (by anyone). When
 * the frame is larger than max_nbytes nothing changes: BM_TOOBIG, *need. */
static inline int bm_shm_take_locked(bm_shm *r, int64_t deadline, int *waited, uint64_t max_nbytes,
                                     int latest, uint32_t *slot, uint64_t *need) {
    bm_shm_header *h = r->h;
    if (!bm_shm__me_ok(r)) return BM_SHM_NOTOWNER;
    uint32_t s;
    for (;;) {
        if (h->nqueued && bm_shm__peek_queued(r, 0, &s)) break;
        if (h->shutdown) return BM_SHUTDOWN;
        if (deadline == BM_NOWAIT) return BM_EMPTY;
        if (waited) *waited = 1;
        if (bm_shm__sleep_locked(r, 1, deadline) == BM_WAIT_TIMEDOUT && h->nqueued == 0)
            return h->shutdown ? BM_SHUTDOWN : BM_TIMEOUT;
    }
    if (latest) {
        size_t freed = 0;
        while (h->nqueued > 1 && bm_shm__peek_queued(r, 0, &s)) {
            bm_shm__pop_head(r);
            BM_SHM_CRASH(40);
            bm_shm__push_free(r, s);
            BM_SHM_CRASH(41);
            h->dropped++;
            freed++;
        }
        if (freed) bm_shm__wake_putters(r, freed == 1 ? 1 : INT_MAX);
        if (!bm_shm__peek_queued(r, 0, &s)) return BM_EMPTY; /* (only after corruption) */
    }
    bm_shm_slot *sl = &r->slots[s];
    if (sl->nbytes > max_nbytes) {
        if (need) *need = sl->nbytes;
        bm_shm__need_wake(r, 1, 1); /* someone else may take it */
        return BM_TOOBIG;
    }
    bm_shm__pop_head(r);
    BM_SHM_CRASH(42); /* out of the FIFO, still QUEUED: the rebuild re-queues it */
    sl->gap = h->has_delivered ? sl->seq - h->last_delivered - 1 : sl->seq;
    bm_shm__own(r, s, BM_SLOT_HELD);
    BM_SHM_CRASH(43); /* HELD, not counted: recovery counts it reclaimed */
    h->nheld++;
    h->gets++;
    h->last_delivered = sl->seq;
    h->has_delivered = 1;
    *slot = s;
    if (need) *need = sl->nbytes;
    if (h->nqueued) bm_shm__need_wake(r, 1, 1); /* chain */
    return BM_OK;
}

/* Our HELD slot's holder is done (-> FREE). */
static inline int bm_shm_release_locked(bm_shm *r, uint32_t slot) {
    if (!bm_shm__mine(r, slot, BM_SLOT_HELD)) return BM_SHM_NOTOWNER;
    bm_shm__push_free(r, slot);
    BM_SHM_CRASH(50);
    r->h->nheld--;
    bm_shm__wake_putters(r, 1);
    return BM_OK;
}

/* Free every queued frame (cleared); returns how many. */
static inline uint64_t bm_shm_clear_locked(bm_shm *r) {
    bm_shm_header *h = r->h;
    uint64_t n = 0;
    uint32_t s;
    while (h->nqueued && bm_shm__peek_queued(r, 0, &s)) {
        bm_shm__pop_head(r);
        bm_shm__push_free(r, s);
        BM_SHM_CRASH(60);
        h->cleared++;
        n++;
    }
    h->head = 0;
    if (n) bm_shm__wake_putters(r, INT_MAX);
    return n;
}

/* Shut down (every process sees it): puts fail, gets drain then fail;
 * immediate also clears. Every sleeper in every process wakes. */
static inline uint64_t bm_shm_shutdown_locked(bm_shm *r, int immediate) {
    bm_shm_header *h = r->h;
    uint32_t mode = immediate ? BM_SHUT_IMMEDIATE : BM_SHUT_GRACEFUL;
    if (h->shutdown < mode) h->shutdown = mode;
    uint64_t n = immediate ? bm_shm_clear_locked(r) : 0;
    __atomic_add_fetch(&h->data_word, 1, __ATOMIC_RELEASE);
    __atomic_add_fetch(&h->space_word, 1, __ATOMIC_RELEASE);
    r->own_data_bumps++;
    r->own_space_bumps++;
    r->wake_get = r->wake_put = INT_MAX;
    return n;
}

static inline void bm_shm_stats_locked(const bm_shm *r, bm_shm_stats *s) {
    const bm_shm_header *h = r->h;
    s->puts = h->puts;
    s->gets = h->gets;
    s->dropped = h->dropped;
    s->cleared = h->cleared;
    s->underruns = h->underruns;
    s->reclaimed = h->reclaimed;
    s->high_water = h->high_water;
    s->reclaimed_slots = h->reclaimed_slots;
    s->lock_recoveries = h->lock_recoveries;
    s->dead_participants = h->dead_participants;
    s->next_seq = h->next_seq;
    s->size = h->nqueued;
    s->held = h->nheld;
    s->free = h->nfree;
    s->writing = h->nwriting;
    s->slots = h->g.nslots;
    s->frame_bytes = h->g.frame_bytes;
    s->metadata_bytes = h->g.metadata_bytes;
    s->attached = h->attached;
    s->shutdown = h->shutdown;
    s->getters_waiting = h->getters_waiting;
    s->putters_waiting = h->putters_waiting;
}

/* O(nslots) check for tests: 0 when every invariant holds. */
static inline int bm_shm_check_locked(const bm_shm *r) {
    const bm_shm_header *h = r->h;
    uint64_t c[4] = {0, 0, 0, 0}, n = h->g.nslots;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t st = r->slots[i].state;
        if (st > BM_SLOT_HELD) return 1;
        c[st]++;
    }
    if (c[BM_SLOT_FREE] != h->nfree || c[BM_SLOT_WRITING] != h->nwriting ||
        c[BM_SLOT_QUEUED] != h->nqueued || c[BM_SLOT_HELD] != h->nheld)
        return 2;
    for (uint64_t i = 0; i < h->nfree; i++)
        if (r->free_stack[i] >= n || r->slots[r->free_stack[i]].state != BM_SLOT_FREE) return 4;
    uint64_t prev = 0, fprev = 0;
    for (uint64_t i = 0; i < h->nqueued; i++) {
        uint64_t j = h->head + i;
        if (j >= n) j -= n;
        uint32_t s = r->fifo[j];
        if (s >= n || r->slots[s].state != BM_SLOT_QUEUED) return 5;
        if (i && (r->slots[s].seq <= prev || r->slots[s].frame_seq <= fprev)) return 6;
        if (r->slots[s].frame_seq >= h->next_frame_seq) return 6;
        prev = r->slots[s].seq;
        fprev = r->slots[s].frame_seq;
    }
    if (h->puts != h->next_seq) return 7;
    if (h->next_frame_seq > h->next_seq) return 10;
    if (h->puts != h->gets + h->dropped + h->reclaimed + h->cleared + h->nqueued) return 8;
    if (h->nqueued > h->high_water || h->high_water > n) return 9;
    return 0;
}

/* ---- participants -------------------------------------------------------------- */

/* Register this process (mutex held): reap the dead first, take a free
 * entry. BM_SHM_TOOMANY when the table is full of live participants. */
static inline int bm_shm_join_locked(bm_shm *r, int creator) {
    bm_shm_header *h = r->h;
    int32_t pid = (int32_t)getpid();
    r->me = BM_SHM_NOBODY;
    r->me_pid = pid;
    bm_shm__reap_locked(r);
    if (bm_shm_check_locked(r) != 0) bm_shm__rebuild_locked(r); /* a corrupted state array */
    for (uint32_t i = 0; i < BM_SHM_MAX_PARTICIPANTS; i++) {
        bm_shm_participant *p = &h->parts[i];
        if (__atomic_load_n(&p->pid, __ATOMIC_RELAXED) != 0) continue;
        p->gen++;
        p->start_token = bm_shm_start_token(pid);
        p->getters_waiting = p->putters_waiting = 0;
        p->creator = creator ? 1 : 0;
        BM_SHM_ORDER();
        __atomic_store_n(&p->pid, pid, __ATOMIC_RELEASE);
        BM_SHM_CRASH(70);
        h->attached++;
        r->me = i;
        r->me_gen = p->gen;
        return BM_OK;
    }
    return BM_SHM_TOOMANY;
}

/* Unregister (mutex held): whatever slots we still own are freed (counted
 * in reclaimed_slots), the dead are reaped. *remaining: participants left. */
static inline int bm_shm_leave_locked(bm_shm *r, uint32_t *remaining) {
    bm_shm_header *h = r->h;
    if (bm_shm__me_ok(r) && h->parts[r->me].gen == r->me_gen &&
        __atomic_load_n(&h->parts[r->me].pid, __ATOMIC_RELAXED) != 0) {
        bm_shm__drop_entry_locked(r, r->me);
        BM_SHM_CRASH(80);
        bm_shm__rebuild_locked(r); /* frees our slots, recounts attached */
    }
    r->me = BM_SHM_NOBODY;
    bm_shm__reap_locked(r);
    if (remaining) *remaining = h->attached;
    return BM_OK;
}

/* ---- create / attach / detach ---------------------------------------------------- */

static inline void bm_shm__clear_handle(bm_shm *r) {
    memset(r, 0, sizeof(*r));
    r->me = BM_SHM_NOBODY;
}

/* Create and map a new segment `name` (O_EXCL, mode 0600) and join it as its
 * creator. BM_SHM_BADNAME, BM_INVALID (sizes, shape), BM_SHM_ERRNO (*err:
 * EEXIST when the name is taken), BM_SHM_BROKEN (mutex init). */
static inline int bm_shm_create(bm_shm *r, const char *name, uint64_t nslots, uint64_t frame_bytes,
                                uint64_t metadata_bytes, int policy, uint32_t ndim,
                                const uint64_t *shape, const char *dtype, int *err) {
    bm_shm_geometry g;
    char path[BM_SHM_NAME_MAX + 2];
    bm_shm__clear_handle(r);
    *err = 0;
    if (!bm_shm_name_ok(name)) return BM_SHM_BADNAME;
    if (policy < 0 || policy > BM_POLICY_DROP_NEWEST || ndim > BM_SHM_MAX_NDIM ||
        (dtype && strlen(dtype) >= BM_SHM_DTYPE_LEN))
        return BM_INVALID;
    memset(&g, 0, sizeof(g));
    if (bm_shm_layout(&g, nslots, frame_bytes, metadata_bytes) != BM_OK) return BM_INVALID;
    bm_shm__path(path, name);
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        *err = errno;
        return BM_SHM_ERRNO;
    }
    struct stat sb;
    unsigned char *base = MAP_FAILED;
    if (ftruncate(fd, (off_t)g.total_bytes) != 0 || fstat(fd, &sb) != 0) goto fail_errno;
    base = bm_shm__map((size_t)g.total_bytes, PROT_READ | PROT_WRITE, fd);
    if (base == MAP_FAILED) goto fail_errno;
    close(fd);
    fd = -1;
    bm_shm__advise(base, &g);
    int pe = bm_shm__populate(base, &g);
    if (pe) {
        munmap(base, (size_t)g.total_bytes);
        shm_unlink(path);
        *err = pe;
        return BM_SHM_ERRNO;
    }
    /* the file is zero-filled: every slot is FREE (0), every entry unused */
    bm_shm_header *h = (bm_shm_header *)base;
    h->creator_pid = (int32_t)getpid(); /* first, so `shm clean` can judge a half-made one */
    h->creator_token = bm_shm_start_token(h->creator_pid);
    g.magic = BM_SHM_MAGIC;
    g.version = BM_SHM_LAYOUT_VERSION;
    g.header_bytes = (uint32_t)sizeof(bm_shm_header);
    g.policy = (uint32_t)policy;
    g.max_participants = BM_SHM_MAX_PARTICIPANTS;
    g.ndim = ndim;
    g.mutex_bytes = (uint32_t)sizeof(pthread_mutex_t);
    for (uint32_t i = 0; i < ndim; i++) g.shape[i] = shape[i];
    if (dtype) memcpy(g.dtype, dtype, strlen(dtype) + 1);
    h->g = g;
    h->geometry_check = bm_shm__fnv(&h->g, sizeof(h->g));
    pthread_mutexattr_t ma;
    int rc = pthread_mutexattr_init(&ma);
    if (!rc) rc = pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    if (!rc) rc = pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    if (!rc) rc = pthread_mutex_init(&h->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    if (rc) {
        munmap(base, (size_t)g.total_bytes);
        shm_unlink(path);
        return BM_SHM_BROKEN;
    }
    bm_shm__bind(r, base, (size_t)g.total_bytes);
    r->dev = (uint64_t)sb.st_dev;
    r->ino = (uint64_t)sb.st_ino;
    for (uint64_t i = 0; i < nslots; i++) r->free_stack[i] = (uint32_t)(nslots - 1 - i); /* pop 0 first */
    h->nfree = nslots;
    __atomic_store_n(&h->last_reap_ns, bm_now_ns(), __ATOMIC_RELAXED);
    bm_shm_lock(r);
    bm_shm_join_locked(r, 1); /* an empty table: cannot fail */
    bm_shm_unlock(r);
    __atomic_store_n(&h->ready, 1, __ATOMIC_RELEASE); /* last: attach may now use it */
    return BM_OK;
fail_errno:
    *err = errno;
    if (fd >= 0) close(fd);
    shm_unlink(path);
    return BM_SHM_ERRNO;
}

/* Open, validate and map `name` (see bm_shm_validate), without joining.
 * `writable` 0 maps it read-only (bm_shm_peek). A segment whose creator is
 * still initialising (size 0 or not ready) is retried for ~200 ms. */
static inline int bm_shm__open(bm_shm *r, const char *name, int writable, char *why, size_t whylen,
                               int *err) {
    char path[BM_SHM_NAME_MAX + 2];
    bm_shm__clear_handle(r);
    *err = 0;
    if (why && whylen) why[0] = 0;
    if (!bm_shm_name_ok(name)) return BM_SHM_BADNAME;
    bm_shm__path(path, name);
    for (int attempt = 0;; attempt++) {
        int fd = shm_open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
        if (fd < 0) {
            *err = errno;
            return BM_SHM_ERRNO;
        }
        struct stat sb;
        if (fstat(fd, &sb) != 0) {
            *err = errno;
            close(fd);
            return BM_SHM_ERRNO;
        }
        int st = BM_SHM_BADSEG;
        unsigned char *base = MAP_FAILED;
        size_t size = (size_t)sb.st_size;
        if (sb.st_size > 0 && (uint64_t)sb.st_size <= (uint64_t)(SIZE_MAX / 2)) {
            base = bm_shm__map(size, writable ? PROT_READ | PROT_WRITE : PROT_READ, fd);
            if (base == MAP_FAILED) {
                *err = errno;
                close(fd);
                return BM_SHM_ERRNO;
            }
            st = bm_shm_validate(base, size, 1, why, whylen);
        } else if (why && whylen) {
            snprintf(why, whylen, "segment is empty (0 bytes): its creator is still setting it up, or died doing so");
        }
        close(fd);
        if (st == BM_OK) {
            bm_shm__bind(r, base, size);
            if (writable) { /* not for a peek at the header */
                bm_shm__advise(base, &r->h->g);
                (void)bm_shm__populate(base, &r->h->g); /* the creator allocated it: maps only */
            }
            r->dev = (uint64_t)sb.st_dev;
            r->ino = (uint64_t)sb.st_ino;
            return BM_OK;
        }
        if (base != MAP_FAILED) munmap(base, size);
        /* a creator between shm_open and ready=1: give it a moment */
        int young = sb.st_size == 0 || (st == BM_SHM_BADSEG && strstr(why ? why : "", "not initialised"));
        if (!young || attempt >= 20) return st;
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
}

/* Attach to an existing segment and join it. Statuses of bm_shm__open,
 * BM_SHM_TOOMANY. */
static inline int bm_shm_attach(bm_shm *r, const char *name, char *why, size_t whylen, int *err) {
    int st = bm_shm__open(r, name, 1, why, whylen, err);
    if (st != BM_OK) return st;
    st = bm_shm_lock(r);
    if (st == BM_OK) {
        st = bm_shm_join_locked(r, 0);
        bm_shm_unlock(r);
    }
    if (st != BM_OK) {
        munmap(r->base, r->size);
        bm_shm__clear_handle(r);
        if (why && whylen) snprintf(why, whylen, "segment has no free participant entry (%u attached)", BM_SHM_MAX_PARTICIPANTS);
    }
    return st;
}

/* Join again (a forked child: the inherited handle names the parent's entry). */
static inline int bm_shm_rejoin(bm_shm *r) {
    int st = bm_shm_lock(r);
    if (st != BM_OK) return st;
    st = bm_shm_join_locked(r, 0);
    bm_shm_unlock(r);
    return st;
}

/* Leave (if joined) and unmap. *remaining: participants still attached. */
static inline void bm_shm_detach(bm_shm *r, uint32_t *remaining) {
    if (remaining) *remaining = UINT32_MAX;
    if (!r->base) return;
    if (r->me != BM_SHM_NOBODY && bm_shm_lock(r) == BM_OK) {
        bm_shm_leave_locked(r, remaining);
        bm_shm_unlock(r);
    }
    munmap(r->base, r->size);
    bm_shm__clear_handle(r);
}

/* Remove the name, but only if it still names the file we mapped (another
 * segment may have been created under the same name since). 0, or an errno. */
static inline int bm_shm_unlink_if_same(const char *name, uint64_t dev, uint64_t ino) {
    char path[BM_SHM_NAME_MAX + 2];
    if (!bm_shm_name_ok(name)) return EINVAL;
    bm_shm__path(path, name);
    int fd = shm_open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return errno;
    struct stat sb;
    int same = fstat(fd, &sb) == 0 && (uint64_t)sb.st_dev == dev && (uint64_t)sb.st_ino == ino;
    close(fd);
    if (!same) return ESTALE;
    return shm_unlink(path) == 0 ? 0 : errno;
}

static inline int bm_shm_unlink_name(const char *name) {
    char path[BM_SHM_NAME_MAX + 2];
    if (!bm_shm_name_ok(name)) return EINVAL;
    bm_shm__path(path, name);
    return shm_unlink(path) == 0 ? 0 : errno;
}

/* A read-only look (no lock, no join) for `shm list` / `shm clean`. */
static inline int bm_shm_peek(const char *name, bm_shm_info *info, char *why, size_t whylen, int *err) {
    bm_shm r;
    memset(info, 0, sizeof(*info));
    int st = bm_shm__open(&r, name, 0, why, whylen, err);
    if (st != BM_OK) return st;
    const bm_shm_header *h = r.h;
    info->creator_pid = h->creator_pid;
    info->creator_alive = bm_shm_pid_alive(h->creator_pid, h->creator_token);
    info->nslots = h->g.nslots;
    info->frame_bytes = h->g.frame_bytes;
    info->total_bytes = h->g.total_bytes;
    for (uint32_t i = 0; i < BM_SHM_MAX_PARTICIPANTS; i++) {
        const bm_shm_participant *p = &h->parts[i];
        int32_t pid = __atomic_load_n(&p->pid, __ATOMIC_ACQUIRE);
        if (pid == 0) continue;
        info->attached++;
        if (bm_shm_pid_alive(pid, p->start_token)) info->pids[info->alive++] = pid;
    }
    munmap(r.base, r.size);
    return BM_OK;
}

/* ---- whole operations (lock, op, unlock): for the harness and nogil callers -- */

static inline int bm_shm_reserve(bm_shm *r, int64_t deadline, int *waited, uint32_t *slot) {
    int st = bm_shm_lock(r);
    if (st != BM_OK) return st;
    st = bm_shm_reserve_locked(r, deadline, waited, slot);
    bm_shm_unlock(r);
    return st;
}

static inline int bm_shm_commit(bm_shm *r, uint32_t slot, uint64_t nbytes, int64_t ts,
                                uint32_t meta_len, uint64_t *seq) {
    int st = bm_shm_lock(r);
    if (st != BM_OK) return st;
    st = bm_shm_commit_locked(r, slot, nbytes, ts, meta_len, seq);
    bm_shm_unlock(r);
    return st;
}

static inline int bm_shm_abort(bm_shm *r, uint32_t slot) {
    int st = bm_shm_lock(r);
    if (st != BM_OK) return st;
    st = bm_shm_abort_locked(r, slot);
    bm_shm_unlock(r);
    return st;
}

static inline int bm_shm_take(bm_shm *r, int64_t deadline, int *waited, uint64_t max_nbytes,
                              int latest, uint32_t *slot, uint64_t *need) {
    int st = bm_shm_lock(r);
    if (st != BM_OK) return st;
    st = bm_shm_take_locked(r, deadline, waited, max_nbytes, latest, slot, need);
    bm_shm_unlock(r);
    return st;
}

static inline int bm_shm_release(bm_shm *r, uint32_t slot) {
    int st = bm_shm_lock(r);
    if (st != BM_OK) return st;
    st = bm_shm_release_locked(r, slot);
    bm_shm_unlock(r);
    return st;
}

/* A liveness scan now (whatever the rate limit); how many were reaped. */
static inline int bm_shm_reap(bm_shm *r) {
    if (bm_shm_lock(r) != BM_OK) return 0;
    int n = bm_shm__reap_locked(r);
    bm_shm_unlock(r);
    return n;
}

/* Test hook: hold the mutex for `ns` (makes "killed holding the lock" likely). */
static inline void bm_shm_debug_hold_lock(bm_shm *r, int64_t ns) {
    if (bm_shm_lock(r) != BM_OK) return;
    struct timespec ts = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    while (nanosleep(&ts, &ts) != 0) {
    }
    bm_shm_unlock(r);
}

/* ---- for an external waiter (e.g. an asyncio watcher thread in any process) ---- *
 * A watcher reads the word, checks its predicate (with the mutex), then
 * bm_shm_wait_word(r, getter, seen, rel_ns): counted as a sleeper of this
 * participant, so wakers FUTEX_WAKE it; a waker wakes ONE getter per
 * commit, so a watcher that does not take the frame itself must pass the
 * wake-up on with bm_shm_wake(r, 1, 1). */
static inline uint32_t bm_shm_word(const bm_shm *r, int getter) {
    return __atomic_load_n(getter ? &r->h->data_word : &r->h->space_word, __ATOMIC_ACQUIRE);
}

static inline int bm_shm_wait_word(bm_shm *r, int getter, uint32_t seen, int64_t rel_ns) {
    int st = bm_shm_lock(r);
    if (st != BM_OK) return st;
    if (bm_shm_word(r, getter) == seen) {
        int64_t deadline = bm_now_ns() + (rel_ns < BM_SHM_SLICE_NS ? rel_ns : BM_SHM_SLICE_NS);
        bm_shm__sleep_locked(r, getter, deadline);
    }
    bm_shm_unlock(r);
    return BM_OK;
}

static inline void bm_shm_wake(bm_shm *r, int getter, int n) {
    if (bm_shm_lock(r) != BM_OK) return;
    if (getter) bm_shm__wake_getters(r, n);
    else bm_shm__wake_putters(r, n);
    bm_shm_unlock(r);
}

/* ---- the asyncio watcher (one thread per process, ring handle and direction) ---- *
 * bm_shm_watch(r, getter, w, rel_ns) with the state `w` of the previous call
 * (w->word/w->own: what the watcher has accounted for; primed by the first
 * call with w->primed == 0, which never sleeps): if the word has not moved
 * since, sleep on it (counted as a sleeper of this participant, so wakers
 * FUTEX_WAKE it) for at most min(rel_ns, one slice); then, under the mutex,
 * report:
 *   remote  bumps since the last call that were NOT made through this handle
 *           (another process's, another handle's, a recovery's rebuild):
 *           the caller notifies its waiters of those; its own operations
 *           notified them directly;
 *   delta   all bumps since the last call;
 *   woken   the futex returned because of a FUTEX_WAKE (not the slice's end);
 *           woken with delta == 0 is a "chain" wake: a taker saw more frames
 *           queued (or a reserver more slots free) and passed a wake-up on;
 *   avail   frames queued (getter) or slots free (putter) now; shutdown.
 * Never waits for the mutex forever beyond its holder (a dead holder is
 * recovered by bm_shm_lock). A slice that times out runs a liveness scan
 * when one is due, as every wait does. One wake-up per commit: a watcher
 * woken by a bump that only this handle made (delta > 0, remote == 0) has
 * taken a FUTEX_WAKE meant for someone else; it hands it on with
 * bm_shm_nudge(r, getter) (a FUTEX_WAKE of one sleeper, no bump: the
 * receiver re-checks its predicate). */
typedef struct {
    uint32_t word, own;    /* in/out */
    int primed;            /* in/out: 0 before the first call */
    uint32_t remote, delta; /* out */
    int woken;             /* out */
    uint64_t avail;        /* out */
    uint32_t shutdown;     /* out */
    uint32_t others_waiting; /* out: sleepers on this word, not counting this watcher */
} bm_shm_watch_state;

static inline int bm_shm_watch(bm_shm *r, int getter, bm_shm_watch_state *w, int64_t rel_ns) {
    bm_shm_header *h = r->h;
    uint32_t *word = getter ? &h->data_word : &h->space_word;
    uint32_t *own = getter ? &r->own_data_bumps : &r->own_space_bumps;
    int st = bm_shm_lock(r);
    if (st != BM_OK) return st;
    w->woken = 0;
    if (!w->primed) {
        w->word = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        w->own = *own;
        w->primed = 1;
    } else if (__atomic_load_n(word, __ATOMIC_ACQUIRE) == w->word && rel_ns > 0 &&
               bm_shm__me_ok(r)) {
        bm_shm_participant *me = &h->parts[r->me];
        uint32_t seen = w->word;
        if (getter) {
            h->getters_waiting++;
            me->getters_waiting++;
        } else {
            h->putters_waiting++;
            me->putters_waiting++;
        }
        bm_shm_unlock(r);
        if (rel_ns > BM_SHM_SLICE_NS) rel_ns = BM_SHM_SLICE_NS;
        struct timespec ts = {(time_t)(rel_ns / 1000000000LL), (long)(rel_ns % 1000000000LL)};
        long rc = syscall(SYS_futex, word, FUTEX_WAIT, seen, &ts, NULL, 0);
        int timed_out = rc != 0 && errno == ETIMEDOUT;
        w->woken = rc == 0;
        bm_shm_lock(r); /* BM_SHM_BROKEN cannot happen: every recoverer marks it consistent */
        bm_shm__slept(r, getter, me);
        if (timed_out && bm_shm__reap_due(r)) bm_shm__reap_locked(r);
    }
    uint32_t now_word = __atomic_load_n(word, __ATOMIC_ACQUIRE), now_own = *own;
    w->delta = now_word - w->word;
    w->remote = w->delta - (now_own - w->own);
    if (w->remote > w->delta) w->remote = 0; /* (cannot happen: own bumps are bumps) */
    w->word = now_word;
    w->own = now_own;
    w->avail = getter ? h->nqueued : h->nfree;
    w->shutdown = h->shutdown;
    w->others_waiting = getter ? h->getters_waiting : h->putters_waiting;
    bm_shm_unlock(r);
    return BM_OK;
}

/* Hand a FUTEX_WAKE on to one other sleeper of the word (see bm_shm_watch). */
static inline void bm_shm_nudge(bm_shm *r, int getter) {
    bm_shm__futex_wake(getter ? &r->h->data_word : &r->h->space_word, 1);
}

#ifdef __cplusplus
}
#endif
#endif /* BUFMGR_SHMRING_H */
