"""``python -m bufmgr bench``: FrameQueue and BufferManager against what they replace.

Every implementation runs the same scenarios in one process, one after the
other, so the ratios in a row are measured on the same machine, interpreter and
load. Scenarios:

* ``pair``    -- one thread: ``put_nowait(x); get_nowait()`` repeated (the
  per-item cost of the queue itself, plus the Python loop around it).
* ``timeout`` -- one thread: ``put(x, timeout=0.5); get(timeout=0.5)`` where
  no wait is needed (the timed path a capture loop actually calls). Managers
  run here: ``put_buffer(c, x, timeout=0.5); get_buffer(c, timeout=0.5)``.
* ``threads`` -- P producers x C consumers (default 2x2) sharing one bounded
  queue, blocking put/get, for each payload size. Producers put for a fixed
  time (time-boxed; ``--items N`` puts exactly N instead), then the queue
  drains. Every item carries a unique stamp, so each one is accounted for in
  the reported run: ``items`` (put calls) = ``delivered`` + ``dropped`` +
  ``lost``. Throughput is items accepted per second until the queue has
  drained again.

Payloads: ``audio`` 1,920 B (480 samples x 16 bit, 16 kHz, one channel -- the
replaced application's chunk), ``64k`` 64 KiB, and ``frame`` a 6,220,800 B
1080p RGB frame. Each producer allocates its payload ONCE (a driver's buffer
pool); a queue item is a small ``(stamp, payload)`` tuple referencing it. A
queue passes references, so the rows measure the hand-off, not
``malloc``/``memcpy``. ``put_buffer`` takes bytes only (its fast path exact
``bytes``), so a manager item is an 8-byte ``bytes`` stamp: neither manager
reads or copies the data, so that hands off exactly like a 6 MB ``bytes``.
The payload size would only change the memory traffic of a consumer that
touches the data, and these consumers do not; the payload rows differ in the
queue rows' capacity (maxsize).

Manager rows use the real ``capture_left`` component (1000 slots,
``drop_oldest``). The baseline manager counts nothing itself; its
benchmark-only instrumentation (``evicted``, ``lost_frames``) gives its
silent evictions (shown as dropped, marked ``*``) and the frames its
check-then-act race loses (``lost``).
"""

from __future__ import annotations

import collections
import gc
import json
import logging
import os
import platform
import queue
import sys
import textwrap
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .progress import ProgressBar

# --------------------------------------------------------------------------
# payloads

PAYLOADS: dict[str, tuple[int, str]] = {
    "audio": (1920, "1,920 B audio chunk"),
    "64k": (64 * 1024, "64 KiB buffer"),
    "frame": (1920 * 1080 * 3, "6 MB 1080p RGB frame"),
}

#: Seconds the producers put for in one timed threaded run: (default, --quick).
#: Long enough that thread wake-up and GIL hand-over (5 ms switch interval)
#: are noise even for the slowest rows (~40k+ items at ~300k items/s).
THREAD_SECONDS: tuple[float, float] = (0.5, 0.15)
#: A shorter untimed warm-up run before the timed ones: (default, --quick).
WARMUP_SECONDS: tuple[float, float] = (0.1, 0.03)
#: Timed runs per threaded row, the fastest is reported: (default, --quick).
THREAD_REPEATS: tuple[int, int] = (2, 1)
#: Cap on items per threaded run: every delivered stamp is kept to find
#: duplicates, and queue.SimpleQueue is unbounded (memory).
MAX_THREAD_ITEMS = 1_000_000

#: Queue capacity for the threaded queue rows (managers use their own
#: component: capture_left, 1000 slots, drop_oldest).
THREAD_MAXSIZE: dict[str, int] = {"audio": 1000, "64k": 500, "frame": 32}

MANAGER_COMPONENT = "capture_left"
PAIR_TIMEOUT = 0.5
CONSUMER_POLL_S = 0.05  # manager consumers: get_buffer timeout while draining
DEADLINE_S = 120.0  # liveness bound for one threaded run

# --------------------------------------------------------------------------
# implementations


@dataclass
class Impl:
    key: str
    label: str
    kind: str  # "queue" | "deque" | "manager"
    factory: Callable[..., Any] | None
    unavailable: str = ""
    ours: bool = False  # a bufmgr implementation (lost frames are a bug)
    bounded: bool = True

    @property
    def available(self) -> bool:
        return self.factory is not None


def _frame_queue_c() -> tuple[Callable[..., Any] | None, str]:
    if os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0"):
        return None, "n/a: BUFMGR_NO_EXTENSIONS=1"
    try:
        from bufmgr._ring import FrameQueue
    except ImportError as exc:
        return None, f"n/a: compiled extension not built ({exc})"
    return FrameQueue, ""


def _baseline_class() -> tuple[Callable[..., Any] | None, str]:
    try:
        from bufmgr import baseline
    except ImportError as exc:
        return None, f"n/a: bufmgr.baseline missing ({exc})"
    for name in ("BaselineBufferManager", "BaselineManager", "LegacyBufferManager", "BufferManager"):
        cls = getattr(baseline, name, None)
        if isinstance(cls, type):
            return cls, ""
    for obj in vars(baseline).values():  # any class with the manager API
        if isinstance(obj, type) and hasattr(obj, "put_buffer") and hasattr(obj, "get_buffer"):
            return obj, ""
    return None, "n/a: no manager class in bufmgr.baseline"


def _manager_class() -> tuple[Callable[..., Any] | None, str]:
    try:
        from bufmgr.manager import BufferManager
    except ImportError as exc:
        return None, f"n/a: bufmgr.manager missing ({exc})"
    return BufferManager, ""


def implementations() -> list[Impl]:
    from bufmgr._pyqueue import FrameQueue as PyFrameQueue

    c_cls, c_why = _frame_queue_c()
    m_cls, m_why = _manager_class()
    b_cls, b_why = _baseline_class()
    return [
        Impl("frame-c", "FrameQueue (C)", "queue", c_cls, c_why, ours=True),
        Impl("frame-py", "FrameQueue (pure)", "queue", PyFrameQueue, ours=True),
        Impl("queue", "queue.Queue", "queue", queue.Queue),
        Impl("simplequeue", "queue.SimpleQueue", "queue", queue.SimpleQueue, bounded=False),
        Impl("deque", "deque(maxlen)", "deque", collections.deque),
        Impl("manager", "BufferManager", "manager", m_cls, m_why, ours=True),
        Impl("baseline", "baseline manager", "manager", b_cls, b_why),
    ]


IMPL_KEYS = ("frame-c", "frame-py", "queue", "simplequeue", "deque", "manager", "baseline")


def _new_queue(impl: Impl, maxsize: int) -> Any:
    if impl.key == "simplequeue":
        return impl.factory()  # type: ignore[misc]
    if impl.kind == "deque":
        return impl.factory(maxlen=maxsize)  # type: ignore[misc]
    return impl.factory(maxsize)  # type: ignore[misc]


def _new_manager(impl: Impl) -> Any:
    return impl.factory()  # type: ignore[misc]


def _close_manager(mgr: Any) -> None:
    for name in ("cleanup", "close", "shutdown"):
        fn = getattr(mgr, name, None)
        if callable(fn):
            try:
                fn()
            except Exception:  # noqa: BLE001 - best effort teardown
                pass
            return


def _manager_dropped(mgr: Any, component: str) -> int | None:
    """Items the manager says it dropped on `component` (None: unknown)."""
    try:
        stats = mgr.get_performance_stats()
    except Exception:  # noqa: BLE001
        return None
    for path in (("components", component, "dropped"), (component, "dropped")):
        node: Any = stats
        try:
            for k in path:
                node = node[k]
        except (KeyError, TypeError, IndexError):
            continue
        if isinstance(node, int):
            return node
    return None


# --------------------------------------------------------------------------
# scenarios


@dataclass
class Scenario:
    key: str  # unique id, e.g. "threads-2x2-audio"
    kind: str  # "pair" | "timeout" | "threads"
    title: str
    payload: str = "audio"
    producers: int = 0
    consumers: int = 0
    items: int | None = None  # fixed items per threaded run (--items), else time-boxed
    seconds: float | None = None  # time box of one threaded run
    maxsize: int = 1000
    impl_kinds: tuple[str, ...] = ("queue", "deque", "manager")
    unit: str = "pairs/s"


def build_scenarios(
    kinds: list[str],
    payloads: list[str],
    threads: list[tuple[int, int]],
    quick: bool,
    items: int | None,
) -> list[Scenario]:
    out: list[Scenario] = []
    if "pair" in kinds:
        out.append(
            Scenario(
                "pair",
                "pair",
                "put_nowait + get_nowait, 1 thread, 1,920 B items",
                impl_kinds=("queue", "deque"),
            )
        )
    if "timeout" in kinds:
        out.append(
            Scenario(
                "timeout",
                "timeout",
                "put + get with timeout=0.5 (no wait needed), 1 thread, 1,920 B items",
                impl_kinds=("queue", "manager"),
            )
        )
    if "threads" in kinds:
        for p, c in threads:
            for pl in payloads:
                n = None if items is None else max(items, p)  # at least one item per producer
                secs = None if n is not None else THREAD_SECONDS[1 if quick else 0]
                amount = f"{n:,} items" if n is not None else f"producers put for {secs:g} s"
                out.append(
                    Scenario(
                        f"threads-{p}x{c}-{pl}",
                        "threads",
                        f"{p} producers x {c} consumers, blocking, {PAYLOADS[pl][1]} by reference, "
                        f"queue maxsize {THREAD_MAXSIZE[pl]}, {amount}",
                        payload=pl,
                        producers=p,
                        consumers=c,
                        items=n,
                        seconds=secs,
                        maxsize=THREAD_MAXSIZE[pl],
                        impl_kinds=("queue", "manager"),
                        unit="items/s",
                    )
                )
    return out


# --------------------------------------------------------------------------
# results


@dataclass
class Result:
    scenario: str
    scenario_title: str
    kind: str
    implementation: str
    impl_key: str
    available: bool = True
    note: str = ""
    error: str = ""
    unit: str = ""
    ops: int = 0
    seconds: float = 0.0
    throughput: float | None = None  # pairs/s, or items accepted per second (threads)
    ns_per_op: float | None = None
    ratio_vs_queue: float | None = None
    ratio_vs_baseline: float | None = None
    # threaded accounting, all for the reported (fastest timed) run:
    # attempted == delivered + dropped + lost
    payload_bytes: int | None = None
    attempted: int | None = None  # put calls ('items' in the table)
    accepted: int | None = None  # put calls that reported success
    delivered: int | None = None  # distinct items a consumer received
    dropped: int | None = None  # evicted by the overflow policy, or put reported failure
    dropped_uncounted: int | None = None  # part of dropped the implementation itself never counts
    lost: int | None = None  # see the module docstring; must be 0 for bufmgr
    duplicates: int | None = None
    hung: bool = False
    ours: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------
# single-thread measurements


def _best_time(loop: Callable[[int], None], target_s: float, repeats: int) -> tuple[int, float]:
    """Auto-range n so one run takes ~target_s/repeats; return (n, best seconds)."""
    per_run = max(0.005, target_s / max(1, repeats))
    n = 1000
    while True:
        t0 = time.perf_counter()
        loop(n)
        dt = time.perf_counter() - t0
        if dt >= per_run * 0.4 or n >= 50_000_000:
            break
        n = int(n * min(10.0, max(2.0, per_run / max(dt, 1e-9))))
    if dt > 0:
        n = max(1000, int(n * per_run / dt))
    best = float("inf")
    for _ in range(max(1, repeats)):
        gc_was = gc.isenabled()
        gc.disable()
        try:
            t0 = time.perf_counter()
            loop(n)
            best = min(best, time.perf_counter() - t0)
        finally:
            if gc_was:
                gc.enable()
    return n, best


def _pair_loop(impl: Impl, sc: Scenario) -> tuple[Callable[[int], None], Callable[[], None]]:
    item = bytes(PAYLOADS[sc.payload][0])
    if impl.kind == "manager":
        mgr = _new_manager(impl)
        put_b, get_b, comp = mgr.put_buffer, mgr.get_buffer, MANAGER_COMPONENT
        to = PAIR_TIMEOUT
        if not put_b(comp, item, timeout=to) or get_b(comp, timeout=to) is not item:
            _close_manager(mgr)
            raise RuntimeError(f"{impl.label}: put_buffer/get_buffer did not round-trip an item")

        def loop(n: int) -> None:
            for _ in range(n):
                put_b(comp, item, timeout=to)
                get_b(comp, timeout=to)

        return loop, lambda: _close_manager(mgr)

    q = _new_queue(impl, 1000)
    if impl.kind == "deque":
        put, get = q.append, q.popleft
    elif sc.kind == "pair":
        put, get = q.put_nowait, q.get_nowait
    else:
        put, get = q.put, q.get

        def loop_t(n: int) -> None:
            for _ in range(n):
                put(item, timeout=PAIR_TIMEOUT)
                get(timeout=PAIR_TIMEOUT)

        return loop_t, lambda: None

    def loop(n: int) -> None:
        for _ in range(n):
            put(item)
            get()

    return loop, lambda: None


def run_single(impl: Impl, sc: Scenario, target_s: float, repeats: int) -> Result:
    res = _result(impl, sc)
    loop, close = _pair_loop(impl, sc)
    try:
        loop(200)  # warm up (and fail early)
        n, best = _best_time(loop, target_s, repeats)
    finally:
        close()
    res.ops, res.seconds = n, best
    res.throughput = n / best if best > 0 else None
    res.ns_per_op = best / n * 1e9
    return res


# --------------------------------------------------------------------------
# threaded measurement

_SENTINEL = None
_CHUNK = 256  # producers look at the time box every _CHUNK items


@dataclass
class _Trial:
    """One threaded run, raw counts."""

    seconds: float
    attempted: int  # put calls
    accepted: int  # put calls that reported success
    refused: int  # put calls that reported failure (returned False)
    evicted: int  # oldest items evicted by the drop policy
    evicted_counted: bool  # False: the implementation keeps no such count (benchmark instrumentation)
    delivered: int  # items consumers received
    unique: int  # distinct stamps among them
    race_failures: int  # baseline: put_buffer failed with queue.Empty (the new frame is gone)
    hung: bool
    errors: list[str]
    note: str = ""

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0


def account(t: _Trial) -> dict[str, int]:
    """Sort every put call of one run into delivered / dropped / lost.

    * delivered: distinct stamps a consumer received;
    * dropped: evicted by the overflow policy, or ``put`` returned False for
      a reason the application is told about (a timeout, a closed queue);
    * lost: ``put_buffer`` failed because the baseline's check-then-act race
      raised ``queue.Empty`` (an unexpected error, the new frame is gone),
      plus items accepted that were neither delivered nor dropped.

    ``items == delivered + dropped + lost`` unless the counters over-count
    (``overcounted`` > 0: a counter bug, reported as an error for bufmgr).
    """
    race = max(0, min(t.race_failures, t.refused))
    refused = t.refused - race
    unexplained = t.accepted - t.unique - t.evicted
    return {
        "items": t.attempted,
        "delivered": t.unique,
        "dropped": t.evicted + refused,
        "dropped_uncounted": 0 if t.evicted_counted else t.evicted,
        "lost": race + max(0, unexplained),
        "lost_race": race,
        "lost_unaccounted": max(0, unexplained),
        "duplicates": t.delivered - t.unique,
        "overcounted": max(0, -unexplained),
    }


def _trial(impl: Impl, sc: Scenario, items: int | None, seconds: float | None) -> _Trial:
    """One P x C run: exactly `items` items, or as many as fit in `seconds`."""
    size = PAYLOADS[sc.payload][0]
    P, C = sc.producers, sc.consumers
    total = items if items is not None else MAX_THREAD_ITEMS
    per = [total // P + (1 if i < total % P else 0) for i in range(P)]

    is_mgr = impl.kind == "manager"
    mgr = q = None
    if is_mgr:
        mgr = _new_manager(impl)
        comp = MANAGER_COMPONENT
        mput, mget = mgr.put_buffer, mgr.get_buffer
    else:
        q = _new_queue(impl, sc.maxsize)
        qput, qget = q.put, q.get

    # Every worker parks on `ready`, then waits for `go`: the clock starts
    # before `go` is set, so no work can happen before t0 (with the GIL the
    # main thread may otherwise run late and start the clock mid-run).
    ready = threading.Barrier(P + C + 1)
    go = threading.Event()
    stop = threading.Event()  # the time box is over
    producers_done = threading.Event()
    accepted = [0] * P
    refused = [0] * P
    got: list[list[Any]] = [[] for _ in range(C)]  # stamps received, per consumer
    errors: list[str] = []

    def start() -> None:
        ready.wait(timeout=DEADLINE_S)
        go.wait(timeout=DEADLINE_S)

    def producer(pid: int) -> None:
        n = per[pid]
        base = pid << 40  # stamps: producer id in the high bits, sequence below
        stopped = stop.is_set
        ok = no = s = 0
        try:
            # Allocated once. A queue item is a (stamp, payload) tuple that
            # references it. put_buffer takes bytes only (its fast path exact
            # bytes), so a manager item is an 8-byte stamp: neither manager
            # reads or copies the data, so that is the same hand-off as the
            # payload's own bytes object.
            payload = bytes(size)
            start()
            while s < n and not stopped():
                e = min(n, s + _CHUNK)
                if is_mgr:
                    for k in range(base + s, base + e):
                        if mput(comp, k.to_bytes(8, "little"), timeout=PAIR_TIMEOUT):
                            ok += 1
                        else:
                            no += 1
                else:
                    for k in range(base + s, base + e):
                        qput((k, payload))
                    ok += e - s
                s = e
        except BaseException as exc:  # noqa: BLE001 - reported in the row
            errors.append(f"producer {pid}: {exc!r}")
        finally:
            accepted[pid], refused[pid] = ok, no

    def consumer(cid: int) -> None:
        append = got[cid].append
        try:
            start()
            if is_mgr:
                is_done = producers_done.is_set
                while True:
                    done_before = is_done()
                    item = mget(comp, timeout=CONSUMER_POLL_S)
                    if item is None:
                        if done_before:
                            return
                        continue
                    append(item)  # the 8-byte stamp
            else:
                while True:
                    item = qget()
                    if item is _SENTINEL:
                        return
                    append(item[0])
        except BaseException as exc:  # noqa: BLE001
            errors.append(f"consumer {cid}: {exc!r}")

    threads = [threading.Thread(target=producer, args=(i,), daemon=True, name=f"bench-producer-{i}") for i in range(P)]
    threads += [threading.Thread(target=consumer, args=(i,), daemon=True, name=f"bench-consumer-{i}") for i in range(C)]
    gc_was = gc.isenabled()
    gc.disable()
    for t in threads:
        t.start()
    deadline = time.monotonic() + DEADLINE_S
    hung = False
    try:
        ready.wait(timeout=DEADLINE_S)
        t0 = time.perf_counter()
        go.set()
        if seconds is not None:
            box_end = time.monotonic() + seconds
            for t in threads[:P]:
                t.join(max(0.0, box_end - time.monotonic()))
            stop.set()
        for t in threads[:P]:
            t.join(max(0.0, deadline - time.monotonic()))
        hung = any(t.is_alive() for t in threads[:P])
        if is_mgr:
            # Drained = the queue is empty again: the moment of the last
            # delivery (consumers only notice CONSUMER_POLL_S later).
            while not hung and time.monotonic() < deadline and _manager_size(mgr, comp) > 0:
                time.sleep(0.0005)
            t_end = time.perf_counter()
            producers_done.set()
        else:
            for _ in range(C):
                qput(_SENTINEL)
        for t in threads[P:]:
            t.join(max(0.0, deadline - time.monotonic()))
        if not is_mgr:
            t_end = time.perf_counter()
        hung = hung or any(t.is_alive() for t in threads)
    except threading.BrokenBarrierError:
        hung = True
        t0 = t_end = time.perf_counter()
    finally:
        stop.set()
        if gc_was:
            gc.enable()

    note = ""
    evicted, counted, race = 0, True, 0
    if is_mgr:
        reported = _manager_dropped(mgr, comp)
        if reported is not None:
            evicted = reported
        else:
            # The replaced manager counts nothing; bufmgr.baseline adds
            # benchmark-only counters that do not change its behaviour.
            counted = False
            instrumented = getattr(mgr, "evicted", None)
            if isinstance(instrumented, dict) and isinstance(instrumented.get(comp), int):
                evicted = instrumented[comp]
            else:
                note = "the manager reports no drop count"
        lf = getattr(mgr, "lost_frames", 0)
        race = lf if isinstance(lf, int) else 0
        _close_manager(mgr)
    else:
        stats = getattr(q, "stats", None)
        if callable(stats):
            evicted = int(stats().get("dropped", 0))

    keys = [k for out in got for k in out]
    return _Trial(
        seconds=max(t_end - t0, 1e-9),
        attempted=sum(accepted) + sum(refused),
        accepted=sum(accepted),
        refused=sum(refused),
        evicted=evicted,
        evicted_counted=counted,
        delivered=len(keys),
        unique=len(set(keys)),
        race_failures=race,
        hung=hung,
        errors=errors,
        note=note,
    )


_ACCOUNT_KEYS = ("items", "delivered", "dropped", "lost", "duplicates")


def run_threads(impl: Impl, sc: Scenario, repeats: int = 1, warmup_s: float | None = None) -> Result:
    """The fastest of `repeats` timed runs, after an optional untimed warm-up.

    Every count in the row (items, delivered, dropped, lost) is that one
    reported run's. The other runs are checked too: for a bufmgr row, a lost
    or duplicated item in ANY run is an error (exit status 1).
    """
    res = _result(impl, sc)
    size = PAYLOADS[sc.payload][0]
    res.payload_bytes = size
    warm = None
    if warmup_s:
        if sc.items is None:
            warm = _trial(impl, sc, None, warmup_s)
        else:
            warm = _trial(impl, sc, max(sc.producers, sc.items // 10), None)
    timed = [_trial(impl, sc, sc.items, sc.seconds) for _ in range(max(1, repeats))]
    best = max(timed, key=lambda t: t.rate)
    acc = account(best)
    res.attempted = acc["items"]
    res.accepted = best.accepted
    res.delivered = acc["delivered"]
    res.dropped = acc["dropped"]
    res.dropped_uncounted = acc["dropped_uncounted"]
    res.lost = acc["lost"]
    res.duplicates = acc["duplicates"]

    others = [("warm-up", warm)] if warm is not None else []
    others += [(f"timed run {i + 1}", t) for i, t in enumerate(timed) if t is not best]
    other_acc = [(name, t, account(t)) for name, t in others]
    res.extra = {
        "reported_run": f"the fastest of {len(timed)} timed runs" if len(timed) > 1 else "the only timed run",
        "seconds_per_run": sc.seconds,
        "items_per_run": sc.items,
        "maxsize": "manager default (capture_left: 1000, drop_oldest)" if impl.kind == "manager" else sc.maxsize,
        "evicted": best.evicted,
        "evicted_counted_by_implementation": best.evicted_counted,
        "refused": best.refused,
        "lost_race": acc["lost_race"],
        "lost_unaccounted": acc["lost_unaccounted"],
        "other_runs": [
            {"run": name, "seconds": round(t.seconds, 4), **{k: a[k] for k in _ACCOUNT_KEYS}}
            for name, t, a in other_acc
        ],
    }
    if acc["overcounted"]:
        res.extra["overcounted"] = acc["overcounted"]
        if impl.ours:
            res.error = f"counters over-count: {acc['overcounted']:,} items both delivered and counted as dropped"
    dups = acc["duplicates"] + sum(a["duplicates"] for _, _, a in other_acc)
    if dups:
        res.error = f"{dups:,} items delivered twice"
    if impl.ours:
        lost_elsewhere = [(name, a["lost"]) for name, _, a in other_acc if a["lost"]]
        if lost_elsewhere:
            res.error = "lost items in " + ", ".join(f"the {name} ({n:,})" for name, n in lost_elsewhere)
    if impl.ours and not best.accepted:
        res.error = f"no put was accepted ({best.refused:,} refused)"
    res.hung = any(t.hung for t in timed) or (warm is not None and warm.hung)
    if res.hung:
        res.error = f"threads still running after {DEADLINE_S:.0f} s"
    errs = [e for t in ([warm] if warm else []) + timed for e in t.errors]
    if errs:
        res.error = "; ".join(errs[:3])
    res.note = next((t.note for t in timed if t.note), "")
    # Throughput = items accepted per second until the queue drained again:
    # with "block" every one was delivered; with drop_oldest (the managers)
    # most were evicted, as the delivered/dropped columns show.
    res.ops = best.accepted
    res.seconds = best.seconds
    res.throughput = best.rate
    res.ns_per_op = (best.seconds / best.accepted * 1e9) if best.accepted else None
    return res


def _manager_size(mgr: Any, comp: str) -> int:
    """Items queued on `comp` (get_usage() is the cheap view both managers have)."""
    try:
        usage = mgr.get_usage()[comp]
        return int(usage.get("size", 0)) if isinstance(usage, dict) else int(usage)
    except Exception:  # noqa: BLE001 - fall back to the stats view
        pass
    try:
        return int(mgr.get_performance_stats()["components"][comp]["size"])
    except Exception:  # noqa: BLE001
        return 0


# --------------------------------------------------------------------------
# orchestration


def _result(impl: Impl, sc: Scenario) -> Result:
    return Result(
        scenario=sc.key,
        scenario_title=sc.title,
        kind=sc.kind,
        implementation=impl.label,
        impl_key=impl.key,
        unit=sc.unit,
        ours=impl.ours,
    )


def applicable(impl: Impl, sc: Scenario) -> bool:
    return impl.kind in sc.impl_kinds


def run_all(
    scenarios: list[Scenario],
    impls: list[Impl],
    *,
    quick: bool,
    repeats: int | None = None,
    progress: ProgressBar | None = None,
) -> list[Result]:
    target = 0.12 if quick else 0.9
    reps = repeats if repeats is not None else (2 if quick else 3)
    # The baseline logs a traceback for every frame its race loses: counted
    # in the table instead.
    quiet = logging.getLogger("bufmgr.baseline")
    old_level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return _run_all(scenarios, impls, quick, target, reps, progress)
    finally:
        quiet.setLevel(old_level)


def _run_all(
    scenarios: list[Scenario],
    impls: list[Impl],
    quick: bool,
    target: float,
    reps: int,
    progress: ProgressBar | None,
) -> list[Result]:
    results: list[Result] = []
    for sc in scenarios:
        rows: list[Result] = []
        for impl in impls:
            if not applicable(impl, sc):
                continue
            if progress is not None:
                progress.set_label(f"{sc.key}: {impl.label}")
            if not impl.available:
                r = _result(impl, sc)
                r.available = False
                r.note = impl.unavailable or "n/a"
            else:
                try:
                    if sc.kind == "threads":
                        i = 1 if quick else 0
                        r = run_threads(impl, sc, repeats=THREAD_REPEATS[i], warmup_s=WARMUP_SECONDS[i])
                    else:
                        r = run_single(impl, sc, target, reps)
                except Exception as exc:  # noqa: BLE001 - one broken row must not kill the table
                    r = _result(impl, sc)
                    r.error = f"{type(exc).__name__}: {exc}"
            rows.append(r)
            if progress is not None:
                progress.advance(1)
        _fill_ratios(rows)
        results.extend(rows)
    return results


def count_runs(scenarios: list[Scenario], impls: list[Impl]) -> int:
    return sum(1 for sc in scenarios for i in impls if applicable(i, sc))


def _fill_ratios(rows: list[Result]) -> None:
    def tp(key: str) -> float | None:
        for r in rows:
            if r.impl_key == key and r.throughput and not r.error:
                return r.throughput
        return None

    ref_q, ref_b = tp("queue"), tp("baseline")
    for r in rows:
        if not r.throughput or r.error:
            continue
        if ref_q:
            r.ratio_vs_queue = r.throughput / ref_q
        if ref_b and r.impl_key in ("manager", "baseline"):
            r.ratio_vs_baseline = r.throughput / ref_b


# --------------------------------------------------------------------------
# output


def _si(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.2f} {suffix}{unit}"
    return f"{x:.0f} {unit}".rstrip()


def _ns(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f} ms"
    if x >= 1e3:
        return f"{x / 1e3:.2f} us"
    return f"{x:.0f} ns"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _int(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


COLUMNS = ("implementation", "throughput", "per op", "vs Queue", "vs baseline")
THREAD_COLUMNS = COLUMNS + ("items", "delivered", "dropped", "lost", "")

UNCOUNTED_NOTE = (
    "*not counted by the replaced manager: the application cannot see these drops "
    "(the figure comes from benchmark-only instrumentation, BaselineBufferManager.evicted)."
)


def format_table(results: list[Result], header: str = "") -> str:
    lines: list[str] = []
    if header:
        lines.append(header)
    by_sc: dict[str, list[Result]] = {}
    for r in results:
        by_sc.setdefault(r.scenario, []).append(r)
    for rows in by_sc.values():
        first = rows[0]
        threaded = first.kind == "threads"
        lines.append("")
        lines.append(f"[{first.scenario}] {first.scenario_title}")
        table = [THREAD_COLUMNS if threaded else COLUMNS]
        starred = threaded and any(r.dropped_uncounted for r in rows if r.available and not r.error)
        for r in rows:
            if not r.available or r.error:
                msg = r.note if not r.available else f"ERROR {r.error}"
                table.append((r.implementation, msg))
                continue
            row = [
                r.implementation,
                _si(r.throughput, "/s"),
                _ns(r.ns_per_op),
                _ratio(r.ratio_vs_queue),
                _ratio(r.ratio_vs_baseline),
            ]
            if threaded:
                dropped = _int(r.dropped)
                if starred:  # keep the digits aligned with the starred cell
                    dropped += "*" if r.dropped_uncounted else " "
                row += [_int(r.attempted), _int(r.delivered), dropped, _int(r.lost), "<-- LOST" if r.lost else ""]
            table.append(tuple(row))
        lines.extend(_render(table))
    lines.append("")
    lines.extend(footnotes(results))
    return "\n".join(lines)


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, width=110, break_on_hyphens=False)


def footnotes(results: list[Result]) -> list[str]:
    out: list[str] = []
    threaded = [r for r in results if r.kind == "threads"]
    shown = [r for r in threaded if r.available and not r.error]
    if threaded:
        keys = {r.impl_key for r in shown}
        runs = next((r.extra.get("reported_run") for r in shown if r.extra.get("reported_run")), "")
        note = (
            f"Threaded rows: all counts are from the run shown ({runs or 'one timed run'}, after an untimed "
            "warm-up run): items = put calls = delivered + dropped + lost."
        )
        if any(r.extra.get("seconds_per_run") for r in shown):
            note += (
                f" Producers stop when the time is up or at {MAX_THREAD_ITEMS:,} items (a cap that bounds "
                "memory), whichever comes first."
            )
        note += (
            " Throughput = items accepted per second until the queue has drained again. Queue rows block "
            "the producers when the queue is full, so every item is delivered"
        )
        note += "; queue.SimpleQueue is unbounded (it never blocks)." if "simplequeue" in keys else "."
        if keys & {"manager", "baseline"}:
            note += (
                " Manager rows share one component (capture_left: 1000 slots, drop_oldest): the producers "
                "outrun the consumers, so most items are evicted as the oldest and show as 'dropped'."
            )
        out.extend(_wrap(note))
        out.extend(
            _wrap(
                "Payloads: queues pass references, so these rows measure the hand-off, not malloc/memcpy. "
                "Each producer allocates its payload once; a queue item is a small (stamp, payload) tuple "
                "pointing at it, a manager item an 8-byte stamp (put_buffer takes bytes; neither manager reads "
                "or copies them, so a stamp hands off like a 6 MB frame). The payload size would only change "
                "memory traffic for a consumer that touches the data, which these consumers do not; the "
                "payload rows differ only in the queue rows' maxsize."
            )
        )
        if any(r.lost for r in shown) or any(r.impl_key == "baseline" for r in shown):
            out.extend(
                _wrap(
                    "lost = accepted but neither delivered nor counted as dropped, plus (baseline) put_buffer "
                    "calls that failed with an unexpected queue.Empty: its `if q.full(): q.get_nowait()` lost "
                    "the race with a consumer and the NEW frame was discarded."
                )
            )
        if any(r.dropped_uncounted for r in shown):
            out.extend(_wrap(UNCOUNTED_NOTE))
    ours_checked = [r for r in threaded if r.ours and r.lost is not None and r.available and not r.error]
    if ours_checked and not any(r.lost for r in ours_checked):
        out.append(
            f"bufmgr lost frames: 0 in {len(ours_checked)} threaded rows -- every item was delivered "
            "or counted as dropped."
        )
    for r in results:
        if not r.lost:
            continue
        head = f"!! LOST FRAMES: {r.implementation} lost {r.lost:,} of {r.attempted:,} items in {r.scenario}"
        if r.ours:
            out.append(
                f"!! LOST FRAMES (a bufmgr bug, please report it): {r.implementation} lost {r.lost:,} of "
                f"{r.attempted:,} items in {r.scenario}: put reported success, never delivered, "
                "not counted as dropped."
            )
            continue
        race = int(r.extra.get("lost_race", 0) or 0)
        other = int(r.extra.get("lost_unaccounted", 0) or 0)
        why = []
        if race:
            why.append(
                f"{race:,} put_buffer call{'s' if race != 1 else ''} lost the check-then-act race "
                "(queue.Empty, logged as an unexpected error; the new frame is gone)"
            )
        if other:
            why.append(f"{other:,} accepted items were neither delivered nor counted as dropped")
        out.append(head + ": " + "; ".join(why) + ".")
    for r in results:
        if r.error:
            out.append(f"!! {r.implementation} / {r.scenario}: {r.error}")
    return out


def _render(table: list[tuple[str, ...]]) -> list[str]:
    ncols = len(table[0])
    widths = [0] * ncols
    for row in table:
        if len(row) == ncols:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))
    widths[0] = max(widths[0], max(len(r[0]) for r in table))
    out = []
    for idx, row in enumerate(table):
        if len(row) < ncols:  # n/a / error rows: name + free text
            out.append("  " + row[0].ljust(widths[0]) + "  " + "  ".join(row[1:]))
            continue
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        out.append(("  " + "  ".join(cells)).rstrip())
        if idx == 0:
            out.append(("  " + "  ".join(("-" if head else " ") * w for head, w in zip(row, widths))).rstrip())
    return out


def environment() -> dict[str, Any]:
    import bufmgr

    return {
        "bufmgr_version": getattr(bufmgr, "__version__", "?"),
        "frame_queue_implementation": getattr(bufmgr, "IMPLEMENTATION", "?"),
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_compiler": platform.python_compiler(),
        "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
    }


def header_line(env: dict[str, Any], quick: bool) -> str:
    return (
        f"bufmgr {env['bufmgr_version']} bench{' --quick' if quick else ''}: "
        f"{env['python_implementation']} {env['python_version']}, {env['platform']}, "
        f"{env['cpu_count']} CPUs; bufmgr.FrameQueue is the {env['frame_queue_implementation']} implementation.\n"
        "Throughput: higher is better. 'vs Queue' = throughput / queue.Queue's in the same scenario "
        "(2.00x = twice as fast); 'vs baseline' = manager rows against the replaced manager."
    )


def to_json(results: list[Result], env: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "bufmgr-bench/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": env,
        # flat copies of the three facts people grep for
        "python_version": env["python_version"],
        "python_implementation": env["python_implementation"],
        "cpu_count": env["cpu_count"],
        "options": options,
        "scenarios": _scenario_index(results),
        "results": [asdict(r) for r in results],
        "lost_total": sum(r.lost or 0 for r in results),
        "lost_in_bufmgr": sum(r.lost or 0 for r in results if r.ours),
    }


def _scenario_index(results: list[Result]) -> list[dict[str, str]]:
    seen: dict[str, dict[str, str]] = {}
    for r in results:
        seen.setdefault(r.scenario, {"key": r.scenario, "kind": r.kind, "title": r.scenario_title, "unit": r.unit})
    return list(seen.values())


def write_json(path: str, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")


# --------------------------------------------------------------------------
# plot


class PlotUnavailable(RuntimeError):
    pass


PLOT_HINT = (
    "--plot needs matplotlib, which is not installed. Install it with\n"
    "    pip install 'bufmgr[plot]'     (or: pip install matplotlib)\n"
    "or leave out --plot (--json PATH keeps the numbers for later)."
)


def check_plot_available() -> None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("matplotlib")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise PlotUnavailable(PLOT_HINT)


#: Characters per line of a panel title (7.5-inch panels, 8.5 pt).
_PLOT_TITLE_CHARS = 78


def write_plot(path: str, results: list[Result], title: str) -> None:
    fig = plot_figure(results, title)
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def plot_figure(results: list[Result], title: str) -> Any:
    """The --plot figure (matplotlib, Agg): one panel per scenario."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import EngFormatter
    except ImportError as exc:
        raise PlotUnavailable(PLOT_HINT) from exc

    by_sc: dict[str, list[Result]] = {}
    for r in results:
        by_sc.setdefault(r.scenario, []).append(r)
    n = len(by_sc)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    # Titles are wrapped to the panel width (they used to run off the edge
    # and into the neighbouring panel); the row height follows the bars and
    # the title's lines.
    title_lines = {key: textwrap.wrap(f"{key}: {rs[0].scenario_title}", _PLOT_TITLE_CHARS)
                   for key, rs in by_sc.items()}
    bars_max = max(len(rs) for rs in by_sc.values())
    row_h = 0.42 * bars_max + 0.2 * max(len(t) for t in title_lines.values()) + 1.4
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, row_h * rows + 0.6), squeeze=False)
    palette = {
        "frame-c": "#1f77b4",
        "frame-py": "#6baed6",
        "queue": "#7f7f7f",
        "simplequeue": "#bcbd22",
        "deque": "#c7c7c7",
        "manager": "#2ca02c",
        "baseline": "#d62728",
    }
    threaded_any = False
    for ax, (key, rs) in zip(axes.flat, by_sc.items()):
        rs = rs[::-1]  # barh draws bottom-up
        labels = [r.implementation for r in rs]
        colors = [palette.get(r.impl_key, "#999999") for r in rs]
        threaded = any(r.kind == "threads" for r in rs)
        if threaded:
            # Stacked: delivered per second (solid), dropped by the overflow
            # policy or refused (hatched, pale), lost (red). The bar's length
            # is what the producers offered; only the solid part reached a
            # consumer, so a row that drops most items no longer towers.
            threaded_any = True
            delivered, dropped, lost = [], [], []
            for r in rs:
                sec = r.seconds if r.available and not r.error and r.seconds else 0.0
                delivered.append((r.delivered or 0) / sec if sec else 0.0)
                dropped.append((r.dropped or 0) / sec if sec else 0.0)
                lost.append((r.lost or 0) / sec if sec else 0.0)
            ax.barh(labels, delivered, color=colors)
            ax.barh(labels, dropped, left=delivered, color=colors, alpha=0.3, hatch="///",
                    edgecolor="#555555", linewidth=0)
            left2 = [a + b for a, b in zip(delivered, dropped)]
            ax.barh(labels, lost, left=left2, color="#000000")
            ends = [a + b for a, b in zip(left2, lost)]
        else:
            ends = [(r.throughput or 0.0) for r in rs]
            ax.barh(labels, ends, color=colors)
        top = max(ends) if any(ends) else 1.0
        for y, (r, end) in enumerate(zip(rs, ends)):
            if not r.available:
                txt = "n/a"
            elif r.error:
                txt = "error"
            elif threaded:
                sec = r.seconds or 0.0
                txt = _si((r.delivered or 0) / sec if sec else None) + " delivered"
                offered = r.attempted or 0
                if r.dropped and offered:
                    txt += f", {100.0 * r.dropped / offered:.1f}% dropped"
                if r.lost:
                    txt += f", LOST {r.lost:,}"
            else:
                txt = _si(r.throughput)
                if r.ratio_vs_queue:
                    txt += f"  ({r.ratio_vs_queue:.1f}x Queue)"
            ax.text(end + top * 0.01, y, txt, va="center", fontsize=7.5)
        ax.set_xlim(0, top * 1.6)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_title("\n".join(title_lines[key]), fontsize=8.5, loc="left")
        unit = "items/s offered: delivered + dropped + lost" if threaded else rs[0].unit
        ax.set_xlabel(unit + " (higher is better)", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if threaded_any:
        from matplotlib.patches import Patch

        fig.legend(
            handles=[Patch(color="#777777", label="delivered to a consumer"),
                     Patch(facecolor="#777777", alpha=0.3, hatch="///", label="dropped (overflow policy / refused)"),
                     Patch(color="#000000", label="lost (bufmgr: never)")],
            loc="lower center", ncol=3, fontsize=8, frameon=False,
        )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.03 if threaded_any else 0, 1, 1))
    return fig


# --------------------------------------------------------------------------
# entry point (called by bufmgr.cli.main)


def parse_threads(spec: str) -> tuple[int, int]:
    import argparse

    try:
        p, c = spec.lower().split("x")
        pi, ci = int(p), int(c)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PxC like 2x2 or 4x2, got {spec!r}") from None
    if not (1 <= pi <= 64 and 1 <= ci <= 64):
        raise argparse.ArgumentTypeError(f"producers and consumers must be 1..64, got {spec!r}")
    return pi, ci


def output_path_problem(path: str) -> str | None:
    """Why `path` cannot be written (checked before minutes of work), or None."""
    parent = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        return f"{path} is a directory"
    if not os.path.isdir(parent):
        return f"directory {parent} does not exist"
    if not os.access(parent, os.W_OK):
        return f"directory {parent} is not writable"
    return None


def run(args: Any) -> int:
    if args.scenario and "processes" in args.scenario:  # between processes: bufmgr/cli/procs.py
        from . import procs

        return procs.run(args, in_process=run)
    plot_path = args.plot
    for opt, path in (("--json", args.json), ("--plot", plot_path)):
        problem = path and output_path_problem(path)
        if problem:
            print(f"bufmgr bench: error: cannot write {opt} {path}: {problem}", file=sys.stderr)
            return 2
    if plot_path:
        try:
            check_plot_available()
        except PlotUnavailable as exc:
            print(f"bufmgr bench: error: {exc}", file=sys.stderr)
            return 2

    kinds = args.scenario or ["pair", "timeout", "threads"]
    # asyncio bridges (issue 15): their own rows and table, bufmgr/cli/aiobench.py
    run_aio = "asyncio" in kinds
    kinds = [k for k in kinds if k != "asyncio"]
    payloads = args.payload or list(PAYLOADS)
    threads = args.threads or [(2, 2)]
    scenarios = build_scenarios(kinds, payloads, threads, args.quick, args.items)
    impls = implementations()
    if args.impl:
        wanted = set(args.impl)
        impls = [i for i in impls if i.key in wanted]

    env = environment()
    header = header_line(env, args.quick)
    total = count_runs(scenarios, impls)
    t0 = time.monotonic()
    results: list[Result] = []
    if scenarios:
        with ProgressBar(total, enabled=False if args.no_progress else None) as bar:
            results = run_all(scenarios, impls, quick=args.quick, repeats=args.repeat, progress=bar)
    elapsed = time.monotonic() - t0

    if scenarios:
        print(format_table(results, header))
        print(f"({total} runs in {elapsed:.1f} s)")
    aio_rows = []
    if run_aio:
        from . import aiobench

        if not scenarios:
            print(header)
        with ProgressBar(aiobench.count_rows(), enabled=False if args.no_progress else None) as bar:
            aio_rows = aiobench.run_all(quick=args.quick, progress=bar)
        print(aiobench.format_table(aio_rows))
        elapsed = time.monotonic() - t0
    sys.stdout.flush()

    options = {
        "quick": args.quick,
        "scenarios": kinds,
        "payloads": payloads,
        "threads": [f"{p}x{c}" for p, c in threads],
        "items": args.items,
        "repeat": args.repeat,
        "implementations": [i.key for i in impls],
        "elapsed_s": round(elapsed, 3),
    }
    status = 0
    if args.json:
        try:
            data = to_json(results, env, options)
            if run_aio:
                data["asyncio"] = [asdict(r) for r in aio_rows]
            write_json(args.json, data)
        except OSError as exc:
            print(f"bufmgr bench: error: cannot write --json {args.json}: {exc}", file=sys.stderr)
            status = 2
        else:
            print(f"wrote {args.json}")
    if plot_path:
        try:
            write_plot(plot_path, results, header.splitlines()[0])
        except PlotUnavailable as exc:
            print(f"bufmgr bench: error: {exc}", file=sys.stderr)
            status = 2
        except OSError as exc:
            print(f"bufmgr bench: error: cannot write --plot {plot_path}: {exc}", file=sys.stderr)
            status = 2
        else:
            print(f"wrote {plot_path}")

    lost_ours = sum(r.lost or 0 for r in results if r.ours)
    broken_ours = [r for r in results if r.ours and (r.error or r.hung)]
    broken_ours += [r for r in aio_rows if r.ours and r.error]
    lost_any = [r for r in results if r.lost]
    if lost_any:
        print(
            "bufmgr bench: LOST FRAMES in: "
            + ", ".join(f"{r.implementation} [{r.scenario}] {r.lost:,}" for r in lost_any),
            file=sys.stderr,
        )
    if lost_ours or broken_ours:
        return 1
    return status
