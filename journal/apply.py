"""Input entries through the core: the one function that serves live matching, recovery,
replay, verification and the follower, so that none of them can drift from the others."""

from __future__ import annotations

from exchange import Exchange

from .streams import Row
from .wire import (
    PIECE_BYTES,
    decode_entry,
    encode_events,
    encode_pieces,
    entry_seq,
    foreign_events,
    piece_ids,
)

Record = tuple[bytes, int, bytes, int, int]
"""An output entry to write: (id, ts, events payload, part, parts); a whole answer is part 1
of 1."""


def apply_rows(
    ex: Exchange,
    rows: list[Row],
    ts: int,
    previous: bytes,
    *,
    emit: bool,
    piece_bytes: int = PIECE_BYTES,
) -> tuple[int, int, list[Record], bytes]:
    """Apply raw input entries to ``ex`` in order.

    ``ts`` is the envelope time so far and ``previous`` the id of the input entry before
    ``rows`` (``b"0-0"`` if none). Returns the envelope time after them, the number of events,
    with ``emit`` the output entries they are answered with (pieces where an answer passes
    ``piece_bytes``), and the id of the last row. A foreign entry is answered, not applied
    (``wire.entry_seq``); nothing here raises on what an entry holds."""
    out: list[Record] = []
    apply = ex.apply
    n = 0
    for eid, fields in rows:
        last = entry_seq(eid, ex.last_seq)
        if last:
            ts, rules, cmds = decode_entry(last, fields, ts, ex.last_seq, ex.rules)
            if rules != ex.rules:
                ex.set_rules(rules, ts)
            if len(cmds) == 1:
                events = apply(cmds[0])
            else:
                events = []
                for cmd in cmds:
                    events += apply(cmd)
        else:
            events = foreign_events(eid)
        n += len(events)
        if emit:
            pieces = encode_pieces(events, piece_bytes)
            count = len(pieces)
            ids = piece_ids(previous, eid, count)
            if count == 1:
                out.append((eid, ts, pieces[0], 1, 1))
            elif ids is None:  # no room for pieces (see piece_ids): the answer whole
                out.append((eid, ts, encode_events(events), 1, 1))
            else:
                out.extend(
                    (pid, ts, p, i, count) for i, (pid, p) in enumerate(zip(ids, pieces), 1)
                )
        previous = eid
    return ts, n, out, previous
