# FrameRing + Frame (issue #5): a preallocated pool of equal-size frame slots
# over include/bufmgr/pool.h. `include`d at the end of bufmgr/_ring.pyx, so
# it shares that module's helpers (_deadline, _slice_end, _expired,
# _timeout_seconds, _POLICIES) and imports (_errors, ShutDown, Empty, Full).
# Names private to this file start with _fr_ / _FR_ to stay clear of them.
#
# Concurrency rules of this file (the FrameQueue rules, adapted to slots):
#
# R1. No Python code runs while the pool mutex is held: under it only O(1)
#     slot bookkeeping happens (and O(queued) for clear/shutdown). Every
#     exception is raised after unlocking, from the returned status.
# R2. Frame bytes are copied with the mutex NOT held, while the copying
#     thread owns the slot (WRITING for put, HELD for get_into/bytes(frame)),
#     so no other thread can touch those bytes: no torn frames. The GIL is
#     released around a copy of _FR_NOGIL_COPY_MIN bytes or more, never
#     around the bookkeeping itself.
# R3. Waits use absolute monotonic deadlines, sleep in slices of at most
#     50 ms (GIL released) and run PyErr_CheckSignals between slices, so
#     Ctrl+C interrupts a blocked put/get promptly and the ring stays usable;
#     an interrupted call owns no slot (reserve/take happen atomically inside
#     the C wait).
# R4. A Frame's mutable state (exports, released, pinned, freed) changes only
#     under its ring's pool mutex (free-threading safe). Its slot goes back to
#     the pool exactly once: when the frame is released AND no exported buffer
#     is left (and no raw __array_interface__ address was handed out), by
#     whichever of release()/__releasebuffer__/__dealloc__ happens last. A Frame holds a strong reference to its FrameRing, so the pool's
#     storage outlives every frame and every exported view.
# R5. The C pool counts every frame: puts == gets + dropped + cleared + size,
#     and slots == free + writing + queued + held.
# R6. (issue 14) A queued slot owns one reference to its put's `metadata`
#     (ring.metas[slot], NULL for none). The pointer moves, never with a
#     DECREF under the mutex (invariant 1): a put stores it at commit (under
#     the mutex) and takes out the one of a frame it evicted (the slot is
#     WRITING and ours); get/get_into move it to the Frame / a local once the
#     slot is HELD by them (ours alone, as its bytes); clear, an immediate
#     shutdown and get_latest move the dropped slots' references into a
#     call-local array under the mutex and DECREF them after unlocking.

from cpython.buffer cimport (PyBUF_FORMAT, PyBUF_FULL_RO, PyBUF_ND, PyBUF_STRIDES,
                             PyBUF_WRITABLE, PyBuffer_IsContiguous, PyBuffer_Release,
                             PyObject_GetBuffer)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint64_t
from libc.string cimport memcpy
from cpython.mem cimport PyMem_Calloc

from bufmgr._cpool cimport *

from bufmgr import _framering_common as _frc  # messages/checks shared with the pure twin

cdef class FrameRing  # forward declaration: Frame refers to it

# Copies of at least this many bytes run with the GIL released (R2).
# Measured (issue #5, put+get_into round trips, GIL released vs held around
# both copies, one thread): the release/re-acquire pair costs ~10-20 ns per
# copy uncontended, i.e. +10 % at 4 KiB, +6 % at 16 KiB, +4 % at 32 KiB,
# +2 % at 64 KiB, < 1 % from 256 KiB; with a busy Python thread waiting, every
# release also hands it the GIL (the copier may then wait up to the switch
# interval to get it back), which is only worth it for copies long enough to
# matter to that thread. 64 KiB keeps the uncontended cost at ~2 %.
cdef enum:
    _FR_NOGIL_COPY_MIN = 65536
    # get_latest/clear/shutdown collect the dropped frames' metadata into a
    # stack array for rings of up to this many slots, else a heap one (R6)
    _FR_STACK_SLOTS = 64
    _FR_MAX_NDIM = 8  # _frc.MAX_NDIM

cdef Py_ssize_t _FR_ONE = 1  # the stride of a Frame's 1-D byte view
cdef size_t _FR_ANY_SIZE = <size_t>-1

_FR_RELEASED = _frc.FRAME_RELEASED
_FR_TOO_LARGE = _frc.RING_TOO_LARGE


cdef inline void _fr_lock(bm_pool *p) noexcept:
    # Same as _lock() for the ring: take it with the GIL held, polling briefly
    # when contended; wait for a holder that stays away with the GIL
    # released, and never hold the mutex while taking the GIL back.
    while not bm_pool_trylock_spin(p, LOCK_SPINS):
        with nogil:
            bm_pool_lock(p)
            bm_pool_unlock(p)


cdef inline bint _fr_lock_frame(FrameRing ring) noexcept:
    """Lock ``ring`` for a Frame's bookkeeping (release, dealloc, a view's
    release): the paths Python reaches implicitly, by dropping a reference.
    Returns False when nothing was locked because this thread holds the
    mutex already: it is the forking thread, between the before-fork and the
    after-fork handler (fork safety, _ring.pyx), and another before-fork
    handler dropped a frame. Unlock only if True."""
    if bm_pool_trylock(&ring.pool):
        return True
    if bm_fork_locks_held and ring.fork_locked:  # both this thread's own state
        return False
    _fr_lock(&ring.pool)
    return True


cdef inline void _fr_copy(void *dst, const void *src, size_t n) noexcept:
    if n >= _FR_NOGIL_COPY_MIN:
        with nogil:
            memcpy(dst, src, n)
    elif n:
        memcpy(dst, src, n)


cdef object _fr_raise(int st, bint getting):
    if st == BM_SHUTDOWN:
        raise ShutDown
    if st == BM_NOMEM:
        raise MemoryError("bufmgr: could not allocate the frame pool")
    if st == BM_INVALID:
        raise SystemError("bufmgr: frame pool slot in an unexpected state")
    if getting:
        raise Empty
    raise Full


cdef inline void _fr_aio_room(FrameRing ring, size_t n) noexcept:
    # `n` slots were freed (pool mutex already released): wake coroutines
    # waiting for room, if any. The one check a freeing call pays.
    if BM_AIO_LOAD(&ring.aio_putters):
        _aio_notify(ring._aio, ring._aio_lanes, _AIO_PUTTERS, n)


cdef int _fr_source(object buffer, Py_buffer *view, Py_ssize_t frame_bytes) except -1:
    """Export `buffer` read-only into *view; on error nothing is held."""
    cdef Py_ssize_t n
    PyObject_GetBuffer(buffer, view, PyBUF_FULL_RO)  # TypeError: not a buffer
    if not PyBuffer_IsContiguous(view, b'C'):
        PyBuffer_Release(view)
        raise _frc.not_contiguous()
    if view.len > frame_bytes:
        n = view.len
        PyBuffer_Release(view)
        raise _frc.frame_too_large(n, frame_bytes)
    return 0


cdef int _fr_target(object buffer, Py_buffer *view) except -1:
    """Export `buffer` (must be writable) into *view; on error nothing is held.

    Like memoryview(): ask read-only, then honour the exporter's `readonly`
    flag, so a read-only exporter gives TypeError rather than BufferError."""
    PyObject_GetBuffer(buffer, view, PyBUF_FULL_RO)
    if view.readonly:
        PyBuffer_Release(view)
        raise _frc.not_writable(buffer)
    if not PyBuffer_IsContiguous(view, b'C'):
        PyBuffer_Release(view)
        raise _frc.not_contiguous()
    return 0


@cython.final
# Traversed (its metadata object may refer back to it) but never cleared by
# the GC: __dealloc__ needs `ring` to give the slot back (R4).
@cython.no_gc_clear
cdef class Frame:
    """One frame got from a FrameRing: a read-only, zero-copy view of a slot.

    ``seq``, ``timestamp_ns`` (the producer's, else monotonic at put),
    ``nbytes``, ``gap`` (frames lost since the previous delivery),
    ``metadata``, ``shape`` and ``dtype`` stay readable after release. The
    data is reachable through the buffer protocol (``memoryview(frame)``,
    ``numpy.asarray(frame)``: the ring's shape/dtype for a full frame, flat
    bytes for a partial one) and ``bytes(frame)`` (a copy) until
    ``release()`` (or ``with frame:``); the slot is reused only once the
    frame is released and every exported view is released too. Frames are
    created by FrameRing.get(), never directly.
    """

    cdef FrameRing ring        # strong reference: the pool outlives the frame (R4)
    cdef unsigned char *data
    cdef size_t slot
    cdef Py_ssize_t exports    # live buffer exports + internal pins (R4: under the mutex)
    cdef bint _released        # release() was called
    cdef bint pinned           # __array_interface__ gave out a raw address: keep until dealloc
    cdef bint freed            # the slot went back to the pool
    cdef bint shaped           # a full frame of a ring with shape/dtype: exported with them
    cdef readonly unsigned long long seq
    cdef readonly long long timestamp_ns
    cdef readonly Py_ssize_t nbytes
    cdef readonly unsigned long long gap
    cdef readonly object metadata

    def __init__(self, *args, **kwargs):
        raise TypeError("Frame objects are created by FrameRing.get()")

    # -- lifetime (R4) -----------------------------------------------------

    cdef inline bint _free_locked(self) noexcept:
        # Mutex held. Hand the slot back once: released and no export left.
        # True if it did (the caller then wakes coroutines waiting for room,
        # after unlocking: _fr_aio_room).
        if self._released and self.exports == 0 and not self.pinned and not self.freed:
            self.freed = True
            bm_pool_release_locked(&self.ring.pool, self.slot)
            return True
        return False

    cdef int _pin(self) except -1:
        """Keep the slot's bytes valid (one more export); ValueError if released."""
        cdef bm_pool *p
        if self.ring is None:
            raise ValueError(_FR_RELEASED)
        p = &self.ring.pool
        _fr_lock(p)
        if self._released:
            bm_pool_unlock(p)
            raise ValueError(_FR_RELEASED)
        self.exports += 1
        bm_pool_unlock(p)
        return 0

    cdef void _unpin(self) noexcept:
        cdef bint locked = _fr_lock_frame(self.ring)
        cdef bint freed
        self.exports -= 1
        freed = self._free_locked()
        if locked:
            bm_pool_unlock(&self.ring.pool)
        if freed:
            _fr_aio_room(self.ring, 1)

    def release(self):
        """Give the slot back (idempotent). Exported views keep the bytes
        valid until they are released; then the slot is reused."""
        cdef bint locked
        cdef bint freed
        if self.ring is None:
            return
        locked = _fr_lock_frame(self.ring)
        self._released = True
        freed = self._free_locked()
        if locked:
            bm_pool_unlock(&self.ring.pool)
        if freed:
            _fr_aio_room(self.ring, 1)

    def __dealloc__(self):
        # No export can be left (each holds a reference to us); self.ring is
        # still set here (Cython clears it after __dealloc__).
        cdef bint locked
        cdef bint freed
        if self.ring is None or self.freed:
            return
        locked = _fr_lock_frame(self.ring)
        self._released = True
        self.pinned = False  # whatever used the raw address held a reference to us
        freed = self._free_locked()
        if locked:
            bm_pool_unlock(&self.ring.pool)
        if freed:
            _fr_aio_room(self.ring, 1)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.release()
        return False

    # -- data ----------------------------------------------------------------

    def __getbuffer__(self, Py_buffer *view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("Frame is read-only")
        cdef FrameRing ring
        self._pin()
        view.buf = self.data
        view.obj = self
        view.len = self.nbytes
        view.readonly = 1
        view.suboffsets = NULL
        view.internal = NULL
        if self.shaped:  # the ring's shape/format, C order (immutable ring fields)
            ring = self.ring
            view.itemsize = ring.itemsize
            view.format = PyBytes_AS_STRING(ring.fmt) if flags & PyBUF_FORMAT else NULL
            view.ndim = ring.ndim
            view.shape = ring.full_shape if (flags & PyBUF_ND) == PyBUF_ND else NULL
            view.strides = ring.full_strides if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
            return
        view.itemsize = 1
        view.format = NULL
        if flags & PyBUF_FORMAT:
            view.format = b"B"
        view.ndim = 1
        view.shape = &self.nbytes if (flags & PyBUF_ND) == PyBUF_ND else NULL
        view.strides = &_FR_ONE if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL

    def __releasebuffer__(self, Py_buffer *view):
        self._unpin()

    @property
    def __array_interface__(self):
        """numpy's array interface (read-only uint8 vector, zero-copy).

        numpy prefers the buffer protocol and only falls back to this when
        it fails, i.e. for a released frame, where this raises
        ValueError("frame was released") instead of numpy silently making
        an object array. A consumer that does use the raw address (keeping
        a reference to the frame, as numpy does) pins the slot until the
        frame itself is garbage collected, since its use cannot be tracked.
        """
        cdef bm_pool *p
        if self.ring is None:
            raise ValueError(_FR_RELEASED)
        p = &self.ring.pool
        _fr_lock(p)
        if self._released:
            bm_pool_unlock(p)
            raise ValueError(_FR_RELEASED)
        self.pinned = True
        bm_pool_unlock(p)
        return {
            "version": 3,
            "shape": self.shape,
            "typestr": self.ring.dtype.str if self.shaped and self.ring.dtype is not None else "|u1",
            "data": (<size_t>self.data, True),
        }

    @property
    def shape(self):
        """The shape numpy.asarray(frame) has: the ring's shape for a full
        frame of a ring made with shape=, (frame_bytes // itemsize,) for one
        made with dtype= only, else (nbytes,) (flat bytes)."""
        if self.shaped:
            return self.ring._full_shape
        return (self.nbytes,)

    @property
    def dtype(self):
        """The ring's numpy dtype when the frame is exported with it (a full
        frame of a ring made with dtype=); None for flat bytes (uint8)."""
        if self.shaped:
            return self.ring.dtype
        return None

    def __bytes__(self):
        cdef bytes out
        self._pin()  # the slot cannot be reused while we copy outside the mutex
        try:
            out = PyBytes_FromStringAndSize(NULL, self.nbytes)
            _fr_copy(PyBytes_AS_STRING(out), self.data, <size_t>self.nbytes)
        finally:
            self._unpin()
        return out

    def __repr__(self):
        return _frc.frame_repr(self.seq, self.nbytes, self.ring is None or self._released, self.gap)

    def __reduce__(self):
        raise _frc.frame_pickle_error()


@cython.final
cdef class FrameRing:
    """FrameRing(slots, frame_bytes=None, overflow="drop_oldest", *, shape=None, dtype=None)

    A thread-safe FIFO of frames copied into a preallocated pool of ``slots``
    buffers of ``frame_bytes`` bytes each (one allocation, nothing per frame).
    With ``shape`` (and optionally a numpy ``dtype``) frame_bytes is derived
    and full frames export that shape/dtype (numpy.asarray(frame) is an image).
    put() copies a bytes-like object in; get() hands out a zero-copy Frame
    (release it to recycle the slot); get_into() copies the oldest frame
    into a caller's buffer. When no slot is free, ``overflow`` decides:
    "drop_oldest" (evict the oldest queued frame), "drop_newest" (refuse the
    new one) or "block" (wait for a free slot).
    """

    cdef bm_pool pool
    cdef bint ready
    cdef readonly Py_ssize_t slots
    cdef readonly Py_ssize_t frame_bytes
    cdef readonly object overflow
    # shape/dtype (issue 14): what full frames export; immutable after __cinit__
    cdef readonly object shape     # as given (a tuple), or None
    cdef readonly object dtype     # numpy dtype, or None
    cdef tuple _full_shape         # the exported shape of a full frame, or None: flat
    cdef bytes fmt                 # its PEP 3118 format
    cdef Py_ssize_t itemsize
    cdef int ndim                  # 0: frames are flat bytes
    cdef Py_ssize_t full_shape[_FR_MAX_NDIM]
    cdef Py_ssize_t full_strides[_FR_MAX_NDIM]
    # R6: each queued slot's metadata reference (NULL: none), and whether a
    # put ever passed one (then clear/shutdown collect); both under the mutex
    cdef PyObject **metas
    cdef bint has_meta
    # asyncio (bufmgr/_aio.py), as in FrameQueue: the registries and the
    # flags tested after the pool mutex is released (_fr_aio_room for frees).
    cdef object _aio
    cdef AioLanes _aio_lanes  # made with _aio (bufmgr/_aiolane.pxi)
    cdef int aio_getters
    cdef int aio_putters
    # True while the forking thread holds this ring's mutex for fork(): only
    # that thread writes or reads it (after checking bm_fork_locks_held).
    cdef bint fork_locked
    cdef object __weakref__

    def __cinit__(self, slots, frame_bytes=None, overflow="drop_oldest", *, shape=None,
                  dtype=None):
        cdef Py_ssize_t n, m, i
        cdef int st
        # slots, dtype, shape, frame_bytes (given or derived), product, overflow
        slots, frame_bytes, overflow, shape, dt, fmt, itemsize = _frc.check_ring_geometry_args(
            slots, frame_bytes, overflow, shape, dtype)
        n = slots
        m = frame_bytes
        self.shape = shape
        self.dtype = dt
        self.fmt = fmt.encode("ascii")
        self.itemsize = itemsize
        self._full_shape = _frc.frame_geometry(m, m, shape, itemsize, dt is not None)
        if self._full_shape is not None:
            self.ndim = len(self._full_shape)
            for i in range(self.ndim):
                self.full_shape[i] = self._full_shape[i]
            self.full_strides[self.ndim - 1] = itemsize
            for i in range(self.ndim - 1, 0, -1):
                self.full_strides[i - 1] = self.full_strides[i] * self.full_shape[i]
        self.metas = <PyObject **>PyMem_Calloc(<size_t>n, sizeof(PyObject *))
        if self.metas == NULL:
            raise MemoryError(f"bufmgr: could not allocate {n} slots of {m} bytes")
        st = bm_pool_init(&self.pool, <size_t>n, <size_t>m, _POLICIES[overflow])
        if st == BM_INVALID:
            raise ValueError(_FR_TOO_LARGE)
        if st != BM_OK:
            raise MemoryError(f"bufmgr: could not allocate {n} slots of {m} bytes")
        self.ready = True
        self.slots = n
        self.frame_bytes = m
        self.overflow = overflow
        _fr_live_rings.add(self)

    def __dealloc__(self):
        # Every Frame holds a reference to us and every call in progress holds
        # `self`: no slot is in use and nobody waits.
        cdef Py_ssize_t i
        if self.ready:
            bm_pool_destroy(&self.pool)
        if self.metas != NULL:
            for i in range(self.slots):  # the queued frames' metadata
                Py_XDECREF(self.metas[i])
            PyMem_Free(self.metas)
            self.metas = NULL

    # -- put -----------------------------------------------------------------

    cdef object _put(self, Py_buffer *view, bint block, double seconds, int64_t ts,
                     object metadata):
        cdef size_t slot = 0
        cdef uint64_t seq = 0
        cdef int st, waited = 0
        cdef int64_t deadline
        cdef bm_pool *p = &self.pool
        cdef PyObject *meta = NULL     # the slot's reference to `metadata` (R6)
        cdef PyObject *evicted = NULL  # the metadata of a frame this put evicted
        if metadata is not None:
            Py_INCREF(metadata)  # before locking (invariant 1)
            meta = <PyObject *>metadata
        try:
            _fr_lock(p)
            st = bm_pool_reserve_locked(p, BM_NOWAIT, NULL, &slot)
            bm_pool_unlock(p)
            if st == BM_FULL and block:
                deadline = _deadline(seconds)
                while True:  # R3
                    with nogil:
                        bm_pool_lock(p)
                        st = bm_pool_reserve_locked(p, _slice_end(deadline), &waited, &slot)
                        bm_pool_unlock(p)
                    if st != BM_TIMEOUT or _expired(deadline):
                        break
                    PyErr_CheckSignals()  # raises KeyboardInterrupt etc.; no slot reserved
            if st == BM_REFUSED:
                return None
            if st != BM_OK:
                return _fr_raise(st, False)
            # The slot is WRITING and ours alone: copy outside the mutex (R2);
            # an evicted frame's metadata is ours too (R6). Nothing between
            # reserve and commit can raise.
            evicted = self.metas[slot]
            self.metas[slot] = NULL
            _fr_copy(bm_pool_slot_data(p, slot), view.buf, <size_t>view.len)
            _fr_lock(p)
            st = bm_pool_commit_ts_locked(p, slot, <size_t>view.len, ts, &seq)
            if st == BM_OK and meta != NULL:
                self.metas[slot] = meta  # queued: the slot owns it now
                self.has_meta = True
                meta = NULL
            bm_pool_unlock(p)
            if st != BM_OK:
                return _fr_raise(st, False)  # shut down during the copy: slot freed
            if BM_AIO_LOAD(&self.aio_getters):  # a coroutine waits (mutex released)
                _aio_notify(self._aio, self._aio_lanes, _AIO_GETTERS, 1)
            return seq
        finally:
            Py_XDECREF(meta)      # not queued (refused, failed, interrupted)
            Py_XDECREF(evicted)   # mutex released (invariant 1)

    cdef inline int64_t _put_timestamp(self, object timestamp_ns) except? -2:
        if timestamp_ns is None:
            return BM_POOL_TS_NOW
        return _frc.check_timestamp(timestamp_ns)

    def put(self, buffer, block=True, timeout=None, *, timestamp_ns=None, metadata=None):
        """Copy a C-contiguous bytes-like object into a free slot and queue it.

        Returns the frame's seq, or None when a drop policy refused it (no slot
        could be reused). "drop_oldest" evicts the oldest queued frame to make
        room; "block" waits for a free slot (block=False or a timeout ->
        queue.Full). Raises ShutDown after shutdown(). ``timestamp_ns`` (an
        int >= 0, e.g. the device's) replaces the monotonic time at put as
        the frame's timestamp; ``metadata`` (any object) is kept with the
        frame (frame.metadata).
        """
        cdef Py_buffer view
        cdef double seconds = -1.0
        cdef int64_t ts
        _fr_source(buffer, &view, self.frame_bytes)
        try:
            if block:
                seconds = _timeout_seconds(timeout)
            ts = self._put_timestamp(timestamp_ns)
            return self._put(&view, block, seconds, ts, metadata)
        finally:
            PyBuffer_Release(&view)

    def put_nowait(self, buffer, *, timestamp_ns=None, metadata=None):
        """Equivalent to put(buffer, block=False, timestamp_ns=..., metadata=...)."""
        cdef Py_buffer view
        cdef int64_t ts
        _fr_source(buffer, &view, self.frame_bytes)
        try:
            ts = self._put_timestamp(timestamp_ns)
            return self._put(&view, False, -1.0, ts, metadata)
        finally:
            PyBuffer_Release(&view)

    def put_many(self, buffers, block=True, timeout=None):
        """Put every buffer in order (the overflow policy applied to each);
        return a list with one entry per buffer: its seq, or None where a drop
        policy refused it.

        Every buffer is checked first (TypeError / ValueError before anything
        is queued). Under "block" it waits for room for the rest; ``timeout``
        bounds the whole call. If it stops early (Full, ShutDown) the frames
        before the failing one stay queued and the exception propagates.
        """
        cdef Py_buffer view
        cdef double seconds = -1.0, left
        cdef int64_t deadline = BM_FOREVER
        cdef list batch, out
        cdef bint blk = bool(block)
        if blk:
            seconds = _timeout_seconds(timeout)  # validate before consuming `buffers`
            deadline = _deadline(seconds)
        batch = list(buffers)
        for buffer in batch:  # every check before the first put
            _fr_source(buffer, &view, self.frame_bytes)
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
            _fr_source(buffer, &view, self.frame_bytes)
            try:
                out.append(self._put(&view, blk, left, BM_POOL_TS_NOW, None))
            finally:
                PyBuffer_Release(&view)
        return out

    # -- get -----------------------------------------------------------------

    cdef int _take(self, bint block, double seconds, size_t max_nbytes, int copying,
                   size_t *slot, size_t *need) except -1:
        """Take the oldest frame (HELD); returns the C status (R3 waits)."""
        cdef int st, waited = 0
        cdef int64_t deadline
        cdef bm_pool *p = &self.pool
        _fr_lock(p)
        st = bm_pool_take_locked(p, BM_NOWAIT, NULL, max_nbytes, copying, slot, need)
        bm_pool_unlock(p)
        if st != BM_EMPTY or not block:
            return st
        deadline = _deadline(seconds)
        while True:
            with nogil:
                bm_pool_lock(p)
                st = bm_pool_take_locked(p, _slice_end(deadline), &waited, max_nbytes,
                                         copying, slot, need)
                bm_pool_unlock(p)
            if st != BM_TIMEOUT or _expired(deadline):
                return st
            PyErr_CheckSignals()  # raises; nothing taken

    cdef inline void _bind(self, Frame f, size_t slot) noexcept:
        """Fill `f` for a slot just taken (HELD by us: its fields and its
        metadata reference cannot change until we release it; R2, R6)."""
        cdef const bm_slot *m = bm_pool_slot(&self.pool, slot)
        cdef PyObject *meta = self.metas[slot]
        f.ring = self
        f.slot = slot
        f.data = bm_pool_slot_data(&self.pool, slot)
        f.seq = m.seq
        f.timestamp_ns = m.timestamp_ns
        f.nbytes = <Py_ssize_t>m.nbytes
        f.gap = m.gap
        f.shaped = self.ndim > 0 and m.nbytes == <size_t>self.frame_bytes
        if meta != NULL:
            self.metas[slot] = NULL
            f.metadata = <object>meta  # +1 (replacing None)
            Py_XDECREF(meta)           # -1: the slot's reference is the frame's now

    cdef Frame _get(self, bint block, double seconds):
        cdef Frame f = Frame.__new__(Frame)  # allocated first: after the take nothing raises
        cdef size_t slot = 0, need = 0
        cdef int st = self._take(block, seconds, _FR_ANY_SIZE, 0, &slot, &need)
        if st != BM_OK:
            _fr_raise(st, True)
        self._bind(f, slot)
        return f

    def get(self, block=True, timeout=None):
        """Remove the oldest frame and return it as a zero-copy Frame (HELD
        until released). Raises queue.Empty when nothing arrives in time,
        ShutDown once shut down and drained."""
        cdef double seconds = -1.0
        if block:
            seconds = _timeout_seconds(timeout)
        return self._get(block, seconds)

    def get_nowait(self):
        """Equivalent to get(block=False)."""
        return self._get(False, -1.0)

    cdef inline void _collect_dropped(self, size_t *dropped, size_t n) noexcept nogil:
        # Mutex held: dropped[i] (a slot just freed) becomes that slot's
        # metadata pointer (0 for none), DECREF'd after unlocking (R6).
        cdef size_t i, s
        for i in range(n):
            s = dropped[i]
            dropped[i] = <size_t>self.metas[s]
            self.metas[s] = NULL

    def get_latest(self, block=True, timeout=None):
        """Remove the NEWEST frame and return it as a zero-copy Frame; every
        older queued frame is dropped (counted in ``dropped`` and in the
        frame's ``gap``). Waits like get(). A frame is never returned twice."""
        cdef double seconds = -1.0
        cdef Frame f = Frame.__new__(Frame)
        cdef size_t slot = 0, nd = 0, i
        cdef size_t stack[_FR_STACK_SLOTS]
        cdef size_t *dropped = stack
        cdef int st, waited = 0
        cdef int64_t deadline
        cdef bm_pool *p = &self.pool
        if block:
            seconds = _timeout_seconds(timeout)
        if self.slots > _FR_STACK_SLOTS:  # room for slots - 1 dropped ones
            dropped = <size_t *>PyMem_Malloc(<size_t>self.slots * sizeof(size_t))
            if dropped == NULL:
                raise MemoryError()
        try:
            _fr_lock(p)
            st = bm_pool_take_latest_locked(p, BM_NOWAIT, NULL, &slot, dropped, &nd)
            self._collect_dropped(dropped, nd)
            bm_pool_unlock(p)
            if st == BM_EMPTY and block:
                deadline = _deadline(seconds)
                while True:  # R3
                    with nogil:
                        bm_pool_lock(p)
                        st = bm_pool_take_latest_locked(p, _slice_end(deadline), &waited, &slot,
                                                        dropped, &nd)
                        self._collect_dropped(dropped, nd)
                        bm_pool_unlock(p)
                    if st != BM_TIMEOUT or _expired(deadline):
                        break
                    PyErr_CheckSignals()  # raises; nothing taken
            if st != BM_OK:
                _fr_raise(st, True)
            self._bind(f, slot)
        finally:
            for i in range(nd):  # mutex released (invariant 1)
                Py_XDECREF(<PyObject *>dropped[i])
            if dropped != stack:
                PyMem_Free(dropped)
        if nd:
            _fr_aio_room(self, nd)
        return f

    def get_many(self, max_items, block=True, timeout=None):
        """Wait like get() for the first frame, then take up to ``max_items``
        frames in all (oldest first) without waiting again; a list of Frames."""
        cdef Py_ssize_t limit = _errors.check_max_items(max_items)
        cdef double seconds = -1.0
        cdef list out
        cdef Frame f
        cdef size_t slot = 0, need = 0
        cdef int st
        cdef bm_pool *p = &self.pool
        if block:
            seconds = _timeout_seconds(timeout)
        out = [self._get(block, seconds)]
        while len(out) < limit:
            f = Frame.__new__(Frame)
            _fr_lock(p)
            st = bm_pool_take_locked(p, BM_NOWAIT, NULL, _FR_ANY_SIZE, 0, &slot, &need)
            bm_pool_unlock(p)
            if st != BM_OK:  # none queued now (or shut down and drained)
                break
            self._bind(f, slot)
            out.append(f)
        return out

    def get_into(self, buffer, block=True, timeout=None):
        """Copy the oldest frame into a writable C-contiguous buffer and free
        its slot; return (nbytes, seq). Waits like get(). If the frame is
        larger than the buffer: ValueError, and nothing changes."""
        cdef Py_buffer view
        cdef double seconds = -1.0
        cdef size_t slot = 0, need = 0
        cdef const bm_slot *m
        cdef uint64_t seq
        cdef int st
        cdef bm_pool *p = &self.pool
        cdef PyObject *meta = NULL
        _fr_target(buffer, &view)
        try:
            if block:
                seconds = _timeout_seconds(timeout)
            st = self._take(block, seconds, <size_t>view.len, 1, &slot, &need)
            if st == BM_TOOBIG:
                raise _frc.buffer_too_small(need, view.len)
            if st != BM_OK:
                _fr_raise(st, True)
            m = bm_pool_slot(p, slot)
            seq = m.seq
            meta = self.metas[slot]  # ours with the slot (R6)
            self.metas[slot] = NULL
            # HELD (copying) by us: copy outside the mutex (R2); nothing raises.
            _fr_copy(view.buf, bm_pool_slot_data(p, slot), need)
            _fr_lock(p)
            bm_pool_release_locked(p, slot)
            bm_pool_unlock(p)
        finally:
            PyBuffer_Release(&view)
            Py_XDECREF(meta)  # mutex released
        _fr_aio_room(self, 1)
        return (need, seq)

    # -- bookkeeping -----------------------------------------------------------

    cdef size_t _collect_queued(self, PyObject **dead) noexcept:
        # Mutex held: move every queued frame's metadata reference into dead
        # (room for `slots`); the caller DECREFs them after unlocking (R6).
        cdef size_t i, s, n = 0
        if not self.has_meta:
            return 0
        for i in range(self.pool.nqueued):
            s = bm_pool_queued_at(&self.pool, i)
            if self.metas[s] != NULL:
                dead[n] = self.metas[s]
                self.metas[s] = NULL
                n += 1
        return n

    def shutdown(self, immediate=False):
        """Shut down: puts raise ShutDown (a put copying right now too), gets
        drain then raise ShutDown; ``immediate`` also frees the queued frames
        (counted as cleared). Frames already got stay valid until released.
        Every blocked caller wakes up."""
        cdef bint imm = bool(immediate)
        cdef PyObject *stack[_FR_STACK_SLOTS]
        cdef PyObject **dead = stack
        cdef size_t nd = 0, i
        if imm and self.slots > _FR_STACK_SLOTS:
            dead = <PyObject **>PyMem_Malloc(<size_t>self.slots * sizeof(PyObject *))
            if dead == NULL:
                raise MemoryError()
        _fr_lock(&self.pool)
        if imm:
            nd = self._collect_queued(dead)
        bm_pool_shutdown_locked(&self.pool, imm)
        bm_pool_unlock(&self.pool)
        for i in range(nd):  # mutex released (invariant 1)
            Py_XDECREF(dead[i])
        if dead != stack:
            PyMem_Free(dead)
        # every coroutine waiting on this ring, in every loop
        if BM_AIO_LOAD(&self.aio_getters):
            _aio_notify(self._aio, self._aio_lanes, _AIO_GETTERS, _AIO_ALL)
        _fr_aio_room(self, _AIO_ALL)

    def clear(self):
        """Free every queued frame (counted as cleared); return how many."""
        cdef size_t n, nd, i
        cdef PyObject *stack[_FR_STACK_SLOTS]
        cdef PyObject **dead = stack
        if self.slots > _FR_STACK_SLOTS:
            dead = <PyObject **>PyMem_Malloc(<size_t>self.slots * sizeof(PyObject *))
            if dead == NULL:
                raise MemoryError()
        _fr_lock(&self.pool)
        nd = self._collect_queued(dead)
        n = bm_pool_clear_locked(&self.pool)
        bm_pool_unlock(&self.pool)
        for i in range(nd):  # mutex released (invariant 1)
            Py_XDECREF(dead[i])
        if dead != stack:
            PyMem_Free(dead)
        if n:
            _fr_aio_room(self, n)
        return n

    # -- introspection -----------------------------------------------------------

    def qsize(self):
        """Number of frames queued now."""
        cdef size_t n
        _fr_lock(&self.pool)
        n = self.pool.nqueued
        bm_pool_unlock(&self.pool)
        return n

    def __len__(self):
        return self.qsize()

    def empty(self):
        """True if no frame is queued now."""
        return self.qsize() == 0

    def full(self):
        """True if no slot is free now (a put would drop, refuse or wait)."""
        cdef size_t n
        _fr_lock(&self.pool)
        n = self.pool.nfree
        bm_pool_unlock(&self.pool)
        return n == 0

    @property
    def is_shutdown(self):
        """True once shutdown() was called."""
        cdef int s
        _fr_lock(&self.pool)
        s = self.pool.shutdown
        bm_pool_unlock(&self.pool)
        return s != 0

    def stats(self):
        """Counters as a dict: puts, gets, dropped, cleared, underruns,
        high_water, size (queued), held, free, slots, frame_bytes. At a quiet
        moment puts == gets + dropped + cleared + size."""
        cdef bm_pool_stats s
        _fr_lock(&self.pool)
        bm_pool_stats_locked(&self.pool, &s)
        bm_pool_unlock(&self.pool)
        return {
            "puts": s.puts,
            "gets": s.gets,
            "dropped": s.dropped,
            "cleared": s.cleared,
            "underruns": s.underruns,
            "high_water": s.high_water,
            "size": s.size,
            "held": s.held,
            "free": s.free,
            "slots": s.slots,
            "frame_bytes": s.frame_bytes,
        }

    # -- asyncio (bufmgr/_aio.py) -------------------------------------------------

    def async_get(self, timeout=None):
        """Coroutine: get() without blocking the event loop (queue.Empty on
        timeout, ShutDown once shut down and drained)."""
        return _aio.get(self, timeout)

    def async_get_latest(self, timeout=None):
        """Coroutine: get_latest() without blocking the event loop
        (queue.Empty on timeout, ShutDown once shut down and drained)."""
        return _aio.get_latest(self, timeout)

    def async_get_many(self, max_items, timeout=None):
        """Coroutine: get_many() without blocking the event loop."""
        return _aio.get_many(self, max_items, timeout)

    def async_put(self, buffer, timeout=None):
        """Coroutine: put() without blocking the event loop (queue.Full on
        timeout); returns what put() returns. Only "block" ever waits."""
        return _aio.put(self, buffer, timeout)

    def __aiter__(self):
        """``async for frame in ring``: async_get() until shut down and drained."""
        return _aio.AsyncIterator(self)

    def _aio_waiters(self):
        """The ring's _aio.BufferWaiters, made on first use (see FrameQueue's)."""
        cdef object w = self._aio
        cdef AioLanes lanes
        if w is None:
            lanes = AioLanes()
            w = _aio.BufferWaiters(self, lanes)
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

    def __repr__(self):
        cdef bm_pool_stats s
        _fr_lock(&self.pool)
        bm_pool_stats_locked(&self.pool, &s)
        bm_pool_unlock(&self.pool)
        return _frc.ring_repr(s.slots, s.frame_bytes, self.overflow, s.size, s.held, s.dropped,
                              s.shutdown != 0)

    def __reduce__(self):
        raise _errors.pickle_error("FrameRing")


# -- fork safety (as for FrameQueue: see its comment in _ring.pyx) ----------------
# Before fork every live ring's mutex is taken; the parent releases them, the
# child re-creates them and frees the slots of threads that do not exist there
# (a put or get_into caught mid-copy). Frames got before the fork stay valid.
# The handlers are registered together with FrameQueue's, at the end of
# _ring.pyx; references are dropped only once every mutex is usable.
_fr_live_rings = weakref.WeakSet()
_fr_locked_for_fork = []


def _fr_before_fork():
    for r in _snapshot(_fr_live_rings):
        _fr_lock(&(<FrameRing>r).pool)
        (<FrameRing>r).fork_locked = True  # written and read by this thread only
        _fr_locked_for_fork.append(r)


cdef list _fr_after_fork_parent():
    cdef list held = _fr_locked_for_fork[:]
    cdef Py_ssize_t i
    for i in range(len(held)):
        (<FrameRing>held[i]).fork_locked = False
        bm_pool_unlock(&(<FrameRing>held[i]).pool)
    del _fr_locked_for_fork[:]
    return held


cdef void _fr_after_fork_child_locked() noexcept:
    cdef list locked = _fr_locked_for_fork
    cdef Py_ssize_t i
    for i in range(len(locked)):
        (<FrameRing>locked[i]).fork_locked = False
        bm_pool_reinit_after_fork(&(<FrameRing>locked[i]).pool)


cdef list _fr_after_fork_child():
    held = _fr_locked_for_fork[:]
    del _fr_locked_for_fork[:]
    for r in _snapshot(_fr_live_rings):
        if r not in held:
            bm_pool_reinit_after_fork(&(<FrameRing>r).pool)
    return held
