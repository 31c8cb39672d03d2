"""Differential tests: SharedFrameRing must behave like FrameRing (issue 13:
"the FrameRing surface, with the same semantics and exceptions").

The same random, single-threaded (non-blocking) operation sequence runs on
the compiled FrameRing (the reference) and on a SharedFrameRing in this
process; every return value, exception type and message, frame field, view
(shape, format, numpy dtype), the FrameRing stats() keys and the queue state
must match. The names of the classes ("SharedFrameRing" / "FrameRing",
"SharedFrame" / "Frame") are the only allowed difference in messages and
reprs. Differences by design (not compared): the extra stats() keys of the
shared ring, its repr (it names the segment), reserve(), attach/close/unlink.
"""

from __future__ import annotations

import array
import math
import random
import sys

import pytest

from framering_fixtures import BAD_CONSTRUCTOR_ARGS, BAD_PUTS, NO_EXTENSIONS, POLICIES, STATS_KEYS
from framering_fixtures import BAD_GEOMETRY_ARGS as _BAD_GEOMETRY_ARGS
from framering_fixtures import GEOMETRIES as _GEOMETRIES
from framering_fixtures import outcome as _outcome
from framering_fixtures import producer_ts as _producer_ts

pytestmark = [
    pytest.mark.skipif(NO_EXTENSIONS, reason="SharedFrameRing needs the compiled core"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SharedFrameRing is Linux-only"),
]

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is an extra
    np = None


@pytest.fixture
def impls():
    from bufmgr._ring import FrameRing
    from bufmgr.shm import SharedFrameRing

    return FrameRing, SharedFrameRing


def _norm(text: str) -> str:
    return text.replace("SharedFrameRing", "FrameRing").replace("SharedFrame", "Frame")


def outcome(fn):
    """framering_fixtures.outcome, with SharedFrameRing's names read as FrameRing's."""
    return _outcome(fn, _norm)


def _view(frame):
    """What a consumer sees of a frame: fields, memoryview geometry, numpy."""
    with memoryview(frame) as m:
        geometry = (m.format, m.itemsize, m.ndim, m.shape, m.strides, m.nbytes, m.readonly)
    out = (frame.seq, frame.gap, frame.nbytes, frame.metadata, _producer_ts(frame),
           frame.shape, str(frame.dtype), bytes(frame), geometry, _norm(repr(frame)))
    if np is not None:
        a = np.asarray(frame)
        out += ((a.shape, str(a.dtype), a.flags.writeable),)
    return out


class Side:
    """One ring plus the frames it currently holds."""

    def __init__(self, cls, *args, **kwargs):
        self.ring = cls(*args, **kwargs)
        self.held = []

    def close(self):
        for f in self.held:
            f.release()
        self.held.clear()
        close = getattr(self.ring, "close", None)
        if close is not None:
            close()

    def do(self, op, arg):
        r = self.ring
        if op == "put":
            return outcome(lambda: r.put(arg, False))
        if op == "put_block":
            return outcome(lambda: r.put(arg, True, 0))
        if op == "put_meta":
            data, ts, meta = arg
            return outcome(lambda: r.put(data, False, timestamp_ns=ts, metadata=meta))
        if op == "put_nowait":
            return outcome(lambda: r.put_nowait(arg))
        if op == "put_many":
            return outcome(lambda: r.put_many(arg, False))
        if op in ("get", "get_timeout0", "get_latest"):
            def get():
                if op == "get":
                    f = r.get_nowait()
                elif op == "get_latest":
                    f = r.get_latest(False)
                else:
                    f = r.get(True, 0)
                self.held.append(f)
                return _view(f)
            return outcome(get)
        if op == "get_many":
            def many():
                fs = r.get_many(arg, False)
                self.held.extend(fs)
                return [_view(f) for f in fs]
            return outcome(many)
        if op == "release":
            if not self.held:
                return ("ok", None)
            f = self.held.pop(arg % len(self.held))
            f.release()
            return outcome(lambda: (_norm(repr(f)), f.seq, f.nbytes, bytes(f)))
        if op == "get_into":
            buf = bytearray(arg)
            res = outcome(lambda: r.get_into(buf, False))
            return res, bytes(buf)
        if op == "clear":
            return outcome(r.clear)
        if op == "shutdown":
            return outcome(lambda: r.shutdown(arg))
        raise AssertionError(op)

    def snapshot(self):
        r = self.ring
        stats = r.stats()
        return ({k: stats[k] for k in STATS_KEYS}, r.qsize(), len(r), r.empty(), r.full(),
                r.is_shutdown, [(f.seq, f.gap, f.nbytes, bytes(f)) for f in self.held])


GEOMETRIES = _GEOMETRIES + [dict(frame_bytes=16, dtype="float32")]


def _random_op(rng, step, fb):
    x = rng.random()
    if x < 0.22:
        data = bytes(rng.randrange(256) for _ in range(rng.choice([fb, fb, rng.randrange(fb + 3)])))
        ts = rng.choice([None, None, rng.randrange(2**62, 2**63), -1, -(2**63), 1.5, 2**63, True])
        return "put_meta", (data, ts, rng.choice([None, step, ("exp", step)]))
    if x < 0.30:
        return "put", bytes(rng.randrange(256) for _ in range(rng.randrange(0, fb + 3)))
    if x < 0.34:
        return "put_nowait", array.array("H", range(rng.randrange(0, fb // 2 + 2)))
    if x < 0.38:
        return "put_many", [bytes([step % 256]) * rng.randrange(fb + 2) for _ in range(rng.randrange(4))]
    if x < 0.41:
        return "put_block", bytes(rng.randrange(0, fb + 1))
    if x < 0.52:
        return "get", None
    if x < 0.55:
        return "get_timeout0", None
    if x < 0.62:
        return "get_latest", None
    if x < 0.67:
        return "get_many", rng.choice([1, 2, 5, 0, -1])
    if x < 0.82:
        return "release", rng.randrange(1000)
    if x < 0.91:
        return "get_into", rng.randrange(0, fb + 2)
    if x < 0.96:
        return "clear", None
    if x < 0.963 and step > 300:
        return "shutdown", rng.random() < 0.5
    return "put", b""


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("geometry", range(len(GEOMETRIES)))
@pytest.mark.parametrize("slots", [1, 3])
def test_random_sequences_agree(impls, policy, geometry, slots):
    kwargs = GEOMETRIES[geometry]
    if "dtype" in kwargs and np is None:
        pytest.skip("numpy not installed")
    FR, SFR = impls
    rng = random.Random(geometry * 31 + len(policy) + slots)
    fb = FR(1, **kwargs).frame_bytes
    c = Side(FR, slots, **kwargs, overflow=policy)
    s = Side(SFR, slots, **kwargs, overflow=policy)
    try:
        for step in range(500):
            op, arg = _random_op(rng, step, fb)
            rc, rs = c.do(op, arg), s.do(op, arg)
            assert rc == rs, f"step {step}: {op}({arg!r}): FrameRing {rc!r} != SharedFrameRing {rs!r}"
            assert c.snapshot() == s.snapshot(), f"step {step} after {op}"
        for side in (c, s):
            for f in side.held:
                f.release()
            side.held.clear()
            side.ring.shutdown(True)
        assert c.snapshot() == s.snapshot()
    finally:
        c.close()
        s.close()


def test_partial_frame_is_flat_bytes(impls):
    """(a) A frame shorter than frame_bytes is exported as flat bytes, even
    when its length is a multiple of the dtype's itemsize."""
    if np is None:
        pytest.skip("numpy not installed")
    FR, SFR = impls
    out = []
    for cls in impls:
        r = cls(2, 8, dtype="uint16")
        try:
            r.put(b"\x01\x00\x02\x00")  # 4 bytes: two uint16 would fit
            r.put(b"\x01\x00" * 4)
            part, full = r.get(), r.get()
            out.append((_view(part), _view(full)))
            assert (part.shape, part.dtype, memoryview(part).format) == ((4,), None, "B")
            assert full.shape == (4,) and str(full.dtype) == "uint16"
            part.release(), full.release()
        finally:
            getattr(r, "close", lambda: None)()
    assert out[0] == out[1]


@pytest.mark.parametrize("ts", [-1, -(2**63) + 1, -(2**63), 2**63, 1.5, True, "1"])
def test_bad_timestamps_refused_alike(impls, ts):
    """(b) Negative (and other invalid) timestamps are refused by both, with
    the same exception and message, and nothing is queued."""
    res = []
    for cls in impls:
        r = cls(2, 8)
        try:
            res.append((outcome(lambda: r.put(b"x", timestamp_ns=ts)),
                        outcome(lambda: r.put_nowait(b"x", timestamp_ns=ts)), r.stats()["puts"]))
        finally:
            getattr(r, "close", lambda: None)()
    assert res[0] == res[1]
    assert res[0][0][0] == "raise" and res[0][2] == 0


def test_reserve_refuses_negative_timestamp(impls):
    _, SFR = impls
    with SFR(2, 8) as r:
        slot = r.reserve()
        slot.timestamp_ns = -5
        with pytest.raises(ValueError, match=r"timestamp_ns must be in \[0, 2\*\*63 - 1\], got -5"):
            slot.commit()
        slot.timestamp_ns = 0
        assert slot.commit() == 0
        assert r.get().timestamp_ns == 0


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_refused_put_takes_no_seq(impls, policy):
    """(c) A put refused by a drop policy gets no seq (seqs number the
    frames queued); the frame it cost still shows in the next delivery's gap."""
    res = []
    for cls in impls:
        r = cls(2, 8, overflow=policy)
        try:
            held = []
            if policy == "drop_oldest":  # refuses only when every slot is held
                r.put(b"a"), r.put(b"b")
                held = [r.get(), r.get()]
            seqs = [r.put(bytes([i])) for i in range(4)]
            if policy == "drop_newest":
                held = r.get_many(5)
            for f in held:
                f.release()
            seqs.append(r.put(b"z"))
            frames = r.get_many(5)
            res.append((seqs, [(f.seq, f.gap, bytes(f)) for f in frames],
                        {k: r.stats()[k] for k in STATS_KEYS}))
            for f in frames:
                f.release()
        finally:
            getattr(r, "close", lambda: None)()
    assert res[0] == res[1]
    if policy == "drop_newest":
        assert res[0][0] == [0, 1, None, None, 2]
        assert res[0][1] == [(2, 2, b"z")]
    else:
        assert res[0][0] == [None, None, None, None, 2]
        assert res[0][1] == [(2, 4, b"z")]


@pytest.mark.parametrize("args", BAD_CONSTRUCTOR_ARGS, ids=repr)
def test_constructor_errors_agree(impls, args):
    FR, SFR = impls
    assert outcome(lambda: FR(*args)) == outcome(lambda: SFR(*args))


BAD_GEOMETRY_ARGS = _BAD_GEOMETRY_ARGS + [
    dict(frame_bytes=8, dtype=">u4" if sys.byteorder == "little" else "<u4"),
]


@pytest.mark.parametrize("kwargs", BAD_GEOMETRY_ARGS, ids=repr)
def test_geometry_errors_agree(impls, kwargs):
    if "dtype" in kwargs and np is None:
        pytest.skip("numpy not installed")
    FR, SFR = impls
    assert outcome(lambda: FR(2, **kwargs)) == outcome(lambda: SFR(2, **kwargs))
    assert outcome(lambda: FR(2, **kwargs))[0] == "raise"


@pytest.mark.parametrize("policy", POLICIES)
def test_argument_errors_agree(impls, policy):
    FR, SFR = impls
    c, s = FR(2, 16, policy), SFR(2, 16, policy)
    try:
        for bad in BAD_PUTS:
            assert outcome(lambda: c.put(bad)) == outcome(lambda: s.put(bad)), bad
            assert outcome(lambda: c.put_nowait(bad)) == outcome(lambda: s.put_nowait(bad)), bad
            assert outcome(lambda: c.put_many([b"ok", bad])) == outcome(lambda: s.put_many([b"ok", bad])), bad
        for t in (-1, float("nan"), "1", [], True, -math.inf):
            assert outcome(lambda: c.put(b"x", True, t)) == outcome(lambda: s.put(b"x", True, t)), t
            assert outcome(lambda: c.get(True, t)) == outcome(lambda: s.get(True, t)), t
            assert outcome(lambda: c.get_latest(True, t)) == outcome(lambda: s.get_latest(True, t)), t
            assert outcome(lambda: c.get_into(bytearray(4), True, t)) == outcome(
                lambda: s.get_into(bytearray(4), True, t)), t
            assert outcome(lambda: c.put_many([b"x"], True, t)) == outcome(lambda: s.put_many([b"x"], True, t)), t
        for m in (0, -1, 1.5, "2", None, True):
            assert outcome(lambda: c.get_many(m, False)) == outcome(lambda: s.get_many(m, False)), m
        c.put_nowait(b"0123456789")
        s.put_nowait(b"0123456789")
        for dst in (b"ro" * 8, memoryview(bytearray(16)).toreadonly(), "s", None,
                    memoryview(bytearray(32))[::2], bytearray(3), bytearray(0)):
            assert outcome(lambda: c.get_into(dst, False)) == outcome(lambda: s.get_into(dst, False)), dst
        assert {k: c.stats()[k] for k in STATS_KEYS} == {k: s.stats()[k] for k in STATS_KEYS}
        fc, fs = c.get(), s.get()
        assert outcome(lambda: memoryview(fc).cast("B")[0:1].tobytes()) == outcome(
            lambda: memoryview(fs).cast("B")[0:1].tobytes())
        fc.release()
        fs.release()
        assert outcome(lambda: bytes(fc)) == outcome(lambda: bytes(fs))
        assert outcome(lambda: memoryview(fc)) == outcome(lambda: memoryview(fs))
        assert _norm(repr(fc)) == _norm(repr(fs))
        for name in ("slots", "frame_bytes", "overflow", "is_shutdown", "shape", "dtype"):
            assert getattr(c, name) == getattr(s, name), name
        assert outcome(lambda: c.shutdown()) == outcome(lambda: s.shutdown())
        for op in (lambda r: r.put(b"x"), lambda r: r.put_nowait(b"x"), lambda r: r.put_many([b"x"]),
                   lambda r: r.put_many([]), lambda r: r.get(), lambda r: r.get_latest(),
                   lambda r: r.get_many(3), lambda r: r.get_into(bytearray(16))):
            assert outcome(lambda: op(c)) == outcome(lambda: op(s))
    finally:
        s.close()


def test_frame_surface_agrees(impls):
    FR, SFR = impls
    c, s = FR(1, 8), SFR(1, 8)
    try:
        c.put(b"x")
        s.put(b"x")
        fc, fs = c.get(), s.get()
        pub = [{n for n in dir(f) if not n.startswith("_")} for f in (fc, fs)]
        assert pub[0] <= pub[1], pub[0] - pub[1]
        ring_pub = [{n for n in dir(r) if not n.startswith("_")} for r in (c, s)]
        assert ring_pub[0] <= ring_pub[1], ring_pub[0] - ring_pub[1]
        assert outcome(lambda: pickle_dumps(fc))[:2] == outcome(lambda: pickle_dumps(fs))[:2]
        fc.release(), fs.release()
    finally:
        s.close()


def pickle_dumps(obj):
    import pickle

    return pickle.dumps(obj)
