"""Pure-Python twin of the compiled FrameRing (bufmgr._ring over include/bufmgr/pool.h).

A FrameRing is a pool of ``slots`` equal-size frame slots carved out of ONE
preallocated ``bytearray`` of ``slots * frame_bytes`` bytes; nothing is
allocated per frame for the frame data. Every slot is in exactly one state::

    free  -> writing (put copies into it) -> queued -> held (a consumer has it) -> free

``slots == free + writing + queued + held`` at all times. Frames are copied in
by ``put`` and out by ``get_into`` / ``bytes(frame)``; ``get`` hands out a
zero-copy, read-only :class:`Frame` view of the slot, which returns to the pool
when the frame is released (``release()``, ``with``, or garbage collection)
and every buffer exported from it is gone.

Locking (the FrameQueue twin's rules, adapted):

* One lock guards all state; conditions ``not_empty`` (a frame was queued)
  and ``not_full`` (a slot became free) share it. Waits are sliced to
  WAIT_SLICE_S so Ctrl+C interrupts them promptly.
* Bytes are copied with the lock NOT held, while the copying thread owns the
  slot (writing / held), so no other thread can touch them.
* Each slot has its own memoryview (made in ``__init__``, each over its own
  managed buffer of the one bytearray); a slot's view is sliced and its
  slices released only by the thread that owns the slot (put, get_into) or
  under the lock (a Frame's exports, which any thread holding the Frame may
  make). No memoryview is shared between slots: free-threaded CPython 3.13
  updates a memoryview's / managed buffer's export counts without atomics,
  so one view sliced by several threads at once ends up released under its
  users ("operation forbidden on released memoryview object").
* No user code runs under the lock, and no object is released under it.
  One exception cannot be ruled out in Python: the garbage collector may run
  a ``Frame.__del__`` (which frees a slot) at almost any point, including in
  a thread that holds this ring's lock. The lock is therefore an ``RLock``:
  a slot freed from such a re-entrant finalizer (this thread owns the lock,
  ``RLock._is_owned()``) is parked in ``_pending`` and moved to the free
  list by the next critical section, instead of deadlocking (plain Lock) or
  corrupting the state. Any other re-entrant use raises RuntimeError.
* Asynchronous exceptions (KeyboardInterrupt from a signal handler, issue
  11.3) can be raised at any eval-breaker check: after a call returns, at
  the start of a Python function, on a backward jump. So every critical
  section takes the lock inside a try whose finally releases it first
  thing (the pattern and why not ``with``: bufmgr/_pyqueue.py's docstring),
  no loop is written directly in one (helper methods hold them), and every
  slot transition is a run of stores with no call in between
  (or with its one call last), so an interrupt sees each slot either before
  or after a transition, never half-way. A slot a call owns (writing, or
  held by get_into) is recorded in that call's ``box`` the moment it is
  taken; if the call is interrupted before handing it on, it parks the slot
  in ``_pending`` (no lock needed) and the next critical section frees it.

Capture features (issue 14): a queued slot also carries the producer's
timestamp, a reference to its ``metadata`` object and its put ordinal (the
``_puts`` count when the put was counted, refused puts included; a delivered
frame's ``gap`` is its ordinal minus the previous delivery's + 1). The
metadata reference is moved, never dropped, under the lock: to the Frame
(get), into the call's ``box`` (get_into, an evicting put) or into a list
the caller keeps until after its critical section (clear, shutdown,
get_latest), so a finalizer it triggers runs with the lock released.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from threading import get_ident as _get_ident
from collections import deque
from time import monotonic as _monotonic
from time import monotonic_ns as _monotonic_ns
from typing import Any

from . import _aio
from ._aiopure import PureAsyncMethods
from . import _framering_common as _common
from ._errors import (
    WAIT_SLICE_S,
    Empty,
    Full,
    ShutDown,
    check_max_items,
    check_timeout,
    pickle_error,
)

__all__ = ["FrameRing", "Frame"]

_BLOCK, _DROP_OLDEST, _DROP_NEWEST = 0, 1, 2
_POLICIES = {"block": _BLOCK, "drop_oldest": _DROP_OLDEST, "drop_newest": _DROP_NEWEST}
_RUNNING, _SHUT_GRACEFUL, _SHUT_IMMEDIATE = 0, 1, 2
_FREE, _WRITING, _QUEUED, _HELD = 0, 1, 2, 3

_PyBUF_WRITABLE = 0x0001

_REENTRANT = (
    "FrameRing used re-entrantly: a finalizer (__del__) running while this "
    "ring's lock was held called into the ring"
)


def _deadline(block: bool, timeout: object) -> float | None:
    """Validate ``timeout`` (only when blocking); return a monotonic deadline or None."""
    if not block:
        return None
    seconds = check_timeout(timeout)
    return None if seconds is None else _monotonic() + seconds


def _byte_view(buffer: object, writable: bool) -> memoryview:
    """A flat unsigned-byte memoryview of ``buffer`` after the shared checks."""
    view = _common.check_buffer(buffer, writable)
    if view.ndim == 1 and view.format == "B":
        return view
    try:
        return view.cast("B")
    except (TypeError, ValueError):  # pragma: no cover - exotic struct formats only
        if writable:
            # A writable flat view through ctypes (any format, zero-copy).
            nbytes = view.nbytes
            view.release()
            return memoryview((ctypes.c_ubyte * nbytes).from_buffer(buffer)).cast("B")  # type: ignore[arg-type]
        flat = memoryview(view.tobytes())  # read-only source: one copy, exotic formats only
        view.release()
        return flat


class Frame:
    """A read-only, zero-copy view of one FrameRing slot (made by ``FrameRing.get``).

    ``seq`` / ``timestamp_ns`` / ``nbytes`` stay readable after release; data
    access (``bytes(frame)``, ``memoryview(frame)``, ``numpy.asarray(frame)``)
    on a released frame raises ValueError("frame was released").

    The slot goes back to the ring when the frame is released (``release()``,
    leaving a ``with`` block, or garbage collection) AND every buffer exported
    from it is released. Buffers exported through PEP 688 (``memoryview`` /
    numpy on Python 3.12+) are tracked exactly. ``__array_interface__`` (all
    versions) cannot be tracked: the array keeps this Frame alive, so once it
    was used the slot is only returned when the Frame itself is collected.
    """

    __slots__ = (
        "_ring", "_slot", "_seq", "_timestamp_ns", "_nbytes",
        "_released", "_exports", "_pinned", "_token",
        "_gap", "_metadata", "_shape", "_typed",
    )  # no __weakref__: like the compiled Frame

    def __new__(cls, *args: Any, **kwargs: Any) -> Frame:
        # An unbound frame (as Frame.__new__(Frame) gives for the compiled
        # class): reads as released. FrameRing.get() binds it under the lock.
        self = object.__new__(cls)
        self._ring = None
        self._slot = -1
        self._seq = 0
        self._timestamp_ns = 0
        self._nbytes = 0
        self._released = False
        self._exports = 0
        self._pinned = False
        self._token = None
        self._gap = 0
        self._metadata = None
        self._shape = None  # the exported shape; None: flat bytes
        self._typed = False  # exported with the ring's dtype
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Frame objects are created by FrameRing.get()")

    @property
    def seq(self) -> int:
        """The ring's sequence number of this frame (0, 1, 2, ... in put order)."""
        return self._seq

    @property
    def timestamp_ns(self) -> int:
        """The producer's ``put(timestamp_ns=)``, else time.monotonic_ns()
        when the frame was queued."""
        return self._timestamp_ns

    @property
    def nbytes(self) -> int:
        """Size of the frame in bytes (<= the ring's frame_bytes)."""
        return self._nbytes

    @property
    def gap(self) -> int:
        """Frames lost ring-wide (dropped, refused, cleared) between the
        frame delivered before this one (by any consumer) and this one."""
        return self._gap

    @property
    def metadata(self) -> Any:
        """The ``put(metadata=)`` object (or None), kept with the frame."""
        return self._metadata

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape numpy.asarray(frame) has: the ring's shape for a full
        frame of a ring made with shape=, else (nbytes // itemsize,)."""
        shape = self._shape
        return (self._nbytes,) if shape is None else shape

    @property
    def dtype(self) -> Any:
        """The ring's numpy dtype when the frame is exported with it (a full
        frame of a ring made with dtype=); None for flat bytes (uint8)."""
        ring = self._ring
        return ring._dtype if self._typed and ring is not None else None

    # ---- data access ----------------------------------------------------------

    def __bytes__(self) -> bytes:
        ring = self._ring
        if ring is None:
            raise _common.frame_released()
        view = ring._open_view(self)  # keeps the slot held during the copy
        try:
            return bytes(view)  # lock not held
        finally:
            ring._close_view(self, view)

    def __buffer__(self, flags: int, /) -> memoryview:  # PEP 688 (Python 3.12+)
        if flags & _PyBUF_WRITABLE:
            raise BufferError("Frame is read-only")
        ring = self._ring
        if ring is None:
            raise _common.frame_released()
        return ring._open_view(self)

    def __release_buffer__(self, view: memoryview, /) -> None:  # PEP 688
        ring = self._ring
        if ring is None:  # pragma: no cover - an exporting frame keeps its ring
            view.release()
            return
        ring._close_view(self, view)

    @property
    def __array_interface__(self) -> dict[str, Any]:
        """numpy array interface: read-only uint8 vector pointing into the slot."""
        ring = self._ring
        if ring is None:
            raise _common.frame_released()
        ring._pin(self)  # raises ValueError if released
        shape = self._shape
        return {
            "version": 3,
            "shape": (self._nbytes,) if shape is None else shape,
            "typestr": ring._dtype.str if self._typed else "|u1",
            "data": (ring._address + self._slot * ring._frame_bytes, True),
        }

    # ---- lifetime ----------------------------------------------------------------

    def release(self) -> None:
        """Give the slot back to the ring (idempotent). Exported buffers keep it
        held until they are released too."""
        ring = self._ring
        if ring is not None and not self._released:
            ring._release_frame(self)

    def __enter__(self) -> Frame:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:  # first: an interrupt may be raised at any call below
            ring = self._ring
            if ring is None or self._slot < 0:  # unbound, or the slot is back already
                return
            ring._release_frame(self, dying=True)
        except BaseException:  # e.g. KeyboardInterrupt while taking the lock
            ring = getattr(self, "_ring", None)  # unset if __new__ itself was interrupted
            slot = getattr(self, "_slot", -1)
            if ring is not None and slot >= 0:  # nobody else can reach a dying frame
                ring._holders[slot] = None  # parked: never reclaimed as well
                self._slot = -1
                ring._pending.append(slot)  # still held: the next critical section frees it
            self._ring = None

    def __repr__(self) -> str:
        return _common.frame_repr(
            self._seq, self._nbytes, self._released or self._ring is None, self._gap
        )

    def __reduce__(self) -> Any:
        raise _common.frame_pickle_error()


class _Token:
    """Held by a Frame alone; the ring keeps a weak reference to it per held
    slot. It dies with the frame without running Python code, so a slot
    whose frame's ``__del__`` was cut short (an interrupt raised on entry,
    before its try block) is still found and reclaimed (_reclaim_lost)."""

    __slots__ = ("__weakref__",)


def _new_frame() -> Frame:
    """An unbound Frame (allocated before the lock is taken)."""
    frame = Frame.__new__(Frame)
    frame._token = _Token()
    return frame


class FrameRing(PureAsyncMethods):
    """A preallocated pool of ``slots`` frames of up to ``frame_bytes`` bytes each.

    ``put`` copies a buffer into a free slot and returns its sequence number
    (or None if the overflow policy refused it); ``get`` returns the oldest
    frame as a zero-copy read-only :class:`Frame`; ``get_into`` copies the
    oldest frame into a caller buffer and frees its slot at once.

    ``overflow`` decides what ``put`` does when no slot is free:
    ``"drop_oldest"`` evicts the oldest queued frame (never a held one),
    ``"drop_newest"`` refuses the new frame, ``"block"`` waits for a free slot.
    """

    __slots__ = (
        "_slots", "_frame_bytes", "_overflow", "_policy", "_buf", "_views",
        "_address", "_state", "_holders", "_nbytes", "_seqs", "_stamps", "_free", "_queued",
        "_pending", "_mutex", "_not_empty", "_not_full", "_shutdown",
        "_getters_waiting", "_putters_waiting", "_next_seq", "_held",
        "_puts", "_gets", "_dropped", "_cleared", "_underruns", "_high_water",
        "_waiting", "_aio", "_aio_getters", "_aio_putters", "_aio_room", "__weakref__",
        "_ordinals", "_metas", "_has_meta", "_next_delivery",
        "_shape", "_dtype", "_format", "_full_shape",
    )

    def __init__(
        self,
        slots: int,
        frame_bytes: int | None = None,
        overflow: str = "drop_oldest",
        *,
        shape: Any = None,
        dtype: Any = None,
    ) -> None:
        slots, frame_bytes, overflow, shape, dt, fmt, itemsize = (
            _common.check_ring_geometry_args(slots, frame_bytes, overflow, shape, dtype)
        )
        self._shape = shape
        self._dtype = dt
        self._format = fmt
        # the shape a full frame exports (None: flat bytes); partial frames are flat
        self._full_shape = _common.frame_geometry(frame_bytes, frame_bytes, shape, itemsize, dt is not None)
        self._slots = slots
        self._frame_bytes = frame_bytes
        self._overflow = overflow
        self._policy = _POLICIES[overflow]
        self._buf = bytearray(slots * frame_bytes)  # the one allocation (MemoryError)
        # One view per slot, each over its OWN managed buffer (a fresh
        # memoryview of the bytearray, sliced): slicing one slot's view never
        # touches another slot's export counts (see the module docstring).
        # Held for the ring's lifetime: the bytearray can never be resized, so
        # its address (used by Frame.__array_interface__) stays valid.
        buf = self._buf
        self._views = [
            memoryview(buf)[i * frame_bytes:(i + 1) * frame_bytes] for i in range(slots)
        ]
        self._address = ctypes.addressof(ctypes.c_char.from_buffer(self._buf))
        self._state = [_FREE] * slots
        self._holders: list[Any] = [None] * slots  # weakref to the holding frame's _Token
        self._nbytes = [0] * slots
        self._seqs = [0] * slots
        self._stamps = [0] * slots
        self._ordinals = [0] * slots  # queued: the put's ordinal (gaps)
        self._metas: list[Any] = [None] * slots  # queued: the put's metadata object
        self._has_meta = False  # a put ever passed metadata (clear/get_latest collect then)
        self._next_delivery = 0  # ordinal of the last frame delivered + 1
        self._free = list(range(slots - 1, -1, -1))  # a stack: pop() gives slot 0 first
        self._queued: deque[int] = deque()
        self._pending: list[int] = []  # slots freed by re-entrant finalizers / interrupted calls
        self._mutex = threading.RLock()
        self._waiting: list[int] = []  # threads in _wait_slice (see _refuse_reentry)
        self._not_empty = threading.Condition(self._mutex)
        self._not_full = threading.Condition(self._mutex)
        self._shutdown = _RUNNING
        self._getters_waiting = self._putters_waiting = 0
        self._next_seq = 0
        self._held = 0
        self._puts = self._gets = self._dropped = self._cleared = 0
        self._underruns = self._high_water = 0
        # asyncio (bufmgr/_aio.py): the registries (made on first use), whether
        # a coroutine waits for a frame / for a free slot, and the slots freed
        # for those since the last wake-up (notified after unlocking:
        # _aio_wake_room).
        self._aio = None
        self._aio_getters = self._aio_putters = False
        self._aio_room = 0

    # ---- locking -------------------------------------------------------------------

    def _refuse_reentry(self) -> None:
        """Before a critical section: RuntimeError if this thread is inside
        one of this ring's critical sections (a finalizer run there called
        back in). Only this thread changes whether it owns the lock."""
        if self._mutex._is_owned() and _get_ident() not in self._waiting:
            raise RuntimeError(_REENTRANT)

    def _flush_pending(self) -> None:
        """Lock held: free the slots parked in ``_pending`` (each one is held
        by a finalized frame, or held/writing by an interrupted call)."""
        pending, state, free = self._pending, self._state, self._free
        while pending:
            slot = pending[-1]
            if state[slot] == _HELD:
                self._held -= 1
            state[slot] = _FREE
            del pending[-1]
            free.append(slot)  # the transition's one call, last
            if self._putters_waiting:
                self._not_full.notify()
            if self._aio_putters:
                self._aio_room += 1

    def _reclaim_lost(self) -> None:
        """Lock held, pending flushed: free every held slot whose frame is
        gone without giving it back (see _Token). O(slots): called only when
        no slot is free, and by stats()/full()."""
        state, holders, free = self._state, self._holders, self._free
        for slot in range(self._slots):
            ref = holders[slot]
            if ref is not None and state[slot] == _HELD and ref() is None:
                state[slot] = _FREE
                self._held -= 1
                holders[slot] = None
                free.append(slot)
                if self._aio_putters:
                    self._aio_room += 1

    def _aio_wake_room(self) -> None:
        """Lock NOT held: wake as many coroutines waiting for a free slot as
        slots were freed for them (called when ``_aio_room`` is set)."""
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            room = self._aio_room
            self._aio_room = 0
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        if room:
            self._aio.putters.notify(room)

    def _wait_slice(self, cond: threading.Condition, deadline: float | None) -> bool:
        """Sleep at most WAIT_SLICE_S on ``cond``; False if the deadline already passed."""
        if deadline is None:
            seconds = WAIT_SLICE_S
        else:
            seconds = deadline - _monotonic()
            if seconds <= 0:
                return False
            if seconds > WAIT_SLICE_S:
                seconds = WAIT_SLICE_S
        mutex = self._mutex
        waiting = self._waiting
        me = _get_ident()
        try:
            # While this thread waits the state is consistent: a finalizer it
            # runs in Condition.wait may use the object (see _refuse_reentry).
            waiting.append(me)
            cond.wait(seconds)  # the state is consistent: others may enter
        finally:
            # threading.Condition.wait has one window between releasing the
            # lock and its own try block: an interrupt there leaves the lock
            # released. Take it back first, so the critical section ends as
            # it began. (Only a second interrupt within the next few
            # bytecodes, before the acquire, still escapes: the section's
            # finally then finds the lock free, and the state is consistent.)
            if not mutex._is_owned():
                mutex.acquire()
            if me in waiting:
                waiting.remove(me)
        if self._pending:
            self._flush_pending()
        return True

    # ---- slot transitions (lock held) -----------------------------------------------

    def _drop_queued(self, dead: list[Any]) -> int:
        """queued -> free for every queued frame, each counted as cleared
        as it goes; return how many. Their metadata objects go into ``dead``,
        which the caller keeps until it has left its critical section."""
        queued = self._queued
        state, free, metas = self._state, self._free, self._metas
        if self._has_meta:  # before any store: an interrupt here changes nothing
            dead.extend([metas[s] for s in queued])
        n = 0
        while queued:
            slot = queued[0]
            del queued[0]
            state[slot] = _FREE
            metas[slot] = None  # `dead` keeps the object
            self._cleared += 1
            n += 1
            free.append(slot)
        if n and self._putters_waiting:
            self._not_full.notify(n)
        if n and self._aio_putters:
            self._aio_room += n
        return n

    def _reserve(self, block: bool, deadline: float | None, box: list[int]) -> None:
        """Take a slot for writing into ``box[0]``; leave it -1 if the drop
        policy refused the frame. Each path's stores run without a call in
        between (module docstring)."""
        if self._shutdown:
            raise ShutDown
        free = self._free
        if not free and self._held:
            self._reclaim_lost()
        if not free:
            policy = self._policy
            queued = self._queued
            if policy == _DROP_OLDEST:
                if not queued:  # every slot is held or being written
                    self._puts += 1
                    self._dropped += 1
                    self._underruns += 1
                    return
                slot = queued[0]  # evict the oldest queued frame
                box[0] = slot
                box[1] = self._metas[slot]  # released by put, after unlocking
                self._metas[slot] = None
                self._state[slot] = _WRITING
                self._dropped += 1
                del queued[0]
                return
            if policy == _DROP_NEWEST:
                self._puts += 1
                self._dropped += 1
                if not queued:
                    self._underruns += 1
                return
            if not block:
                raise Full
            if not queued:
                self._underruns += 1
            while True:
                self._putters_waiting += 1
                try:
                    ok = self._wait_slice(self._not_full, deadline)
                finally:
                    self._putters_waiting -= 1
                if self._shutdown:
                    raise ShutDown
                if not free and self._held:
                    self._reclaim_lost()
                if free:
                    break
                if not ok:
                    raise Full
        slot = free[-1]
        box[0] = slot
        self._state[slot] = _WRITING
        del free[-1]

    def _await_queued(self, block: bool, deadline: float | None) -> None:
        """Return once a frame is queued; raise ShutDown (drained) or Empty."""
        while not self._queued:
            if self._shutdown:
                raise ShutDown
            if not block:
                raise Empty
            self._getters_waiting += 1
            try:
                ok = self._wait_slice(self._not_empty, deadline)
            finally:
                self._getters_waiting -= 1
            if not ok and not self._queued:
                raise Empty

    # ---- Frame support (called by Frame, lock NOT held) -------------------------------

    # Each is a critical section (acquire inside try, as everywhere here; a
    # re-entrant acquire never waits, so it cannot be interrupted); ``reentrant`` (this thread owned the lock
    # already: a finalizer run inside one of its critical sections) is read
    # first, and then slots it frees are parked in ``_pending``.

    def _open_view(self, frame: Frame) -> memoryview:
        """One more buffer exported from ``frame``: a read-only view of its
        bytes, made under the lock (any thread holding the Frame may call
        this; the slot's view is only sliced under the lock or by its owner).
        Pair with _close_view."""
        mutex = self._mutex
        reentrant = mutex._is_owned()
        try:  # acquire inside try, not `with` (module docstring)
            mutex.acquire()
            if not reentrant and self._pending:
                self._flush_pending()
            slot = frame._slot
            if frame._released or slot < 0:
                raise _common.frame_released()
            part = self._views[slot][:frame._nbytes]
            try:
                view = part.toreadonly()
            finally:
                part.release()
            shape = frame._shape
            if shape is not None:  # a full frame of a ring made with shape/dtype
                try:
                    typed = view.cast(self._format, shape)
                finally:
                    view.release()  # `typed` keeps the managed buffer
                view = typed
            frame._exports += 1
            return view
        finally:
            try:
                mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def _close_view(self, frame: Frame, view: memoryview) -> None:
        """Release a view made by _open_view (under the lock), one export fewer."""
        mutex = self._mutex
        reentrant = mutex._is_owned()
        try:  # acquire inside try, not `with` (module docstring)
            mutex.acquire()
            try:
                view.release()
            finally:
                frame._exports -= 1
                self._maybe_free(frame, reentrant)
        finally:
            try:
                mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        if self._aio_room and not reentrant:
            self._aio_wake_room()

    def _pin(self, frame: Frame) -> None:
        """__array_interface__ handed out a raw address: keep the slot until GC."""
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            if frame._released or frame._slot < 0:
                raise _common.frame_released()
            frame._pinned = True
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def _release_frame(self, frame: Frame, dying: bool = False) -> None:
        mutex = self._mutex
        reentrant = mutex._is_owned()
        try:  # acquire inside try, not `with` (module docstring)
            mutex.acquire()
            frame._released = True
            if dying:  # nothing can reference a dying frame: no export, no array
                frame._exports = 0
                frame._pinned = False
            self._maybe_free(frame, reentrant)
        finally:
            try:
                mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        if self._aio_room and not reentrant:
            self._aio_wake_room()

    def _maybe_free(self, frame: Frame, reentrant: bool) -> None:
        slot = frame._slot
        if slot < 0 or not frame._released or frame._exports > 0 or frame._pinned:
            return
        if reentrant:  # an outer critical section of this thread is paused mid-way
            self._holders[slot] = None  # parked: never reclaimed as well
            frame._slot = -1
            self._pending.append(slot)
            return
        # _free_held inlined: no call between the stores (module docstring)
        self._state[slot] = _FREE
        self._held -= 1
        frame._slot = -1
        self._free.append(slot)
        if self._putters_waiting:
            self._not_full.notify()
        if self._aio_putters:
            self._aio_room += 1
        if self._pending:
            self._flush_pending()

    # ---- producers ---------------------------------------------------------------------

    def put(
        self,
        buffer: Any,
        block: bool = True,
        timeout: float | None = None,
        *,
        timestamp_ns: int | None = None,
        metadata: Any = None,
    ) -> int | None:
        """Copy ``buffer`` (any C-contiguous buffer of at most frame_bytes bytes)
        into a slot; return its sequence number, or None if the policy refused it.

        ``timestamp_ns`` (an int >= 0, e.g. the device's) becomes the frame's
        timestamp instead of the monotonic time at put; ``metadata`` (any
        object) is kept with the frame (frame.metadata)."""
        block = bool(block)
        src = _byte_view(buffer, False)
        # [the slot this call owns (writing) until it is queued, the metadata
        # of a frame it evicted (released when this call returns)]
        box: list[Any] = [-1, None]
        try:
            nbytes = src.nbytes
            if nbytes > self._frame_bytes:
                raise _common.frame_too_large(nbytes, self._frame_bytes)
            deadline = _deadline(block, timeout)
            stamp = -1 if timestamp_ns is None else _common.check_timestamp(timestamp_ns)
            self._refuse_reentry()
            try:  # acquire inside try, not `with` (module docstring)
                self._mutex.acquire()
                if self._pending:
                    self._flush_pending()
                self._reserve(block, deadline, box)
            finally:
                try:
                    self._mutex.release()
                except RuntimeError:  # acquire() was interrupted before it took the lock
                    pass
            slot = box[0]
            if slot < 0:
                return None
            if nbytes:
                # lock not held: we own the slot (slice assignment makes no view)
                self._views[slot][:nbytes] = src
            if stamp < 0:
                stamp = _monotonic_ns()
            try:  # acquire inside try, not `with` (module docstring)
                self._mutex.acquire()
                if self._shutdown:
                    raise ShutDown  # the slot is freed below
                queued = self._queued
                size = len(queued) + 1
                seq = self._next_seq
                # the commit: stores only, then the one call (append) last
                self._next_seq = seq + 1
                self._seqs[slot] = seq
                self._nbytes[slot] = nbytes
                self._stamps[slot] = stamp
                self._ordinals[slot] = self._puts
                self._metas[slot] = metadata  # a free slot's is None
                if metadata is not None:
                    self._has_meta = True
                self._state[slot] = _QUEUED
                box[0] = -1
                self._puts += 1
                if size > self._high_water:
                    self._high_water = size
                queued.append(slot)
                if self._getters_waiting:
                    self._not_empty.notify()
            finally:
                try:
                    self._mutex.release()
                except RuntimeError:  # acquire() was interrupted before it took the lock
                    pass
            if self._aio_getters:  # a coroutine waits for a frame: lock released
                self._aio.getters.notify(1)
            return seq
        except BaseException:
            slot = box[0]
            if slot >= 0:  # reserved, never queued: park it for the next critical section
                box[0] = -1
                self._pending.append(slot)
            raise
        finally:
            src.release()
            if self._aio_room:
                self._aio_wake_room()

    def put_nowait(
        self, buffer: Any, *, timestamp_ns: int | None = None, metadata: Any = None
    ) -> int | None:
        """Equivalent to ``put(buffer, False, timestamp_ns=..., metadata=...)``."""
        return self.put(buffer, False, timestamp_ns=timestamp_ns, metadata=metadata)

    def put_many(
        self, buffers: Any, block: bool = True, timeout: float | None = None
    ) -> list[int | None]:
        """Put every buffer in order (the overflow policy applied to each);
        return one entry per buffer: its seq, or None where a drop policy
        refused it.

        Every buffer is checked first (TypeError / ValueError before anything
        is queued). Under "block" it waits for room for the rest; ``timeout``
        bounds the whole call. If it stops early (Full, ShutDown) the frames
        before the failing one stay queued and the exception propagates."""
        block = bool(block)
        deadline = _deadline(block, timeout)  # validate before consuming `buffers`
        batch = list(buffers)
        frame_bytes = self._frame_bytes
        for buffer in batch:
            view = _byte_view(buffer, False)
            try:
                if view.nbytes > frame_bytes:
                    raise _common.frame_too_large(view.nbytes, frame_bytes)
            finally:
                view.release()
        if not batch and self._shutdown:
            raise ShutDown
        out: list[int | None] = []
        for buffer in batch:
            if deadline is None:
                out.append(self.put(buffer, block))
            else:
                out.append(self.put(buffer, True, max(0.0, deadline - _monotonic())))
        return out

    # ---- consumers ---------------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None) -> Frame:
        """Remove the oldest frame and return it as a held, read-only Frame."""
        block = bool(block)
        deadline = _deadline(block, timeout)
        frame = _new_frame()  # allocated outside the lock; bound under it
        holder = weakref.ref(frame._token)  # (a call: not inside the transition)
        self._refuse_reentry()
        try:
            try:  # acquire inside try, not `with` (module docstring)
                self._mutex.acquire()
                if self._pending:
                    self._flush_pending()
                self._await_queued(block, deadline)
                self._hand_out_oldest(frame, holder)
            finally:
                try:
                    self._mutex.release()
                except RuntimeError:  # acquire() was interrupted before it took the lock
                    pass
        finally:
            if self._aio_room:
                self._aio_wake_room()
        if self._full_shape is not None and frame._nbytes == self._frame_bytes:
            frame._shape = self._full_shape
            frame._typed = self._dtype is not None
        return frame

    def _hand_out_oldest(self, frame: Frame, holder: Any) -> None:
        """Lock held, a frame queued: the oldest queued slot becomes held by
        ``frame`` (get, get_latest). Stores only, so an asynchronous exception
        (module docstring) comes before this call (nothing done) or after
        it (the frame is bound: its __del__ frees the slot), never half-way."""
        queued = self._queued
        slot = queued[0]
        self._state[slot] = _HELD
        self._held += 1
        self._gets += 1
        frame._seq = self._seqs[slot]
        frame._timestamp_ns = self._stamps[slot]
        frame._nbytes = self._nbytes[slot]
        ordinal = self._ordinals[slot]
        frame._gap = ordinal - self._next_delivery
        self._next_delivery = ordinal + 1
        frame._metadata = self._metas[slot]  # the slot's reference moves to the frame
        self._metas[slot] = None
        self._holders[slot] = holder
        frame._slot = slot
        frame._ring = self
        del queued[0]

    def _drop_all_but_newest(self) -> None:
        """get_latest's drops (lock held). A helper, not a loop in
        get_latest's critical section: there, an interrupt on the loop's back
        edge can skip the section's cleanup and leave the lock held (CPython
        3.12-3.14, gh-130279; tests/test_async_interrupts.py checks the
        bytecode)."""
        queued, state, free, metas = self._queued, self._state, self._free, self._metas
        while len(queued) > 1:  # each pass one whole transition, the call last
            slot = queued[0]
            del queued[0]
            state[slot] = _FREE
            metas[slot] = None
            self._dropped += 1
            if self._aio_putters:
                self._aio_room += 1
            free.append(slot)
            if self._putters_waiting:
                self._not_full.notify()

    def get_latest(self, block: bool = True, timeout: float | None = None) -> Frame:
        """Remove the NEWEST frame and return it as a held Frame; every older
        queued frame is dropped (counted in ``dropped``, and in the frame's
        ``gap``). Waits like get(). A frame is never returned twice."""
        block = bool(block)
        deadline = _deadline(block, timeout)
        frame = _new_frame()
        holder = weakref.ref(frame._token)
        dead: list[Any] = []  # metadata of the dropped frames: released after unlocking
        self._refuse_reentry()
        try:
            try:  # acquire inside try, not `with` (module docstring)
                self._mutex.acquire()
                if self._pending:
                    self._flush_pending()
                self._await_queued(block, deadline)
                if self._has_meta:  # before any store
                    dead.extend([self._metas[s] for s in self._queued])
                self._drop_all_but_newest()
                self._hand_out_oldest(frame, holder)
            finally:
                try:
                    self._mutex.release()
                except RuntimeError:  # acquire() was interrupted before it took the lock
                    pass
        finally:
            if self._aio_room:
                self._aio_wake_room()
        del dead  # the dropped frames' metadata, lock released
        if self._full_shape is not None and frame._nbytes == self._frame_bytes:
            frame._shape = self._full_shape
            frame._typed = self._dtype is not None
        return frame

    def get_many(
        self, max_items: int, block: bool = True, timeout: float | None = None
    ) -> list[Frame]:
        """Wait like get() for the first frame, then take up to ``max_items``
        frames in all (oldest first) without waiting again."""
        limit = check_max_items(max_items)
        frames = [self.get(block, timeout)]
        while len(frames) < limit:
            try:
                frames.append(self.get(False))
            except (Empty, ShutDown):  # none left now (ShutDown: and shut down)
                break
        return frames

    def get_nowait(self) -> Frame:
        """Equivalent to ``get(False)``."""
        return self.get(False)

    def get_into(
        self, buffer: Any, block: bool = True, timeout: float | None = None
    ) -> tuple[int, int]:
        """Copy the oldest frame into the writable ``buffer``; return (nbytes, seq).

        If the oldest frame does not fit, ValueError is raised and nothing changes.
        """
        block = bool(block)
        dst = _byte_view(buffer, True)
        # [the slot this call holds until it is freed, its frame's metadata
        # (released when this call returns, lock not held)]
        box: list[Any] = [-1, None]
        try:
            size = dst.nbytes
            deadline = _deadline(block, timeout)
            self._refuse_reentry()
            try:  # acquire inside try, not `with` (module docstring)
                self._mutex.acquire()
                if self._pending:
                    self._flush_pending()
                self._await_queued(block, deadline)
                queued = self._queued
                slot = queued[0]
                nbytes = self._nbytes[slot]
                if nbytes > size:
                    raise _common.buffer_too_small(nbytes, size)
                seq = self._seqs[slot]
                ordinal = self._ordinals[slot]
                self._next_delivery = ordinal + 1
                box[1] = self._metas[slot]
                self._metas[slot] = None
                self._holders[slot] = None  # held by this call (box), not a frame
                box[0] = slot
                self._state[slot] = _HELD
                self._held += 1
                self._gets += 1
                del queued[0]
            finally:
                try:
                    self._mutex.release()
                except RuntimeError:  # acquire() was interrupted before it took the lock
                    pass
            if nbytes:
                view = self._views[slot]  # lock not held: the slot is ours
                if nbytes == len(view):
                    dst[:nbytes] = view
                else:
                    part = view[:nbytes]
                    try:
                        dst[:nbytes] = part
                    finally:
                        part.release()
            try:  # acquire inside try, not `with` (module docstring)
                self._mutex.acquire()
                # _free_held inlined: no call before the stores (module docstring)
                self._state[slot] = _FREE
                self._held -= 1
                box[0] = -1
                self._free.append(slot)
                if self._putters_waiting:
                    self._not_full.notify()
                if self._aio_putters:
                    self._aio_room += 1
            finally:
                try:
                    self._mutex.release()
                except RuntimeError:  # acquire() was interrupted before it took the lock
                    pass
            return nbytes, seq
        except BaseException:
            slot = box[0]
            if slot >= 0:  # taken, never freed: park it for the next critical section
                box[0] = -1
                self._pending.append(slot)
            raise
        finally:
            dst.release()
            if self._aio_room:
                self._aio_wake_room()

    # ---- state ---------------------------------------------------------------------------

    def qsize(self) -> int:
        """Return the number of queued frames."""
        return len(self._queued)

    __len__ = qsize

    def empty(self) -> bool:
        """Return True if no frame is queued."""
        return not self._queued

    def full(self) -> bool:
        """Return True if no slot is free."""
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            if self._pending:
                self._flush_pending()
            if not self._free and self._held:
                self._reclaim_lost()
            full = not self._free
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        if self._aio_room:
            self._aio_wake_room()
        return full

    def clear(self) -> int:
        """Drop every queued frame (counted as cleared); return how many.
        Held frames stay valid."""
        dead: list[Any] = []  # the frames' metadata: released after unlocking
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            if self._pending:
                self._flush_pending()
            n = self._drop_queued(dead)
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        if self._aio_room:
            self._aio_wake_room()
        return n

    def shutdown(self, immediate: bool = False) -> None:
        """Shut down: puts raise ShutDown, gets drain then raise ShutDown.
        ``immediate`` also drops the queued frames (counted as cleared);
        held frames stay valid until released."""
        immediate = bool(immediate)
        dead: list[Any] = []  # the cleared frames' metadata: released after unlocking
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            if self._pending:
                self._flush_pending()
            mode = _SHUT_IMMEDIATE if immediate else _SHUT_GRACEFUL
            if self._shutdown < mode:
                self._shutdown = mode
            if immediate:
                self._drop_queued(dead)
            self._not_empty.notify_all()
            self._not_full.notify_all()
            self._aio_room = 0  # every coroutine is woken below
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        if self._aio_getters:  # wake every coroutine in every loop
            self._aio.getters.notify_all()
        if self._aio_putters:
            self._aio.putters.notify_all()

    def stats(self) -> dict[str, int]:
        """Return a consistent snapshot of the counters (see STATS_KEYS)."""
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            if self._pending:
                self._flush_pending()
            if self._held:
                self._reclaim_lost()
            snapshot = {
                "puts": self._puts,
                "gets": self._gets,
                "dropped": self._dropped,
                "cleared": self._cleared,
                "underruns": self._underruns,
                "high_water": self._high_water,
                "size": len(self._queued),
                "held": self._held,
                "free": len(self._free),
                "slots": self._slots,
                "frame_bytes": self._frame_bytes,
            }
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        if self._aio_room:
            self._aio_wake_room()
        return snapshot

    @property
    def slots(self) -> int:
        """Number of frame slots."""
        return self._slots

    @property
    def frame_bytes(self) -> int:
        """Capacity of one slot in bytes."""
        return self._frame_bytes

    @property
    def overflow(self) -> str:
        """The overflow policy: "block", "drop_oldest" or "drop_newest"."""
        return self._overflow

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The frame shape given at construction (numpy views of full frames
        have it), or None."""
        return self._shape

    @property
    def dtype(self) -> Any:
        """The numpy dtype given at construction (views of full frames have
        it), or None (frames are uint8 bytes)."""
        return self._dtype

    @property
    def is_shutdown(self) -> bool:
        """True once shutdown() was called."""
        return self._shutdown != _RUNNING

    # ---- asyncio (bufmgr/_aio.py; async_get*/__aiter__: _aiopure.PureAsyncMethods) -----

    def async_put(self, buffer: Any, timeout: float | None = None) -> Any:
        """Coroutine: put() without blocking the event loop (Full on timeout);
        returns what put() returns. Only the "block" policy ever waits."""
        return _aio.put(self, buffer, timeout)

    def __repr__(self) -> str:
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            if self._pending:
                self._flush_pending()
            size, held, dropped, shut = len(self._queued), self._held, self._dropped, self._shutdown
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        return _common.ring_repr(
            self._slots, self._frame_bytes, self._overflow, size, held, dropped, bool(shut)
        )

    def __reduce__(self) -> Any:
        raise pickle_error("FrameRing")
