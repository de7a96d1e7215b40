"""Rules versions: the rules change over time, journals do not.

A journal records the rules version in force (each layout-2 input entry carries it, ``r``;
see docs/journal.md), and the core applies at every seq the rules in force there: an old
journal replays to the same bytes under every later release. A version takes effect from
the first entry that carries it, never goes back, and is part of the state (snapshots keep
it). ``Exchange()`` starts under version 1, the released rules; the golden scenarios keep
that version.

Versions:

1. The rules as first released.
2. Ids are printable text: an account id, market id or client ref holding a control
   character (U+0000 to U+001F, U+007F to U+009F: escape sequences a terminal would obey)
   makes the command ``MALFORMED``.
3. Client refs are deduplicated within a window of journal time, not forever: a ``place``
   whose (account, ref) was first used less than ``REF_WINDOW_MS`` (60,000 ms) before its
   envelope time is ``DUPLICATE_REF``; at 60,000 ms or more it is a new first use, and a new
   window starts. Refs used before version 3 took effect count as first used at the time of
   the first entry under it. The sequencer keeps the same window, so neither it nor the core
   remembers a ref for longer (``journal/lua/sequence.lua``). And settled or voided markets
   leave the state ``FINISHED_GRACE_MS`` (one hour of journal time) after they finished: from
   then on a command naming one is answered ``UNKNOWN_MARKET``, and its id may be used by a
   new market. Their records live on in the output, the archive and every sink.
4. Envelope times are bounded: a journal entry whose ``ts`` is past ``MAX_TS``
   (2262-04-11, the latest every consumer can write) keeps the previous entry's time, as an
   earlier one does. (Before, any time below 2**63 ms was taken, and the Parquet exporter
   could not write the year it gave.)
5. Order and trade ids carry the partition: an order placed (or replaced) at seq ``s`` in
   partition ``p`` has id ``p * 10**14 + s`` (``exchange.limits.PARTITION_STRIDE``), and a
   trade made at ``s`` the id ``<p * 10**14 + s>-<idx>``. Partition 0's ids are unchanged;
   orders placed under an earlier version keep their ids.
6. Money moves between partitions: ``transfer`` (account, amount, from, to) takes money out of
   the account's wallet in its own partition (``transfer_out``, with the transfer's id
   ``p * 10**14 + seq``), and ``transfer_in`` credits it in the destination
   (``transfer_in``), once: each partition keeps, per source partition, the highest source
   seq it credited, and a ``transfer_in`` at or below it is ``DUPLICATE_TRANSFER``. The
   transfer service (``journal/transfers.py``) carries one to the other. Before version 6
   both commands are unknown (``MALFORMED``), as they were.
"""

from __future__ import annotations

import re

FIRST = 1
LATEST = 6
"""The newest rules version this release knows."""

PRINTABLE_IDS = 2
"""From this version, ids may not hold control characters."""

REF_WINDOW = 3
"""From this version, client refs are deduplicated within ``REF_WINDOW_MS`` only."""

FORGET_FINISHED = 3
"""From this version, finished markets leave the state after ``FINISHED_GRACE_MS``."""

BOUNDED_TIME = 4
"""From this version, an entry's time past ``MAX_TS`` is no time (the previous one is kept)."""

PARTITION_IDS = 5
"""From this version, order and trade ids carry the partition (unique across partitions)."""

TRANSFERS = 6
"""From this version, ``transfer`` and ``transfer_in`` move money between partitions."""

FINISHED_GRACE_MS = 3_600_000
"""From version 3, how long a settled or voided market stays in the state after it finished
(ms of journal time): late commands about it get its true answer (settled, not open) for an
hour, and the state holds live markets, not every market ever run. Forgotten markets go at
the next market command (create, settle, void) after the grace."""

REF_WINDOW_MS = 60_000
"""How long a client ref is remembered, in ms of journal time, counted from its first use.
Betfair's customerRef window is 60 s: long enough for any retry of a call that got no answer
(redis-py retries within seconds), short enough that what is remembered stays small (at
150,000 commands/s, every one with a ref, 9 million)."""

VERSIONS: dict[int, str] = {
    1: "the rules as first released",
    2: "ids are printable text: a control character in an account id, market id or client "
    "ref makes the command MALFORMED",
    3: "client refs are deduplicated within 60 s of journal time from first use, not forever; "
    "settled and voided markets leave the state an hour after they finished",
    4: "envelope times are bounded: an entry's time past 2262-04-11 keeps the previous "
    "entry's time",
    5: "order and trade ids carry the partition: partition p's order at seq s is "
    "p * 10**14 + s (partition 0's ids are unchanged)",
    6: "money moves between partitions: transfer (out of this partition's wallet) and "
    "transfer_in (into the destination's, once per source seq)",
}
"""What each version changed."""

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> bool:
    """Whether ``text`` holds no control character (see version 2)."""
    if text.isascii():
        return text.isprintable()
    return _CONTROL.search(text) is None
