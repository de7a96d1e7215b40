# C-level declarations for engine.py, read by Cython when it compiles the core (see setup.py
# and book.pxd). C integers only where the engine has checked or bounded the value first (a
# ladder price, one order's stake, counts, a position's amounts and an account's exposure:
# see accounts.pxd); seqs, ids, times and balances stay Python integers.
cimport cython
from exchange.book cimport Order, Level, Pending, Side
from exchange.accounts cimport Account, Position, least
from exchange.market cimport Market

cdef long long _STAKE_LIMIT

@cython.locals(o=Order)
cdef Order _new_order(object id, Position pos, long long remaining, bint persist)

@cython.final
cdef class Exchange:
    cdef public object last_seq
    cdef public object now
    cdef public object house
    cdef public object net_deposits
    cdef public object rules
    cdef public object partition
    cdef public object _ids
    cdef public dict _markets
    cdef public dict _accounts
    cdef public dict _orders
    cdef public dict _refs
    cdef public object _ref_queue
    cdef public object _finished
    cdef public dict _marks
    cdef public list _pending
    cdef public dict _handlers

    @cython.locals(out=list, pending=list, kind=str)
    cpdef list apply(self, object cmd)

    @cython.locals(level=Level, side=Side, p="long long", pos=Position,
                   rem="long long", cut="long long", new="long long", x="long long",
                   k="long long", acct=Account, worst="long long", e="long long")
    cpdef _cancel_order(self, object seq, Order o, object size, str reason, list out)

    @cython.locals(m=Market, acct=Account, pos=Position, own=Side, opp=Side,
                   k="long long", o=Order, lvl=Level, fresh=bint, delayed=bint, crosses=bint,
                   side=str, tif=str, persist=str, p="long long", s="long long",
                   i=Py_ssize_t, sl="long long", worst="long long", e="long long",
                   staked="long long", exposure="long long")
    cpdef _place(self, tuple cmd, list out)

    @cython.locals(opp=Side, own=Side, lvl=Level, pos=Position)
    cpdef _execute(self, object seq, Order o, str side, Market m, Py_ssize_t i,
                   long long price, long long qty, str tif, list out)

    @cython.locals(levels=dict, orders=dict, m=Market, i=Py_ssize_t, tpos=Position,
                   k="long long", best="long long", lvl=Level, x="long long",
                   maker=Order, mrem="long long", size="long long", profit="long long",
                   mpos=Position, bpos=Position, lpos=Position, lay_rem="long long",
                   lay_x="long long", worst="long long", e="long long")
    cpdef long long _take(self, object seq, Order taker, bint taker_backs, long long limit,
                          long long qty, Side opp, list out)

    @cython.locals(o=Order, pos=Position, rem="long long", size="long long")
    cpdef _cancel(self, tuple cmd, list out)
