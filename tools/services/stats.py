"""Live market statistics: a consumer of the output stream that keeps, per market and runner,
the book (best prices available to back and to lay, with sizes), traded volume per price,
last traded price, volume-weighted average price and order counts.

It rebuilds the book from events alone: an accepted order rests at its price until trades
and cancellations take it away; an order accepted in-play with a bet delay waits, as in the
matcher, until an entry's time reaches its release. Everything it keeps is in Redis:

- ``exch:{p}:stats:<market>``: the market's statistics as JSON (decimal strings, the public
  form), for any process in any language;
- ``exch:{p}:stats:<market>:state``: the consumer's own state of that market (msgpack), and
  ``exch:{p}:stats:cursor``, the last seq applied, written in the same transaction, so that
  a restarted consumer continues exactly where the last one committed.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped]
import redis
from sortedcontainers import SortedDict  # type: ignore[import-untyped]

from exchange.units import format_money, format_price
from journal.consumer import Entry
from journal.keys import Keys

GROUP = "stats"


@dataclass
class RunnerStats:
    """One runner of one market."""

    backs: SortedDict = field(default_factory=SortedDict)  # resting BACK: price -> size
    lays: SortedDict = field(default_factory=SortedDict)  # resting LAY: price -> size
    traded: dict[int, int] = field(default_factory=dict)  # price -> matched volume (pence)
    ltp: int | None = None
    volume: int = 0
    value: int = 0  # sum of price * size, for the VWAP
    orders: int = 0  # live orders resting or waiting
    placed: int = 0  # orders accepted, ever

    def to_back(self, n: int = 3) -> list[tuple[int, int]]:
        """Best LAY money a backer can take: highest prices first."""
        return [(p, self.lays[p]) for p in reversed(self.lays.keys()[-n:])]

    def to_lay(self, n: int = 3) -> list[tuple[int, int]]:
        """Best BACK money a layer can take: lowest prices first."""
        return [(p, self.backs[p]) for p in self.backs.keys()[:n]]

    @property
    def vwap(self) -> int | None:
        """Volume-weighted average traded price, in hundredths (rounded to nearest)."""
        return (self.value + self.volume // 2) // self.volume if self.volume else None


@dataclass
class MarketStats:
    """One market: definition, status and per-runner statistics, plus its live orders."""

    market: str
    runners: list[int]
    delay: int = 0
    status: str = "OPEN"
    in_play: bool = False
    winners: list[int] = field(default_factory=list)
    seq: int = 0
    by_runner: dict[int, RunnerStats] = field(default_factory=dict)
    # order id -> [runner, side, price, remaining, release ts (0 once in the book)]
    orders: dict[int, list[Any]] = field(default_factory=dict)
    waiting: list[tuple[int, int]] = field(default_factory=list)  # heap of (release, order)

    def __post_init__(self) -> None:
        for r in self.runners:
            self.by_runner.setdefault(r, RunnerStats())

    # ------------------------------------------------------------------ the book

    def _level(self, runner: int, side: str) -> SortedDict:
        rs = self.by_runner[runner]
        return rs.backs if side == "BACK" else rs.lays

    def _move(self, runner: int, side: str, price: int, size: int) -> None:
        level = self._level(runner, side)
        left = level.get(price, 0) + size
        if left > 0:
            level[price] = left
        else:
            level.pop(price, None)

    def release(self, ts: int) -> None:
        """Orders whose bet delay is over join the book (before the entry's events)."""
        while self.waiting and self.waiting[0][0] <= ts:
            _, oid = heapq.heappop(self.waiting)
            o = self.orders.get(oid)
            if o is not None and o[4]:
                o[4] = 0
                self._move(o[0], o[1], o[2], o[3])

    def apply(self, ev: dict[str, Any], ts: int) -> None:
        kind = ev["type"]
        if kind == "order_accepted":
            runner, side, price, stake = ev["runner"], ev["side"], ev["price"], ev["stake"]
            release = ts + self.delay if self.in_play and self.delay else 0
            self.orders[ev["order"]] = [runner, side, price, stake, release]
            rs = self.by_runner[runner]
            rs.orders += 1
            rs.placed += 1
            if release:
                heapq.heappush(self.waiting, (release, ev["order"]))
            else:
                self._move(runner, side, price, stake)
        elif kind == "trade":
            runner, price, size = ev["runner"], ev["price"], ev["size"]
            rs = self.by_runner[runner]
            rs.traded[price] = rs.traded.get(price, 0) + size
            rs.ltp = price
            rs.volume += size
            rs.value += price * size
            for oid in (ev["back_order"], ev["lay_order"]):
                self._reduce(oid, size)
        elif kind == "order_cancelled":
            self._reduce(ev["order"], ev["size"])
        elif kind == "market_status_changed":
            self.status = ev["status"]
            self.in_play = ev["in_play"]
        elif kind == "market_settled":
            self.status = "VOIDED" if ev["void"] else "SETTLED"
            self.winners = list(ev["winners"])
            self.orders.clear()
            self.waiting.clear()
            for rs in self.by_runner.values():
                rs.backs.clear()
                rs.lays.clear()
                rs.orders = 0

    def _reduce(self, oid: int, size: int) -> None:
        o = self.orders.get(oid)
        if o is None:
            return
        o[3] -= size
        if not o[4]:
            self._move(o[0], o[1], o[2], -size)
        if o[3] <= 0:
            del self.orders[oid]
            self.by_runner[o[0]].orders -= 1

    # ------------------------------------------------------------------ forms

    def view(self, depth: int = 3) -> dict[str, Any]:
        """The public statistics of the market, JSON-ready (decimal strings)."""
        def levels(pairs: list[tuple[int, int]]) -> list[list[str]]:
            return [[format_price(p), format_money(s)] for p, s in pairs]

        runners = []
        for r in self.runners:
            rs = self.by_runner[r]
            runners.append({
                "runner": r,
                "to_back": levels(rs.to_back(depth)),
                "to_lay": levels(rs.to_lay(depth)),
                "ltp": format_price(rs.ltp) if rs.ltp else None,
                "vwap": format_price(rs.vwap) if rs.vwap else None,
                "volume": format_money(rs.volume),
                "traded": {format_price(p): format_money(v) for p, v in sorted(rs.traded.items())},
                "orders": rs.orders,
                "placed": rs.placed,
            })
        return {"market": self.market, "status": self.status, "in_play": self.in_play,
                "winners": self.winners, "seq": self.seq, "runners": runners}

    def dump(self) -> bytes:
        """The consumer's state of this market, to resume from."""
        return msgpack.packb([
            self.market, self.runners, self.delay, self.status, self.in_play, self.winners,
            self.seq,
            [[r, list(rs.backs.items()), list(rs.lays.items()), list(rs.traded.items()), rs.ltp,
              rs.volume, rs.value, rs.orders, rs.placed] for r, rs in self.by_runner.items()],
            [[oid, *o] for oid, o in self.orders.items()],
            self.waiting,
        ])

    @classmethod
    def load(cls, data: bytes) -> MarketStats:
        (market, runners, delay, status, in_play, winners, seq, by_runner, orders,
         waiting) = msgpack.unpackb(data, strict_map_key=False)
        m = cls(market, runners, delay, status, in_play, winners, seq)
        for r, backs, lays, traded, ltp, volume, value, n, placed in by_runner:
            m.by_runner[r] = RunnerStats(SortedDict(backs), SortedDict(lays), dict(traded), ltp,
                                         volume, value, n, placed)
        m.orders = {o[0]: list(o[1:]) for o in orders}
        m.waiting = [tuple(w) for w in waiting]  # type: ignore[misc]
        heapq.heapify(m.waiting)
        return m


class StatsSink:
    """The statistics consumer's sink: applies entries, then writes the changed markets and
    the cursor to Redis in one transaction (idempotent by seq)."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.markets: dict[str, MarketStats] = {}
        for mid in sorted(self._members()):
            data = client.get(self._state_key(mid))
            if data is not None:
                self.markets[mid] = MarketStats.load(data)
        cursor = client.get(self._cursor_key)
        self.cursor = int(cursor) if cursor else 0

    @property
    def _cursor_key(self) -> str:
        return self.keys.stats("") + "cursor"

    def _state_key(self, market: str) -> str:
        return self.keys.stats(market) + ":state"

    def _members(self) -> list[str]:
        return [m.decode() if isinstance(m, bytes) else m
                for m in self.client.smembers(self.keys.stats_index)]

    def committed_seq(self) -> int:
        return self.cursor

    def write(self, entries: Sequence[Entry]) -> int:
        dirty: set[str] = set()
        for seq, ts, events in entries:
            if seq <= self.cursor:
                continue
            for m in self.markets.values():
                if m.waiting and m.waiting[0][0] <= ts:
                    m.release(ts)
                    dirty.add(m.market)
            for ev in events:
                mid = ev.get("market")
                if ev["type"] == "market_created":
                    self.markets[mid] = MarketStats(mid, list(ev["runners"]), ev["bet_delay_ms"])
                m = self.markets.get(mid) if mid is not None else None
                if m is None:
                    continue
                m.apply(ev, ts)
                m.seq = seq
                dirty.add(mid)
            self.cursor = seq
        pipe = self.client.pipeline(transaction=True)
        for mid in sorted(dirty):
            m = self.markets[mid]
            pipe.set(self.keys.stats(mid), json.dumps(m.view()))
            pipe.set(self._state_key(mid), m.dump())
            pipe.sadd(self.keys.stats_index, mid)
        pipe.set(self._cursor_key, self.cursor)
        pipe.execute()
        return self.cursor


def read_view(client: redis.Redis, market: str, keys: Keys | None = None) -> dict | None:
    """A market's statistics as kept in Redis, or None."""
    data = client.get((keys or Keys()).stats(market))
    return json.loads(data) if data else None


def read_markets(client: redis.Redis, keys: Keys | None = None) -> list[str]:
    """Markets that have statistics, sorted."""
    keys = keys or Keys()
    return sorted(m.decode() if isinstance(m, bytes) else m
                  for m in client.smembers(keys.stats_index))


class StatsService:
    """Runs the statistics consumer in this process, if no other process runs it.

    One process keeps the statistics (it holds a short lease, renewed every second); any
    other ``exch stats`` or ``exch book`` just reads what it keeps.
    """

    LEASE_MS = 5000

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        import os
        import socket
        import threading

        from journal.consumer import GroupConsumer

        self.client = client
        self.keys = keys or Keys()
        self.lease = self.keys.stats("") + "lease"
        self.me = f"{socket.gethostname()}:{os.getpid()}"
        self.leading = bool(client.set(self.lease, self.me, nx=True, px=self.LEASE_MS))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.consumer = (
            # holding the lease, it is the only live consumer of its group: claim at once
            GroupConsumer(client, GROUP, StatsSink(client, self.keys), self.keys,
                          flush_events=20_000, flush_seconds=0.5, claim_idle_ms=0)
            if self.leading else None
        )
        if self.leading:
            self._spawn(self._keep_lease)

    def _spawn(self, target: Any, **kwargs: Any) -> None:
        import threading

        t = threading.Thread(target=target, kwargs=kwargs, daemon=True)
        t.start()
        self._threads.append(t)

    def _keep_lease(self) -> None:
        while not self._stop.wait(1.0):
            self.client.set(self.lease, self.me, px=self.LEASE_MS)

    def catch_up(self) -> None:
        """Consume until the statistics include everything committed so far (if leading)."""
        if self.consumer is not None:
            self.consumer.run(follow=False)

    def follow(self) -> None:
        """Keep consuming in the background until ``stop`` (if leading)."""
        if self.consumer is not None:
            self._spawn(self.consumer.run, follow=True)

    def stop(self) -> None:
        """Stop consuming and give the lease up."""
        self._stop.set()
        if self.consumer is not None:
            self.consumer.stopping.set()
        for t in self._threads:
            t.join(timeout=10)
        if self.leading and self.client.get(self.lease) == self.me.encode():
            self.client.delete(self.lease)
