"""``exch bench export``: the Parquet exporter, from the output stream to fsync'd files."""

from __future__ import annotations

import statistics
import time
from typing import Any

from tools.sources.workload import core_workload

from .memory import peak_rss_bytes


def bench_export(commands: int = 1_000_000, *, runs: int = 3, seed: int = 1) -> dict[str, Any]:
    """Events per second from the output stream to Parquet: the core workload's events are
    written to a private Redis's output stream (as the matcher writes them), then the
    exporter reads them through its consumer group into a fresh folder, ``runs`` times."""
    import tempfile
    from pathlib import Path

    from exchange import Exchange
    from journal.connection import connect
    from journal.keys import Keys
    from journal.server import start_server, stop_pid
    from journal.wire import encode_events
    from tools.services.export.service import Exporter

    cmds = core_workload(commands, seed=seed)
    with tempfile.TemporaryDirectory(prefix="exch-bench-") as tmp:
        server = start_server(Path(tmp) / "redis", daemonize=False)
        client = connect(f"unix://{server.socket}")
        keys = Keys("bench")
        try:
            ex = Exchange()
            events = 0
            pipe = client.pipeline(transaction=False)
            for i, cmd in enumerate(cmds, 1):
                out = ex.apply(cmd[:1] + (i,) + cmd[2:])
                events += len(out)
                pipe.xadd(keys.output, {"ts": cmd[2], "e": encode_events(out)}, id=f"{i}-0")
                if i % 1000 == 0:
                    pipe.execute()
            pipe.execute()
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
