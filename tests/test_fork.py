"""fork() while other threads hold or wait on queues.

The parent keeps four things going when it forks: a thread blocked in
get() on queue A, a thread hammering put/get/put_many/get_many/clear on
queue B, a thread blocked in put() on the full queue D, and a thread
blocked in join() on queue J. The forked child (only the forking thread
survives fork) must then be able to

* use A, B, D and J: their counters add up (no half-finished update was
  copied), put/get/join work (no mutex is stuck in the state a vanished
  thread left it in), blocking calls with threads of its own work;
* create new queues and run producer/consumer threads on them.

The parent's queues and threads keep working afterwards. The child reports
through a pipe and its exit code; the parent waits with a deadline (and on
timeout sends SIGABRT, so pytest's faulthandler in the child dumps its
stacks, then SIGKILL). Several forks per test, since a lock held at the
wrong instant is a matter of luck.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import traceback
import warnings

import pytest

from bufmgr._errors import Empty, ShutDown

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

CHILD_DEADLINE_S = 20.0
N_FORKS = 12


def _conserved(s):
    return s["puts"] == s["gets"] + s["dropped"] + s["cleared"] + s["size"]


def _fork_and_run(body):
    """Run body() in a forked child; return its JSON result (or fail)."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        # 3.12+: "This process is multi-threaded, use of fork() may lead to
        # deadlocks in the child" -- exactly what this test checks.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 70
        try:
            os.close(r)
            payload = {"ok": body()}
            code = 0
        except BaseException:  # noqa: BLE001
            payload = {"error": traceback.format_exc()}
        try:
            os.write(w, json.dumps(payload).encode()[:60000])
        finally:
            os._exit(code)
    os.close(w)
    try:
        deadline = time.monotonic() + CHILD_DEADLINE_S
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.005)
        else:
            os.kill(pid, signal.SIGABRT)  # faulthandler (inherited) dumps the child's stacks
            time.sleep(2)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"forked child still running after {CHILD_DEADLINE_S} s (deadlocked?)")
        data = b""
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
    result = json.loads(data.decode()) if data else {}
    assert "error" not in result, "child failed:\n" + result["error"]
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child exit status {status}"
    return result["ok"]


def _child_checks(FrameQueue, A, B, D, J):
    out = {}
    # -- A: the parent's getter does not exist here ---------------------------
    sa = A.stats()
    assert _conserved(sa) and sa["size"] == 0, sa
    A.put("x")
    assert A.get(True, 5) == "x"
    with pytest.raises(Empty):
        A.get(True, 0.001)
    got = []
    waits0 = A.stats()["waits"]
    t = threading.Thread(target=lambda: got.append(A.get(True, 10)))
    t.start()
    deadline = time.monotonic() + 10
    while A.stats()["waits"] <= waits0 and time.monotonic() < deadline:
        time.sleep(0.001)
    A.put("to-child-thread")
    t.join(10)
    assert not t.is_alive() and got == ["to-child-thread"]
    A.shutdown()
    with pytest.raises(ShutDown):
        A.get_nowait()
    # -- B: hammered by a parent thread at fork time ----------------------------
    sb = B.stats()
    assert _conserved(sb), sb
    assert sb["size"] == B.qsize()
    drained = []
    while True:
        try:
            drained.append(B.get_nowait())
        except Empty:
            break
    assert len(drained) == sb["size"]
    for _ in drained:
        try:
            B.task_done()
        except ValueError:  # the parent's worker may not have done them all
            break
    B.put_many(range(5))
    assert B.get_many(10) == [0, 1, 2, 3, 4]
    out["B_size_at_fork"] = sb["size"]
    out["B_puts_at_fork"] = sb["puts"]
    # -- D: full, with a parent putter blocked on it ---------------------------
    sd = D.stats()
    assert _conserved(sd) and sd["size"] == 1, sd
    assert D.get_nowait() == "held"
    D.put_nowait("child")
    assert D.get_nowait() == "child"
    # -- J: a parent thread waits in join() ------------------------------------
    assert J.unfinished_tasks == 1
    J.get_nowait()
    J.task_done()
    J.join()  # returns at once: nothing unfinished
    # -- new queues with threads of the child ---------------------------------
    for policy in ("block", "drop_oldest"):
        E = FrameQueue(8, policy)
        n = 2000
        received = []

        def consume():
            while True:
                try:
                    received.extend(E.get_many(16, True, 10))
                except ShutDown:
                    return

        c = threading.Thread(target=consume)
        c.start()
        dropped = []
        for i in range(n):
            d = E.put(i, True, 10)
            if d is not None:
                dropped.append(d)
        E.shutdown()
        c.join(20)
        assert not c.is_alive()
        assert sorted(received + dropped) == list(range(n)), policy
        assert _conserved(E.stats())
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_while_threads_hold_and_wait(FrameQueue, live):
    A = FrameQueue()                   # a parent thread blocks in get()
    B = FrameQueue(16, "drop_oldest")  # a parent thread hammers it
    D = FrameQueue(1)                  # full; a parent thread blocks in put()
    J = FrameQueue()                   # a parent thread blocks in join()
    D.put("held")
    J.put("task")
    stop = threading.Event()
    hammer_ops = [0]

    def hammer():
        i = 0
        while not stop.is_set():
            B.put_nowait(i)
            B.put_many([i, i + 1, i + 2])
            try:
                B.get_nowait()
                B.task_done()
            except Empty:
                pass
            if i % 7 == 0:
                B.get_many(5)
            if i % 50 == 0:
                B.clear()
            B.stats()
            i += 1
            hammer_ops[0] = i

    getter = live.start(A.get, name="blocked-getter")
    putter = live.start(D.put, "second", name="blocked-putter")
    joiner = live.start(J.join, name="blocked-joiner")
    hammerer = live.start(hammer, name="hammer")
    live.wait_for_waits(A, 1)
    live.wait_for_waits(D, 1)
    live.wait_until(lambda: hammer_ops[0] > 100, what="hammer thread running")

    try:
        results = []
        for _ in range(N_FORKS):
            live.wait_until(lambda n=hammer_ops[0]: hammer_ops[0] > n + 10, what="hammer progress")
            results.append(_fork_and_run(lambda: _child_checks(FrameQueue, A, B, D, J)))
    finally:
        stop.set()

    # -- the parent's queues and threads are unaffected -------------------------
    hammerer.value()
    A.put("wake")
    assert getter.value() == "wake"
    assert D.get() == "held"
    putter.value()
    assert D.get() == "second"
    assert not joiner.done
    J.get()
    J.task_done()
    joiner.value()
    for q in (A, B, D, J):
        assert _conserved(q.stats()), q.stats()
    assert not A.is_shutdown  # the child's shutdown stayed in the child
    print(f"{N_FORKS} forks; B at fork: {[r['B_size_at_fork'] for r in results]}")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_from_a_worker_thread(FrameQueue, live):
    """fork() called by a non-main thread while the main thread is blocked
    in get() on the same queue: in the child only the forking thread exists."""
    q = FrameQueue()

    def forker():
        live.wait_for_waits(q, 1)

        def body():
            q.put("child")
            assert q.get_nowait() == "child"
            s = q.stats()
            assert _conserved(s) and s["size"] == 0
            fresh = FrameQueue(2, "drop_newest")
            assert fresh.put_many([1, 2, 3]) == [3]
            return s["waits"]

        waits = _fork_and_run(body)
        q.put("parent")
        return waits

    w = live.start(forker)
    assert q.get(True, 60) == "parent"
    assert w.value() >= 1


# ---------------------------------------------------------------------------
# Issue 11.1: Python code that runs in the forking thread between bufmgr's
# before-fork handler and its after-fork handlers (other libraries' handlers,
# registered before bufmgr, run after its before-handler) dropped the last
# reference to a queue (child: __dealloc__ locked a mutex still locked for the
# fork) or to a Frame (parent: Frame.__dealloc__ locked the mutex this very
# thread held for the fork). Each scenario runs in a fresh interpreter, whose
# fork handlers it registers first; the script bounds its wait for the child
# and the test bounds the script, so a deadlock fails instead of hanging.

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

_SCRIPT_PROLOGUE = """
import os, sys, time, signal
def wait_child(pid, deadline_s=10.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print("CHILD HUNG", flush=True)
    return -2
"""

_IMPORTS = {
    "c": "from bufmgr._ring import FrameQueue, FrameRing",
    "python": "from bufmgr._pyqueue import FrameQueue; from bufmgr._pyframering import FrameRing",
}


def _run_fork_script(impl, body, timeout=60):
    if impl == "c" and NO_EXTENSIONS:
        pytest.skip("BUFMGR_NO_EXTENSIONS=1: compiled classes not tested")
    src = _SCRIPT_PROLOGUE + textwrap.dedent(body).replace("IMPORT_IMPL", _IMPORTS[impl])
    try:
        proc = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"parent deadlocked around fork(); output so far: {e.stdout!r}")
    assert "CHILD HUNG" not in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


NO_EXTENSIONS = os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0")
IMPLS = pytest.mark.parametrize("impl", ["c", "python"])


@IMPLS
def test_fork_handler_drops_last_queue_reference(impl):
    """The issue's deterministic reproducer (the child hung in __dealloc__)."""
    out = _run_fork_script(impl, """
        holder = {}
        os.register_at_fork(before=lambda: holder.clear())  # registered before bufmgr's
        IMPORT_IMPL
        holder["q"] = FrameQueue(4)
        holder["q"].put("item")
        pid = os.fork()
        if pid == 0:
            q2 = FrameQueue(2)
            q2.put(1)
            print("child alive", q2.get_nowait(), flush=True)
            os._exit(0)
        assert wait_child(pid) == 0
        print("parent done", flush=True)
    """)
    assert "child alive 1" in out and "parent done" in out


@IMPLS
def test_fork_handler_drops_queue_holding_frames(impl):
    """The dropped queue holds a Frame: its last reference goes when the
    queue's does, which must wait until the RING's mutex is usable again too
    (parent: unlocked; child: re-created)."""
    out = _run_fork_script(impl, """
        holder = {}
        os.register_at_fork(before=lambda: holder.clear())
        IMPORT_IMPL
        ring = FrameRing(2, 16)
        ring.put(b"a")
        ring.put(b"b")
        q = FrameQueue(4)
        q.put(ring.get())
        holder["q"] = q
        del q
        pid = os.fork()
        if pid == 0:
            s = ring.stats()
            assert s["held"] == 0 and s["free"] == 1, s
            print("child alive", bytes(ring.get_nowait()), flush=True)
            os._exit(0)
        assert wait_child(pid) == 0
        s = ring.stats()
        assert s["held"] == 0 and s["free"] == 1, s
        print("parent done", bytes(ring.get_nowait()), flush=True)
    """)
    assert "child alive b'b'" in out and "parent done b'b'" in out


@IMPLS
def test_fork_handler_drops_last_frame_reference(impl):
    """A Frame (and a memoryview of another) dropped by a before-fork handler
    in the forking thread, which holds the ring's mutex for the fork: the
    parent deadlocked in Frame.__dealloc__. The slots are freed in both."""
    out = _run_fork_script(impl, """
        holder = {}
        os.register_at_fork(before=lambda: holder.clear())
        IMPORT_IMPL
        ring = FrameRing(3, 16)
        for b in (b"a", b"b", b"c"):
            ring.put(b)
        holder["frame"] = ring.get()
        f2 = ring.get()
        if sys.version_info >= (3, 12) or type(f2).__module__ != "bufmgr._pyframering":
            holder["view"] = memoryview(f2)
        f2.release()
        del f2
        pid = os.fork()
        if pid == 0:
            s = ring.stats()
            assert s["held"] == 0 and s["free"] == 2, s
            ring.put(b"child")
            print("child alive", flush=True)
            os._exit(0)
        assert wait_child(pid) == 0
        s = ring.stats()
        assert s["held"] == 0 and s["free"] == 2, s
        print("parent done", flush=True)
    """)
    assert "child alive" in out and "parent done" in out


@IMPLS
def test_fork_with_logging_imported_first(impl):
    """The natural case: logging imported before bufmgr (its before-fork
    handler then runs after bufmgr's and waits for logging's lock), while a
    worker thread holding that lock drops its last references to a queue and
    a ring. Made deterministic: the worker drops them only once the forking
    thread is waiting for logging's lock inside logging's fork handler."""
    out = _run_fork_script(impl, """
        import logging, threading, warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        IMPORT_IMPL
        holder = {"q": FrameQueue(4), "ring": FrameRing(2, 8)}
        holder["q"].put("x")
        main = threading.main_thread().ident
        locked = threading.Event()

        def worker():
            with logging._lock:
                locked.set()
                end = time.monotonic() + 10
                while time.monotonic() < end:
                    f = sys._current_frames().get(main)
                    if f is not None and f.f_code.co_name in ("_acquireLock", "_prepareFork"):
                        break
                    time.sleep(0.001)
                else:
                    print("forking thread never reached logging's handler", flush=True)
                holder.clear()  # last references, while fork() is under way

        t = threading.Thread(target=worker)
        t.start()
        locked.wait(10)
        pid = os.fork()
        if pid == 0:
            print("child alive", flush=True)
            os._exit(0)
        t.join(10)
        assert not t.is_alive()
        assert wait_child(pid) == 0
        print("parent done", flush=True)
    """)
    assert "never reached" not in out, out
    assert "child alive" in out and "parent done" in out
