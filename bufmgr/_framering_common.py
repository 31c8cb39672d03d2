"""Argument checks and messages shared by the compiled and pure FrameRing.

Both implementations (``bufmgr._ring.FrameRing`` over include/bufmgr/pool.h
and the pure twin ``bufmgr._pyframering.FrameRing``) raise the very same
exception types and messages. The compiled class calls into this module on
its slow paths only (construction, errors, repr); the hot paths never do.

Conventions (mirroring bufmgr._errors):

* ``check_*`` functions validate and return the normalised value or raise.
* Functions named after a failure (``frame_too_large`` ...) *return* the
  exception so the caller writes ``raise common.frame_too_large(n, m)``.
* Plain string constants are exported for C code that wants to raise the
  message itself.
"""

from __future__ import annotations

import sys

from ._errors import check_overflow

__all__ = [
    "STATS_KEYS",
    "FRAME_RELEASED",
    "NOT_C_CONTIGUOUS",
    "NOT_WRITABLE",
    "RING_TOO_LARGE",
    "MAX_RING_BYTES",
    "check_slots",
    "check_frame_bytes",
    "check_ring_size",
    "check_ring_args",
    "check_buffer",
    "not_a_buffer",
    "not_contiguous",
    "not_writable",
    "frame_too_large",
    "buffer_too_small",
    "frame_released",
    "frame_pickle_error",
    "frame_repr",
    "ring_repr",
]

#: Exactly the keys of FrameRing.stats(), in this order.
STATS_KEYS = (
    "puts", "gets", "dropped", "cleared", "underruns", "high_water",
    "size", "held", "free", "slots", "frame_bytes",
)

#: Largest slots * frame_bytes accepted (PY_SSIZE_T_MAX; always < SIZE_MAX).
MAX_RING_BYTES = sys.maxsize

FRAME_RELEASED = "frame was released"
NOT_C_CONTIGUOUS = "buffer must be C-contiguous"
NOT_WRITABLE = "buffer must be writable"
RING_TOO_LARGE = "slots * frame_bytes is too large"


# ---- constructor -------------------------------------------------------------


def _check_positive_int(name: str, value: object) -> int:
    # bool is an int subclass but never a meaningful size: reject it too.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__!r}")
    value = int(value)  # int subclasses -> plain int
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def check_slots(slots: object) -> int:
    """``slots``: an int > 0 (TypeError for non-int/bool, ValueError for <= 0)."""
    return _check_positive_int("slots", slots)


def check_frame_bytes(frame_bytes: object) -> int:
    """``frame_bytes``: an int > 0 (TypeError for non-int/bool, ValueError for <= 0)."""
    return _check_positive_int("frame_bytes", frame_bytes)


def check_ring_size(slots: int, frame_bytes: int) -> int:
    """Return ``slots * frame_bytes``; ValueError(RING_TOO_LARGE) if it does
    not fit a Py_ssize_t (and hence neither a size_t)."""
    total = slots * frame_bytes
    if total > MAX_RING_BYTES:
        raise ValueError(RING_TOO_LARGE)
    return total


def check_ring_args(slots: object, frame_bytes: object, overflow: object) -> tuple[int, int, str]:
    """All constructor checks, in this order: slots, frame_bytes, their
    product, overflow. Returns the normalised ``(slots, frame_bytes, overflow)``."""
    slots = check_slots(slots)
    frame_bytes = check_frame_bytes(frame_bytes)
    check_ring_size(slots, frame_bytes)
    overflow = check_overflow(overflow)
    return slots, frame_bytes, overflow


# ---- buffers -------------------------------------------------------------------


def not_a_buffer(obj: object) -> TypeError:
    # Same text as CPython's PyObject_GetBuffer failure.
    return TypeError(f"a bytes-like object is required, not {type(obj).__name__!r}")


def not_contiguous() -> ValueError:
    return ValueError(NOT_C_CONTIGUOUS)


def not_writable(obj: object = None) -> TypeError:
    return TypeError(NOT_WRITABLE)


def check_buffer(buffer: object, writable: bool = False) -> memoryview:
    """Return a memoryview of ``buffer`` after the FrameRing checks, in order:
    buffer protocol (TypeError), writable if asked (TypeError), C-contiguous
    (ValueError; an empty view always is). The caller owns (and should
    release) the view."""
    try:
        view = memoryview(buffer)
    except TypeError:
        raise not_a_buffer(buffer) from None
    if writable and view.readonly:
        view.release()
        raise not_writable(buffer)
    if not view.c_contiguous:
        nbytes = view.nbytes
        view.release()
        if nbytes == 0:
            # An empty view is C-contiguous whatever its strides say (numpy's
            # flags and PyBuffer_IsContiguous, which the compiled class uses,
            # agree; memoryview.c_contiguous does not): accept it, as a
            # zero-length frame / a buffer with room for one.
            return memoryview(bytearray()) if writable else memoryview(b"")
        raise not_contiguous()
    return view


def frame_too_large(nbytes: int, frame_bytes: int) -> ValueError:
    """put(): the buffer is larger than a slot."""
    return ValueError(f"frame of {nbytes} bytes does not fit frame_bytes={frame_bytes}")


def buffer_too_small(nbytes: int, size: int) -> ValueError:
    """get_into(): the oldest frame is larger than the destination buffer."""
    return ValueError(f"frame of {nbytes} bytes does not fit a buffer of {size} bytes")


# ---- frames --------------------------------------------------------------------


def frame_released() -> ValueError:
    return ValueError(FRAME_RELEASED)


def frame_pickle_error() -> TypeError:
    return TypeError(
        "cannot pickle 'Frame' object: it is a view of a FrameRing slot; "
        "pickle bytes(frame) instead"
    )


def frame_repr(seq: int, nbytes: int, released: bool) -> str:
    return f"<bufmgr.Frame seq={seq} nbytes={nbytes} released={bool(released)}>"


def ring_repr(
    slots: int,
    frame_bytes: int,
    overflow: str,
    size: int,
    held: int,
    dropped: int,
    shutdown: bool,
) -> str:
    return (
        f"<bufmgr.FrameRing slots={slots} frame_bytes={frame_bytes} "
        f"overflow={overflow!r} size={size} held={held} dropped={dropped}"
        f"{' shutdown' if shutdown else ''}>"
    )
