"""The market day's records and its model of markets: what ``tools.sources.market_day`` fills
in (``MarketInfo``, ``GeneratorStats``), and how it prices runners and orders.

Each runner has a fair probability: a random walk on log-odds (``_Market.walk``, one step at a
time by ``_Market.move``), normalised per market by a softmax so the probabilities sum to 1; a
PLACE market is priced from its WIN market's probabilities by Harville's formula. Fair prices
are kept as ladder indices (``_Market.fair``), the nearest tick to the fair odds. An event's
result is drawn at the off from the fair probabilities then (``_Event.draw_result``).
``_take_price`` and ``_replace_price`` put an aggressive order and a replace on the ladder.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exchange.book import NO_BACK
from exchange.units import PRICES, TICK, lay_liability

_TOP = len(PRICES) - 1
_MIDS = [(a + b) / 2 for a, b in zip(PRICES, PRICES[1:])]
"""Midpoints between ladder prices: ``bisect`` on them gives the nearest tick."""


# ---------------------------------------------------------------------------------------- stats


@dataclass
class MarketInfo:
    """One market of the day, as planned and as it ended."""

    id: str
    event: str
    kind: str  # WIN, PLACE or MATCH_ODDS
    runners: tuple[int, ...]
    winners: int
    commission: int  # basis points
    bet_delay_ms: int
    in_play: bool = False
    result: tuple[int, ...] | None = None  # winning runner ids once settled
    status: str = "OPEN"  # as the generator left it: OPEN .. SETTLED or VOIDED

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "event": self.event, "kind": self.kind, "runners": len(self.runners),
            "winners": self.winners, "commission": self.commission / 100,
            "bet_delay_ms": self.bet_delay_ms, "in_play": self.in_play,
            "result": list(self.result) if self.result is not None else None,
            "status": self.status,
        }


@dataclass
class GeneratorStats:
    """What a run produced. Pass one to ``market_day(stats=...)``: the markets and accounts are
    filled before the first command, the counts as the commands go (the events are those of the
    generator's model exchange, i.e. what a matcher fed the same commands emits)."""

    seed: int = 0
    markets: list[MarketInfo] = field(default_factory=list)
    accounts: int = 0
    deposited: int = 0  # pence, set-up deposits and top-ups
    withdrawn: int = 0  # pence
    commands: dict[str, int] = field(default_factory=dict)  # by command type
    events: dict[str, int] = field(default_factory=dict)  # by event type
    rejections: dict[str, int] = field(default_factory=dict)  # by reason
    cancellations: dict[str, int] = field(default_factory=dict)  # order_cancelled by reason
    trades: int = 0
    matched: int = 0  # pence traded (backers' stakes)
    first_ts: int = 0
    last_ts: int = 0
    last_seq: int = 0
    live_orders: int = 0  # at the end
    elapsed: float = 0.0  # wall time from the first command to the last, consumer included
    house: int = 0  # commission collected, pence
    net_deposits: int = 0  # deposits minus withdrawals, pence

    @property
    def total(self) -> int:
        """Commands generated."""
        return sum(self.commands.values())

    @property
    def rejected(self) -> int:
        return sum(self.rejections.values())

    @property
    def rate(self) -> float:
        """Commands per second of wall time (the consumer's time included)."""
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "commands": self.total,
            "by_type": dict(sorted(self.commands.items(), key=lambda kv: -kv[1])),
            "events": dict(sorted(self.events.items(), key=lambda kv: -kv[1])),
            "trades": self.trades,
            "matched": self.matched / 100,
            "rejections": dict(sorted(self.rejections.items(), key=lambda kv: -kv[1])),
            "rejection_rate": self.rejected / self.total if self.total else 0.0,
            "cancellations": dict(sorted(self.cancellations.items(), key=lambda kv: -kv[1])),
            "markets": [m.as_dict() for m in self.markets],
            "accounts": self.accounts,
            "deposited": self.deposited / 100,
            "withdrawn": self.withdrawn / 100,
            "commission": self.house / 100,
            "live_orders": self.live_orders,
            "simulated_ms": self.last_ts - self.first_ts,
            "seconds": round(self.elapsed, 3),
            "commands_per_second": round(self.rate),
        }

    def summary(self) -> str:
        """A few lines for people."""
        d = self.as_dict()
        lines = [
            f"{d['commands']:,} commands in {d['seconds']} s ({d['commands_per_second']:,}/s), "
            f"seed {self.seed}, {self.accounts} accounts, {len(self.markets)} markets",
            "commands: " + ", ".join(f"{k} {v:,}" for k, v in d["by_type"].items()),
            f"trades: {self.trades:,} matching {self.matched / 100:,.2f}; "
            f"commission {self.house / 100:,.2f}",
            f"rejections: {self.rejected:,} ({d['rejection_rate']:.2%})"
            + (": " + ", ".join(f"{k} {v}" for k, v in d["rejections"].items())
               if self.rejections else ""),
            "cancellations: " + ", ".join(f"{k} {v:,}" for k, v in d["cancellations"].items()),
        ]
        for m in self.markets:
            result = ",".join(map(str, m.result)) if m.result else "-"
            lines.append(
                f"  {m.id} {m.event} {m.kind}: {len(m.runners)} runners, "
                f"{m.commission / 100:g}%, delay {m.bet_delay_ms} ms, "
                f"{'in-play, ' if m.in_play else ''}{m.status} {result}"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------- model


class _Market:
    """The generator's view of one market: fair prices and how busy it is."""

    __slots__ = (
        "id", "info", "event", "m", "n", "runners", "k", "walk", "bias", "fair", "rtable",
        "weight", "pmove", "sigma", "status", "in_play", "delay", "place", "win", "dirty",
        "moved", "base",
    )

    MOVE = 0.03  # chance, per order placed on the market, that its fair price moves first
    SIGMA = 0.04  # the size of a move: the sd of one step of the log-odds walk
    IN_PLAY_MOVE = 0.25  # MOVE, in-play
    IN_PLAY_SIGMA = 0.10  # SIGMA, in-play
    IN_PLAY_WEIGHT = 3.0  # an in-play market draws this many times the orders it drew before
    REVERSION = 0.002  # pull of each step of the walk back towards where it started
    RESULT_PULL = (7.0, 4.5, 3.0)  # in-play pull to the first three home (x progress squared)
    RUNNER_FLOOR = 0.05  # added to sqrt(probability) in the runner table: outsiders trade too

    def __init__(self, info: MarketInfo, event: _Event, probs: list[float]) -> None:
        self.id = info.id
        self.info = info
        self.event = event
        self.m: Any = None  # the model's Market, once created
        self.n = len(info.runners)
        self.runners = list(info.runners)
        self.k = info.winners
        self.walk = [math.log(p) for p in probs]  # log-odds random walk (WIN / MATCH_ODDS)
        self.base = list(self.walk)  # where the walk reverts to, slowly
        self.bias = [0.0] * self.n  # in-play pull towards the result
        self.fair: list[int] = [0] * self.n  # fair price as a ladder index
        self.rtable: list[int] = []
        self.weight = 1.0
        self.pmove = self.MOVE  # both larger in-play
        self.sigma = self.SIGMA
        self.status = "OPEN"
        self.in_play = False
        self.delay = info.bet_delay_ms
        self.place: list[_Market] = []  # PLACE markets priced from this WIN market
        self.win: _Market | None = None  # for a PLACE market: its WIN market
        self.dirty = False
        self.moved = 0  # count at the last PLACE re-pricing

    def weigh_runners(self) -> None:
        """Redraw the runner table: favourites draw more business than outsiders."""
        if self.win is not None:
            probs = [1.0 / (PRICES[t] / 100) for t in self.fair]
        else:
            probs = _win_probs(self)
        self.rtable = _table([math.sqrt(p) + self.RUNNER_FLOOR for p in probs], 64)

    def turn_in_play(self) -> None:
        """Busier, and its fair price moves more often and further."""
        self.in_play = True
        self.weight *= self.IN_PLAY_WEIGHT
        self.pmove = self.IN_PLAY_MOVE
        self.sigma = self.IN_PLAY_SIGMA
        self.weigh_runners()

    def move(self, bits: Callable[[int], int], steps: list[float], count: int) -> None:
        """One step of the fair-price walk of this market's WIN market (its own, unless it is a
        PLACE market), drawing with ``bits``; in-play pulled towards the result, the more so
        the nearer the finish (``count``: the command's position in the day)."""
        w = self.win or self
        i = w.rtable[bits(6)]
        walk = w.walk
        walk[i] += steps[bits(10)] * w.sigma + self.REVERSION * (w.base[i] - walk[i])
        if w.in_play:
            ev = w.event
            span = ev.end - ev.off
            prog = (count - ev.off) / span if span > 0 else 1.0
            prog = 0.0 if prog < 0 else (1.0 if prog > 1 else prog)
            pull = prog * prog
            bias = w.bias
            for rank, j in enumerate(ev.order[:3]):
                bias[j] = self.RESULT_PULL[rank] * pull
        _price_fair(w)


class _Event:
    """One event on the card: its markets, where in the day it goes off and finishes, and
    its result."""

    __slots__ = ("name", "kind", "markets", "void", "off", "end", "order", "off_ts", "end_ts")

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.markets: list[_Market] = []
        self.void = False
        self.off = 0
        self.end = 0
        self.order: list[int] = []  # finishing order (runner indices), drawn at the off
        self.off_ts = 0
        self.end_ts = 0

    def draw_result(self, rand: Callable[[], float]) -> list[int]:
        """The finishing order (runner indices), drawn at the off with ``rand`` from the fair
        probabilities then."""
        probs = _win_probs(self.markets[0])
        order: list[int] = []
        idx = list(range(len(probs)))
        while idx:
            ws = [probs[i] for i in idx]
            x = rand() * sum(ws)
            for j, w in zip(idx, ws):
                x -= w
                if x <= 0:
                    break
            order.append(j)
            idx.remove(j)
        return order


def _softmax(x: list[float]) -> list[float]:
    top = max(x)
    e = [math.exp(v - top) for v in x]
    s = sum(e)
    return [v / s for v in e]


def _harville(p: list[float], k: int) -> list[float]:
    """Probability of each runner finishing in the first ``k`` (k = 2 or 3), from win
    probabilities, by Harville's formula, in O(n^2)."""
    n = len(p)
    q = list(p)
    # second: j first, i second
    inv = [1.0 / (1.0 - x) if x < 1.0 - 1e-12 else 0.0 for x in p]
    s2 = sum(pj * r for pj, r in zip(p, inv))
    for i in range(n):
        q[i] += p[i] * (s2 - p[i] * inv[i])
    if k >= 3:
        # third: j first, s second, i third, with weight f[j][s] = p_j p_s / ((1-p_j)(1-p_j-p_s));
        # sum over pairs avoiding i = total - row i - column i
        total = 0.0
        row = [0.0] * n
        col = [0.0] * n
        for j in range(n):
            pj = p[j]
            rj = 1.0 - pj
            if rj <= 1e-12:
                continue
            for second in range(n):
                if second == j:
                    continue
                rjs = rj - p[second]
                if rjs <= 1e-12:
                    continue
                f = pj * p[second] / (rj * rjs)
                total += f
                row[j] += f
                col[second] += f
        for i in range(n):
            q[i] += p[i] * (total - row[i] - col[i])
    return [min(v, 0.999) for v in q]


def _tick(p: float) -> int:
    """The ladder index nearest to fair odds 1/p, kept off the ends of the ladder."""
    t = bisect_left(_MIDS, 100.0 / p) if p > 1e-9 else _TOP
    return 1 if t < 1 else (_TOP - 1 if t > _TOP - 1 else t)


def _price_fair(mk: _Market) -> None:
    """Recompute a market's fair ticks (and mark its PLACE markets for re-pricing)."""
    if mk.win is not None:
        mk.fair = [_tick(q) for q in _harville(_win_probs(mk.win), mk.k)]
        return
    probs = _win_probs(mk)
    mk.fair = [_tick(p) for p in probs]
    for pm in mk.place:
        pm.dirty = True


def _win_probs(mk: _Market) -> list[float]:
    return _softmax([w + b for w, b in zip(mk.walk, mk.bias)])


def _table(weights: list[float], size: int) -> list[int]:
    """A lookup table of ``size`` indices in proportion to ``weights`` (every one at least
    once when there is room), for picking with ``getrandbits``."""
    total = sum(weights)
    out: list[int] = []
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w
        upto = round(acc / total * size)
        out.extend([i] * max(upto - len(out), 1 if len(out) < size else 0))
    return out[:size] if len(out) >= size else out + [out[-1]] * (size - len(out))


# ---------------------------------------------------------------------------------- order prices


def _take_price(m: Any, i: int, f: int, back: int, x: int, tif: str, stake: int,
                m_fok: bool) -> tuple[int, str, int]:
    """An aggressive order's price on runner ``i`` of the model's market ``m`` (fair tick
    ``f``, random bits ``x``): the best price on offer if it is near the fair price, down to the
    fair price (a stale order far from it is picked off at once); a FOK for at most what the
    best level holds, unless it is meant not to fill (``m_fok``). Returns price, time in
    force, stake."""
    if back:
        best = m.lays[i].best
        if best and TICK[best] >= f - 3:
            t = TICK[best] - (x & 1) - ((x & 6) == 0)
            if t > f + 1:
                t = f + 1
            if tif == "FOK":
                t = TICK[best]
                if m_fok and x & 24 == 0:
                    pass  # may not fill: more than the best level holds
                else:
                    lvl_total = m.lays[i].levels[best].total
                    if stake > lvl_total:
                        stake = lvl_total
        else:
            t = f
            if tif == "FOK" and not m_fok:
                tif = "IOC"  # nothing there to fill it
        if t < 0:
            t = 0
    else:
        best = m.backs[i].best
        if best != NO_BACK and TICK[best] <= f + 3:
            t = TICK[best] + (x & 1) + ((x & 6) == 0)
            if t < f - 1:
                t = f - 1
            if tif == "FOK":
                t = TICK[best]
                if m_fok and x & 24 == 0:
                    pass
                else:
                    lvl_total = m.backs[i].levels[best].total
                    if stake > lvl_total:
                        stake = lvl_total
        else:
            t = f + 1
            if tif == "FOK" and not m_fok:
                tif = "IOC"
        if t > _TOP:
            t = _TOP
    return PRICES[t], tif, stake


def _replace_price(o: Any, f: int, off: int, a: Any) -> int:
    """The new price of resting order ``o`` (fair tick ``f``): ``off`` ticks off the fair
    price, not the order's own price; its own price if its owner (account ``a``) cannot
    afford to lay at the new one (then it is cancelled instead)."""
    lvl = o.level
    old = lvl.price
    if lvl.side.side == "BACK":
        t = f + 1 + off
        if t > _TOP:
            t = _TOP
        p = PRICES[t]
        if p == old:
            t = t - 1 if t > f + 1 else (t + 1 if t < _TOP else t - 1)
            p = PRICES[t]
    else:
        t = f - off
        if t < 0:
            t = 0
        p = PRICES[t]
        if p == old:
            p = PRICES[t + 1] if t < f else PRICES[t - 1 if t > 0 else 1]
        if p > old:
            rem = o.remaining
            extra = lay_liability(rem, p) - lay_liability(rem, old)
            if extra > a.balance - a.exposure:
                p = old  # cannot afford to move it up: cancel it instead
    return p
