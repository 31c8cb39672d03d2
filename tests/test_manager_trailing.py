"""report_interval's trailing update (issue 14): after a burst of puts, the
last state reaches the coordinator even when no operation follows.

Real clock, one shared timer thread. Nothing asserts a duration: the tests
wait for the expected state with generous deadlines, and "the timer has
passed time T" is observed by scheduling a marker on the same timer (its
heap runs entries in due order). Both FrameQueue implementations.
"""

from __future__ import annotations

import threading
import time

import pytest
from manager_helpers import DEADLINE_S, Recorder

from bufmgr import BufferManager
from bufmgr import manager as manager_mod


@pytest.fixture
def make(FrameQueue):
    made = []

    def factory(coordinator=None, **kw):
        kw.setdefault("queue_factory", FrameQueue)
        m = BufferManager(coordinator, **kw)
        made.append(m)
        return m

    yield factory
    for m in made:
        m.cleanup()


def timer_passed(t):
    """Block until the shared timer has run every entry due before ``t``."""
    passed = threading.Event()
    manager_mod._TRAILING.schedule(t, passed.set)
    assert passed.wait(DEADLINE_S), "the trailing-report timer did not run"


def test_burst_then_idle_reports_the_last_state(make, live):
    coord = Recorder()
    m = make(coord, queues={"capture_left": 1000, "capture_right": 1000}, report_interval=0.05)
    for i in range(100):
        assert m.put_buffer("capture_left", b"%d" % i)
    live.wait_until(lambda: coord.state.get("capture_left_queue_size") == 100, what="trailing update after puts")
    assert coord.state["capture_queue_size"] == 100
    for _ in range(100):
        assert m.get_buffer("capture_left", 0.0) is not None
    live.wait_until(lambda: coord.state.get("capture_left_queue_size") == 0, what="trailing update after gets")
    assert coord.state["capture_queue_size"] == 0


def test_throttle_still_limits_the_rate(make, live):
    """At most one update per interval per component, trailing ones included."""
    coord = Recorder()
    interval = 0.2
    m = make(coord, queues={"capture_left": 0}, report_interval=interval)
    start = time.monotonic()
    n = 0
    while n < 2000 or time.monotonic() - start < 2 * interval:
        m.put_buffer("capture_left", b"x")
        n += 1
    elapsed = time.monotonic() - start
    live.wait_until(lambda: coord.state.get("capture_left_queue_size") == n, what="final state")
    # updates are at least `interval` apart: over the burst plus the one
    # trailing interval there is room for at most this many
    assert len(coord.updates) <= int((elapsed + interval) / interval) + 1, (len(coord.updates), elapsed)


def test_one_timer_thread_for_every_manager(make, live):
    coords = [Recorder() for _ in range(20)]
    managers = [make(c, queues={"capture_left": 100}, report_interval=0.02) for c in coords]
    for m in managers:
        for _ in range(5):
            m.put_buffer("capture_left", b"x")
    for c in coords:
        live.wait_until(lambda c=c: c.state.get("capture_left_queue_size") == 5, what="every manager's last state")
    names = [t.name for t in threading.enumerate()]
    assert names.count(manager_mod._TrailingReports.name) <= 1, names


def test_trailing_update_holds_no_queue_lock(make, live):
    """The trailing update runs on the timer thread, and while it is in
    update_state another thread can use every queue (no lock is held)."""
    probes = []

    class Probe(Recorder):
        def update_state(self, **fields):
            super().update_state(**fields)
            if threading.current_thread().name == manager_mod._TrailingReports.name:
                w = live.start(m.get_usage)  # qsize() of every queue: takes each queue lock
                w.thread.join(DEADLINE_S)
                probes.append((fields, w.done))

    coord = Probe()
    m = make(coord, queues={"capture_left": 100, "capture_right": 100}, report_interval=0.05)
    for _ in range(10):
        m.put_buffer("capture_left", b"x")
    live.wait_until(lambda: probes, what="a trailing update")
    assert all(done for _, done in probes), probes
    assert probes[-1][0] == {"capture_left_queue_size": 10, "capture_queue_size": 10}


def test_no_trailing_update_to_a_replaced_coordinator(make):
    old, new = Recorder(), Recorder()
    m = make(old, queues={"capture_left": 100}, report_interval=0.05)
    m.put_buffer("capture_left", b"x")  # sent at once
    m.put_buffer("capture_left", b"y")  # skipped: a trailing report is armed
    assert len(old.updates) == 1
    m.coordinator = new
    timer_passed(time.monotonic() + 0.1)  # past the armed report's due time
    assert len(old.updates) == 1 and new.updates == []
    m.put_buffer("capture_left", b"z")
    assert new.state == {"capture_left_queue_size": 3, "capture_queue_size": 3}


def test_no_trailing_update_after_cleanup(make):
    coord = Recorder()
    m = make(coord, queues={"capture_left": 100}, report_interval=0.05)
    m.put_buffer("capture_left", b"x")
    m.put_buffer("capture_left", b"y")  # armed
    m.cleanup()  # final update: size 0
    n = len(coord.updates)
    assert coord.state["capture_left_queue_size"] == 0
    timer_passed(time.monotonic() + 0.1)
    assert len(coord.updates) == n


def test_failing_update_state_in_the_trailer_is_reported(make, live):
    class Flaky(Recorder):
        calls = 0

        def update_state(self, **fields):
            self.calls += 1
            if self.calls == 2:  # the trailing one
                raise RuntimeError("coordinator down")
            super().update_state(**fields)

    coord = Flaky()
    m = make(coord, queues={"capture_left": 100}, report_interval=0.05)
    m.put_buffer("capture_left", b"x")
    m.put_buffer("capture_left", b"y")
    live.wait_until(lambda: coord.errors, what="handle_error from the trailing report")
    assert isinstance(coord.errors[0][0], RuntimeError)
    live.wait_until(lambda: m.get_performance_stats()["manager"]["errors"] == 1, what="error counted")
    assert manager_mod._TRAILING.thread() is None or manager_mod._TRAILING.thread().is_alive()
