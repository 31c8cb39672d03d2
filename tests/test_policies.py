"""Overflow policies, get_latest, put_many/get_many, clear and stats().

A small executable model of the spec (``Model``) replays random
single-threaded programs and every result and every stats() field is
compared after each step.
"""

from __future__ import annotations

import random
from collections import deque

import pytest

from bufmgr import Empty, Full, ShutDown

STATS_KEYS = {"puts", "gets", "dropped", "cleared", "high_water", "size", "maxsize", "waits"}
POLICIES = ["block", "drop_oldest", "drop_newest"]


def check_invariant(q):
    s = q.stats()
    assert s["puts"] == s["gets"] + s["dropped"] + s["cleared"] + s["size"], s
    assert s["size"] == q.qsize()
    assert s["high_water"] >= s["size"]
    return s


def drain_all(q):
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except Empty:
            return out


# ---------------------------------------------------------------------------
# drop_oldest / drop_newest


def test_drop_oldest_evicts_and_returns_the_oldest(FrameQueue):
    q = FrameQueue(3, "drop_oldest")
    items = [object() for _ in range(6)]
    returned = [q.put(it) for it in items]
    assert returned[:3] == [None, None, None]
    assert returned[3] is items[0]
    assert returned[4] is items[1]
    assert returned[5] is items[2]
    out = [q.get_nowait() for _ in range(3)]
    assert all(a is b for a, b in zip(out, items[3:]))
    s = check_invariant(q)
    assert (s["puts"], s["gets"], s["dropped"], s["size"], s["high_water"]) == (6, 3, 3, 0, 3)
    assert q.unfinished_tasks == 3  # 6 put - 3 evicted; the 3 got are not done yet


def test_drop_newest_refuses_and_returns_the_same_object(FrameQueue):
    q = FrameQueue(2, "drop_newest")
    items = [object() for _ in range(5)]
    returned = [q.put(it) for it in items]
    assert returned[:2] == [None, None]
    for r, it in zip(returned[2:], items[2:]):
        assert r is it
    assert [q.get_nowait() for _ in range(2)] == items[:2]
    s = check_invariant(q)
    assert (s["puts"], s["gets"], s["dropped"], s["size"], s["high_water"]) == (5, 2, 3, 0, 2)
    assert q.unfinished_tasks == 2  # refused items never counted


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_drop_policies_never_block_and_ignore_block_flag(FrameQueue, live, policy):
    q = FrameQueue(1, policy)
    q.put("a")

    def hammer():
        out = [q.put("b"), q.put("c", True, None), q.put("d", True, 10),
               q.put("e", False), q.put_nowait("f")]
        out.extend(q.put_many(["g", "h"]))
        return out

    dropped = live.start(hammer).value()
    if policy == "drop_oldest":
        assert dropped == ["a", "b", "c", "d", "e", "f", "g"]
        assert q.get_nowait() == "h"
    else:
        assert dropped == ["b", "c", "d", "e", "f", "g", "h"]
        assert q.get_nowait() == "a"
    assert q.stats()["waits"] == 0
    check_invariant(q)


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_drop_policies_report_full(FrameQueue, policy):
    q = FrameQueue(2, policy)
    assert not q.full()
    q.put(1)
    q.put(2)
    assert q.full()
    q.put(3)
    assert q.full() and q.qsize() == 2


def test_unbounded_queue_never_drops(FrameQueue):
    q = FrameQueue(0, "block")
    assert all(q.put(i) is None for i in range(500))
    s = check_invariant(q)
    assert (s["puts"], s["dropped"], s["size"]) == (500, 0, 500)
    assert not q.full()


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
@pytest.mark.parametrize("maxsize", [0, -1, -(10**30)])
def test_drop_policy_needs_a_bound(FrameQueue, policy, maxsize):
    # unbounded, a drop policy would silently never drop: refuse it
    with pytest.raises(ValueError, match=r"overflow=.*maxsize"):
        FrameQueue(maxsize, policy)
    with pytest.raises(ValueError, match=r"overflow=.*maxsize"):
        FrameQueue(maxsize=maxsize, overflow=policy)


def test_drop_oldest_maxsize_one_keeps_the_latest_frame(FrameQueue):
    q = FrameQueue(1, "drop_oldest")
    for i in range(100):
        q.put(i)
    assert q.get_nowait() == 99
    assert q.stats()["dropped"] == 99


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_put_returns_none_when_there_is_room(FrameQueue, policy):
    q = FrameQueue(3, policy)
    assert q.put(1) is None
    assert q.put_nowait(2) is None
    q.get()
    assert q.put(3) is None and q.put(4) is None
    assert q.stats()["dropped"] == 0


# ---------------------------------------------------------------------------
# get_latest


def test_get_latest_returns_newest_and_discards_the_rest(FrameQueue, live):
    q = FrameQueue()
    items = [object() for _ in range(5)]
    for it in items:
        q.put(it)
    assert q.get_latest() is items[-1]
    assert q.qsize() == 0
    s = check_invariant(q)
    assert (s["puts"], s["gets"], s["dropped"], s["cleared"]) == (5, 1, 4, 0)
    assert q.unfinished_tasks == 1  # discarded ones are done; the returned one is not
    q.task_done()
    live.start(q.join).value()


def test_get_latest_single_item_drops_nothing(FrameQueue):
    q = FrameQueue()
    q.put("only")
    assert q.get_latest(False) == "only"
    assert q.stats()["dropped"] == 0


def test_get_latest_empty(FrameQueue):
    q = FrameQueue()
    with pytest.raises(Empty):
        q.get_latest(False)
    with pytest.raises(Empty):
        q.get_latest(timeout=0.01)
    s = q.stats()
    assert (s["gets"], s["dropped"]) == (0, 0)


def test_get_latest_blocks_like_get(FrameQueue, live):
    q = FrameQueue()
    w = live.start(q.get_latest)
    live.wait_for_waits(q, 1)
    q.put_many(["a", "b", "c"])
    got = w.value()
    rest = live.drain(q)
    # it woke on the first item or later; never returns an older one
    # than what remains, and accounting is exact either way
    assert got in ("a", "b", "c")
    assert rest == [x for x in ("a", "b", "c") if x > got]
    check_invariant(q)


def test_get_latest_frees_room_for_blocked_putter(FrameQueue, live):
    q = FrameQueue(2)
    q.put(1)
    q.put(2)
    w = live.start(q.put, 3)
    live.wait_for_waits(q, 1)
    assert q.get_latest() == 2
    w.value()
    assert q.get_nowait() == 3


# ---------------------------------------------------------------------------
# put_many / get_many


def test_put_many_unbounded(FrameQueue):
    q = FrameQueue(0, "block")
    assert q.put_many(range(10)) == []
    assert q.put_many([]) == []
    assert drain_all(q) == list(range(10))
    s = check_invariant(q)
    assert s["puts"] == 10


def test_put_many_drop_oldest_returns_evicted_in_order(FrameQueue):
    q = FrameQueue(3, "drop_oldest")
    q.put("x")
    assert q.put_many(["a", "b", "c", "d", "e"]) == ["x", "a", "b"]
    assert drain_all(q) == ["c", "d", "e"]
    s = check_invariant(q)
    assert (s["puts"], s["dropped"]) == (6, 3)
    assert q.unfinished_tasks == 3


def test_put_many_drop_newest_returns_refused_in_order(FrameQueue):
    q = FrameQueue(3, "drop_newest")
    q.put("x")
    items = [object() for _ in range(5)]
    dropped = q.put_many(items)
    assert len(dropped) == 3 and all(a is b for a, b in zip(dropped, items[2:]))
    out = drain_all(q)
    assert out[0] == "x" and out[1] is items[0] and out[2] is items[1]
    s = check_invariant(q)
    assert (s["puts"], s["dropped"]) == (6, 3)
    assert q.unfinished_tasks == 3


def test_put_many_consumes_any_iterable(FrameQueue):
    q = FrameQueue()
    q.put_many(x * 2 for x in range(3))
    q.put_many(iter((7, 8)))
    q.put_many({"k": 1})
    q.put_many("ab")
    assert drain_all(q) == [0, 2, 4, 7, 8, "k", "a", "b"]


def test_put_many_block_nonblocking_stops_early(FrameQueue):
    q = FrameQueue(3)
    q.put("x")
    with pytest.raises(Full):
        q.put_many(["a", "b", "c", "d"], block=False)
    assert drain_all(q) == ["x", "a", "b"]  # items before the failing one stay
    s = check_invariant(q)
    assert s["puts"] == 3
    assert q.unfinished_tasks == 3


def test_put_many_timeout_is_a_total_deadline(FrameQueue):
    q = FrameQueue(2)
    with pytest.raises(Full):
        q.put_many([1, 2, 3, 4], timeout=0.05)
    assert drain_all(q) == [1, 2]
    assert q.stats()["waits"] == 1


def test_put_many_blocks_for_room_for_the_rest(FrameQueue, live):
    q = FrameQueue(2)
    w = live.start(q.put_many, list(range(10)))
    got = []
    while len(got) < 10:
        got.append(q.get(timeout=live.DEADLINE_S))
    assert w.value() == []
    assert got == list(range(10))
    assert q.stats()["waits"] >= 1


def test_get_many_takes_up_to_max_items(FrameQueue):
    q = FrameQueue()
    q.put_many(range(5))
    assert q.get_many(2) == [0, 1]
    assert q.get_many(10) == [2, 3, 4]
    with pytest.raises(Empty):
        q.get_many(3, False)
    with pytest.raises(Empty):
        q.get_many(3, timeout=0.01)
    s = check_invariant(q)
    assert s["gets"] == 5


def test_get_many_returns_what_is_there_without_waiting_for_more(FrameQueue, live):
    q = FrameQueue()
    q.put_many([1, 2])
    assert live.start(q.get_many, 100).value() == [1, 2]
    assert q.stats()["waits"] == 0


def test_get_many_blocks_for_the_first_item(FrameQueue, live):
    q = FrameQueue()
    w = live.start(q.get_many, 10, True, 60)
    live.wait_for_waits(q, 1)
    q.put_many(["a", "b", "c"])
    got = w.value()
    rest = live.drain(q)
    assert got and got + rest == ["a", "b", "c"]
    check_invariant(q)


def test_get_many_wakes_blocked_putters(FrameQueue, live):
    q = FrameQueue(2)
    q.put_many([1, 2])
    p1, p2 = live.start(q.put, 3), live.start(q.put, 4)
    live.wait_for_waits(q, 2)
    assert q.get_many(2) == [1, 2]
    p1.value()
    p2.value()
    assert sorted(live.drain(q)) == [3, 4]


# ---------------------------------------------------------------------------
# clear


def test_clear(FrameQueue, live):
    q = FrameQueue()
    assert q.clear() == 0
    q.put_many(range(4))
    q.get()
    assert q.clear() == 3
    assert q.qsize() == 0
    s = check_invariant(q)
    assert (s["puts"], s["gets"], s["cleared"], s["dropped"]) == (4, 1, 3, 0)
    assert q.unfinished_tasks == 1  # cleared items count as done
    q.task_done()
    live.start(q.join).value()
    q.put("after")
    assert q.get() == "after"


def test_clear_wakes_blocked_putters(FrameQueue, live):
    q = FrameQueue(2)
    q.put_many([1, 2])
    p1, p2 = live.start(q.put, 3), live.start(q.put, 4)
    live.wait_for_waits(q, 2)
    assert q.clear() == 2
    p1.value()
    p2.value()
    assert sorted(live.drain(q)) == [3, 4]


def test_clear_releases_join(FrameQueue, live):
    q = FrameQueue()
    q.put_many("abc")
    w = live.start(q.join)
    w.thread.join(0.05)
    assert not w.done
    q.clear()
    w.value()


# ---------------------------------------------------------------------------
# stats()


def test_stats_keys_and_types(FrameQueue):
    s = FrameQueue(3).stats()
    assert set(s) == STATS_KEYS
    assert all(type(v) is int for v in s.values()), s
    assert s == dict(puts=0, gets=0, dropped=0, cleared=0, high_water=0, size=0, maxsize=3, waits=0)


def test_stats_returns_a_fresh_snapshot(FrameQueue):
    q = FrameQueue()
    s = q.stats()
    s["puts"] = 99
    q.put(1)
    assert q.stats()["puts"] == 1
    assert s["puts"] == 99


def test_stats_exact_values_block(FrameQueue):
    q = FrameQueue(3)
    q.put_many([1, 2, 3])
    assert q.get() == 1
    q.put_nowait(4)
    with pytest.raises(Full):
        q.put_nowait(5)
    assert q.get_many(2) == [2, 3]
    assert q.clear() == 1
    assert q.stats() == dict(puts=4, gets=3, dropped=0, cleared=1, high_water=3, size=0,
                             maxsize=3, waits=0)
    with pytest.raises(Empty):
        q.get(timeout=0.01)
    q.put(6)
    q.put(7)
    assert q.get_latest() == 7
    assert q.stats() == dict(puts=6, gets=4, dropped=1, cleared=1, high_water=3, size=0,
                             maxsize=3, waits=1)


def test_stats_exact_values_drop_oldest(FrameQueue):
    q = FrameQueue(2, "drop_oldest")
    assert [q.put(i) for i in range(1, 6)] == [None, None, 1, 2, 3]
    assert q.stats() == dict(puts=5, gets=0, dropped=3, cleared=0, high_water=2, size=2,
                             maxsize=2, waits=0)
    assert q.get_latest() == 5
    assert q.stats() == dict(puts=5, gets=1, dropped=4, cleared=0, high_water=2, size=0,
                             maxsize=2, waits=0)
    assert q.unfinished_tasks == 1


def test_stats_exact_values_drop_newest(FrameQueue):
    q = FrameQueue(2, "drop_newest")
    assert [q.put(i) for i in range(1, 6)] == [None, None, 3, 4, 5]
    q.shutdown(immediate=True)
    assert q.stats() == dict(puts=5, gets=0, dropped=3, cleared=2, high_water=2, size=0,
                             maxsize=2, waits=0)


def test_high_water_is_a_maximum(FrameQueue):
    q = FrameQueue()
    q.put_many(range(7))
    drain_all(q)
    q.put_many(range(3))
    s = q.stats()
    assert (s["high_water"], s["size"]) == (7, 3)


# ---------------------------------------------------------------------------
# join never hangs with drop policies


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_join_never_hangs_with_drop_policies(FrameQueue, live, policy):
    q = FrameQueue(3, policy)
    for i in range(20):
        q.put(i)
    assert q.unfinished_tasks == 3
    for _ in range(3):
        q.get()
        q.task_done()
    assert q.unfinished_tasks == 0
    live.start(q.join).value()


def test_join_with_drop_oldest_concurrent_consumer(FrameQueue, live):
    q = FrameQueue(4, "drop_oldest")

    def consumer():
        n = 0
        while True:
            try:
                q.get(timeout=live.DEADLINE_S)
            except ShutDown:
                return n
            q.task_done()
            n += 1

    c = live.start(consumer)
    for i in range(2000):
        q.put(i)
    live.start(q.join).value()  # evicted items count as done: join returns
    q.shutdown()
    consumed = c.value()
    s = check_invariant(q)
    assert s["gets"] == consumed
    assert s["dropped"] + consumed == 2000


# ---------------------------------------------------------------------------
# model-based random programs


class Model:
    """Reference semantics of the spec for non-blocking operations."""

    def __init__(self, maxsize, policy):
        self.maxsize, self.policy = maxsize, policy
        self.items = deque()
        self.shut = False
        self.unfinished = 0
        self.st = dict(puts=0, gets=0, dropped=0, cleared=0, high_water=0, size=0,
                       maxsize=maxsize, waits=0)

    def _retire(self, n):
        self.unfinished = max(0, self.unfinished - n)

    def _full(self):
        return self.maxsize > 0 and len(self.items) >= self.maxsize

    def put(self, item):
        if self.shut:
            raise ShutDown
        dropped = None
        if self._full():
            if self.policy == "block":
                raise Full
            self.st["puts"] += 1
            self.st["dropped"] += 1
            if self.policy == "drop_newest":
                return item
            dropped = self.items.popleft()
            self._retire(1)
            self.st["puts"] -= 1  # counted again below
        self.items.append(item)
        self.st["puts"] += 1
        self.unfinished += 1
        self.st["high_water"] = max(self.st["high_water"], len(self.items))
        return dropped

    def put_many(self, items):
        out = []
        for it in items:
            d = self.put(it)
            if d is not None:
                out.append(d)
        return out

    def _take_check(self):
        if not self.items:
            raise ShutDown if self.shut else Empty

    def get(self):
        self._take_check()
        self.st["gets"] += 1
        return self.items.popleft()

    def get_latest(self):
        self._take_check()
        item = self.items.pop()
        n = len(self.items)
        self.items.clear()
        self.st["gets"] += 1
        self.st["dropped"] += n
        self._retire(n)
        return item

    def get_many(self, k):
        self._take_check()
        out = [self.items.popleft() for _ in range(min(k, len(self.items)))]
        self.st["gets"] += len(out)
        return out

    def clear(self):
        n = len(self.items)
        self.items.clear()
        self.st["cleared"] += n
        self._retire(n)
        return n

    def task_done(self):
        if self.unfinished == 0:
            raise ValueError("task_done() called too many times")
        self.unfinished -= 1

    def shutdown(self, immediate):
        self.shut = True
        if immediate:
            self.clear()

    def stats(self):
        return dict(self.st, size=len(self.items))


def _run(fn):
    try:
        return ("ok", fn())
    except (Full, Empty, ShutDown, ValueError) as e:
        return ("raise", type(e).__name__)


# a drop policy needs a bound (test_drop_policy_needs_a_bound): 0 only with "block"
@pytest.mark.parametrize("policy, maxsize", [(p, m) for p in POLICIES for m in (0, 1, 4) if m or p == "block"])
@pytest.mark.parametrize("seed", range(3))
def test_matches_model_on_random_programs(FrameQueue, policy, maxsize, seed):
    rng = random.Random(POLICIES.index(policy) * 1000 + maxsize * 10 + seed)
    q, m = FrameQueue(maxsize, policy), Model(maxsize, policy)
    counter = iter(range(10**9))
    for step in range(400):
        r = rng.random()
        if r < 0.005:
            imm = rng.random() < 0.5
            op = ("shutdown", imm)
            got, want = _run(lambda: q.shutdown(imm)), _run(lambda: m.shutdown(imm))
        elif r < 0.30:
            item = next(counter)
            op = ("put", item)
            if rng.random() < 0.5:
                got, want = _run(lambda: q.put_nowait(item)), _run(lambda: m.put(item))
            else:
                got, want = _run(lambda: q.put(item, False)), _run(lambda: m.put(item))
        elif r < 0.40:
            batch = [next(counter) for _ in range(rng.randint(1, 6))]
            op = ("put_many", batch)
            got, want = _run(lambda: q.put_many(batch, False)), _run(lambda: m.put_many(batch))
        elif r < 0.60:
            op = ("get",)
            got, want = _run(q.get_nowait), _run(m.get)
        elif r < 0.67:
            op = ("get_latest",)
            got, want = _run(lambda: q.get_latest(False)), _run(m.get_latest)
        elif r < 0.77:
            k = rng.randint(1, 5)
            op = ("get_many", k)
            got, want = _run(lambda: q.get_many(k, False)), _run(lambda: m.get_many(k))
        elif r < 0.80:
            op = ("clear",)
            got, want = _run(q.clear), _run(m.clear)
        elif r < 0.95:
            # task_done only for items already taken out, so the clamp-at-0
            # rule (whose order vs. eviction is unspecified) never triggers.
            if m.unfinished > len(m.items) or rng.random() < 0.1 and m.unfinished == 0:
                op = ("task_done",)
                got, want = _run(q.task_done), _run(m.task_done)
            else:
                continue
        else:
            op = ("peek",)
            got = (q.qsize(), len(q), q.empty(), q.full(), q.is_shutdown)
            want = (len(m.items),) * 2 + (not m.items, m._full(), m.shut)
        assert got == want, f"step {step} {op}: FrameQueue {got!r} != model {want!r}"
        assert q.stats() == m.stats(), f"step {step} {op}"
        assert q.unfinished_tasks == m.unfinished, f"step {step} {op}"
        check_invariant(q)
