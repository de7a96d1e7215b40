"""Rules versions: a journal records the rules in force, each entry replays under its own, a
new version takes effect only from a journaled point, and never goes back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from exchange import Exchange, decode, problem
from exchange.errors import InputError
from exchange.rules import LATEST
from exchange.snapshot import VERSION, VERSION_RULES
from journal.keys import Keys
from journal.replay import replay
from journal.rules import rules_in_force, upgrade
from journal.sequencer import Sequencer
from journal.snapshots import SnapshotStore
from journal.streams import raw

from .journal_helpers import matcher_thread, output_lines, wait_caught_up

K = Keys()
ROOT = Path(__file__).resolve().parent.parent
ESCAPE = "mallory\x1b[2J"  # an account id that would clear a terminal's screen


def deposit(account: str) -> tuple:
    return decode({"type": "deposit", "account": account, "amount": "10"}, 0, 0)


def rejected(client) -> list[str]:  # type: ignore[no-untyped-def]
    return [ln for ln in output_lines(client) if '"order_rejected"' in ln]


def test_an_old_journal_keeps_version_1_until_upgraded(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    seq = Sequencer(client)
    # a journal from before rules versions: its stream exists, with no setting
    client.xadd(K.input, {"ts": "1", "c": msgpack.packb({"type": "deposit", "account": "a",
                                                         "amount": 100})}, id="1-0")
    assert rules_in_force(client, K) == 1
    with matcher_thread(client, snapshot_every=10**9):
        seq.submit([deposit(ESCAPE)])  # under version 1: accepted, as it always was
        wait_caught_up(client)
        assert upgrade(client, K, 2) == 2
        seq.submit([deposit(ESCAPE)])  # from here on, version 2: MALFORMED
        wait_caught_up(client)
    rows = raw(client).xrange(K.input)
    assert [dict(zip(f[::2], f[1::2])).get(b"r") for _, f in rows] == [None, b"1", b"2"]
    lines = output_lines(client)
    assert '"funds_changed", "seq": 2' in lines[1]
    assert rejected(client) == ['{"type": "order_rejected", "seq": 3, "command": "deposit", '
                                '"account": null, "market": null, "ref": null, "order": null, '
                                '"reason": "MALFORMED"}']
    # each entry replays under its own version, to the same bytes
    assert replay(client, source="none", verify=True).verified
    with pytest.raises(InputError, match="never go back"):
        upgrade(client, K, 1)


def test_a_new_journal_starts_under_the_newest_version(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    assert rules_in_force(client, K) == LATEST
    with matcher_thread(client):
        Sequencer(client).submit([deposit("alice"), deposit(ESCAPE)])
        wait_caught_up(client)
    assert len(rejected(client)) == 1 and '"seq": 2' in rejected(client)[0]
    assert client.hget(K.settings, "rules") == str(LATEST).encode()


def test_snapshots_keep_the_rules_and_version_1_states_keep_their_bytes(redis_server) -> None:  # type: ignore[no-untyped-def]
    old = Exchange()
    old.apply(deposit("alice")._replace(seq=1))
    data = old.snapshot()
    assert msgpack.unpackb(data)[1] == VERSION and len(msgpack.unpackb(data)) == 10
    new = Exchange.restore(data)
    assert new.rules == 1 and new.snapshot() == data
    new.rules = 2
    upgraded = new.snapshot()
    assert msgpack.unpackb(upgraded)[1] == VERSION_RULES and msgpack.unpackb(upgraded)[-1] == 2
    assert Exchange.restore(upgraded).rules == 2
    # through the journal: a matcher recovering from a snapshot goes on under its rules
    client = redis_server.client()
    with matcher_thread(client, snapshot_every=10**9):
        Sequencer(client).submit([deposit("alice")])
        wait_caught_up(client)
    stored = SnapshotStore(client).latest()
    assert stored is not None and Exchange.restore(stored[1]).rules == LATEST
    with matcher_thread(client):
        Sequencer(client).submit([deposit(ESCAPE)])
        wait_caught_up(client)
    assert len(rejected(client)) == 1
    assert replay(client, source="latest", verify=True).verified


def test_an_entry_under_unknown_rules_is_refused_not_misread(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    Sequencer(client).submit([deposit("alice")])
    payload = msgpack.packb([{"type": "deposit", "account": "bob", "amount": 100}])
    client.xadd(K.input, {"ts": "1", "n": "1", "r": str(LATEST + 1), "c": payload}, id="2-0")
    done = subprocess.run(
        [sys.executable, "-m", "tools.cli", "replay", "--from-snapshot", "none", "--to", "2",
         "--redis-url", redis_server.url], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"rules version {LATEST + 1}" in done.stderr and "Traceback" not in done.stderr


def test_the_edge_refuses_control_characters_and_cuts_what_it_echoes() -> None:
    found = problem({"type": "deposit", "account": ESCAPE, "amount": "10"})
    assert found is not None and found[0] == "MALFORMED" and "control" in found[1]
    huge = problem({"type": "deposit", "account": "a", "amount": "9" * 10_000_000})
    assert huge is not None and len(huge[1]) < 200 and "characters" in huge[1]
    assert problem({"type": "deposit", "account": "zoë", "amount": "10"}) is None
