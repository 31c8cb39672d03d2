# cython: language_level=3, freethreading_compatible=True, annotation_typing=False
"""BufferManager's put_buffer/get_buffer hot paths: one source, two builds.

This file is the only source of these paths. ``setup.py`` compiles it with
Cython (pure-Python mode; ``bufmgr/_mgrcore.pxd`` makes ``ManagerCore`` an
extension type with C-level table fields) into the extension module
``bufmgr._mgrcore``; with ``BUFMGR_NO_EXTENSIONS=1``, or when nothing was
compiled, bufmgr.manager runs this very file as plain Python. The annotations
are for type checkers only (``annotation_typing=False``: Cython must not turn
``component: str`` into a runtime check, put_buffer never raises).

``BufferManager`` derives from ``ManagerCore``; every case the fast paths do
not handle goes to its Python methods ``_put_slow``, ``_get_slow``,
``_get_wait``, ``_failed`` and ``_count``.

Tables (filled by ``BufferManager._bind`` through ``_set_fast_paths``):

``_put_fast``: component -> ``(put, report, check, refused)`` for the
    components whose put never waits: drop_oldest FrameQueues (``put`` is
    ``queue.put``, ``refused`` None) and drop_oldest/drop_newest FrameRings
    (``put`` is ``ring.put_nowait``, ``refused`` names the counter a refused
    frame bumps). ``report`` is the coordinator report or None, ``check``
    the coordinator's ``is_shutdown_requested`` or None.
``_get_fast``: component -> ``(get_nowait, report, record)`` for every
    component (a ring's get_nowait returns the frame copied into bytes).

Free-threaded builds (README invariant 5, issue 11): nothing here uses a
reference it does not own. The two table dicts are created once, by
``_init_fast_paths`` (BufferManager.__init__), before the manager can be
shared, and are never replaced: ``_set_fast_paths`` (coordinator changes)
updates them key by key, so the
compiled class's plain C reads of ``self._put_fast``/``self._get_fast`` can
never see a freed dict. A lookup gives a strong reference to the entry tuple
(Cython compiles ``d[k]`` to ``PyDict_GetItemRef`` on 3.13+; as plain
Python it is an ordinary subscript), and the tuple owns its members, so a
concurrent ``_set_fast_paths`` that replaces the entry cannot free what this
call is using. The previous ``_mgrcore.pxi`` kept ``PyDict_GetItem``'s
borrowed tuple while another thread swapped and freed the dicts: a
use-after-free (SIGSEGV on 3.13t).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

from ._errors import Empty, ShutDown

if TYPE_CHECKING:  # pragma: no cover
    import sys

    from ._ring import Frame  # noqa: F401  (documented return type of get_frame)

    if sys.version_info >= (3, 12):
        from collections.abc import Buffer
    else:
        from typing_extensions import Buffer

__all__ = ["ManagerCore"]


class ManagerCore:
    """put_buffer/get_buffer fast paths; see the module docstring."""

    # The slow paths, provided by BufferManager. Declared for type checkers;
    # plain Python skips this block, Cython compiles it into the extension
    # type regardless (a cdef class body is not executed), where BufferManager
    # overrides them: they only ever raise for a subclass that lacks them.
    if TYPE_CHECKING:

        def _put_slow(self, component: Any, data: Any, timeout: Any) -> bool:
            raise NotImplementedError

        def _get_slow(self, component: Any, timeout: Any) -> Optional[Any]:
            raise NotImplementedError

        def _get_wait(self, comp: Any, timeout: Optional[float]) -> Optional[Any]:
            raise NotImplementedError

        def _failed(self, op: str, component: Any, error: BaseException, expected: bool) -> None:
            raise NotImplementedError

        def _count(self, key: str) -> None:
            raise NotImplementedError

    # -- the tables ------------------------------------------------------------

    def _init_fast_paths(self) -> None:
        """Create the tables; BufferManager.__init__ calls it first. Write-once
        (see the module docstring): a second call keeps them."""
        if getattr(self, "_put_fast", None) is None:
            self._put_fast: Dict[str, Tuple[Any, ...]] = {}  # declared in bufmgr/_mgrcore.pxd when compiled
            self._get_fast: Dict[str, Tuple[Any, ...]] = {}

    def _set_fast_paths(
        self, put_fast: Mapping[str, Tuple[Any, ...]], get_fast: Mapping[str, Tuple[Any, ...]]
    ) -> None:
        """Make the tables equal to ``put_fast``/``get_fast``, in place (one
        atomic dict operation per entry: a concurrent put/get sees the old or
        the new entry of its component, never a freed one). The caller
        serialises calls (BufferManager._bind holds its admin lock)."""
        for table, new in ((self._put_fast, put_fast), (self._get_fast, get_fast)):
            for key in [k for k in table if k not in new]:
                del table[key]
            for key, entry in new.items():
                table[key] = entry

    def put_buffer(self, component: str, data: Buffer, timeout: Optional[float] = 0.5) -> bool:
        """Queue one frame; True once it is queued (a full ``drop_oldest``
        queue evicts its oldest frame atomically, counted as dropped).

        False (never an exception) when the coordinator asked for shutdown,
        after cleanup(), on a put timeout (``block`` policy) or a refused
        ``drop_newest`` frame, and on bad input: unknown component
        (ValueError), data that is not bytes-like (TypeError), a negative /
        NaN / too large / non-number timeout. Errors are logged, counted
        (``errors``) and handed to the coordinator's handle_error; the queues
        are left untouched.

        bytes-like: bytes, bytearray, memoryview or any other object with the
        buffer protocol (array.array, numpy arrays).

        FrameQueue component: frames are not copied, do not mutate a
        bytearray/array after queueing it. FrameRing component (``frame_bytes``
        in its spec): the data is copied into a preallocated slot, so the
        caller may reuse its buffer as soon as this returns; data larger than
        ``frame_bytes`` or not C-contiguous is bad input (False, logged, handed
        to handle_error). A ring also returns False when ``drop_oldest`` finds
        every slot held by consumers or being written (counted as
        ``refused_underrun``; the ring counts an underrun).
        """
        try:
            put, report, check, refused = self._put_fast[component]  # a strong reference
        except Exception:  # KeyError: block/drop_newest queue, block ring, unknown; TypeError: unhashable
            return self._put_slow(component, data, timeout)
        if type(timeout) is not float or not timeout >= 0.0:  # int, None, negative, NaN ...
            return self._put_slow(component, data, timeout)
        if refused is None and type(data) is not bytes:  # a FrameQueue: check bytes-likeness
            return self._put_slow(component, data, timeout)
        if check is not None:
            try:
                if check():
                    self._count("refused_puts")
                    return False
            except Exception as e:
                self._failed("put_buffer", component, e, False)
                return False
        try:
            seq = put(data)  # never waits: queue.put (drop_oldest evicts) or ring.put_nowait
        except ShutDown:  # cleanup() ran, or the coordinator's shutdown callback
            self._count("refused_puts")
            return False
        except Exception as e:
            # a ring: TypeError/ValueError = not bytes-like, not contiguous, > frame_bytes
            self._failed("put_buffer", component, e,
                         refused is not None and isinstance(e, (TypeError, ValueError)))
            return False
        if refused is not None and seq is None:  # a ring's policy refused it (counted as dropped)
            self._count(refused)
            return False
        if report is not None:
            report()  # never raises: failures go to the log and handle_error
        return True

    def get_buffer(self, component: str, timeout: Optional[float] = 1.0) -> Optional[Any]:
        """Take the oldest frame, waiting up to ``timeout`` seconds (None:
        forever); None if nothing arrives in time.

        After the coordinator asks for shutdown, gets keep draining what is
        queued and return None at once when the queue is empty; after
        cleanup() they return None. Bad input (unknown component, bad
        timeout) -> None, logged, counted, handed to handle_error, nothing
        taken.

        A FrameQueue component returns the very object that was put. A
        FrameRing component returns the frame as a new ``bytes`` (one copy;
        the slot is free again when this returns); see get_frame for the
        zero-copy alternative.
        """
        try:
            get, report, comp = self._get_fast[component]  # a strong reference
        except Exception:  # unknown / unhashable component
            return self._get_slow(component, timeout)
        if type(timeout) is not float or not timeout >= 0.0:
            return self._get_slow(component, timeout)
        try:
            item = get()  # get_nowait: the common case, a frame is waiting
        except Empty:
            return self._get_wait(comp, timeout)
        except ShutDown:  # drained after shutdown, or cleaned up
            return None
        except Exception as e:
            self._failed("get_buffer", component, e, False)
            return None
        if report is not None:
            report()
        return item
