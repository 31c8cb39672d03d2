# asyncio wake-ups from C: the registries' fast lane (included by _ring.pyx,
# used by FrameQueue and FrameRing; the protocol is bufmgr/_aio.py's, section
# "The fast lane").
#
# A buffer's usual wake-up is notify(1) with one coroutine waiting. Through
# Python that is a method call, the registry's lock, an OrderedDict pop and
# the loop's call_soon_threadsafe on the producer's side, and a delivery
# callback taking that lock again on the loop's side: microseconds each, all
# on the put -> resume latency. So while notify(1) would take its fast path
# (a waiter registered, no delivery in flight) the registry ARMS the lane
# with a ready-made wake-up for its oldest waiter, and:
#
# * the producer's notify(1) TAKES it (one exchange, which also marks the
#   waiter's future in flight) and calls the loop's call_soon_threadsafe;
# * in the loop, _lane_deliver CLAIMS the in-flight future (one exchange) and
#   resolves it: no registry lock on either side;
# * the registry learns of it at its next critical section (_sync_locked):
#   a disarm that gets nothing back means taken; then a claim that gets the
#   future means the callback has not run yet -- the registry records the
#   delivery as notify(1)'s fast path does (later wake-ups for that loop ride
#   along) and the callback, finding nothing to claim, delivers that batch
#   through the registry; a claim that gets nothing means the callback
#   already resolved the future, which is simply forgotten.
#
# Each exchange happens once per ticket, so one event rings one loop and each
# future is resolved by exactly one party. With no ticket the producer calls
# notify(n) as before.

cdef class AioLanes:
    """Per direction of one buffer: the armed ticket (or None) and the future
    of a taken ticket not yet claimed (or None); see above."""

    cdef object get_ticket, get_inflight  # coroutines waiting for an item
    cdef object put_ticket, put_inflight  # ... for room

    def arm(self, int kind, call_soon_threadsafe, registry, fut):
        """The registry (its lock held, after a sync) arms the lane of
        ``kind`` for its oldest waiter ``fut``."""
        cdef tuple ticket = (call_soon_threadsafe, _lane_deliver, self, kind, fut, registry)
        with cython.critical_section(self):
            if kind == _AIO_GETTERS:
                self.get_ticket = ticket
            else:
                self.put_ticket = ticket

    def disarm(self, int kind):
        """The registry (its lock held) takes the ticket back: None if a
        producer took it since it was armed."""
        cdef object t
        with cython.critical_section(self):
            if kind == _AIO_GETTERS:
                t, self.get_ticket = self.get_ticket, None
            else:
                t, self.put_ticket = self.put_ticket, None
        return t

    def claim(self, int kind):
        """The future of a taken ticket, or None if someone claimed it first
        (the registry's sync or the delivery callback)."""
        return self._claim(kind)

    # Exchanges: under the GIL no other thread runs between the read and the
    # write (no Python code runs here: the fields hold None, a tuple or a
    # future, replaced by None or a new tuple); free-threaded, the critical
    # section serialises them.

    cdef object _claim(self, int kind):
        cdef object f
        with cython.critical_section(self):
            if kind == _AIO_GETTERS:
                f, self.get_inflight = self.get_inflight, None
            else:
                f, self.put_inflight = self.put_inflight, None
        return f

    cdef object _take(self, int kind):
        cdef object t
        with cython.critical_section(self):
            if kind == _AIO_GETTERS:
                t, self.get_ticket = self.get_ticket, None
                if t is not None:
                    self.get_inflight = (<tuple>t)[4]
            else:
                t, self.put_ticket = self.put_ticket, None
                if t is not None:
                    self.put_inflight = (<tuple>t)[4]
        return t


def _lane_deliver(AioLanes lanes, int kind, fut, registry):
    """In the loop's thread: the delivery of a taken ticket (see above)."""
    if lanes._claim(kind) is not fut:
        # The registry synced first and recorded the delivery (with any
        # riders): deliver that batch through it.
        registry._deliver(fut.get_loop())
    elif fut.done():  # cancelled or timed out meanwhile: pass the wake-up on
        registry.notify(1)
    else:
        _aio._wake(fut)  # resolves it and resumes its task here (bufmgr/_aiowake.py)


cdef void _aio_notify(object waiters, AioLanes lanes, int kind, size_t n) noexcept:
    # Wake coroutines waiting on a buffer (waiters: its _aio.BufferWaiters).
    # Called only when the buffer's flag for `kind` is set, and only after
    # its mutex was released (invariant 1). Never raises (an error, e.g.
    # MemoryError, is reported as unraisable: the sync call it follows
    # already happened).
    cdef object t
    if waiters is None:
        return
    if n == 1 and lanes is not None:
        t = lanes._take(kind)
        if t is not None:  # ours: call_soon_threadsafe(_lane_deliver, lanes, kind, fut, registry)
            try:
                t[0](t[1], t[2], t[3], t[4], t[5])
            except BaseException as e:
                # The wake-up goes to another waiter (its loop closed
                # meanwhile), or is retried (still open); any error but the
                # closed loop's RuntimeError (MemoryError, a custom loop's
                # refusal) is then reported as unraisable.
                t[5]._lane_failed(t[4])
                if not _aio._closed_loop_refused(t[4].get_loop(), e):
                    raise
            return
    (waiters.getters if kind == _AIO_GETTERS else waiters.putters).notify(n)
