"""The statistics consumer rebuilds the book from events alone: it must agree with the
engine's own book at every point, across restarts, including orders waiting out a bet delay."""

from __future__ import annotations

import random

from exchange import Exchange, decode
from exchange.codec import wire_event
from exchange.named import named
from tools.services.stats import StatsSink, read_view
from tools.simulate import envelope_ts
from tools.sources.commandfile import read_commands
from tools.sources.workload import core_workload

from .conftest import GOLDEN


def commands() -> list[tuple]:
    """The core workload, then the bet-delay scenarios (renamed markets), with times."""
    out = list(core_workload(6000, markets=3, accounts=50))
    seq = len(out)
    ts = out[-1][2]
    for name in ("19_in_play_bet_delay", "20_delayed_orders_lapse_on_suspend"):
        with (GOLDEN / f"{name}.in.jsonl").open() as f:
            for _, obj in read_commands(f):
                if obj.get("market") == "1.1":
                    obj["market"] = f"delay-{name[:2]}"
                ts = envelope_ts({"ts": ts + obj.get("ts", 0)}, ts)
                seq += 1
                out.append(decode(obj, seq, ts))
    return out


def engine_book(ex: Exchange, market: str) -> list[tuple]:
    m = ex.market(market)
    assert m is not None
    return [(r, m.lays[i].depth(1000), m.backs[i].depth(1000)) for i, r in enumerate(m.runners)]


def sink_book(sink: StatsSink, market: str) -> list[tuple]:
    ms = sink.markets[market]
    return [(r, ms.by_runner[r].to_back(1000), ms.by_runner[r].to_lay(1000)) for r in ms.runners]


def test_stats_book_matches_the_engine(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    cmds = commands()
    ex = Exchange()
    sink = StatsSink(client)
    rng = random.Random(4)
    pending = []
    traded: dict[tuple[str, int], int] = {}
    checks = 0
    for i, cmd in enumerate(cmds):
        events = [wire_event(e) for e in ex.apply(cmd)]
        for e in events:
            if e["type"] == "trade":
                key = (e["market"], e["runner"])
                traded[key] = traded.get(key, 0) + e["size"]
        cmd = named(cmd)
        pending.append((cmd.seq, cmd.ts, events))
        if rng.random() < 0.02 or i >= len(cmds) - 25:  # every command of the delay part
            sink.write(pending)
            pending = []
            if rng.random() < 0.2:
                sink = StatsSink(client)  # a restart: everything comes back from Redis
            for m in ex.markets():
                assert sink_book(sink, m.id) == engine_book(ex, m.id), f"after seq {cmd.seq}"
            checks += 1
    assert checks > 20
    for (market, runner), volume in traded.items():
        assert sink.markets[market].by_runner[runner].volume == volume
    # the in-play scenarios really exercised the delay: an order waited, then traded
    delayed = sink.markets["delay-19"]
    assert delayed.by_runner[1].volume == 500 and delayed.in_play
    view = read_view(client, "delay-19")
    assert view is not None and view["runners"][0]["ltp"] == "3"
    # a second delivery of what it already has changes nothing
    before = read_view(client, cmds[0][3])
    sink.write([(1, 0, [wire_event(e) for e in Exchange().apply(cmds[0])])])
    assert read_view(client, cmds[0][3]) == before
