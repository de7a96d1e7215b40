"""Accounts, their positions per market, and worst-case exposure.

Risk follows Betfair: an order is accepted only if the account's balance covers its worst-case
loss over every outcome of every market, unmatched orders counted at full liability.

A ``Position`` holds, for one account in one market, what the account wins or loses on each
runner. For runner ``i``, ``win[i]`` is its profit-and-loss contribution if ``i`` is among the
winners and ``lose[i]`` if not, so for a winner set ``W`` the account makes
``sum(lose) + sum(win[i] - lose[i] for i in W)``. With ``k`` winners the worst case is
``sum(lose)`` plus the ``k`` smallest differences. The position keeps exactly those two
aggregates (``sl`` = sum of lose, ``d[i]`` = win[i] - lose[i]) up to date, including unmatched
orders at full liability:

- an unmatched BACK of stake s on i loses s if i loses: ``sl -= s; d[i] += s``
- an unmatched LAY on i loses its liability if i wins: ``d[i] -= liability``

Matched bets are also kept on their own (``mw``, ``ml``: matched win and lose per runner):
they are what settlement pays, what a snapshot stores, and what the invariant check sums to
zero across all accounts of a market (every trade is zero-sum).

``staked`` is the position's stake, matched plus unmatched, which ``limits.MAX_POSITION_STAKE``
bounds; that bound keeps every amount above inside 64 bits, so the per-runner amounts live in
arrays of 64-bit integers (C arrays in the compiled core, see accounts.pxd).
"""

from __future__ import annotations

from array import array
from importlib.machinery import EXTENSION_SUFFIXES
from typing import TYPE_CHECKING

from .limits import MAX_EXPOSURE

if TYPE_CHECKING:
    from .market import Market

_COMPILED = __file__.endswith(tuple(EXTENSION_SUFFIXES))
"""True when this module runs as the Cython-compiled extension (see setup.py)."""

BACK = "BACK"


def cover(balance: int) -> int:
    """How much exposure ``balance`` covers: all of it, up to ``limits.MAX_EXPOSURE``."""
    return balance if balance < MAX_EXPOSURE else MAX_EXPOSURE


def least(pos: Position, k: int) -> int:
    """The sum of the ``k`` smallest values of ``pos.d``: the worst case of a position over
    every set of ``k`` winners (see ``exchange.accounts``). O(n), O(n log n) for ``k`` > 1."""
    if k != 1:
        return sum(sorted(pos.d)[:k])
    if _COMPILED:
        # Calling min() costs compiled code more than this loop, which interpreted code
        # runs far slower than min(). Compiled, ``pos.d[j]`` reads the C array in place.
        w = pos.d[0]
        for j in range(1, len(pos.d)):
            v = pos.d[j]
            if v < w:
                w = v
        return w
    return min(pos.d)


class Account:
    """A customer's money: ``balance`` in pence and the sum of its markets' exposures.

    ``cover`` is ``cover(balance)``, kept beside the balance wherever it changes: the one
    number an order's exposure is checked against. Exposure never passes it, so both are
    64-bit integers (C integers in the compiled core) while the balance, which winnings can
    grow without bound, stays a Python integer.
    """

    __slots__ = ("exposure", "cover", "id", "balance", "positions")

    def __init__(self, id: str, balance: int = 0) -> None:
        self.id = id
        self.balance = balance
        self.cover = cover(balance)
        self.exposure = 0
        self.positions: dict[str, Position] = {}

    @property
    def available(self) -> int:
        """What the account can still withdraw, in pence. (What it can still risk is
        ``cover - exposure``: the same unless winnings took its balance past the limit.)"""
        return self.balance - self.exposure


class Position:
    """One account's stake in one market (see the module docstring for the arithmetic)."""

    __slots__ = ("acct", "market", "d", "sl", "mw", "ml", "exp", "staked", "traded")

    def __init__(self, acct: Account, market: Market) -> None:
        n = len(market.runners)
        self.acct = acct
        self.market = market
        zeros = array("q", bytes(8 * n))
        self.d = zeros
        self.sl = 0
        self.mw = array("q", zeros)
        self.ml = array("q", zeros)
        self.exp = 0
        self.staked = 0
        self.traded = False

    def worst(self) -> int:
        """Worst-case profit over every winner set, unmatched orders at full liability. O(n),
        O(n log n) for markets with more than one winner."""
        return self.sl + least(self, self.market.winners)

    def reexpose(self) -> None:
        """Recompute this market's exposure and carry the change into the account. O(n)."""
        worst = self.sl + least(self, self.market.winners)
        e = -worst if worst < 0 else 0
        self.acct.exposure += e - self.exp
        self.exp = e

    def hold(self, side: str, i: int, price: int, stake: int) -> None:
        """Count an unmatched order's ``stake`` on runner ``i`` at full liability (a back
        risks its stake, a lay ``units.lay_liability``); the exposure is left as it was. The
        engine's hot paths inline the same arithmetic. O(1)."""
        if side == BACK:
            self.sl -= stake
            self.d[i] += stake
        else:
            self.d[i] -= stake * (price - 100) // 100

    def reserve(self, side: str, i: int, price: int, stake: int) -> int:
        """``hold`` a new unmatched order, and return the market exposure the position would
        then have (``exp`` is left for the caller to commit, or to undo with ``unreserve``).
        O(n)."""
        self.hold(side, i, price, stake)
        worst = self.sl + least(self, self.market.winners)
        return -worst if worst < 0 else 0

    def unreserve(self, side: str, i: int, price: int, stake: int) -> None:
        """Take ``stake`` of an unmatched order on runner ``i`` off the position: the inverse
        of ``hold`` (the exposure is left as it was, for the caller). O(1)."""
        if side == BACK:
            self.sl += stake
            self.d[i] -= stake
        else:
            self.d[i] += stake * (price - 100) // 100

    def matched_pnl(self, winners: list[int]) -> int:
        """Profit and loss of the matched bets when ``winners`` (runner indices) win."""
        ml = self.ml
        pnl = sum(ml)
        mw = self.mw
        for i in winners:
            pnl += mw[i] - ml[i]
        return pnl
