"""``exch bench archive``: how fast the journal goes to the archive, and how fast a replay
reads it back from there rather than from Redis.

The steps: the core workload through a private Redis and ``exch run`` (untimed), a snapshot
at its end; replay from seq 1 out of Redis, without and with ``--verify``; archive everything
(timed: commands and MB per second); compact (Redis keeps only what follows the snapshot);
replay from seq 1 again, now through the archive, without and with ``--verify``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exchange import COMPILED
from exchange.named import named
from journal.archive import Archive, Archiver
from journal.keys import Keys
from journal.replay import replay
from journal.retention import compact
from journal.runner import request_snapshot
from journal.sequencer import Sequencer
from journal.streams import last_id
from tools.local import LocalSystem
from tools.sources.workload import core_workload

from .memory import peak_rss_bytes


def bench_archive(commands: int = 1_000_000, *, seed: int = 1,
                  on_phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Archive and replay rates for ``commands`` core workload commands (see the module
    docstring). Each figure is one timed pass; run it several times for a median."""
    phase = on_phase or (lambda name: None)
    phase("generating the workload")
    cmds = [named(c)._replace(seq=0, ts=0) for c in core_workload(commands, seed=seed)]
    result: dict[str, Any] = {"benchmark": "archive", "compiled_core": COMPILED,
                              "commands": len(cmds)}
    with tempfile.TemporaryDirectory(prefix="exch-bench-") as tmp, LocalSystem(
        Path(tmp) / "redis", Keys(), snapshot_every=10**12,
    ) as system:
        client, keys = system.client, system.keys
        assert client is not None
        phase("journaling and matching (untimed)")
        system.start_matcher()
        last = Sequencer(client, keys).submit(cmds).last_seq
        deadline = time.monotonic() + 1800
        while last_id(client, keys.output) != f"{last}-0":
            if time.monotonic() > deadline or (system.matcher is not None
                                                and system.matcher.poll() is not None):
                raise RuntimeError("the matcher did not answer the workload")
            time.sleep(0.01)
        request_snapshot(client, keys, timeout=300)
        system.stop_matcher()
        phase("replaying from Redis")
        result.update(_replays(client, keys, "redis"))
        phase("archiving")
        folder = Path(tmp) / "archive"
        began = time.perf_counter()
        Archiver(client, Archive(folder, keys.partition), keys).once()
        seconds = time.perf_counter() - began
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        result.update({
            "archive_seconds": round(seconds, 2),
            "archive_commands_per_sec": round(last / seconds),
            "archive_mb": round(size / 1e6, 1),
            "archive_mb_per_sec": round(size / 1e6 / seconds, 1),
        })
        result["compacted_below"] = compact(client, keys).trim_below
        phase("replaying through the archive")
        result.update(_replays(client, keys, "archive"))
    result["peak_rss_bytes"] = peak_rss_bytes()
    return result


def _replays(client: Any, keys: Keys, where: str) -> dict[str, Any]:
    """Replay from seq 1 without and with --verify; the rates, and whether it verified."""
    out: dict[str, Any] = {}
    for verify in (False, True):
        began = time.perf_counter()
        done = replay(client, keys, source="none", verify=verify)
        rate = round(done.commands / (time.perf_counter() - began))
        out[f"replay_{'verify_' if verify else ''}{where}_per_sec"] = rate
        if verify:
            out[f"replay_{where}_verified"] = done.verified
    return out
