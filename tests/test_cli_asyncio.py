"""`python -m bufmgr bench --scenario asyncio`: the asyncio rows run, every
installed implementation moves every item, and the targets are reported
(sizes shrunk: this checks the harness, not the speed)."""

from __future__ import annotations

import json

import pytest

from bufmgr.cli import aiobench, main


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(aiobench, "ITEMS", (300, 300))
    monkeypatch.setattr(aiobench, "REPEATS", (1, 1))
    monkeypatch.setattr(aiobench, "LATENCY_SAMPLES", (10, 10))
    monkeypatch.setattr(aiobench, "LATENCY_IDLE_S", 0.0)


def test_bench_scenario_asyncio_prints_every_row_and_the_targets(small, capsys, tmp_path):
    out_json = tmp_path / "aio.json"
    rc = main(["bench", "--scenario", "asyncio", "--quick", "--no-progress", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0, out
    names = [a.name for a in aiobench.adapters()]
    for sc in aiobench.SCENARIOS:
        for name in names:
            if aiobench.applicable(next(a for a in aiobench.adapters() if a.name == name), sc):
                line = next((ln for ln in out.splitlines() if ln.startswith(sc) and name in ln), None)
                assert line is not None and "error" not in line, (sc, name, out)
    assert "call_soon_threadsafe" in out and "wake-paired" in out
    assert "target wake p50 within 10%" in out
    rows = json.loads(out_json.read_text())["asyncio"]
    assert all(r["error"] is None for r in rows), rows
    expected = {"thread->coro", "coro->thread", "coro->coro", "wake", "wake-paired"}
    if "bufmgr SharedFrameRing" in names:  # Linux, compiled: its rows from another process too
        expected |= set(aiobench.PROCESS_SCENARIOS)
    assert {r["scenario"] for r in rows} == expected
    # the main table's scenarios did not run
    assert "[pair]" not in out and "[threads" not in out
