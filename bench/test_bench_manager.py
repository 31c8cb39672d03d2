"""BufferManager vs the replaced manager (bufmgr.baseline), side by side.

    pytest bench/test_bench_manager.py --benchmark-only --benchmark-group-by=group

Each group is one scenario with a ``bufmgr`` and a ``baseline`` entry; after
the module a summary prints the ratios (baseline time / bufmgr time) next to
the issue's targets and how many frames the baseline lost. Set
BUFMGR_BENCH_STRICT=1 to fail when a target is missed (off by default:
ratios depend on the machine and Python version).

``--benchmark-disable`` runs every scenario once as a smoke test.

Scenarios
  pair/no-coordinator        put_buffer + get_buffer, coordinator=None
  pair/simple-coordinator    same, one SimpleCoordinator on both; bufmgr reports
                             on every put AND get (twice the baseline's calls:
                             it reported puts only), plus bufmgr with
                             report_gets=False and with report_interval=0.05
  pair/own-coordinator       each with its own coordinator (StateCoordinator vs
                             the original-style MonitoringCoordinator)
  2p2c/...                   2 producers x 2 consumers, 4-slot queue, 20k puts;
                             timed: the producers (puts/s), consumers running;
                             without a coordinator and with the simple one
  2p2c-race/no-coordinator   the same with sys.setswitchinterval(1e-4): more
                             interleavings, so the baseline's race shows
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import pytest

import bufmgr
from bufmgr import BufferManager, StateCoordinator
from bufmgr.baseline import BaselineBufferManager, MonitoringCoordinator

PAIRS = 1000  # put+get pairs per timed call (amortises the harness overhead)
TOTAL_PUTS = 20_000
STRICT = os.environ.get("BUFMGR_BENCH_STRICT", "") not in ("", "0")
DATA = bytes(4096)  # ~ 1024 stereo 16-bit frames: one capture buffer

#: (group, entry) -> seconds per timed call (min over rounds); filled as benchmarks run
RESULTS: dict = {}
#: (group, entry) -> extra facts (lost frames ...)
FACTS: dict = {}


class SimpleCoordinator:
    """The coordinator both managers share in pair/simple-coordinator: stores
    the fields under a lock, never asks for shutdown."""

    def __init__(self):
        self._lock = threading.Lock()
        self.state = {}
        self.errors = 0

    def update_state(self, **fields):
        with self._lock:
            self.state.update(fields)

    def handle_error(self, error, component):
        self.errors += 1

    def is_shutdown_requested(self):
        return False


def _record(benchmark, group, entry):
    stats = getattr(benchmark, "stats", None)
    inner = getattr(stats, "stats", None)
    if inner is not None and getattr(inner, "min", None):
        RESULTS[(group, entry)] = inner.min  # least disturbed by other load


@pytest.fixture(autouse=True)
def _quiet_logs():
    # the baseline logs a traceback per lost frame; keep the output readable
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


# ---------------------------------------------------------------------------
# put_buffer + get_buffer pairs


def _pair_loop(m, n=PAIRS):
    put, get, data = m.put_buffer, m.get_buffer, DATA

    def run():
        for _ in range(n):
            put("capture_left", data)
            get("capture_left")

    return run


def _make(entry, coordinator=None, **kw):
    if entry == "baseline":
        return BaselineBufferManager(coordinator)
    return BufferManager(coordinator, **kw)


@pytest.mark.parametrize("entry", ["bufmgr", "baseline"])
def test_pair_no_coordinator(benchmark, entry):
    group = "pair/no-coordinator"
    benchmark.group = group
    benchmark.extra_info.update(pairs_per_call=PAIRS, implementation=bufmgr.IMPLEMENTATION)
    m = _make(entry)
    benchmark(_pair_loop(m))
    _record(benchmark, group, entry)
    assert m.get_usage()["capture_left"] == 0
    m.cleanup()


@pytest.mark.parametrize("entry", ["bufmgr", "bufmgr-puts-only", "bufmgr-throttled", "baseline"])
def test_pair_simple_coordinator(benchmark, entry):
    group = "pair/simple-coordinator"
    benchmark.group = group
    benchmark.extra_info.update(pairs_per_call=PAIRS, implementation=bufmgr.IMPLEMENTATION)
    coord = SimpleCoordinator()
    if entry == "bufmgr-throttled":
        m = BufferManager(coord, report_interval=0.05)
    elif entry == "bufmgr-puts-only":
        m = BufferManager(coord, report_gets=False)
    else:
        m = _make(entry, coord)
    benchmark(_pair_loop(m))
    _record(benchmark, group, entry)
    m.cleanup()
    assert coord.errors == 0
    if entry not in ("baseline", "bufmgr-puts-only"):  # these report gets, and cleanup
        assert coord.state["capture_left_queue_size"] == 0


@pytest.mark.parametrize("entry", ["bufmgr", "baseline"])
def test_pair_own_coordinator(benchmark, entry):
    group = "pair/own-coordinator"
    benchmark.group = group
    benchmark.extra_info.update(pairs_per_call=PAIRS, implementation=bufmgr.IMPLEMENTATION)
    coord = StateCoordinator() if entry == "bufmgr" else MonitoringCoordinator()
    m = _make(entry, coord)
    benchmark(_pair_loop(m))
    _record(benchmark, group, entry)
    m.cleanup()
    assert coord.get_state().capture_queue_size == 0 or entry == "baseline"


# ---------------------------------------------------------------------------
# 2 producers x 2 consumers on a 4-slot queue


class _Round:
    """One 2P x 2C round. The consumers start (and block) in setup; the timed
    part starts the producers and joins them, so it measures puts/s under
    contention with the consumers; teardown lets the consumers drain and stop."""

    def __init__(self, m, total=TOTAL_PUTS, producers=2, consumers=2):
        self.m = m
        self.total = total
        self.producers = producers
        self.accepted = [0] * producers
        self.received = [0] * consumers
        self.done = threading.Event()
        self.consumer_threads = [
            threading.Thread(target=self._consume, args=(i,)) for i in range(consumers)
        ]
        for t in self.consumer_threads:
            t.start()

    def _consume(self, i):
        get, n, m = self.m.get_buffer, 0, self.m
        while True:
            if get("capture_left", 0.005) is not None:
                n += 1
            elif self.done.is_set() and m.get_usage()["capture_left"] == 0:
                break
        self.received[i] = n

    def _produce(self, i):
        put, data, ok = self.m.put_buffer, DATA, 0
        for _ in range(self.total // self.producers):
            if put("capture_left", data):
                ok += 1
        self.accepted[i] = ok

    def run(self):  # timed
        threads = [threading.Thread(target=self._produce, args=(i,)) for i in range(self.producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def finish(self):
        self.done.set()
        for t in self.consumer_threads:
            t.join()


def _contention(benchmark, group, entry, coordinated, switch_interval=None, rounds=5):
    benchmark.group = group
    coord = SimpleCoordinator() if coordinated else None
    finished = []

    def setup():
        if entry == "bufmgr":
            m = BufferManager(coord, queues={"capture_left": 4})
        else:
            m = BaselineBufferManager(coord, queues={"capture_left": 4})
        rnd = _Round(m)
        finished.append(rnd)
        return (rnd,), {}

    def teardown(rnd):
        rnd.finish()

    old = sys.getswitchinterval()
    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    try:
        benchmark.pedantic(lambda rnd: rnd.run(), setup=setup, teardown=teardown, rounds=rounds, iterations=1)
    finally:
        for rnd in finished:
            rnd.finish()  # idempotent; covers an interrupted run
        sys.setswitchinterval(old)
    _record(benchmark, group, entry)
    lost = 0
    for rnd in finished:
        accepted = sum(rnd.accepted)
        lost += rnd.total - accepted
        if entry == "bufmgr":
            st = rnd.m.get_performance_stats()["components"]["capture_left"]
            assert st["puts"] == st["gets"] + st["dropped"] + st["size"] == rnd.total
            assert st["gets"] == sum(rnd.received)
        else:  # the baseline's own conservation, with its instrumentation counters
            assert rnd.m.lost_frames == rnd.total - accepted
            assert accepted == sum(rnd.received) + rnd.m.evicted["capture_left"]
    FACTS[(group, entry)] = {"lost_frames": lost, "rounds": len(finished)}
    benchmark.extra_info.update(
        lost_frames=lost, rounds=len(finished), puts_per_round=TOTAL_PUTS,
        switch_interval=switch_interval or old, implementation=bufmgr.IMPLEMENTATION,
    )
    if entry == "bufmgr":
        assert lost == 0 and (coord is None or coord.errors == 0)


@pytest.mark.parametrize("entry", ["bufmgr", "baseline"])
def test_two_producers_two_consumers(benchmark, entry):
    _contention(benchmark, "2p2c/no-coordinator", entry, coordinated=False)


@pytest.mark.parametrize("entry", ["bufmgr", "baseline"])
def test_two_producers_two_consumers_coordinated(benchmark, entry):
    _contention(benchmark, "2p2c/simple-coordinator", entry, coordinated=True)


@pytest.mark.parametrize("entry", ["bufmgr", "baseline"])
def test_two_producers_two_consumers_race(benchmark, entry):
    _contention(benchmark, "2p2c-race/no-coordinator", entry, coordinated=False, switch_interval=1e-4)


# ---------------------------------------------------------------------------
# summary


TARGETS = [
    ("pair/no-coordinator", "bufmgr", 15.0, "put+get pair, coordinator=None"),
    ("pair/simple-coordinator", "bufmgr", 4.0, "pair, same coordinator, report every put+get"),
    ("pair/simple-coordinator", "bufmgr-puts-only", None, "pair, same coordinator, report_gets=False"),
    ("pair/simple-coordinator", "bufmgr-throttled", None, "pair, same coordinator, report_interval=0.05"),
    ("pair/own-coordinator", "bufmgr", None, "pair, StateCoordinator vs MonitoringCoordinator"),
    ("2p2c/no-coordinator", "bufmgr", 5.0, "2P x 2C puts/s, coordinator=None"),
    ("2p2c/simple-coordinator", "bufmgr", None, "2P x 2C puts/s, same coordinator"),
    ("2p2c-race/no-coordinator", "bufmgr", None, "2P x 2C puts/s, switchinterval 1e-4"),
]
CONTENTION_GROUPS = ("2p2c/no-coordinator", "2p2c/simple-coordinator", "2p2c-race/no-coordinator")


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    lines, missed = [], []
    for group, entry, target, label in TARGETS:
        ours, base = RESULTS.get((group, entry)), RESULTS.get((group, "baseline"))
        if not ours or not base:
            continue
        ratio = base / ours
        mark = "" if target is None else (" (target >= %gx%s)" % (target, "" if ratio >= target else ": MISSED"))
        lines.append(f"  {label:<52} {ratio:6.1f}x{mark}")
        if target is not None and ratio < target:
            missed.append(f"{label}: {ratio:.1f}x < {target}x")
    for group in CONTENTION_GROUPS:
        b, o = FACTS.get((group, "baseline")), FACTS.get((group, "bufmgr"))
        if b and o:
            lines.append(
                f"  {group:<25} lost frames: baseline {b['lost_frames']} of {b['rounds'] * TOTAL_PUTS}, "
                f"bufmgr {o['lost_frames']} of {o['rounds'] * TOTAL_PUTS}"
            )
    if lines:
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        text = [f"bufmgr vs baseline (baseline time / bufmgr time), FrameQueue={bufmgr.IMPLEMENTATION}, "
                f"Python {sys.version.split()[0]}:"] + lines
        capman = request.config.pluginmanager.get_plugin("capturemanager")
        if tr is not None and capman is not None:
            with capman.global_and_fixture_disabled():
                tr.write_line("")
                for line in text:
                    tr.write_line(line)
        else:  # pragma: no cover
            print("\n".join(text))
    if STRICT and missed:
        pytest.fail("benchmark targets missed: " + "; ".join(missed))
