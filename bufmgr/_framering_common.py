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
from typing import Any

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
    "check_geometry",
    "check_ring_geometry_args",
    "frame_geometry",
    "check_timestamp",
    "MAX_NDIM",
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


# ---- shape / dtype (issue 14) ---------------------------------------------------

#: Most dimensions a frame shape may have (as SharedFrameRing).
MAX_NDIM = 8


def _numpy_dtype(dtype: object) -> Any:
    """``numpy.dtype(dtype)``; numpy is needed only when a dtype is given."""
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is an extra
        raise TypeError("dtype= needs numpy (pip install bufmgr[numpy])") from None
    try:
        return numpy.dtype(dtype)  # type: ignore[call-overload]
    except TypeError as e:
        raise TypeError(f"dtype: {e}") from None


def _buffer_format(dt: Any) -> str:
    """The PEP 3118 format a frame of dtype ``dt`` exports; ValueError when
    it is not one memoryview.cast() accepts (native-order integers, floats,
    bool), so that both implementations export exactly the same views."""
    fmt = ""
    if not (dt.hasobject or dt.fields is not None or dt.subdtype is not None or dt.itemsize == 0):
        import numpy

        try:
            fmt = memoryview(numpy.empty(1, dt)).format
            memoryview(bytearray(dt.itemsize)).cast(fmt)
        except (TypeError, ValueError, BufferError):
            fmt = ""
    if not fmt:
        raise ValueError(
            "dtype must be a native-byte-order integer, float or bool dtype, "
            f"got {dt!r}"
        )
    return fmt


def _check_shape(shape: object) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not 1 <= len(shape) <= MAX_NDIM:
        raise TypeError(f"shape must be a tuple of 1 to {MAX_NDIM} ints, got {shape!r}")
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int):
            raise TypeError(f"shape must be a tuple of ints, got {shape!r}")
        if d <= 0:
            raise ValueError(f"shape dimensions must be > 0, got {tuple(shape)!r}")
    return tuple(int(d) for d in shape)


def check_geometry(
    frame_bytes: object, shape: object, dtype: object
) -> tuple[int, tuple[int, ...] | None, Any, str, int]:
    """``FrameRing(frame_bytes=, shape=, dtype=)``: returns
    ``(frame_bytes, shape or None, numpy dtype or None, buffer format, itemsize)``.

    * ``shape`` given: frame_bytes is derived (prod(shape) * itemsize); a
      frame_bytes given as well must equal it (ValueError naming frame_bytes).
    * only ``dtype``: frame_bytes is required and must be a multiple of
      the itemsize (a full frame is then a 1-D array of that dtype).
    * neither shape nor frame_bytes: TypeError.
    A dtype (anything numpy.dtype() takes) needs numpy; shape alone does not
    (its frames are uint8 arrays of that shape)."""
    dt, fmt, itemsize = None, "B", 1
    if dtype is not None:
        dt = _numpy_dtype(dtype)
        fmt = _buffer_format(dt)
        itemsize = dt.itemsize
    dims: tuple[int, ...] | None = None
    if shape is not None:
        dims = _check_shape(shape)
        derived = itemsize
        for d in dims:
            derived *= d
        if frame_bytes is None:
            if derived > MAX_RING_BYTES:
                raise ValueError(RING_TOO_LARGE)
            frame_bytes = derived
        elif check_frame_bytes(frame_bytes) != derived:
            raise ValueError(
                f"frame_bytes={frame_bytes} does not match shape={dims} and "
                f"dtype={'uint8' if dt is None else dt} (which need {derived} bytes)"
            )
    elif frame_bytes is None:
        raise TypeError("FrameRing() needs frame_bytes, or shape (with an optional dtype)")
    frame_bytes = check_frame_bytes(frame_bytes)
    if frame_bytes % itemsize:
        raise ValueError(
            f"frame_bytes={frame_bytes} is not a multiple of the dtype's itemsize {itemsize}"
        )
    return frame_bytes, dims, dt, fmt, itemsize


def check_ring_geometry_args(
    slots: object, frame_bytes: object, overflow: object, shape: object, dtype: object
) -> tuple[int, int, str, tuple[int, ...] | None, Any, str, int]:
    """The constructor checks with shape/dtype, in this order: slots, dtype,
    shape, frame_bytes (given or derived), their product, overflow. Returns
    ``(slots, frame_bytes, overflow, shape, dtype, format, itemsize)``."""
    slots = check_slots(slots)
    frame_bytes, dims, dt, fmt, itemsize = check_geometry(frame_bytes, shape, dtype)
    check_ring_size(slots, frame_bytes)
    overflow = check_overflow(overflow)
    return slots, frame_bytes, overflow, dims, dt, fmt, itemsize


def frame_geometry(
    nbytes: int, frame_bytes: int, shape: tuple[int, ...] | None, itemsize: int, typed: bool
) -> tuple[int, ...] | None:
    """The shape a frame of ``nbytes`` exports, or None for flat bytes: a
    full frame of a ring made with shape= has that shape; a full frame of
    a dtype-only ring is 1-D of that dtype; a partial frame (nbytes <
    frame_bytes) and every frame of a plain ring are flat bytes."""
    if nbytes != frame_bytes:
        return None
    if shape is not None:
        return shape
    if typed:
        return (nbytes // itemsize,)
    return None


_INT64_MAX = (1 << 63) - 1


def check_timestamp(timestamp_ns: object) -> int:
    """``put(timestamp_ns=)``: an int in [0, 2**63 - 1] (TypeError for
    non-int/bool, ValueError outside the range)."""
    if isinstance(timestamp_ns, bool) or not isinstance(timestamp_ns, int):
        raise TypeError(
            f"timestamp_ns must be an int or None, not {type(timestamp_ns).__name__!r}"
        )
    timestamp_ns = int(timestamp_ns)
    if not 0 <= timestamp_ns <= _INT64_MAX:
        raise ValueError(f"timestamp_ns must be in [0, 2**63 - 1], got {timestamp_ns}")
    return timestamp_ns


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


def frame_repr(seq: int, nbytes: int, released: bool, gap: int = 0) -> str:
    gap_part = f" gap={gap}" if gap else ""
    return f"<bufmgr.Frame seq={seq} nbytes={nbytes}{gap_part} released={bool(released)}>"


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
