"""The Parquet tables: their columns, and output-stream events turned into their rows.

Every event of the output stream goes to one or two tables (``TABLE_OF_EVENT``); a table's
rows are tuples in ``COLUMNS`` order, then Arrow tables of the explicit ``SCHEMAS``.

The types are chosen to read the same, and usefully, in pandas, pyarrow and DuckDB (format 2):
money is integer pence in columns named ``*_pence`` (exact, summable everywhere; format 1's
decimals came back from pandas as ``object`` columns of ``Decimal`` that ``describe()``
skipped); prices and rates are float64 (2.1 is the nearest double to the ladder price, and
``round(price * 100)`` gives back the stream's exact hundredths); ids are int64, and a
``pandas`` schema note makes ``pd.read_parquet`` read the ones with nulls as nullable
``Int64`` (and flags as ``boolean``) instead of float64 and object. docs/parquet.md
describes every column.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from journal.wire import Entry

# ----------------------------------------------------------------------------- schemas

PRICE = pa.float64()
"""Decimal odds, e.g. 2.1 (stream: integer hundredths, 210)."""
PENCE = pa.int64()
"""Money in integer pence, e.g. 1000 for £10.00 (as on the stream); columns end ``_pence``."""
RATE = pa.float64()
"""A percentage, e.g. 5.0 (stream: integer basis points, 500)."""
HUNDREDTHS: frozenset[str] = frozenset({"price", "commission_rate"})
"""The float columns whose stream values are integer hundredths (divided by 100 here)."""
ENUM = pa.dictionary(pa.int32(), pa.string())
"""A short code from a small set (types, sides, reasons): dictionary-encoded text."""
TS = pa.timestamp("ms", tz="UTC")
IDS = pa.list_(pa.int64())
FORMAT = 2
"""The layout of the tables; a folder of another format is refused, not mixed."""

DAY_MS = 86_400_000

_C = tuple[str, pa.DataType, str]

_COMMON: tuple[_C, ...] = (
    ("seq", pa.int64(), "sequence number, in its partition, of the command that caused the "
     "event"),
    ("idx", pa.int32(), "position of the event among that command's events, from 0; "
     "(partition, seq, idx) identifies an event"),
    ("ts", TS, "the command's envelope time (Redis server time when it was sequenced)"),
)

COLUMNS: dict[str, tuple[_C, ...]] = {
    "trades": _COMMON + (
        ("type", ENUM, "always `trade`"),
        ("trade", pa.string(), "trade id, `<n>-<idx>`: n is the seq (plus the partition "
         "times 10^14 outside partition 0, rules version 5)"),
        ("market", pa.string(), "market id"),
        ("runner", pa.int64(), "runner id"),
        ("price", PRICE, "the trade price (the resting order's price)"),
        ("size_pence", PENCE, "the backer's matched stake"),
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
        ("stake_pence", PENCE, "accepted: the stake placed"),
        ("size_pence", PENCE, "cancelled: the stake cancelled; matched: the stake matched"),
        ("remaining_pence", PENCE, "cancelled: the unmatched stake left afterwards (0 when gone)"),
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
        ("commission_rate", RATE, "created: commission in percent (5.0 = 5%)"),
        ("min_stake_pence", PENCE, "created: smallest stake accepted"),
        ("num_winners", pa.int64(), "created: how many runners win (event field `winners`)"),
        ("bet_delay_ms", pa.int64(), "created: in-play bet delay in ms"),
        ("status", ENUM, "status changed: `OPEN`, `SUSPENDED` or `CLOSED`"),
        ("in_play", pa.bool_(), "status changed: whether the market is in play"),
        ("winners", IDS, "settled: the winning runner ids (empty when void)"),
        ("void", pa.bool_(), "settled: true if the market was voided"),
        ("commission_pence", PENCE, "settled: total commission charged in the market"),
    ),
    "settlements": _COMMON + (
        ("type", ENUM, "always `account_settled`"),
        ("account", pa.string(), "account id"),
        ("market", pa.string(), "market id"),
        ("pnl_pence", PENCE, "profit or loss on the market before commission"),
        ("commission_pence", PENCE, "commission charged"),
        ("balance_pence", PENCE, "the account's balance afterwards"),
    ),
    "funds": _COMMON + (
        ("type", ENUM, "`funds_changed` (a deposit or withdrawal), `transfer_out` or "
         "`transfer_in` (money between partitions)"),
        ("account", pa.string(), "account id"),
        ("amount_pence", PENCE, "money in (positive: deposit, transfer in) or out (negative: "
         "withdrawal, transfer out)"),
        ("balance_pence", PENCE, "the account's balance afterwards"),
        ("transfer", pa.int64(), "transfers: the transfer id (source partition x 10^14 + "
         "source seq), the same in its `transfer_out` and its `transfer_in`"),
        ("to_partition", pa.int64(), "`transfer_out`: where the money goes"),
        ("from_partition", pa.int64(), "`transfer_in`: where the money came from"),
    ),
}
"""Every table's columns in order: (name, Arrow type, meaning). docs/parquet.md shows them."""

TABLES: tuple[str, ...] = tuple(COLUMNS)

def _pandas_note(cols: tuple[_C, ...]) -> str:
    """The ``pandas`` schema metadata that pyarrow's ``to_pandas`` (and so
    ``pd.read_parquet``) follows: int64 columns as nullable ``Int64`` and flags as ``boolean``,
    so that a null does not turn ids into float64 or flags into object. Other readers ignore
    it."""
    nullable = {pa.int64(): ("int64", "Int64"), pa.bool_(): ("bool", "boolean")}
    columns = [
        {"name": c, "field_name": c, "pandas_type": nullable[t][0],
         "numpy_type": nullable[t][1], "metadata": None}
        for c, t, _ in cols if t in nullable
    ]
    return json.dumps({"index_columns": [], "column_indexes": [], "columns": columns})


SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema(
        [pa.field(c, t) for c, t, _ in cols],
        metadata={"exch.table": name, "exch.format": str(FORMAT), "pandas": _pandas_note(cols)},
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
    "transfer_out": ("funds",),
    "transfer_in": ("funds",),
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
                    fa((seq, idx, ts, t, e["account"], e["amount"], e["balance"], None, None,
                        None))
                elif t == "transfer_out":
                    fa((seq, idx, ts, t, e["account"], e["amount"], e["balance"], e["transfer"],
                        e["to_partition"], None))
                elif t == "transfer_in":
                    fa((seq, idx, ts, t, e["account"], e["amount"], e["balance"], e["transfer"],
                        None, e["from_partition"]))
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


def _plain(f: pa.Field) -> pa.DataType:
    """The type Arrow reads a column's Python values as: integers for prices, rates and times
    (made floats and timestamps after), text for the dictionary columns."""
    if f.type == TS or f.name in HUNDREDTHS:
        return pa.int64()
    return pa.string() if f.type == ENUM else f.type


_ROWS = {name: pa.struct([pa.field(f.name, _plain(f)) for f in schema])
         for name, schema in SCHEMAS.items()}
"""Each table's rows as Arrow reads them: one struct of plain columns."""


def arrow_table(name: str, rows: list[tuple]) -> pa.Table:
    """A table's rows (tuples in ``COLUMNS`` order) as an Arrow table of its schema: read by
    Arrow in one pass as structs (turning the rows into columns in Python cost more than
    anything else here), then each column made its type."""
    schema = SCHEMAS[name]
    try:
        plain = pa.array(rows, type=_ROWS[name])
    except (OverflowError, pa.ArrowInvalid) as exc:
        raise ValueError(f"{name}: a value out of range for its column ({exc})") from exc
    arrays = []
    for i, f in enumerate(schema):
        col = plain.field(i)
        if f.name in HUNDREDTHS:
            col = pc.divide(col.cast(pa.float64()), 100.0)
        elif f.type == TS:
            col = col.view(TS)
        elif f.type == ENUM:
            col = col.dictionary_encode().cast(ENUM)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


def date_text(day: int) -> str:
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()
