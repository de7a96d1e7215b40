"""The Parquet sink: output-stream entries to date-partitioned Parquet tables, exactly once.

Input is what the consumer-group framework reads from ``exch:{p}:out``, already decoded:
``(seq, ts_ms, events)`` per entry, events in the stream form (``exchange.codec.wire_event``:
integers for prices, money and rates). There is no Redis here.

Layout (see docs/parquet.md for every column)::

    OUT/_state.json                                   {"committed_seq": N}: the cursor
    OUT/_lock                                         one writer per folder (flock)
    OUT/<table>/date=YYYY-MM-DD/part-<first>-<last>.parquet

``first`` and ``last`` are the smallest and largest ``seq`` of the rows in the file (12
digits). Tables: ``trades``, ``orders``, ``markets``, ``settlements``, ``funds``.

Exactly once, by three rules:

1. A batch's files are written under a hidden temporary name (``.part-...parquet.tmp``:
   readers skip names starting with "."), fsync'd, renamed into place and their folders
   fsync'd; only then is the cursor (``_state.json``) replaced, atomically (temporary file,
   fsync, rename, fsync). So a crash leaves either a committed batch or a batch whose files
   all hold rows above the cursor.
2. Recovery (on start-up, and before writing after a failed call) deletes temporary files,
   every data file whose seq range lies above the cursor (an uncommitted batch), and every
   data file whose seq range lies inside another file's range in the same partition (the
   inputs of a compaction that crashed after renaming its output into place).
3. Entries with ``seq <= committed_seq()`` are skipped: redelivery writes nothing twice.

Within a partition the files' seq ranges are disjoint (batches are disjoint seq ranges and
``compact`` only merges whole, adjacent files), which is what makes rule 2 exact.

Decimals are built without Python ``Decimal`` objects: the integer minor units (pence,
hundredths, basis points) become an int64 array, whose values are written as the low words of
a decimal128 buffer (high words the sign extension), under a decimal type of scale 2. That
is the exact reinterpretation ``unscaled value = integer``; a cast would multiply by 100.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exchange.errors import SinkError
from journal.collector import collector_paused

Entry = tuple[int, int, list[dict[str, Any]]]

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

ROW_GROUP_ROWS = 256 * 1024
"""Largest row group written (a batch smaller than this is one row group)."""
DEFAULT_ROWS_PER_FILE = 1_000_000
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1

_PART = re.compile(r"^part-(\d{12})-(\d{12})\.parquet$")
_TMP = re.compile(r"^\.part-\d{12}-\d{12}\.parquet\.tmp$")
_DATE_DIR = re.compile(r"^date=\d{4}-\d{2}-\d{2}$")
STATE = "_state.json"
LOCK = "_lock"


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


# ----------------------------------------------------------------------------- errors, report


@dataclass(frozen=True)
class CompactReport:
    """What ``ParquetSink.compact`` did."""

    files_before: int
    files_after: int
    merged_inputs: int
    """Small files consumed."""
    written: int
    """Merged files written."""
    rows_rewritten: int
    seconds: float


@dataclass(frozen=True)
class _DataFile:
    path: Path
    first: int
    last: int


# ----------------------------------------------------------------------------- rows


def _rows(entries: Iterable[Entry], after: int) -> tuple[int, dict[str, list[tuple]], list]:
    """Every table's rows (tuples in ``COLUMNS`` order) from the entries with seq > ``after``.

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
        for seq, ts, events in entries:
            if seq <= last:
                if seq <= after:
                    continue
                raise ValueError(f"entry seq {seq} after {last}: seqs must strictly increase")
            last = seq
            if not events:
                continue
            d = ts // DAY_MS
            if d != day:
                day = d
                marks.append((d, len(trades), len(orders), len(markets), len(settlements),
                              len(funds)))
            for idx, e in enumerate(events):
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


def _by_day(rows: list[tuple], k: int, marks: list) -> dict[int, list[tuple]]:
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


def _decimal(values: Sequence[Any], typ: pa.Decimal128Type) -> pa.Array:
    """Integer minor units (None allowed) as a decimal array of scale 2: exact, no Decimal."""
    ints = pa.array(values, pa.int64())
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


def _column(values: Sequence[Any], typ: pa.DataType) -> pa.Array:
    if pa.types.is_decimal(typ):
        return _decimal(values, typ)
    if typ == TS:
        return pa.array(values, pa.int64()).view(TS)
    return pa.array(values, typ)


def _table(name: str, rows: list[tuple]) -> pa.Table:
    schema = SCHEMAS[name]
    cols = list(zip(*rows))
    arrays = [_column(col, f.type) for col, f in zip(cols, schema)]
    return pa.Table.from_arrays(arrays, schema=schema)


def _date(day: int) -> str:
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()


def _part_name(first: int, last: int) -> str:
    return f"part-{first:012d}-{last:012d}.parquet"


_NO_DICTIONARY = frozenset({"trade", "ref"})
"""Text columns whose values are (nearly) all different: plain encoding."""
_DICTIONARY_OTHER = frozenset({"runner", "price", "runners"})
"""Non-text columns with few distinct values: dictionary encoding pays."""
_STATISTICS = frozenset({
    "seq", "idx", "ts", "type", "market", "runner", "order", "account", "back_order",
    "lay_order", "back_account", "lay_account", "trade",
})
"""Columns with min/max statistics (for pruning row groups); the others skip the cost."""


def _write_options(table: str) -> dict[str, Any]:
    cols = COLUMNS[table]
    return {
        "compression": COMPRESSION,
        "compression_level": COMPRESSION_LEVEL,
        "use_dictionary": [
            c for c, t, _ in cols
            if (t in (ENUM, pa.string()) and c not in _NO_DICTIONARY) or c in _DICTIONARY_OTHER
        ],
        "write_statistics": [c for c, _, _ in cols if c in _STATISTICS],
        "store_decimal_as_integer": True,
        "sorting_columns": [pq.SortingColumn(0), pq.SortingColumn(1)],
    }


# ----------------------------------------------------------------------------- fs helpers


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdirs(path: Path, created: set[Path]) -> None:
    """Make ``path`` and missing parents; remember the parents whose entries changed."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        try:
            p.mkdir()
        except FileExistsError:
            pass
        created.add(p.parent)


# ----------------------------------------------------------------------------- the sink


class ParquetSink:
    """Writes decoded output-stream entries to Parquet, exactly once across crashes.

    One sink per folder at a time (an exclusive ``flock`` on ``OUT/_lock``, released by
    ``close()`` or by the process ending). Not thread-safe: call ``write`` and ``compact``
    from one thread.

    ``fault_hook`` is for crash tests only: it is called with the name of each step
    (``tmp_written``, ``renamed``, ``files_synced``, ``state_tmp_written``, ``committed``,
    ``compact_tmp_written``, ``compact_renamed``, ``compact_input_deleted``,
    ``recover_deleted``) as it completes.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        rows_per_file: int = DEFAULT_ROWS_PER_FILE,
        row_group_rows: int = ROW_GROUP_ROWS,
        fault_hook: Callable[[str], None] | None = None,
    ) -> None:
        if rows_per_file < 1 or row_group_rows < 1:
            raise ValueError("rows_per_file and row_group_rows must be positive")
        self.out = Path(out_dir)
        self.rows_per_file = rows_per_file
        self.row_group_rows = row_group_rows
        self._fault = fault_hook or (lambda point: None)
        self._dirty = True  # recovery needed before the next write or compaction
        self._committed = 0
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = os.open(self.out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise SinkError(f"{self.out} is in use by another ParquetSink") from exc
            raise
        try:
            self._committed = self._read_state()
            self.recover()
        except BaseException:
            self.close()
            raise

    # -- public -------------------------------------------------------------------------

    def committed_seq(self) -> int:
        """Every entry with a seq at or below this is durably in the files; 0 if none."""
        return self._committed

    def write(self, entries: Sequence[Entry]) -> int:
        """Write the entries above ``committed_seq()``; return the new committed seq.

        ``entries`` are ``(seq, ts_ms, events)`` with strictly increasing seqs; events in the
        stream form. One file per (table, UTC date) is written for the batch. On return the
        files and the cursor are fsync'd. Entries at or below the cursor are skipped; entries
        without events still move the cursor. Raises ValueError (or TypeError), with nothing
        written, for non-increasing seqs, an unknown event type, a missing field, or a value
        that does not fit its column.
        """
        self._check_open()
        # The rows are many small tuples and no cycles: the cyclic collector would only
        # rescan them, again and again (it halves the throughput). Off while we build.
        with collector_paused():
            return self._write(entries)

    def _write(self, entries: Sequence[Entry]) -> int:
        committed = self._committed
        last, rows, marks = _rows(entries, committed)
        if last == committed:
            return committed
        tables = []
        for k, name in enumerate(TABLES, start=1):
            for day, day_rows in _by_day(rows[name], k, marks).items():
                tables.append((name, day, _table(name, day_rows)))
        if self._dirty:
            self.recover()
        self._dirty = True
        synced: set[Path] = set()
        staged = []
        for name, day, table in tables:
            part = self.out / name / f"date={_date(day)}"
            _mkdirs(part, synced)
            seqs = table.column(0)
            final = part / _part_name(seqs[0].as_py(), seqs[-1].as_py())
            tmp = part / f".{final.name}.tmp"
            pq.write_table(table, tmp, row_group_size=self.row_group_rows,
                           **_write_options(name))
            _fsync_path(tmp)
            self._fault("tmp_written")
            staged.append((tmp, final))
        for tmp, final in staged:
            os.rename(tmp, final)
            synced.add(final.parent)
            self._fault("renamed")
        for d in sorted(synced, key=lambda p: len(p.parts), reverse=True):
            _fsync_path(d)
        self._fault("files_synced")
        self._write_state(last)
        self._committed = last
        self._dirty = False
        self._fault("committed")
        return last

    def compact(self) -> CompactReport:
        """Merge runs of adjacent small files in each partition into files of at most
        ``rows_per_file`` rows, named by their merged seq range; rows unchanged, in seq order.

        A file already holding ``rows_per_file`` rows or more is never rewritten, nor split.
        Crash-safe: the merged file is renamed into place before its inputs are deleted, and
        recovery deletes inputs left behind (their range lies inside the merged file's).
        """
        self._check_open()
        start = time.perf_counter()
        if self._dirty:
            self.recover()
        self._dirty = True
        before = after = inputs = written = rows_rewritten = 0
        for table in TABLES:
            for part in self._partitions(table):
                files = self._data_files(part)
                before += len(files)
                after += len(files)
                for group, rows in self._groups(files):
                    self._merge(table, part, group)
                    inputs += len(group)
                    written += 1
                    after -= len(group) - 1
                    rows_rewritten += rows
        self._dirty = False
        return CompactReport(before, after, inputs, written, rows_rewritten,
                             time.perf_counter() - start)

    def recover(self) -> None:
        """Make the folder hold exactly the committed batches: delete temporary files, files
        above the cursor and files inside another file's range. Idempotent."""
        self._check_open()
        committed = self._committed
        stale = self.out / (STATE + ".tmp")
        if stale.exists():
            stale.unlink()
        for table in TABLES:
            for part in self._partitions(table):
                changed = False
                for entry in os.scandir(part):
                    if _TMP.match(entry.name):
                        os.unlink(entry.path)
                        changed = True
                        self._fault("recover_deleted")
                files = self._data_files(part)
                keep = []
                for f in files:
                    if f.first > committed:
                        os.unlink(f.path)
                        changed = True
                        self._fault("recover_deleted")
                    elif f.last > committed:
                        raise SinkError(
                            f"{f.path} holds seqs {f.first}..{f.last} across the committed "
                            f"cursor {committed}: the folder was changed by something else"
                        )
                    else:
                        keep.append(f)
                reach = -1
                for f in sorted(keep, key=lambda f: (f.first, -f.last)):
                    if f.last <= reach:
                        os.unlink(f.path)
                        changed = True
                        self._fault("recover_deleted")
                    else:
                        reach = f.last
                if changed:
                    _fsync_path(part)
        self._dirty = False

    def close(self) -> None:
        """Release the folder (the lock). Idempotent."""
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def files(self, table: str) -> list[Path]:
        """The data files of a table, by partition then seq."""
        return [f.path for part in self._partitions(table) for f in self._data_files(part)]

    # -- internals ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise SinkError("the sink is closed")

    def _read_state(self) -> int:
        path = self.out / STATE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if any(self.files(t) for t in TABLES):
                raise SinkError(
                    f"{self.out} holds data files but no {STATE}: refusing to guess what "
                    f"is committed (restore {STATE} or move the files away)"
                ) from None
            self._write_state(0)
            return 0
        seq = state.get("committed_seq") if isinstance(state, dict) else None
        if type(seq) is not int or seq < 0:
            raise SinkError(f"{path}: no valid committed_seq")
        return seq

    def _write_state(self, seq: int) -> None:
        tmp = self.out / (STATE + ".tmp")
        data = json.dumps({"committed_seq": seq, "format": 1}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._fault("state_tmp_written")
        os.rename(tmp, self.out / STATE)
        _fsync_path(self.out)

    def _partitions(self, table: str) -> list[Path]:
        base = self.out / table
        if not base.is_dir():
            return []
        return sorted(Path(e.path) for e in os.scandir(base)
                      if e.is_dir() and _DATE_DIR.match(e.name))

    @staticmethod
    def _data_files(part: Path) -> list[_DataFile]:
        out = []
        for entry in os.scandir(part):
            m = _PART.match(entry.name)
            if m:
                first, last = int(m.group(1)), int(m.group(2))
                out.append(_DataFile(Path(entry.path), first, last))
        out.sort(key=lambda f: (f.first, f.last))
        return out

    def _groups(self, files: list[_DataFile]) -> list[tuple[list[_DataFile], int]]:
        """Runs of adjacent files, each below ``rows_per_file`` rows, whose total fits."""
        groups: list[tuple[list[_DataFile], int]] = []
        run: list[_DataFile] = []
        total = 0

        def close_run() -> None:
            if len(run) > 1:
                groups.append((list(run), total))

        for f in files:
            rows = pq.read_metadata(f.path).num_rows
            if rows >= self.rows_per_file:
                close_run()
                run, total = [], 0
                continue
            if total + rows > self.rows_per_file:
                close_run()
                run, total = [], 0
            run.append(f)
            total += rows
        close_run()
        return groups

    def _merge(self, table: str, part: Path, group: list[_DataFile]) -> None:
        final = part / _part_name(group[0].first, group[-1].last)
        tmp = part / f".{final.name}.tmp"
        schema = SCHEMAS[table]
        rg = self.row_group_rows
        opts = _write_options(table)
        with pq.ParquetWriter(tmp, schema, **opts) as writer:
            pending: list[pa.Table] = []
            held = 0
            for f in group:
                t = pq.ParquetFile(f.path).read()
                if not t.schema.equals(schema, check_metadata=False):
                    raise SinkError(f"{f.path}: schema differs from the {table} schema")
                pending.append(t.replace_schema_metadata(schema.metadata))
                held += t.num_rows
                if held >= rg:
                    whole = pa.concat_tables(pending)
                    cut = held - held % rg
                    writer.write_table(whole.slice(0, cut), row_group_size=rg)
                    pending = [whole.slice(cut)] if cut < held else []
                    held -= cut
            if held:
                writer.write_table(pa.concat_tables(pending), row_group_size=rg)
        _fsync_path(tmp)
        self._fault("compact_tmp_written")
        os.rename(tmp, final)
        _fsync_path(part)
        self._fault("compact_renamed")
        for f in group:
            os.unlink(f.path)
            self._fault("compact_input_deleted")
        _fsync_path(part)


# ----------------------------------------------------------------------------- reading back


def _ints(arr: pa.ChunkedArray | pa.Array) -> list[int | None]:
    """A decimal column back to its integer minor units (exact), None for nulls."""
    if isinstance(arr, pa.ChunkedArray):
        return [v for chunk in arr.chunks for v in _ints(chunk)]
    n = len(arr)
    data = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=2 * (arr.offset + n))
    low = data[0::2][arr.offset:].tolist()
    if arr.null_count:
        valid = arr.is_valid().to_pylist()
        return [v if ok else None for v, ok in zip(low, valid)]
    return low


def read_table(out_dir: str | Path, table: str) -> pa.Table:
    """One table, every partition, rows in (seq, idx) order; the ``date`` column included."""
    import pyarrow.dataset as ds

    base = Path(out_dir) / table
    date = pa.schema([("date", pa.string())])
    schema = pa.unify_schemas([SCHEMAS[table], date])
    if not base.is_dir():
        return schema.empty_table()
    part = ds.partitioning(date, flavor="hive")
    t = ds.dataset(base, schema=schema, format="parquet", partitioning=part).to_table()
    return t.sort_by([("seq", "ascending"), ("idx", "ascending")])


_COLUMN_OF: dict[str, dict[str, str]] = {
    "market_created": {"commission": "commission_rate", "winners": "num_winners"},
}
"""Event fields stored under another column name (where one name means two things)."""


def read_events(out_dir: str | Path) -> list[tuple[int, int, int, dict[str, Any]]]:
    """Every event back in its stream form, as ``(seq, idx, ts_ms, event)`` in seq order.

    The inverse of the sink for everything but ``order_matched`` rows (a projection of the
    trades); used to prove that the export holds every event once. Slow: for checks, not for
    analytics.
    """
    from exchange.events import EVENT_FIELDS

    out: list[tuple[int, int, int, dict[str, Any]]] = []
    for table in TABLES:
        t = read_table(out_dir, table)
        cols: dict[str, list[Any]] = {}
        for c, typ, _ in COLUMNS[table]:
            col = t.column(c)
            if pa.types.is_decimal(typ):
                cols[c] = _ints(col)
            elif typ == TS:
                cols[c] = col.cast(pa.int64()).to_pylist()
            else:
                cols[c] = col.to_pylist()
        kinds = cols["type"]
        for i in range(t.num_rows):
            kind = kinds[i]
            if kind == "order_matched":
                continue
            rename = _COLUMN_OF.get(kind, {})
            event = {f: cols[rename.get(f, f)][i] for f in EVENT_FIELDS[kind]}
            out.append((cols["seq"][i], cols["idx"][i], cols["ts"][i], event))
    out.sort(key=lambda r: (r[0], r[1]))
    return out


# ----------------------------------------------------------------------------- benchmark


def synthetic_entries(events: int, *, seed: int = 1) -> list[Entry]:
    """Entries shaped like real ones: the seeded core workload run through the exchange,
    events in stream form, until at least ``events`` events."""
    from exchange import Exchange
    from exchange.codec import wire_event
    from tools.sources.workload import iter_core_workload

    ex = Exchange()
    out: list[Entry] = []
    count = 0
    for cmd in iter_core_workload(events * 2 + 2000, seed=seed):
        evs = [wire_event(e) for e in ex.apply(cmd)]
        out.append((cmd[1], cmd[2], evs))
        count += len(evs)
        if count >= events:
            break
    return out


def batches(entries: Sequence[Entry], events_per_batch: int) -> list[list[Entry]]:
    """Split entries into batches of about ``events_per_batch`` events (whole entries)."""
    out: list[list[Entry]] = []
    cur: list[Entry] = []
    n = 0
    for entry in entries:
        cur.append(entry)
        n += len(entry[2])
        if n >= events_per_batch:
            out.append(cur)
            cur, n = [], 0
    if cur:
        out.append(cur)
    return out


def bench_parquet(events: int = 1_000_000, *, runs: int = 3, batch_events: int = 50_000,
                  folder: str | Path | None = None) -> dict[str, Any]:
    """Events per second from decoded entries to committed Parquet (fsync'd), median of
    ``runs`` (wall clock; ``cpu_events_per_sec`` counts this process's CPU time only, which
    a busy machine disturbs less); batches of about ``batch_events`` events, each a
    ``ParquetSink.write`` call.
    Building the entries and a first warm-up batch are not timed; the time of one final
    ``compact()`` is reported apart."""
    entries = synthetic_entries(events)
    total = sum(len(e[2]) for e in entries)
    work = batches(entries, batch_events)
    rates, cpu_rates, compact_s = [], [], []
    size = files = 0
    with tempfile.TemporaryDirectory(dir=folder, prefix="exch-bench-parquet-") as tmp:
        with ParquetSink(tmp) as sink:  # warm-up, untimed: imports, allocator, page cache
            sink.write(work[0])
    for _ in range(runs):
        with tempfile.TemporaryDirectory(dir=folder, prefix="exch-bench-parquet-") as tmp:
            with ParquetSink(tmp) as sink:
                start, cpu = time.perf_counter(), time.process_time()
                for batch in work:
                    sink.write(batch)
                rates.append(total / (time.perf_counter() - start))
                cpu_rates.append(total / (time.process_time() - cpu))
                compact_s.append(sink.compact().seconds)
                paths = [p for t in TABLES for p in sink.files(t)]
                files = len(paths)
                size = sum(p.stat().st_size for p in paths)
    return {
        "benchmark": "parquet",
        "events": total,
        "entries": len(entries),
        "batches": len(work),
        "runs": runs,
        "events_per_sec": round(statistics.median(rates)),
        "cpu_events_per_sec": round(statistics.median(cpu_rates)),
        "compact_seconds": round(statistics.median(compact_s), 3),
        "files_after_compact": files,
        "bytes": size,
    }
