"""Client refs within a window of journal time (rules version 3): the core and the sequencer
keep the same rule, at its edge, and neither remembers a ref for longer."""

from __future__ import annotations

from exchange import Exchange
from exchange.rules import REF_WINDOW, REF_WINDOW_MS
from journal.keys import Keys
from journal.replay import replay
from journal.sequencer import Sequencer, dedup_key, to_wire
from journal.streams import raw

from .journal_helpers import matcher_thread, ref_recorded, wait_caught_up
from .test_layout2 import deposit, market, place, rejections

K = Keys()
W = REF_WINDOW_MS


def at(cmd: tuple, seq: int, ts: int) -> tuple:
    return cmd._replace(seq=seq, ts=ts)  # type: ignore[attr-defined]


def reasons(events: list) -> list[str]:
    return [e[0] if e[0] != "order_rejected" else e[-1] for e in events]


def funded_exchange(rules: int = REF_WINDOW) -> Exchange:
    ex = Exchange()
    ex.set_rules(rules, 0)
    ex.apply(at(market(), 1, 0))
    ex.apply(at(deposit("a", "100000"), 2, 0))
    return ex


def test_a_ref_is_a_duplicate_until_the_window_passes_counted_from_first_use() -> None:
    ex = funded_exchange()
    r1 = place("a", "BACK", "3", "1", ref="r1")
    t0 = 1_000
    assert reasons(ex.apply(at(r1, 3, t0))) == ["order_accepted"]
    assert reasons(ex.apply(at(r1, 4, t0 + W - 1))) == ["DUPLICATE_REF"]  # the edge: < W
    # a duplicate does not start a new window: at t0 + W the ref is new again
    assert reasons(ex.apply(at(r1, 5, t0 + W))) == ["order_accepted"]
    assert reasons(ex.apply(at(r1, 6, t0 + 2 * W - 1))) == ["DUPLICATE_REF"]
    assert reasons(ex.apply(at(r1, 7, t0 + 2 * W))) == ["order_accepted"]
    # another account's r1 is its own
    ex.apply(at(deposit("b", "1000"), 8, t0 + 2 * W))
    assert reasons(ex.apply(at(place("b", "BACK", "3", "1", ref="r1"), 9, t0 + 2 * W))) == [
        "order_accepted"]


def test_the_core_forgets_refs_older_than_the_window_and_snapshots_keep_the_rest() -> None:
    ex = funded_exchange()
    seq = 3
    for i in range(1000):
        ex.apply(at(place("a", "BACK", "3", "1", ref=f"old{i}"), seq, 10_000 + i))
        seq += 1
    assert len(ex._refs) == 1000
    ex.apply(at(place("a", "BACK", "3", "1", ref="late"), seq, 10_500 + W))
    seq += 1
    assert len(ex._refs) == 500  # those first used at or before 10,500 are gone
    copy = Exchange.restore(ex.snapshot())
    assert copy.snapshot() == ex.snapshot()
    for ts in (10_998 + W, 10_999 + W, 11_000 + W):  # old999 expires at 10,999 + W
        a = reasons(ex.apply(at(place("a", "BACK", "3", "1", ref="old999"), seq, ts)))
        b = reasons(copy.apply(at(place("a", "BACK", "3", "1", ref="old999"), seq, ts)))
        assert a == b
        seq += 1
    assert reasons(ex.apply(at(place("a", "BACK", "3", "1", ref="x"), seq, 10_998 + W))) == [
        "order_accepted"]
    assert copy.snapshot() != ex.snapshot()


def test_refs_from_before_the_window_count_as_first_used_when_it_began() -> None:
    ex = funded_exchange(rules=2)
    r1 = place("a", "BACK", "3", "1", ref="r1")
    assert reasons(ex.apply(at(r1, 3, 5))) == ["order_accepted"]
    assert reasons(ex.apply(at(r1, 4, 10 * W))) == ["DUPLICATE_REF"]  # forever, under 2
    ex.set_rules(3, 20 * W)
    assert reasons(ex.apply(at(r1, 5, 21 * W - 1))) == ["DUPLICATE_REF"]
    assert reasons(ex.apply(at(r1, 6, 21 * W))) == ["order_accepted"]


def key_of(cmd: tuple) -> str:
    return dedup_key(to_wire(cmd))


def test_the_sequencer_keeps_the_same_window_and_replay_agrees(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    r1 = place("alice", "BACK", "3", "5", ref="r1")
    with matcher_thread(client, snapshot_every=10**9):
        assert seq.submit_batch([market(), deposit("alice"), r1]) == [1, 2, 3]
        t0 = int(raw(client).zscore(K.recent_refs, key_of(r1)))
        # time moves only through the journal: the clock key puts the next entry's time on
        client.set(K.clock, t0 + W - 1)
        assert seq.submit_batch([r1, deposit("bob")]) == [0, 4]  # the edge: a duplicate
        client.set(K.clock, t0 + W)
        assert seq.submit_batch([r1]) == [5]  # new again, at exactly the window
        assert int(raw(client).zscore(K.recent_refs, key_of(r1))) == t0 + W
        wait_caught_up(client)
    assert rejections(client) == []  # the core agrees: seq 5 is a first use
    assert raw(client).zcard(K.recent_refs) == 1
    # the core, applied to the same journal, made the same decisions
    assert replay(client, source="none", verify=True).verified
    client.set(K.clock, t0 + 3 * W)
    seq.submit_batch([deposit("carol")])
    assert raw(client).zcard(K.recent_refs) == 0  # nothing older than the window is kept


def test_a_journal_upgraded_to_the_window_keeps_its_old_refs_one_window(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    client.hset(K.settings, "rules", 2)  # a journal under the older rules
    r1 = place("alice", "BACK", "3", "5", ref="r1")
    with matcher_thread(client, snapshot_every=10**9):
        assert seq.submit_batch([market(), deposit("alice"), r1]) == [1, 2, 3]
        assert client.sismember(K.refs, key_of(r1))
        from journal.rules import upgrade

        upgrade(client, K, 3)
        assert seq.submit_batch([r1, deposit("bob")]) == [0, 4]  # the window begins here
        since = int(client.hget(K.settings, "refs_since"))
        client.set(K.clock, since + W - 1)
        assert seq.submit_batch([r1]) == [0]
        client.set(K.clock, since + W)
        assert seq.submit_batch([r1]) == [5]
        assert not client.exists(K.refs)  # the older rules' set is gone
        assert ref_recorded(client, key_of(r1))
        wait_caught_up(client)
    assert rejections(client) == []
    assert replay(client, source="none", verify=True).verified


# ---------------------------------------------------------------- finished markets

def settle(mid: str = "1.1") -> tuple:
    from .test_layout2 import cmd

    return cmd({"type": "settle", "market": mid, "winners": [1]})


def test_a_finished_market_leaves_the_state_after_the_grace() -> None:
    from exchange.rules import FINISHED_GRACE_MS as G

    ex = funded_exchange()
    ex.apply(at(place("a", "BACK", "3", "1"), 3, 10))
    ex.apply(at(settle(), 4, 1_000))
    other = market("2.2")
    ex.apply(at(other, 5, 1_000 + G - 1))  # within the grace: still there, and settled
    assert ex.market("1.1") is not None and ex.market("1.1").settled
    assert reasons(ex.apply(at(settle(), 6, 1_000 + G - 1))) == ["INVALID_STATUS"]
    copy = Exchange.restore(ex.snapshot())  # the list of finished markets is state
    for e in (ex, copy):
        assert reasons(e.apply(at(market("3.3"), 7, 1_000 + G))) == ["market_created"]
        assert e.market("1.1") is None and e.market("2.2") is not None
        assert reasons(e.apply(at(place("a", "BACK", "3", "1"), 8, 1_000 + G))) == [
            "UNKNOWN_MARKET"]
    assert copy.snapshot() == ex.snapshot()
    # under the older rules a finished market stays
    old = funded_exchange(rules=2)
    old.apply(at(settle(), 3, 0))
    old.apply(at(market("2.2"), 4, 10 * G))
    assert old.market("1.1") is not None


def test_a_duplicate_is_answered_with_the_seq_its_ref_was_first_sequenced_at(
        redis_server) -> None:  # type: ignore[no-untyped-def]
    """A client retrying a request learns where the first one went (the gateway answers it
    with that command's outcome): across calls, within one call, and through a retried call's
    record; once the window has passed, the ref and its seq are forgotten together."""
    client = redis_server.client()
    s = Sequencer(client)
    r1, r2 = place("a", "BACK", "3", "1", ref="r1"), place("a", "BACK", "3", "1", ref="r2")
    assert s.submit_answers([market(), deposit("a", "100"), r1]) == [1, 2, 3]
    assert s.submit_answers([r2, r1, r2, place("b", "BACK", "3", "1", ref="r1")]) == [
        4, -3, -4, 5]
    assert s.submit_batch([r1, r2]) == [0, 0]  # the plain answer is unchanged
    assert raw(client).hget(K.ref_seqs, dedup_key(to_wire(r2))) == b"4"
    # a call retried after a lost reply gets its record, originals included
    keys, args = s._args([s._payload(r1), s._payload(place("c", "LAY", "3", "1", ref="x"))])
    first = s._script(keys=keys, args=args)
    from journal.sequencer import answers_of

    assert answers_of(first) == answers_of(s._script(keys=keys, args=args)) == [-3, 6]
    # past the window, the seqs go with the refs
    raw(client).zadd(K.recent_refs, {dedup_key(to_wire(r1)): 0, dedup_key(to_wire(r2)): 0})
    assert s.submit_answers([deposit("a", "1")]) == [7]
    assert raw(client).hget(K.ref_seqs, dedup_key(to_wire(r1))) is None
    assert raw(client).hget(K.ref_seqs, dedup_key(to_wire(r2))) is None
    assert s.submit_answers([r1]) == [8]
