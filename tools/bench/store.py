"""``exch bench store``: the store, from the output stream into PostgreSQL through its
consumer group, rows and position committed together."""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tools.sources.workload import core_workload

from .export import fill_output
from .memory import peak_rss_bytes


def bench_store(commands: int = 1_000_000, *, runs: int = 3, seed: int = 1,
                db: str | None = None) -> dict[str, Any]:
    """Events per second into the store: the core workload's answers on a private Redis's
    output stream (as the matcher writes them), stored ``runs`` times, each into a fresh
    database on ``db``'s server (default: an embedded PostgreSQL of its own)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from journal.connection import connect
    from journal.keys import Keys
    from journal.server import start_server, stop_pid
    from tools.services.store.server import create_database, embedded_url, stop_embedded
    from tools.services.store.service import Storer

    cmds = core_workload(commands, seed=seed)
    with tempfile.TemporaryDirectory(prefix="exch-bench-") as tmp:
        server = start_server(Path(tmp) / "redis", tcp=False, daemonize=False)
        client = connect(f"unix://{server.socket}")
        base = db or embedded_url(Path(tmp) / "home")
        keys = Keys()
        try:
            events = fill_output(client, keys, cmds)
            rates, rows = [], 0
            for _ in range(runs):
                info = conninfo_to_dict(base)
                info["dbname"] = f"bench_{uuid.uuid4().hex[:10]}"
                create_database(base, info["dbname"])
                storer = Storer(client, make_conninfo(**info), keys)
                start = time.perf_counter()
                progress = storer.run(follow=False)
                rates.append(progress.events / (time.perf_counter() - start))
                rows = storer.sink.rows
                assert progress.committed_seq == len(cmds)
        finally:
            client.close()
            stop_pid(server.pid)
            if db is None:
                stop_embedded(Path(tmp) / "home")
    return {
        "benchmark": "store",
        "commands": len(cmds),
        "events": events,
        "rows": rows,
        "runs": runs,
        "events_per_sec": round(statistics.median(rates)),
        "peak_rss_bytes": peak_rss_bytes(),
    }
