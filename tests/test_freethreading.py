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
