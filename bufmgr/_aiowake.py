"""Resuming a woken waiter's task in the delivery callback itself, one loop
iteration sooner than ``set_result`` would.

Why: a wake-up through a plain ``asyncio.Future`` costs two loop iterations.
The thread's ``call_soon_threadsafe`` makes the loop run the delivery
callback, whose ``set_result`` only *schedules* the task's wake-up
(``call_soon``), which runs in the next iteration, after another trip
through the selector. On the benchmark machine that iteration is a fifth of
the put -> resume latency (bufmgr/cli/aiobench.py's wake rows: 1.09x the bare
``call_soon_threadsafe`` hop with it, 0.77x without).

How (``wake``): the delivery callbacks (``Waiters._deliver`` and the fast
lane's ``_lane_deliver``) run in the loop's thread as plain handles. There,
if the future's only done-callback is the awaiting task's wake-up (what a
task adds when its coroutine yields the future), ``wake`` takes that
callback off, resolves the future, and runs it at once, in the task's own
context: exactly the call the loop would have made one iteration later.
Anything else -- a task running (``current_task(loop)``: steps never nest),
other callbacks, an event loop whose futures keep no ``_callbacks`` -- gets
a plain ``set_result``. The future stays an exact ``asyncio.Future``, so
tasks keep their C fast path for awaiting it (a subclass overriding
``add_done_callback`` was the other design: every task awaiting it falls
back to the generic future protocol).

Visible differences, both harmless: the resumed step runs inside the
delivery handle, so in debug mode a slow step is reported against that
handle; and it runs before handles that became ready after the delivery
was queued, as it would have had the loop run it a step earlier.

Imported by bufmgr/_aio.py on first wait (asyncio takes longer to import
than bufmgr).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["wake"]

_current_task = asyncio.current_task
_Task = asyncio.Task


def wake(fut: asyncio.Future[Any], result: object = True) -> None:
    """Resolve the pending ``fut``; resume its task now where that is safe
    (see the module docstring). Only from a callback run by fut's loop."""
    if _current_task(fut.get_loop()) is None:
        try:
            callbacks = fut._callbacks
        except AttributeError:  # pragma: no cover - not asyncio's Future
            callbacks = None
        if callbacks and len(callbacks) == 1:
            fn, context = callbacks[0]
            if isinstance(getattr(fn, "__self__", None), _Task) and fut.remove_done_callback(fn) == 1:
                fut.set_result(result)
                try:
                    context.run(fn, fut)  # the task's step; it handles its own errors
                except RuntimeError:  # its context is the one this callback runs in:
                    fut.get_loop().call_soon(fn, fut, context=context)  # not entered twice
                return
    fut.set_result(result)
