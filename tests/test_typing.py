"""`mypy --strict tests/typing/`: bufmgr's types as its users see them.

tests/typing/check_*.py are never run, only type-checked: assert_type on
what the stub (bufmgr/_ring.pyi) promises, and `# type: ignore[code]` on
lines that must be errors (--strict warns about an unused ignore, so a line
that stops being an error fails the check too). CI also runs the command
directly (.ci/run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_strict_on_the_typing_checks(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the `test` extra: pip install -e '.[test]'")
    checks = sorted((ROOT / "tests" / "typing").glob("check_*.py"))
    assert checks, "no tests/typing/check_*.py"
    proc = subprocess.run(
        # a fresh cache: mypy's incremental cache has been seen to keep a
        # module graph from an earlier checkout state
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(tmp_path / "mypy-cache"), "tests/typing/"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
