"""The follower: a second copy of the state, live from the journal, that verifies every answer
the matcher commits, takes the periodic snapshots instead of the matcher, and stops loudly at
a difference."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import msgpack
import pytest

from exchange.errors import ExchError
from journal.follower import Follower, FollowerDiverged
from journal.keys import Keys
from journal.replay import replay
from journal.runner import request_snapshot
from journal.scripts import script
from journal.sequencer import Sequencer
from journal.snapshots import SnapshotStore
from journal.streams import last_id, raw
from journal.wire import decode_events
from tools.sources.workload import core_workload

from .journal_helpers import matcher_thread, unnumbered, wait_caught_up, wait_until

K = Keys()
ROOT = Path(__file__).resolve().parent.parent


class Running:
    """A follower serving in a thread of this process; what it raised, if anything."""

    def __init__(self, client, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.follower = Follower(client, **kwargs)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.follower.run()
        except BaseException as e:  # noqa: BLE001 - the test looks at it
            self.error = e

    def stop(self) -> None:
        self.follower.stopping.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the follower did not stop"


def sequencer(client, per_entry: int = 100) -> Sequencer:  # type: ignore[no-untyped-def]
    s = Sequencer(client)
    s.BATCH = per_entry
    return s


def test_the_follower_verifies_and_takes_the_snapshots(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    following = Running(client, snapshot_every=1500)
    wait_until(lambda: client.exists(K.follower), "the follower never announced itself")
    try:
        with matcher_thread(client, snapshot_every=4000) as m:
            sequencer(client).submit(unnumbered(core_workload(6000)))
            last = wait_caught_up(client)
            wait_until(lambda: following.follower.progress.verified_seq == last,
                       "the follower never verified the last answer")
            assert m.progress.snapshot_seq == 0, "the matcher snapshotted beside a follower"
            # a snapshot on request is the follower's, at a verified seq
            assert request_snapshot(client, timeout=30) == last
        taken = [s.seq for s in SnapshotStore(client).list()]
        assert taken[0] == last and len(taken) >= 3
        assert following.follower.progress.snapshots >= 3
        assert following.error is None
    finally:
        following.stop()
    assert following.error is None
    assert not client.exists(K.follower), "a clean stop gives the follower key up"
    for seq in taken:
        assert replay(client, source=str(seq), verify=True).verified


def test_the_matcher_snapshots_when_the_follower_falls_behind(redis_server) -> None:  # type: ignore[no-untyped-def]
    """A follower that announces itself but is more than an interval behind (here: stuck at
    seq 0) would leave recovery, and what compaction may free, ever further back."""
    client = redis_server.client()
    client.set(K.follower, "stuck", px=600_000)
    with matcher_thread(client, snapshot_every=1000) as m:
        sequencer(client).submit(unnumbered(core_workload(5000)))
        wait_caught_up(client)
        # (in a forked child, one at a time: on a busy machine some intervals are skipped)
        wait_until(lambda: SnapshotStore(client).list(),
                   "the matcher never snapshotted beside a stuck follower")
        # the parent learns of the child's success when it next reaps it (within a poll)
        wait_until(lambda: m.progress.snapshot_seq > 0,
                   "the matcher never recorded the snapshot its child saved")
        assert m.progress.snapshot_seq in {s.seq for s in SnapshotStore(client).list()}
    client.delete(K.follower)


def test_a_new_follower_starts_from_a_snapshot_and_catches_up(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    with matcher_thread(client, snapshot_every=2000):
        sequencer(client).submit(unnumbered(core_workload(5000)))
        last = wait_caught_up(client)
    following = Running(client, snapshot_every=10**9)
    try:
        wait_until(lambda: following.follower.progress.verified_seq == last,
                   "the follower never caught up")
        assert following.follower.progress.snapshot_seq == last  # the matcher's stop snapshot
    finally:
        following.stop()
    assert following.error is None


def commit_a_wrong_answer(client) -> int:  # type: ignore[no-untyped-def]
    """With no matcher running: sequence one deposit, and write an answer that credits a
    penny more than the deposit, as a faulty matcher would. Returns its seq."""
    r = raw(client)
    [seq] = Sequencer(client).submit_batch([("deposit", 0, 0, "mallory", 1000)])
    lease, commit = script(r, "lease"), script(r, "commit")
    assert lease(keys=[K.lease], args=["acquire", "faulty", 60_000]) == 1
    ts = int(dict(zip(*[iter(r.xrange(K.input, min=f"{seq}-0")[0][1])] * 2))[b"ts"])
    wrong = msgpack.packb([{"type": "funds_changed", "seq": seq, "account": "mallory",
                            "amount": 1001, "balance": 1001}])
    assert commit(keys=[K.output, K.lease],
                  args=["faulty", 60_000, last_id(r, K.output), 1, f"{seq}-0", ts, wrong,
                        "", ""]) == [b"OK"]
    client.delete(K.lease)
    return seq


def test_the_follower_stops_loudly_at_a_wrong_answer(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    with matcher_thread(client):
        sequencer(client).submit(unnumbered(core_workload(2000)))
        wait_caught_up(client)
    following = Running(client, snapshot_every=10**9)
    wait_until(lambda: following.follower.progress.verified_seq == 2000,
               "the follower never caught up")
    seq = commit_a_wrong_answer(client)
    following.thread.join(timeout=60)
    assert isinstance(following.error, FollowerDiverged)
    assert isinstance(following.error, ExchError) and following.error.exit_code == 1
    d = following.error.divergence
    assert d.seq == seq and d.entry == f"{seq}-0"
    assert d.recorded[0]["amount"] == 1001 and d.replayed[0]["amount"] == 1000
    assert following.follower.progress.verified_seq == 2000


@pytest.mark.slow
def test_exch_follow_exits_1_at_a_wrong_answer(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    with matcher_thread(client):
        sequencer(client).submit(unnumbered(core_workload(1000)))
        wait_caught_up(client)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "follow", "--redis-url", redis_server.url],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: client.exists(K.follower), "exch follow never announced itself")
        seq = commit_a_wrong_answer(client)
        assert proc.wait(timeout=60) == 1
        err = proc.stderr.read().decode()
        assert f"DIVERGED at seq {seq} (output entry {seq}-0)" in err, err[-2000:]
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    events = decode_events(dict(zip(*[iter(raw(client).xrange(K.output)[-1][1])] * 2))[b"e"])
    assert events[0]["amount"] == 1001  # the follower wrote nothing


def test_a_follower_behind_a_newer_snapshot_skips_its_own(redis_server) -> None:  # type: ignore[no-untyped-def]
    """The matcher took one further on (the follower fell an interval behind): the follower
    neither serializes an older state nor tries again at every batch."""
    from exchange import Exchange

    client = redis_server.client()
    with matcher_thread(client, snapshot_every=10**9):
        sequencer(client).submit(unnumbered(core_workload(3000)))
        wait_caught_up(client)  # the clean stop stores a snapshot at 3000
    assert [s.seq for s in SnapshotStore(client).list()] == [3000]
    follower = Follower(client)
    follower.ex = Exchange()
    for cmd in core_workload(1000):
        follower.ex.apply(cmd)
    follower._since_snapshot = 5000
    assert follower.take_snapshot() == 0
    assert follower._since_snapshot == 0 and follower.progress.state != "snapshotting"
    assert [s.seq for s in SnapshotStore(client).list()] == [3000]
