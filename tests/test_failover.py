"""Replicas and failover: the replicated watermark on one primary with a replica, and the
whole system on a real Redis Cluster (three primaries, three replicas) whose primary is
SIGKILLed under load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exchange.named import Deposit, Transfer
from journal.connection import connect, is_cluster
from journal.consumer import GroupConsumer
from journal.keys import Keys
from journal.replay import replay
from journal.routing import set_partition_count
from journal.sequencer import Sequencer, connected_replicas
from journal.server import start_server, stop_pid
from journal.streams import parse_id

from .cluster import Cluster
from .conftest import ROOT
from .journal_helpers import (
    commands_in,
    matcher_thread,
    output_events,
    wait_caught_up,
    wait_until,
)
from .test_consumer import ListSink
from .test_transfers import ledger


def deposits(n: int, account: str = "a") -> list[tuple]:
    return [Deposit("deposit", 0, 0, account, 100) for _ in range(n)]


def test_consumers_act_only_on_answers_a_replica_has(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The matcher answers what the primary holds at once, but moves the watermark only once
    a replica has its answers; a consumer hands its sink nothing past it, and gets the rest
    once the replica answers again."""
    client = redis_server.client()
    replica = start_server(tmp_path / "replica", daemonize=False,
                           extra=["--replicaof", "127.0.0.1", str(redis_server.port)])
    k = Keys()
    try:
        mirror = connect(f"redis://127.0.0.1:{replica.port}/0")
        wait_until(lambda: connected_replicas(client) == 1
                   and mirror.info("replication").get("master_link_status") == "up",
                   "the replica never caught up with the primary")
        sink = ListSink()
        consumer = GroupConsumer(client, "watch", sink, k)
        consumer.WATERMARK_PATIENCE = 0.5
        seq = Sequencer(client, replicas=0)  # the input need not wait: the output does
        with matcher_thread(client) as m:
            seq.submit(deposits(100))
            last = wait_caught_up(client)
            wait_until(lambda: parse_id(client.get(k.replicated) or b"0-0")[0] == last,
                       "the watermark never reached the answers")
            assert m.replicas == 1
            consumer.run(follow=False)
            assert sink.committed_seq() == last == 100
            os.kill(replica.pid, signal.SIGSTOP)  # alive to the primary, answering nothing
            try:
                seq.submit(deposits(50))
                assert wait_caught_up(client) == 150  # answered on the primary
                time.sleep(1.5)  # a WAIT's time: the watermark must not move
                assert parse_id(client.get(k.replicated))[0] == 100
                consumer.run(follow=False)
                assert sink.committed_seq() == 100, "a sink got answers no replica has"
                pending = client.xpending(k.output, "watch")["pending"]
                assert pending > 0  # held, and pending in the group: not lost
            finally:
                os.kill(replica.pid, signal.SIGCONT)
            wait_until(lambda: parse_id(client.get(k.replicated))[0] == 150,
                       "the watermark never moved once the replica answered", timeout=30)
            consumer.run(follow=False)
        assert [e[0] for e in sink.entries] == [100, 150]  # each answer once, in order
        assert [ev["seq"] for e in sink.entries for ev in e[2]] == list(range(1, 151))
        assert commands_in(mirror) == 150
        # without replicas there is no watermark, and nothing waits for one
        stop_pid(replica.pid, timeout=10)
        wait_until(lambda: connected_replicas(client) == 0, "the replica never left")
        with matcher_thread(client) as m:
            Sequencer(client).submit(deposits(5))
            assert wait_caught_up(client) == 155 and m.replicas == 0
            assert not client.exists(k.replicated)
            consumer.run(follow=False)
            assert sink.committed_seq() == 155
    finally:
        stop_pid(replica.pid, timeout=10)


# ----------------------------------------------------------------------------- the cluster


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = Cluster(tmp_path / "cluster")
    c.start()
    try:
        yield c
    finally:
        c.stop()


def exch(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args, "--redis-url", url],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def test_the_same_commands_run_on_a_cluster(cluster: Cluster, tmp_path: Path) -> None:
    """Detected from the URL, no flag: partitions on different primaries, routed submits,
    one matcher per partition, WAIT on by default, snapshots, export and verified replays."""
    import json

    client = connect(cluster.url)
    assert is_cluster(client)
    assert exch(cluster.url, "partitions", "--set", "3").returncode == 0
    owners = {cluster.primary_of(Keys(str(p)).input) for p in range(3)}
    assert len(owners) >= 2, "the partitions should not all share one primary"
    day = tmp_path / "day.jsonl"
    lines = [{"type": "create_market", "market": f"m{p}", "runners": [1, 2], "partition": p}
             for p in range(3)]
    lines += [{"type": "deposit", "account": "a", "amount": "100", "partition": p}
              for p in range(3)]
    lines += [{"type": "place", "account": "a", "market": f"m{p}", "runner": 1,
               "side": side, "price": "2", "stake": "5"} for p in range(3)
              for side in ("BACK", "LAY")]
    lines += [{"type": "transfer", "account": "a", "amount": "10", "from_partition": 0,
               "to_partition": 2}]
    day.write_text("".join(json.dumps(x) + "\n" for x in lines))
    done = exch(cluster.url, "submit", str(day))
    assert done.returncode == 0, done.stderr
    for p in range(3):
        assert f"in partition {p}" in done.stdout
    with matcher_thread(client, Keys("0")), matcher_thread(client, Keys("1")), \
            matcher_thread(client, Keys("2")) as m2:
        for p in range(3):
            wait_caught_up(client, Keys(str(p)))
        done = exch(cluster.url, "transfers", "--until-caught-up")
        assert done.returncode == 0, done.stderr
        wait_until(lambda: commands_in(client, Keys("2")) == 5, "the transfer never arrived")
        wait_caught_up(client, Keys("2"))
        assert m2.replicas == 1  # a cluster has replicas: the watermark is kept
        out = tmp_path / "parquet"
        done = exch(cluster.url, "export", "parquet", "--out", str(out), "--until-caught-up")
        assert done.returncode == 0, done.stderr
    from tools.services.export.parquet import read_table

    assert read_table(out, "trades").num_rows == 3
    assert read_table(out, "funds").column("type").to_pylist().count("transfer_in") == 1
    for p in range(3):
        assert replay(client, Keys(str(p)), source="none", verify=True).verified
        assert client.xlen(Keys(str(p)).snapshots) > 0  # taken as each matcher stopped
        assert replay(client, Keys(str(p)), source="latest", verify=True).verified


@pytest.mark.slow
def test_a_primary_killed_under_load_loses_nothing_acknowledged(cluster: Cluster,
                                                               tmp_path: Path) -> None:
    """SIGKILL the primary holding a partition while submitters (deposits and transfers
    between the partitions), matchers, the transfer service and an exporter run (and the
    transfer service and a matcher too, before and after): its replica
    is promoted; every command a submitter saw acknowledged is in the journal afterwards;
    everything carries on by itself; money is conserved (every transfer credited once,
    nothing in transit at the end); every partition's replay verifies; the export holds the
    output one for one."""
    import threading

    from tools.services.export.parquet import read_events

    client = connect(cluster.url)
    set_partition_count(client, 2)
    url = cluster.url
    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tools.cli", *args, "--redis-url", url],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    services = (["run", "--partition", "0"], ["run", "--partition", "1"], ["transfers"],
                ["export", "parquet", "--follow", "--out", str(tmp_path / "parquet")])
    procs = [start(*args) for args in services]

    def kill_and_restart(i: int) -> None:
        procs[i].send_signal(signal.SIGKILL)
        procs[i].wait()
        procs[i] = start(*services[i])

    acknowledged: dict[int, list[int]] = {0: [], 1: []}
    account_of: dict[int, dict[int, str]] = {0: {}, 1: {}}
    errors: list[BaseException] = []
    stop = threading.Event()

    def submitter(p: int) -> None:
        seq = Sequencer(connect(url), Keys(str(p)))
        n = 0
        try:
            while not stop.is_set():
                account = f"acct{n % 7}"
                move = Transfer("transfer", 0, 0, account, 150, p, 1 - p)
                seqs = seq.submit_batch(deposits(19, account=account) + [move])
                acknowledged[p].extend(seqs)
                account_of[p].update((s, account) for s in seqs)
                n += 1
        except BaseException as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    threads = [threading.Thread(target=submitter, args=(p,)) for p in range(2)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: all(len(a) > 2000 for a in acknowledged.values()),
                   "the submitters never got going", timeout=60)
        kill_and_restart(2)  # the transfer service and a matcher die too, now and later
        kill_and_restart(1)
        time.sleep(1)
        victim = cluster.primary_of(Keys("0").input)
        before = len(acknowledged[0])
        cluster.kill(victim)
        time.sleep(0.5)
        kill_and_restart(2)
        wait_until(cluster.ok, "the cluster never recovered", timeout=60)
        wait_until(lambda: len(acknowledged[0]) > before + 2000,
                   "partition 0 never took commands again after the failover", timeout=60)
        assert cluster.primary_of(Keys("0").input) != victim
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert not errors, errors
    for p in range(2):
        seqs = acknowledged[p]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        last = wait_caught_up(client, Keys(str(p)), timeout=120)
        assert commands_in(client, Keys(str(p))) >= len(seqs)
        assert last >= seqs[-1], "an acknowledged command is missing after the failover"
        # and each acknowledged seq holds the very command it was given to
        journal = {e["seq"]: e["account"] for e in output_events(client, Keys(str(p)))
                   if "account" in e}
        assert all(journal[s] == a for s, a in account_of[p].items())
    try:
        for p in range(2):
            wait_until(lambda: ledger({q: output_events(client, Keys(str(q)))
                                       for q in range(2)})["in_transit"] == 0,
                       "transfers still in transit", timeout=120, pause=0.5)
            wait_caught_up(client, Keys(str(p)), timeout=120)
        for p in range(2):
            total = commands_in(client, Keys(str(p)))
            wait_until(lambda p=p, total=total: max(
                (s for s, _, _, _ in read_events(tmp_path / "parquet", p)), default=0) == total,
                "the exporter never caught up", timeout=120, pause=0.5)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()[-2000:]
    # money: every transfer credited once, nothing left in transit, nothing made or lost
    events = {p: output_events(client, Keys(str(p))) for p in range(2)}
    money = ledger(events)
    assert money["sent"] > 100 and money["credited"] == money["sent"], money
    assert money["in_transit"] == 0 and money["wallets"] == money["outside"], money
    for p in range(2):
        assert replay(client, Keys(str(p)), source="none", verify=True).verified
        exported = read_events(tmp_path / "parquet", p)
        assert max(s for s, _, _, _ in exported) == commands_in(client, Keys(str(p)))
