"""Command line: ``python -m bufmgr bench`` and ``python -m bufmgr demo``.

Stdlib only. matplotlib is optional (``--plot``); the compiled FrameQueue is
optional (its rows show as n/a when it is not built).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _threads(text: str) -> tuple[int, int]:
    from .bench import parse_threads

    return parse_threads(text)


def _capacity(text: str) -> int | str:
    from .demo import parse_capacity

    return parse_capacity(text)


def _payload_size(text: str) -> int:
    from .demo import parse_payload

    return parse_payload(text)


BENCH_EPILOG = """\
examples:
  python -m bufmgr bench --quick              a few seconds, every scenario
  python -m bufmgr bench                      the full run (under a minute on 2 cores)
  python -m bufmgr bench --threads 2x2 --threads 4x4 --payload audio
  python -m bufmgr bench --json bench.json --plot bench.png
  python -m bufmgr bench --scenario asyncio   asyncio bridges vs janus/culsans/aiologic
  python -m bufmgr bench --scenario processes  frames between processes: SharedFrameRing,
                                               mp.Queue, faster-fifo, SharedMemory (about 2 min)

reading the table: throughput is higher-is-better; 'vs Queue' divides by
queue.Queue's throughput in the same scenario (2.00x = twice as fast).
Threaded rows account for every item of the run shown: items (put calls) =
delivered + dropped (evicted by the drop policy, or put said no) + lost.
A '*' on dropped: the implementation never counts those drops (the replaced
manager), so the application cannot see them. A lost item was accepted and
never delivered nor counted, or (replaced manager) its put_buffer failed in
the check-then-act race: flagged '<-- LOST'; the run exits 1 if a bufmgr
row lost any.
"""

DEMO_EPILOG = """\
examples:
  python -m bufmgr demo                          5 s of stereo 1,920 B chunks
  python -m bufmgr demo --slow processing        a stage at 1/4 speed: drop_oldest
                                                 keeps the queues and latency bounded
  python -m bufmgr demo --payload frame --rate 30 --duration 3
  python -m bufmgr demo --processes --slow processing   the stages in 3 processes, shared-memory rings
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bufmgr",
        description="bufmgr: thread-safe bounded frame buffers. Benchmark them against "
        "queue.Queue and the manager they replace, or watch a synthetic capture pipeline.",
    )
    from bufmgr import __version__

    parser.add_argument("--version", action="version", version=f"bufmgr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{bench,demo,shm}")
    sub.required = True

    from .bench import IMPL_KEYS, PAYLOADS, THREAD_SECONDS

    b = sub.add_parser(
        "bench",
        help="compare FrameQueue/BufferManager with queue.Queue, SimpleQueue, deque and the baseline",
        description="Run the comparison scenarios side by side in one process and print a table.",
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("--quick", action="store_true", help="shorter runs: a few seconds in all")
    b.add_argument("--json", metavar="PATH", help="also write machine-readable results (with Python version, implementation, CPU count)")
    b.add_argument("--plot", metavar="PATH.png", help="also draw throughput per scenario and implementation (needs matplotlib)")
    b.add_argument(
        "--scenario",
        action="append",
        choices=("pair", "timeout", "threads", "asyncio", "processes"),
        help="run only these scenarios (repeatable; default: pair, timeout, threads). "
        "asyncio: async_get/async_put vs janus, culsans, aiologic (those installed) and the "
        "thread-put -> coroutine wake latency; processes: the transports between processes, see below",
    )
    b.add_argument(
        "--payload",
        action="append",
        choices=tuple(PAYLOADS),
        help="payload sizes for the threaded scenario: audio=1,920 B, 64k=64 KiB, frame=6 MB 1080p RGB, "
        "passed by reference (repeatable; default: all)",
    )
    b.add_argument(
        "--threads",
        action="append",
        type=_threads,
        metavar="PxC",
        help="producers x consumers for the threaded scenario, e.g. 4x4 (repeatable; default: 2x2)",
    )
    b.add_argument(
        "--items",
        type=_positive_int,
        metavar="N",
        help=f"put exactly N items per threaded run (default: producers put for {THREAD_SECONDS[0]:g} s, "
        f"--quick {THREAD_SECONDS[1]:g} s)",
    )
    b.add_argument("--repeat", type=_positive_int, metavar="N", help="single-thread repeats, best is kept (default 3, --quick 2)")
    b.add_argument("--impl", action="append", choices=IMPL_KEYS, help="run only these implementations (repeatable)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar on stderr (it is off anyway when stderr is not a terminal)")
    from .procs import add_arguments as add_process_arguments

    add_process_arguments(b)

    d = sub.add_parser(
        "demo",
        help="a synthetic stereo capture pipeline through BufferManager, with live status",
        description="Two capture threads -> processing -> storage -> consumer through a BufferManager. "
        "Payloads carry a sequence number and capture timestamp, so drops are located and "
        "end-to-end latency is measured, not estimated.",
        epilog=DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--duration", type=_positive_float, default=5.0, metavar="S", help="seconds of capture (default 5)")
    d.add_argument("--rate", type=_positive_float, default=200.0, metavar="HZ", help="chunks per second per channel (default 200; real audio is 33.3)")
    d.add_argument(
        "--payload",
        type=_payload_size,
        default="audio",
        metavar="SIZE",
        help="payload size: audio (1,920 B), 64k, frame (6 MB 1080p RGB) or a byte count (default audio)",
    )
    d.add_argument(
        "--policy",
        choices=("drop_oldest", "drop_newest", "block"),
        default="drop_oldest",
        help="overflow policy of every queue (default drop_oldest)",
    )
    d.add_argument(
        "--capacity",
        type=_capacity,
        metavar="N",
        help="slots per queue, or 'manager' for BufferManager's own sizes (1000/500/250); "
        "default: a quarter second of capture at --rate (at least 4)",
    )
    d.add_argument(
        "--slow",
        choices=("processing", "storage", "consumer"),
        help="slow this stage down to show what the policy does under overload",
    )
    d.add_argument("--slow-factor", type=_positive_float, default=4.0, metavar="F", help="the slowed stage runs at rate/F (default 4)")
    d.add_argument("--json", metavar="PATH", help="also write the summary as JSON")
    d.add_argument("--no-status", action="store_true", help="no live status line")
    sh = sub.add_parser(
        "shm",
        help="list or clean up SharedFrameRing segments in /dev/shm",
        description="list: every bufmgr segment with its creator pid, whether it is alive and "
        "the participants attached. clean: remove the segments whose processes are all gone.",
    )
    sh.add_argument("action", choices=("list", "clean"))
    sh.add_argument("names", nargs="*", metavar="NAME",
                    help="only these segments (the 'bufmgr-' prefix may be left out); default: all")
    sh.add_argument("--force", action="store_true", help="clean: also remove files that are not valid segments (at least 10 s old)")
    d.add_argument(
        "--processes",
        action="store_true",
        help="capture, processing and storage in 3 separate processes over SharedFrameRings "
        "(shared memory); the consumer is this process",
    )
    return parser


def _shm_command(args: argparse.Namespace) -> int:
    from bufmgr import shm

    names = [n if n.startswith(shm.PREFIX) else shm.PREFIX + n for n in args.names] or None
    if args.action == "clean":
        for name in shm.clean(force=args.force, names=names):
            print(f"removed {name}")
        return 0
    rows = [e for e in shm.list_segments() if names is None or e["name"] in names]
    if not rows:
        print("no bufmgr segments in /dev/shm")
    for e in rows:
        if e.get("valid"):
            state = "in use" if e["in_use"] else "unused (shm clean removes it)"
            alive = "alive" if e["creator_alive"] else "dead"
            print(f"{e['name']}  {e['bytes']:,} B  {e['slots']} x {e['frame_bytes']} B  "
                  f"creator {e['creator_pid']} ({alive})  participants {e['participants']} "
                  f"(alive: {len(e['alive_pids'])})  {state}")
        else:
            print(f"{e['name']}  {e['bytes']:,} B  not a valid segment: {e.get('error')}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "bench":
            from . import bench

            return bench.run(args)
        if args.command == "demo":
            from . import demo

            return demo.run(args)
        if args.command == "shm":
            return _shm_command(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2
