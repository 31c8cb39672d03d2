"""Awaiting bufmgr buffers from asyncio: one registry per buffer, no thread per waiter.

Used by both implementations (compiled and pure) of FrameQueue and FrameRing;
their ``async_*`` methods and ``__aiter__`` are thin wrappers over the
coroutines at the bottom of this module.

How a coroutine waits (``Waiters.wait``)
---------------------------------------
1. It tries the non-blocking call (``get_nowait``, ``put_nowait``, ...). That
   is the whole cost when the buffer is ready: no future, no lock, no loop
   round trip.
2. Would block: it registers a future of its running loop, then tries again.
   The second try closes the lost-wake-up race (a producer that filled the
   buffer between the first try and the registration saw no waiter and
   notified nobody); see "Memory order" below for the free-threaded case.
3. It awaits the future. A wake-up only means "try again": items are never
   handed to a waiter, each woken waiter takes its item itself. So a waiter
   that is cancelled, times out or was closed never holds an item, and no
   item can be lost or duplicated by cancellation; the worst case is a
   spurious wake-up, after which the waiter registers again.

How producers/consumers wake them (``Waiters.notify``)
------------------------------------------------------
Any thread (or coroutine) that changes the buffer calls ``notify(n)`` for n
new items (or n freed places), ``notify_all()`` at shutdown. notify picks
the n oldest registered waiters (FIFO, across loops), removes them from the
registry, and groups them by loop: each loop gets ONE ``call_soon_threadsafe``
per burst however many of its waiters were picked (a pending delivery just
collects more futures), so the loop's self-pipe sees at most one write per
burst (cpython#156054). The delivery callback runs in the loop's thread and
resolves the futures, resuming each one's task right there rather than one
loop iteration later (bufmgr/_aiowake.py). A picked future that is already done by then (its task
was cancelled, or its own timeout fired) passes its wake-up on: notify(1)
again. A waiter that abandons a registration after a wake-up was delivered to
it (cancelled before it resumed, or its second try succeeded) passes it on
the same way. So a wake-up picked for a waiter that will not use it always
reaches another waiter, and nothing is lost to cancellation.

Nothing at all is done when no coroutine waits: a buffer keeps one C int (or
Python attribute) per direction, set through ``on_active`` while its
registry is non-empty, and calls notify only when it is set -- after the
ring/pool mutex is released (invariant 1: no Python code under a ring
mutex). That is a single integer test on the sync hot path. When notify
picks the last registered waiter it leaves the flag set (keeping the hook
off the wake-up's critical path); the next notify finds nobody and clears
it, so a burst of puts costs one spare call, then nothing.

Closed loops: a waiter whose loop is closed is dropped (with its future)
at the next notify, without touching the loop; ``call_soon_threadsafe`` on a
loop that closed meanwhile raises RuntimeError, which is caught and its
wake-ups given to other waiters. No exception reaches the notifying thread,
no reference to a closed loop's futures (and so to its tasks) is kept.
Any other error from ``call_soon_threadsafe`` (MemoryError, or a
RuntimeError from a loop that is still open) puts the
waiters picked for that loop back at the head, where the next event finds
them, and is raised to the notifier once the other loops are rung (the
compiled buffers report it as unraisable: the sync call it follows already
happened). A fast-lane ticket whose ring fails on a loop still open (any
error) is put back the same way and retried at once (``_lane_failed``).
This module never creates a Task, so there is nothing to be "destroyed but
pending" and nothing to ``aclose()``.

Memory order (free-threaded builds): the waiter sets ``on_active`` (an atomic
int store in the compiled classes) BEFORE its second try takes the ring
mutex; a producer reads it AFTER its put released that mutex. Either the
producer's critical section comes first (the second try sees the item) or
the waiter's does, and then the store happened before the producer's read
through the mutex. On GIL builds the GIL orders both.

The fast lane (compiled FrameQueue and FrameRing)
-------------------------------------------------
notify(1) with one waiter is the usual wake-up, and every instruction of it
is on the put -> resume latency. So a buffer may give its registries an
``AioLanes`` (bufmgr/_aiolane.pxi, which describes the exchanges): whenever
notify(1) would take its fast path (a waiter registered, no delivery in
flight) the registry ARMS the lane for its oldest waiter, and the buffer's C
code, instead of calling notify(1), TAKES the ticket and rings the waiter's
loop; there a small compiled callback CLAIMS the future and resolves it. No
Python frame, lock or dict on the producer's side, no registry lock on the
loop's. The registry learns of it lazily: each critical section starts with
``_sync_locked`` (disarm; nothing back means taken: the waiter leaves
``_waiting``, and if the callback has not claimed its future yet, the
registry claims it and records the delivery in ``_deliveries`` exactly as
notify(1)'s fast path would, so later wake-ups ride along, and the callback
then delivers that batch through ``_deliver``). The state only changes under
the lock after a sync, so an armed ticket always matches it. With no ticket
the buffer calls notify(n) as before. Buffers without lanes (the pure twins,
SharedFrameRing) never arm.

trio (bufmgr/_aiotrio.py)
------------------------
``wait`` run by a trio task (no asyncio loop running in its thread, trio
already imported) goes to ``_aiotrio.wait``: the same loop with trio's
primitives, registered in this same registry behind two adapters, a
``TrioLoop`` per trio run (``call_soon_threadsafe`` is the run's
``run_sync_soon``; a finished run refuses with the closed loop's
RuntimeError) and a ``TrioFuture`` (the part of the Future API used here).
So everything above holds across trio runs and asyncio loops alike, the
fast lane included. The dispatch costs the asyncio path nothing: it is the
``except RuntimeError`` of the ``get_running_loop()`` call it makes anyway.

The interface, for buffers that live outside this process
-------------------------------------------------------
``Waiters(on_active)`` is all a buffer needs: call ``notify(n)`` /
``notify_all()`` from any thread after a change, and let
``on_active(True/False)`` say when anyone waits. For the shared-memory ring
(SharedFrameRing, another process's producer cannot call_soon_threadsafe
into our loops) the plan is: ``on_active(True)`` starts (or un-parks) one
watcher thread per (process, shared ring); while the registry is active the
thread blocks on the ring's futex / process-shared condition (in slices, so
it notices ``on_active(False)`` and the ring being closed) and calls
``notify(n)`` for what changed; ``on_active(False)`` lets it park. In-process
producers of that ring may still call notify directly. The waiters' side
(``wait``, cancellation, closed loops) is unchanged. on_active is called
with the registry lock held, in registration order: it must be quick and
must not call back into the same Waiters.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import OrderedDict
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from ._errors import Empty, Full, ShutDown, check_max_items, check_timeout

if TYPE_CHECKING:
    import asyncio

__all__ = ["Waiters", "BufferWaiters", "AsyncIterator"]

ALL = 1 << 62  # notify(ALL): more waiters than can ever exist

#: Serializes the first ``buffer._aio_waiters()`` of each pure buffer.
CREATE_LOCK = threading.Lock()

#: Kinds passed to a buffer's ``_aio_set_active(kind, active)``.
GETTERS, PUTTERS = 0, 1


_get_running_loop: Callable[[], asyncio.AbstractEventLoop] | None = None
_wake: Any = None  # bufmgr/_aiowake.py's wake, once loaded


def _load_asyncio() -> Callable[[], asyncio.AbstractEventLoop]:
    # On first wait, not at import: asyncio takes longer to import than bufmgr.
    global _get_running_loop, _wake
    import asyncio

    from ._aiowake import wake

    _wake = wake
    _get_running_loop = asyncio.get_running_loop
    return _get_running_loop


def _in_trio() -> bool:
    """No asyncio loop runs in this thread: is it a trio task (anyio's trio
    backend included)? Never imports trio (bufmgr/_aiotrio.py)."""
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except (RuntimeError, AttributeError):  # outside a run (or a partial import)
        return False
    return True


def _closed_loop_refused(loop: asyncio.AbstractEventLoop, error: BaseException) -> bool:
    """``loop.call_soon_threadsafe`` raised ``error``: is it the closed loop's
    RuntimeError (its tasks can never run again: forget them), rather than a
    failure the loop outlives (MemoryError, or a RuntimeError from an open
    loop, say a custom one's: its waiters wait on)?"""
    return isinstance(error, RuntimeError) and loop.is_closed()


def _expire(fut: asyncio.Future) -> None:
    """Timer callback (loop thread): the waiter's own timeout."""
    if not fut.done():
        fut.set_result(False)


class Waiters:
    """The coroutines of any loops waiting for one event of one buffer
    ("an item arrived" or "room was freed"). Thread-safe; see the module
    docstring for the protocol and the ``on_active`` hook."""

    __slots__ = ("_lock", "_waiting", "_deliveries", "_on_active", "_active",
                 "_lanes", "_kind", "_armed", "__weakref__")

    def __init__(self, on_active: Callable[[bool], None] | None = None,
                 lanes: Any = None, kind: int = 0) -> None:
        # Re-entrant: a finalizer (a Frame's __del__ frees a slot and notifies)
        # may run in this thread while it holds the lock (the GC can run at any
        # allocation). Every critical section below leaves the registry
        # consistent between steps, so a nested notify is safe.
        self._lock = threading.RLock()
        # future -> its loop, oldest first: registered, not yet picked by notify
        self._waiting: OrderedDict[asyncio.Future, asyncio.AbstractEventLoop] = OrderedDict()
        # loop -> futures picked by notify whose delivery callback is scheduled
        self._deliveries: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
        self._on_active = on_active
        self._active = False  # what on_active was last told
        # The fast lane (module docstring): the buffer's AioLanes or None, our
        # direction in it, and the future whose ticket is armed (None: none).
        self._lanes = lanes
        self._kind = kind
        self._armed: asyncio.Future | None = None
        _all_waiters.add(self)

    def __len__(self) -> int:
        """Registered waiters (not counting woken ones on their way). Syncs
        the fast lane, so ``_deliveries`` is up to date afterwards (tests)."""
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            self._lock.acquire()
            self._sync_locked()
            self._arm_locked()
            return len(self._waiting)
        finally:
            try:
                self._lock.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    @property
    def active(self) -> bool:
        """What on_active was last told: True while anyone waits, and at most
        until the next notify after the last one was woken."""
        return self._active

    # -- the fast lane (lock held) ---------------------------------------------

    def _sync_locked(self) -> None:
        """Disarm the lane; if a producer took the ticket meanwhile, record
        what it did: the armed (oldest) waiter was picked, its loop rung."""
        fut = self._armed
        if fut is None:
            return
        self._armed = None
        lanes, kind = self._lanes, self._kind
        if lanes.disarm(kind) is not None:
            return  # not taken: the state is as it was
        loop = self._waiting.pop(fut)
        if lanes.claim(kind) is fut:  # its callback has not run: it will deliver our batch
            self._deliveries[loop] = [fut]
        # else: the callback already claimed and resolved (or passed on) fut

    def _arm_locked(self) -> None:
        """After a sync: arm the lane when notify(1)'s fast path would apply."""
        waiting = self._waiting
        if self._lanes is None or not waiting or self._deliveries:
            return
        fut, loop = next(iter(waiting.items()))
        self._lanes.arm(self._kind, loop.call_soon_threadsafe, self, fut)
        self._armed = fut

    def _lane_failed(self, fut: asyncio.Future) -> None:
        """A producer took ``fut``'s ticket but could not ring its loop
        (closed meanwhile, or an error): the wake-up goes to another waiter.
        (The future is still unclaimed: the sync records its delivery.)"""
        loop = fut.get_loop()
        if loop.is_closed():  # as notify does for a closed loop
            n = self._drop_loop(loop)
        else:
            n = self._requeue(loop)
        if n:
            self.notify(n)

    def _requeue(self, loop: asyncio.AbstractEventLoop) -> int:
        """The waiters picked for ``loop`` were not rung (an error, the loop
        still open): they wait on, oldest first, at the head. Their count."""
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            self._lock.acquire()
            self._sync_locked()
            batch = self._deliveries.pop(loop, [])
            self._requeue_locked(batch, loop)
            self._arm_locked()
            return len(batch)
        finally:
            try:
                self._lock.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def _requeue_locked(self, batch: list[asyncio.Future], loop: asyncio.AbstractEventLoop) -> None:
        """Put picked, still pending waiters back at the head, in their order.
        (A loop in its own function: bufmgr/_pyqueue.py's docstring.)"""
        waiting = self._waiting
        for fut in reversed(batch):
            if not fut.done():
                waiting[fut] = loop
                waiting.move_to_end(fut, last=False)

    # -- registry (any thread) ------------------------------------------------

    def _register(self, fut: asyncio.Future, loop: asyncio.AbstractEventLoop) -> None:
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            self._lock.acquire()
            self._sync_locked()
            waiting = self._waiting
            waiting[fut] = loop
            if not self._active:
                self._active = True
                if self._on_active is not None:
                    self._on_active(True)
            self._arm_locked()
        finally:
            try:
                self._lock.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def _unregister(self, fut: asyncio.Future) -> bool:
        """Remove a registered future; False if notify had picked it already."""
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            self._lock.acquire()
            self._sync_locked()
            waiting = self._waiting
            if waiting.pop(fut, None) is None:
                self._arm_locked()
                return False
            if not waiting and self._active:
                self._active = False
                if self._on_active is not None:
                    self._on_active(False)
            self._arm_locked()
            return True
        finally:
            try:
                self._lock.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters (oldest first, any loops). Any thread;
        never blocks on a loop, never raises for a closed one."""
        if n == 1:
            # Fast path, the usual wake-up: one waiter, no delivery in flight.
            # Every instruction here is on the put -> resume latency. The loop
            # is rung after the lock is released: call_soon_threadsafe's
            # self-pipe write releases the GIL, and the woken loop thread's
            # _deliver takes this lock, so it must not find it held. (No
            # change in the measured latency; the compiled buffers' usual
            # wake-up does not come here at all: the fast lane.)
            loop = None
            try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
                self._lock.acquire()
                self._sync_locked()
                waiting, deliveries = self._waiting, self._deliveries
                if waiting and not deliveries:
                    fut, loop = waiting.popitem(last=False)
                    deliveries[loop] = [fut]
            finally:
                try:
                    self._lock.release()
                except RuntimeError:  # acquire() was interrupted before it took the lock
                    pass
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(self._deliver, loop)
                    return
                except BaseException as e:
                    if not _closed_loop_refused(loop, e):  # MemoryError...: it waits
                        self._requeue(loop)  # on, for the next event (else picked
                        raise  # for a delivery never scheduled)
                    n = self._drop_loop(loop)  # closed meanwhile: its wake-up goes to others
                    if n == 0:
                        return
        error: BaseException | None = None
        while n > 0:
            schedule: list[asyncio.AbstractEventLoop] = []
            try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
                self._lock.acquire()
                self._sync_locked()
                waiting, deliveries = self._waiting, self._deliveries
                if deliveries:
                    n += self._reclaim_closed_locked()
                if not waiting:
                    # Nobody to wake: clear the flag that sent the caller here.
                    # (Picking the last waiter below leaves it set, so that
                    # the hook is not on the wake-up's critical path; the
                    # next event clears it: one spare call per burst.)
                    if self._active:
                        self._active = False
                        if self._on_active is not None:
                            self._on_active(False)
                    break  # (nobody waits: nothing to arm)
                self._pick_locked(n, schedule)
                self._arm_locked()
            finally:
                try:
                    self._lock.release()
                except RuntimeError:  # acquire() was interrupted before it took the lock
                    pass
            n = 0
            for loop in schedule:  # outside the lock: it writes the loop's self-pipe
                try:
                    loop.call_soon_threadsafe(self._deliver, loop)
                except BaseException as e:
                    if _closed_loop_refused(loop, e):  # its tasks can never run again
                        n += self._drop_loop(loop)
                    else:  # as above; the other loops are rung first
                        self._requeue(loop)
                        if error is None:
                            error = e
            # n > 0: wake-ups meant for a closed loop, give them to others
        if error is not None:
            raise error

    def _pick_locked(self, n: int, schedule: list[asyncio.AbstractEventLoop]) -> None:
        """notify's loop (lock held): pick up to ``n`` waiters, oldest first;
        loops that need a delivery scheduled go into ``schedule``. (No loop
        is written directly in a critical section: bufmgr/_pyqueue.py's
        docstring.)"""
        waiting, deliveries = self._waiting, self._deliveries
        while n > 0 and waiting:
            fut, loop = waiting.popitem(last=False)
            batch = deliveries.get(loop)
            if batch is None:
                deliveries[loop] = [fut]
                schedule.append(loop)
            else:  # a delivery is on its way to that loop: ride along
                batch.append(fut)
            n -= 1

    def _forget_locked(self, closed: Callable[[asyncio.AbstractEventLoop], bool]) -> None:
        """Drop the registered waiters whose loop ``closed()`` says is gone (lock held)."""
        waiting = self._waiting
        for fut in [f for f, lp in waiting.items() if closed(lp)]:
            del waiting[fut]

    def notify_all(self) -> None:
        """Wake every registered waiter (shutdown)."""
        self.notify(ALL)

    def prune(self) -> int:
        """For a watcher's idle moments (any thread): forget the waiters of
        closed loops and deliveries to them, and clear the active flag when
        nobody is registered (the flag notify leaves set after picking the
        last waiter). Returns how many waiters are registered."""
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            self._lock.acquire()
            self._sync_locked()
            waiting = self._waiting
            self._forget_locked(lambda lp: lp.is_closed())
            if self._deliveries:
                self._reclaim_closed_locked()
            if not waiting and self._active:
                self._active = False
                if self._on_active is not None:
                    self._on_active(False)
            self._arm_locked()
            return len(waiting)
        finally:
            try:
                self._lock.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass

    def _drop_loop(self, loop: asyncio.AbstractEventLoop) -> int:
        """Forget every future of a closed loop; return how many wake-ups
        had been picked for it (to give to others)."""
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            self._lock.acquire()
            self._sync_locked()
            n = len(self._deliveries.pop(loop, ()))
            self._forget_locked(lambda lp: lp is loop)
            self._arm_locked()
        finally:
            try:
                self._lock.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        return n

    def _reclaim_closed_locked(self) -> int:
        """Drop deliveries to loops closed before running them; return their count."""
        n = 0
        for loop in [lp for lp in self._deliveries if lp.is_closed()]:
            n += len(self._deliveries.pop(loop))
        return n

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        """In ``loop``'s thread: resolve the futures picked for it."""
        try:  # acquire inside try, not `with` (bufmgr/_pyqueue.py's docstring)
            self._lock.acquire()
            self._sync_locked()
            batch = self._deliveries.pop(loop, None)
            self._arm_locked()  # the next waiter's ticket, if it is its turn now
        finally:
            try:
                self._lock.release()
            except RuntimeError:  # acquire() was interrupted before it took the lock
                pass
        if not batch:
            return
        unused = 0
        error: BaseException | None = None
        for fut in batch:
            if fut.done():  # cancelled or timed out meanwhile: not its wake-up any more
                unused += 1
            elif error is None:
                try:
                    _wake(fut)  # resumes its task here (bufmgr/_aiowake.py)
                except BaseException as e:
                    # A resumed task raised out of its step (KeyboardInterrupt,
                    # SystemExit: asyncio re-raises those): the rest are woken
                    # as asyncio would, then it propagates as from any callback.
                    error = e
            else:
                fut.set_result(True)
        if unused:
            self.notify(unused)
        if error is not None:
            try:
                raise error
            finally:
                error = None  # no cycle through this frame's traceback

    def _abandon(self, fut: asyncio.Future) -> None:
        """The waiter of ``fut`` stops waiting (loop thread) and will not try
        again: make sure a wake-up picked for it reaches someone else."""
        if self._unregister(fut):
            return  # never picked
        if fut.done():
            if not fut.cancelled() and fut.result() is True:
                self.notify(1)  # delivered, unused: pass it on
            # else: cancelled/timed out before delivery, which passes it on
        elif not fut.get_loop().is_closed():
            fut.cancel()  # picked, delivery pending: it will see done and pass on

    def _reset_after_fork(self) -> None:
        # Only the forking thread exists in the child; the parent's loops and
        # waiters do not run here.
        self._lock = threading.RLock()
        if self._lanes is not None:
            self._armed = None
            self._lanes.disarm(self._kind)
            self._lanes.claim(self._kind)
        self._waiting.clear()
        self._deliveries.clear()
        if self._active:
            self._active = False
            if self._on_active is not None:
                self._on_active(False)

    # -- waiting (a coroutine) ------------------------------------------------

    async def wait(self, attempt: Callable[[], Any], blocked: type[BaseException],
                   seconds: float | None) -> Any:
        """Return ``attempt()`` once it stops raising ``blocked``; after
        ``seconds`` (None: forever) one last try, whose ``blocked`` propagates.
        The caller already tried once (step 1 of the module docstring)."""
        try:
            loop = (_get_running_loop or _load_asyncio())()
        except RuntimeError:  # no asyncio loop runs here: a trio task? (free in 3.11+)
            if not _in_trio():
                raise  # asyncio's "no running event loop"
        else:
            deadline = None if seconds is None else loop.time() + seconds
            while True:
                fut = loop.create_future()
                self._register(fut, loop)
                try:
                    result = attempt()  # second try: closes the lost-wake-up race
                except blocked:
                    pass
                except BaseException:
                    self._abandon(fut)
                    raise
                else:
                    self._abandon(fut)
                    return result
                timer = None if deadline is None else loop.call_at(deadline, _expire, fut)
                try:
                    await fut
                except BaseException:  # CancelledError, GeneratorExit (coroutine closed)
                    self._abandon(fut)
                    raise
                finally:
                    if timer is not None:
                        timer.cancel()
                if fut.result() is not True:  # our own timeout
                    self._abandon(fut)
                    return attempt()  # last try: raises `blocked` if still nothing
                # Woken (notify unregistered us): try again, and register anew
                # only if someone else was faster.
                try:
                    return attempt()
                except blocked:
                    pass
        # Inside trio (awaited outside the except clause: what it raises must
        # not chain to the RuntimeError).
        from . import _aiotrio

        return await _aiotrio.wait(self, attempt, blocked, seconds)


class BufferWaiters:
    """The two registries of one buffer. ``buffer._aio_set_active(kind, active)``
    mirrors whether each is non-empty (a weak reference: no cycle)."""

    __slots__ = ("getters", "putters")

    def __init__(self, buffer: Any, lanes: Any = None) -> None:
        self.getters = Waiters(_active_hook(buffer, GETTERS), lanes, GETTERS)
        self.putters = Waiters(_active_hook(buffer, PUTTERS), lanes, PUTTERS)


def _active_hook(buffer: Any, kind: int) -> Callable[[bool], None]:
    ref = weakref.ref(buffer)

    def on_active(active: bool) -> None:
        b = ref()
        if b is not None:
            b._aio_set_active(kind, active)

    return on_active


_all_waiters: weakref.WeakSet[Waiters] = weakref.WeakSet()


def _after_fork_child() -> None:
    while True:
        try:
            every = list(_all_waiters)
            break
        except RuntimeError:  # pragma: no cover - changed size while copied
            continue
    for w in every:
        w._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


# -- the coroutines behind the buffers' async_* methods ------------------------


def _seconds(timeout: object) -> float | None:
    return None if timeout is None else check_timeout(timeout)


# get, put and __anext__ make their first try inline: it is the whole cost
# when the buffer is ready, and a helper coroutine would add a frame to
# every such call (measured: a generic first try cost 20-25% of asyncio
# throughput). get_many and get_latest build their attempt anyway.


async def get(buffer: Any, timeout: float | None = None) -> Any:
    """``await buffer.async_get(timeout)``: get() without blocking the loop."""
    seconds = _seconds(timeout)
    try:
        return buffer.get_nowait()
    except Empty:
        if seconds == 0.0:
            raise
    return await buffer._aio_waiters().getters.wait(buffer.get_nowait, Empty, seconds)


async def _get_with(buffer: Any, attempt: Callable[[], Any], timeout: object) -> Any:
    """``attempt()`` (a non-blocking get of ``buffer``), waiting for an item
    while it raises Empty; ``timeout`` as for get()."""
    seconds = _seconds(timeout)
    try:
        return attempt()
    except Empty:
        if seconds == 0.0:
            raise
    return await buffer._aio_waiters().getters.wait(attempt, Empty, seconds)


async def get_many(buffer: Any, max_items: int, timeout: float | None = None) -> list[Any]:
    """``await queue.async_get_many(max_items, timeout)``."""
    n = check_max_items(max_items)
    result: list[Any] = await _get_with(buffer, partial(buffer.get_many, n, False), timeout)
    return result


def get_latest(buffer: Any, timeout: float | None = None) -> Coroutine[Any, Any, Any]:
    """``await buffer.async_get_latest(timeout)``: the newest item, older ones dropped."""
    return _get_with(buffer, partial(buffer.get_latest, False), timeout)


async def put(buffer: Any, item: Any, timeout: float | None = None, **kwargs: Any) -> Any:
    """``await buffer.async_put(item, timeout)``: put() without blocking the loop;
    returns what put() returns. Only the "block" policy ever waits. ``kwargs``
    (SharedFrameRing's timestamp_ns/metadata) go to every put_nowait try."""
    seconds = _seconds(timeout)
    try:
        return buffer.put_nowait(item, **kwargs)
    except Full:
        if seconds == 0.0:
            raise
    return await buffer._aio_waiters().putters.wait(partial(buffer.put_nowait, item, **kwargs),
                                                    Full, seconds)


class AsyncIterator:
    """``async for item in buffer``: async_get() until the buffer is shut down
    and drained, then StopAsyncIteration (never ShutDown)."""

    __slots__ = ("_buffer",)

    def __init__(self, buffer: Any) -> None:
        self._buffer = buffer

    def __aiter__(self) -> AsyncIterator:
        return self

    async def __anext__(self) -> Any:
        buffer = self._buffer
        try:
            try:
                return buffer.get_nowait()
            except Empty:
                pass
            return await buffer._aio_waiters().getters.wait(buffer.get_nowait, Empty, None)
        except ShutDown:
            raise StopAsyncIteration from None
