"""The compiled core and the pure Python core are one behaviour.

setup.py compiles the matching modules with Cython where it can; the .py files stay the
definition and run on their own where it cannot. These tests run the golden scenarios, a
seeded market day (suspensions, bet delays, settlement, voids, rejections) and the benchmark
workload through the pure Python modules in a fresh interpreter, and require the very same
event bytes and state hash as the core this suite imports.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import exchange
from exchange import Exchange

from .conftest import GOLDEN, ROOT, golden_settings


def edge_commands() -> list[tuple]:
    """Seqs and times at the top of their range (a stream id is any 64-bit number; times are
    below 2**63): the compiled core keeps them as Python integers, as the pure core does, so
    that an order's release time (time + bet delay) may pass 2**63 there too."""
    seq = 2**64 - 60
    ts = 2**63 - 1000
    return [
        ("create_market", seq, ts, "m", (1, 2), 500, 100, 1, 600_000),
        ("deposit", seq + 1, ts, "a", 10**6),
        ("deposit", seq + 2, ts, "b", 10**6),
        ("place", seq + 3, ts, "a", "m", 1, "BACK", 300, 500, "GTC", "PERSIST", "r"),
        ("invalid", seq + 4, ts, "turn_in_play", None, "m", None, None, "MALFORMED"),
        ("turn_in_play", seq + 5, ts, "m"),
        ("place", seq + 6, ts, "b", "m", 1, "LAY", 300, 200, "GTC", "LAPSE", None),
        ("place", seq + 7, ts + 1, "b", "m", 2, "LAY", 400, 200, "IOC", "LAPSE", None),
        ("cancel", seq + 8, ts + 2, "a", seq + 3, 100),
        ("heartbeat", seq + 9, 2**63 - 1),
        ("settle", 2**64 - 1, 2**63 - 1, "m", (1,)),
    ]


def digest(commands: Iterable[tuple], rules: int = 1) -> list[str]:
    """SHA-256 of every event a fresh exchange under ``rules`` makes of ``commands``, and its
    state hash."""
    from exchange.codec import json_event

    ex = Exchange()
    if rules != 1:
        ex.set_rules(rules, 0)
    h = hashlib.sha256()
    for cmd in commands:
        for event in ex.apply(cmd):
            h.update(json.dumps(json_event(event), sort_keys=True).encode())
    return [h.hexdigest(), ex.state_hash()]


def findings() -> dict:
    """What this interpreter's core makes of every probe: run here, and in a fresh
    interpreter on the pure Python sources (see the test below)."""
    from tools.simulate import simulate
    from tools.sources.commandfile import read_commands
    from tools.sources.market_day import market_day
    from tools.sources.workload import core_workload

    from .test_position_limit import exposure_commands, limit_commands

    golden = {}
    for path in sorted(GOLDEN.glob("*.in.jsonl")):
        settings = golden_settings(path)
        with path.open(encoding="utf-8") as stream:
            golden[path.name] = "".join(
                line + "\n" for line in simulate(
                    (obj for _, obj in read_commands(stream)),
                    exchange.Exchange(settings["partition"]), rules=settings["rules"]))
    return {
        "compiled": exchange.COMPILED,
        "engine": exchange.engine.__file__,
        "golden": golden,
        "market_day": digest(market_day(seed=3, accounts=80, commands=12_000)),
        "workload": digest(core_workload(30_000, seed=2)),
        "edges": digest(edge_commands()),
        "position_limit": digest(limit_commands()),
        "exposure_limit": digest(exposure_commands()),
        "rules_3": digest(window_commands(), rules=3),
    }


def window_commands() -> list[tuple]:
    """A market day spread over hours of journal time under rules 3: client refs that expire
    and come back, markets that finish and are forgotten."""
    from tools.sources.market_day import market_day

    day = [tuple(c) for c in market_day(seed=5, accounts=40, commands=8_000, refs=0.5)]
    again: dict[int, list[tuple]] = {}
    for i, c in enumerate(day):  # some places sent again 40 s (a duplicate) and 80 s later
        if c[0] == "place" and c[-1] is not None and i % 7 == 0:
            again.setdefault(i + 20, []).append(c)
            again.setdefault(i + 40, []).append(c)
    timed = []
    for i, c in enumerate(day):
        for c2 in [c, *again.get(i, [])]:
            timed.append(c2)
    # each command 2 s after the last: hours of journal time, ref windows, market graces
    return [(c[0], n + 1, n * 2_000, *c[3:]) for n, c in enumerate(timed)]


PROBE = "import json; from tests.test_compiled_core import findings; print(json.dumps(findings()))"


def test_pure_python_core_gives_the_same_bytes(tmp_path: Path) -> None:
    pure = tmp_path / "exchange"
    pure.mkdir()
    for source in (ROOT / "exchange").glob("*.py"):  # the sources only: no build, no .pxd
        shutil.copy(source, pure / source.name)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found.pop("compiled") is False and found.pop("engine").startswith(str(pure))
    assert len(found["golden"]) >= 20
    for name, events in found["golden"].items():
        expected = (GOLDEN / name.replace(".in.jsonl", ".out.jsonl")).read_text(encoding="utf-8")
        assert events == expected, f"pure Python core differs from golden {name}"
    here = findings()
    del here["compiled"], here["engine"]
    assert found == here


def test_core_is_compiled_unless_asked_not_to() -> None:
    """A failed compile falls back to pure Python at install time (setup.py); this makes CI
    notice. Installed with EXCH_PURE_PYTHON=1 (and tested with it set), the core must be the
    pure one: no compiled module left beside the sources may shadow it."""
    if os.environ.get("EXCH_PURE_PYTHON") == "1":
        assert not exchange.COMPILED, f"pure core asked for, got {exchange.engine.__file__}"
        return
    assert exchange.COMPILED, f"core not compiled: {exchange.engine.__file__}"
    assert not exchange._stale_builds()
