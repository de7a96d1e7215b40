# C-level declarations for accounts.py (see book.pxd). Money stays in Python integers.
from exchange.market cimport Market

cdef class Account:
    cdef public str id
    cdef public object balance
    cdef public object exposure
    cdef public dict positions

cdef class Position:
    cdef public Account acct
    cdef public Market market
    cdef public list d
    cdef public object sl
    cdef public list mw
    cdef public list ml
    cdef public object exp
    cdef public bint traded
