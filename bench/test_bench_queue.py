"""pytest-benchmark suite: FrameQueue against the stdlib queues, side by side.

    pytest bench --benchmark-only --benchmark-group-by=group      # compare
    pytest bench --benchmark-only --benchmark-save=before         # keep a run
    pytest bench --benchmark-only --benchmark-compare             # vs the last saved
    pytest bench --benchmark-disable                              # smoke run (CI), seconds

Groups (one per scenario; the implementations are the parametrize ids, so
``--benchmark-group-by=group`` puts them in one table):

* ``pair``    -- ``put_nowait(x); get_nowait()`` x 1000, one thread.
* ``timeout`` -- ``put(x, timeout=0.5); get(timeout=0.5)`` x 1000, no wait needed.
* ``2Px2C``   -- 2 producers x 2 consumers, blocking put/get on a bounded
  queue (maxsize 256), 2 x 10,000 distinct 64-byte items per round; every
  item is checked to arrive exactly once. Time is per round: items/s =
  20,000 / time (``extra_info["items"]``).

Implementation ids: ``FrameQueue-C`` (``bufmgr._ring``; an ImportError is an
error, skipped only with BUFMGR_NO_EXTENSIONS=1), ``FrameQueue-pure``,
``queue.Queue``, ``queue.SimpleQueue`` (unbounded), ``deque-maxlen`` (pair
only: it has no blocking or timeout API). At the end of a timed run the
terminal summary prints the bufmgr targets as ratios of this run's numbers.
"""

from __future__ import annotations

import collections
import os
import queue
import threading

import pytest

pytest.importorskip("pytest_benchmark")

NO_EXTENSIONS = os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0")

C_ID = "FrameQueue-C"
PURE_ID = "FrameQueue-pure"
QUEUE_ID = "queue.Queue"
SIMPLE_ID = "queue.SimpleQueue"
DEQUE_ID = "deque-maxlen"

QUEUE_IDS = (C_ID, PURE_ID, QUEUE_ID, SIMPLE_ID)
PAIR_IDS = QUEUE_IDS + (DEQUE_ID,)

GROUP_PAIR = "pair"
GROUP_TIMEOUT = "timeout"
GROUP_THREADS = "2Px2C"

OPS = 1000  # put+get pairs per benchmarked call
ITEM = b"x" * 64
TIMEOUT = 0.5

THREAD_MAXSIZE = 256
ITEMS_PER_PRODUCER = 10_000
ITEMS_PER_PRODUCER_SMOKE = 1_000  # with --benchmark-disable
THREAD_ROUNDS = 7
JOIN_DEADLINE_S = 60.0


def make_queue(impl: str, maxsize: int = 1024):
    if impl == C_ID:
        if NO_EXTENSIONS:
            pytest.skip("BUFMGR_NO_EXTENSIONS=1: compiled FrameQueue not benchmarked")
        from bufmgr._ring import FrameQueue  # an ImportError here is a failure, not a skip

        return FrameQueue(maxsize)
    if impl == PURE_ID:
        from bufmgr._pyqueue import FrameQueue

        return FrameQueue(maxsize)
    if impl == QUEUE_ID:
        return queue.Queue(maxsize)
    if impl == SIMPLE_ID:
        return queue.SimpleQueue()
    if impl == DEQUE_ID:
        return collections.deque(maxlen=maxsize)
    raise AssertionError(impl)


# --------------------------------------------------------------------------
# one thread


@pytest.mark.benchmark(group=GROUP_PAIR)
@pytest.mark.parametrize("impl", PAIR_IDS)
def test_pair(benchmark, impl):
    q = make_queue(impl)
    if impl == DEQUE_ID:
        put, get = q.append, q.popleft
    else:
        put, get = q.put_nowait, q.get_nowait
    benchmark.extra_info["ops_per_call"] = OPS

    def pairs(item=ITEM, r=range(OPS)):
        for _ in r:
            put(item)
            get()

    benchmark(pairs)
    assert len(q) == 0 if impl == DEQUE_ID else q.empty()


@pytest.mark.benchmark(group=GROUP_TIMEOUT)
@pytest.mark.parametrize("impl", QUEUE_IDS)
def test_timeout(benchmark, impl):
    q = make_queue(impl)
    put, get = q.put, q.get
    benchmark.extra_info["ops_per_call"] = OPS

    def pairs(item=ITEM, r=range(OPS), timeout=TIMEOUT):
        for _ in r:
            put(item, timeout=timeout)
            get(timeout=timeout)

    benchmark(pairs)
    assert q.empty()


# --------------------------------------------------------------------------
# 2 producers x 2 consumers


class _Round:
    """One round: threads started (untimed), released and joined (timed)."""

    def __init__(self, impl: str, per_producer: int, producers: int = 2, consumers: int = 2):
        self.q = q = make_queue(impl, THREAD_MAXSIZE)
        self.items = [
            [(p << 32 | i).to_bytes(8, "little") + ITEM[8:] for i in range(per_producer)]
            for p in range(producers)
        ]
        self.got: list[list[bytes]] = [[] for _ in range(consumers)]
        self.errors: list[BaseException] = []
        self.go = threading.Barrier(producers + consumers + 1)
        put, get = q.put, q.get

        def produce(items):
            try:
                self.go.wait()
                for item in items:
                    put(item)
            except BaseException as e:  # noqa: BLE001 - surfaced by check()
                self.errors.append(e)

        def consume(out):
            append = out.append
            try:
                self.go.wait()
                while True:
                    item = get()
                    if item is None:
                        return
                    append(item)
            except BaseException as e:  # noqa: BLE001
                self.errors.append(e)

        self.producers = [threading.Thread(target=produce, args=(it,), daemon=True) for it in self.items]
        self.consumers = [threading.Thread(target=consume, args=(out,), daemon=True) for out in self.got]
        for t in self.producers + self.consumers:
            t.start()

    def run(self):  # the timed part
        self.go.wait(JOIN_DEADLINE_S)
        for t in self.producers:
            t.join(JOIN_DEADLINE_S)
        for _ in self.consumers:
            self.q.put(None, timeout=JOIN_DEADLINE_S)
        for t in self.consumers:
            t.join(JOIN_DEADLINE_S)

    def check(self):
        stuck = [t.name for t in self.producers + self.consumers if t.is_alive()]
        assert not stuck, f"threads still running after {JOIN_DEADLINE_S} s: {stuck}"
        assert not self.errors, self.errors
        delivered = sorted(x for out in self.got for x in out)
        expected = sorted(x for items in self.items for x in items)
        assert len(delivered) == len(expected), f"lost {len(expected) - len(delivered)} items"
        assert delivered == expected, "items lost or duplicated"


@pytest.mark.benchmark(group=GROUP_THREADS)
@pytest.mark.parametrize("impl", QUEUE_IDS)
def test_threads_2p2c(benchmark, impl):
    per = ITEMS_PER_PRODUCER_SMOKE if benchmark.disabled else ITEMS_PER_PRODUCER
    make_queue(impl)  # skip/fail early, outside the timed rounds
    rounds: list[_Round] = []

    def setup():
        r = _Round(impl, per)
        rounds.append(r)
        return (r,), {}

    benchmark.extra_info["items"] = 2 * per
    benchmark.extra_info["maxsize"] = THREAD_MAXSIZE
    benchmark.pedantic(_Round.run, setup=setup, rounds=1 if benchmark.disabled else THREAD_ROUNDS, warmup_rounds=0)
    for r in rounds:
        r.check()
