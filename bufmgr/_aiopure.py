"""The asyncio surface the pure twins share (bufmgr/_pyqueue.py's FrameQueue,
bufmgr/_pyframering.py's FrameRing), written once.

The coroutines themselves are in bufmgr/_aio.py; this mixin only wires a
pure buffer to them: the ``async_get*`` / ``__aiter__`` wrappers, the
registry made on first use, and the two "a coroutine waits" flags the sync
hot path reads after its lock is released. ``async_put`` stays in each class
(its argument is ``item`` on a queue, ``buffer`` on a ring, as in the
compiled classes). The compiled classes have their own copies in Cython
(cdef attributes, atomic stores), which the same tests pin.

A class using it declares the slots ``_aio`` (None until first use),
``_aio_getters`` and ``_aio_putters`` (False).
"""

from __future__ import annotations

from typing import Any

from . import _aio


class PureAsyncMethods:
    """Mixin: asyncio methods of a pure buffer with get_nowait/get_many/get_latest."""

    __slots__ = ()

    _aio: _aio.BufferWaiters | None
    _aio_getters: bool
    _aio_putters: bool

    def async_get(self, timeout: float | None = None) -> Any:
        """Coroutine: get() without blocking the event loop (queue.Empty on
        timeout, ShutDown once shut down and drained)."""
        return _aio.get(self, timeout)

    def async_get_many(self, max_items: int, timeout: float | None = None) -> Any:
        """Coroutine: get_many() without blocking the event loop."""
        return _aio.get_many(self, max_items, timeout)

    def async_get_latest(self, timeout: float | None = None) -> Any:
        """Coroutine: get_latest() without blocking the event loop."""
        return _aio.get_latest(self, timeout)

    def __aiter__(self) -> Any:
        """``async for item in buffer``: async_get() until shut down and drained."""
        return _aio.AsyncIterator(self)

    def _aio_waiters(self) -> _aio.BufferWaiters:
        w = self._aio
        if w is None:
            with _aio.CREATE_LOCK:
                w = self._aio
                if w is None:
                    w = self._aio = _aio.BufferWaiters(self)
        return w

    def _aio_state(self) -> tuple[bool, bool]:
        """For tests: (a coroutine waits for an item, one waits for room)."""
        return bool(self._aio_getters), bool(self._aio_putters)

    def _aio_set_active(self, kind: int, active: bool) -> None:
        """Called by the registry (under its lock) when it becomes (non-)empty."""
        if kind == _aio.GETTERS:
            self._aio_getters = active
        else:
            self._aio_putters = active
