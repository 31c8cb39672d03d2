"""Drop-in ``BufferManager`` over :class:`bufmgr.FrameQueue`.

It replaces a capture application's manager that kept one ``queue.Queue``
per pipeline component behind one global lock and evicted the oldest frame
with a racy ``if q.full(): q.get_nowait()`` before ``put(timeout=...)``.
Here every component is an independent FrameQueue (``drop_oldest`` by
default): the eviction happens atomically inside the queue, the new frame is
never lost, and every drop is counted.

Callers keep the same two calls and return values::

    put_buffer(component, data, timeout=0.5) -> bool           # True once queued
    get_buffer(component, timeout=1.0) -> Optional[bytes]      # None on timeout

Neither ever raises: invalid input, shutdown, cleanup or an unexpected
failure give False/None, are logged (logger ``bufmgr.manager``) and, for
errors, handed to ``coordinator.handle_error(error, "buffer_manager")``.

Coordinator protocol (duck-typed, every method optional)::

    update_state(**fields)            # queue sizes, see "State fields"
    handle_error(error, component)    # component is always "buffer_manager"
    is_shutdown_requested() -> bool   # True: puts refused, gets drain
    add_shutdown_callback(fn)         # optional: wake blocked getters at once
    remove_shutdown_callback(fn)

The coordinator is never called while a queue lock (or any lock that can
block another thread) is held.

State fields: each put/get sends ``update_state`` its component's
``<component>_queue_size`` and its group's total ``<group>_queue_size``
(``capture_left`` + ``capture_right`` -> ``capture_queue_size``), read live
after the operation. ``field_style="legacy"`` names the per-channel field
``<group>_queue_size_<channel>`` instead (the total keeps its name). A
component whose name ends in ``_left``/``_right`` (or whose spec names a
``group``) belongs to that group; other components send their own field only.
``report_interval`` throttles the updates (at most one per component per
interval, the last state sent within the interval by a shared timer thread),
``report_gets=False`` sends them on puts only (as the replaced manager did).

Data must be bytes-like: bytes, bytearray, memoryview or any object with the
buffer protocol (array.array, numpy arrays).

Two kinds of component (chosen per component by its queue spec):

* FrameQueue (the default): frames are queued by reference, never copied.
  Zero copy, but the producer hands the object over: it must not mutate a
  bytearray/array after queueing it. Best for immutable ``bytes``.
* FrameRing (``frame_bytes`` in the spec, e.g. ``{"maxsize": 64,
  "frame_bytes": 4096}``): ``maxsize`` preallocated slots of ``frame_bytes``
  bytes. put_buffer copies the data into a slot (the compiled ring copies
  frames of 64 KiB or more with the GIL released), so the producer may reuse
  or refill its buffer at once (driver buffers, numpy views); memory stays
  fixed. Data must be C-contiguous and at most ``frame_bytes`` long (else
  False, logged as bad input). get_buffer still returns ``bytes`` (one copy
  out); get_frame returns the zero-copy :class:`bufmgr.Frame` instead.

The put_buffer/get_buffer hot paths live in a base class, ``ManagerCore``,
written once in bufmgr/_mgrcore.py: compiled by Cython (pure-Python mode) into
the extension ``bufmgr._mgrcore`` when built, else that same file runs as plain
Python (``CORE_IMPLEMENTATION`` says which one is in use).
"""

from __future__ import annotations

import dataclasses
import heapq
import importlib.machinery
import importlib.util
import logging
import itertools
import numbers
import os
import sys
import threading
import weakref
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, cast

from ._errors import Empty, Full, ShutDown, check_timeout

__all__ = ["BufferManager", "BufferConfig", "DEFAULT_QUEUES", "COORDINATOR_COMPONENT"]

logger = logging.getLogger(__name__)

#: The replaced manager's layout: component -> maxsize.
DEFAULT_QUEUES: Dict[str, int] = {
    "capture_left": 1000,
    "capture_right": 1000,
    "processing_left": 500,
    "processing_right": 500,
    "storage_left": 250,
    "storage_right": 250,
}

#: The component name handed to ``coordinator.handle_error``.
COORDINATOR_COMPONENT = "buffer_manager"

#: Name suffixes that put a component into a group (``capture_left`` -> ``capture``).
CHANNEL_SUFFIXES = ("left", "right")

_FIELD_STYLES = ("component", "legacy")
_BLOCK, _DROP_OLDEST, _DROP_NEWEST = 0, 1, 2
_POLICY_CODES = {"block": _BLOCK, "drop_oldest": _DROP_OLDEST, "drop_newest": _DROP_NEWEST}


def _default_queue_factory(maxsize: int, overflow: str) -> Any:
    from . import FrameQueue  # the compiled class when built, else the twin

    return FrameQueue(maxsize, overflow)


def _is_bytes_like(data: object) -> bool:
    """bytes/bytearray/memoryview, or any object exporting the buffer protocol
    (array.array, numpy arrays, mmap ...). str is not bytes-like."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return True
    try:
        with memoryview(data):  # type: ignore[arg-type]
            return True
    except Exception:  # TypeError; also ValueError (numpy datetime64), BufferError ...
        return False


def _check_timeout(timeout: object) -> Optional[float]:
    """check_timeout, with every failure as TypeError/ValueError: a number
    too large for a float (``10**400``) is a ValueError here, not the
    OverflowError ``float()`` raises, so the callers' bad-input path gets it."""
    try:
        return check_timeout(timeout)
    except (TypeError, ValueError):
        raise
    except OverflowError as e:
        raise ValueError(f"'timeout' is too large ({e})") from None
    except Exception as e:  # a numbers.Real whose __float__ fails
        raise TypeError(
            f"timeout must be a non-negative number or None: {type(e).__name__}: {e}"
        ) from None


def _default_ring_factory(slots: int, frame_bytes: int, overflow: str) -> Any:
    from . import FrameRing  # the compiled class when built, else the twin

    return FrameRing(slots, frame_bytes, overflow)


def _ring_factory_for(queue_factory: Any) -> Callable[[int, int, str], Any]:
    """The FrameRing of the same implementation as ``queue_factory`` when it is
    one of the package's FrameQueue classes; else the package's FrameRing."""
    module = getattr(queue_factory, "__module__", None)
    if queue_factory is not None and getattr(queue_factory, "__name__", None) == "FrameQueue":
        if module == "bufmgr._pyqueue":
            from ._pyframering import FrameRing as pure

            return pure
        if module == "bufmgr._ring":
            from ._ring import FrameRing as compiled

            return cast(Callable[[int, int, str], Any], compiled)
    return _default_ring_factory


def _ring_readers(ring: Any) -> Tuple[Callable[..., bytes], Callable[[], bytes]]:
    """-> (get(block, timeout), get_nowait()) returning ``bytes``: one copy out
    of the slot, which goes back to the ring at once."""
    ring_get, ring_get_nowait = ring.get, ring.get_nowait

    def get(block: bool = True, timeout: Optional[float] = None) -> bytes:
        frame = ring_get(block, timeout)
        try:
            return bytes(frame)
        finally:
            frame.release()

    def get_nowait() -> bytes:
        frame = ring_get_nowait()
        try:
            return bytes(frame)
        finally:
            frame.release()

    return get, get_nowait


# ---------------------------------------------------------------------------
# configuration


@dataclasses.dataclass
class BufferConfig:
    """Audio buffer geometry: ``size`` frames of ``channels`` x ``sample_width``
    bytes at ``sample_rate`` Hz. Every field must be an int > 0 (validated on
    construction and on assignment: ValueError for <= 0, TypeError otherwise).
    """

    size: int = 1024
    channels: int = 2
    sample_width: int = 2
    sample_rate: int = 44100

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CONFIG_FIELDS:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(
                    f"BufferConfig.{name} must be an int, not {type(value).__name__!r}"
                )
            if value <= 0:
                raise ValueError(f"BufferConfig.{name} must be > 0, got {value!r}")
            value = int(value)
        object.__setattr__(self, name, value)

    @property
    def bytes_per_buffer(self) -> int:
        """Bytes in one buffer: size * channels * sample_width."""
        return self.size * self.channels * self.sample_width

    @property
    def duration_ms(self) -> float:
        """Audio time one buffer holds, in milliseconds."""
        return self.size * 1000.0 / self.sample_rate


_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(BufferConfig))


# ---------------------------------------------------------------------------
# per-component records


class _Component:
    __slots__ = (
        "name", "queue", "policy", "ring", "put", "get", "get_nowait", "group", "field",
        "report", "flush", "throttle",
    )

    def __init__(
        self, name: str, queue: Any, policy: int, group: Optional[str], field: str,
        ring: bool = False,
    ):
        self.name = name
        self.queue = queue  # a FrameQueue, or a FrameRing when ``ring``
        self.policy = policy
        self.ring = ring
        self.put = queue.put  # ring: returns the seq, None when refused
        if ring:  # get/get_nowait return bytes copied out of the slot
            self.get, self.get_nowait = _ring_readers(queue)
        else:
            self.get = queue.get
            self.get_nowait = queue.get_nowait
        self.group = group
        self.field = field
        # report(): after each put/get (None without a coordinator.update_state);
        # flush(): unthrottled report, for cleanup()/report_state().
        self.report: Optional[Callable[[], None]] = None
        self.flush: Optional[Callable[[], None]] = None
        self.throttle: Optional[_Throttle] = None  # report_interval only: its trailing state


class _Throttle:
    """State of one component's throttled reports (see _THROTTLED_TEMPLATE)."""

    __slots__ = ("due", "lock", "sent", "armed", "cancelled")

    def __init__(self) -> None:
        self.due = 0.0          # monotonic time before which no update is sent
        self.lock = threading.Lock()  # held while an update is being sent (try-lock only)
        self.sent: Any = None   # the sizes in the last update sent (own, or (own, total))
        self.armed = False      # a trailing report is scheduled
        self.cancelled = False  # the reporters were replaced (new coordinator) or cleanup()


class _TrailingReports:
    """The trailing updates of every throttled manager, on one shared thread.

    A throttled report that is skipped (inside report_interval) schedules one
    trailing report at the end of the interval, so the last state reaches the
    coordinator within report_interval of the last operation even when no
    operation follows. One daemon thread serves every manager in the process
    (a heap of due times); it starts on the first schedule and ends after
    ``linger`` idle seconds. It calls the coordinator holding no lock at all
    (the heap's lock is released around every call), so never from under a
    queue lock. A slow update_state delays the other managers' trailing
    updates by as much: the coordinator should be quick, as for every report.
    """

    name = "bufmgr-trailing-reports"

    def __init__(self, linger: float = 5.0) -> None:
        self._linger = linger
        self._reset()
        if hasattr(os, "register_at_fork"):
            # the child has no timer thread, and the lock may be held by a parent thread
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: List[Tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def schedule(self, due: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the timer thread once ``monotonic() >= due``."""
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), fn))
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread = thread
                thread.start()
            elif self._heap[0][2] is fn:  # new earliest entry: re-time the wait
                self._cond.notify()

    def thread(self) -> Optional[threading.Thread]:
        """The timer thread while it runs (for tests and diagnostics)."""
        return self._thread

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while True:
                    if cond is not self._cond:  # forked meanwhile: not our heap any more
                        return
                    if not self._heap:
                        cond.wait(self._linger)
                        if not self._heap:
                            self._thread = None
                            return
                        continue
                    due = self._heap[0][0]
                    wait = due - _monotonic()
                    if wait <= 0.0:
                        fn = heapq.heappop(self._heap)[2]
                        break
                    cond.wait(wait)
            try:
                fn()  # a trailing report: it handles its own errors
            except Exception:  # pragma: no cover - defensive: keep the thread alive
                logger.exception("BufferManager: trailing report failed")
            del fn


_TRAILING = _TrailingReports()


# The report functions are generated (as namedtuple/dataclasses do) so the
# coordinator is called with literal keywords, update_state(capture_left_queue_size=a,
# capture_queue_size=t): on CPython that is ~40% cheaper than update_state(**{...}).
# Field names are inserted only after str.isidentifier() (else **{...} is used).
#
# Consistency without a lock: a report reads the live sizes, sends them, then
# re-reads; if anything changed meanwhile it sends again. Every queue change is
# followed by a report of its own, so once the queues are quiet the update that
# reached the coordinator last was checked against the final sizes after it
# landed: the state ends exact even if concurrent updates arrive out of order.
# The re-sends are capped (_MAX_SENDS) so a coordinator that itself changes the
# queues from update_state cannot keep a report looping.

_MAX_SENDS = 32

_REPORT_TEMPLATE = """
def report():
    try:
        for _ in RETRIES:
            a = size()
            {total_line}
            update({call_args})
            if {verify}:
                return
    except Exception as e:
        on_error(e)
"""

# Throttled: at most one update per report_interval per component, and never
# a stale last state. Every update sent arms (once) a trailing report at the
# end of its interval (_TrailingReports); that report compares the live sizes
# with the ones last sent and sends them (one update, re-checked by the next
# trailing report) only if they differ, re-arming after each send; an operation that sent meanwhile
# just moves it to that update's interval. Reports skipped inside the
# interval, or while another thread is sending, cost nothing more than before:
# the armed trailing report reads the sizes after them.
_THROTTLED_TEMPLATE = """
def report():
    if monotonic() < throttle.due:
        return
    lock = throttle.lock
    if not lock.acquire(False):
        return  # another thread is sending; its trailing report covers this change
    err = None
    try:
        now = monotonic()
        if now >= throttle.due:
            throttle.due = now + interval
            a = size()
            {total_line}
            throttle.sent = {sent}
            update({call_args})
    except Exception as e:
        err = e
    finally:
        lock.release()
    if not throttle.armed:
        arm(throttle.due)
    if err is not None:
        on_error(err)


def trailing():
    throttle.armed = False
    if throttle.cancelled:
        return
    if monotonic() < throttle.due:  # an operation sent an update meanwhile
        arm(throttle.due)
        return
    lock = throttle.lock
    if not lock.acquire(False):  # an operation is sending right now
        arm(monotonic() + RETRY_S)
        return
    err = None
    sent = False
    try:
        a = size()
        {total_line}
        if {sent} != throttle.sent:
            # one update (no verify loop: that would bypass the throttle while
            # producers run); the re-armed trailer checks again after it
            throttle.due = monotonic() + interval
            throttle.sent = {sent}
            update({call_args})
            sent = True
    except Exception as e:
        err = e
    finally:
        lock.release()
    if sent and not throttle.armed:
        arm(throttle.due)
    if err is not None:
        on_error(err)


def arm(at):
    throttle.armed = True
    schedule(at, trailing)
"""

#: A trailing report that found an update in flight tries again this much later.
_RETRY_S = 0.002


def _make_reporters(
    update: Callable[..., Any],
    q: Any,
    field: str,
    total_field: Optional[str],
    siblings: Tuple[Any, ...],
    interval: float,
    on_error: Callable[[BaseException], None],
) -> Tuple[Callable[[], None], Callable[[], None], Optional[_Throttle]]:
    """-> (report, flush, throttle or None) for one component."""
    ns: Dict[str, Any] = {
        "update": update, "size": q.qsize, "on_error": on_error, "monotonic": _monotonic,
        "interval": interval, "throttle": _Throttle(), "f_own": field, "f_total": total_field,
        "RETRIES": range(_MAX_SENDS), "RETRY_S": _RETRY_S, "schedule": _TRAILING.schedule,
    }
    for i, sq in enumerate(siblings):
        ns[f"s{i}"] = sq.qsize  # bound qsize: cheaper than len() on both FrameQueues
    if total_field is not None:
        others = "".join(f" + s{i}()" for i in range(len(siblings)))
        total_line = f"t = a{others}"
        verify = f"size() == a and a{others} == t"
        if field.isidentifier() and total_field.isidentifier() and field != total_field:
            call_args = f"{field}=a, {total_field}=t"
        else:
            call_args = "**{f_own: a, f_total: t}"
    else:
        total_line = "pass"
        verify = "size() == a"
        call_args = f"{field}=a" if field.isidentifier() else "**{f_own: a}"
    sent = "(a, t)" if total_field is not None else "a"
    fmt = {"total_line": total_line, "call_args": call_args, "verify": verify, "sent": sent}
    flush_ns = dict(ns)
    exec(_REPORT_TEMPLATE.format(**fmt), flush_ns)  # noqa: S102 - identifiers checked above
    flush = flush_ns["report"]
    if not interval:
        return flush, flush, None
    exec(_THROTTLED_TEMPLATE.format(**fmt), ns)  # noqa: S102
    return ns["report"], flush, ns["throttle"]


# ---------------------------------------------------------------------------
# queue layout


def _parse_spec(component: str, spec: Any) -> Tuple[int, str, Any, Optional[int]]:
    """component spec -> (maxsize, overflow, group or None or ..., frame_bytes or None)."""
    group: Any = ...  # "derive from the name"
    overflow = "drop_oldest"
    frame_bytes = None  # None: a FrameQueue component
    explicit_overflow = False
    if isinstance(spec, bool):
        raise TypeError(f"queue spec for {component!r}: maxsize must be an int, not 'bool'")
    if isinstance(spec, int):
        maxsize = spec
    elif isinstance(spec, Mapping):
        unknown = set(spec) - {"maxsize", "overflow", "policy", "group", "frame_bytes"}
        if unknown:
            raise TypeError(f"queue spec for {component!r}: unknown keys {sorted(unknown)}")
        if "overflow" in spec and "policy" in spec:
            raise TypeError(f"queue spec for {component!r}: give 'overflow' or 'policy', not both")
        if "maxsize" not in spec:
            raise TypeError(f"queue spec for {component!r}: 'maxsize' is required")
        maxsize = spec["maxsize"]
        explicit_overflow = "overflow" in spec or "policy" in spec
        overflow = spec.get("overflow", spec.get("policy", overflow))
        if "group" in spec:
            group = spec["group"]
            if group is not None and (not isinstance(group, str) or not group):
                raise TypeError(f"queue spec for {component!r}: group must be a non-empty str or None")
        frame_bytes = spec.get("frame_bytes")
    elif isinstance(spec, tuple) and len(spec) == 2:
        maxsize, overflow = spec
        explicit_overflow = True
    else:
        raise TypeError(
            f"queue spec for {component!r} must be a maxsize int, a (maxsize, overflow) "
            f"tuple or a mapping, not {type(spec).__name__!r}"
        )
    if isinstance(maxsize, bool) or not isinstance(maxsize, int):
        raise TypeError(f"queue spec for {component!r}: maxsize must be an int")
    if overflow not in _POLICY_CODES:
        raise ValueError(
            f"queue spec for {component!r}: overflow must be one of "
            f"'block', 'drop_oldest', 'drop_newest', not {overflow!r}"
        )
    if maxsize <= 0 and overflow != "block" and frame_bytes is None:
        # FrameQueue refuses a drop policy without a bound (it would never
        # drop). An unbounded component with the default policy simply has
        # nothing to drop; a drop policy asked for by name is a mistake.
        if explicit_overflow:
            raise ValueError(
                f"queue spec for {component!r}: overflow={overflow!r} needs maxsize > 0, "
                f"got {maxsize} (maxsize <= 0 means unbounded, which never drops)"
            )
        overflow = "block"
    if frame_bytes is not None:
        if isinstance(frame_bytes, bool) or not isinstance(frame_bytes, int):
            raise TypeError(
                f"queue spec for {component!r}: frame_bytes must be an int, "
                f"not {type(frame_bytes).__name__!r}"
            )
        if frame_bytes <= 0:
            raise ValueError(f"queue spec for {component!r}: frame_bytes must be > 0, got {frame_bytes}")
        if maxsize <= 0:
            raise ValueError(
                f"queue spec for {component!r}: a FrameRing component (frame_bytes given) "
                f"needs maxsize > 0 (its number of slots), got {maxsize}"
            )
    return maxsize, overflow, group, frame_bytes


def _group_of(component: str, group: Any) -> Tuple[Optional[str], Optional[str]]:
    """-> (group or None, channel or None)."""
    if group is ...:
        head, sep, tail = component.rpartition("_")
        if sep and head and tail in CHANNEL_SUFFIXES:
            return head, tail
        return None, None
    if group is None:
        return None, None
    if component.startswith(group + "_") and len(component) > len(group) + 1:
        return group, component[len(group) + 1 :]
    return group, component


# ---------------------------------------------------------------------------
# the manager


def _pure_core_module() -> Any:
    """bufmgr/_mgrcore.py executed as plain Python, as ``bufmgr._mgrcore_pure``
    (when the extension is built, ``bufmgr._mgrcore`` is the compiled one)."""
    name = __name__.rpartition(".")[0] + "._mgrcore_pure"
    module = sys.modules.get(name)
    if module is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_mgrcore.py")
        loader = importlib.machinery.SourceFileLoader(name, path)
        spec = importlib.util.spec_from_loader(name, loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return module


def _load_core() -> Tuple[type, str]:
    """-> (ManagerCore class, "c" or "python"). The one source of the hot
    paths, bufmgr/_mgrcore.py, compiled (bufmgr._mgrcore extension) unless
    BUFMGR_NO_EXTENSIONS=1 or it was not built."""
    if os.environ.get("BUFMGR_NO_EXTENSIONS", "") in ("", "0"):
        try:
            from . import _mgrcore
        except ImportError:  # pragma: no cover - a broken build
            pass
        else:
            if not _mgrcore.__file__.endswith(".py"):  # the extension module
                return _mgrcore.ManagerCore, "c"
            # not built: that was the source itself; reuse it as the pure module
            sys.modules.setdefault(__name__.rpartition(".")[0] + "._mgrcore_pure", _mgrcore)
    return _pure_core_module().ManagerCore, "python"


if TYPE_CHECKING:
    from ._mgrcore import ManagerCore as _Core
    from ._ring import Frame  # the stub's Frame: the pure twin has the same interface

    _PyCore = _Core
    CORE_IMPLEMENTATION: str
else:
    _Core, CORE_IMPLEMENTATION = _load_core()
    #: The hot paths as plain Python (the tests run them next to the compiled ones).
    _PyCore = _pure_core_module().ManagerCore
#: CORE_IMPLEMENTATION: "c" when put_buffer/get_buffer are compiled, else "python".


class BufferManager(_Core):
    """Per-component bounded frame buffers with a coordinator hook.

    Parameters
    ----------
    coordinator:
        Any object with (some of) ``update_state``, ``handle_error``,
        ``is_shutdown_requested`` (see the module docstring), or None.
    config:
        A :class:`BufferConfig` (default ``BufferConfig()``).
    queues:
        component -> spec, where spec is a maxsize int (``drop_oldest``), a
        ``(maxsize, overflow)`` tuple, or a mapping with ``maxsize`` and
        optional ``overflow``/``policy``, ``group`` (None: no group) and
        ``frame_bytes``. Default: :data:`DEFAULT_QUEUES`.

        ``frame_bytes`` (an int > 0) backs the component with a FrameRing of
        ``maxsize`` slots (> 0 required) of ``frame_bytes`` bytes each,
        allocated once: put_buffer copies into a slot, so producers may reuse
        their buffers. Without it (or None) the component is a FrameQueue that
        queues the objects themselves (no copy; ``maxsize`` 0 = unbounded).
    report_interval:
        None (or 0): report sizes to the coordinator on every put/get (the
        replaced manager reported on every put). A number of seconds: at most
        one update per component per interval, and a trailing one: the state
        after the last operation reaches the coordinator within the interval
        even if nothing follows (sent from one timer thread shared by every
        manager, never under a queue lock); plus a final one at cleanup()
        (report_state() sends one on demand). For high-rate capture.
    report_gets:
        True (default): gets report too, so the state follows the consumers.
        False: only puts report, exactly like the replaced manager (whose
        state went stale as consumers drained); halves the coordinator calls.
    field_style:
        ``"component"`` (``capture_left_queue_size``) or ``"legacy"``
        (``capture_queue_size_left``); the group total is always
        ``capture_queue_size``.
    queue_factory:
        ``factory(maxsize, overflow) -> FrameQueue``-like object (default: the
        package's FrameQueue, compiled when built).
    ring_factory:
        ``factory(slots, frame_bytes, overflow) -> FrameRing``-like object for
        the components with ``frame_bytes``. Default: the FrameRing of the same
        implementation as ``queue_factory`` when that is one of the package's
        FrameQueue classes (compiled or pure), else the package's FrameRing
        (compiled when built).
    """

    def __init__(
        self,
        coordinator: Any = None,
        config: Optional[BufferConfig] = None,
        *,
        queues: Optional[Mapping[str, Any]] = None,
        report_interval: Optional[float] = None,
        field_style: str = "component",
        report_gets: bool = True,
        queue_factory: Optional[Callable[[int, str], Any]] = None,
        ring_factory: Optional[Callable[[int, int, str], Any]] = None,
    ) -> None:
        if config is None:
            config = BufferConfig()
        elif not isinstance(config, BufferConfig):
            raise TypeError(f"config must be a BufferConfig, not {type(config).__name__!r}")
        if report_interval is not None:
            if isinstance(report_interval, bool) or not isinstance(report_interval, numbers.Real):
                raise TypeError("report_interval must be a number of seconds or None")
            if not report_interval >= 0:
                raise ValueError(f"report_interval must be >= 0, got {report_interval!r}")
            report_interval = float(report_interval)
        if field_style not in _FIELD_STYLES:
            raise ValueError(f"field_style must be 'component' or 'legacy', not {field_style!r}")
        if queues is None:
            queues = DEFAULT_QUEUES
        if not isinstance(queues, Mapping) or not queues:
            raise TypeError("queues must be a non-empty mapping of component -> spec")
        self._init_fast_paths()  # the hot-path tables (created once, see bufmgr/_mgrcore.py)
        factory = queue_factory if queue_factory is not None else _default_queue_factory
        make_ring = ring_factory if ring_factory is not None else _ring_factory_for(queue_factory)

        self._config = dataclasses.replace(config)
        self._config_lock = threading.Lock()
        self._report_interval = report_interval or 0.0
        self._field_style = field_style
        self._report_gets = bool(report_gets)
        self._closed = False
        self._admin_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._counters = {
            "errors": 0, "put_timeouts": 0, "refused_puts": 0, "refused_newest": 0,
            "refused_underrun": 0,
        }

        components: Dict[str, _Component] = {}
        groups: Dict[Optional[str], List[_Component]] = {}
        for name, spec in queues.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"component names must be non-empty str, not {name!r}")
            maxsize, overflow, group_spec, frame_bytes = _parse_spec(name, spec)
            group, channel = _group_of(name, group_spec)
            if group is not None and field_style == "legacy":
                field = f"{group}_queue_size_{channel}"
            else:
                field = f"{name}_queue_size"
            if frame_bytes is None:
                q = factory(maxsize, overflow)
            else:
                q = make_ring(maxsize, frame_bytes, overflow)
            components[name] = _Component(
                name, q, _POLICY_CODES[overflow], group, field, ring=frame_bytes is not None,
            )
            groups.setdefault(group, []).append(components[name])
        by_field: Dict[str, List[str]] = {}
        for c in components.values():
            by_field.setdefault(c.field, []).append(c.name)
        same = {f: names for f, names in by_field.items() if len(names) > 1}
        if same:
            raise ValueError(
                f"queues: components would report under the same field ({field_style!r} "
                "field_style): " + "; ".join(f"{names} -> {f!r}" for f, names in sorted(same.items()))
                + "; rename a component or set its group"
            )
        totals = {f"{g}_queue_size" for g in groups if g is not None}
        clash = totals & set(by_field)
        if clash:
            raise ValueError(f"component fields clash with group totals: {sorted(clash)}")
        self._components = components
        self._groups = groups

        self._coordinator = None
        self._shutdown_check: Optional[Callable[[], Any]] = None
        self._handle_error: Optional[Callable[[BaseException, str], Any]] = None
        self._shutdown_cb: Optional[Callable[[], None]] = None
        self._shutdown_cb_owner: Any = None
        self._bind(coordinator)

    # ---- coordinator wiring ------------------------------------------------

    @property
    def coordinator(self) -> Any:
        return self._coordinator

    @coordinator.setter
    def coordinator(self, coordinator: Any) -> None:
        self._bind(coordinator)

    def _rebind_reporters_locked(self, update: Any) -> None:
        """_bind's part (admin lock held): every component's reporters made
        anew for ``update`` (none when it is None)."""
        for comp in self._components.values():
            if comp.throttle is not None:  # no trailing update to the old coordinator
                comp.throttle.cancelled = True
            comp.report = comp.flush = comp.throttle = None
        if update is None:
            return
        for group, members in self._groups.items():
            for comp in members:
                if group is None:
                    total, siblings = None, ()
                else:
                    total = f"{group}_queue_size"
                    siblings = tuple(m.queue for m in members if m is not comp)
                comp.report, comp.flush, comp.throttle = _make_reporters(
                    update, comp.queue, comp.field, total, siblings,
                    self._report_interval, self._report_failed,
                )

    def _fast_path_tables_locked(self) -> Tuple[Dict[str, Tuple[Any, ...]], Dict[str, Tuple[Any, ...]]]:
        """_bind's part (admin lock held): the hot-path tables, updated in
        place entry by entry by _set_fast_paths (bufmgr/_mgrcore.py: a
        concurrent put/get holds a strong reference to the old entry)."""
        check = self._shutdown_check
        put_fast: Dict[str, Tuple[Any, ...]] = {}
        for name, c in self._components.items():
            if c.ring and c.policy != _BLOCK:  # ring.put_nowait: drop policies never wait
                refused = "refused_newest" if c.policy == _DROP_NEWEST else "refused_underrun"
                put_fast[name] = (c.queue.put_nowait, c.report, check, refused)
            elif c.policy == _DROP_OLDEST and not c.ring:  # queue.put: evicts, never waits
                put_fast[name] = (c.put, c.report, check, None)
        get_fast: Dict[str, Tuple[Any, ...]] = {
            name: (c.get_nowait, c.report if self._report_gets else None, c)
            for name, c in self._components.items()
        }
        return put_fast, get_fast

    def _bind(self, coordinator: Any) -> None:
        with self._admin_lock:
            old_cb, old_owner = self._shutdown_cb, self._shutdown_cb_owner
            self._shutdown_cb = self._shutdown_cb_owner = None
            self._coordinator = coordinator
            self._shutdown_check = getattr(coordinator, "is_shutdown_requested", None)
            self._handle_error = getattr(coordinator, "handle_error", None)
            update = getattr(coordinator, "update_state", None)
            # The loops live in helpers: a loop's back edge written directly
            # in a with block can escape the block's cleanup on an interrupt
            # (CPython 3.12-3.14, gh-130279), which would leave the lock held.
            self._rebind_reporters_locked(update)
            put_fast, get_fast = self._fast_path_tables_locked()
            self._set_fast_paths(put_fast, get_fast)
            add = getattr(coordinator, "add_shutdown_callback", None)
            callback: Optional[Callable[[], None]] = None
            if add is not None and not self._closed:
                ref = weakref.WeakMethod(self._on_coordinator_shutdown)

                def callback() -> None:
                    method = ref()
                    if method is not None:
                        method()

                self._shutdown_cb, self._shutdown_cb_owner = callback, coordinator
        # the coordinator is called with none of our locks held
        self._remove_shutdown_cb(old_cb, old_owner)
        if callback is not None and add is not None:
            try:
                add(callback)
            except Exception:
                logger.exception("BufferManager: add_shutdown_callback failed")

    @staticmethod
    def _remove_shutdown_cb(cb: Optional[Callable[[], None]], owner: Any) -> None:
        if cb is not None:
            remove = getattr(owner, "remove_shutdown_callback", None)
            if remove is not None:
                try:
                    remove(cb)
                except Exception:
                    logger.exception("BufferManager: remove_shutdown_callback failed")

    def _on_coordinator_shutdown(self) -> None:
        """Coordinator asked for shutdown: refuse puts, let gets drain, wake
        getters blocked on an empty queue (they return None)."""
        for comp in self._components.values():
            comp.queue.shutdown(False)

    # ---- error paths (never on the hot path) ---------------------------------

    def _count(self, key: str) -> None:
        with self._counter_lock:
            self._counters[key] += 1

    def _notify_error(self, error: BaseException) -> None:
        handler = self._handle_error
        if handler is None:
            return
        try:
            handler(error, COORDINATOR_COMPONENT)
        except Exception:
            logger.exception("BufferManager: coordinator.handle_error failed")

    def _failed(self, op: str, component: Any, error: BaseException, expected: bool) -> None:
        self._count("errors")
        if expected:  # bad input: one line, no traceback
            logger.error("BufferManager.%s(%r) failed: %s: %s", op, component, type(error).__name__, error)
        else:
            logger.exception("BufferManager.%s(%r) failed unexpectedly", op, component)
        self._notify_error(error)

    def _report_failed(self, error: BaseException) -> None:
        self._count("errors")
        logger.error(
            "BufferManager: coordinator.update_state failed (the frame stays queued)",
            exc_info=(type(error), error, error.__traceback__),
        )
        self._notify_error(error)

    def _put_slow(self, component: Any, data: Any, timeout: Any) -> bool:
        """Everything put_buffer's fast paths did not handle: input errors,
        the block/drop_newest policies (block for rings), int or None timeouts."""
        check = self._shutdown_check
        if check is not None:
            try:
                if check():
                    self._count("refused_puts")
                    return False
            except Exception as e:
                self._failed("put_buffer", component, e, False)
                return False
        try:
            comp = self._components.get(component)
        except Exception:  # unhashable, or a key whose __hash__/__eq__ raises
            comp = None
        if comp is None:
            if self._closed:  # the replaced manager checked cleanup first
                self._count("refused_puts")
                return False
            self._failed("put_buffer", component, ValueError(f"Invalid component: {component}"), True)
            return False
        if data.__class__ is not bytes and not _is_bytes_like(data):
            self._failed(
                "put_buffer", component,
                TypeError(f"data must be bytes-like, not {type(data).__name__!r}"), True,
            )
            return False
        try:
            seconds = _check_timeout(timeout)
        except (TypeError, ValueError) as e:
            self._failed("put_buffer", component, e, True)
            return False
        if comp.ring:
            return self._put_ring_slow(comp, data, seconds)
        try:
            if comp.policy == _BLOCK:
                comp.put(data, True, seconds)
            elif comp.policy == _DROP_OLDEST:
                comp.put(data)
            elif comp.put(data) is data:  # drop_newest refused the frame (counted as dropped)
                self._count("refused_newest")
                return False
        except ShutDown:
            self._count("refused_puts")
            return False
        except Full:
            self._count("put_timeouts")
            logger.warning("Buffer put timeout for %s", component)
            return False
        except Exception as e:
            self._failed("put_buffer", component, e, False)
            return False
        report = comp.report
        if report is not None:
            report()
        return True

    def _put_ring_slow(self, comp: _Component, data: Any, seconds: Optional[float]) -> bool:
        """_put_slow for a FrameRing component (input and timeout checked)."""
        try:
            if comp.policy == _BLOCK:
                seq = comp.put(data, True, seconds)
            else:
                seq = comp.put(data, False)  # drop policies never wait
        except ShutDown:
            self._count("refused_puts")
            return False
        except Full:
            self._count("put_timeouts")
            logger.warning("Buffer put timeout for %s", comp.name)
            return False
        except (TypeError, ValueError) as e:  # not contiguous, larger than frame_bytes
            self._failed("put_buffer", comp.name, e, True)
            return False
        except Exception as e:
            self._failed("put_buffer", comp.name, e, False)
            return False
        if seq is None:  # a ring returns the seq; None: refused (counted as dropped)
            self._count("refused_newest" if comp.policy == _DROP_NEWEST else "refused_underrun")
            return False
        report = comp.report
        if report is not None:
            report()
        return True

    def _get_slow(self, component: Any, timeout: Any) -> Optional[Any]:
        """get_buffer for an unknown component or a timeout that is not a
        non-negative float (int, None, inf ... or invalid)."""
        try:
            get, report, comp = self._get_fast[component]
        except Exception:  # unknown, unhashable, or a key whose __hash__/__eq__ raises
            self._failed("get_buffer", component, ValueError(f"Invalid component: {component}"), True)
            return None
        try:
            timeout = _check_timeout(timeout)
        except (TypeError, ValueError) as e:
            self._failed("get_buffer", component, e, True)
            return None
        try:
            item = get()
        except Empty:
            return self._get_wait(comp, timeout)
        except ShutDown:
            return None
        except Exception as e:
            self._failed("get_buffer", component, e, False)
            return None
        if report is not None:
            report()
        return item

    def _get_wait(
        self, comp: _Component, timeout: Optional[float], get: Optional[Callable[..., Any]] = None,
    ) -> Optional[Any]:
        """get_buffer when nothing is queued: None at once if the coordinator
        asked for shutdown (no more puts will come), else wait (with ``get``,
        default ``comp.get``)."""
        try:
            check = self._shutdown_check
            if check is not None and check():
                return None
            item = (comp.get if get is None else get)(True, timeout)
        except (Empty, ShutDown):
            return None
        except Exception as e:
            self._failed("get_buffer", comp.name, e, False)
            return None
        if self._report_gets:
            report = comp.report
            if report is not None:
                report()
        return item

    def get_frame(self, component: str, timeout: Optional[float] = 1.0) -> Optional[Frame]:
        """Zero-copy get for a FrameRing component: the oldest frame as a
        read-only :class:`bufmgr.Frame` (buffer protocol, ``bytes(frame)``,
        ``.seq``, ``.timestamp_ns``, ``.nbytes``), or None like get_buffer.

        The frame holds its slot until it is released: use it as a context
        manager (``with m.get_frame(c) as f: ...``) or call ``f.release()``.
        While consumers hold every slot, ``drop_oldest`` puts are refused
        (underruns). A FrameQueue component is bad input (None, logged,
        handed to handle_error).
        """
        try:
            comp = self._components.get(component)
        except Exception:  # unhashable, or a key whose __hash__/__eq__ raises
            comp = None
        if comp is None or not comp.ring:
            if comp is None:
                error: Exception = ValueError(f"Invalid component: {component}")
            else:
                error = TypeError(f"component {component!r} is not backed by a FrameRing")
            self._failed("get_frame", component, error, True)
            return None
        try:
            timeout = _check_timeout(timeout)
        except (TypeError, ValueError) as e:
            self._failed("get_frame", component, e, True)
            return None
        ring = comp.queue
        try:
            frame: Frame = ring.get_nowait()
        except Empty:
            return self._get_wait(comp, timeout, ring.get)
        except ShutDown:
            return None
        except Exception as e:
            self._failed("get_frame", component, e, False)
            return None
        if self._report_gets:
            report = comp.report
            if report is not None:
                report()
        return frame

    # ---- inspection ----------------------------------------------------------

    @property
    def components(self) -> Tuple[str, ...]:
        """Component names, in configuration order."""
        return tuple(self._components)

    def get_queue(self, component: str) -> Any:
        """The FrameQueue (or FrameRing) behind ``component`` (KeyError if unknown)."""
        return self._components[component].queue

    def get_usage(self) -> Dict[str, int]:
        """component -> frames currently queued."""
        return {name: c.queue.qsize() for name, c in self._components.items()}

    def get_performance_stats(self) -> Dict[str, Any]:
        """Counters per component and totals.

        ``components[name]``: size, maxsize, puts, gets, dropped, cleared,
        high_water, waits (the FrameQueue's stats) plus overflow and group.
        A FrameRing component has the ring's stats instead (no waits): puts,
        gets, dropped, cleared, underruns, high_water, size, held, free,
        slots, frame_bytes, plus maxsize (= slots), overflow and group.
        Per component ``puts == gets + dropped + cleared + size`` at a quiet
        moment. ``totals`` sums the counters (underruns and held: rings only).
        ``manager``: errors (bad input, coordinator failures), put_timeouts,
        refused_puts (shutdown/cleanup), refused_newest (drop_newest
        refusals), refused_underrun (a drop_oldest ring with every slot held
        or being written).
        """
        comps: Dict[str, Dict[str, Any]] = {}
        totals = dict.fromkeys(
            ("size", "maxsize", "puts", "gets", "dropped", "cleared", "waits", "underruns", "held"), 0
        )
        for name, c in self._components.items():
            st = dict(c.queue.stats())
            if c.ring:
                st["maxsize"] = st["slots"]
            for key in totals:
                totals[key] += st.get(key, 0)
            st["overflow"] = c.queue.overflow
            st["group"] = c.group
            comps[name] = st
        with self._counter_lock:
            manager = dict(self._counters)
        first = next(iter(self._components.values())).queue
        return {
            "implementation": "c" if type(first).__module__.endswith("_ring") else "python",
            "core": CORE_IMPLEMENTATION,
            "report_interval": self._report_interval or None,
            "components": comps,
            "totals": totals,
            "manager": manager,
        }

    # ---- configuration -------------------------------------------------------

    def get_buffer_config(self) -> BufferConfig:
        """A copy of the current BufferConfig (change it with update_buffer_config)."""
        with self._config_lock:
            return dataclasses.replace(self._config)

    def update_buffer_config(self, **changes: Any) -> BufferConfig:
        """Validate and apply ``changes`` atomically; return the new config.

        Unknown names -> TypeError, values <= 0 -> ValueError; on error the
        config is unchanged.
        """
        unknown = set(changes) - _CONFIG_FIELDS
        if unknown:
            raise TypeError(
                f"update_buffer_config() got unknown field(s) {sorted(unknown)}; "
                f"valid: {sorted(_CONFIG_FIELDS)}"
            )
        with self._config_lock:
            new = dataclasses.replace(self._config, **changes)
            self._config = new
            return dataclasses.replace(new)

    # ---- lifecycle -----------------------------------------------------------

    def report_state(self) -> None:
        """Send every group's current sizes to the coordinator now (ignores
        report_interval). cleanup() does this for you."""
        for comp in list(self._components.values()):
            flush = comp.flush
            if flush is not None:
                flush()

    def cleanup(self) -> None:
        """Refuse new puts, wake blocked getters (they return None), drop what
        is queued (counted as ``cleared``), report zero sizes. Idempotent."""
        with self._admin_lock:
            if self._closed:
                return
            self._closed = True
            cb, owner = self._shutdown_cb, self._shutdown_cb_owner
            self._shutdown_cb = self._shutdown_cb_owner = None
        self._remove_shutdown_cb(cb, owner)
        for comp in self._components.values():
            comp.queue.shutdown(True)
            throttle = comp.throttle
            if throttle is not None:  # the flush below is the last update
                throttle.cancelled = True
        self.report_state()

    close = cleanup

    def is_valid(self) -> bool:
        """True until cleanup()."""
        return not self._closed

    def __enter__(self) -> "BufferManager":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<bufmgr.BufferManager components={len(self._components)}{state}>"
