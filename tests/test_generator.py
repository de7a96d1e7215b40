"""The market-day generator (tools/sources/market_day.py): deterministic, consistent, realistic."""

from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest

from exchange import Exchange
from exchange.codec import wire_event
from exchange.commands import decode, problem, to_json, to_wire
from exchange.named import named
from tools.sources.load import OrderIds
from tools.sources.market_day import GeneratorStats, market_day, minimum_commands

N = 20_000


class Run:
    """One generated day applied to a fresh exchange, with everything the tests look at."""

    def __init__(self, **kw: object) -> None:
        self.stats = GeneratorStats()
        # commands by name (the generator makes the core's plain tuples)
        self.commands = [named(c) for c in market_day(stats=self.stats, **kw)]  # type: ignore[arg-type]
        self.ex = Exchange()
        self.events: list[tuple] = []
        self.by_seq: dict[int, list[tuple]] = {}
        self.cancel_targets: list[tuple[str, int, str | None]] = []  # (command, order, owner)
        ex = self.ex
        for n, cmd in enumerate(self.commands, 1):
            if cmd.type in ("cancel", "replace"):
                o = ex.order(cmd.order)
                owner = o.pos.acct.id if o is not None else None
                self.cancel_targets.append((cmd.type, cmd.order, owner))
                if o is not None:
                    assert owner == cmd.account, f"{cmd} names an order of {owner}"
            out = ex.apply(cmd)
            self.by_seq[cmd.seq] = out
            self.events.extend(out)
            if n % 2500 == 0:
                ex.check()
        ex.check()

    def of(self, kind: str) -> list[dict]:
        return [wire_event(e) for e in self.events if e[0] == kind]


@pytest.fixture(scope="module")
def day() -> Run:
    return Run(seed=11, commands=N)


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = list(market_day(seed=5, accounts=60, commands=4000))
    b = list(market_day(seed=5, accounts=60, commands=4000))
    c = list(market_day(seed=6, accounts=60, commands=4000))
    assert a == b
    assert a != c


def test_exact_size_dense_seqs_and_a_clock_that_never_goes_back(day: Run) -> None:
    cmds = day.commands
    assert len(cmds) == N
    assert [c.seq for c in cmds] == list(range(1, N + 1))
    assert all(a.ts <= b.ts for a, b in zip(cmds, cmds[1:]))
    shifted = list(market_day(seed=11, commands=N, seq0=1001, ts0=5))
    assert shifted[0][1] == 1001 and shifted[-1][1] == N + 1000 and shifted[0][2] >= 5


def test_lazy_and_checked_eagerly() -> None:
    it = market_day(seed=1, commands=10**9)  # a billion: only what is taken is made
    first = list(islice(it, 10))
    assert first[0][0] == "create_market" and len(first) == 10
    with pytest.raises(ValueError):
        market_day(commands=minimum_commands(4, 300) - 1)
    assert len(list(market_day(commands=minimum_commands(4, 300)))) == minimum_commands(4, 300)


def test_every_command_survives_json_and_the_stream_form(day: Run) -> None:
    for cmd in day.commands:
        obj = to_json(cmd)
        assert problem(obj) is None, (cmd, problem(obj))
        assert decode(obj, cmd.seq, cmd.ts) == cmd
        assert decode(to_wire(cmd), cmd.seq, cmd.ts, wire=True) == cmd


def test_money_is_conserved_and_every_market_is_settled_or_voided(day: Run) -> None:
    ex = day.ex
    assert {m.status for m in ex.markets()} <= {"SETTLED", "VOIDED"}
    assert [m.status for m in ex.markets()].count("SETTLED") >= 3
    assert ex.live_orders == 0
    flows = sum(c.amount for c in day.commands if c.type == "deposit")
    rejected_out = {e[1] for e in day.events if e[0] == "order_rejected"}
    flows -= sum(
        c.amount for c in day.commands if c.type == "withdraw" and c.seq not in rejected_out
    )
    assert ex.net_deposits == flows
    assert sum(a.balance for a in ex.accounts()) + ex.house == flows
    assert all(a.exposure == 0 for a in ex.accounts())
    assert ex.house > 0
    assert day.stats.house == ex.house and day.stats.net_deposits == flows


def test_trades_in_every_market_and_few_rejections(day: Run) -> None:
    traded = Counter(t["market"] for t in day.of("trade"))
    assert set(traded) == {m.id for m in day.ex.markets()}
    assert min(traded.values()) >= 50
    reasons = Counter(r["reason"] for r in day.of("order_rejected"))
    assert "MALFORMED" not in reasons and "NOT_OWNER" not in reasons
    assert "DUPLICATE_REF" not in reasons and "INVALID_PRICE" not in reasons
    assert sum(reasons.values()) < 0.02 * N
    assert len(day.of("trade")) > 0.1 * N


def test_cancels_name_live_orders_of_their_owner(day: Run) -> None:
    targets = day.cancel_targets
    assert len(targets) > 0.15 * N
    kinds = Counter(k for k, _, _ in targets)
    assert kinds["replace"] > 0.02 * N
    stale = [t for t in targets if t[2] is None]  # no owner: an order that just went
    assert len(stale) < 0.01 * len(targets)
    reduces = [c for c in day.commands if c.type == "cancel" and c.reduce is not None]
    assert len(reduces) > 0.01 * N
    partial = [e for e in day.of("order_cancelled") if e["reason"] == "USER" and e["remaining"]]
    assert partial, "no partial cancel left something resting"


def test_order_mix(day: Run) -> None:
    places = [c for c in day.commands if c.type == "place"]
    assert len(places) > 0.4 * N
    mix = Counter(c.tif for c in places)
    assert mix["GTC"] > mix["IOC"] > mix["FOK"] > 0
    sides = Counter(c.side for c in places)
    assert 0.35 < sides["BACK"] / len(places) < 0.65
    assert 0.1 < Counter(c.persistence for c in places)["PERSIST"] / len(places) < 0.5
    refs = [c for c in places if c.ref is not None]
    assert 0.02 * len(places) < len(refs) < 0.2 * len(places)
    assert len({(c.account, c.ref) for c in refs}) == len(refs)
    stakes = sorted(c.stake for c in places)
    assert stakes[len(stakes) // 2] < 2000  # most are small...
    assert stakes[-1] > 50 * stakes[len(stakes) // 2]  # ...a few are large
    assert all(type(c.stake) is int and type(c.price) is int for c in places)


def test_lifecycle_suspensions_in_play_lapses_and_delays(day: Run) -> None:
    cmds = day.commands
    status = [(c.market, c.status) for c in cmds if c.type == "market_status"]
    # brief suspensions: suspended, then open again, before the market goes in-play
    reopened = {m for (m, s), (m2, s2) in zip(status, status[1:]) if s == "SUSPENDED"}
    assert any((m, "OPEN") in status for m in reopened)
    turns = [c for c in cmds if c.type == "turn_in_play"]
    assert turns
    lapsed = [e for e in day.of("order_cancelled") if e["reason"] == "LAPSE"]
    assert len(lapsed) > 10
    # in-play orders wait out the bet delay, then reach the book (trading there)
    delay = {c.market: c.bet_delay_ms for c in cmds if c.type == "create_market"}
    turned_at = {c.market: c.seq for c in turns}
    ts = {c.seq: c.ts for c in cmds}
    placed = {
        c.seq: c for c in cmds
        if c.type == "place" and c.market in turned_at and c.seq > turned_at[c.market]
        and not day.by_seq[c.seq][0][0] == "order_rejected"
    }
    released = 0
    for seq, out in day.by_seq.items():
        for e in out:
            if e[0] == "trade":
                trade = wire_event(e)
                taker = trade["back_order"] if trade["taker"] == "BACK" else trade["lay_order"]
                if taker in placed and seq > taker:
                    c = placed[taker]
                    assert ts[seq] >= c.ts + delay[c.market]
                    released += 1
    assert released > 20
    assert any(c.type == "heartbeat" for c in cmds)


def test_results_follow_the_race(day: Run) -> None:
    settled = {c.market: c.winners for c in day.commands if c.type == "settle"}
    markets = {m.id: m for m in day.stats.markets}
    for mid, winners in settled.items():
        assert len(winners) == markets[mid].winners
        assert markets[mid].result == winners
    place = [m for m in day.stats.markets if m.kind == "PLACE"]
    assert place, "the default card has a PLACE market"
    for p in place:
        win = next(m for m in day.stats.markets if m.event == p.event and m.kind == "WIN")
        if p.id in settled and win.id in settled:
            assert settled[win.id][0] == settled[p.id][0]
    assert any(m.status == "VOIDED" for m in day.stats.markets)
    assert any(m.bet_delay_ms > 0 and m.in_play for m in day.stats.markets)
    assert {m.commission for m in day.stats.markets} >= {500}


def test_stats_agree_with_the_events(day: Run) -> None:
    st = day.stats
    assert st.total == N
    assert st.commands == dict(Counter(c.type for c in day.commands))
    assert st.events == dict(Counter(e[0] for e in day.events))
    assert st.trades == len(day.of("trade"))
    assert st.rejections == dict(Counter(r["reason"] for r in day.of("order_rejected")))
    assert st.accounts == 300 and len(st.markets) == 4
    assert st.rate > 0 and "commands" in st.summary()
    assert st.as_dict()["commands"] == N


def test_no_mistakes_means_no_rejections() -> None:
    run = Run(seed=3, commands=8000, accounts=80, mistakes=0)
    assert run.of("order_rejected") == []
    assert all(owner is not None for _, _, owner in run.cancel_targets)


@pytest.mark.parametrize("markets,accounts", [(1, 3), (2, 20), (7, 50)])
def test_other_sizes(markets: int, accounts: int) -> None:
    n = max(minimum_commands(markets, accounts), 3000)
    run = Run(seed=markets, markets=markets, accounts=accounts, commands=n)
    assert len(run.commands) == n
    assert {m.status for m in run.ex.markets()} <= {"SETTLED", "VOIDED"}
    assert len(run.ex.markets()) == markets
    rejected = len(run.of("order_rejected"))
    assert rejected < 0.03 * n
    assert not [r for r in run.of("order_rejected") if r["reason"] in ("MALFORMED", "NOT_OWNER")]


def test_order_ids_follow_a_journal_that_numbers_differently() -> None:
    ids = OrderIds()
    ids.record([1, 2, 3], [101, 102, 103])
    ids.record([4, 5], [105, 106])  # something else was sequenced as 104
    assert ids.order_id(2) == 102 and ids.order_id(5) == 106
    assert ids.translate(("cancel", 6, 0, "a", 4, None)) == ("cancel", 6, 0, "a", 105, None)
    assert ids.translate(("replace", 7, 0, "a", 3, 250)) == ("replace", 7, 0, "a", 103, 250)
    assert ids.translate(("deposit", 8, 0, "a", 100)) == ("deposit", 8, 0, "a", 100)
    with pytest.raises(KeyError):
        ids.order_id(9)


def test_a_replay_at_speed_cuts_idle_gaps_to_max_gap() -> None:
    from tools.sources.load import Pace

    hour = 3_600_000
    ts = [1_000, 2_000, 2_000 + 9 * hour, 2_500 + 9 * hour, 2_500 + 10 * hour]
    plain = Pace(100.0)
    assert [plain.offset(t) for t in ts] == [(t - 1_000) / 1000 / 100 for t in ts]
    capped = Pace(100.0, max_gap=60)
    # each pause of hours counts as a minute: 1 s, +60 s, +0.5 s, +60 s of stream time
    assert [capped.offset(t) for t in ts] == [0.0, 0.01, 0.61, 0.615, 1.215]
