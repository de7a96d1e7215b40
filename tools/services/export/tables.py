"""The Parquet tables: their columns, and output-stream events turned into their rows.

Every event of the output stream goes to one or two tables (``TABLE_OF_EVENT``); a table's
rows are tuples in ``COLUMNS`` order, then Arrow tables of the explicit ``SCHEMAS``. Money,
prices and rates are exact decimals, built without Python ``Decimal`` objects: the integer
minor units (pence, hundredths, basis points) become an int64 array, whose values are written
as the low words of a decimal128 buffer (high words the sign extension), under a decimal type
of scale 2. That is the exact reinterpretation ``unscaled value = integer``; a cast would
multiply by 100. docs/parquet.md describes every column.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journal.wire import Entry

# ----------------------------------------------------------------------------- schemas

PRICE = pa.decimal128(7, 2)
"""Decimal odds, e.g. 2.10 (stream: hundredths)."""
MONEY = pa.decimal128(18, 2)
"""Pounds, e.g. 10.00 (stream: pence)."""
RATE = pa.decimal128(7, 2)
"""A percentage, e.g. 5.00 (stream: basis points)."""
ENUM = pa.dictionary(pa.int32(), pa.string())
"""A short code from a small set (types, sides, reasons): dictionary-encoded text."""
TS = pa.timestamp("ms", tz="UTC")
IDS = pa.list_(pa.int64())

DAY_MS = 86_400_000

_C = tuple[str, pa.DataType, str]

_COMMON: tuple[_C, ...] = (
    ("seq", pa.int64(), "sequence number of the command that caused the event (the stream "
     "entry id)"),
    ("idx", pa.int32(), "position of the event among that command's events, from 0; (seq, "
     "idx) identifies an event"),
    ("ts", TS, "the command's envelope time (Redis server time when it was sequenced)"),
)

COLUMNS: dict[str, tuple[_C, ...]] = {
    "trades": _COMMON + (
        ("type", ENUM, "always `trade`"),
        ("trade", pa.string(), "trade id, `<seq>-<idx>`"),
        ("market", pa.string(), "market id"),
        ("runner", pa.int64(), "runner id"),
        ("price", PRICE, "the trade price (the resting order's price)"),
        ("size", MONEY, "the backer's matched stake"),
        ("back_order", pa.int64(), "id of the BACK order"),
        ("lay_order", pa.int64(), "id of the LAY order"),
        ("back_account", pa.string(), "account of the BACK order"),
        ("lay_account", pa.string(), "account of the LAY order"),
        ("taker", ENUM, "the side that crossed the spread: `BACK` or `LAY`"),
    ),
    "orders": _COMMON + (
        ("type", ENUM, "`order_accepted`, `order_rejected`, `order_cancelled`, or "
         "`order_matched` (one row per side of each `trade`)"),
        ("order", pa.int64(), "order id (the seq of the command that placed it); for a "
         "rejection the order named by a cancel or replace, null for a rejected placement"),
        ("account", pa.string(), "the order's account (rejected: the command's account, if any)"),
        ("market", pa.string(), "market id (rejected: if the command named a valid one)"),
        ("runner", pa.int64(), "runner id; null for rejections"),
        ("side", ENUM, "`BACK` or `LAY`; null for rejections"),
        ("price", PRICE, "accepted: the limit price; cancelled: the order's price; matched: "
         "the trade price"),
        ("stake", MONEY, "accepted: the stake placed"),
        ("size", MONEY, "cancelled: the stake cancelled; matched: the stake matched"),
        ("remaining", MONEY, "cancelled: the unmatched stake left afterwards (0 when gone)"),
        ("tif", ENUM, "accepted: `GTC`, `IOC` or `FOK`"),
        ("persistence", ENUM, "accepted: `LAPSE` or `PERSIST`"),
        ("ref", pa.string(), "accepted and rejected: the client ref, if any"),
        ("reason", ENUM, "rejected: the rejection code; cancelled: the cancel reason"),
        ("command", ENUM, "rejected: the command type (`place`, `cancel`, `replace`, and also "
         "`deposit`, `settle`... : every rejection is here), null if malformed"),
        ("trade", pa.string(), "matched: the trade id"),
        ("counter_order", pa.int64(), "matched: the other side's order id"),
        ("counter_account", pa.string(), "matched: the other side's account"),
        ("taker", pa.bool_(), "matched: true if this order was the taker"),
    ),
    "markets": _COMMON + (
        ("type", ENUM, "`market_created`, `market_status_changed` or `market_settled`"),
        ("market", pa.string(), "market id"),
        ("runners", IDS, "created: the runner ids"),
        ("commission_rate", RATE, "created: commission in percent (5.00 = 5%)"),
        ("min_stake", MONEY, "created: smallest stake accepted"),
        ("num_winners", pa.int64(), "created: how many runners win (event field `winners`)"),
        ("bet_delay_ms", pa.int64(), "created: in-play bet delay in ms"),
        ("status", ENUM, "status changed: `OPEN`, `SUSPENDED` or `CLOSED`"),
        ("in_play", pa.bool_(), "status changed: whether the market is in play"),
        ("winners", IDS, "settled: the winning runner ids (empty when void)"),
        ("void", pa.bool_(), "settled: true if the market was voided"),
        ("commission", MONEY, "settled: total commission charged in the market"),
    ),
    "settlements": _COMMON + (
        ("type", ENUM, "always `account_settled`"),
        ("account", pa.string(), "account id"),
        ("market", pa.string(), "market id"),
        ("pnl", MONEY, "profit or loss on the market before commission"),
        ("commission", MONEY, "commission charged"),
        ("balance", MONEY, "the account's balance afterwards"),
    ),
    "funds": _COMMON + (
        ("type", ENUM, "always `funds_changed`"),
        ("account", pa.string(), "account id"),
        ("amount", MONEY, "deposit (positive) or withdrawal (negative)"),
        ("balance", MONEY, "the account's balance afterwards"),
    ),
}
"""Every table's columns in order: (name, Arrow type, meaning). docs/parquet.md shows them."""

TABLES: tuple[str, ...] = tuple(COLUMNS)

SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema(
        [pa.field(c, t) for c, t, _ in cols], metadata={"exch.table": name, "exch.format": "1"}
    )
    for name, cols in COLUMNS.items()
}
"""The explicit Arrow schema of each table (the ``date`` partition column is not in files)."""

TABLE_OF_EVENT: dict[str, tuple[str, ...]] = {
    "trade": ("trades", "orders"),
    "order_accepted": ("orders",),
    "order_rejected": ("orders",),
    "order_cancelled": ("orders",),
    "market_created": ("markets",),
    "market_status_changed": ("markets",),
    "market_settled": ("markets",),
    "account_settled": ("settlements",),
    "funds_changed": ("funds",),
}
"""Where each event type goes."""


def schema_markdown() -> str:
    """The column reference of every table as Markdown (docs/parquet.md includes it)."""
    out = []
    for name, cols in COLUMNS.items():
        out.append(f"### `{name}`\n\n| column | type | meaning |\n|---|---|---|")
        for c, t, doc in cols:
            out.append(f"| `{c}` | `{_type_name(t)}` | {doc} |")
        out.append("")
    return "\n".join(out)


def _type_name(t: pa.DataType) -> str:
    if t == ENUM:
        return "dictionary<int32, string>"
    return str(t)


# ----------------------------------------------------------------------------- rows


def table_rows(entries: Iterable[Entry], after: int) -> tuple[int, dict[str, list[tuple]], list]:
    """Every table's rows (tuples in ``COLUMNS`` order) from the entries with seq > ``after``
    (an entry is an answer: its events carry their own seq, and ``idx`` counts the events of
    one seq from 0).

    Returns the last seq seen (or ``after``), the rows per table, and the day marks: a list
    of ``(day, row count per table)`` at each entry where the UTC day changes.
    """
    trades: list[tuple] = []
    orders: list[tuple] = []
    markets: list[tuple] = []
    settlements: list[tuple] = []
    funds: list[tuple] = []
    ta, oa, ma, sa, fa = (trades.append, orders.append, markets.append, settlements.append,
                          funds.append)
    marks: list[tuple[int, int, int, int, int, int]] = []
    day = None
    last = after
    seq = after
    try:
        for top, ts, events in entries:
            if top <= last:
                if top <= after:
                    continue
                raise ValueError(f"entry seq {top} after {last}: seqs must strictly increase")
            last = top
            if not events:
                continue
            d = ts // DAY_MS
            if d != day:
                day = d
                marks.append((d, len(trades), len(orders), len(markets), len(settlements),
                              len(funds)))
            seq = idx = -1
            for e in events:
                s = e["seq"]
                if s == seq:
                    idx += 1
                else:
                    seq, idx = s, 0
                t = e["type"]
                if t == "order_accepted":
                    oa((seq, idx, ts, t, e["order"], e["account"], e["market"], e["runner"],
                        e["side"], e["price"], e["stake"], None, None, e["tif"],
                        e["persistence"], e["ref"], None, None, None, None, None, None))
                elif t == "order_cancelled":
                    oa((seq, idx, ts, t, e["order"], e["account"], e["market"], e["runner"],
                        e["side"], e["price"], None, e["size"], e["remaining"], None, None, None,
                        e["reason"], None, None, None, None, None))
                elif t == "trade":
                    market = e["market"]
                    runner = e["runner"]
                    price = e["price"]
                    size = e["size"]
                    trade = e["trade"]
                    bo = e["back_order"]
                    lo = e["lay_order"]
                    ba = e["back_account"]
                    la = e["lay_account"]
                    taker = e["taker"]
                    ta((seq, idx, ts, t, trade, market, runner, price, size, bo, lo, ba, la, taker))
                    oa((seq, idx, ts, "order_matched", bo, ba, market, runner, "BACK", price, None,
                        size, None, None, None, None, None, None, trade, lo, la, taker == "BACK"))
                    oa((seq, idx, ts, "order_matched", lo, la, market, runner, "LAY", price, None,
                        size, None, None, None, None, None, None, trade, bo, ba, taker == "LAY"))
                elif t == "order_rejected":
                    oa((seq, idx, ts, t, e["order"], e["account"], e["market"], None, None, None,
                        None, None, None, None, None, e["ref"], e["reason"], e["command"], None,
                        None, None, None))
                elif t == "funds_changed":
                    fa((seq, idx, ts, t, e["account"], e["amount"], e["balance"]))
                elif t == "account_settled":
                    sa((seq, idx, ts, t, e["account"], e["market"], e["pnl"], e["commission"],
                        e["balance"]))
                elif t == "market_created":
                    ma((seq, idx, ts, t, e["market"], list(e["runners"]), e["commission"],
                        e["min_stake"], e["winners"], e["bet_delay_ms"], None, None, None, None,
                        None))
                elif t == "market_status_changed":
                    ma((seq, idx, ts, t, e["market"], None, None, None, None, None, e["status"],
                        e["in_play"], None, None, None))
                elif t == "market_settled":
                    ma((seq, idx, ts, t, e["market"], None, None, None, None, None, None, None,
                        list(e["winners"]), e["void"], e["commission"]))
                else:
                    raise ValueError(f"seq {seq}: unknown event type {t!r}")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"seq {seq}: malformed entry or event ({exc!r})") from exc
    rows = {"trades": trades, "orders": orders, "markets": markets,
            "settlements": settlements, "funds": funds}
    return last, rows, marks


def by_day(rows: list[tuple], k: int, marks: list) -> dict[int, list[tuple]]:
    """Split one table's rows (column ``k`` of the marks) by UTC day, seq order kept."""
    if not rows:
        return {}
    if len(marks) == 1:
        return {marks[0][0]: rows}
    out: dict[int, list[tuple]] = {}
    bounds = [m[k] for m in marks] + [len(rows)]
    for i, m in enumerate(marks):
        lo, hi = bounds[i], bounds[i + 1]
        if hi > lo:
            out.setdefault(m[0], []).extend(rows[lo:hi])
    return out


def decimal_array(values: Sequence[Any] | pa.Array, typ: pa.Decimal128Type) -> pa.Array:
    """Integer minor units (None allowed; or an int64 array of them) as a decimal array of
    scale 2: exact, no Decimal."""
    ints = values if isinstance(values, pa.Array) else pa.array(values, pa.int64())
    if ints.offset:
        ints = pa.concat_arrays([ints])  # the buffers below start at the array's first value
    n = len(ints)
    validity, data = ints.buffers()
    if n:
        lo, hi = pc.min_max(ints).values()
        limit = 10 ** typ.precision
        if lo.is_valid and (lo.as_py() <= -limit or hi.as_py() >= limit):
            raise ValueError(f"value out of range for {typ}: {lo.as_py()}..{hi.as_py()}")
    v = np.frombuffer(data, dtype=np.int64, count=n)
    wide = np.empty((n, 2), dtype=np.int64)
    wide[:, 0] = v
    np.right_shift(v, 63, out=wide[:, 1])
    return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(wide)], null_count=ints.null_count)


def _plain(typ: pa.DataType) -> pa.DataType:
    """The type Arrow reads a column's Python values as: integers for money, prices, rates and
    times (made exact decimals and timestamps after), text for the dictionary columns."""
    if pa.types.is_decimal(typ) or typ == TS:
        return pa.int64()
    return pa.string() if typ == ENUM else typ


_ROWS = {name: pa.struct([pa.field(f.name, _plain(f.type)) for f in schema])
         for name, schema in SCHEMAS.items()}
"""Each table's rows as Arrow reads them: one struct of plain columns."""


def arrow_table(name: str, rows: list[tuple]) -> pa.Table:
    """A table's rows (tuples in ``COLUMNS`` order) as an Arrow table of its schema: read by
    Arrow in one pass as structs (turning the rows into columns in Python cost more than
    anything else here), then each column made its type."""
    schema = SCHEMAS[name]
    plain = pa.array(rows, type=_ROWS[name])
    arrays = []
    for i, f in enumerate(schema):
        col = plain.field(i)
        if pa.types.is_decimal(f.type):
            col = decimal_array(col, f.type)
        elif f.type == TS:
            col = col.view(TS)
        elif f.type == ENUM:
            col = col.dictionary_encode().cast(ENUM)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


def date_text(day: int) -> str:
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()


# ----------------------------------------------------------------------------- reading back


def decimal_ints(arr: pa.ChunkedArray | pa.Array) -> list[int | None]:
    """A decimal column back to its integer minor units (exact), None for nulls."""
    if isinstance(arr, pa.ChunkedArray):
        return [v for chunk in arr.chunks for v in decimal_ints(chunk)]
    n = len(arr)
    data = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=2 * (arr.offset + n))
    low = data[0::2][arr.offset:].tolist()
    if arr.null_count:
        valid = arr.is_valid().to_pylist()
        return [v if ok else None for v, ok in zip(low, valid)]
    return low
