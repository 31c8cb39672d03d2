"""pytest-benchmark suite: frames between processes (issue 13), side by side.

    pytest bench/test_bench_processes.py --benchmark-only --benchmark-group-by=group
    pytest bench/test_bench_processes.py --benchmark-disable    # smoke run (CI): a few items per row

The logic is bufmgr.cli.procs, the same as ``python -m bufmgr bench
--scenario processes``: one producer process and 1, 2 or 4 consumer
processes are started once per test (outside the timing), and each timed
round moves a FIXED number of items (ITEMS per payload, the same for every
transport of a group), so within a group the time column compares directly:
items/s = ITEMS / time, and a ratio of two rows' times is a ratio of their
throughputs. Groups ``processes-<payload>-1x<consumers>``; rows are the
transport keys:

* ``ring-copy``          SharedFrameRing put (copy in) + get, read in place
* ``ring-reserve``       SharedFrameRing reserve/commit (written in place) + get
* ``ring-many``          SharedFrameRing put, the consumer takes batches (get_many)
* ``mp-queue``           multiprocessing.Queue (pickle + pipe)
* ``faster-fifo``        faster_fifo.Queue (skipped if not installed)
* ``faster-fifo-many``   the same, the consumer takes batches (get_many)
* ``shm-index``          SharedMemory slots + mp.Queue of indices, copy in
* ``shm-index-inplace``  the same, written in place
* ``copyto`` / ``copyto-2dst`` / ``copyto-8dst``  numpy.copyto in one process
  (1x1 groups only): into one buffer (the floor) / into 2 buffers in turn
  (the working set of a pipelined copy-in: the consumer holds the previous
  frame) / into 8 buffers in turn

After every test the run is checked: every item stamped, produced ==
delivered + dropped, none duplicated, torn or out of order. The targets
(SharedFrameRing >= 0.8x the copyto floor for 6 MB frames, >= 10x
faster-fifo for 64 B items) are printed by bench/conftest.py after a timed
run; the third (reserve/commit >= 50,000 frames/s) is in extra_info
(``items_per_s``) and in the CLI's target lines.
"""

from __future__ import annotations

import pytest

pytest.importorskip("pytest_benchmark")

from bufmgr.cli import procs  # noqa: E402

#: items per timed round, per payload: the same for every row of a group
ITEMS = {"frame": 64, "64b": 20_000}
#: with --benchmark-disable: one short round, enough to check the plumbing
SMOKE_ITEMS = {"frame": 4, "64b": 200}
ROUNDS = 3

#: behind 2 and 4 consumers: the main rows (the CLI runs every transport there)
MULTI = ("ring-copy", "ring-reserve", "mp-queue", "faster-fifo", "shm-index")

CASES = [
    (payload, consumers, transport)
    for payload in procs.PAYLOADS
    for consumers in (1, 2, 4)
    for transport in procs.TRANSPORTS
    if consumers == 1 or transport in MULTI
]


@pytest.mark.parametrize(
    "payload, consumers, transport",
    [pytest.param(p, c, t, id=f"{p}-1x{c}-{t}") for p, c, t in CASES],
)
def test_processes(benchmark, payload, consumers, transport):
    why = procs.unavailable(transport, payload)
    if why:
        pytest.skip(why)
    benchmark.group = procs.scenario_key(payload, consumers)
    # the row id inside its group: the transport (bench/conftest.py's TARGETS use it)
    benchmark.param = transport
    n = ITEMS[payload] if benchmark.enabled else SMOKE_ITEMS[payload]
    with procs.Session(transport, payload, consumers) as s:
        if benchmark.enabled:
            s.round(max(n // 4, procs.SLOTS[payload] * 2))  # warm up: every slot touched
            benchmark.pedantic(s.round, args=(n,), rounds=ROUNDS, iterations=1)
        else:
            benchmark(s.round, n)
        acct = s.close()
    benchmark.extra_info.update(
        items_per_round=n,
        payload_bytes=procs.PAYLOADS[payload][0],
        items_per_s=round(n / min(s.rounds[-ROUNDS:])) if s.rounds else None,
        produced=acct.produced,
        delivered=acct.delivered,
        dropped=acct.dropped,
    )
    # integrity, for every transport: nothing lost, duplicated, torn, reordered
    assert acct.produced == s.seq  # every item the rounds asked for was put
    assert acct.lost == 0 and acct.duplicates == 0 and acct.out_of_range == 0, acct
    assert acct.torn == 0 and acct.disorder == 0, acct
    assert acct.unique + acct.dropped == acct.produced, acct
    if transport not in procs.FLOORS:
        assert len(acct.per_consumer) == consumers
        assert sum(acct.per_consumer) == acct.delivered
