"""The Parquet sink: schemas, exact decimals, layout, idempotence, compaction, readers, and
exactly-once across SIGKILLs at every step of writing, committing, compacting and recovering.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from exchange import Exchange, decode
from exchange.codec import wire_event
from exchange.errors import SinkError
from exchange.events import EVENT_FIELDS
from exchange.named import named
from journal.wire import Entry
from tools.bench.export import bench_parquet
from tools.services.export import parquet as P
from tools.services.export import tables as T
from tools.services.export.parquet import ParquetSink, read_events, read_table
from tools.services.export.tables import COLUMNS, SCHEMAS, TABLES
from tools.sources.commandfile import read_commands
from tools.sources.workload import core_workload

from .conftest import GOLDEN, ROOT, golden_settings

DAY = 86_400_000
T0 = 1_795_464_000_000  # 2026-11-23T16:00:00Z

# ----------------------------------------------------------------------------- streams


def _norm(event: dict[str, Any]) -> dict[str, Any]:
    """Stream form as msgpack gives it back: lists, not tuples."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in event.items()}


def golden_entries() -> list[Entry]:
    """Every golden scenario, one after another, as one stream (seqs renumbered)."""
    entries: list[Entry] = []
    seq = 0
    for path in sorted(GOLDEN.glob("*.in.jsonl")):
        settings = golden_settings(path)
        ex = Exchange(settings["partition"])
        ex.set_rules(settings["rules"], 0)
        with path.open(encoding="utf-8") as f:
            for local, (_, obj) in enumerate(read_commands(f), 1):
                seq += 1
                ts = T0 + seq * 1000
                events = [_norm(wire_event(e))
                          for e in ex.apply(decode(obj, local, ts, rules=ex.rules))]
                for e in events:
                    e["seq"] = seq
                entries.append((seq, ts, events))
    return entries


def stream(n: int = 1500, step_ms: int = 150_000) -> list[Entry]:
    """A busy, multi-day stream: the seeded workload (few accounts, so trades are many),
    then a withdrawal, a suspension, a settlement and a void; every event type occurs."""
    cmds = core_workload(n, markets=3, accounts=40, runners=4)
    seq = len(cmds)
    extra = [
        ("withdraw", "acct-0001", 100),
        ("market_status", "1.100000", "SUSPENDED"),
        ("settle", "1.100000", (1,)),
        ("void", "1.100001"),
        ("cancel", "acct-0002", 999_999, None),
        ("heartbeat",),
    ]
    for body in extra:
        seq += 1
        cmds.append((body[0], seq, 0) + body[1:])
    ex = Exchange()
    out = []
    for i, cmd in enumerate(cmds):
        ts = T0 + i * step_ms
        cmd = named(cmd)._replace(ts=ts)
        out.append((cmd.seq, ts, [_norm(wire_event(e)) for e in ex.apply(cmd)]))
    return out


def expected(entries: list[Entry], upto: int | None = None) -> list[tuple]:
    return [(seq, idx, ts, e) for seq, ts, events in entries if upto is None or seq <= upto
            for idx, e in enumerate(events)]


def check_folder(out: Path, entries: list[Entry], upto: int | None = None) -> None:
    """The files hold exactly the events of the entries (up to ``upto``), each once; the
    ``order_matched`` rows are the trades' two sides; file names match their contents."""
    got = read_events(out)
    want = expected(entries, upto)
    keys = [(s, i) for s, i, _, _ in got]
    assert len(keys) == len(set(keys)), "duplicate events"
    assert got == want
    trades = read_table(out, "trades").to_pylist()
    orders = read_table(out, "orders")
    matched = orders.filter(pa.compute.equal(orders["type"], "order_matched")).to_pylist()
    assert len(matched) == 2 * len(trades)
    for t, back, lay in zip(trades, matched[0::2], matched[1::2]):
        assert (back["side"], back["order"], back["counter_order"]) == (
            "BACK", t["back_order"], t["lay_order"])
        assert (lay["side"], lay["order"], lay["counter_order"]) == (
            "LAY", t["lay_order"], t["back_order"])
        for row in (back, lay):
            assert (row["seq"], row["idx"], row["trade"], row["price"], row["size_pence"]) == (
                t["seq"], t["idx"], t["trade"], t["price"], t["size_pence"])
        assert back["taker"] == (t["taker"] == "BACK") and lay["taker"] == (t["taker"] == "LAY")
    for table in TABLES:
        ranges: dict[str, list[tuple[int, int]]] = {}
        for path in (out / table).glob("partition=0/*/*"):
            assert not path.name.startswith("."), f"temporary file left: {path}"
            m = P._PART.match(path.name)
            assert m, path
            first, last = int(m.group(1)), int(m.group(2))
            t = pq.ParquetFile(path).read()
            seqs = t.column("seq").to_pylist()
            assert (seqs[0], seqs[-1]) == (first, last)
            assert seqs == sorted(seqs)
            days = {ts.date().isoformat() for ts in t.column("ts").to_pylist()}
            assert days == {path.parent.name.removeprefix("date=")}
            ranges.setdefault(path.parent.name, []).append((first, last))
        for rs in ranges.values():
            rs.sort()
            assert all(a[1] < b[0] for a, b in zip(rs, rs[1:])), f"overlapping files {rs}"


def write_all(sink: ParquetSink, entries: list[Entry], sizes: list[int]) -> None:
    i = 0
    k = 0
    while i < len(entries):
        n = sizes[k % len(sizes)]
        sink.write(entries[i:i + n])
        i += n
        k += 1


# ----------------------------------------------------------------------------- units


def test_money_is_exact_and_prices_read_back_exactly(tmp_path: Path) -> None:
    """Money is integer pence (exact at any size within the core's limits); a price is the
    nearest double to its ladder value, and round(price * 100) is the stream's hundredths
    for every price on the ladder."""
    from exchange.limits import MAX_BALANCE
    from exchange.units import PRICES

    rows = [(i + 1, 0, 0, "funds_changed", "a", amount, MAX_BALANCE, None, None, None)
            for i, amount in enumerate([1, -1, MAX_BALANCE, -MAX_BALANCE, 0])]
    funds = T.arrow_table("funds", rows)
    assert funds.schema.field("amount_pence").type == pa.int64()
    assert funds["amount_pence"].to_pylist() == [1, -1, MAX_BALANCE, -MAX_BALANCE, 0]
    trades = T.arrow_table("trades", [
        (i + 1, 0, 0, "trade", f"{i + 1}-0", "m", 1, p, 100, 1, 2, "a", "b", "BACK")
        for i, p in enumerate(PRICES)])
    floats = trades["price"].to_pylist()
    assert [round(f * 100) for f in floats] == list(PRICES)
    assert floats[:3] == [1.01, 1.02, 1.03] and floats[-1] == 1000.0
    assert [str(f) for f in floats] == [f"{p / 100}" for p in PRICES]  # prints as written


def test_pandas_reads_ids_as_integers_and_flags_as_booleans(tmp_path: Path) -> None:
    """pandas' default read keeps int ids with nulls as nullable Int64 (not float64) and
    flags with nulls as boolean (not object); money sums and describe() work as numbers."""
    import pandas as pd

    entries = stream(800)
    with ParquetSink(tmp_path) as sink:
        write_all(sink, entries, [50])
    orders = pd.read_parquet(tmp_path / "orders")
    assert orders["order"].isna().any() or orders["runner"].isna().any()
    for c in ("order", "runner", "counter_order", "stake_pence", "size_pence"):
        assert str(orders[c].dtype) == "Int64", c
    assert str(orders["taker"].dtype) == "boolean"
    assert str(orders["price"].dtype) == "float64"
    summary = orders.describe()
    assert {"stake_pence", "size_pence", "price"} <= set(summary.columns)
    want = sum(e["stake"] for _, _, evs in entries for e in evs if e["type"] == "order_accepted")
    assert int(orders["stake_pence"].sum()) == want
    markets = pd.read_parquet(tmp_path / "markets")
    assert str(markets["in_play"].dtype) == "boolean"
    assert str(markets["commission_rate"].dtype) == "float64"


def test_a_folder_of_the_old_format_is_refused_not_mixed(tmp_path: Path) -> None:
    with ParquetSink(tmp_path) as sink:
        write_all(sink, stream(200), [50])
    state = json.loads((tmp_path / "_state-0.json").read_text())
    assert state["format"] == T.FORMAT and state["partition"] == 0
    # format 1 kept one cursor, _state.json, for a folder of decimals
    old = tmp_path / "old"
    (old / "trades" / "date=2026-01-01").mkdir(parents=True)
    (old / "_state.json").write_text(json.dumps({"committed_seq": 5, "format": 1}))
    with pytest.raises(SinkError, match="format 1.*new folder"):
        ParquetSink(old)
    state["format"] = 3
    (tmp_path / "_state-0.json").write_text(json.dumps(state))
    with pytest.raises(SinkError, match="format 3, not 2"):
        ParquetSink(tmp_path)


def test_partitions_export_side_by_side_into_one_set_of_tables(tmp_path: Path) -> None:
    """Each exchange partition's sink owns its partition=P folders and cursor; readers see
    one table with a partition column, and a partition's events read back whole."""
    a, b = stream(600), stream(400, step_ms=60_000)
    with ParquetSink(tmp_path, partition=0) as zero, ParquetSink(tmp_path, partition=3) as three:
        write_all(zero, a, [70])
        write_all(three, b, [30, 11])
        with pytest.raises(SinkError, match="partition 3.*in use"):
            ParquetSink(tmp_path, partition=3)
        assert (zero.committed_seq(), three.committed_seq()) == (a[-1][0], b[-1][0])
        three.compact()
    assert read_events(tmp_path, 0) == expected(a, a[-1][0])
    assert read_events(tmp_path, 3) == expected(b, b[-1][0])
    trades = read_table(tmp_path, "trades")
    counts = trades.group_by("partition").aggregate([("seq", "count")]).to_pylist()
    want = {0: sum(e["type"] == "trade" for _, _, evs in a for e in evs),
            3: sum(e["type"] == "trade" for _, _, evs in b for e in evs)}
    assert {r["partition"]: r["seq_count"] for r in counts} == want
    import pandas as pd

    df = pd.read_parquet(tmp_path / "trades")
    assert sorted(df["partition"].astype(int).unique()) == [0, 3]
    assert len(df) == sum(want.values())


def test_every_event_type_has_a_table_and_every_field_a_column() -> None:
    assert set(T.TABLE_OF_EVENT) == set(EVENT_FIELDS)
    for kind, tables in T.TABLE_OF_EVENT.items():
        cols = {c for c, _, _ in COLUMNS[tables[0]]}
        rename = P._COLUMN_OF.get(kind, {})
        for field in EVENT_FIELDS[kind]:
            assert rename.get(field, field) in cols, (kind, field)
    for name, schema in SCHEMAS.items():
        assert schema.names[:4] == ["seq", "idx", "ts", "type"], name
        assert schema.field("seq").type == pa.int64()
        assert schema.field("ts").type == pa.timestamp("ms", tz="UTC")


def test_docs_show_every_column() -> None:
    doc = (ROOT / "docs" / "parquet.md").read_text(encoding="utf-8")
    assert T.schema_markdown() in doc, "docs/parquet.md is stale: paste T.schema_markdown()"


# ----------------------------------------------------------------------------- sink


def test_golden_streams_round_trip(tmp_path: Path) -> None:
    entries = golden_entries()
    kinds = {e["type"] for _, _, evs in entries for e in evs}
    assert kinds == set(EVENT_FIELDS), "the golden scenarios should cover every event type"
    with ParquetSink(tmp_path) as sink:
        write_all(sink, entries, [7, 1, 30])
        assert sink.committed_seq() == entries[-1][0]
    check_folder(tmp_path, entries)
    for table in TABLES:
        for path in (tmp_path / table).glob("*/*/*.parquet"):
            assert pq.read_schema(path).equals(SCHEMAS[table], check_metadata=False)


def test_layout_dates_and_names(tmp_path: Path) -> None:
    entries = stream(600, step_ms=600_000)  # 600 commands, 10 minutes apart: 5 dates
    days = sorted({time.strftime("%Y-%m-%d", time.gmtime(ts // 1000)) for _, ts, evs in entries
                   if any("orders" in T.TABLE_OF_EVENT[e["type"]] for e in evs)})
    assert len(days) >= 4
    with ParquetSink(tmp_path) as sink:
        assert sink.write(entries) == entries[-1][0]
        files = sink.files("orders")
    # one call: one file per (table, date)
    assert [f.parent.name for f in files] == [f"date={d}" for d in days]
    assert all(P._PART.match(f.name) for f in files)
    assert all(f.parent.parent.name == "partition=0" for f in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["_lock-0", "_state-0.json", *[t for t in TABLES if (tmp_path / t).exists()]])
    assert json.loads((tmp_path / "_state-0.json").read_text())["committed_seq"] == entries[-1][0]
    check_folder(tmp_path, entries)


def test_redelivery_is_skipped(tmp_path: Path) -> None:
    entries = stream(400)
    with ParquetSink(tmp_path) as sink:
        assert sink.committed_seq() == 0
        assert sink.write(entries[:250]) == entries[249][0]
        before = sorted(p for p in tmp_path.rglob("*.parquet"))
        assert sink.write(entries[100:250]) == entries[249][0]  # all old: nothing
        assert sorted(p for p in tmp_path.rglob("*.parquet")) == before
        assert sink.write(entries[200:]) == entries[-1][0]  # half old, half new
        assert sink.write([]) == entries[-1][0]
    with ParquetSink(tmp_path) as sink:
        assert sink.committed_seq() == entries[-1][0]
        assert sink.write(entries) == entries[-1][0]
    check_folder(tmp_path, entries)


def test_entries_without_events_move_the_cursor(tmp_path: Path) -> None:
    with ParquetSink(tmp_path) as sink:
        assert sink.write([(1, T0, []), (2, T0, [])]) == 2
        assert not list(tmp_path.rglob("*.parquet"))
    with ParquetSink(tmp_path) as sink:
        assert sink.committed_seq() == 2


def test_bad_input_writes_nothing(tmp_path: Path) -> None:
    entries = stream(100)
    with ParquetSink(tmp_path) as sink:
        with pytest.raises(ValueError, match="strictly increase"):
            sink.write([entries[5], entries[4]])
        with pytest.raises(ValueError, match="unknown event type"):
            sink.write([(1, T0, [{"type": "bogus", "seq": 1}])])
        with pytest.raises(ValueError, match="malformed"):
            sink.write([(1, T0, [{"type": "funds_changed", "seq": 1, "account": "a"}])])
        with pytest.raises((TypeError, ValueError)):
            sink.write([(1, T0, [{"type": "funds_changed", "seq": 1, "account": "a",
                                  "amount": "10.00", "balance": 1000}])])
        bad = dict(entries[3][2][0], type="funds_changed", account="x", amount=2**63,
                   balance=0)
        with pytest.raises(ValueError, match="out of range"):
            sink.write([(4, T0, [bad])])
        assert sink.committed_seq() == 0
        assert not list(tmp_path.rglob("*.parquet"))
        assert sink.write(entries) == entries[-1][0]
    check_folder(tmp_path, entries)


def test_one_writer_per_folder(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path)
    with pytest.raises(SinkError, match="in use"):
        ParquetSink(tmp_path)
    sink.close()
    with pytest.raises(SinkError, match="closed"):
        sink.write([])
    ParquetSink(tmp_path).close()


def test_data_without_state_is_refused(tmp_path: Path) -> None:
    entries = stream(100)
    with ParquetSink(tmp_path) as sink:
        sink.write(entries)
    (tmp_path / "_state-0.json").unlink()
    with pytest.raises(SinkError, match="no _state-0.json"):
        ParquetSink(tmp_path)
    assert list(tmp_path.rglob("*.parquet"))  # nothing deleted


def test_recovery_deletes_leftovers_and_redundant_files(tmp_path: Path) -> None:
    entries = stream(300)
    with ParquetSink(tmp_path, rows_per_file=10**6) as sink:
        write_all(sink, entries[:200], [50])
        committed = sink.committed_seq()
        part = max({f.parent for f in sink.files("orders")},
                   key=lambda d: len(list(d.glob("*.parquet"))))
        files = [f for f in sink.files("orders") if f.parent == part]
    assert len(files) >= 3
    # a compaction that renamed its output but crashed before deleting its inputs
    merged = pa.concat_tables([pq.ParquetFile(f).read() for f in files[:3]])
    seqs = merged.column("seq")
    name = P._part_name(seqs[0].as_py(), seqs[-1].as_py())
    pq.write_table(merged, part / name)
    # an uncommitted batch: renamed, state not written; and temporary files
    later = [r for r in T.table_rows(entries[200:], committed)[1]["orders"]
             if f"date={r[2].date() if hasattr(r[2], 'date') else T.date_text(r[2] // DAY)}"
             == part.name]
    pq.write_table(T.arrow_table("orders", later), part / P._part_name(later[0][0], later[-1][0]))
    (part / ".part-000000000001-000000000002.parquet.tmp").write_bytes(b"junk")
    (tmp_path / "_state-0.json.tmp").write_text("{}")
    (part / "notes.txt").write_text("not ours")
    with ParquetSink(tmp_path) as sink:
        assert sink.committed_seq() == committed
        names = [f.name for f in sink.files("orders")]
    assert name in names and not set(f.name for f in files[:3]) & set(names)
    assert (part / "notes.txt").exists()
    (part / "notes.txt").unlink()
    check_folder(tmp_path, entries, upto=committed)
    with ParquetSink(tmp_path) as sink:
        sink.write(entries)
    check_folder(tmp_path, entries)


def test_a_file_across_the_cursor_is_an_error(tmp_path: Path) -> None:
    entries = stream(200)
    with ParquetSink(tmp_path) as sink:
        sink.write(entries[:100])
        committed = sink.committed_seq()
    rows = T.table_rows(entries, 0)[1]["orders"]
    part = next((tmp_path / "orders" / "partition=0").iterdir())
    pq.write_table(T.arrow_table("orders", rows), part / P._part_name(rows[0][0], rows[-1][0]))
    with pytest.raises(SinkError, match="across the committed cursor"):
        ParquetSink(tmp_path)
    assert committed < rows[-1][0]


def test_compact_merges_small_files(tmp_path: Path) -> None:
    entries = stream(1700, step_ms=60_000)  # ~1 day: 2 dates
    with ParquetSink(tmp_path, rows_per_file=400, row_group_rows=128) as sink:
        write_all(sink, entries[:1300], [3, 40, 11, 1, 90])
        before = {t: sink.files(t) for t in TABLES}
        counts = {f: pq.read_metadata(f).num_rows for fs in before.values() for f in fs}
        rows_before = {t: read_table(tmp_path, t) for t in TABLES}
        report = sink.compact()
        after = {t: sink.files(t) for t in TABLES}
        assert report.files_before == sum(map(len, before.values()))
        assert report.files_after == sum(map(len, after.values())) < report.files_before
        assert report.written >= 1 and report.merged_inputs > report.written
        for t in TABLES:
            assert read_table(tmp_path, t).equals(rows_before[t]), t
            for f in set(after[t]) - set(before[t]):  # merged files
                md = pq.read_metadata(f)
                assert md.num_rows <= 400
                assert all(md.row_group(i).num_rows <= 128 for i in range(md.num_row_groups))
                m = P._PART.match(f.name)
                first, last = int(m.group(1)), int(m.group(2))
                inputs = [g for g in before[t] if g.parent == f.parent
                          and first <= int(P._PART.match(g.name).group(1)) <= last]
                assert len(inputs) >= 2 and not any(g.exists() for g in inputs)
                assert md.num_rows == sum(counts[g] for g in inputs)
            for f in set(before[t]) & set(after[t]):  # kept: full, or no neighbour fits
                assert f.exists()
        again = sink.compact()
        assert again.written == 0 and again.files_after == report.files_after
        # keep writing after compaction, then compact again: still exact
        write_all(sink, entries[1300:], [25])
        sink.compact()
    check_folder(tmp_path, entries)


def test_readers_pandas_pyarrow_duckdb(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    import pandas as pd

    entries = stream(1500)
    with ParquetSink(tmp_path, rows_per_file=500) as sink:
        write_all(sink, entries, [100, 7])
        sink.compact()
    trades = [e for _, _, evs in entries for e in evs if e["type"] == "trade"]
    total = sum(e["size"] for e in trades)
    dates = sorted({f.parent.name[5:] for f in (tmp_path / "trades").glob("*/*/*.parquet")})
    assert len(dates) >= 2

    df = pd.read_parquet(tmp_path / "trades")
    assert len(df) == len(trades)
    assert df["size_pence"].sum() == total
    assert sorted(df["date"].astype(str).unique()) == dates
    assert str(df["ts"].dtype) == "datetime64[ms, UTC]"
    arrow_backed = pd.read_parquet(tmp_path / "trades", dtype_backend="pyarrow")
    assert arrow_backed["size_pence"].sum() == total
    assert str(arrow_backed["back_order"].dtype) == "int64[pyarrow]"

    t = ds.dataset(tmp_path / "trades", partitioning="hive").to_table()
    assert t.num_rows == len(trades)
    assert t.schema.field("price").type == pa.float64()
    assert pa.compute.sum(t["size_pence"]).as_py() == total
    for table in TABLES:
        d = ds.dataset(tmp_path / table, partitioning="hive")
        assert d.schema.names[-2:] == ["partition", "date"]  # from the folders
        assert pa.schema(list(d.schema)[:-2]).equals(SCHEMAS[table], check_metadata=False)

    con = duckdb.connect()
    glob = f"{tmp_path}/trades/*/*/*.parquet"
    n, s, nd, mx = con.execute(
        "select count(*), sum(size_pence), count(distinct date), max(price) "
        f"from read_parquet('{glob}', hive_partitioning=true)").fetchone()
    assert (n, s, nd) == (len(trades), total, len(dates))
    assert round(mx * 100) == max(e["price"] for e in trades)
    kinds = dict(con.execute(
        "select type, count(*) from read_parquet("
        f"'{tmp_path}/orders/*/*/*.parquet', hive_partitioning=true) group by type").fetchall())
    assert kinds["order_matched"] == 2 * len(trades)
    assert kinds["order_accepted"] == sum(
        e["type"] == "order_accepted" for _, _, evs in entries for e in evs)
    # an order's whole life, by its id
    oid = trades[0]["back_order"]
    life = con.execute(
        "select type from read_parquet("
        f"'{tmp_path}/orders/*/*/*.parquet', hive_partitioning=true) "
        f'where "order" = {oid} order by seq, idx').fetchall()
    assert life[0] == ("order_accepted",) and ("order_matched",) in life


def test_bench_parquet_runs() -> None:
    result = bench_parquet(20_000, runs=1, batch_events=5_000)
    assert result["events"] >= 20_000 and result["events_per_sec"] > 0
    assert result["files_after_compact"] >= 1


# ----------------------------------------------------------------------------- crashes

CRASH_STREAM = dict(n=1200, step_ms=300_000)  # ~4 days
POINTS = ("tmp_written", "renamed", "files_synced", "state_tmp_written", "committed",
          "compact_tmp_written", "compact_renamed", "compact_input_deleted",
          "recover_deleted")


def _child() -> None:
    """A writer process: ``out start seed point hit``; feeds the crash stream from entry
    index ``start`` in random batches, compacting every third, and SIGKILLs itself at the
    ``hit``-th time it reaches ``point``. With a point it stops (exit 0) after 16 batches
    that moved the cursor if still alive, so that one missed point does not use up the
    stream; with "-" it runs to the end."""
    out, start, seed, point, hit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        sys.argv[4], int(sys.argv[5])
    entries = stream(**CRASH_STREAM)
    seen = {"n": 0}

    def fault(name: str) -> None:
        if name == point:
            seen["n"] += 1
            if seen["n"] == hit:
                os.kill(os.getpid(), signal.SIGKILL)

    rng = random.Random(seed)
    print("ready", flush=True)
    sink = ParquetSink(out, rows_per_file=300, row_group_rows=100, fault_hook=fault)
    i = start
    k = 0
    while i < len(entries) and (point == "-" or k < 16):
        n = rng.choice((1, 2, 5, 10, 25))
        before = sink.committed_seq()
        if sink.write(entries[i:i + n]) > before:  # only batches with news count
            k += 1
            if k % 3 == 0:
                sink.compact()
        i += n
    sink.compact()
    sink.close()


def _run_child(out: Path, start: int, seed: int, point: str = "-", hit: int = 0,
               kill_after: float | None = None, timing: list[float] | None = None) -> int:
    cmd = [sys.executable, "-c",
           "import sys; from tests.test_parquet_sink import _child; _child()",
           str(out), str(start), str(seed), point, str(hit)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    began = time.perf_counter()
    if kill_after is not None and ready == b"ready\n":
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    if timing is not None:
        timing.append(time.perf_counter() - began)
    assert proc.returncode in (0, -signal.SIGKILL), err.decode()
    return proc.returncode


def _committed(out: Path) -> int:
    try:
        return json.loads((out / "_state-0.json").read_text())["committed_seq"]
    except FileNotFoundError:
        return 0


def _restart_position(entries: list[Entry], committed: int, rng: random.Random) -> int:
    """Where a consumer might resume: at or before the first uncommitted entry."""
    first_new = next((i for i, e in enumerate(entries) if e[0] > committed), len(entries))
    return max(0, first_new - rng.choice((0, 0, 1, 37, 400, 10_000)))


@pytest.mark.slow
def test_sigkill_at_every_step_then_restart_is_exactly_once(tmp_path: Path) -> None:
    entries = stream(**CRASH_STREAM)
    rng = random.Random(11)
    out = tmp_path / "out"
    plan = [(p, h) for h in (1, 2, 5) for p in POINTS if p != "recover_deleted"]
    # recovery has something to delete only after a crash that left files behind
    for after, hit in (("files_synced", 1), ("compact_renamed", 2), ("renamed", 1),
                       ("tmp_written", 1)):
        i = plan.index((after, 2))
        plan.insert(i + 1, ("recover_deleted", hit))
    killed: dict[str, int] = {}
    for round_, (point, hit) in enumerate(plan):
        committed = _committed(out)
        start = _restart_position(entries, committed, rng)
        code = _run_child(out, start, seed=round_, point=point, hit=hit)
        if code == -signal.SIGKILL:
            killed[point] = killed.get(point, 0) + 1
        if round_ % 4 == 3 and plan[(round_ + 1) % len(plan)][0] != "recover_deleted":
            # recover in this process and check that exactly the committed prefix is there
            with ParquetSink(out) as sink:
                upto = sink.committed_seq()
            check_folder(out, entries, upto=upto)
    assert set(killed) == set(POINTS), f"crash points never reached: {killed}"
    assert sum(killed.values()) >= len(plan) - 4, killed
    assert _committed(out) < entries[-1][0], "the stream ran out before the plan did"
    code = _run_child(out, _restart_position(entries, _committed(out), rng), seed=99)
    assert code == 0
    assert _committed(out) == entries[-1][0]
    check_folder(out, entries)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_restart_is_exactly_once(tmp_path: Path) -> None:
    entries = stream(**CRASH_STREAM)
    rng = random.Random(3)
    out = tmp_path / "out"
    # how long a child writes once ready, on this machine now: kills land within that
    spans: list[float] = []
    for probe in range(3):
        _run_child(tmp_path / f"probe{probe}", 0, seed=100, point="none", timing=spans)
    span = sorted(spans)[1]
    killed = 0
    for round_ in range(10):
        start = _restart_position(entries, _committed(out), rng)
        code = _run_child(out, start, seed=100 + round_, point="none", hit=0,
                          kill_after=rng.uniform(0.0, 0.8 * span))
        killed += code == -signal.SIGKILL
    assert killed >= 5
    assert _committed(out) < entries[-1][0]
    assert _run_child(out, _restart_position(entries, _committed(out), rng), seed=7) == 0
    check_folder(out, entries)
