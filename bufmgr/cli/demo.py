"""``python -m bufmgr demo``: a synthetic stereo capture pipeline through BufferManager.

::

    capture_L --> [capture_left]  --> processing_L --> [processing_left]  --> storage_L --> [storage_left]  --> consumer
    capture_R --> [capture_right] --> processing_R --> [processing_right] --> storage_R --> [storage_right] --> consumer

Two capture threads produce chunks (or frames) at a fixed rate. Every payload
starts with a header -- magic, channel, sequence number, capture timestamp --
so the end of the pipeline knows exactly which items arrived, in which order
and how late. Drops are the counts BufferManager keeps per queue; "lost" is
what no count explains (it must be 0).

``--slow STAGE`` makes one stage take ``slow-factor / rate`` seconds per item,
i.e. run at rate / F: with ``drop_oldest`` the queue in front of it fills,
then evicts its oldest items, so the latency stays bounded by the queue's
length instead of growing for as long as the overload lasts.
When capture stops, every stage drains what is left at full speed.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .progress import StatusLine, _term_width

CHANNELS = ("left", "right")
GROUPS = ("capture", "processing", "storage")  # queue after each stage
STAGES = ("capture", "processing", "storage", "consumer")

HEADER = struct.Struct("<4sBxxxQd")  # magic, channel, seq, capture time (perf_counter)
MAGIC = b"BFMD"

PAYLOAD_NAMES = {"audio": 1920, "64k": 64 * 1024, "frame": 1920 * 1080 * 3}

POLL_S = 0.05  # get_buffer timeout while waiting for an upstream stage to finish
PUT_TIMEOUT_S = 0.5  # the replaced application's put_buffer timeout
JOIN_DEADLINE_S = 60.0
DEFAULT_QUEUE_S = 0.25  # default queue length, in seconds of capture at --rate
DEVICE_BUFFER_S = 0.1  # a capture thread held up longer than this overruns the device


def parse_capacity(text: str) -> int | str:
    import argparse

    if text.strip().lower() in ("manager", "default"):
        return "manager"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"capacity must be a slot count or 'manager', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"capacity must be >= 1, got {text!r}")
    return value


def parse_payload(text: str) -> int:
    import argparse

    key = text.strip().lower()
    if key in PAYLOAD_NAMES:
        return PAYLOAD_NAMES[key]
    mult = 1
    for suffix, m in (("kib", 1024), ("k", 1024), ("mib", 1024 * 1024), ("m", 1024 * 1024), ("b", 1)):
        if key.endswith(suffix):
            key, mult = key[: -len(suffix)], m
            break
    try:
        value = int(float(key) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"payload must be audio, 64k, frame or a byte count like 4096 or 512k, got {text!r}"
        ) from None
    if value < HEADER.size:
        raise argparse.ArgumentTypeError(f"payload must be at least {HEADER.size} bytes (the header), got {text!r}")
    if value > 256 * 1024 * 1024:
        raise argparse.ArgumentTypeError(f"payload must be at most 256 MiB, got {text!r}")
    return value


def _fmt_bytes(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB" if n % 1024 else f"{n // 1024} KiB"
    return f"{n:,} B"


def _fmt_s(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "-"
    if x >= 1:
        return f"{x:.2f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.1f} ms"
    return f"{x * 1e6:.0f} us"


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of an ascending list."""
    if not sorted_values:
        return None
    k = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(k, len(sorted_values)) - 1]


@dataclass
class Counters:
    """Per stage and channel; each written by one thread only."""

    handled: dict[str, int] = field(default_factory=dict)  # items the stage passed on / produced
    refused: dict[str, int] = field(default_factory=dict)  # put_buffer returned False
    ended: dict[str, float] = field(default_factory=dict)

    def key(self, stage: str, ch: str) -> str:
        return f"{stage}_{ch}"


class CaptureSchedule:
    """When each chunk of a capture channel is due, and what a held-up capture
    loop missed (shared by the threaded and the multi-process demo).

    ``next_due(stop)`` sleeps until chunk ``seq`` is due and returns its due
    time (its capture time), or None once every chunk was captured or
    ``stop()`` says so; the caller captures chunk ``seq``, then does
    ``seq += 1``. A loop held up (a blocking put, no CPU) longer than the
    device buffer lasts has lost those chunks: they are counted in
    ``overrun`` and skipped.
    """

    def __init__(self, t0: float, rate: float, duration: float, clock: Any = time.perf_counter) -> None:
        self.t0 = t0
        self.period = 1.0 / rate
        self.n = max(1, int(round(duration * rate)))
        self.clock = clock
        self.seq = 0
        self.overrun = 0
        self.worst_behind = 0.0

    def next_due(self, stop: Any) -> float | None:
        period = self.period
        while self.seq < self.n and not stop():
            due = self.t0 + self.seq * period
            now = self.clock()
            if due > now:
                time.sleep(due - now)
            elif now - due > DEVICE_BUFFER_S:
                # the device overwrote these chunks before anyone read them:
                # skip to the chunk being captured now
                self.worst_behind = max(self.worst_behind, now - due)
                current = min(self.n, int((now - self.t0) / period))
                self.overrun += current - self.seq
                self.seq = current
                continue
            return due
        return None


class Pipeline:
    def __init__(self, args: Any) -> None:
        from bufmgr.manager import BufferManager

        self.rate = float(args.rate)
        self.duration = float(args.duration)
        self.size = int(args.payload)
        self.policy = args.policy
        self.slow = args.slow
        self.slow_factor = float(args.slow_factor)
        self.capacities = caps = capacities(args.capacity, self.rate)
        self.manager = BufferManager(queues={name: (cap, self.policy) for name, cap in caps.items()})
        self.counters = Counters()
        for stage in STAGES:
            for ch in CHANNELS:
                k = self.counters.key(stage, ch)
                self.counters.handled[k] = 0
                self.counters.refused[k] = 0
        self.latencies: dict[str, list[float]] = {ch: [] for ch in CHANNELS}
        self.seqs: dict[str, list[int]] = {ch: [] for ch in CHANNELS}
        self.bad_payloads = 0
        self.capture_done = threading.Event()
        self.stop = threading.Event()  # Ctrl-C: stop capturing now
        self.errors_soft: list[str] = []
        self.stage_done = {(stage, ch): threading.Event() for stage in STAGES for ch in CHANNELS}
        self.behind_s = {ch: 0.0 for ch in CHANNELS}
        self.overrun = {ch: 0 for ch in CHANNELS}
        self.errors: list[str] = []
        self.t0 = 0.0
        self.t_capture_end = 0.0

    # -- stages -------------------------------------------------------------

    def _slow_delay(self, stage: str) -> float:
        if self.slow != stage or self.capture_done.is_set():
            return 0.0
        return self.slow_factor / self.rate

    def capture(self, ch: str) -> None:
        mgr = self.manager
        comp = f"capture_{ch}"
        key = self.counters.key("capture", ch)
        chan = CHANNELS.index(ch)
        body = bytes(self.size - HEADER.size)
        sched = CaptureSchedule(self.t0, self.rate, self.duration)
        pack = HEADER.pack
        handled = refused = 0
        try:
            stop = self.stop.is_set
            while True:
                due = sched.next_due(stop)
                self.overrun[ch] = sched.overrun
                if due is None:
                    break
                # stamped with the time the chunk was due (its capture time), so
                # a capture thread held up by a blocking put shows as latency;
                # a fresh buffer per item, like a driver read
                data = pack(MAGIC, chan, sched.seq, due) + body
                if mgr.put_buffer(comp, data, timeout=PUT_TIMEOUT_S):
                    handled += 1
                else:
                    refused += 1
                self.counters.handled[key] = handled
                self.counters.refused[key] = refused
                sched.seq += 1
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(f"capture {ch}: {exc!r}")
        finally:
            self.behind_s[ch] = sched.worst_behind
            self.counters.ended[key] = time.perf_counter()
            self.stage_done[("capture", ch)].set()
            if all(self.stage_done[("capture", c)].is_set() for c in CHANNELS):
                self.t_capture_end = self.t_capture_end or time.perf_counter()
                self.capture_done.set()  # the slowed stage drains at full speed now

    def relay(self, stage: str, ch: str, src: str, dst: str | None) -> None:
        """processing/storage move items src -> dst; the consumer (dst None) checks them."""
        mgr = self.manager
        get, put = mgr.get_buffer, mgr.put_buffer
        upstream = self.stage_done[(STAGES[STAGES.index(stage) - 1], ch)]
        key = self.counters.key(stage, ch)
        handled = refused = 0
        lat = self.latencies[ch]
        seqs = self.seqs[ch]
        unpack = HEADER.unpack_from
        chan = CHANNELS.index(ch)
        try:
            while True:
                finished_before = upstream.is_set()
                data = get(src, timeout=POLL_S)
                if data is None:
                    if finished_before:
                        return
                    continue
                delay = self._slow_delay(stage)
                if delay:
                    time.sleep(delay)
                if dst is not None:
                    if put(dst, data, timeout=PUT_TIMEOUT_S):
                        handled += 1
                    else:
                        refused += 1
                    self.counters.refused[key] = refused
                else:
                    now = time.perf_counter()
                    magic, c, seq, t_cap = unpack(data)
                    if magic != MAGIC or c != chan or len(data) != self.size:
                        self.bad_payloads += 1
                    seqs.append(seq)
                    lat.append(now - t_cap)
                    handled += 1
                self.counters.handled[key] = handled
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(f"{stage} {ch}: {exc!r}")
        finally:
            self.counters.ended[key] = time.perf_counter()
            self.stage_done[(stage, ch)].set()

    # -- run ------------------------------------------------------------------

    def threads(self) -> list[threading.Thread]:
        out = []
        for ch in CHANNELS:
            out.append(threading.Thread(target=self.capture, args=(ch,), name=f"capture_{ch}", daemon=True))
            out.append(
                threading.Thread(
                    target=self.relay,
                    args=("processing", ch, f"capture_{ch}", f"processing_{ch}"),
                    name=f"processing_{ch}",
                    daemon=True,
                )
            )
            out.append(
                threading.Thread(
                    target=self.relay,
                    args=("storage", ch, f"processing_{ch}", f"storage_{ch}"),
                    name=f"storage_{ch}",
                    daemon=True,
                )
            )
            out.append(
                threading.Thread(
                    target=self.relay, args=("consumer", ch, f"storage_{ch}", None), name=f"consumer_{ch}", daemon=True
                )
            )
        return out

    def run(self, status: StatusLine | None, interval: float = 0.25) -> float:
        """Run the pipeline; Ctrl-C stops capture early (the rest drains and
        the summary is still printed), a second Ctrl-C aborts."""
        threads = self.threads()
        self.t0 = time.perf_counter() + 0.02
        last = {stage: 0 for stage in STAGES}
        t_last = time.perf_counter()
        deadline = self.t0 + self.duration + JOIN_DEADLINE_S
        try:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads) and time.perf_counter() < deadline:
                time.sleep(interval if status is not None else 0.05)
                if status is not None:
                    now = time.perf_counter()
                    status.update(*self.status_text(last, now - t_last))
                    t_last = now
        except KeyboardInterrupt:
            self.stop.set()
            self.errors_soft.append("stopped early by Ctrl-C")
            for t in threads:
                if t.ident is None:  # interrupted while starting: let the rest finish
                    stage, ch = t.name.split("_")
                    self.stage_done[(stage, ch)].set()
                    if stage == "capture":
                        self.capture_done.set()
        for t in threads:
            if t.ident is not None:  # started
                t.join(max(0.0, deadline - time.perf_counter()))
        if status is not None:
            status.close()
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            self.errors.append(f"threads still running after the deadline: {stuck}")
        return time.perf_counter() - self.t0

    def stage_total(self, stage: str) -> int:
        return sum(self.counters.handled[self.counters.key(stage, ch)] for ch in CHANNELS)

    def status_text(self, last: dict[str, int], dt: float) -> tuple[str, str]:
        """(full, compact) status, e.g.
        ``1.2s  capture 400/s q100 drop230 | processing* 100/s q0 | ... | p50 250ms``

        Rates are items/s over both channels since the previous update; q is
        the depth of the queue after the stage (both channels), drop what it
        evicted/refused so far; * marks the slowed stage.
        """
        stats = self.manager.get_performance_stats()["components"]
        totals = {stage: self.stage_total(stage) for stage in STAGES}
        elapsed = max(0.0, time.perf_counter() - self.t0)
        return status_text(elapsed, totals, stats, last, dt, self.slow, self.latencies)

    def banner(self) -> str:
        caps = "/".join(str(self.capacities[f"{g}_left"]) for g in GROUPS)
        slow = f"; {self.slow} slowed {self.slow_factor:g}x (*)" if self.slow else ""
        return (
            f"bufmgr demo: capture -> processing -> storage -> out, 2 channels at {self.rate:g}/s, "
            f"{_fmt_bytes(self.size)} payloads, {self.policy}, queues {caps} slots{slow}. "
            f"Rates are per second over both channels, q = queue depth. Ctrl-C stops early."
        )

    # -- summary ------------------------------------------------------------------

    def summary(self, wall: float) -> dict[str, Any]:
        stats = self.manager.get_performance_stats()
        comps = stats["components"]
        c = self.counters
        produced = {ch: c.handled[c.key("capture", ch)] + c.refused[c.key("capture", ch)] for ch in CHANNELS}
        accepted = {ch: c.handled[c.key("capture", ch)] for ch in CHANNELS}
        delivered = {ch: len(self.seqs[ch]) for ch in CHANNELS}
        dropped = {name: int(comps[name]["dropped"]) for name in comps}
        cleared = {name: int(comps[name]["cleared"]) for name in comps}
        left_queued = {name: int(comps[name]["size"]) for name in comps}
        refused = {f"{stage}_{ch}": c.refused[c.key(stage, ch)] for stage in GROUPS for ch in CHANNELS}
        # every item a capture put_buffer accepted ends in exactly one of these
        # (a drop_newest queue counts the items it refuses as dropped itself)
        refusals_counted_apart = self.policy != "drop_newest"
        lost = {}
        for ch in CHANNELS:
            refusals = c.refused[c.key("capture", ch)] + refused[f"processing_{ch}"] + refused[f"storage_{ch}"]
            drops = sum(dropped[f"{g}_{ch}"] + cleared[f"{g}_{ch}"] + left_queued[f"{g}_{ch}"] for g in GROUPS)
            explained = delivered[ch] + drops + (refusals if refusals_counted_apart else 0)
            lost[ch] = produced[ch] - explained
        cap_end = self.t_capture_end or (self.t0 + wall)
        return {
            "options": summary_options(self),
            "implementation": stats.get("implementation"),
            "wall_s": round(wall, 3),
            "drain_s": round(max(0.0, self.t0 + wall - cap_end), 3),
            "capture_behind_s": {ch: round(v, 4) for ch, v in self.behind_s.items()},
            "scheduled": sum(produced.values()) + sum(self.overrun.values()),
            "overrun": sum(self.overrun.values()),
            "produced": sum(produced.values()),
            "produced_per_channel": produced,
            "accepted": sum(accepted.values()),
            "delivered": sum(delivered.values()),
            "delivered_per_channel": delivered,
            "dropped": sum(dropped.values()),
            "dropped_by_queue": dropped,
            "refused": sum(refused.values()) + sum(c.refused[c.key("capture", ch)] for ch in CHANNELS),
            # put_buffer calls that returned False, by the queue they were for
            "refused_by_queue": {
                **{f"capture_{ch}": c.refused[c.key("capture", ch)] for ch in CHANNELS},
                **{f"{stage}_{ch}": refused[f"{stage}_{ch}"] for stage in ("processing", "storage") for ch in CHANNELS},
            },
            "cleared": sum(cleared.values()),
            "left_queued": sum(left_queued.values()),
            "lost": sum(lost.values()),
            "lost_per_channel": lost,
            **delivery_summary(self),
            "errors": list(self.errors),
            "notes": list(self.errors_soft),
        }


def format_summary(s: dict[str, Any]) -> str:
    o = s["options"]
    caps = o["capacities"]
    cap_txt = "/".join(str(caps[f"{g}_left"]) for g in GROUPS)
    slow = f", {o['slow']} slowed {o['slow_factor']:g}x" if o["slow"] else ""
    lines = [
        f"bufmgr demo: {o['duration_s']:g} s at {o['rate_per_channel']:g}/s per channel, "
        f"{_fmt_bytes(o['payload_bytes'])} payloads, policy {o['policy']}, queues {cap_txt} slots "
        f"(capture/processing/storage){slow}; {s.get('transport') or 'FrameQueue: ' + str(s['implementation'])}",
        f"  produced   {s['produced']:>9,}  (left {s['produced_per_channel']['left']:,}, right {s['produced_per_channel']['right']:,})",
    ]
    if s["overrun"]:
        lines.append(
            f"  overrun    {s['overrun']:>9,}  (never captured: the capture thread was held up -- a blocking "
            f"put_buffer, or no CPU -- longer than the device buffer lasts, {DEVICE_BUFFER_S * 1e3:.0f} ms)"
        )
    lines.append(
        f"  delivered  {s['delivered']:>9,}  (in order: {'yes' if s['in_order'] else 'NO'}, duplicates: {s['duplicates']})"
    )
    where = [f"{name} {n:,}" for name, n in s["dropped_by_queue"].items() if n]
    lines.append(f"  dropped    {s['dropped']:>9,}" + (f"  ({', '.join(where)})" if where else ""))
    if s["refused"]:
        ref = [f"{name} {n:,}" for name, n in s["refused_by_queue"].items() if n]
        also = "; drop_newest counts these in dropped above" if o["policy"] == "drop_newest" else ""
        how = "put raised Full after the timeout" if o.get("processes") else "put_buffer returned False"
        lines.append(f"  refused    {s['refused']:>9,}  ({how}: {', '.join(ref)}{also})")
    if s["cleared"] or s["left_queued"]:
        lines.append(f"  cleared    {s['cleared'] + s['left_queued']:>9,}  (still queued at shutdown)")
    lost_note = "every frame delivered or counted" if s["lost"] == 0 else "<-- LOST: accepted, never delivered, not counted"
    lines.append(f"  lost       {s['lost']:>9,}  ({lost_note})")
    lat = s["latency_ms"]
    if lat["count"]:
        lines.append(
            "  latency    capture -> consumer: "
            f"p50 {_fmt_s(lat['p50'] / 1e3)}, p90 {_fmt_s(lat['p90'] / 1e3)}, "
            f"p99 {_fmt_s(lat['p99'] / 1e3)}, max {_fmt_s(lat['max'] / 1e3)} over {lat['count']:,} items"
        )
    behind = max(s["capture_behind_s"].values())
    if behind > 0.05 and not s["overrun"]:
        lines.append(f"  capture fell behind its schedule by up to {_fmt_s(behind)} (a put blocked, or the CPU was busy)")
    if s["drain_s"] > 1.0:
        lines.append(f"  drain after capture stopped: {_fmt_s(s['drain_s'])}")
    if s["bad_payloads"]:
        lines.append(f"  !! {s['bad_payloads']} payloads arrived corrupted")
    for note in s.get("notes", []):
        lines.append(f"  ({note})")
    for err in s["errors"]:
        lines.append(f"  !! {err}")
    return "\n".join(lines)


def run(args: Any) -> int:
    if getattr(args, "processes", False):  # one process per stage: bufmgr/cli/demo_procs.py
        from . import demo_procs

        return demo_procs.run(args)
    if not json_path_ok(args.json):
        return 2
    # A refused put logs a warning per frame (that is what the replaced
    # manager did); the summary counts them instead.
    mlog = logging.getLogger("bufmgr.manager")
    old = mlog.level
    mlog.setLevel(logging.ERROR)
    pipe = Pipeline(args)
    worst = sum(pipe.capacities.values()) * pipe.size
    if worst > 4 * 1024**3:
        print(
            f"bufmgr demo: warning: full queues would hold {worst / 1024**3:.1f} GiB "
            f"({sum(pipe.capacities.values()):,} slots x {_fmt_bytes(pipe.size)}); lower --capacity or --payload",
            file=sys.stderr,
        )
    status = None if args.no_status else StatusLine()
    if status is not None:
        print(textwrap.fill(pipe.banner(), width=max(40, min(100, _term_width() - 1))), file=sys.stderr, flush=True)
    try:
        wall = pipe.run(status)
        summary = pipe.summary(wall)
    finally:
        pipe.manager.cleanup()
        mlog.setLevel(old)
    return report(summary, args.json)


# -- what the threaded and the process demo (bufmgr/cli/demo_procs.py) share ------


def capacities(capacity: int | str | None, rate: float) -> dict[str, int]:
    """Slots per queue/ring, by name: --capacity N, "manager" (BufferManager's
    defaults) or None (DEFAULT_QUEUE_S of capture at ``rate``)."""
    from bufmgr.manager import DEFAULT_QUEUES

    if capacity == "manager":
        return dict(DEFAULT_QUEUES)
    if capacity is None:  # hold DEFAULT_QUEUE_S of capture per queue
        capacity = max(4, int(round(rate * DEFAULT_QUEUE_S)))
    return {name: int(capacity) for name in DEFAULT_QUEUES}


def status_text(
    elapsed: float,
    totals: dict[str, int],
    stats: dict[str, Any],
    last: dict[str, int],
    dt: float,
    slow: str | None,
    latencies: dict[str, list[float]],
) -> tuple[str, str]:
    """(full, compact) status line from each stage's items so far (``totals``,
    both channels) and each queue's stats() (size, dropped) by name;
    ``last`` (the totals of the previous update) is updated in place."""
    full, compact = [], []
    short = {"capture": "cap", "processing": "proc", "storage": "stor", "consumer": "out"}
    for stage in STAGES:
        total = totals[stage]
        rate = (total - last[stage]) / dt if dt > 0 else 0.0
        last[stage] = total
        star = "*" if slow == stage else ""
        label = "out" if stage == "consumer" else stage
        f_part = f"{label}{star} {rate:.0f}/s"
        c_part = f"{short[stage]}{star} {rate:.0f}"
        if stage in GROUPS:
            depth = sum(stats[f"{stage}_{ch}"]["size"] for ch in CHANNELS)
            f_part += f" q{depth}"
            c_part += f" q{depth}"
            dropped = sum(stats[f"{stage}_{ch}"]["dropped"] for ch in CHANNELS)
            if dropped:
                f_part += f" drop{dropped}"
                c_part += f" d{dropped}"
        full.append(f_part)
        compact.append(c_part)
    head = f"{elapsed:4.1f}s  "
    tail = ""
    lat = latencies["left"][-200:] + latencies["right"][-200:]
    if lat:
        lat.sort()
        tail = f" | p50 {_fmt_s(percentile(lat, 50)).replace(' ', '')}"
    return head + " | ".join(full) + tail, head + " ".join(f"[{c}]" for c in compact) + tail


def summary_options(pipe: Any) -> dict[str, Any]:
    """The summary's "options": what the pipeline ran with."""
    return {
        "duration_s": pipe.duration,
        "rate_per_channel": pipe.rate,
        "payload_bytes": pipe.size,
        "policy": pipe.policy,
        "capacities": pipe.capacities,
        "slow": pipe.slow,
        "slow_factor": pipe.slow_factor if pipe.slow else None,
    }


def delivery_summary(pipe: Any) -> dict[str, Any]:
    """The summary's checks of what the consumer got: duplicates, order,
    corrupted payloads, capture -> consumer latency."""
    seqs = pipe.seqs
    in_order = all(all(a < b for a, b in zip(seqs[ch], seqs[ch][1:])) for ch in CHANNELS)
    lat = sorted(pipe.latencies["left"] + pipe.latencies["right"])

    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1e3, 3)

    return {
        "duplicates": sum(len(seqs[ch]) - len(set(seqs[ch])) for ch in CHANNELS),
        "in_order": in_order,
        "bad_payloads": pipe.bad_payloads,
        "latency_ms": {
            "count": len(lat),
            "p50": ms(percentile(lat, 50)),
            "p90": ms(percentile(lat, 90)),
            "p99": ms(percentile(lat, 99)),
            "max": ms(lat[-1] if lat else None),
        },
    }


def json_path_ok(path: str | None) -> bool:
    """False (the reason printed) when --json names a file that cannot be written."""
    if path:
        from .bench import output_path_problem

        problem = output_path_problem(path)
        if problem:
            print(f"bufmgr demo: error: cannot write --json {path}: {problem}", file=sys.stderr)
            return False
    return True


def report(summary: dict[str, Any], json_path: str | None) -> int:
    """Print the summary (and write it to --json); the exit status: 1 when a
    frame was lost, duplicated, reordered or corrupted, or anything failed."""
    print(format_summary(summary))
    if json_path:
        try:
            with open(json_path, "w", encoding="utf-8") as fh:
                json.dump(summary, fh, indent=2)
                fh.write("\n")
        except OSError as exc:
            print(f"bufmgr demo: error: cannot write --json {json_path}: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {json_path}")
    bad = summary["lost"] or summary["duplicates"] or not summary["in_order"] or summary["bad_payloads"] or summary["errors"]
    return 1 if bad else 0
