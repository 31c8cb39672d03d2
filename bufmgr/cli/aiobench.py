"""asyncio bridges: bufmgr's ``async_*`` methods against janus, culsans and aiologic.

Used by ``python -m bufmgr bench --scenario asyncio`` and bench/test_bench_asyncio.py.
Every row runs in this process, one after the other, so the ratios are
measured on the same machine and load. Peers that are not installed are
skipped (``pip install "bufmgr[aio-bench]"`` installs them).

Throughput (items/s; a bounded queue of QUEUE_MAXSIZE, "block"; both sides
loop as fast as they can, so each waits for the other whenever the queue is
empty or full):

* ``thread->coro``  -- a thread put()s, a coroutine awaits get;
* ``coro->thread``  -- a coroutine awaits put, a thread get()s;
* ``coro->coro``    -- two coroutines of one loop (asyncio.Queue as reference).

* ``process->coro`` -- SharedFrameRing only: another process put()s, a
  coroutine of this one awaits get (woken through the ring's futex watcher).

SharedFrameRing rows move 8-byte frames (the int, little-endian), each
released at once; in the same-process scenarios one handle serves both sides.

Latency (``wake``): a thread takes a timestamp and puts it while the
coroutine waits on an empty queue (the loop idle in its selector); the
coroutine takes a timestamp when it resumes with the item. p50 / p99 over
LATENCY_SAMPLES. ``call_soon_threadsafe`` is the floor: the same hop done
by hand (a thread resolves a future of the waiting coroutine through
``loop.call_soon_threadsafe(fut.set_result, t0)``), nothing else.
``process-wake`` (SharedFrameRing): the same from another process's put
(perf_counter_ns is the system-wide monotonic clock), samples paced
LATENCY_IDLE_S apart so that the coroutine waits for each.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

QUEUE_MAXSIZE = 1024
ITEMS = (30_000, 5_000)  # per timed run: (default, --quick); aiologic runs ~15k items/s here
REPEATS = (2, 1)  # timed runs per row, the fastest is reported
LATENCY_SAMPLES = (1000, 200)
#: paired wake runs (the target): each LATENCY_SAMPLES wake-ups of ours and of
#: the bare hop, alternated; the rows pool them, the target line also gives
#: the per-run ratios (one run swings by +-5% on a loaded 2-core machine)
PAIRED_RUNS = (5, 2)
LATENCY_IDLE_S = 0.0005  # between samples: the loop is back in its selector
JOIN_S = 120.0

SCENARIOS = ("thread->coro", "coro->thread", "coro->coro", "wake", "process->coro", "process-wake")
PROCESS_SCENARIOS = ("process->coro", "process-wake")
# "wake" also runs "wake-paired": ours and the bare hop interleaved (the target)
BARE = "call_soon_threadsafe"


class _Adapter:
    """One implementation: made inside the running loop (janus needs one)."""

    name = ""

    def make(self, maxsize: int) -> None:
        raise NotImplementedError

    # set by make()
    sync_put: Callable[[Any], Any]
    sync_get: Callable[[], Any]
    async_put: Callable[[Any], Any]
    async_get: Callable[[], Any]

    async def close(self) -> None:
        pass


class _Bufmgr(_Adapter):
    def __init__(self, cls: Any, name: str) -> None:
        self.cls, self.name = cls, name

    def make(self, maxsize: int) -> None:
        q = self.cls(maxsize)
        self.sync_put, self.sync_get = q.put, q.get
        self.async_put, self.async_get = q.async_put, q.async_get


class _JanusLike(_Adapter):
    """janus, and culsans through its janus-compatible sync_q/async_q."""

    def __init__(self, module: Any, name: str) -> None:
        self.module, self.name = module, name

    def make(self, maxsize: int) -> None:
        self.q = q = self.module.Queue(maxsize)
        self.sync_put, self.sync_get = q.sync_q.put, q.sync_q.get
        self.async_put, self.async_get = q.async_q.put, q.async_q.get

    async def close(self) -> None:
        self.q.close()
        await self.q.wait_closed()


class _Aiologic(_Adapter):
    name = "aiologic.Queue"

    def make(self, maxsize: int) -> None:
        import aiologic

        q = aiologic.Queue(maxsize)
        self.sync_put, self.sync_get = q.green_put, q.green_get
        self.async_put, self.async_get = q.async_put, q.async_get


class _SharedRing(_Adapter):
    """SharedFrameRing (Linux): ints travel as 8-byte frames."""

    name = "bufmgr SharedFrameRing"

    def make(self, maxsize: int) -> None:
        import bufmgr

        self.ring = ring = bufmgr.SharedFrameRing(maxsize, 8, overflow="block")
        put, get, aput, aget = ring.put, ring.get, ring.async_put, ring.async_get

        def sync_put(x: int) -> None:
            put(x.to_bytes(8, "little"))

        def sync_get() -> int:
            with get() as f:
                return int.from_bytes(f, "little")

        async def async_put(x: int) -> None:
            await aput(x.to_bytes(8, "little"))

        async def async_get() -> int:
            with await aget() as f:
                return int.from_bytes(f, "little")

        self.sync_put, self.sync_get = sync_put, sync_get
        self.async_put, self.async_get = async_put, async_get

    async def close(self) -> None:
        self.ring.close()


def _shared_ring_available() -> bool:
    try:
        from bufmgr import _shm  # noqa: F401
    except ImportError:
        return False
    return True


def _proc_produce(name: str, n: int, idle_s: float, ready: Any, go: Any) -> None:
    """Child process of the process rows: put n ints (or timestamps)."""
    import bufmgr

    ring = bufmgr.SharedFrameRing.attach(name)
    try:
        ready.set()
        go.wait(JOIN_S)
        now = time.perf_counter_ns
        for i in range(n):
            if idle_s:
                time.sleep(idle_s)
                i = now()
            ring.put(i.to_bytes(8, "little"), timeout=JOIN_S)
    finally:
        ring.close()


async def _from_process(a: _Adapter, n: int, idle_s: float) -> tuple[float, list[float]]:
    """A spawned process puts n items into ``a``'s SharedFrameRing; returns
    (seconds from go to the last item, latencies in µs when idle_s)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    a.make(QUEUE_MAXSIZE)
    ready, go = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_proc_produce, args=(a.ring.name, n, idle_s, ready, go), daemon=True)
    p.start()
    try:
        get = a.async_get
        now = time.perf_counter_ns
        lat = []
        if not await asyncio.to_thread(ready.wait, JOIN_S):
            raise RuntimeError("producer process did not start")
        t0 = time.perf_counter()
        go.set()
        for _ in range(n):
            x = await get()
            if idle_s:
                lat.append((now() - x) / 1000.0)
        dt = time.perf_counter() - t0
        await asyncio.to_thread(p.join, JOIN_S)
        if p.exitcode != 0:
            raise RuntimeError(f"producer process exited with {p.exitcode}")
    finally:
        if p.is_alive():
            p.kill()
            p.join(5)
        await a.close()
    return dt, lat


class _AsyncioQueue(_Adapter):
    name = "asyncio.Queue"

    def make(self, maxsize: int) -> None:
        q = asyncio.Queue(maxsize)
        self.async_put, self.async_get = q.put, q.get


def adapters() -> list[_Adapter]:
    """Installed implementations, ours first."""
    out: list[_Adapter] = []
    try:
        from bufmgr._ring import FrameQueue as CQueue
    except ImportError:
        CQueue = None
    import os

    if CQueue is not None and os.environ.get("BUFMGR_NO_EXTENSIONS", "") in ("", "0"):
        out.append(_Bufmgr(CQueue, "bufmgr FrameQueue-C"))
    from bufmgr._pyqueue import FrameQueue as PyQueue

    out.append(_Bufmgr(PyQueue, "bufmgr FrameQueue-pure"))
    for mod, name in (("janus", "janus.Queue"), ("culsans", "culsans.Queue")):
        try:
            out.append(_JanusLike(__import__(mod), name))
        except ImportError:
            pass
    try:
        import aiologic  # noqa: F401
    except ImportError:
        pass
    else:
        out.append(_Aiologic())
    if CQueue is not None and os.environ.get("BUFMGR_NO_EXTENSIONS", "") in ("", "0") \
            and _shared_ring_available():
        out.append(_SharedRing())
    out.append(_AsyncioQueue())
    return out


def applicable(adapter: _Adapter, scenario: str) -> bool:
    if isinstance(adapter, _AsyncioQueue):
        return scenario == "coro->coro"
    if scenario in PROCESS_SCENARIOS:
        return isinstance(adapter, _SharedRing)
    return True


@dataclass
class AioResult:
    implementation: str
    scenario: str
    items: int = 0
    seconds: float | None = None
    items_per_s: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    error: str | None = None
    run_ratios: list[float] | None = None  # wake-paired: p50 ratio to the bare hop, per run

    @property
    def ours(self) -> bool:
        return self.implementation.startswith("bufmgr")


def _run(coro_fn: Callable[[], Any]) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro_fn(), JOIN_S))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _thread(target: Callable[[], Any]) -> threading.Thread:
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


def _join(t: threading.Thread) -> None:
    t.join(JOIN_S)
    if t.is_alive():
        raise RuntimeError("benchmark thread did not finish")


async def _thread_to_coro(a: _Adapter, n: int) -> float:
    a.make(QUEUE_MAXSIZE)
    go = threading.Event()

    def produce() -> None:
        put = a.sync_put
        go.wait()
        for i in range(n):
            put(i)

    t = _thread(produce)
    get = a.async_get
    t0 = time.perf_counter()
    go.set()
    for _ in range(n):
        await get()
    dt = time.perf_counter() - t0
    _join(t)
    await a.close()
    return dt


async def _coro_to_thread(a: _Adapter, n: int) -> float:
    a.make(QUEUE_MAXSIZE)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    go = threading.Event()
    end: list[float] = []

    def consume() -> None:
        get = a.sync_get
        go.wait()
        for _ in range(n):
            get()
        end.append(time.perf_counter())
        loop.call_soon_threadsafe(done.set_result, None)

    t = _thread(consume)
    put = a.async_put
    t0 = time.perf_counter()
    go.set()
    for i in range(n):
        await put(i)
    await done
    _join(t)
    await a.close()
    return end[0] - t0


async def _coro_to_coro(a: _Adapter, n: int) -> float:
    a.make(QUEUE_MAXSIZE)

    async def produce() -> None:
        put = a.async_put
        for i in range(n):
            await put(i)

    async def consume() -> None:
        get = a.async_get
        for _ in range(n):
            await get()

    t0 = time.perf_counter()
    await asyncio.gather(produce(), consume())
    dt = time.perf_counter() - t0
    await a.close()
    return dt


async def _latency(a: _Adapter | None, samples: int,
                   idle_s: float = LATENCY_IDLE_S) -> list[float]:
    """Wake latencies in µs; a is None: the bare call_soon_threadsafe floor."""
    loop = asyncio.get_running_loop()
    ready = threading.Semaphore(0)
    box: list[asyncio.Future] = []
    if a is not None:
        a.make(QUEUE_MAXSIZE)

    def produce() -> None:
        now = time.perf_counter_ns
        for _ in range(samples):
            ready.acquire()
            if idle_s:
                time.sleep(idle_s)  # the coroutine is parked, the loop idle
            if a is None:
                loop.call_soon_threadsafe(box[0].set_result, now())
            else:
                a.sync_put(now())

    t = _thread(produce)
    out = []
    now = time.perf_counter_ns
    for _ in range(samples):
        if a is None:
            box[:] = [loop.create_future()]
            ready.release()
            t0 = await box[0]
        else:
            ready.release()
            t0 = await a.async_get()
        out.append((now() - t0) / 1000.0)
    _join(t)
    if a is not None:
        await a.close()
    return out


async def _latency_paired(a: _Adapter, samples: int,
                          idle_s: float = LATENCY_IDLE_S) -> tuple[list[float], list[float]]:
    """Wake latencies in µs of ``a`` and of the bare hop, sample by sample
    alternately in one loop and one thread, so drift and load hit both alike."""
    loop = asyncio.get_running_loop()
    ready = threading.Semaphore(0)
    box: list[asyncio.Future] = []
    a.make(QUEUE_MAXSIZE)

    def produce() -> None:
        now = time.perf_counter_ns
        for i in range(2 * samples):
            ready.acquire()
            if idle_s:
                time.sleep(idle_s)
            if i & 1:
                loop.call_soon_threadsafe(box[0].set_result, now())
            else:
                a.sync_put(now())

    t = _thread(produce)
    ours, bare = [], []
    now = time.perf_counter_ns
    for i in range(2 * samples):
        if i & 1:
            box[:] = [loop.create_future()]
            ready.release()
            t0 = await box[0]
            bare.append((now() - t0) / 1000.0)
        else:
            ready.release()
            t0 = await a.async_get()
            ours.append((now() - t0) / 1000.0)
    _join(t)
    await a.close()
    return ours, bare


def _percentiles(lat: list[float]) -> tuple[float, float]:
    lat = sorted(lat)
    return statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def run_paired_wake(a: _Adapter, quick: bool = False) -> tuple[AioResult, AioResult]:
    """The wake-latency target: ``a`` against the bare hop, interleaved."""
    gc_was = gc.isenabled()
    gc.disable()
    ours: list[float] = []
    bare: list[float] = []
    ratios = []
    try:
        for _ in range(PAIRED_RUNS[quick]):
            o, b = _run(lambda: _latency_paired(a, LATENCY_SAMPLES[quick]))
            ratios.append(statistics.median(o) / statistics.median(b))
            ours += o
            bare += b
    finally:
        if gc_was:
            gc.enable()
    rows = []
    for name, lat in ((a.name, ours), (BARE, bare)):
        r = AioResult(name, "wake-paired", items=len(lat))
        r.p50_us, r.p99_us = _percentiles(lat)
        rows.append(r)
    rows[0].run_ratios = ratios
    return rows[0], rows[1]


def run_row(a: _Adapter | None, scenario: str, quick: bool = False) -> AioResult:
    name = BARE if a is None else a.name
    r = AioResult(name, scenario)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        if scenario == "wake":
            lat = _run(lambda: _latency(a, LATENCY_SAMPLES[quick]))
            r.items = len(lat)
            r.p50_us, r.p99_us = _percentiles(lat)
            return r
        if scenario == "process-wake":
            assert a is not None
            _, lat = _run(lambda: _from_process(a, LATENCY_SAMPLES[quick],
                                                max(LATENCY_IDLE_S, 0.0005)))
            r.items = len(lat)
            r.p50_us, r.p99_us = _percentiles(lat)
            return r
        if scenario == "process->coro":
            assert a is not None
            n = ITEMS[quick]
            best = min(_run(lambda: _from_process(a, n, 0.0))[0] for _ in range(REPEATS[quick]))
            r.items, r.seconds, r.items_per_s = n, best, n / best
            return r
        fn = {"thread->coro": _thread_to_coro, "coro->thread": _coro_to_thread,
              "coro->coro": _coro_to_coro}[scenario]
        n = ITEMS[quick]
        _run(lambda: fn(a, min(n, 2000)))  # warm-up
        best = min(_run(lambda: fn(a, n)) for _ in range(REPEATS[quick]))
        r.items, r.seconds, r.items_per_s = n, best, n / best
    except Exception as exc:  # a peer failing is reported, not fatal
        r.error = f"{type(exc).__name__}: {exc}"
    finally:
        if gc_was:
            gc.enable()
    return r


def run_all(quick: bool = False, scenarios: tuple[str, ...] = SCENARIOS,
            progress: Any = None) -> list[AioResult]:
    """Every installed implementation on every scenario; ``progress``: a
    bufmgr.cli.progress.ProgressBar (advanced once per row) or None."""
    rows = []
    impls = adapters()
    for sc in scenarios:
        todo: list[_Adapter | None] = [a for a in impls if applicable(a, sc)]
        if sc == "wake":
            todo.append(None)
        for a in todo:
            rows.append(run_row(a, sc, quick))
            if progress is not None:
                progress.advance(1)
        if sc == "wake" and impls[0].name.startswith("bufmgr"):
            rows.extend(run_paired_wake(impls[0], quick))
            if progress is not None:
                progress.advance(1)
    return rows


def count_rows(scenarios: tuple[str, ...] = SCENARIOS) -> int:
    impls = adapters()
    return sum(len([a for a in impls if applicable(a, sc)]) + 2 * (sc == "wake") for sc in scenarios)


def targets(rows: list[AioResult]) -> list[str]:
    """The issue's targets as ratios of this run's numbers (misses included)."""
    by = {(r.implementation, r.scenario): r for r in rows if r.error is None}
    ours = "bufmgr FrameQueue-C" if ("bufmgr FrameQueue-C", "thread->coro") in by \
        else "bufmgr FrameQueue-pure"
    lines = []

    def rate(impl: str, sc: str) -> float | None:
        r = by.get((impl, sc))
        return r.items_per_s if r else None

    for sc in ("thread->coro", "coro->thread", "coro->coro"):
        mine = rate(ours, sc)
        if mine is None:
            continue
        parts = []
        for peer in ("janus.Queue", "culsans.Queue", "aiologic.Queue", "asyncio.Queue"):
            theirs = rate(peer, sc)
            if theirs:
                parts.append(f"{mine / theirs:.1f}x {peer}")
        if parts:
            lines.append(f"{ours} {sc}: " + ", ".join(parts))
    mine = rate(ours, "thread->coro")
    if mine:
        janus = rate("janus.Queue", "thread->coro")
        if janus:
            lines.append(f"target thread->coro >= 5x janus: {mine / janus:.1f}x "
                         f"({'met' if mine >= 5 * janus else 'MISSED'})")
        peers = [x for x in (rate("culsans.Queue", "thread->coro"),
                             rate("aiologic.Queue", "thread->coro")) if x]
        if peers:
            best = max(peers)
            lines.append(f"target thread->coro >= 1.5x the faster of culsans/aiologic: "
                         f"{mine / best:.2f}x ({'met' if mine >= 1.5 * best else 'MISSED'})")
    w, bare = by.get((ours, "wake-paired")), by.get((BARE, "wake-paired"))
    if w and bare and bare.p50_us:
        ratio = w.p50_us / bare.p50_us
        runs = ""
        if w.run_ratios:
            runs = (f" [{len(w.run_ratios)} paired runs: "
                    + " ".join(f"{x:.2f}x" for x in w.run_ratios) + "]")
        lines.append(f"target wake p50 within 10% of bare call_soon_threadsafe (interleaved, pooled): "
                     f"{w.p50_us:.1f} vs {bare.p50_us:.1f} us = {ratio:.2f}x "
                     f"({'met' if ratio <= 1.10 else 'MISSED'}){runs}; "
                     f"p99 {w.p99_us:.1f} vs {bare.p99_us:.1f} us")
    return lines


def format_table(rows: list[AioResult]) -> str:
    head = ("scenario", "implementation", "items/s", "per item", "p50", "p99")
    table = [head]
    for r in rows:
        if r.error:
            table.append((r.scenario, r.implementation, "error", r.error[:40], "", ""))
        elif r.p50_us is not None:
            table.append((r.scenario, r.implementation, "", "", f"{r.p50_us:.1f} us",
                          f"{r.p99_us:.1f} us"))
        else:
            table.append((r.scenario, r.implementation, f"{r.items_per_s / 1e3:,.0f}k",
                          f"{1e9 / r.items_per_s:,.0f} ns", "", ""))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["asyncio bridges (bounded queue, maxsize %d; wake: thread put -> coroutine resumes)"
             % QUEUE_MAXSIZE]
    for i, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if j < 2 else c.rjust(w)
                               for j, (c, w) in enumerate(zip(row, widths))).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [""] + targets(rows)
    return "\n".join(lines)


def main(quick: bool = False) -> int:  # python -m bufmgr.cli.aiobench
    print(format_table(run_all(quick)))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main("--quick" in sys.argv))
