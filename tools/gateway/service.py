"""The gateway's engine room, apart from HTTP: routing and sequencing commands, waiting for
their outcomes, the per-partition views, the WebSocket fan-out and the rate limits.

Everything here but the views' and submitters' threads runs on the server's event loop: the
views hand each applied answer to the loop (``_publish``), which settles the requests waiting
for those seqs and feeds the subscribed streams. A request waits for its outcome at most
``outcome_timeout`` seconds; then it is told its command is sequenced (its seq) and that the
outcome is pending, never a guess.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import redis

from exchange.codec import json_from_wire
from exchange.commands import decode, problem
from exchange.errors import InputError
from exchange.rules import LATEST as LATEST_RULES
from exchange.units import format_money, format_price, format_rate
from journal.keys import Keys
from journal.replay import answered
from journal.routing import ROUTED_BY_FIELD, Router
from journal.signing import Verifier
from journal.streams import parse_id

from .apikeys import Authenticator, Caller, KeyStore
from .model import EventsBySeq, PartitionView
from .submit import BatchingSubmitter


class Refusal(Exception):
    """A request answered with an HTTP error: ``status``, a reason code (the contract's where
    one fits: docs/contract.md) and a message. Nothing was sequenced."""

    def __init__(self, status: int, reason: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.extra = extra


CLIENT_COMMANDS = frozenset({"place", "cancel", "replace", "transfer"})
"""What an account's key may send (its account is put in by the gateway)."""
OPERATOR_COMMANDS = frozenset({"create_market", "market_status", "turn_in_play", "settle",
                               "void", "deposit", "withdraw"})
"""What the operator's key may send: market administration and money in and out."""


@dataclass(eq=False)
class Subscription:
    """One WebSocket stream's queue of messages, filled on the loop by ``_publish``."""

    partition: int
    queue: asyncio.Queue
    """Shared by one stream's subscriptions: items (partition, seq, events)."""
    account: str | None = None
    market: str | None = None
    overflowed: bool = False
    last_seq: int = 0
    """The last seq put in the queue."""


class RateLimiter:
    """A token bucket per key: ``rate`` commands a second, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key_id: str, cost: float = 1.0) -> float:
        """0 if the key may go on now (the cost is taken), else the seconds to wait."""
        now = time.monotonic()
        tokens, at = self._buckets.get(key_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < cost:
            self._buckets[key_id] = (tokens, now)
            return (cost - tokens) / self.rate
        self._buckets[key_id] = (tokens - cost, now)
        return 0.0


class Gateway:
    """The gateway's state and work, one per server process."""

    RECENT = 20_000
    """Answers (by seq) kept per partition for requests that find theirs already applied;
    older ones are read from the output."""

    MAX_BATCH = 100
    """Most commands in one batch request."""

    MAX_STREAMS = 32
    """Most WebSocket streams one key holds open at once: each costs work on every change it
    follows (a market's, a ladder), so a key with a thousand idle ones slowed everyone."""

    def __init__(self, client: redis.Redis, *, outcome_timeout: float = 5.0,
                 rate: float = 100.0, burst: float = 200.0,
                 verifier: Verifier | None = None) -> None:
        """``verifier``: the public key a snapshot must be signed by for the views to start
        from it (default: ``journal.signing.load_verifier()``'s). The gateway never holds the
        private key."""
        self.client = client
        self.router = Router(client)
        self.partitions = list(range(self.router.count))
        self.outcome_timeout = outcome_timeout
        self.keys = KeyStore(client)
        self.auth = Authenticator(self.keys)
        self.limiter = RateLimiter(rate, burst)
        self.views = {p: PartitionView(client, Keys(str(p)), self._from_thread, verifier)
                      for p in self.partitions}
        self.submitters: dict[int, BatchingSubmitter] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.answered = {p: 0 for p in self.partitions}
        self._recent: dict[int, OrderedDict[int, list[dict]]] = {
            p: OrderedDict() for p in self.partitions}
        self._recent_low = {p: 0 for p in self.partitions}
        self._waiters: dict[int, dict[int, list[asyncio.Future]]] = {
            p: {} for p in self.partitions}
        self._by_account: dict[str, set[Subscription]] = {}
        self._by_market: dict[str, set[Subscription]] = {}
        self._threads: list[threading.Thread] = []
        self._streams: dict[str, int] = {}
        """Open WebSocket streams per key id."""
        self._gathering: dict[int, list[tuple[list[tuple], asyncio.Future]]] = {}

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Load every partition's state (snapshot, then the journal after it) and follow."""
        self.loop = asyncio.get_running_loop()
        for p, view in self.views.items():
            self.submitters[p] = BatchingSubmitter(self.client, Keys(str(p)))
            t = threading.Thread(target=view.serve, daemon=True, name=f"exch-gateway-view-{p}")
            t.start()
            self._threads.append(t)
        for p, view in self.views.items():
            await asyncio.to_thread(view.ready.wait)
            if view.failed is not None:
                raise view.failed
            # answers after the state it started from are handed to the loop (``_publish``)
            self.answered[p] = max(self.answered[p], view.started_at)
            self._recent_low[p] = max(self._recent_low[p], view.started_at + 1)
        # serve only once every view has caught up with what the output held at the start:
        # a restarted gateway must not answer from its snapshot's past
        for p, view in self.views.items():
            _, target = await asyncio.to_thread(answered, self.client, Keys(str(p)))
            while self.answered[p] < target:
                if view.failed is not None:
                    raise view.failed
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop following and sequencing."""
        for view in self.views.values():
            view.stopping.set()
        for s in self.submitters.values():
            await asyncio.to_thread(s.close)
        for t in self._threads:
            await asyncio.to_thread(t.join, 10)

    def health(self) -> dict[str, Any]:
        """Per partition: the last seq applied, and whether its view is running."""
        parts = {}
        for p, view in self.views.items():
            parts[str(p)] = {"answered": self.answered[p],
                             "following": view.failed is None and not view.stopping.is_set(),
                             **({"error": str(view.failed)} if view.failed else {})}
        ok = all(v["following"] for v in parts.values())
        return {"status": "ok" if ok else "failing", "partitions": parts}

    # ------------------------------------------------------------------ callers

    def caller(self, key: str | None) -> Caller:
        """Who holds ``key``, or ``Refusal`` 401."""
        found = self.auth.caller(key) if key else None
        if found is None:
            raise Refusal(401, "UNAUTHENTICATED",
                          "a valid API key is required: 'Authorization: Bearer exch_...'")
        return found

    def charge(self, caller: Caller, cost: int = 1) -> None:
        """Take ``cost`` from the caller's rate limit, or ``Refusal`` 429."""
        wait = self.limiter.take(caller.key_id, cost)
        if wait:
            raise Refusal(429, "RATE_LIMITED", f"too many requests: retry in {wait:.2f} s",
                          retry_after=wait)

    # ------------------------------------------------------------------ commands

    def command(self, caller: Caller, obj: Any) -> tuple[int, tuple]:
        """A JSON command from ``caller`` checked at the edge and routed: (partition, core
        tuple); ``Refusal`` (4xx, nothing sequenced) if it cannot be sent."""
        if type(obj) is not dict:
            raise Refusal(400, "MALFORMED", "a command is a JSON object")
        kind = obj.get("type")
        allowed = OPERATOR_COMMANDS if caller.operator else CLIENT_COMMANDS
        if type(kind) is not str:  # an object or a list is not even hashable
            raise Refusal(400, "MALFORMED", "a command's type is one of: "
                          + ", ".join(sorted(allowed)))
        if kind == "transfer_in":
            raise Refusal(403, "SERVICE_ONLY", "transfer_in is sent by the transfer service "
                          "only: send a transfer")
        if kind not in allowed:
            other = CLIENT_COMMANDS if caller.operator else OPERATOR_COMMANDS
            if kind in other:
                raise Refusal(403, "FORBIDDEN", f"{kind} needs "
                              + ("an account's key" if caller.operator else "the operator key"))
            raise Refusal(400, "MALFORMED", f"unknown command type {str(kind)[:40]!r} "
                          f"(this key may send: {', '.join(sorted(allowed))})")
        if "ts" in obj:
            raise Refusal(400, "MALFORMED", "ts is not the client's: the journal stamps time")
        obj = dict(obj)
        if not caller.operator:
            if "account" in obj:
                raise Refusal(400, "MALFORMED", "account comes from the API key, never from "
                              "the request")
            obj["account"] = caller.account
        partition = None
        if kind in ROUTED_BY_FIELD and "partition" in obj:
            partition = obj.pop("partition")
            if type(partition) is not int or partition < 0:
                raise Refusal(400, "MALFORMED", "partition must be a non-negative integer")
        bad = problem(obj)
        if bad is not None:
            raise Refusal(400, bad[0], bad[1])
        cmd = decode(obj, 0, 0, rules=LATEST_RULES)
        if cmd[0] == "invalid":  # problem() and decode() agree; this is the backstop
            raise Refusal(400, "MALFORMED", "not a valid command")
        try:
            p = self.router.route(cmd, partition)
        except InputError as e:
            raise Refusal(400, "UNKNOWN_PARTITION", str(e)) from None
        if kind in ("cancel", "replace"):
            self._check_owner(caller, p, cmd[4])
        return p, cmd

    def _check_owner(self, caller: Caller, partition: int, order: int) -> None:
        view = self.views.get(partition)
        if view is None:
            return
        with view.lock:
            found = view.order_view(order)
        if found is not None and found.account != caller.account:
            raise Refusal(403, "NOT_OWNER", f"order {order} belongs to another account")

    async def sequence(self, routed: list[tuple[int, tuple]]) -> list[tuple[int, int, bool]]:
        """Sequence routed commands, each partition's share in one call (batched with other
        requests'); per command (partition, seq, duplicate). A duplicate's seq is the
        original's (0 if it is no longer known)."""
        shares: dict[int, list[int]] = {}
        for i, (p, _) in enumerate(routed):
            shares.setdefault(p, []).append(i)
        out: list[tuple[int, int, bool]] = [(0, 0, False)] * len(routed)
        loop = asyncio.get_running_loop()
        futures = {}
        for p, at in shares.items():
            fut = loop.create_future()
            self._gathering.setdefault(p, []).append(([routed[i][1] for i in at], fut))
            if len(self._gathering[p]) == 1:
                # sent once the requests that are ready now have queued theirs too: those
                # that arrived together share one sequencer call
                loop.call_soon(self._send, p)
            futures[p] = fut
        for p, fut in futures.items():
            answers = await fut
            for i, a in zip(shares[p], answers):
                out[i] = (p, a, False) if a > 0 else (p, -a, True)
        return out

    def _send(self, p: int) -> None:
        """Send what requests gathered for partition ``p``: together, in calls of at most
        the sequencer's ``BATCH`` commands (a request's commands never split)."""
        gathered = self._gathering.pop(p, [])
        submitter = self.submitters[p]
        group: list[tuple[list[tuple], asyncio.Future]] = []
        size = 0
        for item in gathered + [([], None)]:  # type: ignore[list-item]
            if item[1] is None or size + len(item[0]) > submitter.sequencer.BATCH:
                if group:
                    self._submit_group(submitter, group)
                group, size = [], 0
            if item[1] is not None:
                group.append(item)
                size += len(item[0])

    @staticmethod
    def _submit_group(submitter: BatchingSubmitter,
                      group: list[tuple[list[tuple], asyncio.Future]]) -> None:
        done = submitter.submit([c for batch, _ in group for c in batch])

        def settle(f: Any) -> None:
            error = f.exception()
            at = 0
            for batch, fut in group:
                if not fut.done():
                    if error is not None:
                        fut.set_exception(error)
                    else:
                        fut.set_result(f.result()[at:at + len(batch)])
                at += len(batch)

        asyncio.wrap_future(done).add_done_callback(settle)

    # ------------------------------------------------------------------ outcomes

    def _from_thread(self, partition: int, answers: EventsBySeq) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._publish, partition, answers)

    def _publish(self, p: int, answers: EventsBySeq) -> None:
        recent = self._recent[p]
        waiters = self._waiters[p]
        for last, events in answers:
            if last <= self.answered[p]:
                continue
            by_seq: dict[int, list[dict]] = {}
            for e in events:
                by_seq.setdefault(e["seq"], []).append(e)
            for s, evs in by_seq.items():
                recent[s] = evs
                for fut in waiters.pop(s, ()):
                    if not fut.done():
                        fut.set_result(evs)
            self.answered[p] = last
            if self._by_account or self._by_market:
                self._fan_out(p, by_seq)
        for s in [s for s in waiters if s <= self.answered[p]]:  # commands with no events
            for fut in waiters.pop(s):
                if not fut.done():
                    fut.set_result([])
        while len(recent) > self.RECENT:
            s, _ = recent.popitem(last=False)
            self._recent_low[p] = s + 1

    async def outcome(self, p: int, seq: int, timeout: float | None = None
                      ) -> list[dict] | None:
        """The events answering ``seq`` in partition ``p`` (stream form), or None if they are
        not in within ``timeout`` seconds (default ``outcome_timeout``)."""
        if seq <= self.answered[p]:
            return await self._past(p, seq)
        fut = asyncio.get_running_loop().create_future()
        self._waiters[p].setdefault(seq, []).append(fut)
        try:
            return await asyncio.wait_for(fut, self.outcome_timeout if timeout is None
                                          else timeout)
        except TimeoutError:
            waiting = self._waiters[p].get(seq)
            if waiting is not None and fut in waiting:
                waiting.remove(fut)
                if not waiting:
                    del self._waiters[p][seq]
            return None

    async def _past(self, p: int, seq: int) -> list[dict]:
        found = self._recent[p].get(seq)
        if found is not None:
            return found
        if seq >= self._recent_low[p]:
            return []  # applied, and answered with no events
        answers = await asyncio.to_thread(self.views[p].answers_between, seq - 1,
                                          self.answered[p], 4)
        return [e for _, events in answers for e in events if e["seq"] == seq]

    def sequenced(self, p: int) -> int:
        """The last seq sequenced in partition ``p`` (its input journal's last entry); reads
        Redis: for a seq not answered yet, whether it is a command at all."""
        last = self.client.xrevrange(Keys(str(p)).input, count=1)
        return parse_id(last[0][0])[0] if last else 0

    # ------------------------------------------------------------------ streams

    def open_stream(self, caller: Caller) -> bool:
        """Count a stream opened by ``caller``'s key; False (not counted) if it holds
        ``MAX_STREAMS`` already. Each True is matched by one ``close_stream``."""
        held = self._streams.get(caller.key_id, 0)
        if held >= self.MAX_STREAMS:
            return False
        self._streams[caller.key_id] = held + 1
        return True

    def close_stream(self, caller: Caller) -> None:
        """A stream counted by ``open_stream`` ended."""
        held = self._streams.pop(caller.key_id, 0) - 1
        if held > 0:
            self._streams[caller.key_id] = held

    def subscribe(self, sub: Subscription) -> int:
        """Start filling ``sub``'s queue with what is applied from now; the last seq applied
        before (what the stream must read from history to be whole)."""
        if sub.account is not None:
            self._by_account.setdefault(sub.account, set()).add(sub)
        if sub.market is not None:
            self._by_market.setdefault(sub.market, set()).add(sub)
        return self.answered[sub.partition]

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop filling ``sub``'s queue."""
        for index, name in ((self._by_account, sub.account), (self._by_market, sub.market)):
            if name is not None and name in index:
                index[name].discard(sub)
                if not index[name]:
                    del index[name]

    def _fan_out(self, p: int, by_seq: dict[int, list[dict]]) -> None:
        by_account, by_market = self._by_account, self._by_market
        for s, events in by_seq.items():
            mine: dict[Subscription, list[dict]] = {}
            for e in events:
                for name in (e.get("account"), e.get("back_account"), e.get("lay_account")):
                    if name is not None and name in by_account:
                        for sub in by_account[name]:
                            if sub.partition == p:
                                mine.setdefault(sub, []).append(e)
                market = e.get("market")
                if market is not None and market in by_market:
                    for sub in by_market[market]:
                        if sub.partition == p:
                            mine.setdefault(sub, []).append(e)
            for sub, evs in mine.items():
                if sub.overflowed:
                    continue
                try:
                    sub.queue.put_nowait((p, s, evs))
                    sub.last_seq = s
                except asyncio.QueueFull:
                    sub.overflowed = True

    # ------------------------------------------------------------------ queries

    def account(self, account: str) -> dict[str, Any]:
        """The account's money in each partition and in all: balance, exposure (the worst
        loss its bets can make), available (what it can still risk or withdraw)."""
        parts = {}
        total = [0, 0, 0]
        for p, view in self.views.items():
            with view.lock:
                acct = view.ex.account(account)
                if acct is None:
                    continue
                balance, exposure = acct.balance, acct.exposure
                markets = {m: format_money(pos.exp) for m, pos in acct.positions.items()
                           if pos.exp}
            available = balance - exposure
            parts[str(p)] = {"balance": format_money(balance),
                             "exposure": format_money(exposure),
                             "available": format_money(available), "market_exposure": markets}
            total[0] += balance
            total[1] += exposure
            total[2] += available
        return {"account": account, "balance": format_money(total[0]),
                "exposure": format_money(total[1]), "available": format_money(total[2]),
                "partitions": parts}

    def orders(self, account: str, market: str | None = None) -> list[dict[str, Any]]:
        """The account's live orders (in every partition), oldest first."""
        out = []
        for view in self.views.values():
            with view.lock:
                mine = view.by_account.get(account, {})
                out += [o.json() for o in mine.values() if market is None or o.market == market]
        return sorted(out, key=lambda o: o["order"])

    def order(self, caller: Caller, order: int) -> dict[str, Any]:
        """One order (live, or finished lately) of the caller's; ``Refusal`` 404 or 403."""
        for view in self.views.values():
            with view.lock:
                found = view.order_view(order)
                data = found.json() if found is not None else None
            if data is not None:
                if not caller.operator and data["account"] != caller.account:
                    raise Refusal(403, "NOT_OWNER", f"order {order} belongs to another account")
                return data
        raise Refusal(404, "UNKNOWN_ORDER", f"no order {order} is live or finished lately "
                      "(finished orders are kept for a while; the store keeps all)")

    def market(self, market: str, depth: int = 3) -> dict[str, Any]:
        """A market's definition, status and ladder (``depth`` prices a side)."""
        p = self.router.market(market)
        view = self.views.get(p) if p is not None else None
        if view is not None:
            with view.lock:
                m = view.ex.market(market)
                if m is not None:
                    data = {
                        "market": m.id, "partition": p, "runners": list(m.runners),
                        "status": m.status, "in_play": bool(m.in_play),
                        "commission": format_rate(m.commission),
                        "min_stake": format_money(m.min_stake), "winners": m.winners,
                        "bet_delay_ms": m.delay, "seq": view.answered,
                        "ladder": ladder_json(view.ex.ladder(market, depth)),
                    }
                    return data
        raise Refusal(404, "UNKNOWN_MARKET", f"no market {market[:64]!r} (or it finished and "
                      "left the exchange's state)")

    def markets(self) -> list[dict[str, Any]]:
        """Every market the partitions hold: id, partition, status."""
        out = []
        for p, view in self.views.items():
            with view.lock:
                out += [{"market": m.id, "partition": p, "status": m.status,
                         "in_play": bool(m.in_play)} for m in view.ex.markets()]
        return out


def ladder_json(ladder: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The core's ladder with prices and sizes as decimal strings."""
    return [{"runner": r["runner"],
             "to_back": [[format_price(p), format_money(s)] for p, s in r["to_back"]],
             "to_lay": [[format_price(p), format_money(s)] for p, s in r["to_lay"]]}
            for r in ladder]


def client_event(e: dict[str, Any], account: str | None) -> dict[str, Any]:
    """An event as ``account`` may see it: the public JSON form, with a trade's other side
    (its account and order) left out, since an exchange does not name counterparties; the
    operator (None) sees everything."""
    out = json_from_wire(e)
    if out.get("type") == "trade" and account is not None:
        mine_back = out.get("back_account") == account
        mine_lay = out.get("lay_account") == account
        if mine_back and not mine_lay:
            out["side"] = "BACK"
            out["order"] = out["back_order"]
        elif mine_lay and not mine_back:
            out["side"] = "LAY"
            out["order"] = out["lay_order"]
        for k in ("back_account", "lay_account", "back_order", "lay_order"):
            if not (mine_back and mine_lay):
                out.pop(k, None)
    return out


def public_trade(e: dict[str, Any]) -> dict[str, Any]:
    """A trade as a market's stream shows it to everyone: no accounts, no orders."""
    out = json_from_wire(e)
    for k in ("back_account", "lay_account", "back_order", "lay_order"):
        out.pop(k, None)
    return out


def summary(p: int, seq: int, events: list[dict] | None, account: str | None,
            duplicate: bool = False) -> dict[str, Any]:
    """A command's outcome as the API answers it."""
    if events is None:
        return {"status": "pending", "partition": p, "seq": seq, "duplicate": duplicate,
                "message": "sequenced; its outcome is not in yet: ask GET "
                f"/v1/commands/{p}/{seq}"}
    out: dict[str, Any] = {"status": "accepted", "partition": p, "seq": seq,
                           "duplicate": duplicate}
    for e in events:
        kind = e.get("type")
        if kind == "order_rejected":
            out["status"] = "rejected"
            out["reason"] = e.get("reason")
            if e.get("order") is not None:
                out["order"] = e["order"]
        elif kind == "order_accepted":
            out["order"] = e["order"]
    if "order" in out and out["status"] == "accepted":
        mine = out["order"]
        matched = sum(e["size"] for e in events if e.get("type") == "trade"
                      and mine in (e.get("back_order"), e.get("lay_order")))
        out["matched"] = format_money(matched)
    out["events"] = [client_event(e, account) for e in events]
    return out
