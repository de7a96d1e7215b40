"""Reading a recording: its market-change messages, and the numbers inside them.

A recording is one JSON message per line (``{"op": "mcm", "pt": <ms>, "mc": [...]}``); each
market change (``mc``) may carry a ``marketDefinition`` and runner changes (``rc``) whose book
(``atb``, ``atl``) and traded sizes (``trd``) are lists of ``[price, size]`` pairs. Here they
become prices in hundredths on the core's ladder and sizes in pence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from exchange.units import INVALID, TICK, parse_fixed


def read_stream(path: str | Path) -> Iterator[dict[str, Any]]:
    """The market-change messages (``op == "mcm"``) of a recording, numbers as ``Decimal``
    or ``int`` (never a binary float). Blank lines and other operations are skipped."""
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            msg = json.loads(line, parse_float=Decimal)
            if isinstance(msg, dict) and msg.get("op") == "mcm" and type(msg.get("pt")) is int:
                yield msg


def pence(value: Any) -> tuple[int | None, bool]:
    """A recorded size in pence, and whether it had to be rounded down to the penny."""
    v = None if type(value) is bool else parse_fixed(value, 2)
    if v == INVALID:
        d = value if type(value) is Decimal else Decimal(str(value))
        return int((d * 100).to_integral_value(rounding=ROUND_FLOOR)), True
    return v, False


def sorted_runners(md: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A market definition's runners (those with an integer id), in ``sortPriority`` order."""
    if not isinstance(md, dict) or not isinstance(md.get("runners"), list):
        return []
    runners = [r for r in md["runners"] if isinstance(r, dict) and type(r.get("id")) is int]
    return sorted(runners, key=lambda r: (r.get("sortPriority", 0), r["id"]))


def level_pairs(value: Any) -> list[tuple[Any, Any]]:
    """The ``(price, size)`` pairs of a runner change's ``atb``, ``atl`` or ``trd``, as
    recorded (malformed entries skipped)."""
    if not isinstance(value, list):
        return []
    return [(x[0], x[1]) for x in value if isinstance(x, list) and len(x) == 2]


_PRICES: dict[Any, int | None] = {}
_SIZES: dict[Any, tuple[int, int]] = {}


def parse_level(p: Any, s: Any) -> tuple[int | None, int, int]:
    """(price in hundredths or None if off the ladder, size in pence (0 if unusable), 1 if
    the size was rounded down to the penny). Memoised: recordings repeat their numbers."""
    if type(p) is bool or type(s) is bool:  # True == 1 as a key: never let it hit the memo
        return None, 0, 0
    try:
        price = _PRICES[p]
    except (KeyError, TypeError):
        price = parse_fixed(p, 2)
        price = price if price in TICK else None
        if len(_PRICES) < 100_000 and isinstance(p, (int, Decimal, str)):
            _PRICES[p] = price
    try:
        size, frac = _SIZES[s]
    except (KeyError, TypeError):
        v, rounded = pence(s)
        size, frac = (v if v is not None and v > 0 else 0), int(rounded)
        if len(_SIZES) < 1_000_000 and isinstance(s, (int, Decimal, str)):
            _SIZES[s] = (size, frac)
    return price, size, frac
