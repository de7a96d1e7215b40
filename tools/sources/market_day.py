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
(about half of its time; its speed is in the README's figures).

Feeding the stream to a journal that numbers commands itself: order ids are the seq of the
placing command, so cancels and replaces name the generator's seqs. Start at the journal's
next seq with ``seq0``, and if anything else is sequenced in between (heartbeats), translate
with ``tools.sources.load.OrderIds`` (``tools.sources.load.send`` does it all). ``ts`` is
replaced by the journal's clock, so in-play releases happen at other moments there and a few
cancels may find their order already gone.

How it is made
--------------
``market_day()`` checks its arguments and returns ``_MarketDay(...).run()``, a generator:
nothing is drawn before the first command is asked for. Everything comes from one
``random.Random(seed)`` in a fixed order, so the same arguments always give the same stream:

- ``_Plan`` (``market_day_plan``) draws the day before its first command: the race card, the
  lookup tables, the accounts, and the schedule of the lifecycle and of the clock;
- ``_MarketDay._setup`` creates the markets and funds the accounts;
- ``_MarketDay._trade`` makes the rest, one command a turn: a lifecycle step where the schedule
  has one (``_lifecycle``), a heartbeat when one is due, else by one uniform draw a cancel,
  reduce or replace (``_cancel_or_replace``), a deposit or a withdrawal (``_money``), or an
  order (``_place``; ``_late_order`` just after a suspension);
- ``market_day_model`` holds the records (``MarketInfo``, ``GeneratorStats``), the fair-price
  walk, and the prices of aggressive orders and of replaces.

The probabilities and shares are named class constants: ``_MarketDay`` (the order flow and the
mistakes), ``_Plan`` (the card, the accounts, the schedule) and ``_Market`` (the walk).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from exchange import Exchange
from exchange.units import PRICES, TICK, lay_liability
from tools.sources.market_day_model import (
    _TOP,
    GeneratorStats,
    MarketInfo,
    _Market,
    _price_fair,
    _replace_price,
    _table,
    _take_price,
)
from tools.sources.market_day_plan import _TOPUPS, WHALE, _Plan

Command = tuple[Any, ...]

TS0 = 1_717_232_400_000
"""Default start of the day: 2024-06-01 09:00:00 UTC, in ms."""

HEARTBEAT_IDLE_MS = 250
"""A heartbeat is sequenced when an order's release time has passed by this much unsent."""


def minimum_commands(markets: int = 4, accounts: int = 300) -> int:
    """The smallest ``commands`` that fits the set-up, the lifecycle and some trading."""
    return markets + accounts + markets * 16 + 40 * markets + 200


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
    day = _MarketDay(seed, markets, accounts, commands, ts0, seq0, voids, refs, mistakes,
                     market_base, ref_prefix, stats)
    return day.run()


class _MarketDay:
    """One market day as it runs (see "How it is made" above): the plan, the model exchange,
    the state of the flow. A step that has nothing to send after all returns None: its seq is
    not used and the loop draws again."""

    # What a flow command is: one uniform draw r each; below p_cancel a cancel, reduce or
    # replace, then MONEY more a deposit or a withdrawal, the rest orders.
    CANCEL_START = 0.2  # p_cancel until it is first worked out (every 256 commands):
    CANCEL_PER_DEPTH = 0.12  # ... this times resting orders over what the books carry,
    CANCEL_MIN = 0.02  # ... but at least this
    CANCEL_MAX = 0.45  # ... and at most this
    DEPTH = 40  # resting orders a runner's books carry
    CANCEL_FULL = 0.62  # r / p_cancel below this: a full cancel (62%),
    CANCEL_REDUCE = 0.77  # ... below this a partial one (15%), above it a replace (23%)
    MONEY = 0.003  # share of commands that move money,
    MONEY_IN = 0.0015  # ... half of them deposits (all of them when little is available)
    PASSIVE = 0.85  # share of orders that rest off the fair price (the rest take a price):
    IOC = 0.95  # ... aggressive ones drawn above this are IOC,
    FOK = 0.996  # ... and above this FOK
    LAY_CAP = 25  # a lay's liability is at most this many stake units (half the bankroll)
    SETUP_GAP_MS = 20  # mean gap between set-up commands
    REPRICE_AFTER = 100  # commands between re-pricings of a PLACE market whose WIN market moved
    # deliberate mistakes, each times ``mistakes``
    LATE = 0.5  # chance an order arrives just after a suspension (MARKET_NOT_OPEN)
    STALE = 0.005  # chance a cancel names an order just found gone (UNKNOWN_ORDER)
    OVER_REACH = 0.02  # chance an order beyond its funds goes anyway (INSUFFICIENT_FUNDS)
    BELOW_MIN = 0.0004  # share of commands that are 50p orders (BELOW_MIN_STAKE)

    def __init__(self, seed: int, n_markets: int, n_accounts: int, N: int, ts0: int, seq0: int,
                 voids: int, ref_share: float, mistakes: float, market_base: int,
                 ref_prefix: str, stats: GeneratorStats | None) -> None:
        """Only the arguments: nothing is drawn before the first command is asked for."""
        self.seed = seed
        self.n_markets = n_markets
        self.n_accounts = n_accounts
        self.N = N
        self.ts0 = ts0
        self.seq0 = seq0
        self.voids = voids
        self.market_base = market_base
        self.ref_prefix = ref_prefix
        self.stats = stats
        self.p_ref = ref_share
        self.m_late = self.LATE * mistakes
        self.m_stale = self.STALE * mistakes
        self.m_over = self.OVER_REACH * mistakes
        self.small_above = 1.0 - self.BELOW_MIN * mistakes
        self.m_fok = mistakes > 0  # FOKs that cannot fill

    def run(self) -> Iterator[Command]:
        """The stream: plan, set-up, order flow; stats finished however it stops."""
        self.started = time.perf_counter()
        self.rng = random.Random(self.seed)
        self.bits = self.rng.getrandbits
        self.rand = self.rng.random
        self.plan = plan = _Plan(self.rng, self.n_markets, self.n_accounts, self.N, self.ts0,
                                 self.market_base, self.voids)
        stats = self.stats
        if stats is not None:
            stats.seed = self.seed
            stats.markets = [mk.info for mk in plan.markets]
            stats.accounts = self.n_accounts
            stats.first_ts = self.ts0
        self._start()
        try:
            yield from self._setup()
            yield from self._trade()
        finally:
            # also when the consumer stops early (the iterator is closed or collected)
            self._finish()

    def _start(self) -> None:
        """The model exchange, the counters and the state of the flow."""
        plan = self.plan
        self.names = plan.names  # the plan's busiest tables, at hand
        self.units = plan.units
        self.atable = plan.atable
        self.mults = plan.mults
        self.offsets = plan.offsets
        self.model = model = Exchange()
        self.get_order = model.order
        self.collect = self.stats is not None
        self.ccount: dict[str, int] = defaultdict(int)  # commands by type
        self.ecount: dict[str, int] = defaultdict(int)  # events by type
        self.rcount: dict[str, int] = defaultdict(int)  # rejections by reason
        self.xcount: dict[str, int] = defaultdict(int)  # cancellations by reason
        self.trades = 0
        self.matched = 0
        self.deposited = 0
        self.withdrawn = 0
        self.seq = self.seq0 - 1
        self.ts = self.ts0
        self.count = 0  # commands emitted
        self.accts: list[Any] = []  # the model's Account objects, by account index
        self.open_mks: list[_Market] = []
        self.mtable: list[_Market] = []  # open markets by 8 random bits, by weight
        self.live: list[int] = []  # ids of orders that may be resting; pruned as picked
        self.owners: list[int] = []  # their accounts (index), in step
        self.dead: tuple[int, int] | None = None  # an order just found gone, and its owner
        self.late: _Market | None = None  # a market just suspended: a late order may arrive
        self.watch = False  # some open market is in-play with a bet delay
        self.ref_n = 0
        self.track = -1  # the account of an order to remember as live once applied, or -1

    def _send(self, cmd: Command) -> Command:
        """Apply a set-up command to the model (the flow does this inline)."""
        out = self.model.apply(cmd)
        if self.collect:
            self._note(cmd, out)
        self.count += 1
        return cmd

    def _note(self, cmd: Command, out: list) -> None:
        """Count a command and the events it made."""
        self.ccount[cmd[0]] += 1
        for e in out:
            t = e[0]
            self.ecount[t] += 1
            if t == "trade":
                self.trades += 1
                self.matched += e[6]
            elif t == "order_cancelled":
                self.xcount[e[10]] += 1
            elif t == "order_rejected":
                self.rcount[e[7]] += 1

    def _finish(self) -> None:
        """Fill in the stats (the markets and accounts were filled in at the start)."""
        stats = self.stats
        if stats is None:
            return
        stats.deposited = self.deposited
        stats.withdrawn = self.withdrawn
        stats.commands = dict(self.ccount)
        stats.events = dict(self.ecount)
        stats.rejections = dict(self.rcount)
        stats.cancellations = dict(self.xcount)
        stats.trades = self.trades
        stats.matched = self.matched
        stats.last_ts = self.ts
        stats.last_seq = self.seq
        stats.live_orders = self.model.live_orders
        stats.house = self.model.house
        stats.net_deposits = self.model.net_deposits
        stats.elapsed = time.perf_counter() - self.started
        for mk in self.plan.markets:
            mk.info.status = mk.m.status if mk.m is not None else "PLANNED"
            mk.info.in_play = mk.in_play

    # --------------------------------------------------------------------------------- set-up

    def _setup(self) -> Iterator[Command]:
        """Create the markets, then fund the accounts."""
        plan = self.plan
        model = self.model
        gaps = plan.gaps
        bits = self.bits
        for mk in plan.markets:
            _price_fair(mk)
            info = mk.info
            self.seq += 1
            if self.count:
                self.ts += int(gaps[bits(12)] * self.SETUP_GAP_MS)
            cmd = self._send(("create_market", self.seq, self.ts, info.id, info.runners,
                              info.commission, 100, info.winners, info.bet_delay_ms))
            mk.m = model.market(info.id)
            yield cmd
        for name, amount in zip(plan.names, plan.deposits):
            self.seq += 1
            self.ts += int(gaps[bits(12)] * self.SETUP_GAP_MS)
            cmd = self._send(("deposit", self.seq, self.ts, name, amount))
            self.accts.append(model.account(name))
            yield cmd
        self.deposited = sum(plan.deposits)
        if self.stats is not None:
            self.stats.deposited = self.deposited
        for mk in plan.markets:
            mk.weigh_runners()
        self._rebuild()

    # -------------------------------------------------------------------------- the order flow

    def _trade(self) -> Iterator[Command]:
        """Every command after the set-up (``count`` is the position of the next one). What
        changes on every command (``seq``, ``ts``, ``count``) is kept in locals, for speed."""
        N = self.N
        apply = self.model.apply
        next_wakeup = self.model.next_wakeup
        get_order = self.get_order
        bits = self.bits
        rand = self.rand
        collect = self.collect
        note = self._note
        cancel_or_replace = self._cancel_or_replace
        place = self._place
        live = self.live
        owners = self.owners
        MONEY = self.MONEY
        seq = self.seq
        ts = self.ts
        count = self.count
        watch = False
        p_cancel = self.CANCEL_START
        # the clock runs in stretches, one to each milestone, with gaps that arrive on time
        self.stretch = 0
        seg_end, self.stretch_ts = self.plan.milestones[0]
        gapt = self._gaps((self.stretch_ts - ts) / max(1, seg_end - count))
        actions = iter(self.plan.actions)
        next_pos, next_action, next_mk = next(actions)
        cmd: Command | None
        try:
            while count < N:
                if count >= seg_end:
                    ts, seg_end, gapt = self._next_stretch(count, ts, gapt)
                if count >= next_pos:
                    # a lifecycle step, at its planned position
                    body = self._lifecycle(next_action, next_mk)
                    watch = self.watch
                    seq += 1
                    ts += gapt[bits(12)]
                    cmd = (body[0], seq, ts) + body[1:]
                    out = apply(cmd)
                    if collect:
                        note(cmd, out)
                    count += 1
                    next_pos, next_action, next_mk = next(actions, (N + 1, "", None))
                    yield cmd
                    continue
                # the clock moves on only with a command: ``now`` is this one's time
                now = ts + gapt[bits(12)]
                seq += 1
                if watch:
                    w = next_wakeup()
                    if w is not None and w + HEARTBEAT_IDLE_MS <= now:
                        # an order's bet delay is over with nothing sent: as the journal would
                        cmd = ("heartbeat", seq, w)
                        ts = w
                        out = apply(cmd)
                        if collect:
                            note(cmd, out)
                        count += 1
                        yield cmd
                        continue
                if (count & 255) == 0:
                    p_cancel = self._cancel_rate()
                r = rand()
                if self.late is not None:
                    cmd = self._late_order(seq, now)
                elif r < p_cancel:
                    cmd = cancel_or_replace(r, p_cancel, seq, now)
                elif r < p_cancel + MONEY:
                    cmd = self._money(r, p_cancel, seq, now)
                else:
                    cmd = place(r, seq, now, count)
                if cmd is None:
                    seq -= 1  # nothing to send after all: draw again
                    continue
                ts = now
                out = apply(cmd)
                track = self.track
                if track >= 0:
                    # an order that may rest (not one that traded in full at once): a later
                    # cancel or replace may pick it
                    if get_order(seq) is not None:
                        live.append(seq)
                        owners.append(track)
                    self.track = -1
                if collect:
                    note(cmd, out)
                count += 1
                yield cmd
        finally:
            self.seq = seq
            self.ts = ts

    def _gaps(self, mean_gap: float) -> list[int]:
        """The gap table in ms for a stretch of the day (indexed by 12 random bits)."""
        return [int(x * mean_gap + 0.5) for x in self.plan.gaps]

    def _next_stretch(self, count: int, ts: int, gapt: list[int]) -> tuple[int, int, list[int]]:
        """At a milestone: the clock catches up with it if behind, and the gaps of the next
        stretch reach the next milestone on time. Returns the clock, where the stretch ends
        and its gaps."""
        if ts < self.stretch_ts:
            ts = self.stretch_ts
        self.stretch += 1
        milestones = self.plan.milestones
        if self.stretch >= len(milestones):
            return ts, self.N + 1, gapt
        seg_end, self.stretch_ts = milestones[self.stretch]
        mean_gap = (self.stretch_ts - ts) / max(1, seg_end - count)
        if mean_gap < 0:
            mean_gap = 0.0
        return ts, seg_end, self._gaps(mean_gap)

    def _cancel_rate(self) -> float:
        """The chance of a cancel: more when the books are deeper than the markets carry."""
        target = sum(mk.n for mk in self.open_mks) * self.DEPTH + 1
        p_cancel = self.CANCEL_PER_DEPTH * self.model.live_orders / target
        if p_cancel > self.CANCEL_MAX:
            return self.CANCEL_MAX
        if p_cancel < self.CANCEL_MIN:
            return self.CANCEL_MIN
        return p_cancel

    # ------------------------------------------------------------------------------ lifecycle

    def _lifecycle(self, action: str, mk: _Market) -> tuple[Any, ...]:
        """The body (type and fields) of a lifecycle command, and its effect on the
        generator's view of the market."""
        ev = mk.event
        if action == "suspend_off" and not ev.order:
            ev.order = ev.draw_result(self.rand)
        if action in ("suspend_off", "suspend", "suspend_end"):
            mk.status = "SUSPENDED"
            if self.rand() < self.m_late:
                self.late = mk
            body: tuple[Any, ...] = ("market_status", mk.id, "SUSPENDED")
        elif action == "open":
            mk.status = "OPEN"
            body = ("market_status", mk.id, "OPEN")
        elif action == "close":
            mk.status = "CLOSED"
            body = ("market_status", mk.id, "CLOSED")
        elif action == "in_play":
            mk.turn_in_play()
            body = ("turn_in_play", mk.id)
        elif action == "settle":
            winners = tuple(mk.runners[i] for i in ev.order[:mk.k])
            mk.info.result = winners
            mk.status = "SETTLED"
            body = ("settle", mk.id, winners)
        elif action == "void":
            mk.status = "VOIDED"
            mk.info.result = ()
            body = ("void", mk.id)
        else:  # pragma: no cover
            raise AssertionError(action)
        self._rebuild()
        self.watch = any(x.in_play and x.delay and x.status == "OPEN" for x in self.plan.markets)
        return body

    def _rebuild(self) -> None:
        """The open markets and the market table (by weight) after a status change."""
        self.open_mks = open_mks = [mk for mk in self.plan.markets if mk.status == "OPEN"]
        self.mtable = [open_mks[i] for i in _table([mk.weight for mk in open_mks], 256)] \
            if open_mks else []

    def _late_order(self, seq: int, now: int) -> Command:
        """An order that arrives just after its market was suspended (refused)."""
        mk = self.late
        assert mk is not None
        self.late = None
        bits = self.bits
        ai = self.atable[bits(12)]
        i = mk.rtable[bits(6)]
        return ("place", seq, now, self.names[ai], mk.id, mk.runners[i], "BACK",
                PRICES[mk.fair[i] + 1], self.units[ai], "GTC", "LAPSE", None)

    # -------------------------------------------------------------- cancel, reduce, replace

    def _cancel_or_replace(self, r: float, p_cancel: float, seq: int,
                           now: int) -> Command | None:
        """A full or partial cancel, or a replace back towards the fair price, of a random
        order that is live, by its owner, in an open market; now and then (``STALE``) a
        cancel of one just found gone."""
        live = self.live
        owners = self.owners
        rand = self.rand
        o = None
        while live:
            k = int(rand() * len(live))
            oid = live[k]
            own = owners[k]
            live[k] = live[-1]
            owners[k] = owners[-1]
            live.pop()
            owners.pop()
            o = self.get_order(oid)
            if o is not None:
                break
            self.dead = (oid, own)
        if o is None:
            return None
        if o.pos.market.status != "OPEN":
            # not now: keep it for later
            live.append(oid)
            owners.append(own)
            return None
        dead = self.dead
        if dead is not None and rand() < self.m_stale:
            # the client cancels an order it has not yet seen matched
            live.append(oid)
            owners.append(own)
            self.dead = None
            return ("cancel", seq, now, self.names[dead[1]], dead[0], None)
        x = r / p_cancel
        account = self.names[own]
        if x < self.CANCEL_FULL:
            return ("cancel", seq, now, account, oid, None)
        if x < self.CANCEL_REDUCE:
            rem = o.remaining
            red = rem // 2 if rem >= 400 else rem // 3
            if red < 1 or red >= rem:
                return ("cancel", seq, now, account, oid, None)
            if red >= 200:
                red -= red % 100
            live.append(oid)
            owners.append(own)
            return ("cancel", seq, now, account, oid, red)
        side = o.level.side
        f = self.plan.by_id[side.market.id].fair[side.ridx]
        old = o.level.price
        p = _replace_price(o, f, self.offsets[self.bits(8)], self.accts[own])
        if p == old:
            return ("cancel", seq, now, account, oid, None)
        self.track = own
        return ("replace", seq, now, account, oid, p)

    # ---------------------------------------------------------------------------------- money

    def _money(self, r: float, p_cancel: float, seq: int, now: int) -> Command | None:
        """A top-up (round, larger for whales), or a withdrawal of a quarter to all of what an
        account has available, in whole pounds."""
        bits = self.bits
        ai = self.atable[bits(12)]
        a = self.accts[ai]
        avail = a.balance - a.exposure
        if r < p_cancel + self.MONEY_IN or avail < 1000:
            amount = _TOPUPS[bits(8) % 5] * (100 if self.plan.deposits[ai] >= WHALE else 1)
            self.deposited += amount
            return ("deposit", seq, now, self.names[ai], amount)
        amount = (avail * (1 + bits(2)) // 4) // 100 * 100
        if amount < 100:
            return None
        self.withdrawn += amount
        return ("withdraw", seq, now, self.names[ai], amount)

    # ---------------------------------------------------------------------------------- place

    def _place(self, r: float, seq: int, now: int, count: int) -> Command | None:
        """An order: market, runner, account, stake, side and price from two draws of 30
        random bits (and one or two uniform draws): passive mostly, else aggressive."""
        mtable = self.mtable
        if not mtable:
            return ("heartbeat", seq, now)  # nothing is open: time passes
        bits = self.bits
        rand = self.rand
        # 30 random bits: the market (bits 0-7), the runner (8-13), the account (18-29)
        x = bits(30)
        mk = mtable[x & 255]
        if mk.dirty and count - mk.moved > self.REPRICE_AFTER:
            mk.dirty = False
            mk.moved = count
            _price_fair(mk)
        y = rand()
        if y < mk.pmove:
            mk.move(bits, self.plan.steps, count)
            y = rand()
        m = mk.m
        i = mk.rtable[(x >> 8) & 63]
        f = mk.fair[i]
        ai = self.atable[x >> 18]
        a = self.accts[ai]
        avail = a.balance - a.exposure
        unit = self.units[ai]
        # 30 more: the stake (bits 0-9), in whole pounds unless bits 10-11 are 0, BACK if bit
        # 12; then, shifted by 13: the passive offset (0-7) or the aggressive choices (0-4),
        # and PERSIST if bits 14-15 are 0
        x = bits(30)
        stake = unit * self.mults[x & 1023] // 100
        if stake >= 1000 and x & 3072:
            stake -= stake % 100
        elif stake < 100:
            stake = 100
        back = x & 4096
        x >>= 13
        if y < self.PASSIVE:
            # passive: rest a few ticks off the fair price, behind the best price on the other
            # side when that is near (if it is far, the price has moved away from orders left
            # behind: this order takes them, to their owners' cost)
            tif = "GTC"
            if back:
                t = f + 1 + self.offsets[x & 255]
                if t > _TOP:
                    t = _TOP
                p = PRICES[t]
                best = m.lays[i].best
                if p <= best:
                    t = TICK[best] + 1
                    if t <= f + 4 and t <= _TOP:
                        p = PRICES[t]
            else:
                t = f - self.offsets[x & 255]
                if t < 0:
                    t = 0
                p = PRICES[t]
                best = m.backs[i].best
                if p >= best:
                    t = TICK[best] - 1
                    if t >= f - 4 and t >= 0:
                        p = PRICES[t]
        else:
            tif = "FOK" if y > self.FOK else ("IOC" if y > self.IOC else "GTC")
            p, tif, stake = _take_price(m, i, f, back, x, tif, stake, self.m_fok)
        if back:
            liability = stake
        else:
            liability = lay_liability(stake, p)
            cap = unit * self.LAY_CAP  # nobody lays a long shot for the whole bankroll
            if liability > cap:
                stake = cap * 100 // (p - 100)
                liability = lay_liability(stake, p)
        if liability > avail:
            if rand() < self.m_over:
                pass  # reaches beyond its funds: refused
            elif back:
                stake = avail
            else:
                stake = avail * 100 // (p - 100)
        if r > self.small_above and avail >= 50:
            stake = 50  # fifty pence: under the minimum stake, refused
        elif stake < 100:
            return None
        p_ref = self.p_ref
        if p_ref and rand() < p_ref:
            self.ref_n += 1
            ref = f"{self.ref_prefix}r{self.ref_n}"
        else:
            ref = None
        if tif == "GTC":
            self.track = ai
        return ("place", seq, now, self.names[ai], mk.id, mk.runners[i],
                "BACK" if back else "LAY", p, stake, tif,
                "PERSIST" if x & 0xC000 == 0 else "LAPSE", ref)


__all__ = ["GeneratorStats", "MarketInfo", "TS0", "market_day", "minimum_commands"]
