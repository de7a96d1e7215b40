"""``exch bench scale``: the whole system with one matcher per partition, for several
partition counts, each measured in the same run.

For each count P: a private redis-server (append-only, fsync every second), P partitions
configured, ``exch run --partition p`` for each, and P independent seeded workloads (each
its own markets and accounts: a partition is its own exchange) submitted at once, one
submitting thread per partition, timed from the first submission to the last output entry
of every partition. Reported per count: commands/s over all partitions, and the CPU per
command of Redis, the matchers together and the submitter. If the work per command does not
grow with P, what flattens the curve is the machine's cores, not the design.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from exchange import COMPILED
from exchange.limits import PARTITION_STRIDE
from exchange.named import named
from journal.connection import connect
from journal.keys import Keys
from journal.routing import set_partition_count
from journal.sequencer import Sequencer
from journal.streams import last_id
from tools.local import LocalSystem, stop_process
from tools.sources.workload import core_workload

from .e2e import cpu_seconds


def bench_scale(
    partitions: Sequence[int] = (1, 2, 4),
    commands: int = 400_000,
    *,
    seed: int = 1,
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``commands`` in all (split evenly over the partitions) for each partition count."""
    phase = on_phase or (lambda name: None)
    rows = []
    for count in partitions:
        phase(f"{count} partition{'s' if count > 1 else ''}: generating")
        share = commands // count
        loads = {str(p): _for_partition(core_workload(share, seed=seed + p), p)
                 for p in range(count)}
        rows.append(_one(count, loads, phase))
    base = rows[0]["commands_per_sec"]
    for row in rows:
        row["speed_up"] = round(row["commands_per_sec"] / base, 2) if base else 0.0
    return {
        "benchmark": "scale", "compiled_core": COMPILED, "commands": commands,
        "cores": os.cpu_count(), "redis": "unix socket, appendonly yes, appendfsync everysec",
        "rows": rows,
    }


def _for_partition(cmds: list[tuple], partition: int) -> list[tuple]:
    """A workload as a client sends it to ``partition``: seq and ts left to the journal, and
    the orders its cancels and replaces name given their ids there (rules version 5: the
    partition times ``PARTITION_STRIDE`` plus the seq), so every partition does the same
    work."""
    base = partition * PARTITION_STRIDE
    out = []
    for c in cmds:
        n = named(c)._replace(seq=0, ts=0)
        if base and n.type in ("cancel", "replace"):
            n = n._replace(order=n.order + base)
        out.append(n)
    return out


def _one(count: int, loads: dict[str, list[tuple]], phase: Callable[[str], None]
         ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="exch-bench-scale-") as tmp, LocalSystem(
        Path(tmp) / "redis", Keys("0"), snapshot_every=10**12,
    ) as system:
        client = system.client
        assert client is not None and system.server is not None
        set_partition_count(client, count)
        phase(f"{count} partition(s): starting {count} matcher(s)")
        matchers = {p: system.start_partition_matcher(p) for p in loads}
        try:
            pids = {"redis": system.server.pid, **{f"matcher {p}": m.pid
                                                   for p, m in matchers.items()}}
            phase(f"{count} partition(s): submitting and matching "
                  f"{sum(map(len, loads.values())):,} commands")
            last: dict[str, int] = {}

            def submit(p: str) -> None:
                own = connect(system.url)
                try:
                    last[p] = Sequencer(own, Keys(p)).submit(loads[p]).last_seq
                finally:
                    own.close()

            before = cpu_seconds(pids)
            start = time.perf_counter()
            threads = [threading.Thread(target=submit, args=(p,)) for p in loads]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for p in loads:
                target = f"{last[p]}-0"
                while last_id(client, Keys(p).output) != target:
                    time.sleep(0.005)
            elapsed = time.perf_counter() - start
            after = cpu_seconds(pids)
        finally:
            for m in matchers.values():
                stop_process(m)
    n = sum(map(len, loads.values()))

    def us(names: list[str]) -> float:
        return round(sum(after[k] - before[k] for k in names) / n * 1e6, 2)

    return {
        "partitions": count, "commands": n, "seconds": round(elapsed, 2),
        "commands_per_sec": round(n / elapsed),
        "redis_cpu_us_per_command": us(["redis"]),
        "matcher_cpu_us_per_command": us([k for k in before if k.startswith("matcher")]),
        "submitter_cpu_us_per_command": us(["submitter"]),
    }
