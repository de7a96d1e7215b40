"""``exch demo``: the whole system on a generated market day, start to finish, in about a
minute, leaving nothing running.

1. a private redis-server (append-only) in ``OUT/redis``, fresh;
2. ``exch run`` as its own process, and ``exch follow`` beside it (it checks every answer the
   matcher commits, live, and takes the snapshots);
3. a realistic market day (``tools.sources.market_day``) sent through the sequencer as fast
   as it goes, in-play bet delays scaled down so that orders wait them out within the demo's
   time;
4. ``exch replay --verify`` from scratch: the output reproduced byte for byte;
5. the Parquet export to ``OUT/parquet`` and the live statistics;
6. the store: the records in the embedded PostgreSQL (database ``exch_demo``, made afresh),
   and one of docs/store.md's queries on them;
7. a client's view: ``exch gateway`` on a private loopback port, API keys for the operator
   and two accounts, a market opened and funded over HTTP, a back bet and the lay that takes
   it, each answered with its outcome, and the market's ladder;
8. a summary, then everything it started is stopped (the embedded PostgreSQL too, if the
   demo started it: `exch account` starts it again on demand).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from journal.replay import replay
from journal.sequencer import Sequencer
from journal.snapshots import SnapshotStore
from journal.streams import last_id, parse_id
from tools.local import LocalSystem
from tools.services.export.service import Exporter
from tools.services.stats import StatsService, read_markets, read_view
from tools.sources.load import scale_delays, send
from tools.sources.market_day import GeneratorStats, market_day

SNAPSHOT_EVERY = 10_000
"""Commands between the follower's snapshots in the demo (a few in a day)."""

DELAY_SCALE = 20
"""In-play bet delays are divided by this in the demo: 1-5 s become 50-250 ms of journal time,
while the demo sends a whole day in seconds."""


@dataclass
class DemoResult:
    """What the demo did, for its summary."""

    folder: Path
    commands: int = 0
    seconds: float = 0.0
    submit_seconds: float = 0.0
    last_seq: int = 0
    trades: int = 0
    matched: Decimal = Decimal(0)
    commission: Decimal = Decimal(0)
    markets: list[dict[str, Any]] = field(default_factory=list)
    replay_hash: str = ""
    replay_rate: float = 0.0
    verified: bool = False
    followed_seq: int = 0
    follower_exit: int | None = None
    snapshots: list[int] = field(default_factory=list)
    parquet: Path | None = None
    store: str = ""
    """The store's database (a URL without a password)."""
    gateway: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """What the client sent through the gateway and the answer it got: (request, answer)."""
    volume: list[tuple[Any, ...]] = field(default_factory=list)
    """The busiest market's matched volume by price, from the store: (market, runner,
    price, matched pence)."""

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0


def run_demo(
    folder: str | Path = "out/demo",
    *,
    commands: int = 50_000,
    markets: int = 4,
    accounts: int = 300,
    seed: int = 1,
    on_step: Callable[[str], None] | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> DemoResult:
    """Run the demo; see the module docstring."""
    step = on_step or (lambda name: None)
    out = Path(folder)
    result = DemoResult(folder=out)
    shutil.rmtree(out / "redis", ignore_errors=True)
    shutil.rmtree(out / "parquet", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    step("starting Redis (append-only)")
    with LocalSystem(out / "redis", snapshot_every=SNAPSHOT_EVERY) as system:
        step("starting the follower (exch follow) and the matcher (exch run)")
        system.start_follower()
        system.start_matcher()
        step(f"sending a market day: {commands:,} commands")
        send_day(system, result, commands=commands, markets=markets, accounts=accounts,
                 seed=seed, on_sent=on_sent)
        step("proving the output: replay --verify from the first command")
        prove(system, result)
        step("waiting for the follower's own check")
        follower_check(system, result)
        step("exporting Parquet")
        export(system, result, out / "parquet")
        step("computing market statistics")
        statistics(system, result)
        step("storing the records in PostgreSQL (exch store)")
        store(system, result)
        step("a client's bets over HTTP (exch gateway)")
        gateway(system, result)
    return result


def send_day(
    system: LocalSystem, result: DemoResult, *, commands: int, markets: int, accounts: int,
    seed: int, on_sent: Callable[[int], None] | None,
) -> None:
    """Send the generated day through the sequencer as fast as it goes; wait until the
    matcher has answered its last command."""
    client, keys = system.client, system.keys
    assert client is not None
    flow = scale_delays(
        market_day(seed=seed, markets=markets, accounts=accounts, commands=commands,
                   stats=GeneratorStats()),
        DELAY_SCALE,
    )
    sent = [0]

    def progress(report: Any) -> None:
        if on_sent is not None:
            on_sent(report.sent - sent[0])
        sent[0] = report.sent

    start = time.perf_counter()
    report = send(flow, Sequencer(client, keys), on_batch=progress)
    result.submit_seconds = time.perf_counter() - start
    target = f"{report.last_seq}-0"
    while last_id(client, keys.output) != target:
        time.sleep(0.01)
    result.seconds = time.perf_counter() - start
    result.commands = report.sent
    result.last_seq = parse_id(target)[0]


def prove(system: LocalSystem, result: DemoResult) -> None:
    """Replay the whole journal from the first command, comparing every output entry."""
    assert system.client is not None
    proof = replay(system.client, system.keys, source="none", verify=True)
    result.verified = proof.verified
    result.replay_hash = proof.state_hash
    result.replay_rate = proof.rate


def follower_check(system: LocalSystem, result: DemoResult) -> None:
    """Wait until the follower has verified the last answer, stop it, and note what it
    did: its exit (1 means it found a difference) and the snapshots it took."""
    client, keys = system.client, system.keys
    assert client is not None
    deadline = time.monotonic() + 120
    while int(client.get(keys.followed) or 0) < result.last_seq:
        if time.monotonic() > deadline or (system.follower and system.follower.poll()):
            break
        time.sleep(0.05)
    result.followed_seq = int(client.get(keys.followed) or 0)
    result.follower_exit = system.stop_follower()
    result.snapshots = [s.seq for s in SnapshotStore(client, keys).list()]


def export(system: LocalSystem, result: DemoResult, parquet: Path) -> None:
    """Export the output to Parquet, then read back the trades and the commission."""
    import pandas as pd

    assert system.client is not None
    Exporter(system.client, parquet, system.keys).run(follow=False)
    result.parquet = parquet
    trades = pd.read_parquet(parquet / "trades", columns=["size_pence"])
    result.trades = len(trades)
    result.matched = _pounds(trades["size_pence"].sum())
    if (parquet / "settlements").exists():
        settlements = pd.read_parquet(parquet / "settlements", columns=["commission_pence"])
        result.commission = _pounds(settlements["commission_pence"].sum())


def store(system: LocalSystem, result: DemoResult) -> None:
    """Store the output in a fresh database of the embedded PostgreSQL, then ask it a
    market's matched volume by price."""
    from tools.services.store.server import (
        embedded_running,
        embedded_url,
        fresh_database,
        stop_embedded,
    )

    assert system.client is not None
    was_running = embedded_running()
    try:
        _store(system, result, fresh_database(embedded_url(), "exch_demo"))
    finally:
        if not was_running:  # the demo leaves nothing running; `exch account` restarts it
            stop_embedded()


def _store(system: LocalSystem, result: DemoResult, url: str) -> None:
    from tools.services.store.server import connect
    from tools.services.store.service import Storer

    assert system.client is not None
    Storer(system.client, url, system.keys).run(follow=False)
    result.store = url
    with connect(url) as conn:
        result.volume = conn.execute(
            "WITH busiest AS (SELECT market FROM exch.trades GROUP BY market "
            "ORDER BY sum(size_pence) DESC LIMIT 1) "
            "SELECT market, runner, price, sum(size_pence) FROM exch.trades "
            "WHERE market = (SELECT market FROM busiest) GROUP BY market, runner, price "
            "ORDER BY sum(size_pence) DESC LIMIT 5").fetchall()


def _pounds(pence: Any) -> Decimal:
    """A sum of integer pence as exact pounds."""
    return Decimal(int(pence)).scaleb(-2)


def statistics(system: LocalSystem, result: DemoResult) -> None:
    """Bring the live market statistics up to date and keep their views for the summary."""
    client, keys = system.client, system.keys
    assert client is not None
    service = StatsService(client, keys)
    try:
        service.catch_up()
    finally:
        service.stop()
    result.markets = [v for m in read_markets(client, keys) if (v := read_view(client, m, keys))]


def gateway(system: LocalSystem, result: DemoResult) -> None:
    """Start ``exch gateway``, and bet through it as clients do: HTTP with API keys."""
    import json
    import subprocess
    import sys

    from journal.server import free_port
    from tools.gateway import client
    from tools.gateway.apikeys import KeyStore
    from tools.local import stop_process

    assert system.client is not None
    keys = KeyStore(system.client)
    operator = keys.create(None, operator=True, label="exch demo")[0]
    alice = keys.create("demo-alice", label="exch demo")[0]
    bob = keys.create("demo-bob", label="exch demo")[0]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "gateway", "--redis-url",
                             system.url, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def call(method: str, path: str, key: str | None, body: Any = None) -> dict[str, Any]:
        return client.call(base, method, path, key, body)

    try:
        client.wait_serving(base, proc, LocalSystem.STARTUP_SECONDS)
        for command in ({"type": "create_market", "market": "demo-gateway", "runners": [1, 2]},
                        {"type": "deposit", "account": "demo-alice", "amount": "100"},
                        {"type": "deposit", "account": "demo-bob", "amount": "100"}):
            call("POST", "/v1/admin/commands", operator, command)
        back = {"market": "demo-gateway", "runner": 1, "side": "BACK", "price": "2.5",
                "stake": "10", "ref": "demo-1"}
        lay = {"market": "demo-gateway", "runner": 1, "side": "LAY", "price": "2.5",
               "stake": "4"}
        result.gateway = [
            ("demo-alice: POST /v1/orders " + json.dumps(back),
             call("POST", "/v1/orders", alice, back)),
            ("demo-bob: POST /v1/orders " + json.dumps(lay), call("POST", "/v1/orders", bob, lay)),
            ("demo-alice: GET /v1/markets/demo-gateway",
             call("GET", "/v1/markets/demo-gateway", alice)),
        ]
    finally:
        stop_process(proc)
