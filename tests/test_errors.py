"""Every bad input raises the right exception type with a message naming the
argument, and leaves the queue exactly as it was (stats, unfinished_tasks,
shutdown flag and contents compared before/after)."""

from __future__ import annotations

import copy
import math
import pickle
from fractions import Fraction

import pytest

from bufmgr import Empty, Full, ShutDown
from bufmgr._errors import TASK_DONE_TOO_MANY, pickle_error

POLICIES = ["block", "drop_oldest", "drop_newest"]


def snapshot(q):
    return (q.stats(), q.unfinished_tasks, q.qsize(), q.is_shutdown, q.maxsize, q.overflow)


def contents(q):
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except (Empty, ShutDown):
            return out


@pytest.fixture
def loaded(FrameQueue):
    """Factory: a queue holding two distinct objects (identity-checked)."""

    def make(maxsize=2, overflow="block"):
        q = FrameQueue(maxsize, overflow)
        items = [object(), object()]
        for it in items:
            q.put(it)
        return q, items

    return make


def assert_unchanged(q, before, items):
    assert snapshot(q) == before
    got = contents(q)
    assert len(got) == len(items) and all(a is b for a, b in zip(got, items))


# ---------------------------------------------------------------------------
# constructor


@pytest.mark.parametrize("overflow", ["bogus", "", "BLOCK", "drop-oldest", None, 1, b"block",
                                      ["block"]])
def test_bad_overflow(FrameQueue, overflow):
    with pytest.raises(ValueError, match="overflow"):
        FrameQueue(1, overflow)
    with pytest.raises(ValueError, match="overflow"):
        FrameQueue(maxsize=1, overflow=overflow)


@pytest.mark.parametrize("maxsize", [1.0, 3.5, "3", None, b"1", object(), [1], Fraction(3)])
def test_bad_maxsize_type(FrameQueue, maxsize):
    with pytest.raises(TypeError, match="maxsize"):
        FrameQueue(maxsize)


@pytest.mark.parametrize("maxsize", [(1 << 62) + 1, 1 << 63, 1 << 64, 10**40])
def test_maxsize_too_large(FrameQueue, maxsize):
    with pytest.raises(ValueError, match="maxsize"):
        FrameQueue(maxsize)


def test_maxsize_limit_itself_is_fine(FrameQueue):
    q = FrameQueue(1 << 62)  # no storage is allocated up front
    assert q.maxsize == 1 << 62
    q.put(1)
    assert q.get() == 1


class MyInt(int):
    pass


@pytest.mark.parametrize("given, expected, bound", [(MyInt(4), 4, 4), (True, 1, 1), (False, 0, 0),
                                                   (MyInt(-3), -3, 0)],
                         ids=["MyInt4", "True", "False", "MyInt-3"])
def test_maxsize_int_subclass_normalised_to_plain_int(FrameQueue, given, expected, bound):
    # int subclasses (bool included) pass check_maxsize; the queue reports a
    # plain int everywhere, identically in both implementations: `maxsize` as
    # given (like queue.Queue), stats()["maxsize"] the bound (0 = unbounded)
    q = FrameQueue(given)
    assert q.maxsize == expected and type(q.maxsize) is int
    assert type(q.stats()["maxsize"]) is int and q.stats()["maxsize"] == bound
    assert f" maxsize={expected} " in repr(q)


def test_constructor_arity(FrameQueue):
    with pytest.raises(TypeError):
        FrameQueue(1, "block", "extra")
    with pytest.raises(TypeError):
        FrameQueue(size=1)


# ---------------------------------------------------------------------------
# timeouts

BAD_TIMEOUTS = [
    (-1, ValueError),
    (-0.001, ValueError),
    (-math.inf, ValueError),
    (math.nan, ValueError),
    ("1", TypeError),
    (b"1", TypeError),
    (True, TypeError),
    (False, TypeError),
    ([1], TypeError),
    (1j, TypeError),
]

# every blocking call that takes a timeout, as (name, call(q, timeout))
BLOCKING_CALLS = {
    "put": lambda q, t: q.put("new", True, t),
    "put_kw": lambda q, t: q.put("new", block=True, timeout=t),
    "put_many": lambda q, t: q.put_many(["n1", "n2"], True, t),
    "get": lambda q, t: q.get(True, t),
    "get_kw": lambda q, t: q.get(timeout=t),
    "get_latest": lambda q, t: q.get_latest(True, t),
    "get_many": lambda q, t: q.get_many(5, True, t),
}


@pytest.mark.parametrize("call", list(BLOCKING_CALLS), ids=str)
@pytest.mark.parametrize("timeout, exc", BAD_TIMEOUTS, ids=repr)
@pytest.mark.parametrize("policy", POLICIES)
def test_bad_timeout_validated_before_touching_the_queue(loaded, call, timeout, exc, policy):
    # maxsize 3 holding 2 items: every call could succeed without waiting,
    # yet the timeout is still validated (spec: whenever block is true)
    q, items = loaded(3, policy)
    before = snapshot(q)
    with pytest.raises(exc, match="timeout"):
        BLOCKING_CALLS[call](q, timeout)
    assert_unchanged(q, before, items)


@pytest.mark.parametrize("call", ["get", "get_latest", "get_many"])
@pytest.mark.parametrize("timeout, exc", BAD_TIMEOUTS[:4], ids=repr)
def test_bad_timeout_on_empty_queue_raises_not_waits(FrameQueue, live, call, timeout, exc):
    q = FrameQueue()
    w = live.start(BLOCKING_CALLS[call], q, timeout)
    assert isinstance(w.join().exc, exc)
    assert q.stats()["waits"] == 0


def test_bad_timeout_on_full_queue_raises_not_waits(FrameQueue, live):
    q = FrameQueue(1)
    q.put("a")
    for t in (-1, math.nan, "1", True):
        w = live.start(q.put, "b", True, t)
        assert isinstance(w.join().exc, (ValueError, TypeError))
    assert q.stats()["waits"] == 0
    assert contents(q) == ["a"]


@pytest.mark.parametrize("timeout", [0, 0.0, 1, 2.5, Fraction(1, 2), 10**6, 1e300, math.inf])
def test_good_timeouts_accepted(FrameQueue, timeout):
    q = FrameQueue(3)
    q.put(1, True, timeout)
    q.put_many([2, 3], True, timeout)
    assert q.get(True, timeout) == 1
    assert q.get_many(1, True, timeout) == [2]
    assert q.get_latest(True, timeout) == 3


@pytest.mark.parametrize("timeout", [math.inf, 1e300, 10**30, None])
def test_infinite_or_huge_timeout_waits_until_woken(FrameQueue, live, timeout):
    q = FrameQueue(1)
    g = live.start(q.get, True, timeout)
    live.wait_for_waits(q, 1)
    assert not g.done
    q.put("first")
    assert g.value() == "first"
    q.put("held")
    p = live.start(q.put, "second", True, timeout)
    live.wait_for_waits(q, 2)
    assert not p.done
    assert q.get() == "held"
    p.value()
    assert q.get_nowait() == "second"


# ---------------------------------------------------------------------------
# get_many max_items


@pytest.mark.parametrize("max_items, exc", [
    (0, ValueError), (-1, ValueError), (-(10**30), ValueError),
    ("3", TypeError), (True, TypeError), (False, TypeError), (2.0, TypeError),
    (None, TypeError), (Fraction(2), TypeError),
])
@pytest.mark.parametrize("block", [True, False])
def test_bad_max_items(loaded, max_items, exc, block):
    q, items = loaded()
    before = snapshot(q)
    with pytest.raises(exc, match="max_items"):
        q.get_many(max_items, block)
    assert_unchanged(q, before, items)


@pytest.mark.parametrize("max_items", [0, "3", True])
def test_bad_max_items_on_empty_queue_is_not_empty_error(FrameQueue, max_items):
    q = FrameQueue()
    with pytest.raises((TypeError, ValueError), match="max_items"):
        q.get_many(max_items, False)
    with pytest.raises((TypeError, ValueError), match="max_items"):
        q.get_many(max_items, True, 0.01)
    assert q.stats()["waits"] == 0


def test_huge_max_items_is_fine(FrameQueue):
    q = FrameQueue()
    q.put_many([1, 2])
    assert q.get_many(10**30) == [1, 2]


# ---------------------------------------------------------------------------
# task_done


def test_task_done_too_many(FrameQueue):
    q = FrameQueue()
    with pytest.raises(ValueError) as ei:
        q.task_done()
    assert str(ei.value) == TASK_DONE_TOO_MANY
    q.put("a")
    q.get()
    q.task_done()
    before = snapshot(q)
    with pytest.raises(ValueError, match=r"task_done\(\) called too many times"):
        q.task_done()
    assert snapshot(q) == before


def test_task_done_too_many_after_shutdown(FrameQueue):
    q = FrameQueue()
    q.shutdown(immediate=True)
    with pytest.raises(ValueError, match=r"task_done\(\) called too many times"):
        q.task_done()


# ---------------------------------------------------------------------------
# failures that are not bad input leave the queue unchanged too


def test_full_leaves_queue_unchanged(loaded):
    q, items = loaded(2)
    before = snapshot(q)
    with pytest.raises(Full):
        q.put_nowait("x")
    with pytest.raises(Full):
        q.put("x", timeout=0.01)
    after = snapshot(q)
    assert after[0]["waits"] == before[0]["waits"] + 1
    after[0]["waits"] = before[0]["waits"]
    assert after == before
    got = contents(q)
    assert all(a is b for a, b in zip(got, items)) and len(got) == 2


def test_shutdown_put_leaves_queue_unchanged(loaded):
    q, items = loaded(5)
    q.shutdown()
    before = snapshot(q)
    for call in (lambda: q.put("x"), lambda: q.put_nowait("x"), lambda: q.put_many(["x"])):
        with pytest.raises(ShutDown):
            call()
    assert_unchanged(q, before, items)


def test_put_many_with_failing_iterable_queues_nothing(loaded):
    q, items = loaded(5)
    before = snapshot(q)

    def gen():
        yield "p"
        yield "q"
        raise RuntimeError("boom from the iterable")

    with pytest.raises(RuntimeError, match="boom"):
        q.put_many(gen())
    assert_unchanged(q, before, items)


@pytest.mark.parametrize("items", [None, 5, object()])
def test_put_many_non_iterable(loaded, items):
    q, queued = loaded(5)
    before = snapshot(q)
    with pytest.raises(TypeError):
        q.put_many(items)
    assert_unchanged(q, before, queued)


def test_wrong_arity(loaded):
    q, items = loaded(5)
    before = snapshot(q)
    for call in (lambda: q.put(), lambda: q.get(True, 1, 2), lambda: q.get_many(),
                 lambda: q.put_nowait(), lambda: q.task_done(1), lambda: q.put(1, bogus=1)):
        with pytest.raises(TypeError):
            call()
    assert_unchanged(q, before, items)


# ---------------------------------------------------------------------------
# pickling / copying


PICKLE_MESSAGE = str(pickle_error("FrameQueue"))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_refused(loaded, protocol):
    q, items = loaded(3)
    before = snapshot(q)
    with pytest.raises(TypeError) as ei:
        pickle.dumps(q, protocol)
    assert str(ei.value) == PICKLE_MESSAGE
    assert "FrameQueue" in str(ei.value)
    assert_unchanged(q, before, items)


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy])
def test_copy_refused(loaded, how):
    q, items = loaded(3)
    before = snapshot(q)
    with pytest.raises(TypeError) as ei:
        how(q)
    assert str(ei.value) == PICKLE_MESSAGE
    assert_unchanged(q, before, items)


def test_reduce_refused(FrameQueue):
    q = FrameQueue()
    with pytest.raises(TypeError, match="FrameQueue"):
        q.__reduce__()
    with pytest.raises(TypeError, match="FrameQueue"):
        q.__reduce_ex__(2)
