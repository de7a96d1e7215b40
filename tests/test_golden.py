"""Golden scenarios: commands in, the exact events out, one behaviour per file.

Each is judged under rules version 1 in partition 0, unless a ``.settings.json`` beside it
names another rules version or partition (``conftest.golden_settings``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange import Exchange
from tools.simulate import simulate
from tools.sources.commandfile import read_commands

from .conftest import GOLDEN, golden_settings

SCENARIOS = sorted(GOLDEN.glob("*.in.jsonl"))


def run_scenario(path: Path) -> str:
    settings = golden_settings(path)
    with path.open(encoding="utf-8") as stream:
        lines = simulate((obj for _, obj in read_commands(stream)),
                         Exchange(settings["partition"]), rules=settings["rules"])
        return "".join(line + "\n" for line in lines)


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 20


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name.removesuffix(".in.jsonl"))
def test_golden(scenario: Path, update_golden: bool) -> None:
    expected_path = scenario.with_name(scenario.name.replace(".in.jsonl", ".out.jsonl"))
    actual = run_scenario(scenario)
    if update_golden:
        expected_path.write_text(actual, encoding="utf-8")
    assert expected_path.exists(), "no expected events; run pytest --update-golden"
    assert actual == expected_path.read_text(encoding="utf-8")
    assert run_scenario(scenario) == actual, "a second run gave other bytes"
