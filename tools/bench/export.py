"""``exch bench export``: the Parquet exporter, from the output stream to fsync'd files; and
``bench_parquet``, the Parquet sink alone from decoded entries (where the exporter's time
goes: ``python -c "from tools.bench.export import bench_parquet; print(bench_parquet())"``)."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exchange.named import named
from journal.wire import Entry
from tools.services.export.parquet import ParquetSink
from tools.services.export.tables import TABLES
from tools.sources.workload import core_workload

from .memory import peak_rss_bytes

PER_ENTRY = 500
"""Commands per output entry: what the sequencer puts in one input entry under load."""


def bench_export(commands: int = 1_000_000, *, runs: int = 3, seed: int = 1) -> dict[str, Any]:
    """Events per second from the output stream to Parquet: the core workload's events are
    written to a private Redis's output stream as the matcher writes them (one entry per
    input entry of ``PER_ENTRY`` commands), then the exporter reads them through its
    consumer group into a fresh folder, ``runs`` times."""
    from journal.connection import connect
    from journal.keys import Keys
    from journal.server import start_server, stop_pid
    from tools.services.export.service import Exporter

    cmds = core_workload(commands, seed=seed)
    with tempfile.TemporaryDirectory(prefix="exch-bench-") as tmp:
        server = start_server(Path(tmp) / "redis", tcp=False, daemonize=False)
        client = connect(f"unix://{server.socket}")
        keys = Keys()
        try:
            events = fill_output(client, keys, cmds)
            rates = []
            for run in range(runs):
                folder = Path(tmp) / f"parquet-{run}"
                start = time.perf_counter()
                progress = Exporter(client, folder, keys).run(follow=False)
                rates.append(progress.events / (time.perf_counter() - start))
                assert progress.committed_seq == len(cmds)
        finally:
            client.close()
            stop_pid(server.pid)
    return {
        "benchmark": "export",
        "commands": len(cmds),
        "events": events,
        "runs": runs,
        "events_per_sec": round(statistics.median(rates)),
        "peak_rss_bytes": peak_rss_bytes(),
    }


def fill_output(client: Any, keys: Any, cmds: Sequence[tuple]) -> int:
    """Write the answers to ``cmds`` to the output stream as the matcher would (one entry
    per ``PER_ENTRY`` commands); returns how many events."""
    from exchange import Exchange
    from journal.wire import encode_events

    ex = Exchange()
    events = 0
    pipe = client.pipeline(transaction=False)
    out: list = []
    for i, cmd in enumerate(cmds, 1):
        cmd = named(cmd)._replace(seq=i)
        out += ex.apply(cmd)
        if i % PER_ENTRY == 0 or i == len(cmds):
            events += len(out)
            pipe.xadd(keys.output, {"ts": cmd.ts, "e": encode_events(out)}, id=f"{i}-0")
            out = []
        if i % 20_000 == 0:
            pipe.execute()
    pipe.execute()
    return events


# ----------------------------------------------------------------------------- the sink alone


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
        _, seq, ts = cmd[:3]
        out.append((seq, ts, evs))
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
