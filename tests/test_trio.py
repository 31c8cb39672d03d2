"""trio (and anyio's trio backend) on FrameQueue, FrameRing and SharedFrameRing (issue 15).

A trio task waits in the same registry as asyncio coroutines (bufmgr/_aio.py),
through bufmgr/_aiotrio.py's adapters; both implementations (compiled with its
fast lane, and the pure twin) through the usual fixtures. Pinned here:

* async_get / async_get_many / async_get_latest wait for a thread's put,
  async_put for room; Empty/Full on timeout (0: at once; > 0: not before it);
* a waiter cancelled by a cancel scope never takes an item with it: the item
  goes to the next waiter (deterministic cases, then a cancellation storm
  with thread producers and several trio consumers, every id exactly once);
* shutdown wakes trio waiters with ShutDown; ``async for`` ends cleanly;
* trio waiters and asyncio waiters (another thread's loop) on one queue;
* a run that ends leaves nothing registered; a finished run's registration
  is dropped without an error, its wake-up given to another loop's waiter;
* anyio.run with backend="trio" and "asyncio";
* importing bufmgr (or waiting in asyncio) never imports trio.

Skipped as a whole when trio is not installed. Liveness: trio.fail_after
and bounded joins; no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import subprocess
import sys
import threading

import pytest

trio = pytest.importorskip("trio")

from bufmgr._errors import Empty, Full, ShutDown  # noqa: E402
from framering_fixtures import FrameRing, is_pure  # noqa: E402,F401 - fixture
from shm_helpers import needs_shm  # noqa: E402
from test_asyncio import (assert_idle, getters, putters, python_notify_calls,  # noqa: E402,F401 - fixture
                          wait_until)

DEADLINE_S = 60.0  # liveness bound, never a timing assertion

pytestmark = pytest.mark.filterwarnings("error")


def run(fn, *args):
    """trio.run(fn) with a liveness deadline."""
    async def main():
        with trio.fail_after(DEADLINE_S):
            return await fn(*args)
    return trio.run(main)


async def until(predicate, what="condition"):
    """From a trio task: yield until predicate()."""
    with trio.fail_after(DEADLINE_S):
        while not predicate():
            await trio.sleep(0.001)


# ---------------------------------------------------------------------------
# semantics


def test_async_get_waits_for_a_thread_put(FrameQueue, live):
    q = FrameQueue()

    async def main():
        t = live.start(lambda: (wait_until(lambda: len(getters(q)) == 1), q.put("a")))
        assert await q.async_get() == "a"
        t.value()
        t = live.start(lambda: (wait_until(lambda: len(getters(q)) == 1), q.put_many([1, 2, 3])))
        assert await q.async_get_many(2) == [1, 2]
        t.value()
        assert await q.async_get() == 3
        t = live.start(lambda: (wait_until(lambda: len(getters(q)) == 1), q.put_many([4, 5])))
        assert await q.async_get_latest() in (4, 5)  # 5, or 4 if woken between the two puts
        t.value()

    run(main)
    s = q.stats()
    assert s["puts"] == s["gets"] + s["dropped"] + s["size"]
    assert_idle(q)


def test_async_put_waits_for_room(FrameQueue, live):
    q = FrameQueue(1, "block")
    q.put(0)

    async def main():
        t = live.start(lambda: (wait_until(lambda: len(putters(q)) == 1), q.get()))
        assert await q.async_put(1) is None
        assert t.value()[1] == 0

    run(main)
    assert q.get_nowait() == 1
    assert_idle(q)


def test_timeouts_raise_empty_and_full(FrameQueue):
    q = FrameQueue(1, "block")

    async def main():
        with pytest.raises(Empty):
            await q.async_get(timeout=0)
        for call in (lambda: q.async_get(timeout=0.02), lambda: q.async_get_many(3, timeout=0.02),
                     lambda: q.async_get_latest(timeout=0.02)):
            start = trio.current_time()
            with pytest.raises(Empty):
                await call()
            assert trio.current_time() - start >= 0.02  # waited (its deadline), not refused
        q.put(1)
        with pytest.raises(Full):
            await q.async_put(2, timeout=0)
        start = trio.current_time()
        with pytest.raises(Full):
            await q.async_put(2, timeout=0.02)
        assert trio.current_time() - start >= 0.02

    run(main)
    assert q.get_nowait() == 1 and q.empty()
    assert_idle(q)


def test_the_error_raised_on_timeout_does_not_chain_to_the_dispatch(FrameQueue):
    q = FrameQueue()

    async def main():
        with pytest.raises(Empty) as exc:
            await q.async_get(timeout=0.01)
        assert exc.value.__context__ is None

    run(main)


def test_ring_async_get_and_put(FrameRing, live):
    ring = FrameRing(1, 8, "block")

    async def main():
        t = live.start(lambda: (wait_until(lambda: len(getters(ring)) == 1), ring.put(b"hello")))
        frame = await ring.async_get()
        t.value()
        assert bytes(frame)[:5] == b"hello"
        # the only slot is held: a put waits until the frame is released
        async with trio.open_nursery() as nursery:
            async def put():
                await ring.async_put(b"again")
            nursery.start_soon(put)
            await until(lambda: len(putters(ring)) == 1, "a putter waiting")
            frame.release()
        with await ring.async_get_latest(timeout=DEADLINE_S) as f:
            assert bytes(f)[:5] == b"again"
        with pytest.raises(Empty):
            await ring.async_get(timeout=0.01)

    run(main)
    assert_idle(ring)


def test_trio_task_to_trio_task(FrameQueue):
    q = FrameQueue(4, "block")
    n = 2000

    async def main():
        got = []

        async def produce():
            for i in range(n):
                await q.async_put(i)
            q.shutdown()

        async def consume():
            async for item in q:
                got.append(item)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume)
            nursery.start_soon(produce)
        assert got == list(range(n))

    run(main)
    assert_idle(q)


# ---------------------------------------------------------------------------
# cancellation: nothing lost


@pytest.mark.parametrize("order", ["cancel_then_put", "put_then_cancel"])
def test_a_cancelled_waiter_passes_its_item_to_the_next(FrameQueue, order):
    """Two waiters, the oldest cancelled in the same step as the put that
    picks it (before or after): the other one gets the item."""
    q = FrameQueue()

    async def main():
        results = {}

        async def waiter(name, scope):
            with scope:
                results[name] = await q.async_get()

        first, second = trio.CancelScope(), trio.CancelScope()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter, "first", first)
            await until(lambda: len(getters(q)) == 1, "first waiting")
            nursery.start_soon(waiter, "second", second)
            await until(lambda: len(getters(q)) == 2, "second waiting")
            if order == "cancel_then_put":
                first.cancel()
                q.put("x")
            else:
                q.put("x")
                first.cancel()
        assert results == {"second": "x"}
        assert first.cancelled_caught

    run(main)
    assert q.empty() and q.stats()["gets"] == 1
    assert_idle(q)


def test_a_cancelled_putter_passes_the_room_to_the_next(FrameQueue):
    q = FrameQueue(1, "block")
    q.put(0)

    async def main():
        done = []
        first = trio.CancelScope()

        async def putter(item, scope):
            with scope:
                await q.async_put(item)
                done.append(item)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(putter, 1, first)
            await until(lambda: len(putters(q)) == 1, "first waiting")
            nursery.start_soon(putter, 2, trio.CancelScope())
            await until(lambda: len(putters(q)) == 2, "second waiting")
            assert q.get_nowait() == 0  # room for one: picks the first putter...
            first.cancel()  # ... which is cancelled before it runs
        assert done == [2]

    run(main)
    assert q.get_nowait() == 2 and q.empty()
    assert_idle(q)


def test_cancellation_storm_loses_and_duplicates_nothing(FrameQueue, live):
    """Thread producers and a trio producer (all on a small "block" queue)
    -> several trio consumers, every get and the trio put inside random short
    cancel scopes (timeouts and explicit cancels): every id exactly once."""
    q = FrameQueue(4, "block")
    n_threads, per_thread, per_task = 3, 1500, 1500
    rnd = random.Random(1234)

    def produce(k):
        for i in range(per_thread):
            q.put((k, i), timeout=DEADLINE_S)

    async def main():
        got = []
        cancels = [0]

        async def trio_produce():
            i = 0
            while i < per_task:
                with trio.move_on_after(rnd.random() * 0.002):
                    await q.async_put(("t", i))
                    i += 1

        scopes = set()  # the consumers' scopes while they wait

        async def consume():
            while True:
                with trio.CancelScope() as scope:
                    scope.deadline = trio.current_time() + rnd.random() * 0.003
                    scopes.add(scope)
                    try:
                        got.append(await q.async_get())
                    except ShutDown:
                        return
                    finally:
                        scopes.discard(scope)
                if scope.cancelled_caught:
                    cancels[0] += 1

        async def canceller():  # explicit cancels too, not only deadlines
            while True:
                await trio.sleep(rnd.random() * 0.002)
                if scopes:
                    rnd.choice(sorted(scopes, key=id)).cancel()

        threads = [live.start(produce, k) for k in range(n_threads)]
        async with trio.open_nursery() as outer:
            outer.start_soon(canceller)
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(consume)

                async def producers_then_shutdown():
                    await trio_produce()
                    for t in threads:
                        await trio.to_thread.run_sync(t.thread.join, DEADLINE_S)
                        t.value()
                    q.shutdown()
                nursery.start_soon(producers_then_shutdown)
            outer.cancel_scope.cancel()
        expected = [(k, i) for k in range(n_threads) for i in range(per_thread)]
        expected += [("t", i) for i in range(per_task)]
        assert sorted(got, key=repr) == sorted(expected, key=repr)  # none lost, none twice
        assert cancels[0] > 0  # the storm did cancel waiters

    run(main)
    s = q.stats()
    assert s["puts"] == s["gets"] == n_threads * per_thread + per_task
    assert_idle(q)


# ---------------------------------------------------------------------------
# shutdown, end of a run


def test_shutdown_wakes_trio_getters_and_putters(FrameQueue, live):
    empty, full = FrameQueue(), FrameQueue(1, "block")
    full.put(0)

    async def main():
        outcomes = []

        async def get():
            try:
                await empty.async_get()
            except ShutDown:
                outcomes.append("get")

        async def put():
            try:
                await full.async_put(1)
            except ShutDown:
                outcomes.append("put")

        async def iterate():
            async for _ in empty:
                pass
            outcomes.append("for")

        t = live.start(lambda: (wait_until(lambda: len(getters(empty)) == 4 and len(putters(full)) == 2),
                                empty.shutdown(), full.shutdown()))
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(get)
            nursery.start_soon(iterate)
            for _ in range(2):
                nursery.start_soon(put)
        t.value()
        assert sorted(outcomes) == ["for", "get", "get", "get", "put", "put"]

    run(main)
    assert_idle(empty)
    assert_idle(full)


def test_async_for_drains_then_ends_at_shutdown(FrameQueue, live):
    q = FrameQueue()
    q.put_many([1, 2])

    async def main():
        t = live.start(lambda: (wait_until(lambda: len(getters(q)) == 1), q.put(3), q.shutdown()))
        got = [item async for item in q]
        t.value()
        assert got == [1, 2, 3]

    run(main)


def test_a_run_that_ends_leaves_nothing_registered(FrameQueue, FrameRing):
    q, full, ring = FrameQueue(), FrameQueue(1, "block"), FrameRing(1, 8, "block")
    full.put(0)
    ring.put(b"x")
    held = ring.get()  # the ring's only slot: putters wait

    async def main():
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(q.async_get)
            for i in range(3):
                nursery.start_soon(full.async_put, i)
                nursery.start_soon(ring.async_put, b"y")
            await until(lambda: len(getters(q)) == 5 and len(putters(full)) == 3
                        and len(putters(ring)) == 3, "everyone waiting")
            q.put("raced")  # a delivery queued for a waiter about to be cancelled
            nursery.cancel_scope.cancel()

    run(main)
    for buf in (q, full, ring):
        assert_idle(buf)
    assert q.get_nowait() == "raced"  # handed to nobody, still queued
    held.release()


def test_a_finished_runs_registration_is_dropped_and_its_wakeup_passed_on(FrameQueue):
    """A registration left by a run that has finished (it cannot happen through
    wait: injected) is forgotten at the next notify, which gives its wake-up
    to an asyncio waiter instead; nothing raises in the notifying thread."""
    from bufmgr import _aiotrio

    q = FrameQueue()
    left = []

    async def leave_one():
        loop = _aiotrio.current_loop()
        fut = _aiotrio.TrioFuture(loop, trio.lowlevel.current_task())
        getters(q)._register(fut, loop)
        left.append(loop)

    trio.run(leave_one)
    assert len(getters(q)) == 1 and not left[0].is_closed()

    async def asyncio_waiter():
        task = asyncio.ensure_future(q.async_get())
        while len(getters(q)) < 2:
            await asyncio.sleep(0.001)
        threading.Thread(target=q.put, args=("x",)).start()  # rings the finished run first
        return await asyncio.wait_for(task, DEADLINE_S)

    assert asyncio.run(asyncio_waiter()) == "x"
    assert left[0].is_closed()
    assert_idle(q)


def test_one_loop_adapter_per_run():
    from bufmgr import _aiotrio

    async def main():
        return _aiotrio.current_loop(), _aiotrio.current_loop()

    a, b = trio.run(main)
    c, _ = trio.run(main)
    assert a is b and a is not c


# ---------------------------------------------------------------------------
# trio and asyncio on one queue


def test_trio_and_asyncio_waiters_on_one_queue_conserve(FrameQueue, live):
    q = FrameQueue(8, "block")
    n = 3000

    loop = asyncio.new_event_loop()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    lt = threading.Thread(target=loop.run_forever, daemon=True)
    lt.start()

    async def asyncio_consume():
        out = []
        async for item in q:
            out.append(item)
        return out

    async def asyncio_produce():
        for i in range(n):
            await q.async_put(("a", i))

    try:
        a_consumers = [asyncio.run_coroutine_threadsafe(asyncio_consume(), loop) for _ in range(2)]
        a_producer = asyncio.run_coroutine_threadsafe(asyncio_produce(), loop)
        t = live.start(lambda: [q.put(("t", i), timeout=DEADLINE_S) for i in range(n)])

        async def main():
            got = []

            async def consume():
                async for item in q:
                    got.append(item)

            async def produce():
                for i in range(n):
                    await q.async_put(("r", i))

            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(consume)
                await produce()
                await trio.to_thread.run_sync(a_producer.result, DEADLINE_S)
                await trio.to_thread.run_sync(t.thread.join, DEADLINE_S)
                t.value()
                q.shutdown()
            return got

        got = run(main)
        for f in a_consumers:
            got += f.result(DEADLINE_S)
        expected = [(k, i) for k in "atr" for i in range(n)]
        assert sorted(got) == sorted(expected)
        s = q.stats()
        assert s["puts"] == s["gets"] == 3 * n
    finally:
        loop.call_soon_threadsafe(loop.stop)
        lt.join(DEADLINE_S)
        assert not lt.is_alive()
        loop.close()
    assert not errors, errors
    assert_idle(q)


# ---------------------------------------------------------------------------
# anyio


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_anyio_get_put_timeout_and_cancel(FrameQueue, live, backend):
    anyio = pytest.importorskip("anyio")
    q = FrameQueue(1, "block")

    async def main():
        with anyio.fail_after(DEADLINE_S):
            t = live.start(lambda: (wait_until(lambda: len(getters(q)) == 1), q.put("a")))
            assert await q.async_get() == "a"
            t.value()
            with pytest.raises(Empty):
                await q.async_get(timeout=0.01)
            with anyio.move_on_after(0.01) as scope:
                await q.async_get()
            assert scope.cancelled_caught
            q.put("b")
            t = live.start(lambda: (wait_until(lambda: len(putters(q)) == 1), q.get()))
            await q.async_put("c")
            assert t.value()[1] == "b"
            with pytest.raises(Full):
                await q.async_put("d", timeout=0.01)
            async with anyio.create_task_group() as tg:
                got = []

                async def get():
                    got.append(await q.async_get())
                for _ in range(2):
                    tg.start_soon(get)
                q.get_nowait()
                while len(getters(q)) < 2:
                    await anyio.sleep(0.001)
                await q.async_put("e")
                await q.async_put("f")
            assert sorted(got) == ["e", "f"]

    anyio.run(main, backend=backend)
    assert_idle(q)


# ---------------------------------------------------------------------------
# SharedFrameRing: a producer process wakes trio tasks through the watcher


def _shm_producer(name, n):
    import bufmgr

    ring = bufmgr.SharedFrameRing.attach(name)
    for i in range(n):
        ring.put(i.to_bytes(8, "little") * 4, timeout=DEADLINE_S)
    ring.shutdown()
    ring.close()


@needs_shm
def test_shared_ring_producer_process_to_trio_tasks():
    import bufmgr

    n = 300
    ring = bufmgr.SharedFrameRing(2, 32, overflow="block")
    try:
        async def main():
            got = []

            async def consume():
                async for f in ring:
                    with f:
                        got.append(int.from_bytes(bytes(f)[:8], "little"))

            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(consume)
                await until(lambda: len(getters(ring)) == 2, "2 tasks waiting")
                p = mp.get_context("spawn").Process(target=_shm_producer, args=(ring.name, n))
                p.start()
            await trio.to_thread.run_sync(p.join, DEADLINE_S)
            assert p.exitcode == 0
            return got

        got = run(main)
        assert sorted(got) == list(range(n))
        s = ring.stats()
        assert s["puts"] == s["gets"] == n
    finally:
        ring.close()


# ---------------------------------------------------------------------------
# imports, and outside any loop


def test_bufmgr_never_imports_trio_by_itself():
    code = (
        "import asyncio, sys, bufmgr\n"
        "q = bufmgr.FrameQueue()\n"
        "async def main():\n"
        "    asyncio.get_running_loop().call_later(0.01, q.put, 1)\n"
        "    return await q.async_get()\n"
        "assert asyncio.run(main()) == 1\n"
        "assert 'trio' not in sys.modules and 'bufmgr._aiotrio' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=DEADLINE_S,
                   env={**os.environ, "PYTHONWARNINGS": "error"})


def test_outside_any_loop_the_error_is_asyncios(FrameQueue):
    q = FrameQueue()
    coro = q.async_get()
    with pytest.raises(RuntimeError, match="no running event loop"):
        coro.send(None)
    coro.close()
    assert_idle(q)


def test_an_error_in_a_wakeup_callback_is_reported_not_fatal_to_the_run(monkeypatch):
    """trio kills a run whose run_sync_soon callback raises; the adapter
    reports it as asyncio's loop would log it, and the run goes on."""
    from bufmgr import _aiotrio

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)

    def boom():
        raise MemoryError("injected")

    async def main():
        ran = trio.Event()
        loop = _aiotrio.current_loop()
        loop.call_soon_threadsafe(boom)
        loop.call_soon_threadsafe(ran.set)
        await ran.wait()
        return "finished"

    assert run(main) == "finished"
    assert len(seen) == 1 and isinstance(seen[0].exc_value, MemoryError)


@pytest.mark.parametrize("what", ["get", "put"])
def test_a_lone_trio_waiter_is_woken_through_the_fast_lane(FrameQueue, live, python_notify_calls, what):
    """The compiled FrameQueue's put/get wakes a lone trio waiter through the
    lane (the registry's Python notify is never called: the producer's C code
    rings the run's run_sync_soon itself); the pure twin calls notify."""
    calls = python_notify_calls
    q = FrameQueue(1, "block")
    if what == "put":
        q.put(-1)

    async def main():
        for i in range(3):
            if what == "get":
                t = live.start(lambda i=i: (wait_until(lambda: len(getters(q)) == 1), q.put(i)))
                assert await q.async_get() == i
            else:
                t = live.start(lambda: (wait_until(lambda: len(putters(q)) == 1), q.get()))
                await q.async_put(i)
            t.value()

    run(main)
    if FrameQueue.__module__ == "bufmgr._pyqueue":
        assert calls
    else:
        assert calls == []
