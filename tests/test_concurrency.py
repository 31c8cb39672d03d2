"""Concurrency: SIGINT while blocked, mass wake-up on shutdown, and a
producer/consumer conservation stress test.

No sleeps decide outcomes: "the other side is blocked now" is observed
through stats()["waits"] (or, for join, the main thread's stack), and every
join has a generous deadline. The only timed assertions are loose liveness
bounds.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time

import pytest

from bufmgr import Empty, Full, ShutDown

DEADLINE_S = 30.0
SIGINT_BOUND_S = 5.0  # loose: the spec's slices are 50 ms; we print the actual

needs_sigint = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(signal, "SIGINT"),
    reason="os.kill(SIGINT) to the own process needs POSIX",
)


# ---------------------------------------------------------------------------
# SIGINT while blocked on the main thread


def _main_thread_in_blocking_call(code, lineno):
    """True while the main thread sits at `lineno` of `code` (the blocking
    call) or deeper in a callee (pure twin: its wait loop)."""
    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None:
        if frame.f_code is code:
            return frame.f_lineno == lineno
        frame = frame.f_back
    return False


class _Interrupter:
    """Helper thread: waits until the main thread is blocked, then SIGINTs it.

    If the main thread never blocks (a bug), it does NOT send the signal but
    calls `unblock()` so the test fails on an assertion instead of killing
    the pytest run or hanging. If the signal is sent but the call does not
    return, it also calls `unblock()` (the late KeyboardInterrupt then fails
    the latency bound).
    """

    def __init__(self, is_blocked, unblock):
        self.is_blocked, self.unblock = is_blocked, unblock
        self.sent_at = None
        self.gave_up = False
        self.returned = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sigint-sender", daemon=True)

    def _run(self):
        deadline = time.monotonic() + DEADLINE_S
        streak = 0
        while time.monotonic() < deadline:
            # require the blocked state to persist over several polls
            streak = streak + 1 if self.is_blocked() else 0
            if streak >= 5:
                self.sent_at = time.monotonic()
                os.kill(os.getpid(), signal.SIGINT)
                # An implementation that never checks for signals would stay
                # blocked forever: unblock it so the test fails, not hangs.
                if not self.returned.wait(2 * SIGINT_BOUND_S):
                    self.unblock()
                return
            time.sleep(0.002)
        self.gave_up = True
        self.unblock()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive()
        return False


def _interrupt_blocked_call(q, call, is_blocked, unblock):
    """Run `call()` on the main thread; expect KeyboardInterrupt promptly."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT handler is not Python's default (KeyboardInterrupt)")
    with _Interrupter(is_blocked, unblock) as intr:
        try:
            call()
        except KeyboardInterrupt:
            raised_at = time.monotonic()
        else:
            raised_at = None
        finally:
            intr.returned.set()
    assert not intr.gave_up, "the call never blocked (helper unblocked it instead)"
    assert raised_at is not None, "blocked call returned instead of raising KeyboardInterrupt"
    latency = raised_at - intr.sent_at
    print(f"KeyboardInterrupt {latency * 1000:.1f} ms after SIGINT")
    assert 0 <= latency < SIGINT_BOUND_S
    return latency


def _waits_reached(q, n):
    return lambda: q.stats()["waits"] >= n


@needs_sigint
@pytest.mark.parametrize("variant", ["get", "get_timeout", "get_latest", "get_many"])
def test_sigint_interrupts_blocked_get(FrameQueue, live, variant):
    q = FrameQueue()
    calls = {
        "get": q.get,
        "get_timeout": lambda: q.get(True, 120),
        "get_latest": q.get_latest,
        "get_many": lambda: q.get_many(4),
    }
    _interrupt_blocked_call(q, calls[variant], _waits_reached(q, 1), lambda: q.put("unblock"))
    # usable afterwards, from this thread and from others
    s = q.stats()
    assert (s["size"], s["gets"], s["puts"], s["waits"]) == (0, 0, 0, 1)
    q.put("a")
    assert q.get() == "a"
    w = live.start(q.get)
    live.wait_for_waits(q, 2)
    q.put("b")
    assert w.value() == "b"
    q.shutdown()
    with pytest.raises(ShutDown):
        q.get()


@needs_sigint
@pytest.mark.parametrize("variant", ["put", "put_timeout", "put_many"])
def test_sigint_interrupts_blocked_put(FrameQueue, live, variant):
    q = FrameQueue(1)
    q.put("held")
    calls = {
        "put": lambda: q.put("new"),
        "put_timeout": lambda: q.put("new", True, 120),
        "put_many": lambda: q.put_many(["new"]),
    }
    _interrupt_blocked_call(q, calls[variant], _waits_reached(q, 1), q.clear)
    s = q.stats()
    assert (s["size"], s["puts"], s["waits"]) == (1, 1, 1)
    assert q.get() == "held"
    q.put("x")
    p = live.start(q.put, "y")
    live.wait_for_waits(q, 2)
    assert q.get() == "x"
    p.value()
    assert q.get() == "y"


@needs_sigint
def test_sigint_interrupts_blocked_join(FrameQueue, live):
    q = FrameQueue()
    q.put("task")

    def call():
        q.join()  # <- JOIN_LINE

    import inspect

    src, first = inspect.getsourcelines(call)
    join_line = first + next(i for i, l in enumerate(src) if "JOIN_LINE" in l)
    code = call.__code__

    _interrupt_blocked_call(
        q, call, lambda: _main_thread_in_blocking_call(code, join_line), q.clear
    )
    assert q.unfinished_tasks == 1
    assert q.qsize() == 1
    # still a working join afterwards
    w = live.start(q.join)
    q.get()
    q.task_done()
    w.value()


# ---------------------------------------------------------------------------
# shutdown wakes everybody


N_WAITERS = 50


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_wakes_50_blocked_getters(FrameQueue, live, immediate):
    q = FrameQueue()
    getters = [
        live.start(q.get if i % 3 else (lambda: q.get(True, 120)), name=f"getter-{i}")
        for i in range(N_WAITERS)
    ]
    live.wait_for_waits(q, N_WAITERS)
    q.shutdown(immediate=immediate)
    for g in getters:
        g.raised(ShutDown)
    assert q.stats()["gets"] == 0


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_wakes_50_blocked_putters(FrameQueue, live, immediate):
    q = FrameQueue(1)
    q.put("held")
    putters = [
        live.start(q.put if i % 3 else (lambda x: q.put(x, True, 120)), i, name=f"putter-{i}")
        for i in range(N_WAITERS)
    ]
    live.wait_for_waits(q, N_WAITERS)
    q.shutdown(immediate=immediate)
    for p in putters:
        p.raised(ShutDown)
    s = q.stats()
    assert s["puts"] == 1
    assert q.qsize() == (0 if immediate else 1)


def test_immediate_shutdown_wakes_joiners_getters_and_putters_together(FrameQueue, live):
    full, empty = FrameQueue(1), FrameQueue()
    full.put("held")
    putters = [live.start(full.put, i) for i in range(10)]
    joiners = [live.start(full.join) for _ in range(10)]
    getters = [live.start(empty.get) for _ in range(10)]
    live.wait_for_waits(full, 10)
    live.wait_for_waits(empty, 10)
    full.shutdown(immediate=True)
    empty.shutdown(immediate=True)
    for p in putters:
        p.raised(ShutDown)
    for j in joiners:
        j.value()
    for g in getters:
        g.raised(ShutDown)


# ---------------------------------------------------------------------------
# conservation stress: 4 producers x 4 consumers


N_PRODUCERS = 4
N_CONSUMERS = 4
PER_PRODUCER = 5000


@pytest.mark.parametrize("with_clear", [False, True], ids=["plain", "clear+latest"])
@pytest.mark.parametrize("policy", ["block", "drop_oldest", "drop_newest"])
def test_conservation_stress(FrameQueue, live, policy, with_clear):
    q = FrameQueue(8, policy)
    stop_consumers = threading.Event()
    start = threading.Barrier(N_PRODUCERS + N_CONSUMERS, timeout=DEADLINE_S)
    results = {}

    def producer(pid):
        rng = random.Random(pid)
        start.wait()
        put_ok, dropped, not_put = [], [], []
        base = 1_000_000 * (pid + 1)
        i = 0
        while i < PER_PRODUCER:
            if rng.random() < 0.15:
                batch = list(range(base + i, base + min(i + 4, PER_PRODUCER)))
                i += len(batch)
                if policy == "block":
                    # a Full mid-batch would not tell which items got in
                    d = q.put_many(batch, True, None)
                else:
                    d = q.put_many(batch, block=bool(rng.getrandbits(1)))
                put_ok.extend(batch)
                dropped.extend(d)
                continue
            item = base + i
            i += 1
            if i % 4 == 0:
                time.sleep(0)  # yield the GIL: drop-policy puts never block
            r = rng.random()
            try:
                if r < 0.2:
                    d = q.put_nowait(item)
                elif r < 0.3:
                    d = q.put(item)
                else:
                    d = q.put(item, True, rng.choice([0, 0.0005, 0.001, 0.002]))
            except Full:
                not_put.append(item)
                continue
            put_ok.append(item)
            if d is not None:
                dropped.append(d)
        results[("p", pid)] = (put_ok, dropped, not_put)

    def consumer(cid):
        rng = random.Random(100 + cid)
        got, cleared = [], 0
        start.wait()
        while not stop_consumers.is_set():
            r = rng.random()
            try:
                if with_clear and r < 0.01:
                    cleared += q.clear()
                    continue
                if with_clear and r < 0.03:
                    # discards (identities unknown) show up in stats dropped
                    got.append(q.get_latest(True, 0.002))
                    continue
                if r < 0.3:
                    got.append(q.get_nowait())
                elif r < 0.5:
                    got.extend(q.get_many(rng.randint(1, 5), True, 0.002))
                else:
                    got.append(q.get(True, rng.choice([0, 0.0005, 0.001, 0.002])))
            except Empty:
                continue
        results[("c", cid)] = (got, cleared)

    # switch threads often so producers and consumers really interleave
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        producers = [live.start(producer, p, name=f"producer-{p}") for p in range(N_PRODUCERS)]
        consumers = [live.start(consumer, c, name=f"consumer-{c}") for c in range(N_CONSUMERS)]
        for p in producers:
            p.value()
        stop_consumers.set()
        for c in consumers:
            c.value()
    finally:
        sys.setswitchinterval(old_interval)

    s = q.stats()
    left = []
    while True:
        try:
            left.append(q.get_nowait())
        except Empty:
            break

    put_ok, dropped, not_put, delivered = [], [], [], []
    cleared = 0
    for p in range(N_PRODUCERS):
        a, b, c = results[("p", p)]
        put_ok += a
        dropped += b
        not_put += c
    for c in range(N_CONSUMERS):
        g, n = results[("c", c)]
        delivered += g
        cleared += n

    all_items = set(put_ok)
    print(f"{policy}: puts={s['puts']} gets={s['gets']} dropped={s['dropped']} "
          f"cleared={s['cleared']} left={len(left)} waits={s['waits']} refused_full={len(not_put)}")

    # counters
    assert s["puts"] == len(put_ok)
    assert s["gets"] == len(delivered)
    discarded = s["dropped"] - len(dropped)  # by get_latest
    if with_clear:
        assert discarded >= 0
    else:
        assert discarded == 0
    assert s["cleared"] == cleared
    assert s["size"] == len(left)
    assert s["puts"] == s["gets"] + s["dropped"] + s["cleared"] + s["size"]
    assert s["high_water"] <= 8

    # identities: every item accounted for exactly once
    assert len(all_items) == len(put_ok), "an item was reported put twice"
    assert len(set(delivered)) == len(delivered), "an item was delivered twice"
    assert len(set(dropped)) == len(dropped), "an item was dropped twice"
    d, x, l = set(delivered), set(dropped), set(left)
    assert not (d & x) and not (d & l) and not (x & l)
    assert d | x | l <= all_items
    assert len(all_items - (d | x | l)) == cleared + discarded
    if not with_clear:
        assert d | x | l == all_items
    assert not (set(not_put) & (d | x | l))
    if policy == "block":
        assert not dropped  # the block policy never evicts nor refuses

    # per-producer FIFO: items of one producer are delivered in put order
    # by any single consumer
    for c in range(N_CONSUMERS):
        g, _ = results[("c", c)]
        for p in range(N_PRODUCERS):
            mine = [v for v in g if 1_000_000 * (p + 1) <= v < 1_000_000 * (p + 2)]
            assert mine == sorted(mine)

    # task accounting: finish what was got, then join must return
    for _ in range(len(delivered) + len(left)):
        q.task_done()
    assert q.unfinished_tasks == 0
    live.start(q.join).value()
