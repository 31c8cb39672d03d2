# Augmenting declarations for bufmgr/_mgrcore.py (Cython pure-Python mode):
# compiled, ManagerCore is an extension type whose tables are C fields
# (public: the tests mix the pure class over the compiled one, and its
# _init_fast_paths then assigns them through the descriptors).
# Free-threaded builds: both are assigned once, by _init_fast_paths (BufferManager.__init__), and then only
# mutated in place (see the module docstring), so reading the field without
# a lock never meets a freed object.

cdef class ManagerCore:
    cdef public dict _put_fast
    cdef public dict _get_fast
