"""Bounds on what a command may carry.

Every number the core accepts must fit the stream format (msgpack: 64-bit integers) and stay
cheap to compute with, and every name must stay short enough to echo in events. A value past
these bounds is rejected like any other invalid value, never truncated.
"""

MAX_ID = 64
"""Longest market id, account id or client ref, in characters."""

MAX_INT = 2**63 - 1
"""Largest runner id or order id."""

MAX_TS = 9_223_372_036_854
"""Latest envelope time, in ms since 1970 (2262-04-11 23:47:16.854 UTC): the latest that
every consumer can hold, pandas' nanosecond timestamps included. A command file's ``ts`` past
it is refused at the edge; a journal entry's is read as no time (it keeps the previous
entry's), like any other time that is not one, so nothing downstream meets a year it cannot
write."""

MAX_PARTITION = 9_999
"""Highest partition number: partitions are 0 to this (``exchange.rules`` version 5)."""

PARTITION_STRIDE = 10**14
"""From rules version 5, an order id is ``partition * PARTITION_STRIDE + seq`` (and a trade
id starts with that number), so ids are unique across partitions and an order names its
partition: ``order_id // PARTITION_STRIDE``. Partition 0's ids are its seqs, as before. A
partition's seqs stay below it (at a million commands a second, three years)."""

MAX_MONEY = 10**12
"""Largest stake, deposit or withdrawal in one command, in pence (ten billion pounds)."""

MAX_BALANCE = 10**15
"""Largest balance an account may hold, in pence."""

MAX_RUNNERS = 200
"""Most runners in one market."""

MAX_DELAY_MS = 600_000
"""Longest in-play bet delay, in milliseconds."""

MAX_EXPOSURE = 10**15
"""Most an account may have at risk over all its markets, in pence (ten trillion pounds, the
most deposits can bring a balance to): an order or replace past it is rejected with
``EXPOSURE_LIMIT``, however large the balance has grown by winnings. It keeps an account's
exposure a 64-bit integer, which the compiled core compares in C on every placement."""

MAX_POSITION_STAKE = 10**14
"""Most stake one account may have in one market, matched plus unmatched, in pence (a
trillion pounds): a placement past it is rejected with ``POSITION_LIMIT``.

Every amount a position keeps (per runner, what it wins or loses) is a sum over its bets of at
most the stake times the top price, 1000, so this bound keeps each below 10**17, far inside a
64-bit integer. That is what lets the compiled core hold positions in C integers and compute
with them exactly; without a bound, a hedged account could grow them past 64 bits by trading
without end.
"""
