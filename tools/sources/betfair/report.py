"""What a conversion reports, and comparing traded volume price by price.

``ConversionReport`` is ``convert``'s account of what it read, wrote and expects (one
``MarketReport`` per market); ``compare_volume`` and ``matched_volume`` measure any replay's
traded volume against the recording's, keyed by (market, runner, price in hundredths), in pence.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from exchange.events import TRADE
from exchange.units import format_money, parse_fixed

VolumeKey = tuple[str, int, int]
"""(market id, runner id, price in hundredths)."""


@dataclass
class MarketReport:
    """What happened to one market in the conversion. Volumes in pence."""

    market: str
    runners: list[int] = field(default_factory=list)
    winners: list[int] = field(default_factory=list)
    number_of_winners: int = 1
    bet_delay_ms: int = 0
    messages: int = 0
    recorded_volume: int = 0
    """Sum over runners and prices of the peak cumulative traded size."""
    trades: int = 0
    """Traded-volume increases turned into taker orders."""
    moved_trades: int = 0
    moved_volume: int = 0
    """Increases recorded while the market could not trade (suspended, or in the last bet
    delay before a suspension) and so traded at the latest moment it could."""
    lost_trades: int = 0
    lost_volume: int = 0
    """Increases that could not be traded at all: no earlier moment was open, or the price
    is off the ladder (still counted in the recorded volume)."""
    fill_orders: int = 0
    fill_volume: int = 0
    """Liquidity added for trades where the recorded book did not show enough."""
    displaced_orders: int = 0
    displaced_volume: int = 0
    """Resting liquidity at better prices cancelled (and put back) so a trade hits its price."""
    crossed_skipped: int = 0
    """Book growth left out because it would have crossed the book (never in these files)."""
    off_ladder: int = 0
    """Recorded levels (book or traded) at prices off the ladder, ignored."""
    fractional_sizes: int = 0
    """Recorded sizes with fractions of a penny, rounded down."""
    unknown_runners: int = 0
    """Runner changes for runners not in the first market definition, ignored."""
    settled: bool = False
    final_status: str | None = None


@dataclass
class ConversionReport:
    """The outcome of ``convert``: what was read, what was written and what to expect.

    ``recorded_volume`` is the recording's traded volume per (market, runner, price in
    hundredths), in pence: the peak of each cumulative traded size. ``matched_volume`` is
    the volume the converted commands trade when replayed, measured on the converter's own
    replay (the core is deterministic, so ``exch simulate`` gives exactly this).
    """

    files: list[dict[str, Any]] = field(default_factory=list)
    messages: int = 0
    commands: int = 0
    first_seq: int = 1
    commands_by_type: dict[str, int] = field(default_factory=dict)
    markets: dict[str, MarketReport] = field(default_factory=dict)
    recorded_volume: dict[VolumeKey, int] = field(default_factory=dict)
    matched_volume: dict[VolumeKey, int] = field(default_factory=dict)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    """Commands the converter's replay rejected, as {seq, command, reason} (expected: none)."""
    deposit_per_account: int = 0
    heartbeats: int = 0
    seconds: float = 0.0

    def comparison(self) -> VolumeComparison:
        """The replay's matched volume against the recording's traded volume."""
        return compare_volume(self.recorded_volume, self.matched_volume)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (money as decimal strings, no per-price tables)."""
        markets = {}
        for mid, m in self.markets.items():
            d = dict(vars(m))
            for k in (
                "recorded_volume", "moved_volume", "lost_volume", "fill_volume", "displaced_volume"
            ):
                d[k] = format_money(d[k])
            markets[mid] = d
        return {
            "files": self.files,
            "messages": self.messages,
            "commands": self.commands,
            "first_seq": self.first_seq,
            "commands_by_type": self.commands_by_type,
            "deposit_per_account": format_money(self.deposit_per_account),
            "heartbeats": self.heartbeats,
            "markets": markets,
            "rejections": self.rejections,
            "volume": self.comparison().to_dict(),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class VolumeComparison:
    """Matched against recorded volume, per market, in pence.

    ``difference`` is matched minus recorded; ``abs_difference`` the sum over runners and
    prices of the absolute differences (so volume at the wrong price counts twice);
    ``mismatches`` lists (key, recorded, matched) for every price that differs.
    """

    recorded: dict[str, int]
    matched: dict[str, int]
    abs_difference: dict[str, int]
    mismatches: list[tuple[VolumeKey, int, int]]

    def difference(self, market: str | None = None) -> int:
        """Matched minus recorded, for one market or all."""
        if market is not None:
            return self.matched.get(market, 0) - self.recorded.get(market, 0)
        return sum(self.matched.values()) - sum(self.recorded.values())

    def relative(self, market: str | None = None) -> float:
        """Sum of absolute per-price differences over the recorded volume (0.0 is exact)."""
        if market is not None:
            rec, diff = self.recorded.get(market, 0), self.abs_difference.get(market, 0)
        else:
            rec, diff = sum(self.recorded.values()), sum(self.abs_difference.values())
        return diff / rec if rec else float(diff > 0)

    @property
    def exact(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for mid in sorted(set(self.recorded) | set(self.matched)):
            out[mid] = {
                "recorded": format_money(self.recorded.get(mid, 0)),
                "matched": format_money(self.matched.get(mid, 0)),
                "difference": format_money(self.difference(mid)),
                "abs_difference": format_money(self.abs_difference.get(mid, 0)),
                "relative": self.relative(mid),
            }
        return {"markets": out, "mismatched_prices": len(self.mismatches)}


def compare_volume(
    recorded: dict[VolumeKey, int], matched: dict[VolumeKey, int]
) -> VolumeComparison:
    """Compare two volume tables keyed by (market, runner, price in hundredths), in pence."""
    rec: dict[str, int] = {}
    mat: dict[str, int] = {}
    absd: dict[str, int] = {}
    mismatches = []
    for key in sorted(set(recorded) | set(matched)):
        r, m = recorded.get(key, 0), matched.get(key, 0)
        mid = key[0]
        rec[mid] = rec.get(mid, 0) + r
        mat[mid] = mat.get(mid, 0) + m
        absd[mid] = absd.get(mid, 0) + abs(m - r)
        if r != m:
            mismatches.append((key, r, m))
    return VolumeComparison(rec, mat, absd, mismatches)


def matched_volume(events: Iterable[Any]) -> dict[VolumeKey, int]:
    """Traded volume per (market, runner, price in hundredths), in pence, from events: core
    event tuples, JSON-form event dicts (``exch simulate`` lines parsed) or JSON text lines.
    Anything that is not a ``trade`` is ignored."""
    out: dict[VolumeKey, int] = {}
    for e in events:
        if isinstance(e, str):
            if '"trade"' not in e:
                continue
            e = json.loads(e, parse_float=Decimal)
        if isinstance(e, tuple):
            if e[0] != TRADE:
                continue
            key, size = (e[3], e[4], e[5]), e[6]
        elif isinstance(e, dict):
            if e.get("type") != TRADE:
                continue
            key = (e["market"], e["runner"], parse_fixed(e["price"], 2))
            size = parse_fixed(e["size"], 2)
        else:
            continue
        out[key] = out.get(key, 0) + size  # type: ignore[index,operator]
    return out
