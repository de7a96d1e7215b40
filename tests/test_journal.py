"""The journal against a real Redis: sequencer, matcher, fencing, snapshots, replay."""

from __future__ import annotations

import msgpack
import pytest

from exchange import Exchange, SnapshotError
from exchange.commands import decode
from exchange.named import named
from exchange.rules import LATEST as LATEST_RULES
from journal.keys import Keys
from journal.replay import replay
from journal.scripts import script
from journal.sequencer import Sequencer, seqs_of
from journal.snapshots import SnapshotInfo, SnapshotStore
from journal.status import status
from journal.streams import last_id, parse_id, raw
from journal.wire import decode_events
from tools.sources.workload import core_workload

from .journal_helpers import matcher_thread, output_lines, unnumbered, wait_caught_up, wait_until

K = Keys()


def cmd(obj: dict) -> tuple:
    c = decode(obj, 0, 0)
    assert c[0] != "invalid", obj
    return c


MARKET = cmd({"type": "create_market", "market": "1.1", "runners": [1, 2]})


def deposit(account: str, amount: str = "100") -> tuple:
    return cmd({"type": "deposit", "account": account, "amount": amount})


def place(account: str, side: str, price: str, stake: str, **extra: str) -> tuple:
    return cmd({"type": "place", "account": account, "market": "1.1", "runner": 1,
                "side": side, "price": price, "stake": stake, **extra})


# ---------------------------------------------------------------------------- sequencer


def test_sequencer_numbers_densely_from_one_and_stamps_time(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    result = seq.submit([deposit(f"a{i}") for i in range(1234)])
    assert (result.sequenced, result.first_seq, result.last_seq) == (1234, 1, 1234)
    rows = raw(client).xrange(K.input)
    # one entry per call of up to 500 commands, id <last seq>-0, fields ts, n, r, c (layout 2)
    assert [parse_id(eid) for eid, _ in rows] == [(500, 0), (1000, 0), (1234, 0)]
    assert [f[::2] for _, f in rows] == [[b"ts", b"n", b"r", b"c"]] * 3
    assert [int(f[3]) for _, f in rows] == [500, 500, 234]
    assert [int(f[5]) for _, f in rows] == [LATEST_RULES] * 3  # a new journal: the newest
    accounts = [c["account"] for _, f in rows for c in msgpack.unpackb(f[7])]
    assert accounts == [f"a{i}" for i in range(1234)]
    times = [int(f[1]) for _, f in rows]
    assert times == sorted(times) and times[0] > 1_600_000_000_000
    assert client.hget(K.settings, "layout") == b"2"


def test_a_command_sent_alone_is_an_entry_of_one(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    assert seq.submit_batch([deposit("a")]) == [1]
    assert seq.submit_batch([deposit("b"), deposit("c")]) == [2, 3]
    rows = raw(client).xrange(K.input)
    assert [(eid, int(f[3])) for eid, f in rows] == [(b"1-0", 1), (b"3-0", 2)]


def test_calls_are_bounded_by_count_and_bytes(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    seq.BATCH_BYTES = 2000
    big = [place("alice", "BACK", "3", "5", ref="r" * 60 + f"{i:04d}") for i in range(100)]
    seq.submit(big)
    sizes = [len(f[7]) for _, f in raw(client).xrange(K.input)]
    assert len(sizes) > 3 and all(s <= 2000 + 5 for s in sizes)
    with pytest.raises(ValueError):
        seq.submit_batch([deposit("a")] * (Sequencer.BATCH + 1))


def test_retried_batch_is_not_sequenced_twice(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    keys, args = seq._args([seq._payload(deposit("a")), seq._payload(deposit("b"))])
    first = seq._script(keys=keys, args=args)
    again = seq._script(keys=keys, args=args)  # what a redis-py retry after a drop sends
    assert seqs_of(first) == seqs_of(again) == [1, 2]
    assert client.xlen(K.input) == 1


def test_duplicate_client_ref_is_not_sequenced(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    r1 = seq.submit([place("alice", "BACK", "3", "5", ref="r-1")])
    r2 = seq.submit([place("alice", "BACK", "3", "5", ref="r-1"),
                     place("bob", "BACK", "3", "5", ref="r-1")])
    assert (r1.sequenced, r2.sequenced, r2.duplicates) == (1, 1, 1)
    assert r2.first_seq == 2


def test_foreign_entry_does_not_wedge_sequencing(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    seq.submit([MARKET])
    client.xadd(K.input, {"junk": b"\xff\x00not msgpack"}, id="2-0")
    client.xadd(K.input, {"c": b"\xc1"}, id="*")  # an auto id: a huge seq
    foreign = parse_id(last_id(client, K.input))[0]
    after = seq.submit([deposit("alice")])
    assert after.first_seq == foreign + 1


# ---------------------------------------------------------------------------- matcher


def test_matcher_rejects_undecodable_entries_and_carries_on(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    with matcher_thread(client):
        seq.submit([MARKET, deposit("alice")])
        client.xadd(K.input, {"ts": b"1", "c": b"\xc1\xc1"}, id="3-0")  # not msgpack
        client.xadd(K.input, {"c": msgpack.packb({"type": "place", "stake": [1]})}, id="4-0")
        client.xadd(K.input, {"c": msgpack.packb(["not", "a", "map"])}, id="5-0")
        nxt = seq.submit([place("alice", "BACK", "3", "5")])
        assert nxt.first_seq == 6
        wait_caught_up(client)
    lines = output_lines(client)
    rejected = [ln for ln in lines if '"order_rejected"' in ln]
    assert len(rejected) == 3 and all('"MALFORMED"' in ln for ln in rejected)
    assert '"seq": 3' in rejected[0] and '"seq": 5' in rejected[2]
    assert '"order_accepted", "seq": 6' in lines[-1]
    assert replay(client, source="none", verify=True).verified


def test_output_entry_per_input_entry_even_without_events(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    with matcher_thread(client):
        seq.submit([MARKET])
        seq.submit([cmd({"type": "market_status", "market": "1.1", "status": "OPEN"})])
        wait_caught_up(client)
    rows = raw(client).xrange(K.output)
    assert [r[0] for r in rows] == [b"1-0", b"2-0"]
    assert decode_events(dict(zip(rows[1][1][::2], rows[1][1][1::2]))[b"e"]) == []


def test_second_matcher_waits_as_standby_and_writes_nothing(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    with matcher_thread(client) as first:
        seq.submit([MARKET, deposit("alice")])
        wait_caught_up(client)
        with matcher_thread(redis_server.client()) as second:
            wait_until(lambda: second.progress.state == "standby",
                       "the second matcher never waited as a standby")
            seq.submit([deposit("bob")])
            wait_caught_up(client)
            assert second.progress.state == "standby"
            assert second.progress.commands == 0
            assert first.progress.commands == 3
    assert replay(client, source="none", verify=True).verified


def test_stale_commit_is_fenced_and_writes_nothing(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = raw(redis_server.client())
    commit = script(client, "commit")
    lease = script(client, "lease")
    assert lease(keys=[K.lease], args=["acquire", "me", 5000]) == 1
    two = ["1-0", 1, b"\x90", "", "", "2-0", 1, b"\x90", "", ""]  # (id, ts, e, part, parts)
    ok = commit(keys=[K.output, K.lease], args=["me", 5000, "0-0", 2, *two])
    assert ok == [b"OK"]
    # retried after a dropped connection: recognised, not doubled
    again = commit(keys=[K.output, K.lease], args=["me", 5000, "0-0", 2, *two])
    assert again == [b"ALREADY"]
    # a matcher that believes the output ends elsewhere is fenced
    stale = commit(keys=[K.output, K.lease], args=["me", 5000, "1-0", 2, "2-0", 1, b"\x90",
                                                    "", "", "3-0", 1, b"\x90", "", ""])
    assert stale == [b"FENCED", b"2-0"]
    # a matcher without the lease writes nothing
    other = commit(keys=[K.output, K.lease], args=["you", 5000, "2-0", 1, "3-0", 1,
                                                    b"\x90", "", ""])
    assert other == [b"LEASE", b"me"]
    assert client.xlen(K.output) == 2


def test_heartbeat_releases_delayed_orders_and_replays_the_same(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    market = cmd({"type": "create_market", "market": "1.1", "runners": [1, 2],
                  "bet_delay_ms": 300})
    with matcher_thread(client):
        seq.submit([market, deposit("alice"), deposit("bob"),
                    place("bob", "LAY", "3", "5", persistence="PERSIST"),
                    cmd({"type": "turn_in_play", "market": "1.1"}),
                    place("alice", "BACK", "3", "5")])
        wait_until(lambda: any('"trade"' in ln for ln in output_lines(client)),
                   "the delayed order never reached the book", pause=0.05)
        wait_caught_up(client)
    rows = raw(client).xrange(K.input)
    kinds = [c["type"] for _, f in rows for c in msgpack.unpackb(dict(zip(f[::2], f[1::2]))[b"c"])]
    assert kinds[:6] == ["create_market", "deposit", "deposit", "place", "turn_in_play", "place"]
    assert set(kinds[6:]) == {"heartbeat"} and 1 <= len(kinds[6:]) <= 10
    assert replay(client, source="none", verify=True).verified


def test_snapshots_recovery_and_verified_replay(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    cmds = unnumbered(core_workload(6000))
    seq = Sequencer(client)
    with matcher_thread(client, snapshot_every=2500):
        seq.submit(cmds[:2500])
        wait_caught_up(client)
        seq.submit(cmds[2500:4000])
        wait_caught_up(client)
    snaps = [s.seq for s in SnapshotStore(client).list()]
    assert snaps == [4000, 2500]  # periodic, and at the clean stop
    with matcher_thread(client, snapshot_every=10**9) as m:  # recovers from the snapshot
        seq.submit(cmds[4000:])
        wait_caught_up(client)
        assert m.progress.snapshot_seq == 4000
    expected = Exchange()
    for i, c in enumerate(cmds, 1):
        expected.apply(named(c)._replace(seq=i, ts=0))
    full = replay(client, source="none", verify=True)
    part = replay(client, source=str(snaps[1]), verify=True)
    assert full.verified and part.verified
    assert full.state_hash == part.state_hash
    assert full.commands == 6000 and part.commands == 6000 - snaps[1]
    st = status(client)
    assert (st.last_input_seq, st.last_output_seq, st.lag) == (6000, 6000, 0)


def tampered(client, change) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the output stream with ``change(fields)`` applied to entry 4-0's fields."""
    rows = raw(client).xrange(K.output)
    client.delete(K.output)
    for eid, fields in rows:
        f = dict(zip(fields[::2], fields[1::2]))
        if eid == b"4-0":
            change(f)
        client.xadd(K.output, f, id=eid)


def test_verify_reports_the_first_divergence_at_its_seq(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    with matcher_thread(client):
        seq.submit([MARKET, deposit("alice"), deposit("bob"), place("bob", "LAY", "3", "5")])
        seq.submit([deposit("carol")])
        wait_caught_up(client)
    assert [r[0] for r in raw(client).xrange(K.output)] == [b"4-0", b"5-0"]

    def bob_gets_a_penny_more(f: dict) -> None:  # the deposit of seq 3, inside entry 4-0
        events = decode_events(f[b"e"])
        assert events[2]["seq"] == 3 and events[2]["account"] == "bob"
        events[2]["amount"] += 1
        f[b"e"] = msgpack.packb(events)

    tampered(client, bob_gets_a_penny_more)
    result = replay(client, source="none", verify=True)
    assert not result.verified
    d = result.divergence
    assert d is not None and (d.entry, d.seq) == ("4-0", 3)
    assert d.recorded[0]["amount"] == d.replayed[0]["amount"] + 1


@pytest.mark.parametrize("change, why", [
    (lambda f: f.update({b"extra": b"1"}), "fields"),
    (lambda f: f.update({b"e": msgpack.packb(decode_events(f[b"e"]) + [{"seq": 4}])}),
     "different events"),
    (lambda f: f.update({b"e": b"\xc1 not msgpack"}), "not msgpack"),
    (lambda f: f.update({b"ts": b"1"}), "recorded time"),
])
def test_verify_compares_whole_entries(redis_server, change, why) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    with matcher_thread(client):
        Sequencer(client).submit([MARKET, deposit("alice"), deposit("bob"), deposit("carol")])
        wait_caught_up(client)
    assert replay(client, source="none", verify=True).verified
    tampered(client, change)
    result = replay(client, source="none", verify=True)
    assert not result.verified and result.divergence is not None
    assert result.divergence.entry == "4-0" and why in result.divergence.why


def test_replay_to_a_seq_stops_there(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    with matcher_thread(client):
        Sequencer(client).submit([MARKET, deposit("alice"), deposit("bob")])
        wait_caught_up(client)
    result = replay(client, source="none", to=2, verify=True)
    assert result.verified and result.to_seq == 2 and result.commands == 2
    ex = Exchange()
    ex.apply(decode({"type": "create_market", "market": "1.1", "runners": [1, 2]}, 1, 0))
    with pytest.raises(Exception):
        replay(client, source="999")


def test_output_payload_is_the_events_as_maps() -> None:
    from exchange.codec import wire_event
    from journal.wire import encode_events

    ex = Exchange()
    for i, c in enumerate(core_workload(3000), 1):
        events = ex.apply(named(c)._replace(seq=i, ts=0))
        payload = encode_events(events)
        assert payload == msgpack.packb([wire_event(e) for e in events])
        assert decode_events(payload) == [wire_event(e) for e in events]


def test_snapshot_on_request_is_taken_in_the_background(redis_server) -> None:  # type: ignore[no-untyped-def]
    from journal.runner import request_snapshot

    client = redis_server.client()
    with matcher_thread(client, snapshot_every=10**9) as m:
        Sequencer(client).submit(unnumbered(core_workload(3000)))
        wait_caught_up(client)
        seq = request_snapshot(client, timeout=30)
        assert seq == 3000
        stored = SnapshotStore(client).get(3000)
        assert stored is not None
        ex = Exchange.restore(stored[1])
        assert ex.last_seq == 3000 and ex.state_hash() == stored[0].hash
        wait_until(lambda: m.progress.snapshot_seq == 3000,  # the matcher reaps its child
                   "the matcher never recorded its snapshot at 3000", pause=0.05)
    assert replay(client, source="3000", verify=True).verified


def saved_at_1000_then_2000_applied(store: SnapshotStore) -> tuple[Exchange, SnapshotInfo]:
    """An exchange that applied 2,000 workload commands, with a snapshot saved at 1,000."""
    ex = Exchange()
    cmds = core_workload(2000)
    for i, c in enumerate(cmds[:1000], 1):
        ex.apply(named(c)._replace(seq=i, ts=0))
    older = store.save(1000, ex.snapshot())
    for i, c in enumerate(cmds[1000:], 1001):
        ex.apply(named(c)._replace(seq=i, ts=0))
    return ex, older


def test_a_damaged_snapshot_is_never_trusted(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    store = SnapshotStore(client)
    ex, older = saved_at_1000_then_2000_applied(store)
    store.save(2000, ex.snapshot())
    assert store.latest()[0].seq == 2000
    blob = client.get(K.snapshot_blob(2000))
    client.set(K.snapshot_blob(2000), blob[:-10] + b"0123456789")  # bit rot
    info, data = store.latest()
    assert info == older and Exchange.restore(data).state_hash() == older.hash
    assert store.get(2000) is None


def test_a_snapshot_of_an_older_version_is_passed_over(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Version 1 snapshots lack the positions' stakes (version 2): intact but unreadable, so
    recovery takes an older readable one, or replays from the start, rather than failing."""
    client = redis_server.client()
    store = SnapshotStore(client)
    ex, older = saved_at_1000_then_2000_applied(store)
    state = msgpack.unpackb(ex.snapshot())
    state[1] = 1
    old_format = msgpack.packb(state)
    with pytest.raises(SnapshotError, match="not a snapshot this version reads"):
        Exchange.restore(old_format)
    store.save(2000, old_format)
    assert [s.seq for s in store.list()] == [2000, 1000]
    info, data = store.latest()
    assert info == older and Exchange.restore(data).state_hash() == older.hash
    assert store.get(2000) is None
    # the matcher, rebuilt to the same seq, saves its own snapshot there: it replaces the old
    saved = store.save(2000, ex.snapshot())
    assert saved.hash == ex.state_hash() and [s.seq for s in store.list()] == [2000, 1000]
    assert store.latest()[0] == saved and store.get(2000)[0] == saved
    assert store.save(2000, ex.snapshot()) == saved  # and is kept from then on
    newer = list(range(3000, 3000 + SnapshotStore.KEEP - 1))
    store.client.hset(store.keys.archive, "snapshots", 2000)  # as if archived: free to go
    for seq in newer:  # pruning drops the oldest entries, and leaves the replacement intact
        store.save(seq, ex.snapshot())
    assert [s.seq for s in store.list()] == [*reversed(newer), 2000]
    assert all(store.get(s.seq) is not None for s in store.list())
