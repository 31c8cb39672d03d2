#!/usr/bin/env python3
"""Soak test for FrameQueue with fault injection (standalone and in tests).

    python bench/soak.py --seconds 600 --seeds 20          # both implementations
    python bench/soak.py --seconds 60 --seeds 6 --impl c --json soak.json

One *seed* is one run: a fresh queue (random maxsize and overflow policy),
8 worker threads doing random mixes of every operation (put / put_nowait /
put_many / get / get_nowait / get_many / get_latest / clear / join / stats,
blocking with random timeouts or not), and one thread that shuts the queue
down at a random moment (graceful, immediate, or graceful then immediate).
After shutdown the workers drain the queue and finish on their own.

Faults injected while it runs:

* items whose ``__del__`` raises (reported through sys.unraisablehook, counted)
  or re-enters the queue (stats / put_nowait / get_nowait / clear / repr)
  when the queue releases them (evicted, cleared, discarded by get_latest,
  emptied by shutdown(immediate)) or when a consumer drops them (on a
  free-threaded build the pure twin may run such a finalizer inside one of
  its own critical sections and refuse the call with RuntimeError: accepted
  only after checking that the thread really is in one, counted as
  "del_refused");
* put_many with an iterable that raises half way (nothing may be queued);
* calls with invalid arguments (bad timeouts, max_items=0): they must raise
  and leave the queue untouched;
* clear() and get_latest() from random threads; a random sys.setswitchinterval.

Invariants checked at the end of every seed:

* conservation -- every item id is delivered (get*) or returned as dropped
  (put / put_many) at most once, never one that was not put; the ids put by
  calls that returned normally and are neither delivered nor returned are at
  most the items the queue reports as discarded/cleared:
  ``|put_ok - delivered - returned| <= (dropped - returned) + cleared``
  (equality when no put_many raised mid-way); stats counters add up
  (puts == gets + dropped + cleared + size at every stats() call);
* FIFO: per consumer thread, the items it removes from each producer come
  in increasing sequence order;
* liveness -- every thread finishes (on a hang all stacks are dumped with
  faulthandler and the seed fails);
* refcounts -- once the queue is gone every item was released exactly once,
  the shared payload blobs are back at their baseline refcount, the queue
  object itself is freed; unfinished_tasks ends at 0;
* RSS (this script, over a whole run): flat after the warm-up seeds.

The harness lives in this file only. tests/test_soak.py loads it with
importlib from the file path (no sys.path changes); run as a script, it
falls back to the checkout's package (this file's parent directory) when
``bufmgr`` is not installed.
"""

from __future__ import annotations

import argparse
import faulthandler
from array import array
import gc
import itertools
import json
import os
import random
import sys
import sysconfig
import threading
import time
import traceback
import weakref
from dataclasses import asdict, dataclass, field

try:
    import bufmgr  # noqa: F401
except ImportError:  # running from a checkout without installing it
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bufmgr._errors import Empty, Full, ShutDown  # noqa: E402
from bufmgr._pyqueue import _REENTRANT as _TWIN_REENTRANT  # noqa: E402

POLICIES = ("block", "drop_oldest", "drop_newest")
N_WORKERS = 8
DEL_PRODUCER = 0  # items created inside a __del__ (no FIFO check for them)
SEQ_BITS = 40
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def load_impl(name):
    """The FrameQueue class for "c" (compiled) or "python" (pure twin)."""
    if name == "c":
        from bufmgr._ring import FrameQueue
    elif name == "python":
        from bufmgr._pyqueue import FrameQueue
    else:
        raise ValueError(f"unknown implementation {name!r}")
    return FrameQueue


def trim_heap():
    """Give freed heap memory back to the OS (glibc), so RSS shows live memory."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except Exception:  # noqa: BLE001 - not glibc: RSS just stays higher
        pass


def rss_bytes():
    """Current resident set size (Linux /proc), else peak RSS, else 0."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    except Exception:  # noqa: BLE001
        return 0


# ---------------------------------------------------------------------------
# items and their faults


class InjectedFault(RuntimeError):
    """Raised on purpose from an item's __del__."""


class RunContext:
    """Shared per-seed state reachable from Item.__del__ (which may run in
    any thread, inside any queue call's caller). Only list appends and
    itertools counters (both thread-safe with and without the GIL) are used
    from __del__, never a lock."""

    def __init__(self, q, overflow):
        self.qref = weakref.ref(q)
        self.overflow = overflow
        self.created = itertools.count()
        self.released = itertools.count()
        self.del_seq = itertools.count(1)
        # Appended from __del__ in any thread: lists, whose append is atomic
        # both under the GIL and on free-threaded builds (array.append is
        # not thread-safe without the GIL: records get lost or it crashes).
        self.del_put_ok: list[int] = []
        self.del_got: list[int] = []
        self.del_returned: list[int] = []
        self.del_ops: list[str] = []
        self.del_refused: list[str] = []  # re-entrant calls the pure twin refused (see _run_fault)
        self.errors: list[str] = []
        self.local = threading.local()


class Item:
    """A frame stand-in: a unique id (producer << 40 | seq), a shared blob
    (refcount checked), and an optional fault run when it is released."""

    __slots__ = ("uid", "blob", "fault", "ctx", "__weakref__")

    def __init__(self, ctx, uid, blob, fault=None):
        self.ctx, self.uid, self.blob, self.fault = ctx, uid, blob, fault
        next(ctx.created)

    def __repr__(self):
        return f"Item({self.uid >> SEQ_BITS}:{self.uid & ((1 << SEQ_BITS) - 1)})"

    def __del__(self):
        ctx = self.ctx
        next(ctx.released)
        fault = self.fault
        if fault is None:
            return
        depth = getattr(ctx.local, "depth", 0)
        if depth >= 4:  # bound chains of re-entrant releases
            return
        ctx.local.depth = depth + 1
        try:
            _run_fault(ctx, fault, self.blob)
        finally:
            ctx.local.depth = depth


def _run_fault(ctx, fault, blob):
    if fault == "raise":
        raise InjectedFault("injected fault in Item.__del__")
    q = ctx.qref()
    if q is None:
        return
    ctx.del_ops.append(fault)
    try:
        if fault == "stats":
            s = q.stats()
            if s["puts"] != s["gets"] + s["dropped"] + s["cleared"] + s["size"]:
                ctx.errors.append(f"stats from __del__ do not add up: {s}")
        elif fault == "repr":
            repr(q), len(q), q.empty(), q.full()
        elif fault == "put":
            uid = (DEL_PRODUCER << SEQ_BITS) | next(ctx.del_seq)
            d = q.put_nowait(Item(ctx, uid, blob, None))
            ctx.del_put_ok.append(uid)
            if d is not None:
                ctx.del_returned.append(d.uid)
        elif fault == "get":
            got = q.get_nowait()
            ctx.del_got.append(got.uid)
            q.task_done()
        elif fault == "clear":
            q.clear()
    except (Full, Empty, ShutDown):
        pass
    except RuntimeError as e:
        if not _twin_refused_reentry(q, e):
            raise
        # Not a put / get / clear: the twin did nothing (nothing to record).
        ctx.del_refused.append(fault)


def _twin_refused_reentry(q, exc) -> bool:
    """True if ``exc`` is the pure twin refusing a call from a finalizer that
    runs inside one of this thread's critical sections of ``q`` -- where the
    call could not proceed (the twin raises instead of self-deadlocking).

    Only on free-threaded builds: there an item whose last reference another
    thread dropped is deallocated later in the thread that created it, maybe
    inside such a critical section. With the GIL, items are released where
    their last reference goes, never under the twin's lock, so this never
    happens (and stays a failure). The compiled class has no ``_mutex``
    attribute and never raises this."""
    if not FREE_THREADED or str(exc) != _TWIN_REENTRANT:
        return False
    mutex = getattr(q, "_mutex", None)
    is_owned = getattr(mutex, "_is_owned", None)
    return is_owned is not None and is_owned()


FAULTS = ("raise", "stats", "repr", "put", "get", "clear")
FAULT_WEIGHTS = (3, 2, 1, 3, 3, 1)


def count_faults(faults: dict) -> int:
    """Injected faults in a result's ``faults`` dict: __del__ raising or
    re-entering, invalid arguments, failing iterables, shutdowns. (The
    "op_*" entries count disruptive operations: clear, get_latest, join;
    "del_refused" counts re-entering faults already counted under del_*.)"""
    return sum(n for k, n in faults.items() if not k.startswith("op_") and k != "del_refused")


# ---------------------------------------------------------------------------
# per-thread recording


class Recorder:
    def __init__(self, name):
        self.name = name
        self.put_ok = array("q")     # put/put_many returned normally
        self.put_maybe = array("q")  # put_many raised: queued or not
        self.got = array("q")        # delivered by get*
        self.returned = array("q")   # returned by put/put_many (evicted/refused)
        self.last_seq: dict[int, int] = {}
        self.errors: list[str] = []
        self.ops = 0
        self.faults: dict[str, int] = {}

    def fault(self, kind):
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def removed_in_order(self, item):
        """FIFO check: this thread removes each producer's items in order."""
        producer, seq = item.uid >> SEQ_BITS, item.uid & ((1 << SEQ_BITS) - 1)
        if producer == DEL_PRODUCER:
            return
        last = self.last_seq.get(producer, 0)
        if seq <= last:
            self.errors.append(
                f"{self.name}: FIFO violated for producer {producer}: {seq} after {last}"
            )
        self.last_seq[producer] = seq


# ---------------------------------------------------------------------------
# one seed


@dataclass
class SeedConfig:
    seed: int
    impl: str
    duration: float
    maxsize: int
    overflow: str
    shutdown_at: float
    shutdown_mode: str  # graceful | immediate | graceful+immediate
    fault_rate: float
    switch_interval: float
    threads: int = N_WORKERS

    @classmethod
    def draw(cls, seed, impl, duration, threads=N_WORKERS):
        rng = random.Random(f"cfg-{seed}")
        return cls(
            seed=seed,
            impl=impl,
            duration=duration,
            maxsize=rng.choice([0, 1, 2, 4, 16, 64, 256]),
            overflow=rng.choice(POLICIES),
            shutdown_at=duration * rng.uniform(0.5, 0.95),
            shutdown_mode=rng.choice(["graceful", "immediate", "graceful+immediate"]),
            fault_rate=rng.choice([0.0, 0.02, 0.1]),
            switch_interval=rng.choice([1e-5, 1e-4, 5e-3]),
            threads=threads,
        )


@dataclass
class SeedResult:
    config: dict
    ok: bool = True
    errors: list = field(default_factory=list)
    ops: int = 0
    items_put: int = 0
    stats: dict = field(default_factory=dict)
    faults: dict = field(default_factory=dict)
    lost: int = 0
    duplicates: int = 0
    put_maybe: int = 0
    elapsed: float = 0.0
    rss_after: int = 0


def _timeout(rng):
    """A finite timeout (None = forever is handed out by _Forever)."""
    if rng.random() < 0.3:
        return 0
    return rng.choice([0.0005, 0.001, 0.002, 0.005, 0.01])


class _Forever:
    """Hands out timeout=None (wait forever) to at most threads-2 workers at
    a time, shared with join(): at least two workers keep running, so the
    run cannot stall with everybody waiting for everybody until shutdown."""

    def __init__(self, permits):
        self.sem = threading.Semaphore(max(1, permits))
        self.local = threading.local()

    def timeout(self, rng):
        if rng.random() < 0.05 and self.sem.acquire(False):
            self.local.held = True
            return None
        return _timeout(rng)

    def release(self):
        if getattr(self.local, "held", False):
            self.local.held = False
            self.sem.release()


def _worker(q, ctx, cfg, wid, blobs, forever, rec, go):
    rng = random.Random(f"w-{cfg.seed}-{wid}")
    seq = itertools.count(1)
    producer = wid + 1
    base = producer << SEQ_BITS

    def make():
        fault = None
        if cfg.fault_rate and rng.random() < cfg.fault_rate:
            fault = rng.choices(FAULTS, FAULT_WEIGHTS)[0]
        return Item(ctx, base | next(seq), blobs[rng.randrange(len(blobs))], fault)

    def delivered(items):
        for it in items:
            rec.got.append(it.uid)
            rec.removed_in_order(it)
        for _ in items:
            q.task_done()  # ValueError here would be a counting bug

    def returned_from_put(d, put_items):
        # drop_newest returns the refused new items themselves; drop_oldest
        # the evicted oldest ones (FIFO-checked); block never returns any.
        for it in d:
            rec.returned.append(it.uid)
            if cfg.overflow == "drop_oldest":
                rec.removed_in_order(it)
            elif cfg.overflow == "drop_newest":
                if not any(it is p for p in put_items):
                    rec.errors.append(f"{rec.name}: drop_newest returned {it!r}, not an item it was given")
            else:
                rec.errors.append(f"{rec.name}: block policy returned dropped {it!r}")

    go.wait()
    try:
        while not q.is_shutdown:
            rec.ops += 1
            r = rng.random()
            try:
                if r < 0.22:
                    it = make()
                    block = rng.random() < 0.7
                    try:
                        d = q.put(it, block, forever.timeout(rng))
                    except (Full, ShutDown):
                        continue
                    finally:
                        forever.release()
                    rec.put_ok.append(it.uid)
                    if d is not None:
                        returned_from_put([d], [it])
                    del it, d
                elif r < 0.30:
                    it = make()
                    try:
                        d = q.put_nowait(it)
                    except (Full, ShutDown):
                        continue
                    rec.put_ok.append(it.uid)
                    if d is not None:
                        returned_from_put([d], [it])
                    del it, d
                elif r < 0.41:
                    batch = [make() for _ in range(rng.randint(1, 6))]
                    block = rng.random() < 0.6
                    try:
                        d = q.put_many(batch if rng.random() < 0.5 else iter(batch), block,
                                       forever.timeout(rng))
                    except (Full, ShutDown):
                        rec.put_maybe.extend(it.uid for it in batch)
                        continue
                    finally:
                        forever.release()
                    rec.put_ok.extend(it.uid for it in batch)
                    returned_from_put(d, batch)
                    del batch, d
                elif r < 0.60:
                    try:
                        got = q.get(rng.random() < 0.8, forever.timeout(rng))
                    except Empty:
                        continue
                    finally:
                        forever.release()
                    delivered([got])
                    del got
                elif r < 0.67:
                    try:
                        got = q.get_nowait()
                    except Empty:
                        continue
                    delivered([got])
                    del got
                elif r < 0.80:
                    try:
                        got = q.get_many(rng.randint(1, 8), rng.random() < 0.8, forever.timeout(rng))
                    except Empty:
                        continue
                    finally:
                        forever.release()
                    if not got:
                        rec.errors.append(f"{rec.name}: get_many returned an empty list")
                    delivered(got)
                    del got
                elif r < 0.84:
                    try:
                        got = q.get_latest(rng.random() < 0.8, forever.timeout(rng))
                    except Empty:
                        continue
                    finally:
                        forever.release()
                    rec.fault("op_get_latest")
                    delivered([got])
                    del got
                elif r < 0.845:
                    q.clear()
                    rec.fault("op_clear")
                elif r < 0.90:
                    s = q.stats()
                    if s["puts"] != s["gets"] + s["dropped"] + s["cleared"] + s["size"]:
                        rec.errors.append(f"{rec.name}: stats do not add up: {s}")
                    if cfg.maxsize > 0 and not (s["size"] <= cfg.maxsize and s["high_water"] <= cfg.maxsize):
                        rec.errors.append(f"{rec.name}: size/high_water above maxsize: {s}")
                elif r < 0.96:
                    repr(q), len(q), q.qsize(), q.empty(), q.full(), q.unfinished_tasks
                elif r < 0.963:
                    if forever.sem.acquire(False):
                        try:
                            q.join()
                            rec.fault("op_join")
                        finally:
                            forever.sem.release()
                else:
                    _bad_call(q, rng, rec, make)
            except ShutDown:
                continue
        # shut down: drain what is left (graceful), then finish
        for _ in range(1_000_000):
            try:
                got = q.get_many(rng.randint(1, 16), True, 0.01)
            except ShutDown:
                break
            except Empty:
                continue
            delivered(got)
            del got
    except BaseException:  # noqa: BLE001 - reported, never re-raised in a thread
        rec.errors.append(f"{rec.name}: unexpected exception\n{traceback.format_exc()}")


class _BoomIterError(Exception):
    pass


def _bad_call(q, rng, rec, make):
    """Invalid arguments and a failing iterable: must raise, queue untouched."""
    kind = rng.randrange(5)
    rec.fault("bad_args" if kind < 4 else "failing_iterable")
    try:
        if kind == 0:
            q.put(make(), True, -1)
        elif kind == 1:
            q.get(True, float("nan"))
        elif kind == 2:
            q.get_many(0)
        elif kind == 3:
            q.put_many([make()], True, "soon")
        else:
            batch = [make() for _ in range(rng.randint(1, 4))]

            def gen():
                yield from batch[:-1]
                raise _BoomIterError

            q.put_many(gen(), rng.random() < 0.5, 0)
    except (ValueError, TypeError, _BoomIterError):
        return
    except ShutDown:
        # arguments are validated (and the iterable consumed) before the
        # queue is touched, so a shut-down queue must not win here
        rec.errors.append(f"{rec.name}: bad call {kind} raised ShutDown, not its argument error")
        return
    rec.errors.append(f"{rec.name}: bad call {kind} did not raise")


def refcounts(objs) -> list[int]:
    """sys.getrefcount of each object, always measured by this one function.

    A refcount baseline and the later check must go through the same
    bytecode. sys.getrefcount(x) counts its own argument's reference only
    when the interpreter pushed a strong one: CPython 3.14's compiler loads a
    local with LOAD_FAST_BORROW (no reference taken) where its per-block
    analysis proves that safe, and with LOAD_FAST (a new reference) where it
    does not analyse the code -- e.g. anything reached only through an
    exception handler, like the statements after ``while True: try: ...
    except Empty: break``. The same ``[sys.getrefcount(b) for b in blobs]``
    written once before and once after such a loop reads 2 and 3 for the same
    object with the same referrers. Measured here, both readings use the same
    instruction, so only a reference really kept (by the queue, a leaked
    item, a traceback holding a frame) changes the result."""
    return [sys.getrefcount(o) for o in objs]


def run_seed(cfg: SeedConfig, *, liveness_s: float = 120.0, watchdog: bool = False,
             log=None, cls=None) -> SeedResult:
    """Run one seed; never raises for a failed invariant (see result.ok).

    ``cls``: the FrameQueue class (default: ``load_impl(cfg.impl)``).
    ``watchdog``: arm faulthandler.dump_traceback_later(exit=True) as a last
    resort (the script does; pytest has its own safety net).
    """
    if cls is None:
        cls = load_impl(cfg.impl)
    res = SeedResult(config=asdict(cfg))
    blobs = [bytearray(64) for _ in range(4)]
    gc.collect()
    blob_base = refcounts(blobs)
    q = cls(cfg.maxsize, cfg.overflow)
    qref = weakref.ref(q)
    ctx = RunContext(q, cfg.overflow)
    recs = [Recorder(f"worker-{i}") for i in range(cfg.threads)]
    main_rec = Recorder("main")
    forever = _Forever(cfg.threads - 2)
    go = threading.Event()
    unraisable: list[str] = []

    def hook(u):
        if isinstance(u.exc_value, InjectedFault):
            unraisable.append("injected")
        else:
            unraisable.append(f"{u.exc_type.__name__}: {u.exc_value!r} in {u.object!r}")

    shutdown_log: list[str] = []

    def shutter():
        rng = random.Random(f"s-{cfg.seed}")
        go.wait()
        time.sleep(cfg.shutdown_at)  # the random moment
        if cfg.shutdown_mode == "immediate":
            q.shutdown(immediate=True)
            shutdown_log.append("immediate")
        else:
            q.shutdown()
            shutdown_log.append("graceful")
            if cfg.shutdown_mode == "graceful+immediate":
                time.sleep(rng.uniform(0, 0.01))
                q.shutdown(True)
                shutdown_log.append("immediate")

    threads = [
        threading.Thread(target=_worker, args=(q, ctx, cfg, i, blobs, forever, recs[i], go),
                         name=f"soak-worker-{i}", daemon=True)
        for i in range(cfg.threads)
    ]
    threads.append(threading.Thread(target=shutter, name="soak-shutdown", daemon=True))

    old_hook, old_switch = sys.unraisablehook, sys.getswitchinterval()
    sys.unraisablehook = hook
    sys.setswitchinterval(cfg.switch_interval)
    if watchdog:
        faulthandler.dump_traceback_later(cfg.duration + liveness_s + 30, exit=True)
    t0 = time.monotonic()
    try:
        for t in threads:
            t.start()
        go.set()
        deadline = t0 + cfg.duration + liveness_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            res.errors.append(f"liveness: threads still running {liveness_s:.0f} s after the run: {stuck}")
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            q.shutdown(immediate=True)  # try to free them so the process can go on
            for t in threads:
                t.join(5)
            sys.unraisablehook = old_hook
            res.ok = False
            return res
        res.elapsed = time.monotonic() - t0

        # what is left after a graceful shutdown is drained by main
        while True:
            try:
                it = q.get_nowait()
            except (ShutDown, Empty):
                break
            main_rec.got.append(it.uid)
            q.task_done()
            del it
        stats = q.stats()
        res.stats = stats
        unfinished = q.unfinished_tasks
        if not q.is_shutdown:
            res.errors.append("queue is not shut down at the end")
    finally:
        sys.setswitchinterval(old_switch)
        if watchdog:
            faulthandler.cancel_dump_traceback_later()

    # -- conservation --------------------------------------------------------
    all_recs = recs + [main_rec]

    def joined(name, extra=()):
        out = array("q")
        for r in all_recs:
            out.extend(getattr(r, name))
        out.extend(extra)
        return out

    put_ok = joined("put_ok", ctx.del_put_ok)
    put_maybe = joined("put_maybe")
    got = joined("got", ctx.del_got)
    returned = joined("returned", ctx.del_returned)
    s_put_ok, s_maybe = set(put_ok), set(put_maybe)
    seen = got + returned
    s_seen = set(seen)
    err = res.errors
    err.extend(e for r in all_recs for e in r.errors)
    err.extend(ctx.errors)
    if len(s_put_ok) != len(put_ok) or s_put_ok & s_maybe:
        err.append("harness: an id was put twice")
    res.duplicates = len(seen) - len(s_seen)
    if res.duplicates:
        err.append(f"{res.duplicates} item(s) delivered/returned more than once")
    invented = s_seen - s_put_ok - s_maybe
    if invented:
        err.append(f"{len(invented)} item(s) came out that were never put")
    if stats["gets"] != len(got):
        err.append(f"stats gets {stats['gets']} != items delivered {len(got)}")
    k = stats["puts"] - len(put_ok)  # items of raising put_many calls that got in
    if not 0 <= k <= len(put_maybe):
        err.append(f"stats puts {stats['puts']} outside [{len(put_ok)}, {len(put_ok) + len(put_maybe)}]")
    if len(s_seen & s_maybe) > max(k, 0):
        err.append("more items of failed put_many calls came out than got in")
    unseen_allowed = stats["dropped"] - len(returned) + stats["cleared"] + stats["size"]
    if stats["dropped"] < len(returned):
        err.append(f"stats dropped {stats['dropped']} < items returned as dropped {len(returned)}")
    missing = len(s_put_ok - s_seen)
    res.lost = max(0, missing - unseen_allowed)
    if res.lost:
        err.append(f"{res.lost} item(s) lost: put, never delivered, returned, discarded or cleared")
    if not put_maybe and missing != unseen_allowed:
        err.append(f"exact accounting: {missing} unseen ids but the queue discarded/cleared {unseen_allowed}")
    if stats["puts"] != stats["gets"] + stats["dropped"] + stats["cleared"] + stats["size"]:
        err.append(f"final stats do not add up: {stats}")
    if stats["size"] != 0:
        err.append(f"queue not empty at the end: {stats}")
    if unfinished != 0:
        err.append(f"unfinished_tasks is {unfinished} at the end")

    # -- release: every item freed exactly once, blobs back to baseline ---------
    del q, threads
    for i in range(3):
        gc.collect()
        if qref() is None:
            break
    if qref() is not None:
        err.append("the queue object was not freed")
    sys.unraisablehook = old_hook
    created, released = next(ctx.created), next(ctx.released)
    if created != released:
        err.append(f"{created} items created but {released} released (leak or double free)")
    now = refcounts(blobs)
    if now != blob_base:
        err.append(f"blob refcounts {now} != baseline {blob_base}")
    bad_unraisable = [u for u in unraisable if u != "injected"]
    if bad_unraisable:
        err.append(f"unexpected exceptions in __del__: {bad_unraisable[:5]}")

    # -- figures --------------------------------------------------------------
    res.ops = sum(r.ops for r in recs)
    res.items_put = len(put_ok) + max(k, 0)
    res.put_maybe = len(put_maybe)
    faults: dict[str, int] = {}
    for r in all_recs:
        for key, n in r.faults.items():
            faults[key] = faults.get(key, 0) + n
    faults["del_raise"] = len(unraisable) - len(bad_unraisable)
    for op in ctx.del_ops:
        faults[f"del_{op}"] = faults.get(f"del_{op}", 0) + 1
    if ctx.del_refused:  # free-threaded pure twin only (a subset of the del_* above)
        faults["del_refused"] = len(ctx.del_refused)
    faults["shutdown_" + "+".join(shutdown_log)] = 1
    res.faults = faults
    res.ok = not err
    # RSS of what is still alive: drop this seed's bookkeeping first
    del put_ok, put_maybe, got, returned, seen, s_put_ok, s_maybe, s_seen, invented
    del recs, main_rec, all_recs, ctx
    gc.collect()
    trim_heap()
    res.rss_after = rss_bytes()
    if log is not None:
        log(_seed_line(res))
    return res


def _seed_line(res: SeedResult) -> str:
    c = res.config
    nf = count_faults(res.faults)
    return (
        f"[{c['impl']:6}] seed {c['seed']:3} {c['overflow']:11} maxsize={c['maxsize']:<3} "
        f"{c['shutdown_mode']:18} ops={res.ops:8} items={res.items_put:8} "
        f"faults={nf:6} lost={res.lost} dup={res.duplicates} "
        f"rss={res.rss_after / 2**20:6.1f}MiB {'ok' if res.ok else 'FAIL'}"
    )


# ---------------------------------------------------------------------------
# CLI


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="total run time (all seeds, all implementations)")
    p.add_argument("--seeds", type=int, default=10, help="seeds per implementation")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--impl", choices=["c", "python", "both"], default="both")
    p.add_argument("--threads", type=int, default=N_WORKERS, help="worker threads per seed")
    p.add_argument("--liveness", type=float, default=120.0, help="seconds a thread may overrun before it counts as hung")
    p.add_argument("--rss-slack-mib", type=float, default=32.0, help="allowed RSS growth after warm-up")
    p.add_argument("--json", help="write every seed's result here")
    args = p.parse_args(argv)

    impls = ["c", "python"] if args.impl == "both" else [args.impl]
    for impl in impls:
        load_impl(impl)  # fail early (e.g. extension not built)
    duration = args.seconds / (args.seeds * len(impls))
    import bufmgr

    print(f"bufmgr soak: {bufmgr.__file__}; python {sys.version.split()[0]}; "
          f"{args.seeds} seeds x {impls}, {duration:.2f} s per seed, {args.threads} workers + 1 shutdown thread",
          flush=True)
    results: list[SeedResult] = []
    failed = False
    for impl in impls:
        rss = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            cfg = SeedConfig.draw(seed, impl, duration, args.threads)
            res = run_seed(cfg, liveness_s=args.liveness, watchdog=True,
                           log=lambda line: print(line, flush=True))
            results.append(res)
            rss.append(res.rss_after)
            if not res.ok:
                failed = True
                for e in res.errors:
                    print("    " + e.replace("\n", "\n    "), flush=True)
        warm = max(1, len(rss) // 4)
        growth = max(rss[warm - 1:]) - rss[warm - 1]
        flat = growth <= args.rss_slack_mib * 2**20
        print(f"[{impl:6}] RSS after seed {warm}: {rss[warm - 1] / 2**20:.1f} MiB, max after: "
              f"{max(rss[warm - 1:]) / 2**20:.1f} MiB, last: {rss[-1] / 2**20:.1f} MiB -> "
              f"{'flat' if flat else 'GROWING'} (slack {args.rss_slack_mib:g} MiB)", flush=True)
        failed |= not flat

    tot_faults: dict[str, int] = {}
    for r in results:
        for k, v in r.faults.items():
            tot_faults[k] = tot_faults.get(k, 0) + v
    summary = {
        "seeds": len(results),
        "failed_seeds": sum(not r.ok for r in results),
        "ops": sum(r.ops for r in results),
        "items_put": sum(r.items_put for r in results),
        "items_lost": sum(r.lost for r in results),
        "duplicates": sum(r.duplicates for r in results),
        "faults_injected": count_faults(tot_faults),
        "faults": dict(sorted(tot_faults.items())),
        "seconds": round(sum(r.elapsed for r in results), 1),
    }
    print("summary: " + json.dumps(summary), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "seeds": [asdict(r) for r in results]}, f, indent=1)
    print("SOAK FAILED" if failed else "soak passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
