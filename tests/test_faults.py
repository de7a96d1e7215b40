"""Faults the journal must survive, with real processes killed by SIGKILL.

After every fault: exactly one output entry per input entry (no gap, no duplicate) and
``replay --verify`` passes from scratch and from the newest snapshot.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from journal.keys import Keys
from journal.replay import replay
from journal.scripts import source
from journal.sequencer import Sequencer
from journal.streams import last_id, raw
from tools.sources.workload import core_workload

from .flaky_proxy import FlakyProxy
from .journal_helpers import (
    answered_ids,
    commands_in,
    submitting,
    unnumbered,
    wait_caught_up,
    wait_until,
)

pytestmark = pytest.mark.slow

K = Keys()
ROOT = Path(__file__).resolve().parent.parent


PER_ENTRY = 50
"""Commands per input entry in these tests: many entries, so that a matcher reads several
times and the fault points are reached at the n-th read."""


def workload(n: int, seed: int = 3) -> list[tuple]:
    return unnumbered(core_workload(n, seed=seed, accounts=200))


def sequencer(client) -> Sequencer:  # type: ignore[no-untyped-def]
    s = Sequencer(client)
    s.BATCH = PER_ENTRY
    return s


def start_matcher(
    url: str, tmp: Path, *, point: str | None = None, snapshot_every: int = 3000,
    batch: int = 10,
) -> tuple[subprocess.Popen, Path]:
    """``exch run`` as its own process; with ``point``, it stops there to be killed."""
    env = dict(os.environ)
    marker = tmp / f"reached-{time.monotonic_ns()}"
    if point:
        env["EXCH_FAULT_POINT"] = point
        env["EXCH_FAULT_FILE"] = str(marker)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "run", "--redis-url", url,
         "--snapshot-every", str(snapshot_every), "--batch", str(batch)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    return proc, marker


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"matcher exited early: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"fault point not reached in {timeout} s: {path.name}")
        time.sleep(0.01)


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()[-2000:]


def assert_consistent(client) -> None:  # type: ignore[no-untyped-def]
    """One answer per input entry, same ids in the same order; verified replays."""
    r = raw(client)
    ins = [eid for eid, _ in r.xrange(K.input)]
    assert answered_ids(client) == ins, "answers do not match input entries one for one"
    full = replay(client, source="none", verify=True)
    assert full.verified, full.divergence
    latest = replay(client, source="latest", verify=True)
    assert latest.verified, latest.divergence
    assert latest.state_hash == full.state_hash


def recover_and_check(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A fresh matcher catches up after the fault; then everything must be consistent."""
    client = redis_server.client()
    survivor, _ = start_matcher(redis_server.url, tmp_path)
    # the journal may be answered already: wait for the survivor to hold the lease (so it has
    # started, and its SIGTERM handler with it), then for it to catch up
    wait_until(lambda: (client.get(K.lease) or b"").split(b":")[1:2] == [str(survivor.pid).encode()]
               or survivor.poll() is not None, "the survivor never took the lease", timeout=60)
    wait_caught_up(client, timeout=120)
    stop(survivor)
    assert_consistent(client)


@pytest.mark.parametrize(
    "point", ["after-read:4", "before-commit:4", "after-commit:4", "snapshot:1", "recovering:1"]
)
def test_kill_matcher_at_a_point(point: str, redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    cmds = workload(12_000)
    sequencer(client).submit(cmds[:8000])
    if point.startswith("recovering"):
        # a first matcher gets part of the way, dies; the second dies while recovering
        first, marker = start_matcher(redis_server.url, tmp_path, point="after-commit:6",
                                      snapshot_every=10**9)
        wait_for(marker, first)
        kill9(first)
    proc, marker = start_matcher(redis_server.url, tmp_path, point=point)
    wait_for(marker, proc)
    kill9(proc)
    # the journal keeps growing while no matcher runs
    sequencer(client).submit(cmds[8000:])
    recover_and_check(redis_server, tmp_path)


def test_kill_matcher_repeatedly_under_load(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cmds = workload(30_000, seed=5)
    with submitting(redis_server.client(), cmds) as done:
        for delay in (0.3, 0.7, 1.1, 0.5):
            proc, _ = start_matcher(redis_server.url, tmp_path, snapshot_every=2000)
            time.sleep(delay)
            kill9(proc)
    assert done.is_set()
    recover_and_check(redis_server, tmp_path)


def test_standby_takes_over_when_the_matcher_is_killed(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = sequencer(client)
    seq.submit(workload(2000))
    active, _ = start_matcher(redis_server.url, tmp_path)
    wait_caught_up(client)
    standby, _ = start_matcher(redis_server.url, tmp_path)
    time.sleep(1.0)
    holder = client.get(K.lease).decode()
    assert holder.split(":")[1] == str(active.pid)
    kill9(active)
    seq.submit(workload(3000)[2000:])
    # the standby took over: it holds the lease, it matched what came after the kill (the
    # active one is dead), and it is still serving
    wait_caught_up(client, timeout=120)
    assert active.returncode == -signal.SIGKILL
    assert client.get(K.lease).decode().split(":")[1] == str(standby.pid)
    assert standby.poll() is None, "the standby exited instead of serving"
    stop(standby)
    assert_consistent(client)


def test_kill_redis_with_append_only_persistence(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    cmds = workload(20_000, seed=9)
    acknowledged: list[int] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            seq = Sequencer(redis_server.client())
            for i in range(0, len(cmds), 500):
                acknowledged.extend(seq.submit_batch(cmds[i:i + 500]))
                time.sleep(0.01)
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            errors.append(e)

    matcher, _ = start_matcher(redis_server.url, tmp_path, snapshot_every=4000)
    t = threading.Thread(target=submit)
    t.start()
    while len(acknowledged) < 6000:
        time.sleep(0.01)
    redis_server.kill()
    at_kill = len(acknowledged)
    time.sleep(1.0)
    redis_server.start()  # same port, same append-only file
    t.join(timeout=180)
    assert not errors, errors
    assert len(acknowledged) == len(cmds) and at_kill < len(cmds)
    assert acknowledged == list(range(1, len(cmds) + 1)), "a command was lost or doubled"
    # every acknowledged command is in the journal, once
    assert commands_in(client) == len(cmds)
    wait_caught_up(client, timeout=120)
    assert matcher.poll() is None, "the matcher died with Redis"
    stop(matcher)
    assert_consistent(client)


def test_connection_dropped_mid_commit_and_mid_sequencing(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proxy = FlakyProxy(redis_server.port)
    try:
        commit_sha = hashlib.sha1(source("commit").encode()).hexdigest().encode()
        sequence_sha = hashlib.sha1(source("sequence").encode()).hexdigest().encode()
        matcher, _ = start_matcher(proxy.url, tmp_path)
        time.sleep(1.0)
        proxy.drop_after(commit_sha, sequence_sha, times=6)
        cmds = workload(10_000, seed=11)
        from journal.connection import connect

        seq = Sequencer(connect(proxy.url))
        got = []
        for i in range(0, len(cmds), 500):
            got.extend(seq.submit_batch(cmds[i:i + 500]))
        direct = redis_server.client()
        wait_caught_up(direct, timeout=120)
        assert proxy.dropped == 6
        assert got == list(range(1, len(cmds) + 1)), "a retried batch was sequenced twice"
        assert commands_in(direct) == len(cmds)
        stop(matcher)
        assert last_id(direct, K.output) == f"{len(cmds)}-0"
        assert_consistent(direct)
    finally:
        proxy.close()
