"""A market: its definition, lifecycle status, and one book per runner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .book import BACK, LAY, Side

if TYPE_CHECKING:
    from .accounts import Position

OPEN = "OPEN"
SUSPENDED = "SUSPENDED"
CLOSED = "CLOSED"
SETTLED = "SETTLED"
VOIDED = "VOIDED"


class Market:
    """A market's definition (runners, commission in basis points, minimum stake in pence,
    number of winners, in-play bet delay in ms), its status and its books.

    ``index`` maps a runner id to its position in ``runners``; ``backs[i]`` and ``lays[i]`` are
    runner ``i``'s resting BACK and LAY orders. ``positions`` holds every account's position in
    the market, in the order the accounts first placed an order here.
    """

    __slots__ = (
        "id", "runners", "index", "commission", "min_stake", "winners", "delay", "status",
        "in_play", "backs", "lays", "positions",
    )

    def __init__(
        self,
        id: str,
        runners: list[int],
        commission: int,
        min_stake: int,
        winners: int,
        delay: int,
    ) -> None:
        self.id = id
        self.runners = runners
        self.index = {r: i for i, r in enumerate(runners)}
        self.commission = commission
        self.min_stake = min_stake
        self.winners = winners
        self.delay = delay
        self.status = OPEN
        self.in_play = False
        self.backs = [Side(self, r, i, BACK) for i, r in enumerate(runners)]
        self.lays = [Side(self, r, i, LAY) for i, r in enumerate(runners)]
        self.positions: dict[str, Position] = {}

    @property
    def settled(self) -> bool:
        """True once settled or voided: nothing more can happen to it."""
        return self.status == SETTLED or self.status == VOIDED

    def sides(self) -> list[Side]:
        """Every side of every runner, in runner order, BACK before LAY."""
        out = []
        for back, lay in zip(self.backs, self.lays):
            out.append(back)
            out.append(lay)
        return out
