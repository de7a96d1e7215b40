"""The replay check: converted commands applied to a fresh core, as ``exch simulate`` does.

It measures what the commands really trade (to compare with the recording's volume through
``ConversionReport`` or ``compare_volume``), which of them the core rejects, and runs every
invariant of books and money as it goes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exchange import Exchange, decode
from exchange.events import ORDER_REJECTED, TRADE

from .report import VolumeKey


@dataclass
class ReplayResult:
    """What replaying commands through a fresh core gave."""

    matched_volume: dict[VolumeKey, int]
    rejections: list[dict[str, Any]]
    statuses: dict[str, str]
    """Final status of every market."""
    commands: int
    checks: int
    """How many times ``Exchange.check()`` ran (every invariant of books and money)."""
    seconds: float
    exchange: Exchange


def replay(
    commands: Sequence[dict[str, Any]], *, first_seq: int = 1, check_every: int = 0
) -> ReplayResult:
    """Apply JSON-form commands to a fresh ``Exchange`` (as ``exch simulate`` does, seq from
    ``first_seq``), checking every invariant every ``check_every`` commands (0: only at the
    end). Returns the matched volume, the rejections and the final market statuses."""
    started = time.perf_counter()
    ex = Exchange()
    ex.last_seq = first_seq - 1
    matched: dict[VolumeKey, int] = {}
    rejections: list[dict[str, Any]] = []
    checks = 0
    ts = 0
    for n, obj in enumerate(commands):
        seq = first_seq + n
        t = obj.get("ts")
        if type(t) is int and t >= ts:
            ts = t
        for e in ex.apply(decode(obj, seq, ts)):
            if e[0] == TRADE:
                key = (e[3], e[4], e[5])
                matched[key] = matched.get(key, 0) + e[6]
            elif e[0] == ORDER_REJECTED:
                rejections.append({"seq": seq, "command": e[2], "reason": e[7]})
        if check_every and (n + 1) % check_every == 0:
            ex.check()
            checks += 1
    ex.check()
    checks += 1
    return ReplayResult(
        dict(sorted(matched.items())), rejections, {m.id: m.status for m in ex.markets()},
        len(commands), checks, time.perf_counter() - started, ex,
    )

