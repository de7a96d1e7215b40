"""Money between partitions (rules version 6): ``transfer`` out of one wallet, ``transfer_in``
into another, carried by the transfer service exactly once, whatever is killed when."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from exchange import Exchange, decode
from exchange.errors import SnapshotError
from exchange.limits import PARTITION_STRIDE
from exchange.named import Deposit, Transfer, TransferIn
from exchange.rules import TRANSFERS
from exchange.snapshot import dump, load
from journal.keys import Keys
from journal.replay import replay
from journal.routing import set_partition_count
from journal.sequencer import Sequencer
from journal.transfers import TransferService

from .conftest import ROOT
from .journal_helpers import matcher_thread, output_events, wait_caught_up, wait_until
from .test_faults import kill9

# ----------------------------------------------------------------------------- the core


def core(partition: int) -> Exchange:
    ex = Exchange(partition)
    ex.set_rules(TRANSFERS, 0)
    return ex


def test_a_transfer_leaves_one_wallet_and_reaches_the_other_once() -> None:
    a, b = core(1), core(2)
    a.apply(Deposit("deposit", 1, 0, "u", 10_000))
    (out,) = a.apply(Transfer("transfer", 2, 0, "u", 2_500, 1, 2))
    assert out == ("transfer_out", 2, PARTITION_STRIDE + 2, "u", -2_500, 7_500, 2)
    tid = out[2]
    (got,) = b.apply(TransferIn("transfer_in", 1, 0, "u", 2_500, tid))
    assert got == ("transfer_in", 1, tid, "u", 2_500, 2_500, 1)
    (again,) = b.apply(TransferIn("transfer_in", 2, 0, "u", 2_500, tid))
    assert again[0] == "order_rejected" and again[-1] == "DUPLICATE_TRANSFER"
    assert a.net_deposits + b.net_deposits == 10_000  # conserved, nothing in transit
    a.check()
    b.check()


def test_the_credited_mark_is_in_the_snapshot_and_its_hash() -> None:
    b = core(2)
    b.apply(TransferIn("transfer_in", 1, 0, "u", 100, PARTITION_STRIDE + 7))
    b.apply(TransferIn("transfer_in", 2, 0, "u", 100, 3 * PARTITION_STRIDE + 9))
    data = dump(b)
    back = load(data, 2)
    assert back._marks == {1: 7, 3: 9} and dump(back) == data
    # a state that forgot a mark would credit the transfer again: the hash tells them apart
    fresh = core(2)
    fresh.apply(TransferIn("transfer_in", 1, 0, "u", 100, PARTITION_STRIDE + 7))
    fresh.apply(Deposit("deposit", 2, 0, "u", 100))
    assert fresh.state_hash() != b.state_hash()
    (dup,) = back.apply(TransferIn("transfer_in", 3, 0, "u", 100, PARTITION_STRIDE + 7))
    assert dup[-1] == "DUPLICATE_TRANSFER"
    with pytest.raises(SnapshotError):
        load(data, 1)


def test_before_rules_6_a_transfer_is_an_unknown_command() -> None:
    ex = Exchange()
    ex.set_rules(TRANSFERS - 1, 0)
    obj = {"type": "transfer", "account": "u", "amount": "1.00", "from_partition": 0,
           "to_partition": 1}
    (out,) = ex.apply(decode(obj, 1, 0, rules=ex.rules))
    assert out == ("order_rejected", 1, None, "u", None, None, None, "MALFORMED")


# ----------------------------------------------------------------------------- the service

P = 3
"""Partitions in the journal tests."""


def sequencers(client) -> list[Sequencer]:  # type: ignore[no-untyped-def]
    return [Sequencer(client, Keys(str(p))) for p in range(P)]


def all_events(client) -> dict[int, list[dict]]:  # type: ignore[no-untyped-def]
    return {p: output_events(client, Keys(str(p))) for p in range(P)}


def ledger(events: dict[int, list[dict]]) -> dict[str, int]:
    """What the answers say: money in and out of the exchange, in the wallets, in transit."""
    balances: dict[tuple[int, str], int] = {}
    outside = out_total = in_total = 0
    sent: dict[int, int] = {}
    credited: dict[int, int] = {}
    for p, evs in events.items():
        for e in evs:
            kind = e["type"]
            if kind in ("funds_changed", "transfer_out", "transfer_in", "account_settled"):
                balances[p, e["account"]] = e["balance"]
            if kind == "funds_changed":
                outside += e["amount"]
            elif kind == "transfer_out":
                out_total -= e["amount"]
                assert e["transfer"] not in sent
                sent[e["transfer"]] = -e["amount"]
            elif kind == "transfer_in":
                in_total += e["amount"]
                assert e["transfer"] not in credited, "a transfer was credited twice"
                credited[e["transfer"]] = e["amount"]
    for tid, amount in credited.items():
        assert sent.get(tid) == amount, f"transfer {tid} credited without its transfer_out"
    return {"outside": outside, "wallets": sum(balances.values()),
            "in_transit": out_total - in_total, "sent": len(sent), "credited": len(credited)}


def money_flow(n: int, accounts: int = 6, seed: int = 5) -> list[tuple[int, tuple]]:
    """(partition, command): deposits in every partition, then transfers between them, some
    more than is there (INSUFFICIENT_FUNDS), and a few withdrawals."""
    rng = random.Random(seed)
    flow: list[tuple[int, tuple]] = [
        (p, Deposit("deposit", 0, 0, f"a{i}", 500_000)) for p in range(P)
        for i in range(accounts)
    ]
    for _ in range(n):
        source = rng.randrange(P)
        account = f"a{rng.randrange(accounts)}"
        if rng.random() < 0.05:
            flow.append((source, decode({"type": "withdraw", "account": account,
                                         "amount": str(rng.randint(1, 50))}, 0, 0)))
            continue
        to = rng.choice([p for p in range(P) if p != source])
        flow.append((source, Transfer("transfer", 0, 0, account, rng.randint(1, 20_000),
                                      source, to)))
    return flow


def send(seqs: list[Sequencer], flow: list[tuple[int, tuple]], chunk: int = 40) -> None:
    by: dict[int, list[tuple]] = {}
    for p, cmd in flow:
        by.setdefault(p, []).append(cmd)
        if len(by[p]) >= chunk:
            seqs[p].submit(by.pop(p))
    for p, cmds in by.items():
        seqs[p].submit(cmds)


def test_the_service_carries_every_transfer_once_and_redelivery_changes_nothing(
        redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    set_partition_count(client, P)
    with ExitStack() as stack:
        for p in range(P):
            stack.enter_context(matcher_thread(client, Keys(str(p))))
        send(sequencers(client), money_flow(300))
        for p in range(P):
            wait_caught_up(client, Keys(str(p)))
        before = ledger(all_events(client))
        assert before["sent"] > 100 and before["credited"] == 0
        assert before["in_transit"] > 0
        assert before["wallets"] + before["in_transit"] == before["outside"]

        done = TransferService(client).catch_up()
        assert set(done.partitions) == set(range(P)) and done.handed == before["sent"]
        wait_until(lambda: ledger(all_events(client))["in_transit"] == 0,
                   "the transfers were never all credited")
        after = ledger(all_events(client))
        assert after["credited"] == after["sent"] == before["sent"]
        assert after["wallets"] == after["outside"]

        # the service's position lost (as if it died before writing it): everything comes
        # again, and every destination answers DUPLICATE_TRANSFER
        for p in range(P):
            client.delete(Keys(str(p)).transfers)
        again = TransferService(client).catch_up()
        assert again.handed == before["sent"]
        wait_until(lambda: sum(e.get("reason") == "DUPLICATE_TRANSFER"
                               for evs in all_events(client).values() for e in evs)
                   == before["sent"], "the second delivery was not answered as a duplicate")
        final = ledger(all_events(client))
        assert final["wallets"] == final["outside"] and final["credited"] == after["credited"]
    for p in range(P):
        assert replay(client, Keys(str(p)), source="none", verify=True).verified


def _start(url: str, *args: str, point: str | None = None,
           marker: Path | None = None) -> subprocess.Popen:
    """An ``exch`` command as its own process; with ``point``, it stops there (creating
    ``marker``) to be killed (``journal.faults``)."""
    import os

    env = dict(os.environ)
    if point:
        env["EXCH_FAULT_POINT"] = point
        env["EXCH_FAULT_FILE"] = str(marker)
    return subprocess.Popen([sys.executable, "-m", "tools.cli", *args, "--redis-url", url],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


@pytest.mark.slow
def test_money_is_conserved_while_services_are_killed(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Matchers and the transfer service as processes; SIGKILL the service again and again
    (and the matchers now and then) while transfers keep coming; at every kill the wallets
    plus the money in transit equal the money brought in; at the end nothing is in transit,
    no transfer was credited twice, and every partition replays to the same bytes."""
    client = redis_server.client()
    set_partition_count(client, P)
    url = redis_server.url
    matchers = {p: _start(url, "run", "--partition", str(p)) for p in range(P)}
    # the service dies where it hurts: after handing transfers to one destination but not the
    # next, after handing all but before moving its position (both make it hand them again),
    # or anywhere at all
    points = ["transfers.between:1", "transfers.handed:1", "transfers.handed:2", None]
    flow = money_flow(2400, seed=11)
    seqs = sequencers(client)
    rng = random.Random(2)
    kills = stopped_at = 0
    service = _start(url, "transfers")
    try:
        for i in range(0, len(flow), 200):
            point = points[(i // 200) % len(points)]
            marker = tmp_path / f"reached-{i}"
            kill9(service)
            service = _start(url, "transfers", point=point, marker=marker)
            send(seqs, flow[i:i + 200])
            if point is None:
                time.sleep(rng.uniform(0.2, 2.0))  # the service starts in about half of that
            else:
                end = time.monotonic() + 20
                while not marker.exists() and time.monotonic() < end:
                    time.sleep(0.02)
                stopped_at += marker.exists()
            kill9(service)
            kills += 1
            if i % 600 == 0:
                p = rng.randrange(P)
                kill9(matchers[p])
                matchers[p] = _start(url, "run", "--partition", str(p))
            snap = ledger(all_events(client))
            assert snap["wallets"] + snap["in_transit"] == snap["outside"], snap
        kill9(service)
        service = _start(url, "transfers")
        for p in range(P):
            wait_caught_up(client, Keys(str(p)), timeout=120)
        wait_until(lambda: ledger(all_events(client))["in_transit"] == 0,
                   "transfers still in transit after the kills", timeout=120)
        for p in range(P):
            wait_caught_up(client, Keys(str(p)), timeout=120)
    finally:
        for proc in [service, *matchers.values()]:
            kill9(proc)
    end = ledger(all_events(client))
    assert kills >= 10 and stopped_at >= 6 and end["sent"] > 1000
    duplicates = sum(e.get("reason") == "DUPLICATE_TRANSFER"
                     for evs in all_events(client).values() for e in evs)
    assert duplicates > 0, "no transfer was handed over twice: the kills tested nothing"
    assert end["credited"] == end["sent"] and end["wallets"] == end["outside"], end
    for p in range(P):
        assert replay(client, Keys(str(p)), source="none", verify=True).verified


def test_the_command_line_sends_transfers_and_carries_them(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`exch submit` routes a transfer by its from_partition and refuses one to a partition
    that is not configured; `exch transfers --until-caught-up` carries it; `exch tail`
    shows both halves."""
    import json
    import os

    def exch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tools.cli", *args, "--redis-url", redis_server.url],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "COLUMNS": "200"})

    client = redis_server.client()
    assert exch("partitions", "--set", "2").returncode == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"type": "transfer", "account": "a", "amount": "1",
                               "from_partition": 0, "to_partition": 4}) + "\n")
    done = exch("submit", str(bad))
    assert done.returncode == 2
    assert "bad.jsonl:1: UNKNOWN_PARTITION: partition 4 is not configured" in done.stderr
    bad.write_text(json.dumps({"type": "transfer_in", "account": "a", "amount": "1",
                               "transfer": PARTITION_STRIDE + 9}) + "\n")
    done = exch("submit", str(bad))
    assert done.returncode == 2
    assert "bad.jsonl:1: SERVICE_ONLY: transfer_in is sent by the transfer service" in done.stderr
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(x) + "\n" for x in [
        {"type": "deposit", "account": "a", "amount": "10", "partition": 1},
        {"type": "transfer", "account": "a", "amount": "4.50", "from_partition": 1,
         "to_partition": 0},
    ]))
    done = exch("submit", str(good))
    assert done.returncode == 0, done.stderr
    assert "sequenced 2 commands in partition 1: seq 1..2" in done.stdout
    with ExitStack() as stack:
        for p in range(2):
            stack.enter_context(matcher_thread(client, Keys(str(p))))
        wait_caught_up(client, Keys("1"))
        done = exch("transfers", "--until-caught-up")
        assert done.returncode == 0, done.stderr
        assert "carried 1 transfers from 2 partitions" in done.stderr
        wait_until(lambda: output_events(client, Keys("0")), "the transfer never arrived")
    (credit,) = output_events(client, Keys("0"))
    assert credit == {"type": "transfer_in", "seq": 1, "transfer": PARTITION_STRIDE + 2,
                      "account": "a", "amount": 450, "balance": 450, "from_partition": 1}
    listed = json.loads(exch("partitions", "--json").stdout)
    assert [r["transfers_seq"] for r in listed["rows"]] == [0, 2]  # carried up to there
    tail = exch("tail", "--from", "0", "--no-follow", "--partition", "1")
    assert "transfer_out" in tail.stdout and "-4.50 to partition 0" in tail.stdout, tail.stdout
    # every partition at once: tail, status and groups
    both = exch("tail", "--from", "0", "--no-follow", "--partition", "all", "--json")
    assert both.returncode == 0, both.stderr
    seen = [(e["partition"], e["type"]) for e in map(json.loads, both.stdout.splitlines())]
    assert sorted(seen) == [(0, "transfer_in"), (1, "funds_changed"), (1, "transfer_out")]
    st = json.loads(exch("status", "--partition", "all", "--json").stdout)
    assert [x["last_output_seq"] for x in st["partitions"]] == [1, 2]
    groups = json.loads(exch("groups", "--partition", "all", "--json").stdout)["groups"]
    assert {(g["partition"], g["name"]) for g in groups} == {(0, "transfers"), (1, "transfers")}


def test_a_destination_before_rules_6_is_refused_and_the_money_waits(redis_server) -> None:  # type: ignore[no-untyped-def]
    """A transfer_in there would be MALFORMED and the money lost: the edge refuses the
    transfer, and the service, handed one anyway, moves nothing until the upgrade."""
    from exchange.errors import InputError
    from journal.routing import Router
    from journal.rules import upgrade
    from journal.transfers import TransferRefused

    client = redis_server.client()
    set_partition_count(client, 2)
    client.hset(Keys("1").settings, "rules", TRANSFERS - 1)  # an older partition 1
    move = Transfer("transfer", 0, 0, "u", 100, 0, 1)
    with pytest.raises(InputError, match="rules version 5"):
        Router(client).route(move)
    with pytest.raises(InputError, match="transfer service only"):
        Router(client).route(TransferIn("transfer_in", 0, 0, "u", 100, PARTITION_STRIDE + 1))
    seqs = sequencers(client)
    seqs[0].submit([Deposit("deposit", 0, 0, "u", 1_000), move])  # straight to the journal
    with matcher_thread(client, Keys("0")), matcher_thread(client, Keys("1")):
        wait_caught_up(client, Keys("0"))
        with pytest.raises(TransferRefused, match="partition 1 writes under rules version 5"):
            TransferService(client).catch_up()
        assert not client.get(Keys("0").transfers)  # nothing moved on: the money waits
        upgrade(client, Keys("1"))
        assert TransferService(client).catch_up().handed == 1
        wait_until(lambda: any(e["type"] == "transfer_in"
                               for e in output_events(client, Keys("1"))),
                   "the transfer never arrived after the upgrade")


def test_the_sink_never_hands_on_a_transfer_after_a_gap(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Handed answers that do not start right after its position (a dead consumer's pending
    ones not yet claimed), the sink refuses them: a later transfer must never reach a
    destination before an earlier one, whose credit the high-water mark would then refuse."""
    from journal.transfers import OutOfOrder, TransferSink

    client = redis_server.client()
    set_partition_count(client, 2)
    seqs = sequencers(client)
    seqs[0].submit([Deposit("deposit", 0, 0, "u", 1_000)])
    for _ in range(3):
        seqs[0].submit([Transfer("transfer", 0, 0, "u", 10, 0, 1)])
    with matcher_thread(client, Keys("0")):
        wait_caught_up(client, Keys("0"))
    from journal.streams import raw
    from journal.wire import read_entries

    entries = list(read_entries(raw(client).xrange(Keys("0").output)))
    assert [e[0] for e in entries] == [1, 2, 3, 4]
    sink = TransferSink(client, 0, lambda p: seqs[p])
    with pytest.raises(OutOfOrder):
        sink.write(entries[2:])  # 3 and 4 without 2
    assert sink.committed_seq() == 0 and sink.handed == 0
    assert sink.write(entries[:2]) == 2 and sink.handed == 1
    assert sink.write(entries[1:]) == 4 and sink.handed == 3  # 2 again: skipped
