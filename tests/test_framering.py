"""FrameRing / Frame semantics (issue #5), for the compiled class and the pure twin.

Deterministic, mostly single-threaded checks of the API contract in the
FrameRing spec: constructor and argument validation (errors change nothing),
put/get/get_into, Frame lifetime (release, context manager, GC, exported
buffers), overflow policies and their counters, sequence numbers, shutdown,
clear, pickling, numpy zero-copy and read-only memoryviews.

Stress, integrity, Ctrl+C, allocation and refcount tests are in
test_framering_stress.py; C-vs-Python differential tests in
test_framering_parity.py.
"""

from __future__ import annotations

import array
import copy
import gc
import math
import pickle
import sys
import time
import weakref

import pytest

from bufmgr._errors import Empty, Full, ShutDown
from framering_fixtures import (  # noqa: F401 - FrameRing is a fixture
    POLICIES,
    STATS_KEYS,
    Blocker,
    FrameRing,
    all_free,
    check_quiet,
    memoryview_supported,
    needs_numpy,
    np,
)

FB = 64  # default frame_bytes in these tests


def frames(ring, n):
    return [ring.get_nowait() for _ in range(n)]


# ---------------------------------------------------------------------------
# construction


@pytest.mark.parametrize("policy", POLICIES)
def test_construct_and_properties(FrameRing, policy):
    r = FrameRing(3, 100, policy)
    assert (r.slots, r.frame_bytes, r.overflow) == (3, 100, policy)
    assert not r.is_shutdown
    s = all_free(r)
    assert s == dict(puts=0, gets=0, dropped=0, cleared=0, underruns=0, high_water=0,
                     size=0, held=0, free=3, slots=3, frame_bytes=100)
    assert sorted(s) == sorted(STATS_KEYS)
    assert len(r) == 0 and r.qsize() == 0 and r.empty() and not r.full()


def test_default_overflow_is_drop_oldest(FrameRing):
    assert FrameRing(2, 8).overflow == "drop_oldest"
    assert FrameRing(slots=2, frame_bytes=8, overflow="block").overflow == "block"


def test_properties_are_read_only(FrameRing):
    r = FrameRing(2, 8)
    for name, value in [("slots", 5), ("frame_bytes", 5), ("overflow", "block"), ("is_shutdown", True)]:
        with pytest.raises(AttributeError):
            setattr(r, name, value)
    assert (r.slots, r.frame_bytes, r.overflow, r.is_shutdown) == (2, 8, "drop_oldest", False)


@pytest.mark.parametrize(
    "args, exc",
    [
        ((0, 8), ValueError),
        ((-1, 8), ValueError),
        ((2, 0), ValueError),
        ((2, -8), ValueError),
        ((2.0, 8), TypeError),
        ((2, 8.0), TypeError),
        (("2", 8), TypeError),
        ((None, 8), TypeError),
        ((2, None), TypeError),
        ((True, 8), TypeError),
        ((2, 8, "fifo"), ValueError),
        ((2, 8, None), ValueError),
        ((2, 8, "BLOCK"), ValueError),
        ((2**62, 2**62), ValueError),
        ((sys.maxsize, 2), ValueError),
        ((2, sys.maxsize), ValueError),
        ((2**64, 1), ValueError),
    ],
)
def test_constructor_rejects(FrameRing, args, exc):
    with pytest.raises(exc) as ei:
        FrameRing(*args)
    if args in ((2**62, 2**62), (sys.maxsize, 2), (2, sys.maxsize), (2**64, 1)):
        assert "slots * frame_bytes is too large" in str(ei.value)


def test_constructor_messages(FrameRing):
    with pytest.raises(TypeError, match="slots"):
        FrameRing("4", 8)
    with pytest.raises(ValueError, match="frame_bytes"):
        FrameRing(4, 0)
    with pytest.raises(ValueError, match="overflow"):
        FrameRing(4, 8, "nope")


def test_allocation_failure_is_memory_error(FrameRing):
    # 4 EiB: representable as Py_ssize_t, never allocatable.
    with pytest.raises(MemoryError):
        FrameRing(1, 2**62)


def test_int_subclass_sizes_accepted(FrameRing):
    class MyInt(int):
        pass

    r = FrameRing(MyInt(2), MyInt(16))
    assert (r.slots, r.frame_bytes) == (2, 16)
    assert type(r.slots) is int and type(r.stats()["slots"]) is int


# ---------------------------------------------------------------------------
# put / get basics


def test_put_get_roundtrip(FrameRing):
    r = FrameRing(4, FB)
    assert r.put(b"hello") == 0
    assert r.put(bytearray(b"world!")) == 1
    assert r.put_nowait(memoryview(b"x" * FB)) == 2
    check_quiet(r, puts=3, size=3, free=1, high_water=3)
    f0, f1, f2 = frames(r, 3)
    assert [f.seq for f in (f0, f1, f2)] == [0, 1, 2]
    assert [f.nbytes for f in (f0, f1, f2)] == [5, 6, FB]
    assert (bytes(f0), bytes(f1), bytes(f2)) == (b"hello", b"world!", b"x" * FB)
    check_quiet(r, gets=3, size=0, held=3, free=1)
    for f in (f0, f1, f2):
        f.release()
    all_free(r)


def test_put_accepts_any_contiguous_buffer(FrameRing):
    r = FrameRing(8, FB)
    a = array.array("i", [1, 2, 3])
    r.put(a)
    r.put(memoryview(bytes(range(16))).cast("B", (4, 4)))  # 2-D, C-contiguous
    r.put(b"")  # an empty frame is a frame
    r.put(memoryview(b"abcdef")[1:4])  # contiguous slice
    got = [bytes(f) for f in frames(r, 4)]
    assert got == [a.tobytes(), bytes(range(16)), b"", b"bcd"]
    gc.collect()
    all_free(r)


@needs_numpy
def test_put_numpy_arrays(FrameRing):
    r = FrameRing(4, FB)
    x = np.arange(12, dtype=np.uint32).reshape(3, 4)
    r.put(x)
    with pytest.raises(ValueError, match="C-contiguous"):
        r.put(np.asfortranarray(x))  # F-contiguous only
    with pytest.raises(ValueError, match="C-contiguous"):
        r.put(x[:, ::2])
    with r.get() as f:
        assert bytes(f) == x.tobytes()
    all_free(r)


def test_put_exactly_frame_bytes_and_too_large(FrameRing):
    r = FrameRing(2, 10)
    assert r.put(b"0123456789") == 0
    with pytest.raises(ValueError) as ei:
        r.put(b"0123456789A")
    assert str(ei.value) == "frame of 11 bytes does not fit frame_bytes=10"
    check_quiet(r, puts=1, size=1, dropped=0)


def test_fifo_order_and_timestamps(FrameRing):
    r = FrameRing(8, FB)
    before = time.monotonic_ns()
    seqs = [r.put(bytes([i]) * (i + 1)) for i in range(8)]
    after = time.monotonic_ns()
    assert seqs == list(range(8))
    fs = frames(r, 8)
    assert [f.seq for f in fs] == seqs
    stamps = [f.timestamp_ns for f in fs]
    assert stamps == sorted(stamps)
    # same clock as time.monotonic_ns() (CLOCK_MONOTONIC)
    assert before <= stamps[0] and stamps[-1] <= after
    assert [bytes(f) for f in fs] == [bytes([i]) * (i + 1) for i in range(8)]
    del fs
    all_free(r)


def test_get_empty_nowait_and_timeout(FrameRing):
    r = FrameRing(2, FB)
    with pytest.raises(Empty):
        r.get_nowait()
    with pytest.raises(Empty):
        r.get(False)
    with pytest.raises(Empty):
        r.get(timeout=0)
    t0 = time.monotonic()
    with pytest.raises(Empty):
        r.get(timeout=0.05)
    assert time.monotonic() - t0 >= 0.04
    with pytest.raises(Empty):
        r.get_into(bytearray(FB), timeout=0.01)
    with pytest.raises(Empty):
        r.get_into(bytearray(FB), False)
    all_free(r)


@pytest.mark.parametrize("timeout", [-1, -0.5, float("nan"), "1", [], True])
def test_bad_timeouts_change_nothing(FrameRing, timeout):
    r = FrameRing(2, FB, "block")
    r.put(b"abc")
    before = r.stats()
    exc = TypeError if isinstance(timeout, (str, list, bool)) else ValueError
    with pytest.raises(exc):
        r.put(b"x", timeout=timeout)
    with pytest.raises(exc):
        r.get(timeout=timeout)
    with pytest.raises(exc):
        r.get_into(bytearray(FB), timeout=timeout)
    assert r.stats() == before
    # block=False: the timeout is ignored (queue.Queue semantics)
    assert r.put(b"y", False, timeout) == 1
    with r.get(False, timeout) as f:
        assert bytes(f) == b"abc"
    assert r.get_into(bytearray(FB), False, timeout) == (1, 1)
    all_free(r)


def test_infinite_timeout_is_forever(FrameRing):
    r = FrameRing(2, FB)
    r.put(b"a")
    with r.get(timeout=math.inf) as f:
        assert bytes(f) == b"a"


# ---------------------------------------------------------------------------
# bad buffers change nothing (and leak no buffer export)


def test_bad_put_buffers_change_nothing(FrameRing):
    r = FrameRing(2, 4)
    r.put(b"ok")
    before = r.stats()
    for bad, exc in [
        ("text", TypeError),
        (12, TypeError),
        (None, TypeError),
        ([1, 2], TypeError),
        (memoryview(b"abcdef")[::2], ValueError),  # non-contiguous
        (b"12345", ValueError),  # too large
        (bytearray(5), ValueError),
    ]:
        with pytest.raises(exc) as ei:
            r.put(bad)
        with pytest.raises(exc):
            r.put_nowait(bad)
        if exc is ValueError and isinstance(bad, memoryview):
            assert str(ei.value) == "buffer must be C-contiguous"
        assert r.stats() == before
    with pytest.raises(TypeError) as ei:
        r.put(12)
    assert "bytes-like object is required" in str(ei.value)
    with r.get() as f:
        assert bytes(f) == b"ok"


def test_failed_put_releases_the_buffer_export(FrameRing):
    r = FrameRing(1, 4)
    big = bytearray(8)
    with pytest.raises(ValueError):
        r.put(big)
    big.append(1)  # BufferError here if the export leaked
    r.shutdown()
    src = bytearray(b"ab")
    with pytest.raises(ShutDown):
        r.put(src)
    src.append(1)


def test_validation_precedes_shutdown(FrameRing):
    r = FrameRing(2, 4)
    r.shutdown()
    with pytest.raises(TypeError):
        r.put("nope")
    with pytest.raises(ValueError):
        r.put(b"too large")
    with pytest.raises(ValueError):
        r.put(b"x", timeout=-1)
    with pytest.raises(ShutDown):
        r.put(b"x")
    with pytest.raises(TypeError):
        r.get_into(b"read-only")


def test_get_into(FrameRing):
    r = FrameRing(4, 16)
    r.put(b"abc")
    r.put(b"0123456789")
    buf = bytearray(16)
    assert r.get_into(buf) == (3, 0)
    assert buf[:3] == b"abc"
    check_quiet(r, gets=1, size=1, held=0, free=3)
    mv = memoryview(bytearray(20))[5:15]  # writable contiguous slice
    assert r.get_into(mv) == (10, 1)
    assert bytes(mv) == b"0123456789"
    all_free(r)


def test_get_into_typed_destination(FrameRing):
    r = FrameRing(2, 16)
    r.put(bytes(range(16)))
    dst = array.array("I", [0] * 4)  # 16 bytes of uint32
    assert r.get_into(dst) == (16, 0)
    assert dst.tobytes() == bytes(range(16))


def test_get_into_too_small_changes_nothing(FrameRing):
    r = FrameRing(2, 16)
    r.put(b"0123456789")
    before = r.stats()
    small = bytearray(4)
    with pytest.raises(ValueError) as ei:
        r.get_into(small)
    assert str(ei.value) == "frame of 10 bytes does not fit a buffer of 4 bytes"
    with pytest.raises(ValueError):
        r.get_into(small, False)
    assert r.stats() == before
    small.append(0)  # no leaked export
    assert small == bytearray(5)
    assert r.get_into(bytearray(10)) == (10, 0)  # exact size fits
    all_free(r)


def test_get_into_bad_buffers(FrameRing):
    r = FrameRing(2, 16)
    r.put(b"abc")
    before = r.stats()
    for bad, exc in [
        (b"read-only bytes", TypeError),
        (memoryview(bytearray(16)).toreadonly(), TypeError),
        ("str", TypeError),
        (None, TypeError),
        (memoryview(bytearray(32))[::2], ValueError),
    ]:
        with pytest.raises(exc):
            r.get_into(bad)
        with pytest.raises(exc):
            r.get_into(bad, False)
        assert r.stats() == before
    with pytest.raises(TypeError, match="writable"):
        r.get_into(b"0123456789abcdef")
    with pytest.raises(ValueError, match="C-contiguous"):
        r.get_into(memoryview(bytearray(32))[::2])
    assert r.get_into(bytearray(3)) == (3, 0)


def test_empty_strided_buffers_are_contiguous(FrameRing):
    """Issue 11.6: an empty view is C-contiguous whatever its strides
    (PyBuffer_IsContiguous, numpy); both implementations accept it as a
    zero-length frame (put) or a zero-byte destination (get_into)."""
    r = FrameRing(2, 8)
    seq = r.put(memoryview(b"")[::2])
    assert seq == 0
    assert r.put_nowait(memoryview(b"")[::3]) == 1
    assert r.get_into(memoryview(bytearray(0))[::2]) == (0, 0)
    with r.get_nowait() as f:
        assert f.nbytes == 0 and bytes(f) == b"" and f.seq == 1
    # a non-empty strided view is still refused, an empty read-only one as a target too
    with pytest.raises(ValueError, match="C-contiguous"):
        r.put(memoryview(b"abc")[::2])
    with pytest.raises(TypeError, match="writable"):
        r.get_into(memoryview(b"")[::2])
    r.put(b"xy")
    with pytest.raises(ValueError, match="does not fit"):
        r.get_into(memoryview(bytearray(0))[::2])  # the frame is larger: nothing changes
    assert r.get_into(bytearray(2)) == (2, 2)
    check_quiet(r, size=0, held=0)


@needs_numpy
def test_get_into_numpy(FrameRing):
    r = FrameRing(2, 64)
    x = np.arange(16, dtype=np.float32)
    r.put(x)
    out = np.zeros(16, dtype=np.float32)
    assert r.get_into(out) == (64, 0)
    assert np.array_equal(out, x)
    r.put(x)
    ro = np.zeros(16, dtype=np.float32)
    ro.flags.writeable = False
    with pytest.raises(TypeError):
        r.get_into(ro)
    with pytest.raises(ValueError):
        r.get_into(np.zeros((16, 2), dtype=np.float32)[:, 0])  # strided
    check_quiet(r, size=1)


# ---------------------------------------------------------------------------
# Frame lifetime


def test_frame_release_idempotent_and_use_after_release(FrameRing):
    r = FrameRing(2, FB)
    r.put(b"payload")
    f = r.get()
    assert repr(f) == f"<bufmgr.Frame seq=0 nbytes=7 released=False>"
    f.release()
    f.release()  # idempotent
    all_free(r)
    assert repr(f) == f"<bufmgr.Frame seq=0 nbytes=7 released=True>"
    # metadata stays readable
    assert (f.seq, f.nbytes) == (0, 7) and f.timestamp_ns > 0
    # data access raises
    with pytest.raises(ValueError, match="frame was released"):
        bytes(f)
    if memoryview_supported(FrameRing):
        with pytest.raises(ValueError, match="frame was released"):
            memoryview(f)
    if np is not None:
        with pytest.raises(ValueError, match="frame was released"):
            np.asarray(f)
    all_free(r)


def test_frame_context_manager(FrameRing):
    r = FrameRing(2, FB)
    r.put(b"abc")
    f = r.get()
    with f as g:
        assert g is f
        assert bytes(g) == b"abc"
        check_quiet(r, held=1)
    all_free(r)
    with pytest.raises(ValueError):
        bytes(f)
    r.put(b"def")
    with pytest.raises(RuntimeError):
        with r.get():
            raise RuntimeError("boom")
    all_free(r)


def test_frame_released_on_gc(FrameRing):
    r = FrameRing(2, FB)
    r.put(b"a")
    r.put(b"b")
    f = r.get()
    check_quiet(r, held=1)
    del f
    gc.collect()
    check_quiet(r, held=0, free=1, size=1)
    bytes(r.get())  # temporary frame: released at once
    gc.collect()
    all_free(r)


def test_frame_outlives_ring(FrameRing):
    r = FrameRing(2, FB)
    r.put(b"survivor")
    f = r.get()
    del r
    gc.collect()
    assert bytes(f) == b"survivor"
    f.release()


def test_ring_with_queued_frames_is_collected(FrameRing):
    r = FrameRing(4, FB)
    for i in range(3):
        r.put(bytes([i]))
    try:
        ref = weakref.ref(r)
    except TypeError:
        pytest.skip("FrameRing does not support weak references")
    del r
    gc.collect()
    assert ref() is None


def test_frame_keeps_ring_alive_until_released(FrameRing):
    r = FrameRing(2, FB)
    try:
        ref = weakref.ref(r)
    except TypeError:
        pytest.skip("FrameRing does not support weak references")
    r.put(b"x")
    f = r.get()
    del r
    gc.collect()
    assert ref() is not None
    del f
    gc.collect()
    assert ref() is None


def test_frame_repr_and_pickle(FrameRing):
    r = FrameRing(2, FB)
    r.put(b"xyz")
    f = r.get()
    assert repr(f) == "<bufmgr.Frame seq=0 nbytes=3 released=False>"
    assert type(f).__name__ == "Frame"
    with pytest.raises(TypeError):
        pickle.dumps(f)
    with pytest.raises(TypeError):
        copy.copy(f)
    f.release()


def test_frame_is_read_only_memoryview(FrameRing):
    r = FrameRing(2, FB)
    r.put(b"abcdef")
    f = r.get()
    if not memoryview_supported(FrameRing):
        # the pure twin before Python 3.12 has no buffer protocol (PEP 688)
        with pytest.raises(TypeError):
            memoryview(f)
        f.release()
        return
    m = memoryview(f)
    assert m.readonly
    assert (m.nbytes, m.format, m.ndim, m.shape) == (6, "B", 1, (6,))
    assert bytes(m) == b"abcdef"
    with pytest.raises(TypeError):
        m[0] = 0
    # the export keeps the slot after release()
    f.release()
    check_quiet(r, held=1)
    assert bytes(m) == b"abcdef"  # still valid: the slot is held by the view
    with pytest.raises(ValueError):
        memoryview(f)
    m.release()
    all_free(r)


def test_exported_view_outlives_frame_object(FrameRing):
    if not memoryview_supported(FrameRing):
        pytest.skip("pure twin: memoryview(frame) needs Python 3.12+ (PEP 688)")
    r = FrameRing(2, FB)
    r.put(b"keep me")
    f = r.get()
    m1, m2 = memoryview(f), memoryview(f)
    del f
    gc.collect()
    check_quiet(r, held=1)
    r.put(b"other")
    r.put(b"other2")  # drop_oldest may evict queued frames, never the held one
    assert bytes(m1) == bytes(m2) == b"keep me"
    m1.release()
    check_quiet(r, held=1)
    m2.release()
    check_quiet(r, held=0)


@needs_numpy
def test_numpy_asarray_zero_copy(FrameRing):
    r = FrameRing(2, FB)
    payload = bytes(range(40))
    r.put(payload)
    f = r.get()
    a = np.asarray(f)
    b = np.asarray(f)
    assert a.dtype == np.uint8 and a.shape == (40,)
    assert bytes(a) == payload
    assert np.shares_memory(a, b)
    assert a.ctypes.data == b.ctypes.data  # a copy would live elsewhere
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0] = 1
    if hasattr(f, "__array_interface__"):
        assert f.__array_interface__["data"][0] == a.ctypes.data
    # arrays keep the slot alive after release(); data stays valid
    f.release()
    check_quiet(r, held=1)
    r.put(b"z" * FB)
    r.put(b"y" * FB)
    assert bytes(a) == payload
    del a, b
    gc.collect()
    del f
    gc.collect()
    check_quiet(r, held=0)


@needs_numpy
def test_numpy_view_reshaped(FrameRing):
    r = FrameRing(2, 64)
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    r.put(img)
    with r.get() as f:
        a = np.asarray(f).reshape(8, 8)
        assert np.array_equal(a, img)
        del a


def test_concurrent_release_frees_exactly_once(FrameRing, live):
    import threading

    r = FrameRing(2, FB)
    r.put(b"x")
    f = r.get()
    barrier = threading.Barrier(8)

    def rel():
        barrier.wait(30)
        f.release()

    ws = [live.start(rel) for _ in range(8)]
    for w in ws:
        w.value()
    all_free(r)
    r.put(b"a")
    r.put(b"b")
    check_quiet(r, free=0, size=2)


# ---------------------------------------------------------------------------
# overflow policies


def test_drop_oldest_evicts_oldest_queued_never_held(FrameRing):
    r = FrameRing(3, FB, "drop_oldest")
    for i in range(3):
        r.put(b"frame%d" % i)
    held = r.get()  # seq 0 held
    assert r.put(b"frame3") == 3  # slot free from... none: evicts seq 1 (oldest queued)
    check_quiet(r, dropped=1, held=1, size=2, free=0)
    assert r.put(b"frame4") == 4  # evicts seq 2
    assert bytes(held) == b"frame0" and held.seq == 0
    fs = frames(r, 2)
    assert [f.seq for f in fs] == [3, 4]  # gap: 1 and 2 were dropped
    assert [bytes(f) for f in fs] == [b"frame3", b"frame4"]
    check_quiet(r, puts=5, gets=3, dropped=2, underruns=0, held=3, free=0)
    # every slot held: the put is refused and counted as an underrun
    assert r.put(b"frame5") is None
    check_quiet(r, puts=6, dropped=3, underruns=1, size=0)
    assert bytes(held) == b"frame0"
    held.release()
    assert r.put(b"frame5") == 5  # refused frames take no sequence number
    del fs
    gc.collect()
    check_quiet(r, puts=7, gets=3, dropped=3, size=1, held=0)


def test_drop_oldest_seq_gaps(FrameRing):
    r = FrameRing(2, FB, "drop_oldest")
    assert [r.put(bytes([i])) for i in range(6)] == list(range(6))
    seqs = []
    for _ in range(2):
        with r.get() as f:
            seqs.append(f.seq)
            assert bytes(f) == bytes([f.seq])
    assert seqs == [4, 5]
    check_quiet(r, puts=6, gets=2, dropped=4, high_water=2)


def test_drop_newest_refuses(FrameRing):
    r = FrameRing(2, FB, "drop_newest")
    assert r.put(b"a") == 0
    assert r.put(b"b") == 1
    assert r.put(b"c") is None
    assert r.put_nowait(b"d") is None
    check_quiet(r, puts=4, dropped=2, underruns=0, size=2)  # queued frames exist: no underrun
    fa, fb = frames(r, 2)
    assert (bytes(fa), bytes(fb)) == (b"a", b"b")
    assert r.put(b"e") is None  # every slot held
    check_quiet(r, puts=5, dropped=3, underruns=1, held=2, free=0)
    fa.release()
    assert r.put(b"f") == 2  # seqs stay contiguous: refused frames got none
    with r.get() as f:
        assert (f.seq, bytes(f)) == (2, b"f")
    fb.release()
    all_free(r)


def test_block_policy_nowait_and_timeout(FrameRing):
    r = FrameRing(2, FB, "block")
    r.put(b"a")
    r.put(b"b")
    with pytest.raises(Full):
        r.put_nowait(b"c")
    with pytest.raises(Full):
        r.put(b"c", False)
    check_quiet(r, puts=2, dropped=0, underruns=0)  # Full is neither a put nor an underrun
    t0 = time.monotonic()
    with pytest.raises(Full):
        r.put(b"c", timeout=0.05)
    assert time.monotonic() - t0 >= 0.04
    check_quiet(r, puts=2, dropped=0, underruns=0, size=2)  # slots were queued, not held
    fs = frames(r, 2)
    with pytest.raises(Full):
        r.put(b"c", timeout=0.01)
    check_quiet(r, underruns=1, held=2)  # every slot held when it started waiting
    with pytest.raises(Full):
        r.put(b"c", timeout=0)
    del fs
    gc.collect()
    assert r.put(b"c", timeout=0) == 2
    check_quiet(r, puts=3, gets=2, dropped=0, size=1)


def test_block_put_waits_for_release_not_for_get(FrameRing):
    r = FrameRing(1, FB, "block")
    r.put(b"first")
    f = r.get()  # the only slot is now held
    b = Blocker(lambda: r.put(b"second")).start()
    b.wait_blocked()
    assert not b.done.is_set()
    check_quiet(r, underruns=1, held=1, free=0, size=0)
    assert bytes(f) == b"first"
    f.release()
    assert b.value() == 1
    with r.get() as g:
        assert bytes(g) == b"second"
    all_free(r)


def test_block_put_woken_by_clear(FrameRing):
    r = FrameRing(1, FB, "block")
    r.put(b"first")
    b = Blocker(lambda: r.put(b"second")).start()
    b.wait_blocked()
    assert r.clear() == 1  # frees the queued slot: the blocked put takes it
    assert b.value() == 1
    with r.get() as g:
        assert (g.seq, bytes(g)) == (1, b"second")
    check_quiet(r, cleared=1, puts=2, gets=1)


def test_blocked_get_woken_by_put(FrameRing):
    r = FrameRing(2, FB)
    b = Blocker(r.get).start()
    b.wait_blocked()
    r.put(b"wake")
    f = b.value()
    assert bytes(f) == b"wake"
    f.release()
    out = bytearray(FB)
    b = Blocker(lambda: r.get_into(out)).start()
    b.wait_blocked()
    r.put(b"wake2")
    assert b.value() == (5, 1)
    assert out[:5] == b"wake2"
    all_free(r)


# ---------------------------------------------------------------------------
# shutdown / clear


@pytest.mark.parametrize("policy", POLICIES)
def test_shutdown_graceful_drains(FrameRing, policy):
    r = FrameRing(4, FB, policy)
    for i in range(3):
        r.put(bytes([i]))
    held = r.get()
    r.shutdown()
    assert r.is_shutdown
    assert "shutdown" in repr(r)
    with pytest.raises(ShutDown):
        r.put(b"x")
    with pytest.raises(ShutDown):
        r.put_nowait(b"x")
    with r.get() as f:
        assert f.seq == 1
    assert r.get_into(bytearray(FB)) == (1, 2)
    with pytest.raises(ShutDown):
        r.get()
    with pytest.raises(ShutDown):
        r.get_nowait()
    with pytest.raises(ShutDown):
        r.get_into(bytearray(FB))
    assert bytes(held) == b"\x00"  # held frames stay valid
    held.release()
    all_free(r)
    check_quiet(r, puts=3, gets=3, cleared=0)


@pytest.mark.parametrize("policy", POLICIES)
def test_shutdown_immediate(FrameRing, policy):
    r = FrameRing(4, FB, policy)
    for i in range(4):
        r.put(bytes([i]) * 3)
    h1, h2 = frames(r, 2)
    r.shutdown(immediate=True)
    s = check_quiet(r, size=0, held=2, free=2, cleared=2, puts=4, gets=2)
    with pytest.raises(ShutDown):
        r.get_nowait()
    with pytest.raises(ShutDown):
        r.put(b"x")
    assert (bytes(h1), bytes(h2)) == (b"\x00" * 3, b"\x01" * 3)
    h1.release()
    del h2
    gc.collect()
    all_free(r)
    r.shutdown()  # a later graceful shutdown changes nothing
    r.shutdown(True)
    assert r.stats()["cleared"] == s["cleared"]


def test_immediate_after_graceful_empties(FrameRing):
    r = FrameRing(4, FB)
    r.put(b"a")
    r.put(b"b")
    r.shutdown()
    check_quiet(r, size=2)
    r.shutdown(immediate=True)
    check_quiet(r, size=0, cleared=2)
    with pytest.raises(ShutDown):
        r.get_nowait()


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_wakes_blocked_get(FrameRing, immediate):
    r = FrameRing(2, FB)
    getters = [Blocker(r.get).start(), Blocker(lambda: r.get_into(bytearray(FB))).start()]
    for b in getters:
        b.wait_blocked()
    r.shutdown(immediate)
    for b in getters:
        b.raised(ShutDown)
    all_free(r)


@pytest.mark.parametrize("immediate", [False, True])
def test_shutdown_wakes_blocked_put(FrameRing, immediate):
    r = FrameRing(1, FB, "block")
    r.put(b"a")
    f = r.get()
    b = Blocker(lambda: r.put(b"b")).start()
    b.wait_blocked()
    r.shutdown(immediate)
    b.raised(ShutDown)
    f.release()
    all_free(r)
    check_quiet(r, puts=1, gets=1)


def test_clear(FrameRing):
    r = FrameRing(4, FB)
    for i in range(4):
        r.put(bytes([i]))
    f = r.get()
    assert r.clear() == 3
    check_quiet(r, cleared=3, size=0, held=1, free=3)
    assert r.clear() == 0
    assert bytes(f) == b"\x00"
    assert r.put(b"next") == 4
    f.release()
    check_quiet(r, puts=5, gets=1, cleared=3, size=1)


# ---------------------------------------------------------------------------
# misc


def test_repr(FrameRing):
    r = FrameRing(3, 16, "drop_newest")
    assert repr(r) == "<bufmgr.FrameRing slots=3 frame_bytes=16 overflow='drop_newest' size=0 held=0 dropped=0>"
    r.put(b"a")
    r.put(b"b")
    f = r.get()
    r.shutdown()
    assert repr(r) == (
        "<bufmgr.FrameRing slots=3 frame_bytes=16 overflow='drop_newest' size=1 held=1 dropped=0 shutdown>"
    )
    f.release()


def test_ring_cannot_be_pickled_or_copied(FrameRing):
    r = FrameRing(2, 8)
    with pytest.raises(TypeError, match="cannot pickle 'FrameRing' object"):
        pickle.dumps(r)
    with pytest.raises(TypeError):
        copy.copy(r)
    with pytest.raises(TypeError):
        copy.deepcopy(r)


def test_high_water(FrameRing):
    r = FrameRing(4, 8)
    for _ in range(3):
        r.put(b"x")
    for _ in range(3):
        r.get().release()
    r.put(b"y")
    check_quiet(r, high_water=3, size=1)


def test_full_means_no_free_slot(FrameRing):
    r = FrameRing(2, 8, "drop_newest")
    r.put(b"a")
    assert not r.full()
    f = r.get()
    r.put(b"b")
    assert r.full() and r.qsize() == 1  # one held + one queued
    f.release()
    assert not r.full()


def test_pure_twin_reentrant_release_from_finalizer():
    """Pure twin: a Frame collected by the GC while the same thread holds the
    ring's lock (stats() allocates a dict) must not deadlock or corrupt state."""
    from bufmgr._pyframering import FrameRing as PyRing

    r = PyRing(4, 8)
    for _ in range(4):
        r.put(b"x")

    class Cycle:
        pass

    for _ in range(4):
        c = Cycle()
        c.self = c
        c.frame = r.get()  # only the cycle references it
        del c
    # Force the finalizers to run *inside* a locked section.
    with r._mutex:
        gc.collect()  # Frame.__del__ runs here, re-entrantly
        assert len(r._pending) == 4
    all_free(r)
    assert sorted(r._free) == [0, 1, 2, 3]


# ---------------------------------------------------------------------------
# capture features (issue 14): shape/dtype, producer timestamps and metadata,
# gaps, get_latest / get_many / put_many


@needs_numpy
def test_shape_dtype_derive_frame_bytes_and_frames_are_images(FrameRing):
    r = FrameRing(3, shape=(4, 5, 3), dtype="uint16")
    assert r.frame_bytes == 4 * 5 * 3 * 2
    assert r.shape == (4, 5, 3) and r.dtype == np.dtype("uint16")
    img = np.arange(60, dtype=np.uint16).reshape(4, 5, 3)
    r.put(img)
    with r.get() as f:
        a = np.asarray(f)
        assert a.shape == (4, 5, 3) and a.dtype == np.uint16
        assert f.shape == (4, 5, 3) and f.dtype == np.dtype("uint16")
        assert not a.flags.writeable
        assert np.array_equal(a, img)
        a2 = np.asarray(f)
        assert np.shares_memory(a, a2)  # zero-copy: both views of the slot
        if memoryview_supported(FrameRing):
            with memoryview(f) as m:
                assert (m.format, m.shape, m.itemsize, m.readonly) == ("H", (4, 5, 3), 2, True)
                assert m.tobytes() == img.tobytes()
        del a, a2
    check_quiet(r)


@needs_numpy
def test_shape_without_dtype_is_uint8_and_dtype_without_shape_is_1d(FrameRing):
    r = FrameRing(2, shape=(2, 3))
    assert (r.frame_bytes, r.shape, r.dtype) == (6, (2, 3), None)
    r.put(bytes(range(6)))
    with r.get() as f:
        a = np.asarray(f)
        assert (a.shape, a.dtype, f.shape, f.dtype) == ((2, 3), np.uint8, (2, 3), None)
        assert a.tolist() == [[0, 1, 2], [3, 4, 5]]
        del a
    r = FrameRing(2, 16, dtype=np.float32)
    assert (r.frame_bytes, r.shape, r.dtype) == (16, None, np.dtype(np.float32))
    r.put(np.array([1.5, 2, 3, 4], np.float32))
    with r.get() as f:
        a = np.asarray(f)
        assert (a.shape, a.dtype) == ((4,), np.float32) and a.tolist() == [1.5, 2, 3, 4]
        assert (f.shape, f.dtype) == ((4,), np.dtype(np.float32))
        del a


@needs_numpy
def test_partial_frame_of_a_shaped_ring_stays_flat_bytes(FrameRing):
    r = FrameRing(2, shape=(2, 2), dtype="uint16")
    r.put(b"\x01\x00\x02\x00")  # 4 of 8 bytes
    with r.get() as f:
        a = np.asarray(f)
        assert (a.shape, a.dtype) == ((4,), np.uint8)
        assert (f.shape, f.dtype, f.nbytes) == ((4,), None, 4)
        del a


def test_shape_alone_needs_no_numpy(FrameRing):
    r = FrameRing(2, shape=(3, 4))
    assert (r.frame_bytes, r.shape, r.dtype) == (12, (3, 4), None)
    r.put(bytes(12))
    with r.get() as f:
        assert (f.shape, f.dtype, bytes(f)) == ((3, 4), None, bytes(12))
        if memoryview_supported(FrameRing):
            with memoryview(f) as m:
                assert (m.format, m.shape) == ("B", (3, 4))
    assert FrameRing(2, 12).shape is None and FrameRing(2, 12).dtype is None


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(), TypeError, "frame_bytes"),
        (dict(frame_bytes=None), TypeError, "frame_bytes"),
        (dict(shape=(2, 3), frame_bytes=7), ValueError, "frame_bytes"),
        (dict(shape=(2, 0)), ValueError, "shape"),
        (dict(shape=(2, -1)), ValueError, "shape"),
        (dict(shape=()), TypeError, "shape"),
        (dict(shape="23"), TypeError, "shape"),
        (dict(shape=(2, 3.0)), TypeError, "shape"),
        (dict(shape=(True, 2)), TypeError, "shape"),
        (dict(shape=(1,) * 9), TypeError, "shape"),
        (dict(shape=(2**40, 2**40)), ValueError, "too large"),
    ],
    ids=repr,
)
def test_shape_errors_name_the_argument(FrameRing, kwargs, exc, words):
    assert FrameRing(2, shape=(2, 3)).frame_bytes == 6  # shape= is understood at all
    with pytest.raises(exc, match=words):
        FrameRing(2, **kwargs)


@needs_numpy
@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(shape=(2, 3), dtype="uint16", frame_bytes=6), ValueError, "frame_bytes"),
        (dict(frame_bytes=7, dtype="uint16"), ValueError, "frame_bytes"),
        (dict(frame_bytes=8, dtype="not-a-dtype"), TypeError, "dtype"),
        (dict(frame_bytes=8, dtype=object), ValueError, "dtype"),
        (dict(frame_bytes=8, dtype=">u4" if sys.byteorder == "little" else "<u4"), ValueError, "dtype"),
        (dict(frame_bytes=16, dtype="datetime64[s]"), ValueError, "dtype"),
        (dict(frame_bytes=8, dtype=[("a", "u4"), ("b", "u4")]), ValueError, "dtype"),
    ],
    ids=repr,
)
def test_dtype_errors_name_the_argument(FrameRing, kwargs, exc, words):
    assert FrameRing(2, 8, dtype="uint16").dtype == np.dtype("uint16")  # dtype= is understood
    with pytest.raises(exc, match=words):
        FrameRing(2, **kwargs)


@needs_numpy
def test_complex_dtypes_work_where_memoryview_casts_them(FrameRing):
    """A dtype is accepted when memoryview.cast() takes its format, so that
    both implementations export the same views: complex ('Zf') from CPython
    3.15 on, refused (naming dtype) before."""
    try:
        memoryview(bytearray(8)).cast("Zf")
    except (TypeError, ValueError):
        with pytest.raises(ValueError, match="dtype"):
            FrameRing(2, 16, dtype="complex64")
        return
    r = FrameRing(2, 16, dtype="complex64")
    data = np.array([1 + 2j, 3 - 4j], dtype="complex64")
    r.put(data.tobytes())
    with r.get() as f:
        got = np.asarray(f)
        assert got.dtype == np.dtype("complex64") and (got == data).all()


def test_frame_bytes_given_consistent_with_shape_is_accepted(FrameRing):
    r = FrameRing(2, 6, "block", shape=(2, 3))
    assert (r.frame_bytes, r.overflow, r.shape) == (6, "block", (2, 3))


def test_put_timestamp_ns_is_the_frames(FrameRing):
    r = FrameRing(4, FB)
    before = time.monotonic_ns()
    r.put(b"a")
    r.put(b"b", timestamp_ns=1_234_567_890_123)
    r.put_nowait(b"c", timestamp_ns=0)
    r.put(b"d", True, None, timestamp_ns=2**63 - 1)
    f0, f1, f2, f3 = frames(r, 4)
    assert before <= f0.timestamp_ns <= time.monotonic_ns()  # as before: monotonic at put
    assert (f1.timestamp_ns, f2.timestamp_ns, f3.timestamp_ns) == (1_234_567_890_123, 0, 2**63 - 1)
    for f in (f0, f1, f2, f3):
        f.release()
    assert f1.timestamp_ns == 1_234_567_890_123  # readable after release
    all_free(r)


@pytest.mark.parametrize(
    "ts, exc", [(-1, ValueError), (2**63, ValueError), (1.5, TypeError), (True, TypeError),
                ("1", TypeError), (10**30, ValueError)],
    ids=repr,
)
def test_bad_timestamp_changes_nothing(FrameRing, ts, exc):
    probe = FrameRing(1, FB)
    probe.put(b"p", timestamp_ns=5)  # timestamp_ns= is understood at all
    assert probe.get().timestamp_ns == 5
    r = FrameRing(2, FB)
    with pytest.raises(exc, match="timestamp_ns"):
        r.put(b"x", timestamp_ns=ts)
    with pytest.raises(exc, match="timestamp_ns"):
        r.put_nowait(b"x", timestamp_ns=ts)
    all_free(r)
    assert r.stats()["puts"] == 0


def test_metadata_travels_with_the_frame_and_is_released_with_its_slot(FrameRing):
    class Meta:
        pass

    r = FrameRing(2, FB, "drop_oldest")
    m0, m1, m2 = Meta(), Meta(), Meta()
    refs = [weakref.ref(m) for m in (m0, m1, m2)]
    r.put(b"0", metadata=m0)
    r.put_nowait(b"1", metadata=m1)
    del m0, m1
    gc.collect()
    assert all(ref() is not None for ref in refs[:2])  # the ring keeps them
    r.put(b"2", metadata=m2)  # evicts frame 0: its metadata goes with it
    del m2
    gc.collect()
    assert refs[0]() is None
    f1 = r.get()
    assert f1.metadata is refs[1]() and bytes(f1) == b"1"
    f1.release()
    assert f1.metadata is refs[1]()  # kept with the frame, readable after release
    del f1
    gc.collect()
    assert refs[1]() is None
    r.clear()  # frame 2 cleared: its metadata released
    gc.collect()
    assert refs[2]() is None
    r.put(b"none")
    with r.get() as f:
        assert f.metadata is None
    all_free(r)


def test_metadata_released_by_get_into_get_latest_and_shutdown(FrameRing):
    class Meta:
        pass

    r = FrameRing(4, FB)
    ms = [Meta() for _ in range(6)]
    refs = [weakref.ref(m) for m in ms]
    r.put(b"a", metadata=ms[0])
    assert r.get_into(bytearray(FB)) == (1, 0)
    for i in (1, 2, 3):
        r.put(b"x", metadata=ms[i])
    with r.get_latest() as f:
        assert f.metadata is ms[3]
    r.put(b"y", metadata=ms[4])
    r.put(b"z", metadata=ms[5])
    r.shutdown(immediate=True)
    del ms, f
    gc.collect()
    assert [ref() for ref in refs] == [None] * 6
    check_quiet(r, size=0, held=0)


def test_metadata_with_a_finalizer_that_uses_the_ring(FrameRing):
    """Invariant 1: a metadata object's __del__ runs with the ring unlocked,
    so it may call back into the ring from any freeing path."""
    r = FrameRing(3, FB, "drop_oldest")
    seen = []

    class Meta:
        def __del__(self):
            seen.append(r.stats()["puts"])  # takes the ring's lock

    for _ in range(5):  # two evictions
        r.put(b"x", metadata=Meta())
    assert r.get_into(bytearray(FB)) == (1, 2)
    with r.get_latest():  # drops one
        pass
    r.put(b"y", metadata=Meta())
    r.clear()
    r.put(b"y", metadata=Meta())
    r.shutdown(True)
    gc.collect()
    assert len(seen) == 7


def test_gap_counts_frames_lost_between_deliveries(FrameRing):
    r = FrameRing(3, FB, "drop_oldest")
    for i in range(3):
        r.put(bytes([i]))
    f = r.get()
    assert (f.seq, f.gap) == (0, 0)
    f.release()
    for i in range(3, 6):  # 3 slots: evicts 1 and 2
        r.put(bytes([i]))
    f = r.get()
    assert (f.seq, f.gap) == (3, 2)
    f.release()
    assert r.get_into(bytearray(FB)) == (1, 4)  # a delivery too: no gap for 5
    f = r.get()
    assert (f.seq, f.gap) == (5, 0)
    f.release()
    r.put(b"c1")
    r.put(b"c2")
    r.clear()  # cleared frames are missed frames
    r.put(b"after")
    with r.get() as f:
        assert (f.seq, f.gap, repr(f)) == (8, 2, "<bufmgr.Frame seq=8 nbytes=5 gap=2 released=False>")
    all_free(r)


def test_gap_counts_refused_puts(FrameRing):
    r = FrameRing(2, FB, "drop_newest")
    for i in range(5):  # 2 queued, 3 refused (they take no seq)
        r.put(bytes([i]))
    fs = frames(r, 2)
    assert [(f.seq, f.gap) for f in fs] == [(0, 0), (1, 0)]
    for f in fs:
        f.release()
    r.put(b"n")
    with r.get() as f:
        assert (f.seq, f.gap) == (2, 3)
    s = all_free(r)
    assert s["dropped"] == 3


def test_get_latest_returns_newest_drops_older_never_twice(FrameRing):
    r = FrameRing(4, FB, "block")
    for i in range(4):
        r.put(bytes([i]) * 3)
    f = r.get_latest()
    assert (f.seq, bytes(f), f.gap) == (3, b"\x03" * 3, 3)
    s = check_quiet(r, size=0, held=1, free=3)
    assert (s["dropped"], s["gets"]) == (3, 1)
    with pytest.raises(Empty):
        r.get_latest(block=False)  # the latest frame was removed: never returned twice
    with pytest.raises(Empty):
        r.get_latest(True, 0.01)
    r.put(b"next")
    with r.get_latest() as g:
        assert (g.seq, g.gap) == (4, 0)
    f.release()
    all_free(r)


def test_get_latest_frees_slots_for_a_blocked_put(FrameRing):
    r = FrameRing(2, FB, "block")
    r.put(b"a")
    r.put(b"b")
    b = Blocker(lambda: r.put(b"c")).start()
    b.wait_blocked()
    with r.get_latest() as f:  # frees "a" and holds "b"
        assert bytes(f) == b"b"
        assert b.value() == 2
    with r.get() as f:
        assert (bytes(f), f.gap) == (b"c", 0)
    all_free(r)


def test_blocked_get_latest_woken_by_put(FrameRing):
    r = FrameRing(2, FB)
    b = Blocker(r.get_latest).start()
    b.wait_blocked()
    r.put(b"wake")
    with b.value() as f:
        assert bytes(f) == b"wake"
    all_free(r)


def test_get_latest_shutdown(FrameRing):
    r = FrameRing(2, FB)
    r.put(b"a")
    r.put(b"b")
    r.shutdown()
    with r.get_latest() as f:  # graceful: drains (the newest)
        assert bytes(f) == b"b"
    with pytest.raises(ShutDown):
        r.get_latest()
    b_ring = FrameRing(2, FB)
    b = Blocker(b_ring.get_latest).start()
    b.wait_blocked()
    b_ring.shutdown()
    b.raised(ShutDown)


def test_get_many(FrameRing):
    r = FrameRing(5, FB)
    for i in range(4):
        r.put(bytes([i]), metadata=i)
    fs = r.get_many(3)
    assert [(f.seq, bytes(f), f.metadata) for f in fs] == [(0, b"\0", 0), (1, b"\1", 1), (2, b"\2", 2)]
    check_quiet(r, size=1, held=3)
    rest = r.get_many(10)
    assert [f.seq for f in rest] == [3]
    with pytest.raises(Empty):
        r.get_many(2, block=False)
    with pytest.raises(Empty):
        r.get_many(2, True, 0.01)
    for bad, exc in ((0, ValueError), (-1, ValueError), (1.0, TypeError), (True, TypeError), ("2", TypeError)):
        with pytest.raises(exc, match="max_items"):
            r.get_many(bad, False)
    for f in fs + rest:
        f.release()
    b = Blocker(lambda: r.get_many(8)).start()
    b.wait_blocked()
    r.put(b"w")
    got = b.value()
    assert [bytes(f) for f in got] == [b"w"]
    got[0].release()
    r.put(b"s")
    r.shutdown()
    got = r.get_many(4)
    assert [bytes(f) for f in got] == [b"s"]
    got[0].release()
    with pytest.raises(ShutDown):
        r.get_many(4)
    all_free(r)


def test_put_many_returns_each_seq_or_none(FrameRing):
    r = FrameRing(3, FB, "drop_newest")
    assert r.put_many([b"a", bytearray(b"b"), memoryview(b"c"), b"d"]) == [0, 1, 2, None]
    s = check_quiet(r, size=3, dropped=1)
    assert s["puts"] == 4
    assert [bytes(f) for f in frames(r, 3)] == [b"a", b"b", b"c"]
    assert r.put_many([]) == []
    r = FrameRing(2, FB, "drop_oldest")
    assert r.put_many(iter([b"1", b"2", b"3"])) == [0, 1, 2]  # a generator is fine
    assert [bytes(f) for f in frames(r, 2)] == [b"2", b"3"]


def test_put_many_checks_every_buffer_first(FrameRing):
    r = FrameRing(4, 4, "block")
    with pytest.raises(ValueError, match="frame_bytes"):
        r.put_many([b"ok", b"toolong"])
    with pytest.raises(TypeError):
        r.put_many([b"ok", "str"])
    with pytest.raises(ValueError, match="timeout"):
        r.put_many([b"ok"], True, -1)
    all_free(r)
    assert r.stats()["puts"] == 0


def test_put_many_block_timeout_bounds_the_call(FrameRing):
    r = FrameRing(2, FB, "block")
    with pytest.raises(Full):
        r.put_many([b"1", b"2", b"3"], True, 0.05)
    check_quiet(r, size=2)  # the first two stay queued
    with pytest.raises(Full):
        r.put_many([b"4"], block=False)
    held = r.get()
    b = Blocker(lambda: r.put_many([b"5", b"6"])).start()
    b.wait_blocked()
    held.release()  # room for "5"
    with r.get() as f:  # room for "6"
        assert bytes(f) == b"2"
    assert b.value() == [2, 3]
    r.shutdown()
    with pytest.raises(ShutDown):
        r.put_many([b"x"])
    with pytest.raises(ShutDown):
        r.put_many([])


def test_capture_counters_conserve(FrameRing):
    """puts == gets + dropped + cleared + size through every new path, and
    the gaps of the delivered frames add up to what was lost before them."""
    import random

    rng = random.Random(14)
    for policy in POLICIES:
        r = FrameRing(4, 8, policy)
        delivered = gaps = 0
        last = None
        for _ in range(400):
            x = rng.random()
            fs = []  # frames delivered by this step
            try:
                if x < 0.35:
                    r.put(bytes(rng.randrange(9)), False, metadata=x,
                          timestamp_ns=rng.randrange(2**40))
                elif x < 0.45:
                    r.put_many([b"m"] * rng.randrange(1, 4), False)
                elif x < 0.6:
                    fs = r.get_many(rng.randrange(1, 4), False)
                elif x < 0.75:
                    fs = [r.get_latest(False)]
                elif x < 0.85:
                    r.get_into(bytearray(8), False)
                    delivered += 1
                    last = None  # its seq is not seen here
                elif x < 0.9:
                    r.clear()
                else:
                    fs = [r.get(False)]
            except (Empty, Full):
                pass
            for f in fs:
                assert f.gap >= 0 and (last is None or f.seq > last)
                last = f.seq
                delivered += 1
                gaps += f.gap
                f.release()
            check_quiet(r)
        s = r.stats()
        assert s["gets"] == delivered
        assert delivered + gaps <= s["puts"]
