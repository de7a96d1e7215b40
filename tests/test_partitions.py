"""Partitions: ids that carry their partition (rules version 5), states that know theirs, and
key names that only take partition numbers."""

from __future__ import annotations

import pytest

from exchange import Exchange, decode
from exchange.errors import InputError, SnapshotError
from exchange.limits import MAX_PARTITION, PARTITION_STRIDE
from exchange.rules import PARTITION_IDS
from journal.keys import Keys


def run(ex: Exchange, objs: list[dict], first: int = 1) -> list[list[dict]]:
    """Apply JSON-form commands from seq ``first``; each command's events as dicts."""
    from exchange.codec import wire_event

    out = []
    for i, obj in enumerate(objs):
        cmd = decode(obj, first + i, 1_000, rules=ex.rules)
        out.append([wire_event(e) for e in ex.apply(cmd)])
    return out


DAY = [
    {"type": "create_market", "market": "m", "runners": [1, 2]},
    {"type": "deposit", "account": "a", "amount": "100"},
    {"type": "deposit", "account": "b", "amount": "100"},
    {"type": "place", "account": "a", "market": "m", "runner": 1, "side": "BACK",
     "price": "2", "stake": "10"},
    {"type": "place", "account": "b", "market": "m", "runner": 1, "side": "LAY",
     "price": "2", "stake": "4"},
]


def partition_exchange(partition: int, rules: int = PARTITION_IDS) -> Exchange:
    ex = Exchange(partition)
    ex.set_rules(rules, 0)
    return ex


def test_ids_carry_the_partition_from_rules_version_5() -> None:
    ex = partition_exchange(3)
    events = run(ex, DAY)
    base = 3 * PARTITION_STRIDE
    accepted = events[3][0]
    assert accepted["type"] == "order_accepted" and accepted["order"] == base + 4
    trade = next(e for e in events[4] if e["type"] == "trade")
    assert trade["trade"] == f"{base + 5}-1"
    assert (trade["back_order"], trade["lay_order"]) == (base + 4, base + 5)
    assert trade["back_order"] // PARTITION_STRIDE == 3  # the order names its partition
    # a cancel and a replace name the order by that id
    cancel = {"type": "cancel", "account": "a", "order": base + 4}
    replace = {"type": "replace", "account": "a", "order": base + 4, "price": "3"}
    (replaced,) = run(ex, [replace], 6)
    assert [e["type"] for e in replaced] == ["order_cancelled", "order_accepted"]
    assert replaced[1]["order"] == base + 6
    (can,) = run(ex, [cancel], 7)[0]
    assert can["type"] == "order_rejected" and can["reason"] == "UNKNOWN_ORDER"  # replaced
    # the seq alone names no order there
    (miss,) = run(ex, [{"type": "cancel", "account": "a", "order": 6}], 8)[0]
    assert miss["reason"] == "UNKNOWN_ORDER"


def test_partition_0_and_older_rules_keep_ids_that_are_seqs() -> None:
    for ex in (partition_exchange(0), partition_exchange(3, rules=4)):
        events = run(ex, DAY)
        trade = next(e for e in events[4] if e["type"] == "trade")
        assert events[3][0]["order"] == 4 and trade["trade"] == "5-1"
    # the same commands give the same bytes in partition 0 under 4 and 5
    a, b = partition_exchange(0, 4), partition_exchange(0, 5)
    assert run(a, DAY) == run(b, DAY)


def test_moving_to_version_5_keeps_the_old_orders_ids() -> None:
    ex = partition_exchange(2, rules=4)
    run(ex, DAY[:4])
    ex.set_rules(PARTITION_IDS, 1_000)
    (events,) = run(ex, DAY[4:], 5)
    trade = next(e for e in events if e["type"] == "trade")
    assert trade["back_order"] == 4 and trade["lay_order"] == 2 * PARTITION_STRIDE + 5


def test_a_state_knows_its_partition() -> None:
    ex = partition_exchange(7)
    run(ex, DAY[:4])
    data = ex.snapshot()
    back = Exchange.restore(data, 7)
    assert back.partition == 7 and back.snapshot() == data
    assert Exchange.restore(data).partition == 7
    # it goes on exactly as the original
    assert run(back, DAY[4:], 5) == run(ex, DAY[4:], 5)
    with pytest.raises(SnapshotError, match="partition 7, not of 8"):
        Exchange.restore(data, 8)
    # partition 0's bytes hold no partition (the formats before are unchanged) ...
    zero = partition_exchange(0, rules=4)
    run(zero, DAY[:4])
    old = zero.snapshot()
    # ... so an older release's state of another partition is taken as that partition's
    adopted = Exchange.restore(old, 5)
    assert adopted.partition == 5
    # but a version-5 state of partition 0 is partition 0's
    five = partition_exchange(0)
    run(five, DAY[:4])
    with pytest.raises(SnapshotError, match="partition 0, not of 5"):
        Exchange.restore(five.snapshot(), 5)


def test_partitions_are_numbers() -> None:
    assert Keys("12").number == 12 and Keys().number == 0
    for bad in ("x", "007", "-1", "1.5", "", str(MAX_PARTITION + 1), "٣"):
        with pytest.raises(InputError, match="whole number"):
            Keys(bad)
    with pytest.raises(ValueError):
        Exchange(MAX_PARTITION + 1)
    assert Exchange(MAX_PARTITION).partition == MAX_PARTITION


# ----------------------------------------------------------------------------- routing


def J(obj: dict) -> tuple:
    """A JSON-form command as a client sends it (seq and ts 0: the journal gives both)."""
    return decode(obj, 0, 0)


def test_commands_go_to_their_partition_and_ids_never_collide(redis_server) -> None:  # type: ignore[no-untyped-def]
    from journal.replay import replay
    from journal.routing import (
        DIRECTORY,
        PartitionedSequencer,
        Router,
        set_partition_count,
        stable_partition,
    )

    from .journal_helpers import matcher_thread, output_events, wait_caught_up

    client = redis_server.client()
    set_partition_count(client, 2)
    with pytest.raises(InputError, match="never goes down"):
        set_partition_count(client, 1)
    # a partition an older release wrote, under rules whose ids do not carry it, is not
    # counted until it moves on
    from journal.rules import upgrade

    old = Keys("2")
    client.xadd(old.input, {"c": b"\x80"}, id="1-0")  # a journal from before rules versions
    with pytest.raises(InputError, match="partition 2 writes under rules version 1"):
        set_partition_count(client, 3)
    upgrade(client, old)
    assert set_partition_count(client, 3) == 3
    client.delete(old.input)
    client.set("exch:partitions", 2)
    seq = PartitionedSequencer(client)
    p0, p1 = Keys("0"), Keys("1")
    # a market whose creator does not say goes where the stable rule puts it
    free = next(f"free{i}" for i in range(100) if stable_partition(f"free{i}", 2) == 1)
    day = [
        (1, J({"type": "create_market", "market": "one", "runners": [1, 2]})),
        (0, J({"type": "create_market", "market": "zero", "runners": [1, 2]})),
        J({"type": "create_market", "market": free, "runners": [1, 2]}),
        (1, J({"type": "deposit", "account": "a", "amount": "100"})),
        (1, J({"type": "deposit", "account": "b", "amount": "100"})),
        (None, J({"type": "deposit", "account": "a", "amount": "50"})),  # partition 0
        J({"type": "place", "account": "a", "market": "one", "runner": 1, "side": "BACK",
           "price": "2", "stake": "10"}),
        J({"type": "place", "account": "b", "market": "one", "runner": 1, "side": "LAY",
           "price": "2", "stake": "4"}),
        J({"type": "place", "account": "a", "market": "zero", "runner": 1, "side": "BACK",
           "price": "3", "stake": "5"}),
        J({"type": "place", "account": "a", "market": "nowhere", "runner": 1, "side": "BACK",
           "price": "3", "stake": "5"}),
        # the same id again, asking for partition 0: it stays in 1, where it is a duplicate
        (0, J({"type": "create_market", "market": "one", "runners": [1, 2]})),
    ]
    done = seq.submit(day)
    assert {p: r.sequenced for p, r in done.items()} == {0: 4, 1: 7}
    # the first place in "one" is seq 5 of partition 1 (two creates, two deposits, place)
    first = PARTITION_STRIDE + 5
    assert seq.router.route(J({"type": "cancel", "account": "a", "order": first})) == 1
    seq.submit([J({"type": "cancel", "account": "a", "order": first}),
                J({"type": "cancel", "account": "a", "order": 4})])  # 4: no order in 0
    with pytest.raises(InputError, match="partition 5 is not configured"):
        seq.submit([(5, J({"type": "deposit", "account": "a", "amount": "1"}))])
    assert {k.decode(): int(v) for k, v in client.hgetall(DIRECTORY).items()} == {
        "one": 1, "zero": 0, free: 1}
    with matcher_thread(client, p0), matcher_thread(client, p1):
        wait_caught_up(client, p0)
        wait_caught_up(client, p1)
    ones, zeros = output_events(client, p1), output_events(client, p0)
    accepted = [e["order"] for e in ones + zeros if e["type"] == "order_accepted"]
    assert sorted(accepted) == [3, first, first + 1]  # partition 0's order is its seq
    trade = next(e for e in ones if e["type"] == "trade")
    assert trade["trade"] == f"{first + 1}-1"
    cancelled = [e for e in ones if e["type"] == "order_cancelled"]
    assert [e["order"] for e in cancelled] == [first]
    reasons = [e.get("reason") for e in zeros if e["type"] == "order_rejected"]
    assert reasons == ["UNKNOWN_MARKET", "UNKNOWN_ORDER"]
    assert [e.get("reason") for e in ones if e["type"] == "order_rejected"] == [
        "DUPLICATE_MARKET"]
    # a's wallets are apart: 100 in partition 1, 50 in partition 0
    funds = {(p, e["account"]): e["balance"] for p, evs in ((0, zeros), (1, ones))
             for e in evs if e["type"] == "funds_changed"}
    assert funds[(1, "a")] == 10_000 and funds[(0, "a")] == 5_000
    for keys in (p0, p1):
        assert replay(client, keys, source="none", verify=True).verified
    # another router reads the same bindings
    assert Router(client).route(J({"type": "void", "market": free})) == 1


def test_the_command_line_routes_and_lists_partitions(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    def exch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tools.cli", *args, "--redis-url", redis_server.url],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "COLUMNS": "200"})

    done = exch("partitions", "--set", "2", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert listed["partitions"] == 2 and [r["partition"] for r in listed["rows"]] == [0, 1]
    lines = [
        {"type": "create_market", "market": "x", "runners": [1, 2], "partition": 1},
        {"type": "deposit", "account": "a", "amount": "10", "partition": 1},
        {"type": "deposit", "account": "a", "amount": "5"},
        {"type": "place", "account": "a", "market": "x", "runner": 1, "side": "BACK",
         "price": "2", "stake": "1"},
    ]
    day = tmp_path / "day.jsonl"
    day.write_text("".join(json.dumps(x) + "\n" for x in lines))
    done = exch("submit", str(day))
    assert done.returncode == 0, done.stderr
    assert "sequenced 1 commands in partition 0: seq 1..1" in done.stdout
    assert "sequenced 3 commands in partition 1: seq 1..3" in done.stdout
    # a partition that is not configured, or a partition field where it means nothing:
    # reported with the line, nothing sent (exit 2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"type": "deposit", "account": "a", "amount": "1",
                               "partition": 7}) + "\n" + json.dumps(
        {**lines[3], "partition": 1}) + "\n")
    done = exch("submit", str(bad))
    assert done.returncode == 2
    assert "bad.jsonl:1: UNKNOWN_PARTITION: partition 7 is not configured" in done.stderr
    assert "bad.jsonl:2: MALFORMED: place has no field 'partition'" in done.stderr
    # with --skip-invalid the good lines go, the unconfigured partition's line does not
    bad.write_text(json.dumps({"type": "deposit", "account": "a", "amount": "1",
                               "partition": 7}) + "\n" + json.dumps(lines[3]) + "\n")
    done = exch("submit", str(bad), "--skip-invalid")
    assert done.returncode == 0, done.stderr
    assert "sequenced 1 commands in partition 1: seq 4..4" in done.stdout
    assert "skipped 1 invalid lines" in done.stdout
    # all to one partition: a new market is still bound there; one bound elsewhere refused
    fixed = tmp_path / "fixed.jsonl"
    fixed.write_text(json.dumps({"type": "create_market", "market": "y", "runners": [1, 2]})
                     + "\n")
    assert exch("submit", str(fixed), "--partition", "1").returncode == 0
    fixed.write_text(json.dumps({"type": "create_market", "market": "x", "runners": [1, 2]})
                     + "\n")
    done = exch("submit", str(fixed), "--partition", "0")
    assert done.returncode == 2 and "market x lives in partition 1, not 0" in done.stderr
    rows = json.loads(exch("partitions", "--json").stdout)["rows"]
    assert [(r["markets"], r["last_input_seq"]) for r in rows] == [(0, 1), (2, 5)]
    done = exch("partitions")
    assert done.returncode == 0 and "no matcher runs for partition 0, 1" in done.stderr
    from .journal_helpers import matcher_thread, wait_caught_up

    client = redis_server.client()
    with matcher_thread(client, Keys("0")), matcher_thread(client, Keys("1")):
        wait_caught_up(client, Keys("0"))
        wait_caught_up(client, Keys("1"))
        # the market's views are found in its partition without being told where
        done = exch("book", "x")
        assert done.returncode == 0 and "no market" not in done.stdout, done.stderr
        views = json.loads(exch("stats", "--json").stdout)
        assert [v["market"] for v in views] == ["x", "y"]
        assert exch("book", "x", "--partition", "0").returncode == 1
    done = exch("status", "--partition", "x1")
    assert done.returncode == 2 and "whole number" in done.stderr


def test_a_generated_flow_cancels_its_own_orders_in_any_partition(redis_server) -> None:  # type: ignore[no-untyped-def]
    """``exch load`` names the orders it cancels by the ids the journal gave them (in a
    partition other than 0 those are not the seqs), and over several partitions sends a day
    to each, its markets and its wallets there."""
    import json
    import os
    import subprocess
    import sys
    from collections import Counter

    from journal.routing import directory, set_partition_count
    from journal.sequencer import Sequencer
    from tools.sources.load import send
    from tools.sources.market_day import market_day

    from .conftest import ROOT
    from .journal_helpers import matcher_thread, output_events, wait_caught_up

    client = redis_server.client()
    set_partition_count(client, 3)
    one = send(market_day(seed=4, markets=2, accounts=60, commands=4000, market_base=100,
                          ref_prefix="r-"), Sequencer(client, Keys("2")))
    done = subprocess.run(
        [sys.executable, "-m", "tools.cli", "load", "--commands", "12000", "--markets", "3",
         "--accounts", "60", "--json", "--redis-url", redis_server.url],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ})
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert loaded["sent"] == 12000 and loaded["partitions"] == [0, 1, 2]
    # the load's markets, one day per partition
    bound = directory(client)
    assert sorted(bound[m] for m in loaded["markets"]) == [0, 1, 2]
    keys = [Keys(str(p)) for p in range(3)]
    with matcher_thread(client, keys[0]), matcher_thread(client, keys[1]), \
            matcher_thread(client, keys[2]):
        for k in keys:
            wait_caught_up(client, k)
    events = {p: output_events(client, keys[p]) for p in range(3)}
    cancels = one.by_type.get("cancel", 0) + loaded["by_type"].get("cancel", 0)
    assert cancels > 300
    done_ = Counter(e["type"] for evs in events.values() for e in evs)
    reasons = Counter(e["reason"] for evs in events.values() for e in evs
                      if e["type"] == "order_rejected")
    # the generator only cancels live orders of their owner; through a live journal some
    # have filled by the time their cancel comes, but none belongs to someone else; and
    # every partition's bets are covered by the wallets there
    assert reasons["NOT_OWNER"] == 0
    assert reasons["UNKNOWN_ORDER"] < 0.2 * cancels, reasons
    assert reasons["INSUFFICIENT_FUNDS"] < 0.03 * 16000, reasons
    assert done_["order_cancelled"] > 0.5 * cancels
    for p, evs in events.items():
        assert sum(e["type"] == "trade" for e in evs) > 100, p
        assert all(e["order"] // PARTITION_STRIDE == p for e in evs
                   if e["type"] == "order_accepted")


def test_simulate_sets_partition_fields_aside(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import subprocess
    import sys

    from .conftest import ROOT

    day = tmp_path / "day.jsonl"
    day.write_text("\n".join(json.dumps(x) for x in [
        {"type": "create_market", "market": "x", "runners": [1, 2], "partition": 1},
        {"type": "deposit", "account": "a", "amount": "10", "partition": 1},
        {"type": "cancel", "account": "a", "order": 1, "partition": 1},
    ]) + "\n")
    done = subprocess.run([sys.executable, "-m", "tools.cli", "simulate", str(day)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["type"] for e in events] == ["market_created", "funds_changed", "order_rejected"]
    assert events[1]["balance"] == "10.00" and events[2]["reason"] == "MALFORMED"


@pytest.mark.slow
def test_bench_scale_runs_every_partition_to_the_end() -> None:
    from tools.bench import bench_scale

    # enough commands for the CPU figures to pass the clock's 10 ms ticks
    result = bench_scale((1, 2), 40_000)
    assert [r["partitions"] for r in result["rows"]] == [1, 2]
    for r in result["rows"]:
        assert r["commands"] == 40_000 and r["commands_per_sec"] > 0
        assert r["redis_cpu_us_per_command"] > 0 and r["matcher_cpu_us_per_command"] > 0
    assert result["rows"][0]["speed_up"] == 1.0


# ----------------------------------------------------------------------------- replicas


def test_a_call_is_acknowledged_only_once_a_replica_has_it(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With a replica connected, the sequencer waits for it (WAIT on the script's own
    connection); a replica that stops answering makes the outcome unknown, never a
    duplicate: the same call, retried, returns its first answer."""
    import os
    import signal

    from journal.connection import connect
    from journal.sequencer import NotReplicated, Sequencer, connected_replicas
    from journal.server import start_server, stop_pid

    from .journal_helpers import commands_in, wait_until

    client = redis_server.client()
    assert Sequencer(client).submit_batch([J({"type": "deposit", "account": "a",
                                              "amount": "1"})]) == [1]
    replica = start_server(tmp_path / "replica", daemonize=False,
                           extra=["--replicaof", "127.0.0.1", str(redis_server.port)])
    try:
        mirror = connect(f"redis://127.0.0.1:{replica.port}/0")
        wait_until(lambda: connected_replicas(client) == 1
                   and mirror.info("replication").get("master_link_status") == "up",
                   "the replica never caught up with the primary")
        seq = Sequencer(client, patience=2.0, replica_timeout_ms=200)
        cmds = [J({"type": "deposit", "account": "a", "amount": "1"}) for _ in range(3)]
        assert seq.submit_batch(cmds) == [2, 3, 4] and seq.replicas == 1
        assert commands_in(mirror) == 4  # acknowledged: the replica holds it
        os.kill(replica.pid, signal.SIGSTOP)  # alive to the primary, answering nothing
        try:
            with pytest.raises(NotReplicated, match=r"seq 5\.\.5.*outcome is unknown") as e:
                seq.submit_batch(cmds[:1])
            assert e.value.seqs == [5]
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        assert commands_in(client) == 5  # retried while waiting: sequenced once
        assert seq.submit_batch(cmds[:1]) == [6]
        wait_until(lambda: commands_in(mirror) == 6, "the replica never caught up")
        # without a replica there is nothing to wait for (the default asks the server)
        assert Sequencer(client, replicas=0).submit(cmds).sequenced == 3
    finally:
        stop_pid(replica.pid, timeout=10)


def test_a_retried_call_on_another_connection_still_waits_for_the_replica(
        redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """redis-py resends a pipeline on a new connection after a lost reply: the script then
    answers from its record. WAIT is documented to count only its own connection's writes,
    so the retried call touches its record (a write after the first call's), and the WAIT
    covers them on any server. (The Redis 7.0 here also waits on a connection that wrote
    nothing, so this test shows the retried call waits, not that the touch is needed.)"""
    import os
    import signal

    from journal.connection import connect
    from journal.sequencer import NotReplicated, Sequencer
    from journal.server import start_server, stop_pid

    from .journal_helpers import wait_until

    client = redis_server.client()
    replica = start_server(tmp_path / "replica", daemonize=False,
                           extra=["--replicaof", "127.0.0.1", str(redis_server.port)])
    try:
        mirror = connect(f"redis://127.0.0.1:{replica.port}/0")
        wait_until(lambda: mirror.info("replication").get("master_link_status") == "up",
                   "the replica never caught up with the primary")
        seq = Sequencer(client, replicas=1, patience=1.0, replica_timeout_ms=200)
        call = seq._args([seq._payload(J({"type": "deposit", "account": "a", "amount": "1"}))])
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            first = connect(redis_server.url)  # the first attempt, whose reply is lost
            seq._script(keys=call[0], args=call[1], client=first)
            with pytest.raises(NotReplicated):
                list(seq._flush([call]))  # the retry: answered from the record
        finally:
            os.kill(replica.pid, signal.SIGCONT)
        assert list(seq._flush([call])) == [[1]]
    finally:
        stop_pid(replica.pid, timeout=10)


def test_seqs_stop_where_ids_would_meet_the_next_partition(redis_server) -> None:  # type: ignore[no-untyped-def]
    from journal.sequencer import Refused, Sequencer

    client = redis_server.client()
    keys = Keys("1")
    client.hset(keys.settings, "rules", PARTITION_IDS)
    client.xadd(keys.input, {"c": b"\x80"}, id=f"{PARTITION_STRIDE - 2}-0")
    seq = Sequencer(client, keys)
    deposit = J({"type": "deposit", "account": "a", "amount": "1"})
    assert seq.submit_batch([deposit]) == [PARTITION_STRIDE - 1]  # the last id of partition 1
    with pytest.raises(Refused, match="no seqs left"):
        seq.submit_batch([deposit])
