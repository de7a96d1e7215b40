# C-level declarations for book.py, read by Cython when it compiles the core (see setup.py);
# the Python file stays the source of truth and runs unchanged without them. Fields typed
# ``long long`` hold values the commands bound well inside 64 bits (ids, prices, one
# order's stake); sums that no bound keeps small stay Python integers.

cdef class Order:
    cdef public long long id
    cdef public object pos
    cdef public object level
    cdef public long long remaining
    cdef public bint persist

cdef class Level:
    cdef public long long price
    cdef public object total
    cdef public long long live
    cdef public object queue
    cdef public Side side

cdef class Pending:
    cdef public Side side
    cdef public long long price
    cdef public str tif
    cdef public long long release

cdef class Side:
    cdef public object market
    cdef public object runner
    cdef public Py_ssize_t ridx
    cdef public str side
    cdef public dict levels
    cdef public long long best
