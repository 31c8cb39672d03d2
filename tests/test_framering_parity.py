"""Differential tests: the compiled FrameRing and the pure twin must agree exactly.

The same random, single-threaded (non-blocking) operation sequence runs on
both; every return value, exception type and message, frame metadata and
content, stats() snapshot and repr must match. Skipped when
BUFMGR_NO_EXTENSIONS=1 (a failing import of the compiled class is an error).
"""

from __future__ import annotations

import array
import math
import random

import pytest

from framering_fixtures import (BAD_CONSTRUCTOR_ARGS, BAD_GEOMETRY_ARGS, BAD_PUTS, GEOMETRIES, POLICIES, load_impl,
                                outcome)
from framering_fixtures import producer_ts as _producer_ts


@pytest.fixture
def impls():
    return load_impl("c"), load_impl("python")


class Side:
    """One implementation's ring plus the frames it currently holds."""

    def __init__(self, cls, *args):
        self.ring = cls(*args)
        self.held = []

    def do(self, op, arg):
        r = self.ring
        if op == "put":
            return outcome(lambda: r.put(arg, False))
        if op == "put_block":
            return outcome(lambda: r.put(arg, True, 0))
        if op == "get":
            def get():
                f = r.get_nowait()
                self.held.append(f)
                return (f.seq, f.nbytes, bytes(f), repr(f))
            return outcome(get)
        if op == "get_timeout0":
            def get0():
                f = r.get(True, 0)
                self.held.append(f)
                return (f.seq, f.nbytes, bytes(f))
            return outcome(get0)
        if op == "release":
            if not self.held:
                return ("ok", None)
            f = self.held.pop(arg % len(self.held))
            f.release()
            return outcome(lambda: (repr(f), f.seq, f.nbytes, bytes(f)))
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
        return (r.stats(), repr(r), r.qsize(), len(r), r.empty(), r.full(), r.is_shutdown,
                [(f.seq, f.nbytes, bytes(f)) for f in self.held])


def step_both(c: Side, p: Side, step: int, op: str, arg: object) -> None:
    """One operation on both sides: the same result, the same state after."""
    rc, rp = c.do(op, arg), p.do(op, arg)
    assert rc == rp, f"step {step}: {op}({arg!r}): compiled {rc!r} != python {rp!r}"
    assert c.snapshot() == p.snapshot(), f"step {step} after {op}"


def finish_both(c: Side, p: Side) -> None:
    """Release what each side holds, shut both down at once: the same state."""
    for side in (c, p):
        for f in side.held:
            f.release()
        side.held.clear()
        side.ring.shutdown(True)
    assert c.snapshot() == p.snapshot()


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", range(4))
def test_random_operation_sequences_agree(impls, policy, seed):
    C, Py = impls
    rng = random.Random(seed * 7919 + len(policy))
    slots, fb = rng.choice([(1, 8), (3, 16), (5, 33)])
    c, p = Side(C, slots, fb, policy), Side(Py, slots, fb, policy)
    for step in range(600):
        x = rng.random()
        if x < 0.30:
            op, arg = "put", bytes(rng.randrange(256) for _ in range(rng.randrange(0, fb + 3)))
        elif x < 0.35:
            op, arg = "put_block", bytes(rng.randrange(0, fb + 1))
        elif x < 0.55:
            op, arg = "get", None
        elif x < 0.58:
            op, arg = "get_timeout0", None
        elif x < 0.75:
            op, arg = "release", rng.randrange(1000)
        elif x < 0.90:
            op, arg = "get_into", rng.randrange(0, fb + 2)
        elif x < 0.95:
            op, arg = "clear", None
        elif x < 0.953 and step > 300:
            op, arg = "shutdown", rng.random() < 0.5
        else:
            op, arg = "put", array.array("H", range(rng.randrange(0, fb // 2 + 2)))
        step_both(c, p, step, op, arg)
    finish_both(c, p)


@pytest.mark.parametrize("args", BAD_CONSTRUCTOR_ARGS, ids=repr)
def test_constructor_errors_agree(impls, args):
    C, Py = impls
    assert outcome(lambda: C(*args)) == outcome(lambda: Py(*args))


@pytest.mark.parametrize("policy", POLICIES)
def test_error_messages_agree(impls, policy):
    C, Py = impls
    c, p = C(2, 16, policy), Py(2, 16, policy)
    for bad in BAD_PUTS:
        assert outcome(lambda: c.put(bad)) == outcome(lambda: p.put(bad)), bad
        assert outcome(lambda: c.put_nowait(bad)) == outcome(lambda: p.put_nowait(bad)), bad
    for t in (-1, float("nan"), "1", [], True, -math.inf):
        assert outcome(lambda: c.put(b"x", True, t)) == outcome(lambda: p.put(b"x", True, t)), t
        assert outcome(lambda: c.get(True, t)) == outcome(lambda: p.get(True, t)), t
        assert outcome(lambda: c.get_into(bytearray(4), True, t)) == outcome(
            lambda: p.get_into(bytearray(4), True, t)), t
    c.put_nowait(b"0123456789")
    p.put_nowait(b"0123456789")
    for dst in (b"ro" * 8, memoryview(bytearray(16)).toreadonly(), "s", None,
                memoryview(bytearray(32))[::2], bytearray(3), bytearray(0)):
        assert outcome(lambda: c.get_into(dst, False)) == outcome(lambda: p.get_into(dst, False)), dst
    assert c.stats() == p.stats()
    fc, fp = c.get(), p.get()
    fc.release()
    fp.release()
    assert outcome(lambda: bytes(fc)) == outcome(lambda: bytes(fp))
    assert repr(fc) == repr(fp)
    for name in ("slots", "frame_bytes", "overflow", "is_shutdown"):
        assert getattr(c, name) == getattr(p, name)
    assert outcome(lambda: c.__reduce__()) == outcome(lambda: p.__reduce__())


def test_frame_type_surface_agrees(impls):
    import weakref

    C, Py = impls
    fc, fp = C(1, 8), Py(1, 8)
    fc.put(b"x")
    fp.put(b"x")
    frames = fc.get(), fp.get()
    types = [type(f) for f in frames]
    assert [t.__name__ for t in types] == ["Frame", "Frame"]
    # Frame() is refused; Frame.__new__(Frame) gives an unbound, "released" frame
    outs = []
    for t in types:
        unbound = t.__new__(t)
        outs.append((
            outcome(lambda: t()),
            repr(unbound),
            outcome(lambda: bytes(unbound)),
            outcome(unbound.release),
            outcome(lambda: weakref.ref(unbound) and None)[:2],  # message names the module
        ))
    assert outs[0] == outs[1]
    public = [{n for n in dir(t) if not n.startswith("_")} for t in types]
    assert public[0] == public[1] == {
        "seq", "timestamp_ns", "nbytes", "release", "gap", "metadata", "shape", "dtype",
    }
    for f in frames:
        f.release()


class CaptureSide(Side):
    """Side plus the capture operations (issue 14)."""

    def __init__(self, cls, *args, **kwargs):
        self.ring = cls(*args, **kwargs)
        self.held = []

    def do(self, op, arg):
        r = self.ring
        if op == "put_meta":
            data, ts, meta = arg
            return outcome(lambda: r.put(data, False, timestamp_ns=ts, metadata=meta))
        if op == "put_many":
            return outcome(lambda: r.put_many(arg, False))
        if op == "get_latest":
            def latest():
                f = r.get_latest(False)
                self.held.append(f)
                return (f.seq, f.gap, f.metadata, _producer_ts(f),
                        f.shape, str(f.dtype), bytes(f), repr(f))
            return outcome(latest)
        if op == "get_many":
            def many():
                fs = r.get_many(arg, False)
                self.held.extend(fs)
                return [(f.seq, f.gap, f.metadata, _producer_ts(f), f.shape, bytes(f)) for f in fs]
            return outcome(many)
        if op == "get":
            def get():
                f = r.get_nowait()
                self.held.append(f)
                return (f.seq, f.gap, f.metadata, _producer_ts(f), f.nbytes, f.shape, str(f.dtype),
                        bytes(f), repr(f))
            return outcome(get)
        return super().do(op, arg)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("geometry", range(len(GEOMETRIES)))
def test_random_capture_sequences_agree(impls, policy, geometry):
    kwargs = GEOMETRIES[geometry]
    if "dtype" in kwargs:
        pytest.importorskip("numpy")
    C, Py = impls
    rng = random.Random(geometry * 31 + len(policy))
    fb = 12
    c, p = CaptureSide(C, 3, **kwargs, overflow=policy), CaptureSide(Py, 3, **kwargs, overflow=policy)
    for step in range(500):
        x = rng.random()
        if x < 0.25:
            data = bytes(rng.randrange(256) for _ in range(rng.choice([fb, fb, rng.randrange(fb + 2)])))
            ts = rng.choice([None, rng.randrange(2**62, 2**63), -1, 1.5, 2**63])
            op, arg = "put_meta", (data, ts, rng.choice([None, step, ("exp", step)]))
        elif x < 0.35:
            op, arg = "put_many", [bytes([step % 256]) * rng.randrange(fb + 2) for _ in range(rng.randrange(4))]
        elif x < 0.5:
            op, arg = "get_latest", None
        elif x < 0.6:
            op, arg = "get_many", rng.choice([1, 2, 5, 0])
        elif x < 0.7:
            op, arg = "get", None
        elif x < 0.85:
            op, arg = "release", rng.randrange(1000)
        elif x < 0.9:
            op, arg = "get_into", rng.randrange(0, fb + 2)
        elif x < 0.95:
            op, arg = "clear", None
        elif x < 0.953 and step > 300:
            op, arg = "shutdown", rng.random() < 0.5
        else:
            op, arg = "put_block", bytes(rng.randrange(0, fb + 1))
        step_both(c, p, step, op, arg)
    finish_both(c, p)


@pytest.mark.parametrize("kwargs", BAD_GEOMETRY_ARGS, ids=repr)
def test_geometry_errors_agree(impls, kwargs):
    if "dtype" in kwargs:
        pytest.importorskip("numpy")
    C, Py = impls
    assert outcome(lambda: C(2, **kwargs)) == outcome(lambda: Py(2, **kwargs))
    assert outcome(lambda: C(2, **kwargs))[0] == "raise"
