"""Model-based test: a hypothesis state machine drives FrameQueue through
every operation and compares it, step by step, with a trivial pure model
(a list and a few counters).

Both implementations run the same machine (``TestFrameQueueMachineC`` and
``TestFrameQueueMachinePython``); nothing is shared between them but the
model. Every step compares the returned value (object identity for items),
the exception *type*, and afterwards qsize/len/empty/full, unfinished_tasks,
is_shutdown, maxsize, overflow, repr and every key of stats(). Teardown
checks that every payload the queue ever held has been released.

Single-threaded, so only non-blocking calls or zero/tiny timeouts are made
whenever the model says the call would have to wait (a "long" timeout or
None is replaced by 0 in that case); waiting calls still count in
stats()["waits"], which the model predicts too. No sleeps.

Profiles (``BUFMGR_STATEFUL_PROFILE``):
  ``ci``   (default) 500 examples x up to 40 steps per implementation
  ``long`` 5000 examples x up to 100 steps (a few minutes)
  ``dev``  50 examples (quick local iteration)

TODO(FrameRing): FrameRing (its own issue; being written in
bufmgr/_framering.pxi + bufmgr/_pyframering.py) has its own API, so it
needs a sibling machine with its own model, written against its spec once
that lands; nothing about it is assumed here. If it ever offers the
FrameQueue API, add a factory to ``IMPLEMENTATIONS`` / ``_load`` instead.

``test_get_many_accepts_any_positive_int`` (bottom) pins a divergence the
machine's MAX_ITEMS values exposed early on: the compiled get_many raised
OverflowError for max_items >= 2**63 (fixed in _ring.pyx/_errors.py).
"""

from __future__ import annotations

import math
import os
import sys
import weakref
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bufmgr._errors import TASK_DONE_TOO_MANY, Empty, Full, ShutDown

# Same switch as the FrameQueue fixture in conftest.py (a TestCase cannot use
# fixtures, and "import conftest" is ambiguous when bench/ is collected too).
NO_EXTENSIONS = os.environ.get("BUFMGR_NO_EXTENSIONS", "") not in ("", "0")

# ---------------------------------------------------------------------------
# settings profiles

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile("bufmgr-stateful-ci", max_examples=500, stateful_step_count=40, **_COMMON)
settings.register_profile("bufmgr-stateful-long", max_examples=5000, stateful_step_count=100, **_COMMON)
settings.register_profile("bufmgr-stateful-dev", max_examples=50, stateful_step_count=40, **_COMMON)
_PROFILE = os.environ.get("BUFMGR_STATEFUL_PROFILE", "ci")
MACHINE_SETTINGS = settings.get_profile(f"bufmgr-stateful-{_PROFILE}")


def _load(impl):
    if impl == "c":
        from bufmgr._ring import FrameQueue  # an ImportError must fail loudly
    elif impl == "python":
        from bufmgr._pyqueue import FrameQueue
    else:  # TODO(FrameRing): another factory goes here
        raise AssertionError(impl)
    return FrameQueue


#: name -> skip reason (None: run it)
IMPLEMENTATIONS = {
    "c": "BUFMGR_NO_EXTENSIONS=1: compiled FrameQueue not tested" if NO_EXTENSIONS else None,
    "python": None,
}

POLICIES = ("block", "drop_oldest", "drop_newest")

# ---------------------------------------------------------------------------
# argument tokens (what the machine draws) and their meaning for the model

_NAN = float("nan")

#: (value, class): "forever" / "long" never wait in practice and are replaced
#: by 0 when the model predicts a wait; "zero"/"tiny" may wait (and time out).
TIMEOUTS = [
    (None, "forever"),
    (math.inf, "forever"),
    (30, "long"),
    (30.0, "long"),
    (0, "zero"),
    (0.0, "zero"),
    (-0.0, "zero"),
    (Fraction(0), "zero"),
    (1e-6, "tiny"),
    (-1, ValueError),
    (-0.5, ValueError),
    (_NAN, ValueError),
    (-math.inf, ValueError),
    (True, TypeError),
    ("0", TypeError),
    (Decimal(0), TypeError),
]
BLOCKS = [True, False, 1, 0, None]
MAX_ITEMS = [1, 2, 3, 7, 100, 2**40, 2**63, 0, -1, True, 2.0, None]


def _max_items_error(m):
    if isinstance(m, bool) or not isinstance(m, int):
        return TypeError
    if m < 1:
        return ValueError
    return None


class Payload:
    __slots__ = ("n", "__weakref__")

    def __init__(self, n):
        self.n = n

    def __repr__(self):
        return f"P{self.n}"


class BoomIterError(Exception):
    pass


def _failing_iter(items, fail_after):
    for i, it in enumerate(items):
        if i == fail_after:
            raise BoomIterError("injected")
        yield it


# ---------------------------------------------------------------------------
# the model


class Model:
    """The reference: a list plus counters. Returns ("ok", value) or
    ("raise", ExceptionType) for every operation."""

    def __init__(self, maxsize, overflow):
        self.maxsize = maxsize if maxsize > 0 else 0  # the bound (stats()["maxsize"])
        self.given = maxsize  # FrameQueue.maxsize, as given like queue.Queue
        self.overflow = overflow
        self.items = []
        self.puts = self.gets = self.dropped = self.cleared = 0
        self.waits = self.high_water = self.unfinished = 0
        self.shutdown = 0  # 0 running, 1 graceful, 2 immediate

    # helpers
    def full(self):
        return bool(self.maxsize) and len(self.items) >= self.maxsize

    def _push(self, item):
        self.items.append(item)
        self.puts += 1
        self.unfinished += 1
        self.high_water = max(self.high_water, len(self.items))

    def _retire(self, n):
        self.unfinished = max(0, self.unfinished - n)

    def put_would_wait(self, block):
        return bool(block) and self.overflow == "block" and self.full() and not self.shutdown

    def get_would_wait(self, block):
        return bool(block) and not self.items and not self.shutdown

    @staticmethod
    def _timeout_error(block, tclass):
        if block and isinstance(tclass, type):
            return tclass
        return None

    # operations
    def put(self, item, block, tclass):
        err = self._timeout_error(block, tclass)
        if err:
            return "raise", err
        if self.shutdown:
            return "raise", ShutDown
        if self.full():
            if self.overflow == "drop_newest":
                self.puts += 1
                self.dropped += 1
                return "ok", item
            if self.overflow == "drop_oldest":
                evicted = self.items.pop(0)
                self.dropped += 1
                self._retire(1)
                self._push(item)
                return "ok", evicted
            if block:
                self.waits += 1
            return "raise", Full
        self._push(item)
        return "ok", None

    def put_many(self, items, block, tclass, fail_after=None):
        err = self._timeout_error(block, tclass)
        if err:
            return "raise", err
        if fail_after is not None and fail_after < len(items):
            return "raise", BoomIterError
        if not items:
            return ("raise", ShutDown) if self.shutdown else ("ok", [])
        dropped = []
        waited = False
        for it in items:
            if self.shutdown:
                return "raise", ShutDown
            if self.full():
                if self.overflow == "block":
                    if block and not waited:
                        self.waits += 1
                    return "raise", Full
                if self.overflow == "drop_newest":
                    self.puts += 1
                    self.dropped += 1
                    dropped.append(it)
                    continue
                dropped.append(self.items.pop(0))
                self.dropped += 1
                self._retire(1)
            self._push(it)
        return "ok", dropped

    def _await_item(self, block):
        if self.items:
            return None
        if self.shutdown:
            return ShutDown
        if block:
            self.waits += 1
        return Empty

    def get(self, block, tclass):
        err = self._timeout_error(block, tclass) or self._await_item(block)
        if err:
            return "raise", err
        self.gets += 1
        return "ok", self.items.pop(0)

    def get_many(self, max_items, block, tclass):
        err = _max_items_error(max_items) or self._timeout_error(block, tclass)
        err = err or self._await_item(block)
        if err:
            return "raise", err
        n = min(max_items, len(self.items))
        out, self.items = self.items[:n], self.items[n:]
        self.gets += n
        return "ok", out

    def get_latest(self, block, tclass):
        err = self._timeout_error(block, tclass) or self._await_item(block)
        if err:
            return "raise", err
        item = self.items.pop()
        self.gets += 1
        n = len(self.items)
        self.items = []
        self.dropped += n
        self._retire(n)
        return "ok", item

    def clear(self):
        n = len(self.items)
        self.items = []
        self.cleared += n
        self._retire(n)
        return "ok", n

    def task_done(self):
        if self.unfinished == 0:
            return "raise", ValueError
        self.unfinished -= 1
        return "ok", None

    def do_shutdown(self, immediate):
        self.shutdown = max(self.shutdown, 2 if immediate else 1)
        if immediate:
            self.clear()
        return "ok", None

    def stats(self):
        return {
            "puts": self.puts,
            "gets": self.gets,
            "dropped": self.dropped,
            "cleared": self.cleared,
            "high_water": self.high_water,
            "size": len(self.items),
            "maxsize": self.maxsize,
            "waits": self.waits,
        }


def _call(fn, *args, **kwargs):
    """-> ("ok", result) or ("raise", exception type); never keeps the
    exception (its traceback would keep payloads alive)."""
    try:
        return "ok", fn(*args, **kwargs)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001
        return "raise", type(e)


def _same(a, b):
    """Items compare by identity; lists element-wise; ints by value."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(x is y for x, y in zip(a, b))
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
        return a == b and type(a) is type(b)
    return a is b


# ---------------------------------------------------------------------------
# the machine


class FrameQueueMachine(RuleBasedStateMachine):
    IMPL = None  # set by the per-implementation subclasses

    def __init__(self):
        super().__init__()
        self.cls = _load(self.IMPL)
        self.q = None
        self.model = None
        self.serial = 0
        self.tracked = []  # weakrefs to every payload created
        self.shared = Payload(-1)  # put many times; refcount checked at teardown
        self.shared_baseline = sys.getrefcount(self.shared)

    # -- helpers -------------------------------------------------------------

    def new_item(self, kind):
        if kind == "shared":
            return self.shared
        if kind == "none":
            return None
        self.serial += 1
        p = Payload(self.serial)
        self.tracked.append(weakref.ref(p))
        return p

    @staticmethod
    def eff_timeout(token, would_wait):
        """A token's value; None/long timeouts become 0 when the call would wait."""
        value, tclass = token
        if would_wait and tclass in ("forever", "long"):
            return 0, "zero"
        return value, tclass

    def check(self, what, actual, expected):
        assert actual[0] == expected[0], (
            f"{what}: implementation {actual} but model {expected}"
        )
        if actual[0] == "raise":
            assert actual[1] is expected[1], f"{what}: raised {actual[1]} but model {expected[1]}"
        else:
            assert _same(actual[1], expected[1]), f"{what}: returned {actual[1]!r}, model {expected[1]!r}"

    # -- setup ---------------------------------------------------------------

    @initialize(
        maxsize=st.sampled_from([0, -3, 1, 2, 3, 5, 8]),
        overflow=st.sampled_from(POLICIES),
    )
    def init_queue(self, maxsize, overflow):
        if maxsize <= 0 and overflow != "block":
            overflow = "block"  # a drop policy needs a bound (test_policies.py)
        self.q = self.cls(maxsize, overflow)
        self.model = Model(maxsize, overflow)

    # -- producers -----------------------------------------------------------

    @rule(
        kind=st.sampled_from(["new", "new", "new", "shared", "none"]),
        block=st.sampled_from(BLOCKS),
        timeout=st.sampled_from(TIMEOUTS),
        use_kw=st.booleans(),
    )
    def put(self, kind, block, timeout, use_kw):
        item = self.new_item(kind)
        value, tclass = self.eff_timeout(timeout, self.model.put_would_wait(block))
        if use_kw:
            actual = _call(self.q.put, item, block=block, timeout=value)
        else:
            actual = _call(self.q.put, item, block, value)
        self.check(f"put({item!r}, {block!r}, {value!r})", actual, self.model.put(item, block, tclass))

    @rule(kind=st.sampled_from(["new", "shared", "none"]))
    def put_nowait(self, kind):
        item = self.new_item(kind)
        self.check(f"put_nowait({item!r})", _call(self.q.put_nowait, item), self.model.put(item, False, "zero"))

    @rule(
        n=st.integers(0, 7),
        block=st.sampled_from(BLOCKS),
        timeout=st.sampled_from(TIMEOUTS),
        form=st.sampled_from(["list", "tuple", "generator"]),
        fail_after=st.one_of(st.none(), st.integers(0, 7)),
    )
    def put_many(self, n, block, timeout, form, fail_after):
        items = [self.new_item("new") for _ in range(n)]
        if fail_after is not None and fail_after >= n:
            fail_after = None
        # Would this call have to wait? Simulate it on a throw-away model copy.
        probe = Model(self.model.maxsize, self.model.overflow)
        probe.items, probe.shutdown = list(self.model.items), self.model.shutdown
        would_wait = (
            bool(block) and fail_after is None and probe.put_many(items, False, "zero")[1] is Full
        )
        value, tclass = self.eff_timeout(timeout, would_wait)
        if fail_after is not None:
            arg = _failing_iter(items, fail_after)
        elif form == "list":
            arg = list(items)
        elif form == "tuple":
            arg = tuple(items)
        else:
            arg = iter(items)
        actual = _call(self.q.put_many, arg, block, value)
        del arg
        expected = self.model.put_many(items, block, tclass, fail_after)
        self.check(f"put_many({items!r}, {block!r}, {value!r}, fail_after={fail_after})", actual, expected)

    # -- consumers -----------------------------------------------------------

    @rule(block=st.sampled_from(BLOCKS), timeout=st.sampled_from(TIMEOUTS))
    def get(self, block, timeout):
        value, tclass = self.eff_timeout(timeout, self.model.get_would_wait(block))
        self.check(f"get({block!r}, {value!r})", _call(self.q.get, block, value),
                   self.model.get(block, tclass))

    @rule()
    def get_nowait(self):
        self.check("get_nowait()", _call(self.q.get_nowait), self.model.get(False, "zero"))

    @rule(max_items=st.sampled_from(MAX_ITEMS), block=st.sampled_from(BLOCKS),
          timeout=st.sampled_from(TIMEOUTS))
    def get_many(self, max_items, block, timeout):
        value, tclass = self.eff_timeout(timeout, self.model.get_would_wait(block))
        self.check(f"get_many({max_items!r}, {block!r}, {value!r})",
                   _call(self.q.get_many, max_items, block, value),
                   self.model.get_many(max_items, block, tclass))

    @rule(block=st.sampled_from(BLOCKS), timeout=st.sampled_from(TIMEOUTS))
    def get_latest(self, block, timeout):
        value, tclass = self.eff_timeout(timeout, self.model.get_would_wait(block))
        self.check(f"get_latest({block!r}, {value!r})", _call(self.q.get_latest, block, value),
                   self.model.get_latest(block, tclass))

    # -- bookkeeping -----------------------------------------------------------

    @rule()
    def clear(self):
        self.check("clear()", _call(self.q.clear), self.model.clear())

    @rule()
    def task_done(self):
        expected = self.model.task_done()
        try:
            self.q.task_done()
            actual = ("ok", None)
        except ValueError as e:
            assert str(e) == TASK_DONE_TOO_MANY
            actual = ("raise", ValueError)
        self.check("task_done()", actual, expected)

    @precondition(lambda self: self.model is not None and self.model.unfinished == 0)
    @rule()
    def join(self):
        # the model says nothing is unfinished: join() must return at once
        # (a hang here is caught by conftest's faulthandler safety net)
        self.check("join()", _call(self.q.join), ("ok", None))

    @rule(immediate=st.sampled_from([False, True, 0, 1]), use_kw=st.booleans())
    def shutdown(self, immediate, use_kw):
        actual = _call(self.q.shutdown, immediate=immediate) if use_kw else _call(self.q.shutdown, immediate)
        self.check(f"shutdown({immediate!r})", actual, self.model.do_shutdown(immediate))

    @rule()
    def read_only_calls(self):
        # must not change anything (the invariant below re-checks everything)
        self.q.stats()
        repr(self.q)
        self.q.qsize()

    # -- after every step --------------------------------------------------------

    @invariant()
    def matches_model(self):
        if self.q is None:
            return
        q, m = self.q, self.model
        stats = q.stats()
        assert stats == m.stats(), f"stats {stats} != model {m.stats()}"
        assert set(stats) == {"puts", "gets", "dropped", "cleared", "high_water", "size", "maxsize", "waits"}
        assert all(type(v) is int for v in stats.values()), stats
        assert stats["puts"] == stats["gets"] + stats["dropped"] + stats["cleared"] + stats["size"]
        assert q.qsize() == len(q) == len(m.items)
        assert q.empty() is (not m.items)
        assert q.full() is m.full()
        assert q.unfinished_tasks == m.unfinished
        assert q.is_shutdown is bool(m.shutdown)
        assert q.maxsize == m.given
        assert q.overflow == m.overflow
        expected_repr = (
            f"<bufmgr.FrameQueue size={len(m.items)} maxsize={m.given} "
            f"overflow={m.overflow!r} dropped={m.dropped}{' shutdown' if m.shutdown else ''}>"
        )
        assert repr(q) == expected_repr

    def teardown(self):
        # Leak check: once the queue and the model are gone, every payload
        # must be released and the shared one back at its baseline refcount.
        self.q = self.model = None
        alive = [r() for r in self.tracked if r() is not None]
        if alive:
            import gc

            gc.collect()
            alive = [r() for r in self.tracked if r() is not None]
        assert not alive, f"payloads still referenced after teardown: {alive[:10]}"
        refcount = sys.getrefcount(self.shared)  # outside the assert: pytest's
        assert refcount == self.shared_baseline  # rewriting keeps temporaries


def _testcase(impl):
    machine = type(f"FrameQueueMachine_{impl}", (FrameQueueMachine,), {"IMPL": impl})
    case = machine.TestCase
    case.settings = MACHINE_SETTINGS
    reason = IMPLEMENTATIONS[impl]
    if reason:
        case = pytest.mark.skip(reason=reason)(case)
    return case


TestFrameQueueMachineC = _testcase("c")
TestFrameQueueMachinePython = _testcase("python")


# ---------------------------------------------------------------------------
# deterministic regressions for what the machine found


@pytest.mark.parametrize("max_items", [2**63 - 1, 2**63, 2**64 + 5])
def test_get_many_accepts_any_positive_int(FrameQueue, max_items):
    # check_max_items accepts every int >= 1; "up to max_items" with a huge
    # bound just means "everything queued".
    q = FrameQueue()
    q.put_many([1, 2, 3])
    assert q.get_many(max_items) == [1, 2, 3]
    assert q.stats()["gets"] == 3
