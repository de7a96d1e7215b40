# C-level declarations for accounts.py (see book.pxd). A position's amounts are 64-bit C
# integers: limits.MAX_POSITION_STAKE keeps each far inside 64 bits (see limits.py). An
# account's exposure and cover are bounded by limits.MAX_EXPOSURE; its balance, which
# winnings can grow without bound, stays a Python integer.
cimport cython
from exchange.market cimport Market

cdef class Account:
    cdef public long long exposure
    cdef public long long cover
    cdef public str id
    cdef public object balance
    cdef public dict positions

cdef class Position:
    # The fields every placement reads first, then the start of d (its data pointer and length
    # follow the 8 bytes of its memoryview pointer): two cache lines. Each slice takes 208.
    cdef public Account acct
    cdef public long long sl
    cdef public long long exp
    cdef public long long staked
    cdef public bint traded
    cdef public long long[::1] d
    cdef public long long[::1] mw
    cdef public long long[::1] ml
    cdef public Market market

    cpdef hold(self, str side, Py_ssize_t i, long long price, long long stake)
    cpdef long long reserve(self, str side, Py_ssize_t i, long long price, long long stake)
    cpdef unreserve(self, str side, Py_ssize_t i, long long price, long long stake)

@cython.locals(w="long long", v="long long", j=Py_ssize_t)
cpdef long long least(Position pos, long long k)
