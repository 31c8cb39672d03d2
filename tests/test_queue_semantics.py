"""FrameQueue keeps the stdlib queue.Queue contract (block policy).

Covers put/get and their nowait variants, qsize/empty/full/len, read-only
properties, task_done/join/unfinished_tasks, timeouts raising Full/Empty, and
every CPython 3.13 shutdown transition. Where it helps, the same operation
sequence is replayed on queue.Queue and the outcomes are compared.
"""

from __future__ import annotations

import os
import queue
import random

import pytest

import bufmgr
from bufmgr import Empty, Full, ShutDown

HAS_STDLIB_SHUTDOWN = hasattr(queue.Queue, "shutdown")  # CPython 3.13+


# ---------------------------------------------------------------------------
# package surface


def test_exception_types_are_the_stdlib_ones():
    assert Full is queue.Full
    assert Empty is queue.Empty
    assert issubclass(ShutDown, Exception)
    if hasattr(queue, "ShutDown"):
        assert ShutDown is queue.ShutDown


def test_package_exports_match_the_implementation_switch():
    assert bufmgr.IMPLEMENTATION in ("c", "python")
    if os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0"):
        assert bufmgr.IMPLEMENTATION == "python"
    if bufmgr.IMPLEMENTATION == "python":
        from bufmgr._pyqueue import FrameQueue as Py

        assert bufmgr.FrameQueue is Py
    else:
        from bufmgr._ring import FrameQueue as C

        assert bufmgr.FrameQueue is C


# ---------------------------------------------------------------------------
# construction & read-only properties


def test_defaults(FrameQueue):
    q = FrameQueue()
    assert q.maxsize == 0
    assert q.overflow == "block"
    assert q.unfinished_tasks == 0
    assert q.is_shutdown is False
    assert q.qsize() == 0 and len(q) == 0
    assert q.empty() is True
    assert q.full() is False


@pytest.mark.parametrize("given, bound", [(0, 0), (-1, 0), (-(10**30), 0), (1, 1), (7, 7)])
def test_maxsize_as_given_bound_normalised(FrameQueue, given, bound):
    # queue.Queue keeps maxsize as given (-1 stays -1, still unbounded);
    # stats() reports the bound, 0 meaning unbounded
    q = FrameQueue(given)
    assert q.maxsize == given == queue.Queue(given).maxsize
    assert q.stats()["maxsize"] == bound
    if bound == 0:
        q.put_many(range(100), block=False)  # unbounded: never Full
        assert not q.full() and q.qsize() == 100


def test_keyword_construction(FrameQueue):
    q = FrameQueue(maxsize=3, overflow="drop_oldest")
    assert (q.maxsize, q.overflow) == (3, "drop_oldest")


@pytest.mark.parametrize("attr, value", [
    ("maxsize", 5),
    ("overflow", "drop_oldest"),
    ("is_shutdown", True),
])
def test_properties_are_read_only(FrameQueue, attr, value):
    q = FrameQueue(2)
    before = getattr(q, attr)
    with pytest.raises(AttributeError):
        setattr(q, attr, value)
    assert getattr(q, attr) == before
    with pytest.raises((AttributeError, TypeError)):
        delattr(q, attr)
    assert getattr(q, attr) == before


# ---------------------------------------------------------------------------
# put / get


@pytest.mark.parametrize("maxsize", [0, 1, 5])
def test_fifo_order_and_identity(FrameQueue, maxsize):
    q = FrameQueue(maxsize)
    n = maxsize or 100
    items = [object() for _ in range(n)]
    for it in items:
        assert q.put(it) is None
    assert q.qsize() == len(q) == n
    out = [q.get() for _ in range(n)]
    assert all(a is b for a, b in zip(out, items))
    assert q.empty()


def test_put_nowait_get_nowait(FrameQueue):
    q = FrameQueue(2)
    assert q.put_nowait("a") is None
    assert q.put_nowait("b") is None
    with pytest.raises(Full):
        q.put_nowait("c")
    assert q.get_nowait() == "a"
    assert q.get_nowait() == "b"
    with pytest.raises(Empty):
        q.get_nowait()


def test_positional_and_keyword_block_flags(FrameQueue):
    q = FrameQueue(1)
    q.put("x", False)
    with pytest.raises(Full):
        q.put("y", False)
    with pytest.raises(Full):
        q.put("y", block=False)
    assert q.get(False) == "x"
    with pytest.raises(Empty):
        q.get(False)
    with pytest.raises(Empty):
        q.get(block=False)


def test_qsize_empty_full_track_contents(FrameQueue):
    q = FrameQueue(3)
    states = []
    for i in range(3):
        q.put(i)
        states.append((q.qsize(), len(q), q.empty(), q.full()))
    for _ in range(3):
        q.get()
        states.append((q.qsize(), len(q), q.empty(), q.full()))
    assert states == [
        (1, 1, False, False), (2, 2, False, False), (3, 3, False, True),
        (2, 2, False, False), (1, 1, False, False), (0, 0, True, False),
    ]


def test_unbounded_is_never_full(FrameQueue):
    q = FrameQueue(0)
    for i in range(1000):
        q.put_nowait(i)
    assert q.full() is False
    assert q.qsize() == 1000
    assert q.stats()["high_water"] == 1000


def test_timeouts_raise_full_and_empty(FrameQueue):
    q = FrameQueue(1)
    with pytest.raises(Empty):
        q.get(timeout=0.01)
    with pytest.raises(Empty):
        q.get(True, 0.01)
    with pytest.raises(Empty):
        q.get(timeout=0)
    q.put(1)
    with pytest.raises(Full):
        q.put(2, timeout=0.01)
    with pytest.raises(Full):
        q.put(2, True, 0.01)
    with pytest.raises(Full):
        q.put(2, timeout=0)
    # failed timed operations left the queue exactly as it was
    assert q.qsize() == 1
    assert q.get_nowait() == 1
    s = q.stats()
    assert (s["puts"], s["gets"], s["size"]) == (1, 1, 0)


def test_integer_timeouts_accepted(FrameQueue):
    q = FrameQueue(1)
    q.put(1, timeout=1)
    assert q.get(timeout=1) == 1
    with pytest.raises(Empty):
        q.get(timeout=0)


def test_timeout_ignored_when_not_blocking(FrameQueue):
    # the stdlib ignores timeout when block is false; so does FrameQueue
    q = FrameQueue(1)
    q.put("a", False, -1)
    with pytest.raises(Full):
        q.put("b", False, "nonsense")
    assert q.get(False, -1) == "a"
    with pytest.raises(Empty):
        q.get(False, float("nan"))


@pytest.mark.parametrize("flag", [0, None, "", [], 0.0])
def test_block_flag_uses_truthiness_false(FrameQueue, flag):
    q = FrameQueue(1)
    q.put("a", flag)
    with pytest.raises(Full):
        q.put("b", flag)
    assert q.get(flag) == "a"
    with pytest.raises(Empty):
        q.get(flag)
    assert q.stats()["waits"] == 0


@pytest.mark.parametrize("flag", [1, "yes", [0], 2.5])
def test_block_flag_uses_truthiness_true(FrameQueue, flag):
    q = FrameQueue(1)
    q.put("a", flag, 0.01)
    with pytest.raises(Full):
        q.put("b", flag, 0.01)
    assert q.get(flag, 0.01) == "a"
    with pytest.raises(Empty):
        q.get(flag, 0.01)
    assert q.stats()["waits"] == 2


def test_blocked_get_woken_by_put(FrameQueue, live):
    q = FrameQueue()
    item = object()
    w = live.start(q.get)
    live.wait_for_waits(q, 1)
    assert not w.done
    q.put(item)
    assert w.value() is item
    assert q.stats()["waits"] == 1


def test_blocked_get_with_timeout_woken_by_put(FrameQueue, live):
    q = FrameQueue()
    w = live.start(q.get, timeout=60)
    live.wait_for_waits(q, 1)
    q.put("x")
    assert w.value() == "x"


def test_blocked_put_woken_by_get(FrameQueue, live):
    q = FrameQueue(1)
    q.put("first")
    w = live.start(q.put, "second")
    live.wait_for_waits(q, 1)
    assert not w.done
    assert q.qsize() == 1
    assert q.get() == "first"
    assert w.value() is None
    assert q.get_nowait() == "second"


def test_blocked_put_with_timeout_woken_by_get(FrameQueue, live):
    q = FrameQueue(1)
    q.put("first")
    w = live.start(q.put, "second", True, 60)
    live.wait_for_waits(q, 1)
    assert q.get() == "first"
    w.value()
    assert q.get_nowait() == "second"


def test_waits_counts_only_operations_that_blocked(FrameQueue):
    q = FrameQueue(1)
    q.put(1)            # room: no wait
    q.get()             # item there: no wait
    q.put(1, timeout=5)
    q.get(timeout=5)
    with pytest.raises(Empty):
        q.get_nowait()  # non-blocking failures never wait
    q.put(1)
    with pytest.raises(Full):
        q.put_nowait(2)
    assert q.stats()["waits"] == 0
    with pytest.raises(Full):
        q.put(2, timeout=0.01)   # blocked once
    q.get()
    with pytest.raises(Empty):
        q.get(timeout=0.01)      # blocked once
    assert q.stats()["waits"] == 2


# ---------------------------------------------------------------------------
# task_done / join / unfinished_tasks


def test_task_done_and_unfinished_tasks(FrameQueue):
    q = FrameQueue()
    for i in range(3):
        q.put(i)
    assert q.unfinished_tasks == 3
    q.get()
    assert q.unfinished_tasks == 3  # get does not finish a task
    q.task_done()
    assert q.unfinished_tasks == 2
    q.task_done()
    q.task_done()  # allowed before the item is got, as in the stdlib
    assert q.unfinished_tasks == 0
    with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
        q.task_done()
    assert q.unfinished_tasks == 0
    assert q.qsize() == 2


def test_join_returns_immediately_when_nothing_unfinished(FrameQueue, live):
    q = FrameQueue()
    live.start(q.join).value()
    q.put(1)
    q.get()
    q.task_done()
    live.start(q.join).value()


def test_join_waits_for_task_done(FrameQueue, live):
    q = FrameQueue()
    q.put(1)
    q.put(2)
    w = live.start(q.join)
    q.get()
    q.task_done()
    # One task is still open, so a correct join cannot have returned; the
    # short join only gives a wrong implementation a chance to show itself.
    w.thread.join(0.05)
    assert not w.done
    q.get()
    q.task_done()
    w.value()
    assert q.unfinished_tasks == 0


def test_many_joiners_released_together(FrameQueue, live):
    q = FrameQueue()
    q.put("x")
    joiners = [live.start(q.join) for _ in range(5)]
    q.get()
    q.task_done()
    for j in joiners:
        j.value()


# ---------------------------------------------------------------------------
# differential check against queue.Queue


def _outcome(fn):
    try:
        return ("ok", fn())
    except (Full, Empty, ShutDown, ValueError) as e:
        return ("raise", type(e).__name__, str(e) if isinstance(e, ValueError) else "")


def _random_program(rng, n_ops, with_shutdown):
    ops = []
    for i in range(n_ops):
        r = rng.random()
        if with_shutdown and r < 0.03:
            ops.append(("shutdown", rng.random() < 0.5))
        elif r < 0.30:
            ops.append(("put_nowait", i))
        elif r < 0.38:
            ops.append(("put_timeout0", i))
        elif r < 0.60:
            ops.append(("get_nowait",))
        elif r < 0.68:
            ops.append(("get_timeout0",))
        elif r < 0.80:
            ops.append(("task_done",))
        else:
            ops.append((rng.choice(["qsize", "empty", "full", "unfinished"]),))
    return ops


def _apply(q, op):
    name = op[0]
    if name == "put_nowait":
        return _outcome(lambda: q.put_nowait(op[1]))
    if name == "put_timeout0":
        return _outcome(lambda: q.put(op[1], True, 0))
    if name == "get_nowait":
        return _outcome(q.get_nowait)
    if name == "get_timeout0":
        return _outcome(lambda: q.get(True, 0))
    if name == "task_done":
        return _outcome(q.task_done)
    if name == "qsize":
        return q.qsize()
    if name == "empty":
        return q.empty()
    if name == "full":
        return q.full()
    if name == "unfinished":
        return q.unfinished_tasks
    if name == "shutdown":
        return _outcome(lambda: q.shutdown(immediate=op[1]))
    raise AssertionError(op)


@pytest.mark.parametrize("maxsize", [0, 1, 3])
@pytest.mark.parametrize("seed", range(4))
def test_matches_stdlib_queue_on_random_programs(FrameQueue, maxsize, seed):
    rng = random.Random(seed * 1000 + maxsize)
    program = _random_program(rng, 300, with_shutdown=False)
    ours, ref = FrameQueue(maxsize), queue.Queue(maxsize)
    for step, op in enumerate(program):
        got, want = _apply(ours, op), _apply(ref, op)
        assert got == want, f"step {step} {op}: FrameQueue {got!r} != queue.Queue {want!r}"


@pytest.mark.skipif(not HAS_STDLIB_SHUTDOWN, reason="queue.Queue.shutdown needs Python 3.13+")
@pytest.mark.parametrize("maxsize", [0, 2])
@pytest.mark.parametrize("seed", range(6))
def test_matches_stdlib_queue_with_shutdown(FrameQueue, maxsize, seed):
    rng = random.Random(seed * 7919 + maxsize)
    program = _random_program(rng, 200, with_shutdown=True)
    ours, ref = FrameQueue(maxsize), queue.Queue(maxsize)
    for step, op in enumerate(program):
        got, want = _apply(ours, op), _apply(ref, op)
        assert got == want, f"step {step} {op}: FrameQueue {got!r} != queue.Queue {want!r}"
        assert ours.is_shutdown == ref.is_shutdown


# ---------------------------------------------------------------------------
# shutdown (CPython 3.13 semantics)


def test_not_shut_down_initially_then_shut_down(FrameQueue):
    q = FrameQueue()
    assert q.is_shutdown is False
    q.shutdown()
    assert q.is_shutdown is True
    q.shutdown()  # idempotent
    assert q.is_shutdown is True


@pytest.mark.parametrize("immediate", [False, True])
@pytest.mark.parametrize("overflow", ["block", "drop_oldest", "drop_newest"])
def test_put_after_shutdown_raises(FrameQueue, overflow, immediate):
    q = FrameQueue(1, overflow)
    q.shutdown(immediate=immediate)
    for call in (
        lambda: q.put("x"),
        lambda: q.put("x", False),
        lambda: q.put("x", timeout=1),
        lambda: q.put_nowait("x"),
        lambda: q.put_many(["x", "y"]),
        lambda: q.put_many(["x"], False),
    ):
        with pytest.raises(ShutDown):
            call()
    s = q.stats()
    assert (s["puts"], s["size"], s["dropped"]) == (0, 0, 0)
    assert q.unfinished_tasks == 0


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
def test_put_after_shutdown_raises_even_when_full_with_drop_policy(FrameQueue, overflow):
    q = FrameQueue(1, overflow)
    q.put("kept")
    q.shutdown()
    with pytest.raises(ShutDown):
        q.put("new")
    assert q.get() == "kept"  # nothing evicted
    assert q.stats()["dropped"] == 0


def test_graceful_shutdown_lets_gets_drain_then_raises(FrameQueue):
    q = FrameQueue(5)
    for i in range(4):
        q.put(i)
    q.shutdown()
    assert q.qsize() == 4
    assert q.get() == 0
    assert q.get_nowait() == 1
    assert q.get(timeout=1) == 2
    assert q.get(False) == 3
    for call in (q.get, q.get_nowait, lambda: q.get(timeout=1), lambda: q.get(False),
                 lambda: q.get(timeout=0)):
        with pytest.raises(ShutDown):
            call()
    assert q.unfinished_tasks == 4  # shutdown(False) finishes nothing
    for _ in range(4):
        q.task_done()
    assert q.unfinished_tasks == 0
    q.join()  # returns: nothing unfinished


def test_graceful_shutdown_drains_get_many_and_get_latest(FrameQueue):
    q = FrameQueue()
    for i in range(5):
        q.put(i)
    q.shutdown()
    assert q.get_many(2) == [0, 1]
    assert q.get_latest() == 4  # 2, 3 discarded
    with pytest.raises(ShutDown):
        q.get_many(3)
    with pytest.raises(ShutDown):
        q.get_latest()
    with pytest.raises(ShutDown):
        q.get_many(1, False)
    with pytest.raises(ShutDown):
        q.get_latest(False)


def test_immediate_shutdown_empties_and_finishes_queued_tasks(FrameQueue):
    q = FrameQueue(10)
    for i in range(5):
        q.put(i)
    q.get()  # one got, not task_done: stays unfinished (as in CPython)
    q.shutdown(immediate=True)
    assert q.is_shutdown
    assert q.qsize() == 0 and q.empty()
    assert q.unfinished_tasks == 1
    s = q.stats()
    assert (s["puts"], s["gets"], s["cleared"], s["size"], s["dropped"]) == (5, 1, 4, 0, 0)
    with pytest.raises(ShutDown):
        q.get()
    with pytest.raises(ShutDown):
        q.get_nowait()
    q.task_done()
    q.join()


def test_shutdown_false_then_true_still_empties(FrameQueue):
    q = FrameQueue()
    for i in range(3):
        q.put(i)
    q.shutdown(immediate=False)
    assert q.qsize() == 3
    q.shutdown(immediate=True)
    assert q.qsize() == 0
    assert q.unfinished_tasks == 0
    assert q.stats()["cleared"] == 3
    with pytest.raises(ShutDown):
        q.get_nowait()


def test_shutdown_true_then_false_stays_empty_and_shut(FrameQueue):
    q = FrameQueue()
    q.put(1)
    q.shutdown(True)
    q.shutdown(False)
    assert q.is_shutdown and q.qsize() == 0
    with pytest.raises(ShutDown):
        q.put(2)


def test_immediate_shutdown_unblocks_join(FrameQueue, live):
    q = FrameQueue()
    for i in range(3):
        q.put(i)
    w = live.start(q.join)
    w.thread.join(0.05)
    assert not w.done
    q.shutdown(immediate=True)
    w.value()
    assert q.unfinished_tasks == 0


def test_graceful_shutdown_does_not_release_join_by_itself(FrameQueue, live):
    q = FrameQueue()
    q.put(1)
    w = live.start(q.join)
    q.shutdown()
    w.thread.join(0.05)
    assert not w.done  # CPython 3.13: only immediate=True finishes tasks
    assert q.get() == 1  # drain still works
    q.task_done()
    w.value()


@pytest.mark.parametrize("immediate", [False, True])
def test_blocked_get_woken_by_shutdown(FrameQueue, live, immediate):
    q = FrameQueue()
    getters = [live.start(q.get), live.start(q.get, timeout=60),
               live.start(q.get_latest), live.start(q.get_many, 4)]
    live.wait_for_waits(q, len(getters))
    q.shutdown(immediate=immediate)
    for g in getters:
        g.raised(ShutDown)


@pytest.mark.parametrize("immediate", [False, True])
def test_blocked_put_woken_by_shutdown(FrameQueue, live, immediate):
    q = FrameQueue(1)
    q.put("kept")
    putters = [live.start(q.put, "a"), live.start(q.put, "b", True, 60),
               live.start(q.put_many, ["c", "d"])]
    live.wait_for_waits(q, len(putters))
    q.shutdown(immediate=immediate)
    for p in putters:
        p.raised(ShutDown)
    if immediate:
        assert q.qsize() == 0
    else:
        assert q.get_nowait() == "kept"
        with pytest.raises(ShutDown):
            q.get_nowait()
    assert q.stats()["puts"] == 1


def test_put_many_partially_queued_when_shutdown_interrupts(FrameQueue, live):
    q = FrameQueue(2)
    q.put("x")
    w = live.start(q.put_many, ["a", "b", "c"])  # "a" fits; waits for "b"
    live.wait_for_waits(q, 1)
    q.shutdown()
    w.raised(ShutDown)
    assert live.drain(q) == ["x", "a"]


# ---------------------------------------------------------------------------
# repr


def test_repr(FrameQueue):
    q = FrameQueue(4, "drop_oldest")
    assert repr(q) == "<bufmgr.FrameQueue size=0 maxsize=4 overflow='drop_oldest' dropped=0>"
    for i in range(6):
        q.put(i)
    assert repr(q) == "<bufmgr.FrameQueue size=4 maxsize=4 overflow='drop_oldest' dropped=2>"
    q.shutdown()
    assert repr(q) == (
        "<bufmgr.FrameQueue size=4 maxsize=4 overflow='drop_oldest' dropped=2 shutdown>"
    )
    assert repr(FrameQueue()) == "<bufmgr.FrameQueue size=0 maxsize=0 overflow='block' dropped=0>"

