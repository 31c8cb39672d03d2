"""Type-checked, never run: ``mypy --strict tests/typing/`` (CI, and
tests/test_typing.py). Type checkers must see the stub's types
(bufmgr/_ring.pyi) through ``bufmgr``: FrameQueue[T], Literal policies,
Buffer, @final. Lines that must be errors carry ``# type: ignore[code]``;
--strict includes --warn-unused-ignores, so the day one of them stops being an
error (a regression to Any, to ``overflow: str``...) the check fails.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any, Literal

import bufmgr
from bufmgr import Frame, FrameQueue, FrameRing

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type

# -- FrameQueue[T] -------------------------------------------------------------
q: FrameQueue[int] = FrameQueue(8, overflow="drop_oldest")
assert_type(q.put(1), int | None)  # a drop policy hands back what it dropped
assert_type(q.put_nowait(2), int | None)
assert_type(q.put_many([1, 2]), list[int])
assert_type(q.get(), int)
assert_type(q.get(timeout=0.5), int)
assert_type(q.get_nowait(), int)
assert_type(q.get_many(16), list[int])
assert_type(q.get_latest(), int)
assert_type(q.maxsize, int)
assert_type(q.overflow, Literal["block", "drop_oldest", "drop_newest"])
assert_type(q.stats(), dict[str, int])
assert_type(q.qsize(), int)
assert_type(bool(q), bool)
q.unfinished_tasks = 0

# queue.Queue's public internals
with q.mutex:
    q.queue.clear()
    q.all_tasks_done.notify_all()
with q.not_empty:
    assert_type(q.not_empty.wait(0.1), bool)
    assert_type(q.not_empty.wait_for(lambda: q.qsize() > 0, 1.0), bool)
assert_type(q.queue[0], int)
assert_type(list(q.queue), list[int])
assert_type(q.queue.copy(), deque[int])
assert_type(q.queue.popleft(), int)

untyped = FrameQueue()  # no type argument: FrameQueue[Any], as before generics
assert_type(untyped, FrameQueue[Any])
frames: FrameQueue[bytes] = FrameQueue[bytes](4)
assert_type(frames.get(), bytes)

# -- FrameRing / Frame ---------------------------------------------------------
ring = FrameRing(4, 1024)
assert_type(ring.put(b"\0" * 1024), int | None)
assert_type(ring.put(bytearray(1024)), int | None)
assert_type(ring.put(memoryview(b"x")), int | None)
assert_type(ring.overflow, Literal["block", "drop_oldest", "drop_newest"])
frame = ring.get()
assert_type(frame, Frame)
assert_type(frame.seq, int)
assert_type(frame.nbytes, int)
assert_type(bytes(frame), bytes)
with ring.get_nowait() as f:
    assert_type(f, Frame)
assert_type(ring.get_into(bytearray(1024)), tuple[int, int])

# capture features (issue 14)
image_ring = FrameRing(4, shape=(1080, 1920, 3), dtype="uint8")
assert_type(image_ring.shape, tuple[int, ...] | None)
assert_type(ring.put(b"x", timestamp_ns=123, metadata={"exposure_us": 8000}), int | None)
assert_type(ring.put_nowait(b"x", timestamp_ns=123), int | None)
assert_type(ring.put_many([b"a", bytearray(2)]), list[int | None])
assert_type(ring.get_latest(), Frame)
assert_type(ring.get_many(4), list[Frame])
assert_type(frame.gap, int)
assert_type(frame.timestamp_ns, int)
assert_type(frame.shape, tuple[int, ...])

assert_type(bufmgr.IMPLEMENTATION, Literal["c", "python"])

# -- what must not type-check --------------------------------------------------
FrameQueue(8, overflow="drop-oldest")  # type: ignore[arg-type]
FrameQueue(8, "sometimes")  # type: ignore[arg-type]
q.put("a string")  # type: ignore[arg-type]
q.queue.append("a string")  # type: ignore[arg-type]
FrameRing(4, 64, overflow="drop-newest")  # type: ignore[arg-type]
ring.put("a string")  # type: ignore[arg-type]
ring.put(12)  # type: ignore[arg-type]
ring.put(b"x", timestamp_ns="now")  # type: ignore[arg-type]
ring.put_many(["a string"])  # type: ignore[list-item]
FrameRing(4, shape="1080p")  # type: ignore[arg-type]
q.not_empty.wait("soon")  # type: ignore[arg-type]


class MyQueue(FrameQueue[int]):  # type: ignore[misc]  # final: put/get call no hooks
    pass


class MyRing(FrameRing):  # type: ignore[misc]
    pass
