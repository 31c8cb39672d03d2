"""Shared fixtures for the FrameQueue test suite.

Every FrameQueue test runs twice through the ``FrameQueue`` fixture:

* ``[c]``      -- ``bufmgr._ring.FrameQueue``, the compiled class. It is
  skipped ONLY when ``BUFMGR_NO_EXTENSIONS=1`` is set; otherwise a failing
  import is an error, so CI cannot silently test the pure twin twice.
* ``[python]`` -- ``bufmgr._pyqueue.FrameQueue``, the pure-Python twin.

Liveness: nothing in this suite may hang. Threads are started through the
``live`` fixture (joined with a generous deadline, failing the test rather
than hanging it), waits for "the other thread is now blocked" poll
``stats()["waits"]`` with a deadline, and an autouse faulthandler timer dumps
every thread's stack (and ends the run) if a single test wedges anyway.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time

import pytest

#: Deadline for joining a thread / waiting for a condition. Generous on
#: purpose: these are liveness bounds, never timing assertions.
DEADLINE_S = 30.0

#: Hard safety net per test: dump all stacks and exit if a test is stuck.
SAFETY_NET_S = 150.0

NO_EXTENSIONS = os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0")


@pytest.fixture(params=["c", "python"])
def FrameQueue(request):  # noqa: N802 - the fixture *is* the class
    if request.param == "c":
        if NO_EXTENSIONS:
            pytest.skip("BUFMGR_NO_EXTENSIONS=1: compiled FrameQueue not tested")
        # No try/except on purpose: an ImportError here must fail loudly.
        from bufmgr._ring import FrameQueue as cls
    else:
        from bufmgr._pyqueue import FrameQueue as cls
    return cls


# ---------------------------------------------------------------------------
# liveness helpers


def _real_stderr_fd(config) -> int:
    """The terminal's stderr even while pytest captures fd 2 (best effort)."""
    try:
        capman = config.pluginmanager.getplugin("capturemanager")
        err = capman._global_capturing.err  # FDCapture of fd 2 (internal API)
        fd = err.targetfd_save
        if isinstance(fd, int) and fd >= 0:
            return fd
    except Exception:
        pass
    try:
        return sys.__stderr__.fileno()
    except Exception:
        return 2


@pytest.fixture(scope="session", autouse=True)
def _sigint_raises_keyboardinterrupt():
    """Give SIGINT its interactive meaning for the whole run.

    A shell without job control starts `pytest &` with SIGINT ignored, and a
    Python that starts with SIGINT ignored installs no KeyboardInterrupt
    handler; its children inherit the same. The Ctrl+C tests would then
    skip, or wait out their timeout on a `bufmgr demo` that cannot be
    stopped. A handler set here is reset to the default in every child at
    exec, so the children get Python's usual handler too."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGINT"):
        yield
        return
    old = signal.getsignal(signal.SIGINT)
    if old is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if old is signal.SIG_IGN:
            signal.signal(signal.SIGINT, old)


@pytest.fixture(autouse=True)
def _hang_safety_net(request):
    """If one test wedges (a deadlock we did not foresee), dump every stack
    to the real stderr and exit instead of hanging CI forever."""
    try:
        faulthandler.dump_traceback_later(
            SAFETY_NET_S, exit=True, file=_real_stderr_fd(request.config)
        )
    except Exception:  # pragma: no cover - e.g. an exotic stderr
        faulthandler.dump_traceback_later(SAFETY_NET_S, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def wait_until(predicate, timeout=DEADLINE_S, what="condition"):
    """Poll `predicate` until true; fail (never hang) after `timeout` s."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"liveness: {what} not reached within {timeout} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def wait_for_waits(q, n, timeout=DEADLINE_S):
    """Wait until `n` operations on `q` have blocked (stats()['waits'] >= n)."""
    wait_until(lambda: q.stats()["waits"] >= n, timeout, f"stats()['waits'] >= {n}")


def drain(q):
    """Take every queued item out without blocking (FIFO order)."""
    from bufmgr._errors import Empty, ShutDown

    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except (Empty, ShutDown):
            return out


class Worker:
    """A daemon thread running fn(*args, **kwargs), keeping result/exception."""

    def __init__(self, fn, *args, name=None, **kwargs):
        self.result = None
        self.exc = None
        self._done = threading.Event()

        def run():
            try:
                self.result = fn(*args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - reported to the test
                self.exc = e
            finally:
                self._done.set()

        self.thread = threading.Thread(target=run, name=name or getattr(fn, "__name__", "worker"))
        self.thread.daemon = True
        self.joined = False

    def start(self):
        self.thread.start()
        return self

    @property
    def done(self):
        return self._done.is_set()

    def join(self, timeout=DEADLINE_S):
        """Join within `timeout` (liveness failure otherwise); return outcome."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            pytest.fail(f"liveness: thread {self.thread.name!r} still blocked after {timeout} s")
        self.joined = True
        return self

    def value(self, timeout=DEADLINE_S):
        """Join, re-raise the thread's exception, else return its result."""
        self.join(timeout)
        if self.exc is not None:
            raise self.exc
        return self.result

    def raised(self, exc_type, timeout=DEADLINE_S):
        """Join and assert the thread ended with `exc_type`."""
        self.join(timeout)
        assert isinstance(self.exc, exc_type), (
            f"thread {self.thread.name!r}: expected {exc_type.__name__}, "
            f"got exception={self.exc!r} result={self.result!r}"
        )
        return self.exc


class Liveness:
    """Per-test liveness helper (the ``live`` fixture).

    start() runs a function in a daemon Worker thread; teardown joins every
    worker with a deadline and fails the test (instead of hanging) if one is
    still blocked. wait_until()/wait_for_waits() poll with a deadline.
    """

    DEADLINE_S = DEADLINE_S

    def __init__(self):
        self.workers: list[Worker] = []

    wait_until = staticmethod(wait_until)
    wait_for_waits = staticmethod(wait_for_waits)

    def start(self, fn, *args, **kwargs) -> Worker:
        w = Worker(fn, *args, **kwargs)
        self.workers.append(w)
        return w.start()

    def join_all(self, timeout=DEADLINE_S):
        deadline = time.monotonic() + timeout
        stuck = []
        for w in self.workers:
            w.thread.join(max(0.0, deadline - time.monotonic()))
            if w.thread.is_alive():
                stuck.append(w.thread.name)
            else:
                w.joined = True
        return stuck

    drain = staticmethod(drain)


@pytest.fixture
def live():
    reg = Liveness()
    yield reg
    stuck = reg.join_all()
    if stuck:
        pytest.fail(f"liveness: threads still running at teardown: {stuck}")
