"""Many-core scaling: k producers x k consumers through one bounded queue.

    python bench/scaling.py                      # k = 1 2 4 8, 0.5 s per run
    python bench/scaling.py --pairs 1 2 4 8 16 --seconds 1 --json scaling.json

For each k and implementation (FrameQueue C, FrameQueue pure twin,
queue.Queue) producers put small unique items for a fixed time; consumers
take them until a sentinel. Reports items/s and accounts for every item:
items == delivered + dropped + lost, nothing duplicated; the policy is
"block", so FrameQueue's own counters must report 0 dropped. Any loss,
drop or duplicate makes the script exit 1.
Prints one table and optionally writes JSON with the interpreter (GIL
enabled or not), CPU count and every figure (every run, and the best).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import sys
import sysconfig
import threading
import time

try:
    import bufmgr
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import bufmgr

from bufmgr._pyqueue import FrameQueue as PyFrameQueue

IMPLS = {"FrameQueue (C)": None, "FrameQueue (pure)": PyFrameQueue, "queue.Queue": queue.Queue}
try:
    from bufmgr._ring import FrameQueue as CFrameQueue

    IMPLS["FrameQueue (C)"] = CFrameQueue
except ImportError:
    del IMPLS["FrameQueue (C)"]

_STOP = object()


def run_once(factory, k: int, seconds: float, maxsize: int) -> dict:
    """k producers and k consumers for `seconds`; every item is accounted for:
    items == delivered + dropped + lost, with nothing duplicated."""
    q = factory(maxsize)
    put, get = q.put, q.get
    produced = [0] * k
    received: list[list[int]] = [[] for _ in range(k)]
    start = threading.Barrier(2 * k + 1)
    stop_at = [0.0]

    def producer(pid: int) -> None:
        base, n = pid << 40, 0
        start.wait()
        deadline = stop_at[0]
        clock = time.perf_counter
        while True:
            for _ in range(256):  # check the clock every 256 items
                put(base | n)
                n += 1
            if clock() >= deadline:
                break
        produced[pid] = n

    def consumer(cid: int) -> None:
        out = received[cid]
        append = out.append
        start.wait()
        while True:
            item = get()
            if item is _STOP:
                return
            append(item)

    threads = [threading.Thread(target=producer, args=(i,)) for i in range(k)]
    threads += [threading.Thread(target=consumer, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    start.wait()
    for t in threads[:k]:
        t.join()
    for _ in range(k):
        put(_STOP)
    for t in threads[k:]:
        t.join()
    elapsed = time.perf_counter() - t0
    total = sum(produced)
    got = [x for r in received for x in r]
    unique = len(set(got))
    # The overflow policy is "block": FrameQueue's own counters must say 0.
    dropped = q.stats()["dropped"] if hasattr(q, "stats") else 0
    return {
        "items": total,
        "items_per_s": total / elapsed,
        "delivered": len(got),
        "dropped": dropped,
        "duplicated": len(got) - unique,
        "lost": total - dropped - unique,
    }


def _cell(r: dict) -> str:
    text = f"{r['items_per_s'] / 1e6:.2f} M/s"
    if r["dropped"]:
        text += f" {r['dropped']} dropped"
    if r["lost"] or r["duplicated"]:
        text += f" LOST {r['lost'] + r['duplicated']}"
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--maxsize", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2, help="runs per cell; the best is kept")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)

    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    info = {
        "python": sys.version.split()[0],
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": gil,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "implementation": bufmgr.IMPLEMENTATION,
        "maxsize": args.maxsize,
        "seconds": args.seconds,
    }
    print(f"scaling: Python {info['python']} (GIL {'on' if gil else 'off'}), {info['cpus']} CPUs, "
          f"maxsize {args.maxsize}, {args.seconds} s per run, "
          f"best of {args.repeat}")
    results, bad = [], 0
    print(f"{'k x k':>6}  " + "  ".join(f"{name:>20}" for name in IMPLS) + "  C / Queue")
    for k in args.pairs:
        row = {}
        for name, factory in IMPLS.items():
            runs = [run_once(factory, k, args.seconds, args.maxsize) for _ in range(args.repeat)]
            best = max(runs, key=lambda r: r["items_per_s"])
            row[name] = best
            # a loss, drop or duplicate in any run counts, not only in the best
            bad += sum(r["lost"] + r["dropped"] + r["duplicated"] for r in runs)
            results.append({"pairs": k, "impl": name, **best, "runs": runs})
        ratio = ""
        if "FrameQueue (C)" in row:
            ratio = f"{row['FrameQueue (C)']['items_per_s'] / row['queue.Queue']['items_per_s']:8.1f}x"
        print(f"{k:>6}  " + "  ".join(f"{_cell(row[n]):>20}" for n in IMPLS) + "  " + ratio)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "results": results}, f, indent=2)
    if bad:
        print(f"!! {bad} items lost, dropped or duplicated")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
