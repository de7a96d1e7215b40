"""The Parquet export through the real system: exactly once across SIGKILLs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from journal.keys import Keys
from journal.sequencer import Sequencer
from journal.streams import raw
from journal.wire import read_entries
from tools.services.export.service import Exporter

from .journal_helpers import matcher_thread, submitting, wait_caught_up
from .test_faults import start_matcher, stop, workload

K = Keys()
ROOT = Path(__file__).resolve().parent.parent


def trade_events(client) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    out = []
    for _, _, events in read_entries(raw(client).xrange(K.output)):
        out.extend((e["seq"], e["trade"]) for e in events if e["type"] == "trade")
    return out


def trade_rows(folder: Path) -> list[tuple[int, str]]:
    df = pd.read_parquet(folder / "trades")
    return sorted(zip(df["seq"].tolist(), df["trade"].tolist()))


def test_export_until_caught_up(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    with matcher_thread(client):
        Sequencer(client).submit(workload(5000))
        wait_caught_up(client)
    folder = tmp_path / "parquet"
    progress = Exporter(client, folder).run(follow=False)
    assert progress.committed_seq == 5000
    rows = trade_rows(folder)
    assert rows == trade_events(client) and len(rows) > 100
    again = Exporter(client, folder).run(follow=False)  # nothing new: nothing written
    assert again.events == 0 and trade_rows(folder) == rows


@pytest.mark.slow
def test_kill_the_exporter_while_the_matcher_runs(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    cmds = workload(40_000, seed=21)
    matcher, _ = start_matcher(redis_server.url, tmp_path)
    folder = tmp_path / "parquet"

    def exporter() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "export", "parquet", "--out", str(folder),
             "--follow", "--redis-url", redis_server.url],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ),
        )

    with submitting(redis_server.client(), cmds, pause=0.03) as done:
        for delay in (0.8, 1.3, 0.5, 2.0, 1.1):
            proc = exporter()
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert done.is_set()
    wait_caught_up(client, timeout=120)
    stop(matcher)
    final = subprocess.run(
        [sys.executable, "-m", "tools.cli", "export", "parquet", "--out", str(folder),
         "--until-caught-up", "--redis-url", redis_server.url],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert final.returncode == 0, final.stderr
    rows = trade_rows(folder)
    events = trade_events(client)
    assert len(set(rows)) == len(rows), "a trade was exported twice"
    assert rows == events, "trade rows differ from the trade events on the output stream"
    orders = pd.read_parquet(folder / "orders")
    counts: dict[str, int] = {}
    for _, _, events in read_entries(raw(client).xrange(K.output)):
        for e in events:
            counts[e["type"]] = counts.get(e["type"], 0) + 1
    expected = (counts.get("order_accepted", 0) + counts.get("order_rejected", 0)
                + counts.get("order_cancelled", 0) + 2 * counts.get("trade", 0))
    assert len(orders) == expected  # each trade is a matched row for each of its two orders
    assert not orders.drop(columns=["date"]).astype(str).duplicated().any()
