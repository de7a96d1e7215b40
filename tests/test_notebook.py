"""The analytics notebook (tools/notebooks/analytics.ipynb) runs, draws its figures and prints
headline numbers that agree with the events.

Each data set is made here: a seeded market day (``tools.sources.market_day``) through the
core (``exchange.Exchange``), its events in stream form (``wire_event``), written by the Parquet
sink in batches, one entry per command with the command's seq and ts. The notebook is then
executed by nbclient in a fresh ``python3`` kernel (this interpreter: jupyter_client starts the
kernel spec's ``python`` as ``sys.executable``) with ``EXCH_PARQUET`` pointing at the folder and
``MPLBACKEND=Agg``, so nothing needs a display (the notebook's ``%matplotlib inline`` is
Agg-based too and turns each figure into an ``image/png`` output).

Needs nbformat, nbclient, ipykernel and matplotlib.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from exchange import Exchange
from exchange.codec import wire_event
from exchange.named import named
from tools.services.export.parquet import ParquetSink
from tools.sources.market_day import market_day

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "tools" / "notebooks" / "analytics.ipynb"

SEED = 7
MARKETS, ACCOUNTS, COMMANDS = 3, 60, 5000
BATCH = 1000  # commands per sink write: several files per table, as a real export has
TIMEOUT = 120  # seconds per cell


def export_day(folder: Path, *, stop_at_settlement: bool = False) -> dict[str, int]:
    """Export a generated day to ``folder``; return what the notebook should report, counted
    from the events themselves (money in pence). With ``stop_at_settlement`` the day ends
    just before its first ``settle`` or ``void``: no market settled, no settlements table."""
    ex = Exchange()
    totals = {"markets": 0, "settled": 0, "voided": 0, "trades": 0, "matched": 0,
              "commission": 0, "settlement_rows": 0}
    entries: list[tuple[int, int, list[dict[str, Any]]]] = []
    with ParquetSink(folder) as sink:
        for cmd in market_day(seed=SEED, markets=MARKETS, accounts=ACCOUNTS,
                              commands=COMMANDS):
            if stop_at_settlement and cmd[0] in ("settle", "void"):
                break
            events = [wire_event(e) for e in ex.apply(cmd)]
            for e in events:
                kind = e["type"]
                if kind == "trade":
                    totals["trades"] += 1
                    totals["matched"] += e["size"]
                elif kind == "market_created":
                    totals["markets"] += 1
                elif kind == "market_settled":
                    totals["voided" if e["void"] else "settled"] += 1
                elif kind == "account_settled":
                    totals["commission"] += e["commission"]
                    totals["settlement_rows"] += 1
            cmd = named(cmd)
            entries.append((cmd.seq, cmd.ts, events))
            if len(entries) == BATCH:
                sink.write(entries)
                entries = []
        sink.write(entries)
    return totals


def execute(folder: Path, workdir: Path) -> nbformat.NotebookNode:
    """Run the notebook on the export in ``folder``; raises on the first failing cell."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with pytest.MonkeyPatch.context() as mp:  # the kernel inherits this environment
        mp.setenv("EXCH_PARQUET", str(folder))
        mp.setenv("MPLBACKEND", "Agg")
        client = NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                                resources={"metadata": {"path": str(workdir)}})
        client.execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> list[Any]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def images(nb: nbformat.NotebookNode) -> int:
    return sum(1 for o in outputs(nb) if "image/png" in o.get("data", {}))


def stdout(nb: nbformat.NotebookNode, tag: str | None = None) -> str:
    cells = [c for c in nb.cells if c.cell_type == "code"
             and (tag is None or tag in c.metadata.get("tags", []))]
    assert cells, f"no cell tagged {tag!r}"
    return "".join(o.text for c in cells for o in c.get("outputs", [])
                   if o.output_type == "stream" and o.name == "stdout")


def pence(text: str) -> int:
    """'£16,636.86' -> 1663686."""
    m = re.fullmatch(r"(-?)£([\d,]+)\.(\d\d)", text)
    assert m, f"not an amount in pounds: {text!r}"
    return int(m.group(1) + m.group(2).replace(",", "") + m.group(3))


def headline(nb: nbformat.NotebookNode) -> dict[str, Any]:
    text = stdout(nb, "headline")
    found: dict[str, Any] = {}
    patterns = {
        "markets": r"^markets\s+([\d,]+)\s+(\d+) settled, (\d+) voided, (\d+) not settled yet$",
        "trades": r"^trades\s+([\d,]+)$",
        "matched": r"^matched volume\s+(-?£[\d,]+\.\d\d)\b",
        "commission": r"^commission collected\s+(-?£[\d,]+\.\d\d)\b",
    }
    for key, pattern in patterns.items():
        m = re.search(pattern, text, re.MULTILINE)
        assert m, f"headline line {key!r} not found in:\n{text}"
        found[key] = m.groups()
    return {
        "markets": int(found["markets"][0].replace(",", "")),
        "settled": int(found["markets"][1]),
        "voided": int(found["markets"][2]),
        "trades": int(found["trades"][0].replace(",", "")),
        "matched": pence(found["matched"][0]),
        "commission": pence(found["commission"][0]),
    }


def assert_clean_run(nb: nbformat.NotebookNode) -> None:
    """No error output and nothing on stderr (warnings included)."""
    for o in outputs(nb):
        assert o.output_type != "error", f"{o.get('ename')}: {o.get('evalue')}"
        assert not (o.output_type == "stream" and o.name == "stderr"), o.text


@pytest.fixture(scope="module")
def settled_day(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("parquet-day")
    totals = export_day(folder)
    assert totals["settled"] >= 1 and totals["trades"] > 100, totals  # the data set is useful
    return totals, execute(folder, tmp_path_factory.mktemp("kernel"))


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and "EXCH_PARQUET" in nb.cells[0].source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                "clear the notebook's outputs before committing it")


def test_notebook_runs_and_draws_its_figures(settled_day) -> None:  # type: ignore[no-untyped-def]
    _, nb = settled_day
    assert_clean_run(nb)
    # price over time, volume by price, profit and loss
    assert images(nb) >= 3
    assert "No market has been settled yet" not in stdout(nb)


def test_headline_numbers_match_the_events(settled_day) -> None:  # type: ignore[no-untyped-def]
    expected, nb = settled_day
    got = headline(nb)
    assert got == {k: expected[k] for k in got}, (got, expected)


def test_profit_and_loss_is_zero_sum(settled_day) -> None:  # type: ignore[no-untyped-def]
    expected, nb = settled_day
    text = stdout(nb)
    m = re.search(r"P&L before commission over all of them: (-?£[\d,]+\.\d\d); "
                  r"commission: (-?£[\d,]+\.\d\d)", text)
    assert m, text
    assert pence(m.group(1)) == 0
    assert pence(m.group(2)) == expected["commission"]


def test_notebook_without_settlements(tmp_path: Path) -> None:
    """Markets still trading: no settlements folder at all; the P&L section says so."""
    folder = tmp_path / "parquet"
    expected = export_day(folder, stop_at_settlement=True)
    assert expected["settlement_rows"] == 0 and expected["trades"] > 0
    assert not (folder / "settlements").exists()
    nb = execute(folder, tmp_path)
    assert_clean_run(nb)
    assert images(nb) == 2  # prices and volumes; no P&L chart
    assert "No market has been settled yet" in stdout(nb)
    got = headline(nb)
    assert got == {"markets": expected["markets"], "settled": 0, "voided": 0,
                   "trades": expected["trades"], "matched": expected["matched"],
                   "commission": 0}
