# Compiled put_buffer/get_buffer fast paths for bufmgr.BufferManager.
#
# A drop-in for bufmgr.manager._PyCore: the very same control flow, and every
# case the fast path does not handle goes to the same Python methods of
# BufferManager (_put_slow, _get_slow, _get_wait, _failed, _count), so the
# behaviour cannot differ. BufferManager subclasses whichever core it finds.

from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject


cdef class ManagerCore:
    # set by BufferManager._bind(); public so the Python subclass can assign them
    cdef public object _shutdown_check
    cdef public dict _put_fast   # component -> (queue.put, report or None), drop_oldest FrameQueues only
    cdef public dict _ring_put   # component -> (ring.put_nowait, report or None, refusal counter),
                                 # drop_oldest/drop_newest FrameRings; looked up on a _put_fast miss only
    cdef public dict _get_fast   # component -> (queue.get_nowait, report or None, record)

    def put_buffer(self, component, data, timeout=0.5):
        """Queue one frame; True once it is queued (see bufmgr.manager._PyCore)."""
        cdef PyObject *entry
        cdef object check = self._shutdown_check
        if check is not None:
            try:
                if check():
                    self._count("refused_puts")
                    return False
            except Exception as e:
                self._failed("put_buffer", component, e, False)
                return False
        if type(component) is not str or self._put_fast is None:
            return self._put_slow(component, data, timeout)
        entry = PyDict_GetItem(self._put_fast, component)   # borrowed; str keys cannot raise
        if entry is NULL:
            return self._put_ring(component, data, timeout)
        if type(data) is not bytes or type(timeout) is not float:
            return self._put_slow(component, data, timeout)
        if not (<double>timeout >= 0.0):                      # negative or NaN
            return self._put_slow(component, data, timeout)
        put, report = <tuple>entry
        try:
            put(data)  # drop_oldest: never blocks; evicts the oldest atomically
        except ShutDown:
            self._count("refused_puts")
            return False
        except Exception as e:
            self._failed("put_buffer", component, e, False)
            return False
        if report is not None:
            report()
        return True

    cdef object _put_ring(self, str component, object data, object timeout):
        """put_buffer for a drop_oldest/drop_newest FrameRing component with a
        non-negative float timeout (bufmgr.manager._PyCore._put_ring)."""
        cdef PyObject *entry = NULL
        if self._ring_put is not None:
            entry = PyDict_GetItem(self._ring_put, component)
        if entry is NULL or type(timeout) is not float:
            return self._put_slow(component, data, timeout)
        if not (<double>timeout >= 0.0):
            return self._put_slow(component, data, timeout)
        put, report, refused = <tuple>entry
        try:
            seq = put(data)  # put_nowait: copies into a slot; drop policies never wait
        except ShutDown:
            self._count("refused_puts")
            return False
        except (TypeError, ValueError) as e:  # not bytes-like, not contiguous, > frame_bytes
            self._failed("put_buffer", component, e, True)
            return False
        except Exception as e:
            self._failed("put_buffer", component, e, False)
            return False
        if seq is None:  # refused by the policy (counted as dropped by the ring)
            self._count(refused)
            return False
        if report is not None:
            report()
        return True

    def get_buffer(self, component, timeout=1.0):
        """Take the oldest frame or None (see bufmgr.manager._PyCore)."""
        cdef PyObject *entry
        if type(component) is not str or self._get_fast is None:
            return self._get_slow(component, timeout)
        entry = PyDict_GetItem(self._get_fast, component)
        if entry is NULL or type(timeout) is not float:
            return self._get_slow(component, timeout)
        if not (<double>timeout >= 0.0):
            return self._get_slow(component, timeout)
        get, report, comp = <tuple>entry
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
