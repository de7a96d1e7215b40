"""A deliberately naive reference model of the exchange rules: the specification, executable.

Written from DESIGN.md ("Betting semantics"), the command and event docstrings and the golden
scenarios, not from ``exchange/engine.py``. Nothing here is incremental or fast: every order
ever accepted stays in one list per market, matching sorts that list, worst-case exposure
enumerates every winner set of every market, settlement sums every trade. It takes the same
decoded command tuples as ``Exchange.apply`` and returns the same event tuples.

The rules, in the order the checks are made:

- Every command first brings to the book the orders whose in-play bet delay is over (envelope
  time ``now`` = the largest ``ts`` seen), earliest release first (ties: lowest order id); a
  fill-or-kill that cannot then be filled in full is cancelled (FOK).
- A BACK at p takes resting LAYs priced >= p, highest first; a LAY at p takes resting BACKs
  priced <= p, lowest first; first in, first out within a price; trades at the resting price.
  Trade id: ``f"{seq}-{index of the trade event among the command's events}"``.
- A backer's profit on a trade is ``floor(size * (price - 1))`` pence, the layer loses exactly
  that; an unmatched BACK risks its stake, an unmatched LAY ``floor(stake * (price - 1))``.
- An order (or a withdrawal) is accepted only if the balance covers the sum over the account's
  unsettled markets of the worst loss over every set of exactly ``winners`` winners, matched
  bets plus unmatched orders at full liability, and that sum does not pass ``MAX_EXPOSURE``
  however large the balance (EXPOSURE_LIMIT; funds are checked first). A replace is checked
  the same way.
- An account's stake in a market, matched (every trade it is a side of) plus unmatched, may
  not pass ``MAX_POSITION_STAKE``: a placement that would take it past is rejected
  (POSITION_LIMIT), checked before the funds.
- From rules 6, a ``transfer`` takes what is available (as a withdrawal does) out of this
  partition (``from_partition`` must be this one, ``to_partition`` another, at most
  ``MAX_PARTITION``), and a ``transfer_in`` credits another partition's transfer here once:
  never when a transfer from the same source partition with that seq or a later one was
  credited before (DUPLICATE_TRANSFER). Before rules 6 both are unknown commands.
- Settlement pays the matched bets, charges ``floor(pnl * rate / 10000)`` on a positive net
  pnl per account and market to the house, and reports the accounts that traded in the order
  of their first accepted order in the market.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, NamedTuple

from exchange.limits import (
    MAX_BALANCE,
    MAX_DELAY_MS,
    MAX_EXPOSURE,
    MAX_ID,
    MAX_INT,
    MAX_MONEY,
    MAX_PARTITION,
    MAX_POSITION_STAKE,
    MAX_RUNNERS,
)

# The ladder of DESIGN.md, in hundredths: (from, to, step); each band starts above its "from".
BANDS = [
    (100, 200, 1), (200, 300, 2), (300, 400, 5), (400, 600, 10), (600, 1000, 20),
    (1000, 2000, 50), (2000, 3000, 100), (3000, 5000, 200), (5000, 10000, 500),
    (10000, 100000, 1000),
]
LADDER = sorted({p for lo, hi, step in BANDS for p in range(lo + step, hi + 1, step)})

COMMAND_TYPES = (
    "create_market", "market_status", "turn_in_play", "deposit", "withdraw", "place", "cancel",
    "replace", "settle", "void", "heartbeat", "transfer", "transfer_in",
)


def profit(size: int, price: int) -> int:
    """What a back of ``size`` pence at ``price`` wins, rounded down to the penny."""
    return size * (price - 100) // 100


class Order:
    def __init__(self, id, account, market, runner, side, price, stake, tif, persist):
        self.id = id
        self.account = account
        self.market = market
        self.runner = runner
        self.side = side
        self.price = price
        self.remaining = stake
        self.tif = tif
        self.persist = persist
        self.release = None  # envelope time at which it reaches the book, while delayed
        self.arrival = None  # when it joined the book: its place in the queue

    @property
    def resting(self) -> bool:
        return self.remaining > 0 and self.arrival is not None

    @property
    def delayed(self) -> bool:
        return self.remaining > 0 and self.release is not None


class Trade(NamedTuple):
    """A matched bet as the model records it: the back and lay accounts, by name."""

    runner: int
    price: int
    size: int
    back: str
    lay: str


class Market:
    def __init__(self, id, runners, commission, min_stake, winners, delay):
        self.id = id
        self.runners = list(runners)
        self.commission = commission
        self.min_stake = min_stake
        self.winners = winners
        self.delay = delay
        self.status = "OPEN"
        self.in_play = False
        self.orders: list[Order] = []  # every accepted order, live or not
        self.trades: list[Trade] = []
        self.accounts: list[str] = []  # in order of their first accepted order here

    @property
    def settled(self) -> bool:
        return self.status in ("SETTLED", "VOIDED")


class Model:
    def __init__(self, rules: int = 1) -> None:
        self.rules = rules  # 1 or 6: the model knows the rules of these two (partition 0)
        self.credited: list[tuple[int, int]] = []  # (source partition, source seq) credited
        self.now = 0
        self.house = 0
        self.net_deposits = 0
        self.markets: dict[str, Market] = {}
        self.balances: dict[str, int] = {}
        self.refs: set[tuple[str, str]] = set()
        self.clock = 0  # counts arrivals at the book

    # ------------------------------------------------------------------ queries

    def live_orders(self) -> list[Order]:
        return [o for m in self.markets.values() for o in m.orders if o.remaining > 0]

    def find(self, order_id: int) -> Order | None:
        for o in self.live_orders():
            if o.id == order_id:
                return o
        return None

    def outcome(self, account: str, m: Market, winners: set, unmatched: bool = True) -> int:
        """The account's profit in ``m`` if exactly ``winners`` win."""
        total = 0
        for runner, price, size, back, lay in m.trades:
            won = profit(size, price) if runner in winners else -size
            if back == account:
                total += won
            if lay == account:
                total -= won
        if unmatched:
            for o in m.orders:
                if o.account == account and o.remaining > 0:
                    if o.side == "BACK" and o.runner not in winners:
                        total -= o.remaining
                    if o.side == "LAY" and o.runner in winners:
                        total -= profit(o.remaining, o.price)
        return total

    def staked(self, account: str, m: Market) -> int:
        """The account's stake in the market: every size it traded, on either side (twice for
        a trade with itself), plus its unmatched orders."""
        matched = sum(size * ((back == account) + (lay == account))
                      for _, _, size, back, lay in m.trades)
        return matched + sum(o.remaining for o in m.orders
                             if o.account == account and o.remaining > 0)

    def short(self, account: str) -> str | None:
        """Why the account's exposure is too much, if it is: funds first, then the limit."""
        x = self.exposure(account)
        if x > self.balances[account]:
            return "INSUFFICIENT_FUNDS"
        if x > MAX_EXPOSURE:
            return "EXPOSURE_LIMIT"
        return None

    def exposure(self, account: str) -> int:
        total = 0
        for m in self.markets.values():
            if m.settled:
                continue
            worst = min(
                self.outcome(account, m, set(ws)) for ws in combinations(m.runners, m.winners)
            )
            total += max(0, -worst)
        return total

    def ladder(self, market_id: str) -> list[dict[str, Any]]:
        """Like ``Exchange.ladder(market, depth=all)``."""
        m = self.markets[market_id]
        out = []
        for r in m.runners:
            sides = {}
            for side, best_first in (("LAY", True), ("BACK", False)):
                sizes: dict[int, int] = {}
                for o in m.orders:
                    if o.resting and o.runner == r and o.side == side:
                        sizes[o.price] = sizes.get(o.price, 0) + o.remaining
                sides[side] = sorted(sizes.items(), reverse=best_first)
            out.append({"runner": r, "to_back": sides["LAY"], "to_lay": sides["BACK"]})
        return out

    def check(self) -> None:
        """The model's own view of the invariants (independent of ``exchange.invariants``)."""
        assert sum(self.balances.values()) + self.house == self.net_deposits
        for a, balance in self.balances.items():
            assert 0 <= self.exposure(a) <= min(balance, MAX_EXPOSURE), a
        for m in self.markets.values():
            for r in m.runners:
                backs = [o.price for o in m.orders if o.resting and o.runner == r
                         and o.side == "BACK"]
                lays = [o.price for o in m.orders if o.resting and o.runner == r
                        and o.side == "LAY"]
                assert not backs or not lays or min(backs) > max(lays), (m.id, r)
            for ws in combinations(m.runners, m.winners):
                everyone = {a for t in m.trades for a in (t.back, t.lay)}
                assert sum(self.outcome(a, m, set(ws), False) for a in everyone) == 0

    # ------------------------------------------------------------------ the interface

    def apply(self, cmd: tuple) -> list[tuple]:
        kind, seq, ts, *fields = cmd
        self.now = max(self.now, ts)
        out: list[tuple] = []
        waiting = [o for o in self.live_orders() if o.delayed and o.release <= self.now]
        for o in sorted(waiting, key=lambda o: (o.release, o.id)):
            if o.remaining == 0:
                continue
            o.release = None
            if o.tif == "FOK" and self.available_to(o) < o.remaining:
                self.cancel_order(seq, o, o.remaining, "FOK", out)
            else:
                self.execute(seq, o, out)
        getattr(self, kind)(seq, *fields, out=out)
        return out

    # ------------------------------------------------------------------ helpers

    def reject(self, out, seq, command, reason, account=None, market=None, ref=None, order=None):
        def is_id(x):
            return type(x) is str and 0 < len(x) <= MAX_ID

        out.append((
            "order_rejected", seq,
            command if command in COMMAND_TYPES else None,
            account if is_id(account) else None,
            market if is_id(market) else None,
            ref if is_id(ref) else None,
            order if type(order) is int and 0 <= order <= MAX_INT else None,
            reason,
        ))

    def crossing(self, o: Order) -> list[Order]:
        """The resting orders ``o`` can take, in the order it takes them."""
        m = self.markets[o.market]
        if o.side == "BACK":
            book = [r for r in m.orders if r.resting and r.runner == o.runner
                    and r.side == "LAY" and r.price >= o.price]
            return sorted(book, key=lambda r: (-r.price, r.arrival))
        book = [r for r in m.orders if r.resting and r.runner == o.runner
                and r.side == "BACK" and r.price <= o.price]
        return sorted(book, key=lambda r: (r.price, r.arrival))

    def available_to(self, o: Order) -> int:
        return sum(r.remaining for r in self.crossing(o))

    def execute(self, seq: int, o: Order, out: list) -> None:
        """Match ``o`` against the book, then rest (GTC) or cancel (IOC, FOK) the rest."""
        m = self.markets[o.market]
        for r in self.crossing(o):
            if o.remaining == 0:
                break
            size = min(o.remaining, r.remaining)
            o.remaining -= size
            r.remaining -= size
            back, lay = (o, r) if o.side == "BACK" else (r, o)
            m.trades.append(Trade(o.runner, r.price, size, back.account, lay.account))
            out.append((
                "trade", seq, f"{seq}-{len(out)}", m.id, o.runner, r.price, size, back.id, lay.id,
                back.account, lay.account, o.side,
            ))
        if o.remaining == 0:
            return
        if o.tif == "GTC":
            self.clock += 1
            o.arrival = self.clock
        else:
            self.cancel_order(seq, o, o.remaining, "IOC", out)

    def cancel_order(self, seq: int, o: Order, size: int, reason: str, out: list) -> None:
        o.remaining -= size
        out.append((
            "order_cancelled", seq, o.id, o.account, o.market, o.runner, o.side, o.price, size,
            o.remaining, reason,
        ))

    def book_order(self, m: Market) -> list[Order]:
        """Resting orders runner by runner, BACK before LAY, best price first, FIFO."""
        out = []
        for r in m.runners:
            for side in ("BACK", "LAY"):
                orders = [o for o in m.orders if o.resting and o.runner == r and o.side == side]
                sign = 1 if side == "BACK" else -1
                out += sorted(orders, key=lambda o: (sign * o.price, o.arrival))
        return out

    def delayed_of(self, m: Market) -> list[Order]:
        return sorted((o for o in m.orders if o.delayed), key=lambda o: (o.release, o.id))

    def close(self, seq: int, m: Market, out: list) -> None:
        m.status = "CLOSED"
        out.append(("market_status_changed", seq, m.id, "CLOSED", m.in_play))
        for o in self.book_order(m) + self.delayed_of(m):
            self.cancel_order(seq, o, o.remaining, "MARKET_CLOSED", out)

    def pay_out(self, seq: int, m: Market, winners: list | None, out: list) -> None:
        total = 0
        settled = []
        for a in m.accounts:
            traded = any(a in (t.back, t.lay) for t in m.trades)
            pnl = self.outcome(a, m, set(winners), False) if winners is not None else 0
            commission = pnl * m.commission // 10000 if pnl > 0 else 0
            total += commission
            self.balances[a] += pnl - commission
            if traded:
                settled.append(("account_settled", seq, a, m.id, pnl, commission,
                                self.balances[a]))
        self.house += total
        m.status = "SETTLED" if winners is not None else "VOIDED"
        out.append(("market_settled", seq, m.id, list(winners or []), winners is None, total))
        out += settled

    # ------------------------------------------------------------------ commands

    def create_market(self, seq, market, runners, commission, min_stake, winners, delay, out):
        if market in self.markets:
            return self.reject(out, seq, "create_market", "DUPLICATE_MARKET", market=market)
        n = len(runners)
        if not (
            2 <= n <= MAX_RUNNERS and len(set(runners)) == n and 0 <= commission <= 10000
            and 0 < min_stake <= MAX_MONEY and 1 <= winners < n and 0 <= delay <= MAX_DELAY_MS
        ):
            return self.reject(out, seq, "create_market", "INVALID_MARKET", market=market)
        self.markets[market] = Market(market, runners, commission, min_stake, winners, delay)
        out.append(("market_created", seq, market, list(runners), commission, min_stake,
                    winners, delay))

    def market_status(self, seq, market, status, out):
        m = self.markets.get(market)
        if m is None:
            return self.reject(out, seq, "market_status", "UNKNOWN_MARKET", market=market)
        if status == m.status:
            return
        if m.status == "CLOSED" or m.settled:
            return self.reject(out, seq, "market_status", "INVALID_STATUS", market=market)
        if status == "CLOSED":
            return self.close(seq, m, out)
        m.status = status
        out.append(("market_status_changed", seq, market, status, m.in_play))
        if status == "SUSPENDED":
            for o in self.delayed_of(m):
                self.cancel_order(seq, o, o.remaining, "SUSPENDED", out)

    def turn_in_play(self, seq, market, out):
        m = self.markets.get(market)
        if m is None:
            return self.reject(out, seq, "turn_in_play", "UNKNOWN_MARKET", market=market)
        if m.in_play or m.status == "CLOSED" or m.settled:
            return self.reject(out, seq, "turn_in_play", "INVALID_STATUS", market=market)
        m.in_play = True
        out.append(("market_status_changed", seq, market, m.status, True))
        for o in self.book_order(m):
            if not o.persist:
                self.cancel_order(seq, o, o.remaining, "LAPSE", out)

    def deposit(self, seq, account, amount, out):
        if not 0 < amount <= MAX_MONEY or self.balances.get(account, 0) + amount > MAX_BALANCE:
            return self.reject(out, seq, "deposit", "INVALID_AMOUNT", account)
        self.balances[account] = self.balances.get(account, 0) + amount
        self.net_deposits += amount
        out.append(("funds_changed", seq, account, amount, self.balances[account]))

    def withdraw(self, seq, account, amount, out):
        if not 0 < amount <= MAX_MONEY:
            return self.reject(out, seq, "withdraw", "INVALID_AMOUNT", account)
        if account not in self.balances or self.balances[account] - self.exposure(account) < amount:
            return self.reject(out, seq, "withdraw", "INSUFFICIENT_FUNDS", account)
        self.balances[account] -= amount
        self.net_deposits -= amount
        out.append(("funds_changed", seq, account, -amount, self.balances[account]))

    def transfer(self, seq, account, amount, source, to, out):
        if self.rules < 6:
            return self.reject(out, seq, None, "MALFORMED", account)
        if source != 0 or to == 0 or to > MAX_PARTITION:
            return self.reject(out, seq, "transfer", "INVALID_TRANSFER", account)
        if not 0 < amount <= MAX_MONEY:
            return self.reject(out, seq, "transfer", "INVALID_AMOUNT", account)
        if account not in self.balances or self.balances[account] - self.exposure(account) < amount:
            return self.reject(out, seq, "transfer", "INSUFFICIENT_FUNDS", account)
        self.balances[account] -= amount
        self.net_deposits -= amount
        out.append(("transfer_out", seq, seq, account, -amount, self.balances[account], to))

    def transfer_in(self, seq, account, amount, tid, out):
        if self.rules < 6:
            return self.reject(out, seq, None, "MALFORMED", account)
        source, source_seq = tid // 10**14, tid % 10**14
        if source == 0 or source > MAX_PARTITION or source_seq == 0:
            return self.reject(out, seq, "transfer_in", "INVALID_TRANSFER", account)
        if not 0 < amount <= MAX_MONEY:
            return self.reject(out, seq, "transfer_in", "INVALID_AMOUNT", account)
        if any(p == source and s >= source_seq for p, s in self.credited):
            return self.reject(out, seq, "transfer_in", "DUPLICATE_TRANSFER", account)
        self.credited.append((source, source_seq))
        self.balances[account] = self.balances.get(account, 0) + amount
        self.net_deposits += amount
        out.append(("transfer_in", seq, tid, account, amount, self.balances[account], source))

    def place(self, seq, account, market, runner, side, price, stake, tif, persist, ref, out):
        def no(reason):
            self.reject(out, seq, "place", reason, account, market, ref)

        if ref is not None:
            if (account, ref) in self.refs:
                return no("DUPLICATE_REF")
            self.refs.add((account, ref))  # a ref is spent even if the order is rejected
        m = self.markets.get(market)
        if m is None:
            return no("UNKNOWN_MARKET")
        if runner not in m.runners:
            return no("UNKNOWN_RUNNER")
        if m.status != "OPEN":
            return no("MARKET_NOT_OPEN")
        if price not in LADDER:
            return no("INVALID_PRICE")
        if not 0 < stake <= MAX_MONEY:
            return no("INVALID_STAKE")
        if stake < m.min_stake:
            return no("BELOW_MIN_STAKE")
        if account not in self.balances:
            return no("INSUFFICIENT_FUNDS")
        if self.staked(account, m) + stake > MAX_POSITION_STAKE:
            return no("POSITION_LIMIT")
        o = Order(seq, account, market, runner, side, price, stake, tif, persist == "PERSIST")
        m.orders.append(o)
        short = self.short(account)
        if short:
            m.orders.remove(o)
            return no(short)
        delayed = m.in_play and m.delay > 0
        if tif == "FOK" and not delayed and self.available_to(o) < stake:
            m.orders.remove(o)
            return no("FOK_NOT_FILLED")
        if account not in m.accounts:
            m.accounts.append(account)
        out.append(("order_accepted", seq, seq, account, market, runner, side, price, stake,
                    tif, persist, ref))
        if delayed:
            o.release = self.now + m.delay
        else:
            self.execute(seq, o, out)

    def cancel(self, seq, account, order, reduce, out):
        o = self.find(order)
        if o is None:
            return self.reject(out, seq, "cancel", "UNKNOWN_ORDER", account, order=order)
        if o.account != account:
            return self.reject(out, seq, "cancel", "NOT_OWNER", account, o.market, order=order)
        if self.markets[o.market].status != "OPEN":
            return self.reject(out, seq, "cancel", "MARKET_NOT_OPEN", account, o.market,
                               order=order)
        if reduce is not None and not 0 < reduce <= MAX_MONEY:
            return self.reject(out, seq, "cancel", "INVALID_STAKE", account, o.market,
                               order=order)
        size = o.remaining if reduce is None else min(reduce, o.remaining)
        self.cancel_order(seq, o, size, "USER", out)

    def replace(self, seq, account, order, price, out):
        o = self.find(order)
        if o is None:
            return self.reject(out, seq, "replace", "UNKNOWN_ORDER", account, order=order)
        m = self.markets[o.market]
        if o.account != account:
            return self.reject(out, seq, "replace", "NOT_OWNER", account, m.id, order=order)
        if m.status != "OPEN":
            return self.reject(out, seq, "replace", "MARKET_NOT_OPEN", account, m.id,
                               order=order)
        if price not in LADDER:
            return self.reject(out, seq, "replace", "INVALID_PRICE", account, m.id, order=order)
        old_price = o.price
        o.price = price  # what if it were already at the new price?
        short = self.short(account)
        o.price = old_price
        if short:
            return self.reject(out, seq, "replace", short, account, m.id, order=order)
        rem = o.remaining
        self.cancel_order(seq, o, rem, "REPLACE", out)
        persist = "PERSIST" if o.persist else "LAPSE"
        # the replacement keeps the order's time in force: GTC for a resting order, whatever
        # it was for one still waiting out the bet delay
        new = Order(seq, account, m.id, o.runner, o.side, price, rem, o.tif, o.persist)
        m.orders.append(new)
        out.append(("order_accepted", seq, seq, account, m.id, o.runner, o.side, price, rem,
                    o.tif, persist, None))
        if m.in_play and m.delay > 0:
            new.release = self.now + m.delay
        else:
            self.execute(seq, new, out)

    def settle(self, seq, market, winners, out):
        m = self.markets.get(market)
        if m is None:
            return self.reject(out, seq, "settle", "UNKNOWN_MARKET", market=market)
        if m.settled:
            return self.reject(out, seq, "settle", "INVALID_STATUS", market=market)
        if any(w not in m.runners for w in winners):
            return self.reject(out, seq, "settle", "UNKNOWN_RUNNER", market=market)
        if len(winners) != m.winners or len(set(winners)) != len(winners):
            return self.reject(out, seq, "settle", "INVALID_WINNERS", market=market)
        if m.status != "CLOSED":
            self.close(seq, m, out)
        self.pay_out(seq, m, list(winners), out)

    def void(self, seq, market, out):
        m = self.markets.get(market)
        if m is None:
            return self.reject(out, seq, "void", "UNKNOWN_MARKET", market=market)
        if m.settled:
            return self.reject(out, seq, "void", "INVALID_STATUS", market=market)
        if m.status != "CLOSED":
            self.close(seq, m, out)
        self.pay_out(seq, m, None, out)

    def heartbeat(self, seq, out):
        pass

    def invalid(self, seq, command, account, market, ref, order, reason, out):
        self.reject(out, seq, command, reason, account, market, ref, order)
