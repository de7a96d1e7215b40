# C-level declarations for book.py, read by Cython when it compiles the core (see setup.py);
# the Python file stays the source of truth and runs unchanged without them. Fields typed
# ``long long`` hold only values the engine has checked against a bound far inside 64 bits
# (a ladder price, one order's stake, counts). Everything else stays a Python integer: sums
# of money, and ids and times, which come from the journal (a foreign entry may carry any
# 64-bit id) and must behave exactly as in the pure Python core. A level's price is a Python
# integer too: it goes into every event about the level, and reading a C integer back into
# an event costs an allocation each time, reading it for arithmetic only a conversion.

cdef class Order:
    cdef public object id
    cdef public object pos
    cdef public object level
    cdef public long long remaining
    cdef public bint persist

cdef class Level:
    cdef public object price
    cdef public object total
    cdef public long long live
    cdef public object queue
    cdef public Side side

cdef class Pending:
    cdef public Side side
    cdef public object price
    cdef public str tif
    cdef public object release

cdef class Side:
    cdef public object market
    cdef public object runner
    cdef public Py_ssize_t ridx
    cdef public str side
    cdef public dict levels
    cdef public long long best
