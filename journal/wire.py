"""Journal entries, between Redis and the core (docs/journal.md is the contract).

Input (``exch:{p}:in``), layout 2: an entry ``<last>-0`` holds ``ts`` (envelope time, ms,
stamped by the sequencer), ``n`` (how many commands) and ``c`` (a msgpack array of their
stream-form maps, see ``exchange.commands``): seqs ``last-n+1 .. last``. An entry without
``n`` is layout 1: one command, ``c`` its map, at seq ``last``. A journal may hold both.

Output (``exch:{p}:out``): for each input entry, an entry with the same id holding ``ts`` and
``e``, a msgpack array of the events of all its commands in order, each a map keyed by the
event's field names (``exchange.codec``), each with its ``seq``. Where ``e`` would pass
``PIECE_BYTES``, the events go in several pieces: the last has the input entry's id, the
others ids between the previous input entry's and it, and every piece says ``part`` (from
1) of ``parts``.

Bytes in, values out: reading the streams themselves is ``journal.streams``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]

from exchange.commands import decode, decode_many
from exchange.errors import JournalError
from exchange.events import BAD_ENTRY, EVENT_FIELDS, MALFORMED, Event
from exchange.limits import MAX_TS
from exchange.packed import decode_packed
from exchange.rules import BOUNDED_TIME
from exchange.rules import LATEST as LATEST_RULES

from .streams import field, parse_id

MAX_ENTRY_COMMANDS = 10_000
"""Most commands an input entry may hold (the sequencer's own bound); an entry that says it
holds more is not valid."""

PIECE_BYTES = 16 << 20
"""Most bytes of events in one output entry: Redis refuses values over 512 MB, and drops a
replica whose output buffer passes 256 MB, so a market of millions of orders closing must
not make one entry of all its cancellations."""

MAX_ID = (1 << 64) - 1
"""The largest number a stream id's part may be."""

_unpackb = msgpack.unpackb


def invalid(seq: int, ts: int, reason: str = MALFORMED) -> tuple:
    """The ``invalid`` command the core answers with one ``order_rejected`` of ``reason``."""
    return ("invalid", seq, ts, None, None, None, None, None, reason)


def entry_seq(eid: bytes, last_seq: int) -> int:
    """The last seq an input entry holds, or 0 when the entry is foreign: its id is not
    ``<seq>-0`` with a seq after ``last_seq`` (something other than the sequencer wrote it;
    it is answered, not applied)."""
    if eid[-2:] != b"-0":
        return 0
    seq = int(eid[:-2])
    return seq if seq > last_seq else 0


def foreign_events(eid: bytes) -> list[Event]:
    """Events for a foreign input entry (see ``entry_seq``): one rejection at its id's seq.
    The core never sees it."""
    return [("order_rejected", parse_id(eid)[0], None, None, None, None, None, MALFORMED)]


def _ts(raw: bytes | None, previous: int, rules: int) -> int:
    """An entry's time: its ``ts`` if it is a time at or after the previous one, and not
    past ``MAX_TS`` (from rules version 4; before, below 2**63), else that."""
    try:
        ts = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return previous
    if rules >= BOUNDED_TIME:
        return ts if previous <= ts <= MAX_TS else previous
    return ts if previous <= ts < 2**63 else previous


def decode_entry(
    last: int, fields: list[bytes], previous_ts: int, last_seq: int, rules: int = 1
) -> tuple[int, int, list[tuple]]:
    """An input entry whose last seq is ``last`` (see ``entry_seq``) as (envelope time, the
    rules version in force for it, its command tuples in seq order), given the previous
    entry's time and rules. Never raises on what the entry holds (what is not a valid entry
    is answered), only ``JournalError`` for rules newer than this release knows.

    - layout 2 (``n`` present): ``n`` must be an integer from 1 to ``MAX_ENTRY_COMMANDS``
      whose seqs ``last-n+1 .. last`` all come after ``last_seq``; if not, the entry holds
      just seq ``last``, answered ``BAD_ENTRY``. ``c`` must decode to an array of ``n``
      items; if not, each of its seqs is answered ``BAD_ENTRY``. Each item is then decoded as
      a command (anything else is ``MALFORMED``, as in layout 1).
    - layout 1 (no ``n``): ``c`` is one command at seq ``last``; bytes that are not msgpack,
      or a map that is not a command, are ``MALFORMED``.
    - ``r`` (layout 2, optional) is the rules version the entry was written under: a whole
      number from 1; a lower one than the previous entry's keeps that (rules never go
      back); one that is not a number answers each seq ``BAD_ENTRY``.
    - ``ts`` that is not a time at or after the previous entry's (or, from rules version 4,
      is past ``MAX_TS``) takes the previous one.
    """
    if (len(fields) == 8 and fields[0] == b"ts" and fields[2] == b"n" and fields[4] == b"r"
            and fields[6] == b"c"):
        ts_raw, n_raw, r_raw, payload = fields[1], fields[3], fields[5], fields[7]
    else:
        ts_raw, n_raw, payload = field(fields, b"ts"), field(fields, b"n"), field(fields, b"c")
        r_raw = field(fields, b"r")
    ts = _ts(ts_raw, previous_ts, rules)
    if n_raw is None:
        try:
            # (map keys other than text are refused here, which makes the entry MALFORMED,
            # as the decoder would; it saves parsing a keyword argument per entry)
            obj = _unpackb(payload)
        except Exception:  # msgpack raises several unrelated types on bad bytes
            return ts, rules, [invalid(last, ts)]
        return ts, rules, [decode(obj, last, ts, wire=True, rules=rules)]
    n = int(n_raw) if n_raw.isdigit() and len(n_raw) <= 6 else 0
    if not 1 <= n <= MAX_ENTRY_COMMANDS or last - n < last_seq:
        return ts, rules, [invalid(last, ts, BAD_ENTRY)]
    first = last - n + 1
    if r_raw is not None:
        if not (r_raw.isdigit() and len(r_raw) <= 6 and int(r_raw) >= 1):
            return ts, rules, [invalid(s, ts, BAD_ENTRY) for s in range(first, last + 1)]
        r = int(r_raw)
        if r > LATEST_RULES:
            raise JournalError(
                f"the journal entry ending at seq {last} was written under rules version {r}, "
                f"newer than this version of exch knows ({LATEST_RULES}): upgrade exch"
            )
        if r > rules:
            if r >= BOUNDED_TIME > rules:  # the entry's own version bounds its time
                ts = _ts(ts_raw, previous_ts, r)
            rules = r
    if type(payload) is bytes:
        cmds = decode_packed(payload, n, first, ts, rules)
        if cmds is not None:
            return ts, rules, cmds
    try:  # bytes the fast reader leaves (see exchange.packed): the general way
        items = _unpackb(payload)
    except Exception:  # msgpack raises several unrelated types on bad bytes
        items = None
    if type(items) is not list or len(items) != n:
        return ts, rules, [invalid(s, ts, BAD_ENTRY) for s in range(first, last + 1)]
    return ts, rules, decode_many(items, first, ts, rules)


# ----------------------------------------------------------------------------- output


def _map_maker(names: tuple[str, ...]) -> Any:
    """A function from an event tuple to its map, as a dict display: cheaper than
    ``dict(zip(names, event))`` (see the README's figures), and the matcher makes one per
    event."""
    body = ", ".join(f"{name!r}: e[{i}]" for i, name in enumerate(names))
    return eval(f"lambda e: {{{body}}}")  # noqa: S307 - built from the constant field names


_TO_MAP = {kind: _map_maker(names) for kind, names in EVENT_FIELDS.items()}
_packb = msgpack.Packer(autoreset=True).pack
_array_header = msgpack.Packer(autoreset=True).pack_array_header


def encode_events(events: Iterable[Event]) -> bytes:
    """The ``e`` field of an output entry: the events as a msgpack array of maps."""
    to_map = _TO_MAP
    return _packb([to_map[ev[0]](ev) for ev in events])


ENCODE_CHUNK = 4096
"""Events packed in one call when an answer has many: a long answer (a market of millions of
orders closing) is packed a chunk at a time, never as one call that holds the interpreter
for seconds."""


def _header_length(n: int) -> int:
    return 1 if n < 16 else (3 if n < 65536 else 5)


def encode_pieces(events: list[Event], limit: int = PIECE_BYTES) -> list[bytes]:
    """The ``e`` fields of an input entry's answer: one (``encode_events``), or several of at
    most ``limit`` bytes each when one would be larger; an event is never cut. The same
    events always give the same pieces."""
    if len(events) <= ENCODE_CHUNK:
        whole = encode_events(events)
        if len(whole) <= limit:
            return [whole]
    # the array's elements, packed a chunk at a time (each chunk's array header dropped)
    to_map = _TO_MAP
    chunks: list[tuple[int, bytes]] = []
    for i in range(0, len(events), ENCODE_CHUNK):
        chunk = events[i:i + ENCODE_CHUNK]
        packed = _packb([to_map[ev[0]](ev) for ev in chunk])
        chunks.append((len(chunk), packed[_header_length(len(chunk)):]))
    if sum(len(b) for _, b in chunks) + 5 <= limit:
        return [_array_header(len(events)) + b"".join(b for _, b in chunks)]
    pieces: list[bytes] = []
    count, parts, size = 0, [], 5
    for i, (n, b) in enumerate(chunks):
        units = [(n, b)]
        if len(b) + 5 > limit:  # a chunk too big for a piece on its own: event by event
            chunk = events[i * ENCODE_CHUNK:i * ENCODE_CHUNK + n]
            units = [(1, _packb(to_map[ev[0]](ev))) for ev in chunk]
        for k, ub in units:
            if parts and size + len(ub) > limit:
                pieces.append(_array_header(count) + b"".join(parts))
                count, parts, size = 0, [], 5
            parts.append(ub)
            count += k
            size += len(ub)
    pieces.append(_array_header(count) + b"".join(parts))
    return pieces


def piece_ids(previous: bytes, eid: bytes, count: int) -> list[bytes] | None:
    """Ids for the ``count`` pieces of the answer to input entry ``eid`` whose previous input
    entry is ``previous`` (``b"0-0"`` if none): the last is ``eid``; the others lie strictly
    between ``previous`` and ``eid``, where no input entry is, so a piece's id is never the
    answer to another entry. None when there is no room: only after an entry appended by
    something else at the very top of its ms, followed by another such entry (the sequencer
    leaves room after one), and then the answer is written whole."""
    if count == 1:
        return [eid]
    ms, sub = parse_id(previous)
    if sub + count - 1 <= MAX_ID:
        return [f"{ms}-{sub + i}".encode() for i in range(1, count)] + [eid]
    last_ms = parse_id(eid)[0]
    if ms + 1 < last_ms:  # a foreign id at the top of its ms: the next ms is free
        return [f"{ms + 1}-{i}".encode() for i in range(count - 1)] + [eid]
    return None


def decode_events(payload: bytes) -> list[dict[str, Any]]:
    """The events of an output entry, as stream-form maps."""
    events = _unpackb(payload, strict_map_key=False)
    return events if isinstance(events, list) else []


# ----------------------------------------------------------------------------- consumers


Entry = tuple[int, int, list[dict[str, Any]]]
"""What sinks take: one answer to an input entry, (the entry's last seq, its envelope time in
ms, its events as stream-form maps, each with its own ``seq``). An answer to a layout-1 entry
holds the events of one seq. Sinks are idempotent by seq: they hold everything up to the last
seq of the last entry they took."""


@dataclass
class OutputPiece:
    """One output stream entry, decoded: the whole answer to an input entry, or a piece."""

    id: bytes
    last_seq: int
    """The first part of its id: for a whole answer, the seq of the input entry's last
    command (a piece's is that of an earlier entry; ``Assembler`` gives the whole)."""
    ts: int
    events: list[dict[str, Any]]
    part: int = 1
    parts: int = 1


def parse_output(eid: bytes, fields: list[bytes]) -> OutputPiece:
    """An output stream entry as an ``OutputPiece``."""
    seq = int(eid[:-2]) if eid[-2:] == b"-0" else parse_id(eid)[0]
    if len(fields) == 4 and fields[0] == b"ts" and fields[2] == b"e":
        ts_raw, payload, part, parts = fields[1], fields[3], None, None
    else:
        ts_raw, payload = field(fields, b"ts"), field(fields, b"e")
        part, parts = field(fields, b"part"), field(fields, b"parts")
    ts = int(ts_raw) if ts_raw is not None and ts_raw.isdigit() else 0
    events = decode_events(payload) if payload is not None else []
    if part is not None and parts is not None and part.isdigit() and parts.isdigit():
        return OutputPiece(eid, seq, ts, events, int(part), int(parts))
    return OutputPiece(eid, seq, ts, events)


def entry_of(whole: OutputPiece) -> Entry:
    """A whole answer as what a sink takes: (the input entry's last seq, its time, its
    events, each with its own seq)."""
    return whole.last_seq, whole.ts, whole.events


class Assembler:
    """Joins the pieces of one input entry's answer, read in stream order, into one whole
    (an ``OutputPiece`` of part 1 of 1). Until the last piece arrives, nothing is given: a
    consumer must not acknowledge a piece before the whole answer is in its sink."""

    def __init__(self) -> None:
        self.pending: list[OutputPiece] = []

    def feed(self, piece: OutputPiece) -> OutputPiece | None:
        """The whole answer once ``piece`` completes it (``piece`` itself if it is whole);
        None while pieces are missing. A piece out of turn drops what was gathered."""
        if piece.parts == 1:
            self.pending = []
            return piece
        if piece.part != len(self.pending) + 1:
            self.pending = []
            if piece.part != 1:
                return None
        self.pending.append(piece)
        if piece.part < piece.parts:
            return None
        events = [ev for p in self.pending for ev in p.events]
        self.pending = []
        return OutputPiece(piece.id, piece.last_seq, piece.ts, events)

    @property
    def ids(self) -> list[bytes]:
        """Ids of the pieces gathered so far (not yet a whole answer)."""
        return [p.id for p in self.pending]


def read_entries(rows: Iterable[tuple[bytes, list[bytes]]]) -> list[Entry]:
    """Output stream rows, read in order, as the entries a sink is given: one per answer,
    its pieces joined."""
    assembler = Assembler()
    out: list[Entry] = []
    for eid, fields in rows:
        whole = assembler.feed(parse_output(eid, fields))
        if whole is not None:
            out.append(entry_of(whole))
    return out
