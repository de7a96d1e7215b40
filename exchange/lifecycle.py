"""The commands that are not orders: money in and out, and markets through their lifecycle
(created, suspended and reopened, turned in-play, closed, settled or voided).

These are rules of the exchange as much as the order paths in ``exchange.engine``, and keep
its discipline: check completely, then change; events as tuples; ordered iteration only. They
live here because they are rare (a few per market, against thousands of orders) and so need
no compiled speed: each is a function of the exchange and one command, which the exchange
calls through its table of handlers. A market-wide change (closing, the in-play turn,
settlement) is O(orders of the market) or O(positions of the market).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .accounts import Account, cover
from .events import (
    ACCOUNT_SETTLED,
    DUPLICATE_MARKET,
    DUPLICATE_TRANSFER,
    FUNDS_CHANGED,
    INSUFFICIENT_FUNDS,
    INVALID_AMOUNT,
    INVALID_MARKET,
    INVALID_STATUS,
    INVALID_TRANSFER,
    INVALID_WINNERS,
    LAPSE,
    MALFORMED,
    MARKET_CLOSED,
    MARKET_CREATED,
    MARKET_SETTLED,
    MARKET_STATUS_CHANGED,
    SUSPENDED,
    TRANSFER_IN,
    TRANSFER_OUT,
    UNKNOWN_MARKET,
    UNKNOWN_RUNNER,
    Event,
)
from .limits import (
    MAX_BALANCE,
    MAX_DELAY_MS,
    MAX_MONEY,
    MAX_PARTITION,
    MAX_RUNNERS,
    PARTITION_STRIDE,
)
from .market import CLOSED, SETTLED, VOIDED, Market
from .market import SUSPENDED as SUSPENDED_STATUS
from .rules import FINISHED_GRACE_MS, FORGET_FINISHED, TRANSFERS

if TYPE_CHECKING:
    from .engine import Command, Exchange


# ---------------------------------------------------------------------- money


def _move(ex: Exchange, acct: Account, amount: int) -> None:
    """Money into (``amount`` > 0) or out of the account's wallet, and so into or out of
    this partition: the balance, its cover and ``net_deposits`` move together."""
    acct.balance += amount
    acct.cover = cover(acct.balance)
    ex.net_deposits += amount


def _account(ex: Exchange, account: str) -> Account:
    """The account, opened if this is its first money."""
    acct = ex._accounts.get(account)
    if acct is None:
        acct = ex._accounts[account] = Account(account)
    return acct


def deposit(ex: Exchange, cmd: Command, out: list[Event]) -> None:
    _, seq, ts, account, amount = cmd
    acct = ex._accounts.get(account)
    balance = acct.balance if acct is not None else 0
    if amount <= 0 or amount > MAX_MONEY or balance + amount > MAX_BALANCE:
        return ex._reject(out, seq, "deposit", INVALID_AMOUNT, account)
    acct = _account(ex, account)
    _move(ex, acct, amount)
    out.append((FUNDS_CHANGED, seq, account, amount, acct.balance))


def withdraw(ex: Exchange, cmd: Command, out: list[Event]) -> None:
    _, seq, ts, account, amount = cmd
    if amount <= 0 or amount > MAX_MONEY:
        return ex._reject(out, seq, "withdraw", INVALID_AMOUNT, account)
    acct = ex._accounts.get(account)
    if acct is None or acct.available < amount:
        return ex._reject(out, seq, "withdraw", INSUFFICIENT_FUNDS, account)
    _move(ex, acct, -amount)
    out.append((FUNDS_CHANGED, seq, account, -amount, acct.balance))


def transfer(ex: Exchange, cmd: Command, out: list[Event]) -> None:
    """From rules 6: money out of this partition's wallet, on its way to another partition's.
    Like a withdrawal (only what is available goes), but the money stays in the exchange: the
    ``transfer_out`` event is what the transfer service carries to the destination."""
    _, seq, ts, account, amount, source, destination = cmd
    if ex.rules < TRANSFERS:
        return ex._reject(out, seq, None, MALFORMED, account)
    if source != ex.partition or destination == source or destination > MAX_PARTITION:
        return ex._reject(out, seq, "transfer", INVALID_TRANSFER, account)
    if amount <= 0 or amount > MAX_MONEY:
        return ex._reject(out, seq, "transfer", INVALID_AMOUNT, account)
    acct = ex._accounts.get(account)
    if acct is None or acct.available < amount:
        return ex._reject(out, seq, "transfer", INSUFFICIENT_FUNDS, account)
    _move(ex, acct, -amount)
    out.append((TRANSFER_OUT, seq, ex._ids + seq, account, -amount, acct.balance, destination))


def transfer_in(ex: Exchange, cmd: Command, out: list[Event]) -> None:
    """From rules 6: a transfer from another partition reaches the account's wallet here,
    once. Each source partition's transfers arrive in the order of their seqs (the transfer
    service carries them so), so the highest source seq credited is all it takes to know a
    second delivery. It is never refused for the balance it makes: the money left its source
    already, and refusing it here would lose it."""
    _, seq, ts, account, amount, tid = cmd
    if ex.rules < TRANSFERS:
        return ex._reject(out, seq, None, MALFORMED, account)
    source, source_seq = divmod(tid, PARTITION_STRIDE)
    if source == ex.partition or source > MAX_PARTITION or source_seq == 0:
        return ex._reject(out, seq, "transfer_in", INVALID_TRANSFER, account)
    if amount <= 0 or amount > MAX_MONEY:
        return ex._reject(out, seq, "transfer_in", INVALID_AMOUNT, account)
    marks = ex._marks
    if source_seq <= marks.get(source, 0):
        return ex._reject(out, seq, "transfer_in", DUPLICATE_TRANSFER, account)
    marks[source] = source_seq
    acct = _account(ex, account)
    _move(ex, acct, amount)
    out.append((TRANSFER_IN, seq, tid, account, amount, acct.balance, source))


# ---------------------------------------------------------------------- markets


def forget_finished(ex: Exchange, now: int) -> None:
    """From rules 3: drop the markets that finished (settled or voided) at least
    ``FINISHED_GRACE_MS`` before ``now``. Their positions and orders are gone already."""
    finished = ex._finished
    horizon = now - FINISHED_GRACE_MS
    while finished and finished[0][0] <= horizon:
        _, market_id = finished.popleft()
        del ex._markets[market_id]


def create_market(ex: Exchange, cmd: Command, out: list[Event]) -> None:
    _, seq, ts, market_id, runners, commission, min_stake, winners, delay = cmd
    if ex._finished:
        forget_finished(ex, ts)
    if market_id in ex._markets:
        return ex._reject(out, seq, "create_market", DUPLICATE_MARKET, None, market_id)
    n = len(runners)
    if (
        not 2 <= n <= MAX_RUNNERS or len(set(runners)) != n
        or not 0 <= commission <= 10000 or not 0 < min_stake <= MAX_MONEY
        or not 1 <= winners < n or not 0 <= delay <= MAX_DELAY_MS
    ):
        return ex._reject(out, seq, "create_market", INVALID_MARKET, None, market_id)
    runners = list(runners)
    ex._markets[market_id] = Market(market_id, runners, commission, min_stake, winners, delay)
    out.append((
        MARKET_CREATED, seq, market_id, runners, commission, min_stake, winners, delay,
    ))


def market_status(ex: Exchange, cmd: Command, out: list[Event]) -> None:
    _, seq, ts, market_id, status = cmd
    m = ex._markets.get(market_id)
    if m is None:
        return ex._reject(out, seq, "market_status", UNKNOWN_MARKET, None, market_id)
    if status == m.status:
        return  # already so: nothing happens, nothing to report
    if m.status == CLOSED or m.settled:
        return ex._reject(out, seq, "market_status", INVALID_STATUS, None, market_id)
    m.status = status
    out.append((MARKET_STATUS_CHANGED, seq, market_id, status, m.in_play))
    if status == SUSPENDED_STATUS:
        cancel_pending(ex, seq, m, SUSPENDED, out)
    elif status == CLOSED:
        cancel_all(ex, seq, m, MARKET_CLOSED, out)


def turn_in_play(ex: Exchange, cmd: Command, out: list[Event]) -> None:
    _, seq, ts, market_id = cmd
    m = ex._markets.get(market_id)
    if m is None:
        return ex._reject(out, seq, "turn_in_play", UNKNOWN_MARKET, None, market_id)
    if m.in_play or m.status == CLOSED or m.settled:
        return ex._reject(out, seq, "turn_in_play", INVALID_STATUS, None, market_id)
    m.in_play = True
    out.append((MARKET_STATUS_CHANGED, seq, market_id, m.status, True))
    for side in m.sides():
        for p in side.prices():
            for o in side.levels[p].orders():
                if not o.persist:
                    ex._cancel_order(seq, o, o.remaining, LAPSE, out)


def cancel_pending(
    ex: Exchange, seq: int, m: Market, reason: str, out: list[Event]
) -> None:
    """Cancel the market's orders that are waiting out the bet delay, earliest first."""
    for _, _, o in sorted(ex._pending):
        if o.remaining and o.level.side.market is m:
            ex._cancel_order(seq, o, o.remaining, reason, out)


def cancel_all(ex: Exchange, seq: int, m: Market, reason: str, out: list[Event]) -> None:
    """Cancel every unmatched order of the market: runner by runner, BACK then LAY, best
    price first, first in first out; then those waiting out the bet delay."""
    for side in m.sides():
        for p in side.prices():
            for o in side.levels[p].orders():
                ex._cancel_order(seq, o, o.remaining, reason, out)
    cancel_pending(ex, seq, m, reason, out)


def close_for_settlement(ex: Exchange, seq: int, m: Market, out: list[Event]) -> None:
    if m.status != CLOSED:
        m.status = CLOSED
        out.append((MARKET_STATUS_CHANGED, seq, m.id, CLOSED, m.in_play))
        cancel_all(ex, seq, m, MARKET_CLOSED, out)


def settle(ex: Exchange, cmd: Command, out: list[Event]) -> None:
    _, seq, ts, market_id, winners = cmd
    if ex._finished:
        forget_finished(ex, ts)
    m = ex._markets.get(market_id)
    if m is None:
        return ex._reject(out, seq, "settle", UNKNOWN_MARKET, None, market_id)
    if m.settled:
        return ex._reject(out, seq, "settle", INVALID_STATUS, None, market_id)
    index = m.index
    if any(r not in index for r in winners):
        return ex._reject(out, seq, "settle", UNKNOWN_RUNNER, None, market_id)
    # Exactly the market's number of winners: risk is the worst case over every set of
    # that many winners, so fewer could lose an account more than it had to cover.
    if len(winners) != m.winners or len(set(winners)) != len(winners):
        return ex._reject(out, seq, "settle", INVALID_WINNERS, None, market_id)
    close_for_settlement(ex, seq, m, out)
    pay_out(ex, seq, m, list(winners), [index[r] for r in winners], out)
    finish(ex, m, ts)


def void(ex: Exchange, cmd: Command, out: list[Event]) -> None:
    _, seq, ts, market_id = cmd
    if ex._finished:
        forget_finished(ex, ts)
    m = ex._markets.get(market_id)
    if m is None:
        return ex._reject(out, seq, "void", UNKNOWN_MARKET, None, market_id)
    if m.settled:
        return ex._reject(out, seq, "void", INVALID_STATUS, None, market_id)
    close_for_settlement(ex, seq, m, out)
    pay_out(ex, seq, m, [], None, out)
    finish(ex, m, ts)


def finish(ex: Exchange, m: Market, now: int) -> None:
    """From rules 3, a finished market is forgotten after the grace (``forget_finished``)."""
    if ex.rules >= FORGET_FINISHED:
        ex._finished.append((now, m.id))


def pay_out(
    ex: Exchange, seq: int, m: Market, winners: list[int], idx: list[int] | None,
    out: list[Event],
) -> None:
    """Settle a closed market: pay every matched position (nothing if ``idx`` is None: a
    void), charge commission on each account's net winnings in the market, release the
    exposure, and report per account that traded, in order of first order placed."""
    rate = m.commission
    settled = []
    total = 0
    for account, pos in m.positions.items():
        acct = pos.acct
        pnl = pos.matched_pnl(idx) if idx is not None and pos.traded else 0
        commission = pnl * rate // 10000 if pnl > 0 else 0
        total += commission
        acct.balance += pnl - commission
        acct.cover = cover(acct.balance)
        acct.exposure -= pos.exp
        del acct.positions[m.id]
        if pos.traded:
            settled.append((ACCOUNT_SETTLED, seq, account, m.id, pnl, commission, acct.balance))
    ex.house += total
    m.status = SETTLED if idx is not None else VOIDED
    m.positions = {}
    out.append((MARKET_SETTLED, seq, m.id, winners, idx is None, total))
    out.extend(settled)


HANDLERS = {
    "deposit": deposit,
    "withdraw": withdraw,
    "transfer": transfer,
    "transfer_in": transfer_in,
    "create_market": create_market,
    "market_status": market_status,
    "turn_in_play": turn_in_play,
    "settle": settle,
    "void": void,
}
"""The handler of every command type this module rules on."""
