# C-level declarations for market.py (see book.pxd).

cdef class Market:
    cdef public str id
    cdef public list runners
    cdef public dict index
    cdef public long long commission
    cdef public long long min_stake
    cdef public long long winners
    cdef public long long delay
    cdef public str status
    cdef public bint in_play
    cdef public list backs
    cdef public list lays
    cdef public dict positions
