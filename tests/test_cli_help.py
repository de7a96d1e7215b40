"""Help for people: every command's text wraps at the terminal's width (no hard line breaks
from the docstrings), every option says what it does, and nothing is cut at 80 columns."""

from __future__ import annotations

import typer.main
from typer.testing import CliRunner

from tools.cli import app, unwrapped


def commands(group, path=()):  # type: ignore[no-untyped-def]
    for name, cmd in group.commands.items():
        yield (*path, name), cmd
        if hasattr(cmd, "commands"):
            yield from commands(cmd, (*path, name))


def test_help_texts_have_no_hard_line_breaks_inside_a_paragraph() -> None:
    root = typer.main.get_command(app)
    found = list(commands(root))
    assert len(found) > 25
    for path, cmd in found:
        for paragraph in (cmd.help or "").split("\n\n"):
            for line in paragraph.splitlines()[1:]:
                assert line.startswith("- "), f"exch {' '.join(path)}: a break before {line!r}"
        for param in cmd.params:
            if param.name != "help" and getattr(param, "help", None) is not None:
                assert param.help.strip(), f"exch {' '.join(path)} {param.name}: no help"


def test_every_help_fits_80_columns() -> None:
    root = typer.main.get_command(app)
    runner = CliRunner()
    for path, _ in commands(root):
        got = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
        assert got.exit_code == 0, (path, got.output)
        wide = [ln for ln in got.output.splitlines() if len(ln) > 80]
        assert not wide, (path, wide[:3])


def test_unwrapped_keeps_paragraphs_and_list_items() -> None:
    text = """First line
    goes on.

    - one item
      continued
    - two"""
    assert unwrapped(text) == "First line goes on.\n\n- one item continued\n- two"


def _view(market: str) -> dict:  # type: ignore[type-arg]
    levels = [["1000", "123456789.12"], ["990", "5.00"], ["980", "7.50"]]
    runner = {"runner": 9_223_372_036_854_775_807, "to_back": levels, "to_lay": levels,
              "ltp": "1000", "vwap": "999.99", "volume": "123456789012.34",
              "orders": 1_234_567, "placed": 98_765_432, "traded": {}}
    return {"market": market, "status": "SUSPENDED", "in_play": True, "winners": [],
            "seq": 123_456_789, "runners": [runner, {**runner, "runner": 7}]}


def test_book_and_stats_fit_80_columns_and_cut_no_id() -> None:
    from rich.console import Console

    from tools.cli.views import ladder, market_summary

    market = "1.[red]234[/]567890"  # rich markup in an id is shown, never obeyed
    for render in (ladder(_view(market), width=80), market_summary([_view(market)] * 2)):
        console = Console(width=80, record=True, color_system=None)
        console.print(render)
        text = console.export_text()
        assert max(len(line) for line in text.splitlines()) <= 80
        assert "…" not in text and "9223372036854775807" in text and market in text
