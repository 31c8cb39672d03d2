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

``_put_fast``: component -> ``[put, report, check, refused]`` for the
    components whose put never waits: drop_oldest FrameQueues (``put`` is
    ``queue.put``, ``refused`` None) and drop_oldest/drop_newest FrameRings
    (``put`` is ``ring.put_nowait``, ``refused`` names the counter a refused
    frame bumps). ``report`` is the coordinator report or None, ``check``
    the coordinator's ``is_shutdown_requested`` or None.
``_get_fast``: component -> ``[get_nowait, report, record]`` for every
    component (a ring's get_nowait returns the frame copied into bytes).

Free-threaded builds (README invariant 5, issue 11): nothing here uses a
reference that can be freed under it. Each table is a dict created once
(``_init_fast_paths``, from BufferManager.__init__, before the manager can be
shared) whose keys and values never change after the first
``_set_fast_paths``: every value is a list created then, and a coordinator
change (``_set_fast_paths`` again) rewrites the lists' items in place. So the
compiled class's plain C reads of ``self._put_fast``/``self._get_fast`` and
the lookup (Cython compiles ``d.get(k)`` to a borrowed ``PyDict_GetItem``
plus INCREF: safe only because no entry is ever removed or replaced) can
never meet a freed object, and the entry's items are read with
``PyList_GetItemRef`` (Cython's list unpacking on 3.13t), each a strong
reference, while another thread may be replacing them. A put/get racing a
coordinator change may use the old report with the new shutdown check or
vice versa (the queue and its methods never change): a change of
coordinator is not atomic for operations in flight, and need not be.
The previous ``_mgrcore.pxi`` kept ``PyDict_GetItem``'s borrowed tuple while
another thread swapped and freed the dicts: a use-after-free (SIGSEGV on
3.13t).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

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
            self._put_fast: Dict[str, List[Any]] = {}  # declared in bufmgr/_mgrcore.pxd when compiled
            self._get_fast: Dict[str, List[Any]] = {}

    def _set_fast_paths(
        self, put_fast: Mapping[str, Tuple[Any, ...]], get_fast: Mapping[str, Tuple[Any, ...]]
    ) -> None:
        """Make the tables hold ``put_fast``/``get_fast``. The first call
        creates the entries; later calls (a new coordinator) must give the
        same components and rewrite each entry's items in place (see the
        module docstring). The caller serialises calls (BufferManager._bind
        holds its admin lock)."""
        for table, new in ((self._put_fast, put_fast), (self._get_fast, get_fast)):
            if not table:
                for key, items in new.items():
                    table[key] = list(items)
                continue
            if table.keys() != new.keys() or any(len(table[k]) != len(v) for k, v in new.items()):
                raise ValueError("_set_fast_paths: the components cannot change")
            for key, items in new.items():
                table[key][:] = items  # one list operation; the entry object stays

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
        # str keys: the lookup cannot raise, so no try block (a try costs a
        # few ns compiled); other keys, and misses (block/drop_newest queues,
        # block rings, unknown components) go to the slow path
        entry = self._put_fast.get(component) if type(component) is str else None
        if entry is None:
            return self._put_slow(component, data, timeout)
        put, report, check, refused = entry  # strong references to the items
        if type(timeout) is not float:  # int, None ... (checked there)
            return self._put_slow(component, data, timeout)
        seconds = timeout  # compiled: a C double
        if not seconds >= 0.0:  # negative, NaN
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
        entry = self._get_fast.get(component) if type(component) is str else None
        if entry is None:  # unknown, or not a str
            return self._get_slow(component, timeout)
        get, report, comp = entry  # strong references to the items
        if type(timeout) is not float:
            return self._get_slow(component, timeout)
        seconds = timeout  # compiled: a C double
        if not seconds >= 0.0:  # negative, NaN
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
