"""Fixtures and helpers shared by the FrameRing test files (tests/test_framering*.py).

Every FrameRing test runs twice through the ``FrameRing`` fixture:

* ``[c]``      -- ``bufmgr._ring.FrameRing``, the compiled class. Skipped ONLY
  when ``BUFMGR_NO_EXTENSIONS=1``; otherwise a failing import is an error.
* ``[python]`` -- ``bufmgr._pyframering.FrameRing``, the pure-Python twin.

Import the fixture into a test module with
``from framering_fixtures import FrameRing  # noqa: F401`` (pytest puts tests/
on sys.path because tests/ has no __init__.py). The liveness helpers (``live``
fixture, hang safety net) come from tests/conftest.py.
"""

from __future__ import annotations

import array
import os
import struct
import sys
import threading
import time

import pytest

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is optional
    np = None

NO_EXTENSIONS = os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0")
DEADLINE_S = 30.0

STATS_KEYS = (
    "puts", "gets", "dropped", "cleared", "underruns", "high_water",
    "size", "held", "free", "slots", "frame_bytes",
)
POLICIES = ("drop_oldest", "drop_newest", "block")

needs_numpy = pytest.mark.skipif(np is None, reason="numpy not installed")


# -- shared by the parity suites (test_framering_parity.py: compiled vs pure;
# test_shm_parity.py: FrameRing vs SharedFrameRing) ----------------------------


def outcome(fn, norm=lambda text: text):
    """(kind, value) of calling fn: a normalised result or the exception
    (its message through ``norm``)."""
    from bufmgr._errors import Empty, Full, ShutDown

    try:
        value = fn()
    except (Empty, Full, ShutDown) as e:
        return ("raise", type(e).__name__, "")
    except (TypeError, ValueError, OverflowError, MemoryError, BufferError) as e:
        return ("raise", type(e).__name__, norm(str(e)))
    return ("ok", value)


def producer_ts(frame):
    """The frame's timestamp when a producer gave it (these tests give values
    >= 2**62, which time.monotonic_ns() never reaches), else None."""
    return frame.timestamp_ns if frame.timestamp_ns >= 2**62 else None


#: frame geometries every implementation takes (as FrameRing(slots, **g))
GEOMETRIES = [dict(frame_bytes=12), dict(shape=(2, 6)), dict(frame_bytes=12, dtype="uint16"),
              dict(shape=(3, 2), dtype="uint16")]

BAD_CONSTRUCTOR_ARGS = [
    (0, 8), (-3, 8), (2, 0), (2, -1), (2.5, 8), (2, 8.0), ("2", 8), (None, 8), (True, 8),
    (2, False), (2, 8, "x"), (2, 8, None), (2, 8, 3), (2**62, 2**62), (sys.maxsize, 2),
    (2**64, 1), (1, 2**64), (2**100, 2**100),
]

BAD_GEOMETRY_ARGS = [
    dict(), dict(shape=(2, 3), frame_bytes=7), dict(shape=(0,)), dict(shape=()), dict(shape=[2, "3"]),
    dict(shape=(1,) * 9), dict(shape=(2**40, 2**40)), dict(shape=2**63), dict(shape=(2, 3), frame_bytes=6.0),
    dict(frame_bytes=7, dtype="uint16"), dict(frame_bytes=8, dtype="nope"), dict(frame_bytes=8, dtype=object),
    dict(frame_bytes=8, dtype="datetime64[s]"), dict(shape=(2, 2), dtype="float64", overflow="x"),
]

#: put() arguments every implementation refuses (with a 16-byte frame)
BAD_PUTS = [
    "str", 1, None, 1.5, [1], memoryview(b"abcdef")[::2], b"x" * 17, bytearray(100),
    array.array("b", range(17)),
]
if np is not None:
    BAD_PUTS += [np.zeros((4, 8), np.uint8)[:, ::2], np.asfortranarray(np.zeros((3, 2), np.uint8))]


def load_impl(name):
    """The FrameRing class of implementation ``name`` ("c" or "python")."""
    if name == "c":
        if NO_EXTENSIONS:
            pytest.skip("BUFMGR_NO_EXTENSIONS=1: compiled FrameRing not tested")
        # No try/except on purpose: an ImportError here must fail loudly.
        from bufmgr._ring import FrameRing as cls
    else:
        from bufmgr._pyframering import FrameRing as cls
    return cls


@pytest.fixture(params=["c", "python"])
def FrameRing(request):  # noqa: N802 - the fixture *is* the class
    return load_impl(request.param)


def is_pure(cls) -> bool:
    return cls.__module__ == "bufmgr._pyframering"


def memoryview_supported(cls) -> bool:
    """memoryview(frame): always for the compiled Frame; PEP 688 (3.12+) for the twin."""
    return not is_pure(cls) or sys.version_info >= (3, 12)


# ---------------------------------------------------------------------------
# frame payloads: every byte depends on (producer, counter)

_HEADER = struct.Struct("<IIQ")  # producer id, counter, nbytes


def pattern(producer: int, counter: int, nbytes: int) -> bytes:
    """Deterministic frame content: a 16-byte header then a stamp tiled over
    the rest, so a torn or overwritten frame is detected at any offset."""
    head = _HEADER.pack(producer, counter, nbytes)
    if nbytes <= len(head):
        return head[:nbytes]
    word = struct.pack("<IIII", producer ^ 0xA5A5A5A5, counter, ~counter & 0xFFFFFFFF, counter * 2654435761 & 0xFFFFFFFF)
    body = nbytes - len(head)
    return head + (word * (body // len(word) + 1))[:body]


def check_pattern(data) -> tuple[int, int]:
    """Verify a frame made by pattern(); return (producer, counter)."""
    data = bytes(data)
    assert len(data) >= _HEADER.size, f"frame too short: {len(data)}"
    producer, counter, nbytes = _HEADER.unpack_from(data)
    assert nbytes == len(data), f"torn frame: header says {nbytes} bytes, got {len(data)}"
    expected = pattern(producer, counter, nbytes)
    if data != expected:
        bad = next(i for i in range(nbytes) if data[i] != expected[i])
        raise AssertionError(
            f"torn/overwritten frame (producer {producer}, counter {counter}): "
            f"first bad byte at {bad} of {nbytes}"
        )
    return producer, counter


# ---------------------------------------------------------------------------
# invariants


def check_quiet(ring, **expect):
    """Invariants at a quiet moment (no put/get in flight); return stats()."""
    s = ring.stats()
    assert sorted(s) == sorted(STATS_KEYS), s
    assert all(type(v) is int for v in s.values()), s
    assert s["slots"] == ring.slots and s["frame_bytes"] == ring.frame_bytes
    assert s["free"] + s["held"] + s["size"] == s["slots"], f"slot leak / writing slot: {s}"
    assert s["puts"] == s["gets"] + s["dropped"] + s["cleared"] + s["size"], f"counters: {s}"
    assert s["high_water"] >= s["size"]
    assert ring.qsize() == len(ring) == s["size"]
    assert ring.empty() == (s["size"] == 0)
    assert ring.full() == (s["free"] == 0)
    for k, v in expect.items():
        assert s[k] == v, f"stats()[{k!r}] == {s[k]}, expected {v}: {s}"
    return s


def all_free(ring):
    return check_quiet(ring, free=ring.slots, held=0, size=0)


# ---------------------------------------------------------------------------
# "that thread is blocked now", without sleeps deciding anything


def thread_at(thread, code, lineno) -> bool:
    """True while ``thread`` sits at ``lineno`` of ``code`` (the blocking call)
    or deeper in a callee (pure twin: its wait loop)."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code is code:
            return frame.f_lineno == lineno
        frame = frame.f_back
    return False


def wait_stable(predicate, what, polls=5, timeout=DEADLINE_S):
    """Wait until ``predicate`` held for ``polls`` consecutive polls."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < polls:
        if time.monotonic() > deadline:
            pytest.fail(f"liveness: {what} not reached within {timeout} s")
        streak = streak + 1 if predicate() else 0
        time.sleep(0.002)


class Blocker:
    """Run ``fn()`` in a daemon thread at a known line, so the test can wait
    until that thread is inside the (blocking) call."""

    def __init__(self, fn):
        self.fn = fn
        self.result = None
        self.exc = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="blocker")

    def _run(self):
        try:
            self.result = self.fn()  # BLOCKER-CALL-LINE
        except BaseException as e:  # noqa: BLE001 - reported to the test
            self.exc = e
        finally:
            self.done.set()

    _CALL_LINE = None  # filled below

    def start(self):
        self.thread.start()
        return self

    def wait_blocked(self):
        code = Blocker._run.__code__
        wait_stable(
            lambda: self.done.is_set() or thread_at(self.thread, code, Blocker._CALL_LINE),
            "the helper thread blocking in its call",
        )
        return self

    def join(self, timeout=DEADLINE_S):
        self.thread.join(timeout)
        if self.thread.is_alive():
            pytest.fail(f"liveness: blocked call did not return within {timeout} s")
        return self

    def value(self):
        self.join()
        if self.exc is not None:
            raise self.exc
        return self.result

    def raised(self, exc_type):
        self.join()
        assert isinstance(self.exc, exc_type), f"expected {exc_type.__name__}, got {self.exc!r} / {self.result!r}"
        return self.exc


def _find_call_line():
    import inspect

    lines, start = inspect.getsourcelines(Blocker._run)
    for i, line in enumerate(lines):
        if "BLOCKER-CALL-LINE" in line:
            return start + i
    raise RuntimeError("marker not found")


Blocker._CALL_LINE = _find_call_line()
