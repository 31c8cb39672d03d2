"""pytest-benchmark suite: asyncio bridges, bufmgr's async_* against janus,
culsans and aiologic (issue 15). The harness is bufmgr/cli/aiobench.py, the
same code `python -m bufmgr bench --scenario asyncio` runs.

    pytest bench/test_bench_asyncio.py --benchmark-only --benchmark-group-by=group

Groups (implementations are the parametrize ids; peers that are not
installed are skipped: pip install "bufmgr[aio-bench]"):

* ``aio-thread->coro``, ``aio-coro->thread``, ``aio-coro->coro`` -- one round
  moves ITEMS items through a bounded queue (maxsize 1024); items/s =
  ITEMS / time (``extra_info["items"]``).
* ``aio-process->coro`` -- SharedFrameRing: a spawned process puts ITEMS
  8-byte frames, a coroutine of this process awaits them (woken through the
  ring's futex watcher); ``aio-process-wake``: WAKES paced puts from that
  process, the latency to the coroutine resuming in ``extra_info``.
* ``aio-wake`` -- WAKES ping-pong wake-ups: a thread puts, the waiting
  coroutine resumes and lets the thread go on; against the same hop made
  by hand with ``loop.call_soon_threadsafe(fut.set_result, x)``.

With --benchmark-disable (CI) every row runs once on a few items: a smoke test
that every bridge still moves every item.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytest_benchmark")

from bufmgr.cli import aiobench  # noqa: E402

ITEMS = 20_000
ITEMS_SMOKE = 500
WAKES = 200
WAKES_SMOKE = 20

IMPLS = {a.name: a for a in aiobench.adapters()}
NAMES = ["bufmgr FrameQueue-C", "bufmgr FrameQueue-pure", "janus.Queue", "culsans.Queue",
         "aiologic.Queue", "asyncio.Queue", "bufmgr SharedFrameRing"]
SHARED = "bufmgr SharedFrameRing"
RUNNERS = {
    "thread->coro": aiobench._thread_to_coro,
    "coro->thread": aiobench._coro_to_thread,
    "coro->coro": aiobench._coro_to_coro,
}


def _adapter(name: str, scenario: str):
    a = IMPLS.get(name)
    if a is None:
        pytest.skip(f"{name} not installed (or BUFMGR_NO_EXTENSIONS=1)")
    if not aiobench.applicable(a, scenario):
        pytest.skip(f"{name} has no thread side")
    return a


def _disabled(benchmark) -> bool:
    return getattr(benchmark, "disabled", False)


def _bridge(benchmark, impl, scenario):
    a = _adapter(impl, scenario)
    n = ITEMS_SMOKE if _disabled(benchmark) else ITEMS
    benchmark.group = f"aio-{scenario}"
    benchmark.extra_info["items"] = n
    runner = RUNNERS[scenario]
    aiobench._run(lambda: runner(a, min(n, 1000)))  # warm-up (untimed)
    benchmark.pedantic(lambda: aiobench._run(lambda: runner(a, n)), rounds=3, iterations=1)


@pytest.mark.parametrize("impl", NAMES)
def test_thread_to_coro(benchmark, impl):
    _bridge(benchmark, impl, "thread->coro")


@pytest.mark.parametrize("impl", NAMES)
def test_coro_to_thread(benchmark, impl):
    _bridge(benchmark, impl, "coro->thread")


@pytest.mark.parametrize("impl", NAMES)
def test_coro_to_coro(benchmark, impl):
    _bridge(benchmark, impl, "coro->coro")


@pytest.mark.parametrize("impl", [n for n in NAMES if n != "asyncio.Queue"] + [aiobench.BARE])
def test_wake(benchmark, impl):
    a = None if impl == aiobench.BARE else _adapter(impl, "wake")
    n = WAKES_SMOKE if _disabled(benchmark) else WAKES
    benchmark.group = "aio-wake"
    benchmark.extra_info["wakes"] = n
    out = []

    def round_():
        out[:] = aiobench._run(lambda: aiobench._latency(a, n, idle_s=0.0))

    benchmark.pedantic(round_, rounds=5, iterations=1)
    assert len(out) == n


def test_process_to_coro(benchmark):
    a = _adapter(SHARED, "process->coro")
    n = ITEMS_SMOKE if _disabled(benchmark) else ITEMS
    benchmark.group = "aio-process->coro"
    benchmark.extra_info["items"] = n
    benchmark.pedantic(lambda: aiobench._run(lambda: aiobench._from_process(a, n, 0.0)),
                       rounds=3, iterations=1)


def test_process_wake(benchmark):
    a = _adapter(SHARED, "process-wake")
    n = WAKES_SMOKE if _disabled(benchmark) else WAKES
    benchmark.group = "aio-process-wake"
    out = []

    def round_():
        out[:] = aiobench._run(lambda: aiobench._from_process(a, n, 0.0005))[1]

    benchmark.pedantic(round_, rounds=3, iterations=1)
    assert len(out) == n
    p50, p99 = aiobench._percentiles(out)
    benchmark.extra_info.update(wakes=n, p50_us=p50, p99_us=p99)
