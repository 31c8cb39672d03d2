"""asyncio on SharedFrameRing (issues 13 + 15): coroutines woken by other processes.

Coroutines in this process wait in the ring's registry (bufmgr/_aio.py);
this process's own puts/frees wake them directly, other processes' through
one watcher thread per (ring handle, direction) that sleeps on the segment's
futex word while coroutines wait, and exits after they are gone. Pinned here:

* producer process -> coroutines in two loops of this process, conservation
  by stamp (every frame's bytes checked), ended by a shutdown the producer
  process sends; coroutine producers -> a consumer process;
* shutdown from another process wakes async getters and putters, in two loops;
* a cancellation storm (random wait_for timeouts) loses and duplicates nothing;
* kill -9 of the producer while it holds the segment lock and a coroutine
  waits: the coroutine keeps waiting (its timeout fires), a later producer
  wakes it;
* the watcher thread stops after the last waiter, close() wakes waiters
  (ValueError) and joins it; a loop closed with waiters pending is clean;
* warnings are errors; every loop's exception handler stays silent; nothing
  is left in /dev/shm.

Children are spawned (no fork of a process with threads), every join is
bounded, no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing as mp
import os
import random
import signal
import sys
import threading
import time

import pytest

import bufmgr
from bufmgr._errors import Empty, Full, ShutDown

from shm_helpers import (DEADLINE_S, assert_no_segments_left, check_frame, conserved, join_bounded, key_of,
                         needs_numpy, needs_shm, segments, stamp, wait_until)

pytestmark = [needs_shm, needs_numpy, pytest.mark.filterwarnings("error")]

FRAME = 2048
CTX = mp.get_context("spawn")
#: A coroutine's wait for a wake-up that is due: one takes milliseconds, so
#: past this it was lost (a failure, not a slow pass; DEADLINE_S is for
#: process start-ups and joins).
WAKE_S = 20.0


@pytest.fixture(autouse=True)
def no_leftover_segments_or_watchers():
    before = segments()
    yield
    assert_no_segments_left(before)


def watcher_threads():
    return [t for t in threading.enumerate() if t.name.startswith("bufmgr-shm-watch")]


_join = join_bounded


class LoopThread:
    """An event loop in its own thread; run(coro) from the test thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.errors = []
        self.loop.set_exception_handler(lambda loop, ctx: self.errors.append(ctx))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive()
        self.loop.close()
        assert not self.errors, self.errors


# ---- children (spawned: module-level functions) -----------------------------------------


def _producer(name, pid, n, shutdown_after, go=None):
    ring = bufmgr.SharedFrameRing.attach(name)
    if go is not None:
        go.wait(DEADLINE_S)
    rnd = random.Random(pid)
    for i in range(n):
        ring.put(stamp(key_of(pid, i), FRAME), timeout=DEADLINE_S)
        if i % 8 == 0:
            time.sleep(0.001 * rnd.random())  # bursts and gaps: both wake-up paths
    if shutdown_after:
        ring.shutdown()
    ring.close()


def _consumer(name, out, n):
    ring = bufmgr.SharedFrameRing.attach(name)
    keys = []
    try:
        while len(keys) < n:
            with ring.get(timeout=DEADLINE_S) as f:
                keys.append(check_frame(f, FRAME))
    finally:
        out.put(keys)
        ring.close()


def _shutdown_when(name, started):
    ring = bufmgr.SharedFrameRing.attach(name)
    started.wait(DEADLINE_S)
    ring.shutdown()
    ring.close()


def _put_then_hold_lock(name, go, ready):
    ring = bufmgr.SharedFrameRing.attach(name)
    ring.put(stamp(key_of(0, 0), FRAME))
    go.wait(DEADLINE_S)  # the parent got frame 0: hold the lock only now
    ready.set()
    ring._debug_hold_lock(60)  # killed in here


# ---- tests -------------------------------------------------------------------------------


def test_producer_process_to_coroutines_in_two_loops_conserves_by_stamp():
    n = 600
    ring = bufmgr.SharedFrameRing(4, FRAME, overflow="block")
    loops = [LoopThread(), LoopThread()]

    async def consume():
        keys = []
        async for f in ring:  # ends at the producer process's shutdown
            with f:
                keys.append(check_frame(f, FRAME))
        return keys

    try:
        futs = [lt.submit(consume()) for lt in loops for _ in range(2)]
        wait_until(lambda: len(ring._aio_waiters().getters) == 4, "4 coroutines waiting")
        p = CTX.Process(target=_producer, args=(ring.name, 0, n, True))
        p.start()
        got = [k for fut in futs for k in fut.result(DEADLINE_S)]
        assert _join([p]) == [0]
        assert sorted(got) == [key_of(0, i) for i in range(n)]  # none lost, none twice
        s = ring.stats()
        assert s["puts"] == s["gets"] == n and conserved(s)
        assert all(fut.result() for fut in futs[:1])
    finally:
        for lt in loops:
            lt.close()
        ring.close()


def test_coroutine_producers_to_a_consumer_process():
    n = 400
    ring = bufmgr.SharedFrameRing(2, FRAME, overflow="block")  # producers wait for the consumer
    out = CTX.Queue()
    c = CTX.Process(target=_consumer, args=(ring.name, out, 2 * n))
    c.start()

    async def produce(pid):
        for i in range(n):
            await ring.async_put(stamp(key_of(pid, i), FRAME), timeout=DEADLINE_S)

    async def main():
        await asyncio.gather(produce(0), produce(1))

    try:
        asyncio.run(main())
        keys = out.get(timeout=DEADLINE_S)
        assert _join([c]) == [0]
        assert sorted(keys) == sorted(key_of(p, i) for p in (0, 1) for i in range(n))
        s = ring.stats()
        assert s["puts"] == s["gets"] == 2 * n and conserved(s)
    finally:
        ring.close()


def test_shutdown_from_another_process_wakes_async_getters_and_putters_in_two_loops():
    getters_ring = bufmgr.SharedFrameRing(1, 8, overflow="block")
    putters_ring = bufmgr.SharedFrameRing(1, 8, overflow="block")
    putters_ring.put(b"full")
    loops = [LoopThread(), LoopThread()]
    started = CTX.Event()

    async def wait_get():
        try:
            await getters_ring.async_get()
        except ShutDown:
            return "shutdown"

    async def wait_put():
        try:
            await putters_ring.async_put(b"x")
        except ShutDown:
            return "shutdown"

    procs = [CTX.Process(target=_shutdown_when, args=(r.name, started))
             for r in (getters_ring, putters_ring)]
    try:
        for p in procs:
            p.start()
        futs = [lt.submit(fn()) for lt in loops for fn in (wait_get, wait_put, wait_get)]
        wait_until(lambda: len(getters_ring._aio_waiters().getters) == 4, "4 async getters")
        wait_until(lambda: len(putters_ring._aio_waiters().putters) == 2, "2 async putters")
        # the watchers sleep in the segment: the other process's shutdown wakes them
        wait_until(lambda: getters_ring.stats()["getters_waiting"] == 1, "getters' watcher asleep")
        wait_until(lambda: putters_ring.stats()["putters_waiting"] == 1, "putters' watcher asleep")
        started.set()
        assert [f.result(DEADLINE_S) for f in futs] == ["shutdown"] * 6
        assert _join(procs) == [0, 0]
    finally:
        for lt in loops:
            lt.close()
        getters_ring.close()
        putters_ring.close()


def test_cancellation_storm_loses_and_duplicates_nothing():
    n = 400
    ring = bufmgr.SharedFrameRing(3, FRAME, overflow="block")
    rnd = random.Random(15)
    go = CTX.Event()

    async def consume(got, stats):
        while True:
            try:
                f = await asyncio.wait_for(ring.async_get(), rnd.choice((0.0005, 0.002, 0.01, 1.0)))
            except asyncio.TimeoutError:
                stats["timeouts"] += 1
                continue
            except ShutDown:
                return
            with f:
                got.append(check_frame(f, FRAME))

    async def main():
        got, stats = [], {"timeouts": 0}
        go.set()
        await asyncio.gather(*(consume(got, stats) for _ in range(5)))
        return got, stats

    p = CTX.Process(target=_producer, args=(ring.name, 3, n, True, go))
    try:
        p.start()
        got, stats = asyncio.run(main())
        assert _join([p]) == [0]
        assert sorted(got) == [key_of(3, i) for i in range(n)]
        s = ring.stats()
        assert s["gets"] == n and s["size"] == 0 and conserved(s)
    finally:
        ring.close()


def test_producer_killed_holding_the_lock_while_a_coroutine_waits():
    ring = bufmgr.SharedFrameRing(2, FRAME, overflow="block")
    go, ready = CTX.Event(), CTX.Event()

    async def main():
        p = CTX.Process(target=_put_then_hold_lock, args=(ring.name, go, ready))
        p.start()
        with await ring.async_get(timeout=WAKE_S) as f:  # woken by the watcher
            assert check_frame(f, FRAME) == key_of(0, 0)
        waiter = asyncio.ensure_future(ring.async_get())
        while not len(ring._aio_waiters().getters):
            await asyncio.sleep(0.001)
        # registered, and its tries (which take the segment mutex) are done:
        # only now may the producer hold the lock. (Set before, the waiter's
        # first get_nowait could block this loop on the live holder's mutex
        # for the whole 60 s hold: the test's 61 s runs.)
        go.set()
        wait_until(lambda: ready.is_set(), "producer holds the lock")
        time.sleep(0.05)  # likely inside the lock by now (either way it must recover)
        os.kill(p.pid, signal.SIGKILL)
        p.join(DEADLINE_S)
        assert p.exitcode == -signal.SIGKILL
        # the coroutine keeps waiting: a short timeout expires (nothing torn is delivered)
        with pytest.raises(Empty):
            await ring.async_get(timeout=0.2)
        assert not waiter.done()
        q = CTX.Process(target=_producer, args=(ring.name, 1, 3, False))
        q.start()
        with await asyncio.wait_for(waiter, WAKE_S) as f:
            assert check_frame(f, FRAME) == key_of(1, 0)
        for i in (1, 2):
            with await ring.async_get(timeout=WAKE_S) as f:
                assert check_frame(f, FRAME) == key_of(1, i)
        assert await asyncio.to_thread(_join, [q]) == [0]

    try:
        asyncio.run(main())
        ring.reclaim()  # reaps the dead producer now if no recovery or wait slice did yet
        s = ring.stats()
        assert conserved(s)
        assert s["gets"] == 4
        # it died attached (inside its hold): had the hold run out first, it
        # would have detached cleanly and this would be 0
        assert s["dead_participants"] == 1
    finally:
        ring.close()


def test_watcher_runs_only_while_coroutines_wait():
    ring = bufmgr.SharedFrameRing(2, FRAME, overflow="block")

    async def one():
        return await ring.async_get(timeout=WAKE_S)

    async def main():
        t = asyncio.ensure_future(one())
        while not len(ring._aio_waiters().getters):
            await asyncio.sleep(0.001)
        w = ring._aio_watcher(0)
        assert w is not None and w.running is not None
        assert ring._aio_watcher(1) is None  # no async putter: no putters' watcher
        p = CTX.Process(target=_producer, args=(ring.name, 2, 1, False))
        p.start()
        with await t as f:
            assert check_frame(f, FRAME) == key_of(2, 0)
        assert await asyncio.to_thread(_join, [p]) == [0]
        return w

    try:
        w = asyncio.run(main())
        # nobody waits any more: the watcher lets the flag go, lingers, exits
        wait_until(lambda: w.running is None, "watcher stopped")
        assert not watcher_threads()
        assert ring._aio_state() == (False, False)
        assert ring.stats()["getters_waiting"] == 0
    finally:
        ring.close()


def test_close_wakes_waiters_and_joins_the_watcher():
    ring = bufmgr.SharedFrameRing(2, 8, overflow="block")
    lt = LoopThread()
    try:
        fut = lt.submit(ring.async_get())
        wait_until(lambda: len(ring._aio_waiters().getters) == 1, "a coroutine waiting")
        w = ring._aio_watcher(0)
        assert w.running is not None
        ring.close()
        assert w.running is None  # joined by close()
        with pytest.raises(ValueError, match="closed"):
            fut.result(DEADLINE_S)
    finally:
        lt.close()
        ring.close()


def test_loop_closed_with_waiters_pending_is_clean():
    ring = bufmgr.SharedFrameRing(2, FRAME, overflow="block")
    lt = LoopThread()
    errors = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args)
    try:
        lt.submit(ring.async_get())
        wait_until(lambda: len(ring._aio_waiters().getters) == 1, "a coroutine waiting")
        w = ring._aio_watcher(0)
        lt.loop.call_soon_threadsafe(lt.loop.stop)
        lt.thread.join(DEADLINE_S)
        lt.loop.close()  # the pending task is never resumed
        p = CTX.Process(target=_producer, args=(ring.name, 4, 1, False))
        p.start()
        assert _join([p]) == [0]
        # the watcher drops the closed loop's waiter and stops; the frame stays queued
        wait_until(lambda: w.running is None, "watcher stopped")
        assert len(ring._aio_waiters().getters) == 0
        with ring.get(timeout=DEADLINE_S) as f:
            assert check_frame(f, FRAME) == key_of(4, 0)
        assert not errors
    finally:
        threading.excepthook = old_hook
        ring.close()
        gc.collect()


def test_same_process_hops_and_refcounts():
    ring = bufmgr.SharedFrameRing(2, 8, overflow="block")
    n = 300

    async def main():
        async def produce():
            for i in range(n):
                await ring.async_put(i.to_bytes(8, "little"), metadata=i if i % 50 == 0 else None)

        async def consume():
            out = []
            while len(out) < n:
                frames = await ring.async_get_many(3, timeout=DEADLINE_S)
                assert 1 <= len(frames) <= 2  # 2 slots
                for f in frames:
                    with f:
                        out.append(int.from_bytes(bytes(f), "little"))
                        if f.metadata is not None:
                            assert f.metadata == out[-1]
            return out

        _, got = await asyncio.gather(produce(), consume())
        assert got == list(range(n))
        ring.put(b"a" * 8)
        ring.put(b"b" * 8)
        with await ring.async_get_latest(timeout=DEADLINE_S) as f:
            assert bytes(f) == b"b" * 8
        with pytest.raises(Empty):
            await ring.async_get(timeout=0.01)
        ring.put(b"1" * 8)
        ring.put(b"2" * 8)
        with pytest.raises(Full):
            await ring.async_put(b"3" * 8, timeout=0.01)

    try:
        asyncio.run(main())  # warm up (imports, caches)
        ring.clear()
        gc.collect()
        before = sys.getrefcount(ring)
        asyncio.run(main())
        ring.clear()
        gc.collect()
        assert sys.getrefcount(ring) == before
        s = ring.stats()
        assert conserved(s)
    finally:
        ring.close()


# ---- the watcher's first look: snapshot, then check, then sleep ----------------------------

@pytest.mark.parametrize("event", ["frame", "room", "shutdown"])
def test_watcher_checks_before_its_first_sleep(monkeypatch, event):
    """The race of a coroutine registering against a watcher starting: the
    coroutine's second try found nothing, then another handle puts (frees a
    slot, shuts down) before the watcher's first snapshot of the futex word.
    The snapshot already contains that bump, so no futex wake-up is coming:
    the watcher must check availability after its snapshot and before it
    sleeps, like any futex wait. The test hook makes that order certain,
    and holds the watcher's first sleep until the coroutine has resumed:
    a watcher that sleeps first never wakes it (the hook gives up after
    WAKE_S and the test fails)."""
    from bufmgr import _shm

    ring = bufmgr.SharedFrameRing(1, 8, overflow="block")
    other = bufmgr.SharedFrameRing.attach(ring.name)  # its bumps are remote to `ring`
    if event == "room":
        ring.put(b"full")
    resumed = threading.Event()
    seen = {}

    async def main():
        loop = asyncio.get_running_loop()

        def hook(where):
            if where == "start":
                # the coroutine registered (that started us) and its second try
                # found nothing: it is suspended once the loop runs a callback
                parked = threading.Event()
                loop.call_soon_threadsafe(parked.set)
                assert parked.wait(WAKE_S)
                if event == "frame":
                    other.put(b"frame 0!")
                elif event == "room":
                    other.get(timeout=WAKE_S).release()
                else:
                    other.shutdown()
            elif "before_first_sleep" not in seen:
                seen["before_first_sleep"] = resumed.wait(WAKE_S)

        monkeypatch.setattr(_shm, "_debug_watch_hook", hook)
        try:
            if event == "frame":
                f = await asyncio.wait_for(ring.async_get(), WAKE_S)
                resumed.set()
                with f:
                    assert bytes(f) == b"frame 0!"
            elif event == "room":
                await asyncio.wait_for(ring.async_put(b"room"), WAKE_S)
                resumed.set()
            else:
                with pytest.raises(ShutDown):
                    try:
                        await asyncio.wait_for(ring.async_get(), WAKE_S)
                    finally:
                        resumed.set()
        finally:
            monkeypatch.setattr(_shm, "_debug_watch_hook", None)

    try:
        asyncio.run(main())
        w = ring._aio_watcher(1 if event == "room" else 0)
        # it sleeps next, or (nobody waits any more: after a shutdown's
        # notify_all) parks and exits without sleeping
        wait_until(lambda: "before_first_sleep" in seen or w.running is None,
                   "the watcher's first sleep or its exit")
        assert seen.get("before_first_sleep", True), \
            "the watcher slept before it checked (lost wake-up)"
        assert conserved(ring.stats())
    finally:
        other.close()
        ring.close()
