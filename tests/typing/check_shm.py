"""Type-checked, never run (see check_queue.py): bufmgr.SharedFrameRing as
users see it through ``bufmgr`` is the compiled class's stub (bufmgr/_shm.pyi),
not the placeholder bufmgr/shm.py defines where the class is unavailable."""

from __future__ import annotations

import sys

import bufmgr
from bufmgr import SharedFrame, SharedFrameRing, SharedSlot

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type

ring = SharedFrameRing(4, 1024, overflow="drop_newest")
assert_type(ring, SharedFrameRing)
assert_type(SharedFrameRing.attach(ring.name), SharedFrameRing)
assert_type(ring.name, str)
assert_type(ring.get(), SharedFrame)
assert_type(ring.get_latest(timeout=0.1), SharedFrame)
assert_type(ring.reserve(), SharedSlot)
assert_type(ring.stats(), dict[str, int])
with ring.get() as frame:
    assert_type(frame, SharedFrame)
    assert_type(frame.seq, int)
    assert_type(frame.gap, int)
    assert_type(bytes(frame), bytes)
with ring.reserve() as slot:
    assert_type(slot.commit(16), int)

SharedFrameRing(4, 1024, overflow="drop-oldest")  # type: ignore[arg-type]
ring.put("not a buffer")  # type: ignore[arg-type]
bufmgr.SharedFrameRing.attach(42)  # type: ignore[arg-type]
