"""The Parquet sink: output-stream entries to date-partitioned Parquet tables, exactly once.

Input is what the consumer-group framework reads from ``exch:{p}:out``, already decoded:
``(seq, ts_ms, events)`` per entry, events in the stream form (``exchange.codec.wire_event``:
integers for prices, money and rates). It reads no stream and holds no connection: it only
writes files. The tables and how events become their rows are ``tables``.

Layout (see docs/parquet.md for every column), for each exchange partition ``P``::

    OUT/_state-P.json                                 {"committed_seq": N}: P's cursor
    OUT/_lock-P                                       one writer per partition (flock)
    OUT/<table>/partition=P/date=YYYY-MM-DD/part-<first>-<last>.parquet

Each partition's files are written by its own sink, which owns only its own folders and
cursor: partitions are independent journals, exported independently into one set of tables.

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
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from exchange.errors import SinkError
from journal.collector import collector_paused
from journal.wire import Entry

from .tables import (
    COLUMNS,
    ENUM,
    FORMAT,
    HUNDREDTHS,
    SCHEMAS,
    TABLE_OF_EVENT,
    TABLES,
    TS,
    arrow_table,
    by_day,
    date_text,
    table_rows,
)

ROW_GROUP_ROWS = 256 * 1024
"""Largest row group written (a batch smaller than this is one row group)."""
DEFAULT_ROWS_PER_FILE = 1_000_000
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1

_PART = re.compile(r"^part-(\d{12})-(\d{12})\.parquet$")
_TMP = re.compile(r"^\.part-\d{12}-\d{12}\.parquet\.tmp$")
_DATE_DIR = re.compile(r"^date=\d{4}-\d{2}-\d{2}$")
STATE = "_state-{}.json"
LOCK = "_lock-{}"
OLD_STATE = "_state.json"
"""Format 1's cursor: a folder that holds it is refused."""

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
    One sink per partition of a folder at a time (an exclusive ``flock`` on
    ``OUT/_lock-P``, released by ``close()`` or by the process ending). Not thread-safe: call
    ``write`` and ``compact`` from one thread.
    ``fault_hook`` is for crash tests only: it is called with the name of each step
    (``tmp_written``, ``renamed``, ``files_synced``, ``state_tmp_written``, ``committed``,
    ``compact_tmp_written``, ``compact_renamed``, ``compact_input_deleted``,
    ``recover_deleted``) as it completes.
    """
    def __init__(
        self,
        out_dir: str | Path,
        *,
        partition: int = 0,
        rows_per_file: int = DEFAULT_ROWS_PER_FILE,
        row_group_rows: int = ROW_GROUP_ROWS,
        fault_hook: Callable[[str], None] | None = None,
    ) -> None:
        if rows_per_file < 1 or row_group_rows < 1:
            raise ValueError("rows_per_file and row_group_rows must be positive")
        self.out = Path(out_dir)
        self.partition = partition
        self._state = STATE.format(partition)
        self.rows_per_file = rows_per_file
        self.row_group_rows = row_group_rows
        self._fault = fault_hook or (lambda point: None)
        self._dirty = True  # recovery needed before the next write or compaction
        self._committed = 0
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = os.open(self.out / LOCK.format(partition),
                                            os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise SinkError(f"{self.out} (partition {partition}) is in use by another "
                                "ParquetSink") from exc
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
        last, rows, marks = table_rows(entries, committed)
        if last == committed:
            return committed
        tables = []
        for k, name in enumerate(TABLES, start=1):
            for day, day_rows in by_day(rows[name], k, marks).items():
                tables.append((name, day, arrow_table(name, day_rows)))
        if self._dirty:
            self.recover()
        self._dirty = True
        synced: set[Path] = set()
        staged = []
        for name, day, table in tables:
            part = self._table_dir(name) / f"date={date_text(day)}"
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
        stale = self.out / (self._state + ".tmp")
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
    def _table_dir(self, table: str) -> Path:
        return self.out / table / f"partition={self.partition}"

    def _read_state(self) -> int:
        old = self.out / OLD_STATE
        if old.exists():
            try:
                fmt = json.loads(old.read_text(encoding="utf-8")).get("format", 1)
            except (ValueError, AttributeError):
                fmt = "unknown"
            raise SinkError(
                f"{self.out} holds Parquet of an older layout (format {fmt}, one cursor in "
                f"{OLD_STATE}); this exch writes format {FORMAT} (money as integer pence, "
                "prices as floats, a folder per exchange partition: docs/parquet.md), and one "
                "folder never mixes the two: export to a new folder"
            )
        path = self.out / self._state
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if any(self.files(t) for t in TABLES):
                raise SinkError(
                    f"{self.out} holds data files of partition {self.partition} but no "
                    f"{self._state}: refusing to guess what is committed (restore "
                    f"{self._state} or move the files away)"
                ) from None
            self._write_state(0)
            return 0
        seq = state.get("committed_seq") if isinstance(state, dict) else None
        if type(seq) is not int or seq < 0:
            raise SinkError(f"{path}: no valid committed_seq")
        if state.get("format") != FORMAT:
            raise SinkError(f"{path}: format {state.get('format')!r}, not {FORMAT}: export "
                            "to a new folder")
        return seq

    def _write_state(self, seq: int) -> None:
        tmp = self.out / (self._state + ".tmp")
        data = json.dumps({"committed_seq": seq, "format": FORMAT,
                           "partition": self.partition}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._fault("state_tmp_written")
        os.rename(tmp, self.out / self._state)
        _fsync_path(self.out)
    def _partitions(self, table: str) -> list[Path]:
        base = self._table_dir(table)
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

def exported_partitions(out_dir: str | Path) -> list[int]:
    """The exchange partitions a folder holds a cursor for."""
    found = (re.fullmatch(r"_state-(\d+)\.json", p.name) for p in Path(out_dir).glob("_state-*"))
    return sorted(int(m.group(1)) for m in found if m)


HIVE = pa.schema([("partition", pa.int32()), ("date", pa.string())])
"""The columns the folders give (``partition=P/date=D``), not stored in the files."""


def read_table(out_dir: str | Path, table: str, partition: int | None = None) -> pa.Table:
    """One table, every exchange partition (or just ``partition``) and date, rows in
    (partition, seq, idx) order; the ``partition`` and ``date`` columns included."""
    import pyarrow.dataset as ds

    base = Path(out_dir) / table
    schema = pa.unify_schemas([SCHEMAS[table], HIVE])
    if not base.is_dir():
        return schema.empty_table()
    part = ds.partitioning(HIVE, flavor="hive")
    data = ds.dataset(base, schema=schema, format="parquet", partitioning=part)
    t = data.to_table(filter=None if partition is None else ds.field("partition") == partition)
    return t.sort_by([("partition", "ascending"), ("seq", "ascending"), ("idx", "ascending")])

_PENCE = ("size", "stake", "remaining", "min_stake", "commission", "pnl", "balance", "amount")
_COLUMN_OF: dict[str, dict[str, str]] = {
    kind: {f: f + "_pence" for f in _PENCE} for kind in TABLE_OF_EVENT
}
_COLUMN_OF["market_created"].update(commission="commission_rate", winners="num_winners")
"""Event fields stored under another column name: money with its unit, and where one name
means two things."""

def read_events(out_dir: str | Path, partition: int = 0
                ) -> list[tuple[int, int, int, dict[str, Any]]]:
    """Every event of one exchange partition back in its stream form, as ``(seq, idx, ts_ms,
    event)`` in seq order.
    The inverse of the sink for everything but ``order_matched`` rows (a projection of the
    trades); used to prove that the export holds every event once. Slow: for checks, not for
    analytics.
    """
    from exchange.events import EVENT_FIELDS
    out: list[tuple[int, int, int, dict[str, Any]]] = []
    for table in TABLES:
        t = read_table(out_dir, table, partition)
        cols: dict[str, list[Any]] = {}
        for c, typ, _ in COLUMNS[table]:
            col = t.column(c)
            if c in HUNDREDTHS:
                cols[c] = [None if v is None else round(v * 100) for v in col.to_pylist()]
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
