"""Journal layout 2 against a real Redis, point by point of docs/journal.md: layout-1
journals still read, hostile entries answered as documented, exact ids, dedup, answers in
pieces, and a newer layout refused. (Faults and big states: tests/test_layout2_faults.py.)"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
import redis

from exchange.commands import decode, to_wire
from exchange.errors import JournalError, UntrustedSnapshot
from journal.consumer import GroupConsumer
from journal.keys import Keys
from journal.replay import replay
from journal.sequencer import Sequencer, dedup_key, seqs_of
from journal.signing import load_signer
from journal.snapshots import SnapshotStore, _info
from journal.streams import field, last_id, parse_id, raw
from journal.wire import read_entries

from .journal_helpers import (
    answered_ids,
    matcher_thread,
    output_events,
    ref_recorded,
    wait_caught_up,
    wait_until,
)
from .test_consumer import ListSink

K = Keys()
ROOT = Path(__file__).resolve().parent.parent
LAYOUT1 = ROOT / "fixtures" / "journals" / "layout1.jsonl.gz"
MAX_ID = 2**64 - 1


def cmd(obj: dict) -> tuple:
    c = decode(obj, 0, 0)
    assert c[0] != "invalid", obj
    return c


def market(mid: str = "1.1") -> tuple:
    return cmd({"type": "create_market", "market": mid, "runners": [1, 2]})


def deposit(account: str, amount: str = "100") -> tuple:
    return cmd({"type": "deposit", "account": account, "amount": amount})


def place(account: str, side: str, price: str, stake: str, mid: str = "1.1",
          **extra: str) -> tuple:
    return cmd({"type": "place", "account": account, "market": mid, "runner": 1,
                "side": side, "price": price, "stake": stake, **extra})


def close(mid: str = "1.1") -> tuple:
    return cmd({"type": "market_status", "market": mid, "status": "CLOSED"})


def wire(c: tuple) -> dict:
    """A command's stream form (what an item of ``c`` holds)."""
    return to_wire(c)


def rows_of(client, key: str) -> list[tuple[bytes, list[bytes]]]:  # type: ignore[no-untyped-def]
    return raw(client).xrange(key)


def fields_of(row: tuple[bytes, list[bytes]]) -> dict[bytes, bytes]:
    return dict(zip(row[1][::2], row[1][1::2]))


def rejections(client) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    return [(e["seq"], e["reason"]) for e in output_events(client)
            if e["type"] == "order_rejected"]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          env=dict(os.environ), capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------ 1. layout 1 still reads


def load_layout1(client) -> list[dict]:  # type: ignore[no-untyped-def]
    """Load the released version's journal (fixtures/journals/make_layout1.py) into Redis,
    as that version left it: the streams with their recorded ids and fields, in order, and
    the snapshot blobs. Returns the fixture's rows."""
    rows = [json.loads(line) for line in gzip.open(LAYOUT1, "rt", encoding="utf-8")]
    streams = {"in": K.input, "out": K.output, "snapshots": K.snapshots}
    pipe = raw(client).pipeline(transaction=False)
    for row in rows:
        values = [base64.b64decode(x) for x in row["fields"]]
        if row["key"].startswith("blob:"):
            pipe.set(K.snapshot_blob(int(row["key"][5:])), values[0])
        else:
            pipe.execute_command("XADD", streams[row["key"]], row["id"], *values)
    pipe.execute()
    return rows


def sign_old_snapshots(client) -> None:  # type: ignore[no-untyped-def]
    """Sign the released version's snapshots (unsigned: no longer trusted, docs/journal.md)
    with this machine's key, their index entries otherwise as they were: so that the old
    state format is still shown to restore."""
    r = raw(client)
    entries = r.xrange(K.snapshots)
    r.delete(K.snapshots)
    signer = load_signer()
    for eid, fields in entries:
        info = _info(eid, fields)
        signed = signer.sign_snapshot(K.partition, info.seq, info.hash, info.size)
        r.xadd(K.snapshots, {**dict(zip(fields[::2], fields[1::2])), b"sig": signed.signature,
                             b"key_id": signed.key_id}, id=eid)


def test_a_layout1_journal_verifies_from_scratch_and_from_each_snapshot(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    load_layout1(client)
    ins = rows_of(client, K.input)
    # the fixture is layout 1 as promised: one command per entry, no `n`, one foreign id
    assert all(b"n" not in fields_of(r) for r in ins)
    assert [r[0] for r in ins if not r[0].endswith(b"-0")] == [b"702-7"]
    assert client.hget(K.settings, "layout") is None
    snaps = [s.seq for s in SnapshotStore(client).list()]
    assert snaps == [1500, 509]
    # its snapshots are unsigned: passed over for the journal from the start, or refused
    load_signer()  # this machine's key pair, as its first matcher makes it
    unsigned = replay(client, verify=True)
    assert unsigned.verified and (unsigned.from_seq, unsigned.to_seq) == (0, 1500)
    assert sorted(unsigned.untrusted) == [509, 1500]
    with pytest.raises(UntrustedSnapshot, match="seq 1500 is not trusted: unsigned"):
        replay(client, source="1500", verify=True)
    sign_old_snapshots(client)
    full = replay(client, source="none", verify=True)
    assert full.verified, full.divergence
    assert (full.from_seq, full.to_seq) == (0, 1500)
    for s in snaps:
        part = replay(client, source=str(s), verify=True)
        assert part.verified, (s, part.divergence)
        assert (part.from_seq, part.to_seq) == (s, 1500)
        assert part.state_hash == full.state_hash
    # a reader never writes the layout
    assert client.hget(K.settings, "layout") is None


def test_a_layout1_journal_is_recovered_then_continued_in_layout2(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    load_layout1(client)
    sign_old_snapshots(client)
    before = rows_of(client, K.output)
    with matcher_thread(client, snapshot_every=10**9) as m:
        wait_until(lambda: m.progress.state == "running", "the matcher never recovered")
        assert m.progress.snapshot_seq == 1500 and m.progress.replayed == 0
        assert m.progress.last_seq == 1500
        # recovered: it wrote nothing, not even the layout (only a new version's write does)
        assert rows_of(client, K.output) == before
        assert client.hget(K.settings, "layout") is None
        got = Sequencer(client).submit([
            market("9.9"), deposit("new-a"), deposit("new-b"),
            place("new-a", "BACK", "3", "5", mid="9.9"),
            place("new-b", "LAY", "3", "5", mid="9.9"),
        ])
        assert (got.first_seq, got.last_seq) == (1501, 1505)
        assert client.hget(K.settings, "layout") == b"2"
        Sequencer(client).submit([deposit("acct-0001", "1")])  # an account of the old part
        wait_caught_up(client)
    after = rows_of(client, K.output)
    assert after[:len(before)] == before, "the layout-1 answers changed"
    ins = rows_of(client, K.input)
    assert [r[0] for r in ins[-2:]] == [b"1505-0", b"1506-0"]
    assert [fields_of(r)[b"n"] for r in ins[-2:]] == [b"5", b"1"]
    # a journal from before rules versions stays under version 1
    assert [fields_of(r)[b"r"] for r in ins[-2:]] == [b"1", b"1"]
    assert client.hget(K.settings, "rules") == b"1"
    assert answered_ids(client) == [r[0] for r in ins]
    new = [(e["seq"], e["type"]) for e in output_events(client) if e["seq"] > 1500]
    assert ("trade" in {t for _, t in new}) and new[0] == (1501, "market_created")
    old_balance = [e["balance"] for e in output_events(client)
                   if e["type"] == "funds_changed" and e["account"] == "acct-0001"]
    assert len(old_balance) >= 2 and old_balance[-1] > 100  # it kept its layout-1 money
    full = replay(client, source="none", verify=True)
    assert full.verified, full.divergence
    assert full.to_seq == 1506
    for s in (509, 1500):
        assert replay(client, source=str(s), verify=True).verified


# ------------------------------------------------------------------ 2. hostile entries


def test_hostile_entries_are_answered_and_the_matcher_carries_on(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    r = raw(client)
    seq = Sequencer(client)
    dep = wire(deposit("x"))
    hb = {"type": "heartbeat"}
    with matcher_thread(client):
        seq.submit([market(), deposit("alice")])  # entry 2-0
        wait_caught_up(client)
        t0 = int(fields_of(rows_of(client, K.input)[0])[b"ts"])
        hostile: list[tuple[str, list[object]]] = [
            # n disagrees with the items in c: every seq of the entry (3..5) is BAD_ENTRY
            ("5-0", ["ts", t0, "n", "3", "c", msgpack.packb([dep, dep])]),
            # c not msgpack: 6, 7
            ("7-0", ["ts", "abc", "n", "2", "c", b"\xc1\xc1"]),
            # an item whose map has a key that is not text: the whole array unreadable: 8, 9
            ("9-0", ["ts", t0 + 1, "n", "2", "c", msgpack.packb([dep, {1: "x"}])]),
            # n not a number, zero, negative, too long: just the last seq
            ("10-0", ["ts", t0, "n", "x1", "c", msgpack.packb([dep])]),
            ("11-0", ["ts", 2**63, "n", "0", "c", msgpack.packb([])]),
            ("12-0", ["ts", t0, "n", "-1", "c", msgpack.packb([dep])]),
            ("13-0", ["ts", t0, "n", "10000000", "c", msgpack.packb([dep])]),
            # n claiming seqs already used (20 - 9 = 11 < 13 applied): just seq 20
            ("20-0", ["ts", t0, "n", "9", "c", msgpack.packb([dep] * 9)]),
            # a foreign id: MALFORMED at its id's seq, not applied
            ("20-5", ["ts", t0 + 50, "n", "1", "c", msgpack.packb([dep])]),
            # n above 10,000 (all its seqs new): just seq 30010
            ("30010-0", ["ts", t0, "n", "10001", "c", msgpack.packb([hb] * 10001)]),
            # n = 10,000 exactly, last - n = applied exactly: valid, seqs 30011..40010
            ("40010-0", ["ts", t0, "n", "10000",
                         "c", msgpack.packb([hb] * 9999 + [wire(deposit("bob"))])]),
            # a valid entry with an item that is not a command: that seq is MALFORMED
            ("40012-0", ["ts", t0, "n", "2",
                         "c", msgpack.packb([wire(deposit("carol")), {"type": "nope"}])]),
            # layout 1 entries in the middle: one command; bytes not msgpack are MALFORMED
            ("40013-0", ["ts", t0, "c", msgpack.packb(wire(deposit("dave")))]),
            ("40014-0", ["ts", t0, "c", b"\xc1"]),
            # r (the rules version) not a number: every seq BAD_ENTRY
            ("40016-0", ["ts", t0, "n", "2", "r", "x", "c", msgpack.packb([dep, dep])]),
            # bytes after the array; an array cut short: every seq BAD_ENTRY
            ("40017-0", ["ts", t0, "n", "1", "c", msgpack.packb([dep]) + b"\x00"]),
            ("40019-0", ["ts", t0, "n", "2",
                         "c", b"\x92" + msgpack.packb(dep) + msgpack.packb(dep)[:-3]]),
            # rules never go back: under version 2 (a new journal's), an r of 1 keeps 2,
            # where an account id with a control character is MALFORMED
            ("40020-0", ["ts", t0, "n", "1", "r", "1",
                         "c", msgpack.packb([wire(deposit("eve")) | {"account": "e\x01ve"}])]),
        ]
        for eid, values in hostile:
            r.execute_command("XADD", K.input, eid, *values)
        nxt = seq.submit([place("alice", "BACK", "3", "5")])
        assert nxt.first_seq == 40021
        wait_caught_up(client)
    bad = "BAD_ENTRY"
    assert rejections(client) == [
        (3, bad), (4, bad), (5, bad), (6, bad), (7, bad), (8, bad), (9, bad),
        (10, bad), (11, bad), (12, bad), (13, bad), (20, bad), (20, "MALFORMED"),
        (30010, bad), (40012, "MALFORMED"), (40014, "MALFORMED"),
        (40015, bad), (40016, bad), (40017, bad), (40018, bad), (40019, bad),
        (40020, "MALFORMED"),
    ]
    funded = [(e["seq"], e["account"]) for e in output_events(client)
              if e["type"] == "funds_changed"]
    assert funded == [(2, "alice"), (40010, "bob"), (40011, "carol"), (40013, "dave")]
    events = output_events(client)
    assert events[-1]["type"] == "order_accepted" and events[-1]["seq"] == 40021
    ins = rows_of(client, K.input)
    assert answered_ids(client) == [row[0] for row in ins]
    # time: a ts that is not a time at or after the previous entry's takes the previous one
    # (a foreign entry is not applied: its ts is not taken either)
    expected, previous = [], 0
    for eid, fields in ins:
        raw_ts = field(fields, b"ts")
        ts = int(raw_ts) if raw_ts is not None and raw_ts.isdigit() else -1
        if eid.endswith(b"-0") and previous <= ts < 2**63:
            previous = ts
        expected.append(previous)
    got = [int(fields_of(row)[b"ts"]) for row in rows_of(client, K.output)]
    assert got == expected
    # 5-0: t0; 7-0 (not a number): t0; 9-0: t0 + 1; 10-0 (earlier), 11-0 (2**63): t0 + 1
    assert expected[1:6] == [t0, t0, t0 + 1, t0 + 1, t0 + 1]
    result = replay(client, source="none", verify=True)
    assert result.verified, result.divergence
    assert result.to_seq == 40021


# ------------------------------------------------------------------ 3. exact ids


def test_sequencer_ids_are_exact_past_2_53_and_up_to_2_64(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Under rules 4 (from version 5 seqs stop at 10^14: tests/test_partitions.py), seqs run
    to 2**64 - 1, exactly, though Lua's numbers are doubles."""
    client = redis_server.client()
    client.hset(K.settings, "rules", 4)
    r = raw(client)
    seq = Sequencer(client)
    junk = ["ts", "1", "c", b"\xc1"]  # something else's entry: MALFORMED at its seq
    with matcher_thread(client):
        assert seq.submit_batch([market()]) == [1]
        r.execute_command("XADD", K.input, f"{2**53 + 1}-0", *junk)
        # 2**53 + 3 is no double: Lua's numbers would round it
        assert seq.submit_batch([deposit("a"), deposit("b")]) == [2**53 + 2, 2**53 + 3]
        assert parse_id(last_id(client, K.input)) == (2**53 + 3, 0)
        r.execute_command("XADD", K.input, f"{MAX_ID - 5}-0", *junk)
        assert seq.submit_batch([deposit("c")] * 3) == [MAX_ID - 4, MAX_ID - 3, MAX_ID - 2]
        assert parse_id(last_id(client, K.input)) == (MAX_ID - 2, 0)
        wait_caught_up(client)
        # three more would pass 2**64 - 1: the call fails and writes nothing
        refs = [place("a", "BACK", "3", "5", ref=f"r{i}") for i in range(3)]
        calls = client.keys("exch:{0}:batch:*")
        clock = client.get(K.clock)
        with pytest.raises(redis.ResponseError, match=f"no seqs left after {MAX_ID - 2}"):
            seq.submit_batch(refs)
        assert client.keys("exch:{0}:batch:*") == calls  # no call record either
        assert client.get(K.clock) == clock
        assert parse_id(last_id(client, K.input)) == (MAX_ID - 2, 0)
        assert not any(ref_recorded(client, dedup_key(wire(c))) for c in refs)
        # two fit exactly: the last seq is 2**64 - 1
        assert seq.submit_batch([deposit("d"), deposit("e")]) == [MAX_ID - 1, MAX_ID]
        assert last_id(client, K.input) == f"{MAX_ID}-0"
        with pytest.raises(redis.ResponseError, match=f"no seqs left after {MAX_ID}"):
            seq.submit_batch(refs[:1])
        assert not ref_recorded(client, dedup_key(wire(refs[0])))
        wait_caught_up(client)
    assert rejections(client) == [(2**53 + 1, "MALFORMED"), (MAX_ID - 5, "MALFORMED")]
    funded = [e["seq"] for e in output_events(client) if e["type"] == "funds_changed"]
    assert funded == [2**53 + 2, 2**53 + 3, MAX_ID - 4, MAX_ID - 3, MAX_ID - 2, MAX_ID - 1,
                      MAX_ID]
    assert answered_ids(client) == [row[0] for row in rows_of(client, K.input)]
    result = replay(client, source="none", verify=True)
    assert result.verified and result.to_seq == MAX_ID
    # the place that failed was never recorded: with room (a fresh journal) it is sequenced
    client.delete(K.input)
    assert seq.submit_batch(refs[:1]) == [1]


def test_a_foreign_entry_at_the_last_id_leaves_no_seq(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    r = raw(client)
    seq = Sequencer(client)
    assert seq.submit_batch([market()]) == [1]
    r.execute_command("XADD", K.input, f"{MAX_ID}-0", "ts", "1", "c", b"\xc1")
    calls, clock = client.keys("exch:{0}:batch:*"), client.get(K.clock)
    ref = place("alice", "BACK", "3", "5", ref="r1")
    with pytest.raises(redis.ResponseError, match=f"no seqs left after {MAX_ID}"):
        seq.submit_batch([deposit("alice"), ref])
    assert [row[0] for row in rows_of(client, K.input)] == [b"1-0", f"{MAX_ID}-0".encode()]
    assert not ref_recorded(client, dedup_key(wire(ref)))
    assert client.keys("exch:{0}:batch:*") == calls and client.get(K.clock) == clock
    # a call of duplicates only needs no seq: it still answers (nothing to append)
    seconds, micros = client.time()
    client.zadd(K.recent_refs, {dedup_key(wire(ref)): seconds * 1000 + micros // 1000})
    assert seq.submit_batch([ref]) == [0]


# ------------------------------------------------------------------ 4. dedup


def test_an_account_and_ref_is_sequenced_once_within_and_across_calls(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    a1 = place("alice", "BACK", "3", "5", ref="r1")
    b1 = place("bob", "BACK", "3", "5", ref="r1")
    assert seq.submit_batch([a1, a1, b1, a1]) == [1, 0, 2, 0]
    assert seq.submit_batch([b1, place("alice", "BACK", "3", "5", ref="r2"), a1]) == [0, 3, 0]
    # a call of duplicates only appends nothing
    assert seq.submit_batch([a1, b1]) == [0, 0]
    rows = rows_of(client, K.input)
    assert [(row[0], fields_of(row)[b"n"]) for row in rows] == [(b"2-0", b"2"), (b"3-0", b"1")]
    got = [(c["account"], c["ref"]) for row in rows for c in msgpack.unpackb(fields_of(row)[b"c"])]
    assert got == [("alice", "r1"), ("bob", "r1"), ("alice", "r2")]
    result = seq.submit([a1, deposit("x"), b1])
    assert (result.sequenced, result.duplicates, result.first_seq) == (1, 2, 4)


def test_dedup_keys_cannot_collide_through_a_separator(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    one = place("a\x00x", "BACK", "3", "5", ref="y")
    two = place("a", "BACK", "3", "5", ref="x\x00y")
    three = place("ab", "BACK", "3", "5", ref="c")
    four = place("a", "BACK", "3", "5", ref="bc")
    keys = {dedup_key(wire(c)) for c in (one, two, three, four)}
    assert len(keys) == 4
    assert seq.submit_batch([one, two, three, four]) == [1, 2, 3, 4]
    assert seq.submit_batch([one, two, three, four]) == [0, 0, 0, 0]
    assert raw(client).zcard(K.recent_refs) == 4  # a new journal: rules 3, the window


def test_a_retried_call_gets_the_first_answer_and_adds_one_entry(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    cmds = [place("alice", "BACK", "3", "5", ref="r1"), deposit("a"),
            place("alice", "BACK", "3", "5", ref="r1")]
    keys, args = seq._args([seq._payload(c) for c in cmds])
    first = seq._script(keys=keys, args=args)
    again = seq._script(keys=keys, args=args)  # what redis-py sends again after a drop
    assert seqs_of(first) == seqs_of(again) == [1, 2, 0]  # not [0, 0, 0] the second time
    assert client.xlen(K.input) == 1
    assert 55 < client.ttl(keys[3]) <= 60  # kept as long as a ref (rules 3: 60 s)
    # another call with the same commands is a new call: the ref is a duplicate now
    assert seq.submit_batch(cmds) == [0, 3, 0]
    assert client.xlen(K.input) == 2


# ------------------------------------------------------------------ 5. pieces


PIECE = 2000
"""The matchers' piece size in these tests: a few hundred events make an answer of pieces."""


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replay with the matchers' piece size: the pieces are part of the output, and
    ``replay`` (which has no piece size of its own to pass) always cuts at 16 MB."""
    import functools

    import journal.apply
    import journal.replay

    monkeypatch.setattr(journal.replay, "apply_rows",
                        functools.partial(journal.apply.apply_rows, piece_bytes=PIECE))


def check_pieces(client) -> dict[bytes, int]:  # type: ignore[no-untyped-def]
    """Every answer's pieces are as documented; returns the number of pieces per input id."""
    ins = [row[0] for row in rows_of(client, K.input)]
    outs = rows_of(client, K.output)
    counts: dict[bytes, int] = {}
    previous = (0, 0)
    i = 0
    for eid in ins:
        mine = []
        while True:
            oid, _ = outs[i]
            mine.append(outs[i])
            i += 1
            if oid == eid:
                break
        assert len(mine) >= 1
        parts = [fields_of(p) for p in mine]
        if len(mine) == 1:
            assert [f for f in mine[0][1][::2]] == [b"ts", b"e"]
        else:
            assert [int(f[b"part"]) for f in parts] == list(range(1, len(mine) + 1))
            assert {int(f[b"parts"]) for f in parts} == {len(mine)}
            assert {f[b"ts"] for f in parts} == {parts[-1][b"ts"]}
            for oid, _ in mine[:-1]:
                assert previous < parse_id(oid) < parse_id(eid), (oid, eid)
            for f in parts:
                assert len(f[b"e"]) <= PIECE
        counts[eid] = len(mine)
        previous = parse_id(eid)
    assert i == len(outs), "output entries after the last answer"
    return counts


def fill_with_pieces(client) -> int:  # type: ignore[no-untyped-def]
    """A journal whose big answers come in pieces: 300 places in one entry (each accepted),
    then a market close cancelling them all. Returns the last seq."""
    seq = Sequencer(client)
    with matcher_thread(client, piece_bytes=PIECE):
        seq.submit([market(), deposit("alice", "100000")])  # 2-0
        prices = ["2", "3", "4", "5", "6"]
        seq.submit_batch([place("alice", "BACK", prices[i % 5], "1") for i in range(300)])
        seq.submit([close()])  # 303-0
        seq.submit([deposit("bob")])  # 304-0
        return wait_caught_up(client)


@pytest.mark.usefixtures("small_pieces")
def test_big_answers_come_in_pieces_that_verify_and_consumers_join(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    assert fill_with_pieces(client) == 304
    counts = check_pieces(client)
    assert counts[b"2-0"] == 1 and counts[b"304-0"] == 1
    assert counts[b"302-0"] > 5 and counts[b"303-0"] > 5
    ids = [row[0] for row in rows_of(client, K.output)]
    assert ids[1:3] == [b"2-1", b"2-2"] and ids[counts[b"302-0"] + 1] == b"302-1"
    whole = read_entries(rows_of(client, K.output))  # one per answer, its pieces joined
    assert [e[0] for e in whole] == [2, 302, 303, 304]
    assert [e["seq"] for e in whole[1][2]] == list(range(3, 303))
    closed = whole[2][2]
    assert [e["type"] for e in closed] == ["market_status_changed"] + ["order_cancelled"] * 300
    assert sorted(e["order"] for e in closed[1:]) == list(range(3, 303))
    result = replay(client, source="none", verify=True)
    assert result.verified, result.divergence
    for to in (150, 303):  # up to a seq inside an answer in pieces
        assert replay(client, source="none", to=to, verify=True).verified
    # a consumer reading a few entries at a time gets every seq once, joined
    sink = ListSink()
    GroupConsumer(client, "g", sink, batch=3, flush_events=50).run(follow=False)
    assert sink.entries == whole
    assert raw(client).xpending(K.output, "g")["pending"] == 0
    # exch tail prints each event once
    done = cli("tail", "--redis-url", redis_server.url, "--from", "0", "--no-follow", "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    events = [ev for e in whole for ev in e[2]]
    assert len(lines) == len(events) == 2 + 300 + 301 + 1
    printed = [(j["seq"], j["type"], j.get("order")) for j in map(json.loads, lines)]
    assert printed == [(e["seq"], e["type"], e.get("order")) for e in events]


def test_tail_from_a_seq_prints_the_events_after_it_even_in_earlier_pieces(redis_server) -> None:  # type: ignore[no-untyped-def]
    """The pieces of the answer holding seq N+1 have ids after the *previous* input entry's
    id (here 2-1, 2-2, ...), below ``N-0``: ``exch tail --from N`` starts there and skips
    the seqs up to N (it used to start after ``N-0`` and print only the last piece)."""
    client = redis_server.client()
    fill_with_pieces(client)
    whole = read_entries(rows_of(client, K.output))
    want = [(ev["seq"], ev["type"]) for e in whole for ev in e[2] if ev["seq"] > 150]
    done = cli("tail", "--redis-url", redis_server.url, "--from", "150", "--no-follow", "--json")
    assert done.returncode == 0, done.stderr
    got = [(j["seq"], j["type"]) for j in map(json.loads, done.stdout.splitlines())]
    assert got == want


def test_a_consumer_acknowledges_no_piece_before_the_whole_answer(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill_with_pieces(client)
    r = raw(client)
    rows = rows_of(client, K.output)
    whole = read_entries(rows)
    cut = [row[0] for row in rows].index(b"302-0") + 4  # three pieces of 303-0's answer
    assert int(fields_of(rows[cut - 1])[b"part"]) == 3
    client.delete(K.output)
    for eid, fields in rows[:cut]:
        r.execute_command("XADD", K.output, eid, *fields)
    sink = ListSink()
    GroupConsumer(client, "g", sink, consumer="c", batch=2).run(follow=False)
    assert sink.entries[-1][0] == 302 and sink.entries == whole[:2]
    pending = r.xpending_range(K.output, "g", min="-", max="+", count=100)
    assert [p["message_id"] for p in pending] == [row[0] for row in rows[cut - 3:cut]]
    for eid, fields in rows[cut:]:  # the matcher writes the rest
        r.execute_command("XADD", K.output, eid, *fields)
    GroupConsumer(client, "g", sink, consumer="c", batch=2).run(follow=False)
    assert sink.entries == whole
    assert r.xpending(K.output, "g")["pending"] == 0


@pytest.mark.usefixtures("small_pieces")
def test_pieces_after_a_foreign_entry_at_the_top_of_its_ms(redis_server) -> None:  # type: ignore[no-untyped-def]
    """A foreign input entry ``63-18446744073709551615`` (something else may append any
    64-bit id) leaves no id in ms 63 after it: the sequencer skips seq 64, so the pieces of
    the next entry's answer go at ``64-0``, ``64-1``, ... Were something else to append
    ``64-0`` too, the answer to it would be written whole. Either way the matcher answers
    everything and never stops (it used to die with ValueError in ``piece_ids``)."""
    client = redis_server.client()
    r = raw(client)
    seq = Sequencer(client)
    with matcher_thread(client, piece_bytes=PIECE):
        seq.submit([market(), deposit("alice", "100000")])
        seq.submit_batch([place("alice", "BACK", "3", "1") for _ in range(61)])  # 63-0
        wait_caught_up(client)
        r.execute_command("XADD", K.input, f"63-{MAX_ID}", "ts", "1", "c", b"\xc1")
        assert seq.submit_batch([close()]) == [65]  # seq 64 skipped
        wait_caught_up(client, timeout=30)
        # again, with no room: a foreign entry at the top of ms 65, then a foreign layout-1
        # entry 66-0 (a valid command) whose answer needs pieces
        seq.submit([market("1.2"), deposit("bob", "100000")])  # 67-0
        seq.submit_batch([place("bob", "BACK", "3", "1", mid="1.2") for _ in range(60)])
        wait_caught_up(client)
        last = parse_id(last_id(client, K.input))[0]
        r.execute_command("XADD", K.input, f"{last}-{MAX_ID}", "ts", "1", "c", b"\xc1")
        r.execute_command("XADD", K.input, f"{last + 1}-0", "ts", "1",
                          "c", msgpack.packb(wire(close("1.2"))))
        assert seq.submit_batch([deposit("carol")]) == [last + 2]
        wait_caught_up(client, timeout=30)
    pieces = r.xrange(K.output, min=f"(63-{MAX_ID}", max="65-0")
    assert [p[0] for p in pieces[:2]] == [b"64-0", b"64-1"] and pieces[-1][0] == b"65-0"
    assert [int(fields_of(p)[b"part"]) for p in pieces] == list(range(1, len(pieces) + 1))
    whole = r.xrange(K.output, min=f"({last}-{MAX_ID}", max=f"{last + 1}-0")
    assert len(whole) == 1 and whole[0][1][::2] == [b"ts", b"e"]
    assert len(fields_of(whole[0])[b"e"]) > PIECE  # an answer that wanted pieces
    assert answered_ids(client) == [row[0] for row in rows_of(client, K.input)]
    answers = read_entries(rows_of(client, K.output))
    closes = [[e["type"] for e in a[2]].count("order_cancelled") for a in answers]
    assert [c for c in closes if c] == [61, 60]
    result = replay(client, source="none", verify=True)
    assert result.verified, result.divergence


# ------------------------------------------------------------------ 7. a newer layout


def test_a_newer_layout_is_refused_by_every_reader_and_the_sequencer(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    with matcher_thread(client):
        seq.submit([market(), deposit("alice")])
        wait_caught_up(client)
    client.hset(K.settings, "layout", 3)
    keys_before = sorted(client.keys("*"))
    input_before, output_before = rows_of(client, K.input), rows_of(client, K.output)
    clock = client.get(K.clock)
    ref = place("alice", "BACK", "3", "5", ref="r1")
    with pytest.raises(redis.ResponseError, match="layout 3"):
        seq.submit_batch([ref, deposit("bob")])
    assert sorted(client.keys("*")) == keys_before and client.get(K.clock) == clock
    assert client.xlen(K.input) == 1 and not ref_recorded(client, dedup_key(wire(ref)))
    with pytest.raises(JournalError, match="layout 3"):
        replay(client, source="none", verify=True)
    with pytest.raises(JournalError, match="layout 3"):
        GroupConsumer(client, "g", ListSink()).run(follow=False)
    url = redis_server.url
    for args in (["replay", "--verify"], ["run"], ["tail", "--from", "0", "--no-follow"]):
        done = cli(*args, "--redis-url", url)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "layout 3" in errors[0], (args, done.stderr)
    # nothing was written by any of them (but `exch run` leaves the lease it took to expire)
    assert sorted(k for k in client.keys("*") if k != K.lease.encode()) == keys_before
    assert rows_of(client, K.input) == input_before and rows_of(client, K.output) == output_before
    # back to layout 2 (as after an upgrade was undone), the same call goes through
    client.hset(K.settings, "layout", 2)
    assert seq.submit_batch([ref, deposit("bob")]) == [3, 4]


def test_exch_submit_refuses_a_newer_layout_with_one_line(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``exch submit`` into a journal of a newer layout writes nothing and says so in one
    ``error:`` line with exit 1, as the readers do (it used to print the script's traceback)."""
    client = redis_server.client()
    client.hset(K.settings, "layout", 3)
    f = tmp_path / "cmds.jsonl"
    f.write_text(json.dumps({"type": "deposit", "account": "a", "amount": "1"}) + "\n")
    done = cli("submit", str(f), "--redis-url", redis_server.url)
    assert client.exists(K.input) == 0
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "layout 3" in errors[0], done.stderr
