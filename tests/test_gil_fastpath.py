"""The compiled FrameQueue skips its mutex on GIL builds while no thread is
detached in the queue (waiting in it without the GIL): see _enter in
bufmgr/_ring.pyx. These white-box tests check the bookkeeping that makes
that safe: every way out of a wait -- an item, room, a timeout, shutdown,
KeyboardInterrupt, an exception from put_many's iterable -- leaves the
queue counted as having no detached thread and no open critical section.
(Behaviour under contention is covered by the stress, soak and state-machine
suites, which run with waiters present and absent.)"""

from __future__ import annotations

import os
import signal
import sys
import sysconfig
import threading
import time

import pytest

import bufmgr
from bufmgr import Empty, Full, ShutDown

pytestmark = pytest.mark.skipif(bufmgr.IMPLEMENTATION != "c", reason="compiled FrameQueue only")

DEADLINE_S = 30.0
# Free-threaded builds always take the mutex and count nothing.
COUNTS = not sysconfig.get_config_var("Py_GIL_DISABLED")
needs_counts = pytest.mark.skipif(not COUNTS, reason="free-threaded builds do not count detached threads")


def _fq(*args, **kwargs):
    from bufmgr._ring import FrameQueue

    return FrameQueue(*args, **kwargs)


def _idle(q):
    return q._gil_state() == (0, False)


def _wait_detached(q, n):
    deadline = time.monotonic() + DEADLINE_S
    while q._gil_state()[0] < n:
        assert time.monotonic() < deadline, f"never saw {n} detached threads: {q._gil_state()}"
        time.sleep(0.001)


def test_fresh_queue_is_idle():
    q = _fq(4)
    assert _idle(q)
    q.put(1)
    q.get()
    assert _idle(q)


@pytest.mark.parametrize("call", ["get", "get_many", "get_latest"])
def test_timed_out_get_leaves_nothing_detached(call):
    q = _fq(4)
    with pytest.raises(Empty):
        if call == "get_many":
            q.get_many(3, timeout=0.01)
        else:
            getattr(q, call)(timeout=0.01)
    assert _idle(q)


def test_timed_out_put_and_put_many_leave_nothing_detached():
    q = _fq(1)
    q.put(0)
    with pytest.raises(Full):
        q.put(1, timeout=0.01)
    assert _idle(q)
    with pytest.raises(Full):
        q.put_many([1, 2], timeout=0.01)
    assert _idle(q)


@needs_counts
def test_waiters_are_counted_while_they_wait_and_not_after():
    q = _fq(1)
    got = []
    getters = [threading.Thread(target=lambda: got.append(q.get())) for _ in range(3)]
    for t in getters:
        t.start()
    _wait_detached(q, 3)
    for i in range(3):
        q.put(i)  # with waiters present this takes the mutex path
    for t in getters:
        t.join(DEADLINE_S)
    assert sorted(got) == [0, 1, 2]
    assert _idle(q)

    q.put("full")
    putter = threading.Thread(target=q.put, args=("blocked",))
    putter.start()
    _wait_detached(q, 1)
    assert q.get() == "full"
    putter.join(DEADLINE_S)
    assert q.get_nowait() == "blocked"
    assert _idle(q)


def test_join_and_shutdown_wake_and_leave_nothing_detached():
    q = _fq(2)
    q.put(1)
    errors = []

    def joiner():
        q.join()

    def getter_after_shutdown():
        q.get()  # drains the item first
        try:
            q.get()
        except ShutDown:
            errors.append("shutdown")

    j = threading.Thread(target=joiner)
    j.start()
    if COUNTS:
        _wait_detached(q, 1)
    g = threading.Thread(target=getter_after_shutdown)
    g.start()
    deadline = time.monotonic() + DEADLINE_S
    while q.qsize() and time.monotonic() < deadline:
        time.sleep(0.001)
    q.task_done()
    j.join(DEADLINE_S)
    q.shutdown()
    g.join(DEADLINE_S)
    assert not j.is_alive() and not g.is_alive()
    assert errors == ["shutdown"]
    assert _idle(q)


def test_put_many_iterable_error_leaves_nothing_detached():
    q = _fq(1)

    def items():
        yield 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        q.put_many(items(), timeout=0.01)
    assert _idle(q) and q.qsize() == 0


@needs_counts
@pytest.mark.skipif(sys.platform == "win32" or threading.current_thread() is not threading.main_thread(),
                    reason="os.kill(SIGINT) to the own process needs POSIX and the main thread")
def test_keyboardinterrupt_in_a_wait_leaves_nothing_detached():
    q = _fq(1)
    pid = os.getpid()

    def interrupt():
        _wait_detached(q, 1)
        os.kill(pid, signal.SIGINT)

    t = threading.Thread(target=interrupt)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        q.get(timeout=DEADLINE_S)
    t.join(DEADLINE_S)
    assert _idle(q)
    q.put(1)
    assert q.get_nowait() == 1
