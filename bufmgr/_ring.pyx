# cython: language_level=3, embedsignature=True, freethreading_compatible=True
# cython: boundscheck=False, wraparound=False, cdivision=True
"""Compiled FrameQueue: queue.Queue semantics over the C ring (include/bufmgr/ring.h).

Concurrency rules enforced in this file (see README "Concurrency invariants"):

1. No Python code runs while the ring mutex is held. An item's reference is
   taken (INCREF) *before* locking; objects that leave the ring without being
   returned (evicted, discarded, cleared) are released (DECREF) only *after*
   unlocking, because a ``__del__`` may touch this very queue. Nothing here
   takes the GIL while holding the mutex.
2. The GIL is released only to sleep on a condition variable (or to wait for
   a contended mutex), never around the O(1) pointer moves themselves.
3. Waits use absolute monotonic deadlines and sleep in slices of at most
   50 ms; between slices the GIL is re-taken and PyErr_CheckSignals runs, so
   Ctrl+C interrupts a blocked call promptly and the queue stays usable.
4. The C ring counts every item: puts == gets + dropped + cleared + size.
"""

cimport cython
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport PyObject, Py_DECREF, Py_INCREF, Py_XDECREF
from libc.stdint cimport int64_t

from bufmgr._cring cimport *

import os
import weakref
from types import GenericAlias as _GenericAlias

from bufmgr import _aio, _errors
from bufmgr._errors import Empty, Full, ShutDown

include "_deadline.pxi"  # SLICE_NS, MAX_FINITE_TIMEOUT, _timeout_seconds, _deadline, ...
cdef int LOCK_SPINS = 50  # polls (~1-3 µs) before _lock blocks; a GIL hand-off costs more
cdef size_t CHUNK = 256               # get_many: items moved per lock hold

cdef dict _POLICIES = {
    "block": BM_POLICY_BLOCK,
    "drop_oldest": BM_POLICY_DROP_OLDEST,
    "drop_newest": BM_POLICY_DROP_NEWEST,
}


cdef extern from *:
    """
    #ifdef Py_GIL_DISABLED
    #define BM_GIL_EXCLUDES 0
    #else
    #define BM_GIL_EXCLUDES 1
    #endif
    """
    # 1 where holding the GIL excludes every other Python thread.
    const bint BM_GIL_EXCLUDES


cdef extern from *:
    """
    /* Set (in the forking thread only) while that thread holds every live
     * queue's and ring's mutex for fork(): see "fork safety" below. Thread
     * local, so reading it is never a data race. */
    #if defined(_MSC_VER)
    static __declspec(thread) int bm_fork_locks_held = 0;
    #else
    static __thread int bm_fork_locks_held = 0;
    #endif
    """
    int bm_fork_locks_held


cdef extern from *:
    """
    /* asyncio flags (see bufmgr/_aio.py): set by the waiters' registry under
     * its lock, read by any thread after a ring/pool mutex was released. */
    #if defined(__GNUC__) || defined(__clang__)
    #define BM_AIO_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
    #define BM_AIO_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
    #else /* MSVC: aligned int loads/stores are atomic */
    #define BM_AIO_LOAD(p) (*(volatile int *)(p))
    #define BM_AIO_STORE(p, v) (*(volatile int *)(p) = (v))
    #endif
    """
    int BM_AIO_LOAD(int *p) noexcept nogil
    void BM_AIO_STORE(int *p, int v) noexcept nogil

cdef enum:
    _AIO_GETTERS = 0  # == _aio.GETTERS
    _AIO_PUTTERS = 1  # == _aio.PUTTERS
cdef size_t _AIO_ALL = <size_t>(1) << 62  # == _aio.ALL


include "_aiolane.pxi"  # AioLanes, _aio_notify: wake-ups from C


cdef extern from "Python.h":
    # cpython.list's PyList_SET_ITEM wants an object; we hand over a raw,
    # already-owned reference (the ring's), so declare the stealing form.
    void PyList_SET_ITEM_raw "PyList_SET_ITEM"(object lst, Py_ssize_t i, PyObject *o)
    object PyList_New(Py_ssize_t n)


cdef inline void _lock(bm_ring *r) noexcept:
    # Uncontended: take it with the GIL held (tens of ns). Contended: poll a
    # few µs first, still holding the GIL: the holder is a thread doing an
    # O(1) pointer move or coming back from a wait, and never needs the GIL
    # while it holds the mutex (invariant 1), so it lets go soon. Detaching
    # instead costs a GIL hand-off to another thread and back; measured with
    # bench/scaling.py on 2 cores, polling took 2P x 2C from about 4 to about
    # 6.5 M items/s (README, "Many-core scaling").
    while not bm_ring_trylock_spin(r, LOCK_SPINS):
        # The holder stays away (preempted): wait for it with the GIL
        # released, so it and other Python threads keep running -- but do
        # not keep the mutex while we take the GIL back (invariant 1: a
        # thread holding the mutex never waits for the GIL), so let go and
        # try again with the GIL.
        with nogil:
            bm_ring_lock(r)
            bm_ring_unlock(r)


cdef inline void _enter(FrameQueue q) noexcept:
    # Start a critical section on q's ring, GIL held. On a GIL build, while
    # no thread is detached in q (waiting in it without the GIL), holding the
    # GIL already excludes everyone who could touch the ring: skip the mutex,
    # its two calls and two atomic operations (together about 8 ns per
    # operation here once a process has threads). A thread detaches only after counting itself, with the GIL,
    # and our critical sections never release the GIL (no Python code runs
    # in them: invariant 1), so the count cannot change before _leave.
    if BM_GIL_EXCLUDES and q.detached == 0:
        return
    _lock(&q.ring)  # may release the GIL while it waits; holds the mutex after
    if BM_GIL_EXCLUDES:
        q.held = True


cdef inline void _leave(FrameQueue q) noexcept:
    if BM_GIL_EXCLUDES:
        if not q.held:
            return
        q.held = False
    bm_ring_unlock(&q.ring)


cdef inline void _detaching(FrameQueue q) noexcept:
    # Before a section that may touch q's ring without the GIL (see _enter).
    if BM_GIL_EXCLUDES:
        q.detached += 1


cdef inline void _reattached(FrameQueue q) noexcept:
    # After it, with the GIL back and the mutex released.
    if BM_GIL_EXCLUDES:
        q.detached -= 1


cdef inline object _steal(void *p):
    """Turn a reference the ring owned into a Python object we return."""
    cdef object o = <object>p   # +1
    Py_DECREF(o)                # -1: the ring's reference is now ours
    return o


cdef void _release(bm_items *items) noexcept:
    # Invariant 1: called only after bm_ring_unlock. Each DECREF may run a
    # __del__ that re-enters the queue; `items` is a private copy, so that is safe.
    cdef size_t i
    for i in range(items.count):
        Py_XDECREF(<PyObject *>bm_items_at(items, i))
    bm_items_free(items)


cdef object _raise_status(int st, bint getting):
    if st == BM_SHUTDOWN:
        raise ShutDown
    if st == BM_NOMEM:
        raise MemoryError("bufmgr: could not grow the queue storage")
    if getting:
        raise Empty
    raise Full


@cython.final
cdef class FrameQueue:
    """FrameQueue(maxsize=0, overflow="block")

    A thread-safe FIFO with the full queue.Queue API (3.13 shutdown included)
    over a C ring of object references (zero copy). ``overflow`` says what a
    put does when ``maxsize`` items are queued: "block" (like queue.Queue),
    "drop_oldest" (evict the oldest, return it) or "drop_newest" (refuse the
    new item, return it). ``maxsize <= 0`` means unbounded (kept as given,
    like queue.Queue); a drop policy needs ``maxsize > 0`` (ValueError).
    Final: subclassing raises TypeError (no _put/_get hooks to override).
    """

    cdef bm_ring ring
    cdef bint ready
    # GIL builds only (see _enter): threads that may be touching the ring
    # without the GIL (waiting in it), and whether the thread in a critical
    # section took the mutex. Both are read and written with the GIL held.
    cdef int detached
    cdef bint held
    cdef readonly object overflow
    cdef readonly object maxsize  # as given, like queue.Queue (-1 stays -1); the ring has the bound
    cdef object compat            # _QueueCompat (bufmgr/_compat.pxi), made on first use
    # asyncio (bufmgr/_aio.py): the registries, made on first use, and flags
    # that are non-zero only while a coroutine waits for an item / for room
    # (BM_AIO_LOAD/STORE). Every call that adds items or frees room tests
    # its flag after the mutex is released: the one check the sync hot path
    # pays, and the only way a put/get from any thread reaches a coroutine.
    cdef object _aio
    cdef AioLanes _aio_lanes      # made with _aio (bufmgr/_aiolane.pxi)
    cdef int aio_getters
    cdef int aio_putters
    cdef object __weakref__

    def __cinit__(self, maxsize=0, overflow="block"):
        cdef Py_ssize_t m = _errors.check_maxsize(maxsize)
        _errors.check_overflow(overflow)
        _errors.check_bounded_policy(maxsize, overflow)
        if bm_ring_init(&self.ring, <size_t>m, _POLICIES[overflow]) != BM_OK:
            raise MemoryError("bufmgr: could not create the queue's mutex/conditions")
        self.ready = True
        self.maxsize = int(maxsize)
        self.overflow = overflow
        _live_queues.add(self)

    def __dealloc__(self):
        cdef bm_items items
        if not self.ready:
            return
        # Nobody else can reach us any more (waiters hold a reference).
        bm_ring_lock(&self.ring)
        bm_ring_clear_locked(&self.ring, &items)
        bm_ring_unlock(&self.ring)
        _release(&items)
        bm_ring_destroy(&self.ring)

    # -- put ---------------------------------------------------------------

    cdef object _put_wait(self, PyObject *item, double seconds):
        """Slow path of put(): sleep (GIL released) until room, shutdown or deadline."""
        cdef void *dropped = NULL
        cdef int waited = 0
        cdef int st = BM_TIMEOUT
        cdef int64_t deadline = _deadline(seconds)
        cdef bm_ring *r = &self.ring
        _detaching(self)
        try:
            while True:
                with nogil:
                    bm_ring_lock(r)
                    st = bm_ring_put_locked(r, item, _slice_end(deadline), &waited, &dropped)
                    bm_ring_unlock(r)
                if st != BM_TIMEOUT or _expired(deadline):
                    break
                PyErr_CheckSignals()  # raises KeyboardInterrupt etc.
        except BaseException:
            Py_XDECREF(item)  # never queued: give our reference back
            raise
        finally:
            _reattached(self)
        if st != BM_OK:
            Py_XDECREF(item)
            _raise_status(st, False)
        if BM_AIO_LOAD(&self.aio_getters):
            _aio_notify(self._aio, self._aio_lanes, _AIO_GETTERS, 1)
        return None  # only "block" waits, and it never drops

    cdef inline object _put(self, object item, bint block, double seconds):
        cdef void *dropped = NULL
        cdef int st
        Py_INCREF(item)  # the ring's reference, taken before locking (invariant 1)
        _enter(self)
        st = bm_ring_put_locked(&self.ring, <void *>item, BM_NOWAIT, NULL, &dropped)
        _leave(self)
        if st == BM_OK:
            if BM_AIO_LOAD(&self.aio_getters):  # a coroutine waits (mutex released)
                _aio_notify(self._aio, self._aio_lanes, _AIO_GETTERS, 1)
            if dropped == NULL:
                return None
            return _steal(dropped)  # evicted oldest, or `item` refused
        if st == BM_FULL and block:
            return self._put_wait(<PyObject *>item, seconds)
        Py_DECREF(item)
        return _raise_status(st, False)

    def put(self, item, block=True, timeout=None):
        """Put an item. Returns the item a drop policy dropped, else None.

        "block": waits for room (block=False or a timeout -> queue.Full).
        "drop_oldest"/"drop_newest": never blocks; returns the evicted oldest
        item or the refused new one. Raises ShutDown after shutdown().
        """
        cdef double seconds = -1.0
        if block:
            seconds = _timeout_seconds(timeout)
        return self._put(item, block, seconds)

    def put_nowait(self, item):
        """Equivalent to put(item, block=False)."""
        return self._put(item, False, -1.0)

    def put_many(self, items, block=True, timeout=None):
        """Put every item in order (policy applied to each); return the dropped ones.

        Under "block" it waits for room for the rest; ``timeout`` bounds the
        whole call. If it stops early (Full, ShutDown) the items before the
        failing one stay queued and the exception propagates.
        """
        cdef double seconds = -1.0
        cdef list batch
        cdef Py_ssize_t n, i
        cdef size_t done = 0, nd = 0
        cdef int st = BM_OK, waited = 0
        cdef int64_t deadline
        cdef void **ptrs
        cdef void **dropped
        cdef bm_ring *r = &self.ring
        if block:
            seconds = _timeout_seconds(timeout)  # validate before consuming `items`
        batch = list(items)
        n = len(batch)
        if n == 0:
            if self.is_shutdown:
                raise ShutDown
            return []
        ptrs = <void **>PyMem_Malloc(2 * n * sizeof(void *))
        if ptrs == NULL:
            raise MemoryError()
        dropped = ptrs + n
        for i in range(n):
            ptrs[i] = <void *>batch[i]
            Py_INCREF(batch[i])  # the ring's references, before locking
        try:
            _enter(self)
            done = bm_ring_put_many_locked(r, ptrs, n, BM_NOWAIT, &waited, dropped, &nd, &st)
            _leave(self)
            if st == BM_FULL and block:
                deadline = _deadline(seconds)
                st = BM_TIMEOUT
                _detaching(self)
                try:
                    while True:
                        with nogil:
                            bm_ring_lock(r)
                            done += bm_ring_put_many_locked(r, ptrs + done, n - done,
                                                            _slice_end(deadline), &waited,
                                                            dropped, &nd, &st)
                            bm_ring_unlock(r)
                        if st != BM_TIMEOUT or _expired(deadline):
                            break
                        PyErr_CheckSignals()
                finally:
                    _reattached(self)
            result = PyList_New(nd)
            for i in range(<Py_ssize_t>nd):
                PyList_SET_ITEM_raw(result, i, <PyObject *>dropped[i])  # steals
            nd = 0
        finally:
            for i in range(<Py_ssize_t>done, n):
                Py_XDECREF(<PyObject *>ptrs[i])  # never queued
            for i in range(<Py_ssize_t>nd):      # only on an exception above
                Py_XDECREF(<PyObject *>dropped[i])
            PyMem_Free(ptrs)
            if done and BM_AIO_LOAD(&self.aio_getters):
                _aio_notify(self._aio, self._aio_lanes, _AIO_GETTERS, done)
        if st != BM_OK:
            _raise_status(st, False)
        return result

    # -- get ---------------------------------------------------------------

    cdef int _get_wait(self, double seconds, void **out, void **extra, size_t *nextra,
                       size_t want, bm_items *discarded) except -1:
        """Slow path shared by get/get_many/get_latest: sleep until an item,
        shutdown or the deadline; returns the C status."""
        cdef int waited = 0
        cdef int st = BM_TIMEOUT
        cdef int64_t deadline = _deadline(seconds)
        cdef bm_ring *r = &self.ring
        _detaching(self)
        try:
            while True:
                with nogil:
                    bm_ring_lock(r)
                    if discarded != NULL:
                        st = bm_ring_get_latest_locked(r, _slice_end(deadline), &waited, out,
                                                       discarded)
                    else:
                        st = bm_ring_get_locked(r, _slice_end(deadline), &waited, out)
                        if st == BM_OK and want:
                            nextra[0] = bm_ring_pop_many_locked(r, extra, want)
                    bm_ring_unlock(r)
                if st != BM_TIMEOUT or _expired(deadline):
                    return st
                PyErr_CheckSignals()
        finally:
            _reattached(self)

    cdef inline object _get(self, bint block, double seconds):
        cdef void *out = NULL
        cdef int st
        _enter(self)
        st = bm_ring_get_locked(&self.ring, BM_NOWAIT, NULL, &out)
        _leave(self)
        if st == BM_EMPTY and block:
            st = self._get_wait(seconds, &out, NULL, NULL, 0, NULL)
        if st == BM_OK:
            if BM_AIO_LOAD(&self.aio_putters):  # a coroutine waits for room
                _aio_notify(self._aio, self._aio_lanes, _AIO_PUTTERS, 1)
            return _steal(out)
        return _raise_status(st, True)

    def get(self, block=True, timeout=None):
        """Remove and return the oldest item (queue.Queue.get semantics).

        Raises queue.Empty when nothing arrives in time, ShutDown once the
        queue is shut down and drained.
        """
        cdef double seconds = -1.0
        if block:
            seconds = _timeout_seconds(timeout)
        return self._get(block, seconds)

    def get_nowait(self):
        """Equivalent to get(block=False)."""
        return self._get(False, -1.0)

    def get_many(self, max_items, block=True, timeout=None):
        """Wait for the first item like get(), then take whatever else is
        queued, up to ``max_items`` in all, without waiting. Returns a list."""
        cdef double seconds = -1.0
        cdef Py_ssize_t limit = _errors.check_max_items(max_items)
        cdef void *first = NULL
        cdef void *buf[256]
        cdef size_t got = 0, want, i
        cdef int st
        cdef bm_ring *r = &self.ring
        if block:
            seconds = _timeout_seconds(timeout)
        want = <size_t>(limit - 1) if <size_t>(limit - 1) < CHUNK else CHUNK
        _enter(self)
        st = bm_ring_get_locked(r, BM_NOWAIT, NULL, &first)
        if st == BM_OK and want:
            got = bm_ring_pop_many_locked(r, buf, want)
        _leave(self)
        if st == BM_EMPTY and block:
            st = self._get_wait(seconds, &first, buf, &got, want, NULL)
        if st != BM_OK:
            _raise_status(st, True)
        result = [_steal(first)]
        limit -= 1
        while True:
            for i in range(got):
                result.append(_steal(buf[i]))
            limit -= got
            if got < want or limit <= 0:
                if BM_AIO_LOAD(&self.aio_putters):
                    _aio_notify(self._aio, self._aio_lanes, _AIO_PUTTERS, len(result))
                return result
            want = <size_t>limit if <size_t>limit < CHUNK else CHUNK
            _enter(self)
            got = bm_ring_pop_many_locked(r, buf, want)
            _leave(self)

    def get_latest(self, block=True, timeout=None):
        """Return the newest item; every older queued item is discarded and
        counted as dropped ("latest image only"). Waits like get()."""
        cdef double seconds = -1.0
        cdef void *out = NULL
        cdef bm_items discarded
        cdef int st
        cdef size_t n
        if block:
            seconds = _timeout_seconds(timeout)
        _enter(self)
        st = bm_ring_get_latest_locked(&self.ring, BM_NOWAIT, NULL, &out, &discarded)
        _leave(self)
        if st == BM_EMPTY and block:
            st = self._get_wait(seconds, &out, NULL, NULL, 0, &discarded)
        if st != BM_OK:
            _raise_status(st, True)
        result = _steal(out)
        n = discarded.count + 1
        _release(&discarded)  # after unlock (invariant 1)
        if BM_AIO_LOAD(&self.aio_putters):
            _aio_notify(self._aio, self._aio_lanes, _AIO_PUTTERS, n)
        return result

    # -- bookkeeping -------------------------------------------------------

    def task_done(self):
        """Mark one got item as processed (queue.Queue.task_done)."""
        cdef int st
        _enter(self)
        st = bm_ring_task_done_locked(&self.ring)
        _leave(self)
        if st == BM_INVALID:
            raise ValueError(_errors.TASK_DONE_TOO_MANY)

    def join(self):
        """Block until every item put was task_done()'d, dropped or cleared."""
        cdef int st
        cdef bm_ring *r = &self.ring
        _enter(self)
        st = bm_ring_join_locked(r, BM_NOWAIT)
        _leave(self)
        if st == BM_OK:
            return
        _detaching(self)
        try:
            while st != BM_OK:
                with nogil:
                    bm_ring_lock(r)
                    st = bm_ring_join_locked(r, _slice_end(BM_FOREVER))
                    bm_ring_unlock(r)
                if st != BM_OK:
                    PyErr_CheckSignals()
        finally:
            _reattached(self)

    def shutdown(self, immediate=False):
        """Shut down (CPython 3.13 semantics): puts raise ShutDown, gets drain
        then raise ShutDown; ``immediate`` also empties the queue (counted as
        cleared) so join() returns. Every blocked caller wakes up."""
        cdef bm_items items
        cdef bint imm = bool(immediate)
        _enter(self)
        bm_ring_shutdown_locked(&self.ring, imm, &items)
        _leave(self)
        _release(&items)
        # every coroutine waiting on this queue, in every loop
        if BM_AIO_LOAD(&self.aio_getters):
            _aio_notify(self._aio, self._aio_lanes, _AIO_GETTERS, _AIO_ALL)
        if BM_AIO_LOAD(&self.aio_putters):
            _aio_notify(self._aio, self._aio_lanes, _AIO_PUTTERS, _AIO_ALL)

    def clear(self):
        """Remove every queued item (counted as cleared); return how many."""
        cdef bm_items items
        cdef size_t n
        _enter(self)
        n = bm_ring_clear_locked(&self.ring, &items)
        _leave(self)
        _release(&items)
        if n and BM_AIO_LOAD(&self.aio_putters):
            _aio_notify(self._aio, self._aio_lanes, _AIO_PUTTERS, n)
        return n

    # -- introspection -----------------------------------------------------

    def qsize(self):
        """Number of items queued now."""
        cdef size_t n
        _enter(self)
        n = self.ring.count
        _leave(self)
        return n

    def __len__(self):
        return self.qsize()

    def empty(self):
        """True if nothing is queued now."""
        return self.qsize() == 0

    def full(self):
        """True if maxsize items are queued now (never for unbounded)."""
        return self.ring.maxsize > 0 and self.qsize() >= self.ring.maxsize

    @property
    def unfinished_tasks(self):
        """Items put and not yet task_done(), dropped or cleared. May be
        lowered (``q.unfinished_tasks = 0``, the queue.Queue idiom), never raised."""
        cdef size_t n
        _enter(self)
        n = self.ring.unfinished
        _leave(self)
        return n

    @unfinished_tasks.setter
    def unfinished_tasks(self, value):
        _set_unfinished(self, value)

    def __bool__(self):
        return True  # like queue.Queue: `q or FrameQueue()` keeps an empty queue

    __class_getitem__ = classmethod(_GenericAlias)  # FrameQueue[int], like queue.Queue[int]

    # queue.Queue's public internals, for code written against them: see
    # bufmgr/_compat.pxi for what they are (and what they cannot be).
    @property
    def mutex(self):
        """A lock for queue.Queue-style code; it does not block this queue's operations."""
        return _compat_of(self).mutex

    @property
    def not_empty(self):
        """A Condition on ``mutex`` whose wait() returns when an item is put."""
        return _compat_of(self).not_empty

    @property
    def not_full(self):
        """A Condition on ``mutex`` whose wait() returns when a place is freed."""
        return _compat_of(self).not_full

    @property
    def all_tasks_done(self):
        """A Condition on ``mutex`` whose wait() returns when no task is unfinished."""
        return _compat_of(self).all_tasks_done

    @property
    def queue(self):
        """A live deque-like view of the queued items (each operation atomic)."""
        return _compat_of(self).queue

    @property
    def is_shutdown(self):
        """True once shutdown() was called."""
        cdef int s
        _enter(self)
        s = self.ring.shutdown
        _leave(self)
        return s != 0

    def stats(self):
        """Counters as a dict: puts, gets, dropped, cleared, high_water, size,
        maxsize, waits. At a quiet moment puts == gets + dropped + cleared + size."""
        cdef bm_stats s
        _enter(self)
        bm_ring_stats_locked(&self.ring, &s)
        _leave(self)
        return {
            "puts": s.puts,
            "gets": s.gets,
            "dropped": s.dropped,
            "cleared": s.cleared,
            "high_water": s.high_water,
            "size": s.size,
            "maxsize": self.ring.maxsize,
            "waits": s.waits,
        }

    # -- asyncio (bufmgr/_aio.py) -------------------------------------------

    def async_get(self, timeout=None):
        """Coroutine: get() without blocking the event loop (queue.Empty on
        timeout, ShutDown once shut down and drained)."""
        return _aio.get(self, timeout)

    def async_get_many(self, max_items, timeout=None):
        """Coroutine: get_many() without blocking the event loop."""
        return _aio.get_many(self, max_items, timeout)

    def async_get_latest(self, timeout=None):
        """Coroutine: get_latest() without blocking the event loop."""
        return _aio.get_latest(self, timeout)

    def async_put(self, item, timeout=None):
        """Coroutine: put() without blocking the event loop (queue.Full on
        timeout); returns what put() returns."""
        return _aio.put(self, item, timeout)

    def __aiter__(self):
        """``async for item in q``: async_get() until shut down and drained."""
        return _aio.AsyncIterator(self)

    def _aio_waiters(self):
        """The queue's _aio.BufferWaiters, made on first use."""
        cdef object w = self._aio
        cdef AioLanes lanes
        if w is None:
            lanes = AioLanes()
            w = _aio.BufferWaiters(self, lanes)
            # check-and-set with no Python code in between: atomic under the
            # GIL, a critical section on free-threaded builds. The lanes are
            # set first: a notifier that sees _aio sees them (or none, and
            # takes the Python path).
            with cython.critical_section(self):
                if self._aio is None:
                    self._aio_lanes = lanes
                    self._aio = w
                w = self._aio
        return w

    def _aio_state(self):
        """For tests: (a coroutine waits for an item, one waits for room)."""
        return BM_AIO_LOAD(&self.aio_getters) != 0, BM_AIO_LOAD(&self.aio_putters) != 0

    def _aio_set_active(self, int kind, bint active):
        """Called by the registry (under its lock) when it becomes (non-)empty."""
        BM_AIO_STORE(&self.aio_putters if kind == _AIO_PUTTERS else &self.aio_getters,
                     1 if active else 0)

    def _gil_state(self):
        """For tests: (threads counted as detached, critical section open);
        (0, False) whenever no call on this queue is in progress. Always
        (0, False) on free-threaded builds, which always take the mutex."""
        return self.detached, self.held

    def __repr__(self):
        cdef bm_stats s
        _enter(self)
        bm_ring_stats_locked(&self.ring, &s)
        _leave(self)
        return "<bufmgr.FrameQueue size=%d maxsize=%d overflow=%r dropped=%d%s>" % (
            s.size, self.maxsize, self.overflow, s.dropped, " shutdown" if s.shutdown else "")

    def __reduce__(self):
        raise _errors.pickle_error("FrameQueue")


# -- garbage collection ----------------------------------------------------------
# The ring holds references the GC cannot see through Cython's generated
# tp_traverse, so a queue holding (something that refers back to) itself
# would leak. Wrap the type's traverse/clear to visit/clear the queued items.
cdef extern from "Python.h":
    ctypedef int (*visitproc)(PyObject *, void *)
    ctypedef int (*traverseproc)(PyObject *, visitproc, void *)
    ctypedef int (*inquiry)(PyObject *)
    ctypedef struct _GCSlots "PyTypeObject":
        traverseproc tp_traverse
        inquiry tp_clear

cdef traverseproc _base_traverse = (<_GCSlots *><PyObject *>FrameQueue).tp_traverse
cdef inquiry _base_clear = (<_GCSlots *><PyObject *>FrameQueue).tp_clear


cdef int _fq_traverse(PyObject *o, visitproc visit, void *arg) noexcept:
    cdef bm_ring *r = &(<FrameQueue>o).ring
    cdef size_t i, j
    cdef int rc = _base_traverse(o, visit, arg)
    if rc:
        return rc
    # try-lock only: GC may run while this thread holds the mutex (fork
    # handlers) or, free-threaded, while a detached thread holds it. Skipping
    # the visit is conservative: unseen references only keep objects alive.
    if not bm_ring_trylock(r):
        return 0
    for i in range(r.count):
        j = r.head + i
        if j >= r.cap:
            j -= r.cap
        rc = visit(<PyObject *>r.buf[j], arg)
        if rc:
            break
    bm_ring_unlock(r)
    return rc


cdef int _fq_clear(PyObject *o) noexcept:
    cdef bm_items items
    cdef bm_ring *r = &(<FrameQueue>o).ring
    bm_ring_lock(r)
    bm_ring_clear_locked(r, &items)
    bm_ring_unlock(r)
    _release(&items)  # after unlock (invariant 1)
    return _base_clear(o)


(<_GCSlots *><PyObject *>FrameQueue).tp_traverse = _fq_traverse
(<_GCSlots *><PyObject *>FrameQueue).tp_clear = _fq_clear


# -- fork safety ---------------------------------------------------------------
# A child process inherits every queue's mutex in whatever state some thread
# of the parent left it (bpo-40089). Before fork we take every live queue's
# (and FrameRing's) mutex, so no ring is caught half-updated; the parent then
# releases them and the child re-creates them. Waiters of the parent do not
# exist in the child; queued items and counters are kept. The forking thread
# is the one thread that holds several mutexes, and the one that may wait for
# the GIL while it holds some (between two _lock calls). Neither can
# deadlock: every other thread holds at most one ring mutex at a time, and no
# thread ever blocks on a ring mutex while it holds the GIL (_lock polls, then
# waits with the GIL released).
#
# Between the before-fork handler and the after-fork handlers, other Python
# code runs in the forking thread: before-fork handlers registered before
# bufmgr's (they run after it), and anything their reference drops finalize.
# With the mutexes held, that code must not reach a lock the forking thread
# holds (issue 11.1: the child deadlocked in FrameQueue.__dealloc__):
#
# * Every locked queue/ring is kept alive by _locked_for_fork /
#   _fr_locked_for_fork until EVERY mutex (queues and rings) is usable
#   again: the parent unlocks all of them, the child re-creates all of them,
#   and only then are the references dropped -- a queue's __dealloc__ locks
#   its mutex and releases its items, which may be Frames of a ring.
# * The child re-creates the locked mutexes first, walking the lists by index
#   (no allocation, so no garbage collection can run a finalizer first).
# * A Frame (or a memoryview of one) dropped in that window by the forking
#   thread finds its ring's mutex already held by this very thread
#   (bm_fork_locks_held and the ring's fork_locked flag) and does its
#   bookkeeping without locking (see _fr_lock_frame in _framering.pxi).
# One handler triplet covers queues and rings, so no handler of another
# library can run between the two halves.
_live_queues = weakref.WeakSet()
_locked_for_fork = []


def _snapshot(live):
    """list(WeakSet), retried: another thread may add to it while we copy."""
    while True:
        try:
            return list(live)
        except RuntimeError:  # "Set changed size during iteration"
            continue


def _before_fork():
    for q in _snapshot(_live_queues):
        _lock(&(<FrameQueue>q).ring)
        _locked_for_fork.append(q)


cdef list _after_fork_parent():
    """Unlock every locked queue; return the references (drop them only once
    the rings are unlocked too)."""
    cdef list held = _locked_for_fork[:]
    cdef Py_ssize_t i
    for i in range(len(held)):
        bm_ring_unlock(&(<FrameQueue>held[i]).ring)
    del _locked_for_fork[:]
    return held


cdef void _reinit_queue(FrameQueue q) noexcept:
    bm_ring_reinit_after_fork(&q.ring)
    q.detached = 0  # its waiters stayed in the parent
    q.held = False


cdef void _after_fork_child_locked() noexcept:
    """Re-create the locked queues' mutexes: walks the list by index, so
    nothing is allocated (and no garbage collection runs a finalizer) first."""
    cdef list locked = _locked_for_fork
    cdef Py_ssize_t i
    for i in range(len(locked)):
        _reinit_queue(<FrameQueue>locked[i])


cdef list _after_fork_child():
    """Re-create the mutex of every live queue not locked for the fork (one
    created while we were locking: its mutex may be in any state too); return
    the references held for the fork, to drop once every ring is usable."""
    held = _locked_for_fork[:]
    del _locked_for_fork[:]
    for q in _snapshot(_live_queues):
        if q not in held:
            _reinit_queue(<FrameQueue>q)
    return held


# FrameRing (issue #5): written in bufmgr/_framering.pxi, compiled into this module.
include "_framering.pxi"
# One registration for queues and rings (see "fork safety" above).
def _fork_before():
    global bm_fork_locks_held
    _fr_before_fork()
    _before_fork()
    bm_fork_locks_held = 1


def _fork_after_parent():
    global bm_fork_locks_held
    bm_fork_locks_held = 0
    held = (_after_fork_parent(), _fr_after_fork_parent())
    del held  # last references (and __dealloc__s) only now: every mutex is unlocked


def _fork_after_child():
    global bm_fork_locks_held
    bm_fork_locks_held = 0
    # First the mutexes that were locked, without allocating; then the rest.
    _fr_after_fork_child_locked()
    _after_fork_child_locked()
    held = (_fr_after_fork_child(), _after_fork_child())
    del held  # every mutex is re-created: finalizers may use any queue or ring


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_fork_before, after_in_parent=_fork_after_parent,
                        after_in_child=_fork_after_child)
# queue.Queue's mutex/not_empty/not_full/all_tasks_done/queue (issue #14): bufmgr/_compat.pxi.
include "_compat.pxi"
