"""Journal entries, between Redis and the core.

An input entry ``<seq>-0`` holds ``ts`` (envelope time, ms, stamped by the sequencer) and ``c``
(the command's stream form: a msgpack map, see ``exchange.commands``). An output entry with the
same id holds ``ts`` and ``e``: a msgpack array of the command's events, each a map keyed by
the event's field names (see ``exchange.codec``).

Bytes in, values out: reading the streams themselves is ``journal.streams``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgpack  # type: ignore[import-untyped]

from exchange.commands import decode
from exchange.events import EVENT_FIELDS, MALFORMED, Event

from .streams import field, parse_id

_unpackb = msgpack.unpackb


def decode_input(
    eid: bytes, fields: list[bytes], previous_ts: int, seq: int | None = None
) -> tuple[int, tuple]:
    """An input entry as (envelope time, command tuple). Never raises.

    Anything that is not a well-formed entry (no ``ts`` or ``c``, bytes that are not msgpack,
    a map that is not a command: say, written by something other than the sequencer) becomes
    an ``invalid`` command, which the core rejects as MALFORMED; its time is the previous one.
    The caller has checked that ``eid`` is ``<seq>-0`` (and may pass the seq it parsed).
    """
    if seq is None:
        seq = int(eid[:-2])
    if len(fields) == 4 and fields[0] == b"ts" and fields[2] == b"c":
        ts_raw, payload = fields[1], fields[3]
    else:
        ts_raw, payload = field(fields, b"ts"), field(fields, b"c")
    try:
        ts = int(ts_raw)  # type: ignore[arg-type]
        if not previous_ts <= ts < 2**63:
            ts = previous_ts
    except (TypeError, ValueError):
        ts = previous_ts
    try:
        # (map keys other than text are refused here, which makes the entry MALFORMED, as
        # the decoder would; it saves parsing a keyword argument per entry)
        obj = _unpackb(payload)
    except Exception:  # msgpack raises several unrelated types on bad bytes
        return ts, ("invalid", seq, ts, None, None, None, None, None, MALFORMED)
    return ts, decode(obj, seq, ts, wire=True)


def foreign_events(seq: int) -> list[Event]:
    """Events for an input entry whose id is not ``<seq>-0`` with a new seq: something other
    than the sequencer wrote it. It is answered, not applied: the core never sees it."""
    return [("order_rejected", seq, None, None, None, None, None, MALFORMED)]


def _map_maker(names: tuple[str, ...]) -> Any:
    """A function from an event tuple to its map, as a dict display: cheaper than
    ``dict(zip(names, event))`` (see the README's figures), and the matcher makes one per
    event."""
    body = ", ".join(f"{name!r}: e[{i}]" for i, name in enumerate(names))
    return eval(f"lambda e: {{{body}}}")  # noqa: S307 - built from the constant field names


_TO_MAP = {kind: _map_maker(names) for kind, names in EVENT_FIELDS.items()}
_packb = msgpack.Packer(autoreset=True).pack


def encode_events(events: Iterable[Event]) -> bytes:
    """The ``e`` field of an output entry: the events as a msgpack array of maps."""
    to_map = _TO_MAP
    return _packb([to_map[ev[0]](ev) for ev in events])


def decode_events(payload: bytes) -> list[dict[str, Any]]:
    """The events of an output entry, as stream-form maps."""
    events = _unpackb(payload, strict_map_key=False)
    return events if isinstance(events, list) else []


Entry = tuple[int, int, list[dict[str, Any]]]
"""An output entry decoded: (seq, envelope time in ms, the events as stream-form maps)."""


def parse_entry(eid: bytes, fields: list[bytes]) -> Entry:
    """An output entry as (seq, ts, events)."""
    seq = int(eid[:-2]) if eid[-2:] == b"-0" else parse_id(eid)[0]
    if len(fields) == 4 and fields[0] == b"ts" and fields[2] == b"e":
        ts_raw, payload = fields[1], fields[3]
    else:
        ts_raw, payload = field(fields, b"ts"), field(fields, b"e")
    ts = int(ts_raw) if ts_raw is not None and ts_raw.isdigit() else 0
    return seq, ts, decode_events(payload) if payload is not None else []
