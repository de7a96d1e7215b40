"""Commands by name: one ``NamedTuple`` per command type, in the core's tuple layout.

A command in the core is a tuple ``(type, seq, ts, field, ...)`` (see ``exchange.commands``).
These classes name its items, so that code outside the core reads ``cmd.ref`` and writes
``cmd._replace(order=...)`` instead of ``cmd[11]`` and tuple splicing. A ``NamedTuple`` is
still a tuple with the same items: ``Exchange.apply`` takes either, and equal commands compare
equal whichever form they are in.

``exchange.commands.decode`` returns these, except on the stream decoder's fast paths for
``place`` and ``cancel``, which the matcher runs for nearly every command and which return
the plain tuples the core works on (the matcher never needs the names). ``named(cmd)`` gives
the named form of any command tuple. A test keeps the fields here equal to
``exchange.commands.COMMANDS``.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class CreateMarket(NamedTuple):
    type: str
    seq: int
    ts: int
    market: str
    runners: tuple[int, ...]
    commission: int
    min_stake: int
    winners: int
    bet_delay_ms: int


class MarketStatus(NamedTuple):
    type: str
    seq: int
    ts: int
    market: str
    status: str


class TurnInPlay(NamedTuple):
    type: str
    seq: int
    ts: int
    market: str


class Deposit(NamedTuple):
    type: str
    seq: int
    ts: int
    account: str
    amount: int


class Withdraw(NamedTuple):
    type: str
    seq: int
    ts: int
    account: str
    amount: int


class Transfer(NamedTuple):
    type: str
    seq: int
    ts: int
    account: str
    amount: int
    from_partition: int
    to_partition: int


class TransferIn(NamedTuple):
    type: str
    seq: int
    ts: int
    account: str
    amount: int
    transfer: int


class Place(NamedTuple):
    type: str
    seq: int
    ts: int
    account: str
    market: str
    runner: int
    side: str
    price: int
    stake: int
    tif: str
    persistence: str
    ref: str | None


class Cancel(NamedTuple):
    type: str
    seq: int
    ts: int
    account: str
    order: int
    reduce: int | None


class Replace(NamedTuple):
    type: str
    seq: int
    ts: int
    account: str
    order: int
    price: int


class Settle(NamedTuple):
    type: str
    seq: int
    ts: int
    market: str
    winners: tuple[int, ...]


class Void(NamedTuple):
    type: str
    seq: int
    ts: int
    market: str


class Heartbeat(NamedTuple):
    type: str
    seq: int
    ts: int


class Invalid(NamedTuple):
    """Not a command: what the decoder could make of something else, answered with an
    ``order_rejected`` carrying ``reason``."""

    type: str
    seq: int
    ts: int
    command: str | None
    account: str | None
    market: str | None
    ref: str | None
    order: Any
    reason: str


NAMED: dict[str, Any] = {
    "create_market": CreateMarket,
    "market_status": MarketStatus,
    "turn_in_play": TurnInPlay,
    "deposit": Deposit,
    "withdraw": Withdraw,
    "transfer": Transfer,
    "transfer_in": TransferIn,
    "place": Place,
    "cancel": Cancel,
    "replace": Replace,
    "settle": Settle,
    "void": Void,
    "heartbeat": Heartbeat,
    "invalid": Invalid,
}
"""The named tuple class of every command type."""


def named(cmd: tuple) -> Any:
    """The same command as its named tuple (itself if it already is one). O(fields)."""
    cls = NAMED[cmd[0]]
    return cmd if type(cmd) is cls else cls._make(cmd)


__all__ = [
    "NAMED",
    "Cancel",
    "CreateMarket",
    "Deposit",
    "Heartbeat",
    "Invalid",
    "MarketStatus",
    "Place",
    "Replace",
    "Settle",
    "Transfer",
    "TransferIn",
    "TurnInPlay",
    "Void",
    "Withdraw",
    "named",
]
