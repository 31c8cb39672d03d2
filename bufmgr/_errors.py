"""Exceptions and argument checks shared by the compiled and pure FrameQueue.

Both implementations raise the very same exception types and messages; the
compiled class only calls into this module on its slow (error) paths.
"""

from __future__ import annotations

import math
import numbers
import queue
import sys

Full = queue.Full
Empty = queue.Empty

# A version check, not try/except AttributeError: type checkers then see one
# definition per Python version (no `type: ignore` that is unused on 3.13).
if sys.version_info >= (3, 13):  # be the stdlib's exception, so `except queue.ShutDown` works
    ShutDown = queue.ShutDown
else:  # pragma: no cover - exercised on 3.10-3.12

    class ShutDown(Exception):
        """Raised when put/get is called on a FrameQueue that was shut down."""


OVERFLOW_POLICIES = ("block", "drop_oldest", "drop_newest")

#: Waits never sleep longer than this before re-checking signals/shutdown.
WAIT_SLICE_S = 0.05


def check_overflow(overflow: object) -> str:
    if not isinstance(overflow, str) or overflow not in OVERFLOW_POLICIES:
        raise ValueError(
            "overflow must be one of 'block', 'drop_oldest', 'drop_newest', "
            f"not {overflow!r}"
        )
    return overflow


def check_maxsize(maxsize: object) -> int:
    if not isinstance(maxsize, int):
        raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__!r}")
    if maxsize > (1 << 62):
        raise ValueError(f"maxsize is too large: {maxsize}")
    return int(maxsize) if maxsize > 0 else 0  # plain int, also for bool/subclasses


def check_bounded_policy(maxsize: int, overflow: str) -> None:
    """A drop policy acts only when the queue is full: unbounded, it would
    silently never drop (and hold everything). Refuse the combination."""
    if overflow != "block" and maxsize <= 0:
        raise ValueError(
            f"overflow={overflow!r} needs a bound: maxsize must be > 0, got {maxsize} "
            "(maxsize <= 0 means unbounded, which never drops)"
        )


def check_timeout(timeout: object) -> float | None:
    """Validate a blocking timeout; return seconds, or None for 'forever'.

    Matches queue.Queue: negative -> ValueError. Stricter than the stdlib:
    NaN -> ValueError, non-numbers -> TypeError, and it is checked before
    the queue is touched (the stdlib checks lazily). inf means forever.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(
            f"timeout must be a non-negative number or None, not {type(timeout).__name__!r}"
        )
    value = float(timeout)
    if math.isnan(value):
        raise ValueError("'timeout' must be a non-negative number, not NaN")
    if value < 0:
        raise ValueError("'timeout' must be a non-negative number")
    if math.isinf(value):
        return None
    return value


def check_max_items(max_items: object) -> int:
    if isinstance(max_items, bool) or not isinstance(max_items, int):
        raise TypeError(f"max_items must be an int, not {type(max_items).__name__!r}")
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    return min(int(max_items), sys.maxsize)  # more than can ever be queued = "all"


def pickle_error(cls_name: str) -> TypeError:
    return TypeError(
        f"cannot pickle {cls_name!r} object: a queue holds live references "
        "shared between threads; pickle its items instead"
    )


TASK_DONE_TOO_MANY = "task_done() called too many times"
