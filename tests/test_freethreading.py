"""Free-threaded CPython (3.13t+): importing bufmgr must not re-enable the GIL.

A C extension that does not declare free-threading support makes the
interpreter turn the GIL back on at import (with a RuntimeWarning), which
would silently serialise every test that is meant to exercise real
parallelism. Run by .ci/freethreaded.sh; skipped on ordinary builds.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sysconfig.get_config_var("Py_GIL_DISABLED"),
    reason="needs a free-threaded (--disable-gil) CPython build",
)

# Run in a fresh interpreter: the pytest process has imported plugins (and
# maybe other extensions) already, and PYTHON_GIL / -X gil would mask the
# module's own declaration. The GIL must be off before and after.
_PROBE = textwrap.dedent(
    """
    import importlib, pkgutil, sys, warnings
    warnings.simplefilter("error")  # "The global interpreter lock (GIL) has been enabled..."
    assert not sys._is_gil_enabled(), "GIL enabled before importing bufmgr"
    import bufmgr
    names = ["bufmgr"]
    for info in pkgutil.walk_packages(bufmgr.__path__, "bufmgr."):
        importlib.import_module(info.name)
        names.append(info.name)
    assert "bufmgr._ring" in sys.modules, "compiled bufmgr._ring was not imported"
    assert bufmgr.IMPLEMENTATION == "c", bufmgr.IMPLEMENTATION
    assert not sys._is_gil_enabled(), "GIL re-enabled after importing " + ", ".join(names)
    print("\\n".join(names))
    """
)

_REQUIRED = {
    "bufmgr",
    "bufmgr._ring",
    "bufmgr._pyqueue",
    "bufmgr._errors",
    "bufmgr.manager",
    "bufmgr.coordinator",
    "bufmgr.cli",
}


def test_importing_every_bufmgr_module_keeps_the_gil_disabled():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_GIL", "BUFMGR_NO_EXTENSIONS")}
    proc = subprocess.run(
        # -P: `-c` must not put the cwd (maybe a checkout, whose bufmgr/ has
        # no compiled _ring) ahead of the installed package
        [sys.executable, "-P", "-X", "faulthandler", "-c", _PROBE],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    imported = set(proc.stdout.split())
    missing = _REQUIRED - imported
    assert not missing, f"walk_packages did not import {sorted(missing)}; got {sorted(imported)}"


def test_gil_disabled_in_this_process_after_importing_bufmgr():
    """Same check in the pytest process itself (what the rest of the suite sees)."""
    import bufmgr

    for info in pkgutil.walk_packages(bufmgr.__path__, "bufmgr."):
        importlib.import_module(info.name)
    if os.environ.get("PYTHON_GIL") == "1":
        pytest.skip("PYTHON_GIL=1 forces the GIL on")
    assert not sys._is_gil_enabled()


# ---------------------------------------------------------------------------
# issue 11, item 2: the compiled BufferManager core read its hot-path tables
# without owning a reference (PyDict_GetItem's borrowed tuple, fields another
# thread swapped) while ``m.coordinator = ...`` replaced and freed them: a
# use-after-free, SIGSEGV within seconds on 3.13t. The workload runs in a
# child process so that a crash is a failed test, not a dead test run.

_SWAP_STRESS = textwrap.dedent(
    """
    import sys, threading, time
    from bufmgr import manager as manager_mod
    from bufmgr._ring import FrameQueue, FrameRing

    core, seconds = sys.argv[1], float(sys.argv[2])
    if core == "c":
        assert manager_mod.CORE_IMPLEMENTATION == "c", manager_mod.CORE_IMPLEMENTATION
        Manager = manager_mod.BufferManager
    else:
        class Manager(manager_mod._PyCore, manager_mod.BufferManager):
            pass

    class Coord:
        def __init__(self):
            self.errors = []
        def update_state(self, **fields):
            pass
        def is_shutdown_requested(self):
            return False
        def handle_error(self, error, component):
            self.errors.append(error)

    coords = [Coord() for _ in range(2)]
    m = Manager(coords[0], queues={
        "fq_left": 64,                                       # drop_oldest FrameQueue
        "ring_left": {"maxsize": 16, "frame_bytes": 64},     # drop_oldest FrameRing
    }, queue_factory=FrameQueue, ring_factory=FrameRing)
    stop = threading.Event()
    counts = {}
    failures = []

    def hot(i, component):
        put, get, data = m.put_buffer, m.get_buffer, b"x" * 32
        ok = got = 0
        try:
            while not stop.is_set():
                for _ in range(200):
                    ok += put(component, data, 0.5)
                    got += get(component, 0.0) is not None
        except BaseException as e:  # put_buffer/get_buffer must never raise
            failures.append(repr(e))
        counts[i] = (component, ok, got)

    def swap():
        n = 0
        try:
            while not stop.is_set():
                m.coordinator = None
                m.coordinator = coords[n % 2]
                n += 1
        except BaseException as e:
            failures.append(repr(e))
        counts["swaps"] = n

    threads = [threading.Thread(target=hot, args=(i, c)) for i, c in
               enumerate(["fq_left", "ring_left", "fq_left"])]
    threads.append(threading.Thread(target=swap))
    for t in threads:
        t.start()
    time.sleep(seconds)  # the run's length, not a timing assertion
    stop.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a stress thread did not stop"
    m.coordinator = None
    assert not failures, failures
    assert all(not c.errors for c in coords), [c.errors[:3] for c in coords]
    stats = m.get_performance_stats()
    assert stats["manager"]["errors"] == 0, stats["manager"]
    for name in ("fq_left", "ring_left"):
        st = stats["components"][name]
        accepted = sum(ok for c, ok, got in (counts[i] for i in range(3)) if c == name)
        taken = sum(got for c, ok, got in (counts[i] for i in range(3)) if c == name)
        assert st["puts"] == accepted and st["gets"] == taken, (name, st, accepted, taken)
        assert st["puts"] == st["gets"] + st["dropped"] + st["cleared"] + st["size"], st
    assert counts["swaps"] > 0
    print("ok", counts)
    """
)


@pytest.mark.parametrize("core", ["c", "python"])
def test_manager_hot_paths_survive_coordinator_swaps(core):
    """3 threads in put_buffer/get_buffer (a FrameQueue and a FrameRing
    component) while a 4th keeps reassigning ``m.coordinator``: no crash, no
    exception, every frame accounted for."""
    seconds = float(os.environ.get("BUFMGR_FT_SWAP_STRESS_S", "4"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON_GIL", "BUFMGR_NO_EXTENSIONS")}
    proc = subprocess.run(
        [sys.executable, "-P", "-X", "faulthandler", "-c", _SWAP_STRESS, core, str(seconds)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120 + seconds,
    )
    assert proc.returncode == 0, (
        f"exit status {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    )
    assert proc.stdout.startswith("ok"), proc.stdout
