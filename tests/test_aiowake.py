"""The direct wake-up (bufmgr/_aiowake.py): a delivery callback resumes the
woken waiter's task in place, one loop iteration sooner than set_result.

Pinned here, for both implementations where a buffer is involved:
* the task resumes inside the delivery callback (before a handle queued
  right after it), in its own context;
* never inside another task's step, never with other callbacks waiting,
  never twice; those cases get asyncio's own scheduling;
* a task that raises out of its step (KeyboardInterrupt) does not cost the
  other waiters of the same delivery their wake-ups.
The cancellation hand-overs with the wake-up scheduled are in
tests/test_asyncio.py (test_a_wake_up_for_a_cancelled_waiter_goes_to_the_next).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from bufmgr import _aio
from bufmgr._aiowake import wake
from test_asyncio import DEADLINE_S, assert_idle, getters, run, until

pytestmark = pytest.mark.filterwarnings("error")

where = contextvars.ContextVar("where", default="unset")


def test_the_woken_task_resumes_inside_the_delivery_callback(FrameQueue):
    """A put queues the waiter's delivery; a marker handle queued right
    after it must find the waiter already resumed, in its own context. With
    set_result the task's step would run after the marker (one iteration
    later), and without the task's context the waiter would see "unset"."""
    q = FrameQueue()
    order = []

    async def waiter():
        where.set("waiter")
        item = await q.async_get()
        order.append(("resumed", item, where.get()))

    async def main():
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(waiter())
        await until(lambda: len(getters(q)) == 1)
        q.put("x")  # rings this loop: the delivery handle is queued now
        loop.call_soon(order.append, ("marker",))
        await finished(task)
        assert order == [("resumed", "x", "waiter"), ("marker",)]
        assert_idle(q)

    run(main())


def test_a_put_from_a_thread_resumes_the_task_in_the_delivery(FrameQueue):
    """The same from another thread (the compiled queue's fast lane, the
    pure twin's notify): the loop runs the delivery, the task resumes in it."""
    q = FrameQueue()
    resumed_in = []

    async def main():
        loop = asyncio.get_running_loop()
        real = _aio._wake

        def spy(fut, result=True):
            resumed_in.append("delivery")
            real(fut, result)
            resumed_in.append("after")

        _aio._wake = spy
        try:
            async def waiter():
                item = await q.async_get()
                resumed_in.append(item)

            task = asyncio.ensure_future(waiter())
            await until(lambda: len(getters(q)) == 1)
            t = threading.Thread(target=q.put, args=("y",))
            t.start()
            await finished(task)
            t.join(DEADLINE_S)
            assert not t.is_alive()
        finally:
            _aio._wake = real
        assert loop.is_running()
        assert resumed_in == ["delivery", "y", "after"]

    _aio._load_asyncio()
    run(main())


async def finished(task):
    """Wait for ``task`` within the liveness bound; fail, never hang (unlike
    wait_for, which waits for a task that can never run again to cancel)."""
    done, _ = await asyncio.wait({task}, timeout=DEADLINE_S)
    if task not in done:
        pytest.fail(f"liveness: {task} not finished within {DEADLINE_S} s")
    return task.result()


def _waiting_task(loop):
    """A task awaiting a fresh future of ``loop``; returns (task, fut, log)."""
    fut = loop.create_future()
    log = []

    async def wait():
        log.append(("result", await fut, asyncio.current_task() is task))

    task = loop.create_task(wait())
    return task, fut, log


def test_wake_inside_a_running_task_schedules_the_step():
    """Called from a coroutine (a task is running), wake() must not step
    another task inside it (asyncio would raise "Cannot enter into task"):
    the woken task resumes after the caller yields."""
    async def main():
        loop = asyncio.get_running_loop()
        task, fut, log = _waiting_task(loop)
        await asyncio.sleep(0)  # the task now awaits fut
        wake(fut, 7)
        assert fut.done() and log == []  # resolved, not resumed yet
        await finished(task)
        assert log == [("result", 7, True)]

    run(main())


def test_wake_from_a_callback_steps_the_task_in_place():
    async def main():
        loop = asyncio.get_running_loop()
        task, fut, log = _waiting_task(loop)
        await asyncio.sleep(0)
        seen = []

        def delivery():
            wake(fut, 8)
            seen.append(list(log))  # the task ran inside wake()

        loop.call_soon(delivery)
        await finished(task)
        assert seen == [[("result", 8, True)]]

    run(main())


def test_wake_from_a_callback_in_the_tasks_own_context_schedules_the_step():
    """A context cannot be entered twice: a delivery run in the waiting
    task's own context leaves the step to the loop (no RuntimeError, no
    waiter left hanging)."""
    async def main():
        loop = asyncio.get_running_loop()
        task, fut, log = _waiting_task(loop)
        await asyncio.sleep(0)
        (_, task_context), = fut._callbacks
        seen = []

        def delivery():
            wake(fut, 11)
            seen.append(list(log))

        loop.call_soon(delivery, context=task_context)
        await finished(task)
        assert seen == [[]] and log == [("result", 11, True)]

    run(main())


def test_wake_with_other_callbacks_leaves_them_to_the_loop():
    """A future with more than the task's wake-up: plain set_result, every
    callback (the task's too) runs once, from the loop, in order."""
    async def main():
        loop = asyncio.get_running_loop()
        task, fut, log = _waiting_task(loop)
        await asyncio.sleep(0)
        calls = []
        fut.add_done_callback(lambda f: calls.append(("cb", list(log))))
        seen = []

        def delivery():
            wake(fut, 9)
            seen.append((list(log), list(calls)))

        loop.call_soon(delivery)
        await finished(task)
        await asyncio.sleep(0)
        assert seen == [([], [])]  # nothing ran inside wake()
        assert log == [("result", 9, True)]
        assert calls == [("cb", [("result", 9, True)])]  # the task's step first, as added

    run(main())


def test_wake_with_a_non_task_callback_only_resolves():
    """A lone callback that is not a task's wake-up is left to the loop too."""
    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        calls = []
        fut.add_done_callback(lambda f: calls.append(f.result()))
        seen = []

        def delivery():
            wake(fut, 10)
            seen.append(list(calls))

        loop.call_soon(delivery)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert seen == [[]] and calls == [10]

    run(main())


def test_a_task_raising_out_of_its_step_does_not_cost_the_others_their_wake_ups(FrameQueue):
    """Two waiters woken by one delivery (the second rides along). The first
    raises KeyboardInterrupt, which asyncio re-raises out of the task's step
    and so out of the delivery callback and run_until_complete: the second
    must be woken anyway and get the second item."""
    q = FrameQueue()
    loop = asyncio.new_event_loop()
    errors = []
    loop.set_exception_handler(lambda loop, ctx: errors.append(ctx))
    got = []

    async def first():
        got.append(("first", await q.async_get()))
        raise KeyboardInterrupt  # asyncio re-raises it out of the step

    async def second():
        got.append(("second", await q.async_get()))

    async def start():
        t1 = asyncio.ensure_future(first())
        await until(lambda: len(getters(q)) == 1)
        t2 = asyncio.ensure_future(second())
        await until(lambda: len(getters(q)) == 2)
        return t1, t2

    try:
        t1, t2 = loop.run_until_complete(start())
        q.put("a")  # rings the loop (not running now) for the oldest ...
        q.put("b")  # ... and the second rides along on the same delivery
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(asyncio.wait_for(t2, DEADLINE_S))
        loop.run_until_complete(asyncio.wait_for(t2, DEADLINE_S))
        assert sorted(got) == [("first", "a"), ("second", "b")]
        assert t1.done() and isinstance(t1.exception(), KeyboardInterrupt)
        assert q.stats()["gets"] == 2
        loop.run_until_complete(_idle(q))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert not errors, errors


async def _idle(q):
    assert_idle(q)
