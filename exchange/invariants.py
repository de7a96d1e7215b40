"""Every structural and money invariant of the exchange, checked from scratch.

Slow (O(state)) and thorough: tests call it after every step. It recomputes what the engine
keeps incrementally and compares:

- books: each level's total and live count equal its orders; best prices are the true best;
  every live order is indexed and points back at its level; no book is crossed (every resting
  BACK is priced above every resting LAY of the same runner);
- positions: the unmatched liabilities and worst-case exposure recomputed from the matched
  bets and the live orders equal the kept ones; each account's exposure is the sum over its
  markets and never exceeds its cover (its balance, up to the exposure limit); each
  position's stake is within the position limit and bounds its amounts;
- zero sum: in every market and for every runner, the matched bets of all accounts sum to zero
  (what one side wins the other loses);
- money: the balances plus the exchange's commission equal deposits minus withdrawals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .accounts import cover
from .book import BACK, NO_BACK, NO_LAY, Level, Pending
from .errors import InvariantError
from .limits import MAX_POSITION_STAKE
from .units import PRICES, lay_liability

if TYPE_CHECKING:
    from .engine import Exchange


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise InvariantError(what)


def check(ex: Exchange) -> None:
    """Raise ``InvariantError`` naming the first invariant that does not hold."""
    seen: dict[int, object] = {}
    # id(position) -> (d delta, sl delta, stake) of its unmatched orders
    unmatched: dict[int, tuple[list[int], int, int]] = {}

    def count(o, side: str, i: int, price: int) -> None:
        pos = o.pos
        d, sl, stake = unmatched.setdefault(id(pos), ([0] * len(pos.d), 0, 0))
        if side == BACK:
            d[i] += o.remaining
            sl -= o.remaining
        else:
            d[i] -= lay_liability(o.remaining, price)
        unmatched[id(pos)] = (d, sl, stake + o.remaining)

    for m in ex._markets.values():
        for i, runner in enumerate(m.runners):
            back, lay = m.backs[i], m.lays[i]
            _require(back.best > lay.best, f"{m.id}/{runner}: crossed {back.best} <= {lay.best}")
            for side in (back, lay):
                where = f"{m.id}/{runner}/{side.side}"
                prices = sorted(side.levels)
                if side.side == BACK:
                    _require(side.best == (prices[0] if prices else NO_BACK), f"{where}: best")
                else:
                    _require(side.best == (prices[-1] if prices else NO_LAY), f"{where}: best")
                for p in prices:
                    lvl = side.levels[p]
                    live = lvl.orders()
                    _require(lvl.price == p and lvl.side is side, f"{where}@{p}: level misfiled")
                    _require(len(live) > 0, f"{where}@{p}: empty level kept")
                    _require(lvl.live == len(live), f"{where}@{p}: live count {lvl.live}")
                    _require(
                        lvl.total == sum(o.remaining for o in live), f"{where}@{p}: level total"
                    )
                    for o in live:
                        _require(o.level is lvl, f"order {o.id}: not pointing at its level")
                        _require(ex._orders.get(o.id) is o, f"order {o.id}: not indexed")
                        _require(o.pos.market is m, f"order {o.id}: position of another market")
                        _require(o.id not in seen, f"order {o.id}: rests twice")
                        seen[o.id] = o
                        count(o, side.side, i, p)
    for _, oid, o in ex._pending:
        if not o.remaining:
            continue
        pend = o.level
        _require(type(pend) is Pending, f"order {oid}: pending without a Pending")
        m = pend.side.market
        _require(m.in_play and m.status == "OPEN", f"order {oid}: pending in a market not in play")
        _require(ex._orders.get(oid) is o and oid not in seen, f"order {oid}: pending misindexed")
        seen[oid] = o
        count(o, pend.side.side, pend.side.ridx, pend.price)
    _require(len(seen) == len(ex._orders), f"{len(ex._orders) - len(seen)} orders indexed but lost")
    for o in ex._orders.values():
        _require(o.remaining > 0, f"order {o.id}: indexed with nothing left")
        _require(type(o.level) in (Level, Pending), f"order {o.id}: nowhere")

    exposures: dict[str, int] = {}
    for m in ex._markets.values():
        n = len(m.runners)
        total_w, total_l = [0] * n, [0] * n
        for aid, pos in m.positions.items():
            acct = pos.acct
            _require(acct.id == aid and acct.positions.get(m.id) is pos, f"{aid}/{m.id}: misfiled")
            du, slu, unmatched_stake = unmatched.get(id(pos), ([0] * n, 0, 0))
            d = [w - lo + x for w, lo, x in zip(pos.mw, pos.ml, du)]
            kept = list(pos.d)
            _require(kept == d, f"{aid}/{m.id}: kept outcomes {kept} != recomputed {d}")
            _require(
                unmatched_stake <= pos.staked <= MAX_POSITION_STAKE,
                f"{aid}/{m.id}: stake {pos.staked}, unmatched {unmatched_stake}",
            )
            # What keeps the amounts inside 64 bits (see limits.MAX_POSITION_STAKE): none
            # exceeds the stake times the top price.
            bound = pos.staked * (PRICES[-1] // 100)
            _require(
                max(map(abs, (*kept, *pos.mw, *pos.ml, pos.sl))) <= bound,
                f"{aid}/{m.id}: an amount beyond {bound}",
            )
            _require(pos.sl == sum(pos.ml) + slu, f"{aid}/{m.id}: kept losses {pos.sl}")
            worst = pos.worst()
            _require(pos.exp == max(0, -worst), f"{aid}/{m.id}: exposure {pos.exp}, worst {worst}")
            exposures[aid] = exposures.get(aid, 0) + pos.exp
            for i in range(n):
                total_w[i] += pos.mw[i]
                total_l[i] += pos.ml[i]
        _require(
            all(w == 0 for w in total_w) and all(lo == 0 for lo in total_l),
            f"{m.id}: matched bets do not sum to zero: win {total_w} lose {total_l}",
        )
        if m.settled:
            _require(not m.positions, f"{m.id}: settled with positions left")
    balances = 0
    for acct in ex._accounts.values():
        _require(acct.exposure == exposures.get(acct.id, 0), f"{acct.id}: exposure")
        _require(
            sum(p.exp for p in acct.positions.values()) == acct.exposure,
            f"{acct.id}: exposure is not the sum over its markets",
        )
        _require(acct.cover == cover(acct.balance), f"{acct.id}: cover {acct.cover}")
        _require(0 <= acct.exposure <= acct.cover, f"{acct.id}: exposure beyond cover")
        balances += acct.balance
    _require(
        balances + ex.house == ex.net_deposits,
        f"money: balances {balances} + house {ex.house} != net deposits {ex.net_deposits}",
    )
