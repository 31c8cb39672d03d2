"""Fault injection: after every fault the queue is consistent and usable.

* Items whose ``__del__`` raises or re-enters the queue (put / get /
  get_latest / clear / stats / shutdown(immediate) / a chain of faulty
  items), released on every path the queue has: evicted (drop_oldest put and
  put_many), refused (drop_newest), cleared, discarded by get_latest,
  emptied by shutdown(immediate), and dropped by a consumer after get.
  Every item is tracked by id: each one put is delivered, handed back as
  dropped, or accounted for by the queue's dropped/cleared counters; none
  twice, none leaked (weak references die), unfinished_tasks ends at 0.
* KeyboardInterrupt (SIGINT from a helper thread once the main thread is
  blocked, detected through stats()["waits"] or the main thread's stack,
  never a fixed sleep) during blocking put, put_many, get, get_many,
  get_latest and join: nothing is half-done (put_many keeps exactly the
  items before the one it blocked on), references are given back, and the
  queue keeps working.
* BufferManager with a coordinator whose methods raise or block briefly,
  under concurrent producers and consumers: no exception escapes, no frame
  is lost or duplicated, the failures reach handle_error / the counters.

(test_refcounts.py covers single re-entrant __del__ calls without faults;
test_concurrency.py covers SIGINT latency. This file adds failures, chains
and the accounting after them.)
"""

from __future__ import annotations

import gc
import inspect
import itertools
import os
import random
import signal
import sys
import threading
import time
import weakref

import pytest

from bufmgr._errors import Empty, Full, ShutDown

DEADLINE_S = 30.0


# ---------------------------------------------------------------------------
# tracked items and the ledger


class InjectedFault(RuntimeError):
    pass


class Ledger:
    """Everything that went into / came out of one queue, by item id.
    Single-threaded use (plus the __del__ hooks running in that thread)."""

    def __init__(self, q):
        self.q = q
        self.ids = itertools.count(1)
        self.put_ok: list[int] = []
        self.got: list[int] = []
        self.returned: list[int] = []
        self.refs: list[weakref.ref] = []
        self.del_errors: list[str] = []
        self.del_runs = 0

    def item(self, action=None, depth=0):
        it = Item(self, next(self.ids), action, depth)
        self.refs.append(weakref.ref(it))
        return it

    # recording wrappers --------------------------------------------------------
    def put(self, it, *args):
        d = self.q.put(it, *args)
        self.put_ok.append(it.uid)
        if d is not None:
            self.returned.append(d.uid)
        return d

    def put_many(self, items, *args):
        items = list(items)
        puts0, n0 = self.q.stats()["puts"], len(self.put_ok)
        try:
            d = self.q.put_many(items, *args)
        except (Full, ShutDown):
            # stopped early: the first k items are queued ("block" policy;
            # puts made meanwhile by __del__ hooks are recorded by them)
            k = self.q.stats()["puts"] - puts0 - (len(self.put_ok) - n0)
            self.put_ok.extend(i.uid for i in items[:k])
            raise
        self.put_ok.extend(i.uid for i in items)
        self.returned.extend(i.uid for i in d)
        return d

    def took(self, items):
        for it in items:
            self.got.append(it.uid)
            self.q.task_done()

    def get(self, *args):
        it = self.q.get(*args)
        self.took([it])
        return it

    def get_latest(self, *args):
        it = self.q.get_latest(*args)
        self.took([it])
        return it

    def drain(self):
        while True:
            try:
                it = self.q.get_nowait()
            except (Empty, ShutDown):
                return
            self.took([it])
            del it  # may run more faults; the loop picks up what they put

    # the checks ------------------------------------------------------------------
    def check(self):
        """Drain, then: conservation by id, counters, no leaks."""
        self.drain()
        q, s = self.q, self.q.stats()
        seen = self.got + self.returned
        assert not self.del_errors, self.del_errors
        assert len(seen) == len(set(seen)), "an item came out twice"
        assert set(seen) <= set(self.put_ok), "an item came out that was never put"
        assert len(self.put_ok) == len(set(self.put_ok))
        assert s["puts"] == len(self.put_ok), s
        assert s["gets"] == len(self.got), s
        assert s["size"] == 0, s
        assert s["puts"] == s["gets"] + s["dropped"] + s["cleared"] + s["size"], s
        unseen = set(self.put_ok) - set(seen)
        assert len(unseen) == s["dropped"] - len(self.returned) + s["cleared"], (s, unseen)
        assert q.unfinished_tasks == 0
        if s["maxsize"]:
            assert s["high_water"] <= s["maxsize"]
        return s

    def check_released(self):
        """Once nothing refers to them any more, every item is freed."""
        alive = [r() for r in self.refs if r() is not None]
        if alive:  # only then pay for a full collection (cycles via the ledger)
            del alive
            gc.collect()
            alive = [r() for r in self.refs if r() is not None]
        assert not alive, f"{len(alive)} item(s) never released: {alive[:5]}"


class Item:
    __slots__ = ("ledger", "uid", "action", "depth", "__weakref__")

    def __init__(self, ledger, uid, action, depth):
        self.ledger, self.uid, self.action, self.depth = ledger, uid, action, depth

    def __repr__(self):
        return f"Item({self.uid}, {self.action})"

    def __del__(self):
        if self.action is None:
            return
        led = self.ledger
        led.del_runs += 1
        if self.action == "raise":
            raise InjectedFault(f"__del__ of item {self.uid}")
        q = led.q
        try:
            if self.action == "put":
                led.put(led.item(), False)
            elif self.action == "get":
                led.get(False)
            elif self.action == "get_latest":
                led.get_latest(False)
            elif self.action == "clear":
                q.clear()
            elif self.action == "stats":
                s = q.stats()
                if s["puts"] != s["gets"] + s["dropped"] + s["cleared"] + s["size"]:
                    led.del_errors.append(f"stats inconsistent inside __del__: {s}")
                repr(q), len(q), q.full(), q.empty(), q.unfinished_tasks
            elif self.action == "shutdown":
                q.shutdown(immediate=True)
            elif self.action == "chain":
                # re-enter with another faulty item: its own release (by an
                # eviction, a clear...) runs more faults, up to a depth
                if self.depth < 6:
                    nxt = led.item(("chain", "raise", "get", "put")[self.depth % 4], self.depth + 1)
                    led.put(nxt, False)
        except (Full, Empty, ShutDown):
            pass


@pytest.fixture
def unraisable():
    """Collect exceptions raised by __del__ (instead of printing them)."""
    seen = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u.exc_type)
    try:
        yield seen
    finally:
        sys.unraisablehook = old


def assert_usable(q, led, live):
    """put/get, put_many/get_many, get_latest and join still work (or, once
    shut down, put raises ShutDown and get reports drained)."""
    if q.is_shutdown:
        with pytest.raises(ShutDown):
            q.put_nowait(led.item())
        with pytest.raises(ShutDown):
            q.get_nowait()
        return
    q.clear()
    a, b, c = led.item(), led.item(), led.item()
    led.put(a)
    assert led.get(True, 5) is a
    led.put_many([b, c])
    got = q.get_many(5)
    assert got == [b, c]
    led.took(got)
    del got
    # a blocking get served by another thread, then join
    w0 = q.stats()["waits"]
    w = live.start(q.get, True, DEADLINE_S)
    live.wait_for_waits(q, w0 + 1)
    d = led.item()
    led.put(d)
    assert w.value() is d
    w.result = None  # the worker would keep d alive
    led.took([d])
    j = live.start(q.join)
    j.value()


# ---------------------------------------------------------------------------
# __del__ faults on every release path

ACTIONS = ["raise", "put", "get", "get_latest", "clear", "stats", "shutdown", "chain"]
PATHS = ["evict", "evict_many", "refuse", "clear", "get_latest", "shutdown_immediate", "consumer"]


def _scenario(FrameQueue, path, action):
    """Build a queue holding faulty items and release them through `path`.
    Returns (queue, ledger)."""
    if path in ("evict", "evict_many"):
        q = FrameQueue(3, "drop_oldest")
    elif path == "refuse":
        q = FrameQueue(3, "drop_newest")
    else:
        q = FrameQueue(0)
    led = Ledger(q)

    def attempt(fn, *args):
        # a fault may have shut the queue down (or emptied it) meanwhile
        try:
            fn(*args)
        except (Full, Empty, ShutDown):
            pass

    for _ in range(3):  # the queue starts with three (faulty) items
        attempt(led.put, led.item(action) if path != "refuse" else led.item(), False)
    if path == "evict":
        for _ in range(4):
            attempt(led.put, led.item(), False)  # evicts one; the evictee is dropped here
    elif path == "evict_many":
        attempt(led.put_many, [led.item(action), led.item(), led.item(action), led.item()], False)
        attempt(led.put_many, [led.item() for _ in range(3)])
    elif path == "refuse":
        for _ in range(3):
            attempt(led.put, led.item(action), False)  # refused, handed back, dropped here
        attempt(led.put_many, [led.item(action), led.item(action)])
    elif path == "clear":
        attempt(led.put, led.item(), False)
        q.clear()
    elif path == "get_latest":
        attempt(led.put, led.item(), False)
        attempt(led.get_latest, False)
    elif path == "shutdown_immediate":
        q.shutdown(immediate=True)
    elif path == "consumer":
        while True:
            try:
                it = led.get(False)
            except (Empty, ShutDown):
                break
            del it  # the consumer drops it: the fault runs here
    return q, led


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("path", PATHS)
def test_del_fault_keeps_queue_consistent(FrameQueue, live, unraisable, path, action):
    def run():
        q, led = _scenario(FrameQueue, path, action)
        s = led.check()
        return q, led, s

    q, led, s = live.start(run).value()  # a deadlock fails (deadline), never hangs
    assert led.del_runs > 0, "no fault ran: the scenario does not exercise the path"
    if action == "raise":
        assert unraisable and all(t is InjectedFault for t in unraisable), unraisable
    elif action != "chain":
        assert not unraisable, unraisable
    assert_usable(q, led, live)
    led.check()
    del q
    led.q = None
    led.check_released()


def test_del_fault_storm_many_rounds(FrameQueue, live, unraisable):
    """Random faulty items and random operations, single thread, checked
    after every round (a compact fuzz of the matrix above)."""
    rng = random.Random(1234)

    def run():
        rounds = 0
        for policy in ("block", "drop_oldest", "drop_newest"):
            for _ in range(60):
                q = FrameQueue(rng.choice([0, 1, 2, 5] if policy == "block" else [1, 2, 5]), policy)
                led = Ledger(q)
                for _ in range(rng.randint(5, 40)):
                    act = rng.choice(ACTIONS + [None] * 4)
                    op = rng.random()
                    try:
                        if op < 0.45:
                            led.put(led.item(act), False)
                        elif op < 0.55:
                            led.put_many([led.item(rng.choice(ACTIONS + [None])) for _ in range(3)], False)
                        elif op < 0.75:
                            led.get(False)
                        elif op < 0.82:
                            led.took(q.get_many(rng.randint(1, 4), False))
                        elif op < 0.88:
                            led.get_latest(False)
                        elif op < 0.94:
                            q.clear()
                        else:
                            q.shutdown(immediate=rng.random() < 0.5)
                    except (Full, Empty, ShutDown):
                        pass
                led.check()
                del q
                led.q = None
                led.check_released()
                rounds += 1
        return rounds

    assert live.start(run).value(timeout=120) == 180
    assert all(t is InjectedFault for t in unraisable), set(unraisable)


# ---------------------------------------------------------------------------
# KeyboardInterrupt while blocked

needs_sigint = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(signal, "SIGINT"),
    reason="os.kill(SIGINT) to the own process needs POSIX",
)


class _Interrupter:
    """Helper thread: once `is_blocked()` holds over several polls, SIGINT
    the process (delivered to the main thread). If the main thread never
    blocks, call `unblock()` instead so the test fails, never hangs."""

    def __init__(self, is_blocked, unblock):
        self.is_blocked, self.unblock = is_blocked, unblock
        self.sent = self.gave_up = False
        self.thread = threading.Thread(target=self._run, name="sigint-sender", daemon=True)

    def _run(self):
        deadline = time.monotonic() + DEADLINE_S
        streak = 0
        while time.monotonic() < deadline:
            streak = streak + 1 if self.is_blocked() else 0
            if streak >= 3:
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.002)
        self.gave_up = True
        self.unblock()


def _interrupt(call, is_blocked, unblock):
    """Run call() on the main thread; return True if it raised KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT handler is not Python's default (KeyboardInterrupt)")
    intr = _Interrupter(is_blocked, unblock)
    intr.thread.start()
    try:
        call()
    except KeyboardInterrupt:
        interrupted = True
    else:
        interrupted = False
    intr.thread.join(DEADLINE_S)
    assert not intr.gave_up, "the call never blocked"
    assert intr.sent and interrupted
    return interrupted


def _waits_above(q, n):
    return lambda: q.stats()["waits"] > n


@needs_sigint
@pytest.mark.parametrize("op", ["put", "put_timeout", "put_many"])
def test_keyboard_interrupt_in_blocked_put(FrameQueue, live, op):
    q = FrameQueue(4)
    led = Ledger(q)
    led.put_many([led.item() for _ in range(4)])  # full
    new = [led.item() for _ in range(4)]
    if op == "put_many":
        led.took([q.get_nowait(), q.get_nowait()])  # room for two of the four
    def refs():
        return [sys.getrefcount(x) for x in new]

    base = refs()
    before = q.stats()
    calls = {
        "put": lambda: q.put(new[0]),
        "put_timeout": lambda: q.put(new[0], True, 120),
        "put_many": lambda: q.put_many(new),
    }
    _interrupt(calls[op], _waits_above(q, before["waits"]), q.clear)
    s = q.stats()
    if op == "put_many":
        # the two before the one it blocked on stay queued, in order; the
        # other two were never queued and their references are given back
        assert s == dict(before, waits=before["waits"] + 1, puts=before["puts"] + 2, size=4)
        led.put_ok += [new[0].uid, new[1].uid]
        rest = [q.get_nowait() for _ in range(4)]
        assert rest[2] is new[0] and rest[3] is new[1]
        led.took(rest)
        del rest
        assert refs()[2:] == base[2:]
    else:
        assert s == dict(before, waits=before["waits"] + 1)  # nothing else changed
        assert refs() == base  # not held by the queue
    led.check()
    assert_usable(q, led, live)
    led.check()


@needs_sigint
@pytest.mark.parametrize("op", ["get", "get_timeout", "get_many", "get_latest"])
def test_keyboard_interrupt_in_blocked_get(FrameQueue, live, op):
    q = FrameQueue(8, "drop_oldest")
    led = Ledger(q)
    led.put_many([led.item() for _ in range(3)])
    led.took(q.get_many(3))
    before = q.stats()
    calls = {
        "get": q.get,
        "get_timeout": lambda: q.get(True, 120),
        "get_many": lambda: q.get_many(4),
        "get_latest": q.get_latest,
    }
    unblock_item = led.item()

    def unblock():
        led.put(unblock_item)

    _interrupt(calls[op], _waits_above(q, before["waits"]), unblock)
    s = q.stats()
    assert s == dict(before, waits=before["waits"] + 1)  # nothing else changed
    led.check()
    assert_usable(q, led, live)
    # blocked getters in other threads are still woken normally
    w0 = q.stats()["waits"]
    w = live.start(q.get_many, 4, True, DEADLINE_S)
    live.wait_for_waits(q, w0 + 1)
    led.put_many([led.item(), led.item()])
    led.took(w.value())
    w.result = None
    led.check()


@needs_sigint
def test_keyboard_interrupt_in_join(FrameQueue, live):
    q = FrameQueue()
    led = Ledger(q)
    led.put_many([led.item() for _ in range(3)])
    it = q.get_nowait()  # taken but not task_done: join must wait

    def call():
        q.join()  # <- JOIN_LINE

    src, first = inspect.getsourcelines(call)
    join_line = first + next(i for i, line in enumerate(src) if "JOIN_LINE" in line)

    def main_in_join():
        frame = sys._current_frames().get(threading.main_thread().ident)
        while frame is not None:
            if frame.f_code is call.__code__:
                return frame.f_lineno == join_line
            frame = frame.f_back
        return False

    def unblock():
        q.clear()
        q.task_done()

    _interrupt(call, main_in_join, unblock)
    assert q.unfinished_tasks == 3 and q.qsize() == 2
    # finish the work: join (in a thread) returns once everything is done
    j = live.start(q.join)
    led.took([it])
    del it
    led.drain()
    j.value()
    led.check()
    assert_usable(q, led, live)


# ---------------------------------------------------------------------------
# BufferManager with a faulty coordinator


class FaultyCoordinator:
    """Every method sometimes raises, sometimes blocks briefly (1 ms)."""

    def __init__(self, seed, raise_p=0.05, block_p=0.02):
        self.rng = random.Random(seed)
        self.raise_p, self.block_p = raise_p, block_p
        self.lock = threading.Lock()
        self.calls = 0
        self.raised = 0
        self.errors_reported = 0
        self.shutdown = False

    def _fault(self, name):
        with self.lock:
            self.calls += 1
            r = self.rng.random()
            if r < self.raise_p:
                self.raised += 1
        if r < self.raise_p:
            raise InjectedFault(f"coordinator.{name}")
        if r < self.raise_p + self.block_p:
            time.sleep(0.001)  # blocks briefly, outside any lock of ours

    def update_state(self, **fields):
        self._fault("update_state")

    def handle_error(self, error, component):
        with self.lock:
            self.errors_reported += 1
        self._fault("handle_error")

    def is_shutdown_requested(self):
        self._fault("is_shutdown_requested")
        return self.shutdown


def test_buffer_manager_with_faulty_coordinator(FrameQueue, live, caplog):
    from bufmgr import BufferManager

    caplog.set_level(100)  # the injected failures are logged; keep the output quiet
    coord = FaultyCoordinator(7)
    comps = ["capture_left", "capture_right"]
    m = BufferManager(coord, queues={c: 16 for c in comps}, queue_factory=FrameQueue)
    n_per = 3000
    accepted = {c: [] for c in comps}
    received = {c: [] for c in comps}
    stop = threading.Event()

    def producer(comp):
        for i in range(n_per):
            frame = f"{comp}:{i}".encode()
            if m.put_buffer(comp, frame, 0.5):  # never raises
                accepted[comp].append(frame)
            if i % 64 == 0:
                time.sleep(0)

    def consumer(comp):
        while not stop.is_set() or m.get_usage()[comp]:
            f = m.get_buffer(comp, 0.005)  # never raises
            if f is not None:
                received[comp].append(f)

    cons = [live.start(consumer, c, name=f"consumer-{c}") for c in comps]
    prods = [live.start(producer, c, name=f"producer-{c}") for c in comps]
    for p in prods:
        p.value(timeout=120)
    stop.set()
    for c in cons:
        c.value(timeout=60)

    stats = m.get_performance_stats()
    for comp in comps:
        s = stats["components"][comp]
        acc, rec = accepted[comp], received[comp]
        assert len(rec) == len(set(rec)), "a frame was delivered twice"
        assert set(rec) <= set(acc), "a frame came out that was never accepted"
        # drop_oldest: every accepted frame was delivered or evicted (counted)
        assert s["puts"] == len(acc) and s["gets"] == len(rec)
        assert len(acc) - len(rec) == s["dropped"] + s["cleared"] + s["size"]
        # per-component FIFO order of what was delivered
        idx = [int(f.split(b":")[1]) for f in rec]
        assert idx == sorted(idx)
    assert coord.raised > 0
    assert stats["manager"]["errors"] > 0 and coord.errors_reported > 0
    m.cleanup()
    assert m.put_buffer("capture_left", b"late", 0.5) is False
    assert m.get_buffer("capture_left", 0.0) is None


# ---------------------------------------------------------------------------
# finalizers run by the cycle collector


_CYCLIC_GARBAGE_SCRIPT = r"""
import gc, importlib, sys, sysconfig
FrameQueue = importlib.import_module(sys.argv[1]).FrameQueue
twin = sys.argv[1].endswith("_pyqueue")
from bufmgr import Empty
q = FrameQueue()
hits = []       # finalizers that used the queue
refused = []    # pure twin: finalizers that ran inside one of its critical sections
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(1))

class Cycle:
    def __init__(self):
        self.me = self

    def __del__(self):
        try:
            hits.append(q.qsize())  # re-enters the queue
        except RuntimeError as e:
            # The pure twin refuses, instead of deadlocking, exactly when this
            # thread is inside one of q's critical sections: check that it is.
            if not (twin and "re-entrantly" in str(e) and q._mutex._is_owned()):
                raise
            refused.append(1)

# GIL build: the collector runs when generation 0 passes 1..7 allocations.
# Free-threaded build: it counts NET allocations of GC objects per thread in
# batches of 512 (the collected cycles count back down) and, unless
# generation 1's threshold is 0, also waits for a quarter of the heap; tiny
# thresholds alone never trigger it. There: thresholds (t, 0, 0) (collect on
# every batch), keep what the queue's calls allocate inside themselves (stats
# dicts, get_many lists, Empty exceptions) so that a batch often completes
# inside a call, and loop until enough collections happened.
ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
retained = []
keep = []
i = 0
while i < 400 or (i < 200_000 and (len(collections) < 20 or (twin and not refused))):
    # collect very often, at shifting points: some collections land inside
    # the queue's calls
    gc.set_threshold(1 + i % 7, *((0, 0) if ft else (1000, 1000)))
    keep.clear()
    Cycle()  # garbage only the cycle collector can free
    for _ in range(i % 5):
        keep.append([])
    op = i % 4
    q.put(1)
    if op == 0:
        r = q.stats()
    elif op == 1:
        r = q.get_many(2)
    elif op == 2:
        r = q.clear()
    else:
        q.get_nowait()
        try:
            q.get_nowait()
        except Empty as e:
            r = e
    if ft:
        retained.append(r)
    i += 1
gc.set_threshold(700, 10, 10)
gc.collect()  # the last cycles: finalized outside any queue call
print(f"iterations={i} collections={len(collections)} hits={len(hits)} refused={len(refused)}")
"""


def test_cyclic_garbage_finalizer_reentering_the_queue(FrameQueue):
    """Unrelated cyclic garbage whose __del__ uses the queue may be collected
    at any allocation, including one made *inside* a queue call. It must
    never deadlock.

    The compiled class never allocates Python objects while its mutex is
    held, so the finalizer always just runs. The pure twin cannot prevent
    allocations (exceptions, stats dict, deques, lists) or eval-breaker
    checks inside its critical sections: a finalizer run there finds the
    queue half-way through an update and gets RuntimeError (with a plain
    Lock it used to self-deadlock, like queue.Queue). Both outcomes are
    required to happen here: the twin's refusal proves that collections did
    land inside its calls.

    Runs in a subprocess: a thread deadlocked inside a collection would
    leave the collector disabled for the rest of the test session."""
    import subprocess

    import bufmgr

    twin = FrameQueue.__module__.endswith("_pyqueue")
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(bufmgr.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CYCLIC_GARBAGE_SCRIPT, FrameQueue.__module__],
            env=env, capture_output=True, text=True, timeout=30,
            cwd=root,  # not the checkout: `-c` puts the cwd first on sys.path
        )
    except subprocess.TimeoutExpired:
        pytest.fail("deadlock: a finalizer re-entered the queue while its lock was held")
    assert proc.returncode == 0, proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr
    counts = dict(kv.split("=") for kv in proc.stdout.split())
    counts = {k: int(v) for k, v in counts.items()}
    assert counts["collections"] >= 20, counts
    assert counts["hits"] > 0, counts
    # every cycle was finalized exactly once: it used the queue or was refused
    assert counts["hits"] + counts["refused"] == counts["iterations"], counts
    if twin:
        assert counts["refused"] > 0, counts  # collections inside its critical sections
    else:
        assert counts["refused"] == 0, counts


_TWIN_PUBLIC_CALLS = {
    "put": lambda q: q.put(0, False),
    "put_nowait": lambda q: q.put_nowait(0),
    "put_many": lambda q: q.put_many([0], False),
    "get": lambda q: q.get(False),
    "get_nowait": lambda q: q.get_nowait(),
    "get_latest": lambda q: q.get_latest(False),
    "get_many": lambda q: q.get_many(1, False),
    "qsize": lambda q: q.qsize(),
    "len": len,
    "empty": lambda q: q.empty(),
    "full": lambda q: q.full(),
    "task_done": lambda q: q.task_done(),
    "join": lambda q: q.join(),
    "clear": lambda q: q.clear(),
    "shutdown": lambda q: q.shutdown(),
    "stats": lambda q: q.stats(),
    "repr": repr,
}


@pytest.mark.parametrize("call", sorted(_TWIN_PUBLIC_CALLS))
def test_twin_refuses_reentry_from_inside_its_critical_section(call):
    """Pure twin: code that runs inside one of its critical sections (a
    finalizer, simulated here by a deque whose __len__ calls back) and uses
    the same queue gets RuntimeError at once, on every public method, and
    the interrupted operation completes normally. (The compiled class runs
    no Python code while its mutex is held.)"""
    from collections import deque

    from bufmgr._pyqueue import _REENTRANT
    from bufmgr._pyqueue import FrameQueue as TwinQueue

    q = TwinQueue(4)
    outcomes = []

    class Reentering(deque):
        armed = True

        def __len__(self):
            if Reentering.armed:
                Reentering.armed = False
                try:
                    _TWIN_PUBLIC_CALLS[call](q)
                except RuntimeError as e:
                    outcomes.append(str(e))
                else:
                    outcomes.append("proceeded")
            return deque.__len__(self)

    q._queue = Reentering()
    assert q.put(1) is None  # put checks len(queue) against maxsize under the lock
    assert outcomes == [_REENTRANT]
    assert not q._mutex._is_owned() and not q._waiting
    q._queue = deque(q._queue)
    assert q.stats()["puts"] == 1 and q.get_nowait() == 1
    q.task_done()
    q.put(2)
    assert q.get(timeout=1) == 2


def test_twin_reentry_while_waiting_on_a_condition_proceeds():
    """Pure twin: while a call waits on a Condition the queue is consistent,
    so a finalizer run there by the same thread (simulated: the wait calls
    back first) may use the queue; nothing raises."""
    from bufmgr._pyqueue import FrameQueue as TwinQueue

    q = TwinQueue()
    done = []

    class CallingCondition(threading.Condition):
        def wait(self, timeout=None):
            if not done:
                done.append(q.put_nowait("from the wait"))
            return super().wait(timeout)

    q._not_empty = CallingCondition(q._mutex)
    assert q.get(timeout=DEADLINE_S) == "from the wait"
    assert done == [None]
    assert not q._mutex._is_owned() and not q._waiting
    assert q.stats()["puts"] == q.stats()["gets"] == 1
