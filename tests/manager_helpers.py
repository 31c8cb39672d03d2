"""Helpers shared by the BufferManager test files (tests/test_manager.py,
tests/test_manager_framering.py).

Import with ``from manager_helpers import ...`` (pytest puts tests/ on
sys.path because tests/ has no __init__.py, as for framering_fixtures).
"""

from __future__ import annotations

import sys
import threading

#: Liveness bound for joins and waits (never a timing assertion).
DEADLINE_S = 30.0

MANAGER_LOGGER = "bufmgr.manager"


class Recorder:
    """A duck-typed coordinator recording every call (thread-safe)."""

    def __init__(self, shutdown=False):
        self.lock = threading.Lock()
        self.updates = []
        self.errors = []
        self.state = {}
        self.shutdown = shutdown

    def update_state(self, **fields):
        with self.lock:
            self.updates.append(fields)
            self.state.update(fields)

    def handle_error(self, error, component):
        with self.lock:
            self.errors.append((error, component))

    def is_shutdown_requested(self):
        return self.shutdown


def run_producers_consumers(produce, consume, producers, consumers, done):
    """Run ``produce(i)`` for i < producers and ``consume(i)`` for i <
    consumers, each on its own thread, with the GIL switching threads every
    ~10 us; once the producers are joined, set ``done`` (the consumers then
    drain and return). Returns the names of the threads still alive after
    their join deadline (empty when every thread finished)."""
    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    threads += [threading.Thread(target=consume, args=(i,)) for i in range(consumers)]
    failures = []
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: maximise interleavings
    try:
        for t in threads:
            t.start()
        for t in threads[:producers]:
            t.join(DEADLINE_S * 4)
        done.set()
        for t in threads:
            t.join(DEADLINE_S)
            if t.is_alive():
                failures.append(t.name)
    finally:
        sys.setswitchinterval(old_interval)
    return failures
