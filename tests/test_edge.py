"""Hostile input at the edge: a file that is not JSON lines, a key given twice, a time no
consumer can write, an id that would drive the terminal. Each gets a clear answer with where
and why, exit 2, and nothing is sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgpack

from exchange.commands import problem
from exchange.limits import MAX_TS
from exchange.rules import BOUNDED_TIME
from journal.keys import Keys
from journal.streams import raw
from journal.wire import decode_entry
from tools.cli.views import event_line
from tools.sources.commandfile import check_file

ROOT = Path(__file__).resolve().parent.parent
K = Keys()


def exch(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT, input=stdin,
                          capture_output=True, timeout=120)


def test_a_key_given_twice_is_malformed_and_nothing_is_sent(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "dup.jsonl"
    f.write_text('{"type":"deposit","account":"a","amount":"10"}\n'
                 '{"type":"deposit","account":"a","amount":"10","amount":"99999"}\n')
    _, problems = check_file(str(f))
    assert [(p.line, p.reason) for p in problems] == [(2, "MALFORMED")]
    assert "'amount' is given twice" in problems[0].message
    got = exch("submit", str(f), "--redis-url", redis_server.url)
    assert got.returncode == 2 and b"dup.jsonl:2" in got.stderr
    assert raw(redis_server.client()).xlen(K.input) == 0
    nested = exch("simulate", "-", stdin=b'{"type":"deposit","account":{"x":1,"x":2}}\n')
    assert nested.returncode == 2 and b"'x' is given twice" in nested.stderr


def test_a_binary_or_non_utf8_file_is_bad_usage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    binary = tmp_path / "prog.bin"
    binary.write_bytes(Path(sys.executable).read_bytes()[:4096])
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"type":"deposit","account":"caf\u00e9","amount":"1"}\n'.encode("latin-1"))
    nul = tmp_path / "nul.jsonl"
    nul.write_bytes(b'{"type":"deposit"}\x00\n')
    for path, why in ((binary, b"not"), (latin, b"not UTF-8 text"), (nul, b"a NUL byte")):
        got = exch("simulate", str(path))
        assert got.returncode == 2, got.stderr
        assert why in got.stderr and b"Traceback" not in got.stderr
    _, problems = check_file(str(latin))
    assert problems[0].line == 1 and "byte 33" in problems[0].message


def test_times_are_bounded_to_what_every_consumer_can_write() -> None:
    ok = {"type": "deposit", "account": "a", "amount": "1", "ts": MAX_TS}
    assert problem(ok) is None
    late = problem({**ok, "ts": MAX_TS + 1})
    assert late is not None and late[0] == "MALFORMED" and "2262-04-11" in late[1]
    # a journal entry past the bound (written straight into Redis) keeps the previous time,
    # from rules version 4 on: under earlier rules an old journal keeps its recorded meaning
    fields = [b"ts", str(2**63 - 1).encode(), b"c",
              msgpack.packb({"type": "deposit", "account": "a", "amount": "1"})]
    ts, _, cmds = decode_entry(7, fields, 1_700_000_000_000, 6, rules=BOUNDED_TIME)
    assert ts == 1_700_000_000_000 and cmds[0][2] == ts
    assert decode_entry(7, fields, 1_700_000_000_000, 6, rules=3)[0] == 2**63 - 1
    fields[1] = str(MAX_TS).encode()
    assert decode_entry(7, fields, 1_700_000_000_000, 6, rules=BOUNDED_TIME)[0] == MAX_TS
    # a layout-2 entry that itself brings version 4 in is bounded by it
    two = [b"ts", str(MAX_TS + 1).encode(), b"n", b"1", b"r", b"4", b"c",
           msgpack.packb([{"type": "deposit", "account": "a", "amount": "1"}])]
    assert decode_entry(7, two, 5, 6, rules=3)[:2] == (5, 4)
    two[5] = b"3"
    assert decode_entry(7, two, 5, 6, rules=3)[:2] == (MAX_TS + 1, 3)


def test_a_view_never_sends_control_characters_to_the_terminal() -> None:
    line = event_line(3, {"type": "funds_changed", "account": "a\x1b[2J\x07", "amount": "1",
                          "balance": "1"})
    assert "\x1b" not in line and "\x07" not in line
    assert "a\\x1b[2J\\x07" in line


def test_stdin_that_is_not_utf8_and_old_mac_line_endings(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    got = exch("submit", "-", "--redis-url", redis_server.url,
               stdin=b'{"type":"deposit","account":"caf\xe9","amount":"1"}\n')
    assert got.returncode == 2 and b"not UTF-8 text" in got.stderr
    assert b"Traceback" not in got.stderr
    assert raw(redis_server.client()).xlen(K.input) == 0
    mac = tmp_path / "mac.jsonl"
    mac.write_bytes(b'{"type":"deposit","account":"a","amount":"1"}\r'
                    b'{"type":"deposit","account":"a","amount":"1","amount":"2"}\r')
    count, problems = check_file(str(mac))
    assert count == 2 and [p.line for p in problems] == [2]


def test_an_optional_field_given_as_null_is_absent_at_the_edge_as_in_the_core() -> None:
    """``"winners": null`` made the edge's check raise instead of answering (found by the
    gateway's fuzz): null is an absent optional field for both, never a crash."""
    from exchange.commands import COMMANDS, REQUIRED, decode

    base = {
        "create_market": {"market": "m", "runners": [1, 2, 3]},
        "place": {"account": "a", "market": "m", "runner": 1, "side": "BACK",
                  "price": "2", "stake": "5"},
        "cancel": {"account": "a", "order": 7},
    }
    for kind, fields in base.items():
        optional = [f.name for f in COMMANDS[kind] if f.default is not REQUIRED]
        assert optional
        for name in optional:
            obj = {"type": kind, **fields, name: None}
            assert problem(obj) is None, (kind, name)
            assert decode(obj, 1, 0)[0] == kind, (kind, name)
