"""The events the exchange emits, their field names, and the stable rejection and cancel reasons.

Inside the core an event is a plain tuple whose first item is its type and second its ``seq``
(the sequence number of the command that caused it); the remaining items follow the field
order in ``EVENT_FIELDS``. Tuples are several times cheaper to build than dicts, and the
matcher builds one or more per command. ``exchange.codec`` turns them into the public JSON
form (decimal strings) or the stream form (msgpack maps with integer money and prices), both
keyed by these same field names.
"""

from __future__ import annotations

from typing import Any

Event = tuple[Any, ...]

MARKET_CREATED = "market_created"
MARKET_STATUS_CHANGED = "market_status_changed"
FUNDS_CHANGED = "funds_changed"
ORDER_ACCEPTED = "order_accepted"
ORDER_REJECTED = "order_rejected"
TRADE = "trade"
ORDER_CANCELLED = "order_cancelled"
MARKET_SETTLED = "market_settled"
ACCOUNT_SETTLED = "account_settled"

EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    MARKET_CREATED: (
        "type", "seq", "market", "runners", "commission", "min_stake", "winners", "bet_delay_ms",
    ),
    MARKET_STATUS_CHANGED: ("type", "seq", "market", "status", "in_play"),
    FUNDS_CHANGED: ("type", "seq", "account", "amount", "balance"),
    ORDER_ACCEPTED: (
        "type", "seq", "order", "account", "market", "runner", "side", "price", "stake", "tif",
        "persistence", "ref",
    ),
    ORDER_REJECTED: ("type", "seq", "command", "account", "market", "ref", "order", "reason"),
    TRADE: (
        "type", "seq", "trade", "market", "runner", "price", "size", "back_order", "lay_order",
        "back_account", "lay_account", "taker",
    ),
    ORDER_CANCELLED: (
        "type", "seq", "order", "account", "market", "runner", "side", "price", "size",
        "remaining", "reason",
    ),
    MARKET_SETTLED: ("type", "seq", "market", "winners", "void", "commission"),
    ACCOUNT_SETTLED: ("type", "seq", "account", "market", "pnl", "commission", "balance"),
}
"""Field names of every event type, in tuple order."""

PRICE_FIELDS = frozenset({"price"})
"""Fields holding a price in hundredths (decimal odds text in JSON)."""

MONEY_FIELDS = frozenset(
    {"min_stake", "amount", "balance", "stake", "size", "remaining", "pnl", "commission"}
)
"""Fields holding money in pence (pounds text with two decimals in JSON).

``commission`` of ``market_created`` is a rate, not money: see ``RATE_FIELDS``.
"""

RATE_FIELDS = {MARKET_CREATED: frozenset({"commission"})}
"""Per event type, fields holding a percentage in basis points."""

# Rejection reasons: stable, upper-case, part of the public contract.
MALFORMED = "MALFORMED"
UNKNOWN_MARKET = "UNKNOWN_MARKET"
UNKNOWN_RUNNER = "UNKNOWN_RUNNER"
UNKNOWN_ORDER = "UNKNOWN_ORDER"
NOT_OWNER = "NOT_OWNER"
INVALID_PRICE = "INVALID_PRICE"
INVALID_STAKE = "INVALID_STAKE"
BELOW_MIN_STAKE = "BELOW_MIN_STAKE"
MARKET_NOT_OPEN = "MARKET_NOT_OPEN"
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
DUPLICATE_REF = "DUPLICATE_REF"
FOK_NOT_FILLED = "FOK_NOT_FILLED"
DUPLICATE_MARKET = "DUPLICATE_MARKET"
INVALID_MARKET = "INVALID_MARKET"
INVALID_AMOUNT = "INVALID_AMOUNT"
INVALID_STATUS = "INVALID_STATUS"
INVALID_WINNERS = "INVALID_WINNERS"

REJECT_REASONS: dict[str, str] = {
    MALFORMED: "not a command: unknown type, a missing field, or a field of the wrong kind",
    UNKNOWN_MARKET: "no market with that id",
    UNKNOWN_RUNNER: "the market has no runner with that id",
    UNKNOWN_ORDER: "no live (unmatched) order with that id: never placed, or already fully "
    "matched, cancelled or lapsed",
    NOT_OWNER: "the order belongs to another account",
    INVALID_PRICE: "the price is not on the Betfair ladder (1.01 to 1000, 350 prices)",
    INVALID_STAKE: "a stake or reduction that is not a positive whole number of pence",
    BELOW_MIN_STAKE: "the stake is below the market's minimum stake",
    MARKET_NOT_OPEN: "the market is suspended, closed or settled",
    INSUFFICIENT_FUNDS: "the balance does not cover the worst-case loss with this order or "
    "withdrawal",
    DUPLICATE_REF: "this account already used this client ref",
    FOK_NOT_FILLED: "a fill-or-kill order that could not be matched in full; nothing traded",
    DUPLICATE_MARKET: "a market with that id already exists",
    INVALID_MARKET: "a market definition with no runners, repeated runners, or a commission, "
    "minimum stake, number of winners or bet delay out of range",
    INVALID_AMOUNT: "a deposit or withdrawal that is not a positive whole number of pence "
    "(or would take a balance past the limit)",
    INVALID_STATUS: "a status change the market's lifecycle does not allow: reopening a "
    "closed market, turning in-play twice, settling twice",
    INVALID_WINNERS: "winners that are repeated, or more than the market's number of winners",
}
"""Every rejection reason with its meaning; the README's reference is generated from this."""

# Cancellation reasons.
USER = "USER"
IOC = "IOC"
FOK = "FOK"
LAPSE = "LAPSE"
REPLACE = "REPLACE"
MARKET_CLOSED = "MARKET_CLOSED"
SUSPENDED = "SUSPENDED"

CANCEL_REASONS: dict[str, str] = {
    USER: "cancelled (or reduced) by its owner",
    IOC: "the unmatched remainder of an immediate-or-cancel order",
    FOK: "a fill-or-kill order released after the in-play bet delay that could not be "
    "matched in full",
    LAPSE: "a LAPSE order still unmatched when the market turned in-play",
    REPLACE: "the remainder of an order replaced at a new price",
    MARKET_CLOSED: "still unmatched when the market closed",
    SUSPENDED: "waiting out the in-play bet delay when the market was suspended",
}
"""Every cancellation reason with its meaning."""


def event_dict(event: Event) -> dict[str, Any]:
    """An event tuple as a dict keyed by its field names (values unchanged: integers)."""
    return dict(zip(EVENT_FIELDS[event[0]], event))
