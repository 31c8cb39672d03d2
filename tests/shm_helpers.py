"""Helpers shared by the SharedFrameRing tests (tests/test_shm*.py)."""

from __future__ import annotations

import gc
import os
import struct
import time

import pytest

from bufmgr import shm

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is optional
    np = None

DEADLINE_S = 30.0

needs_shm = pytest.mark.skipif(not shm.AVAILABLE, reason=shm.UNAVAILABLE_REASON or "n/a")
needs_numpy = pytest.mark.skipif(np is None, reason="numpy not installed")


def segments() -> set[str]:
    try:
        return {n for n in os.listdir(shm.SHM_DIR) if n.startswith(shm.PREFIX)}
    except FileNotFoundError:  # pragma: no cover
        return set()


def _ancestors(pid: int) -> set[int]:
    """pid and its ancestors (from /proc/<pid>/stat's ppid field)."""
    chain = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain


def session_name(tag: str) -> str:
    """A segment name that says which test session made it (``t<pid>``): for
    a segment whose creator a test kills on purpose. Once that creator is
    dead, nothing else tells another session running beside this one (CI
    runs 3.14 and 3.15 side by side) that the segment is not its own."""
    return f"{shm.PREFIX}t{os.getpid()}-{tag}-{os.urandom(4).hex()}"


def _other_session(name: str, mine: set[int]) -> bool:
    """Named by session_name() of a test session alive outside our tree."""
    head = name[len(shm.PREFIX):].split("-", 1)[0]
    if not (head.startswith("t") and head[1:].isdigit()):
        return False
    pid = int(head[1:])
    if pid in mine:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def left_behind(before: set[str], young_s: float = 10.0) -> set[str]:
    """Segments that appeared since ``before`` and belong to this test run:
    not those whose creator is alive outside this process's tree (another
    test session or program on the machine, which must not be unlinked), nor
    unreadable ones younger than ``young_s`` (see below)."""
    new = segments() - before
    me = os.getpid()
    seen = set()  # of ``new``, those still there when inspected
    foreign = set()
    now = time.time()
    mine = _ancestors(me)
    for e in shm.list_segments():
        if e["name"] not in new:
            continue
        seen.add(e["name"])
        if _other_session(e["name"], mine):
            foreign.add(e["name"])
            continue
        if e.get("valid"):
            if e.get("creator_alive") and me not in _ancestors(e.get("creator_pid")):
                foreign.add(e["name"])
            continue
        # Unreadable: being created right now (by anyone: a C harness or
        # another session running beside this one), or another layout
        # version. Who made it cannot be told; unlinking one being created
        # breaks its creator, so a fresh one is not counted (the rule of
        # `python -m bufmgr shm clean`). A test's own garbage files are
        # removed by the test.
        try:
            age = now - os.stat(os.path.join(shm.SHM_DIR, e["name"])).st_mtime
        except FileNotFoundError:
            continue
        if age < young_s:
            foreign.add(e["name"])
    # A name listed first and gone by the time list_segments() looked (its
    # last user unlinked it in between) is not left behind.
    return seen - foreign


def assert_no_segments_left(before: set[str], settle_s: float = 5.0, young_s: float = 10.0) -> None:
    """The body of each test_shm*.py module's autouse fixture, after the test:
    no segment this test run created since ``before`` is left (other
    sessions' are not counted); waits up to ``settle_s`` for children exiting
    right now, and unlinks what is left so the next tests are not poisoned."""
    gc.collect()
    deadline = time.monotonic() + settle_s
    while left_behind(before, young_s) and time.monotonic() < deadline:
        time.sleep(0.01)
    candidates = left_behind(before, young_s)
    details = [e for e in shm.list_segments() if e["name"] in candidates]  # for the message
    left = set()
    for name in candidates:
        try:
            os.unlink(os.path.join(shm.SHM_DIR, name))
        except FileNotFoundError:  # its last user removed it meanwhile: not left
            continue
        left.add(name)
    details = [e for e in details if e["name"] in left]
    assert not left, f"test left shared segments behind: {details}"


def join_bounded(procs, timeout: float = DEADLINE_S) -> list:
    """Join child processes within one deadline; any still running is killed
    and fails the test (liveness). Their exit codes."""
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    stuck = [p for p in procs if p.is_alive()]
    for p in stuck:
        p.kill()
        p.join(5)
    assert not stuck, f"liveness: {len(stuck)} child processes still running after {timeout} s"
    return [p.exitcode for p in procs]


def conserved(s: dict) -> bool:
    return s["puts"] == s["gets"] + s["dropped"] + s["reclaimed"] + s["cleared"] + s["size"]


def key_of(producer: int, n: int) -> int:
    return (producer + 1) << 40 | n


def frame_len(key: int, frame_bytes: int) -> int:
    lo = frame_bytes // 2
    return lo + (key * 0x9E3779B97F4A7C15 >> 20) % (frame_bytes - lo + 1)


_patterns: dict = {}


def _pattern(frame_bytes: int):
    p = _patterns.get(frame_bytes)
    if p is None:
        p = _patterns[frame_bytes] = (np.arange(frame_bytes, dtype=np.uint64) * 2654435761 >> 7).astype(np.uint8)
    return p


def stamp(key: int, frame_bytes: int) -> bytes:
    """Frame bytes for `key`: the key, then a pattern mixed with it, of a
    key-dependent length: a torn, mixed, shifted or short frame cannot verify."""
    n = frame_len(key, frame_bytes)
    body = _pattern(frame_bytes)[8:n] ^ np.uint8(key % 251)
    return struct.pack("<Q", key) + body.tobytes()


def check_frame(data, frame_bytes: int) -> int:
    """Return the key of an intact frame; raise AssertionError otherwise."""
    buf = np.frombuffer(data, dtype=np.uint8)
    key = struct.unpack("<Q", buf[:8].tobytes())[0]
    n = frame_len(key, frame_bytes)
    assert len(buf) == n, f"frame {key:#x}: {len(buf)} bytes, stamped {n}"
    want = _pattern(frame_bytes)[8:n] ^ np.uint8(key % 251)
    assert np.array_equal(buf[8:], want), f"frame {key:#x} is torn"
    return key


def wait_until(pred, what, timeout=DEADLINE_S):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"liveness: {what} not reached within {timeout} s")
        time.sleep(0.002)


def waitpid_bounded(pid: int, timeout=DEADLINE_S) -> int:
    """waitpid with a deadline (kills and fails the test on a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail(f"liveness: child {pid} still running after {timeout} s")
        time.sleep(0.002)
