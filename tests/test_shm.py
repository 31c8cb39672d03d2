"""SharedFrameRing in one process: the FrameRing surface and semantics,
attach errors, lifetime of names and mappings. (Across processes:
tests/test_shm_processes.py.) Every test leaves /dev/shm as it found it."""

from __future__ import annotations

import gc
import os
import pickle
import queue
import struct
import subprocess
import sys

import pytest

import bufmgr
from bufmgr import shm
from bufmgr._errors import ShutDown

from shm_helpers import assert_no_segments_left, conserved, needs_numpy, needs_shm, np, segments


@pytest.fixture(autouse=True)
def no_leftover_segments():
    before = segments()
    yield
    assert_no_segments_left(before, settle_s=0.0)


def test_without_compiled_core_construction_says_so():
    code = "import bufmgr\ntry:\n bufmgr.SharedFrameRing(2, 8)\nexcept RuntimeError as e: print(e)\n"
    env = dict(os.environ, BUFMGR_NO_EXTENSIONS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(bufmgr.__file__))),
                         timeout=60)
    assert "compiled core" in out.stdout and "BUFMGR_NO_EXTENSIONS" in out.stdout, out


@needs_shm
class TestSurface:
    def test_put_get_roundtrip_and_attributes(self):
        with bufmgr.SharedFrameRing(4, 64) as r:
            assert r.name.startswith("bufmgr-") and os.path.exists(f"/dev/shm/{r.name}")
            assert (r.slots, r.frame_bytes, r.overflow) == (4, 64, "drop_oldest")
            assert r.put(b"abc") == 0
            assert r.put_nowait(bytearray(b"defg"), timestamp_ns=123) == 1
            assert (r.qsize(), len(r), r.empty(), r.full()) == (2, 2, False, False)
            f = r.get()
            assert (bytes(f), f.seq, f.gap, f.nbytes, f.metadata) == (b"abc", 0, 0, 3, None)
            assert memoryview(f).readonly and memoryview(f).tobytes() == b"abc"
            import ctypes

            with pytest.raises((BufferError, TypeError)):
                (ctypes.c_char * 3).from_buffer(f)  # asks for a writable buffer
            g = r.get_nowait()
            assert (bytes(g), g.timestamp_ns) == (b"defg", 123)
            assert r.stats()["held"] == 2
            f.release()
            f.release()  # idempotent
            with pytest.raises(ValueError, match="released"):
                memoryview(f)
            with g:
                pass
            s = r.stats()
            assert (s["held"], s["free"], s["gets"], s["puts"]) == (0, 4, 2, 2) and conserved(s)
        assert not os.path.exists(f"/dev/shm/{r.name}")

    def test_empty_and_timeout(self):
        with bufmgr.SharedFrameRing(2, 8) as r:
            with pytest.raises(queue.Empty):
                r.get_nowait()
            with pytest.raises(queue.Empty):
                r.get(timeout=0.01)
            with pytest.raises(queue.Empty):
                r.get(block=False)

    @pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "block"])
    def test_policies_and_counters(self, overflow):
        with bufmgr.SharedFrameRing(3, 8, overflow=overflow) as r:
            seqs = []
            for i in range(5):
                try:
                    seqs.append(r.put(bytes([i]), timeout=0.01))
                except queue.Full:
                    seqs.append("full")
            got = [bytes(f)[0] for f in r.get_many(10)]
            s = r.stats()
            if overflow == "drop_oldest":
                assert seqs == [0, 1, 2, 3, 4] and got == [2, 3, 4] and s["dropped"] == 2
            elif overflow == "drop_newest":
                # refused puts get no seq (as FrameRing; the gap still counts them)
                assert seqs == [0, 1, 2, None, None] and got == [0, 1, 2] and s["dropped"] == 2
            else:
                assert seqs == [0, 1, 2, "full", "full"] and got == [0, 1, 2] and s["dropped"] == 0
            assert conserved(s) and s["high_water"] == 3

    def test_drop_policies_when_every_slot_is_held(self):
        with bufmgr.SharedFrameRing(2, 8, overflow="drop_oldest") as r:
            r.put(b"a"), r.put(b"b")
            held = [r.get(), r.get()]
            assert r.put(b"c") is None  # nothing queued to evict: refused, an underrun
            s = r.stats()
            assert (s["dropped"], s["underruns"]) == (1, 1) and conserved(s)
            del held

    def test_gap_counts_missed_frames_and_get_latest(self):
        with bufmgr.SharedFrameRing(4, 8, overflow="drop_oldest") as r:
            for i in range(7):
                r.put(bytes([i]))
            f = r.get()
            assert (f.seq, f.gap) == (3, 3)
            g = r.get_latest()
            assert (bytes(g), g.seq, g.gap) == (b"\x06", 6, 2)
            assert r.empty() and r.stats()["dropped"] == 3 + 2
            with pytest.raises(queue.Empty):
                r.get_latest(timeout=0.01)  # never the same frame twice
            f.release(), g.release()
            assert conserved(r.stats())

    def test_get_into(self):
        with bufmgr.SharedFrameRing(2, 16) as r:
            r.put(b"0123456789")
            small = bytearray(4)
            with pytest.raises(ValueError, match="does not fit"):
                r.get_into(small)
            assert r.qsize() == 1  # nothing changed
            buf = bytearray(16)
            assert r.get_into(buf) == (10, 0) and buf[:10] == b"0123456789"
            with pytest.raises(TypeError):
                r.get_into(b"readonly")
            assert r.stats()["free"] == 2

    def test_metadata(self):
        with bufmgr.SharedFrameRing(2, 8, metadata_bytes=64) as r:
            r.put(b"x", metadata={"exposure": 1.5, "id": 7})
            assert r.get().metadata == {"exposure": 1.5, "id": 7}
            with pytest.raises(ValueError, match="metadata_bytes=64"):
                r.put(b"x", metadata="y" * 100)
            assert r.stats()["puts"] == 1  # a refused metadata took no slot

    def test_argument_errors_name_the_argument(self):
        with pytest.raises(TypeError, match="slots"):
            bufmgr.SharedFrameRing("3", 8)
        with pytest.raises(ValueError, match="slots"):
            bufmgr.SharedFrameRing(0, 8)
        with pytest.raises(ValueError, match="frame_bytes"):
            bufmgr.SharedFrameRing(2, -1)
        with pytest.raises(TypeError, match="needs frame_bytes, or shape"):
            bufmgr.SharedFrameRing(2)
        with pytest.raises(ValueError, match="overflow"):
            bufmgr.SharedFrameRing(2, 8, overflow="drop-oldest")
        with pytest.raises(ValueError, match="metadata_bytes"):
            bufmgr.SharedFrameRing(2, 8, metadata_bytes=-1)
        with pytest.raises(ValueError, match="name"):
            bufmgr.SharedFrameRing(2, 8, name="../etc/passwd")
        with pytest.raises(TypeError, match="name"):
            bufmgr.SharedFrameRing(2, 8, name=5)
        with bufmgr.SharedFrameRing(2, 8) as r:
            with pytest.raises(ValueError, match="frame_bytes=8"):
                r.put(b"123456789")
            with pytest.raises(TypeError):
                r.put("a string")
            with pytest.raises(ValueError, match="timeout"):
                r.get(timeout=-1)
            with pytest.raises(TypeError, match="timestamp_ns"):
                r.put(b"x", timestamp_ns=1.5)

    def test_named_ring_prefix_and_collision(self):
        name = f"test-{os.getpid()}-named"
        with bufmgr.SharedFrameRing(2, 8, name=name) as r:
            assert r.name == "bufmgr-" + name
            with pytest.raises(FileExistsError):
                bufmgr.SharedFrameRing(2, 8, name=name)
            with bufmgr.SharedFrameRing.attach(name) as a:  # prefix optional here too
                a.put(b"hi")
                assert bytes(r.get()) == b"hi"

    def test_shutdown_and_clear(self):
        with bufmgr.SharedFrameRing(4, 8) as r:
            for i in range(3):
                r.put(bytes([i]))
            assert r.clear() == 3
            r.put(b"a"), r.put(b"b")
            f = r.get()
            r.shutdown()
            assert r.is_shutdown
            with pytest.raises(ShutDown):
                r.put(b"c")
            assert bytes(r.get()) == b"b"  # drains
            with pytest.raises(ShutDown):
                r.get()
            assert bytes(f) == b"a"  # held frames stay valid
            f.release()
            s = r.stats()
            assert (s["cleared"], s["free"]) == (3, 4) and conserved(s)
        with bufmgr.SharedFrameRing(4, 8) as r:
            r.put(b"a")
            r.shutdown(immediate=True)
            with pytest.raises(ShutDown):
                r.get_nowait()
            assert r.stats()["cleared"] == 1

    def test_reserve_commit_discard(self):
        with bufmgr.SharedFrameRing(2, 16) as r:
            with r.reserve() as slot:
                assert len(slot) == 16
                memoryview(slot)[:5] = b"hello"
                slot.commit(5)
            assert slot.seq == 0 and bytes(r.get()) == b"hello"
            with r.reserve() as slot:
                memoryview(slot)[:] = b"x" * 16
                slot.metadata = {"a": 1}
                slot.timestamp_ns = 42
            f = r.get()
            assert (bytes(f), f.metadata, f.timestamp_ns) == (b"x" * 16, {"a": 1}, 42)
            f.release()
            with pytest.raises(KeyError):
                with r.reserve() as slot:
                    memoryview(slot)[:1] = b"!"
                    raise KeyError
            assert r.empty() and r.stats()["free"] == 2 and r.stats()["puts"] == 2
            with pytest.raises(BufferError):
                memoryview(slot)  # discarded: no more writes
            with pytest.raises(ValueError, match="nbytes"):
                with r.reserve() as slot:
                    slot.commit(17)
            assert r.stats()["free"] == 2

    def test_reserve_full_and_refused(self):
        with bufmgr.SharedFrameRing(1, 8, overflow="block") as r:
            r.put(b"a")
            with pytest.raises(queue.Full):
                r.reserve(timeout=0.01)
        with bufmgr.SharedFrameRing(1, 8, overflow="drop_newest") as r:
            r.put(b"a")
            with pytest.raises(queue.Full, match="refused"):
                r.reserve()
            assert conserved(r.stats()) and r.stats()["dropped"] == 1

    @needs_numpy
    def test_shape_dtype_numpy_zero_copy(self):
        with bufmgr.SharedFrameRing(2, shape=(4, 6, 3), dtype="uint16") as r:
            assert r.frame_bytes == 4 * 6 * 3 * 2 and r.shape == (4, 6, 3)
            img = np.arange(72, dtype=np.uint16).reshape(4, 6, 3)
            r.put(img)
            f = r.get()
            a = np.asarray(f)
            assert a.shape == (4, 6, 3) and a.dtype == np.uint16 and np.array_equal(a, img)
            assert not a.flags.writeable
            with r.reserve() as slot:
                w = np.asarray(slot)
                assert w.shape == (4, 6, 3) and w.flags.writeable
                w[...] = 9
            b = np.asarray(r.get())
            assert (b == 9).all()
            with bufmgr.SharedFrameRing.attach(r.name) as other:  # shape/dtype travel
                assert other.shape == (4, 6, 3) and other.dtype == np.uint16
            del a
            f.release()
        with pytest.raises(ValueError, match="does not match"):
            bufmgr.SharedFrameRing(2, 10, shape=(2, 2), dtype="uint8")

    def test_close_with_frames_and_views_held(self):
        r = bufmgr.SharedFrameRing(2, 8)
        r.put(b"12345678")
        f = r.get()
        view = memoryview(f)
        name = r.name
        r.close()
        r.close()  # idempotent
        assert r.closed and not os.path.exists(f"/dev/shm/{name}")  # the creator unlinks
        with pytest.raises(ValueError, match="closed"):
            r.put(b"x")
        assert view.tobytes() == b"12345678"  # the mapping outlives close()
        view.release()
        f.release()

    def test_unlink_and_gc(self):
        r = bufmgr.SharedFrameRing(2, 8)
        name = r.name
        a = bufmgr.SharedFrameRing.attach(name)
        assert r.unlink() is True and r.unlink() is False
        with pytest.raises(FileNotFoundError):
            bufmgr.SharedFrameRing.attach(name)
        a.put(b"works")  # attached ones keep working
        assert bytes(r.get()) == b"works"
        a.close(), r.close()
        r2 = bufmgr.SharedFrameRing(2, 8)
        name = r2.name
        del r2
        gc.collect()
        assert not os.path.exists(f"/dev/shm/{name}")

    def test_pickle_in_process_attaches(self):
        with bufmgr.SharedFrameRing(2, 8) as r:
            other = pickle.loads(pickle.dumps(r))
            assert other.name == r.name and r.stats()["participants"] == 2
            other.put(b"z")
            assert bytes(r.get()) == b"z"
            other.close()
            r.put(b"q")
            f = r.get()
            with pytest.raises(TypeError, match="pickle"):
                pickle.dumps(f)
            f.release()

    def test_repr(self):
        with bufmgr.SharedFrameRing(2, 8) as r:
            assert "SharedFrameRing" in repr(r) and r.name in repr(r)
        assert "closed" in repr(r)


def _vma_flags(addr):
    """VmFlags of this process's mapping that starts at `addr` (smaps)."""
    start, found = f"{addr:x}-", False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            if line.startswith(start):
                found = True
            elif found and line.startswith("VmFlags:"):
                return line.split()[1:]
    raise AssertionError(f"no mapping starts at {addr:#x}")


@needs_shm
@needs_numpy
def test_large_frames_are_laid_out_for_huge_pages():
    """Frames of 2 MiB or more: every slot starts on a 2 MiB boundary, in
    the creator and in an attacher, the file is whole 2 MiB pages (at most
    1/16 of a frame of padding), and the data area is advised MADV_HUGEPAGE
    where the kernel has transparent huge pages -- so a /dev/shm mounted
    huge=advise backs the slots with huge pages (README, processes)."""
    hp = 2 << 20
    fb = 1920 * 1080 * 3
    with bufmgr.SharedFrameRing(3, fb, overflow="block") as r:
        other = bufmgr.SharedFrameRing.attach(r.name)
        try:
            info = bufmgr._shm.peek(r.name)
            assert info["total_bytes"] % hp == 0
            assert info["total_bytes"] <= 3 * (fb + fb // 16) + hp
            addrs = set()
            for ring in (r, other, r):
                with ring.reserve() as slot:
                    a = np.frombuffer(slot, dtype=np.uint8)
                    addrs.add(a.ctypes.data)
                    a[:] = 7
                    del a
                f = (other if ring is r else r).get(timeout=10)
                with memoryview(f) as m:
                    assert m.nbytes == fb and m[0] == m[fb - 1] == 7
                f.release()
            assert all(x % hp == 0 for x in addrs), [hex(x) for x in addrs]
            if os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"):
                for x in addrs:
                    # the slot's VMA (the data area) is the one advised; the
                    # header's stays on small pages
                    vmas = [int(l.split("-")[0], 16) for l in open("/proc/self/maps") if r.name in l]
                    data_start = max(v for v in vmas if v <= x)
                    assert "hg" in _vma_flags(data_start)
        finally:
            other.close()
    # small frames keep the compact layout: nothing rounded to 2 MiB
    with bufmgr.SharedFrameRing(4, 100) as r:
        assert bufmgr._shm.peek(r.name)["total_bytes"] < hp


def _private_small_dev_shm_works():
    """True where this test may give a child a private /dev/shm of its own
    (root, util-linux unshare): a mount namespace, nothing on the system changes."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    try:
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@needs_shm
def test_a_dev_shm_too_small_fails_creation_not_a_later_put():
    """The segment's memory is allocated at creation: in a 16 MiB /dev/shm
    (a container's is often 64 MB) 8 x 6 MB slots are refused by the
    constructor with ENOSPC and a hint, and leave no file behind; before,
    creation succeeded and the third put died of SIGBUS. A ring that fits
    works."""
    if not _private_small_dev_shm_works():
        pytest.skip("needs root and unshare(1) for a private, small /dev/shm")
    code = (
        "import errno, os, bufmgr\n"
        "try:\n"
        "    bufmgr.SharedFrameRing(8, 6220800, overflow='block')\n"
        "except OSError as e:\n"
        "    assert e.errno == errno.ENOSPC and 'df /dev/shm' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('created')\n"
        "assert not [n for n in os.listdir('/dev/shm') if n.startswith('bufmgr-')]\n"
        "with bufmgr.SharedFrameRing(1, 6220800) as r:\n"
        "    r.put(b'x' * 6220800)\n"
        "    assert len(memoryview(r.get())) == 6220800\n"
        "print('ok')\n"
    )
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount -t tmpfs -o size=16m tmpfs /dev/shm && exec "$0" -c "$1"',
                        sys.executable, code],
                       # not the checkout's root: `-c` imports from the cwd first,
                       # and CI's checkout has no compiled core in place
                       cwd="/", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stdout, r.stderr)


@needs_shm
class TestAttachErrors:
    def _file(self, name, data):
        path = os.path.join(shm.SHM_DIR, name)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return path

    def test_wrong_name(self):
        with pytest.raises(FileNotFoundError, match="no shared ring"):
            bufmgr.SharedFrameRing.attach(f"bufmgr-nope-{os.getpid()}")
        with pytest.raises(ValueError, match="name"):
            bufmgr.SharedFrameRing.attach("bad/name")

    def _valid_bytes(self):
        with bufmgr.SharedFrameRing(3, 100) as r:
            with open(os.path.join(shm.SHM_DIR, r.name), "rb") as fh:
                return fh.read()

    @pytest.mark.parametrize("case", ["empty", "truncated", "random", "version", "corrupt", "padded"])
    def test_refused_with_a_clear_error(self, case, monkeypatch):
        good = self._valid_bytes()
        name = f"bufmgr-bad-{os.getpid()}-{case}"
        # clean() below looks at this file only: a test session running
        # beside this one (CI runs 3.14 and 3.15 side by side) ages its own
        # bad files too, and clean(force=True) would take either.
        every_segment = shm.list_segments
        monkeypatch.setattr(shm, "list_segments",
                            lambda: [e for e in every_segment() if e["name"] == name])
        data = {
            "empty": b"",
            "truncated": good[: len(good) // 2],
            "random": os.urandom(len(good)),
            "version": good[:8] + struct.pack("<I", 99) + good[12:],
            "corrupt": good[:40] + bytes([good[40] ^ 1]) + good[41:],
            "padded": good + b"\0" * 4096,
        }[case]
        path = self._file(name, data)
        try:
            message = {
                "empty": "empty", "truncated": "truncated", "random": "not a bufmgr segment",
                "version": "layout version 99", "corrupt": "corrupted", "padded": "truncated or padded",
            }[case]
            with pytest.raises(ValueError, match=message):
                bufmgr.SharedFrameRing.attach(name)
            entry = [e for e in shm.list_segments() if e["name"] == name][0]
            assert entry["valid"] is False
            assert name not in shm.clean()  # not a valid segment: only clean(force=True)
            # ... and only once it is old: a segment being created is briefly invalid
            assert name not in shm.clean(force=True)
            old = os.stat(path).st_mtime - 2 * shm.FORCE_MIN_AGE_S
            os.utime(path, (old, old))
            assert name in shm.clean(force=True)
        finally:
            if os.path.exists(path):
                os.unlink(path)

    def test_a_segment_of_the_previous_layout_is_refused_by_version(self):
        """Layout version 3 moved large frames' data to 2 MiB boundaries: a
        version-2 segment (bufmgr before that) is refused by its version, not
        read with the wrong offsets, and the message names both versions."""
        good = self._valid_bytes()
        assert struct.unpack_from("<I", good, 8)[0] == bufmgr._shm.LAYOUT_VERSION == 3
        name = f"bufmgr-old-{os.getpid()}"
        path = self._file(name, good[:8] + struct.pack("<I", 2) + good[12:])
        try:
            with pytest.raises(ValueError, match="layout version 2; this bufmgr reads version 3"):
                bufmgr.SharedFrameRing.attach(name)
        finally:
            os.unlink(path)

    def test_validate_never_reads_past_the_buffer(self):
        from bufmgr import _shm

        good = self._valid_bytes()
        for cut in (0, 1, 11, 12, 100, len(good) - 1):
            st, why = _shm.validate_bytes(good[:cut])
            assert st != 0 and why
        assert _shm.validate_bytes(good) == (0, "")


def test_leftover_check_ignores_a_segment_gone_before_it_is_inspected(monkeypatch):
    # CI on 3.15 failed once with "left shared segments behind: []": a name
    # listed by os.listdir and unlinked by its last user before
    # list_segments() looked at it was counted as left behind.
    import shm_helpers
    before = segments()
    ghost = shm.PREFIX + "ghost-%d" % os.getpid()   # listed, never on disk
    monkeypatch.setattr(shm_helpers, "segments", lambda: before | {ghost})
    assert shm_helpers.left_behind(before) == set()
    shm_helpers.assert_no_segments_left(before, settle_s=0.0)  # does not raise


def test_leftover_check_reports_and_removes_a_stale_file(monkeypatch):
    # young_s=0: an unreadable file counts at once. The file stays young for
    # everyone else: a test session running beside this one (CI runs 3.14
    # and 3.15 side by side) leaves it alone, as it must; and this test looks
    # at its own file only (that session may be running this very test).
    import shm_helpers
    before = segments()
    name = shm.PREFIX + "stale-%d" % os.getpid()
    path = os.path.join(shm.SHM_DIR, name)
    monkeypatch.setattr(shm_helpers, "segments",
                        lambda: before | ({name} if os.path.exists(path) else set()))
    with open(path, "wb") as f:
        f.write(b"not a segment")
    try:
        assert shm_helpers.left_behind(before, young_s=0.0) == {os.path.basename(path)}
        assert os.path.basename(path) not in shm_helpers.left_behind(before)  # young: not counted
        with pytest.raises(AssertionError, match="stale-"):
            shm_helpers.assert_no_segments_left(before, settle_s=0.0, young_s=0.0)
        assert not os.path.exists(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)


def test_leftover_check_leaves_another_sessions_named_segments_alone(monkeypatch):
    # A segment named by session_name() of a test session alive outside
    # this tree is that session's (its creator may be dead on purpose);
    # once that session is gone, it is anyone's to clean.
    import shm_helpers
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        name = f"{shm.PREFIX}t{other.pid}-test-{os.getpid()}"
        path = os.path.join(shm.SHM_DIR, name)
        before = segments()
        monkeypatch.setattr(shm_helpers, "segments",
                            lambda: before | ({name} if os.path.exists(path) else set()))
        with open(path, "wb") as f:
            f.write(b"not a segment")
        try:
            assert shm_helpers.left_behind(before, young_s=0.0) == set()
            mine = shm_helpers.session_name("x")
            assert mine.startswith(f"{shm.PREFIX}t{os.getpid()}-x-")
            assert not shm_helpers._other_session(mine, shm_helpers._ancestors(os.getpid()))
            other.kill()
            other.wait(30)
            assert shm_helpers.left_behind(before, young_s=0.0) == {name}
        finally:
            if os.path.exists(path):
                os.unlink(path)
    finally:
        other.kill()
        other.wait(30)
