"""The gateway's view of one partition: a follower of its journal, kept in memory.

The gateway answers "what are my orders, my balance, this market's ladder" from the very state
the matcher has, not from a cache of guesses: it holds a second copy of the partition's core
(``journal.follower.Follower``, not announcing itself, so it never takes snapshots), fed by
the output the matcher commits and checked byte for byte against it like any follower. After
each answer is applied, its events are handed on (``on_events``): they settle the outcome of
the commands the gateway sequenced and feed the WebSocket streams.

Queries take ``lock`` and read the core's objects directly; the follower applies under the same
lock, a few entries at a time, so a query never sees half an answer and waits at most for one
short batch. The core keeps only live orders; what was accepted, matched and cancelled is kept
here per order from the events (``OrderView``), and for ``FINISHED_KEPT`` orders after they
finish, so that a client can still read its order's final state for a while.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from exchange.units import format_money, format_price
from journal.follower import Follower
from journal.history import History
from journal.keys import Keys
from journal.signing import Verifier
from journal.streams import Row, parse_id
from journal.wire import read_entries

log = logging.getLogger("exch.gateway")

EventsBySeq = list[tuple[int, list[dict[str, Any]]]]
"""Answers in seq order: (seq, its events as stream-form maps)."""


@dataclass
class OrderView:
    """One order as its owner sees it (amounts in pence, price in hundredths)."""

    order: int
    account: str
    market: str
    runner: int
    side: str
    price: int
    stake: int | None
    """The stake asked for; None for an order already live when the gateway started (the
    state it loaded holds what remains, not what was asked)."""
    tif: str | None
    persistence: str | None
    ref: str | None
    seq: int
    """The seq of the command that placed it."""
    matched: int = 0
    cancelled: int = 0
    remaining: int = 0
    trades: int = 0
    state: str = "LIVE"
    """LIVE while any of it is unmatched; then FINISHED (matched, cancelled or lapsed)."""

    def json(self) -> dict[str, Any]:
        """The public JSON form: decimal strings for money and prices."""
        return {
            "order": self.order, "account": self.account, "market": self.market,
            "runner": self.runner, "side": self.side, "price": format_price(self.price),
            "stake": None if self.stake is None else format_money(self.stake),
            "matched": format_money(self.matched), "cancelled": format_money(self.cancelled),
            "remaining": format_money(self.remaining), "tif": self.tif,
            "persistence": self.persistence, "ref": self.ref, "seq": self.seq,
            "state": self.state,
        }


class PartitionView(Follower):
    """One partition's state in the gateway (see the module docstring)."""

    BATCH = 8
    """Output entries applied per turn under the lock (each up to 500 commands): a query
    waits for at most one such turn."""

    PAUSE_COLLECTOR = False
    """The gateway serves requests in the same process, and a request's exceptions and
    frames do make cycles: the collector stays on (the loaded state is frozen out of its
    scans instead, see ``start``)."""

    FINISHED_KEPT = 100_000
    """Finished orders whose final state is kept for their owners to read."""

    def __init__(self, client: redis.Redis, keys: Keys,
                 on_events: Callable[[int, EventsBySeq], None] | None = None,
                 verifier: Verifier | None = None) -> None:
        super().__init__(client, keys, announce=False, verifier=verifier)
        self.block_ms = 100
        self.lock = threading.Lock()
        self.on_events = on_events
        self.partition = keys.number
        self.answered = 0
        """The last seq whose answer is applied here."""
        self.started_at = 0
        """The seq of the state it started from: answers after it are handed on."""
        self.orders: dict[int, OrderView] = {}
        self.by_account: dict[str, dict[int, OrderView]] = {}
        self.finished: OrderedDict[int, OrderView] = OrderedDict()
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self.history_reader = History(self.client, keys)

    # ------------------------------------------------------------------ following

    def start(self) -> None:
        """The follower's start (snapshot, then the journal after it), then a view of each
        order the loaded state holds."""
        with self.lock:
            super().start()
            self.answered = self.started_at = self.ex.last_seq
            for order in list(self.ex._orders.values()):
                self._adopt(order)
        gc.freeze()  # the loaded state (perhaps millions of objects) is never rescanned
        self.ready.set()

    def _adopt(self, order: Any) -> None:
        pos, level = order.pos, order.level
        side = level.side
        view = OrderView(
            order=order.id, account=pos.acct.id, market=pos.market.id, runner=side.runner,
            side=side.side, price=level.price, stake=None,
            tif=getattr(level, "tif", None), persistence="PERSIST" if order.persist
            else "LAPSE", ref=None, seq=int(order.id) % (10 ** 14), remaining=order.remaining)
        self.orders[view.order] = view
        self.by_account.setdefault(view.account, {})[view.order] = view

    def serve(self) -> None:
        """Follow until ``stopping``; a failure is kept in ``failed`` (the gateway then says
        it is unhealthy) rather than lost in a thread."""
        try:
            self.run()
        except BaseException as e:  # noqa: BLE001 - reported by /v1/health and the log
            self.failed = e
            self.ready.set()
            log.exception("partition %s: the gateway's view stopped", self.keys.partition)

    def _verify(self, recorded: list[Row]) -> None:
        before = self._out
        with self.lock:
            super()._verify(recorded)
            if self._out == before:
                return
            upto = parse_id(self._out)
            answers = [(seq, events) for seq, _ts, events in read_entries(
                r for r in recorded if parse_id(r[0]) <= upto)]
            self._index(answers)
            self.answered = self.ex.last_seq
        if self.on_events is not None and answers:
            self.on_events(self.partition, answers)

    def _index(self, answers: EventsBySeq) -> None:
        """Keep each order's view up to date from the events of a few answers."""
        orders = self.orders
        touched: set[int] = set()
        for _last, events in answers:
            for e in events:
                kind = e.get("type")
                if kind == "order_accepted":
                    view = OrderView(
                        order=e["order"], account=e["account"], market=e["market"],
                        runner=e["runner"], side=e["side"], price=e["price"],
                        stake=e["stake"], tif=e.get("tif"), persistence=e.get("persistence"),
                        ref=e.get("ref"), seq=e["seq"], remaining=e["stake"])
                    orders[view.order] = view
                    self.by_account.setdefault(view.account, {})[view.order] = view
                    touched.add(view.order)
                elif kind == "trade":
                    for key in ("back_order", "lay_order"):
                        view = orders.get(e[key])
                        if view is not None:
                            view.matched += e["size"]
                            view.trades += 1
                            touched.add(view.order)
                elif kind == "order_cancelled":
                    view = orders.get(e["order"])
                    if view is not None:
                        view.cancelled += e["size"]
                        touched.add(view.order)
        for oid in touched:
            view = orders[oid]
            live = self.ex.order(oid)
            if live is not None and live.remaining:
                view.remaining = live.remaining
                continue
            view.remaining = 0
            view.state = "FINISHED"
            del orders[oid]
            mine = self.by_account.get(view.account)
            if mine is not None:
                mine.pop(oid, None)
                if not mine:
                    del self.by_account[view.account]
            self.finished[oid] = view
            if len(self.finished) > self.FINISHED_KEPT:
                self.finished.popitem(last=False)

    # ------------------------------------------------------------------ queries (take lock)

    def order_view(self, order: int) -> OrderView | None:
        """An order live here, or finished lately."""
        return self.orders.get(order) or self.finished.get(order)

    def answers_between(self, after: int, upto: int, count: int = 256
                        ) -> list[tuple[int, list]]:
        """The answers of seqs ``after+1 .. upto`` (whole entries; events past either end
        are the caller's to drop), read from the output (and the archive below Redis), at
        most ``count`` entries from the first. No lock: it reads Redis, not the state."""
        start = self.history_reader.start_before(after + 1)
        rows = self.history_reader.xrange("out", min=b"(" + start, max=f"{upto}-0",
                                          count=count)
        return [(seq, events) for seq, _ts, events in read_entries(rows)]


@dataclass
class Ledger:
    """An account's money in one partition (pence)."""

    balance: int = 0
    exposure: int = 0
    available: int = 0
    markets: dict[str, int] = field(default_factory=dict)
