"""``exch bench e2e``: the whole system on this machine, with its yardstick measured in the
same run (raw pipelined XADD of the same payloads).

The steps, in order: generate the workload (untimed); start a private redis-server with
append-only persistence (fsync every second); measure raw pipelined XADD; start ``exch run``
as its own process; submit everything through the sequencer and time it until the last
output entry is committed (throughput and CPU per command of each process: here the matcher
takes its own snapshots, in forked children); start ``exch follow`` and let it catch up;
submit at a steady rate and time each command from submission to its committed output
(latency), with a snapshot requested halfway (the follower takes it); stop the services;
rebuild from the oldest snapshot, without and with ``--verify`` (replay rates); read Redis's
own latency and slow-command records.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]

from exchange import COMPILED
from exchange.commands import to_wire
from exchange.named import named
from journal.connection import connect
from journal.keys import Keys
from journal.replay import replay
from journal.runner import request_snapshot
from journal.sequencer import Sequencer
from journal.snapshots import SnapshotStore
from journal.streams import last_id, parse_id, raw
from tools.local import LocalSystem
from tools.sources.workload import core_workload

from .memory import peak_rss_bytes

RAW_SAMPLE = 200_000
"""Payloads appended by the raw XADD yardstick."""

TICKS_PER_SECOND = 200
"""The latency run submits a small batch this often."""


def bench_e2e(
    commands: int = 1_000_000,
    *,
    seed: int = 1,
    latency_rate: int = 20_000,
    latency_seconds: float = 5.0,
    fsync: str = "everysec",
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The core workload through the whole system on this machine. Measures, in one run:

    - ``raw_xadd_per_sec``: pipelined XADD of the same payloads from Python (the ceiling);
    - ``commands_per_sec``: from the first submission to the last output entry committed,
      with ``cpu_us_per_command`` of the submitter, Redis and the matcher;
    - latency from submission to committed output at a steady ``latency_rate`` (p50, p99);
    - ``replay_per_sec``: rebuilding from the oldest snapshot plus the journal after it.
    """
    phase = on_phase or (lambda name: None)
    phase("generating the workload")
    # the journal numbers and stamps them: seq and ts are left to it
    cmds = [named(c)._replace(seq=0, ts=0) for c in core_workload(commands, seed=seed)]
    result: dict[str, Any] = {
        "benchmark": "e2e", "compiled_core": COMPILED, "commands": len(cmds),
        "redis": f"unix socket, appendonly yes, appendfsync {fsync}",
    }
    snapshot_every = int(os.environ.get("EXCH_BENCH_SNAPSHOT_EVERY", max(len(cmds) // 4, 1000)))
    with tempfile.TemporaryDirectory(prefix="exch-bench-") as tmp, LocalSystem(
        Path(tmp) / "redis", Keys(), snapshot_every=snapshot_every,
        redis_options=["--latency-monitor-threshold", "10", "--slowlog-log-slower-than", "20000",
                       "--appendfsync", fsync],
    ) as system:
        phase("raw pipelined XADD")
        result["raw_xadd_per_sec"] = raw_xadd_rate(system, cmds[:RAW_SAMPLE])
        phase("matcher starting")
        system.start_matcher()
        phase(f"submitting and matching {len(cmds):,} commands")
        result.update(throughput(system, cmds))
        phase("follower starting and catching up")
        result.update(follower_catch_up(system))
        phase(f"latency at {latency_rate:,} commands/s, a snapshot taken halfway")
        result.update(latency(system, cmds, latency_rate, latency_seconds))
        system.stop_matcher()
        result["follower_exit"] = system.stop_follower()
        phase("replaying from a snapshot")
        result.update(replay_rate(system))
        result.update(redis_records(system))
    result["peak_rss_bytes"] = peak_rss_bytes()
    return result


def raw_xadd_rate(system: LocalSystem, cmds: list[tuple]) -> int:
    """Appends per second of the commands' stream form with plain pipelined XADD, 500 per
    round trip: what Redis and this client do with no script around them."""
    client = system.client
    assert client is not None
    pack = msgpack.Packer(autoreset=True).pack
    sample = [pack(to_wire(c)) for c in cmds]
    pipe = client.pipeline(transaction=False)
    start = time.perf_counter()
    for i, payload in enumerate(sample, 1):
        pipe.xadd("bench:raw", {"ts": 1, "c": payload}, id=f"{i}-0")
        if i % 500 == 0:
            pipe.execute()
    pipe.execute()
    rate = round(len(sample) / (time.perf_counter() - start))
    client.delete("bench:raw")
    return rate


def throughput(system: LocalSystem, cmds: list[tuple]) -> dict[str, Any]:
    """Submit everything as fast as the sequencer takes it; time until the matcher has
    committed the last output entry, and the CPU each process spent per command."""
    client, keys = system.client, system.keys
    assert client is not None and system.server is not None and system.matcher is not None
    pids = {"redis": system.server.pid, "matcher": system.matcher.pid}
    cpu_before = cpu_seconds(pids)
    start = time.perf_counter()
    submitted = Sequencer(client, keys).submit(cmds)
    submit_seconds = time.perf_counter() - start
    target = f"{submitted.last_seq}-0"
    while last_id(client, keys.output) != target:
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    cpu_after = cpu_seconds(pids)
    per_command = {
        name: round((cpu_after[name] - cpu_before[name]) / len(cmds) * 1e6, 2)
        for name in cpu_before
    }
    return {
        "cpu_us_per_command": per_command,
        "redis_cpu_us_per_command": per_command["redis"],
        "commands_per_sec": round(len(cmds) / elapsed),
        "submit_per_sec": round(len(cmds) / submit_seconds),
        "seconds": round(elapsed, 2),
    }


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) used so far by this process (the submitter) and by each of
    ``pids``, with their children once reaped (the matcher's snapshot writers, Redis's
    rewrites): where an end-to-end command's work goes."""
    def of(pid: int) -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"submitter": own.ru_utime + own.ru_stime, **{n: of(p) for n, p in pids.items()}}


def latency(system: LocalSystem, cmds: list[tuple], rate: int, seconds: float) -> dict[str, Any]:
    """Submit at a steady ``rate`` for ``seconds``, a small batch every tick, while a reader
    follows the output stream; a command's latency is from its batch's submission to the
    moment the reader sees its output entry."""
    client, keys = system.client, system.keys
    assert client is not None
    per_tick = max(rate // TICKS_PER_SECOND, 1)
    # cancels name orders of the main run; placements and deposits are enough here
    flow = [c for c in cmds if c[0] in ("place", "deposit")]
    sequencer = Sequencer(client, keys)
    first = parse_id(last_id(client, keys.input))[0] + 1
    reader = _OutputWatch(system.url, keys, after=first - 1)
    sent: dict[int, float] = {}
    ticks = int(seconds * TICKS_PER_SECOND)
    snapshot = _SnapshotHalfway(system.client, keys, after=seconds / 2)
    start = time.perf_counter()
    k = 0
    for tick in range(ticks):
        delay = start + tick / TICKS_PER_SECOND - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        batch = [flow[(k + i) % len(flow)] for i in range(per_tick)]
        k += per_tick
        t = time.perf_counter()
        for s in sequencer.submit_batch(batch):
            if s:
                sent[s] = t
    answered = reader.wait_for(max(sent, default=0), timeout=30)
    achieved = len(sent) / (time.perf_counter() - start)
    snapshot.thread.join()
    # a command is answered with its entry: the first output entry whose last seq >= its own
    lasts = sorted(answered)
    seen = {}
    for s in sent:
        k = bisect_left(lasts, s)
        if k < len(lasts):
            seen[s] = answered[lasts[k]]
    if os.environ.get("EXCH_BENCH_TRACE"):
        trace = sorted((t - start, (seen[s] - t) * 1000) for s, t in sent.items() if s in seen)
        with open(os.environ["EXCH_BENCH_TRACE"], "w") as f:
            json.dump(trace, f)
    lat = sorted((seen[s] - t) * 1000 for s, t in sent.items() if s in seen)
    if not lat:
        return {"latency_rate": rate}
    return {
        "latency_snapshot_seq": snapshot.seq,
        "latency_snapshot_seconds": snapshot.seconds,
        "latency_rate": rate,
        "latency_achieved_rate": round(min(achieved, rate * 1.0)),
        "latency_p50_ms": round(lat[len(lat) // 2], 2),
        "latency_p99_ms": round(lat[int(len(lat) * 0.99)], 2),
        "latency_max_ms": round(lat[-1], 2),
        "latency_samples": len(lat),
    }


class _SnapshotHalfway:
    """A thread that asks for a snapshot ``after`` seconds (the follower takes it, while the
    latency is measured) and notes its seq and how long it took."""

    def __init__(self, client: Any, keys: Keys, after: float) -> None:
        self.client, self.keys, self.after = client, keys, after
        self.seq = 0
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        time.sleep(self.after)
        began = time.perf_counter()
        self.seq = request_snapshot(self.client, self.keys, timeout=60)
        self.seconds = round(time.perf_counter() - began, 2)


def follower_catch_up(system: LocalSystem) -> dict[str, Any]:
    """Start the follower and wait until it has verified everything committed so far."""
    client, keys = system.client, system.keys
    assert client is not None
    began = time.perf_counter()
    system.start_follower()
    last = parse_id(last_id(client, keys.output))[0]
    while int(client.get(keys.followed) or 0) < last:
        if system.follower is not None and system.follower.poll() is not None:
            raise RuntimeError("the follower stopped while catching up")
        time.sleep(0.05)
    return {"follower_catch_up_seconds": round(time.perf_counter() - began, 2)}


class _OutputWatch:
    """A thread that notes when each output entry appears (``perf_counter`` time), by the
    last seq it answers."""

    def __init__(self, url: str, keys: Keys, after: int) -> None:
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()
        self.client = raw(connect(url))
        self.keys = keys
        self.cursor = f"{after}-0"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            reply = self.client.xread({self.keys.output: self.cursor}, count=10_000, block=100)
            items = reply.items() if isinstance(reply, dict) else (reply or [])
            now = time.perf_counter()
            for _, rows in items:
                for eid, _ in rows:
                    self.seen[parse_id(eid)[0]] = now
                if rows:
                    self.cursor = rows[-1][0].decode()

    def wait_for(self, last: int, timeout: float) -> dict[int, float]:
        """Wait until seq ``last`` is answered (or ``timeout``); stop; what was seen."""
        deadline = time.perf_counter() + timeout
        while (not self.seen or max(self.seen) < last) and time.perf_counter() < deadline:
            time.sleep(0.01)
        self.stop.set()
        self.thread.join()
        self.client.close()
        return self.seen


def replay_rate(system: LocalSystem) -> dict[str, Any]:
    """Rebuild from the oldest stored snapshot plus the journal after it (no ``--verify``)."""
    client, keys = system.client, system.keys
    assert client is not None
    snaps = SnapshotStore(client, keys).list()
    oldest = snaps[-1].seq if snaps else 0
    source = str(oldest) if oldest else "none"
    done = replay(client, keys, source=source)
    verified = replay(client, keys, source=source, verify=True)
    return {
        "replay_from_seq": oldest,
        "replay_commands": done.commands,
        "replay_per_sec": round(done.rate),
        "replay_verify_per_sec": round(verified.rate),
        "replay_verified": verified.verified,
        "output_entries": int(raw(client).xlen(keys.output)),
        "last_seq": parse_id(last_id(client, keys.output))[0],
    }


def redis_records(system: LocalSystem) -> dict[str, Any]:
    """Redis's own view of the run: its latency monitor's stalls and its slowest commands."""
    client = system.client
    assert client is not None
    return {
        "redis_stalls": {
            e[0].decode(): {"count_ms_max": int(e[3]), "last_ms": int(e[2])}
            for e in client.execute_command("LATENCY", "LATEST")
        },
        "redis_slowlog": [
            {"us": e["duration"],
             "command": (e["command"] if isinstance(e["command"], bytes)
                         else b" ".join(e["command"]))[:60].decode(errors="replace")}
            for e in client.slowlog_get(10)
        ],
    }
