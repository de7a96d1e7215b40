"""A seeded, realistic "market day" as core command tuples: ``exch demo`` and ``exch load``.

``market_day(seed=..., markets=..., accounts=..., commands=...)`` yields command tuples in the
core's internal form, ``(type, seq, ts, field, ...)`` exactly as ``exchange.commands.decode``
makes them, with ``seq`` numbered from ``seq0`` (1) and ``ts`` a simulated clock in ms. They can
go straight into ``Exchange.apply``, or out through ``to_json`` / ``to_wire`` for submission.

The day
-------
- A race card: markets grouped in events that go off one after another. A horse race has a
  WIN market (5 to 10 runners) and, now and then, a PLACE market on the same runners (2 winners,
  3 with eight runners or more); a football match has a 3-way MATCH_ODDS market (5 s bet delay);
  a tennis match a 2-way one (2% commission, 3 s delay). Market ids are Betfair-like:
  "1.2000001", "1.2000002", ...; runner ids are selection-id-like integers.
- Accounts ("acct-0000", ...) are funded first with round deposits of a skewed size: most
  between 10 and 500 pounds, a few whales with tens or hundreds of thousands. During the day a
  few top up and a few withdraw (never more than they have available).
- Each runner has a fair probability: a random walk on log-odds, normalised per market so the
  probabilities sum to 1 (to the number of winners for a PLACE market, from the WIN market's
  probabilities by Harville's formula). Moves are more frequent and larger in-play, where the
  walk is also pulled towards the result drawn at the off, so the winner shortens towards 1.01.
- Orders: mostly passive GTC orders resting a few ticks off the fair price on both sides,
  behind the best price on the other side (a mix of LAPSE and PERSIST, some with client refs);
  some aggressive orders taking the best price on offer when it is near the fair price (GTC,
  IOC sometimes, FOK rarely), down to the fair price, so orders left behind by a move of the
  price are picked off; full and partial cancels, and replaces back towards the fair price, of
  orders that are live in the generator's own model exchange, owned by the account that
  cancels them and in an open market; the busier the books, the more cancels. Stakes are whole
  pence with a long tail (many small, few large; round pounds mostly), scaled to each
  account's bankroll and capped by what it has available, so orders are not refused.
- Lifecycle: every market opens at its creation; markets are suspended briefly now and then
  (SUSPENDED, then OPEN again); at the off each event's markets are suspended, turned in-play
  (LAPSE orders lapse), reopened, traded with the bet delay (orders wait it out: the clock moves
  on and later commands release them; a ``heartbeat`` is sequenced when the clock passes a
  release time by a quarter of a second with nothing sent, as the journal would), suspended
  perhaps once during the event (orders still waiting are cancelled), and at the finish
  suspended, closed and settled with the result drawn from the fair probabilities at the off.
  With ``voids`` (one by default when there are three events or more) an event is abandoned
  at its off instead: suspended, closed and voided. The last command settles the last event.

Deliberate rejections (scaled by ``mistakes``, 1.0 by default; 0 makes a stream that is
never refused): an order arriving just after a suspension (``MARKET_NOT_OPEN``), a cancel of an
order that has just been matched or cancelled (``UNKNOWN_ORDER``, the client did not see it
go), an account reaching beyond its funds (``INSUFFICIENT_FUNDS``), a stake under the 1.00
minimum (``BELOW_MIN_STAKE``), and a fill-or-kill that does not fill (``FOK_NOT_FILLED``). Never
``MALFORMED``, ``NOT_OWNER``, ``DUPLICATE_REF`` or ``INVALID_PRICE``: every command passes
``exchange.commands.problem`` and so ``exch submit``.

Size and speed: exactly ``commands`` commands (set-up, lifecycle and heartbeats included), made
lazily; memory is bounded by the live state (open markets, resting orders, accounts), not by
the number of commands, except for the client refs the model exchange remembers (``refs``
sets how often they are used). The generator applies every command to its model ``Exchange``
(about half of its time) and still makes some 130,000 commands a second on one core.

Feeding the stream to a journal that numbers commands itself: order ids are the seq of the
placing command, so cancels and replaces name the generator's seqs. Start at the journal's
next seq with ``seq0``, and if anything else is sequenced in between (heartbeats), translate
with ``tools.sources.load.OrderIds`` (``tools.sources.load.send`` does it all). ``ts`` is
replaced by the journal's clock, so in-play releases happen at other moments there and a few
cancels may find their order already gone.
"""

from __future__ import annotations

import math
import random
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from exchange import Exchange
from exchange.book import NO_BACK
from exchange.units import PRICES, TICK

Command = tuple[Any, ...]

TS0 = 1_717_232_400_000
"""Default start of the day: 2024-06-01 09:00:00 UTC, in ms."""

_TOP = len(PRICES) - 1
_MIDS = [(a + b) / 2 for a, b in zip(PRICES, PRICES[1:])]
"""Midpoints between ladder prices: ``bisect`` on them gives the nearest tick."""

HEARTBEAT_IDLE_MS = 250
"""A heartbeat is sequenced when an order's release time has passed by this much unsent."""


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
        self.pmove = 0.03
        self.sigma = 0.04
        self.status = "OPEN"
        self.in_play = False
        self.delay = info.bet_delay_ms
        self.place: list[_Market] = []  # PLACE markets priced from this WIN market
        self.win: _Market | None = None  # for a PLACE market: its WIN market
        self.dirty = False
        self.moved = 0  # count at the last PLACE re-pricing


class _Event:
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


# ---------------------------------------------------------------------------------------- plan

_PATTERN = (("horse", True), ("football", False), ("tennis", False), ("horse", False),
            ("horse", True), ("tennis", False), ("football", False), ("horse", False))
_COURSES = ("Ascot", "Epsom", "York", "Newmarket", "Goodwood", "Cheltenham", "Haydock", "Sandown")
_TEAMS = ("Arsenal", "Chelsea", "Leeds", "Everton", "Fulham", "Burnley", "Wolves", "Spurs")


def _plan(rng: random.Random, markets: int, market_base: int, voids: int) -> list[_Event]:
    """Events and their markets: a race card following ``_PATTERN``."""
    events: list[_Event] = []
    made = 0
    e = 0
    while made < markets:
        kind, with_place = _PATTERN[e % len(_PATTERN)]
        left = markets - made
        if kind == "horse":
            n = rng.randint(5, 10)
            ev = _Event(f"{_COURSES[e % len(_COURSES)]} race {e + 1}", kind)
            strength = [rng.lognormvariate(0, 0.8) for _ in range(n)]
            total = sum(strength)
            probs = [s / total for s in strength]
            runners = tuple(sorted(rng.sample(range(10_000_000, 40_000_000), n)))
            specs = [("WIN", 1, probs)]
            if with_place and left >= 2:
                specs.append(("PLACE", 2 if n <= 7 else 3, probs))
            commission, delay = 500, 1000
        elif kind == "football":
            home, away = rng.sample(_TEAMS, 2)
            ev = _Event(f"{home} v {away}", kind)
            ph = rng.uniform(0.25, 0.55)
            pd = rng.uniform(0.22, 0.30)
            probs = [ph, 1 - ph - pd, pd]
            a, b = rng.sample(range(40_000, 60_000), 2)
            runners = (a, b, 58805)  # 58805: Betfair's selection id of "The Draw"
            specs = [("MATCH_ODDS", 1, probs)]
            commission, delay = 500, 5000
        else:
            ev = _Event(f"Tennis match {e + 1}", kind)
            p = rng.uniform(0.2, 0.8)
            probs = [p, 1 - p]
            runners = tuple(rng.sample(range(2_000_000, 9_000_000), 2))
            specs = [("MATCH_ODDS", 1, probs)]
            commission, delay = 200, 3000
        for label, winners, pr in specs:
            made += 1
            info = MarketInfo(f"1.{market_base + made - 1}", ev.name, label, runners, winners,
                              commission, delay)
            mk = _Market(info, ev, pr)
            mk.weight = {"WIN": 1.0, "PLACE": 0.35, "MATCH_ODDS": 0.8}[label]
            ev.markets.append(mk)
        if len(ev.markets) == 2:
            ev.markets[1].win = ev.markets[0]
            ev.markets[0].place.append(ev.markets[1])
        events.append(ev)
        e += 1
    # Abandoned events: never the first (it always goes in-play) nor the last (it ends the day).
    candidates = list(range(1, len(events) - 1))
    for i in sorted(rng.sample(candidates, min(voids, len(candidates)))):
        events[i].void = True
    return events


# ---------------------------------------------------------------------------------------- tables


def _tables(rng: random.Random) -> tuple[list[float], list[int], list[int], list[float]]:
    """Lookup tables drawn once per run: exponential gaps (mean 1), passive offsets in ticks,
    stake multipliers in percent of an account's unit, and normal price steps (sd 1)."""
    gaps = [rng.expovariate(1.0) for _ in range(4096)]
    offsets = [min(int(rng.expovariate(0.55)), 12) for _ in range(256)]
    mults = [max(4, int(rng.lognormvariate(math.log(60), 1.0))) for _ in range(1024)]
    steps = [rng.gauss(0, 1) for _ in range(1024)]
    return gaps, offsets, mults, steps


_DEPOSITS = (1000, 2000, 2500, 5000, 5000, 10000, 10000, 10000, 20000, 20000, 25000, 50000,
             50000, 100000, 200000)
_WHALES = (1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000)
_TOPUPS = (1000, 2000, 5000, 10000, 20000)


def minimum_commands(markets: int = 4, accounts: int = 300) -> int:
    """The smallest ``commands`` that fits the set-up, the lifecycle and some trading."""
    return markets + accounts + markets * 16 + 40 * markets + 200


# ---------------------------------------------------------------------------------------- the day


def market_day(
    *,
    seed: int = 1,
    markets: int = 4,
    accounts: int = 300,
    commands: int = 50_000,
    ts0: int = TS0,
    seq0: int = 1,
    voids: int = 1,
    refs: float = 0.08,
    mistakes: float = 1.0,
    market_base: int = 2000001,
    ref_prefix: str = "",
    stats: GeneratorStats | None = None,
) -> Iterator[Command]:
    """Exactly ``commands`` command tuples of a seeded market day (see the module docstring).

    ``seed`` fixes everything; ``markets`` (1 or more) and ``accounts`` (1 or more) size the day;
    ``ts0`` is the first command's time (ms) and ``seq0`` its seq; ``voids`` events are
    abandoned (voided) when there are at least three events; ``refs`` is the share of orders
    that carry a client ref; ``mistakes`` scales the deliberate rejections (0: none);
    ``market_base`` numbers the market ids ("1.<market_base>" on) and ``ref_prefix`` starts
    every client ref, so that a second run into the same journal does not collide with the
    first. With ``stats``, fills in a ``GeneratorStats`` as it goes. Raises ``ValueError`` at
    once (not lazily) if ``commands`` is below ``minimum_commands(markets, accounts)``.
    """
    if markets < 1 or accounts < 1:
        raise ValueError("markets and accounts must be at least 1")
    need = minimum_commands(markets, accounts)
    if commands < need:
        raise ValueError(
            f"{commands} commands is too few for {markets} markets and {accounts} accounts "
            f"(at least {need})"
        )
    if seq0 < 1:
        raise ValueError("seq0 must be at least 1")
    return _market_day(seed, markets, accounts, commands, ts0, seq0, voids, refs, mistakes,
                       market_base, ref_prefix, stats)


def _market_day(
    seed: int, n_markets: int, n_accounts: int, N: int, ts0: int, seq0: int, voids: int,
    ref_share: float, mistakes: float, market_base: int, ref_prefix: str,
    stats: GeneratorStats | None,
) -> Iterator[Command]:
    started = time.perf_counter()
    rng = random.Random(seed)
    events = _plan(rng, n_markets, market_base, voids)
    mks = [mk for ev in events for mk in ev.markets]
    by_id = {mk.id: mk for mk in mks}
    GAPS, OFFS, MULTS, STEPS = _tables(rng)

    # Accounts: bankrolls, stake units, activity weights.
    width = max(4, len(str(n_accounts - 1)))
    names = [f"acct-{i:0{width}d}" for i in range(n_accounts)]
    deposits = []
    for _ in range(n_accounts):
        if rng.random() < 0.02:
            deposits.append(rng.choice(_WHALES))
        else:
            deposits.append(rng.choice(_DEPOSITS))
    units = [max(100, d // 50) for d in deposits]  # a typical stake: 2% of the bankroll
    activity = [rng.lognormvariate(0, 1.0) * (3.0 if d >= 1_000_000 else 1.0) for d in deposits]
    ATABLE = _table(activity, 4096)

    # Where things happen, by command position (0-based count of commands emitted).
    setup = n_markets + n_accounts
    F = N - setup  # the rest: order flow, lifecycle, heartbeats
    R = len(events)
    pre = 0.40
    slot = (1.0 - pre) / R
    g = max(2, F // 2500)  # spacing between the steps of an event's off and finish
    sched: list[tuple[int, int, str, Any]] = []  # (position, tiebreak, action, market)
    tb = 0

    def at(pos: float, action: str, mk: Any) -> None:
        nonlocal tb
        tb += 1
        sched.append((int(pos), tb, action, mk))

    ts_off = ts0 + 2 * 3600_000  # the first off, two hours after the markets open
    between = 60_000 * min(25, max(2, 300 // R))  # from one event's finish to the next off
    milestones: list[tuple[int, int]] = []
    for e, ev in enumerate(events):
        ms = ev.markets
        nm = len(ms)
        off = setup + F * (pre + e * slot)
        ev.off = int(off)
        ev.off_ts = ts_off
        inplay_ms = {"horse": 300_000, "football": 1_200_000, "tennis": 900_000}[ev.kind]
        if ev.void:
            for mk in ms:
                at(off, "suspend_off", mk)
            for mk in ms:
                at(off + g, "close", mk)
            for mk in ms:
                at(off + 2 * g, "void", mk)
            ev.end = ev.off
            milestones.append((ev.off, ts_off))
            ts_off += between
        else:
            last = e == R - 1
            end = N - 3 * nm if last else off + F * slot * 0.45
            ev.end = int(end)
            ev.end_ts = ts_off + inplay_ms
            for j, mk in enumerate(ms):
                at(off + j, "suspend_off", mk)
            for j, mk in enumerate(ms):
                at(off + g + j, "in_play", mk)
            for j, mk in enumerate(ms):
                at(off + 2 * g + j, "open", mk)
            if rng.random() < 0.5:
                # an incident in running: suspended for a moment
                s = off + (end - off) * rng.uniform(0.3, 0.6)
                for j, mk in enumerate(ms):
                    at(s + j, "suspend", mk)
                for j, mk in enumerate(ms):
                    at(s + 2 * g + j, "open", mk)
            if last:
                for j, mk in enumerate(ms):
                    at(N - 3 * nm + j, "suspend_end", mk)
                    at(N - 2 * nm + j, "close", mk)
                    at(N - nm + j, "settle", mk)
            else:
                for j, mk in enumerate(ms):
                    at(end + j, "suspend_end", mk)
                for j, mk in enumerate(ms):
                    at(end + g + j, "close", mk)
                for j, mk in enumerate(ms):
                    at(end + 2 * g + j, "settle", mk)
            milestones.append((ev.off, ts_off))
            milestones.append((ev.end, ev.end_ts))
            ts_off = ev.end_ts + (2 * 60_000 if last else between)
        # brief suspensions before the off, one or two per market
        for mk in ms:
            lo = setup + F * 0.02
            for _ in range(rng.choice((1, 1, 2))):
                span = max(2, int(F * rng.uniform(0.001, 0.004)))
                hi = off - span - 4 * g
                if hi <= lo:
                    break
                s = rng.uniform(lo, hi)
                at(s, "suspend", mk)
                at(s + span, "open", mk)
                lo = s + span + g
    sched.sort()
    # Distinct positions in [setup, N), order kept, the last event's settlement last.
    pos = [p for p, _, _, _ in sched]
    for i in range(1, len(pos)):
        if pos[i] <= pos[i - 1]:
            pos[i] = pos[i - 1] + 1
    pos[-1] = min(pos[-1], N - 1)
    for i in range(len(pos) - 2, -1, -1):
        if pos[i] >= pos[i + 1]:
            pos[i] = pos[i + 1] - 1
    assert pos[0] >= setup, "schedule does not fit"
    actions = [(p, a, mk) for p, (_, _, a, mk) in zip(pos, sched)]
    milestones.append((N, ts_off))
    milestones = sorted(set(milestones))

    if stats is not None:
        stats.seed = seed
        stats.markets = [mk.info for mk in mks]
        stats.accounts = n_accounts
        stats.first_ts = ts0
    collect = stats is not None
    ccount: dict[str, int] = defaultdict(int)
    ecount: dict[str, int] = defaultdict(int)
    rcount: dict[str, int] = defaultdict(int)
    xcount: dict[str, int] = defaultdict(int)
    trades = 0
    matched = 0

    model = Exchange()
    apply = model.apply
    get_order = model.order
    next_wakeup = model.next_wakeup
    rand = rng.random
    bits = rng.getrandbits
    seq = seq0 - 1
    ts = ts0
    count = 0
    cmd: Command

    def note(cmd: Command, out: list) -> None:
        nonlocal trades, matched
        ccount[cmd[0]] += 1
        for e in out:
            t = e[0]
            ecount[t] += 1
            if t == "trade":
                trades += 1
                matched += e[6]
            elif t == "order_cancelled":
                xcount[e[10]] += 1
            elif t == "order_rejected":
                rcount[e[7]] += 1

    deposited = 0
    withdrawn = 0

    def finish() -> None:
        if stats is None:
            return
        stats.commands = dict(ccount)
        stats.events = dict(ecount)
        stats.rejections = dict(rcount)
        stats.cancellations = dict(xcount)
        stats.trades = trades
        stats.matched = matched
        stats.last_ts = ts
        stats.last_seq = seq
        stats.live_orders = model.live_orders
        stats.house = model.house
        stats.net_deposits = model.net_deposits
        stats.elapsed = time.perf_counter() - started
        for mk in mks:
            mk.info.status = mk.m.status if mk.m is not None else "PLANNED"
            mk.info.in_play = mk.in_play

    try:
        # ----------------------------------------------------------------- set-up
        for mk in mks:
            _price_fair(mk)
            info = mk.info
            seq += 1
            if count:
                ts += int(GAPS[bits(12)] * 20)
            cmd = ("create_market", seq, ts, info.id, info.runners, info.commission, 100,
                   info.winners, info.bet_delay_ms)
            out = apply(cmd)
            if collect:
                note(cmd, out)
            count += 1
            mk.m = model.market(info.id)
            yield cmd
        accts: list[Any] = []  # the model's Account objects, by account index
        for name, amount in zip(names, deposits):
            seq += 1
            ts += int(GAPS[bits(12)] * 20)
            cmd = ("deposit", seq, ts, name, amount)
            out = apply(cmd)
            if collect:
                note(cmd, out)
            count += 1
            accts.append(model.account(name))
            yield cmd
        deposited = sum(deposits)
        if stats is not None:
            stats.deposited = deposited

        # ----------------------------------------------------------------- the order flow
        open_mks: list[_Market] = []
        MTABLE: list[_Market] = []

        def rebuild() -> None:
            nonlocal open_mks, MTABLE
            open_mks = [mk for mk in mks if mk.status == "OPEN"]
            MTABLE = [open_mks[i] for i in _table([mk.weight for mk in open_mks], 256)] \
                if open_mks else []

        def runner_table(mk: _Market) -> None:
            # favourites draw more business than outsiders
            if mk.win is not None:
                probs = [1.0 / (PRICES[t] / 100) for t in mk.fair]
            else:
                probs = _win_probs(mk)
            mk.rtable = _table([math.sqrt(p) + 0.05 for p in probs], 64)

        for mk in mks:
            runner_table(mk)
        rebuild()

        live: list[int] = []  # ids of orders that may be resting; pruned as they are picked
        owners: list[int] = []  # their accounts (index), in step
        dead: tuple[int, int] | None = None  # an order just found gone, and its owner
        late: _Market | None = None  # a market just suspended: a late order may arrive
        watch = False  # some open market is in-play with a bet delay
        target = 1  # resting orders the market would settle at
        p_cancel: float = 0.2
        ref_n = 0
        track = -1  # the account of an order to remember as live once applied, or -1
        p_ref = ref_share
        m_late = 0.5 * mistakes
        m_stale = 0.005 * mistakes
        m_over = 0.02 * mistakes
        small_above = 1.0 - 0.0004 * mistakes
        m_fok = mistakes > 0

        seg = 0  # current time segment
        seg_end, seg_ts = milestones[0]
        mean_gap = (seg_ts - ts) / max(1, seg_end - setup)
        GAPT = [int(x * mean_gap + 0.5) for x in GAPS]  # gaps in ms for this stretch of the day
        ai_next = 0
        next_pos, next_action, next_mk = actions[0]
        ai_len = len(actions)

        def lifecycle(action: str, mk: _Market) -> Command:
            nonlocal late, watch
            ev = mk.event
            if action == "suspend_off" and not ev.order:
                # the result is drawn at the off from the fair probabilities then
                probs = _win_probs(ev.markets[0])
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
                ev.order = order
            if action in ("suspend_off", "suspend", "suspend_end"):
                mk.status = "SUSPENDED"
                if rand() < m_late:
                    late = mk
                body: tuple = ("market_status", mk.id, "SUSPENDED")
            elif action == "open":
                mk.status = "OPEN"
                body = ("market_status", mk.id, "OPEN")
            elif action == "close":
                mk.status = "CLOSED"
                body = ("market_status", mk.id, "CLOSED")
            elif action == "in_play":
                mk.in_play = True
                mk.weight *= 3.0
                mk.pmove = 0.25
                mk.sigma = 0.10
                runner_table(mk)
                body = ("turn_in_play", mk.id)
            elif action == "settle":
                k = mk.k
                winners = tuple(mk.runners[i] for i in ev.order[:k])
                mk.info.result = winners
                mk.status = "SETTLED"
                body = ("settle", mk.id, winners)
            elif action == "void":
                mk.status = "VOIDED"
                mk.info.result = ()
                body = ("void", mk.id)
            else:  # pragma: no cover
                raise AssertionError(action)
            rebuild()
            watch = any(x.in_play and x.delay and x.status == "OPEN" for x in mks)
            return body

        def move(mk: _Market) -> None:
            """One step of the fair-price walk (more when in-play, pulled towards the result)."""
            w = mk.win or mk
            i = w.rtable[bits(6)]
            walk = w.walk
            walk[i] += STEPS[bits(10)] * w.sigma + 0.002 * (w.base[i] - walk[i])
            if w.in_play:
                ev = w.event
                span = ev.end - ev.off
                prog = (count - ev.off) / span if span > 0 else 1.0
                prog = 0.0 if prog < 0 else (1.0 if prog > 1 else prog)
                pull = prog * prog
                bias = w.bias
                for rank, j in enumerate(ev.order[:3]):
                    bias[j] = (7.0, 4.5, 3.0)[rank] * pull
            _price_fair(w)

        while count < N:
            if count >= seg_end:
                if ts < seg_ts:
                    ts = seg_ts
                seg += 1
                if seg < len(milestones):
                    seg_end, seg_ts = milestones[seg]
                    mean_gap = (seg_ts - ts) / max(1, seg_end - count)
                    if mean_gap < 0:
                        mean_gap = 0.0
                    GAPT = [int(x * mean_gap + 0.5) for x in GAPS]
                else:
                    seg_end = N + 1
            if count >= next_pos:
                # ------------------------------------------------ lifecycle
                body = lifecycle(next_action, next_mk)
                seq += 1
                ts += GAPT[bits(12)]
                cmd = (body[0], seq, ts) + body[1:]
                out = apply(cmd)
                if collect:
                    note(cmd, out)
                count += 1
                ai_next += 1
                if ai_next < ai_len:
                    next_pos, next_action, next_mk = actions[ai_next]
                else:
                    next_pos = N + 1
                yield cmd
                continue
            # the clock moves on only with a command: ``now`` is this one's time
            now = ts + GAPT[bits(12)]
            seq += 1
            if watch:
                w = next_wakeup()
                if w is not None and w + HEARTBEAT_IDLE_MS <= now:
                    cmd = ("heartbeat", seq, w)
                    ts = w
                    out = apply(cmd)
                    if collect:
                        note(cmd, out)
                    count += 1
                    yield cmd
                    continue
            if (count & 255) == 0:
                # cancel more when the books are deeper than the markets would carry
                target = sum(mk.n for mk in open_mks) * 40 + 1
                p_cancel = 0.12 * model.live_orders / target
                if p_cancel > 0.45:
                    p_cancel = 0.45
                elif p_cancel < 0.02:
                    p_cancel = 0.02
            r = rand()

            if late is not None:
                # an order that arrives just after the market was suspended
                mk = late
                late = None
                ai = ATABLE[bits(12)]
                i = mk.rtable[bits(6)]
                cmd = ("place", seq, now, names[ai], mk.id, mk.runners[i], "BACK",
                       PRICES[mk.fair[i] + 1], units[ai], "GTC", "LAPSE", None)
            elif r < p_cancel:
                # ------------------------------------------------ cancel / reduce / replace
                o = None
                while live:
                    k = int(rand() * len(live))
                    oid = live[k]
                    own = owners[k]
                    live[k] = live[-1]
                    owners[k] = owners[-1]
                    live.pop()
                    owners.pop()
                    o = get_order(oid)
                    if o is not None:
                        break
                    dead = (oid, own)
                if o is None:
                    seq -= 1
                    continue
                if o.pos.market.status != "OPEN":
                    # not now: keep it for later
                    live.append(oid)
                    owners.append(own)
                    seq -= 1
                    continue
                if dead is not None and rand() < m_stale:
                    # the client cancels an order it has not yet seen matched
                    live.append(oid)
                    owners.append(own)
                    cmd = ("cancel", seq, now, names[dead[1]], dead[0], None)
                    dead = None
                else:
                    x = r / p_cancel
                    account = names[own]
                    if x < 0.62:
                        cmd = ("cancel", seq, now, account, oid, None)
                    elif x < 0.77:
                        rem = o.remaining
                        red = rem // 2 if rem >= 400 else rem // 3
                        if red < 1 or red >= rem:
                            cmd = ("cancel", seq, now, account, oid, None)
                        else:
                            if red >= 200:
                                red -= red % 100
                            cmd = ("cancel", seq, now, account, oid, red)
                            live.append(oid)
                            owners.append(own)
                    else:
                        # move it back to a few ticks off the fair price
                        lvl = o.level
                        side = lvl.side
                        mk = by_id[side.market.id]
                        old = lvl.price
                        f = mk.fair[side.ridx]
                        off = OFFS[bits(8)]
                        if side.side == "BACK":
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
                                extra = rem * (p - 100) // 100 - rem * (old - 100) // 100
                                a = accts[own]
                                if extra > a.balance - a.exposure:
                                    p = old  # cannot afford to move it up: cancel it instead
                        if p == old:
                            cmd = ("cancel", seq, now, account, oid, None)
                        else:
                            cmd = ("replace", seq, now, account, oid, p)
                            track = own
            elif r < p_cancel + 0.003:
                # ------------------------------------------------ money in and out
                ai = ATABLE[bits(12)]
                a = accts[ai]
                avail = a.balance - a.exposure
                if r < p_cancel + 0.0015 or avail < 1000:
                    amount = _TOPUPS[bits(8) % 5] * (100 if deposits[ai] >= 1_000_000 else 1)
                    cmd = ("deposit", seq, now, names[ai], amount)
                    deposited += amount
                else:
                    amount = (avail * (1 + bits(2)) // 4) // 100 * 100
                    if amount < 100:
                        seq -= 1
                        continue
                    cmd = ("withdraw", seq, now, names[ai], amount)
                    withdrawn += amount
            else:
                # ------------------------------------------------ place
                if not MTABLE:
                    cmd = ("heartbeat", seq, now)  # nothing is open: time passes
                    ts = now
                    out = apply(cmd)
                    if collect:
                        note(cmd, out)
                    count += 1
                    yield cmd
                    continue
                # one draw of random bits for the market, runner, account, stake, side, offset
                x = bits(30)
                mk = MTABLE[x & 255]
                if mk.dirty and count - mk.moved > 100:
                    mk.dirty = False
                    mk.moved = count
                    _price_fair(mk)
                y = rand()
                if y < mk.pmove:
                    move(mk)
                    y = rand()
                m = mk.m
                i = mk.rtable[(x >> 8) & 63]
                f = mk.fair[i]
                ai = ATABLE[x >> 18]
                a = accts[ai]
                avail = a.balance - a.exposure
                x = bits(30)
                stake = units[ai] * MULTS[x & 1023] // 100
                if stake >= 1000 and x & 3072:
                    stake -= stake % 100
                elif stake < 100:
                    stake = 100
                back = x & 4096
                x >>= 13
                tif = "GTC"
                if y < 0.85:
                    # passive: rest a few ticks off the fair price, behind the best price on the
                    # other side when that is near (if it is far, the price has moved away from
                    # orders left behind: this order takes them, to their owners' cost)
                    if back:
                        t = f + 1 + OFFS[x & 255]
                        if t > _TOP:
                            t = _TOP
                        p = PRICES[t]
                        best = m.lays[i].best
                        if p <= best:
                            t = TICK[best] + 1
                            if t <= f + 4 and t <= _TOP:
                                p = PRICES[t]
                    else:
                        t = f - OFFS[x & 255]
                        if t < 0:
                            t = 0
                        p = PRICES[t]
                        best = m.backs[i].best
                        if p >= best:
                            t = TICK[best] - 1
                            if t >= f - 4 and t >= 0:
                                p = PRICES[t]
                else:
                    # aggressive: take the best price on offer if it is near the fair price
                    if y > 0.996:
                        tif = "FOK"
                    elif y > 0.95:
                        tif = "IOC"
                    # (down to the fair price: a stale order far from it is picked off at once)
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
                    p = PRICES[t]
                if back:
                    liability = stake
                else:
                    liability = stake * (p - 100) // 100
                    cap = units[ai] * 25  # nobody lays a long shot for the whole bankroll
                    if liability > cap:
                        stake = cap * 100 // (p - 100)
                        liability = stake * (p - 100) // 100
                if liability > avail:
                    if rand() < m_over:
                        pass  # reaches beyond its funds: refused
                    elif back:
                        stake = avail
                    else:
                        stake = avail * 100 // (p - 100)
                if r > small_above and avail >= 50:
                    stake = 50  # fifty pence: under the minimum stake, refused
                elif stake < 100:
                    seq -= 1
                    continue
                if p_ref and rand() < p_ref:
                    ref_n += 1
                    ref = f"{ref_prefix}r{ref_n}"
                else:
                    ref = None
                cmd = ("place", seq, now, names[ai], mk.id, mk.runners[i],
                       "BACK" if back else "LAY", p, stake, tif,
                       "PERSIST" if x & 0xC000 == 0 else "LAPSE", ref)
                if tif == "GTC":
                    track = ai
            ts = now
            out = apply(cmd)
            if track >= 0:
                # an order that may rest (not one that traded in full at once): a later cancel
                # or replace may pick it
                if get_order(seq) is not None:
                    live.append(seq)
                    owners.append(track)
                track = -1
            if collect:
                note(cmd, out)
            count += 1
            yield cmd
    finally:
        # also when the consumer stops early (the iterator is closed or collected)
        if stats is not None:
            stats.deposited = deposited
            stats.withdrawn = withdrawn
        finish()


__all__ = ["GeneratorStats", "MarketInfo", "TS0", "market_day", "minimum_commands"]
