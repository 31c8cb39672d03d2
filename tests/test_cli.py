"""The command line as a user runs it: ``python -m bufmgr bench|demo`` in a subprocess.

No timing assertions: these check that every row and field is there, that
bad options are refused the argparse way, and that bufmgr never loses a
frame (delivered + counted drops account for every accepted item).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Run the CLI where the *imported* bufmgr lives (site-packages after
# `pip install .`): from the checkout, `python -m` would put the uncompiled
# source tree first on sys.path.
import bufmgr  # noqa: E402

PKG_PARENT = Path(bufmgr.__file__).resolve().parent.parent
NO_EXTENSIONS = os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0")
HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
RUN_TIMEOUT_S = 120

SCENARIOS_QUICK = ["pair", "timeout", "threads-2x2-audio", "threads-2x2-64k", "threads-2x2-frame"]
QUEUE_LABELS = ["FrameQueue (C)", "FrameQueue (pure)", "queue.Queue", "queue.SimpleQueue"]
MANAGER_LABELS = ["BufferManager", "baseline manager"]
ROWS = {
    "pair": QUEUE_LABELS + ["deque(maxlen)"],
    "timeout": QUEUE_LABELS + MANAGER_LABELS,
    "threads-2x2-audio": QUEUE_LABELS + MANAGER_LABELS,
    "threads-2x2-64k": QUEUE_LABELS + MANAGER_LABELS,
    "threads-2x2-frame": QUEUE_LABELS + MANAGER_LABELS,
}


def run_cli(*args: str, env: dict | None = None, code: str | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.pop("COLUMNS", None)
    if env:
        full_env.update(env)
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "bufmgr", *args]
    return subprocess.run(
        cmd,
        cwd=PKG_PARENT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def threaded_rows(block: str) -> dict[str, dict[str, str]]:
    """Cells of each row of a threaded table, by column name ('' = the LOST marker)."""
    lines = block.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.strip().startswith("implementation"))
    names = re.split(r"\s{2,}", lines[head].strip())
    rows = {}
    for ln in lines[head + 2 :]:
        cells = re.split(r"\s{2,}", ln.strip())
        if len(cells) >= len(names):
            rows[cells[0]] = dict(zip(names + [""], cells))
    return rows


def count(cell: str) -> int:
    return int(cell.rstrip("*").replace(",", ""))


def section(stdout: str, key: str) -> str:
    """The table block of one scenario (from its [key] line to the next blank line)."""
    start = stdout.index(f"[{key}]")
    end = stdout.find("\n\n", start)
    return stdout[start : end if end != -1 else None]


# --------------------------------------------------------------------------
# bench --quick (one run, shared by the table and JSON checks)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = run_cli("bench", "--quick", "--json", str(out))
    return proc, out


def test_bench_quick_exits_0_and_prints_every_row(quick_run):
    proc, _ = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "higher is better" in out and "vs Queue" in out
    for key in SCENARIOS_QUICK:
        block = section(out, key)
        for label in ROWS[key]:
            line = next((ln for ln in block.splitlines() if ln.strip().startswith(label)), None)
            assert line is not None, f"row {label!r} missing from [{key}]:\n{block}"
            assert "ERROR" not in line, line
            if label == "FrameQueue (C)" and NO_EXTENSIONS:
                assert "n/a" in line
            else:
                assert "/s" in line, line  # an absolute figure
                assert "x" in line.split("/s", 1)[1], line  # and a ratio
    # threaded rows: items = delivered + dropped + lost, all from the one run shown
    starred = False
    for key in SCENARIOS_QUICK[2:]:
        block = section(out, key)
        assert "producers put for" in block.splitlines()[0]  # time-boxed, not a fixed count
        rows = threaded_rows(block)
        # the compiled row is a bare "n/a" without the extension (checked above)
        measured = [r for r in ROWS[key] if not (NO_EXTENSIONS and r == "FrameQueue (C)")]
        assert sorted(rows) == sorted(measured), block
        for label, cells in rows.items():
            items, delivered, dropped, lost = (count(cells[c]) for c in ("items", "delivered", "dropped", "lost"))
            assert items == delivered + dropped + lost, (key, cells)
            assert items > 0 and delivered > 0, (key, cells)
            assert ("<-- LOST" in cells.get("", "")) == (lost > 0), (key, cells)
            if label in ("BufferManager", "FrameQueue (C)", "FrameQueue (pure)"):
                assert lost == 0 and not cells["dropped"].endswith("*"), (key, cells)
            if cells["dropped"].endswith("*"):
                assert label == "baseline manager", (key, cells)
                starred = True
    if starred:
        assert "*not counted by the replaced manager: the application cannot see these drops" in out
    assert "bufmgr lost frames: 0" in out
    assert "LOST FRAMES (a bufmgr bug" not in out


def test_bench_progress_is_quiet_when_stderr_is_not_a_tty(quick_run):
    proc, _ = quick_run
    assert "\r" not in proc.stderr
    assert "[#" not in proc.stderr


def test_bench_json_is_valid_and_complete(quick_run):
    proc, path = quick_run
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {path}" in proc.stdout
    data = json.loads(path.read_text())
    assert data["python_version"].count(".") == 2
    assert data["python_implementation"]
    assert isinstance(data["cpu_count"], int) and data["cpu_count"] >= 1
    env = data["environment"]
    for key in ("bufmgr_version", "frame_queue_implementation", "platform", "python_version"):
        assert env[key]
    assert env["frame_queue_implementation"] == ("python" if NO_EXTENSIONS else "c")
    assert data["options"]["quick"] is True
    assert [s["key"] for s in data["scenarios"]] == SCENARIOS_QUICK

    rows = {(r["scenario"], r["implementation"]): r for r in data["results"]}
    for key, labels in ROWS.items():
        for label in labels:
            r = rows[(key, label)]
            for field in ("throughput", "ns_per_op", "ratio_vs_queue", "available", "unit", "error"):
                assert field in r
            if label == "FrameQueue (C)" and NO_EXTENSIONS:
                assert r["available"] is False and r["throughput"] is None
                continue
            assert r["available"] is True and not r["error"], r
            assert r["throughput"] > 0 and r["ns_per_op"] > 0
            assert r["ratio_vs_queue"] > 0
            if label in MANAGER_LABELS:
                assert r["ratio_vs_baseline"] > 0
            if key.startswith("threads"):
                for field in ("delivered", "dropped", "dropped_uncounted", "lost", "accepted", "attempted"):
                    assert isinstance(r[field], int), (field, r)
                assert r["delivered"] > 0
                # nothing disappears without a count: delivered + dropped + lost == attempted
                assert r["delivered"] + r["dropped"] + r["lost"] == r["attempted"], r
                assert r["attempted"] == r["accepted"] + r["extra"]["refused"], r
                assert r["lost"] == r["extra"]["lost_race"] + r["extra"]["lost_unaccounted"], r
                assert r["extra"]["reported_run"] == "the only timed run"  # --quick
                for other in r["extra"]["other_runs"]:  # the warm-up run, accounted the same way
                    assert other["delivered"] + other["dropped"] + other["lost"] == other["items"], other
                if r["ours"]:
                    assert r["lost"] == 0 and r["dropped_uncounted"] == 0, r
                    assert r["delivered"] + r["dropped"] == r["attempted"], r
                    assert all(o["lost"] == 0 for o in r["extra"]["other_runs"]), r
                if label == "baseline manager":
                    # its evictions are real drops, just invisible to the application
                    assert r["dropped_uncounted"] == r["extra"]["evicted"], r
                    assert r["lost"] >= r["extra"]["lost_race"], r
        assert rows[(key, "queue.Queue")]["ratio_vs_queue"] == pytest.approx(1.0)
    assert data["lost_in_bufmgr"] == 0


def test_bench_without_the_c_extension_shows_na():
    proc = run_cli("bench", "--quick", "--scenario", "pair", env={"BUFMGR_NO_EXTENSIONS": "1"})
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in section(proc.stdout, "pair").splitlines() if "FrameQueue (C)" in ln)
    assert "n/a" in line and "BUFMGR_NO_EXTENSIONS" in line
    assert "python implementation" in proc.stdout


def test_bench_more_threads_and_selected_payload():
    proc = run_cli(
        "bench", "--quick", "--scenario", "threads", "--threads", "1x3", "--payload", "audio",
        "--items", "3000", "--impl", "queue", "--impl", "frame-py", "--impl", "manager",
    )
    assert proc.returncode == 0, proc.stderr
    block = section(proc.stdout, "threads-1x3-audio")
    assert "1 producers x 3 consumers" in block and "3,000 items" in block
    rows = threaded_rows(block)
    assert sorted(rows) == ["BufferManager", "FrameQueue (pure)", "queue.Queue"]
    for cells in rows.values():  # --items: exactly that many in the run shown, not summed over runs
        assert count(cells["items"]) == 3000, cells
        assert count(cells["delivered"]) + count(cells["dropped"]) + count(cells["lost"]) == 3000, cells
    assert "SimpleQueue" not in proc.stdout


def test_accounting_of_one_run():
    """delivered / dropped / lost from raw counts, for the baseline's race and for bufmgr."""
    from bufmgr.cli.bench import _Trial, account

    def trial(**kw):
        base = dict(seconds=1.0, attempted=100, accepted=100, refused=0, evicted=0, evicted_counted=True,
                    delivered=100, unique=100, race_failures=0, hung=False, errors=[])
        base.update(kw)
        return _Trial(**base)

    # bufmgr drop_oldest: 70 evicted and counted, 30 delivered
    a = account(trial(evicted=70, delivered=30, unique=30))
    assert (a["items"], a["delivered"], a["dropped"], a["dropped_uncounted"], a["lost"]) == (100, 30, 70, 0, 0)
    # the baseline: 60 silent evictions, 3 puts lost to the race (put_buffer returned False),
    # 1 refused for another reason, 2 accepted and never seen again
    a = account(trial(accepted=96, refused=4, race_failures=3, evicted=60, evicted_counted=False,
                      delivered=34, unique=34))
    assert a["delivered"] == 34
    assert a["dropped"] == 61 and a["dropped_uncounted"] == 60
    assert a["lost"] == 5 and a["lost_race"] == 3 and a["lost_unaccounted"] == 2
    assert a["delivered"] + a["dropped"] + a["lost"] == a["items"] == 100
    # a duplicate is reported, not hidden
    a = account(trial(delivered=101, unique=100))
    assert a["duplicates"] == 1 and a["lost"] == 0


# --------------------------------------------------------------------------
# --plot


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib not installed")
def test_bench_plot_writes_png(tmp_path):
    png = tmp_path / "bench.png"
    proc = run_cli("bench", "--quick", "--scenario", "pair", "--scenario", "timeout", "--plot", str(png))
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5000
    assert f"wrote {png}" in proc.stdout


def _plot_results():
    from bufmgr.cli import bench

    long_title = ("2 producers x 2 consumers, blocking, 1,920 B audio chunk by reference, "
                  "queue maxsize 1000, producers put for 0.15 s")

    def threaded(name, key, delivered, dropped, lost=0):
        return bench.Result(
            scenario="threads-2x2-audio", scenario_title=long_title, kind="threads",
            implementation=name, impl_key=key, unit="items/s", seconds=0.5,
            attempted=delivered + dropped + lost, accepted=delivered + dropped,
            delivered=delivered, dropped=dropped, lost=lost,
            throughput=(delivered + dropped) / 0.5,
        )

    return [
        threaded("FrameQueue (C)", "frame-c", 1_000_000, 0),
        threaded("BufferManager", "manager", 46_000, 1_954_000),  # 97.7% dropped
        threaded("baseline manager", "baseline", 50_000, 30_000, lost=3),
        bench.Result(scenario="threads-2x2-64k", scenario_title=long_title.replace("1,920 B", "64 KiB"),
                     kind="threads", implementation="FrameQueue (C)", impl_key="frame-c",
                     unit="items/s", seconds=0.5, attempted=10, accepted=10, delivered=10,
                     dropped=0, lost=0, throughput=20.0),
    ]


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib not installed")
def test_bench_plot_shows_drops_and_keeps_titles_inside_their_panel():
    import matplotlib.pyplot as plt

    from bufmgr.cli import bench

    fig = bench.plot_figure(_plot_results(), "title")
    try:
        fig.canvas.draw()
        left, right = fig.axes[0], fig.axes[1]
        # titles wrapped: each stays within its own panel's column
        renderer = fig.canvas.get_renderer()
        t_left = left.title.get_window_extent(renderer)
        assert t_left.x1 < right.get_window_extent(renderer).x0
        assert right.title.get_window_extent(renderer).x1 <= fig.bbox.x1
        # stacked bars: per row delivered (solid), dropped, lost; the manager
        # row's delivered part is its delivered rate, not what it accepted
        rows = {t.get_text(): t for t in left.get_yticklabels()}
        assert set(rows) == {"FrameQueue (C)", "BufferManager", "baseline manager"}
        y = rows["BufferManager"].get_position()[1]
        parts = sorted((p.get_x(), p.get_width()) for p in left.patches
                       if abs(p.get_y() + p.get_height() / 2 - y) < 1e-6)
        assert len(parts) == 3
        (x0, delivered), (x1, dropped), (x2, lost) = parts
        assert delivered == pytest.approx(46_000 / 0.5) and x1 == pytest.approx(x0 + delivered)
        assert dropped == pytest.approx(1_954_000 / 0.5) and lost == 0
        labels = [t.get_text() for t in left.texts]
        assert any("97.7% dropped" in t for t in labels), labels
        assert any("LOST 3" in t for t in labels), labels
    finally:
        plt.close(fig)


def test_bench_plot_without_matplotlib_explains_itself(tmp_path):
    png = tmp_path / "bench.png"
    # what a user without matplotlib sees: the import is made to fail
    code = (
        "import sys; sys.modules['matplotlib'] = None; "
        "from bufmgr.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = run_cli("bench", "--quick", "--plot", str(png), code=code)
    assert proc.returncode == 2
    assert "matplotlib" in proc.stderr and "pip install" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not png.exists()
    assert proc.stdout == ""  # refused up front, before minutes of benchmarking


# --------------------------------------------------------------------------
# bad options


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["bench", "--threads", "2y2"], "PxC"),
        (["bench", "--threads", "0x2"], "1..64"),
        (["bench", "--payload", "huge"], "invalid choice"),
        (["bench", "--scenario", "nope"], "invalid choice"),
        (["bench", "--items", "0"], "positive integer"),
        (["bench", "--repeat", "many"], "positive integer"),
        (["bench", "--quick", "extra"], "unrecognized arguments"),
        (["demo", "--rate", "-5"], "positive number"),
        (["demo", "--duration", "nan"], "positive number"),
        (["demo", "--payload", "3"], "at least"),
        (["demo", "--payload", "lots"], "payload must be"),
        (["demo", "--policy", "drop_all"], "invalid choice"),
        (["demo", "--slow", "capture"], "invalid choice"),
        (["demo", "--capacity", "0"], "capacity"),
    ],
)
def test_bad_options_get_argparse_errors(args, needle):
    proc = run_cli(*args)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
    assert "usage:" in proc.stderr
    assert "error:" in proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("cmd", [["bench", "--quick", "--json"], ["bench", "--quick", "--plot"], ["demo", "--json"]])
def test_unwritable_output_is_refused_up_front(tmp_path, cmd):
    target = str(tmp_path / "no-such-dir" / "out.file")
    proc = run_cli(*cmd, target)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_help_and_version():
    proc = run_cli("bench", "--help")
    assert proc.returncode == 0
    for opt in ("--quick", "--json", "--plot", "--threads", "--payload"):
        assert opt in proc.stdout
    proc = run_cli("demo", "--help")
    assert proc.returncode == 0
    for opt in ("--rate", "--payload", "--duration", "--policy", "--slow"):
        assert opt in proc.stdout
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("bufmgr ")


def test_console_script_entry_point_is_main():
    from bufmgr.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0


# --------------------------------------------------------------------------
# demo


def test_demo_with_a_slowed_stage_drops_and_loses_nothing(tmp_path):
    out = tmp_path / "demo.json"
    proc = run_cli("demo", "--duration", "2", "--slow", "processing", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads(out.read_text())
    assert s["lost"] == 0
    assert s["dropped"] > 0
    assert s["dropped_by_queue"]["capture_left"] > 0 and s["dropped_by_queue"]["capture_right"] > 0
    assert s["produced"] == s["delivered"] + s["dropped"] + s["refused"] + s["cleared"] + s["left_queued"]
    assert s["in_order"] and s["duplicates"] == 0 and s["bad_payloads"] == 0
    assert s["latency_ms"]["p50"] is not None and s["latency_ms"]["p99"] >= s["latency_ms"]["p50"]
    text = proc.stdout
    assert "dropped" in text and "capture_left" in text
    assert "lost               0" in text
    assert "p50" in text and "p99" in text
    # stderr is not a terminal: plain status lines, never carriage returns
    assert "\r" not in proc.stderr
    assert "capture" in proc.stderr and "/s" in proc.stderr


@pytest.mark.parametrize("policy", ["block", "drop_newest"])
def test_demo_policies_account_for_every_frame(tmp_path, policy):
    out = tmp_path / "demo.json"
    proc = run_cli(
        "demo", "--duration", "1", "--rate", "300", "--policy", policy, "--slow", "storage",
        "--capacity", "8", "--no-status", "--json", str(out),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads(out.read_text())
    assert s["lost"] == 0, s
    assert s["in_order"] and s["duplicates"] == 0
    assert proc.stderr == ""  # --no-status, and refused puts are counted, not logged


def test_demo_frames_payload(tmp_path):
    out = tmp_path / "demo.json"
    proc = run_cli("demo", "--payload", "frame", "--rate", "30", "--duration", "0.5", "--no-status", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads(out.read_text())
    assert s["options"]["payload_bytes"] == 1920 * 1080 * 3
    assert s["lost"] == 0 and s["delivered"] > 0


# --------------------------------------------------------------------------
# progress widgets (in-process)


class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_draws_only_on_a_tty():
    from bufmgr.cli.progress import ProgressBar

    plain = io.StringIO()
    with ProgressBar(3, stream=plain) as bar:
        bar.advance(label="x")
    assert plain.getvalue() == ""

    tty = _TTY()
    with ProgressBar(2, stream=tty, min_interval=0) as bar:
        bar.advance(label="scenario a")
        bar.advance(label="scenario b")
    text = tty.getvalue()
    assert "\r" in text and "2/2" in text and "scenario b" in text
    assert text.endswith("\r")  # the line is blanked at the end
    assert text.rstrip("\r").endswith(" " * 10)


def test_status_line_redraws_in_place_on_a_tty_and_prints_lines_elsewhere():
    from bufmgr.cli.progress import StatusLine

    tty = _TTY()
    st = StatusLine(stream=tty)
    st.update("one")
    st.update("two")
    st.close()
    assert tty.getvalue().count("\r") >= 3 and "\n" not in tty.getvalue()

    plain = io.StringIO()
    st = StatusLine(stream=plain, plain_interval=3600)
    st.update("first")
    st.update("second")  # rate-limited
    st.close()
    assert plain.getvalue() == "first\n"


def interrupt_demo(tmp_path, *options: str, start_s: float = 30.0) -> tuple[int, str, dict | None]:
    """Start a 60 s ``bufmgr demo`` (with ``options``) writing --json, wait
    for its first status line (at most ``start_s``), Ctrl-C it: its exit
    status, stdout and the summary it wrote (None if none). Bounded: killed
    if it hangs."""
    import signal
    import time

    out = tmp_path / "demo.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bufmgr", "demo", *options, "--duration", "60", "--json", str(out)],
        cwd=PKG_PARENT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the first plain status line on stderr means the pipeline is running
        status = re.compile(r"^\s*\d+\.\ds  capture ")
        line = ""
        deadline = time.monotonic() + start_s
        while not status.match(line) and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
        assert status.match(line), f"no status line: {line!r}"
        proc.send_signal(signal.SIGINT)  # to the parent only: it stops capture, the rest drains
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, stdout, json.loads(out.read_text()) if out.exists() else None


def test_demo_ctrl_c_stops_early_and_still_accounts(tmp_path):
    if sys.platform == "win32":
        pytest.skip("SIGINT delivery to a child differs on Windows")
    returncode, stdout, s = interrupt_demo(tmp_path)
    assert returncode == 0, stdout
    assert "stopped early by Ctrl-C" in stdout
    assert s["lost"] == 0 and s["produced"] < 60 * 200 * 2


def test_packaging_lists_the_cli_subpackage():
    """`python -m bufmgr bench` from an installed wheel needs bufmgr.cli in it."""
    tomllib = pytest.importorskip("tomllib")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools_cfg = cfg.get("tool", {}).get("setuptools", {})
    packages = setuptools_cfg.get("packages")
    if not isinstance(packages, list):
        pytest.skip("packages are discovered (find:), not listed")
    subpackages = sorted(
        ".".join(p.relative_to(ROOT).parts[:-1]) for p in (ROOT / "bufmgr").rglob("__init__.py")
    )
    missing = [name for name in subpackages if name not in packages]
    assert not missing, f"pyproject.toml [tool.setuptools] packages misses {missing}"
