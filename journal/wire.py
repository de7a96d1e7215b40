"""Journal entries, between Redis and the core.

An input entry ``<seq>-0`` holds ``ts`` (envelope time, ms, stamped by the sequencer) and ``c``
(the command's stream form: a msgpack map, see ``exchange.commands``). An output entry with the
same id holds ``ts`` and ``e``: a msgpack array of the command's events, each a map keyed by
the event's field names (see ``exchange.codec``).

Stream reads here use raw replies (nested lists of bytes straight from hiredis): redis-py's
per-entry conversion to dicts costs more than decoding the command itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgpack  # type: ignore[import-untyped]
import redis

from exchange.commands import decode
from exchange.events import EVENT_FIELDS, MALFORMED, Event

RAW_COMMANDS = ("XRANGE", "XREVRANGE", "XREAD", "XREADGROUP", "XAUTOCLAIM", "XCLAIM")

Row = tuple[bytes, list[bytes]]
"""A raw stream entry: (id, [field, value, field, value, ...])."""


def raw(client: redis.Redis) -> redis.Redis:
    """The same client with raw replies for stream reads (nested lists of bytes)."""
    for command in RAW_COMMANDS:
        client.set_response_callback(command, _identity)
    return client


def _identity(response: Any, **options: Any) -> Any:
    return response


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    """``b"12-0"`` -> (12, 0)."""
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    ms, _, sub = entry_id.partition("-")
    return int(ms), int(sub or 0)


def field(fields: list[bytes], name: bytes) -> bytes | None:
    """The value of ``name`` in a raw field list, or None."""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == name:
            return fields[i + 1]
    return None


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
    """A function from an event tuple to its map, as a dict display: about twice as fast as
    ``dict(zip(names, event))``, and the matcher makes one per event."""
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
