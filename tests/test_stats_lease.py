"""One statistics consumer at a time, through the journal's lease script: two ``exch stats
--follow`` processes against one Redis, the leader killed with SIGKILL, the other takes over;
and a consumer that lost the lease cannot write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exchange import decode
from exchange.errors import LeaseLost
from journal.keys import Keys
from journal.lease import Lease
from journal.sequencer import Sequencer
from journal.streams import raw
from journal.wire import decode_events
from tools.services.stats import StatsService, StatsSink, read_view

from .journal_helpers import matcher_thread, wait_caught_up

ROOT = Path(__file__).resolve().parent.parent
K = Keys()


def flow(market: str, first: int) -> list[tuple]:
    """A market, two funded accounts and trades at 2.0 and 3.0 on runner 1."""
    objs = [{"type": "create_market", "market": market, "runners": [1, 2]},
            {"type": "deposit", "account": f"a{first}", "amount": "1000"},
            {"type": "deposit", "account": f"b{first}", "amount": "1000"}]
    for i in range(first, first + 20):
        price = "2" if i % 2 else "3"
        objs.append({"type": "place", "account": f"a{first}", "market": market, "runner": 1,
                     "side": "BACK", "price": price, "stake": "2"})
        objs.append({"type": "place", "account": f"b{first}", "market": market, "runner": 1,
                     "side": "LAY", "price": price, "stake": "2"})
    return [decode(o, 0, 0) for o in objs]


def traded(client, market: str) -> int:  # type: ignore[no-untyped-def]
    """Pence matched on runner 1 of ``market``, summed from the output stream's trades."""
    total = 0
    for _, fields in raw(client).xrange(K.output):
        payload = dict(zip(fields[::2], fields[1::2]))[b"e"]
        for ev in decode_events(payload):
            if ev["type"] == "trade" and ev["market"] == market and ev["runner"] == 1:
                total += ev["size"]
    return total


def stats_process(url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "stats", "--follow", "--redis-url", url],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def wait_for_cursor(client, seq: int, procs: list, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while int(client.get(K.stats_cursor) or 0) < seq:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"a stats process exited: {p.stderr.read().decode()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"statistics stuck at seq {client.get(K.stats_cursor)}, not {seq}")
        time.sleep(0.05)


def leader_pid(client) -> int:  # type: ignore[no-untyped-def]
    holder = client.get(K.stats_lease)
    assert holder, "nobody holds the statistics lease"
    return int(holder.decode().split(":")[1])


@pytest.mark.slow
def test_two_stats_consumers_one_killed_the_other_takes_over(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    sequencer = Sequencer(client)
    procs: list[subprocess.Popen] = []
    with matcher_thread(client):
        try:
            sequencer.submit(flow("1.1", 0))
            last = wait_caught_up(client)
            procs = [stats_process(redis_server.url), stats_process(redis_server.url)]
            wait_for_cursor(client, last, procs)
            first = leader_pid(client)
            assert first in (procs[0].pid, procs[1].pid)
            view = read_view(client, "1.1")
            assert view is not None
            assert view["runners"][0]["volume"] == f"{traded(client, '1.1') / 100:.2f}"

            leader = procs[0] if procs[0].pid == first else procs[1]
            other = procs[1] if leader is procs[0] else procs[0]
            os.kill(leader.pid, signal.SIGKILL)
            leader.wait()
            sequencer.submit(flow("1.2", 100))
            last = wait_caught_up(client)
            wait_for_cursor(client, last, [other])
            assert leader_pid(client) == other.pid
            for market in ("1.1", "1.2"):
                view = read_view(client, market)
                assert view is not None
                expected = traded(client, market)
                assert expected > 0
                assert view["runners"][0]["volume"] == f"{expected / 100:.2f}"
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
    assert other.returncode == 0
    assert client.get(K.stats_lease) is None, "a clean stop releases the lease"


def test_a_consumer_that_lost_the_lease_writes_nothing(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    with matcher_thread(client):
        Sequencer(client).submit(flow("1.1", 0))
        wait_caught_up(client)
    service = StatsService(client)
    assert service.leading
    service.catch_up()
    before = {k: client.get(k) for k in (K.stats_cursor, K.stats("1.1"))}
    # the lease passes to someone else (as if this process had been paused past its expiry)
    client.delete(K.stats_lease)
    thief = Lease(client, K.stats_lease, 60_000)
    assert thief.acquire()
    sink = service.consumer.sink  # type: ignore[union-attr]
    assert isinstance(sink, StatsSink)
    with pytest.raises(LeaseLost):
        sink.write([(10_000, 0, [{"type": "market_created", "market": "1.9", "runners": [1, 2],
                                  "bet_delay_ms": 0}])])
    assert {k: client.get(k) for k in before} == before
    assert client.get(K.stats("1.9")) is None
    service.stop()
    assert thief.held(), "stopping does not release a lease that is not ours"
