"""Type-checking test for BufferManager: ``mypy --strict tests/typing/check_manager.py``.

Not collected by pytest (no test_ prefix); mypy checks that the manager's
methods carry their real signatures (they used to come out as ``Any``,
inherited from a base class typed ``type``). Each ``assert_type`` fails
the mypy run if the inferred type differs.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, Optional

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type

from bufmgr import BufferConfig, BufferManager, StateCoordinator
from bufmgr._ring import Frame  # the stub's Frame (both implementations share its interface)


def check_manager() -> None:
    m = BufferManager(StateCoordinator(), queues={"capture_left": 8, "cam": {"maxsize": 4, "frame_bytes": 64}})
    assert_type(m.put_buffer("capture_left", b"x"), bool)
    assert_type(m.put_buffer("capture_left", bytearray(4), 0.5), bool)
    assert_type(m.put_buffer("capture_left", memoryview(b"x"), timeout=None), bool)
    assert_type(m.get_buffer("capture_left"), Optional[Any])
    assert_type(m.get_buffer("capture_left", 0.1), Optional[Any])
    assert_type(m.get_frame("cam"), Optional[Frame])
    assert_type(m.get_usage(), Dict[str, int])
    assert_type(m.get_performance_stats(), Dict[str, Any])
    assert_type(m.get_buffer_config(), BufferConfig)
    assert_type(m.update_buffer_config(size=512), BufferConfig)
    assert_type(m.components, tuple[str, ...])
    assert_type(m.is_valid(), bool)
    assert_type(m.report_state(), None)
    assert_type(m.cleanup(), None)
    with BufferManager() as m2:
        assert_type(m2, BufferManager)
    frame = m.get_frame("cam", 0.0)
    if frame is not None:
        with frame:
            assert_type(frame.seq, int)
            assert_type(bytes(frame), bytes)


def check_rejected() -> None:
    m = BufferManager()
    m.put_buffer("capture_left", "a str is not bytes-like")  # type: ignore[arg-type]
    m.put_buffer(1, b"x")  # type: ignore[arg-type]
    m.get_buffer("capture_left", "soon")  # type: ignore[arg-type]
    BufferManager(report_interval="1")  # type: ignore[arg-type]
