"""Awaiting bufmgr buffers from trio (and so from anyio's trio backend).

bufmgr/_aio.py's registry (``Waiters``) was written for asyncio: a waiter is
a future of a loop, and a notifier in any thread rings the loop with
``loop.call_soon_threadsafe``. Nothing in it needs more of a loop than that
and ``is_closed()``, nor more of a future than ``get_loop``, ``done``,
``cancelled``, ``result``, ``set_result`` and ``cancel``. So a trio task
waits in the same registry, behind two small adapters, and everything the
registry guarantees (FIFO across loops, one wake-up per loop per burst, the
compiled fast lane, a wake-up picked for a waiter that stopped waiting
passed on, a finished run's waiters forgotten) holds for trio unchanged:

* ``TrioLoop``: one per trio run (kept in a ``RunVar``, so the registry's
  per-loop batching sees one key per run). ``call_soon_threadsafe`` is the
  run's ``TrioToken.run_sync_soon``; once the run has finished that raises
  ``RunFinishedError``, which the adapter turns into the closed loop's
  RuntimeError (``is_closed()`` True from then on), so the registry's
  closed-loop handling applies as is. (A trio run cannot end with a task
  still waiting, and it runs every callback queued before it finished, so
  that refusal is the only way a run's end shows.)
* ``TrioFuture``: the waiting task and a state. Only ever resolved in the
  run's thread -- the registry's delivery callbacks (``Waiters._deliver``,
  the fast lane's ``_lane_deliver``) arrive through ``run_sync_soon`` --
  where ``set_result`` reschedules the task. bufmgr/_aiowake.py's in-place
  resume is asyncio's; for a TrioFuture it falls back to ``set_result``
  (``_callbacks = None``), and trio resumes the task in its next batch.

``wait`` is ``Waiters.wait``'s loop with trio's primitives: register, try
again, block in ``wait_task_rescheduled`` (inside ``move_on_at`` for a
timeout), and on a wake-up try again. Cancellation: trio calls the abort
function in the run's thread while the task is blocked; it marks the future
cancelled BEFORE it lets trio resume the task with Cancelled, so a delivery
already queued finds it done and passes the wake-up on (it never reschedules
a task that is not blocked, which trio forbids). Then, as with asyncio, the
task abandons its registration (``Waiters._abandon``): nothing is lost.

Imported by bufmgr/_aio.py only when a wait finds no running asyncio loop
and trio is already imported (never imports trio otherwise).

Like asyncio's, a call that need not wait returns without yielding to the
scheduler (it is not a trio checkpoint); only a call that waits is one.
Not supported: trio's guest mode on top of an asyncio loop (the wait finds
the host's running asyncio loop first, and trio refuses the asyncio future
with a TypeError; the registration is abandoned, nothing is left behind).
"""

from __future__ import annotations

import math
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable

import outcome
import trio
from trio.lowlevel import (Abort, RunVar, Task, current_task, current_trio_token, reschedule,
                           wait_task_rescheduled)

if TYPE_CHECKING:
    from ._aio import Waiters

__all__ = ["TrioLoop", "TrioFuture", "wait"]

_PENDING, _DONE, _CANCELLED = 0, 1, 2


def _guarded(fn: Callable[..., object], *args: Any) -> None:
    """A bufmgr callback in the run's thread. trio treats an exception escaping
    a run_sync_soon callback as its own bug and kills the run; the registry's
    callbacks raise only what asyncio would log from a callback (an error
    ringing another loop, say a MemoryError): report it the same way."""
    try:
        fn(*args)
    except Exception as e:  # KeyboardInterrupt & co. go to trio, as asyncio re-raises them
        hook = sys.unraisablehook
        hook(_Unraisable(e, f"bufmgr wake-up callback {fn!r} in a trio run"))


class _Unraisable:
    """What ``sys.unraisablehook`` expects (its argument's attributes)."""

    __slots__ = ("exc_type", "exc_value", "exc_traceback", "err_msg", "object")

    exc_type: type[BaseException]
    exc_value: BaseException | None
    exc_traceback: TracebackType | None
    err_msg: str | None
    object: object

    def __init__(self, e: BaseException, msg: str) -> None:
        self.exc_type = type(e)
        self.exc_value = e
        self.exc_traceback = e.__traceback__
        self.err_msg = msg
        self.object = None


class TrioLoop:
    """The face of one trio run that the registry uses as a loop."""

    __slots__ = ("_token", "_closed", "__weakref__")

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self._closed = False

    def call_soon_threadsafe(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` in the run's thread soon (any thread); the closed
        loop's RuntimeError once the run has finished."""
        if self._closed:
            raise RuntimeError("the trio run has finished")
        try:
            self._token.run_sync_soon(_guarded, fn, *args)
        except trio.RunFinishedError:
            self._closed = True
            raise RuntimeError("the trio run has finished") from None

    def is_closed(self) -> bool:
        return self._closed

    def is_running(self) -> bool:
        """As asyncio's (tests/test_asyncio.py's assert_idle asks): not finished."""
        return not self._closed

    def __repr__(self) -> str:
        return f"<bufmgr TrioLoop {'finished' if self._closed else 'running'} at {id(self):#x}>"


_LOOP: RunVar[TrioLoop] = RunVar("bufmgr_trio_loop")


def current_loop() -> TrioLoop:
    """This run's adapter (made on first use: one per run)."""
    try:
        return _LOOP.get()
    except LookupError:
        loop = TrioLoop(current_trio_token())
        _LOOP.set(loop)
        return loop


class TrioFuture:
    """One registration of a waiting trio task: the part of asyncio.Future's
    API the registry uses. Resolved only in the run's thread."""

    __slots__ = ("_loop", "_task", "_state", "_result")

    #: bufmgr/_aiowake.py's wake reads ``fut._callbacks`` to resume an asyncio
    #: task in place; None sends it to plain ``set_result`` (trio reschedules).
    _callbacks = None

    def __init__(self, loop: TrioLoop, task: Task) -> None:
        self._loop = loop
        self._task = task
        self._state = _PENDING
        self._result: object = None

    def get_loop(self) -> TrioLoop:
        return self._loop

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> object:
        if self._state == _CANCELLED:  # (the registry asks cancelled() first)
            raise RuntimeError("the wait was cancelled: no result")
        return self._result

    def set_result(self, value: object) -> None:
        """The wake-up (run's thread, from a delivery callback): resume the task."""
        if self._state == _PENDING:  # the registry checks done() first; never twice
            self._state = _DONE
            self._result = value
            reschedule(self._task, outcome.Value(value))

    def cancel(self) -> bool:
        """The task stopped waiting (it is running: nothing to reschedule);
        a delivery on its way finds it done and passes the wake-up on."""
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        return True

    def _abort(self, raise_cancel: Any) -> Abort:
        # trio cancels the blocked task (run's thread): mark the future done
        # FIRST, so that a delivery already queued passes the wake-up on
        # instead of rescheduling a task that is no longer blocked.
        self._state = _CANCELLED
        return Abort.SUCCEEDED

    def __repr__(self) -> str:
        state = ("pending", "done", "cancelled")[self._state]
        return f"<bufmgr TrioFuture {state} task={self._task.name!r}>"


async def wait(registry: Waiters, attempt: Callable[[], Any], blocked: type[BaseException],
               seconds: float | None) -> Any:
    """``Waiters.wait`` for a trio task: return ``attempt()`` once it stops
    raising ``blocked``; after ``seconds`` (None: forever) one last try, whose
    ``blocked`` propagates. The caller already tried once."""
    loop = current_loop()
    task = current_task()
    deadline = math.inf if seconds is None else trio.current_time() + seconds
    while True:
        fut = TrioFuture(loop, task)
        registry._register(fut, loop)  # type: ignore[arg-type]
        try:
            result = attempt()  # second try: closes the lost-wake-up race
        except blocked:
            pass
        except BaseException:
            registry._abandon(fut)  # type: ignore[arg-type]
            raise
        else:
            registry._abandon(fut)  # type: ignore[arg-type]
            return result
        try:
            if deadline == math.inf:
                await wait_task_rescheduled(fut._abort)
                timed_out = False
            else:
                with trio.move_on_at(deadline) as scope:
                    await wait_task_rescheduled(fut._abort)
                timed_out = scope.cancelled_caught
        except BaseException:  # Cancelled, KeyboardInterrupt, GeneratorExit
            registry._abandon(fut)  # type: ignore[arg-type]
            raise
        if timed_out:
            registry._abandon(fut)  # type: ignore[arg-type]
            return attempt()  # last try: raises `blocked` if still nothing
        # Woken (notify unregistered us): try again, and register anew only
        # if someone else was faster.
        try:
            return attempt()
        except blocked:
            pass
