"""The replaced manager, re-implemented as described, for comparisons.

``BaselineBufferManager`` behaves like the capture application's original
``BufferManager`` (it is written from its description, not copied):

* one ``queue.Queue`` per component in a dict (capture 1000, processing 500,
  storage 250 per channel);
* ``put_buffer`` checks ``coordinator.is_shutdown_requested()``, then under
  ONE global lock: refuses after cleanup, looks the queue up (unknown ->
  ``ValueError("Invalid component: ...")``), evicts the oldest frame with
  ``if q.full(): q.get_nowait()``, ``put(data, timeout=timeout)``, and
  reports ``<component>_queue_size`` via ``update_state`` under a state lock;
* consumers do not take the global lock, so the eviction races them: when
  they empty the queue between ``full()`` and ``get_nowait()``, ``Empty`` is
  raised, the put reports an unexpected error and the NEW frame is lost.
  Each such loss is counted in ``lost_frames``, each eviction in
  ``evicted[component]`` (instrumentation added for benchmarks; the original
  counted nothing, so its evictions vanished silently).

``MonitoringCoordinator`` is the original's coordinator style: a
``SystemState`` dataclass where ``<group>_left_queue_size`` and
``<group>_right_queue_size`` are summed into ``<group>_queue_size``.

Use them only to measure: ``pytest bench --benchmark-only`` and
``python -m bufmgr bench`` compare them with :class:`bufmgr.BufferManager`.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from typing import Any, Dict, Optional

from .manager import DEFAULT_QUEUES

__all__ = ["BaselineBufferManager", "MonitoringCoordinator", "SystemState"]

logger = logging.getLogger(__name__)


class BaselineBufferManager:
    """The replaced manager: queue.Queue per component, one global lock."""

    def __init__(self, coordinator: Any = None, config: Any = None, *, queues: Optional[Dict[str, int]] = None):
        self.coordinator = coordinator
        self.config = config
        self._queues: Dict[str, queue.Queue] = {
            name: queue.Queue(maxsize=size) for name, size in (queues or DEFAULT_QUEUES).items()
        }
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._cleanup_started = False
        # Instrumentation only (the original kept no counters; behaviour unchanged):
        self.lost_frames = 0  # new frames lost to the race (put failed with Empty)
        self.evicted = dict.fromkeys(self._queues, 0)  # oldest frames dropped by full()/get_nowait()

    def put_buffer(self, component: str, data: bytes, timeout: float = 0.5) -> bool:
        try:
            if self.coordinator is not None and self.coordinator.is_shutdown_requested():
                return False
            with self._lock:
                if self._cleanup_started:
                    return False
                buffer_queue = self._queues.get(component)
                if buffer_queue is None:
                    raise ValueError(f"Invalid component: {component}")
                if buffer_queue.full():
                    buffer_queue.get_nowait()  # races the consumers: may raise Empty
                    self.evicted[component] += 1
                buffer_queue.put(data, timeout=timeout)
                if self.coordinator is not None:
                    with self._state_lock:
                        self.coordinator.update_state(**{f"{component}_queue_size": buffer_queue.qsize()})
                return True
        except queue.Full:
            logger.warning(f"Buffer put timeout for {component}")
            return False
        except Exception as e:
            if isinstance(e, queue.Empty):
                self.lost_frames += 1
            logger.exception(f"Error putting buffer for {component}: {e}")
            if self.coordinator is not None:
                self.coordinator.handle_error(e, "buffer_manager")
            return False

    def get_buffer(self, component: str, timeout: float = 1.0) -> Optional[bytes]:
        try:
            buffer_queue = self._queues.get(component)
            if buffer_queue is None:
                raise ValueError(f"Invalid component: {component}")
            return buffer_queue.get(timeout=timeout)
        except queue.Empty:
            return None
        except Exception as e:
            logger.exception(f"Error getting buffer for {component}: {e}")
            if self.coordinator is not None:
                self.coordinator.handle_error(e, "buffer_manager")
            return None

    def get_usage(self) -> Dict[str, int]:
        return {name: q.qsize() for name, q in self._queues.items()}

    def cleanup(self) -> None:
        with self._lock:
            self._cleanup_started = True
            for q in self._queues.values():
                while not q.empty():
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        break

    def is_valid(self) -> bool:
        return not self._cleanup_started


@dataclasses.dataclass
class SystemState:
    capture_queue_size: int = 0
    processing_queue_size: int = 0
    storage_queue_size: int = 0
    last_error: Optional[str] = None
    error_count: int = 0


class MonitoringCoordinator:
    """The original coordinator style: per-channel queue sizes summed into
    the SystemState base field, errors recorded, a shutdown event."""

    def __init__(self) -> None:
        self._state = SystemState()
        self._channel_sizes: Dict[str, int] = {}
        self._lock = threading.Lock()
        self._shutdown = threading.Event()

    def update_state(self, **kwargs: Any) -> None:
        with self._lock:
            for key, value in kwargs.items():
                for side in ("_left", "_right"):
                    suffix = f"{side}_queue_size"
                    if key.endswith(suffix):
                        base = key[: -len(suffix)] + "_queue_size"
                        self._channel_sizes[key] = value
                        total = sum(
                            self._channel_sizes.get(key[: -len(suffix)] + f"{s}_queue_size", 0)
                            for s in ("_left", "_right")
                        )
                        setattr(self._state, base, total)
                        break
                else:
                    if hasattr(self._state, key):
                        setattr(self._state, key, value)

    def get_state(self) -> SystemState:
        with self._lock:
            return dataclasses.replace(self._state)

    def handle_error(self, error: BaseException, component: str) -> None:
        with self._lock:
            self._state.last_error = f"{component}: {error}"
            self._state.error_count += 1

    @property
    def last_error(self) -> Optional[str]:
        return self._state.last_error

    def is_shutdown_requested(self) -> bool:
        return self._shutdown.is_set()

    def request_shutdown(self) -> None:
        self._shutdown.set()
