"""BufferManager never raises on bad input (issue 11, items 4 and 5).

Every test runs on both stacks (``stack`` fixture):

* ``[c]``      -- compiled FrameQueue/FrameRing and the compiled hot paths
  (bufmgr._mgrcore built from bufmgr/_mgrcore.py). Skipped only with
  BUFMGR_NO_EXTENSIONS=1.
* ``[python]`` -- the pure twins and the same hot paths run as plain Python.

Bad input gives False/None, is logged (logger ``bufmgr.manager``), counted
(``errors``) and handed to ``coordinator.handle_error``; the queues are left
untouched.
"""

from __future__ import annotations

import logging

import pytest
from manager_helpers import MANAGER_LOGGER, Recorder

from bufmgr import BufferManager
from bufmgr import manager as manager_mod

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is optional
    np = None

NO_EXTENSIONS = manager_mod.os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0")

if manager_mod.CORE_IMPLEMENTATION == "python":
    PyCoreManager = BufferManager
else:

    class PyCoreManager(manager_mod._PyCore, BufferManager):  # type: ignore[misc,valid-type]
        """BufferManager on the hot paths run as plain Python."""


QUEUES = {
    "capture_left": 4,                                         # drop_oldest FrameQueue (fast path)
    "block_left": (4, "block"),                                # FrameQueue, slow path
    "ring_left": {"maxsize": 4, "frame_bytes": 64},            # drop_oldest FrameRing (fast path)
    "ringblock_left": {"maxsize": 4, "frame_bytes": 64, "policy": "block"},
}


@pytest.fixture(params=["c", "python"])
def make(request):
    if request.param == "c":
        if NO_EXTENSIONS:
            pytest.skip("BUFMGR_NO_EXTENSIONS=1: compiled classes not tested")
        from bufmgr._mgrcore import ManagerCore
        from bufmgr._ring import FrameQueue, FrameRing

        assert issubclass(BufferManager, ManagerCore) and manager_mod.CORE_IMPLEMENTATION == "c"
        cls = BufferManager
    else:
        from bufmgr._pyframering import FrameRing
        from bufmgr._pyqueue import FrameQueue

        cls = PyCoreManager
    made = []

    def factory(coordinator=None, queues=QUEUES, **kw):
        m = cls(coordinator, queues=queues, queue_factory=FrameQueue, ring_factory=FrameRing, **kw)
        made.append(m)
        return m

    yield factory
    for m in made:
        m.cleanup()


def assert_bad_input(m, coord, caplog, calls, error_type):
    """``calls`` (each -> the manager's return value) all reported bad input."""
    for call, expected in calls:
        before = len(coord.errors)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger=MANAGER_LOGGER):
            assert call() is expected
        assert len(coord.errors) == before + 1, "handle_error not called"
        error, component = coord.errors[-1]
        assert isinstance(error, error_type), repr(error)
        assert component == "buffer_manager"
        assert [r for r in caplog.records if r.name == MANAGER_LOGGER and r.levelno >= logging.ERROR]
    assert m.get_performance_stats()["manager"]["errors"] == len(calls)
    assert all(st["puts"] == 0 and st["gets"] == 0
               for st in m.get_performance_stats()["components"].values())


HUGE = 10**400  # an int no float can hold


@pytest.mark.parametrize("timeout", [HUGE, -HUGE], ids=["huge", "minus-huge"])
def test_timeout_too_large_for_a_float_is_bad_input(make, caplog, timeout):
    coord = Recorder()
    m = make(coord)
    calls = [(lambda c=c: m.put_buffer(c, b"x", timeout), False) for c in QUEUES]
    calls += [(lambda c=c: m.get_buffer(c, timeout), None) for c in QUEUES]
    calls += [(lambda c=c: m.get_frame(c, timeout), None) for c in ("ring_left", "ringblock_left")]
    assert_bad_input(m, coord, caplog, calls, ValueError)
    assert "too large" in str(coord.errors[0][0])


@pytest.mark.skipif(np is None, reason="needs numpy")
def test_unexportable_numpy_array_is_bad_input(make, caplog):
    """numpy refuses to export datetime64 through the buffer protocol with a
    ValueError (not TypeError): still bad input, not an exception."""
    data = np.array(["2020-01-01"], dtype="M8[D]")
    with pytest.raises(ValueError):
        memoryview(data)
    coord = Recorder()
    m = make(coord)
    calls = [(lambda c=c: m.put_buffer(c, data), False) for c in QUEUES]
    calls += [(lambda c=c: m.put_buffer(c, data, 0), False) for c in QUEUES]  # int timeout: slow path
    assert_bad_input(m, coord, caplog, calls, (TypeError, ValueError))


class RaisingBuffer:
    """Claims to be bytes-like, then fails in a way no caller expects."""

    def __buffer__(self, flags):  # 3.12+ protocol; older Pythons: plain TypeError
        raise RuntimeError("exporter broke")


def test_exporter_raising_anything_is_bad_input(make, caplog):
    coord = Recorder()
    m = make(coord)
    calls = [(lambda c=c: m.put_buffer(c, RaisingBuffer()), False) for c in QUEUES]
    assert_bad_input(m, coord, caplog, calls, Exception)


class BadKey:
    def __hash__(self):
        raise RuntimeError("no hash for you")


def test_component_whose_hash_raises_is_bad_input(make, caplog):
    coord = Recorder()
    m = make(coord)
    calls = [
        (lambda: m.put_buffer(BadKey(), b"x"), False),
        (lambda: m.put_buffer(BadKey(), b"x", 0), False),
        (lambda: m.get_buffer(BadKey()), None),
        (lambda: m.get_buffer(BadKey(), 0), None),
        (lambda: m.get_frame(BadKey()), None),
    ]
    assert_bad_input(m, coord, caplog, calls, ValueError)


def test_good_input_still_works_after_bad_input(make):
    coord = Recorder()
    m = make(coord)
    assert m.put_buffer("capture_left", b"x", HUGE) is False
    assert m.put_buffer("capture_left", b"y") is True
    assert m.put_buffer("ring_left", b"z", 0.5) is True
    assert m.get_buffer("capture_left", 0.0) == b"y"
    assert m.get_buffer("ring_left", 0.0) == b"z"


# ---------------------------------------------------------------------------
# item 5: legacy field names must not collide


def test_legacy_field_collision_is_refused(make):
    with pytest.raises(ValueError) as info:
        make(None, queues={"a_left": 4, "left": {"maxsize": 4, "group": "a"}}, field_style="legacy")
    msg = str(info.value)
    assert "a_queue_size_left" in msg and "'a_left'" in msg and "'left'" in msg


def test_legacy_collision_refused_for_rings_too(make):
    with pytest.raises(ValueError, match="cam_queue_size_left"):
        make(None, queues={
            "cam_left": {"maxsize": 4, "frame_bytes": 64},
            "left": {"maxsize": 4, "group": "cam"},
        }, field_style="legacy")


def test_distinct_legacy_fields_are_accepted(make):
    coord = Recorder()
    m = make(coord, queues={"a_left": 4, "right": {"maxsize": 4, "group": "a"}}, field_style="legacy")
    assert m.put_buffer("a_left", b"x") and m.put_buffer("right", b"y") and m.put_buffer("right", b"z")
    assert coord.state == {"a_queue_size_left": 1, "a_queue_size_right": 2, "a_queue_size": 3}


def test_same_queues_in_component_style_do_not_collide(make):
    coord = Recorder()
    m = make(coord, queues={"a_left": 4, "left": {"maxsize": 4, "group": "a"}})
    m.put_buffer("a_left", b"x")
    m.put_buffer("left", b"y")
    assert coord.state["a_left_queue_size"] == 1 and coord.state["left_queue_size"] == 1
    assert coord.state["a_queue_size"] == 2
