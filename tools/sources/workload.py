"""The seeded benchmark workload: a busy but orderly market, as command tuples.

Several markets, about a thousand funded accounts; per command roughly 70% placements that
rest near a slowly drifting fair price on both sides, 25% cancels of orders that are live at
that moment, 5% orders that cross the spread and trade. Commands are generated against a
model exchange, so every cancel names an order that really is live and every crossing order
really crosses; the same seed always gives the same commands.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from exchange import Exchange
from exchange.units import PRICES, TICK

Command = tuple


def core_workload(
    n: int,
    *,
    seed: int = 1,
    markets: int = 8,
    accounts: int = 1000,
    runners: int = 6,
    ts0: int = 1_700_000_000_000,
) -> list[Command]:
    """``n`` commands (the set-up included): markets, deposits, then the order flow."""
    return list(iter_core_workload(n, seed=seed, markets=markets, accounts=accounts,
                                   runners=runners, ts0=ts0))


def iter_core_workload(
    n: int,
    *,
    seed: int = 1,
    markets: int = 8,
    accounts: int = 1000,
    runners: int = 6,
    ts0: int = 1_700_000_000_000,
) -> Iterator[Command]:
    """As ``core_workload``, one command at a time."""
    rng = random.Random(seed)
    model = Exchange()
    seq = 0
    ts = ts0

    def emit(cmd: Command) -> Command:
        model.apply(cmd)
        return cmd

    names = [f"acct-{i:04d}" for i in range(accounts)]
    mids = [f"1.{100000 + m}" for m in range(markets)]
    setup: list[tuple] = []
    for mid in mids:
        setup.append(("create_market", mid, tuple(range(1, runners + 1)), 500, 100, 1, 0))
    for name in names:
        setup.append(("deposit", name, 1_000_000_00))
    # Fair price per (market, runner): a tick index that drifts one tick at a time.
    fair = {(mid, r): TICK[rng.choice((250, 300, 400, 500, 700, 1000))]
            for mid in mids for r in range(1, runners + 1)}
    keys = list(fair)
    live: list[int] = []  # ids of orders placed to rest; pruned lazily
    count = 0
    for body in setup:
        if count >= n:
            return
        seq += 1
        count += 1
        yield emit((body[0], seq, ts) + body[1:])
    while count < n:
        seq += 1
        count += 1
        ts += rng.choice((0, 0, 1, 1, 2))
        r = rng.random()
        if r < 0.25 and live:
            # cancel a random live order (drop ids that matched meanwhile)
            while live:
                k = rng.randrange(len(live))
                oid = live[k]
                live[k] = live[-1]
                live.pop()
                o = model.order(oid)
                if o is not None:
                    yield emit(("cancel", seq, ts, o.pos.acct.id, oid, None))
                    break
            else:
                seq -= 1
                count -= 1
            continue
        key = keys[rng.randrange(len(keys))]
        mid, runner = key
        if rng.random() < 0.002:
            f = fair[key] + rng.choice((-1, 1))
            fair[key] = min(max(f, 20), len(PRICES) - 20)
        f = fair[key]
        account = names[rng.randrange(accounts)]
        stake = rng.choice((200, 500, 1000, 1000, 2000, 5000))
        m = model.market(mid)
        assert m is not None
        ridx = m.index[runner]
        if r < 0.95:
            # rest: backs above the fair price, lays at or below it, never through the book
            off = min(int(rng.expovariate(0.5)), 12)
            if rng.random() < 0.5:
                t = f + 1 + off
                best_lay = m.lays[ridx].best
                if best_lay and t <= TICK[best_lay]:
                    t = TICK[best_lay] + 1
                yield emit(("place", seq, ts, account, mid, runner, "BACK", PRICES[t],
                            stake, "GTC", "LAPSE", None))
            else:
                t = f - off
                best_back = m.backs[ridx].best
                if best_back in TICK and t >= TICK[best_back]:
                    t = TICK[best_back] - 1
                yield emit(("place", seq, ts, account, mid, runner, "LAY", PRICES[t],
                            stake, "GTC", "LAPSE", None))
            live.append(seq)
        else:
            # cross: take the other side a tick or two through the fair price
            if rng.random() < 0.5:
                yield emit(("place", seq, ts, account, mid, runner, "BACK", PRICES[f - 2],
                            stake, "IOC", "LAPSE", None))
            else:
                yield emit(("place", seq, ts, account, mid, runner, "LAY", PRICES[f + 3],
                            stake, "IOC", "LAPSE", None))
