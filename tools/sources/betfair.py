"""``exch import betfair``: Betfair Exchange Stream recordings as commands for this exchange.

A recording is one JSON message per line (``{"op": "mcm", "pt": <ms>, "mc": [...]}``), each
market change carrying a market definition and/or runner changes: the sizes available to back
(``atb``: unmatched LAY money) and to lay (``atl``: unmatched BACK money) per price, and the
cumulative traded size per price (``trd``). ``convert`` turns one or more recordings into the
JSON-form commands ``exch simulate`` and ``exch submit`` read, such that replaying them through
the core reproduces the recording's book and its traded volume, price by price:

- the first market definition becomes ``create_market`` (and, once, the ``deposit``s of the
  accounts below); status and in-play changes become ``market_status`` / ``turn_in_play``; the
  winners of the final definition become ``settle``;
- the recording's book is held by two liquidity accounts as resting GTC/PERSIST orders: growth
  of a level is a new order, shrinkage not explained by trading a ``cancel`` with ``reduce``;
- every increase of a price's traded size (above its peak so far) becomes a crossing IOC order
  from a taker account that trades exactly that size at exactly that price; where the book
  does not hold the liquidity it needs, a "fill" account adds it first, and resting orders at
  better prices that would be taken first are cancelled and put back afterwards.

The converter keeps a private ``Exchange`` as a mirror and applies each command as it emits
it, so it always knows which orders exist, what is left of them and which are still waiting
out an in-play bet delay; the mirror's events are the report's expected outcome. Everything
is a pure function of the input files: the same files always give the same commands.
See docs/betfair-import.md for the method, its adjustments and the measured results.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from heapq import merge
from pathlib import Path
from typing import Any, TextIO

from exchange import Exchange, decode
from exchange.events import ORDER_CANCELLED, ORDER_REJECTED, TRADE
from exchange.limits import MAX_BALANCE, MAX_MONEY
from exchange.units import INVALID, TICK, format_money, format_price, format_rate, parse_fixed

BACK = "BACK"
LAY = "LAY"

LP_BACK = "lp-back-1"
"""Holds the recording's available-to-lay money (``atl``) as resting BACK orders."""
LP_LAY = "lp-lay-1"
"""Holds the recording's available-to-back money (``atb``) as resting LAY orders."""
FILL_BACK = "lp-back-2"
"""Adds BACK liquidity a trade needs where the recorded book shows too little."""
FILL_LAY = "lp-lay-2"
"""Adds LAY liquidity a trade needs where the recorded book shows too little."""
TAKER_BACK = "taker-back-1"
"""Backs (IOC) to trade recorded volume against resting LAY money."""
TAKER_LAY = "taker-lay-1"
"""Lays (IOC) to trade recorded volume against resting BACK money."""
ACCOUNTS = (LP_BACK, LP_LAY, FILL_BACK, FILL_LAY, TAKER_BACK, TAKER_LAY)

MIN_STAKE = "0.01"
"""Recorded sizes go down to a penny, so the converted markets accept any whole-penny stake."""

VolumeKey = tuple[str, int, int]
"""(market id, runner id, price in hundredths)."""


# ---------------------------------------------------------------------------- reading


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


def _pence(value: Any) -> tuple[int | None, bool]:
    """A recorded size in pence, and whether it had to be rounded down to the penny."""
    v = None if type(value) is bool else parse_fixed(value, 2)
    if v == INVALID:
        d = value if type(value) is Decimal else Decimal(str(value))
        return int((d * 100).to_integral_value(rounding=ROUND_FLOOR)), True
    return v, False


# ---------------------------------------------------------------------------- the report


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


# ---------------------------------------------------------------------------- the plan


class _MarketPlan:
    """A first pass over one market's messages: what each message must do. Deciding it in
    advance lets trades recorded while the market could not trade move to the latest moment
    it could, and gives the final winners and the funds the accounts need."""

    def __init__(self, market: str) -> None:
        self.market = market
        self.changes: list[tuple[int, dict[str, Any]]] = []  # (pt, mc) in order
        self.first_def: dict[str, Any] | None = None
        self.final_def: dict[str, Any] | None = None
        self.final_index = -1
        self.delay = 0
        self.before: dict[int, list[tuple[Any, ...]]] = {}  # actions before the runner changes
        self.after: dict[int, list[tuple[Any, ...]]] = {}  # actions after them
        self.reopen: set[int] = set()  # messages after which the whole book is reconciled
        self.tradeable: list[bool] = []  # is the market OPEN when the changes are applied
        self.own: dict[int, list[tuple[int, int, int]]] = {}  # (runner, price, size) traded here
        self.moved: dict[int, list[tuple[int, int, int]]] = {}  # moved here from later
        self.recorded: dict[tuple[int, int], int] = {}  # (runner, price) -> peak, pence
        self.exposure_bound = 0  # pence: a generous bound on any account's worst case
        self.lost = 0
        self.lost_volume = 0
        self.moved_count = 0
        self.moved_volume = 0
        self.off_ladder = 0
        self.fractional = 0


def _plan(market: str, changes: list[tuple[int, dict[str, Any]]]) -> _MarketPlan:
    plan = _MarketPlan(market)
    plan.changes = changes
    for i, (_, mc) in enumerate(changes):
        md = mc.get("marketDefinition")
        if isinstance(md, dict):
            if plan.first_def is None:
                plan.first_def = md
            plan.final_def = md
            plan.final_index = i
            if md.get("inPlay") and not plan.delay and type(md.get("betDelay")) is int:
                plan.delay = max(0, md["betDelay"]) * 1000
    if plan.first_def is None:
        return plan

    # Status per message: changes that open the market apply before the runner changes,
    # changes that close it after them (a message's book and trades belong to the market as
    # it was before it suspended).
    status: str | None = None
    in_play = False
    closes: list[int | None] = []  # time of the status change leaving OPEN at message i
    inplay_at: list[bool] = []
    created = False
    for i, (pt, mc) in enumerate(changes):
        md = mc.get("marketDefinition")
        before: list[tuple[Any, ...]] = []
        after: list[tuple[Any, ...]] = []
        if isinstance(md, dict):
            new_status = md.get("status")
            new_in_play = bool(md.get("inPlay"))
            if not created:
                created = True
                before.append(("create",))
                status = "OPEN"
            if status not in ("CLOSED", None):
                if new_in_play and not in_play:
                    before.append(("turn_in_play",))
                    in_play = True
                if new_status == "OPEN" and status != "OPEN":
                    before.append(("status", "OPEN"))
                    plan.reopen.add(i)
                    status = "OPEN"
        tradeable = status == "OPEN"
        if isinstance(md, dict) and status not in ("CLOSED", None):
            new_status = md.get("status")
            if new_status in ("SUSPENDED", "CLOSED") and new_status != status:
                after.append(("status", new_status))
                status = new_status
        if i == plan.final_index:
            winners = [r.get("id") for r in _sorted_runners(md) if r.get("status") == "WINNER"]
            if winners:
                after.append(("settle", winners))
                status = "CLOSED"
        if before:
            plan.before[i] = before
        if after:
            plan.after[i] = after
        plan.tradeable.append(tradeable and created)
        closes.append(pt if tradeable and status != "OPEN" else None)
        inplay_at.append(in_play)

    # When does the market next stop trading, seen from each message?
    n = len(changes)
    next_close: list[int | None] = [None] * n
    upcoming: int | None = None
    for i in range(n - 1, -1, -1):
        if closes[i] is not None:
            upcoming = closes[i]
        next_close[i] = upcoming

    def executable(i: int) -> bool:
        if not plan.tradeable[i]:
            return False
        if inplay_at[i] and plan.delay:
            # an order placed now reaches the book after the delay: before the market stops
            close = next_close[i]
            return close is None or changes[i][0] + plan.delay <= close
        return True

    # Traded-volume increases (above each price's peak so far), and where they trade.
    peak = plan.recorded
    atb_max: dict[tuple[int, int], int] = {}
    atl_max: dict[tuple[int, int], int] = {}
    last_ok = -1
    for i, (_, mc) in enumerate(changes):
        ok = executable(i)
        if ok:
            last_ok = i
        rcs = mc.get("rc")
        if not isinstance(rcs, list):
            continue
        for rc in rcs:
            if not isinstance(rc, dict) or type(rc.get("id")) is not int:
                continue
            rid: int = rc["id"]
            for key, table in (("atb", atb_max), ("atl", atl_max)):
                for p, s in _levels(rc.get(key)):
                    price, size, frac = _level(p, s)
                    plan.fractional += frac
                    if price is None:
                        plan.off_ladder += 1
                    elif size:
                        k = (rid, price)
                        if size > table.get(k, 0):
                            table[k] = size
            for p, s in _levels(rc.get("trd")):
                ladder_price, size, frac = _level(p, s)
                plan.fractional += frac
                off = ladder_price is None
                if ladder_price is not None:
                    price = ladder_price
                else:
                    # still recorded volume (if the price is a number of hundredths at all),
                    # but it cannot trade here: lost
                    plan.off_ladder += 1
                    raw = None if type(p) is bool else parse_fixed(p, 2)
                    if raw is None or raw <= 0:
                        continue
                    price = raw
                k = (rid, price)
                old = peak.get(k, 0)
                if size <= old:
                    continue
                peak[k] = size
                d = size - old
                if off:
                    plan.lost += 1
                    plan.lost_volume += d
                elif ok:
                    plan.own.setdefault(i, []).append((rid, price, d))
                elif last_ok >= 0:
                    plan.moved.setdefault(last_ok, []).append((rid, price, d))
                    plan.moved_count += 1
                    plan.moved_volume += d
                else:
                    plan.lost += 1
                    plan.lost_volume += d
    bound = sum(s * (p - 100) // 100 for (_, p), s in atb_max.items())
    bound += sum(atl_max.values())
    bound += sum(s * p // 100 for (_, p), s in peak.items())
    plan.exposure_bound = bound
    return plan


def _sorted_runners(md: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not isinstance(md, dict) or not isinstance(md.get("runners"), list):
        return []
    runners = [r for r in md["runners"] if isinstance(r, dict) and type(r.get("id")) is int]
    return sorted(runners, key=lambda r: (r.get("sortPriority", 0), r["id"]))


def _levels(value: Any) -> list[tuple[Any, Any]]:
    if not isinstance(value, list):
        return []
    return [(x[0], x[1]) for x in value if isinstance(x, list) and len(x) == 2]


_PRICES: dict[Any, int | None] = {}
_SIZES: dict[Any, tuple[int, int]] = {}


def _level(p: Any, s: Any) -> tuple[int | None, int, int]:
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
        v, rounded = _pence(s)
        size, frac = (v if v is not None and v > 0 else 0), int(rounded)
        if len(_SIZES) < 1_000_000 and isinstance(s, (int, Decimal, str)):
            _SIZES[s] = (size, frac)
    return price, size, frac


# ---------------------------------------------------------------------------- the converter


class _Level:
    """Our orders at one price on one side of one runner (resting or waiting out the bet
    delay), in placement order, and how much of them pending takers will consume. A level
    leaves its book when it holds nothing."""

    __slots__ = ("orders", "total", "reserved", "book", "price")

    def __init__(self, book: dict[int, _Level], price: int) -> None:
        self.orders: dict[int, int] = {}  # order id -> unmatched stake, pence
        self.total = 0
        self.reserved = 0
        self.book = book
        self.price = price

    @property
    def free(self) -> int:
        return self.total - self.reserved

    def drop_if_empty(self) -> None:
        if not self.total and not self.reserved and self.book.get(self.price) is self:
            del self.book[self.price]


class _Runner:
    __slots__ = ("id", "lay", "back", "tgt_lay", "tgt_back")

    def __init__(self, rid: int) -> None:
        self.id = rid
        self.lay: dict[int, _Level] = {}  # our LAY orders: the recording's atb
        self.back: dict[int, _Level] = {}  # our BACK orders: the recording's atl
        self.tgt_lay: dict[int, int] = {}  # the recording's atb, pence
        self.tgt_back: dict[int, int] = {}  # the recording's atl, pence


class _Market:
    def __init__(self, plan: _MarketPlan, report: MarketReport) -> None:
        self.plan = plan
        self.report = report
        self.id = plan.market
        self.runners: dict[int, _Runner] = {}
        self.status: str | None = None
        self.next = 0  # index of the next change of this market


class _Converter:
    def __init__(self, first_seq: int) -> None:
        self.first_seq = first_seq
        self.commands: list[dict[str, Any]] = []
        self.ex = Exchange()
        self.ex.last_seq = first_seq - 1
        self.orders: dict[int, tuple[_Level, str]] = {}  # book order id -> (level, account)
        self.takers: dict[int, list[Any]] = {}  # id -> [level, planned, left, price, market]
        self.matched: dict[VolumeKey, int] = {}
        self.rejections: list[dict[str, Any]] = []
        self.markets: dict[str, _Market] = {}

    # ------------------------------------------------------------ emitting and mirroring

    def emit(self, cmd: dict[str, Any]) -> int:
        """Append a command, apply it to the mirror and track what it did; its seq."""
        seq = self.first_seq + len(self.commands)
        self.commands.append(cmd)
        self._apply(decode(cmd, seq, cmd["ts"]))
        return seq

    def _apply(self, command: tuple[Any, ...]) -> None:
        for e in self.ex.apply(command):
            kind = e[0]
            if kind == TRADE:
                _, _, _, mid, runner, price, size, bo, lo = e[:9]
                key = (mid, runner, price)
                self.matched[key] = self.matched.get(key, 0) + size
                self._reduce(bo, size)
                self._reduce(lo, size)
            elif kind == ORDER_CANCELLED:
                self._reduce(e[2], e[8])
            elif kind == ORDER_REJECTED:
                seq = e[1]
                self.rejections.append({"seq": seq, "command": e[2], "reason": e[7]})
                if e[2] == "place":
                    # never accepted: forget it (it consumed nothing)
                    held = self.orders.get(seq)
                    if held is not None:
                        self._reduce(seq, held[0].orders[seq])
                    elif seq in self.takers:
                        self._reduce(seq, self.takers[seq][2])

    def _reduce(self, oid: int, size: int) -> None:
        held = self.orders.get(oid)
        if held is not None:
            lvl = held[0]
            left = lvl.orders[oid] - size
            lvl.total -= size
            if left:
                lvl.orders[oid] = left
            else:
                del lvl.orders[oid]
                del self.orders[oid]
                if not lvl.total:
                    lvl.drop_if_empty()
            return
        t = self.takers.get(oid)
        if t is not None:
            t[2] -= size
            if not t[2]:
                t[0].reserved -= t[1]
                t[0].drop_if_empty()
                del self.takers[oid]

    def _place(
        self, m: _Market, r: _Runner, side: str, price: int, stake: int, account: str,
        ts: int, taker_level: _Level | None = None,
    ) -> None:
        seq = self.first_seq + len(self.commands)
        cmd: dict[str, Any] = {
            "type": "place", "account": account, "market": m.id, "runner": r.id, "side": side,
            "price": format_price(price), "stake": format_money(stake),
        }
        if taker_level is None:
            book = r.back if side == BACK else r.lay
            lvl = book.get(price)
            if lvl is None:
                lvl = book[price] = _Level(book, price)
            lvl.orders[seq] = stake
            lvl.total += stake
            self.orders[seq] = (lvl, account)
            cmd["tif"] = "GTC"
            cmd["persistence"] = "PERSIST"
        else:
            # A taker: what it will consume is reserved until it has traded (at once, or when
            # it comes out of the in-play bet delay).
            taker_level.reserved += stake
            self.takers[seq] = [taker_level, stake, stake, price, m.id]
            cmd["tif"] = "IOC"
        cmd["ts"] = ts
        self.emit(cmd)

    def _cancel(self, lvl: _Level, amount: int, ts: int) -> int:
        """Cancel ``amount`` of a level's orders, newest first (the oldest are what pending
        takers will consume); returns the orders cancelled."""
        plan: list[tuple[int, int]] = []
        for oid in reversed(lvl.orders):
            if amount <= 0:
                break
            take = min(lvl.orders[oid], amount)
            plan.append((oid, take))
            amount -= take
        for oid, take in plan:
            self.emit({
                "type": "cancel", "account": self.orders[oid][1], "order": oid,
                "reduce": format_money(take), "ts": ts,
            })
        return len(plan)

    # ------------------------------------------------------------ the book of one runner

    @staticmethod
    def _best(book: dict[int, _Level], side: str) -> int | None:
        prices = [p for p, lvl in book.items() if lvl.total > lvl.reserved]  # few levels
        if not prices:
            return None
        return min(prices) if side == BACK else max(prices)

    def _runner(
        self, m: _Market, r: _Runner, lay_touch: set[int], back_touch: set[int],
        trades: dict[int, int], ts: int, moved: bool = False,
    ) -> None:
        """Bring one runner's book to the recording's after trading ``trades`` (price ->
        pence): cancels first, then the trades, then the growth, so nothing crosses.

        ``moved`` trades are reported later by the recording than they are replayed: the
        levels they consume are left consumed (the recording shows them shrink when it reports
        the trade), and only liquidity displaced for them is put back."""
        lay_touch = set(lay_touch)
        back_touch = set(back_touch)
        backers: list[tuple[int, int]] = []  # BACK takers, taking LAY money
        layers: list[tuple[int, int]] = []  # LAY takers, taking BACK money
        credit_lay: dict[int, int] = {}
        credit_back: dict[int, int] = {}
        if trades:
            bl, bb = self._best(r.lay, LAY), self._best(r.back, BACK)
            nbl = max(r.tgt_lay) if r.tgt_lay else None
            nbb = min(r.tgt_back) if r.tgt_back else None
            for p in sorted(trades):
                d = trades[p]
                if self._taker_backs(r, p, bl, bb, nbl, nbb):
                    backers.append((p, d))
                    credit_lay[p] = d
                    lay_touch.add(p)
                else:
                    layers.append((p, d))
                    credit_back[p] = d
                    back_touch.add(p)
        # 1. shrinkage not explained by the trades
        for book, tgt, credit, touch in (
            (r.lay, r.tgt_lay, credit_lay, lay_touch), (r.back, r.tgt_back, credit_back, back_touch)
        ):
            for p in sorted(touch):
                lvl = book.get(p)
                if lvl is not None:
                    excess = lvl.free - credit.get(p, 0) - tgt.get(p, 0)
                    if excess > 0:
                        self._cancel(lvl, excess, ts)
        # 2. the trades: backers from the highest price down, layers from the lowest up
        displaced_lay: set[int] = set()
        displaced_back: set[int] = set()
        for p, d in sorted(backers, reverse=True):
            self._trade(m, r, BACK, p, d, ts, displaced_lay, displaced_back)
        for p, d in layers:
            self._trade(m, r, LAY, p, d, ts, displaced_lay, displaced_back)
        lay_touch |= displaced_lay
        back_touch |= displaced_back
        if moved:
            lay_touch -= set(credit_lay) - displaced_lay
            back_touch -= set(credit_back) - displaced_back
        # 3. the recording's book: cancel what is too much, then add what is missing
        for book, tgt, touch in ((r.lay, r.tgt_lay, lay_touch), (r.back, r.tgt_back, back_touch)):
            for p in sorted(touch):
                lvl = book.get(p)
                if lvl is not None and lvl.free > tgt.get(p, 0):
                    self._cancel(lvl, lvl.free - tgt.get(p, 0), ts)
        best_back = self._best(r.back, BACK)
        for p in sorted(lay_touch):
            lvl = r.lay.get(p)
            have = lvl.free if lvl is not None else 0
            want = r.tgt_lay.get(p, 0)
            if want > have:
                if best_back is not None and best_back <= p:
                    m.report.crossed_skipped += 1
                    continue
                self._place(m, r, LAY, p, want - have, LP_LAY, ts)
        best_lay = self._best(r.lay, LAY)
        for p in sorted(back_touch):
            lvl = r.back.get(p)
            have = lvl.free if lvl is not None else 0
            want = r.tgt_back.get(p, 0)
            if want > have:
                if best_lay is not None and best_lay >= p:
                    m.report.crossed_skipped += 1
                    continue
                self._place(m, r, BACK, p, want - have, LP_BACK, ts)

    @staticmethod
    def _taker_backs(
        r: _Runner, p: int, bl: int | None, bb: int | None, nbl: int | None, nbb: int | None
    ) -> bool:
        """Whether volume traded at ``p`` is best replayed as a backer taking LAY money (else
        a layer taking BACK money): the side that holds money at ``p``, else the side of the
        book ``p`` lies in, else the nearer side of the spread."""
        lvl = r.lay.get(p)
        if lvl is not None and lvl.free > 0:
            return True
        lvl = r.back.get(p)
        if lvl is not None and lvl.free > 0:
            return False
        if p in r.tgt_lay:
            return True
        if p in r.tgt_back:
            return False
        for lo, hi in ((bl, bb), (nbl, nbb)):
            if lo is not None and p < lo:
                return True
            if hi is not None and p > hi:
                return False
        lo = bl if bl is not None else nbl
        hi = bb if bb is not None else nbb
        if lo is None or hi is None:
            return hi is None
        return TICK[p] - TICK[lo] <= TICK[hi] - TICK[p]

    def _trade(
        self, m: _Market, r: _Runner, taker: str, p: int, d: int, ts: int,
        lay_touch: set[int], back_touch: set[int],
    ) -> None:
        """Trade exactly ``d`` at ``p``: clear what would be taken first or would cross the
        fill, add the liquidity the book lacks, then send the taker."""
        if taker == BACK:
            own, opp, own_touch, opp_touch = r.lay, r.back, lay_touch, back_touch
        else:
            own, opp, own_touch, opp_touch = r.back, r.lay, back_touch, lay_touch
        # ``own`` is the side the taker consumes (LAY money for a backer).
        for q in sorted(own):
            lvl = own[q]
            if lvl.free > 0 and ((q > p) if taker == BACK else (q < p)):
                m.report.displaced_volume += lvl.free
                m.report.displaced_orders += self._cancel(lvl, lvl.free, ts)
                own_touch.add(q)
        for q in sorted(opp):
            lvl = opp[q]
            if lvl.free > 0 and ((q <= p) if taker == BACK else (q >= p)):
                m.report.displaced_volume += lvl.free
                m.report.displaced_orders += self._cancel(lvl, lvl.free, ts)
                opp_touch.add(q)
        at_p = own.get(p)
        have = at_p.free if at_p is not None else 0
        if have < d:
            maker_side = LAY if taker == BACK else BACK
            self._place(m, r, maker_side, p, d - have, FILL_LAY if taker == BACK else FILL_BACK, ts)
            m.report.fill_orders += 1
            m.report.fill_volume += d - have
        m.report.trades += 1
        self._place(
            m, r, taker, p, d, TAKER_BACK if taker == BACK else TAKER_LAY, ts, taker_level=own[p]
        )

    # ------------------------------------------------------------ one market change

    def change(
        self, m: _Market, pt: int, mc: dict[str, Any], deposits: list[dict[str, Any]]
    ) -> None:
        plan = m.plan
        i = m.next
        m.next += 1
        m.report.messages += 1
        for action in plan.before.get(i, ()):
            self._action(m, action, pt, deposits)
        if m.status is None:
            return  # no market definition yet: nothing to apply to
        reconcile_all = i in plan.reopen
        if mc.get("img"):
            for each in m.runners.values():
                each.tgt_lay.clear()
                each.tgt_back.clear()
            reconcile_all = True
        touched: dict[int, tuple[set[int], set[int]]] = {}
        rcs = mc.get("rc")
        for rc in rcs if isinstance(rcs, list) else ():
            rid = rc.get("id") if isinstance(rc, dict) else None
            r = m.runners.get(rid) if type(rid) is int else None
            if r is None or not isinstance(rc, dict):
                m.report.unknown_runners += 1
                continue
            lay_t, back_t = touched.setdefault(r.id, (set(), set()))
            for key, tgt, t in (("atb", r.tgt_lay, lay_t), ("atl", r.tgt_back, back_t)):
                for p, s in _levels(rc.get(key)):
                    price, size, _ = _level(p, s)
                    if price is None:
                        continue
                    if size:
                        tgt[price] = size
                    else:
                        tgt.pop(price, None)
                    t.add(price)
        if m.status != "OPEN" or not plan.tradeable[i]:
            pass  # the book waits until the market reopens (cancels and orders are refused)
        else:
            own = self._by_runner(m, plan.own.get(i, ()))
            for rid, r in m.runners.items():
                lay_t, back_t = touched.get(rid, (set(), set()))
                if reconcile_all:
                    lay_t = set(r.lay) | set(r.tgt_lay)
                    back_t = set(r.back) | set(r.tgt_back)
                trades = own.get(rid, {})
                if lay_t or back_t or trades:
                    self._runner(m, r, lay_t, back_t, trades, pt)
            moved = self._by_runner(m, plan.moved.get(i, ()))
            for rid, r in m.runners.items():
                if rid in moved:
                    self._runner(m, r, set(), set(), moved[rid], pt, moved=True)
        for action in plan.after.get(i, ()):
            self._action(m, action, pt, deposits)

    def _by_runner(
        self, m: _Market, trades: Iterable[tuple[int, int, int]]
    ) -> dict[int, dict[int, int]]:
        out: dict[int, dict[int, int]] = {}
        for rid, p, d in trades:
            if rid not in m.runners:
                m.report.lost_trades += 1
                m.report.lost_volume += d
                continue
            t = out.setdefault(rid, {})
            t[p] = t.get(p, 0) + d
        return out

    def _action(
        self, m: _Market, action: tuple[Any, ...], pt: int, deposits: list[dict[str, Any]]
    ) -> None:
        kind = action[0]
        if kind == "create":
            md = m.plan.first_def
            assert md is not None
            runners = [r["id"] for r in _sorted_runners(md)]
            rate = parse_fixed(md.get("marketBaseRate", 0), 2)
            winners = md.get("numberOfWinners")
            cmd = {
                "type": "create_market", "market": m.id, "runners": runners,
                "commission": format_rate(rate if rate is not None and rate >= 0 else 0),
                "min_stake": MIN_STAKE,
                "winners": winners if type(winners) is int and winners > 0 else 1,
                "bet_delay_ms": m.plan.delay, "ts": pt,
            }
            self.emit(cmd)
            m.runners = {rid: _Runner(rid) for rid in runners}
            m.status = "OPEN"
            m.report.runners = runners
            m.report.number_of_winners = winners if type(winners) is int and winners > 0 else 1
            m.report.bet_delay_ms = m.plan.delay
            for d in deposits:
                self.emit(dict(d, ts=pt))
            deposits.clear()
        elif kind == "turn_in_play":
            self.emit({"type": "turn_in_play", "market": m.id, "ts": pt})
        elif kind == "status":
            self.emit({"type": "market_status", "market": m.id, "status": action[1], "ts": pt})
            m.status = action[1]
        elif kind == "settle":
            self.emit({"type": "settle", "market": m.id, "winners": list(action[1]), "ts": pt})
            m.status = "CLOSED"
            m.report.winners = list(action[1])
            m.report.settled = True

    def drain(self) -> int:
        """Heartbeats until no order waits out a bet delay (only needed when a recording ends
        with the market still open in-play); how many."""
        n = 0
        while (wake := self.ex.next_wakeup()) is not None:
            self.emit({"type": "heartbeat", "ts": max(wake, self.ex.now)})
            n += 1
        return n


# ---------------------------------------------------------------------------- the API


def _deposits(amount: int) -> list[dict[str, Any]]:
    out = []
    for account in ACCOUNTS:
        left = amount
        while left > 0:
            step = min(left, MAX_MONEY)
            out.append({"type": "deposit", "account": account, "amount": format_money(step)})
            left -= step
    return out


def convert(
    paths: str | Path | Iterable[str | Path], *, first_seq: int = 1
) -> tuple[list[dict[str, Any]], ConversionReport]:
    """Convert recordings into JSON-form commands, in one pass over all files.

    Each market (a file usually holds one) becomes its own exchange market; messages of all
    files are merged by publish time (``pt``) so ``ts`` never goes backwards and markets that
    ran at the same time interleave as they did. Order ids are sequence numbers: the commands
    must be applied in the order given, the first with seq ``first_seq`` (1 for a fresh
    exchange; pass the next free seq to append to a journal that already holds commands).
    Returns the commands and a ``ConversionReport``.
    """
    started = time.perf_counter()
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    report = ConversionReport(first_seq=first_seq)
    # Read every file; split the changes by market.
    streams: list[list[tuple[int, int, int, dict[str, Any]]]] = []
    per_market: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for n, path in enumerate(paths):
        entries = []
        markets: list[str] = []
        count = 0
        for j, msg in enumerate(read_stream(path)):
            count += 1
            for mc in msg.get("mc") or ():
                if not isinstance(mc, dict) or not isinstance(mc.get("id"), str):
                    continue
                mid = mc["id"]
                if mid not in per_market:
                    per_market[mid] = []
                    markets.append(mid)
                per_market[mid].append((msg["pt"], mc))
                entries.append((msg["pt"], n, j, mc))
        streams.append(entries)
        report.files.append({"path": str(path), "messages": count, "markets": markets})
        report.messages += count
    plans = {mid: _plan(mid, changes) for mid, changes in per_market.items()}
    conv = _Converter(first_seq)
    bound = sum(p.exposure_bound for p in plans.values())
    amount = min(max(2 * bound, 100_000), MAX_BALANCE)
    amount = -(-amount // 100) * 100  # whole pounds
    deposits = _deposits(amount)
    report.deposit_per_account = amount
    for mid, plan in plans.items():
        mr = MarketReport(mid)
        mr.moved_trades, mr.moved_volume = plan.moved_count, plan.moved_volume
        mr.lost_trades, mr.lost_volume = plan.lost, plan.lost_volume
        mr.off_ladder, mr.fractional_sizes = plan.off_ladder, plan.fractional
        mr.recorded_volume = sum(plan.recorded.values())
        report.markets[mid] = mr
        for (rid, price), v in sorted(plan.recorded.items()):
            report.recorded_volume[(mid, rid, price)] = v
        conv.markets[mid] = _Market(plan, mr)
    for pt, _, _, mc in merge(*streams, key=lambda e: (e[0], e[1], e[2])):
        conv.change(conv.markets[mc["id"]], pt, mc, deposits)
    report.heartbeats = conv.drain()
    for mid, m in conv.markets.items():
        mk = conv.ex.market(mid)
        m.report.final_status = mk.status if mk is not None else None
    report.commands = len(conv.commands)
    by_type: dict[str, int] = {}
    for c in conv.commands:
        by_type[c["type"]] = by_type.get(c["type"], 0) + 1
    report.commands_by_type = by_type
    report.matched_volume = dict(sorted(conv.matched.items()))
    report.rejections = conv.rejections
    report.seconds = time.perf_counter() - started
    return conv.commands, report


def dump_commands(commands: Iterable[dict[str, Any]], stream: TextIO) -> int:
    """Write commands as a command file (one JSON object a line); how many."""
    n = 0
    for cmd in commands:
        stream.write(json.dumps(cmd))
        stream.write("\n")
        n += 1
    return n


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


__all__ = [
    "ACCOUNTS",
    "ConversionReport",
    "MarketReport",
    "ReplayResult",
    "VolumeComparison",
    "compare_volume",
    "convert",
    "dump_commands",
    "matched_volume",
    "read_stream",
    "replay",
]
