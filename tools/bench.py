"""``exch bench``: throughput and memory, measured the same way every time.

Each benchmark takes the median of several runs. Generating the workload is never timed;
the cyclic garbage collector is off while the matcher runs, as it is in ``exch run`` (the core
leaves no cyclic garbage, see tests/test_core_properties.py, so nothing accumulates).
"""

from __future__ import annotations

import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from exchange import COMPILED, Exchange
from exchange.units import PRICES

from .workload import core_workload


def rss_bytes() -> int:
    """Resident memory of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


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
    code = f"from tools.bench import _memory_child; _memory_child({int(orders)})"
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


# ----------------------------------------------------------------------------- end to end


def bench_e2e(
    commands: int = 1_000_000,
    *,
    seed: int = 1,
    latency_rate: int = 20_000,
    latency_seconds: float = 5.0,
    on_phase: Any = None,
) -> dict[str, Any]:
    """The core workload through the whole system on this machine: a private redis-server
    with append-only persistence (fsync every second), ``exch run`` as its own process, the
    commands submitted through the sequencer. Measures, in one run:

    - ``raw_xadd_per_sec``: pipelined XADD of the same payloads from Python (the ceiling);
    - ``commands_per_sec``: from the first submission to the last output entry committed;
    - latency from submission to committed output at a steady ``latency_rate`` (p50, p99);
    - ``replay_per_sec``: rebuilding from the oldest snapshot plus the journal after it.
    """
    import os
    import signal
    import tempfile
    from pathlib import Path

    import msgpack

    from exchange.commands import to_wire
    from journal.keys import Keys
    from journal.replay import replay
    from journal.runner import last_id
    from journal.sequencer import Sequencer
    from journal.server import connect, start_server, stop_pid
    from journal.snapshots import SnapshotStore
    from journal.wire import parse_id, raw

    def phase(name: str) -> None:
        if on_phase is not None:
            on_phase(name)

    phase("generating the workload")
    cmds = [c[:1] + (0, 0) + c[3:] for c in core_workload(commands, seed=seed)]
    result: dict[str, Any] = {
        "benchmark": "e2e", "compiled_core": COMPILED, "commands": len(cmds),
    }
    with tempfile.TemporaryDirectory(prefix="exch-bench-") as tmp:
        server = start_server(
            Path(tmp) / "redis", daemonize=False,
            extra=["--latency-monitor-threshold", "10", "--slowlog-log-slower-than", "20000"],
        )
        url = f"unix://{server.socket}"
        result["redis"] = "unix socket, appendonly yes, appendfsync everysec"
        client = connect(url)
        keys = Keys("bench")
        try:
            phase("raw pipelined XADD")
            pack = msgpack.Packer(autoreset=True).pack
            sample = [pack(to_wire(c)) for c in cmds[: min(len(cmds), 200_000)]]
            pipe = client.pipeline(transaction=False)
            start = time.perf_counter()
            for i, payload in enumerate(sample, 1):
                pipe.xadd("bench:raw", {"ts": 1, "c": payload}, id=f"{i}-0")
                if i % 500 == 0:
                    pipe.execute()
            pipe.execute()
            result["raw_xadd_per_sec"] = round(len(sample) / (time.perf_counter() - start))
            client.delete("bench:raw")
            del sample

            phase("matcher starting")
            env = dict(os.environ)
            matcher = subprocess.Popen(
                [sys.executable, "-m", "tools.cli", "run", "--redis-url", url, "--partition",
                 keys.partition, "--snapshot-every",
                 os.environ.get("EXCH_BENCH_SNAPSHOT_EVERY", str(max(len(cmds) // 4, 1000)))],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            try:
                while not client.exists(keys.lease):
                    time.sleep(0.01)
                phase(f"submitting and matching {len(cmds):,} commands")
                sequencer = Sequencer(client, keys)
                cpu_before = _cpu_seconds(server.pid, matcher.pid)
                start = time.perf_counter()
                submitted = sequencer.submit(cmds)
                submit_seconds = time.perf_counter() - start
                target = f"{submitted.last_seq}-0"
                while last_id(client, keys.output) != target:
                    time.sleep(0.005)
                elapsed = time.perf_counter() - start
                cpu_after = _cpu_seconds(server.pid, matcher.pid)
                result["cpu_us_per_command"] = {
                    name: round((cpu_after[name] - cpu_before[name]) / len(cmds) * 1e6, 1)
                    for name in cpu_before
                }
                result["commands_per_sec"] = round(len(cmds) / elapsed)
                result["submit_per_sec"] = round(len(cmds) / submit_seconds)
                result["seconds"] = round(elapsed, 2)

                phase(f"latency at {latency_rate:,} commands/s")
                result.update(_latency(url, client, keys, sequencer, cmds, latency_rate,
                                       latency_seconds))
            finally:
                matcher.send_signal(signal.SIGTERM)
                matcher.wait(timeout=120)

            phase("replaying from a snapshot")
            snaps = SnapshotStore(client, keys).list()
            oldest = snaps[-1].seq if snaps else 0
            done = replay(client, keys, source=str(oldest) if oldest else "none")
            result["replay_from_seq"] = oldest
            result["replay_commands"] = done.commands
            result["replay_per_sec"] = round(done.rate)
            result["output_entries"] = int(raw(client).xlen(keys.output))
            result["redis_stalls"] = {
                e[0].decode(): {"count_ms_max": int(e[3]), "last_ms": int(e[2])}
                for e in client.execute_command("LATENCY", "LATEST")
            }
            result["redis_slowlog"] = [
                {"us": e["duration"],
                 "command": (e["command"] if isinstance(e["command"], bytes)
                             else b" ".join(e["command"]))[:60].decode(errors="replace")}
                for e in client.slowlog_get(10)
            ]
            result["last_seq"] = parse_id(last_id(client, keys.output))[0]
        finally:
            client.close()
            stop_pid(server.pid)
    result["peak_rss_bytes"] = peak_rss_bytes()
    return result


def _cpu_seconds(redis_pid: int, matcher_pid: int) -> dict[str, float]:
    """CPU time (user + system) used so far by this process (the submitter), the Redis
    server and the matcher, each with its children once reaped (the matcher's snapshot
    writers, Redis's rewrites): where an end-to-end command's work goes."""
    def of(pid: int) -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"submitter": own.ru_utime + own.ru_stime, "redis": of(redis_pid),
            "matcher": of(matcher_pid)}


def _latency(
    url: str, client: Any, keys: Any, sequencer: Any, cmds: list[tuple], rate: int,
    seconds: float,
) -> dict[str, Any]:
    """Submit at a steady ``rate`` for ``seconds`` in small batches every 5 ms; a reader
    follows the output stream; latency = output entry seen - batch sent."""
    import os
    import threading

    from journal.runner import last_id
    from journal.server import connect
    from journal.wire import parse_id

    per_tick = max(rate // 200, 1)
    ticks = int(seconds * 200)
    # cancels name orders of the main run; placements and deposits are enough here
    flow = [c for c in cmds if c[0] in ("place", "deposit")]
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    first = parse_id(last_id(client, keys.input))[0] + 1
    stop = threading.Event()

    def follow() -> None:
        from journal.wire import raw

        reader = raw(connect(url))
        cursor = f"{first - 1}-0"
        while not stop.is_set():
            reply = reader.xread({keys.output: cursor}, count=10_000, block=100)
            items = reply.items() if isinstance(reply, dict) else (reply or [])
            now = time.perf_counter()
            for _, rows in items:
                for eid, _ in rows:
                    seen[parse_id(eid)[0]] = now
                if rows:
                    cursor = rows[-1][0].decode()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    start = time.perf_counter()
    k = 0
    for tick in range(ticks):
        due = start + tick / 200
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        batch = [flow[(k + i) % len(flow)] for i in range(per_tick)]
        k += per_tick
        t = time.perf_counter()
        for s in sequencer.submit_batch(batch):
            if s:
                sent[s] = t
    deadline = time.perf_counter() + 30
    while len(seen) < len(sent) and time.perf_counter() < deadline:
        time.sleep(0.01)
    stop.set()
    reader.join()
    if os.environ.get("EXCH_BENCH_TRACE"):
        import json as _json

        trace = sorted((t - start, (seen[s] - t) * 1000) for s, t in sent.items() if s in seen)
        with open(os.environ["EXCH_BENCH_TRACE"], "w") as f:
            _json.dump(trace, f)
    lat = sorted((seen[s] - t) * 1000 for s, t in sent.items() if s in seen)
    achieved = len(sent) / (time.perf_counter() - start)
    if not lat:
        return {"latency_rate": rate}
    return {
        "latency_rate": rate,
        "latency_achieved_rate": round(min(achieved, rate * 1.0)),
        "latency_p50_ms": round(lat[len(lat) // 2], 2),
        "latency_p99_ms": round(lat[int(len(lat) * 0.99)], 2),
        "latency_max_ms": round(lat[-1], 2),
        "latency_samples": len(lat),
    }


# ----------------------------------------------------------------------------- export


def bench_export(commands: int = 1_000_000, *, runs: int = 3, seed: int = 1) -> dict[str, Any]:
    """Events per second from the output stream to Parquet: the core workload's events are
    written to a private Redis's output stream (as the matcher writes them), then the
    exporter reads them through its consumer group into a fresh folder, ``runs`` times."""
    import tempfile
    from pathlib import Path

    from exchange import Exchange
    from journal.keys import Keys
    from journal.server import connect, start_server, stop_pid
    from journal.wire import encode_events

    from .export.service import Exporter

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
