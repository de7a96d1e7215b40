"""Events between their three forms: core tuples, stream maps, and public JSON.

- core: ``("trade", seq, "12-0", "1.23", 7, 210, 1000, ...)`` (see ``exchange.events``);
- stream: ``{"type": "trade", "seq": 12, ..., "price": 210, "size": 1000, ...}``, msgpack
  maps with the same names, integers for prices (hundredths), money (pence) and rates (basis
  points); ``wire_event``;
- JSON: the same map with decimal strings ("2.1", "10.00", "5"); ``json_event``.

``dumps_line`` writes the one JSON text used everywhere (stdout, golden files, docs): keys in
field order, so equal events always give equal bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .events import EVENT_FIELDS, MONEY_FIELDS, PRICE_FIELDS, RATE_FIELDS, Event
from .units import format_money, format_price, format_rate


def _formatters(kind: str) -> tuple[tuple[str, Callable[[int], str]], ...]:
    rates = RATE_FIELDS.get(kind, frozenset())
    out: list[tuple[str, Callable[[int], str]]] = []
    for name in EVENT_FIELDS[kind]:
        if name in rates:
            out.append((name, format_rate))
        elif name in PRICE_FIELDS:
            out.append((name, format_price))
        elif name in MONEY_FIELDS:
            out.append((name, format_money))
    return tuple(out)


_FORMATTERS = {kind: _formatters(kind) for kind in EVENT_FIELDS}


def wire_event(event: Event) -> dict[str, Any]:
    """A core event as its stream map (integers kept)."""
    return dict(zip(EVENT_FIELDS[event[0]], event))


def json_from_wire(fields: dict[str, Any]) -> dict[str, Any]:
    """A stream map as the public JSON form: decimal strings for prices, money and rates."""
    out = dict(fields)
    for name, fmt in _FORMATTERS.get(out.get("type"), ()):  # type: ignore[arg-type]
        v = out.get(name)
        if type(v) is int:
            out[name] = fmt(v)
    return out


def json_event(event: Event) -> dict[str, Any]:
    """A core event in the public JSON form."""
    return json_from_wire(wire_event(event))


def dumps_line(obj: dict[str, Any]) -> str:
    """One JSON object as one line of text, keys in the given order, ASCII only."""
    return json.dumps(obj, separators=(", ", ": "))
