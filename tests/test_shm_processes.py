"""SharedFrameRing across processes: integrity under stress, a kill -9 loop,
lifetime of segments, pickling under every start method, stats and
shutdown seen from other processes, Ctrl+C in a blocked child.

Children are bounded: every join has a deadline (a hang fails the test),
and the autouse fixture asserts /dev/shm holds no new bufmgr segment after
each test."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import bufmgr
from bufmgr import shm

from shm_helpers import (DEADLINE_S, assert_no_segments_left, check_frame, conserved, join_bounded, key_of,
                         needs_numpy, needs_shm, segments, session_name, stamp, wait_until, waitpid_bounded)

pytestmark = [needs_shm, needs_numpy]

# where the package under test is installed (the checkout only for an editable
# install): children started with `python -c` import bufmgr from there, never
# from an uncompiled source tree that happens to be the cwd
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(bufmgr.__file__)))


@pytest.fixture(autouse=True)
def no_leftover_segments():
    before = segments()
    yield
    assert_no_segments_left(before)  # children exiting right now may still hold a name


_join = join_bounded


# ---- integrity: 2 producers x 3 consumers, every byte checked -------------------------

FRAME = 4096


def _producer(ring, pid, n, done):
    rnd = random.Random(pid)
    for i in range(n):
        ring.put(stamp(key_of(pid, i), FRAME), metadata=(pid, i) if i % 7 == 0 else None)
        if ring.overflow != "block" and i % 16 == 0:
            time.sleep(0.0002 * rnd.random())  # let the consumers keep up sometimes
    done.release()


def _consumer(ring, out, seed):
    rnd = random.Random(seed)
    held, keys, torn = [], [], 0
    parent, deadline = os.getppid(), time.monotonic() + 2 * DEADLINE_S
    try:
        while os.getppid() == parent and time.monotonic() < deadline:  # never outlive the test
            try:
                f = ring.get(timeout=0.05)
            except bufmgr.ShutDown:
                break
            except Exception:  # queue.Empty: let go of what we hold (a producer may wait for it)
                while held:
                    held.pop().release()
                continue
            try:
                key = check_frame(f, FRAME)
                if f.metadata is not None:
                    assert f.metadata == ((key >> 40) - 1, key & ((1 << 40) - 1))
                keys.append(key)
            except AssertionError:
                torn += 1
            held.append(f)
            # hold frames for random times, release in random order
            while held and (len(held) > rnd.randrange(3) or rnd.random() < 0.3):
                held.pop(rnd.randrange(len(held))).release()
            if rnd.random() < 0.05:
                time.sleep(0.001)
    finally:
        for f in held:
            f.release()
        out.put((keys, torn))


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "block"])
def test_integrity_2_producers_3_consumers(overflow):
    ctx = mp.get_context("fork")
    n = 1500
    with bufmgr.SharedFrameRing(6, FRAME, overflow=overflow, metadata_bytes=64) as ring:
        out, done = ctx.Queue(), ctx.Semaphore(0)
        cons = [ctx.Process(target=_consumer, args=(ring, out, s)) for s in range(3)]
        prods = [ctx.Process(target=_producer, args=(ring, p, n, done)) for p in range(2)]
        for p in cons + prods:
            p.start()
        for _ in prods:
            assert done.acquire(timeout=DEADLINE_S), "liveness: a producer did not finish"
        assert _join(prods) == [0, 0]
        wait_until(lambda: ring.qsize() == 0, "consumers drained the ring")
        ring.shutdown()
        results = [out.get(timeout=DEADLINE_S) for _ in cons]
        assert _join(cons) == [0, 0, 0]
        keys = [k for ks, _ in results for k in ks]
        assert sum(t for _, t in results) == 0, "torn frames"
        assert len(keys) == len(set(keys)), "a frame was delivered twice"
        s = ring.stats()
        assert conserved(s) and s["puts"] == 2 * n and s["gets"] == len(keys)
        assert s["free"] == s["slots"] and s["participants"] == 1
        # per producer, frames arrive in order (seq order == put order)
        if overflow == "block":
            assert len(keys) == 2 * n and s["dropped"] == 0
        else:
            assert s["dropped"] == 2 * n - len(keys)


# ---- the kill loop -------------------------------------------------------------------

def _kill_child(ring, role, seed):
    """Runs in a forked child until killed (or the ring shuts down)."""
    rnd = random.Random(seed)
    code = 0
    try:
        i = 0
        held = []
        while True:
            if rnd.random() < 0.04:
                ring._debug_hold_lock(0.001 + 0.003 * rnd.random())  # die holding the lock
            if role == "producer":
                try:
                    if rnd.random() < 0.5:
                        ring.put(stamp(key_of(seed % 1000, i), 256), timeout=0.05)
                    else:
                        with ring.reserve(timeout=0.05) as slot:  # die half-way through a write
                            data = stamp(key_of(seed % 1000, i), 256)
                            memoryview(slot)[: len(data)] = data
                            slot.commit(len(data))
                except queue.Full:  # every slot held: try again
                    continue
                i += 1
            else:
                try:
                    f = ring.get(timeout=0.05)
                except bufmgr.ShutDown:
                    break
                except Exception:
                    continue
                check_frame(f, 256)
                held.append(f)
                if len(held) > rnd.randrange(3):  # die holding frames
                    held.pop(0).release()
    except bufmgr.ShutDown:
        pass
    except AssertionError as e:
        code = 3  # torn frame
        os.write(2, f"kill-loop child: {e}\n".encode())
    except BaseException as e:
        code = 4
        os.write(2, f"kill-loop child: {e!r}\n".encode())
    os._exit(code)


def _spawn_kill_child(ring, role, seed):
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            _kill_child(ring, role, seed)
        finally:
            os._exit(5)
    return pid


def test_kill_loop_200_iterations():
    iterations = 200
    rnd = random.Random(13)
    with bufmgr.SharedFrameRing(5, 256, overflow="block") as ring:
        roles = ["producer", "producer", "consumer", "consumer"]
        pids = [_spawn_kill_child(ring, role, i) for i, role in enumerate(roles)]
        seed = len(roles)
        for _ in range(iterations):
            time.sleep(rnd.random() * 0.01)
            v = rnd.randrange(len(pids))
            os.kill(pids[v], signal.SIGKILL)
            status = waitpid_bounded(pids[v])
            assert os.WIFSIGNALED(status), f"child ended by itself (status {status}): torn frame?"
            seed += 1
            pids[v] = _spawn_kill_child(ring, roles[v], seed)
        # the survivors finish: shut down, they drain and exit
        time.sleep(0.05)
        ring.shutdown()
        for pid in pids:
            status = waitpid_bounded(pid)
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        ring.reclaim()
        s = ring.stats()
        assert ring._check() == 0, s
        assert conserved(s), s
        assert s["free"] == s["slots"] and s["held"] == 0 and s["writing"] == 0, s
        assert s["participants"] == 1, s
        assert s["lock_recoveries"] > 0, "no kill landed while a child held the lock"
        assert s["reclaimed_slots"] > 0 and s["gets"] > 0
        print(f"\nkill loop {ring.name}: {iterations} kills, stats {s}")


# ---- lifetime ------------------------------------------------------------------------

def _run(code, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, env=env, cwd=ROOT, **kw)


def test_no_segment_left_after_normal_exit_or_exception():
    for tail in ("", "raise SystemExit(3)", "raise RuntimeError('boom')"):
        out = _run(f"""
            import bufmgr
            r = bufmgr.SharedFrameRing(2, 8)
            a = bufmgr.SharedFrameRing.attach(r.name)
            r.put(b"x"); f = a.get()   # a frame still held at exit
            print(r.name, flush=True)
            {tail}
            """)
        name = out.stdout.strip()
        assert name.startswith("bufmgr-"), out
        assert not os.path.exists(os.path.join(shm.SHM_DIR, name)), (tail, out)


def _creator(name, ready, release):
    r = bufmgr.SharedFrameRing(4, 16, name=name)
    r.put(b"from creator")
    ready.set()
    release.wait(DEADLINE_S)
    time.sleep(DEADLINE_S)  # killed here


def test_creator_killed_others_continue_last_one_out_removes():
    ctx = mp.get_context("fork")
    name = f"bufmgr-test-creator-{os.getpid()}"
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_creator, args=(name, ready, release))
    p.start()
    assert ready.wait(DEADLINE_S)
    ring = bufmgr.SharedFrameRing.attach(name)
    other = bufmgr.SharedFrameRing.attach(name)
    f = ring.get()
    os.kill(p.pid, signal.SIGKILL)
    _join([p])
    assert [e for e in shm.list_segments() if e["name"] == name][0]["creator_alive"] is False
    other.put(b"after the kill")  # they keep working
    assert bytes(ring.get()) == b"after the kill" and bytes(f) == b"from creator"
    other.close()
    assert os.path.exists(os.path.join(shm.SHM_DIR, name))  # `ring` is still in
    f.release()
    ring.close()
    del f
    gc.collect()
    assert not os.path.exists(os.path.join(shm.SHM_DIR, name))  # the last one out removed it


def test_shm_list_and_clean_cli():
    # a segment whose only process was killed: leaked until `shm clean`
    code = f"""
        import bufmgr, os, signal
        r = bufmgr.SharedFrameRing(2, 8, name={session_name("cli")!r})
        print(r.name, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    out = _run(code)
    leaked = out.stdout.strip()
    assert leaked.startswith("bufmgr-"), out
    with bufmgr.SharedFrameRing(2, 8) as alive:
        listing = _run("from bufmgr.cli import main; main(['shm', 'list'])")
        assert leaked in listing.stdout and alive.name in listing.stdout, listing
        row = [line for line in listing.stdout.splitlines() if leaked in line][0]
        assert "dead" in row, listing.stdout
        # only these two: a plain `shm clean` would also take the dead
        # segments of a test session running beside this one (and its ours)
        both = [leaked, alive.name[len(shm.PREFIX):]]  # (the prefix may be left out)
        only = _run(f"from bufmgr.cli import main; main(['shm', 'list', *{both!r}])")
        assert sorted(line.split()[0] for line in only.stdout.splitlines()) == sorted([leaked, alive.name])
        cleaned = _run(f"from bufmgr.cli import main; main(['shm', 'clean', *{both!r}])")
        assert cleaned.stdout.split() == ["removed", leaked], cleaned
        assert not os.path.exists(os.path.join(shm.SHM_DIR, leaked))
        assert os.path.exists(os.path.join(shm.SHM_DIR, alive.name))  # in use: kept


# ---- pickling under every start method ---------------------------------------------------

def _pickled_child(ring, out):
    f = ring.get(timeout=DEADLINE_S)
    out.put((bytes(f), f.metadata, ring.stats()["participants"]))
    f.release()
    ring.put(b"reply", metadata="from child")


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_pickling_attaches_in_the_child(method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"{method} not available")
    ctx = mp.get_context(method)
    with bufmgr.SharedFrameRing(4, 32, overflow="block") as ring:
        out = ctx.Queue()
        ring.put(b"to child", metadata={"m": method})
        p = ctx.Process(target=_pickled_child, args=(ring, out))
        p.start()
        data, meta, participants = out.get(timeout=DEADLINE_S)
        assert _join([p]) == [0]
        assert (data, meta) == (b"to child", {"m": method}) and participants == 2
        f = ring.get(timeout=DEADLINE_S)
        assert (bytes(f), f.metadata) == (b"reply", "from child")
        f.release()
        s = ring.stats()
        assert s["participants"] == 1 and s["free"] == 4 and conserved(s)


def _pool_init(ring):
    global _POOL_RING
    _POOL_RING = ring


def _pool_task(i):
    _POOL_RING.put(bytes([i]))
    return i


def test_process_pool_initializer():
    from concurrent.futures import ProcessPoolExecutor

    with bufmgr.SharedFrameRing(8, 4, overflow="block") as ring:
        with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"), initializer=_pool_init,
                                 initargs=(ring,)) as ex:
            assert sorted(ex.map(_pool_task, range(5), timeout=DEADLINE_S)) == list(range(5))
        got = sorted(bytes(f)[0] for f in ring.get_many(10, timeout=DEADLINE_S))
        assert got == list(range(5))


# ---- stats, shutdown and Ctrl+C seen from other processes ----------------------------------

def _stats_child(ring, out):
    out.put(ring.stats())


def test_stats_are_the_same_from_another_process():
    ctx = mp.get_context("fork")
    with bufmgr.SharedFrameRing(3, 8, overflow="drop_oldest") as ring:
        for i in range(5):
            ring.put(bytes([i]))
        f = ring.get()
        out = ctx.Queue()
        p = ctx.Process(target=_stats_child, args=(ring, out))
        p.start()
        theirs = out.get(timeout=DEADLINE_S)
        assert _join([p]) == [0]
        ours = ring.stats()
        for key in ("puts", "gets", "dropped", "size", "held", "free", "high_water", "reclaimed"):
            assert theirs[key] == ours[key], key
        assert theirs["participants"] == 2 and conserved(theirs)
        f.release()


def _blocked_getter(ring, out):
    try:
        ring.get()
    except bufmgr.ShutDown:
        out.put("shutdown")


def _blocked_putter(ring, out):
    try:
        ring.put(b"x")
    except bufmgr.ShutDown:
        out.put("shutdown")


def test_shutdown_wakes_waiters_in_other_processes():
    ctx = mp.get_context("fork")
    with bufmgr.SharedFrameRing(1, 8, overflow="block") as getters_ring, \
            bufmgr.SharedFrameRing(1, 8, overflow="block") as putters_ring:
        putters_ring.put(b"full")
        out = ctx.Queue()
        procs = [ctx.Process(target=_blocked_getter, args=(getters_ring, out)) for _ in range(2)]
        procs += [ctx.Process(target=_blocked_putter, args=(putters_ring, out)) for _ in range(2)]
        for p in procs:
            p.start()
        wait_until(lambda: getters_ring.stats()["getters_waiting"] == 2, "2 getters asleep")
        wait_until(lambda: putters_ring.stats()["putters_waiting"] == 2, "2 putters asleep")
        getters_ring.shutdown()
        putters_ring.shutdown()
        assert [out.get(timeout=DEADLINE_S) for _ in procs] == ["shutdown"] * 4
        assert _join(procs) == [0] * 4


def test_sigint_during_a_blocked_get_in_a_child():
    with bufmgr.SharedFrameRing(2, 8) as ring:
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import bufmgr, signal
                signal.signal(signal.SIGINT, signal.default_int_handler)
                r = bufmgr.SharedFrameRing.attach({ring.name!r})
                try:
                    r.get()
                except KeyboardInterrupt:
                    print("interrupted", flush=True)
                print(bytes(r.get(timeout=30)).decode(), flush=True)  # still usable
                """)],
            stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")),
            cwd=ROOT)
        try:
            wait_until(lambda: ring.stats()["getters_waiting"] == 1, "the child is blocked in get()")
            child.send_signal(signal.SIGINT)
            first = child.stdout.readline()  # bounded: the child's get wakes every 50 ms
            ring.put(b"after")
            out, _ = child.communicate(timeout=DEADLINE_S)
            out = first + out
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 0 and out.split() == ["interrupted", "after"], out


def test_dead_consumer_slots_come_back_to_a_blocked_producer():
    with bufmgr.SharedFrameRing(2, 8, overflow="block") as ring:
        ring.put(b"a"), ring.put(b"b")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child: take both, never release
            try:
                frames = [ring.get(), ring.get()]
                time.sleep(60)
            finally:
                os._exit(1)
        wait_until(lambda: ring.stats()["held"] == 2, "the child holds both slots")
        os.kill(pid, signal.SIGKILL)
        waitpid_bounded(pid)
        assert ring.put(b"c", timeout=DEADLINE_S) is not None  # a wait slice reaps the dead
        s = ring.stats()
        assert s["reclaimed_slots"] == 2 and s["dead_participants"] == 1 and conserved(s)
