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
        assert r["lost"] == 0 and r["duplicated"] == 0 and r["dropped"] == 0
        assert r["delivered"] == r["items"]
        assert len(r["runs"]) == 1 and r["runs"][0]["items"] == r["items"]
    assert "C / Queue" in capsys.readouterr().out


def test_scaling_script_fails_when_a_queue_loses_items(tmp_path, monkeypatch, capsys):
    """The accounting must catch a queue that silently discards items."""
    import queue

    scaling = _load("scaling")

    class Leaky(queue.Queue):
        def put(self, item, block=True, timeout=None):
            self.n = getattr(self, "n", 0) + 1
            if self.n % 100 == 0 and item is not scaling._STOP:
                return  # silently lost
            super().put(item, block, timeout)

    monkeypatch.setattr(scaling, "IMPLS", {"queue.Queue": queue.Queue, "leaky": Leaky})
    out = tmp_path / "scaling.json"
    rc = scaling.main(["--pairs", "1", "--seconds", "0.05", "--repeat", "1", "--json", str(out)])
    assert rc == 1
    rows = {r["impl"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["queue.Queue"]["lost"] == 0
    assert rows["leaky"]["lost"] == rows["leaky"]["items"] // 100 > 0
    assert "LOST" in capsys.readouterr().out
