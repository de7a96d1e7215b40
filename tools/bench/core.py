"""``exch bench core``: the matching core alone, a seeded workload applied in-process."""

from __future__ import annotations

import gc
import json
import random
import statistics
import subprocess
import sys
import time
from typing import Any

from exchange import COMPILED, Exchange
from exchange.units import PRICES
from tools.sources.workload import core_workload

from .memory import peak_rss_bytes, rss_bytes


def bench_core(commands: int = 1_000_000, runs: int = 3, seed: int = 1) -> dict[str, Any]:
    """Apply the seeded core workload to a fresh exchange ``runs`` times; every event built.

    A first, untimed pass counts the events by type (and warms up). Returns the medians of
    the timed runs (commands and events per second), the counts, and memory: the growth of
    resident memory over a run divided by the orders left resting at its end.
    """
    cmds = core_workload(commands, seed=seed)
    counts: dict[str, int] = {}
    ex = Exchange()
    for cmd in cmds:
        for event in ex.apply(cmd):
            counts[event[0]] = counts.get(event[0], 0) + 1
    resting = ex.live_orders
    del ex
    rates, event_rates = [], []
    for _ in range(runs):
        ex = Exchange()
        apply = ex.apply
        gc.collect()
        gc.disable()
        events = 0
        start = time.perf_counter()
        for cmd in cmds:
            events += len(apply(cmd))
        elapsed = time.perf_counter() - start
        gc.enable()
        rates.append(len(cmds) / elapsed)
        event_rates.append(events / elapsed)
        del ex
    memory = resting_order_memory(min(commands, 1_000_000))
    return {
        "benchmark": "core",
        "compiled_core": COMPILED,
        "commands": len(cmds),
        "runs": runs,
        "commands_per_sec": round(statistics.median(rates)),
        "events_per_sec": round(statistics.median(event_rates)),
        "events": sum(counts.values()),
        "trades": counts.get("trade", 0),
        "accepted": counts.get("order_accepted", 0),
        "cancelled": counts.get("order_cancelled", 0),
        "rejected": counts.get("order_rejected", 0),
        "resting_orders": resting,
        "bytes_per_resting_order": memory["bytes_per_resting_order"],
        "peak_rss_bytes": peak_rss_bytes(),
    }


def resting_order_memory(orders: int) -> dict[str, Any]:
    """Resident memory per resting order, measured in a fresh interpreter that places
    ``orders`` orders that all rest (8 markets of 6 runners, 1000 accounts, 40 prices a side)
    and divides the growth of its resident memory by their number."""
    code = f"from tools.bench.core import _memory_child; _memory_child({int(orders)})"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def _memory_child(orders: int) -> None:
    ex = Exchange()
    seq = 0
    for m in range(8):
        seq += 1
        ex.apply(("create_market", seq, 0, f"m{m}", tuple(range(1, 7)), 500, 100, 1, 0))
    for a in range(1000):
        seq += 1
        ex.apply(("deposit", seq, 0, f"acct-{a:04d}", 10**12))
    rng = random.Random(7)
    names = [f"acct-{a:04d}" for a in range(1000)]
    mids = [f"m{m}" for m in range(8)]
    gc.collect()
    gc.disable()
    before = rss_bytes()
    for k in range(orders):
        seq += 1
        back = k & 1
        tick = 200 + rng.randrange(40) if back else 150 - rng.randrange(40)
        ex.apply((
            "place", seq, 0, names[rng.randrange(1000)], mids[rng.randrange(8)],
            1 + rng.randrange(6), "BACK" if back else "LAY", PRICES[tick],
            100 + rng.randrange(5000), "GTC", "LAPSE", None,
        ))
    grown = rss_bytes() - before
    print(json.dumps({
        "resting_orders": ex.live_orders,
        "bytes_per_resting_order": round(grown / max(ex.live_orders, 1)),
    }))
