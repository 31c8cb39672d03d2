"""``python -m bufmgr bench --scenario processes``: the harness and its integrity checks.

The checks that decide whether a transport lost, duplicated, tore or
reordered frames are tested here on crafted input (they must be able to
fail), and the command is run as a user runs it on a few cheap rows. No
timing assertions: speed is what the command reports, not what tests check.
"""

from __future__ import annotations

import json
import os
import queue
import struct
import sys

import pytest

from bufmgr.cli import procs
from test_cli import interrupt_demo, run_cli, section, threaded_rows  # noqa: F401  (tests/ is on sys.path)


def _item(seq: int, nbytes: int = 64, tail: int | None = None) -> bytes:
    a, b, c = procs.stamp_offsets(nbytes)
    buf = bytearray(nbytes)
    struct.pack_into("<Q", buf, a, seq)
    struct.pack_into("<Q", buf, b, seq)
    struct.pack_into("<Q", buf, c, seq if tail is None else tail)
    return bytes(buf)


def _consume(items: list, payload: str = "64b") -> procs._Consumer:
    """Run the mp-queue consumer loop in this process over a plain queue."""
    q: queue.Queue = queue.Queue()
    for it in items:
        q.put(it)
    spec = procs.RowSpec("mp-queue", payload, 1, 8)
    cons = procs._Consumer(spec, q)
    return cons


def test_stamp_offsets_cover_head_middle_and_tail():
    assert procs.stamp_offsets(64) == (0, 32, 56)
    a, b, c = procs.stamp_offsets(procs.FRAME_BYTES)
    assert a == 0 and c == procs.FRAME_BYTES - 8 and b % 8 == 0 and a < b < c
    with pytest.raises(ValueError, match="at least 24"):
        procs.stamp_offsets(16)
    # the small-item packer writes exactly the three stamps
    assert procs._small_struct(64).pack(7, 7, 7) == _item(7)


def test_consumer_counts_good_items_and_stops_at_markers():
    cons = _consume([_item(0), _item(1), "mark", _item(2), None])
    assert cons.consume() == "mark"
    assert (cons.delivered, cons.torn, cons.disorder) == (2, 0, 0)
    assert cons.consume() == "end"
    assert cons.delivered == 3 and list(cons.seqs) == [0, 1, 2]


def test_consumer_detects_torn_short_and_reordered_items():
    cons = _consume([_item(0), _item(1, tail=99), _item(2)[:40], _item(5), _item(4), _item(4), None])
    assert cons.consume() == "end"
    assert cons.delivered == 6
    assert cons.torn == 2  # tail stamp disagrees; wrong length
    assert cons.disorder == 2  # 4 after 5, then 4 again
    assert list(cons.seqs) == [0, 1, 2, 5, 4, 4]


def _blocks(*seqs: list[int]) -> list[bytes]:
    import array

    return [array.array("Q", s).tobytes() for s in seqs]


def test_accounting_finds_loss_duplicates_and_phantoms():
    ok = procs.account(procs.Accounting(produced=6), _blocks([0, 2, 4], [1, 3, 5]), None)
    assert ok.ok and ok.unique == 6 and ok.lost == 0 and ok.duplicates == 0

    lost = procs.account(procs.Accounting(produced=6), _blocks([0, 2], [1, 3, 5]), None)
    assert not lost.ok and lost.lost == 1

    dup = procs.account(procs.Accounting(produced=4), _blocks([0, 1, 3], [1, 2]), None)
    assert not dup.ok and dup.duplicates == 1 and dup.lost == 0

    phantom = procs.account(procs.Accounting(produced=3), _blocks([0, 1, 2, 7]), None)
    assert not phantom.ok and phantom.out_of_range == 1

    # a ring's own drop counter explains what was not delivered
    dropped = procs.account(procs.Accounting(produced=5), _blocks([0, 3, 4]), {"dropped": 2})
    assert dropped.ok and dropped.dropped == 2 and dropped.lost == 0


def test_row_integrity_flag_and_targets():
    rows = [
        procs.Row("copyto", "floor", "frame", procs.FRAME_BYTES, 0, 8, throughput=1000.0),
        procs.Row("mp-queue", "q", "frame", procs.FRAME_BYTES, 1, 8, throughput=50.0, lost=0),
        procs.Row("ring-copy", "r", "frame", procs.FRAME_BYTES, 1, 8, throughput=900.0, lost=0),
        procs.Row("ring-reserve", "rr", "frame", procs.FRAME_BYTES, 1, 8, throughput=40_000.0),
        procs.Row("faster-fifo", "ff", "64b", 64, 1, 1024, throughput=100_000.0),
        procs.Row("ring-copy", "r", "64b", 64, 1, 1024, throughput=1_200_000.0),
    ]
    procs.fill_ratios(rows)
    assert rows[2].vs_floor == pytest.approx(0.9) and rows[2].vs_mp_queue == pytest.approx(18.0)
    tg = {t.label: t for t in procs.targets(rows)}
    copy_t = next(t for k, t in tg.items() if k.startswith("6 MB frames"))
    assert copy_t.met is True
    reserve_t = next(t for k, t in tg.items() if "reserve" in k and "1080p" in k)
    assert reserve_t.met is False  # 40k < 50k: a miss is reported as a miss
    ff_t = next(t for k, t in tg.items() if "put+get vs faster-fifo" in k)
    assert ff_t.value == pytest.approx(12.0) and ff_t.met is True
    assert not any(r.integrity_failed for r in rows)
    rows[1].duplicates = 1
    assert rows[1].integrity_failed
    assert "INTEGRITY FAILURES" in procs.format_table(rows)


def test_copy_in_target_and_the_pipelined_copy_bound():
    # a ring at the two-destination bound: the issue's target is missed, and
    # the reference lines say what bounds it (ring vs copyto-2dst, copyto-2dst vs copyto)
    rows = []
    for transport, throughput in (("copyto", 1000.0), ("copyto-2dst", 670.0), ("copyto-8dst", 500.0), ("ring-copy", 670.0),
                                  ("copyto-2shm", 600.0)):
        rows.append(procs._new_row(transport, "frame", 1, None))
        rows[-1].throughput = throughput
    procs.fill_ratios(rows)
    assert rows[1].vs_floor == pytest.approx(0.67)  # the 2-dst row's "vs floor" is the bound itself
    tg = procs.targets(rows)
    issue = "6 MB frames: SharedFrameRing put+get (copy in, read in place) vs numpy.copyto"
    copy_t = next(t for t in tg if t.label == issue)  # issue 13's words, unchanged
    assert copy_t.bound == 0.8 and copy_t.value == pytest.approx(0.67) and copy_t.met is False
    two = next(t for t in tg if "(copyto-2dst)" in t.label)
    assert two.value == pytest.approx(1.0) and two.bound is None and two.met is None
    cold = next(t for t in tg if "(copyto-8dst)" in t.label)
    assert cold.value == pytest.approx(1.34) and cold.met is None
    bound = [t for t in tg if t.label == procs.PIPELINED_BOUND]
    assert len(bound) == 1 and bound[0].value == pytest.approx(0.67)
    two_shm = next(t for t in tg if "(copyto-2shm)" in t.label)  # the bound on the ring's pages
    assert two_shm.value == pytest.approx(670.0 / 600.0) and two_shm.met is None
    bound_shm = [t for t in tg if t.label == procs.PIPELINED_BOUND_SHM]
    assert len(bound_shm) == 1 and bound_shm[0].value == pytest.approx(0.6) and bound_shm[0].met is None
    text = procs.format_table(rows)
    (line,) = [ln for ln in text.splitlines() if issue in ln]
    assert "0.67x" in line and "(target >= 0.8x)" in line and line.rstrip().endswith("MISSED")
    (line,) = [ln for ln in text.splitlines() if "(copyto-2dst)" in ln]
    assert "1.00x" in line and "no target" in line and "met" not in line and "MISSED" not in line
    (line,) = [ln for ln in text.splitlines() if procs.PIPELINED_BOUND in ln]
    assert "0.67x" in line
    assert any(procs.TRANSPORTS["copyto-2dst"] in ln and "0.67x" in ln for ln in text.splitlines())  # the row
    # a miss never rounds up to the bound it missed
    rows[3].throughput = 798.0
    procs.fill_ratios(rows)
    (line,) = [ln for ln in procs.format_table(rows).splitlines() if issue in ln]
    assert "0.798x" in line and line.rstrip().endswith("MISSED")
    # without the 2-dst row there is nothing to print the bound from
    tg = procs.targets([r for r in rows if r.transport != "copyto-2dst"])
    assert not any("copyto-2dst" in t.label for t in tg) and any(t.label == issue for t in tg)


@pytest.mark.skipif(procs.np is None, reason="the floor rows need numpy")
@pytest.mark.parametrize("transport, destinations",
                         [("copyto", 1), ("copyto-2dst", 2), ("copyto-2shm", 2), ("copyto-8dst", 8)])
def test_floor_rows_copy_into_their_destinations_in_turn(transport, destinations):
    p = procs._Producer(procs.RowSpec(transport, "64b", 0, 8), None)
    n = 2 * destinations + 1
    p.produce(0, n)
    dsts = p.destinations
    assert len(dsts) == destinations and p.bad == 0
    assert not any(procs.np.shares_memory(d, e) for i, d in enumerate(dsts) for e in dsts[i + 1 :])
    for i, d in enumerate(dsts):
        last = max(seq for seq in range(n) if seq % destinations == i)  # the last frame copied into d
        assert [procs.STAMP.unpack_from(d, off)[0] for off in procs.stamp_offsets(64)] == [last] * 3
    del dsts, d
    if transport in procs.FLOORS_ON_SHM:  # its destinations live in one /dev/shm segment ...
        path = os.path.join("/dev/shm", p.segment_name.lstrip("/"))
        assert os.path.exists(path)
        p.cleanup()
        assert not os.path.exists(path)  # ... which cleanup removes
    else:
        p.cleanup()


def test_dev_shm_pages_reads_the_mount_and_the_overrides():
    never = "tmpfs /dev/shm tmpfs rw,nosuid,nodev,size=24684084k 0 0\nproc /proc proc rw 0 0\n"
    advise = "tmpfs /dev/shm tmpfs rw,relatime,size=24684084k,huge=advise 0 0\n"
    default = "always within_size advise [never] deny force\n"
    assert procs.dev_shm_pages(never, default) == "4 KiB (/dev/shm huge=never)"
    assert procs.dev_shm_pages(advise, default) == "2 MiB for frames >= 2 MiB (/dev/shm huge=advise)"
    # the sysfs knob's own values do not apply to a mount; deny and force override every mount
    assert procs.dev_shm_pages(never, "always within_size [advise] never deny force").startswith("4 KiB")
    assert procs.dev_shm_pages(never, "always within_size advise never deny [force]").startswith("2 MiB")
    assert procs.dev_shm_pages(advise, "always within_size advise never [deny] force").startswith("4 KiB")
    assert procs.dev_shm_pages(never + advise, default).startswith("2 MiB")  # the last mount on top wins
    assert procs.dev_shm_pages("proc /proc proc rw 0 0\n", default).startswith("unknown")
    assert procs.dev_shm_pages() != ""  # this machine's, whatever it is


def test_numpy_frame_pages_reads_thp_and_numpys_madvise():
    assert procs.numpy_frame_pages("always [madvise] never\n", True) == "2 MiB (THP madvise)"
    assert procs.numpy_frame_pages("always [madvise] never\n", False) == "4 KiB (THP madvise)"
    assert procs.numpy_frame_pages("[always] madvise never\n", False) == "2 MiB (THP always)"
    assert procs.numpy_frame_pages("always madvise [never]\n", True) == "4 KiB (THP never)"
    assert procs.numpy_frame_pages("garbage", True) == "unknown"
    assert procs.numpy_frame_pages() != ""  # this machine's, whatever it is


def test_bench_processes_cli_accounts_for_every_item(tmp_path):
    out = tmp_path / "procs.json"
    transports = ["mp-queue", "shm-index", "shm-index-inplace", "copyto", "copyto-2dst", "copyto-2shm", "ring-copy",
                  "ring-reserve"]
    args = ["bench", "--scenario", "processes", "--quick", "--proc-payload", "64b",
            "--consumers", "1", "--consumers", "2", "--json", str(out)]
    for t in transports:
        args += ["--transport", t]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    for key in ("processes-64b-1x1", "processes-64b-1x2"):
        block = section(text, key)
        for t in transports:
            assert procs.TRANSPORTS[t] in block, (t, block)
    assert "integrity: every item accounted for" in text
    data = json.loads(out.read_text())["processes"]
    rows = data["results"]
    assert {(r["transport"], r["consumers"]) for r in rows} == {
        (t, c) for t in transports for c in ((0,) if t in procs.FLOORS else (1, 2))
    }
    for r in rows:
        if procs.unavailable(r["transport"], "64b"):  # no SharedFrameRing, or no numpy for the floor
            assert r["available"] is False and r["note"].startswith("n/a"), r
            continue
        assert r["available"] and not r["error"], r
        assert r["throughput"] > 0 and r["items_per_round"] > 0
        assert r["produced"] == r["delivered"] + r["dropped"] + r["lost"], r
        assert r["lost"] == 0 and r["duplicates"] == 0 and r["torn"] == 0 and r["disorder"] == 0, r
        if r["consumers"] == 2:
            assert len(r["per_consumer"]) == 2 and sum(r["per_consumer"]) == r["delivered"]
        if r["transport"] != "mp-queue" and r["transport"] not in procs.FLOORS:
            assert r["vs_mp_queue"] > 0
    assert data["integrity_failures"] == 0
    assert data["dev_shm_pages"] == procs.dev_shm_pages()
    assert data["numpy_frame_pages"] == procs.numpy_frame_pages()
    labels = [t["label"] for t in data["targets"]]
    if not procs.unavailable("ring-reserve", "64b"):
        assert any("faster-fifo" not in lab and "reserve" in lab for lab in labels)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["bench", "--scenario", "processes", "--consumers", "0"], "1..16"),
        (["bench", "--scenario", "processes", "--transport", "pigeon"], "invalid choice"),
        (["bench", "--scenario", "processes", "--proc-payload", "huge"], "invalid choice"),
    ],
)
def test_bench_processes_bad_options(args, needle):
    proc = run_cli(*args)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_bench_processes_refuses_plot(tmp_path):
    proc = run_cli("bench", "--scenario", "processes", "--plot", str(tmp_path / "p.png"))
    assert proc.returncode == 2 and "--plot" in proc.stderr


# --------------------------------------------------------------------------
# demo --processes

NO_SHARED_RING = procs.unavailable("ring-copy", "64b")
needs_shared_ring = pytest.mark.skipif(bool(NO_SHARED_RING), reason=NO_SHARED_RING or "")


def _shm_path(name: str):
    from pathlib import Path

    return Path("/dev/shm") / name.lstrip("/")


def _check_demo_summary(s: dict) -> None:
    assert s["lost"] == 0, s
    assert s["in_order"] and s["duplicates"] == 0 and s["bad_payloads"] == 0, s
    assert s["errors"] == [], s["errors"]
    assert s["produced"] == s["delivered"] + s["dropped"] + s["refused"] + s["cleared"] + s["left_queued"], s
    # the three stages really ran in three other processes
    pids = [int(p) for p in s["transport"].split("pids ")[1].rstrip(")").split("/")]
    assert len(set(pids)) == 3 and os.getpid() not in pids
    for name, st in s["ring_stats"].items():  # every ring's own books balance
        assert st["puts"] == st["gets"] + st["dropped"] + st["cleared"] + st["size"] + st.get("reclaimed", 0), (name, st)
        assert st["held"] == 0, (name, st)
    if sys.platform.startswith("linux"):
        for name in s["ring_names"].values():  # the creator removed every segment
            assert not _shm_path(name).exists(), name


@needs_shared_ring
def test_demo_processes_with_a_slowed_stage_drops_and_loses_nothing(tmp_path):
    out = tmp_path / "demo.json"
    proc = run_cli("demo", "--processes", "--duration", "1.5", "--slow", "processing", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads(out.read_text())
    _check_demo_summary(s)
    assert s["options"]["processes"] is True
    assert s["dropped"] > 0
    assert s["dropped_by_queue"]["capture_left"] > 0 and s["dropped_by_queue"]["capture_right"] > 0
    assert s["latency_ms"]["p50"] is not None and s["latency_ms"]["p99"] >= s["latency_ms"]["p50"]
    text = proc.stdout
    assert "SharedFrameRing" in text and "lost               0" in text and "p99" in text
    assert "\r" not in proc.stderr and "capture" in proc.stderr and "/s" in proc.stderr


@needs_shared_ring
@pytest.mark.parametrize("policy", ["block", "drop_newest"])
def test_demo_processes_policies_account_for_every_frame(tmp_path, policy):
    out = tmp_path / "demo.json"
    proc = run_cli(
        "demo", "--processes", "--duration", "1", "--rate", "300", "--policy", policy, "--slow", "storage",
        "--capacity", "8", "--no-status", "--json", str(out),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_demo_summary(json.loads(out.read_text()))
    assert proc.stderr == ""


@needs_shared_ring
def test_demo_processes_frames(tmp_path):
    out = tmp_path / "demo.json"
    proc = run_cli("demo", "--processes", "--payload", "frame", "--rate", "30", "--duration", "0.5",
                   "--no-status", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads(out.read_text())
    _check_demo_summary(s)
    assert s["options"]["payload_bytes"] == 1920 * 1080 * 3 and s["delivered"] > 0


@needs_shared_ring
def test_demo_processes_ctrl_c_stops_early_and_still_accounts(tmp_path):
    returncode, stdout, s = interrupt_demo(tmp_path, "--processes", start_s=60.0)
    assert returncode == 0, stdout
    assert "stopped early by Ctrl-C" in stdout
    _check_demo_summary(s)
    assert s["produced"] < 60 * 200 * 2


def test_demo_processes_without_the_compiled_core_says_so():
    proc = run_cli("demo", "--processes", "--duration", "0.2", env={"BUFMGR_NO_EXTENSIONS": "1"})
    assert proc.returncode == 2
    assert "compiled core" in proc.stderr and "SharedFrameRing" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
