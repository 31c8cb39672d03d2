# cython: language_level=3, embedsignature=True, freethreading_compatible=True
# cython: boundscheck=False, wraparound=False, cdivision=True
"""Compiled SharedFrameRing: a frame pool in a named shared-memory segment
(include/bufmgr/shmring.h), usable from every process of the same user.

Concurrency rules of this file (README "Concurrency invariants"):

S1. (inv. 1) No Python code runs while the segment mutex is held: metadata
    is pickled before a slot is reserved and unpickled after the slot is
    HELD and the mutex released; every exception is raised after unlocking,
    from the returned status. The GIL is never taken while the mutex is
    held: _lock() polls with the GIL, and when the holder stays away it
    waits for the mutex WITHOUT the GIL, lets go, and tries again.
S2. (inv. 2) The GIL is released only to wait (futex slices, a contended
    mutex) and around copies of _COPY_NOGIL_MIN bytes or more. Frame bytes
    and metadata are copied with the mutex NOT held, by the slot's owner,
    except a put of at most _SMALL_UNDER_LOCK bytes (frame + metadata),
    copied inside its reserve+commit critical section (one lock round trip
    instead of two; a memcpy of a few cache lines, no Python). A frame's
    export count is process-local (critical_section(frame)): only the call
    that frees the slot takes the segment mutex.
S3. (inv. 3) Waits: absolute monotonic deadlines, slices of <= 50 ms with
    the GIL released, PyErr_CheckSignals between slices; an interrupted
    call owns no slot (reserve/take happen atomically inside the C wait).
    A slice that times out also runs a liveness scan (in C, rate-limited).
S4. (inv. 6) A process may die at any instant: the C layer recovers the
    mutex, the slots and the counters. This file keeps the process-local
    side honest: a Frame or Slot records the participant (entry, gen) it
    was got under and hands its slot back only while that is still this
    process's participant (a forked child's copies of the parent's frames
    never free the parent's slots); a _Segment (the mapping) is kept alive
    by every Frame, Slot and ring using it, so close() never leaves a
    dangling pointer and never fails with exported views.
S5. (inv. 4) puts == gets + dropped + reclaimed + cleared + size, from
    every process (see shmring.h for what each counter counts).
"""

cimport cython
from cpython.buffer cimport (PyBUF_FORMAT, PyBUF_FULL_RO, PyBUF_ND, PyBUF_STRIDES,
                             PyBUF_WRITABLE, PyBuffer_IsContiguous, PyBuffer_Release,
                             PyObject_GetBuffer)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

from bufmgr._cshm cimport *

import atexit
import errno
import os
import pickle
import secrets
import sys
import threading
import weakref

from bufmgr import _aio
from bufmgr import _errors
from bufmgr import _framering_common as _frc
from bufmgr._errors import Empty, Full, ShutDown

include "_deadline.pxi"  # SLICE_NS, MAX_FINITE_TIMEOUT and the timeout helpers
cdef int _LOCK_SPINS = 50
cdef uint64_t _ANY_SIZE = <uint64_t>-1

cdef enum:
    _COPY_NOGIL_MIN = 65536  # as FrameRing (see _framering.pxi for the measurement)
    # put(): frame + metadata up to this many bytes are copied under the
    # segment mutex, in the critical section that reserves and commits (S2's
    # one exception: a few cache lines, no Python, no GIL change)
    _SMALL_UNDER_LOCK = 512

NAME_PREFIX = "bufmgr-"
NAME_MAX = BM_SHM_NAME_MAX
LAYOUT_VERSION = BM_SHM_LAYOUT_VERSION
MAX_PARTICIPANTS = BM_SHM_MAX_PARTICIPANTS
DEFAULT_METADATA_BYTES = 256

#: stats() keys: FrameRing's, then the cross-process ones.
STATS_KEYS = _frc.STATS_KEYS + (
    "reclaimed", "reclaimed_slots", "writing", "lock_recoveries", "dead_participants",
    "participants", "metadata_bytes", "getters_waiting", "putters_waiting",
)

cdef dict _POLICIES = {
    "block": BM_POLICY_BLOCK,
    "drop_oldest": BM_POLICY_DROP_OLDEST,
    "drop_newest": BM_POLICY_DROP_NEWEST,
}
cdef tuple _POLICY_NAMES = ("block", "drop_oldest", "drop_newest")

_RING_CLOSED = "SharedFrameRing is closed"


# ---- asyncio (bufmgr/_aio.py) ----------------------------------------------------------
#
# A SharedFrameRing's coroutines wait in the ring's _aio.BufferWaiters, as
# FrameRing's do. Who wakes them:
#  - this process's own puts/frees/shutdown, directly, after the segment
#    mutex is released (S1), when the flag of that direction is set: the
#    same-process hop costs what FrameRing's does;
#  - everything else (other processes, other handles of the segment in this
#    process, a recovery) through a _Watcher: one thread per (ring handle,
#    direction), running only while coroutines wait in that direction. It
#    sleeps on the segment's futex word (GIL released, <= 50 ms slices, as a
#    counted sleeper of this participant), and on a change that this handle
#    did not make (shmring.h bm_shm_watch: own bumps are counted per handle)
#    calls the registry's notify (which coalesces per loop). It never holds
#    the mutex while running Python, holds the _Segment (the mapping) while
#    it runs, stops on close()/exit (bounded join), and lingers
#    _WATCH_LINGER_S after the last waiter before it exits, so a steady
#    stream does not start a thread per frame.

cdef extern from *:
    """
    #ifndef BM_SHM_AIO_LOAD
    #define BM_SHM_AIO_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
    #define BM_SHM_AIO_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
    #define BM_SHM_AIO_DROPPED(h) __atomic_load_n(&(h)->dropped, __ATOMIC_RELAXED)
    #endif
    """
    int BM_SHM_AIO_LOAD(int *p) noexcept nogil
    void BM_SHM_AIO_STORE(int *p, int v) noexcept nogil
    uint64_t BM_SHM_AIO_DROPPED(bm_shm_header *h) noexcept nogil

cdef enum:
    _AIO_GETTERS = 0  # == _aio.GETTERS
    _AIO_PUTTERS = 1  # == _aio.PUTTERS
cdef size_t _AIO_ALL = <size_t>(1) << 62  # == _aio.ALL

#: A watcher with nobody waiting exits after this long (a new waiter restarts it).
_WATCH_LINGER_S = 1.0
#: close()/exit wait at most this long for a watcher (it notices within one slice).
_WATCH_JOIN_S = 5.0


cdef void _aio_notify(SharedFrameRing ring, int kind, size_t n) noexcept:
    # Direct wake-up of this process's coroutines after one of its own
    # operations (mutex released: S1). Never raises.
    cdef object w
    if ring is None or n == 0:
        return
    if not BM_SHM_AIO_LOAD(&ring.aio_putters if kind == _AIO_PUTTERS else &ring.aio_getters):
        return
    w = ring._aio
    if w is None:
        return
    (w.putters if kind == _AIO_PUTTERS else w.getters).notify(n)


_live_watchers = weakref.WeakSet()

#: Test hook (tests/test_asyncio_shm.py): None, or a callable the watcher
#: thread calls with "start" before its first look at the segment and with
#: "sleep" before each futex sleep it may take (GIL held, no mutex held).
_debug_watch_hook = None


def _stop_all_watchers():
    for w in list(_live_watchers):
        w.stop()


cdef class _Watcher:
    """The thread that turns another process's futex bumps of one ring
    handle's word (getters: data_word; putters: space_word) into notify()
    calls of that direction's registry. See the comment above."""

    cdef _Segment seg
    cdef object waiters   # the _aio.Waiters of this direction
    cdef object ring_ref  # weak: the watcher never keeps the ring alive
    cdef int getter
    cdef object cond
    cdef object thread
    cdef bint active, rearmed, stopping
    cdef object pid
    cdef object __weakref__

    def __init__(self, SharedFrameRing ring, int kind):
        self.seg = ring.seg
        self.waiters = ring._aio_waiters().getters if kind == _AIO_GETTERS else ring._aio_waiters().putters
        self.ring_ref = weakref.ref(ring)
        self.getter = 1 if kind == _AIO_GETTERS else 0
        self._reset()
        _live_watchers.add(self)

    def _reset(self):
        self.cond = threading.Condition(threading.Lock())
        self.thread = None
        self.active = self.rearmed = self.stopping = False
        self.pid = os.getpid()

    @property
    def running(self):
        """For tests: the thread, while it runs."""
        return self.thread

    def set_active(self, bint active):
        """The registry's on_active (called under its lock): quick, never
        calls back into the registry."""
        if self.pid != os.getpid():
            self._reset()  # forked child: the parent's thread does not exist here
        with self.cond:
            self.active = active
            if not active or self.stopping:
                return
            self.rearmed = True
            if self.thread is None:
                t = threading.Thread(target=self._run, daemon=True,
                                     name=f"bufmgr-shm-watch-{'get' if self.getter else 'put'}")
                self.thread = t
                # stop before any segment leaves at exit (atexit runs last-registered first)
                atexit.unregister(_stop_all_watchers)
                atexit.register(_stop_all_watchers)
                t.start()
            else:
                self.cond.notify()

    def stop(self, double timeout=_WATCH_JOIN_S):
        """Stop for good (close()/exit) and join, bounded. True if it ended."""
        with self.cond:
            self.stopping = True
            t = self.thread
            self.cond.notify()
        if t is None or t is threading.current_thread() or self.pid != os.getpid():
            return True
        t.join(timeout)
        return not t.is_alive()

    def _run(self):
        cdef bm_shm_watch_state w
        cdef int rc = BM_OK
        cdef int getter = self.getter
        cdef _Segment seg = self.seg
        cdef bm_shm *r = &seg.shm
        cdef bint rearm = True, shut_seen = False
        cdef size_t n
        cdef int64_t slice_ns
        me = threading.current_thread()
        hook = _debug_watch_hook
        if hook is not None:
            hook("start")
        w.primed = 0
        with nogil:
            rc = bm_shm_watch(r, getter, &w, 0)  # primes w: no sleep
        try:
            while rc == BM_OK:
                with self.cond:
                    while not self.active and not self.stopping:
                        if not self.cond.wait(_WATCH_LINGER_S) and not self.active:
                            # nobody waited for a linger: exit; cleared under the
                            # lock, so the next set_active(True) starts a new one
                            self.thread = None
                            return
                    if self.stopping:
                        return
                    if self.rearmed:
                        self.rearmed = False
                        rearm = True
                ring = self.ring_ref()
                if ring is None or (<SharedFrameRing>ring).seg is not seg or not seg.joined or seg.left:
                    return
                ring = None
                if rearm:
                    # A waiter registered since we last looked (or we just
                    # started): its second try may have run before a bump
                    # that our snapshot already contains, so no FUTEX_WAKE
                    # is coming for it. As in any futex wait: look (the
                    # snapshot and `avail` are read in one critical section)
                    # before sleeping on that snapshot -- this call does not
                    # sleep, the next one sleeps on what it saw.
                    slice_ns = 0
                else:
                    slice_ns = SLICE_NS
                    hook = _debug_watch_hook
                    if hook is not None:
                        hook("sleep")
                with nogil:
                    rc = bm_shm_watch(r, getter, &w, slice_ns)
                if rc != BM_OK:
                    return
                n = 0
                if w.shutdown:
                    if not shut_seen:
                        shut_seen = True
                        n = _AIO_ALL
                elif w.remote or rearm or (w.woken and w.delta == 0):
                    # remote bumps; a (re)activation that may have missed
                    # some; or a chain wake: try as many as may succeed
                    n = w.remote if w.remote else 1
                    if rearm and w.avail > n:
                        n = <size_t>w.avail
                    if n > w.avail:
                        n = <size_t>w.avail
                rearm = False
                if (w.woken and w.delta and (w.remote == 0 or len(self.waiters) == 0)
                        and w.avail and w.others_waiting):
                    # a wake-up meant for another sleeper came to us (one per
                    # commit): hand it on (no Python under the mutex: none held)
                    bm_shm_nudge(r, getter)
                try:
                    if n:
                        self.waiters.notify(n)
                    elif not w.delta and not w.woken:
                        # an idle slice: drop closed loops' waiters, and let
                        # the flag go once nobody waits (then we park, linger
                        # and exit)
                        self.waiters.prune()
                except BaseException:  # pragma: no cover - neither raises
                    pass
        finally:
            with self.cond:
                if self.thread is me:
                    self.thread = None


# ---- small helpers (the same contracts as bufmgr/_ring.pyx's) --------------------

# _timeout_seconds, _deadline, _slice_end, _expired: bufmgr/_deadline.pxi


cdef int _lock(bm_shm *r) except -1:
    # S1: poll with the GIL (critical sections are O(1) and never need the
    # GIL); a holder that stays away (another process preempted, or the
    # test hook) is waited for without the GIL, then we let go and retry,
    # so the mutex is never held while taking the GIL back.
    cdef int st = BM_OK
    while not bm_shm_trylock_spin(r, _LOCK_SPINS):
        with nogil:
            st = bm_shm_lock(r)
            if st == BM_OK:
                bm_shm_unlock(r)
        if st != BM_OK:
            raise RuntimeError("bufmgr: the shared ring's mutex is not recoverable")
    return 0


cdef inline void _copy(void *dst, const void *src, size_t n) noexcept:
    if n >= _COPY_NOGIL_MIN:
        with nogil:
            memcpy(dst, src, n)
    elif n:
        memcpy(dst, src, n)


cdef object _raise(int st, bint getting):
    if st == BM_SHUTDOWN:
        raise ShutDown
    if st == BM_SHM_NOTOWNER:
        raise RuntimeError("bufmgr: this process is not a participant of the shared ring")
    if st == BM_SHM_BROKEN:
        raise RuntimeError("bufmgr: the shared ring's mutex is not recoverable")
    if st == BM_INVALID:
        raise SystemError("bufmgr: shared ring slot in an unexpected state")
    if getting:
        raise Empty
    raise Full


cdef str _why(char *buf):
    return (<bytes>buf).decode("utf-8", "replace")


def _full_name(name):
    """Validate a segment name; add the "bufmgr-" prefix when missing."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str or None, not {type(name).__name__!r}")
    full = name if name.startswith(NAME_PREFIX) else NAME_PREFIX + name
    b = full.encode("ascii", "replace")
    if len(full) > NAME_MAX or not bm_shm_name_ok(b):
        raise ValueError(
            f"name must be 1 to {NAME_MAX - len(NAME_PREFIX)} characters of [A-Za-z0-9_.-] "
            f"(the {NAME_PREFIX!r} prefix is added when missing), got {name!r}"
        )
    return full


def _numpy():
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is an extra
        raise TypeError("dtype= needs numpy (pip install bufmgr[numpy])") from None
    return numpy


cdef tuple _dtype_info(object dtype):
    """(numpy dtype, its .str for the header, PEP 3118 format bytes, itemsize)."""
    np = _numpy()
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype: {e}") from None
    if dt.hasobject or dt.fields is not None or dt.subdtype is not None or dt.itemsize == 0:
        raise ValueError(f"dtype must be a plain numeric dtype, got {dt!r}")
    s = dt.str
    if len(s) >= BM_SHM_DTYPE_LEN:
        raise ValueError(f"dtype {dt!r} is not supported")
    fmt = memoryview(np.empty(0, dt)).format.encode("ascii")
    return dt, s, fmt, dt.itemsize


# ---- the mapping ----------------------------------------------------------------------

_live_segments = weakref.WeakSet()


@cython.final
cdef class _Segment:
    """One mapping of a segment and this process's participant entry in it.

    Kept alive by the ring and by every Frame and Slot of it (S4): the
    mapping goes (and the participant leaves) when the last of them does."""

    cdef bm_shm shm
    cdef bint mapped
    cdef bint joined    # shm.me is this process's entry (False in a forked child until rejoined)
    cdef bint creator   # this process created it: its ring unlinks the name on close
    cdef bint unlinked  # the name was removed by this process
    cdef bint left      # left at interpreter exit; the mapping stays until dealloc
    cdef readonly str name
    cdef bytes bname
    cdef object __weakref__

    def __dealloc__(self):
        cdef uint32_t remaining = 0xffffffff
        cdef uint64_t dev, ino
        if not self.mapped:
            return
        dev = self.shm.dev
        ino = self.shm.ino
        if not self.joined or self.left:
            self.shm.me = BM_SHM_NOBODY  # not ours to leave (inherited, or already left)
        with nogil:
            bm_shm_detach(&self.shm, &remaining)
        self.mapped = False
        # the last participant out removes the name (a creator that was
        # killed never could); only if it still names our file
        if remaining == 0 and not self.unlinked and self.bname is not None:
            bm_shm_unlink_if_same(self.bname, dev, ino)

    cdef int ensure(self) except -1:
        cdef int st
        if self.left:
            raise ValueError(_RING_CLOSED + " (the interpreter is exiting)")
        if not self.joined:
            with nogil:
                st = bm_shm_rejoin(&self.shm)
            if st == BM_SHM_TOOMANY:
                raise RuntimeError(f"shared ring {self.name!r}: no free participant entry "
                                   f"({MAX_PARTICIPANTS} processes attached)")
            if st != BM_OK:
                _raise(st, False)
            self.joined = True
            _register_exit(self)
        return 0

    cdef bint unlink_name(self):
        cdef int rc
        if self.unlinked:
            return False
        rc = bm_shm_unlink_if_same(self.bname, self.shm.dev, self.shm.ino)
        self.unlinked = True
        return rc == 0

    def _leave(self):
        """Leave as a participant now (interpreter or multiprocessing child
        exit); the mapping itself stays until nothing refers to it."""
        cdef uint32_t remaining = 0xffffffff
        if not self.mapped or not self.joined or self.left:
            return
        self.left = True
        with nogil:
            if bm_shm_lock(&self.shm) == BM_OK:
                bm_shm_leave_locked(&self.shm, &remaining)
                bm_shm_unlock(&self.shm)
        if remaining == 0 and not self.unlinked:
            self.unlink_name()

    def _after_fork_child(self):
        # The child shares the mapping but is not a participant yet; its
        # copies of the parent's frames must never free the parent's slots.
        self.joined = False
        self.creator = False


def _leave_ref(ref):
    seg = ref()
    if seg is not None:
        seg._leave()


def _register_exit(_Segment seg):
    # Normal exit: atexit. A multiprocessing child (fork/forkserver) ends in
    # os._exit after running multiprocessing's finalizers, whose registry
    # _bootstrap clears first (also for a ring unpickled before that): so
    # register a finalizer now and again from an after-fork hook, which
    # _bootstrap runs right after clearing.
    import multiprocessing.util as mp_util

    ref = weakref.ref(seg)
    atexit.register(_leave_ref, ref)
    mp_util.Finalize(None, _leave_ref, args=(ref,), exitpriority=100)
    mp_util.register_after_fork(seg, _mp_after_fork)


def _mp_after_fork(seg):
    import multiprocessing.util as mp_util

    mp_util.Finalize(None, _leave_ref, args=(weakref.ref(seg),), exitpriority=100)


def _after_fork_child():
    for seg in list(_live_segments):
        seg._after_fork_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


cdef _Segment _new_segment(str name):
    cdef _Segment seg = _Segment.__new__(_Segment)
    seg.name = name
    seg.bname = name.encode("ascii")
    seg.shm.me = BM_SHM_NOBODY
    return seg


# ---- frames ---------------------------------------------------------------------------

cdef Py_ssize_t _ONE = 1
cdef const char *_FMT_B = b"B"


@cython.final
@cython.no_gc
cdef class SharedFrame:
    """A frame got from a SharedFrameRing: a read-only, zero-copy view of a
    slot of the shared segment (buffer protocol, numpy with the ring's
    shape/dtype). ``seq``, ``timestamp_ns``, ``nbytes``, ``gap`` and
    ``metadata`` stay readable after release. The slot is reused once the
    frame is released (``release()``, ``with``, garbage collection) and no
    exported view is left."""

    cdef _Segment seg          # keeps the mapping alive (S4)
    cdef SharedFrameRing ring  # shape/format
    cdef unsigned char *data
    cdef uint32_t slot, me, me_gen
    cdef Py_ssize_t exports
    cdef bint _released, pinned, freed
    cdef Py_ssize_t shape_buf[8]
    cdef Py_ssize_t strides_buf[8]
    cdef readonly unsigned long long seq
    cdef readonly long long timestamp_ns
    cdef readonly Py_ssize_t nbytes
    cdef readonly unsigned long long gap
    cdef readonly object metadata

    def __init__(self, *args, **kwargs):
        raise TypeError("SharedFrame objects are created by SharedFrameRing.get()")

    cdef inline bint _ours(self) noexcept:
        # S4: only while the participant we got it under is still ours
        return (self.seg.mapped and self.seg.joined and not self.seg.left
                and self.seg.shm.me == self.me and self.seg.shm.me_gen == self.me_gen)

    # _released, exports, pinned and freed are this process's own state:
    # guarded by the object's critical section (the GIL on GIL builds), not
    # by the segment mutex, so exporting a view (numpy, memoryview,
    # struct.unpack_from) costs no cross-process lock round trip. Only the
    # one call that turns the slot back to FREE takes the segment mutex.

    cdef inline bint _claim_free(self) noexcept:
        # inside critical_section(self): True for the one caller that must
        # hand the slot back
        if self._released and self.exports == 0 and not self.pinned and not self.freed:
            self.freed = True
            return True
        return False

    cdef void _give_back(self) noexcept:
        # no mutex held on entry; the slot is ours to free (_claim_free)
        cdef bint freed = False
        if not self._ours():
            return  # S4: a forked child's copy, or a segment this process left
        if not bm_shm_trylock_spin(&self.seg.shm, _LOCK_SPINS):
            with nogil:  # S1: never wait for the mutex holding the GIL
                if bm_shm_lock(&self.seg.shm) != BM_OK:
                    return
                freed = bm_shm_release_locked(&self.seg.shm, self.slot) == BM_OK
                bm_shm_unlock(&self.seg.shm)
        else:
            freed = bm_shm_release_locked(&self.seg.shm, self.slot) == BM_OK
            bm_shm_unlock(&self.seg.shm)
        if freed:
            _aio_notify(self.ring, _AIO_PUTTERS, 1)

    cdef int _pin(self) except -1:
        cdef bint released
        if self.seg is None:
            raise ValueError(_frc.FRAME_RELEASED)
        with cython.critical_section(self):
            released = self._released
            if not released:
                self.exports += 1
        if released:
            raise ValueError(_frc.FRAME_RELEASED)
        return 0

    cdef void _unpin(self) noexcept:
        cdef bint claim
        with cython.critical_section(self):
            self.exports -= 1
            claim = self._claim_free()
        if claim:
            self._give_back()

    def release(self):
        """Give the slot back (idempotent); exported views keep it until released."""
        cdef bint claim
        if self.seg is None or self.freed:
            return
        with cython.critical_section(self):
            self._released = True
            claim = self._claim_free()
        if claim:
            self._give_back()

    def __dealloc__(self):
        if self.seg is None or self.freed:
            return
        self._released = True  # nobody else refers to it any more
        self.pinned = False
        if self._claim_free():
            self._give_back()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.release()
        return False

    @property
    def released(self):
        return self._released

    def __getbuffer__(self, Py_buffer *view, int flags):
        cdef SharedFrameRing ring = self.ring
        cdef Py_ssize_t i, nd
        if flags & PyBUF_WRITABLE:
            raise BufferError("SharedFrame is read-only")
        self._pin()
        view.buf = self.data
        view.obj = self
        view.len = self.nbytes
        view.readonly = 1
        view.suboffsets = NULL
        view.internal = NULL
        # as FrameRing (_frc.frame_geometry): a full frame has the ring's
        # shape/dtype (1-D of the dtype when only a dtype was given); a
        # partial frame, and every frame of a plain ring, is flat bytes
        nd = len(ring._shape) if self.nbytes == ring.frame_bytes else 0
        if nd or (ring.itemsize > 1 and self.nbytes == ring.frame_bytes):
            view.itemsize = ring.itemsize
            view.format = PyBytes_AS_STRING(ring.fmt) if flags & PyBUF_FORMAT else NULL
            if nd:
                for i in range(nd):
                    self.shape_buf[i] = ring._shape[i]
                self.strides_buf[nd - 1] = ring.itemsize
                for i in range(nd - 1, 0, -1):
                    self.strides_buf[i - 1] = self.strides_buf[i] * self.shape_buf[i]
            else:
                nd = 1
                self.shape_buf[0] = self.nbytes // ring.itemsize
                self.strides_buf[0] = ring.itemsize
            view.ndim = <int>nd
            view.shape = self.shape_buf if (flags & PyBUF_ND) == PyBUF_ND else NULL
            view.strides = self.strides_buf if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        else:
            view.itemsize = 1
            view.format = <char *>_FMT_B if flags & PyBUF_FORMAT else NULL
            view.ndim = 1
            view.shape = &self.nbytes if (flags & PyBUF_ND) == PyBUF_ND else NULL
            view.strides = &_ONE if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL

    def __releasebuffer__(self, Py_buffer *view):
        self._unpin()

    @property
    def __array_interface__(self):
        # numpy only falls back to this when the buffer protocol fails, i.e.
        # for a released frame: raise instead of making an object array.
        raise ValueError(_frc.FRAME_RELEASED)

    def __bytes__(self):
        cdef bytes out
        self._pin()
        try:
            out = PyBytes_FromStringAndSize(NULL, self.nbytes)
            _copy(PyBytes_AS_STRING(out), self.data, <size_t>self.nbytes)
        finally:
            self._unpin()
        return out

    @property
    def shape(self):
        """The shape numpy.asarray(frame) has (as Frame.shape): the ring's
        shape for a full frame of a ring made with shape=, (frame_bytes //
        itemsize,) for one made with dtype= only, else (nbytes,)."""
        cdef SharedFrameRing ring = self.ring
        if ring is not None and self.nbytes == ring.frame_bytes:
            if ring._shape:
                return ring._shape
            if ring.dtype is not None:
                return (self.nbytes // ring.itemsize,)
        return (self.nbytes,)

    @property
    def dtype(self):
        """The ring's numpy dtype for a full frame of a ring made with
        dtype=; None for flat bytes (uint8), as Frame.dtype."""
        cdef SharedFrameRing ring = self.ring
        if ring is not None and self.nbytes == ring.frame_bytes:
            return ring.dtype
        return None

    def __len__(self):
        return self.nbytes

    def __repr__(self):
        return _frc.frame_repr(self.seq, self.nbytes, self._released, self.gap).replace(
            "bufmgr.Frame", "bufmgr.SharedFrame", 1)

    def __reduce__(self):
        raise TypeError("cannot pickle 'SharedFrame' object: it is a view of a shared ring "
                        "slot; pickle bytes(frame) instead (or pass the ring itself)")


@cython.final
@cython.no_gc
cdef class SharedSlot:
    """A reserved, writable slot (``with ring.reserve() as slot:``).

    Write into it (``memoryview(slot)``, ``numpy.asarray(slot)``,
    ``file.readinto(slot)``); leaving the block commits it as the next frame
    (all ``frame_bytes``, or ``slot.commit(nbytes)`` for a partial frame);
    an exception discards it. ``timestamp_ns`` and ``metadata`` may be set
    before the commit; ``seq`` is the frame's seq after it. New views are
    refused after the commit; one taken before stays mapped (no dangling
    pointer) but must not be written once the frame is queued."""

    cdef _Segment seg
    cdef SharedFrameRing ring
    cdef unsigned char *data
    cdef uint32_t slot, me, me_gen
    cdef bint done
    cdef Py_ssize_t shape_buf[8]
    cdef Py_ssize_t strides_buf[8]
    cdef public object timestamp_ns
    cdef public object metadata
    cdef readonly object seq

    def __init__(self, *args, **kwargs):
        raise TypeError("SharedSlot objects are created by SharedFrameRing.reserve()")

    cdef inline bint _ours(self) noexcept:
        return (self.seg.mapped and self.seg.joined and not self.seg.left
                and self.seg.shm.me == self.me and self.seg.shm.me_gen == self.me_gen)

    def __len__(self):
        return self.ring.frame_bytes

    @property
    def committed(self):
        return self.seq is not None

    def commit(self, nbytes=None):
        """Queue the slot as a frame of ``nbytes`` (default: all frame_bytes);
        returns its seq. ShutDown if the ring was shut down meanwhile."""
        cdef Py_ssize_t n
        cdef uint64_t seq = 0
        cdef int64_t ts = BM_SHM_TS_NOW
        cdef int st
        cdef bytes meta = None
        cdef uint32_t mlen = 0
        if self.done:
            raise ValueError("slot was already committed or discarded")
        if nbytes is None:
            n = self.ring.frame_bytes
        else:
            if isinstance(nbytes, bool) or not isinstance(nbytes, int):
                raise TypeError(f"nbytes must be an int, not {type(nbytes).__name__!r}")
            n = nbytes
            if n < 0 or n > self.ring.frame_bytes:
                raise ValueError(f"nbytes must be in [0, {self.ring.frame_bytes}], got {nbytes}")
        if self.timestamp_ns is not None:
            ts = _check_ts(self.timestamp_ns)
        if not self._ours():
            self.done = True
            raise ValueError(_RING_CLOSED)
        if self.metadata is not None:
            meta = self.ring._pickle_meta(self.metadata)  # may raise: the slot stays open
            mlen = <uint32_t>len(meta)
            memcpy(self.seg.shm.meta + <size_t>self.slot * _meta_stride(&self.seg.shm),
                   PyBytes_AS_STRING(meta), mlen)
        self.done = True
        _lock(&self.seg.shm)
        st = bm_shm_commit_locked(&self.seg.shm, self.slot, <uint64_t>n, ts, mlen, &seq)
        bm_shm_unlock(&self.seg.shm)
        if st != BM_OK:
            _raise(st, False)
        self.seq = seq
        _aio_notify(self.ring, _AIO_GETTERS, 1)
        return seq

    def discard(self):
        """Give the slot back without queueing anything (idempotent)."""
        if self.done:
            return
        self.done = True
        if self._ours():
            _lock(&self.seg.shm)
            bm_shm_abort_locked(&self.seg.shm, self.slot)
            bm_shm_unlock(&self.seg.shm)
            _aio_notify(self.ring, _AIO_PUTTERS, 1)

    def __dealloc__(self):
        if self.seg is not None and not self.done:
            self.done = True
            if self._ours():
                try:
                    _lock(&self.seg.shm)
                except RuntimeError:
                    return
                bm_shm_abort_locked(&self.seg.shm, self.slot)
                bm_shm_unlock(&self.seg.shm)
                _aio_notify(self.ring, _AIO_PUTTERS, 1)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.discard()
        elif not self.done:
            self.commit()
        return False

    def __getbuffer__(self, Py_buffer *view, int flags):
        cdef SharedFrameRing ring = self.ring
        cdef Py_ssize_t i, nd = len(ring._shape)
        if self.done:
            raise BufferError("slot was already committed or discarded")
        view.buf = self.data
        view.obj = self
        view.len = ring.frame_bytes
        view.readonly = 0
        view.suboffsets = NULL
        view.internal = NULL
        view.itemsize = ring.itemsize
        view.format = PyBytes_AS_STRING(ring.fmt) if flags & PyBUF_FORMAT else NULL
        if nd == 0:
            nd = 1
            self.shape_buf[0] = ring.frame_bytes // ring.itemsize
            self.strides_buf[0] = ring.itemsize
        else:
            for i in range(nd):
                self.shape_buf[i] = ring._shape[i]
            self.strides_buf[nd - 1] = ring.itemsize
            for i in range(nd - 1, 0, -1):
                self.strides_buf[i - 1] = self.strides_buf[i] * self.shape_buf[i]
        view.ndim = <int>nd
        view.shape = self.shape_buf if (flags & PyBUF_ND) == PyBUF_ND else NULL
        view.strides = self.strides_buf if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __repr__(self):
        state = "committed" if self.seq is not None else ("discarded" if self.done else "open")
        return f"<bufmgr.SharedSlot slot={self.slot} {state}>"

    def __reduce__(self):
        raise TypeError("cannot pickle 'SharedSlot' object")


cdef inline size_t _meta_stride(bm_shm *r) noexcept:
    return <size_t>((r.h.g.metadata_bytes + 7) & ~(<uint64_t>7))


cdef int64_t _check_ts(object ts) except? -1:
    # FrameRing's rule and messages: an int in [0, 2**63 - 1]
    return _frc.check_timestamp(ts)


def _attach(name):
    """Unpickling a SharedFrameRing attaches to its segment."""
    return SharedFrameRing.attach(name)


# ---- the ring ---------------------------------------------------------------------------

_live_rings = weakref.WeakSet()


@cython.final
cdef class SharedFrameRing:
    """SharedFrameRing(slots, frame_bytes=None, overflow="drop_oldest", name=None, *,
    shape=None, dtype=None, metadata_bytes=256)

    A FrameRing whose slots, queue, counters and locks live in a named
    shared-memory segment (Linux), so producers and consumers can be
    separate processes: ``put`` copies a frame in (or ``reserve()`` lets you
    write in place), ``get`` hands out a zero-copy read-only SharedFrame.
    ``SharedFrameRing.attach(name)`` (or pickling the ring, e.g. passing it
    to multiprocessing.Process) opens it from another process. Crash-safe:
    a process killed at any moment never hangs or corrupts the others."""

    cdef _Segment seg
    cdef readonly str name
    cdef readonly Py_ssize_t slots
    cdef readonly Py_ssize_t frame_bytes
    cdef readonly Py_ssize_t metadata_bytes
    cdef readonly object overflow
    cdef readonly object dtype
    cdef tuple _shape
    cdef bytes fmt
    cdef Py_ssize_t itemsize
    cdef bint creator
    # asyncio: the registries, the flags tested after the mutex is released,
    # and the two watchers (made on first use)
    cdef object _aio
    cdef int aio_getters
    cdef int aio_putters
    cdef object _watchers
    cdef object __weakref__

    def __init__(self, slots, frame_bytes=None, overflow="drop_oldest", name=None, *,
                 shape=None, dtype=None, metadata_bytes=DEFAULT_METADATA_BYTES):
        cdef uint64_t cshape[8]
        cdef int err = 0, st, i
        cdef _Segment seg
        cdef bytes bname, bdtype
        cdef uint32_t ndim = 0
        cdef uint64_t nslots, fbytes, mbytes
        cdef int policy
        cdef const char *cname
        cdef const char *cdtype
        if self.seg is not None:
            raise RuntimeError("SharedFrameRing.__init__ called twice")
        # FrameRing's checks, order and messages (_framering_common)
        slots = _frc.check_slots(slots)
        try:
            frame_bytes, shape, dt, sfmt, itemsize = _frc.check_geometry(frame_bytes, shape, dtype)
        except TypeError as e:
            if str(e).startswith("FrameRing()"):
                raise TypeError("Shared" + str(e)) from None
            raise
        dstr, fmt = "", b"B"
        if dt is not None:
            dstr, fmt = dt.str, sfmt.encode("ascii")
            if len(dstr) >= BM_SHM_DTYPE_LEN:  # pragma: no cover - numpy's .str are short
                raise ValueError(f"dtype {dt!r} is not supported")
        _frc.check_ring_size(slots, frame_bytes)
        overflow = _errors.check_overflow(overflow)
        if isinstance(metadata_bytes, bool) or not isinstance(metadata_bytes, int):
            raise TypeError(f"metadata_bytes must be an int, not {type(metadata_bytes).__name__!r}")
        if not 0 <= metadata_bytes <= BM_SHM_MAX_METADATA:
            raise ValueError(f"metadata_bytes must be in [0, {BM_SHM_MAX_METADATA}], got {metadata_bytes}")
        if slots > BM_SHM_MAX_SLOTS:
            raise ValueError(f"slots must be <= {BM_SHM_MAX_SLOTS}, got {slots}")
        _check_platform()
        random_name = name is None
        for attempt in range(8):
            full = NAME_PREFIX + secrets.token_hex(8) if random_name else _full_name(name)
            seg = _new_segment(full)
            bname = seg.bname
            bdtype = dstr.encode("ascii")
            if shape is not None:
                ndim = len(shape)
                for i in range(<int>ndim):
                    cshape[i] = shape[i]
            nslots, fbytes, mbytes = slots, frame_bytes, metadata_bytes
            policy = _POLICIES[overflow]
            cname = bname
            cdtype = bdtype
            with nogil:
                st = bm_shm_create(&seg.shm, cname, nslots, fbytes, mbytes, policy, ndim, cshape,
                                   cdtype, &err)
            if st == BM_SHM_ERRNO and err == 17 and random_name:  # EEXIST: draw another name
                continue
            break
        if st == BM_SHM_ERRNO:
            hint = ""
            if err == 17:
                hint = " (the name is taken: attach() to it, or choose another)"
            elif err == errno.ENOSPC:  # its memory is allocated at creation (shmring.h)
                hint = (f" ({slots} x {frame_bytes} B frames do not fit in what is left of /dev/shm:"
                        " see `df /dev/shm`; a container's is often 64 MB)")
            raise OSError(err, f"{os.strerror(err)}: cannot create shared ring {full!r}" + hint)
        if st == BM_INVALID:
            raise ValueError(_frc.RING_TOO_LARGE)
        if st != BM_OK:
            raise OSError(f"cannot create shared ring {full!r} (status {st})")
        seg.mapped = True
        seg.joined = True
        seg.creator = True
        self._bind(seg, overflow, tuple(shape) if shape is not None else (), dt, fmt, itemsize)
        self.creator = True

    cdef int _bind(self, _Segment seg, overflow, tuple shape, dt, bytes fmt,
                   Py_ssize_t itemsize) except -1:
        self.seg = seg
        self.name = seg.name
        self.slots = <Py_ssize_t>seg.shm.h.g.nslots
        self.frame_bytes = <Py_ssize_t>seg.shm.h.g.frame_bytes
        self.metadata_bytes = <Py_ssize_t>seg.shm.h.g.metadata_bytes
        self.overflow = overflow
        self._shape = shape
        self.dtype = dt
        self.fmt = fmt
        self.itemsize = itemsize
        _live_segments.add(seg)
        _live_rings.add(self)
        _register_exit(seg)
        return 0

    @classmethod
    def attach(cls, name):
        """Open the shared ring ``name`` (created by any process of this user)."""
        cdef char why[256]
        cdef int err = 0, st
        cdef _Segment seg
        cdef bytes bname
        cdef SharedFrameRing ring
        cdef uint32_t i
        cdef bm_shm_geometry *g
        _check_platform()
        full = _full_name(name)
        seg = _new_segment(full)
        bname = seg.bname
        cdef const char *cname = bname
        why[0] = 0
        with nogil:
            st = bm_shm_attach(&seg.shm, cname, why, sizeof(why), &err)
        if st == BM_SHM_ERRNO:
            if err == 2:
                raise FileNotFoundError(err, f"no shared ring named {full!r}")
            raise OSError(err, f"{os.strerror(err)}: cannot attach to shared ring {full!r}")
        if st == BM_SHM_BADSEG or st == BM_SHM_VERSION:
            raise ValueError(f"cannot attach to {full!r}: {_why(why)}")
        if st == BM_SHM_TOOMANY:
            raise RuntimeError(f"cannot attach to {full!r}: {_why(why)}")
        if st != BM_OK:
            raise OSError(f"cannot attach to shared ring {full!r} (status {st})")
        seg.mapped = True
        seg.joined = True
        g = &seg.shm.h.g
        shape = tuple(<Py_ssize_t>g.shape[i] for i in range(g.ndim))
        dstr = (<bytes>g.dtype).decode("ascii", "replace")
        dt, fmt, itemsize = None, b"B", 1
        try:
            if dstr:
                dt, _, fmt, itemsize = _dtype_info(dstr)
            prod = itemsize
            for d in shape:
                prod *= d
            if shape and prod != g.frame_bytes:
                raise ValueError("shape and dtype do not match frame_bytes")
            if g.frame_bytes % itemsize:
                raise ValueError("frame_bytes is not a multiple of the dtype's itemsize")
        except (TypeError, ValueError) as e:
            raise ValueError(f"cannot attach to {full!r}: segment header is corrupted ({e})") from None
        ring = SharedFrameRing.__new__(SharedFrameRing)
        ring._bind(seg, _POLICY_NAMES[g.policy], shape, dt, fmt, itemsize)
        return ring

    def __reduce__(self):
        # the receiving process attaches (spawn, forkserver, fork, pools)
        self._seg()
        return (_attach, (self.name,))

    cdef inline _Segment _cur(self):
        # invariant 5: close() may drop self.seg in another thread; read it
        # under the object's critical section (a no-op on GIL builds)
        cdef _Segment seg
        with cython.critical_section(self):
            seg = self.seg
        return seg

    cdef inline _Segment _seg(self):
        cdef _Segment seg = self._cur()
        if seg is None:
            raise ValueError(_RING_CLOSED)
        seg.ensure()
        return seg

    @property
    def shape(self):
        """The frame shape given at creation (numpy views use it), or None."""
        return self._shape if self._shape else None

    @property
    def closed(self):
        return self._cur() is None

    @property
    def is_creator(self):
        cdef _Segment seg = self._cur()
        return self.creator and seg is not None and seg.creator

    def close(self):
        """This process lets go of the ring (idempotent). Frames and slots
        still held keep the mapping until released. The creating process
        also removes the name (unlink) unless it already did."""
        cdef _Segment seg
        with cython.critical_section(self):
            seg = self.seg
            self.seg = None  # the mapping goes with the last Frame/Slot referring to it
        if seg is None:
            return
        self._aio_stop()
        if self.creator and seg.creator:
            seg.unlink_name()

    cdef _aio_stop(self):
        # close()/exit: join the watchers (bounded), then wake this process's
        # coroutines: their next try raises ValueError (closed)
        cdef object watchers = self._watchers
        if watchers is not None:
            for wt in watchers:
                if wt is not None:
                    wt.stop()
        w = self._aio
        if w is not None:
            w.getters.notify_all()
            w.putters.notify_all()

    def unlink(self):
        """Remove the segment's name now (attached processes keep working;
        nobody new can attach). True if this call removed it."""
        cdef _Segment seg = self._cur()
        if seg is None:
            raise ValueError(_RING_CLOSED)
        return seg.unlink_name()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def __dealloc__(self):
        if self.seg is not None and self.creator and self.seg.creator:
            self.seg.unlink_name()

    # -- put ------------------------------------------------------------------------------

    cdef bytes _pickle_meta(self, object metadata):
        data = pickle.dumps(metadata, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > self.metadata_bytes:
            raise ValueError(f"metadata pickles to {len(data)} bytes; this ring keeps at most "
                             f"metadata_bytes={self.metadata_bytes} per frame")
        return data

    cdef int _reserve(self, _Segment seg, bint block, double seconds, uint32_t *slot) except -1:
        cdef int st, waited = 0
        cdef int64_t deadline
        cdef bm_shm *r = &seg.shm
        _lock(r)
        st = bm_shm_reserve_locked(r, BM_NOWAIT, NULL, slot)
        bm_shm_unlock(r)
        if st == BM_FULL and block:
            deadline = _deadline(seconds)
            while True:  # S3
                with nogil:
                    st = bm_shm_reserve(r, _slice_end(deadline), &waited, slot)
                if st != BM_TIMEOUT or _expired(deadline):
                    break
                PyErr_CheckSignals()
        return st

    cdef object _put(self, object buffer, bint block, object timeout, object timestamp_ns,
                     object metadata):
        cdef Py_buffer view
        cdef double seconds = -1.0
        cdef uint32_t slot = 0, mlen = 0
        cdef uint64_t seq = 0
        cdef int64_t ts = BM_SHM_TS_NOW
        cdef int st
        cdef bytes meta = None
        cdef _Segment seg = self._seg()
        cdef bm_shm *r = &seg.shm
        PyObject_GetBuffer(buffer, &view, PyBUF_FULL_RO)
        try:
            if not PyBuffer_IsContiguous(&view, b'C'):
                raise _frc.not_contiguous()
            if view.len > self.frame_bytes:
                raise _frc.frame_too_large(view.len, self.frame_bytes)
            if block:
                seconds = _timeout_seconds(timeout)
            if timestamp_ns is not None:
                ts = _check_ts(timestamp_ns)
            if metadata is not None:
                meta = self._pickle_meta(metadata)  # S1: Python code before any slot is ours
                mlen = <uint32_t>len(meta)
            if <size_t>view.len + mlen <= _SMALL_UNDER_LOCK:
                # small frame: reserve, copy and commit in ONE critical
                # section (a memcpy of at most _SMALL_UNDER_LOCK bytes, no
                # Python: S1 holds) -- one cross-process lock round trip
                # instead of two. A crash inside is recovered like any other
                # (the slot is WRITING and ours until the commit).
                _lock(r)
                st = bm_shm_reserve_locked(r, BM_NOWAIT, NULL, &slot)
                if st == BM_OK:
                    if view.len:
                        memcpy(r.data + <size_t>slot * <size_t>r.h.g.stride, view.buf, <size_t>view.len)
                    if mlen:
                        memcpy(r.meta + <size_t>slot * _meta_stride(r), PyBytes_AS_STRING(meta), mlen)
                    st = bm_shm_commit_locked(r, slot, <uint64_t>view.len, ts, mlen, &seq)
                    bm_shm_unlock(r)
                    if st != BM_OK:
                        return _raise(st, False)
                    _aio_notify(self, _AIO_GETTERS, 1)  # mutex released (S1)
                    return seq
                bm_shm_unlock(r)
                if st == BM_FULL and block:
                    st = self._reserve(seg, block, seconds, &slot)  # waits (S3)
            else:
                st = self._reserve(seg, block, seconds, &slot)
            if st == BM_REFUSED:
                return None
            if st != BM_OK:
                return _raise(st, False)
            # WRITING and ours alone: copy outside the mutex (S2); nothing raises until commit
            _copy(r.data + <size_t>slot * <size_t>r.h.g.stride, view.buf, <size_t>view.len)
            if mlen:
                memcpy(r.meta + <size_t>slot * _meta_stride(r), PyBytes_AS_STRING(meta), mlen)
            _lock(r)
            st = bm_shm_commit_locked(r, slot, <uint64_t>view.len, ts, mlen, &seq)
            bm_shm_unlock(r)
            if st != BM_OK:
                return _raise(st, False)
            _aio_notify(self, _AIO_GETTERS, 1)  # mutex released (S1)
            return seq
        finally:
            PyBuffer_Release(&view)

    def put(self, buffer, block=True, timeout=None, *, timestamp_ns=None, metadata=None):
        """Copy a C-contiguous bytes-like object into a free slot and queue it;
        returns its seq, or None when a drop policy refused it. Like
        FrameRing.put; ``timestamp_ns`` (e.g. the device's) replaces the
        monotonic commit time, ``metadata`` (picklable, at most
        metadata_bytes pickled) travels with the frame."""
        return self._put(buffer, block, timeout, timestamp_ns, metadata)

    def put_nowait(self, buffer, *, timestamp_ns=None, metadata=None):
        """Equivalent to put(buffer, block=False)."""
        return self._put(buffer, False, None, timestamp_ns, metadata)

    def put_many(self, buffers, block=True, timeout=None):
        """Put every buffer in order (the overflow policy applied to each);
        a list with one entry per buffer: its seq, or None where a drop
        policy refused it. As FrameRing.put_many: every buffer is checked
        first (TypeError / ValueError before anything is queued); under
        "block" ``timeout`` bounds the whole call; if it stops early (Full,
        ShutDown) the frames before the failing one stay queued and the
        exception propagates."""
        cdef Py_buffer view
        cdef double seconds = -1.0, left
        cdef int64_t deadline = BM_FOREVER
        cdef bint blk = bool(block)
        cdef list batch, out
        self._seg()
        if blk:
            seconds = _timeout_seconds(timeout)  # validated before consuming `buffers`
            deadline = _deadline(seconds)
        batch = list(buffers)
        for buffer in batch:  # every check before the first put
            PyObject_GetBuffer(buffer, &view, PyBUF_FULL_RO)
            try:
                if not PyBuffer_IsContiguous(&view, b'C'):
                    raise _frc.not_contiguous()
                if view.len > self.frame_bytes:
                    raise _frc.frame_too_large(view.len, self.frame_bytes)
            finally:
                PyBuffer_Release(&view)
        if not batch and self.is_shutdown:
            raise ShutDown
        out = []
        for buffer in batch:
            left = seconds
            if blk and deadline != BM_FOREVER:
                left = (deadline - bm_now_ns()) / 1e9
                if left < 0.0:
                    left = 0.0
            out.append(self._put(buffer, blk, None if left < 0.0 else left, None, None))
        return out

    def reserve(self, timeout=None):
        """Reserve a free slot to write in place: ``with ring.reserve() as
        slot: numpy.asarray(slot)[...] = ...``. Waits like put() under
        "block" (queue.Full on timeout); under a drop policy that refuses
        (nothing to evict) raises queue.Full, counted as a dropped put."""
        cdef double seconds = _timeout_seconds(timeout)
        cdef uint32_t slot = 0
        cdef int st
        cdef _Segment seg = self._seg()
        cdef SharedSlot s = SharedSlot.__new__(SharedSlot)  # allocated first: nothing raises after
        st = self._reserve(seg, seconds != 0.0, seconds, &slot)
        if st == BM_REFUSED:
            raise Full(f"no slot to reserve: overflow={self.overflow!r} refused the frame "
                       "(counted as dropped)")
        if st != BM_OK:
            _raise(st, False)
        s.seg = seg
        s.ring = self
        s.slot = slot
        s.me = seg.shm.me
        s.me_gen = seg.shm.me_gen
        s.data = seg.shm.data + <size_t>slot * <size_t>seg.shm.h.g.stride
        return s

    # -- get ------------------------------------------------------------------------------

    cdef int _take(self, _Segment seg, bint block, double seconds, uint64_t max_nbytes,
                   int latest, uint32_t *slot, uint64_t *need) except -1:
        cdef int st, waited = 0
        cdef int64_t deadline
        cdef bm_shm *r = &seg.shm
        _lock(r)
        st = bm_shm_take_locked(r, BM_NOWAIT, NULL, max_nbytes, latest, slot, need)
        bm_shm_unlock(r)
        if st != BM_EMPTY or not block:
            return st
        deadline = _deadline(seconds)
        while True:
            with nogil:
                st = bm_shm_take(r, _slice_end(deadline), &waited, max_nbytes, latest, slot, need)
            if st != BM_TIMEOUT or _expired(deadline):
                return st
            PyErr_CheckSignals()  # raises; nothing taken

    cdef SharedFrame _frame(self, _Segment seg, SharedFrame f, uint32_t slot):
        """Fill f for our HELD slot; unpickles its metadata (S1: no mutex held)."""
        cdef bm_shm_slot *m = &seg.shm.slots[slot]
        f.seg = seg
        f.ring = self
        f.slot = slot
        f.me = seg.shm.me
        f.me_gen = seg.shm.me_gen
        f.data = seg.shm.data + <size_t>slot * <size_t>seg.shm.h.g.stride
        f.seq = m.frame_seq  # FrameRing's numbering (m.seq is the ordinal: gaps)
        f.timestamp_ns = m.timestamp_ns
        f.nbytes = <Py_ssize_t>m.nbytes
        f.gap = m.gap
        if m.meta_len:
            raw = PyBytes_FromStringAndSize(<char *>seg.shm.meta + <size_t>slot * _meta_stride(&seg.shm),
                                            m.meta_len)
            try:
                f.metadata = pickle.loads(raw)
            except BaseException:
                f.release()
                raise
        return f

    cdef SharedFrame _get(self, bint block, object timeout, int latest):
        cdef double seconds = -1.0
        cdef uint32_t slot = 0
        cdef uint64_t need = 0
        cdef _Segment seg = self._seg()
        cdef SharedFrame f = SharedFrame.__new__(SharedFrame)
        cdef int st
        cdef uint64_t dropped_before = 0
        if block:
            seconds = _timeout_seconds(timeout)
        if latest:
            dropped_before = BM_SHM_AIO_DROPPED(seg.shm.h)
        st = self._take(seg, block, seconds, _ANY_SIZE, latest, &slot, &need)
        if latest and BM_SHM_AIO_LOAD(&self.aio_putters):
            # slots freed by dropping older frames (an upper bound: other
            # processes' drops count too; a spare wake-up is harmless)
            _aio_notify(self, _AIO_PUTTERS, <size_t>(BM_SHM_AIO_DROPPED(seg.shm.h) - dropped_before))
        if st != BM_OK:
            _raise(st, True)
        return self._frame(seg, f, slot)

    def get(self, block=True, timeout=None):
        """Remove the oldest frame and return it as a zero-copy SharedFrame
        (HELD until released). queue.Empty on timeout, ShutDown once shut
        down and drained."""
        return self._get(block, timeout, 0)

    def get_nowait(self):
        """Equivalent to get(block=False)."""
        return self._get(False, None, 0)

    def get_latest(self, block=True, timeout=None):
        """Return the newest frame; every older queued one is dropped (and
        counted). Never returns the same frame twice. Waits like get()."""
        return self._get(block, timeout, 1)

    def get_many(self, max_items, block=True, timeout=None):
        """Up to max_items frames, oldest first: waits like get() for the
        first, then takes what is queued without waiting."""
        cdef Py_ssize_t limit = _errors.check_max_items(max_items)
        cdef list out = [self._get(block, timeout, 0)]
        cdef _Segment seg = self._cur()
        cdef SharedFrame f
        cdef uint32_t slot = 0
        cdef uint64_t need = 0
        cdef int st
        cdef list taken = []
        if seg is None:
            return out
        while len(out) + len(taken) < limit:
            f = SharedFrame.__new__(SharedFrame)
            _lock(&seg.shm)
            st = bm_shm_take_locked(&seg.shm, BM_NOWAIT, NULL, _ANY_SIZE, 0, &slot, &need)
            bm_shm_unlock(&seg.shm)
            if st != BM_OK:
                break
            self._frame(seg, f, slot)
            out.append(f)
        return out

    def get_into(self, buffer, block=True, timeout=None):
        """Copy the oldest frame into a writable C-contiguous buffer and free
        its slot; return (nbytes, seq). ValueError (nothing changes) if the
        frame does not fit."""
        cdef Py_buffer view
        cdef double seconds = -1.0
        cdef uint32_t slot = 0
        cdef uint64_t need = 0, seq
        cdef int st
        cdef _Segment seg = self._seg()
        cdef bm_shm *r = &seg.shm
        PyObject_GetBuffer(buffer, &view, PyBUF_FULL_RO)
        try:
            if view.readonly:
                raise _frc.not_writable(buffer)
            if not PyBuffer_IsContiguous(&view, b'C'):
                raise _frc.not_contiguous()
            if block:
                seconds = _timeout_seconds(timeout)
            st = self._take(seg, block, seconds, <uint64_t>view.len, 0, &slot, &need)
            if st == BM_TOOBIG:
                raise _frc.buffer_too_small(need, view.len)
            if st != BM_OK:
                _raise(st, True)
            seq = r.slots[slot].frame_seq
            _copy(view.buf, r.data + <size_t>slot * <size_t>r.h.g.stride, <size_t>need)
            _lock(r)
            bm_shm_release_locked(r, slot)
            bm_shm_unlock(r)
            _aio_notify(self, _AIO_PUTTERS, 1)
        finally:
            PyBuffer_Release(&view)
        return (need, seq)

    # -- bookkeeping ----------------------------------------------------------------------

    def shutdown(self, immediate=False):
        """Shut down for every process: puts raise ShutDown, gets drain then
        raise ShutDown; ``immediate`` also clears the queued frames. Every
        blocked caller in every process wakes up."""
        cdef _Segment seg = self._seg()
        cdef bint imm = bool(immediate)
        _lock(&seg.shm)
        bm_shm_shutdown_locked(&seg.shm, imm)
        bm_shm_unlock(&seg.shm)
        # this process's coroutines now; other processes' through their watchers
        _aio_notify(self, _AIO_GETTERS, _AIO_ALL)
        _aio_notify(self, _AIO_PUTTERS, _AIO_ALL)

    def clear(self):
        """Free every queued frame (counted as cleared); return how many."""
        cdef _Segment seg = self._seg()
        cdef uint64_t n
        _lock(&seg.shm)
        n = bm_shm_clear_locked(&seg.shm)
        bm_shm_unlock(&seg.shm)
        _aio_notify(self, _AIO_PUTTERS, <size_t>n)
        return n

    cdef bm_shm_stats _stats(self):
        cdef _Segment seg = self._seg()
        cdef bm_shm_stats s
        _lock(&seg.shm)
        bm_shm_stats_locked(&seg.shm, &s)
        bm_shm_unlock(&seg.shm)
        return s

    def qsize(self):
        """Number of frames queued now (in the segment)."""
        return self._stats().size

    def __len__(self):
        return self.qsize()

    def empty(self):
        return self._stats().size == 0

    def full(self):
        """True if no slot is free now."""
        return self._stats().free == 0

    @property
    def is_shutdown(self):
        return self._stats().shutdown != 0

    def stats(self):
        """Counters as a dict, the same from every process: FrameRing's keys
        (puts, gets, dropped, cleared, underruns, high_water, size, held,
        free, slots, frame_bytes) plus reclaimed (frames a crash left with no
        other fate), reclaimed_slots (slots taken back from dead processes),
        writing, lock_recoveries, dead_participants, participants,
        metadata_bytes, getters_waiting/putters_waiting (callers asleep in
        the segment now, every process). Always: puts == gets + dropped + reclaimed + cleared
        + size."""
        cdef bm_shm_stats s = self._stats()
        return {
            "puts": s.puts, "gets": s.gets, "dropped": s.dropped, "cleared": s.cleared,
            "underruns": s.underruns, "high_water": s.high_water, "size": s.size,
            "held": s.held, "free": s.free, "slots": s.slots, "frame_bytes": s.frame_bytes,
            "reclaimed": s.reclaimed, "reclaimed_slots": s.reclaimed_slots,
            "writing": s.writing, "lock_recoveries": s.lock_recoveries,
            "dead_participants": s.dead_participants, "participants": s.attached,
            "metadata_bytes": s.metadata_bytes,
            "getters_waiting": s.getters_waiting, "putters_waiting": s.putters_waiting,
        }

    # -- asyncio (bufmgr/_aio.py; the waking side: the comment at the top) ---------------

    def async_get(self, timeout=None):
        """Coroutine: get() without blocking the event loop (queue.Empty on
        timeout, ShutDown once shut down and drained). Woken by puts of any
        process."""
        return _aio.get(self, timeout)

    def async_get_latest(self, timeout=None):
        """Coroutine: get_latest() without blocking the event loop."""
        return _aio.get_latest(self, timeout)

    def async_get_many(self, max_items, timeout=None):
        """Coroutine: get_many() without blocking the event loop."""
        return _aio.get_many(self, max_items, timeout)

    def async_put(self, buffer, timeout=None, *, timestamp_ns=None, metadata=None):
        """Coroutine: put() without blocking the event loop (queue.Full on
        timeout); returns what put() returns. Only "block" ever waits; woken
        by frees of any process."""
        if timestamp_ns is None and metadata is None:
            return _aio.put(self, buffer, timeout)
        return _aio.put(self, buffer, timeout, timestamp_ns=timestamp_ns, metadata=metadata)

    def __aiter__(self):
        """``async for frame in ring``: async_get() until shut down and drained."""
        return _aio.AsyncIterator(self)

    def _aio_waiters(self):
        """The ring's _aio.BufferWaiters, made on first use."""
        cdef object w = self._aio
        if w is None:
            w = _aio.BufferWaiters(self)
            with cython.critical_section(self):
                if self._aio is None:
                    self._aio = w
                w = self._aio
        return w

    def _aio_state(self):
        """For tests: (a coroutine waits for a frame, one waits for room)."""
        return BM_SHM_AIO_LOAD(&self.aio_getters) != 0, BM_SHM_AIO_LOAD(&self.aio_putters) != 0

    def _aio_watcher(self, int kind):
        """For tests: the _Watcher of a direction (None before first use)."""
        return None if self._watchers is None else self._watchers[kind]

    def _aio_set_active(self, int kind, bint active):
        """Called by the registry (under its lock) when it becomes (non-)empty:
        the flag for direct wake-ups, and the watcher for other processes'."""
        cdef _Segment seg
        cdef object wt
        BM_SHM_AIO_STORE(&self.aio_putters if kind == _AIO_PUTTERS else &self.aio_getters,
                         1 if active else 0)
        with cython.critical_section(self):
            seg = self.seg
            if self._watchers is None:
                self._watchers = [None, None]
            wt = self._watchers[kind]
            if wt is None and active and seg is not None:
                wt = self._watchers[kind] = _Watcher(self, kind)
        if wt is not None:
            wt.set_active(active)

    def reclaim(self):
        """Run a liveness scan now: take back what dead processes held.
        Returns how many dead participants were found. (Blocked calls and
        refused puts do this on their own.)"""
        cdef _Segment seg = self._seg()
        cdef int n
        with nogil:
            n = bm_shm_reap(&seg.shm)
        return n

    def _check(self):
        """Test hook: 0 when every invariant of the segment holds."""
        cdef _Segment seg = self._seg()
        cdef int bad
        _lock(&seg.shm)
        bad = bm_shm_check_locked(&seg.shm)
        bm_shm_unlock(&seg.shm)
        return bad

    def _debug_hold_lock(self, seconds):
        """Test hook: hold the segment mutex for ``seconds`` (GIL released),
        so that a kill -9 lands while the lock is held."""
        cdef _Segment seg = self._seg()
        cdef int64_t ns = <int64_t>(float(seconds) * 1e9)
        with nogil:
            bm_shm_debug_hold_lock(&seg.shm, ns)

    def __repr__(self):
        if self._cur() is None:
            return f"<bufmgr.SharedFrameRing name={self.name!r} closed>"
        s = self._stats()
        return (f"<bufmgr.SharedFrameRing name={self.name!r} slots={s.slots} "
                f"frame_bytes={s.frame_bytes} overflow={self.overflow!r} size={s.size} "
                f"held={s.held} dropped={s.dropped}{' shutdown' if s.shutdown else ''}>")


cdef int _check_platform() except -1:
    return 0  # this module is only built on Linux (setup.py)


def _close_all_rings():
    for ring in list(_live_rings):
        try:
            ring.close()
        except Exception:  # pragma: no cover - exit path
            pass


atexit.register(_close_all_rings)


# ---- bufmgr.shm helpers -------------------------------------------------------------------

def peek(name):
    """A read-only look at segment ``name`` (no attach): dict, or ValueError
    for a file that is not a valid bufmgr segment."""
    cdef bm_shm_info info
    cdef char why[256]
    cdef int err = 0, st
    cdef bytes bname = _full_name(name).encode("ascii")
    cdef uint32_t i
    cdef const char *cname = bname
    why[0] = 0
    with nogil:
        st = bm_shm_peek(cname, &info, why, sizeof(why), &err)
    if st == BM_SHM_ERRNO:
        raise OSError(err, os.strerror(err))
    if st != BM_OK:
        raise ValueError(_why(why))
    return {
        "creator_pid": info.creator_pid,
        "creator_alive": bool(info.creator_alive),
        "participants": info.attached,
        "alive_pids": [info.pids[i] for i in range(info.alive)],
        "slots": info.nslots,
        "frame_bytes": info.frame_bytes,
        "total_bytes": info.total_bytes,
    }


def unlink_name(name):
    """shm_unlink the name (no checks beyond its validity); 0 or an errno."""
    return bm_shm_unlink_name(_full_name(name).encode("ascii"))


def validate_bytes(data, bint need_ready=True):
    """Test hook: run the attach-time header validation on a bytes-like
    object of exactly that size; returns (status, message)."""
    cdef const unsigned char[::1] v = memoryview(data).cast("B")
    cdef char why[256]
    cdef int st
    why[0] = 0
    if v.shape[0] == 0:
        st = bm_shm_validate(NULL, 0, need_ready, why, sizeof(why))
    else:
        st = bm_shm_validate(&v[0], <size_t>v.shape[0], need_ready, why, sizeof(why))
    return st, _why(why)
