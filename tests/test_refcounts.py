"""Reference counting and __del__ re-entrancy.

The queue holds plain references (items are never copied) and must give
every one of them back: after put/get, eviction, refusal, clear(),
shutdown(immediate=True), get_latest discards, get_many, put_many, failed
operations and deallocation of a queue that still holds items, each
payload's refcount is back at its baseline.

Items released by the queue (evicted, cleared, discarded) may run arbitrary
__del__ code; the spec says that code never runs while the internal lock is
held, so a __del__ that calls back into the same queue must not deadlock.
"""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from bufmgr import Empty, Full, ShutDown

pytestmark = pytest.mark.skipif(
    not hasattr(sys, "getrefcount"), reason="needs CPython reference counting"
)


class Payload:
    __slots__ = ("n", "__weakref__")

    def __init__(self, n=0):
        self.n = n


def payloads(k):
    return [Payload(i) for i in range(k)]


def refs(objs):
    return [sys.getrefcount(o) for o in objs]


@pytest.fixture
def baseline():
    """Call with a list of objects; returns a checker asserting the counts
    are back where they were."""

    def take(objs):
        gc.collect()
        before = refs(objs)

        def check():
            gc.collect()
            assert refs(objs) == before

        return check

    return take


def test_put_get(FrameQueue, baseline):
    objs = payloads(3)
    check = baseline(objs)
    q = FrameQueue()
    for i in range(len(objs)):  # no loop variable left bound to a payload
        q.put(objs[i])
    out = [q.get() for _ in objs]
    assert all(a is b for a, b in zip(out, objs))
    del out
    check()


def test_queue_holds_exactly_one_reference_per_slot(FrameQueue, baseline):
    o = Payload()
    check = baseline([o])
    base = sys.getrefcount(o)
    q = FrameQueue()
    q.put(o)
    assert sys.getrefcount(o) == base + 1
    q.put(o)
    assert sys.getrefcount(o) == base + 2
    q.get()
    q.get()
    check()


def test_put_nowait_get_nowait_and_timeouts(FrameQueue, baseline):
    objs = payloads(2)
    check = baseline(objs)
    q = FrameQueue(1)
    q.put_nowait(objs[0])
    with pytest.raises(Full):
        q.put_nowait(objs[1])
    with pytest.raises(Full):
        q.put(objs[1], timeout=0.001)
    q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=0.001)
    check()


def test_evict_drop_oldest(FrameQueue, baseline):
    objs = payloads(5)
    check = baseline(objs)
    q = FrameQueue(2, "drop_oldest")
    evicted = [q.put(o) for o in objs]
    assert evicted[2] is objs[0]
    del evicted
    while q.qsize():
        q.get()
    check()


def test_refuse_drop_newest(FrameQueue, baseline):
    objs = payloads(5)
    check = baseline(objs)
    q = FrameQueue(2, "drop_newest")
    refused = [q.put(o) for o in objs]
    assert refused[4] is objs[4]
    del refused
    q.get()
    q.get()
    check()


def test_clear(FrameQueue, baseline):
    objs = payloads(10)
    check = baseline(objs)
    q = FrameQueue()
    q.put_many(objs)
    assert q.clear() == 10
    check()


@pytest.mark.parametrize("policy", ["block", "drop_oldest", "drop_newest"])
def test_shutdown_immediate(FrameQueue, baseline, policy):
    objs = payloads(6)
    check = baseline(objs)
    q = FrameQueue(4, policy)
    for i in range(4):
        q.put(objs[i])
    q.shutdown(immediate=True)
    with pytest.raises(ShutDown):
        q.put(objs[4])
    with pytest.raises(ShutDown):
        q.put_many(objs[4:])
    check()


def test_get_latest_discards(FrameQueue, baseline):
    objs = payloads(8)
    check = baseline(objs)
    q = FrameQueue()
    q.put_many(objs)
    latest = q.get_latest()
    assert latest is objs[-1]
    del latest
    check()


def test_get_many_and_put_many(FrameQueue, baseline):
    objs = payloads(9)
    check = baseline(objs)
    q = FrameQueue(5, "drop_oldest")
    dropped = q.put_many(objs)
    assert dropped == objs[:4]
    del dropped
    got = q.get_many(3)
    got += q.get_many(10)
    assert got == objs[4:]
    del got
    check()


def test_put_many_stopped_early(FrameQueue, baseline):
    objs = payloads(5)
    check = baseline(objs)
    q = FrameQueue(2)
    with pytest.raises(Full):
        q.put_many(objs, block=False)
    with pytest.raises(Full):
        q.put_many(objs, timeout=0.001)
    q.clear()
    q.shutdown()
    with pytest.raises(ShutDown):
        q.put_many(objs)
    check()


def test_failing_iterable_put_many(FrameQueue, baseline):
    objs = payloads(3)
    check = baseline(objs)
    q = FrameQueue()

    def gen():
        yield from objs
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        q.put_many(gen())
    check()


def test_bad_argument_paths_do_not_leak(FrameQueue, baseline):
    objs = payloads(2)
    check = baseline(objs)
    q = FrameQueue(3)
    q.put(objs[0])
    for call in (lambda: q.put(objs[1], True, -1), lambda: q.put(objs[1], True, "x"),
                 lambda: q.put_many([objs[1]], True, float("nan")),
                 lambda: q.get_many(0), lambda: q.get(True, -1)):
        with pytest.raises((TypeError, ValueError)):
            call()
    q.get()
    check()


def test_returned_object_is_not_leaked_by_stats_or_repr(FrameQueue, baseline):
    objs = payloads(1)
    check = baseline(objs)
    q = FrameQueue()
    q.put(objs[0])
    for _ in range(100):
        q.stats()
        repr(q)
        q.qsize()
    q.get()
    check()


@pytest.mark.parametrize("policy", ["block", "drop_oldest", "drop_newest"])
def test_dealloc_with_items_inside(FrameQueue, baseline, policy):
    objs = payloads(20)
    check = baseline(objs)
    q = FrameQueue(8, policy)
    n = 8 if policy == "block" else len(objs)  # drop policies evict/refuse the rest
    for i in range(n):
        q.put_nowait(objs[i])
    q.get()
    del q
    gc.collect()
    check()


def test_dealloc_releases_last_references(FrameQueue):
    q = FrameQueue()
    objs = payloads(5)
    wrs = [weakref.ref(o) for o in objs]
    q.put_many(objs)
    del objs
    assert all(w() is not None for w in wrs)
    del q
    gc.collect()
    assert all(w() is None for w in wrs)


def test_queue_itself_is_released(FrameQueue):
    q = FrameQueue(4)
    q.put_many([1, 2, 3])
    q.get()
    q.stats()
    try:
        wq = weakref.ref(q)
    except TypeError:
        pytest.skip("FrameQueue does not support weak references")
    del q
    gc.collect()
    assert wq() is None


def test_queue_containing_itself_is_collected(FrameQueue):
    q = FrameQueue()
    try:
        wq = weakref.ref(q)
    except TypeError:
        pytest.skip("FrameQueue does not support weak references")
    q.put(q)  # a reference cycle through the queue's storage
    q.put([q])
    del q
    gc.collect()
    assert wq() is None, "queue in a reference cycle through its items is never freed"


# ---------------------------------------------------------------------------
# __del__ re-entrancy


class Reentrant:
    """On release, calls back into the queue it was taken out of."""

    def __init__(self, q, action, log):
        self.q, self.action, self.log = q, action, log

    def __del__(self):
        q = self.q
        if self.action == "put":
            self.log.append(("put", q.put_nowait("reborn")))
        elif self.action == "stats":
            self.log.append(("stats", q.stats()["size"]))
        elif self.action == "qsize":
            self.log.append(("qsize", q.qsize(), len(q), repr(q)))
        elif self.action == "clear":
            self.log.append(("clear", q.clear()))


ACTIONS = ["put", "stats", "qsize", "clear"]


def _in_thread(live, fn):
    """Run fn in a worker with a deadline: a deadlock fails, never hangs."""
    return live.start(fn).value()


@pytest.mark.parametrize("action", ACTIONS)
def test_del_reentrancy_on_clear(FrameQueue, live, action):
    q = FrameQueue()
    log = []

    def scenario():
        for _ in range(3):
            q.put(Reentrant(q, action, log))
        return q.clear()

    assert _in_thread(live, scenario) == 3
    assert len(log) == 3
    if action == "put":
        assert q.qsize() == 3 and all(x == "reborn" for x in live.drain(q))
    if action == "stats":
        assert all(entry == ("stats", 0) for entry in log), log


@pytest.mark.parametrize("action", ACTIONS)
def test_del_reentrancy_on_immediate_shutdown(FrameQueue, live, action):
    q = FrameQueue()
    log = []

    def scenario():
        for _ in range(3):
            q.put(Reentrant(q, action, log))
        q.shutdown(immediate=True)

    if action == "put":
        # put after shutdown raises ShutDown inside __del__: CPython reports
        # and ignores it ("Exception ignored in"); silence that report.
        def hook(unraisable):
            log.append(("unraisable", unraisable.exc_type.__name__))

        old = sys.unraisablehook
        sys.unraisablehook = hook
        try:
            _in_thread(live, scenario)
        finally:
            sys.unraisablehook = old
        assert log == [("unraisable", "ShutDown")] * 3
    else:
        _in_thread(live, scenario)
        assert len(log) == 3
    assert q.qsize() == 0


@pytest.mark.parametrize("action", ACTIONS)
def test_del_reentrancy_on_get_latest_discard(FrameQueue, live, action):
    q = FrameQueue()
    log = []

    def scenario():
        for _ in range(3):
            q.put(Reentrant(q, action, log))
        q.put("newest")
        return q.get_latest()

    assert _in_thread(live, scenario) == "newest"
    assert len(log) == 3


@pytest.mark.parametrize("action", ACTIONS)
def test_del_reentrancy_on_evict(FrameQueue, live, action):
    q = FrameQueue(1, "drop_oldest")
    log = []

    def scenario():
        q.put(Reentrant(q, action, log))
        q.put("second")  # evicts; the returned evictee is discarded here
        q.put_many(["third"])
        return len(log)

    assert _in_thread(live, scenario) == 1


@pytest.mark.parametrize("action", ["put", "stats", "qsize"])
def test_del_reentrancy_on_refuse(FrameQueue, live, action):
    q = FrameQueue(1, "drop_newest")
    log = []

    def scenario():
        q.put("first")
        q.put(Reentrant(q, action, log))  # refused; released by this frame
        q.put_many([Reentrant(q, action, log)])
        return len(log)

    assert _in_thread(live, scenario) == 2


def test_del_reentrancy_on_dealloc(FrameQueue, live):
    # items reach the queue only through a weak reference, so the queue is
    # freed by refcounting; their __del__ runs while it is being torn down
    log = []

    class Peek:
        def __init__(self, wq):
            self.wq = wq

        def __del__(self):
            q = self.wq()
            log.append(None if q is None else q.qsize())

    def scenario():
        q = FrameQueue()
        try:
            wq = weakref.ref(q)
        except TypeError:
            return "noweakref"
        for _ in range(3):
            q.put(Peek(wq))
        del q
        gc.collect()
        return "ok"

    res = _in_thread(live, scenario)
    if res == "noweakref":
        pytest.skip("FrameQueue does not support weak references")
    assert len(log) == 3
