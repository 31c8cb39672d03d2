# queue.Queue's public internals for the compiled FrameQueue (issue #14):
# `mutex`, `not_empty`, `not_full`, `all_tasks_done` and `queue`, made on
# first use (a queue that never touches them pays one NULL field).
# Compiled into bufmgr/_ring.pyx (included from there).
#
# What they are, and what they cannot be:
#
# * The items live in the C ring behind its C mutex, and no Python code may
#   run while that mutex is held (invariant 1). So `mutex` cannot be the
#   ring's lock: it is a threading.Lock of its own. It excludes the other
#   users of `mutex` and of the three conditions, NOT put/get/clear..., which
#   stay as fast as without it. Each operation of the `queue` view is atomic
#   by itself (one critical section on the ring), so the common idiom
#   `with q.mutex: q.queue.clear()` does what it says; a check-then-act
#   sequence of several view operations is not atomic against concurrent
#   put/get (README, "FrameQueue versus queue.Queue").
# * The conditions sleep on the ring's own condition variables, counted among
#   its getters / putters / joiners (bm_ring_watch_locked), so the ring's own
#   puts / gets / task_done wake them: `with q.not_empty: q.not_empty.wait(t)`
#   (multiprocessing.dummy's Connection.poll) returns when an item arrives.
#   A wait returns at once if the ring did something of its kind since the
#   caller took `mutex` (the event count is taken at acquire), which stands
#   in for queue.Queue's "a put cannot slip in between my check and my wait".
#   notify()/notify_all() wake every waiter of that condition (a Condition may
#   wake more waiters than asked; the usual `while not pred: wait()` copes).
#
# Waits follow invariants 2 and 3: the GIL is released only while asleep on
# the ring's condition variable, monotonic deadlines, 50 ms slices with
# PyErr_CheckSignals between them. Like every detached wait in _ring.pyx the
# watcher counts itself in q.detached first (see _enter).

from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport Py_XINCREF

import operator as _operator
import threading as _threading
from collections import deque as _deque
from time import monotonic as _monotonic

cdef object _compat_creation = _threading.Lock()  # one set of compat objects per queue


cdef _QueueCompat _compat_of(FrameQueue q):
    cdef _QueueCompat c = q.compat
    if c is not None:
        return c
    with _compat_creation:  # two threads asking at once must get the same objects
        if q.compat is None:
            q.compat = _QueueCompat(q)
        return q.compat


cdef class _QueueCompat:
    cdef readonly _QueueLock mutex
    cdef readonly _QueueCondition not_empty, not_full, all_tasks_done
    cdef readonly _QueueView queue

    def __cinit__(self, FrameQueue q):
        self.mutex = _QueueLock(q)
        self.not_empty = _QueueCondition(self.mutex, BM_WATCH_ITEMS)
        self.not_full = _QueueCondition(self.mutex, BM_WATCH_ROOM)
        self.all_tasks_done = _QueueCondition(self.mutex, BM_WATCH_ALL_DONE)
        self.queue = _QueueView(q)


@cython.final
cdef class _QueueLock:
    """FrameQueue.mutex: a threading.Lock for code written against
    queue.Queue's ``mutex``. It excludes other holders of it (and waiters on
    not_empty/not_full/all_tasks_done, which share it), not the queue's own
    operations: those never wait for it, and work while it is held."""

    cdef object lock
    cdef FrameQueue q
    # The holder's thread id, 0 when free. A C integer, not an object: other
    # threads read it (_is_owned) while the holder writes it, and on a
    # free-threaded build an object field replaced under a reader is a
    # use-after-free (invariant 5).
    cdef unsigned long owner
    cdef uint64_t seen[3]        # the ring's event counts when it was taken

    def __cinit__(self, FrameQueue q):
        self.q = q
        self.lock = _threading.Lock()

    cdef int _taken(self) except -1:
        cdef int k
        self.owner = PyThread_get_thread_ident()
        _enter(self.q)
        for k in range(3):
            self.seen[k] = bm_ring_events_locked(&self.q.ring, k)
        _leave(self.q)
        return 0

    def acquire(self, blocking=True, timeout=-1):
        """Lock.acquire(blocking=True, timeout=-1) -> bool."""
        if self.lock.acquire(blocking, timeout):
            self._taken()
            return True
        return False

    def release(self):
        """Lock.release(); RuntimeError if it is not held."""
        cdef unsigned long owner = self.owner
        self.owner = 0
        try:
            self.lock.release()
        except BaseException:
            self.owner = owner
            raise

    def locked(self):
        return self.lock.locked()

    def _is_owned(self):
        return self.owner != 0 and self.owner == PyThread_get_thread_ident()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc, tb):
        self.release()

    def __repr__(self):
        return "<bufmgr.FrameQueue.mutex %s>" % ("locked" if self.lock.locked() else "unlocked")

    def __reduce__(self):
        raise _errors.pickle_error("FrameQueue.mutex")


@cython.final
cdef class _QueueCondition:
    """FrameQueue.not_empty / not_full / all_tasks_done: a threading.Condition
    over FrameQueue.mutex whose wait() also returns when the queue gets an
    item / frees a place / has no unfinished task left (or shuts down)."""

    cdef _QueueLock lock
    cdef int kind
    cdef uint64_t kicks          # notify() count; read and written under the ring mutex

    def __cinit__(self, _QueueLock lock, int kind):
        self.lock = lock
        self.kind = kind

    def acquire(self, blocking=True, timeout=-1):
        return self.lock.acquire(blocking, timeout)

    def release(self):
        self.lock.release()

    def __enter__(self):
        return self.lock.acquire()

    def __exit__(self, exc_type, exc, tb):
        self.lock.release()

    def _is_owned(self):
        return self.lock._is_owned()

    def wait(self, timeout=None):
        """Release the mutex, sleep until an event of this kind, a notify()
        or the timeout, take the mutex back. True unless it timed out."""
        cdef FrameQueue q = self.lock.q
        cdef double seconds = -1.0
        cdef int st
        cdef uint64_t seen, kick_seen
        if not self.lock._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        if timeout is not None:
            seconds = float(timeout)  # threading.Condition: <= 0 polls, no ValueError
            if seconds != seconds:
                raise ValueError("'timeout' must be a number, not NaN")
            if seconds < 0.0:
                seconds = 0.0
            elif seconds >= MAX_FINITE_TIMEOUT:
                seconds = -1.0
        seen = self.lock.seen[self.kind]
        _enter(q)
        kick_seen = self.kicks
        _leave(q)
        self.lock.release()
        try:
            st = _watch(q, self.kind, seen, &self.kicks, kick_seen, seconds)
        finally:
            self.lock.acquire()  # takes a fresh event count
        return st == BM_OK

    def wait_for(self, predicate, timeout=None):
        """threading.Condition.wait_for: wait until predicate() is true."""
        cdef object end = None
        cdef object left = timeout
        result = predicate()
        while not result:
            if left is not None:
                if end is None:
                    end = _monotonic() + left
                else:
                    left = end - _monotonic()
                    if left <= 0:
                        break
            self.wait(left)
            result = predicate()
        return result

    def notify(self, n=1):
        """Wake the waiters (all of them: more than n is allowed for a Condition)."""
        cdef FrameQueue q = self.lock.q
        if not self.lock._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        if n <= 0:
            return
        _enter(q)
        self.kicks += 1
        bm_ring_kick_locked(&q.ring, self.kind)
        _leave(q)

    def notify_all(self):
        self.notify(1)

    def __repr__(self):
        return "<bufmgr.FrameQueue.%s>" % ("not_empty", "not_full", "all_tasks_done")[self.kind]

    def __reduce__(self):
        raise _errors.pickle_error("FrameQueue condition")


cdef int _watch(FrameQueue q, int kind, uint64_t seen, uint64_t *kick, uint64_t kick_seen,
                double seconds) except -1:
    """Sleep (GIL released) until the ring's `kind` events move from `seen`,
    *kick from kick_seen, or the deadline; returns BM_OK or BM_TIMEOUT."""
    cdef int st
    cdef int64_t deadline
    cdef bm_ring *r = &q.ring
    if seconds == 0.0:
        _enter(q)
        st = bm_ring_watch_locked(r, kind, seen, kick, kick_seen, BM_NOWAIT)
        _leave(q)
        return st
    deadline = _deadline(seconds)
    _detaching(q)
    try:
        while True:
            with nogil:
                bm_ring_lock(r)
                st = bm_ring_watch_locked(r, kind, seen, kick, kick_seen, _slice_end(deadline))
                bm_ring_unlock(r)
            if st != BM_TIMEOUT or _expired(deadline):
                return st
            PyErr_CheckSignals()
    finally:
        _reattached(q)


@cython.final
cdef class _QueueView:
    """FrameQueue.queue: a live, deque-like view of the queued items, oldest
    first. Each operation is one atomic step on the queue and keeps its
    counters: clear() counts as cleared, append()/extend() as puts (the
    overflow policy applies; a full "block" queue raises queue.Full),
    popleft() as a get. Iteration, list(), ``in`` and repr() see a snapshot."""

    cdef FrameQueue q

    def __cinit__(self, FrameQueue q):
        self.q = q

    def __len__(self):
        return self.q.qsize()

    def __bool__(self):
        return self.q.qsize() > 0

    def __iter__(self):
        return iter(_snapshot_items(self.q))

    def __contains__(self, item):
        return item in _snapshot_items(self.q)  # == runs outside the lock

    def __getitem__(self, index):
        cdef Py_ssize_t i = _operator.index(index)  # TypeError for slices, like deque
        cdef Py_ssize_t n
        cdef void *p = NULL
        _enter(self.q)
        n = <Py_ssize_t>self.q.ring.count
        if i < 0:
            i += n
        if 0 <= i < n:
            p = bm_ring_peek_locked(&self.q.ring, <size_t>i)
            Py_XINCREF(<PyObject *>p)  # not Python code: safe under the mutex
        _leave(self.q)
        if p == NULL:
            raise IndexError("deque index out of range")
        return _steal(p)

    def clear(self):
        self.q.clear()

    def append(self, item):
        self.q.put_nowait(item)

    def extend(self, items):
        self.q.put_many(items, False)

    def popleft(self):
        try:
            return self.q.get_nowait()
        except Empty:
            raise IndexError("pop from an empty deque") from None

    def copy(self):
        return _deque(_snapshot_items(self.q))

    def __repr__(self):
        return "FrameQueue.queue(%r)" % (_snapshot_items(self.q),)

    def __reduce__(self):
        raise _errors.pickle_error("FrameQueue.queue")


cdef list _snapshot_items(FrameQueue q):
    """The queued items, oldest first, as a new list: references taken under
    the ring mutex (INCREF runs no Python code), the list built after."""
    cdef size_t n, i, room = 0
    cdef void **tmp = NULL
    cdef list out
    try:
        while True:
            _enter(q)
            n = q.ring.count
            if n <= room:
                for i in range(n):
                    tmp[i] = bm_ring_peek_locked(&q.ring, i)
                    Py_XINCREF(<PyObject *>tmp[i])  # not Python code
                _leave(q)
                break
            _leave(q)
            PyMem_Free(tmp)
            room = n + n // 4 + 8  # grown meanwhile? try again with room to spare
            tmp = <void **>PyMem_Malloc(room * sizeof(void *))
            if tmp == NULL:
                raise MemoryError()
        try:
            out = PyList_New(n)
        except BaseException:
            for i in range(n):
                Py_XDECREF(<PyObject *>tmp[i])
            raise
        for i in range(n):
            PyList_SET_ITEM_raw(out, i, <PyObject *>tmp[i])  # steals
        return out
    finally:
        PyMem_Free(tmp)


cdef int _set_unfinished(FrameQueue q, object value) except -1:
    cdef Py_ssize_t n = _operator.index(value)
    cdef int st
    if n < 0:
        raise ValueError(f"unfinished_tasks must be >= 0, got {n}")
    _enter(q)
    st = bm_ring_set_unfinished_locked(&q.ring, <size_t>n)
    _leave(q)
    if st != BM_OK:
        raise ValueError(
            f"unfinished_tasks can only be lowered (queue.Queue's "
            f"`q.unfinished_tasks = 0` idiom), not raised to {n}")
    return 0
