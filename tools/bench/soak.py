"""``exch bench soak``: the whole system over many commands, with the archive and periodic
compaction, to show that Redis's memory stays bounded and that nothing is lost.

The steps: start a private redis-server (append-only, ``noeviction``), ``exch run``, ``exch
follow`` (it takes the snapshots), ``exch archive --follow`` and ``exch export parquet
--follow``, each its own process; send market days one after another (each day's markets
are created, traded, in play, settled: what a real exchange's flow does, with unique market
ids and client refs per day) through the sequencer; after each day run ``exch compact``'s
code and sample Redis's ``used_memory`` before and after it. At the end, once everything has
caught up: compact once more, stop the services, and check that nothing was lost:

- the output is dense: one answer for every input entry, in order, through the archive;
- the trades in Parquet are the trade events of the output, one for one;
- ``replay --from-snapshot none --verify`` passes, from the first command through the
  archive.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads

from exchange import COMPILED
from journal.archive import Archive
from journal.history import History
from journal.keys import Keys
from journal.replay import replay
from journal.retention import compact, groups
from journal.sequencer import Sequencer
from journal.snapshots import SnapshotStore
from journal.streams import field, last_id, parse_id, raw
from journal.wire import parse_output
from tools.local import LocalSystem, stop_process
from tools.sources.load import send
from tools.sources.market_day import market_day, minimum_commands

from .memory import peak_rss_bytes

READ_CHUNK = 5_000
"""Stream entries read at a time by the end-of-run checks."""


@dataclass
class Sample:
    """Redis and the services after one day's commands, before and after compaction."""

    commands: int
    seconds: float
    used_memory_before: int
    used_memory: int
    input_entries: int
    output_entries: int
    journal_bytes: int
    """Redis's memory for the input and output streams, before compaction."""
    journal_commands: int
    """Commands those streams held then."""
    archive_bytes: int
    """The archive's journal segments (input and output), on disk."""
    archive_snapshot_bytes: int
    matcher_rss: int
    snapshot_bytes: int
    matcher_lag: int
    export_lag: int


def bench_soak(
    commands: int = 5_000_000,
    *,
    day: int = 250_000,
    markets: int = 8,
    accounts: int = 1_000,
    seed: int = 1,
    rate: float | None = None,
    snapshot_every: int | None = None,
    folder: str | Path | None = None,
    on_sample: Callable[[Sample], None] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Send ``commands`` as market days of ``day`` commands through the whole system, compact
    after each day, and report Redis's memory over time and the end-of-run checks (see the
    module docstring). ``snapshot_every`` (default: half a day) is the follower's snapshot
    interval: recovery needs the journal after the newest snapshot, so it bounds what stays
    in Redis. ``folder`` keeps Redis's data, the archive and the Parquet there (default: a
    temporary folder, removed)."""
    need = minimum_commands(markets, accounts)
    if day < need:
        raise ValueError(f"a day of {markets} markets and {accounts} accounts needs at least "
                         f"{need:,} commands")
    phase = on_phase or (lambda name: None)
    every = snapshot_every or max(day // 2, 1000)
    result: dict[str, Any] = {
        "benchmark": "soak", "compiled_core": COMPILED, "commands": commands, "day": day,
        "markets_per_day": markets, "accounts": accounts, "snapshot_every": every,
        "redis": "unix socket, appendonly yes, appendfsync everysec, maxmemory-policy noeviction",
    }
    with tempfile.TemporaryDirectory(prefix="exch-soak-") as tmp:
        root = Path(folder) if folder is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        keys = Keys("1")  # a partition of its own, as a deployment may run it
        with LocalSystem(root / "redis", keys, snapshot_every=every,
                         redis_options=["--maxmemory-policy", "noeviction"]) as system:
            client = system.client
            assert client is not None
            phase("starting the matcher, follower, archiver and exporter")
            system.start_matcher()
            system.start_follower()
            archive_dir, parquet_dir = root / "archive", root / "parquet"
            extra = [
                _start(system, ["archive", "--follow", "--every", "1", "--dir", str(archive_dir),
                                "--segment-mb", "16"]),
                _start(system, ["export", "parquet", "--follow", "--out", str(parquet_dir)]),
            ]
            try:
                samples = _days(system, commands, day, markets, accounts, seed, rate,
                                archive_dir, on_sample, phase)
                phase("letting every service catch up")
                result["catch_up_seconds"] = _catch_up(system, archive_dir)
                final = compact(client, keys)
                samples.append(_sample(system, samples[-1].commands, samples[-1].seconds,
                                       (_used_memory(client), _journal_in_redis(client, keys)),
                                       archive_dir))
                if on_sample is not None:
                    on_sample(samples[-1])
            finally:
                for proc in extra:
                    stop_process(proc)
                system.stop_matcher()
                result["follower_exit"] = system.stop_follower()
            result["last_compaction_limited_by"] = final.limited_by
            result.update(_summary(samples))
            phase("checking: output dense, trades one for one in Parquet")
            result.update(_check_output(client, keys, parquet_dir))
            # the matcher's heartbeats may add seqs; none of what was sent may be missing
            result["output_dense"] = (result["output_dense"]
                                      and result["last_seq"] >= samples[-1].commands)
            phase("replaying from the first command through the archive, with --verify")
            began = time.perf_counter()
            verified = replay(client, keys, source="none", verify=True)
            result.update({
                "replay_verified": verified.verified,
                "replay_commands": verified.commands,
                "replay_verify_per_sec": round(verified.commands /
                                               max(time.perf_counter() - began, 1e-9)),
                "replay_divergence": str(verified.divergence) if verified.divergence else None,
            })
            result["samples"] = [asdict(s) for s in samples]
    result["peak_rss_bytes"] = peak_rss_bytes()
    return result


def _start(system: LocalSystem, args: list[str]) -> subprocess.Popen:
    """``exch <args>`` on the system's partition, as its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "tools.cli", *args, "--redis-url", system.url,
         "--partition", system.keys.partition],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _days(system: LocalSystem, commands: int, day: int, markets: int, accounts: int,
          seed: int, rate: float | None, archive_dir: Path,
          on_sample: Callable[[Sample], None] | None,
          phase: Callable[[str], None]) -> list[Sample]:
    """Send the days, compacting after each; a sample per day."""
    client, keys = system.client, system.keys
    assert client is not None
    sequencer = Sequencer(client, keys)
    samples: list[Sample] = []
    sent = 0
    start = time.perf_counter()
    need = minimum_commands(markets, accounts)
    k = 0
    while sent < commands:
        n = min(day, commands - sent)
        if n < need:  # the last day would be too short: make the one before it longer
            break
        if commands - sent - n < need:
            n = commands - sent
        phase(f"day {k + 1}: {n:,} commands ({sent:,} of {commands:,} sent)")
        flow = market_day(seed=seed + k, markets=markets, accounts=accounts, commands=n,
                          market_base=2_000_001 + k * 1000, ref_prefix=f"S{k}-")
        sent += send(flow, sequencer, rate=rate).sent
        k += 1
        before = _used_memory(client), _journal_in_redis(client, keys)
        compact(client, keys)
        samples.append(_sample(system, sent, time.perf_counter() - start, before, archive_dir))
        if on_sample is not None:
            on_sample(samples[-1])
    return samples


def _used_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def _journal_in_redis(client: Any, keys: Keys) -> tuple[int, int]:
    """Bytes of Redis memory the input and output streams take, and the commands they hold."""
    r = raw(client)
    size = sum(int(r.memory_usage(k, samples=0) or 0) for k in (keys.input, keys.output))
    first = r.xrange(keys.input, count=1)
    if not first:
        return size, 0
    n = field(first[0][1], b"n")
    low = parse_id(first[0][0])[0] - (int(n) if n is not None else 1) + 1
    return size, parse_id(last_id(r, keys.input))[0] - low + 1


def _sample(system: LocalSystem, sent: int, seconds: float, before: tuple[int, tuple[int, int]],
            archive_dir: Path) -> Sample:
    client, keys = system.client, system.keys
    assert client is not None
    r = raw(client)
    last_in = parse_id(last_id(r, keys.input))[0]
    last_out = parse_id(last_id(r, keys.output))[0]
    snaps = SnapshotStore(r, keys).list()
    export = [g for g in groups(r, keys) if g.name.startswith("parquet:")]
    folder = Archive(archive_dir, keys.partition).folder
    return Sample(
        commands=sent, seconds=round(seconds, 2), used_memory_before=before[0],
        used_memory=_used_memory(client),
        input_entries=int(r.xlen(keys.input)), output_entries=int(r.xlen(keys.output)),
        journal_bytes=before[1][0], journal_commands=before[1][1],
        archive_bytes=_folder_bytes(folder / "in") + _folder_bytes(folder / "out"),
        archive_snapshot_bytes=_folder_bytes(folder / "snapshots"),
        matcher_rss=_rss(system.matcher.pid) if system.matcher is not None else 0,
        snapshot_bytes=snaps[0].size if snaps else 0,
        matcher_lag=last_in - last_out,
        export_lag=max((g.lag for g in export), default=0),
    )


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) \
        if folder.exists() else 0


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _catch_up(system: LocalSystem, archive_dir: Path, timeout: float = 1800) -> float:
    """Wait until the matcher has answered everything, the follower has verified it, the
    archive holds it and the exporter's group has consumed it; the seconds it took."""
    client, keys = system.client, system.keys
    assert client is not None
    r = raw(client)
    began = time.perf_counter()
    last = parse_id(last_id(r, keys.input))[0]
    while True:
        out = parse_id(last_id(r, keys.output))[0]
        followed = int(r.get(keys.followed) or 0)
        archived = Archive(archive_dir, keys.partition).through() if archive_dir.exists() else 0
        export = [g for g in groups(r, keys) if g.name.startswith("parquet:")]
        if (out >= last and followed >= last and archived >= last and export
                and all(g.lag == 0 and g.pending == 0 for g in export)):
            return round(time.perf_counter() - began, 2)
        if time.perf_counter() - began > timeout:
            raise RuntimeError(f"not caught up after {timeout:.0f} s: output {out}, followed "
                               f"{followed}, archived {archived}, of {last}")
        time.sleep(0.2)


def _check_output(client: Any, keys: Keys, parquet_dir: Path) -> dict[str, Any]:
    """Walk the input and output through the archive and Redis: every input entry has its
    answer with the same id, the seqs are dense, and the trade ids in Parquet are those of
    the output's trade events, one for one."""
    history = History(client, keys)
    inputs: list[bytes] = []
    seqs_dense = True
    previous = 0
    for eid, fields in history.walk("in", READ_CHUNK):
        last = parse_id(eid)[0]
        n = field(fields, b"n")
        first = last - (int(n) if n is not None else 1) + 1
        seqs_dense = seqs_dense and first == previous + 1
        previous = last
        inputs.append(eid)
    answered: list[bytes] = []
    trades: list[str] = []
    for eid, fields in history.walk("out", READ_CHUNK):
        piece = parse_output(eid, fields)
        if piece.part == piece.parts:
            answered.append(eid)
        trades.extend(e["trade"] for e in piece.events if e["type"] == "trade")
    exported = pads.dataset(parquet_dir / "trades", format="parquet",
                            partitioning="hive").to_table(columns=["trade"]).column(0)
    exported_ids = exported.to_pylist()
    return {
        "input_entries_total": len(inputs),
        "last_seq": previous,
        "output_dense": seqs_dense and answered == inputs,
        "trades": len(trades),
        "trades_in_parquet": len(exported_ids),
        "trades_one_for_one": (len(exported_ids) == len(set(exported_ids)) == len(trades)
                               and set(exported_ids) == set(trades)),
    }


def _summary(samples: list[Sample]) -> dict[str, Any]:
    """The figures a reader wants first: Redis's memory at its peak and at the end, where it
    would have been without compaction, and the archive's size per command."""
    last = samples[-1]
    return {
        "seconds": last.seconds,
        "commands_per_sec": round(last.commands / max(last.seconds, 1e-9)),
        "used_memory_end": last.used_memory,
        "used_memory_peak": max(s.used_memory_before for s in samples),
        "used_memory_after_compaction_max": max(s.used_memory for s in samples),
        "redis_journal_bytes_per_command": round(
            sum(s.journal_bytes for s in samples) / max(sum(s.journal_commands for s in samples),
                                                        1), 1),
        "archive_bytes": last.archive_bytes,
        "archive_bytes_per_command": round(last.archive_bytes / max(last.commands, 1), 1),
        "archive_snapshot_bytes": last.archive_snapshot_bytes,
        "matcher_rss_end": last.matcher_rss,
        "matcher_lag_max": max(s.matcher_lag for s in samples),
        "export_lag_max": max(s.export_lag for s in samples),
    }

