"""Smoke tests for the standalone bench scripts, so they cannot rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scaling_script_reports_every_cell_and_loses_nothing(tmp_path, capsys):
    scaling = _load("scaling")
    out = tmp_path / "scaling.json"
    rc = scaling.main(["--pairs", "1", "2", "--seconds", "0.05", "--repeat", "1", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["info"]["cpus"] >= 1 and "gil_enabled" in data["info"]
    cells = {(r["pairs"], r["impl"]) for r in data["results"]}
    assert cells == {(k, name) for k in (1, 2) for name in scaling.IMPLS}
    for r in data["results"]:
        assert r["items"] > 0
        assert r["lost"] == 0 and r["duplicated"] == 0
        assert r["delivered"] == r["items"]
    assert "C / Queue" in capsys.readouterr().out
