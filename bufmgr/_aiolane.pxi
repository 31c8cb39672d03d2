# asyncio wake-ups from C: the registries' fast lane (included by _ring.pyx,
# used by FrameQueue and FrameRing; the protocol is bufmgr/_aio.py's, section
# "The fast lane").
#
# A buffer's usual wake-up is notify(1) with one coroutine waiting. Through
# Python that is a method call, the registry's lock, an OrderedDict pop and
# the loop's call_soon_threadsafe, all on the put -> resume latency. So while
# notify(1) would take its fast path (a waiter registered, no delivery in
# flight) the registry ARMS the lane with a ready-made wake-up, the ticket
# (call_soon_threadsafe, _deliver_lane, registry, future, loop), and the producer's notify(1)
# takes it: one atomic exchange and the loop's call_soon_threadsafe. The
# registry records what the taker did (its oldest waiter was picked, its loop
# rung) the next time it takes its lock, by disarming the lane first: a
# ticket gone means taken. A ticket is taken at most once (the exchange), so
# one event rings one loop; with no ticket the producer calls notify(n) as
# before.

cdef class AioLanes:
    """One armed wake-up (or None) per direction of one buffer; see above."""

    cdef object getters  # the ticket for coroutines waiting for an item
    cdef object putters  # ... for room

    def arm(self, int kind, ticket):
        """The registry (its lock held) arms the lane of ``kind``."""
        with cython.critical_section(self):
            if kind == _AIO_GETTERS:
                self.getters = ticket
            else:
                self.putters = ticket

    def disarm(self, int kind):
        """The registry (its lock held) takes the ticket back: None if a
        producer took it since it was armed."""
        return self.take(kind)

    cdef object take(self, int kind):
        # Atomic exchange: under the GIL no other thread runs between the read
        # and the write (nothing here runs Python code: the field holds None
        # or a ticket and is replaced by None, whose reference is immortal or
        # owned); free-threaded, the critical section serialises the takers.
        cdef object t
        with cython.critical_section(self):
            if kind == _AIO_GETTERS:
                t = self.getters
                self.getters = None
            else:
                t = self.putters
                self.putters = None
        return t


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
        t = lanes.take(kind)
        if t is not None:  # ours: ring its loop (call_soon_threadsafe(deliver, registry, loop))
            try:
                t[0](t[1], t[2], t[3], t[4])
            except RuntimeError:  # its loop closed meanwhile: the wake-up goes to another waiter
                t[2]._lane_failed(t[4])
            except BaseException:  # worse (MemoryError): the same, then reported as unraisable
                t[2]._lane_failed(t[4])
                raise
            return
    (waiters.getters if kind == _AIO_GETTERS else waiters.putters).notify(n)
