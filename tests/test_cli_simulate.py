"""``exch simulate`` as a user runs it: a subprocess, files and stdin, exit codes, bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import GOLDEN, ROOT

EXCH = [sys.executable, "-m", "tools.cli"]


def simulate(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*EXCH, "simulate", *args], input=stdin, capture_output=True, cwd=ROOT, timeout=60,
    )


def expected(scenario: Path) -> bytes:
    return scenario.with_name(scenario.name.replace(".in.", ".out.")).read_bytes()


# Two quick scenarios cover the path from file to bytes; tests/test_golden.py runs them all
# in-process.
SCENARIOS = [
    GOLDEN / "22_settle_with_commission.in.jsonl", GOLDEN / "30_malformed_commands.in.jsonl",
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name.split(".")[0])
def test_a_golden_file_gives_its_events(scenario: Path) -> None:
    done = simulate(str(scenario))
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected(scenario)
    assert done.stdout.endswith(b"\n") and done.stdout.isascii()


def test_stdin_with_a_dash(tmp_path: Path) -> None:
    scenario = GOLDEN / "19_in_play_bet_delay.in.jsonl"
    done = simulate("-", stdin=scenario.read_bytes())
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected(scenario)


def test_the_same_input_twice_gives_the_same_bytes() -> None:
    scenario = GOLDEN / "26_two_winner_place_market.in.jsonl"
    first = simulate(str(scenario))
    second = simulate("-", stdin=scenario.read_bytes())
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout != b""


def test_a_line_that_is_not_json_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(
        "# a comment\n"
        '{"type": "create_market", "market": "1.1", "runners": [1, 2]}\n'
        "\n"
        '{"type": "deposit", "account": "alice", "amount": "10"\n',  # line 4: unclosed
        encoding="utf-8",
    )
    done = simulate(str(path))
    assert done.returncode == 2
    err = done.stderr.decode()
    assert f"{path}:4" in err, err
    assert "Traceback" not in err


def test_a_line_that_is_not_json_on_stdin_names_the_line() -> None:
    done = simulate("-", stdin=b'{"type": "heartbeat"}\nnot json at all\n')
    assert done.returncode == 2
    assert ":2" in done.stderr.decode() and "Traceback" not in done.stderr.decode()


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    done = simulate(str(tmp_path / "nope.jsonl"))
    assert done.returncode == 2
    assert "nope.jsonl" in done.stderr.decode() and "Traceback" not in done.stderr.decode()


@pytest.mark.parametrize(
    "line",
    [
        '{"type": "teleport"}',
        '{"type": "deposit", "account": "alice"}',
        '{"type": "deposit", "account": "alice", "amount": "1", "colour": "red"}',
        '["a", "list"]',
        '"just text"',
        "42",
        "null",
    ],
)
def test_json_that_is_not_a_command_is_rejected_and_exits_0(line: str) -> None:
    done = simulate("-", stdin=(line + "\n").encode())
    assert done.returncode == 0, done.stderr
    events = [json.loads(x) for x in done.stdout.decode().splitlines()]
    assert len(events) == 1
    assert events[0]["type"] == "order_rejected" and events[0]["seq"] == 1
    assert events[0]["reason"] == "MALFORMED"


def test_rejections_do_not_stop_the_run() -> None:
    text = (
        '{"type": "nonsense"}\n'
        '{"type": "deposit", "account": "bob", "amount": "12.5"}\n'
        '{"type": "withdraw", "account": "bob", "amount": "20"}\n'
        '{"type": "withdraw", "account": "bob", "amount": "2.5"}\n'
    )
    done = simulate("-", stdin=text.encode())
    assert done.returncode == 0, done.stderr
    events = [json.loads(x) for x in done.stdout.decode().splitlines()]
    assert [(e["seq"], e["type"]) for e in events] == [
        (1, "order_rejected"), (2, "funds_changed"), (3, "order_rejected"), (4, "funds_changed"),
    ]
    assert events[2]["reason"] == "INSUFFICIENT_FUNDS"
    assert (events[1]["balance"], events[3]["balance"]) == ("12.50", "10.00")


def test_a_number_too_long_for_python_is_bad_input_not_a_crash() -> None:
    line = '{"type": "deposit", "account": "a", "amount": 1' + "0" * 5000 + "}\n"
    done = simulate("-", stdin=line.encode())
    assert done.returncode == 2 and ":1" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()
