"""``StateCoordinator``: a thread-safe coordinator for :class:`BufferManager`.

It implements the manager's duck-typed protocol (``update_state``,
``handle_error``, ``is_shutdown_requested``, plus ``add_shutdown_callback`` /
``remove_shutdown_callback`` so blocked getters wake at once on shutdown)
and keeps:

* a state mapping; :meth:`StateCoordinator.get_state` returns a snapshot
  readable both as ``state.capture_queue_size`` and
  ``state["capture_queue_size"]``, with group totals derived from the
  per-channel fields (``capture_left_queue_size`` + ``capture_right_queue_size``
  -> ``capture_queue_size``; the legacy ``capture_queue_size_left`` naming is
  summed the same way);
* ``last_error`` (the exception), ``last_error_component`` and per-component
  error counts;
* a one-way shutdown flag (:meth:`request_shutdown`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

__all__ = ["StateCoordinator", "StateSnapshot"]

logger = logging.getLogger(__name__)

#: Group totals present (as 0) before any update, like the replaced SystemState.
DEFAULT_GROUPS = ("capture", "processing", "storage")


class StateSnapshot(Dict[str, Any]):
    """A point-in-time copy of the coordinator state: a dict whose keys are
    also readable as attributes (``snap.capture_queue_size``)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"state has no field {name!r}") from None

    def __dir__(self) -> Iterable[str]:
        return list(super().__dir__()) + [k for k in self if isinstance(k, str) and k.isidentifier()]

    def __repr__(self) -> str:
        return f"StateSnapshot({dict.__repr__(self)})"


class StateCoordinator:
    """Thread-safe coordinator: state fields, errors and a shutdown flag.

    ``channels`` are the per-channel suffixes summed into group totals
    (default left/right). ``initial`` seeds the state (after the defaults:
    ``capture_queue_size``/``processing_queue_size``/``storage_queue_size`` = 0,
    ``last_error`` = None, ``error_count`` = 0).
    """

    def __init__(
        self,
        initial: Optional[Dict[str, Any]] = None,
        *,
        channels: Iterable[str] = ("left", "right"),
    ) -> None:
        self._lock = threading.Lock()
        self._state: Dict[str, Any] = {f"{g}_queue_size": 0 for g in DEFAULT_GROUPS}
        self._state.update(last_error=None, error_count=0)
        if initial:
            self._state.update(initial)
        self._channels = tuple(channels)
        self._suffixes = tuple(
            (f"_{ch}_queue_size", f"_queue_size_{ch}") for ch in self._channels
        )
        self._shutdown = False
        self._shutdown_event = threading.Event()
        self._callbacks: List[Callable[[], None]] = []
        self._last_error: Optional[BaseException] = None
        self._last_error_component: Optional[str] = None
        self._error_counts: Dict[str, int] = {}

    # ---- the manager protocol -------------------------------------------------

    def update_state(self, **fields: Any) -> None:
        """Set state fields (any names)."""
        with self._lock:
            self._state.update(fields)

    def handle_error(self, error: BaseException, component: str) -> None:
        """Record an error reported by ``component``."""
        with self._lock:
            self._last_error = error
            self._last_error_component = component
            self._error_counts[component] = self._error_counts.get(component, 0) + 1
            self._state["last_error"] = error
            self._state["error_count"] = self._state.get("error_count", 0) + 1
        logger.debug("error from %s: %r", component, error)

    def is_shutdown_requested(self) -> bool:
        return self._shutdown

    def add_shutdown_callback(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` (outside any lock) when shutdown is requested;
        at once if it already was."""
        with self._lock:
            if not self._shutdown:
                self._callbacks.append(callback)
                return
        self._run_callback(callback)

    def remove_shutdown_callback(self, callback: Callable[[], Any]) -> None:
        with self._lock:
            try:
                self._callbacks.remove(callback)
            except ValueError:
                pass

    # ---- shutdown -------------------------------------------------------------

    def request_shutdown(self) -> None:
        """Ask every component to stop (one-way; repeated calls are no-ops):
        managers refuse new puts and let gets drain what is queued."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            callbacks, self._callbacks = self._callbacks, []
        self._shutdown_event.set()
        for cb in callbacks:
            self._run_callback(cb)

    def wait_for_shutdown(self, timeout: Optional[float] = None) -> bool:
        """Block until shutdown is requested (True) or ``timeout`` passes (False)."""
        return self._shutdown_event.wait(timeout)

    @staticmethod
    def _run_callback(cb: Callable[[], Any]) -> None:
        try:
            cb()
        except Exception:
            logger.exception("StateCoordinator: shutdown callback failed")

    # ---- reading ----------------------------------------------------------------

    def get_state(self) -> StateSnapshot:
        """A snapshot of every field, with group totals derived from the
        per-channel fields present."""
        with self._lock:
            snap = StateSnapshot(self._state)
        # (group, channel) -> (style, value); style 0 "<group>_<ch>_queue_size"
        # wins over style 1 "<group>_queue_size_<ch>" when both are present
        per_channel: Dict[Tuple[str, str], Tuple[int, Any]] = {}
        for key, value in snap.items():
            if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            for ch, (modern, legacy) in zip(self._channels, self._suffixes):
                if key.endswith(modern):
                    group, style = key[: -len(modern)], 0
                elif key.endswith(legacy):
                    group, style = key[: -len(legacy)], 1
                else:
                    continue
                if group:
                    prev = per_channel.get((group, ch))
                    if prev is None or style < prev[0]:
                        per_channel[(group, ch)] = (style, value)
                break
        sums: Dict[str, Any] = {}
        for (group, _ch), (_style, value) in per_channel.items():
            total = f"{group}_queue_size"
            sums[total] = sums.get(total, 0) + value
        snap.update(sums)
        return snap

    @property
    def last_error(self) -> Optional[BaseException]:
        """The most recent error passed to handle_error (None if none)."""
        return self._last_error

    @property
    def last_error_component(self) -> Optional[str]:
        return self._last_error_component

    @property
    def error_counts(self) -> Dict[str, int]:
        """component -> number of handle_error calls (a copy)."""
        with self._lock:
            return dict(self._error_counts)

    def error_count(self, component: Optional[str] = None) -> int:
        """Errors reported by ``component`` (all components if None)."""
        with self._lock:
            if component is None:
                return sum(self._error_counts.values())
            return self._error_counts.get(component, 0)

    def __repr__(self) -> str:
        flag = " shutdown" if self._shutdown else ""
        return f"<bufmgr.StateCoordinator fields={len(self._state)} errors={self.error_count()}{flag}>"
