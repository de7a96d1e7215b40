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
TRANSFER_OUT = "transfer_out"
TRANSFER_IN = "transfer_in"

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
    TRANSFER_OUT: ("type", "seq", "transfer", "account", "amount", "balance", "to_partition"),
    TRANSFER_IN: ("type", "seq", "transfer", "account", "amount", "balance", "from_partition"),
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
POSITION_LIMIT = "POSITION_LIMIT"
EXPOSURE_LIMIT = "EXPOSURE_LIMIT"
BAD_ENTRY = "BAD_ENTRY"
INVALID_TRANSFER = "INVALID_TRANSFER"
DUPLICATE_TRANSFER = "DUPLICATE_TRANSFER"

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
    "withdrawal (or transfer)",
    DUPLICATE_REF: "this account already used this client ref (from rules 3: in the last 60 s "
    "of journal time)",
    FOK_NOT_FILLED: "a fill-or-kill order that could not be matched in full; nothing traded",
    POSITION_LIMIT: "the account's stake in the market, matched plus unmatched, would pass "
    "10^14 pence (a trillion pounds)",
    EXPOSURE_LIMIT: "the account's worst-case loss over all its markets would pass 10^15 pence "
    "(ten trillion pounds), however large its balance",
    DUPLICATE_MARKET: "a market with that id already exists",
    INVALID_MARKET: "a market definition with no runners, repeated runners, or a commission, "
    "minimum stake, number of winners or bet delay out of range",
    INVALID_AMOUNT: "a deposit, withdrawal or transfer that is not a positive whole number of "
    "pence (or would take a balance past the limit)",
    INVALID_STATUS: "a status change the market's lifecycle does not allow: reopening a "
    "closed market, turning in-play twice, settling twice",
    INVALID_WINNERS: "winners that are repeated, or not as many as the market's number of "
    "winners",
    INVALID_TRANSFER: "a transfer whose from is not the partition journaling it, or whose to "
    "is that partition or not a partition number (0 to 9999); a transfer_in whose transfer id "
    "is not another partition's seq",
    DUPLICATE_TRANSFER: "a transfer_in this partition already credited: its source seq is at "
    "or below the highest it credited from that partition",
    BAD_ENTRY: "the journal entry holding this seq is not a valid entry (its count of commands "
    "is out of range or disagrees with them, or they are not msgpack): nothing in it was "
    "applied (docs/journal.md)",
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


EVENT_DOCS: dict[str, str] = {
    MARKET_CREATED: "a market exists and is OPEN",
    MARKET_STATUS_CHANGED: "a market's status or in-play flag changed",
    FUNDS_CHANGED: "a deposit (amount > 0) or withdrawal (amount < 0)",
    ORDER_ACCEPTED: "an order passed every check; it now matches, rests, or waits out the "
    "in-play bet delay",
    ORDER_REJECTED: "a command that changed nothing, with the reason (for any command, not "
    "only orders)",
    TRADE: "a back and a lay order matched",
    ORDER_CANCELLED: "unmatched stake taken off an order (all of it when remaining is 0)",
    MARKET_SETTLED: "a closed market was settled with its winners, or voided",
    ACCOUNT_SETTLED: "one account's result in a settled market (accounts that traded in it)",
    TRANSFER_OUT: "money left the account's wallet in this partition for another partition "
    "(amount < 0); the transfer service credits it there",
    TRANSFER_IN: "money from another partition's transfer_out reached the account's wallet "
    "here (amount > 0), once",
}
"""What each event type means."""

FIELD_DOCS: dict[str, str] = {
    "type": "the event type",
    "seq": "sequence number of the command that caused the event",
    "market": "market id",
    "runners": "runner ids, in the market's order",
    "commission": "in market_created: the rate, percent; in market_settled and "
    "account_settled: money charged",
    "min_stake": "smallest stake accepted",
    "winners": "in market_created: how many runners win; in market_settled: the winning "
    "runner ids (empty when void)",
    "bet_delay_ms": "in-play bet delay, milliseconds of journal time",
    "status": "OPEN, SUSPENDED or CLOSED",
    "in_play": "whether the market has turned in-play",
    "account": "account id",
    "amount": "money moved: positive in, negative out",
    "balance": "the account's balance after the event (money not yet settled is not in it; "
    "unmatched and matched bets only reserve it)",
    "order": "order id: the seq of the command that placed it",
    "runner": "runner id",
    "side": "BACK or LAY",
    "price": "decimal odds on the ladder",
    "stake": "backer's stake (for a LAY, the backer's stake it accepts; it risks "
    "stake x (price - 1))",
    "tif": "time in force: GTC (rest the remainder), IOC (cancel the remainder), FOK (all or "
    "nothing)",
    "persistence": "LAPSE (cancelled when the market turns in-play) or PERSIST",
    "ref": "the client's ref, if it gave one",
    "command": "the type of the rejected command (null if it had no known type)",
    "reason": "a stable upper-case code, listed below",
    "trade": "trade id: \"<seq>-<index of the event within that command's events>\"",
    "size": "in trade: the backer's matched stake; in order_cancelled: the stake this event "
    "takes off",
    "back_order": "the BACK order of the trade",
    "lay_order": "the LAY order of the trade",
    "back_account": "the backer's account",
    "lay_account": "the layer's account",
    "taker": "BACK or LAY: the side of the order that arrived and took resting liquidity "
    "(the trade is at the resting order's price)",
    "remaining": "the order's unmatched stake still live after this event",
    "void": "true when the market was voided (nothing paid, nothing charged)",
    "pnl": "the account's net result in the market before commission",
    "transfer": "transfer id: the source partition times 10^14 plus the seq of the transfer "
    "command there (the same id in its transfer_out and its transfer_in)",
    "to_partition": "the partition the money goes to",
    "from_partition": "the partition the money came from",
}
"""What each event field means (a name means the same thing in every event)."""
