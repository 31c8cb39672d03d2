"""Pure-Python twin of the compiled FrameQueue (bufmgr._ring).

Same API, exceptions and counters as the C ring in include/bufmgr/ring.h:
a ``collections.deque`` guarded by one ``threading.Lock`` shared by three
``threading.Condition`` objects (not_empty, not_full, all_tasks_done).

Invariant: no user code runs while the lock is held. Items leaving the
queue without being handed to the caller (evicted, cleared, discarded by
get_latest or an immediate shutdown) lose their last reference only after
the lock is released, so an item's ``__del__`` may safely use the queue.

Finalizers the queue does not control can still run inside a critical
section: the cycle collector (at any eval-breaker check, 3.12+) and, on
free-threaded builds, an object whose last reference another thread dropped
(deallocated later in the thread that created it). Such a finalizer that
calls back into the same queue cannot proceed -- the critical section it
interrupted is half-way through an update -- and with a plain Lock it would
deadlock. The lock is therefore an ``RLock``: a public method entered while
this thread owns it (``RLock._is_owned()``: it is inside one of its critical
sections) raises RuntimeError at once instead of hanging. A re-entrant call
while this thread only waits on a Condition (which releases the lock, the
state being consistent) proceeds normally. The compiled class never runs
Python code while its mutex is held and is not affected.

Asynchronous exceptions (KeyboardInterrupt from a signal handler, issue 11.3)
can be raised at any eval-breaker check: after a call returns, at the start
of a Python function, on a backward jump. So every critical section is

    try:
        self._mutex.acquire()
        ...
    finally:
        try:
            self._mutex.release()
        except RuntimeError:  # acquire() was interrupted before it took the lock
            pass

and no flag has to be set or cleared around it: an interrupt can land
anywhere and still leave the lock free and the queue usable. Not
``with self._mutex:``: CPython 3.14 (up to 3.14.10 at least; gh-148874,
fixed in 3.15) checks for signals between a with statement's __enter__ and
the block that guarantees __exit__, which left the lock held after about one
interrupt in four in tests/test_async_interrupts.py. The acquire call sits
inside the try, so the check after it returns is covered by the finally;
the release is the finally's first call, so no check comes before it. No
loop is written directly in a critical section either (they live in helper
methods): on CPython 3.12-3.14 a loop's backward jump can fall outside the
section's exception table (gh-130279); tests/test_async_interrupts.py checks
the bytecode of every pure module for both.
"""

from __future__ import annotations

import operator
import os
import threading
from threading import get_ident as _get_ident
import weakref
from collections import deque
from types import GenericAlias
from time import monotonic as _monotonic
from typing import Any, Iterable

from . import _aio
from ._aiopure import PureAsyncMethods
from ._errors import (
    TASK_DONE_TOO_MANY,
    WAIT_SLICE_S,
    Empty,
    Full,
    ShutDown,
    check_bounded_policy,
    check_max_items,
    check_maxsize,
    check_overflow,
    check_timeout,
    pickle_error,
)
from ._pycompat import compat_of

__all__ = ["FrameQueue"]

_REENTRANT = "FrameQueue used re-entrantly from a finalizer while this thread holds its lock"

_BLOCK, _DROP_OLDEST, _DROP_NEWEST = 0, 1, 2
_POLICIES = {"block": _BLOCK, "drop_oldest": _DROP_OLDEST, "drop_newest": _DROP_NEWEST}
_RUNNING, _SHUT_GRACEFUL, _SHUT_IMMEDIATE = 0, 1, 2


def _deadline(block: bool, timeout: object) -> float | None:
    """Validate ``timeout`` (only when blocking); return a monotonic deadline or None."""
    if not block:
        return None
    seconds = check_timeout(timeout)
    return None if seconds is None else _monotonic() + seconds


class FrameQueue(PureAsyncMethods):
    """A thread-safe FIFO with an overflow policy, drop counters and shutdown.

    ``maxsize <= 0`` means unbounded. ``overflow`` is ``"block"`` (put waits
    for room), ``"drop_oldest"`` (put evicts and returns the oldest item) or
    ``"drop_newest"`` (put refuses and returns the new item); a drop policy
    needs ``maxsize > 0``. Final, like the compiled class.
    """

    __slots__ = (
        "_maxsize", "_overflow", "_policy", "_queue", "_mutex", "_not_empty",
        "_not_full", "_all_tasks_done", "_shutdown", "_unfinished",
        "_getters_waiting", "_putters_waiting", "_joiners_waiting",
        "_getters_watching", "_putters_watching", "_puts", "_gets", "_dropped", "_cleared", "_waits", "_high_water",
        "_maxsize_arg", "_compat",
        "_waiting", "_aio", "_aio_getters", "_aio_putters", "__weakref__",
    )

    def __init__(self, maxsize: int = 0, overflow: str = "block") -> None:
        self._maxsize = check_maxsize(maxsize)
        self._overflow = check_overflow(overflow)
        check_bounded_policy(maxsize, overflow)
        self._maxsize_arg = int(maxsize)  # as given, like queue.Queue (-1 stays -1)
        self._compat = None  # queue.Queue-style mutex/conditions/view (_pycompat), on first use
        self._policy = _POLICIES[overflow]
        self._queue: deque[Any] = deque()
        # RLock: re-entry from a finalizer raises instead of deadlocking
        # (module docstring, _refuse_reentry).
        self._mutex = threading.RLock()
        self._waiting: list[int] = []  # threads in _wait_slice (see _refuse_reentry)
        self._not_empty = threading.Condition(self._mutex)
        self._not_full = threading.Condition(self._mutex)
        self._all_tasks_done = threading.Condition(self._mutex)
        self._shutdown = _RUNNING
        self._unfinished = 0
        self._getters_waiting = self._putters_waiting = self._joiners_waiting = 0
        # Of those, the not_empty/not_full watchers (_pycompat): while any
        # waits, wake-ups are notify_all, as in ring.h's bm__wake_getters.
        self._getters_watching = self._putters_watching = 0
        self._puts = self._gets = self._dropped = self._cleared = self._waits = 0
        self._high_water = 0
        # asyncio (bufmgr/_aio.py): the registries, made on first use, and
        # whether any coroutine waits for an item / for room. Read after the
        # lock is released: the one check the sync hot path pays.
        self._aio = None
        self._aio_getters = self._aio_putters = False
        _live_queues.add(self)  # fork safety, see the bottom of this module

    # ---- internals (lock held) -------------------------------------------

    def _push(self, item: Any) -> None:
        q = self._queue
        q.append(item)
        self._puts += 1
        self._unfinished += 1
        if len(q) > self._high_water:
            self._high_water = len(q)

    def _retire(self, n: int) -> None:
        """Count ``n`` items that left without a get as done for join()."""
        self._unfinished = self._unfinished - n if self._unfinished > n else 0
        if self._unfinished == 0 and self._joiners_waiting:
            self._all_tasks_done.notify_all()

    def _wake_putters(self, freed: int) -> None:
        if freed and self._putters_waiting:
            if self._putters_watching:
                self._not_full.notify_all()
            else:
                self._not_full.notify(freed)

    def _wake_getters(self, added: int) -> None:
        if added and self._getters_waiting:
            if self._getters_watching:
                self._not_empty.notify_all()
            else:
                self._not_empty.notify(added)

    def _refuse_reentry(self) -> None:
        """Before a critical section: RuntimeError if this thread is inside
        one of this queue's critical sections (a finalizer run there called
        back in; module docstring), unless it is only waiting in
        _wait_slice. Only this thread changes whether it owns the lock or is
        listed in ``_waiting``, so the check cannot race."""
        if self._mutex._is_owned() and _get_ident() not in self._waiting:
            raise RuntimeError(_REENTRANT)

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
            cond.wait(seconds)  # the state is consistent: others (and finalizers) may enter
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
        return True

    def _await_item(self, block: bool, deadline: float | None) -> None:
        """Return once an item is queued; raise ShutDown (drained) or Empty."""
        waited = False
        while not self._queue:
            if self._shutdown:
                raise ShutDown
            if not block:
                raise Empty
            if not waited:  # counted once per operation, like bm__count_wait
                self._waits += 1
                waited = True
            self._getters_waiting += 1
            try:
                ok = self._wait_slice(self._not_empty, deadline)
            finally:
                self._getters_waiting -= 1
            if not ok:
                raise Empty

    def _await_room(self, block: bool, deadline: float | None, waited: bool) -> bool:
        """Return once there is room (returns the updated ``waited`` flag); raise ShutDown or Full."""
        maxsize = self._maxsize
        while True:
            if self._shutdown:
                raise ShutDown
            if not maxsize or len(self._queue) < maxsize:
                return waited
            if not block:
                raise Full
            if not waited:
                self._waits += 1
                waited = True
            self._putters_waiting += 1
            try:
                ok = self._wait_slice(self._not_full, deadline)
            finally:
                self._putters_waiting -= 1
            if not ok:
                raise Full

    # ---- producers ---------------------------------------------------------

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> Any:
        """Queue ``item``; return the item dropped by the overflow policy, or None."""
        block = bool(block)
        deadline = _deadline(block, timeout)
        evicted = None
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            if self._shutdown:
                raise ShutDown
            maxsize = self._maxsize
            if maxsize and len(self._queue) >= maxsize:
                if self._policy == _DROP_NEWEST:
                    self._puts += 1
                    self._dropped += 1
                    return item
                if self._policy == _DROP_OLDEST:
                    # The evicted item is returned to the caller, so its last
                    # reference is not dropped here, under the lock.
                    evicted = self._queue.popleft()
                    self._dropped += 1
                    self._retire(1)
                else:
                    self._await_room(block, deadline, False)
            self._push(item)
            self._wake_getters(1)
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        if self._aio_getters:  # a coroutine waits: wake it, lock released
            self._aio.getters.notify(1)
        return evicted

    def put_nowait(self, item: Any) -> Any:
        """Equivalent to ``put(item, False)``."""
        return self.put(item, False)

    def put_many(
        self, items: Iterable[Any], block: bool = True, timeout: float | None = None
    ) -> list[Any]:
        """Put each item in order under one lock hold; return the dropped items.

        Under "block", waits for room for the rest (``timeout`` is one total
        deadline). On Full/ShutDown the items before the failing one stay queued.
        """
        block = bool(block)
        seconds = check_timeout(timeout) if block else None
        items = list(items)  # user code (iteration) runs before the lock is taken
        if not items:
            if self._shutdown:  # like the compiled class: [] after shutdown still raises
                raise ShutDown
            return []
        deadline = None if seconds is None else _monotonic() + seconds
        dropped: list[Any] = []
        added = 0
        waited = False
        self._refuse_reentry()
        try:
            try:  # acquire inside try, not `with` (module docstring)
                self._mutex.acquire()
                try:
                    maxsize, policy = self._maxsize, self._policy
                    for item in items:
                        if self._shutdown:
                            raise ShutDown
                        if maxsize and len(self._queue) >= maxsize:
                            if policy == _BLOCK:
                                self._wake_getters(added)  # wake consumers before sleeping
                                added = 0
                                waited = self._await_room(block, deadline, waited)
                            elif policy == _DROP_NEWEST:
                                self._puts += 1
                                self._dropped += 1
                                dropped.append(item)
                                continue
                            else:
                                dropped.append(self._queue.popleft())
                                self._dropped += 1
                                self._retire(1)
                        self._push(item)
                        added += 1
                finally:
                    self._wake_getters(added)
            finally:
                try:
                    self._mutex.release()
                except RuntimeError:  # acquire() was interrupted before it took the lock
                    pass
        finally:
            if self._aio_getters:
                self._aio.getters.notify(len(items))
        return dropped  # evicted items go to the caller; none released under the lock

    # ---- consumers ---------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item (Empty / ShutDown once drained)."""
        block = bool(block)
        deadline = _deadline(block, timeout)
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            self._await_item(block, deadline)
            item = self._queue.popleft()
            self._gets += 1
            self._wake_putters(1)
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        if self._aio_putters:
            self._aio.putters.notify(1)
        return item

    def get_nowait(self) -> Any:
        """Equivalent to ``get(False)``."""
        return self.get(False)

    def get_latest(self, block: bool = True, timeout: float | None = None) -> Any:
        """Wait like get(); return the newest item, discarding (dropping) all older ones."""
        block = bool(block)
        deadline = _deadline(block, timeout)
        discarded = None
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            self._await_item(block, deadline)
            item = self._queue.pop()
            self._gets += 1
            n = len(self._queue)
            if n:
                # O(1) swap; the old deque (and its items) is released after unlocking.
                discarded, self._queue = self._queue, deque()
                self._dropped += n
                self._retire(n)
            self._wake_putters(n + 1)
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        del discarded  # last references to the discarded items dropped outside the lock
        if self._aio_putters:
            self._aio.putters.notify(n + 1)
        return item

    def get_many(
        self, max_items: int, block: bool = True, timeout: float | None = None
    ) -> list[Any]:
        """Wait for one item like get(), then take up to ``max_items`` in total without waiting."""
        max_items = check_max_items(max_items)
        block = bool(block)
        deadline = _deadline(block, timeout)
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            self._await_item(block, deadline)
            q = self._queue
            popleft = q.popleft
            out = [popleft() for _ in range(min(max_items, len(q)))]
            self._gets += len(out)
            self._wake_putters(len(out))
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        if self._aio_putters:
            self._aio.putters.notify(len(out))
        return out

    # ---- state ---------------------------------------------------------------

    def qsize(self) -> int:
        """Return the number of queued items."""
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            return len(self._queue)
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    __len__ = qsize

    def empty(self) -> bool:
        """Return True if nothing is queued."""
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            return not self._queue
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def full(self) -> bool:
        """Return True if bounded and at least ``maxsize`` items are queued."""
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            return bool(self._maxsize) and len(self._queue) >= self._maxsize
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def task_done(self) -> None:
        """Mark one got item as processed (ValueError if none is outstanding)."""
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            if self._unfinished == 0:
                raise ValueError(TASK_DONE_TOO_MANY)
            self._retire(1)
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def join(self) -> None:
        """Block until every queued item was task_done()'d, dropped or cleared."""
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            self._await_all_done()
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def _await_all_done(self) -> None:
        """join()'s wait (lock held). A helper, not a loop in join's
        critical section: there, an interrupt on the loop's back edge can
        skip the section's cleanup and leave the lock held (CPython 3.12-3.14,
        gh-130279; tests/test_async_interrupts.py checks the bytecode)."""
        while self._unfinished:
            self._joiners_waiting += 1
            try:
                self._wait_slice(self._all_tasks_done, None)
            finally:
                self._joiners_waiting -= 1

    def clear(self) -> int:
        """Remove every queued item (counted as cleared); return how many."""
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            # O(1) swap; the old deque (and its items) is released after unlocking.
            old, self._queue = self._queue, deque()
            n = len(old)
            self._cleared += n
            self._retire(n)
            self._wake_putters(n)
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        del old  # items' last references dropped outside the lock
        if n and self._aio_putters:
            self._aio.putters.notify(n)
        return n

    def shutdown(self, immediate: bool = False) -> None:
        """Shut down (CPython 3.13 semantics); ``immediate`` also empties the queue."""
        immediate = bool(immediate)
        old = None
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            mode = _SHUT_IMMEDIATE if immediate else _SHUT_GRACEFUL
            if self._shutdown < mode:
                self._shutdown = mode
            if immediate:
                # O(1) swap; the old deque (and its items) is released after unlocking.
                old, self._queue = self._queue, deque()
                self._cleared += len(old)
                self._retire(len(old))
            self._not_empty.notify_all()
            self._not_full.notify_all()
            self._all_tasks_done.notify_all()
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        del old  # items' last references dropped outside the lock
        if self._aio_getters:  # wake every coroutine in every loop
            self._aio.getters.notify_all()
        if self._aio_putters:
            self._aio.putters.notify_all()

    def stats(self) -> dict[str, int]:
        """Return a consistent snapshot of the counters."""
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            return {
                "puts": self._puts,
                "gets": self._gets,
                "dropped": self._dropped,
                "cleared": self._cleared,
                "high_water": self._high_water,
                "size": len(self._queue),
                "maxsize": self._maxsize,
                "waits": self._waits,
            }
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    @property
    def maxsize(self) -> int:
        """The capacity given at construction (<= 0 = unbounded), as given."""
        return self._maxsize_arg

    @property
    def overflow(self) -> str:
        """The overflow policy: "block", "drop_oldest" or "drop_newest"."""
        return self._overflow

    @property
    def unfinished_tasks(self) -> int:
        """Items put and not yet task_done()'d, dropped or cleared. May be
        lowered (``q.unfinished_tasks = 0``, the queue.Queue idiom), never raised."""
        return self._unfinished

    @unfinished_tasks.setter
    def unfinished_tasks(self, value: int) -> None:
        n = operator.index(value)
        if n < 0:
            raise ValueError(f"unfinished_tasks must be >= 0, got {n}")
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            ok = n <= self._unfinished
            if ok:
                self._retire(self._unfinished - n)
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        if not ok:
            raise ValueError(
                "unfinished_tasks can only be lowered (queue.Queue's "
                f"`q.unfinished_tasks = 0` idiom), not raised to {n}"
            )

    def __bool__(self) -> bool:
        return True  # like queue.Queue: `q or FrameQueue()` keeps an empty queue

    __class_getitem__: Any = classmethod(GenericAlias)  # FrameQueue[int], like queue.Queue[int]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The compiled class is final (its hot path calls no Python hooks);
        # the twin refuses the same, so code cannot depend on a difference.
        raise TypeError("type 'bufmgr.FrameQueue' is not an acceptable base type (it is final)")

    # queue.Queue's public internals, for code written against them; see
    # bufmgr/_pycompat.py for what they are (and what they cannot be).
    @property
    def mutex(self) -> Any:
        """A lock for queue.Queue-style code; it does not block this queue's operations."""
        return compat_of(self).mutex

    @property
    def not_empty(self) -> Any:
        """A Condition on ``mutex`` whose wait() returns when an item is put."""
        return compat_of(self).not_empty

    @property
    def not_full(self) -> Any:
        """A Condition on ``mutex`` whose wait() returns when a place is freed."""
        return compat_of(self).not_full

    @property
    def all_tasks_done(self) -> Any:
        """A Condition on ``mutex`` whose wait() returns when no task is unfinished."""
        return compat_of(self).all_tasks_done

    @property
    def queue(self) -> Any:
        """A live deque-like view of the queued items (each operation atomic)."""
        return compat_of(self).queue

    @property
    def is_shutdown(self) -> bool:
        """True once shutdown() was called."""
        return self._shutdown != _RUNNING

    # ---- asyncio (bufmgr/_aio.py; async_get*/__aiter__: _aiopure.PureAsyncMethods) ----

    def async_put(self, item: Any, timeout: float | None = None) -> Any:
        """Coroutine: put() without blocking the event loop (Full on timeout);
        returns what put() returns."""
        return _aio.put(self, item, timeout)

    def __repr__(self) -> str:
        self._refuse_reentry()
        try:  # acquire inside try, not `with` (module docstring)
            self._mutex.acquire()
            size, dropped, shut = len(self._queue), self._dropped, self._shutdown
        finally:
            try:
                self._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        return (
            f"<bufmgr.FrameQueue size={size} maxsize={self._maxsize_arg} "
            f"overflow={self._overflow!r} dropped={dropped}{' shutdown' if shut else ''}>"
        )

    def __reduce__(self) -> Any:
        raise pickle_error("FrameQueue")


# -- fork safety ---------------------------------------------------------------
# Same scheme as the compiled class (bottom of _ring.pyx). A forked child has
# only the forking thread; a mutex another thread held at that instant would
# stay locked forever there, and the queue could be caught half-way through an
# update. So before fork() every live queue's mutex is taken (a thread never
# holds two of them and releases one within a few bytecodes, waits release it,
# so there is no lock-order problem), the parent releases them, and the child
# gives each queue a fresh Lock and Conditions: the parent's waiters do not
# exist in the child. Queued items and counters are kept. The list of queues
# is re-read if another thread creates one while it is being copied.
_live_queues: "weakref.WeakSet[FrameQueue]" = weakref.WeakSet()
_locked_for_fork: "list[FrameQueue]" = []


def _snapshot_live_queues() -> "list[FrameQueue]":
    while True:
        try:
            return list(_live_queues)
        except RuntimeError:  # another thread created or freed a queue meanwhile
            continue


def _before_fork() -> None:
    for q in _snapshot_live_queues():
        q._mutex.acquire()
        _locked_for_fork.append(q)


def _after_fork_parent() -> None:
    while _locked_for_fork:
        _locked_for_fork.pop()._mutex.release()


def _after_fork_child() -> None:
    # Fresh locks first, references dropped last (as in the compiled class:
    # a dropped queue's items may have finalizers that use other queues).
    for q in _snapshot_live_queues():
        q._mutex = threading.RLock()
        q._waiting = []
        q._not_empty = threading.Condition(q._mutex)
        q._not_full = threading.Condition(q._mutex)
        q._all_tasks_done = threading.Condition(q._mutex)
        q._getters_waiting = q._putters_waiting = q._joiners_waiting = 0
        q._getters_watching = q._putters_watching = 0
    _locked_for_fork.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent,
                        after_in_child=_after_fork_child)
