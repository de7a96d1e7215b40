"""The exchange: a pure, deterministic state machine from commands to events.

``Exchange.apply(command)`` is the whole interface: it takes one command tuple (see
``exchange.commands``), changes the state, and returns the events it caused as tuples (see
``exchange.events``). There is no I/O, no clock and no randomness here: time is the ``ts`` of
the command envelope, ids are sequence numbers, and every iteration is over an ordered
structure, so the same commands always give the same events and the same state.

Commands come from ``exchange.commands.decode``, the one place where outside data is checked
for shape and type; the engine relies on those types and judges the values against the rules
and the state (is the price on the ladder, is the market open, are there funds). Every handler
checks completely before it changes anything, so a bad command becomes an ``order_rejected``
event and leaves the state as it was: no decoded command can make ``apply`` raise. (A sequence
number that does not increase is not bad input but a broken journal: ``SequenceError``.)

The placement and matching paths are written for speed: attributes bound to locals, few
helper calls on the common path, tuples for events. Where a C compiler is available the
install compiles this module and its data structures with Cython, guided by the ``.pxd`` files
beside them (C fields and typed locals); the Python source stays the one definition of the
rules and runs unchanged without them (see setup.py).
"""

from __future__ import annotations

from collections import deque
from functools import partial
from heapq import heappop, heappush
from importlib.machinery import EXTENSION_SUFFIXES
from typing import Any

from .accounts import Account, Position, least
from .book import BACK, LAY, NO_BACK, NO_LAY, Level, Order, Pending, Side
from .errors import SequenceError
from .events import (
    BELOW_MIN_STAKE,
    DUPLICATE_REF,
    EXPOSURE_LIMIT,
    FOK,
    FOK_NOT_FILLED,
    INSUFFICIENT_FUNDS,
    INVALID_PRICE,
    INVALID_STAKE,
    IOC,
    MARKET_NOT_OPEN,
    NOT_OWNER,
    ORDER_ACCEPTED,
    ORDER_CANCELLED,
    ORDER_REJECTED,
    POSITION_LIMIT,
    REPLACE,
    TRADE,
    UNKNOWN_MARKET,
    UNKNOWN_ORDER,
    UNKNOWN_RUNNER,
    USER,
    Event,
)
from .lifecycle import HANDLERS
from .limits import (
    MAX_ID,
    MAX_INT,
    MAX_MONEY,
    MAX_PARTITION,
    MAX_POSITION_STAKE,
    PARTITION_STRIDE,
)
from .market import OPEN, Market
from .rules import FIRST, PARTITION_IDS, REF_WINDOW, REF_WINDOW_MS
from .units import TICK

GTC = "GTC"
TIFS = ("GTC", "IOC", "FOK")
PERSISTENCES = ("LAPSE", "PERSIST")
SIDES = (BACK, LAY)

Command = tuple[Any, ...]


_STAKE_LIMIT = MAX_POSITION_STAKE
"""The position limit, which engine.pxd makes a C integer (compared once per placement)."""

_COMPILED = __file__.endswith(tuple(EXTENSION_SUFFIXES))
"""True when this module runs as the Cython-compiled extension (see setup.py)."""


def _new_order(id: int, pos: Position, remaining: int, persist: bool) -> Order:
    """A new live order, not yet in a level. Compiled, this skips the Python-level call of
    ``Order.__init__`` and its argument parsing (see the README's core figures)."""
    o = Order.__new__(Order)
    o.id = id
    o.pos = pos
    o.level = None  # type: ignore[assignment]
    o.remaining = remaining
    o.persist = persist
    return o


def _is_id(x: object) -> bool:
    return type(x) is str and 0 < len(x) <= MAX_ID  # type: ignore[arg-type]


def _is_int(x: object) -> bool:
    return type(x) is int and 0 <= x <= MAX_INT  # type: ignore[operator]


class Exchange:
    """The whole state of an exchange partition and the rules that change it.

    Public state: ``last_seq`` (the last command applied), ``now`` (the latest envelope time,
    ms), ``house`` (commission collected, pence) and ``net_deposits`` (deposits and
    transfers in, minus withdrawals and transfers out, pence). Money is conserved: the
    balances plus ``house`` always equal ``net_deposits``. Everything else is reached through
    the query methods.
    """

    def __init__(self, partition: int = 0) -> None:
        if type(partition) is not int or not 0 <= partition <= MAX_PARTITION:
            raise ValueError(f"a partition is a number from 0 to {MAX_PARTITION}, "
                             f"not {partition!r}")
        self.partition = partition
        """The partition this state belongs to (its ids carry it from rules version 5)."""
        self._ids = 0
        """What an order id adds to its seq: ``partition * PARTITION_STRIDE`` from rules
        version 5, else 0."""
        self.last_seq = 0
        self.now = 0
        self.house = 0
        self.net_deposits = 0
        self.rules = FIRST
        """The rules version in force (``exchange.rules``): the journal sets it, and it only
        goes up."""
        self._markets: dict[str, Market] = {}
        self._accounts: dict[str, Account] = {}
        self._orders: dict[int, Order] = {}
        self._refs: dict[tuple[str, str], int] = {}
        """Client refs used: (account, ref) -> seq of first use, or from rules version 3
        (``REF_WINDOW``) its envelope time, in order of first use."""
        self._ref_queue: deque[tuple[int, tuple[str, str]]] = deque()
        """From rules version 3: (time of first use, key) in order, to forget old refs."""
        self._finished: deque[tuple[int, str]] = deque()
        """From rules version 3: (time finished, market id) of settled and voided markets,
        in order, to forget them after the grace (``exchange.lifecycle.forget_finished``)."""
        self._marks: dict[int, int] = {}
        """From rules version 6: per source partition, the highest source seq whose transfer
        was credited here (``exchange.lifecycle.transfer_in``)."""
        self._pending: list[tuple[int, int, Order]] = []
        # Bound once: a dict of bound callables is the cheapest dispatch for the rarer
        # commands (money and market lifecycle rule in exchange.lifecycle). The price is a
        # reference cycle (the exchange holds callables bound to itself), so a dropped
        # exchange waits for the cyclic collector; the matcher drops one only when it
        # rebuilds, and collects then.
        self._handlers = {
            kind: partial(HANDLERS[kind], self) if kind in HANDLERS else getattr(self, "_" + kind)
            for kind in COMMAND_KINDS
        }

    # ------------------------------------------------------------------ the interface

    def apply(self, cmd: Command) -> list[Event]:
        """Apply one decoded command; return the events it caused, in order. O(1) for a
        resting placement or a cancel, O(trades) for a crossing order, O(orders) for a
        market-wide change (close, in-play turn, settlement).

        ``cmd`` is a plain tuple (the stream decoder's fast paths) or a named one
        (``exchange.named``); the handlers work on the plain form, which the compiled core
        types exactly."""
        if type(cmd) is not tuple:
            cmd = tuple(cmd)
        seq = cmd[1]
        if seq <= self.last_seq:
            raise SequenceError(f"seq {seq!r} does not follow {self.last_seq}")
        self.last_seq = seq
        ts = cmd[2]
        if ts > self.now:
            self.now = ts
        out: list[Event] = []
        pending = self._pending
        if pending and pending[0][0] <= self.now:
            self._release(seq, out)
        kind = cmd[0]
        if kind == "place":
            self._place(cmd, out)
        elif kind == "cancel":
            self._cancel(cmd, out)
        else:
            self._handlers[kind](cmd, out)
        return out

    def set_rules(self, version: int, now: int) -> None:
        """Apply rules ``version`` from the command at time ``now`` on (versions only go up).
        Entering the ref window (version 3), the refs used so far count as first used
        ``now``."""
        if version >= REF_WINDOW > self.rules:
            refs = self._refs
            for key in refs:
                refs[key] = now
            self._ref_queue = deque((now, key) for key in refs)
        self.rules = version
        if version >= PARTITION_IDS:
            self._ids = self.partition * PARTITION_STRIDE

    def _ref_used(self, key: tuple[str, str], ts: int) -> bool:
        """Under the ref window: whether ``key`` was first used less than ``REF_WINDOW_MS``
        before ``ts``; if not, it is used now. Refs older than the window are forgotten."""
        refs = self._refs
        first = refs.get(key)
        if first is not None:
            if ts - first < REF_WINDOW_MS:
                return True
            del refs[key]
        refs[key] = ts
        queue = self._ref_queue
        queue.append((ts, key))
        horizon = ts - REF_WINDOW_MS
        while queue[0][0] <= horizon:
            t, old = queue.popleft()
            if refs.get(old) == t:
                del refs[old]
        return False

    def next_wakeup(self) -> int | None:
        """Envelope time at which the next order waiting out a bet delay reaches the book, or
        None. The journal sequences a heartbeat by then so that time moves on."""
        pending = self._pending
        while pending and not pending[0][2].remaining:
            heappop(pending)
        return pending[0][0] if pending else None

    # ------------------------------------------------------------------ queries

    def market(self, market_id: str) -> Market | None:
        """The market with this id, or None."""
        return self._markets.get(market_id)

    def markets(self) -> list[Market]:
        """Every market, in creation order."""
        return list(self._markets.values())

    def account(self, account_id: str) -> Account | None:
        """The account with this id, or None."""
        return self._accounts.get(account_id)

    def accounts(self) -> list[Account]:
        """Every account, in order of first deposit."""
        return list(self._accounts.values())

    def order(self, order_id: int) -> Order | None:
        """The live (unmatched) order with this id, or None."""
        return self._orders.get(order_id)

    @property
    def live_orders(self) -> int:
        """How many orders are live: resting or waiting out a bet delay."""
        return len(self._orders)

    def ladder(self, market_id: str, depth: int = 3) -> list[dict[str, Any]]:
        """Per runner, the best ``depth`` prices available to back (resting LAY money, highest
        first) and to lay (resting BACK money, lowest first), as (price, size) pairs."""
        m = self._markets.get(market_id)
        if m is None:
            return []
        return [
            {"runner": r, "to_back": m.lays[i].depth(depth), "to_lay": m.backs[i].depth(depth)}
            for i, r in enumerate(m.runners)
        ]

    def snapshot(self) -> bytes:
        """The whole state as canonical bytes (see ``exchange.snapshot``)."""
        from .snapshot import dump

        return dump(self)

    @classmethod
    def restore(cls, data: bytes, partition: int | None = None) -> Exchange:
        """An exchange rebuilt from ``snapshot()`` bytes; it behaves exactly as the original.
        With ``partition``, the state must be that partition's (a state of partition 0 from
        before rules version 5, which did not record its partition, is taken as it)."""
        from .snapshot import load

        return load(data, partition)

    def state_hash(self) -> str:
        """SHA-256 of the canonical snapshot, in hex: equal states, equal hashes."""
        from .snapshot import state_hash

        return state_hash(self.snapshot())

    def check(self) -> None:
        """Assert every invariant of the books and the money; raise ``InvariantError``."""
        from .invariants import check

        check(self)

    # ------------------------------------------------------------------ helpers

    def _reject(
        self,
        out: list[Event],
        seq: int,
        command: Any,
        reason: str,
        account: Any = None,
        market: Any = None,
        ref: Any = None,
        order: Any = None,
    ) -> None:
        """Append an ``order_rejected``; fields are echoed only if they are well-formed."""
        out.append((
            ORDER_REJECTED,
            seq,
            command if type(command) is str and command in COMMAND_KINDS and command != "invalid"
            else None,
            account if _is_id(account) else None,
            market if _is_id(market) else None,
            ref if _is_id(ref) else None,
            order if _is_int(order) else None,
            reason,
        ))

    def _cancel_order(self, seq: int, o: Order, size: int, reason: str, out: list[Event]) -> None:
        """Take ``size`` off a live order's unmatched stake, release its reserved liability and
        report it; the order goes when nothing is left. O(n runners)."""
        lvl = o.level
        side = lvl.side
        price = lvl.price
        pos = o.pos
        rem = o.remaining
        cut = size  # compiled, ``size`` is a Python integer (sums, event), ``cut`` a C one
        new = rem - cut
        if side.side == "BACK":
            pos.sl += cut
            pos.d[side.ridx] -= cut
        else:
            p = price
            x = p - 100
            pos.d[side.ridx] += rem * x // 100 - new * x // 100
        # pos.reexpose(), inline: this is the cancel hot path
        k = pos.market.winners
        worst = pos.sl + least(pos, k)
        e = -worst if worst < 0 else 0
        acct = pos.acct
        if e != pos.exp:
            acct.exposure += e - pos.exp
            pos.exp = e
        pos.staked -= cut
        o.remaining = new
        if type(lvl) is Level:
            level = lvl  # known to be a Level here (engine.pxd types it: C field access)
            level.total -= size
            if not new:
                level.live -= 1
                del self._orders[o.id]
                if not level.live:
                    level.queue.clear()  # no order keeps the dropped level alive (no cycles)
                    side.remove_level(price)
                elif len(level.queue) > 2 * level.live + 8:
                    level.compact()
        elif not new:
            del self._orders[o.id]
        out.append((
            ORDER_CANCELLED, seq, o.id, acct.id, side.market.id, side.runner, side.side,
            price, size, new, reason,
        ))

    def _fillable(self, opp: Side, price: int, stake: int) -> bool:
        """Whether ``stake`` can be matched in full at ``price`` or better against ``opp``."""
        levels = opp.levels
        total = 0
        for p in opp.prices():
            if (p < price) if opp.side == LAY else (p > price):
                break
            total += levels[p].total
            if total >= stake:
                return True
        return False

    @staticmethod
    def _short(acct: Account, exposure: int) -> str:
        """Why ``exposure`` is more than the account's cover: its balance, or the limit."""
        return INSUFFICIENT_FUNDS if acct.balance < exposure else EXPOSURE_LIMIT

    # ------------------------------------------------------------------ orders

    def _place(self, cmd: Command, out: list[Event]) -> None:
        _, seq, ts, account, market_id, runner, side, price, stake, tif, persist, ref = cmd
        if ref is not None:
            key = (account, ref)
            refs = self._refs
            if self.rules >= REF_WINDOW:
                if self._ref_used(key, ts):
                    return self._reject(out, seq, "place", DUPLICATE_REF, account, market_id,
                                        ref)
            elif key in refs:
                return self._reject(out, seq, "place", DUPLICATE_REF, account, market_id, ref)
            else:
                refs[key] = seq
        m = self._markets.get(market_id)
        if m is None:
            return self._reject(out, seq, "place", UNKNOWN_MARKET, account, market_id, ref)
        ri = m.index.get(runner)
        if ri is None:
            return self._reject(out, seq, "place", UNKNOWN_RUNNER, account, market_id, ref)
        i = ri
        if m.status != "OPEN":
            return self._reject(out, seq, "place", MARKET_NOT_OPEN, account, market_id, ref)
        if price not in TICK:
            return self._reject(out, seq, "place", INVALID_PRICE, account, market_id, ref)
        if stake <= 0 or stake > MAX_MONEY:
            return self._reject(out, seq, "place", INVALID_STAKE, account, market_id, ref)
        if stake < m.min_stake:
            return self._reject(out, seq, "place", BELOW_MIN_STAKE, account, market_id, ref)
        # Checked, so the compiled core may hold them in C integers (engine.pxd).
        p = price
        s = stake
        # The market's positions, not the account's: one dict per market stays in cache, one
        # per account would not (the account is then reached from its position).
        pos = m.positions.get(account)
        fresh = False
        if pos is None:
            acct = self._accounts.get(account)
            if acct is None:
                return self._reject(
                    out, seq, "place", INSUFFICIENT_FUNDS, account, market_id, ref
                )
            pos = Position(acct, m)
            fresh = True
        else:
            acct = pos.acct
        staked = pos.staked + s
        if staked > _STAKE_LIMIT:
            return self._reject(out, seq, "place", POSITION_LIMIT, account, market_id, ref)
        # Reserve the order at full liability and check the account can carry it.
        if side == "BACK":
            sl = pos.sl = pos.sl - s
            pos.d[i] += s
            own = m.backs[i]
            opp = m.lays[i]
            crosses = opp.best >= p
        else:
            sl = pos.sl
            pos.d[i] -= s * (p - 100) // 100
            own = m.lays[i]
            opp = m.backs[i]
            crosses = opp.best <= p
        k = m.winners
        worst = sl + least(pos, k)
        e = -worst if worst < 0 else 0
        exposure = acct.exposure + (e - pos.exp)
        if exposure > acct.cover:
            pos.unreserve(side, i, price, stake)
            return self._reject(out, seq, "place", self._short(acct, exposure), account,
                                market_id, ref)
        delayed = m.delay and m.in_play
        if tif == "FOK" and not delayed and not self._fillable(opp, price, stake):
            pos.unreserve(side, i, price, stake)
            return self._reject(out, seq, "place", FOK_NOT_FILLED, account, market_id, ref)
        if fresh:
            acct.positions[market_id] = pos
            m.positions[account] = pos
        acct.exposure = exposure
        pos.exp = e
        pos.staked = staked
        oid = self._ids + seq
        out.append((
            ORDER_ACCEPTED, seq, oid, account, market_id, runner, side, price, stake, tif,
            persist, ref,
        ))
        o = _new_order(oid, pos, s, persist == "PERSIST")
        if delayed:
            self._delay(o, own, price, tif, self.now + m.delay)
        elif crosses or tif != "GTC":
            self._execute(seq, o, side, m, i, p, s, tif, out)
        else:
            # The common case, inline: a GTC order that does not cross joins its level.
            lvl = own.levels.get(price)
            if lvl is None:
                lvl = own.add_level(price)
            lvl.queue.append(o)
            lvl.total += stake
            lvl.live += 1
            o.level = lvl
            self._orders[oid] = o

    def _delay(self, o: Order, own: Side, price: int, tif: str, release: int) -> None:
        """Park an in-play order until the bet delay has passed."""
        o.level = Pending(own, price, tif, release)
        self._orders[o.id] = o
        heappush(self._pending, (release, o.id, o))

    def _release(self, seq: int, out: list[Event]) -> None:
        """Bring every order whose bet delay is over to the book, earliest first."""
        pending = self._pending
        now = self.now
        while pending and pending[0][0] <= now:
            o = heappop(pending)[2]
            if not o.remaining:
                continue
            pend = o.level
            assert type(pend) is Pending
            own = pend.side
            if pend.tif == "FOK":
                opp = own.market.lays[own.ridx] if own.side == BACK else own.market.backs[own.ridx]
                if not self._fillable(opp, pend.price, o.remaining):
                    self._cancel_order(seq, o, o.remaining, FOK, out)
                    continue
            del self._orders[o.id]
            self._execute(seq, o, own.side, own.market, own.ridx, pend.price, o.remaining,
                          pend.tif, out)

    def _execute(
        self, seq: int, o: Order, side: str, m: Market, i: int, price: int, qty: int, tif: str,
        out: list[Event],
    ) -> None:
        """Match an accepted order against the book, then rest (GTC) or cancel (IOC, FOK) what
        is left. The order's liability is already reserved."""
        o.remaining = qty
        if side == BACK:
            opp = m.lays[i]
            if opp.best >= price:
                qty = self._take(seq, o, True, price, qty, opp, out)
        else:
            opp = m.backs[i]
            if opp.best <= price:
                qty = self._take(seq, o, False, price, qty, opp, out)
        if not qty:
            return
        if tif == GTC:
            own = (m.backs if side == BACK else m.lays)[i]
            lvl = own.levels.get(price)
            if lvl is None:
                lvl = own.add_level(price)
            lvl.queue.append(o)
            lvl.total += qty
            lvl.live += 1
            o.level = lvl
            self._orders[o.id] = o
            return
        # IOC (or a FOK that was fillable but met a book that changed: cannot happen within
        # one command, kept for safety): release what is left.
        pos = o.pos
        pos.unreserve(side, i, price, qty)
        pos.reexpose()
        pos.staked -= qty
        o.remaining = 0
        out.append((
            ORDER_CANCELLED, seq, o.id, pos.acct.id, m.id, m.runners[i], side, price, qty, 0, IOC,
        ))

    def _take(
        self, seq: int, taker: Order, taker_backs: bool, limit: int, qty: int, opp: Side,
        out: list[Event],
    ) -> int:
        """Match ``qty`` of ``taker`` against the resting orders of ``opp`` at ``limit`` or
        better: best price first, first in first out, at the resting order's price. Returns
        the unmatched quantity. O(trades + levels emptied)."""
        tag = self._ids + seq  # a trade id's number: the seq, with the partition
        levels = opp.levels
        orders = self._orders
        m = opp.market
        mid = m.id
        runner = opp.runner
        i = opp.ridx
        tpos = taker.pos
        tid = taker.id
        taccount = tpos.acct.id
        k = m.winners
        while qty:
            best = opp.best
            if taker_backs:
                if best < limit:
                    break
            elif best > limit:
                break
            lvl = levels[best]
            q = lvl.queue
            x = best - 100
            while q:
                maker = q[0]
                mrem = maker.remaining
                if not mrem:
                    q.popleft()
                    continue
                size = qty if qty < mrem else mrem
                profit = size * x // 100
                # The size as a Python integer for the level total and the event: compiled,
                # size is a C integer, converted here once (engine.pxd).
                matched = size
                mpos = maker.pos
                if taker_backs:
                    bpos, lpos, lay_rem, lay_x = tpos, mpos, mrem, x
                else:
                    bpos, lpos, lay_rem, lay_x = mpos, tpos, qty, limit - 100
                # Backer: unmatched stake becomes a matched bet winning ``profit``.
                bpos.d[i] += profit
                bpos.mw[i] += profit
                bpos.ml[i] -= size
                # Layer: reserved liability shrinks with the unmatched stake, the matched bet
                # loses ``profit`` if the runner wins and gains ``size`` if it loses.
                lpos.d[i] += (
                    lay_rem * lay_x // 100 - (lay_rem - size) * lay_x // 100 - profit - size
                )
                lpos.sl += size
                lpos.mw[i] -= profit
                lpos.ml[i] += size
                bpos.traded = lpos.traded = True
                # bpos.reexpose() and lpos.reexpose(), inline: once per trade
                worst = bpos.sl + least(bpos, k)
                e = -worst if worst < 0 else 0
                if e != bpos.exp:
                    bpos.acct.exposure += e - bpos.exp
                    bpos.exp = e
                if lpos is not bpos:
                    worst = lpos.sl + least(lpos, k)
                    e = -worst if worst < 0 else 0
                    if e != lpos.exp:
                        lpos.acct.exposure += e - lpos.exp
                        lpos.exp = e
                if taker_backs:
                    out.append((
                        TRADE, seq, f"{tag}-{len(out)}", mid, runner, lvl.price, matched, tid,
                        maker.id, taccount, mpos.acct.id, BACK,
                    ))
                else:
                    out.append((
                        TRADE, seq, f"{tag}-{len(out)}", mid, runner, lvl.price, matched,
                        maker.id, tid, mpos.acct.id, taccount, LAY,
                    ))
                lvl.total -= matched
                qty -= size
                taker.remaining = qty
                if size == mrem:
                    q.popleft()
                    maker.remaining = 0
                    lvl.live -= 1
                    del orders[maker.id]
                else:
                    maker.remaining = mrem - size
                if not qty:
                    break
            if not lvl.live:
                q.clear()  # no order keeps the dropped level alive (no cycles)
                opp.remove_level(best)
        return qty

    def _cancel(self, cmd: Command, out: list[Event]) -> None:
        _, seq, ts, account, order_id, reduce = cmd
        o = self._orders.get(order_id)
        if o is None:
            return self._reject(out, seq, "cancel", UNKNOWN_ORDER, account, None, None, order_id)
        pos = o.pos
        mid = pos.market.id
        if pos.acct.id != account:
            return self._reject(out, seq, "cancel", NOT_OWNER, account, mid, None, order_id)
        if pos.market.status != OPEN:
            return self._reject(out, seq, "cancel", MARKET_NOT_OPEN, account, mid, None, order_id)
        rem = o.remaining
        if reduce is None:
            size = rem
        elif reduce <= 0 or reduce > MAX_MONEY:
            return self._reject(out, seq, "cancel", INVALID_STAKE, account, mid, None, order_id)
        else:
            size = rem if reduce >= rem else reduce
        self._cancel_order(seq, o, size, USER, out)

    def _replace(self, cmd: Command, out: list[Event]) -> None:
        _, seq, ts, account, order_id, price = cmd
        o = self._orders.get(order_id)
        if o is None:
            return self._reject(out, seq, "replace", UNKNOWN_ORDER, account, None, None, order_id)
        pos = o.pos
        m = pos.market
        if pos.acct.id != account:
            return self._reject(out, seq, "replace", NOT_OWNER, account, m.id, None, order_id)
        if m.status != OPEN:
            return self._reject(
                out, seq, "replace", MARKET_NOT_OPEN, account, m.id, None, order_id
            )
        if price not in TICK:
            return self._reject(out, seq, "replace", INVALID_PRICE, account, m.id, None, order_id)
        own = o.level.side
        side = own.side
        i = own.ridx
        rem = o.remaining
        old_price = o.level.price
        acct = pos.acct
        if side == LAY and price > old_price:
            # A dearer lay risks more: check it as if the old order were already gone.
            pos.unreserve(side, i, old_price, rem)
            e = pos.reserve(side, i, price, rem)
            exposure = acct.exposure - pos.exp + e
            pos.unreserve(side, i, price, rem)
            pos.reserve(side, i, old_price, rem)
            if exposure > acct.cover:
                return self._reject(
                    out, seq, "replace", self._short(acct, exposure), account, m.id, None,
                    order_id,
                )
        persist = o.persist
        # A resting order is GTC; one still waiting out the bet delay keeps its own tif.
        tif = o.level.tif if type(o.level) is Pending else GTC
        self._cancel_order(seq, o, rem, REPLACE, out)
        e = pos.reserve(side, i, price, rem)
        acct.exposure += e - pos.exp
        pos.exp = e
        pos.staked += rem  # as much as the cancel released: a replace never passes the limit
        oid = self._ids + seq
        out.append((
            ORDER_ACCEPTED, seq, oid, account, m.id, own.runner, side, price, rem, tif,
            "PERSIST" if persist else "LAPSE", None,
        ))
        new = _new_order(oid, pos, rem, persist)
        if m.in_play and m.delay:
            self._delay(new, own, price, tif, self.now + m.delay)
        else:
            self._execute(seq, new, side, m, i, price, rem, tif, out)

    # ------------------------------------------------------------------ the rest

    def _heartbeat(self, cmd: Command, out: list[Event]) -> None:
        """Time moved on (delayed orders were released by ``apply``); nothing else happens."""

    def _invalid(self, cmd: Command, out: list[Event]) -> None:
        """A command the decoder could not make sense of: reject it with the decoder's reason."""
        _, seq, ts, command, account, market, ref, order, reason = cmd
        self._reject(out, seq, command, reason, account, market, ref, order)


COMMAND_KINDS = (
    "place", "cancel", "replace", "deposit", "withdraw", "transfer", "transfer_in",
    "create_market", "market_status", "turn_in_play", "settle", "void", "heartbeat", "invalid",
)
"""Every command type the engine handles; ``Exchange._<type>`` handles it."""

__all__ = ["Exchange", "SequenceError", "Command", "TIFS", "PERSISTENCES", "SIDES", "NO_BACK",
           "NO_LAY"]
