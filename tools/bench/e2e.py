"""``exch bench e2e``: the whole system on this machine, with its yardstick measured in the
same run (raw pipelined XADD of the same payloads)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from typing import Any

from exchange import COMPILED
from tools.sources.workload import core_workload

from .memory import peak_rss_bytes


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
    from journal.connection import connect
    from journal.keys import Keys
    from journal.replay import replay
    from journal.sequencer import Sequencer
    from journal.server import start_server, stop_pid
    from journal.snapshots import SnapshotStore
    from journal.streams import last_id, parse_id, raw

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

    from journal.connection import connect
    from journal.streams import last_id, parse_id

    per_tick = max(rate // 200, 1)
    ticks = int(seconds * 200)
    # cancels name orders of the main run; placements and deposits are enough here
    flow = [c for c in cmds if c[0] in ("place", "deposit")]
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    first = parse_id(last_id(client, keys.input))[0] + 1
    stop = threading.Event()

    def follow() -> None:
        from journal.streams import raw

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
