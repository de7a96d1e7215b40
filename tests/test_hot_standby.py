"""A hot standby (`exch run --standby hot`): it follows the journal in memory while another
matcher holds the lease, and takes over from that state, without a snapshot to restore."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from journal.runner import Matcher

from .journal_helpers import wait_caught_up, wait_until
from .test_faults import K, assert_consistent, kill9, sequencer, start_matcher, workload


def test_a_hot_standby_takes_over_from_its_own_state(redis_server, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    import threading

    client = redis_server.client()
    seq = sequencer(client)
    seq.submit(workload(3000))
    active, _ = start_matcher(redis_server.url, tmp_path, snapshot_every=10**9)
    last = wait_caught_up(client)
    hot = Matcher(client, K, snapshot_every=10**9, lease_ms=1000, hot=True)
    thread = threading.Thread(target=hot.run, daemon=True)
    caplog.set_level(logging.INFO, logger="exch.run")
    thread.start()
    try:
        wait_until(lambda: hot._shadow is not None
                   and hot._shadow[0].progress.verified_seq == last,
                   "the hot standby never caught up with the answers")
        assert hot.progress.state == "standby (hot)"
        # no snapshot anywhere: a cold standby would replay the whole journal
        assert not client.exists(K.snapshots) or not client.xlen(K.snapshots)
        kill9(active)
        killed = time.monotonic()
        seq.submit(workload(4000)[3000:])
        wait_caught_up(client, timeout=60)
        took = time.monotonic() - killed
        assert client.get(K.lease).decode() == hot.token
        assert hot.progress.replayed <= 2, hot.progress  # what came after its last check
        assert any("taking over from the hot standby's state" in r.getMessage()
                   for r in caplog.records)
        assert took < 30
    finally:
        hot.stopping.set()
        thread.join(timeout=60)
    assert_consistent(client)


def test_a_hot_standby_told_to_stop_stops_its_follower(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import threading

    client = redis_server.client()
    sequencer(client).submit(workload(500))
    active, _ = start_matcher(redis_server.url, tmp_path)
    try:
        wait_caught_up(client)
        hot = Matcher(client, K, hot=True)
        thread = threading.Thread(target=hot.run, daemon=True)
        thread.start()
        wait_until(lambda: hot._shadow is not None, "the hot standby never started following")
        follower_thread = hot._shadow[1]  # type: ignore[index]
        hot.stopping.set()
        thread.join(timeout=30)
        assert not thread.is_alive() and not follower_thread.is_alive()
        assert hot.progress.state == "stopped"
    finally:
        kill9(active)


def test_the_standby_kind_is_checked_before_anything_starts() -> None:
    import subprocess
    import sys

    from .conftest import ROOT

    done = subprocess.run([sys.executable, "-m", "tools.cli", "run", "--standby", "warm",
                           "--redis-url", "redis://127.0.0.1:1/0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--standby is cold or hot" in done.stderr
