"""``exch simulate``: the core in-process, no Redis: command file in, event lines out.

Command ``i`` gets seq ``i`` (from 1) and the time of its ``ts`` field, or else the previous
command's time: the same commands always give the same bytes, and exactly the events a runner
would journal for the same commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from exchange import Exchange, decode
from exchange.codec import dumps_line, json_event
from exchange.limits import MAX_TS


def envelope_ts(obj: Any, previous: int) -> int:
    """The time a command file gives a command: its valid ``ts``, else the previous one."""
    if isinstance(obj, dict):
        ts = obj.get("ts")
        if type(ts) is int and previous <= ts <= MAX_TS:
            return ts
    return previous


def simulate(commands: Iterable[Any], exchange: Exchange | None = None, *,
             rules: int | None = None) -> Iterator[str]:
    """Event lines (JSON text, no newline) for JSON-form command objects, applied in order,
    under the exchange's rules version, or from the first command on under ``rules``
    (``exchange.rules``; a fresh exchange is under version 1, as the golden scenarios are)."""
    ex = exchange if exchange is not None else Exchange()
    seq = ex.last_seq
    ts = ex.now
    if rules is not None and rules != ex.rules:
        ex.set_rules(rules, ts)
    for obj in commands:
        seq += 1
        ts = envelope_ts(obj, ts)
        for event in ex.apply(decode(obj, seq, ts, rules=ex.rules)):
            yield dumps_line(json_event(event))
