# Timeouts and deadlines of the compiled classes, written once: included by
# bufmgr/_ring.pyx (FrameQueue, FrameRing) and bufmgr/_shm.pyx
# (SharedFrameRing), two extensions (setup.py). The includer cimports
# BM_FOREVER and bm_now_ns (bufmgr/_cring.pxd, bufmgr/_cshm.pxd: the same
# monotonic clock, include/bufmgr/platform.h) and imports _errors.
#
# Invariant 3: waits use monotonic deadlines and wake at least every
# SLICE_NS (for signals: Ctrl+C, a shutdown prompt).

cdef int64_t SLICE_NS = <int64_t>(_errors.WAIT_SLICE_S * 1e9)
cdef double MAX_FINITE_TIMEOUT = 1e9  # ~31 years: treated as forever


cdef inline double _timeout_seconds(object timeout) except -2.0:
    """-1.0 for 'forever', else seconds >= 0. Slow cases go to _errors."""
    cdef double v
    if timeout is None:
        return -1.0
    if type(timeout) is float or type(timeout) is int:
        v = timeout
        if 0.0 <= v < MAX_FINITE_TIMEOUT:
            return v
    checked = _errors.check_timeout(timeout)  # raises TypeError/ValueError
    if checked is None or checked >= MAX_FINITE_TIMEOUT:
        return -1.0
    return checked


cdef inline int64_t _deadline(double seconds) noexcept nogil:
    if seconds < 0.0:
        return BM_FOREVER
    # + 1 keeps a deadline of "now" distinct from BM_NOWAIT (0)
    return bm_now_ns() + <int64_t>(seconds * 1e9) + 1


cdef inline int64_t _slice_end(int64_t deadline) noexcept nogil:
    cdef int64_t end = bm_now_ns() + SLICE_NS
    if deadline == BM_FOREVER or deadline > end:
        return end
    return deadline


cdef inline bint _expired(int64_t deadline) noexcept nogil:
    return deadline != BM_FOREVER and bm_now_ns() >= deadline
