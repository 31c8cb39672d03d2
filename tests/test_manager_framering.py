"""BufferManager components backed by a FrameRing (``frame_bytes`` in the spec).

Every test runs on both stacks through the ``stack`` fixture:

* ``[c]``      -- compiled FrameQueue/FrameRing (bufmgr._ring) and the compiled
  put_buffer/get_buffer core (ManagerCore). Skipped only with
  BUFMGR_NO_EXTENSIONS=1.
* ``[python]`` -- the pure twins (bufmgr._pyqueue / bufmgr._pyframering) and
  the pure-Python core (_PyCore), even when the extension is built.

No test relies on sleep-based timing: blocked threads are detected from
their stack, every wait has a generous deadline.
"""

from __future__ import annotations

import array
import inspect
import logging
import math
import threading
import time

import pytest
from framering_fixtures import thread_at, wait_stable
from manager_helpers import DEADLINE_S, MANAGER_LOGGER, Recorder, run_producers_consumers

import bufmgr
from bufmgr import BufferManager, StateCoordinator
from bufmgr import manager as manager_mod

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is optional
    np = None

NO_EXTENSIONS = manager_mod.os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0")

RING = {"maxsize": 4, "frame_bytes": 64}


if issubclass(BufferManager, manager_mod._PyCore):  # no extension (BUFMGR_NO_EXTENSIONS=1)
    PyCoreManager = BufferManager
else:

    class PyCoreManager(manager_mod._PyCore, BufferManager):  # type: ignore[no-redef]
        """BufferManager on the pure-Python hot paths even when ManagerCore is built."""


class Stack:
    def __init__(self, name, queue_cls, ring_cls, manager_cls):
        self.name = name
        self.FrameQueue = queue_cls
        self.FrameRing = ring_cls
        self.Manager = manager_cls
        self.made = []

    def make(self, coordinator=None, queues=None, **kw):
        kw.setdefault("queue_factory", self.FrameQueue)
        m = self.Manager(coordinator, queues=queues, **kw)
        self.made.append(m)
        return m


@pytest.fixture(params=["c", "python"])
def stack(request):
    if request.param == "c":
        if NO_EXTENSIONS:
            pytest.skip("BUFMGR_NO_EXTENSIONS=1: compiled classes not tested")
        # No try/except on purpose: an ImportError here must fail loudly.
        from bufmgr._mgrcore import ManagerCore
        from bufmgr._ring import FrameQueue, FrameRing

        assert issubclass(BufferManager, ManagerCore)
        s = Stack("c", FrameQueue, FrameRing, BufferManager)
    else:
        from bufmgr._pyframering import FrameRing
        from bufmgr._pyqueue import FrameQueue

        s = Stack("python", FrameQueue, FrameRing, PyCoreManager)
    yield s
    for m in s.made:
        m.cleanup()


def manager_errors(caplog):
    return [r.levelno for r in caplog.records if r.name == MANAGER_LOGGER and r.levelno >= logging.WARNING]


def snapshot(m):
    return m.get_usage(), {k: dict(v) for k, v in m.get_performance_stats()["components"].items()}


def conserved(st):
    return st["puts"] == st["gets"] + st["dropped"] + st["cleared"] + st["size"]


# ---------------------------------------------------------------------------
# construction


def test_ring_component_uses_the_stack_ring(stack):
    m = stack.make(queues={"cam_left": RING, "cam_right": 8})
    ring = m.get_queue("cam_left")
    assert type(ring) is stack.FrameRing
    assert (ring.slots, ring.frame_bytes, ring.overflow) == (4, 64, "drop_oldest")
    assert type(m.get_queue("cam_right")) is stack.FrameQueue


def test_default_ring_factory_follows_the_package_choice():
    m = BufferManager(queues={"r": RING})
    try:
        assert type(m.get_queue("r")) is bufmgr.FrameRing
    finally:
        m.cleanup()


def test_explicit_ring_factory(stack):
    calls = []

    def factory(slots, frame_bytes, overflow):
        calls.append((slots, frame_bytes, overflow))
        return stack.FrameRing(slots, frame_bytes, overflow)

    m = stack.make(
        queues={"a": {"maxsize": 3, "frame_bytes": 16, "policy": "drop_newest"}, "b": 2},
        ring_factory=factory,
    )
    assert calls == [(3, 16, "drop_newest")]
    assert m.put_buffer("a", b"x") and m.get_buffer("a") == b"x"


def test_frame_bytes_none_is_a_frame_queue(stack):
    m = stack.make(queues={"q": {"maxsize": 0, "frame_bytes": None}})
    assert type(m.get_queue("q")) is stack.FrameQueue


@pytest.mark.parametrize(
    "spec, exc",
    [
        ({"maxsize": 4, "frame_bytes": 0}, ValueError),
        ({"maxsize": 4, "frame_bytes": -1}, ValueError),
        ({"maxsize": 4, "frame_bytes": True}, TypeError),
        ({"maxsize": 4, "frame_bytes": 1.5}, TypeError),
        ({"maxsize": 4, "frame_bytes": "64"}, TypeError),
        ({"maxsize": 0, "frame_bytes": 64}, ValueError),  # a ring needs slots
        ({"maxsize": -1, "frame_bytes": 64}, ValueError),
        ({"maxsize": 4, "frame_bytes": 64, "overflow": "sometimes"}, ValueError),
        ({"frame_bytes": 64}, TypeError),  # maxsize is required
    ],
)
def test_bad_ring_specs_raise(spec, exc):
    with pytest.raises(exc, match="queue spec for 'cam'"):
        BufferManager(queues={"cam": spec})


# ---------------------------------------------------------------------------
# put / get


def _inputs():
    data = [b"bytes", b"", bytearray(b"bytearray"), memoryview(b"memoryview"), array.array("h", [1, 2, 3])]
    ids = ["bytes", "empty", "bytearray", "memoryview", "array"]
    if np is not None:
        data.append(np.arange(12, dtype=np.uint16).reshape(3, 4))
        ids.append("numpy2d")
    return pytest.mark.parametrize("data", data, ids=ids)


@_inputs()
def test_roundtrip_returns_equal_bytes(stack, data):
    m = stack.make(queues={"cam_left": RING})
    assert m.put_buffer("cam_left", data) is True
    out = m.get_buffer("cam_left", 0.0)
    assert type(out) is bytes
    assert out == memoryview(data).tobytes()
    if len(out):
        assert out is not data  # a copy (b"" is a singleton)
    st = m.get_performance_stats()["components"]["cam_left"]
    assert (st["puts"], st["gets"], st["size"], st["held"]) == (1, 1, 0, 0)


@pytest.mark.parametrize("timeout", [0.5, 0.0, 1, None, math.inf], ids=repr)
def test_roundtrip_any_timeout(stack, timeout):
    m = stack.make(queues={"r": RING, "rb": dict(RING, policy="block")})
    for name in ("r", "rb"):
        assert m.put_buffer(name, b"frame", timeout) is True
        assert m.get_buffer(name, timeout) == b"frame"


def test_caller_may_reuse_its_buffer_after_put(stack):
    m = stack.make(queues={"cam_left": RING})
    buf = bytearray(b"first frame")
    assert m.put_buffer("cam_left", buf)
    buf[:] = b"SECOND FRAM"  # refill the same buffer (a driver buffer, a numpy view ...)
    assert m.put_buffer("cam_left", buf)
    buf[:] = b"XXXXXXXXXXX"
    assert m.get_buffer("cam_left") == b"first frame"
    assert m.get_buffer("cam_left") == b"SECOND FRAM"


@pytest.mark.skipif(np is None, reason="numpy not installed")
def test_numpy_view_refilled_in_place(stack):
    m = stack.make(queues={"cam_left": {"maxsize": 8, "frame_bytes": 32}})
    block = np.zeros((4, 4), dtype=np.int16)
    for k in range(3):
        block[...] = k
        assert m.put_buffer("cam_left", block)
    for k in range(3):
        out = np.frombuffer(m.get_buffer("cam_left"), dtype=np.int16).reshape(4, 4)
        assert (out == k).all()


@pytest.mark.parametrize(
    "data, exc",
    [
        (b"x" * 65, ValueError),  # one byte over frame_bytes
        (bytearray(1000), ValueError),
        (memoryview(b"abcdefgh")[::2], ValueError),  # not contiguous
        ("text", TypeError),
        (None, TypeError),
        (12, TypeError),
    ],
    ids=["oversize", "oversize-bytearray", "non-contiguous", "str", "None", "int"],
)
@pytest.mark.parametrize("timeout", [0.5, None], ids=["fast-path", "slow-path"])
def test_bad_data_is_false_logged_and_handled(stack, caplog, data, exc, timeout):
    coord = Recorder()
    m = stack.make(coord, queues={"cam_left": RING, "cam_right": RING})
    assert m.put_buffer("cam_left", b"keep")
    before = snapshot(m)
    n_updates = len(coord.updates)
    caplog.clear()
    assert m.put_buffer("cam_left", data, timeout) is False
    assert snapshot(m) == before  # nothing queued, nothing counted by the ring
    assert len(coord.updates) == n_updates
    assert len(coord.errors) == 1
    error, component = coord.errors[0]
    assert isinstance(error, exc) and component == "buffer_manager"
    # expected input error: one line, no traceback, not "failed unexpectedly"
    records = [r for r in caplog.records if r.name == MANAGER_LOGGER]
    assert [r.levelno for r in records] == [logging.ERROR]
    assert "unexpectedly" not in records[0].getMessage() and records[0].exc_info is None
    assert m.get_performance_stats()["manager"]["errors"] == 1
    assert m.get_buffer("cam_left", 0) == b"keep"


def test_oversize_message_names_both_sizes(stack, caplog):
    coord = Recorder()
    m = stack.make(coord, queues={"cam_left": RING})
    assert m.put_buffer("cam_left", bytes(100)) is False
    assert "100" in str(coord.errors[0][0]) and "64" in str(coord.errors[0][0])


@pytest.mark.parametrize("timeout", [-1, -0.5, math.nan, "1", True], ids=repr)
@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest", "block"])
def test_bad_timeout_on_ring(stack, caplog, timeout, policy):
    coord = Recorder()
    m = stack.make(coord, queues={"r": dict(RING, policy=policy)})
    assert m.put_buffer("r", b"x", timeout) is False
    assert m.get_buffer("r", timeout) is None
    assert len(coord.errors) == 2
    assert manager_errors(caplog) == [logging.ERROR, logging.ERROR]
    assert m.get_usage()["r"] == 0


def test_drop_oldest_accounting(stack):
    m = stack.make(queues={"cam_left": {"maxsize": 3, "frame_bytes": 8}})
    for i in range(10):
        assert m.put_buffer("cam_left", b"%d" % i) is True
    assert [m.get_buffer("cam_left", 0) for _ in range(2)] == [b"7", b"8"]
    st = m.get_performance_stats()["components"]["cam_left"]
    assert (st["puts"], st["gets"], st["dropped"], st["size"]) == (10, 2, 7, 1)
    assert st["puts"] == st["gets"] + st["dropped"] + st["size"]
    assert st["high_water"] == 3 and st["underruns"] == 0
    assert m.get_performance_stats()["manager"]["refused_underrun"] == 0


def test_drop_newest_refusal_is_false_and_counted(stack):
    m = stack.make(queues={"x": {"maxsize": 1, "frame_bytes": 8, "overflow": "drop_newest"}})
    assert m.put_buffer("x", b"a") is True
    assert m.put_buffer("x", b"b") is False
    assert m.put_buffer("x", b"c", None) is False  # the slow path too
    st = m.get_performance_stats()
    assert st["components"]["x"]["dropped"] == 2
    assert st["manager"]["refused_newest"] == 2
    assert m.get_buffer("x") == b"a"
    assert conserved(st["components"]["x"])


def test_drop_oldest_underrun_is_refused(stack, caplog):
    """Every slot held by consumers (get_frame): a drop_oldest put has nothing
    to evict, so the ring refuses it -> False, counted, not an error."""
    coord = Recorder()
    m = stack.make(coord, queues={"r": {"maxsize": 2, "frame_bytes": 8}})
    assert m.put_buffer("r", b"a") and m.put_buffer("r", b"b")
    f1, f2 = m.get_frame("r", 0), m.get_frame("r", 0)
    assert m.put_buffer("r", b"c") is False
    assert m.put_buffer("r", b"d", None) is False  # the slow path too
    st = m.get_performance_stats()
    comp = st["components"]["r"]
    assert (comp["underruns"], comp["held"], comp["free"], comp["dropped"]) == (2, 2, 0, 2)
    assert st["totals"]["underruns"] == 2 and st["totals"]["held"] == 2
    assert st["manager"]["refused_underrun"] == 2
    assert conserved(comp)
    assert coord.errors == [] and manager_errors(caplog) == []
    f1.release()
    assert m.put_buffer("r", b"e") is True
    f2.release()
    assert m.get_buffer("r", 0) == b"e"


def test_block_policy_ring_times_out_and_is_woken(stack, caplog, live):
    coord = Recorder()
    m = stack.make(coord, queues={"slow": {"maxsize": 1, "frame_bytes": 8, "policy": "block"}})
    assert m.put_buffer("slow", b"a", timeout=0.01) is True
    assert m.put_buffer("slow", b"b", timeout=0.01) is False
    assert any(r.getMessage() == "Buffer put timeout for slow" for r in caplog.records)
    assert coord.errors == []
    assert m.get_performance_stats()["manager"]["put_timeouts"] == 1
    blocked = live.start(m.put_buffer, "slow", b"c", None)
    assert m.get_buffer("slow") == b"a"  # frees the slot: the blocked put takes it
    assert blocked.value() is True
    assert m.get_buffer("slow") == b"c"


def test_get_buffer_timeout_returns_none(stack):
    m = stack.make(queues={"r": RING})
    t0 = time.monotonic()
    assert m.get_buffer("r", 0.01) is None
    assert m.get_buffer("r", 0) is None
    assert time.monotonic() - t0 < DEADLINE_S


# ---------------------------------------------------------------------------
# get_frame (zero copy)


def test_get_frame_is_zero_copy_and_releases_the_slot(stack):
    m = stack.make(queues={"r": {"maxsize": 2, "frame_bytes": 16}})
    assert m.put_buffer("r", b"hello")
    with m.get_frame("r") as frame:
        assert isinstance(frame, bufmgr.Frame) or type(frame).__name__ == "Frame"
        assert (frame.seq, frame.nbytes) == (0, 5)
        assert bytes(frame) == b"hello"
        assert m.get_performance_stats()["components"]["r"]["held"] == 1
    st = m.get_performance_stats()["components"]["r"]
    assert (st["held"], st["free"], st["gets"]) == (0, 2, 1)
    assert m.get_frame("r", 0) is None  # empty: None like get_buffer


def test_get_frame_bad_input(stack, caplog):
    coord = Recorder()
    m = stack.make(coord, queues={"r": RING, "q": 4})
    m.put_buffer("q", b"x")
    assert m.get_frame("q", 0) is None  # a FrameQueue component
    assert m.get_frame("nope", 0) is None
    assert m.get_frame(["unhashable"], 0) is None
    assert m.get_frame("r", -1) is None
    assert [type(e) for e, _ in coord.errors] == [TypeError, ValueError, ValueError, ValueError]
    assert manager_errors(caplog) == [logging.ERROR] * 4
    assert m.get_usage()["q"] == 1


# ---------------------------------------------------------------------------
# shutdown / cleanup


def _wait_blocked_in_ring_get(m, component, thread):
    """Wait until ``thread`` is inside the ring's blocking get (called from the
    manager's bytes-returning reader)."""
    code = m._components[component].get.__code__
    lines, first = inspect.getsourcelines(code)
    lineno = first + next(i for i, line in enumerate(lines) if "ring_get(block, timeout)" in line)
    wait_stable(lambda: thread_at(thread, code, lineno), "get_buffer blocked in the ring")


@pytest.mark.parametrize("how", ["cleanup", "coordinator"])
def test_shutdown_wakes_blocked_get_buffer(stack, live, how):
    coord = StateCoordinator()
    m = stack.make(coord, queues={"cam_left": RING, "cam_right": 4})
    blocked = live.start(m.get_buffer, "cam_left", None)  # waits forever
    _wait_blocked_in_ring_get(m, "cam_left", blocked.thread)
    if how == "cleanup":
        m.cleanup()
    else:
        coord.request_shutdown()
    assert blocked.value() is None  # woken at once, not after a timeout
    assert m.put_buffer("cam_left", b"late") is False
    assert m.get_performance_stats()["manager"]["refused_puts"] == 1


def test_shutdown_via_coordinator_refuses_puts_and_drains(stack):
    coord = Recorder()
    m = stack.make(coord, queues={"cam_left": RING})
    assert m.put_buffer("cam_left", b"a") and m.put_buffer("cam_left", b"b")
    coord.shutdown = True
    assert m.put_buffer("cam_left", b"c") is False
    assert m.get_buffer("cam_left") == b"a"
    assert m.get_buffer("cam_left") == b"b"
    t0 = time.monotonic()
    assert m.get_buffer("cam_left", timeout=DEADLINE_S) is None  # drained: no wait
    assert m.get_frame("cam_left", timeout=DEADLINE_S) is None
    assert time.monotonic() - t0 < DEADLINE_S / 2
    assert coord.errors == []


def test_cleanup_clears_rings_and_keeps_held_frames_valid(stack):
    coord = Recorder()
    m = stack.make(coord, queues={"cam_left": RING, "cam_right": 4})
    for name in ("cam_left", "cam_right"):
        assert m.put_buffer(name, b"1") and m.put_buffer(name, b"2")
    held = m.get_frame("cam_left")
    m.cleanup()
    assert bytes(held) == b"1"  # a held frame outlives cleanup
    held.release()
    assert m.get_usage() == {"cam_left": 0, "cam_right": 0}
    assert coord.state["cam_left_queue_size"] == 0 and coord.state["cam_queue_size"] == 0
    assert m.put_buffer("cam_left", b"late") is False
    assert m.get_buffer("cam_left", 0) is None
    st = m.get_performance_stats()["components"]
    assert st["cam_left"]["cleared"] == 1 and st["cam_right"]["cleared"] == 2
    assert conserved(st["cam_left"]) and conserved(st["cam_right"])
    assert st["cam_left"]["held"] == 0


# ---------------------------------------------------------------------------
# stats and reporting


def test_performance_stats_fields(stack):
    m = stack.make(queues={"cam_left": {"maxsize": 3, "frame_bytes": 32}, "cam_right": 5})
    for i in range(5):
        m.put_buffer("cam_left", b"%d" % i)
        m.put_buffer("cam_right", b"%d" % i)
    frame = m.get_frame("cam_left")
    st = m.get_performance_stats()
    ring = st["components"]["cam_left"]
    for key in ("puts", "gets", "dropped", "cleared", "underruns", "high_water",
                "size", "held", "free", "slots", "frame_bytes", "maxsize"):
        assert isinstance(ring[key], int), key
    assert ring["maxsize"] == ring["slots"] == 3 and ring["frame_bytes"] == 32
    assert (ring["puts"], ring["gets"], ring["dropped"], ring["size"]) == (5, 1, 2, 2)
    assert (ring["held"], ring["free"], ring["high_water"]) == (1, 0, 3)
    assert ring["overflow"] == "drop_oldest" and ring["group"] == "cam"
    queue = st["components"]["cam_right"]
    assert "frame_bytes" not in queue and queue["maxsize"] == 5
    totals = st["totals"]
    assert totals["maxsize"] == 8 and totals["puts"] == 10 and totals["size"] == 7
    assert totals["held"] == 1 and totals["underruns"] == 0
    assert st["manager"]["refused_underrun"] == 0
    frame.release()
    assert m.get_performance_stats()["totals"]["held"] == 0


def test_mixed_layout(stack):
    """Rings and queues side by side: each keeps its semantics, groups sum
    across both kinds, the coordinator sees every field."""
    coord = Recorder()
    queues = {
        "capture_left": {"maxsize": 8, "frame_bytes": 64},
        "capture_right": {"maxsize": 8, "frame_bytes": 64, "overflow": "drop_newest"},
        "processing_left": 4,
        "processing_right": (4, "drop_newest"),
        "storage_left": {"maxsize": 2, "frame_bytes": 16, "policy": "block"},
        "storage_right": {"maxsize": 0, "group": "storage"},
    }
    m = stack.make(coord, queues=queues)
    assert [type(m.get_queue(c)) for c in queues] == [
        stack.FrameRing, stack.FrameRing, stack.FrameQueue, stack.FrameQueue,
        stack.FrameRing, stack.FrameQueue,
    ]
    payload = {c: bytearray(b"%s-frame" % c[:10].encode()) for c in queues}
    for c in queues:
        assert m.put_buffer(c, payload[c]) is True
    assert coord.state["capture_queue_size"] == 2
    assert coord.state["capture_left_queue_size"] == 1
    # queues hand the object itself back; rings hand back a copy
    for c in queues:
        out = m.get_buffer(c, 0)
        if "frame_bytes" in (queues[c] if isinstance(queues[c], dict) else {}):
            assert type(out) is bytes and out == payload[c]
        else:
            assert out is payload[c]
    assert m.get_usage() == dict.fromkeys(queues, 0)
    assert coord.state["capture_queue_size"] == 0
    assert coord.state["storage_queue_size"] == 0
    st = m.get_performance_stats()
    assert st["totals"]["puts"] == 6 and st["totals"]["gets"] == 6
    assert st["totals"]["maxsize"] == 8 + 8 + 4 + 4 + 2 + 0
    assert all(conserved(s) for s in st["components"].values())
    m.cleanup()
    assert all(coord.state[f"{c}_queue_size"] == 0 for c in queues)


def test_ring_reports_sizes(stack):
    coord = Recorder()
    m = stack.make(coord, queues={"capture_left": RING, "capture_right": 4})
    m.put_buffer("capture_left", b"a")
    assert coord.updates[-1] == {"capture_left_queue_size": 1, "capture_queue_size": 1}
    m.put_buffer("capture_right", b"b")
    assert coord.updates[-1] == {"capture_right_queue_size": 1, "capture_queue_size": 2}
    m.get_buffer("capture_left")
    assert coord.updates[-1] == {"capture_left_queue_size": 0, "capture_queue_size": 1}
    m.put_buffer("capture_left", b"c")
    with m.get_frame("capture_left"):
        assert coord.updates[-1] == {"capture_left_queue_size": 0, "capture_queue_size": 1}


def test_frame_queue_components_keep_the_fast_path(stack):
    """The put fast-path table holds the puts that never wait: drop_oldest
    FrameQueues (no refusal counter) and drop_oldest/drop_newest rings (with
    the counter a refusal bumps)."""
    m = stack.make(queues={
        "a": 4, "b": (4, "drop_newest"), "r": RING,
        "rn": dict(RING, policy="drop_newest"), "rb": dict(RING, policy="block"),
    })
    assert set(m._put_fast) == {"a", "r", "rn"}
    assert m._put_fast["a"][3] is None
    assert m._put_fast["r"][3] == "refused_underrun" and m._put_fast["rn"][3] == "refused_newest"
    assert set(m._get_fast) == {"a", "b", "r", "rn", "rb"}


# ---------------------------------------------------------------------------
# concurrency


def test_two_producers_two_consumers_on_a_ring(stack, caplog):
    """2 producers refill ONE bytearray each (the ring copies it), 2 consumers
    take bytes. Every frame is intact, each consumer sees each producer's
    frames in order, and everything is accounted for."""
    caplog.set_level(logging.DEBUG, logger="bufmgr")
    coord = Recorder()
    m = stack.make(coord, queues={"capture_left": {"maxsize": 4, "frame_bytes": 64}})
    total, producers, consumers = 20_000 if stack.name == "c" else 6_000, 2, 2
    per = total // producers
    done = threading.Event()
    go = threading.Barrier(producers + consumers)
    put_ok = [0] * producers
    got = [[] for _ in range(consumers)]

    def frame(i, k):
        return b"%d-%06d-" % (i, k) * 4  # 40 bytes; a torn frame would not repeat

    def produce(i):
        go.wait(DEADLINE_S)
        buf = bytearray(len(frame(i, 0)))
        ok = 0
        for k in range(per):
            buf[:] = frame(i, k)  # the producer reuses its buffer
            if m.put_buffer("capture_left", buf):
                ok += 1
            if k % 4 == 0:
                time.sleep(0)
        put_ok[i] = ok

    def consume(i):
        go.wait(DEADLINE_S)
        out = got[i]
        while True:
            data = m.get_buffer("capture_left", timeout=0.01)
            if data is not None:
                out.append(data)
            elif done.is_set() and m.get_usage()["capture_left"] == 0:
                break

    failures = run_producers_consumers(produce, consume, producers, consumers, done)
    assert not failures
    assert manager_errors(caplog) == [] and coord.errors == []

    for frames in got:
        last = [-1] * producers
        for data in frames:
            head = data[: data.index(b"-", 2) + 1]
            i, k = int(head.split(b"-")[0]), int(head.split(b"-")[1])
            assert data == frame(i, k), data  # intact: not torn, not overwritten
            assert k > last[i]  # each producer's frames in order
            last[i] = k

    st = m.get_performance_stats()
    comp, mgr = st["components"]["capture_left"], st["manager"]
    n_got = sum(len(g) for g in got)
    assert comp["puts"] == total  # refused puts count in puts (and dropped)
    assert sum(put_ok) + mgr["refused_underrun"] == total
    assert comp["gets"] == n_got
    assert comp["puts"] == comp["gets"] + comp["dropped"] + comp["cleared"] + comp["size"]
    assert comp["size"] == 0 and comp["held"] == 0 and comp["free"] == 4
    assert comp["underruns"] == mgr["refused_underrun"]
    assert coord.state["capture_left_queue_size"] == 0
    assert coord.state["capture_queue_size"] == 0
