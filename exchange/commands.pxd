# C-level declarations for commands.py, read by Cython when it compiles the decoder (see
# setup.py): the stream decoder's fast paths called as C functions, on dicts known to be dicts.
cimport cython

cpdef bint _printable(str text)

cpdef bint _ids_printable(tuple cmd)

@cython.locals(n=Py_ssize_t)
cpdef object _fast_place(dict obj, object seq, object ts)

cpdef object _fast_cancel(dict obj, object seq, object ts)

cpdef object _place_tuple(object account, object market, object runner, object side,
                          object price, object stake, object tif, object persist, object ref,
                          object seq, object ts)

@cython.locals(out=list, ids=bint, cmd=object, kind=object)
cpdef list decode_many(list items, object first, object ts, object rules=*)
