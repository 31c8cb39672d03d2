"""queue.Queue's public internals for the pure FrameQueue (bufmgr._pyqueue).

The twin of bufmgr/_compat.pxi, with the very same semantics (see there and
the README, "FrameQueue versus queue.Queue"): ``mutex`` is a lock of its
own that does not block the queue's operations; ``not_empty`` / ``not_full``
/ ``all_tasks_done`` are Conditions on it whose wait() also returns when the
queue gets an item / frees a place / has no unfinished task left (or shuts
down), or when the queue did such a thing since the caller took ``mutex``;
``queue`` is a live deque-like view whose every operation is atomic and
counted.

A waiter sleeps on the queue's own Condition, counted among its getters /
putters / joiners, so the queue's own notify reaches it; waits follow the
queue's rules (monotonic deadline, slices of at most 50 ms).
"""

from __future__ import annotations

import operator
import threading
from collections import deque
from time import monotonic as _monotonic
from typing import Any, Callable, Iterable, Iterator

from ._errors import Empty, pickle_error

ITEMS, ROOM, ALL_DONE = 0, 1, 2
_NAMES = ("not_empty", "not_full", "all_tasks_done")
_creation = threading.Lock()  # one set of compat objects per queue
_get_ident = threading.get_ident


def compat_of(q: Any) -> "QueueCompat":
    c: QueueCompat | None = q._compat
    if c is not None:
        return c
    with _creation:
        c = q._compat
        if c is None:
            c = q._compat = QueueCompat(q)
        return c


def _events(q: Any, kind: int) -> int:
    """bm_ring_events_locked's twin (q's lock held)."""
    mode: int = q._shutdown
    if kind == ITEMS:
        puts: int = q._puts
        return (puts << 2) | mode
    if kind == ROOM:
        freed: int = q._gets + q._dropped + q._cleared
        return (freed << 2) | mode
    unfinished: int = q._unfinished
    if unfinished == 0:
        return -4 + mode  # distinct from every count
    return (unfinished << 2) | mode


class QueueCompat:
    __slots__ = ("mutex", "not_empty", "not_full", "all_tasks_done", "queue")

    def __init__(self, q: Any) -> None:
        self.mutex = QueueLock(q)
        self.not_empty = QueueCondition(self.mutex, ITEMS)
        self.not_full = QueueCondition(self.mutex, ROOM)
        self.all_tasks_done = QueueCondition(self.mutex, ALL_DONE)
        self.queue = QueueView(q)


class QueueLock:
    """FrameQueue.mutex: a threading.Lock for code written against
    queue.Queue's ``mutex``. It excludes other holders of it (and waiters on
    not_empty/not_full/all_tasks_done, which share it), not the queue's own
    operations: those never wait for it, and work while it is held."""

    __slots__ = ("_q", "_lock", "_owner", "_seen")

    def __init__(self, q: Any) -> None:
        self._q = q
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._seen = (0, 0, 0)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self._lock.acquire(blocking, timeout):
            return False
        self._owner = _get_ident()
        q = self._q
        q._refuse_reentry()
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            q._mutex.acquire()
            self._seen = (_events(q, ITEMS), _events(q, ROOM), _events(q, ALL_DONE))
        finally:
            try:
                q._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        return True

    def release(self) -> None:
        owner, self._owner = self._owner, None
        try:
            self._lock.release()
        except BaseException:
            self._owner = owner
            raise

    def locked(self) -> bool:
        return self._lock.locked()

    def _is_owned(self) -> bool:
        return self._owner == _get_ident()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<bufmgr.FrameQueue.mutex {'locked' if self._lock.locked() else 'unlocked'}>"

    def __reduce__(self) -> Any:
        raise pickle_error("FrameQueue.mutex")


class QueueCondition:
    """FrameQueue.not_empty / not_full / all_tasks_done (see the module docstring)."""

    __slots__ = ("_lock", "_kind", "_kicks")

    def __init__(self, lock: QueueLock, kind: int) -> None:
        self._lock = lock
        self._kind = kind
        self._kicks = 0  # notify() count, read and written under the queue's lock

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._lock.release()

    def _is_owned(self) -> bool:
        return self._lock._is_owned()

    def _inner(self, q: Any) -> threading.Condition:
        conds: tuple[threading.Condition, ...] = (q._not_empty, q._not_full, q._all_tasks_done)
        return conds[self._kind]

    def wait(self, timeout: float | None = None) -> bool:
        """Release the mutex, sleep until an event of this kind, a notify()
        or the timeout, take the mutex back. True unless it timed out."""
        lock = self._lock
        if not lock._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        deadline = None
        if timeout is not None:
            seconds = float(timeout)
            if seconds != seconds:
                raise ValueError("'timeout' must be a number, not NaN")
            if seconds < 1e9:  # else: forever, like the compiled class
                deadline = _monotonic() + max(seconds, 0.0)
        q, kind = lock._q, self._kind
        seen = lock._seen[kind]
        q._refuse_reentry()
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            q._mutex.acquire()
            kick_seen = self._kicks
        finally:
            try:
                q._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        lock.release()
        try:
            return self._watch(q, kind, seen, kick_seen, deadline)
        finally:
            lock.acquire()  # takes a fresh event count

    def _watch(self, q: Any, kind: int, seen: int, kick_seen: int, deadline: float | None) -> bool:
        inner = self._inner(q)
        q._refuse_reentry()
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            q._mutex.acquire()
            try:
                return self._sleep_until_event(q, inner, kind, seen, kick_seen, deadline)
            finally:
                # We may have taken a notify meant for a real getter/putter: pass one on.
                if kind == ITEMS and q._queue and q._getters_waiting:
                    q._not_empty.notify()
                elif kind == ROOM and q._putters_waiting and not (
                    q._maxsize and len(q._queue) >= q._maxsize
                ):
                    q._not_full.notify()
        finally:
            try:
                q._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def _sleep_until_event(
        self, q: Any, inner: threading.Condition, kind: int, seen: int, kick_seen: int,
        deadline: float | None,
    ) -> bool:
        """_watch's loop (the queue's lock held): a helper, as no loop is
        written directly in a critical section (bufmgr/_pyqueue.py's
        docstring)."""
        while _events(q, kind) == seen and self._kicks == kick_seen:
            if deadline is not None and _monotonic() >= deadline:
                return False
            self._count(q, 1)
            try:
                ok = q._wait_slice(inner, deadline)
            finally:
                self._count(q, -1)
            if not ok:
                return False
        return True

    def _count(self, q: Any, d: int) -> None:
        if self._kind == ITEMS:
            q._getters_waiting += d
            q._getters_watching += d
        elif self._kind == ROOM:
            q._putters_waiting += d
            q._putters_watching += d
        else:
            q._joiners_waiting += d

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """threading.Condition.wait_for: wait until predicate() is true."""
        end = None
        left = timeout
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

    def notify(self, n: int = 1) -> None:
        """Wake the waiters (all of them: more than n is allowed for a Condition)."""
        if not self._lock._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        if n <= 0:
            return
        q = self._lock._q
        q._refuse_reentry()
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            q._mutex.acquire()
            self._kicks += 1
            self._inner(q).notify_all()
        finally:
            try:
                q._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def notify_all(self) -> None:
        self.notify(1)

    def __repr__(self) -> str:
        return f"<bufmgr.FrameQueue.{_NAMES[self._kind]}>"

    def __reduce__(self) -> Any:
        raise pickle_error("FrameQueue condition")


class QueueView:
    """FrameQueue.queue: a live, deque-like view of the queued items, oldest
    first. Each operation is one atomic step on the queue and keeps its
    counters: clear() counts as cleared, append()/extend() as puts (the
    overflow policy applies; a full "block" queue raises queue.Full),
    popleft() as a get. Iteration, list(), ``in`` and repr() see a snapshot."""

    __slots__ = ("_q",)

    def __init__(self, q: Any) -> None:
        self._q = q

    def _snapshot(self) -> list[Any]:
        q = self._q
        q._refuse_reentry()
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            q._mutex.acquire()
            return list(q._queue)
        finally:
            try:
                q._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def __len__(self) -> int:
        return int(self._q.qsize())

    def __bool__(self) -> bool:
        return bool(self._q.qsize())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._snapshot())

    def __contains__(self, item: object, /) -> bool:
        return item in self._snapshot()  # == runs outside the lock

    def __getitem__(self, index: int, /) -> Any:
        index = operator.index(index)  # TypeError for slices, like deque
        q = self._q
        q._refuse_reentry()
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            q._mutex.acquire()
            return q._queue[index]
        finally:
            try:
                q._mutex.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def clear(self) -> None:
        self._q.clear()

    def append(self, item: Any) -> None:
        self._q.put_nowait(item)

    def extend(self, items: Iterable[Any]) -> None:
        self._q.put_many(items, False)

    def popleft(self) -> Any:
        try:
            return self._q.get_nowait()
        except Empty:
            raise IndexError("pop from an empty deque") from None

    def copy(self) -> deque[Any]:
        return deque(self._snapshot())

    def __repr__(self) -> str:
        return f"FrameQueue.queue({self._snapshot()!r})"

    def __reduce__(self) -> Any:
        raise pickle_error("FrameQueue.queue")
