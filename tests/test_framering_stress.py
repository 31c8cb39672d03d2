"""FrameRing under threads: integrity, slot conservation, Ctrl+C, allocations, refcounts.

* Integrity: 4 producers x 4 consumers per policy. Every byte of a frame is
  derived from (producer, counter); consumers hold frames for random
  stretches and verify every byte when they get a frame AND again right
  before releasing it, through bytes()/memoryview/numpy/get_into. Zero torn
  or overwritten frames are tolerated; sequence numbers must be unique, map
  to the producer's put() result, and follow each producer's order.
* Slots never leak: after every scenario (consumers released, shutdown,
  Ctrl+C) every slot is free and the counters balance.
* Ctrl+C: SIGINT while the main thread is blocked in get / get_into / a
  "block" put interrupts it promptly and leaves the ring usable.
* No per-frame allocation in steady state (tracemalloc over 10k frames).
* Refcounts of the ring and of caller buffers return to their baseline.

No sleep decides an outcome: "blocked now" is observed from the stack (and
the underruns counter), every join has a generous deadline.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import sys
import threading
import time
import tracemalloc

import pytest

from bufmgr._errors import Empty, Full, ShutDown
from framering_fixtures import (  # noqa: F401 - FrameRing is a fixture
    DEADLINE_S,
    POLICIES,
    Blocker,
    FrameRing,
    all_free,
    check_pattern,
    check_quiet,
    memoryview_supported,
    np,
    pattern,
    thread_at,
)

SIGINT_BOUND_S = 5.0  # loose: waits are sliced at 50 ms


# ---------------------------------------------------------------------------
# integrity under stress

N_PRODUCERS = 4
N_CONSUMERS = 4
FRAMES_PER_PRODUCER = 1500
SLOTS = 4
FRAME_BYTES = 80 * 1024  # some frames >= 64 KiB: the compiled copy releases the GIL
SIZES = (16, 17, 100, 4096, 4099, 65536, 70001, FRAME_BYTES)


def _producer(ring, pid, seed, log):
    """Alternates bursts (as fast as it can: drops / blocking) with paced
    stretches (waiting briefly for a free slot), so that every
    policy both delivers many frames and overflows many times."""
    rng = random.Random(seed)
    kinds = ["bytes", "bytearray", "memoryview"] + (["numpy"] if np is not None else [])
    paced, phase_left = False, 0
    for counter in range(FRAMES_PER_PRODUCER):
        if phase_left == 0:
            paced, phase_left = rng.random() < 0.6, rng.randint(5, 40)
        phase_left -= 1
        n = rng.choice(SIZES)
        data = pattern(pid, counter, n)
        kind = rng.choice(kinds)
        if kind == "bytearray":
            data = bytearray(data)
        elif kind == "memoryview":
            data = memoryview(data)
        elif kind == "numpy":
            data = np.frombuffer(data, dtype=np.uint8)
        if paced:  # wait a little for a free slot, then put anyway
            give_up = time.monotonic() + 0.002
            while ring.full() and time.monotonic() < give_up:
                time.sleep(0.0002)  # pacing only: outcomes never depend on it
        seq = ring.put(data, timeout=DEADLINE_S)  # "block": Full here = liveness failure
        log.append((seq, pid, counter))


def _verify_frame(f, how):
    if how == "memoryview":
        with memoryview(f) as m:
            assert m.readonly
            return check_pattern(m)
    if how == "numpy":
        a = np.asarray(f)
        assert not a.flags.writeable
        return check_pattern(a.tobytes())
    return check_pattern(bytes(f))


def _consumer(ring, seed, log, use_get_into, hold_while_waiting):
    """``hold_while_waiting``: 0, or how many frames to keep while waiting
    (briefly) for the next one, so that every slot ends up held at times."""
    try:
        _consume(ring, seed, log, use_get_into, hold_while_waiting)
    except BaseException:
        ring.shutdown(immediate=True)  # a failed check must not leave producers blocked
        raise


def _consume(ring, seed, log, use_get_into, hold_while_waiting):
    rng = random.Random(seed)
    hows = ["bytes"]
    if memoryview_supported(type(ring)):
        hows.append("memoryview")
    if np is not None:
        hows.append("numpy")
    held = []
    out = bytearray(FRAME_BYTES)
    last_seq = -1
    max_hold = hold_while_waiting or rng.choice([1, 2, 3])

    def release_one(i):
        f, stamp = held.pop(i)
        # still intact right before release: no eviction/overwrite of a held frame
        assert _verify_frame(f, rng.choice(hows)) == stamp, f"frame {f.seq} changed while held"
        f.release()

    def record(seq, stamp):
        nonlocal last_seq
        assert seq > last_seq, f"seq went backwards for one consumer: {last_seq} -> {seq}"
        last_seq = seq
        log.append((seq,) + stamp)

    try:
        while True:
            if use_get_into and rng.random() < 0.5:
                try:
                    try:
                        n, seq = ring.get_into(out, False)
                    except Empty:
                        while held:
                            release_one(-1)
                        n, seq = ring.get_into(out, timeout=DEADLINE_S)
                except ShutDown:
                    return
                record(seq, check_pattern(memoryview(out)[:n]))
                continue
            try:
                try:
                    f = ring.get_nowait()
                except Empty:
                    f = None
                    if hold_while_waiting and held and rng.random() < 0.3:
                        # keep holding for a short wait: every slot may end up
                        # held (underruns); drop policies only, "block" would stall
                        try:
                            f = ring.get(timeout=0.005)
                        except Empty:
                            pass
                    if f is None:
                        while held:
                            release_one(-1)
                        f = ring.get(timeout=DEADLINE_S)
            except ShutDown:
                return
            stamp = _verify_frame(f, rng.choice(hows))
            assert f.nbytes == len(bytes(f))
            record(f.seq, stamp)
            held.append((f, stamp))
            while len(held) > (max_hold if hold_while_waiting else rng.randint(0, max_hold)):
                release_one(rng.randrange(len(held)))
            if rng.random() < 0.05:
                time.sleep(rng.random() * 0.0005)  # hold for a while (not a decision)
    finally:
        while held:
            release_one(-1)


@pytest.fixture
def fast_switching():
    """Switch threads (GIL) every ~10 us instead of 5 ms: many more
    interleavings inside put/get, above all for the pure twin."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


@pytest.mark.parametrize("policy", POLICIES)
def test_integrity_under_stress(FrameRing, live, fast_switching, policy):
    ring = FrameRing(SLOTS, FRAME_BYTES, policy)
    base = random.randrange(1 << 30)
    put_logs = [[] for _ in range(N_PRODUCERS)]
    get_logs = [[] for _ in range(N_CONSUMERS)]
    consumers = [
        live.start(
            _consumer, ring, base + 100 + i, get_logs[i], i % 2 == 1,
            0 if policy == "block" else [SLOTS, 2, 0, 0][i], name=f"consumer-{i}",
        )
        for i in range(N_CONSUMERS)
    ]
    producers = [
        live.start(_producer, ring, pid, base + pid, put_logs[pid], name=f"producer-{pid}")
        for pid in range(N_PRODUCERS)
    ]
    for w in producers:
        w.join(timeout=120)
    ring.shutdown()  # graceful: consumers drain what is queued, then get ShutDown
    for w in consumers:
        w.join(timeout=120)
    for w in consumers + producers:  # a consumer's finding first, not the ShutDown it caused
        if w.exc is not None:
            raise w.exc

    s = all_free(ring)
    total = N_PRODUCERS * FRAMES_PER_PRODUCER
    put_seq = {seq: (pid, c) for log in put_logs for seq, pid, c in log if seq is not None}
    refused = sum(1 for log in put_logs for seq, _, _ in log if seq is None)
    got = [entry for log in get_logs for entry in log]
    seqs = [seq for seq, _, _ in got]
    print(f"{policy} (seed base {base}): {s}")

    assert len(seqs) == len(set(seqs)), "a frame was delivered twice"
    assert s["puts"] == total
    assert s["gets"] == len(got)
    assert s["dropped"] == total - len(got)
    assert s["cleared"] == 0
    assert sorted(put_seq) == list(range(len(put_seq))), "seqs are assigned 0, 1, 2, ... at commit"
    for seq, pid, counter in got:
        assert put_seq.get(seq) == (pid, counter), f"seq {seq} carries another producer's frame"
    # per producer, frames arrive in put order (seq order == queue order)
    for pid in range(N_PRODUCERS):
        counters = [c for seq, p, c in sorted(got) if p == pid]
        assert counters == sorted(counters)
    if policy == "block":
        assert refused == 0 and s["dropped"] == 0 and len(got) == total
    elif policy == "drop_newest":
        # refused frames never got a seq; every committed frame was delivered
        assert refused == s["dropped"]
        assert sorted(seqs) == sorted(put_seq)
    else:  # drop_oldest: evicted (queued, never held) frames + refusals
        assert refused <= s["dropped"] and refused <= s["underruns"]
        assert set(seqs) <= set(put_seq)


def test_one_frame_exported_by_many_threads_under_traffic(FrameRing, live, fast_switching):
    """Several threads copy / view ONE held frame at the same time while
    others put, get and get_into on the same ring: every export sees the
    frame's bytes, none fails, and every slot comes back. (Free-threaded
    3.13: the pure twin once sliced one memoryview shared by all slots from
    every thread, whose non-atomic export counts then released the ring's
    buffer under its users: "operation forbidden on released memoryview".)"""
    ring = FrameRing(8, 4096, "drop_oldest")
    data = pattern(7, 1, 4096)
    ring.put(data)
    shared = ring.get()
    rounds = 3000
    views = memoryview_supported(FrameRing)

    def exporter():
        for _ in range(rounds):
            assert bytes(shared) == data
            if views:
                with memoryview(shared) as m:
                    assert m[100] == data[100] and len(m) == 4096

    def producer(i):
        for n in range(rounds):
            ring.put(pattern(i, n, 1000 + n % 3000))

    def consumer():
        dst = bytearray(4096)
        for _ in range(rounds):
            try:
                nbytes, _seq = ring.get_into(dst, False)
                check_pattern(bytes(dst[:nbytes]))
                with ring.get_nowait() as f:
                    check_pattern(bytes(f))
            except Empty:
                pass

    workers = [live.start(exporter, name=f"exporter-{i}") for i in range(4)]
    workers += [live.start(producer, i, name=f"producer-{i}") for i in range(2)]
    workers += [live.start(consumer, name=f"consumer-{i}") for i in range(2)]
    for w in workers:
        w.value(timeout=120)
    shared.release()
    ring.clear()
    all_free(ring)


@pytest.mark.parametrize("policy", POLICIES)
def test_immediate_shutdown_under_traffic_leaks_no_slot(FrameRing, live, policy):
    ring = FrameRing(4, 4096, policy)
    stop = threading.Event()
    counts = [0] * 4

    def produce(i):
        n = 0
        try:
            while not stop.is_set():
                try:
                    ring.put(pattern(i, n, 1000 + n % 3000), timeout=DEADLINE_S)
                except Full:
                    pytest.fail("block put timed out")
                n += 1
        except ShutDown:
            return n

    def consume(i):
        held = []
        try:
            while True:
                f = ring.get(timeout=DEADLINE_S)
                check_pattern(bytes(f))
                held.append(f)
                counts[i] += 1
                if len(held) > i % 3:
                    held.pop(0).release()
        except ShutDown:
            for f in held:
                check_pattern(bytes(f))  # held frames stay valid after shutdown
            return len(held)

    cons = [live.start(consume, i) for i in range(2)]
    prods = [live.start(produce, i) for i in range(2)]
    live.wait_until(lambda: sum(counts) >= 200, what="200 frames consumed")
    ring.shutdown(immediate=True)
    stop.set()
    for w in prods + cons:
        w.value(timeout=60)
    gc.collect()
    all_free(ring)


# ---------------------------------------------------------------------------
# Ctrl+C while blocked on the main thread

needs_sigint = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(signal, "SIGINT"),
    reason="os.kill(SIGINT) to the own process needs POSIX",
)


def _run_interrupted(call, is_blocked, unblock):
    """Run ``call()`` on the main thread; a helper thread SIGINTs us once the
    call is blocked. Return the latency of the KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT handler is not Python's default (KeyboardInterrupt)")
    main = threading.main_thread()
    code = _run_interrupted.__code__
    state = {"sent": None, "gave_up": False}
    returned = threading.Event()

    def sender():
        deadline = time.monotonic() + DEADLINE_S
        streak = 0
        while time.monotonic() < deadline:
            on_line = thread_at(main, code, call_line)
            streak = streak + 1 if (on_line and is_blocked()) else 0
            if streak >= 5:
                state["sent"] = time.monotonic()
                os.kill(os.getpid(), signal.SIGINT)
                if not returned.wait(2 * SIGINT_BOUND_S):
                    unblock()  # never checks signals: fail, don't hang
                return
            time.sleep(0.002)
        state["gave_up"] = True
        unblock()

    t = threading.Thread(target=sender, daemon=True, name="sigint-sender")
    t.start()
    raised_at = None
    try:
        call()  # SIGINT-CALL-LINE
    except KeyboardInterrupt:
        raised_at = time.monotonic()
    finally:
        returned.set()
        t.join(DEADLINE_S)
    assert not t.is_alive()
    assert not state["gave_up"], "the call never blocked"
    assert raised_at is not None, "the blocked call returned instead of raising KeyboardInterrupt"
    latency = raised_at - state["sent"]
    print(f"KeyboardInterrupt {latency * 1000:.1f} ms after SIGINT")
    assert 0 <= latency < SIGINT_BOUND_S
    return latency


def _call_line():
    import inspect

    lines, start = inspect.getsourcelines(_run_interrupted)
    return start + next(i for i, line in enumerate(lines) if "SIGINT-CALL-LINE" in line)


call_line = _call_line()


@needs_sigint
@pytest.mark.parametrize("variant", ["get", "get_timeout", "get_into"])
def test_sigint_interrupts_blocked_get(FrameRing, live, variant):
    ring = FrameRing(2, 64)
    out = bytearray(64)
    calls = {
        "get": ring.get,
        "get_timeout": lambda: ring.get(True, 120),
        "get_into": lambda: ring.get_into(out),
    }
    # No counter reveals a blocked get: rely on the main thread's stack alone.
    _run_interrupted(calls[variant], lambda: True, lambda: ring.put(b"unblock"))
    s = all_free(ring)
    assert (s["puts"], s["gets"]) == (0, 0)
    # usable afterwards, from this thread and from others
    ring.put(b"a")
    with ring.get() as f:
        assert bytes(f) == b"a"
    b = Blocker(ring.get).start().wait_blocked()
    ring.put(b"b")
    f = b.value()
    assert bytes(f) == b"b"
    f.release()
    all_free(ring)


@needs_sigint
def test_sigint_interrupts_blocked_put(FrameRing):
    ring = FrameRing(2, 64, "block")
    ring.put(b"a")
    ring.put(b"b")
    held = [ring.get(), ring.get()]  # every slot held
    _run_interrupted(
        lambda: ring.put(b"c"),
        lambda: ring.stats()["underruns"] >= 1,  # counted once the put starts waiting
        lambda: held.pop().release(),
    )
    check_quiet(ring, held=2, free=0, size=0, underruns=1, puts=2)  # no slot left "writing"
    for f in held:
        f.release()
    held.clear()
    all_free(ring)
    assert ring.put(b"c") == 2
    with ring.get() as f:
        assert bytes(f) == b"c"
    all_free(ring)


# ---------------------------------------------------------------------------
# allocations and references


@pytest.mark.parametrize("policy", POLICIES)
def test_no_per_frame_allocation(FrameRing, policy):
    fb = 64 * 1024
    n_frames = 10_000
    ring = FrameRing(4, fb, policy)
    src = bytearray(os.urandom(fb))
    dst = bytearray(fb)
    small = memoryview(src)[:1000]

    def loop(n):
        put, get_into = ring.put, ring.get_into
        for i in range(n):
            put(src if i & 1 else small)
            get_into(dst)

    loop(500)  # warm-up (caches, lazily created objects)
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        loop(n_frames)
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"growth {cur - base} B, peak +{peak - base} B over {n_frames} frames")
    assert dst == src
    assert cur - base < 16 * 1024, "memory grows with the number of frames"
    assert peak - base < fb // 4, "a frame-sized buffer was allocated while moving frames"
    all_free(ring)
    assert ring.stats()["gets"] == n_frames + 500


def test_get_path_does_not_accumulate(FrameRing):
    fb = 64 * 1024
    ring = FrameRing(4, fb)
    src = bytes(fb)

    def loop(n):
        for _ in range(n):
            ring.put(src)
            with ring.get() as f:
                f.nbytes

    loop(200)
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        loop(5000)
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cur - base < 16 * 1024
    assert peak - base < fb // 4
    all_free(ring)


def test_refcounts_back_to_baseline(FrameRing):
    ring = FrameRing(4, 64, "drop_oldest")
    src = bytearray(b"0123456789" * 3)
    dst = bytearray(64)
    big = bytearray(65)
    gc.collect()
    base = {name: sys.getrefcount(obj) for name, obj in [("ring", ring), ("src", src), ("dst", dst), ("big", big)]}

    def counts():
        gc.collect()
        return {name: sys.getrefcount(obj) for name, obj in [("ring", ring), ("src", src), ("dst", dst), ("big", big)]}

    for _ in range(10):
        ring.put(src)
    frames = [ring.get() for _ in range(3)]
    views = [memoryview(f) for f in frames] if memoryview_supported(FrameRing) else []
    arrays = [np.asarray(f) for f in frames] if np is not None else []
    ring.get_into(dst)
    try:
        ring.put(big)  # too large
    except ValueError:
        pass
    try:
        ring.put(src)
        ring.get_into(bytearray(1), False)  # too small
    except ValueError:
        pass
    for frame in frames:
        frame.release()
    assert counts()["src"] == base["src"], "the ring kept a reference to a put() source"
    del views, arrays, frames, frame
    ring.clear()
    ring.put(src)
    ring.shutdown(immediate=True)
    assert counts() == base
    all_free(ring)
    src.extend(b"x")  # no buffer export left behind
    dst.extend(b"x")
    big.extend(b"x")


def test_slots_never_leak_random_ops(FrameRing):
    """Random single-threaded operations (including every error path), then
    release + shutdown: every slot ends free and the counters balance."""
    rng = random.Random(1234)
    for policy in POLICIES:
        ring = FrameRing(5, 32, policy)
        held = []
        for _ in range(2000):
            op = rng.random()
            try:
                if op < 0.35:
                    ring.put(bytes(rng.randrange(0, 40)), False)
                elif op < 0.55:
                    held.append(ring.get_nowait())
                elif op < 0.70 and held:
                    held.pop(rng.randrange(len(held))).release()
                elif op < 0.80:
                    ring.get_into(bytearray(rng.randrange(0, 40)), False)
                elif op < 0.82:
                    ring.clear()
                elif op < 0.84:
                    ring.put(memoryview(bytearray(64))[::2], False)
                elif op < 0.86:
                    ring.get_into(b"ro", False)
                elif op < 0.88:
                    ring.put(b"x", True, -1)
                else:
                    s = ring.stats()
                    assert s["free"] + s["held"] + s["size"] == s["slots"]
                    assert s["held"] == len(held)
            except (Empty, Full, ValueError, TypeError):
                pass
        check_quiet(ring, held=len(held))
        ring.shutdown(immediate=True)
        del held
        gc.collect()
        all_free(ring)
