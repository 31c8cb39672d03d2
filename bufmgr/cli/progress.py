"""Plain stderr progress bar and in-place status line (no third-party deps).

Both draw only when their stream is a TTY (or ``enabled=True`` is forced), so
piping ``python -m bufmgr bench`` into a file or CI log stays clean.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import TextIO


def stream_is_tty(stream: TextIO | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # closed or exotic stream
        return False


def _term_width(default: int = 80) -> int:
    try:
        return max(20, shutil.get_terminal_size((default, 24)).columns)
    except (OSError, ValueError):  # pragma: no cover - no terminal at all
        return default


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


class _Redraw:
    """Rewrite one terminal line in place with plain ``\r`` and spaces (no
    ANSI escapes, so legacy Windows consoles render it too)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = 0

    def draw(self, text: str) -> None:
        pad = max(0, self.shown - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self.shown = len(text)

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()
            self.shown = 0


class ProgressBar:
    """``[#####.....]  12/31  label`` redrawn in place on stderr.

    Quiet (a no-op) when the stream is not a TTY unless ``enabled=True``.
    Use as a context manager so the line is cleared even on errors.
    """

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        width: int = 24,
        min_interval: float = 0.05,
    ) -> None:
        self.total = max(0, int(total))
        self.stream = sys.stderr if stream is None else stream
        self.enabled = stream_is_tty(self.stream) if enabled is None else bool(enabled)
        if os.environ.get("TERM") == "dumb" and enabled is None:
            self.enabled = False
        self.width = width
        self.min_interval = min_interval
        self.count = 0
        self.label = ""
        self._last_draw = 0.0
        self._line = _Redraw(self.stream)
        self._t0 = time.monotonic()

    def __enter__(self) -> "ProgressBar":
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_label(self, label: str) -> None:
        self.label = label
        self._draw(force=True)

    def advance(self, n: int = 1, label: str | None = None) -> None:
        self.count = min(self.total, self.count + n) if self.total else self.count + n
        if label is not None:
            self.label = label
        self._draw()

    def render(self) -> str:
        frac = (self.count / self.total) if self.total else 0.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.monotonic() - self._t0
        head = f"[{bar}] {self.count:>{len(str(self.total))}}/{self.total} {elapsed:5.1f}s "
        return head + self.label

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        self._line.draw(_fit(self.render(), _term_width() - 1))

    def close(self) -> None:
        if self.enabled:
            self._line.clear()


class StatusLine:
    """A one-line live status.

    On a TTY it redraws in place (``\\r``, padded over the previous text); elsewhere it prints
    a plain line at most every ``plain_interval`` seconds (0 disables that).
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        plain_interval: float = 1.0,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.tty = stream_is_tty(self.stream) if tty is None else bool(tty)
        self.plain_interval = plain_interval
        self._last_plain = float("-inf")
        self._line = _Redraw(self.stream)

    def update(self, text: str, compact: str | None = None) -> None:
        """Show `text`; on a TTY too narrow for it, `compact` (if given)."""
        if self.tty:
            width = _term_width() - 1
            if compact is not None and len(text) > width:
                text = compact
            self._line.draw(_fit(text, width))
            return
        if self.plain_interval <= 0:
            return
        now = time.monotonic()
        if now - self._last_plain >= self.plain_interval:
            self._last_plain = now
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self._line.clear()
