"""Shared-memory rings: ``SharedFrameRing`` and the segment helpers behind
``python -m bufmgr shm list`` / ``shm clean``.

``SharedFrameRing`` is the compiled class from ``bufmgr._shm`` (Linux). On
other platforms, or without the compiled core (``BUFMGR_NO_EXTENSIONS=1``
or a pure install), the name still imports but constructing or attaching
raises an error that says why: there is no pure-Python twin, because a ring
shared by processes needs robust process-shared mutexes and futexes.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any, Iterable

__all__ = ["SharedFrameRing", "SharedFrame", "SharedSlot", "AVAILABLE", "UNAVAILABLE_REASON",
           "list_segments", "clean", "SHM_DIR"]

SHM_DIR = "/dev/shm"
PREFIX = "bufmgr-"

_NO_EXT = os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0")
_core: Any = None
if not sys.platform.startswith("linux"):
    UNAVAILABLE_REASON = (
        f"SharedFrameRing needs Linux (robust process-shared mutexes and futexes); "
        f"this is {sys.platform!r}. Use FrameRing within one process."
    )
elif _NO_EXT:
    UNAVAILABLE_REASON = (
        "SharedFrameRing needs bufmgr's compiled core, and BUFMGR_NO_EXTENSIONS=1 is set "
        "(there is no pure-Python SharedFrameRing)"
    )
else:
    try:
        from . import _shm as _core
    except ImportError as e:  # pragma: no cover - a pure install
        UNAVAILABLE_REASON = (
            f"SharedFrameRing needs bufmgr's compiled core, which is not built ({e}); "
            "reinstall with a C compiler and Cython"
        )
    else:
        UNAVAILABLE_REASON = ""

AVAILABLE = _core is not None

if TYPE_CHECKING:  # type checkers see the compiled module's stub, bufmgr/_shm.pyi
    from ._shm import SharedFrame, SharedFrameRing, SharedSlot
elif _core is not None:
    SharedFrameRing = _core.SharedFrameRing
    SharedFrame = _core.SharedFrame
    SharedSlot = _core.SharedSlot
else:

    class SharedFrameRing:  # type: ignore[no-redef]
        """Placeholder: SharedFrameRing is not available here (see UNAVAILABLE_REASON)."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError(UNAVAILABLE_REASON)

        @classmethod
        def attach(cls, name: str) -> "SharedFrameRing":
            raise RuntimeError(UNAVAILABLE_REASON)

    class SharedFrame:  # type: ignore[no-redef]
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError(UNAVAILABLE_REASON)

    class SharedSlot:  # type: ignore[no-redef]
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError(UNAVAILABLE_REASON)


def _names() -> list[str]:
    try:
        return sorted(n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX))
    except FileNotFoundError:  # pragma: no cover - no /dev/shm
        return []


def list_segments() -> list[dict[str, Any]]:
    """Every bufmgr segment in /dev/shm: name, size, creator pid and whether
    it is alive, participants registered and those alive, and ``valid``
    (False, with ``error``, for a file that is not a complete segment)."""
    out = []
    for name in _names():
        entry: dict[str, Any] = {"name": name}
        try:
            entry["bytes"] = os.stat(os.path.join(SHM_DIR, name)).st_size
        except FileNotFoundError:
            continue
        if _core is None:
            entry.update(valid=None, error=UNAVAILABLE_REASON)
        else:
            try:
                info = _core.peek(name)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as e:
                entry.update(valid=False, error=str(e))
            else:
                entry.update(valid=True, **info)
                entry["in_use"] = bool(info["creator_alive"] or info["alive_pids"])
        out.append(entry)
    return out


FORCE_MIN_AGE_S = 10.0  # clean(force=True) leaves invalid files younger than this


def _young(name: str) -> bool:
    try:
        return time.time() - os.stat(os.path.join(SHM_DIR, name)).st_mtime < FORCE_MIN_AGE_S
    except FileNotFoundError:
        return False


def clean(force: bool = False, names: Iterable[str] | None = None) -> list[str]:
    """Remove the segments whose processes are all gone (creator and every
    participant); with ``force`` also files that are not valid segments
    (older than FORCE_MIN_AGE_S: a segment being created is briefly invalid).
    ``names``: only those segments (full names), default every one.
    Returns the names removed. Never removes a segment in use."""
    only = None if names is None else set(names)
    removed = []
    for entry in list_segments():
        if only is not None and entry["name"] not in only:
            continue
        if entry.get("valid"):
            if entry["in_use"]:
                continue
        elif not force or entry.get("valid") is None:
            continue
        elif _young(entry["name"]):
            # Not valid *yet*, maybe: a segment another process is creating
            # right now has no ready header for a few microseconds.
            continue
        try:
            os.unlink(os.path.join(SHM_DIR, entry["name"]))
        except FileNotFoundError:
            continue
        removed.append(entry["name"])
    return removed
