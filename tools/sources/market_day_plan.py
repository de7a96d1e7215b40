"""The plan of a market day: everything ``tools.sources.market_day`` draws before its first
command. ``_Plan(rng, ...)`` draws, in this order (the order of the draws fixes the stream):

1. the race card (``_Plan._race_card``): events following ``_PATTERN``, each with its markets
   and their runners' starting probabilities, and the events that will be abandoned;
2. the lookup tables (``_tables``): gaps, passive offsets, stake multipliers, price steps;
3. the accounts (``_Plan._accounts``): names, first deposits, stake units, how busy each is;
4. the schedule (``_Plan._schedule``): at which command position each lifecycle step happens
   (suspensions, the offs, in-play, the finishes, settlements, voids), and the milestones the
   simulated clock keeps to (the off and the finish of every event, in ms).
"""

from __future__ import annotations

import math
import random
from typing import Any

from tools.sources.market_day_model import MarketInfo, _Event, _Market, _table

_PATTERN = (("horse", True), ("football", False), ("tennis", False), ("horse", False),
            ("horse", True), ("tennis", False), ("football", False), ("horse", False))
_COURSES = ("Ascot", "Epsom", "York", "Newmarket", "Goodwood", "Cheltenham", "Haydock", "Sandown")
_TEAMS = ("Arsenal", "Chelsea", "Leeds", "Everton", "Fulham", "Burnley", "Wolves", "Spurs")

_DEPOSITS = (1000, 2000, 2500, 5000, 5000, 10000, 10000, 10000, 20000, 20000, 25000, 50000,
             50000, 100000, 200000)
_WHALES = (1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000)
_TOPUPS = (1000, 2000, 5000, 10000, 20000)
WHALE = 1_000_000
"""A first deposit of this much (pence) or more makes a whale."""


def _tables(rng: random.Random) -> tuple[list[float], list[int], list[int], list[float]]:
    """Lookup tables drawn once per run: exponential gaps (mean 1), passive offsets in ticks,
    stake multipliers in percent of an account's unit, and normal price steps (sd 1)."""
    gaps = [rng.expovariate(1.0) for _ in range(4096)]
    offsets = [min(int(rng.expovariate(0.55)), 12) for _ in range(256)]
    mults = [max(4, int(rng.lognormvariate(math.log(60), 1.0))) for _ in range(1024)]
    steps = [rng.gauss(0, 1) for _ in range(1024)]
    return gaps, offsets, mults, steps


class _Plan:
    """Everything drawn before the first command (see the module docstring)."""

    # the race card
    RUNNERS = (5, 10)  # fewest and most runners in a horse race
    STRENGTH_SD = 0.8  # sd of a horse's log-strength: how far the favourites stand out
    HOME_WIN = (0.25, 0.55)  # range of a football match's home-win probability
    DRAW = (0.22, 0.30)  # range of a football match's draw probability
    TENNIS = (0.2, 0.8)  # range of a tennis match's first player's probability of winning
    WEIGHT = {"WIN": 1.0, "PLACE": 0.35, "MATCH_ODDS": 0.8}  # share of the orders, by kind
    # the accounts
    WHALE_SHARE = 0.02  # share of accounts that are whales (tens or hundreds of thousands)
    WHALE_ACTIVITY = 3.0  # a whale trades this many times as often as its draw says
    STAKE_UNIT = 50  # an account's typical stake: its bankroll over this (2%), at least 1.00
    # the schedule, in shares of the flow (the commands after the set-up)
    PRE_OFF = 0.40  # share of the flow before the first off (the events share the rest evenly)
    IN_PLAY = 0.45  # share of an event's slot it is in-play (the rest leads to the next off)
    INCIDENT = 0.5  # chance of a suspension in running ...
    INCIDENT_AT = (0.3, 0.6)  # ... this far into the in-play stretch (range of shares)
    BRIEF_COUNT = (1, 1, 2)  # brief suspensions of a market before its off: 1 or 2 (1 in 3)
    BRIEF_FROM = 0.02  # share of the flow before any brief suspension
    BRIEF_SPAN = (0.001, 0.004)  # how long one lasts (range of shares of the flow)
    IN_PLAY_MS = {"horse": 300_000, "football": 1_200_000, "tennis": 900_000}  # simulated

    def __init__(self, rng: random.Random, markets: int, accounts: int, commands: int,
                 ts0: int, market_base: int, voids: int) -> None:
        self.events = self._race_card(rng, markets, market_base, voids)
        self.markets = [mk for ev in self.events for mk in ev.markets]
        self.by_id = {mk.id: mk for mk in self.markets}
        self.gaps, self.offsets, self.mults, self.steps = _tables(rng)
        self._accounts(rng, accounts)
        self.setup = markets + accounts  # commands of the set-up: markets, then deposits
        self._schedule(rng, commands, ts0)

    # ------------------------------------------------------------------------------ race card

    def _race_card(self, rng: random.Random, markets: int, market_base: int,
                   voids: int) -> list[_Event]:
        """Events and their markets following ``_PATTERN``; ``voids`` of them abandoned."""
        events: list[_Event] = []
        made = 0
        e = 0
        while made < markets:
            kind, with_place = _PATTERN[e % len(_PATTERN)]
            left = markets - made
            if kind == "horse":
                ev, runners, specs = self._horse_race(rng, e, with_place and left >= 2)
                commission, delay = 500, 1000
            elif kind == "football":
                ev, runners, specs = self._football(rng)
                commission, delay = 500, 5000
            else:
                ev, runners, specs = self._tennis(rng, e)
                commission, delay = 200, 3000
            for label, winners, pr in specs:
                made += 1
                info = MarketInfo(f"1.{market_base + made - 1}", ev.name, label, runners,
                                  winners, commission, delay)
                mk = _Market(info, ev, pr)
                mk.weight = self.WEIGHT[label]
                ev.markets.append(mk)
            if len(ev.markets) == 2:
                ev.markets[1].win = ev.markets[0]
                ev.markets[0].place.append(ev.markets[1])
            events.append(ev)
            e += 1
        # Abandoned events: never the first (it always goes in-play) nor the last (it ends
        # the day).
        candidates = list(range(1, len(events) - 1))
        for i in sorted(rng.sample(candidates, min(voids, len(candidates)))):
            events[i].void = True
        return events

    def _horse_race(self, rng: random.Random, e: int, with_place: bool) -> tuple[Any, ...]:
        """A WIN market and perhaps a PLACE market (2 winners, 3 with eight runners or more)."""
        n = rng.randint(*self.RUNNERS)
        ev = _Event(f"{_COURSES[e % len(_COURSES)]} race {e + 1}", "horse")
        strength = [rng.lognormvariate(0, self.STRENGTH_SD) for _ in range(n)]
        total = sum(strength)
        probs = [s / total for s in strength]
        runners = tuple(sorted(rng.sample(range(10_000_000, 40_000_000), n)))
        specs = [("WIN", 1, probs)]
        if with_place:
            specs.append(("PLACE", 2 if n <= 7 else 3, probs))
        return ev, runners, specs

    def _football(self, rng: random.Random) -> tuple[Any, ...]:
        """A 3-way MATCH_ODDS market: home, away, the draw."""
        home, away = rng.sample(_TEAMS, 2)
        ev = _Event(f"{home} v {away}", "football")
        ph = rng.uniform(*self.HOME_WIN)
        pd = rng.uniform(*self.DRAW)
        probs = [ph, 1 - ph - pd, pd]
        a, b = rng.sample(range(40_000, 60_000), 2)
        runners = (a, b, 58805)  # 58805: Betfair's selection id of "The Draw"
        return ev, runners, [("MATCH_ODDS", 1, probs)]

    def _tennis(self, rng: random.Random, e: int) -> tuple[Any, ...]:
        """A 2-way MATCH_ODDS market."""
        ev = _Event(f"Tennis match {e + 1}", "tennis")
        p = rng.uniform(*self.TENNIS)
        probs = [p, 1 - p]
        runners = tuple(rng.sample(range(2_000_000, 9_000_000), 2))
        return ev, runners, [("MATCH_ODDS", 1, probs)]

    # ------------------------------------------------------------------------------- accounts

    def _accounts(self, rng: random.Random, n: int) -> None:
        """Names, first deposits (a few whales), stake units and the activity table."""
        width = max(4, len(str(n - 1)))
        self.names = [f"acct-{i:0{width}d}" for i in range(n)]
        deposits = []
        for _ in range(n):
            if rng.random() < self.WHALE_SHARE:
                deposits.append(rng.choice(_WHALES))
            else:
                deposits.append(rng.choice(_DEPOSITS))
        self.deposits = deposits
        self.units = [max(100, d // self.STAKE_UNIT) for d in deposits]
        activity = [rng.lognormvariate(0, 1.0) * (self.WHALE_ACTIVITY if d >= WHALE else 1.0)
                    for d in deposits]
        self.atable = _table(activity, 4096)  # account index by 12 random bits

    # ------------------------------------------------------------------------------- schedule

    def _schedule(self, rng: random.Random, N: int, ts0: int) -> None:
        """``actions``: (position, action, market) by command position (the 0-based count of
        commands emitted), distinct and in order; ``milestones``: (position, ts) pairs the
        simulated clock keeps to."""
        setup = self.setup
        F = N - setup  # the rest: order flow, lifecycle, heartbeats
        R = len(self.events)
        pre = self.PRE_OFF
        slot = (1.0 - pre) / R
        g = max(2, F // 2500)  # spacing between the steps of an event's off and finish
        self._sched: list[tuple[int, int, str, Any]] = []  # (position, tiebreak, action, mk)
        ts_off = ts0 + 2 * 3600_000  # the first off, two hours after the markets open
        between = 60_000 * min(25, max(2, 300 // R))  # from one event's finish to the next off
        milestones: list[tuple[int, int]] = []
        for e, ev in enumerate(self.events):
            off = setup + F * (pre + e * slot)
            ev.off = int(off)
            ev.off_ts = ts_off
            if ev.void:
                self._abandon(ev, off, g)
                milestones.append((ev.off, ts_off))
                ts_off += between
            else:
                last = e == R - 1
                end = N - 3 * len(ev.markets) if last else off + F * slot * self.IN_PLAY
                ev.end = int(end)
                ev.end_ts = ts_off + self.IN_PLAY_MS[ev.kind]
                self._run(rng, ev, off, end, g, N if last else None)
                milestones.append((ev.off, ts_off))
                milestones.append((ev.end, ev.end_ts))
                ts_off = ev.end_ts + (2 * 60_000 if last else between)
            self._brief_suspensions(rng, ev, off, F, g)
        self.actions = self._positions(N)
        milestones.append((N, ts_off))
        self.milestones = sorted(set(milestones))

    def _at(self, pos: float, action: str, mk: _Market) -> None:
        self._sched.append((int(pos), len(self._sched) + 1, action, mk))

    def _abandon(self, ev: _Event, off: float, g: int) -> None:
        """An abandoned event: suspended at its off, closed and voided."""
        ms = ev.markets
        for mk in ms:
            self._at(off, "suspend_off", mk)
        for mk in ms:
            self._at(off + g, "close", mk)
        for mk in ms:
            self._at(off + 2 * g, "void", mk)
        ev.end = ev.off

    def _run(self, rng: random.Random, ev: _Event, off: float, end: float, g: int,
             day_end: int | None) -> None:
        """An event that is run: the off (suspended, in-play, open), perhaps an incident in
        running, and the finish (suspended, closed, settled); for the last event, ``day_end``
        is the number of commands of the day, and the finish takes its last positions."""
        ms = ev.markets
        nm = len(ms)
        at = self._at
        for j, mk in enumerate(ms):
            at(off + j, "suspend_off", mk)
        for j, mk in enumerate(ms):
            at(off + g + j, "in_play", mk)
        for j, mk in enumerate(ms):
            at(off + 2 * g + j, "open", mk)
        if rng.random() < self.INCIDENT:
            # an incident in running: suspended for a moment
            s = off + (end - off) * rng.uniform(*self.INCIDENT_AT)
            for j, mk in enumerate(ms):
                at(s + j, "suspend", mk)
            for j, mk in enumerate(ms):
                at(s + 2 * g + j, "open", mk)
        if day_end is not None:
            for j, mk in enumerate(ms):
                at(day_end - 3 * nm + j, "suspend_end", mk)
                at(day_end - 2 * nm + j, "close", mk)
                at(day_end - nm + j, "settle", mk)
        else:
            for j, mk in enumerate(ms):
                at(end + j, "suspend_end", mk)
            for j, mk in enumerate(ms):
                at(end + g + j, "close", mk)
            for j, mk in enumerate(ms):
                at(end + 2 * g + j, "settle", mk)

    def _brief_suspensions(self, rng: random.Random, ev: _Event, off: float, F: int,
                           g: int) -> None:
        """Brief suspensions before the off, one or two per market (SUSPENDED, then OPEN)."""
        for mk in ev.markets:
            lo = self.setup + F * self.BRIEF_FROM
            for _ in range(rng.choice(self.BRIEF_COUNT)):
                span = max(2, int(F * rng.uniform(*self.BRIEF_SPAN)))
                hi = off - span - 4 * g
                if hi <= lo:
                    break
                s = rng.uniform(lo, hi)
                self._at(s, "suspend", mk)
                self._at(s + span, "open", mk)
                lo = s + span + g

    def _positions(self, N: int) -> list[tuple[int, str, Any]]:
        """The schedule in order at distinct positions in [setup, N), the last event's
        settlement last."""
        sched = sorted(self._sched)
        pos = [p for p, _, _, _ in sched]
        for i in range(1, len(pos)):
            if pos[i] <= pos[i - 1]:
                pos[i] = pos[i - 1] + 1
        pos[-1] = min(pos[-1], N - 1)
        for i in range(len(pos) - 2, -1, -1):
            if pos[i] >= pos[i + 1]:
                pos[i] = pos[i + 1] - 1
        assert pos[0] >= self.setup, "schedule does not fit"
        return [(p, a, mk) for p, (_, _, a, mk) in zip(pos, sched)]
