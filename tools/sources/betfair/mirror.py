"""What the converter knows of the exchange it writes for: our orders, and a mirror of the core.

``Mirror`` appends each command it emits and applies it at once to a private ``Exchange``,
following the events, so it always knows which of our orders exist, what is left of them and
which are still waiting out an in-play bet delay; the trades it sees are the report's
expected matched volume. ``Level``, ``Runner`` and ``Market`` are its view of our orders and
of the recording's book, per price, per runner and per market.
"""

from __future__ import annotations

from typing import Any

from exchange import Exchange, decode
from exchange.events import ORDER_CANCELLED, ORDER_REJECTED, TRADE
from exchange.units import format_money, format_price

from .accounts import BACK
from .plan import MarketPlan
from .report import MarketReport, VolumeKey


class Level:
    """Our orders at one price on one side of one runner (resting or waiting out the bet
    delay), in placement order, and how much of them pending takers will consume. A level
    leaves its book when it holds nothing."""

    __slots__ = ("orders", "total", "reserved", "book", "price")

    def __init__(self, book: dict[int, Level], price: int) -> None:
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


class Runner:
    """One runner: our orders per price on each side, and the recording's book as last
    reported (the target the converter brings our orders to)."""

    __slots__ = ("id", "lay", "back", "tgt_lay", "tgt_back")

    def __init__(self, rid: int) -> None:
        self.id = rid
        self.lay: dict[int, Level] = {}  # our LAY orders: the recording's atb
        self.back: dict[int, Level] = {}  # our BACK orders: the recording's atl
        self.tgt_lay: dict[int, int] = {}  # the recording's atb, pence
        self.tgt_back: dict[int, int] = {}  # the recording's atl, pence


class Market:
    """One market being converted: its plan, its report, its runners and its status, and
    which of its changes comes next."""

    def __init__(self, plan: MarketPlan, report: MarketReport) -> None:
        self.plan = plan
        self.report = report
        self.id = plan.market
        self.runners: dict[int, Runner] = {}
        self.status: str | None = None
        self.next = 0  # index of the next change of this market


class Mirror:
    """The commands written so far, applied to a private ``Exchange`` as they are written,
    and our orders in it: resting (by level) and takers (what they will consume)."""

    def __init__(self, first_seq: int) -> None:
        self.first_seq = first_seq
        self.commands: list[dict[str, Any]] = []
        self.ex = Exchange()
        self.ex.last_seq = first_seq - 1
        self.orders: dict[int, tuple[Level, str]] = {}  # book order id -> (level, account)
        self.takers: dict[int, list[Any]] = {}  # id -> [level, planned, left, price, market]
        self.matched: dict[VolumeKey, int] = {}
        self.rejections: list[dict[str, Any]] = []

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
        """``size`` of order ``oid`` is gone (traded, cancelled or never accepted)."""
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
        self, m: Market, r: Runner, side: str, price: int, stake: int, account: str,
        ts: int, taker_level: Level | None = None,
    ) -> None:
        """Place ``stake`` at ``price``: a resting GTC/PERSIST order joining its level, or
        (with ``taker_level``) an IOC taker reserving what it will consume there."""
        seq = self.first_seq + len(self.commands)
        cmd: dict[str, Any] = {
            "type": "place", "account": account, "market": m.id, "runner": r.id, "side": side,
            "price": format_price(price), "stake": format_money(stake),
        }
        if taker_level is None:
            book = r.back if side == BACK else r.lay
            lvl = book.get(price)
            if lvl is None:
                lvl = book[price] = Level(book, price)
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

    def _cancel(self, lvl: Level, amount: int, ts: int) -> int:
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

    def drain(self) -> int:
        """Heartbeats until no order waits out a bet delay (only needed when a recording ends
        with the market still open in-play); how many."""
        n = 0
        while (wake := self.ex.next_wakeup()) is not None:
            self.emit({"type": "heartbeat", "ts": max(wake, self.ex.now)})
            n += 1
        return n

