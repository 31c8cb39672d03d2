"""``python -m bufmgr bench --scenario processes``: frames between processes.

One producer process hands frames to 1, 2 or 4 consumer processes through
each transport, side by side in one run; the consumers compete for the frames
(each frame goes to exactly one of them). Transports (``--transport``):

* ``ring-copy``     -- ``SharedFrameRing.put(src)`` copies the frame into a
  shared slot (one copy); the consumer ``get()``\\ s a zero-copy ``Frame`` and
  reads it in place, then releases it.
* ``ring-reserve``  -- ``with ring.reserve() as slot:`` the producer writes
  the frame straight into the shared slot (here: its stamps -- a decoder
  would write the image there), leaving the block commits it; the consumer
  reads it in place. Zero copies: only the hand-off is paid.
* ``mp-queue``      -- ``multiprocessing.Queue.put(array)``: pickle, pipe,
  unpickle (a fresh array per frame in the consumer).
* ``faster-fifo``   -- ``faster_fifo.Queue.put(array)``: pickle into a
  shared-memory byte ring, unpickle (optional: ``pip install faster-fifo``
  or ``bufmgr[bench]``; the row says n/a without it).
* ``shm-index``     -- the hand-rolled baseline: a
  ``multiprocessing.shared_memory.SharedMemory`` block of slots, a
  ``multiprocessing.Queue`` of free slot indices and one of filled ones. The
  producer takes a free index, copies the frame into the slot (one copy),
  queues the index; the consumer reads the slot in place and gives the index
  back.
* ``shm-index-inplace`` -- the same baseline written in place (the
  producer writes the stamps into the slot, no copy): what ``ring-reserve``
  replaces.
* ``copyto``        -- ``numpy.copyto(dst, src)`` in ONE process: the cost of
  copying the frame once, the floor for any design that copies it once
  ("vs floor" divides by this row; issue 13's target is set against it).
  Both buffers stay in the CPU cache (12 MB of the 32 MB L3 of the machine
  in the README).
* ``copyto-2dst``   -- the same, ``dst`` taken in turn from 2 buffers: what
  one copy costs when the consumer still holds the previous frame, i.e. the
  working set of any pipelined one-copy design (18 MB for 6 MB frames). A
  SharedFrameRing reuses the slot freed last (a LIFO free list); with a
  consumer that keeps up, it still holds frame N when the producer copies
  N+1, so the ring copies into two slots in turn, like this row: its
  ``vs floor`` is the bound for a pipelined copy-in on this machine (on
  the pages numpy gets, below).
* ``copyto-2shm``   -- ``copyto-2dst`` with its 2 buffers in one ``/dev/shm``
  segment (``multiprocessing.shared_memory``), i.e. on the pages the ring's
  slots get (4 KiB unless ``/dev/shm`` is mounted ``huge=``), where numpy's
  own large buffers get 2 MiB pages through THP: the bound for a pipelined
  copy-in on the ring's pages.
* ``copyto-8dst``   -- the same, ``dst`` taken in turn from as many buffers as
  the ring has slots: what one copy costs when it lands in memory that left
  the cache, like the ``shm-index`` baseline, which cycles through its slots
  (FIFO).

The copyto rows' buffers are numpy's: numpy asks for transparent huge pages
for buffers of 4 MiB or more, so where THP is ``madvise`` or ``always`` they
sit on 2 MiB pages, while a SharedFrameRing's slots get the pages of
/dev/shm (4 KiB unless it is mounted ``huge=advise``); the header line says
which (``/dev/shm pages``, ``numpy frame pages``).

Payloads (``--proc-payload``): ``frame`` = 6,220,800 B (a 1080p RGB frame,
numpy), ``64b`` = 64-byte items.

Integrity, every row: each frame carries its sequence number as three 8-byte
stamps (head, middle, tail). Consumers check that the three agree (a torn or
overwritten frame does not), that the numbers they receive increase, and send
every number they saw back to the parent, which checks that none is
duplicated or out of range and that ``produced == delivered + dropped``
(``dropped`` is the ring's own counter; every transport here blocks, so it
is 0). Anything else is ``lost`` and fails the run (exit status 1).

Timing: the child processes are started once per row (forkserver where the
platform has it, else spawn) and stay up for the whole scenario; each row
warms up, then the rows run their timed rounds interleaved (round 1 of every
row, then round 2 ...), so load elsewhere on the machine hits all rows alike.
A round moves N frames: the
parent tells the producer "put N", the producer puts N frames then one round
marker per consumer; a round ends when every consumer has reported its marker,
i.e. when the last frame has been read. The fastest round is reported
(frames/s = N / its duration). N is sized from the warm-up so a round takes
about ``seconds``. The same :class:`Session` drives the pytest-benchmark suite
(bench/test_bench_processes.py), so the logic is written once.
"""

from __future__ import annotations

import array
import functools
import json
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import struct
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .bench import _int, _ratio

try:
    import numpy as np
except ImportError:  # the frame rows say n/a
    np = None  # type: ignore[assignment]

# --------------------------------------------------------------------------
# what is measured

FRAME_BYTES = 1920 * 1080 * 3  # 6,220,800

PAYLOADS: dict[str, tuple[int, str]] = {
    "frame": (FRAME_BYTES, "6,220,800 B 1080p RGB frames"),
    "64b": (64, "64 B items"),
}
#: ring slots / queue maxsize per payload (the same for every transport)
SLOTS: dict[str, int] = {"frame": 8, "64b": 1024}

TRANSPORTS: dict[str, str] = {
    "ring-copy": "SharedFrameRing put+get",
    "ring-reserve": "SharedFrameRing reserve+get",
    "ring-many": "SharedFrameRing put+get_many",
    "mp-queue": "multiprocessing.Queue",
    "faster-fifo": "faster-fifo",
    "faster-fifo-many": "faster-fifo get_many",
    "shm-index": "SharedMemory+index queue",
    "shm-index-inplace": "SharedMemory+index, in place",
    "copyto": "numpy.copyto (1 process)",
    "copyto-2dst": "numpy.copyto, 2 dst (1 process)",
    "copyto-2shm": "numpy.copyto, 2 shm dst (1 process)",
    "copyto-8dst": "numpy.copyto, 8 dst (1 process)",
}
TRANSPORT_NOTES: dict[str, str] = {
    "ring-copy": "copy in, zero-copy read",
    "ring-reserve": "written in place, zero-copy read",
    "ring-many": "copy in; consumer takes batches (get_many)",
    "mp-queue": "pickle + pipe",
    "faster-fifo": "pickle + shm byte ring",
    "faster-fifo-many": "pickle; consumer takes batches (get_many)",
    "shm-index": "hand-rolled: copy in, read in place",
    "shm-index-inplace": "hand-rolled: written in place",
    "copyto": "one copy, one dst: the floor",
    "copyto-2dst": "one copy, into 2 dsts in turn: a pipeline's working set",
    "copyto-2shm": "the same, the 2 dsts in /dev/shm (the ring's pages)",
    "copyto-8dst": "one copy, into `slots` dsts in turn",
}
OURS = ("ring-copy", "ring-reserve", "ring-many")
FASTER_FIFO = ("faster-fifo", "faster-fifo-many")
BATCH = 64  # get_many's max_items for the batched consumers
FLOOR = "copyto"
#: the one-process rows (no consumer): numpy.copyto into this many
#: destination buffers in turn (None: as many as the ring has slots)
FLOOR_DESTINATIONS: dict[str, int | None] = {"copyto": 1, "copyto-2dst": 2, "copyto-2shm": 2,
                                             "copyto-8dst": None}
FLOORS_ON_SHM = ("copyto-2shm",)  # destinations in a /dev/shm segment, not numpy's own memory
FLOORS = tuple(FLOOR_DESTINATIONS)

CONSUMERS_DEFAULT = (1, 2, 4)
#: seconds one timed round should take: (default, --quick)
ROUND_SECONDS: tuple[float, float] = (0.3, 0.1)
#: timed rounds per row (interleaved with the other rows'), the fastest is reported: (default, --quick)
ROUNDS: tuple[int, int] = (5, 1)
#: a warm-up round is at least this long (pages faulted in, caches, sizing N)
WARMUP_SECONDS: tuple[float, float] = (0.2, 0.05)
#: at most this many items per round (consumers keep every stamp they saw)
MAX_ROUND_ITEMS = 2_000_000

START_TIMEOUT_S = 60.0  # children started and attached
ROUND_TIMEOUT_S = 120.0  # liveness bound of one round (a hang fails the row)
GET_TIMEOUT_S = 60.0  # a consumer waiting this long for a frame gives up
JOIN_TIMEOUT_S = 10.0

STAMP = struct.Struct("<Q")
MARK = 2**64 - 1  # a round marker's stamp: never a sequence number
SMALL_MAX = 4096  # payloads up to this size are built as fresh bytes per item


def stamp_offsets(nbytes: int) -> tuple[int, int, int]:
    """Where the three 8-byte copies of the sequence number go."""
    if nbytes < 24:
        raise ValueError(f"payload must be at least 24 bytes, got {nbytes}")
    mid = (nbytes // 2) & ~7
    return 0, mid, nbytes - 8


def _small_struct(nbytes: int) -> struct.Struct:
    """A struct that packs a whole small item: the stamp at the three offsets."""
    a, b, c = stamp_offsets(nbytes)
    return struct.Struct(f"<Q{b - a - 8}xQ{c - b - 8}xQ")


# --------------------------------------------------------------------------
# availability


def _shared_ring_class() -> tuple[Any, str]:
    if os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0"):
        return None, "n/a: BUFMGR_NO_EXTENSIONS=1 (SharedFrameRing needs the compiled core)"
    try:
        from bufmgr import SharedFrameRing  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, f"n/a: bufmgr.SharedFrameRing not available ({exc})"
    return SharedFrameRing, ""


def _faster_fifo() -> tuple[Any, str]:
    try:
        import faster_fifo
    except ImportError:
        return None, "n/a: faster-fifo not installed (pip install faster-fifo, or bufmgr[bench])"
    return faster_fifo, ""


def unavailable(transport: str, payload: str) -> str:
    """Why this row cannot run here ('' if it can)."""
    if transport in OURS:
        why = _shared_ring_class()[1]
        if why:
            return why
    if transport in FASTER_FIFO:
        why = _faster_fifo()[1]
        if why:
            return why
    if (payload == "frame" or transport in FLOORS) and np is None:
        return "n/a: numpy not installed (pip install numpy)"
    if sys.platform == "win32" and transport in OURS:
        return "n/a: SharedFrameRing is not available on Windows"
    return ""


def mp_context() -> Any:
    """forkserver where the platform has it (children start fast, inherit
    nothing), else spawn. Never fork: the parent may have threads."""
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return mp.get_context("spawn")


# --------------------------------------------------------------------------
# the children


@dataclass(frozen=True)
class RowSpec:
    transport: str
    payload: str
    consumers: int
    slots: int

    @property
    def nbytes(self) -> int:
        return PAYLOADS[self.payload][0]


def _source_buffer(nbytes: int) -> Any:
    """A producer's frame buffer with non-trivial content."""
    if np is not None:
        src = (np.arange(nbytes, dtype=np.uint32) * 2654435761 >> 13).astype(np.uint8)
        return src
    return bytearray(os.urandom(nbytes))


def _stamp(buf: Any, offs: tuple[int, int, int], seq: int) -> None:
    pack_into = STAMP.pack_into
    for off in offs:
        pack_into(buf, off, seq)


class _Producer:
    """produce(seq0, n), mark(), end() for one transport, in the producer process."""

    def __init__(self, spec: RowSpec, handle: Any) -> None:
        self.spec = spec
        t = spec.transport
        nbytes = spec.nbytes
        offs = stamp_offsets(nbytes)
        small = nbytes <= SMALL_MAX
        pack_small = _small_struct(nbytes).pack if small else None
        pack_into = STAMP.pack_into
        a, b, c = offs
        self.cleanup: Callable[[], None] = lambda: None
        marker = STAMP.pack(MARK) * 3  # 24 B: a partial frame / small object
        consumers = spec.consumers

        if t in OURS:
            ring = handle

            def mark() -> None:
                for _ in range(consumers):
                    ring.put(marker)

            def end() -> None:
                ring.shutdown()

            if t in ("ring-copy", "ring-many"):
                put = ring.put
                if small:

                    def produce(seq0: int, n: int) -> None:
                        for seq in range(seq0, seq0 + n):
                            put(pack_small(seq, seq, seq))  # type: ignore[misc]

                else:
                    src = _source_buffer(nbytes)

                    def produce(seq0: int, n: int) -> None:
                        for seq in range(seq0, seq0 + n):
                            pack_into(src, a, seq)
                            pack_into(src, b, seq)
                            pack_into(src, c, seq)
                            put(src)

            else:  # ring-reserve: the stamps are written straight into the slot
                reserve = ring.reserve
                if small:
                    pack_small_into = _small_struct(nbytes).pack_into

                    def produce(seq0: int, n: int) -> None:
                        for seq in range(seq0, seq0 + n):
                            with reserve() as slot:
                                pack_small_into(slot, 0, seq, seq, seq)

                else:

                    def produce(seq0: int, n: int) -> None:
                        for seq in range(seq0, seq0 + n):
                            with reserve() as slot:
                                pack_into(slot, a, seq)
                                pack_into(slot, b, seq)
                                pack_into(slot, c, seq)

        elif t in ("mp-queue",) + FASTER_FIFO:
            q = handle
            if t in FASTER_FIFO:
                qput = q.put

                def put(obj: Any) -> None:
                    qput(obj, timeout=GET_TIMEOUT_S)  # faster-fifo's default is 10 s

            else:
                put = q.put

            def mark() -> None:
                for _ in range(consumers):
                    put("mark")

            def end() -> None:
                for _ in range(consumers):
                    put(None)

            if small:

                def produce(seq0: int, n: int) -> None:
                    for seq in range(seq0, seq0 + n):
                        put(pack_small(seq, seq, seq))  # type: ignore[misc]

            else:
                # mp.Queue pickles in a feeder thread, after put() returned:
                # a buffer must not be refilled until its frame was pickled.
                # At most `slots` frames are queued and not yet got (maxsize),
                # so a pool of slots + 1 buffers used in turn is never refilled
                # early -- no extra copy is needed. (faster-fifo pickles
                # inside put(); the pool costs it nothing.)
                pool = [_source_buffer(nbytes) for _ in range(spec.slots + 1)]
                k = len(pool)

                def produce(seq0: int, n: int) -> None:
                    for seq in range(seq0, seq0 + n):
                        buf = pool[seq % k]
                        pack_into(buf, a, seq)
                        pack_into(buf, b, seq)
                        pack_into(buf, c, seq)
                        put(buf)

        elif t in ("shm-index", "shm-index-inplace"):
            shm, free_q, full_q = handle
            mv = shm.buf
            slots_mv = [mv[i * nbytes : (i + 1) * nbytes] for i in range(spec.slots)]
            get_free, put_full = free_q.get, full_q.put

            def mark() -> None:
                for _ in range(consumers):
                    put_full(-2)

            def end() -> None:
                for _ in range(consumers):
                    put_full(-1)

            if t == "shm-index":
                src = _source_buffer(nbytes) if not small else bytearray(nbytes)
                src_mv = memoryview(src).cast("B")

                def produce(seq0: int, n: int) -> None:
                    for seq in range(seq0, seq0 + n):
                        pack_into(src, a, seq)
                        pack_into(src, b, seq)
                        pack_into(src, c, seq)
                        i = get_free()
                        slots_mv[i][:] = src_mv  # one memcpy
                        put_full(i)

            else:

                def produce(seq0: int, n: int) -> None:
                    for seq in range(seq0, seq0 + n):
                        i = get_free()
                        s = slots_mv[i]
                        pack_into(s, a, seq)
                        pack_into(s, b, seq)
                        pack_into(s, c, seq)
                        put_full(i)

            def cleanup() -> None:
                for s in slots_mv:
                    s.release()
                slots_mv.clear()
                shm.close()

            self.cleanup = cleanup

        elif t in FLOORS:
            produce = self._copyto_into(nbytes, FLOOR_DESTINATIONS[t] or spec.slots, t in FLOORS_ON_SHM)

            def mark() -> None:
                pass

            def end() -> None:
                pass

        else:
            raise ValueError(f"unknown transport {t!r}")

        self.produce, self.mark, self.end = produce, mark, end

    def _copyto_into(self, nbytes: int, destinations: int, on_shm: bool = False) -> Callable[[int, int], None]:
        """The floor rows' produce(): stamp the source, numpy.copyto it into
        ``destinations`` buffers in turn, check the copy's tail stamp
        (mismatches counted in ``self.bad``). The buffers are kept in
        ``self.destinations``; ``on_shm``: in one /dev/shm segment, removed
        by ``self.cleanup``."""
        src = _source_buffer(nbytes)
        if on_shm:
            from multiprocessing import shared_memory

            seg = shared_memory.SharedMemory(create=True, size=nbytes * destinations)
            self.segment_name = seg.name
            dsts = [np.frombuffer(seg.buf, src.dtype, src.size, i * nbytes).reshape(src.shape)
                    for i in range(destinations)]
            for d in dsts:
                d[...] = 0  # every page touched before timing, as zeros_like's are

            def cleanup() -> None:
                self.destinations = []
                dsts.clear()  # the views first: close() refuses while they exist
                seg.close()
                seg.unlink()

            self.cleanup = cleanup
        else:
            dsts = [np.zeros_like(src) for _ in range(destinations)]
        self.destinations = dsts
        a, b, c = stamp_offsets(nbytes)
        pack_into, unpack_from = STAMP.pack_into, STAMP.unpack_from
        copyto = np.copyto
        k = len(dsts)
        self.bad = 0

        def produce(seq0: int, n: int) -> None:
            bad = 0
            for seq in range(seq0, seq0 + n):
                pack_into(src, a, seq)
                pack_into(src, b, seq)
                pack_into(src, c, seq)
                dst = dsts[seq % k]
                copyto(dst, src)
                if unpack_from(dst, c)[0] != seq:  # the integrity check of this row
                    bad += 1
            self.bad += bad

        return produce


def _until_own_deadline(call: Callable[..., Any], st: Any) -> Callable[[float], Any]:
    """``call(timeout=...)`` again until the caller's own deadline.

    faster-fifo's get/get_many(timeout=60) sometimes raises Empty long before
    60 s when several consumers wait (seen here with 4 consumers of 6 MB
    frames): what a user has to do is wait again until their own deadline.
    Each early Empty is counted in ``st.early_empty``."""
    import queue as _queue

    def call_until(timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return call(timeout=max(0.001, deadline - time.monotonic()))
            except _queue.Empty:
                if time.monotonic() >= deadline:
                    raise
                st.early_empty += 1

    return call_until


class _Consumer:
    """consume() -> 'mark' | 'end' for one transport, in a consumer process;
    it checks every item's stamps and keeps the sequence numbers it saw."""

    def __init__(self, spec: RowSpec, handle: Any) -> None:
        t = spec.transport
        nbytes = spec.nbytes
        a, b, c = stamp_offsets(nbytes)
        unpack_from = STAMP.unpack_from
        self.delivered = 0
        self.torn = 0  # stamps disagree, or the wrong size
        self.disorder = 0  # a number not above the previous one
        self.last = -1
        self.seqs = array.array("Q")
        seen = self.seqs.append
        self.cleanup: Callable[[], None] = lambda: None
        st = self

        if t == "ring-many":
            ring = handle
            from bufmgr import ShutDown

            get_many = ring.get_many
            marker = STAMP.pack(MARK) * 3

            def consume() -> str:
                delivered = torn = disorder = 0
                last = st.last
                try:
                    while True:
                        try:
                            batch = get_many(BATCH, timeout=GET_TIMEOUT_S)
                        except ShutDown:
                            return "end"
                        marks = 0
                        for f in batch:
                            head = unpack_from(f, 0)[0]
                            if head == MARK:
                                marks += 1
                            else:
                                if unpack_from(f, b)[0] != head or unpack_from(f, c)[0] != head:
                                    torn += 1
                                if head <= last:
                                    disorder += 1
                                last = head
                                seen(head)
                                delivered += 1
                            f.release()
                        if marks:
                            # a batch can hold the markers meant for the other
                            # consumers (nothing else is queued after them): give
                            # those back
                            for _ in range(marks - 1):
                                ring.put(marker)
                            return "mark"
                finally:
                    st.delivered += delivered
                    st.torn += torn
                    st.disorder += disorder
                    st.last = last

        elif t in OURS:
            ring = handle
            from bufmgr import ShutDown

            get = ring.get

            def consume() -> str:
                delivered = torn = disorder = 0
                last = st.last
                try:
                    while True:
                        try:
                            f = get(timeout=GET_TIMEOUT_S)
                        except ShutDown:
                            return "end"
                        head = unpack_from(f, 0)[0]
                        if head == MARK:
                            f.release()
                            return "mark"
                        # read in place, before release: a slot reused too
                        # early shows as stamps that disagree
                        if unpack_from(f, b)[0] != head or unpack_from(f, c)[0] != head:
                            torn += 1
                        f.release()
                        if head <= last:
                            disorder += 1
                        last = head
                        seen(head)
                        delivered += 1
                finally:
                    st.delivered += delivered
                    st.torn += torn
                    st.disorder += disorder
                    st.last = last

        elif t == "faster-fifo-many":
            q = handle
            qput = q.put
            self.early_empty = 0
            get_many = _until_own_deadline(functools.partial(q.get_many, max_messages_to_get=BATCH), st)

            def consume() -> str:
                delivered = torn = disorder = 0
                last = st.last
                try:
                    while True:
                        batch = get_many(GET_TIMEOUT_S)
                        marks = ends = 0
                        for item in batch:
                            if item is None:
                                ends += 1
                                continue
                            if item.__class__ is str:
                                marks += 1
                                continue
                            head = unpack_from(item, 0)[0]
                            if (
                                len(item) != nbytes
                                or unpack_from(item, b)[0] != head
                                or unpack_from(item, c)[0] != head
                            ):
                                torn += 1
                            if head <= last:
                                disorder += 1
                            last = head
                            seen(head)
                            delivered += 1
                        del batch
                        if marks or ends:  # give back what was meant for the other consumers
                            for _ in range(marks + ends - 1):
                                qput("mark" if marks else None, timeout=GET_TIMEOUT_S)
                            return "mark" if marks else "end"
                finally:
                    st.delivered += delivered
                    st.torn += torn
                    st.disorder += disorder
                    st.last = last

        elif t in ("mp-queue", "faster-fifo"):
            q = handle
            timeout = GET_TIMEOUT_S
            if t == "faster-fifo":
                self.early_empty = 0
                get = _until_own_deadline(q.get, st)
            else:
                get = q.get

            def consume() -> str:
                delivered = torn = disorder = 0
                last = st.last
                try:
                    while True:
                        item = get(timeout=timeout)
                        if item is None:
                            return "end"
                        if item.__class__ is str:
                            return "mark"
                        head = unpack_from(item, 0)[0]
                        if (
                            len(item) != nbytes
                            or unpack_from(item, b)[0] != head
                            or unpack_from(item, c)[0] != head
                        ):
                            torn += 1
                        if head <= last:
                            disorder += 1
                        last = head
                        seen(head)
                        delivered += 1
                        del item
                finally:
                    st.delivered += delivered
                    st.torn += torn
                    st.disorder += disorder
                    st.last = last

        elif t in ("shm-index", "shm-index-inplace"):
            shm, free_q, full_q = handle
            mv = shm.buf
            slots_mv = [mv[i * nbytes : (i + 1) * nbytes] for i in range(spec.slots)]
            get_full, put_free = full_q.get, free_q.put

            def consume() -> str:
                delivered = torn = disorder = 0
                last = st.last
                try:
                    while True:
                        i = get_full(timeout=GET_TIMEOUT_S)
                        if i < 0:
                            return "mark" if i == -2 else "end"
                        s = slots_mv[i]
                        head = unpack_from(s, 0)[0]
                        if unpack_from(s, b)[0] != head or unpack_from(s, c)[0] != head:
                            torn += 1
                        put_free(i)
                        if head <= last:
                            disorder += 1
                        last = head
                        seen(head)
                        delivered += 1
                finally:
                    st.delivered += delivered
                    st.torn += torn
                    st.disorder += disorder
                    st.last = last

            def cleanup() -> None:
                for s in slots_mv:
                    s.release()
                slots_mv.clear()
                shm.close()

            self.cleanup = cleanup
        else:
            raise ValueError(f"transport {t!r} has no consumer")
        self.consume = consume


def _report_error(conn: Any, where: str) -> None:
    try:
        conn.send(("error", f"{where}: {traceback.format_exc(limit=6)}"))
    except Exception:  # noqa: BLE001 - the parent is gone
        pass


def _let_go(spec: RowSpec, handle: Any) -> None:
    """A child lets go of its attachment to a shared ring (the creator, the
    parent, unlinks it). Queues are left alone: faster-fifo's close() is a
    flag every process sees, and mp.Queue flushes at exit by itself."""
    if spec.transport in OURS:
        try:
            handle.close()
        except Exception:  # noqa: BLE001
            pass


def producer_main(spec: RowSpec, handle: Any, conn: Any) -> None:
    """Child: wait for ("run", n) / ("close",) commands from the parent."""
    try:
        prod = _Producer(spec, handle)
        conn.send(("ready", os.getpid()))
        seq = 0
        while True:
            cmd = conn.recv()
            if cmd[0] == "run":
                n = cmd[1]
                prod.produce(seq, n)
                seq += n
                prod.mark()
                conn.send(("done", seq))
            elif cmd[0] == "close":
                prod.end()
                conn.send(("final", {"produced": seq, "bad": getattr(prod, "bad", 0)}))
                break
        prod.cleanup()
    except EOFError:  # the parent went away
        pass
    except BaseException:  # noqa: BLE001
        _report_error(conn, "producer")
    finally:
        _let_go(spec, handle)


def consumer_main(spec: RowSpec, handle: Any, conn: Any, index: int) -> None:
    """Child: consume until a round marker (report, wait for "go") or the end."""
    try:
        cons = _Consumer(spec, handle)
        conn.send(("ready", os.getpid()))
        while True:
            kind = cons.consume()
            if kind == "mark":
                conn.send(("mark", cons.delivered))
                if conn.recv() != "go":
                    break
                continue
            break
        cons.cleanup()
        conn.send(
            (
                "final",
                {"delivered": cons.delivered, "torn": cons.torn, "disorder": cons.disorder,
                 "early_empty": getattr(cons, "early_empty", 0)},
                cons.seqs.tobytes(),
            )
        )
    except EOFError:
        pass
    except BaseException:  # noqa: BLE001
        _report_error(conn, f"consumer {index}")
    finally:
        _let_go(spec, handle)


# --------------------------------------------------------------------------
# the parent: one Session per row


class SessionError(RuntimeError):
    pass


@dataclass
class Accounting:
    produced: int = 0
    delivered: int = 0  # items the consumers received (duplicates included)
    unique: int = 0
    dropped: int = 0  # the ring's own count (every transport here blocks)
    duplicates: int = 0
    torn: int = 0
    disorder: int = 0
    out_of_range: int = 0
    lost: int = 0  # produced - unique - dropped
    per_consumer: list[int] = field(default_factory=list)
    early_empty: int = 0  # faster-fifo: get(timeout) raised Empty before its timeout (retried)
    ring_stats: dict[str, int] | None = None

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicates or self.torn or self.disorder or self.out_of_range)


class Session:
    """One producer process and `consumers` consumer processes over one
    transport, kept running across rounds. Use as a context manager."""

    def __init__(self, transport: str, payload: str, consumers: int = 1, slots: int | None = None) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        if payload not in PAYLOADS:
            raise ValueError(f"payload must be one of {', '.join(PAYLOADS)}, got {payload!r}")
        if transport in FLOORS:
            consumers = 0
        elif consumers < 1:
            raise ValueError(f"consumers must be >= 1, got {consumers!r}")
        why = unavailable(transport, payload)
        if why:
            raise SessionError(why)
        self.spec = RowSpec(transport, payload, consumers, slots or SLOTS[payload])
        self.ctx = mp_context()
        self.procs: list[Any] = []
        self.conns: list[Any] = []  # [producer, consumer 0, ...]
        self.handle: Any = None
        self._owned: list[Callable[[], None]] = []
        self.seq = 0
        self.rounds: list[float] = []
        self.marks: list[int] = []
        self.closed = False
        self.accounting: Accounting | None = None

    # -- set-up ---------------------------------------------------------------

    def _make_handle(self) -> Any:
        spec, ctx = self.spec, self.ctx
        t = spec.transport
        if t in OURS:
            cls, _ = _shared_ring_class()
            ring = cls(spec.slots, spec.nbytes, overflow="block")
            self._owned.append(ring.close)
            return ring
        if t == "mp-queue":
            return ctx.Queue(maxsize=spec.slots)
        if t in FASTER_FIFO:
            faster_fifo, _ = _faster_fifo()
            # room for `slots` pickled items, like the others' capacity
            per_item = spec.nbytes + 256
            return faster_fifo.Queue(max_size_bytes=spec.slots * per_item, maxsize=spec.slots)
        if t in ("shm-index", "shm-index-inplace"):
            from multiprocessing import shared_memory

            shm = shared_memory.SharedMemory(create=True, size=spec.slots * spec.nbytes)

            def drop_shm() -> None:
                shm.close()
                shm.unlink()

            self._owned.append(drop_shm)
            free_q, full_q = ctx.Queue(), ctx.Queue()
            for i in range(spec.slots):
                free_q.put(i)
            return (shm, free_q, full_q)
        return None

    def start(self) -> Session:
        self.handle = self._make_handle()
        spec, ctx = self.spec, self.ctx
        jobs: list[tuple[Callable[..., None], tuple[Any, ...], str]] = [
            (producer_main, (), "bufmgr-bench-producer")
        ]
        for i in range(spec.consumers):
            jobs.append((consumer_main, (i,), f"bufmgr-bench-consumer-{i}"))
        for target, extra, name in jobs:
            parent_end, child_end = ctx.Pipe()
            p = ctx.Process(target=target, args=(spec, self.handle, child_end, *extra), name=name, daemon=True)
            p.start()
            child_end.close()
            self.procs.append(p)
            self.conns.append(parent_end)
        for i in range(len(self.conns)):
            self._expect(i, "ready", START_TIMEOUT_S)
        return self

    def __enter__(self) -> Session:
        return self.start() if not self.procs else self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    # -- messages ---------------------------------------------------------------

    def _who(self, i: int) -> str:
        return "producer" if i == 0 else f"consumer {i - 1}"

    def _recv(self, i: int, deadline: float) -> Any:
        conn, proc = self.conns[i], self.procs[i]
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SessionError(f"{self._who(i)} did not answer in time (hung?)")
            ready = mpc.wait([conn, proc.sentinel], timeout=min(left, 1.0))
            if conn in ready:
                try:
                    msg = conn.recv()
                except EOFError:
                    raise SessionError(f"{self._who(i)} exited (exit code {proc.exitcode})") from None
                if msg[0] == "error":
                    raise SessionError(msg[1])
                return msg
            if proc.sentinel in ready and not conn.poll():
                proc.join(0.1)
                raise SessionError(f"{self._who(i)} died (exit code {proc.exitcode})")

    def _expect(self, i: int, kind: str, timeout: float) -> Any:
        msg = self._recv(i, time.monotonic() + timeout)
        if msg[0] != kind:
            raise SessionError(f"{self._who(i)}: expected {kind!r}, got {msg[0]!r}")
        return msg

    # -- rounds -------------------------------------------------------------------

    def round(self, n: int) -> float:
        """Move n items from the producer to the consumers; seconds taken."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        t0 = time.perf_counter()
        self.conns[0].send(("run", n))
        pending = set(range(1, len(self.conns)))
        if not pending:  # the one-process floor: the producer's "done" ends it
            self._recv(0, deadline)
        else:
            # consumers' markers end the round; the producer's "done" may come
            # before or after them
            got_done = False
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SessionError(f"round of {n} items did not finish in {ROUND_TIMEOUT_S:g} s")
                watch = [self.conns[i] for i in pending] + ([] if got_done else [self.conns[0]])
                watch += [p.sentinel for p in self.procs]
                ready = mpc.wait(watch, timeout=min(left, 1.0))
                for i, conn in enumerate(self.conns):
                    if conn in ready:
                        self._recv(i, deadline)  # "mark" from a consumer, "done" from the producer
                        if i == 0:
                            got_done = True
                        else:
                            pending.discard(i)
                for i, p in enumerate(self.procs):
                    if p.sentinel in ready and not self.conns[i].poll():
                        raise SessionError(f"{self._who(i)} died (exit code {p.exitcode})")
            dt = time.perf_counter() - t0
            if not got_done:
                self._expect(0, "done", ROUND_TIMEOUT_S)
            self.seq += n
            self.rounds.append(dt)
            for conn in self.conns[1:]:
                conn.send("go")
            return dt
        dt = time.perf_counter() - t0
        self.seq += n
        self.rounds.append(dt)
        return dt

    # -- the end ------------------------------------------------------------------

    def close(self) -> Accounting:
        """End of stream, collect every consumer's tally, check it."""
        if self.accounting is not None:
            return self.accounting
        self.conns[0].send(("close",))
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        final_p = self._recv(0, deadline)
        if final_p[0] != "final":
            raise SessionError(f"producer: expected 'final', got {final_p[0]!r}")
        acct = Accounting(produced=final_p[1]["produced"])
        bad_floor = final_p[1].get("bad", 0)
        seq_blocks = []
        for i in range(1, len(self.conns)):
            msg = self._recv(i, deadline)
            if msg[0] != "final":
                raise SessionError(f"{self._who(i)}: expected 'final', got {msg[0]!r}")
            tally, raw = msg[1], msg[2]
            acct.delivered += tally["delivered"]
            acct.torn += tally["torn"]
            acct.disorder += tally["disorder"]
            acct.per_consumer.append(tally["delivered"])
            acct.early_empty += tally.get("early_empty", 0)
            seq_blocks.append(raw)
        for p in self.procs:
            p.join(JOIN_TIMEOUT_S)
        if self.spec.transport in FLOORS:
            acct.delivered = acct.unique = acct.produced
            acct.torn = bad_floor
            acct.lost = 0
        else:
            ring_stats = dict(self.handle.stats()) if self.spec.transport in OURS else None
            acct = account(acct, seq_blocks, ring_stats)
        self.accounting = acct
        return acct

    def terminate(self) -> None:
        """Stop every child (bounded) and free what the parent owns."""
        for p in self.procs:
            if p.is_alive():
                p.join(JOIN_TIMEOUT_S if self.accounting is not None else 0.5)
            if p.is_alive():
                p.kill()
                p.join(JOIN_TIMEOUT_S)
        for conn in self.conns:
            conn.close()
        h = self.handle
        if self.spec.transport in ("mp-queue",) and h is not None:
            h.close()
            h.cancel_join_thread()
        elif self.spec.transport in ("shm-index", "shm-index-inplace") and h is not None:
            for q in h[1:]:
                q.close()
                q.cancel_join_thread()
        while self._owned:
            try:
                self._owned.pop()()
            except Exception:  # noqa: BLE001 - best effort teardown
                pass
        self.handle = None


def account(acct: Accounting, seq_blocks: list[bytes], ring_stats: dict[str, int] | None) -> Accounting:
    """Fill in unique / duplicates / out_of_range / dropped / lost from every
    consumer's stamps (`acct` has produced and the consumers' tallies)."""
    acct.unique, acct.duplicates, acct.out_of_range = _check_seqs(seq_blocks, acct.produced)
    if ring_stats is not None:
        acct.ring_stats = ring_stats
        acct.dropped = int(ring_stats.get("dropped", 0))
    acct.lost = acct.produced - acct.unique - acct.dropped
    return acct


def _check_seqs(blocks: list[bytes], produced: int) -> tuple[int, int, int]:
    """(unique, duplicates, out of range) over every consumer's stamps."""
    total = sum(len(b) for b in blocks) // 8
    if np is not None:
        allseq = np.concatenate([np.frombuffer(b, dtype="<u8") for b in blocks]) if blocks else np.zeros(0, "<u8")
        out_of_range = int(np.count_nonzero(allseq >= produced))
        unique = int(np.unique(allseq).size)
    else:
        seen: set[int] = set()
        out_of_range = 0
        for b in blocks:
            arr = array.array("Q")
            arr.frombytes(b)
            for s in arr:
                if s >= produced:
                    out_of_range += 1
                seen.add(s)
        unique = len(seen)
    return unique, total - unique, out_of_range


# --------------------------------------------------------------------------
# rows


@dataclass
class Row:
    transport: str
    label: str
    payload: str
    payload_bytes: int
    consumers: int
    slots: int
    available: bool = True
    note: str = ""
    error: str = ""
    ours: bool = False
    items_per_round: int = 0
    rounds: list[float] = field(default_factory=list)
    seconds: float | None = None  # the fastest round
    throughput: float | None = None  # items/s in the fastest round
    mb_per_s: float | None = None
    vs_floor: float | None = None
    vs_mp_queue: float | None = None
    vs_faster_fifo: float | None = None
    produced: int | None = None
    delivered: int | None = None
    dropped: int | None = None
    lost: int | None = None
    duplicates: int | None = None
    torn: int | None = None
    disorder: int | None = None
    out_of_range: int | None = None
    per_consumer: list[int] = field(default_factory=list)

    @property
    def scenario(self) -> str:
        return scenario_key(self.payload, self.consumers)

    @property
    def integrity_failed(self) -> bool:
        return bool(self.lost or self.duplicates or self.torn or self.disorder or self.out_of_range)


def scenario_key(payload: str, consumers: int) -> str:
    return f"processes-{payload}-1x{consumers}"


def _new_row(transport: str, payload: str, consumers: int, slots: int | None) -> Row:
    return Row(
        transport,
        TRANSPORTS[transport],
        payload,
        PAYLOADS[payload][0],
        0 if transport in FLOORS else consumers,
        slots or SLOTS[payload],
        ours=transport in OURS,
        note=TRANSPORT_NOTES[transport],
    )


def _calibrate(s: Session, payload: str, seconds: float, warmup_s: float, items: int | None) -> int:
    """Warm-up rounds (pages faulted in, caches warm); the n of a ~`seconds` round."""
    if items is not None:
        s.round(max(1, min(items, SLOTS[payload] * 2)))  # warm-up: every slot touched
        return items
    n = 8 if payload == "frame" else 512
    spent = 0.0
    while True:  # growing n until warmup_s is spent
        dt = s.round(n)
        spent += dt
        if spent >= warmup_s or n >= MAX_ROUND_ITEMS:
            break
        n = min(MAX_ROUND_ITEMS, n * 4 if dt < warmup_s / 8 else n * 2)
    # once more at the estimated size: the first rounds pay the page faults of
    # a fresh segment and would make N too small
    n = max(1, min(MAX_ROUND_ITEMS, int(n / max(dt, 1e-6) * seconds)))
    dt = s.round(n)
    return max(1, min(MAX_ROUND_ITEMS, int(n / max(dt, 1e-6) * seconds)))


def run_scenario(
    transports: list[str],
    payload: str,
    consumers: int = 1,
    *,
    seconds: float = ROUND_SECONDS[0],
    rounds: int = ROUNDS[0],
    warmup_s: float = WARMUP_SECONDS[0],
    items: int | None = None,
    slots: int | None = None,
    progress: Any = None,
) -> list[Row]:
    """Run several transports side by side: start every one's processes,
    warm each up, then time their rounds INTERLEAVED (round 1 of each, round
    2 of each, ...), so a burst of load elsewhere on the machine hits all of
    them alike instead of one row; the fastest round of each is reported."""
    rows = {t: _new_row(t, payload, consumers, slots) for t in transports}
    sessions: dict[str, Session] = {}
    sizes: dict[str, int] = {}
    timed: dict[str, list[float]] = {t: [] for t in transports}

    def fail(t: str, exc: BaseException) -> None:
        rows[t].error = str(exc).strip() or repr(exc)
        s = sessions.pop(t, None)
        if s is not None:
            s.terminate()

    try:
        for t in transports:
            why = unavailable(t, payload)
            if why:
                rows[t].available, rows[t].note = False, why
                continue
            try:
                sessions[t] = Session(t, payload, consumers, slots).start()
                sizes[t] = _calibrate(sessions[t], payload, seconds, warmup_s, items)
            except SessionError as exc:
                fail(t, exc)
        for _ in range(max(1, rounds)):
            for t in list(sessions):
                try:
                    timed[t].append(sessions[t].round(sizes[t]))
                except SessionError as exc:
                    fail(t, exc)
        for t in list(sessions):
            try:
                acct = sessions[t].close()
            except SessionError as exc:
                fail(t, exc)
                continue
            row, n = rows[t], sizes[t]
            row.items_per_round = n
            row.rounds = [round(x, 6) for x in timed[t]]
            row.seconds = min(timed[t])
            row.throughput = n / row.seconds if row.seconds > 0 else None
            row.mb_per_s = row.throughput * row.payload_bytes / 1e6 if row.throughput else None
            row.produced, row.delivered, row.dropped = acct.produced, acct.delivered, acct.dropped
            row.lost, row.duplicates, row.torn, row.disorder = acct.lost, acct.duplicates, acct.torn, acct.disorder
            row.out_of_range = acct.out_of_range
            if acct.early_empty:
                row.note += f"; get(timeout=60) raised Empty early {acct.early_empty:,}x (retried)"
            row.per_consumer = acct.per_consumer
    finally:
        for s in sessions.values():
            s.terminate()
    if progress is not None:
        for t in transports:
            progress.advance(label=f"{scenario_key(payload, consumers)} {t}")
    return [rows[t] for t in transports]


def run_row(transport: str, payload: str, consumers: int = 1, **kw: Any) -> Row:
    """One transport alone (see run_scenario)."""
    return run_scenario([transport], payload, consumers, **kw)[0]


def fill_ratios(rows: list[Row]) -> None:
    def tp(transport: str, payload: str, consumers: int) -> float | None:
        for r in rows:
            if r.transport == transport and r.payload == payload and (transport in FLOORS or r.consumers == consumers):
                return r.throughput
        return None

    for r in rows:
        if not r.throughput:
            continue
        floor = tp(FLOOR, r.payload, 0)
        mpq = tp("mp-queue", r.payload, r.consumers)
        ff = tp("faster-fifo", r.payload, r.consumers)
        r.vs_floor = r.throughput / floor if floor else None
        if r.transport not in FLOORS:
            r.vs_mp_queue = r.throughput / mpq if mpq else None
            r.vs_faster_fifo = r.throughput / ff if ff else None


#: issue 13's copy-in target, word for word in every run's output (tests pin it)
COPY_IN_TARGET = "6 MB frames: SharedFrameRing put+get (copy in, read in place) vs numpy.copyto"
#: the informational line: what one copy costs when the consumer holds the previous frame
PIPELINED_BOUND = "the bound for a pipelined copy on this machine: copyto-2dst / copyto"
#: the same on the ring's pages
PIPELINED_BOUND_SHM = "  the same on the ring's pages (/dev/shm): copyto-2shm / copyto"


@dataclass
class Target:
    label: str
    value: float | None
    bound: float | None  # None: for reference, no target
    unit: str  # "x" or "/s"

    @property
    def met(self) -> bool | None:
        return None if self.value is None or self.bound is None else self.value >= self.bound


def targets(rows: list[Row]) -> list[Target]:
    """Issue 13's targets, from the rows of this run (1 consumer), with the
    reference lines that say what bounds them here (bound None)."""

    def get(transport: str, payload: str) -> Row | None:
        for r in rows:
            if r.transport == transport and r.payload == payload and (transport in FLOORS or r.consumers == 1):
                return r
        return None

    def per(num: Row | None, den: Row | None) -> float | None:
        return num.throughput / den.throughput if num and den and num.throughput and den.throughput else None

    out = []
    r, floor = get("ring-copy", "frame"), get(FLOOR, "frame")
    two, cold = get("copyto-2dst", "frame"), get("copyto-8dst", "frame")
    two_shm = get("copyto-2shm", "frame")
    if r is not None and floor is not None:
        out.append(Target(COPY_IN_TARGET, r.vs_floor, 0.8, "x"))
        if two is not None:
            out.append(Target("for reference: the same vs numpy.copyto into 2 buffers in turn (copyto-2dst)",
                              per(r, two), None, "x"))
        if two_shm is not None:
            out.append(Target("for reference: the same vs numpy.copyto into 2 /dev/shm dsts (copyto-2shm)",
                              per(r, two_shm), None, "x"))
        if cold is not None:
            out.append(Target("for reference: the same vs numpy.copyto into 8 buffers in turn (copyto-8dst)",
                              per(r, cold), None, "x"))
    if two is not None and floor is not None:
        out.append(Target(PIPELINED_BOUND, per(two, floor), None, "x"))
    if two_shm is not None and floor is not None:
        out.append(Target(PIPELINED_BOUND_SHM, per(two_shm, floor), None, "x"))
    for payload in ("frame", "64b"):
        r = get("ring-reserve", payload)
        if r is not None:
            out.append(Target(f"{PAYLOADS[payload][1]}: SharedFrameRing reserve/commit + get", r.throughput, 50_000, "/s"))
    for transport in ("ring-copy", "ring-reserve"):
        r = get(transport, "64b")
        if r is not None and get("faster-fifo", "64b") is not None:
            out.append(Target(f"64 B items: {TRANSPORTS[transport]} vs faster-fifo", r.vs_faster_fifo, 10.0, "x"))
    r, ffm = get("ring-many", "64b"), get("faster-fifo-many", "64b")
    if r is not None and ffm is not None:
        v = r.throughput / ffm.throughput if r.throughput and ffm.throughput else None
        out.append(Target("64 B items, both consumers batched: SharedFrameRing get_many vs faster-fifo get_many",
                          v, 10.0, "x"))
    return out


def run_all(
    transports: list[str],
    payloads: list[str],
    consumers: list[int],
    *,
    quick: bool = False,
    rounds: int | None = None,
    progress: Any = None,
) -> list[Row]:
    q = 1 if quick else 0
    rows: list[Row] = []
    for payload in payloads:
        for c in consumers:
            # the one-process floors once per payload, beside the first consumer count
            ts = [t for t in transports if t not in FLOORS or c == consumers[0]]
            rows += run_scenario(
                ts, payload, c,
                seconds=ROUND_SECONDS[q],
                rounds=rounds or ROUNDS[q],
                warmup_s=WARMUP_SECONDS[q],
                progress=progress,
            )
    fill_ratios(rows)
    return rows


def count_rows(transports: list[str], payloads: list[str], consumers: list[int]) -> int:
    per = sum(1 for t in transports if t not in FLOORS) * len(consumers) + sum(1 for t in transports if t in FLOORS)
    return per * len(payloads)


# --------------------------------------------------------------------------
# output


def _si(x: float | None) -> str:
    if x is None:
        return "-"
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if x >= div:
            return f"{x / div:.2f}{suffix}"
    return f"{x:.0f} "


def _render(table: list[tuple[str, ...]]) -> list[str]:
    """Columns: the first and last left-aligned, the rest right-aligned. A
    row of two cells (label, text) is a row that did not run: its text
    spans the table."""
    full = [row for row in table if len(row) > 2]
    widths = [max(len(row[i]) for row in full) for i in range(len(full[0]))]
    out = []
    for k, row in enumerate(table):
        if len(row) == 2:
            out.append(("  " + row[0].ljust(widths[0]) + "  " + row[1]).rstrip())
            continue
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1])] + [row[-1]]
        out.append(("  " + "  ".join(cells)).rstrip())
        if k == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return out


def format_table(rows: list[Row]) -> str:
    lines: list[str] = []
    by: dict[str, list[Row]] = {}
    for r in rows:
        by.setdefault(r.scenario, []).append(r)
    # the one-process floor rows are shown under every scenario of their payload
    floors: dict[str, list[Row]] = {}
    for r in rows:
        if r.transport in FLOORS:
            floors.setdefault(r.payload, []).append(r)
    for key, rs in by.items():
        if key.endswith("-1x0"):
            continue
        first = rs[0]
        nbytes = PAYLOADS[first.payload][0]
        unit = "frames/s" if first.payload == "frame" else "items/s"
        lines.append(
            f"[{key}] 1 producer process -> {first.consumers} consumer process{'es' if first.consumers > 1 else ''}, "
            f"{PAYLOADS[first.payload][1]}, {first.slots} slots / maxsize, blocking"
        )
        table = [("transport", unit, "MB/s", "vs floor", "vs mp.Queue", "vs faster-fifo",
                  "items", "delivered", "dropped", "lost", "torn", "how")]
        shown = list(rs)
        shown += [f for f in floors.get(first.payload, []) if f not in shown]
        for r in shown:
            if not r.available or r.error:
                why = r.note if not r.available else "ERROR: " + r.error.splitlines()[-1][:80]
                table.append((r.label, why))
                continue
            mark = "  <-- " + ", ".join(
                w for w, v in (("LOST", r.lost), ("DUPLICATED", r.duplicates), ("TORN", r.torn), ("OUT OF ORDER", r.disorder)) if v
            ) if r.integrity_failed else ""
            table.append((
                r.label,
                _si(r.throughput) + "/s",
                f"{r.mb_per_s:,.0f}" if r.mb_per_s is not None and nbytes >= 4096 else (f"{r.mb_per_s:.1f}" if r.mb_per_s else "-"),
                _ratio(r.vs_floor),
                _ratio(r.vs_mp_queue),
                _ratio(r.vs_faster_fifo),
                _int(r.produced),
                _int(r.delivered),
                _int(r.dropped),
                _int(r.lost),
                _int(r.torn),
                r.note + mark,
            ))
        lines.extend(_render(table))
        lines.append("")
    tg = targets(rows)
    if tg:
        lines.append("targets (issue 13), from this run, 1 consumer process:")
        for t in tg:
            if t.value is None:
                val, verdict = "-", "not measured"
            else:
                digits = 2  # more where 2 would round a miss up to the bound (0.798x, not "0.80x MISSED")
                while t.unit == "x" and t.bound is not None and digits < 6 and (round(t.value, digits) >= t.bound) != t.met:
                    digits += 1
                val = f"{t.value:.{digits}f}x" if t.unit == "x" else f"{t.value:,.0f}/s"
                verdict = "met" if t.met else "MISSED"
            if t.bound is None:
                lines.append(f"    {t.label:<76} {val:>12}  (for reference, no target)")
                continue
            bound = f">= {t.bound:g}x" if t.unit == "x" else f">= {t.bound:,.0f}/s"
            lines.append(f"  {t.label:<78} {val:>12}  (target {bound})  {verdict}")
        if any(t.label.startswith("6 MB frames") for t in tg) and dev_shm_pages().startswith("4 KiB"):
            floor_pages = numpy_frame_pages()
            also = (f"; the numpy.copyto rows' buffers on {floor_pages.split(' (')[0]} pages"
                    if floor_pages.startswith("2 MiB") else "")
            lines.append(f"  (the 6 MB copy-in ran on 4 KiB pages{also}: /dev/shm mounted huge=advise gives the"
                         " ring's slots 2 MiB pages -- README, 'Memory and huge pages')")
        lines.append("")
    bad = [r for r in rows if r.integrity_failed]
    lines.append(
        "integrity: every item accounted for (items = delivered + dropped), no torn or duplicated frame"
        if not bad
        else "!! INTEGRITY FAILURES: " + "; ".join(
            f"{r.label} [{r.scenario}] lost {r.lost}, duplicated {r.duplicates}, torn {r.torn}, out of order {r.disorder}"
            for r in bad
        )
    )
    return "\n".join(lines).rstrip() + "\n"


def numpy_frame_pages(thp_enabled: str | None = None, numpy_madvises: bool | None = None) -> str:
    """The page size the numpy.copyto rows' frame buffers get here: numpy
    asks for transparent huge pages (madvise) for buffers of 4 MiB or more, which
    the kernel grants unless THP is off ("never"); with "always" every
    large anonymous buffer gets them. Arguments: the text of
    /sys/kernel/mm/transparent_hugepage/enabled and whether numpy madvises
    (read when None)."""
    if thp_enabled is None:
        try:
            with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="ascii") as fh:
                thp_enabled = fh.read()
        except OSError:  # no THP in this kernel (or not Linux)
            return "unknown"
    sel = thp_enabled[thp_enabled.find("[") + 1 : thp_enabled.find("]")] if "[" in thp_enabled else ""
    if numpy_madvises is None and np is not None:
        core = getattr(np, "_core", None) or getattr(np, "core", None)
        get = getattr(getattr(core, "multiarray", None), "_get_madvise_hugepage", None)
        numpy_madvises = bool(get()) if get is not None else None
    if sel == "always" or (sel == "madvise" and numpy_madvises):
        return f"2 MiB (THP {sel})"
    if sel == "never" or (sel == "madvise" and numpy_madvises is False):
        return f"4 KiB (THP {sel})"
    return "unknown"


def dev_shm_pages(mounts: str | None = None, shmem_enabled: str | None = None) -> str:
    """The page size large-frame SharedFrameRings get from /dev/shm here,
    and why: the tmpfs mount's huge= option, unless shmem_enabled's
    deny/force overrides it (its other values apply to SysV/memfd/anonymous
    shared memory, not to a mount). Arguments: the texts of /proc/mounts and
    /sys/kernel/mm/transparent_hugepage/shmem_enabled (read when None)."""
    try:
        if mounts is None:
            with open("/proc/mounts", encoding="ascii", errors="replace") as fh:
                mounts = fh.read()
        if shmem_enabled is None:
            try:
                with open("/sys/kernel/mm/transparent_hugepage/shmem_enabled", encoding="ascii") as fh:
                    shmem_enabled = fh.read()
            except OSError:  # no THP in this kernel
                shmem_enabled = "[deny]"
    except OSError:
        return "unknown"
    huge = None
    for line in mounts.splitlines():
        f = line.split()
        if len(f) >= 4 and f[1] == "/dev/shm" and f[2] == "tmpfs":
            huge = "never"  # the last mount over /dev/shm wins
            for opt in f[3].split(","):
                if opt.startswith("huge="):
                    huge = opt[5:]
    if huge is None:
        return "unknown (/dev/shm is not a tmpfs)"
    sel = shmem_enabled[shmem_enabled.find("[") + 1 : shmem_enabled.find("]")] if "[" in shmem_enabled else ""
    if sel == "deny":
        return "4 KiB (shmem_enabled=deny)"
    if sel == "force":
        return "2 MiB (shmem_enabled=force)"
    if huge == "never":
        return "4 KiB (/dev/shm huge=never)"
    return f"2 MiB for frames >= 2 MiB (/dev/shm huge={huge})"


def header_line(quick: bool, rounds: int | None = None) -> str:
    import platform

    try:
        import bufmgr

        impl = bufmgr.IMPLEMENTATION
    except Exception:  # noqa: BLE001
        impl = "?"
    q = 1 if quick else 0
    return (
        f"bufmgr bench --scenario processes: Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, bufmgr core: {impl}, start method {mp_context().get_start_method()}, "
        f"/dev/shm pages: {dev_shm_pages()}, numpy frame pages: {numpy_frame_pages()}; "
        f"fastest of {rounds or ROUNDS[q]} rounds of ~{ROUND_SECONDS[q]:g} s per row, the rows' rounds interleaved. "
        f"Higher is better; "
        f"'vs floor' = items/s / numpy.copyto's (one copy, one process) for the same size."
    )


def to_json(rows: list[Row], options: dict[str, Any]) -> dict[str, Any]:
    out = []
    for r in rows:
        d = asdict(r)
        d["scenario"] = r.scenario
        out.append(d)
    return {
        "options": options,
        "dev_shm_pages": dev_shm_pages(),
        "numpy_frame_pages": numpy_frame_pages(),
        "results": out,
        "targets": [{**asdict(t), "met": t.met} for t in targets(rows)],
        "integrity_failures": sum(1 for r in rows if r.integrity_failed),
    }


# --------------------------------------------------------------------------
# CLI glue (python -m bufmgr bench --scenario processes)


def add_arguments(parser: Any) -> None:
    g = parser.add_argument_group("processes scenario (--scenario processes)")
    g.add_argument(
        "--transport", action="append", choices=tuple(TRANSPORTS),
        help="run only these transports (repeatable; default: all)",
    )
    g.add_argument(
        "--proc-payload", action="append", choices=tuple(PAYLOADS),
        help="frame = 6,220,800 B numpy frames, 64b = 64-byte items (repeatable; default: both)",
    )
    g.add_argument(
        "--consumers", action="append", type=_consumers, metavar="N",
        help="consumer processes behind the one producer (repeatable; default: 1, 2, 4)",
    )


def _consumers(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a consumer count 1..16, got {text!r}") from None
    if not 1 <= value <= 16:
        raise argparse.ArgumentTypeError(f"expected a consumer count 1..16, got {text!r}")
    return value


def run(args: Any, in_process: Callable[[Any], int] | None = None) -> int:
    """``bench --scenario processes`` (with other scenarios: those first,
    through `in_process`, and their JSON gets a "processes" key)."""
    import copy

    others = [k for k in (args.scenario or []) if k != "processes"]
    from .bench import output_path_problem

    problem = args.json and output_path_problem(args.json)
    if problem:
        print(f"bufmgr bench: error: cannot write --json {args.json}: {problem}", file=sys.stderr)
        return 2
    if getattr(args, "plot", None) and not others:
        print("bufmgr bench: error: --plot does not cover --scenario processes", file=sys.stderr)
        return 2
    status = 0
    if others and in_process is not None:
        sub = copy.copy(args)
        sub.scenario = others
        status = in_process(sub)
        print()
    transports = args.transport or list(TRANSPORTS)
    payloads = args.proc_payload or list(PAYLOADS)
    consumers = sorted(set(args.consumers or CONSUMERS_DEFAULT))
    from .progress import ProgressBar

    print(header_line(args.quick, args.repeat))
    total = count_rows(transports, payloads, consumers)
    t0 = time.monotonic()
    with ProgressBar(total, enabled=False if args.no_progress else None) as bar:
        rows = run_all(transports, payloads, consumers, quick=args.quick, rounds=args.repeat, progress=bar)
    print(format_table(rows))
    print(f"({total} rows in {time.monotonic() - t0:.1f} s)")
    if args.json:
        options = {
            "quick": args.quick,
            "transports": transports,
            "payloads": payloads,
            "consumers": consumers,
            "rounds": args.repeat or ROUNDS[1 if args.quick else 0],
            "start_method": mp_context().get_start_method(),
        }
        data = to_json(rows, options)
        try:
            if others:
                with open(args.json, encoding="utf-8") as fh:
                    merged = json.load(fh)
                merged["processes"] = data
                data = merged
            else:
                from .bench import environment

                data = {"environment": environment(), "processes": data}
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2)
                fh.write("\n")
        except (OSError, ValueError) as exc:
            print(f"bufmgr bench: error: cannot write --json {args.json}: {exc}", file=sys.stderr)
            status = status or 2
        else:
            if not others:
                print(f"wrote {args.json}")
    failed = [r for r in rows if r.integrity_failed or (r.ours and r.error)]
    for r in rows:
        if r.error:
            print(f"bufmgr bench: {r.label} [{r.scenario}]: {r.error}", file=sys.stderr)
    return 1 if failed else status
