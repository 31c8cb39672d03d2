"""``python -m bufmgr demo --processes``: the stereo pipeline, one process per stage.

::

    capture process          processing process          storage process          this process
    capture_L --> [capture_left]  --> processing_L --> [processing_left]  --> storage_L --> [storage_left]  --> consumer
    capture_R --> [capture_right] --> processing_R --> [processing_right] --> storage_R --> [storage_right] --> consumer

The same pipeline as ``python -m bufmgr demo`` (bufmgr/cli/demo.py), but the
three stages run in three processes (one thread per channel in each), and the
six queues are ``SharedFrameRing``\\ s: shared-memory segments the parent
creates and every stage attaches to (the rings are passed to the processes
by pickling). Capture copies each chunk into its ring (``put``);
processing and storage take a zero-copy ``Frame`` and copy it on into the next
ring (``put(frame)``); the consumer, in this process, reads the frames in place.

Every payload carries the demo's header (magic, channel, sequence number,
capture time on the system-wide monotonic clock), so the consumer knows which
items arrived, in which order and how late. The live status and the drop
counts are the rings' own ``stats()``, read from this process while the others
write them. When capture ends (or Ctrl-C), each stage ``shutdown()``\\ s its
output rings once its input is drained: a graceful shutdown wakes the next
stage in another process, which drains and passes it on, so nothing queued is
lost on the way out. ``lost`` is what no counter explains; it must be 0.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time
from typing import Any

from . import demo
from .demo import (
    CHANNELS,
    GROUPS,
    HEADER,
    JOIN_DEADLINE_S,
    MAGIC,
    POLL_S,
    PUT_TIMEOUT_S,
    STAGES,
    CaptureSchedule,
    _fmt_bytes,
)
from .progress import StatusLine, _term_width

START_TIMEOUT_S = 60.0
clock = time.monotonic  # system-wide: comparable between the processes


def _ring_class() -> Any:
    if os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0"):
        raise RuntimeError("demo --processes needs the compiled core (SharedFrameRing); BUFMGR_NO_EXTENSIONS is set")
    try:
        from bufmgr import SharedFrameRing  # type: ignore[attr-defined]
    except ImportError as exc:
        raise RuntimeError(f"demo --processes needs bufmgr.SharedFrameRing ({exc})") from None
    return SharedFrameRing


def _ignore_sigint() -> None:
    # Ctrl-C goes to the whole process group; the parent decides (it sets
    # the stop event, and every stage drains), so the stages ignore it.
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # pragma: no cover - not the main thread
        pass


# --------------------------------------------------------------------------
# the stage processes


def _capture_thread(cfg: dict[str, Any], ch: str, ring: Any, stop: Any, tally: dict[str, Any]) -> None:
    from bufmgr import Full

    chan = CHANNELS.index(ch)
    buf = bytearray(cfg["size"])  # the "driver buffer", refilled per chunk; put() copies it
    pack_into = HEADER.pack_into
    sched = CaptureSchedule(cfg["t0"], cfg["rate"], cfg["duration"], clock=clock)
    handled = refused = 0
    try:
        while True:
            due = sched.next_due(stop.is_set)
            if due is None:
                break
            pack_into(buf, 0, MAGIC, chan, sched.seq, due)
            try:
                ring.put(buf, timeout=PUT_TIMEOUT_S)  # None: refused by drop_newest (the ring counts it)
                handled += 1
            except Full:  # "block" policy, still full after the timeout
                refused += 1
            sched.seq += 1
    except BaseException as exc:  # noqa: BLE001
        tally["errors"].append(f"capture {ch}: {exc!r}")
    finally:
        tally["handled"][ch] = handled
        tally["refused"][ch] = refused
        tally["overrun"][ch] = sched.overrun
        tally["behind_s"][ch] = sched.worst_behind
        try:
            ring.shutdown()  # graceful: processing drains what is queued
        except Exception as exc:  # noqa: BLE001
            tally["errors"].append(f"capture {ch}: shutdown: {exc!r}")


def _relay_thread(
    cfg: dict[str, Any], stage: str, ch: str, src: Any, dst: Any, capture_done: Any, tally: dict[str, Any]
) -> None:
    from bufmgr import Empty, Full, ShutDown

    slow = cfg["slow"] == stage
    delay = cfg["slow_factor"] / cfg["rate"]
    handled = refused = 0
    try:
        while True:
            try:
                frame = src.get(timeout=POLL_S)
            except Empty:
                continue
            except ShutDown:  # upstream finished and drained
                break
            with frame:
                if slow and not capture_done.is_set():
                    time.sleep(delay)
                try:
                    dst.put(frame, timeout=PUT_TIMEOUT_S)  # copied from slot to slot
                    handled += 1
                except Full:
                    refused += 1
    except BaseException as exc:  # noqa: BLE001
        tally["errors"].append(f"{stage} {ch}: {exc!r}")
    finally:
        tally["handled"][ch] = handled
        tally["refused"][ch] = refused
        try:
            dst.shutdown()
        except Exception as exc:  # noqa: BLE001
            tally["errors"].append(f"{stage} {ch}: shutdown: {exc!r}")


def stage_main(stage: str, cfg: dict[str, Any], rings_in: Any, rings_out: Any, events: Any, conn: Any) -> None:
    """A stage process: one thread per channel; reports its tally at the end."""
    _ignore_sigint()
    stop, capture_done = events
    tally: dict[str, Any] = {"handled": {}, "refused": {}, "overrun": {}, "behind_s": {}, "errors": [],
                             "pid": os.getpid()}
    try:
        conn.send(("ready", os.getpid()))
        msg = conn.recv()  # ("start", t0)
        cfg = dict(cfg, t0=msg[1])
        threads = []
        for i, ch in enumerate(CHANNELS):
            if stage == "capture":
                t = threading.Thread(target=_capture_thread, args=(cfg, ch, rings_out[i], stop, tally),
                                     name=f"capture_{ch}", daemon=True)
            else:
                t = threading.Thread(
                    target=_relay_thread,
                    args=(cfg, stage, ch, rings_in[i], rings_out[i], capture_done, tally),
                    name=f"{stage}_{ch}", daemon=True,
                )
            threads.append(t)
            t.start()
        deadline = clock() + cfg["duration"] + JOIN_DEADLINE_S
        for t in threads:
            t.join(max(0.0, deadline - clock()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            tally["errors"].append(f"{stage}: threads still running after the deadline: {stuck}")
        if stage == "capture":
            capture_done.set()  # the slowed stage drains at full speed now
        conn.send(("tally", tally))
    except (EOFError, BrokenPipeError):
        pass
    finally:
        for r in list(rings_in or []) + list(rings_out or []):
            try:
                r.close()
            except Exception:  # noqa: BLE001
                pass


# --------------------------------------------------------------------------
# the parent: rings, consumer threads, status, summary


class ProcessPipeline:
    def __init__(self, args: Any) -> None:
        self.cls = _ring_class()
        self.rate = float(args.rate)
        self.duration = float(args.duration)
        self.size = int(args.payload)
        self.policy = args.policy
        self.slow = args.slow
        self.slow_factor = float(args.slow_factor)
        self.capacities = demo.capacities(args.capacity, self.rate)
        self.rings: dict[str, Any] = {}
        self.procs: list[Any] = []
        self.conns: dict[str, Any] = {}
        self.tallies: dict[str, dict[str, Any]] = {}
        self.latencies: dict[str, list[float]] = {ch: [] for ch in CHANNELS}
        self.seqs: dict[str, list[int]] = {ch: [] for ch in CHANNELS}
        self.delivered = {ch: 0 for ch in CHANNELS}
        self.bad_payloads = 0
        self.errors: list[str] = []
        self.errors_soft: list[str] = []
        self.t0 = 0.0
        self.pids: dict[str, int] = {}

    def shm_bytes(self) -> int:
        return sum(self.capacities.values()) * self.size

    def create_rings(self) -> None:
        for name, cap in self.capacities.items():
            self.rings[name] = self.cls(cap, self.size, overflow=self.policy)

    def close_rings(self) -> None:
        for ring in self.rings.values():
            try:
                ring.close()  # the creator: unlinks the segment too
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"closing {ring!r}: {exc!r}")

    # -- the consumer (this process) ----------------------------------------------------

    def consume(self, ch: str, ring: Any, slowed: bool, capture_done: Any) -> None:
        from bufmgr import Empty, ShutDown

        chan = CHANNELS.index(ch)
        unpack = HEADER.unpack_from
        lat, seqs = self.latencies[ch], self.seqs[ch]
        delay = self.slow_factor / self.rate
        size = self.size
        try:
            while True:
                try:
                    frame = ring.get(timeout=POLL_S)
                except Empty:
                    continue
                except ShutDown:
                    return
                with frame:
                    if slowed and not capture_done.is_set():
                        time.sleep(delay)
                    now = clock()
                    with memoryview(frame) as view:  # read in place
                        magic, c, seq, t_cap = unpack(view)
                        if magic != MAGIC or c != chan or view.nbytes != size:
                            self.bad_payloads += 1
                seqs.append(seq)
                lat.append(now - t_cap)
                self.delivered[ch] += 1
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(f"consumer {ch}: {exc!r}")

    # -- run ------------------------------------------------------------------------------

    def run(self, status: StatusLine | None, interval: float = 0.25) -> float:
        from .procs import mp_context

        ctx = mp_context()
        stop, capture_done = ctx.Event(), ctx.Event()
        r = self.rings
        layout = {
            "capture": (None, [r["capture_left"], r["capture_right"]]),
            "processing": ([r["capture_left"], r["capture_right"]], [r["processing_left"], r["processing_right"]]),
            "storage": ([r["processing_left"], r["processing_right"]], [r["storage_left"], r["storage_right"]]),
        }
        cfg = {"rate": self.rate, "duration": self.duration, "size": self.size,
               "slow": self.slow, "slow_factor": self.slow_factor}
        interrupted = False
        consumers: list[threading.Thread] = []
        deadline = clock() + START_TIMEOUT_S + self.duration + JOIN_DEADLINE_S
        try:
            for stage, (rin, rout) in layout.items():
                parent_end, child_end = ctx.Pipe()
                p = ctx.Process(target=stage_main, args=(stage, cfg, rin, rout, (stop, capture_done), child_end),
                                name=f"bufmgr-demo-{stage}", daemon=True)
                p.start()
                child_end.close()
                self.procs.append(p)
                self.conns[stage] = parent_end
            for stage, conn in self.conns.items():
                if not conn.poll(START_TIMEOUT_S):
                    raise RuntimeError(f"the {stage} process did not start")
                self.pids[stage] = conn.recv()[1]
            self.t0 = clock() + 0.05
            for conn in self.conns.values():
                conn.send(("start", self.t0))
            for ch in CHANNELS:
                t = threading.Thread(
                    target=self.consume, args=(ch, r[f"storage_{ch}"], self.slow == "consumer", capture_done),
                    name=f"consumer_{ch}", daemon=True,
                )
                consumers.append(t)
                t.start()
            deadline = self.t0 + self.duration + JOIN_DEADLINE_S
            last = {stage: 0 for stage in STAGES}
            t_last = clock()
            pending = dict(self.conns)
            while (pending or any(t.is_alive() for t in consumers)) and clock() < deadline:
                try:
                    time.sleep(interval if status is not None else 0.05)
                    for stage, conn in list(pending.items()):
                        if conn.poll():
                            msg = conn.recv()
                            self.tallies[stage] = msg[1]
                            del pending[stage]
                    if status is not None:
                        now = clock()
                        status.update(*self.status_text(last, now - t_last))
                        t_last = now
                except KeyboardInterrupt:
                    if interrupted:
                        raise
                    interrupted = True
                    stop.set()  # capture stops; every stage drains and shuts down the next
                    self.errors_soft.append("stopped early by Ctrl-C")
                except EOFError:
                    missing = [s for s in pending if not self.procs[list(self.conns).index(s)].is_alive()]
                    self.errors.append(f"stage process died: {missing}")
                    break
            for t in consumers:
                t.join(max(0.0, deadline - clock()))
            if pending:
                self.errors.append(f"stage processes did not finish: {sorted(pending)}")
            stuck = [t.name for t in consumers if t.is_alive()]
            if stuck:
                self.errors.append(f"consumer threads still running after the deadline: {stuck}")
        finally:
            if status is not None:
                status.close()
            for p in self.procs:
                p.join(max(0.1, min(JOIN_DEADLINE_S, deadline - clock())))
                if p.is_alive():
                    p.kill()
                    p.join(5.0)
        return clock() - self.t0

    def status_text(self, last: dict[str, int], dt: float) -> tuple[str, str]:
        """The threaded demo's status line, from the rings' own stats()."""
        st = {name: ring.stats() for name, ring in self.rings.items()}
        elapsed = max(0.0, clock() - self.t0)
        totals = {
            "capture": sum(st[f"capture_{ch}"]["puts"] for ch in CHANNELS),
            "processing": sum(st[f"processing_{ch}"]["puts"] for ch in CHANNELS),
            "storage": sum(st[f"storage_{ch}"]["puts"] for ch in CHANNELS),
            "consumer": sum(self.delivered.values()),
        }
        return demo.status_text(elapsed, totals, st, last, dt, self.slow, self.latencies)

    def banner(self) -> str:
        caps = "/".join(str(self.capacities[f"{g}_left"]) for g in GROUPS)
        slow = f"; {self.slow} slowed {self.slow_factor:g}x (*)" if self.slow else ""
        return (
            f"bufmgr demo --processes: capture, processing and storage in 3 processes, consumer here, over 6 "
            f"SharedFrameRings; 2 channels at {self.rate:g}/s, {_fmt_bytes(self.size)} payloads, {self.policy}, "
            f"rings {caps} slots{slow}. Rates are per second over both channels, q = ring depth. Ctrl-C stops early."
        )

    # -- summary ------------------------------------------------------------------------

    def summary(self, wall: float) -> dict[str, Any]:
        st = {name: dict(ring.stats()) for name, ring in self.rings.items()}
        tl = self.tallies
        empty = {"handled": {}, "refused": {}, "overrun": {}, "behind_s": {}, "errors": []}
        cap_t, proc_t, stor_t = (tl.get(s, empty) for s in GROUPS)
        for t in (cap_t, proc_t, stor_t):
            self.errors.extend(t.get("errors", []))
        refused = {f"{stage}_{ch}": int(tl.get(stage, empty)["refused"].get(ch, 0)) for stage in GROUPS for ch in CHANNELS}
        # every capture put call: accepted into the ring (puts counts drop_newest refusals too) or Full
        produced = {ch: st[f"capture_{ch}"]["puts"] + refused[f"capture_{ch}"] for ch in CHANNELS}
        dropped = {name: int(s["dropped"]) for name, s in st.items()}
        cleared = {name: int(s["cleared"]) for name, s in st.items()}
        left_queued = {name: int(s["size"]) for name, s in st.items()}
        delivered = {ch: len(self.seqs[ch]) for ch in CHANNELS}
        lost = {}
        for ch in CHANNELS:
            explained = delivered[ch] + sum(
                dropped[f"{g}_{ch}"] + cleared[f"{g}_{ch}"] + left_queued[f"{g}_{ch}"] + refused[f"{g}_{ch}"]
                for g in GROUPS
            )
            lost[ch] = produced[ch] - explained
        overrun = {ch: int(cap_t["overrun"].get(ch, 0)) for ch in CHANNELS}
        return {
            "options": {**demo.summary_options(self), "processes": True},
            "implementation": "SharedFrameRing",
            "transport": "SharedFrameRing x 6, capture / processing / storage in 3 processes "
            f"(pids {self.pids.get('capture')}/{self.pids.get('processing')}/{self.pids.get('storage')})",
            "wall_s": round(wall, 3),
            "drain_s": 0.0,
            "capture_behind_s": {ch: round(float(cap_t["behind_s"].get(ch, 0.0)), 4) for ch in CHANNELS},
            "scheduled": sum(produced.values()) + sum(overrun.values()),
            "overrun": sum(overrun.values()),
            "produced": sum(produced.values()),
            "produced_per_channel": produced,
            "accepted": sum(st[f"capture_{ch}"]["puts"] for ch in CHANNELS),
            "delivered": sum(delivered.values()),
            "delivered_per_channel": delivered,
            "dropped": sum(dropped.values()),
            "dropped_by_queue": dropped,
            "refused": sum(refused.values()),
            "refused_by_queue": refused,
            "cleared": sum(cleared.values()),
            "left_queued": sum(left_queued.values()),
            "lost": sum(lost.values()),
            "lost_per_channel": lost,
            **demo.delivery_summary(self),
            "ring_stats": st,
            "ring_names": {name: str(ring.name) for name, ring in self.rings.items()},
            "errors": list(self.errors),
            "notes": list(self.errors_soft),
        }


def run(args: Any) -> int:
    if not demo.json_path_ok(args.json):
        return 2
    try:
        pipe = ProcessPipeline(args)
    except RuntimeError as exc:
        print(f"bufmgr demo: error: {exc}", file=sys.stderr)
        return 2
    need = pipe.shm_bytes()
    try:
        vfs = os.statvfs("/dev/shm")
        free = vfs.f_bavail * vfs.f_frsize
    except (OSError, AttributeError):
        free = None
    if free is not None and need > free:
        print(
            f"bufmgr demo: error: the 6 rings need {need / 1024**2:,.0f} MiB of shared memory, /dev/shm has "
            f"{free / 1024**2:,.0f} MiB free (a container? docker run --shm-size=...); lower --capacity or --payload",
            file=sys.stderr,
        )
        return 2
    status = None if args.no_status else StatusLine()
    if status is not None:
        print(textwrap.fill(pipe.banner(), width=max(40, min(100, _term_width() - 1))), file=sys.stderr, flush=True)
    try:
        pipe.create_rings()
        wall = pipe.run(status)
        summary = pipe.summary(wall)
    finally:
        pipe.close_rings()
    return demo.report(summary, args.json)
