"""Order book structures: orders, price levels and one side of one runner's book.

Each runner has two ``Side`` objects: resting BACK orders (what a layer can take, best =
lowest price) and resting LAY orders (what a backer can take, best = highest price). A side
keeps a dict from price to ``Level`` plus its best price, so the question every placement asks,
"does this cross?", is one attribute read. Within a level orders queue first in, first out.

Cancelling from the middle of a queue is lazy: the order's ``remaining`` drops to 0 and it is
skipped (and dropped) when it reaches the front; a level rebuilds its queue when dead entries
outnumber live ones, so memory stays proportional to live orders.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .units import PRICES, TICK

if TYPE_CHECKING:
    from .accounts import Position
    from .market import Market

BACK = "BACK"
LAY = "LAY"

NO_BACK = 1 << 30
"""Best price of an empty BACK side: above every price, so no LAY ever crosses it."""
NO_LAY = 0
"""Best price of an empty LAY side: below every price, so no BACK ever crosses it."""


class Order:
    """A live (not fully matched, not cancelled) order.

    ``level`` is the ``Level`` it rests in, or a ``Pending`` while it waits out an in-play bet
    delay. ``remaining`` is its unmatched stake in pence; 0 marks an order that is gone.
    """

    __slots__ = ("id", "pos", "level", "remaining", "persist")

    def __init__(
        self, id: int, pos: Position, level: Level | Pending, remaining: int, persist: bool
    ) -> None:
        self.id = id
        self.pos = pos
        self.level = level
        self.remaining = remaining
        self.persist = persist


class Level:
    """The orders resting at one price on one side, first in, first out."""

    __slots__ = ("price", "total", "live", "queue", "side")

    def __init__(self, price: int, side: Side) -> None:
        self.price = price
        self.total = 0
        self.live = 0
        self.queue: deque[Order] = deque()
        self.side = side

    def compact(self) -> None:
        """Drop cancelled orders from the queue, keeping the live ones in order. O(n)."""
        self.queue = deque(o for o in self.queue if o.remaining)

    def orders(self) -> list[Order]:
        """The live orders, first in first out."""
        return [o for o in self.queue if o.remaining]


class Pending:
    """Where an order waits during an in-play bet delay: its side, price, time in force and the
    envelope time at which it reaches the book."""

    __slots__ = ("side", "price", "tif", "release")

    def __init__(self, side: Side, price: int, tif: str, release: int) -> None:
        self.side = side
        self.price = price
        self.tif = tif
        self.release = release


class Side:
    """The resting orders of one side (BACK or LAY) of one runner."""

    __slots__ = ("market", "runner", "ridx", "side", "levels", "best")

    def __init__(self, market: Market, runner: int, ridx: int, side: str) -> None:
        self.market = market
        self.runner = runner
        self.ridx = ridx
        self.side = side
        self.levels: dict[int, Level] = {}
        self.best = NO_BACK if side == BACK else NO_LAY

    def add_level(self, price: int) -> Level:
        """A new empty level at ``price``, keeping ``best`` right. O(1)."""
        level = self.levels[price] = Level(price, self)
        if self.side == BACK:
            if price < self.best:
                self.best = price
        elif price > self.best:
            self.best = price
        return level

    def remove_level(self, price: int) -> None:
        """Forget the level at ``price``; O(1) unless it was the best, then O(ticks to next)."""
        levels = self.levels
        del levels[price]
        if price != self.best:
            return
        if not levels:
            self.best = NO_BACK if self.side == BACK else NO_LAY
            return
        t = TICK[price]
        if self.side == BACK:
            t += 1
            while PRICES[t] not in levels:
                t += 1
        else:
            t -= 1
            while PRICES[t] not in levels:
                t -= 1
        self.best = PRICES[t]

    def prices(self) -> list[int]:
        """Prices with resting orders, best first. O(k log k)."""
        return sorted(self.levels, reverse=self.side == LAY)

    def depth(self, n: int) -> list[tuple[int, int]]:
        """The best ``n`` (price, total unmatched) pairs, best first."""
        return [(p, self.levels[p].total) for p in self.prices()[:n]]
