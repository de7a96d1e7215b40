"""Live market statistics: a consumer of the output stream that keeps, per market and runner,
the book (best prices available to back and to lay, with sizes), traded volume per price,
last traded price, volume-weighted average price and order counts.

It rebuilds the book from events alone: an accepted order rests at its price until trades
and cancellations take it away; an order accepted in-play with a bet delay waits, as in the
matcher, until an entry's time reaches its release. Everything it keeps is in Redis:

- ``exch:{p}:stats:<market>``: the market's statistics as JSON (decimal strings, the public
  form), for any process in any language;
- ``exch:{p}:stats-state:<market>``: the consumer's own state of that market (msgpack), and
  ``exch:{p}:stats-cursor``, the last seq applied, written in the same transaction, so that
  a restarted consumer continues exactly where the last one committed.

One process keeps the statistics: the one holding the lease ``exch:{p}:stats-lease`` (the
journal's lease script, as for the matcher). Its writes are fenced by the lease: each
transaction watches the lease key and checks its token first, so a consumer that lost the
lease (paused past its expiry, say) cannot write over its successor.
"""

from __future__ import annotations

import heapq
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped]
import redis
from sortedcontainers import SortedDict  # type: ignore[import-untyped]

from exchange.errors import LeaseLost
from exchange.units import format_money, format_price
from journal.consumer import GroupConsumer
from journal.keys import Keys
from journal.lease import Lease
from journal.wire import Entry

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


class LiveOrder:
    """An order the statistics still count: resting, or waiting out the bet delay."""

    __slots__ = ("runner", "side", "price", "remaining", "release")

    def __init__(self, runner: int, side: str, price: int, remaining: int, release: int) -> None:
        self.runner = runner
        self.side = side
        self.price = price
        self.remaining = remaining
        self.release = release
        """Envelope time at which it reaches the book; 0 once it is there."""

    def fields(self) -> list[Any]:
        """As stored: ``[runner, side, price, remaining, release]``."""
        return [self.runner, self.side, self.price, self.remaining, self.release]


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
    orders: dict[int, LiveOrder] = field(default_factory=dict)
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
            if o is not None and o.release:
                o.release = 0
                self._move(o.runner, o.side, o.price, o.remaining)

    def apply(self, ev: dict[str, Any], ts: int) -> None:
        kind = ev["type"]
        if kind == "order_accepted":
            runner, side, price, stake = ev["runner"], ev["side"], ev["price"], ev["stake"]
            release = ts + self.delay if self.in_play and self.delay else 0
            self.orders[ev["order"]] = LiveOrder(runner, side, price, stake, release)
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
        o.remaining -= size
        if not o.release:
            self._move(o.runner, o.side, o.price, -size)
        if o.remaining <= 0:
            del self.orders[oid]
            self.by_runner[o.runner].orders -= 1

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
            [[oid, *o.fields()] for oid, o in self.orders.items()],
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
        m.orders = {oid: LiveOrder(*fields) for oid, *fields in orders}
        m.waiting = [tuple(w) for w in waiting]  # type: ignore[misc]
        heapq.heapify(m.waiting)
        return m


class StatsSink:
    """The statistics consumer's sink: applies entries, then writes the changed markets and
    the cursor to Redis in one transaction (idempotent by seq). With a ``lease``, every
    transaction is fenced by it: it raises ``LeaseLost``, writing nothing, once the lease is
    no longer ours."""

    def __init__(
        self, client: redis.Redis, keys: Keys | None = None, lease: Lease | None = None
    ) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.lease = lease
        self.markets: dict[str, MarketStats] = {}
        for mid in read_markets(client, self.keys):
            data = client.get(self.keys.stats_state(mid))
            if data is not None:
                self.markets[mid] = MarketStats.load(data)
        cursor = client.get(self.keys.stats_cursor)
        self.cursor = int(cursor) if cursor else 0

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
            for ev in events:  # an answer: each event has its own seq
                mid = ev.get("market")
                if ev["type"] == "market_created":
                    self.markets[mid] = MarketStats(mid, list(ev["runners"]), ev["bet_delay_ms"])
                m = self.markets.get(mid) if mid is not None else None
                if m is None:
                    continue
                m.apply(ev, ts)
                m.seq = ev.get("seq", seq)
                dirty.add(mid)
            self.cursor = seq
        self._commit(sorted(dirty))
        return self.cursor

    def _commit(self, dirty: list[str]) -> None:
        """The changed markets and the cursor in one transaction, fenced by the lease."""
        k = self.keys
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    if self.lease is not None:
                        pipe.watch(k.stats_lease)
                        holder = pipe.get(k.stats_lease)
                        if holder != self.lease.token.encode():
                            who = holder.decode() if holder else "nobody"
                            raise LeaseLost(f"the statistics lease is held by {who}")
                    pipe.multi()
                    for mid in dirty:
                        m = self.markets[mid]
                        pipe.set(k.stats(mid), json.dumps(m.view()))
                        pipe.set(k.stats_state(mid), m.dump())
                        pipe.sadd(k.stats_index, mid)
                    pipe.set(k.stats_cursor, self.cursor)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue  # the lease key changed meanwhile: look again


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
    """Runs the statistics consumer in this process while it holds the statistics lease.

    One process keeps the statistics; any other ``exch stats`` or ``exch book`` just reads
    what it keeps. With ``follow``, a process that does not lead keeps trying for the lease
    and takes over when the leader is gone (the lease expires ``LEASE_MS`` after the leader's
    last renewal); a leader that fails to renew stops consuming at once, and its sink's
    fenced writes could not land anyway.
    """

    LEASE_MS = 5000

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self.client = client
        self.keys = keys or Keys()
        self.lease = Lease(client, self.keys.stats_lease, self.LEASE_MS)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.consumer: GroupConsumer | None = None
        self.leading = self.lease.acquire()
        if self.leading:
            self.consumer = self._consumer()

    def _consumer(self) -> GroupConsumer:
        # Holding the lease, it is the only live consumer of its group: claim at once.
        sink = StatsSink(self.client, self.keys, self.lease)
        return GroupConsumer(self.client, GROUP, sink, self.keys,
                             flush_events=20_000, flush_seconds=0.5, claim_idle_ms=0)

    def catch_up(self) -> None:
        """Consume until the statistics include everything committed so far (if leading)."""
        if self.consumer is not None:
            self.consumer.run(follow=False)

    def follow(self) -> None:
        """Keep the statistics up to date in the background until ``stop``: consume while
        leading, renewing the lease; otherwise wait for it."""
        self._spawn(self._keep)
        if self.consumer is not None:
            self._spawn(self._consume, consumer=self.consumer)

    def _spawn(self, target: Any, **kwargs: Any) -> None:
        t = threading.Thread(target=target, kwargs=kwargs, daemon=True)
        t.start()
        self._threads.append(t)

    def _consume(self, consumer: GroupConsumer) -> None:
        try:
            consumer.run(follow=True)
        except LeaseLost:
            self._demote()

    def _demote(self) -> None:
        with self._lock:
            self.leading = False
            if self.consumer is not None:
                self.consumer.stopping.set()
                self.consumer = None

    def _keep(self) -> None:
        """Renew the lease while leading (a fifth of its time apart); else try to take it."""
        while not self._stop.wait(self.LEASE_MS / 5000):
            try:
                if self.leading:
                    if not self.lease.renew():
                        self._demote()
                elif self.lease.acquire():
                    with self._lock:
                        self.leading = True
                        self.consumer = self._consumer()
                    self._spawn(self._consume, consumer=self.consumer)
            except redis.RedisError:
                continue  # Redis away for a moment: the lease decides when it is back

    def stop(self) -> None:
        """Stop consuming and give the lease up (only if it is still ours)."""
        self._stop.set()
        consumer = self.consumer
        if consumer is not None:
            consumer.stopping.set()
        for t in self._threads:
            t.join(timeout=10)
        if self.leading:
            self.lease.release()
