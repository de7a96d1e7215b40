"""The journal's commands as a user runs them: ``exch submit``, ``exch run``, then ``exch
stats``, ``tail``, ``book``, ``status``, ``snapshot`` and ``replay``, each a subprocess against
a private real Redis, checked against what the test submitted."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack
import pytest
import redis

from journal.keys import Keys
from journal.streams import last_id, parse_id, raw
from journal.wire import decode_events

from .conftest import ROOT, RedisProcess
from .journal_helpers import output_lines

K = Keys()

# One market: bob lays 10 at 2.2 and alice backs 4 at 2.0, so 4.00 trades at the resting 2.2;
# then money rests on both sides, and bob's lay of 1 at 3.0 takes 1.00 of alice's back at 3.0.
# Resting at the end, runner 1: lays (money to back) 6.00 @ 2.2 and 3.00 @ 2.1; backs (money
# to lay) 4.00 @ 3 and 2.00 @ 3.5. Traded 5.00: last price 3, VWAP (2.2 x 4 + 3 x 1) / 5 = 2.36.
DAY = """\
# a small market day for the command line tests
{"type": "create_market", "market": "1.1", "runners": [1, 2]}
{"type": "deposit", "account": "alice", "amount": "100"}
{"type": "deposit", "account": "bob", "amount": "100"}
{"type": "place", "account": "bob", "market": "1.1", "runner": 1, "side": "LAY", \
"price": "2.2", "stake": "10"}
{"type": "place", "account": "alice", "market": "1.1", "runner": 1, "side": "BACK", \
"price": "2.0", "stake": "4"}
{"type": "place", "account": "bob", "market": "1.1", "runner": 1, "side": "LAY", \
"price": "2.1", "stake": "3"}
{"type": "place", "account": "alice", "market": "1.1", "runner": 1, "side": "BACK", \
"price": "3.0", "stake": "5"}
{"type": "place", "account": "alice", "market": "1.1", "runner": 1, "side": "BACK", \
"price": "3.5", "stake": "2"}
{"type": "place", "account": "bob", "market": "1.1", "runner": 1, "side": "LAY", \
"price": "3.0", "stake": "1"}
"""
COMMANDS = 9

# (seq, event type) of every event the day gives, in order
EVENTS = [
    (1, "market_created"), (2, "funds_changed"), (3, "funds_changed"), (4, "order_accepted"),
    (5, "order_accepted"), (5, "trade"), (6, "order_accepted"), (7, "order_accepted"),
    (8, "order_accepted"), (9, "order_accepted"), (9, "trade"),
]


def exch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"},
    )


def submit(url: str, folder: Path) -> None:
    path = folder / "day.jsonl"
    path.write_text(DAY)
    done = exch("submit", str(path), "--redis-url", url)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"sequenced {COMMANDS} commands: seq 1..{COMMANDS}" in done.stdout


@contextmanager
def matcher(url: str, folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``exch run`` as its own process, stopped with SIGTERM on the way out; a clean stop
    exits 0."""
    log = folder / f"run-{time.monotonic_ns()}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "run", "--redis-url", url], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=err,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"exch run ignored SIGTERM for 60 s: {log.read_text()[-2000:]}")
    assert code == 0, log.read_text()[-2000:]


def wait_for_output(client: redis.Redis, proc: subprocess.Popen[bytes], seq: int,
                    timeout: float = 60) -> None:
    """Poll until the output stream holds the entry of ``seq`` (bounded; the matcher must stay
    alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while parse_id(last_id(client, K.output))[0] < seq:
        if proc.poll() is not None:
            raise AssertionError(f"exch run exited with {proc.returncode} before seq {seq}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the matcher did not reach seq {seq} in {timeout} s: output at "
                               f"{last_id(client, K.output)}")
        time.sleep(0.02)


class Running:
    """A private Redis holding the day, with ``exch run`` serving it."""

    def __init__(self, server: RedisProcess, proc: subprocess.Popen[bytes]) -> None:
        self.server = server
        self.url = server.url
        self.client = server.client()
        self.matcher = proc


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """The day submitted with ``exch submit`` and matched by ``exch run``, which keeps running
    until the module's tests are done. The tests that use it only read."""
    folder = tmp_path_factory.mktemp("cli-journal")
    server = RedisProcess(folder / "redis")
    server.start()
    try:
        submit(server.url, folder)
        with matcher(server.url, folder) as proc:
            running = Running(server, proc)
            wait_for_output(running.client, proc, COMMANDS)
            yield running
    finally:
        server.stop()


def test_stats_json_has_the_traded_volume_prices_and_book(day: Running) -> None:
    done = exch("stats", "--json", "--redis-url", day.url)
    assert done.returncode == 0, done.stderr[-3000:]
    views = json.loads(done.stdout)
    assert [v["market"] for v in views] == ["1.1"]
    view = views[0]
    assert (view["status"], view["in_play"], view["seq"]) == ("OPEN", False, COMMANDS)
    one, two = view["runners"]
    assert one["runner"] == 1
    assert (one["volume"], one["ltp"], one["vwap"]) == ("5.00", "3", "2.36")
    assert one["traded"] == {"2.2": "4.00", "3": "1.00"}
    assert one["to_back"] == [["2.2", "6.00"], ["2.1", "3.00"]]
    assert one["to_lay"] == [["3", "4.00"], ["3.5", "2.00"]]
    assert (one["orders"], one["placed"]) == (4, 6)
    assert two["runner"] == 2
    assert (two["volume"], two["ltp"], two["to_back"], two["to_lay"]) == ("0.00", None, [], [])


def test_tail_from_the_start_prints_one_line_per_event(day: Running) -> None:
    done = exch("tail", "--from", "0", "--no-follow", "--redis-url", day.url)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [(int(ln.split()[0]), ln.split()[1]) for ln in lines] == EVENTS
    trades = [ln for ln in lines if ln.split()[1] == "trade"]
    assert "1.1/1 4.00 @ 2.2  back alice #5 · lay bob #4  (back took)" in trades[0]
    assert "1.1/1 1.00 @ 3  back alice #7 · lay bob #9  (lay took)" in trades[1]
    assert "alice 100.00 -> balance 100.00" in lines[1]
    # --json gives the same events in their public form, as recorded on the output stream
    as_json = exch("tail", "--from", "0", "--no-follow", "--json", "--redis-url", day.url)
    assert as_json.returncode == 0, as_json.stderr[-3000:]
    assert as_json.stdout.splitlines() == output_lines(day.client)
    # --from starts after the given seq
    later = exch("tail", "--from", "5", "--no-follow", "--redis-url", day.url)
    assert later.returncode == 0, later.stderr[-3000:]
    assert [int(ln.split()[0]) for ln in later.stdout.splitlines()] == [6, 7, 8, 9, 9]


def ladder_row(table: str, runner: str) -> list[str]:
    """The cells of a runner's row in ``exch book``'s table, after the runner's name: three
    to back, three to lay, last price, volume; a price cell reads "price size"."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]]
            for line in table.splitlines() if line.startswith("│")]
    at = next(i for i, cells in enumerate(rows) if cells[0] == runner)
    lines = [rows[at]]
    for cells in rows[at + 1:]:
        if cells[0]:
            break
        lines.append(cells)
    return [" ".join(filter(None, column)) for column in zip(*lines)][1:]


def test_book_shows_the_resting_ladder(day: Running) -> None:
    done = exch("book", "1.1", "--redis-url", day.url)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"market 1.1 · OPEN · seq {COMMANDS}" in done.stdout
    # to back: the best (highest) lay price next to the middle; to lay: the best (lowest)
    # back price first; then the last traded price and the volume
    assert ladder_row(done.stdout, "1") == [
        "", "2.1 3.00", "2.2 6.00", "3 4.00", "3.5 2.00", "", "3", "5.00",
    ]
    assert ladder_row(done.stdout, "2") == ["", "", "", "", "", "", "", "0.00"]
    missing = exch("book", "9.9", "--redis-url", day.url)
    assert missing.returncode == 1, missing.stderr[-3000:]
    assert "error: no market 9.9 in partition 0" in missing.stderr


def test_status_json_has_the_last_seqs_and_the_running_matcher(day: Running) -> None:
    done = exch("status", "--json", "--redis-url", day.url)
    assert done.returncode == 0, done.stderr[-3000:]
    st = json.loads(done.stdout)
    assert (st["last_input_seq"], st["last_output_seq"], st["lag"]) == (COMMANDS, COMMANDS, 0)
    # the file went in one sequencer call: one input entry, answered by one output entry
    assert (st["input_entries"], st["output_entries"]) == (1, 1)
    assert st["partition"] == "0"
    assert st["matcher"].split(":")[1] == str(day.matcher.pid)


def test_replay_from_no_snapshot_verifies(day: Running) -> None:
    done = exch("replay", "--from-snapshot", "none", "--verify", "--redis-url", day.url)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"verified: output matches the journal up to seq {COMMANDS}" in done.stdout
    as_json = exch("replay", "--from-snapshot", "none", "--verify", "--json",
                   "--redis-url", day.url)
    assert as_json.returncode == 0, as_json.stderr[-3000:]
    summary = json.loads(as_json.stdout)
    assert (summary["verified"], summary["from_seq"], summary["to_seq"], summary["commands"]) \
        == (True, 0, COMMANDS, COMMANDS)


def test_replay_answers_truly_when_nothing_is_verified(day: Running) -> None:
    empty = exch("replay", "--verify", "--partition", "7", "--redis-url", day.url)
    assert empty.returncode == 1, empty.stdout
    assert "error: nothing to verify: partition 7 holds no answered entry" in empty.stderr
    assert "verified" not in empty.stdout
    unchecked = exch("replay", "--from-snapshot", "none", "--redis-url", day.url)
    assert unchecked.returncode == 0, unchecked.stderr[-3000:]
    assert "verified" not in unchecked.stdout and f"{COMMANDS:,}" in unchecked.stdout
    as_json = exch("replay", "--from-snapshot", "none", "--json", "--redis-url", day.url)
    assert "verified" not in json.loads(as_json.stdout)


def test_snapshot_of_the_running_matcher_is_reported_and_listed(redis_server,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path) -> None:
    submit(redis_server.url, tmp_path)
    client = redis_server.client()
    with matcher(redis_server.url, tmp_path) as proc:
        wait_for_output(client, proc, COMMANDS)
        before = exch("snapshot", "--list", "--redis-url", redis_server.url)
        assert before.returncode == 0, before.stderr[-3000:]
        taken = exch("snapshot", "--save", str(tmp_path / "snap.bin"),
                     "--redis-url", redis_server.url)
        assert taken.returncode == 0, taken.stderr[-3000:]
        found = re.search(r"snapshot at seq (\d+): ([0-9a-f]{64}) \(([\d,]+) bytes\)",
                          taken.stdout)
        assert found, taken.stdout
        seq, state_hash, size = int(found[1]), found[2], int(found[3].replace(",", ""))
        assert seq == COMMANDS
        assert (tmp_path / "snap.bin").stat().st_size == size
        listed = exch("snapshot", "--list", "--redis-url", redis_server.url)
        assert listed.returncode == 0, listed.stderr[-3000:]
        assert state_hash[:16] not in before.stdout
        row = next(ln for ln in listed.stdout.splitlines() if state_hash[:16] in ln)
        assert re.search(rf"\b{seq}\b", row) and f"{size:,}" in row
    # the saved file is a snapshot replay can start from, and its hash is the state that
    # replaying the whole journal reaches
    replayed = exch("replay", "--from-snapshot", str(tmp_path / "snap.bin"), "--verify",
                    "--redis-url", redis_server.url)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert "verified" in replayed.stdout
    full = exch("replay", "--from-snapshot", "none", "--verify", "--json",
                "--redis-url", redis_server.url)
    assert full.returncode == 0, full.stderr[-3000:]
    assert json.loads(full.stdout)["state_hash"] == state_hash


def test_replay_verify_exits_1_at_a_tampered_entry(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    submit(redis_server.url, tmp_path)
    client = redis_server.client()
    with matcher(redis_server.url, tmp_path) as proc:
        wait_for_output(client, proc, COMMANDS)
    # rewrite the output with the first trade's size one penny more
    r = raw(client)
    rows = r.xrange(K.output)
    r.delete(K.output)
    for eid, fields in rows:
        f = dict(zip(fields[::2], fields[1::2]))
        if eid == f"{COMMANDS}-0".encode():  # the file's one entry
            events = decode_events(f[b"e"])
            trade = next(i for i, e in enumerate(events) if e["type"] == "trade")
            assert events[trade]["seq"] == 5
            events[trade]["size"] += 1
            f[b"e"] = msgpack.packb(events)
        r.xadd(K.output, f, id=eid)
    done = exch("replay", "--from-snapshot", "none", "--verify", "--redis-url",
                redis_server.url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"DIVERGED at seq 5 (output entry {COMMANDS}-0)" in done.stderr
    assert "verified: output matches" not in done.stdout
