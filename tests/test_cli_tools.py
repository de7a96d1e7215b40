"""exch demo, exch load and exch import betfair, run as a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd

from journal.replay import replay
from tools.sources.betfair import convert, matched_volume

from .journal_helpers import matcher_thread, output_lines, wait_caught_up

ROOT = Path(__file__).resolve().parent.parent
BETFAIR = ROOT.parent / "shared" / "data" / "betfair"


def exch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def group_is_empty(pgid: int) -> bool:
    """Whether no process is left in the process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_demo_runs_the_whole_system_and_leaves_nothing_running(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    # the demo in a process group of its own: its Redis and its matcher are its children and
    # stay in that group, so the group tells what is left of what this test started
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "demo", "--commands", "8000", "--markets", "2",
         "--accounts", "40", "--out", str(folder)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"}, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    assert "reproduced byte for byte" in stdout
    assert re.search(r"state hash\s+[0-9a-f]{64}\s", stdout), "the hash whole, to be copied"
    trades = pd.read_parquet(folder / "parquet" / "trades")
    assert len(trades) > 100
    assert f"{len(trades):,}" in stdout
    assert "from the store: market" in stdout  # the embedded PostgreSQL answered a query
    # a client's bet over HTTP through exch gateway, answered with its outcome and its trade
    assert "a client's view, through exch gateway" in stdout
    assert '"matched": "4.00"' in stdout
    settlements = pd.read_parquet(folder / "parquet" / "settlements")
    assert set(settlements["market"]) <= set(trades["market"])
    # nothing the demo started runs on: no process left in its group, and the Redis whose
    # files are in the demo's folder removed its pid file on a clean shutdown (or is gone)
    assert group_is_empty(proc.pid), "a process the demo started is still running"
    pidfile = folder / "redis" / "redis.pid"
    if pidfile.exists():
        assert not pid_runs(int(pidfile.read_text())), "the demo's redis-server still runs"


def test_load_twice_into_one_journal(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    with matcher_thread(client):
        for seed in (1, 2):
            done = exch("load", "--commands", "4000", "--markets", "2", "--accounts", "40",
                        "--seed", str(seed), "--json", "--redis-url", redis_server.url)
            assert done.returncode == 0, done.stderr[-3000:]
            report = json.loads(done.stdout)
            # exactly what was asked: heartbeats included, none dropped
            assert (report["sent"], report["dropped"], report["duplicates"]) == (4000, 0, 0)
            assert report["sequenced"] == 4000
        wait_caught_up(client)
    lines = output_lines(client)
    assert not any('"DUPLICATE_MARKET"' in ln or '"MALFORMED"' in ln for ln in lines)
    assert sum('"market_settled"' in ln for ln in lines) >= 4
    assert replay(client, source="none", verify=True).verified


def test_import_betfair_out_and_submit(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recording = BETFAIR / "1.197931751"
    out = tmp_path / "place.jsonl"
    done = exch("import", "betfair", str(recording), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    commands, report = convert([recording])
    assert [json.loads(line) for line in out.read_text().splitlines()] == commands
    client = redis_server.client()
    with matcher_thread(client):
        done = exch("import", "betfair", str(recording), "--submit", "--speed", "0",
                    "--redis-url", redis_server.url)
        assert done.returncode == 0, done.stderr[-3000:]
        wait_caught_up(client)
    lines = output_lines(client)
    assert not any('"order_rejected"' in ln for ln in lines)
    got = matched_volume(lines)
    assert got == report.recorded_volume  # the recorded traded volume, price by price
    assert replay(client, source="none", verify=True).verified


def test_a_load_at_a_rate_trades_in_play(redis_server) -> None:  # type: ignore[no-untyped-def]
    """A generated day of hours goes through the journal in seconds: unscaled, its 1 to 5 s
    bet delays outlast every in-play period and no in-play bet ever matches (measured: 0 of
    4,837 trades). exch load scales them to the rate."""
    from journal.keys import Keys
    from journal.streams import raw
    from journal.wire import read_entries

    client = redis_server.client()
    with matcher_thread(client):
        done = exch("load", "--commands", "40000", "--markets", "2", "--accounts", "50",
                    "--rate", "20000", "--json", "--redis-url", redis_server.url)
        assert done.returncode == 0, done.stderr[-3000:]
        wait_caught_up(client)
    in_play: dict[str, bool] = {}
    trades = traded_in_play = 0
    for _, _, events in read_entries(raw(client).xrange(Keys().output)):
        for e in events:
            if e["type"] == "market_status_changed":
                in_play[e["market"]] = e["in_play"] and e["status"] == "OPEN"
            elif e["type"] == "trade":
                trades += 1
                traded_in_play += in_play.get(e["market"], False)
    assert trades > 1000 and traded_in_play > trades // 10, (traded_in_play, trades)
