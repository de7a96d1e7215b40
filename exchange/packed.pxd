# C-level declarations for packed.py, read by Cython when it compiles the core (setup.py):
# the bytes read through a typed view, positions, bytes and codes as C integers.
cimport cython
from exchange.commands cimport _ids_printable, _place_tuple

cdef int _TYPE, _ACCOUNT, _MARKET, _RUNNER, _SIDE, _PRICE, _STAKE
cdef int _TIF, _PERSISTENCE, _REF, _ORDER, _REDUCE
cdef int _TEXT, _ENUMS
cdef Py_ssize_t _BROKEN
cdef tuple _WORDS, _WORD_BYTES

@cython.locals(buf="const unsigned char[:]", size=Py_ssize_t, pos=Py_ssize_t,
               count=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t, ids=bint, out=list)
cpdef object decode_packed(bytes payload, Py_ssize_t n, object first, object ts,
                           object rules=*)

@cython.locals(b=int)
cdef tuple _array_header(const unsigned char[:] buf, Py_ssize_t pos, Py_ssize_t size)

@cython.locals(v="unsigned long long", i=int)
cdef object _uint(const unsigned char[:] buf, Py_ssize_t pos, int width)

@cython.locals(i=Py_ssize_t)
cdef bint _is(const unsigned char[:] buf, Py_ssize_t start, bytes name)

@cython.locals(i=int, name=bytes)
cdef object _word(const unsigned char[:] buf, Py_ssize_t start, Py_ssize_t length)

@cython.locals(first=int)
cdef int _key(const unsigned char[:] buf, Py_ssize_t start, Py_ssize_t length)

@cython.locals(start=Py_ssize_t, b=int, pairs=Py_ssize_t, seen=int, code=int,
               length=Py_ssize_t, v0=Py_ssize_t, v1=Py_ssize_t)
cdef tuple _fast_item(const unsigned char[:] buf, bytes data, Py_ssize_t pos, Py_ssize_t size,
                      object seq, object ts)

@cython.locals(b=int, items=Py_ssize_t, end=Py_ssize_t, width=int)
cdef Py_ssize_t _skip(const unsigned char[:] buf, Py_ssize_t pos, Py_ssize_t size, int depth)
