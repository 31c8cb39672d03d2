"""FrameQueue as a drop-in for code written against queue.Queue (issue #14).

queue.Queue's public internals (``mutex``, ``not_empty``, ``not_full``,
``all_tasks_done``, ``queue``), ``unfinished_tasks = 0``, ``bool(q)``,
``FrameQueue[int]``, ``maxsize`` as given, finality, and CPython's own
multiprocessing.dummy connection tests run over FrameQueue. Both
implementations through the ``FrameQueue`` fixture (tests/conftest.py).

Liveness: every "woken by" test arranges that the event happens after the
waiter took ``mutex`` (an Event set from inside the ``with``), so the wait
must return True whether the event lands before or during the wait; a
missed wake-up shows as the 30 s wait timing out (False), never as a hang.
"""

from __future__ import annotations

import _thread
import gc
import os
import queue
import subprocess
import sys
import threading
import types
import weakref
from collections import deque
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DEADLINE_S = 30.0  # liveness bound, never a timing assertion (as in conftest.py)
NO_EXTENSIONS = os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0")


GIL_BUILD = getattr(sys, "_is_gil_enabled", lambda: True)()


def watchers(q):
    """How many threads sleep inside the queue (a compat waiter among them),
    or None where that cannot be seen (compiled class, free-threaded build)."""
    if hasattr(q, "_getters_waiting"):
        return q._getters_waiting  # pure twin
    if GIL_BUILD:
        return q._gil_state()[0]  # compiled: counted in `detached` (see _enter)
    return None


def conserved(q):
    s = q.stats()
    assert s["puts"] == s["gets"] + s["dropped"] + s["cleared"] + s["size"], s
    return s


# ---------------------------------------------------------------------------
# small drop-in points


def test_always_truthy_like_queue_queue(FrameQueue):
    q = FrameQueue(4)
    assert len(q) == 0 and bool(q) is True and bool(queue.Queue(4)) is True
    assert (q or FrameQueue()) is q  # `self.q = q or FrameQueue()` keeps the caller's queue


def test_subscriptable_at_runtime(FrameQueue):
    alias = FrameQueue[int]
    assert isinstance(alias, types.GenericAlias)
    assert alias.__origin__ is FrameQueue and alias.__args__ == (int,)
    q = alias(2)  # a GenericAlias is callable: it makes the origin class
    assert type(q) is FrameQueue


def test_final_in_both_implementations(FrameQueue):
    with pytest.raises(TypeError, match="not an acceptable base type"):
        type("Sub", (FrameQueue,), {})


# ---------------------------------------------------------------------------
# q.queue: a live, counted, deque-like view


def test_view_reads(FrameQueue):
    q = FrameQueue(8)
    a, b, c = object(), object(), object()
    q.put_many([a, b, c])
    v = q.queue
    assert v is q.queue  # one view per queue
    assert len(v) == 3 and bool(v)
    assert list(v) == [a, b, c] and v[0] is a and v[-1] is c and v[1] is b
    assert b in v and object() not in v
    assert v.copy() == deque([a, b, c])
    with pytest.raises(IndexError):
        v[3]
    with pytest.raises(IndexError):
        v[-4]
    with pytest.raises(TypeError):
        v[0:1]
    assert repr(FrameQueue(2).queue) == "FrameQueue.queue([])"
    q.get()
    assert list(v) == [b, c] and len(v) == 2  # live
    conserved(q)


def test_view_writes_are_counted(FrameQueue):
    q = FrameQueue(3)
    v = q.queue
    v.append("a")
    v.extend(["b", "c"])
    assert q.qsize() == 3 and q.unfinished_tasks == 3
    with pytest.raises(queue.Full):  # "block" policy, full: append cannot wait
        v.append("d")
    assert v.popleft() == "a"
    v.clear()
    assert not v and len(v) == 0
    with pytest.raises(IndexError, match="empty"):
        v.popleft()
    s = conserved(q)
    assert (s["puts"], s["gets"], s["cleared"]) == (3, 1, 2)
    d = FrameQueue(2, "drop_oldest")
    d.queue.extend([1, 2, 3])  # the policy applies, like deque(maxlen=2)
    assert list(d.queue) == [2, 3] and d.stats()["dropped"] == 1


def test_mutex_clear_idiom(FrameQueue, live):
    """The StackOverflow idiom, verbatim, with a joiner waiting."""
    q = FrameQueue(8)
    q.put_many(range(5))
    q.get()  # one got and never task_done()
    joiner = live.start(q.join)
    with q.mutex:
        q.queue.clear()
        q.all_tasks_done.notify_all()
        q.unfinished_tasks = 0
    joiner.value()
    s = conserved(q)
    assert (s["size"], s["cleared"], q.unfinished_tasks) == (0, 4, 0)


def test_unfinished_tasks_can_be_lowered_not_raised(FrameQueue):
    q = FrameQueue()
    q.put_many("abc")
    q.unfinished_tasks = 2
    assert q.unfinished_tasks == 2
    for bad, exc in [(3, ValueError), (-1, ValueError), (1.0, TypeError), ("0", TypeError)]:
        with pytest.raises(exc, match="unfinished_tasks|integer|index"):
            q.unfinished_tasks = bad
    assert q.unfinished_tasks == 2
    q.unfinished_tasks = 0
    q.join()  # returns at once
    with pytest.raises(ValueError):
        q.task_done()


def test_mutex_does_not_block_the_queue(FrameQueue):
    # queue.Queue would deadlock here; FrameQueue's operations never take `mutex`
    q = FrameQueue(2)
    with q.mutex:
        assert q.mutex.locked()
        q.put(1)
        assert q.get() == 1 and q.qsize() == 0
    assert not q.mutex.locked()
    assert q.mutex.acquire(False) and not q.mutex.acquire(False)
    q.mutex.release()
    with pytest.raises(RuntimeError):
        q.mutex.release()


def test_compat_objects_do_not_leak_the_queue(FrameQueue):
    # q -> its compat objects -> q is a cycle: the collector must see through
    # it (the compiled class's tp_traverse visits them too)
    class Item:
        pass

    q = FrameQueue(4)
    item = Item()
    q.put(item)
    held = (q.mutex, q.not_empty, q.not_full, q.all_tasks_done, q.queue)
    ref, item_ref = weakref.ref(q), weakref.ref(item)
    del q, held, item
    gc.collect()
    assert ref() is None and item_ref() is None


# ---------------------------------------------------------------------------
# not_empty / not_full / all_tasks_done


def _waiter(cond, inside, timeout=DEADLINE_S):
    def run():
        with cond:
            inside.set()
            return cond.wait(timeout)

    return run


def test_not_empty_woken_by_put(FrameQueue, live):
    q = FrameQueue()
    inside = threading.Event()
    w = live.start(_waiter(q.not_empty, inside))
    assert inside.wait(DEADLINE_S)
    q.put("x")
    assert w.value() is True
    assert q.get_nowait() == "x"  # a waiter takes nothing


def test_not_full_woken_by_get(FrameQueue, live):
    q = FrameQueue(1)
    q.put("x")
    inside = threading.Event()
    w = live.start(_waiter(q.not_full, inside))
    assert inside.wait(DEADLINE_S)
    assert q.get() == "x"
    assert w.value() is True


def test_all_tasks_done_woken_by_task_done(FrameQueue, live):
    q = FrameQueue()
    q.put_many("ab")
    q.get(), q.get()
    inside = threading.Event()

    def run():
        with q.all_tasks_done:
            inside.set()
            while q.unfinished_tasks:
                if not q.all_tasks_done.wait(DEADLINE_S):
                    return False
            return True

    w = live.start(run)
    assert inside.wait(DEADLINE_S)
    q.task_done()
    q.task_done()
    assert w.value() is True


@pytest.mark.parametrize("name", ["not_empty", "not_full", "all_tasks_done"])
def test_notify_wakes_a_waiter(FrameQueue, live, name):
    q = FrameQueue(1)
    q.put("x")  # nothing will happen on its own to any of the three
    cond = getattr(q, name)
    inside = threading.Event()
    w = live.start(_waiter(cond, inside))
    assert inside.wait(DEADLINE_S)
    with cond:  # only possible once the waiter released the mutex in wait()
        cond.notify()
    assert w.value() is True


def test_wait_times_out_when_nothing_happens(FrameQueue):
    q = FrameQueue(1)
    with q.not_empty:
        assert q.not_empty.wait(0) is False
        assert q.not_empty.wait(0.02) is False
        assert q.mutex.locked()  # taken back
    with q.not_empty:
        q.put(1)  # after the mutex was taken: the wait does not miss it
        assert q.not_empty.wait(0) is True
        assert q.not_empty.wait(0) is False  # counted from the last wait


def test_wait_and_notify_need_the_mutex(FrameQueue):
    q = FrameQueue()
    with pytest.raises(RuntimeError, match="un-acquired"):
        q.not_empty.wait(0)
    with pytest.raises(RuntimeError, match="un-acquired"):
        q.not_full.notify()


def test_wait_for(FrameQueue, live):
    q = FrameQueue()
    inside = threading.Event()

    def run():
        with q.not_empty:
            inside.set()
            return q.not_empty.wait_for(lambda: q.qsize() >= 3, DEADLINE_S)

    w = live.start(run)
    assert inside.wait(DEADLINE_S)
    for i in range(3):
        q.put(i)
    assert w.value() is True
    with q.not_empty:
        assert q.not_empty.wait_for(lambda: q.qsize() > 5, 0.01) is False


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread")
def test_ctrl_c_interrupts_a_wait(FrameQueue):
    q = FrameQueue()
    inside = threading.Event()

    def interrupt():
        inside.wait(DEADLINE_S)
        _thread.interrupt_main()

    t = threading.Thread(target=interrupt, daemon=True)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        with q.not_empty:
            inside.set()
            q.not_empty.wait(DEADLINE_S)
    t.join(DEADLINE_S)
    assert not q.mutex.locked()
    if hasattr(q, "_gil_state"):
        assert q._gil_state() == (0, False)
    q.put(1)
    assert q.get_nowait() == 1  # still usable


def test_compat_users_and_queue_users_together(FrameQueue, live):
    """Producers and consumers on the queue, while other threads clear it
    through the view and poll through not_empty: nothing hangs, nothing is
    lost (conservation), each waiter's wake-ups reach the consumers."""
    q = FrameQueue(16)
    n_items, producers = 3000, 2
    stop = threading.Event()
    got = []

    def produce(base):
        for i in range(n_items):
            try:
                q.put(base + i, timeout=DEADLINE_S)
            except queue.Full:
                return "stuck"

    def consume():
        while not stop.is_set():
            try:
                got.append(q.get(timeout=0.01))
            except queue.Empty:
                pass

    def clear_now_and_then():
        for _ in range(200):
            with q.mutex:
                q.queue.clear()

    def poll():
        while not stop.is_set():
            with q.not_empty:
                q.not_empty.wait(0.01)
            with q.not_full:
                q.not_full.wait(0.01)

    ps = [live.start(produce, k * n_items) for k in range(producers)]
    cs = [live.start(consume) for _ in range(2)]
    others = [live.start(clear_now_and_then), live.start(poll), live.start(poll)]
    for p in ps:
        assert p.value() is None
    others[0].value()
    live.wait_until(lambda: q.qsize() == 0, what="consumers drained the queue")
    stop.set()
    for w in cs + others:
        w.value()
    s = conserved(q)
    assert s["puts"] == producers * n_items
    assert len(got) == s["gets"] and len(set(got)) == len(got)


# ---------------------------------------------------------------------------
# multiprocessing.dummy: Pipe / Listener / Client are built on queue.Queue


@pytest.fixture
def dummy_connection(FrameQueue, monkeypatch):
    import multiprocessing.dummy.connection as mod

    monkeypatch.setattr(mod, "Queue", FrameQueue)
    return mod


def test_dummy_pipe_poll(dummy_connection, live):
    a, b = dummy_connection.Pipe()
    assert b.poll() is False and b.poll(0.01) is False
    inside = threading.Event()

    def poll():
        inside.set()
        return b.poll(DEADLINE_S)

    w = live.start(poll)
    assert inside.wait(DEADLINE_S)
    # poll() checks qsize() and only then waits on not_empty: a send in
    # between would be seen only after the timeout (as with queue.Queue), so
    # send once the poller sleeps inside the queue
    if watchers(b._in) is not None:  # else the send may cost poll()'s timeout: still True
        live.wait_until(lambda: watchers(b._in) > 0, what="poll() waiting on not_empty")
    a.send({"frame": 1})
    assert w.value() is True
    assert b.recv() == {"frame": 1}


def test_dummy_listener_client(dummy_connection, live):
    with dummy_connection.Listener() as listener:
        def serve():
            with listener.accept() as conn:
                conn.send(conn.recv() * 2)

        w = live.start(serve)
        with dummy_connection.Client(listener.address) as c:
            c.send(21)
            assert c.poll(DEADLINE_S) is True
            assert c.recv() == 42
        w.value()


@pytest.mark.parametrize("impl", ["c", "python"])
def test_cpython_dummy_connection_suite(impl):
    """CPython's own WithThreadsTestConnection / ListenerClient / Poll tests,
    with multiprocessing.dummy.connection.Queue swapped for FrameQueue."""
    if impl == "c" and NO_EXTENSIONS:
        pytest.skip("BUFMGR_NO_EXTENSIONS=1: compiled FrameQueue not tested")
    import bufmgr  # the child imports the very bufmgr this process tests (installed or in place)

    where = str(Path(bufmgr.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([where] + sys.path))
    proc = subprocess.run([sys.executable, str(HERE / "mp_dummy_stdlib.py"), impl], env=env,
                          capture_output=True, text=True, timeout=240)
    if proc.returncode == 77:
        pytest.skip(f"this interpreter has no CPython test suite: {proc.stdout.strip()}")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    assert "OK" in proc.stdout
