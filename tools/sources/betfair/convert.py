"""The converter: each market change of a recording turned into commands for this exchange.

``Converter`` walks the messages of all files merged by publish time and, for each, sends
what the market's plan decided (``create_market``, status changes, ``settle``) and brings
each runner's book to the recording's: cancels first, then the trades (crossing IOC takers,
with fill liquidity and displaced orders where needed), then the growth. It builds on
``Mirror``, which applies every command as it is written. ``convert`` is the entry point.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from heapq import merge
from pathlib import Path
from typing import Any, TextIO

from exchange.limits import MAX_BALANCE
from exchange.units import TICK, format_rate, parse_fixed

from .accounts import (
    BACK,
    FILL_BACK,
    FILL_LAY,
    LAY,
    LP_BACK,
    LP_LAY,
    MIN_STAKE,
    TAKER_BACK,
    TAKER_LAY,
    deposit_commands,
)
from .mirror import Level, Market, Mirror, Runner
from .plan import MarketPlan, plan_market
from .report import ConversionReport, MarketReport
from .stream import level_pairs, parse_level, read_stream, sorted_runners


class Converter(Mirror):
    """Turns market changes into commands, market by market, through the mirror."""

    def __init__(self, first_seq: int) -> None:
        super().__init__(first_seq)
        self.markets: dict[str, Market] = {}

    # ------------------------------------------------------------ one market change

    def change(
        self, m: Market, pt: int, mc: dict[str, Any], deposits: list[dict[str, Any]]
    ) -> None:
        """Apply market ``m``'s next change, published at ``pt``: the plan's actions that
        come before the runner changes, the recorded book and the trades (only while the
        market is open), then the actions that come after them. ``deposits`` go out with
        the first ``create_market``."""
        plan = m.plan
        i = m.next
        m.next += 1
        m.report.messages += 1
        for action in plan.before.get(i, ()):
            self._action(m, action, pt, deposits)
        if m.status is None:
            return  # no market definition yet: nothing to apply to
        reconcile_all = i in plan.reopen
        if mc.get("img"):
            for each in m.runners.values():
                each.tgt_lay.clear()
                each.tgt_back.clear()
            reconcile_all = True
        touched = self._record_book(m, mc)
        if m.status != "OPEN" or not plan.tradeable[i]:
            pass  # the book waits until the market reopens (cancels and orders are refused)
        else:
            self._bring_runners(m, i, touched, reconcile_all, pt)
        for action in plan.after.get(i, ()):
            self._action(m, action, pt, deposits)

    def _record_book(self, m: Market, mc: dict[str, Any]) -> dict[int, tuple[set[int], set[int]]]:
        """Take a change's ``atb`` and ``atl`` levels into its runners' recorded books (the
        targets); returns the prices it touched per runner, as (LAY prices, BACK prices)."""
        touched: dict[int, tuple[set[int], set[int]]] = {}
        rcs = mc.get("rc")
        for rc in rcs if isinstance(rcs, list) else ():
            rid = rc.get("id") if isinstance(rc, dict) else None
            r = m.runners.get(rid) if type(rid) is int else None
            if r is None or not isinstance(rc, dict):
                m.report.unknown_runners += 1
                continue
            lay_t, back_t = touched.setdefault(r.id, (set(), set()))
            for key, tgt, t in (("atb", r.tgt_lay, lay_t), ("atl", r.tgt_back, back_t)):
                for p, s in level_pairs(rc.get(key)):
                    price, size, _ = parse_level(p, s)
                    if price is None:
                        continue
                    if size:
                        tgt[price] = size
                    else:
                        tgt.pop(price, None)
                    t.add(price)
        return touched

    def _bring_runners(
        self, m: Market, i: int, touched: dict[int, tuple[set[int], set[int]]],
        reconcile_all: bool, pt: int,
    ) -> None:
        """Bring every runner's book to the recording's at change ``i``: first with the
        trades planned there (at the prices touched, or all after a reopening or an image),
        then with the trades moved there from later changes."""
        own = self._by_runner(m, m.plan.own.get(i, ()))
        for rid, r in m.runners.items():
            lay_t, back_t = touched.get(rid, (set(), set()))
            if reconcile_all:
                lay_t = set(r.lay) | set(r.tgt_lay)
                back_t = set(r.back) | set(r.tgt_back)
            trades = own.get(rid, {})
            if lay_t or back_t or trades:
                self._runner(m, r, lay_t, back_t, trades, pt)
        moved = self._by_runner(m, m.plan.moved.get(i, ()))
        for rid, r in m.runners.items():
            if rid in moved:
                self._runner(m, r, set(), set(), moved[rid], pt, moved=True)

    def _by_runner(
        self, m: Market, trades: Iterable[tuple[int, int, int]]
    ) -> dict[int, dict[int, int]]:
        """Planned trades (runner, price, pence) per runner and price; those of runners the
        market does not have are lost."""
        out: dict[int, dict[int, int]] = {}
        for rid, p, d in trades:
            if rid not in m.runners:
                m.report.lost_trades += 1
                m.report.lost_volume += d
                continue
            t = out.setdefault(rid, {})
            t[p] = t.get(p, 0) + d
        return out

    def _action(
        self, m: Market, action: tuple[Any, ...], pt: int, deposits: list[dict[str, Any]]
    ) -> None:
        """Send one of the plan's market-level actions: ``create_market`` (with the runners
        and, the first time, every deposit), ``turn_in_play``, ``market_status``, ``settle``."""
        kind = action[0]
        if kind == "create":
            md = m.plan.first_def
            assert md is not None
            runners = [r["id"] for r in sorted_runners(md)]
            rate = parse_fixed(md.get("marketBaseRate", 0), 2)
            winners = md.get("numberOfWinners")
            cmd = {
                "type": "create_market", "market": m.id, "runners": runners,
                "commission": format_rate(rate if rate is not None and rate >= 0 else 0),
                "min_stake": MIN_STAKE,
                "winners": winners if type(winners) is int and winners > 0 else 1,
                "bet_delay_ms": m.plan.delay, "ts": pt,
            }
            self.emit(cmd)
            m.runners = {rid: Runner(rid) for rid in runners}
            m.status = "OPEN"
            m.report.runners = runners
            m.report.number_of_winners = winners if type(winners) is int and winners > 0 else 1
            m.report.bet_delay_ms = m.plan.delay
            for d in deposits:
                self.emit(dict(d, ts=pt))
            deposits.clear()
        elif kind == "turn_in_play":
            self.emit({"type": "turn_in_play", "market": m.id, "ts": pt})
        elif kind == "status":
            self.emit({"type": "market_status", "market": m.id, "status": action[1], "ts": pt})
            m.status = action[1]
        elif kind == "settle":
            self.emit({"type": "settle", "market": m.id, "winners": list(action[1]), "ts": pt})
            m.status = "CLOSED"
            m.report.winners = list(action[1])
            m.report.settled = True

    # ------------------------------------------------------------ the book of one runner

    def _runner(
        self, m: Market, r: Runner, lay_touch: set[int], back_touch: set[int],
        trades: dict[int, int], ts: int, moved: bool = False,
    ) -> None:
        """Bring one runner's book to the recording's after trading ``trades`` (price ->
        pence): cancels first, then the trades, then the growth, so nothing crosses.

        ``moved`` trades are reported later by the recording than they are replayed: the
        levels they consume are left consumed (the recording shows them shrink when it reports
        the trade), and only liquidity displaced for them is put back."""
        lay_touch = set(lay_touch)
        back_touch = set(back_touch)
        backers: list[tuple[int, int]] = []  # BACK takers, taking LAY money
        layers: list[tuple[int, int]] = []  # LAY takers, taking BACK money
        credit_lay: dict[int, int] = {}
        credit_back: dict[int, int] = {}
        if trades:
            bl, bb = self._best(r.lay, LAY), self._best(r.back, BACK)
            nbl = max(r.tgt_lay) if r.tgt_lay else None
            nbb = min(r.tgt_back) if r.tgt_back else None
            for p in sorted(trades):
                d = trades[p]
                if self._taker_backs(r, p, bl, bb, nbl, nbb):
                    backers.append((p, d))
                    credit_lay[p] = d
                    lay_touch.add(p)
                else:
                    layers.append((p, d))
                    credit_back[p] = d
                    back_touch.add(p)
        # 1. shrinkage not explained by the trades
        for book, tgt, credit, touch in (
            (r.lay, r.tgt_lay, credit_lay, lay_touch), (r.back, r.tgt_back, credit_back, back_touch)
        ):
            for p in sorted(touch):
                lvl = book.get(p)
                if lvl is not None:
                    excess = lvl.free - credit.get(p, 0) - tgt.get(p, 0)
                    if excess > 0:
                        self._cancel(lvl, excess, ts)
        # 2. the trades: backers from the highest price down, layers from the lowest up
        displaced_lay: set[int] = set()
        displaced_back: set[int] = set()
        for p, d in sorted(backers, reverse=True):
            self._trade(m, r, BACK, p, d, ts, displaced_lay, displaced_back)
        for p, d in layers:
            self._trade(m, r, LAY, p, d, ts, displaced_lay, displaced_back)
        lay_touch |= displaced_lay
        back_touch |= displaced_back
        if moved:
            lay_touch -= set(credit_lay) - displaced_lay
            back_touch -= set(credit_back) - displaced_back
        # 3. the recording's book: cancel what is too much, then add what is missing
        for book, tgt, touch in ((r.lay, r.tgt_lay, lay_touch), (r.back, r.tgt_back, back_touch)):
            for p in sorted(touch):
                lvl = book.get(p)
                if lvl is not None and lvl.free > tgt.get(p, 0):
                    self._cancel(lvl, lvl.free - tgt.get(p, 0), ts)
        best_back = self._best(r.back, BACK)
        for p in sorted(lay_touch):
            lvl = r.lay.get(p)
            have = lvl.free if lvl is not None else 0
            want = r.tgt_lay.get(p, 0)
            if want > have:
                if best_back is not None and best_back <= p:
                    m.report.crossed_skipped += 1
                    continue
                self._place(m, r, LAY, p, want - have, LP_LAY, ts)
        best_lay = self._best(r.lay, LAY)
        for p in sorted(back_touch):
            lvl = r.back.get(p)
            have = lvl.free if lvl is not None else 0
            want = r.tgt_back.get(p, 0)
            if want > have:
                if best_lay is not None and best_lay >= p:
                    m.report.crossed_skipped += 1
                    continue
                self._place(m, r, BACK, p, want - have, LP_BACK, ts)

    @staticmethod
    def _taker_backs(
        r: Runner, p: int, bl: int | None, bb: int | None, nbl: int | None, nbb: int | None
    ) -> bool:
        """Whether volume traded at ``p`` is best replayed as a backer taking LAY money (else
        a layer taking BACK money): the side that holds money at ``p``, else the side of the
        book ``p`` lies in, else the nearer side of the spread."""
        lvl = r.lay.get(p)
        if lvl is not None and lvl.free > 0:
            return True
        lvl = r.back.get(p)
        if lvl is not None and lvl.free > 0:
            return False
        if p in r.tgt_lay:
            return True
        if p in r.tgt_back:
            return False
        for lo, hi in ((bl, bb), (nbl, nbb)):
            if lo is not None and p < lo:
                return True
            if hi is not None and p > hi:
                return False
        lo = bl if bl is not None else nbl
        hi = bb if bb is not None else nbb
        if lo is None or hi is None:
            return hi is None
        return TICK[p] - TICK[lo] <= TICK[hi] - TICK[p]

    def _trade(
        self, m: Market, r: Runner, taker: str, p: int, d: int, ts: int,
        lay_touch: set[int], back_touch: set[int],
    ) -> None:
        """Trade exactly ``d`` at ``p``: clear what would be taken first or would cross the
        fill, add the liquidity the book lacks, then send the taker."""
        if taker == BACK:
            own, opp, own_touch, opp_touch = r.lay, r.back, lay_touch, back_touch
        else:
            own, opp, own_touch, opp_touch = r.back, r.lay, back_touch, lay_touch
        # ``own`` is the side the taker consumes (LAY money for a backer).
        for q in sorted(own):
            lvl = own[q]
            if lvl.free > 0 and ((q > p) if taker == BACK else (q < p)):
                m.report.displaced_volume += lvl.free
                m.report.displaced_orders += self._cancel(lvl, lvl.free, ts)
                own_touch.add(q)
        for q in sorted(opp):
            lvl = opp[q]
            if lvl.free > 0 and ((q <= p) if taker == BACK else (q >= p)):
                m.report.displaced_volume += lvl.free
                m.report.displaced_orders += self._cancel(lvl, lvl.free, ts)
                opp_touch.add(q)
        at_p = own.get(p)
        have = at_p.free if at_p is not None else 0
        if have < d:
            maker_side = LAY if taker == BACK else BACK
            self._place(m, r, maker_side, p, d - have, FILL_LAY if taker == BACK else FILL_BACK, ts)
            m.report.fill_orders += 1
            m.report.fill_volume += d - have
        m.report.trades += 1
        self._place(
            m, r, taker, p, d, TAKER_BACK if taker == BACK else TAKER_LAY, ts, taker_level=own[p]
        )

    @staticmethod
    def _best(book: dict[int, Level], side: str) -> int | None:
        """The best price at which we hold money not reserved by takers, on one side."""
        prices = [p for p, lvl in book.items() if lvl.total > lvl.reserved]  # few levels
        if not prices:
            return None
        return min(prices) if side == BACK else max(prices)

# ---------------------------------------------------------------------------- the API


Entry = tuple[int, int, int, dict[str, Any]]
"""One market change as read: (pt, file index, message index in the file, mc)."""


def convert(
    paths: str | Path | Iterable[str | Path], *, first_seq: int = 1
) -> tuple[list[dict[str, Any]], ConversionReport]:
    """Convert recordings into JSON-form commands, in one pass over all files.

    Each market (a file usually holds one) becomes its own exchange market; messages of all
    files are merged by publish time (``pt``) so ``ts`` never goes backwards and markets that
    ran at the same time interleave as they did. Order ids are sequence numbers: the commands
    must be applied in the order given, the first with seq ``first_seq`` (1 for a fresh
    exchange; pass the next free seq to append to a journal that already holds commands).
    Returns the commands and a ``ConversionReport``.
    """
    started = time.perf_counter()
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    report = ConversionReport(first_seq=first_seq)
    streams, per_market = _read_files(paths, report)
    plans = {mid: plan_market(mid, changes) for mid, changes in per_market.items()}
    conv = Converter(first_seq)
    deposits = _fund(plans, report)
    _start_markets(conv, plans, report)
    for pt, _, _, mc in merge(*streams, key=lambda e: (e[0], e[1], e[2])):
        conv.change(conv.markets[mc["id"]], pt, mc, deposits)
    report.heartbeats = conv.drain()
    _finish_report(conv, report)
    report.seconds = time.perf_counter() - started
    return conv.commands, report


def _read_files(
    paths: list[Path], report: ConversionReport
) -> tuple[list[list[Entry]], dict[str, list[tuple[int, dict[str, Any]]]]]:
    """Read every file: its market changes in file order (to merge by time), and every
    market's changes (pt, mc) in order of first appearance (to plan each market)."""
    streams: list[list[Entry]] = []
    per_market: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for n, path in enumerate(paths):
        entries = []
        markets: list[str] = []
        count = 0
        for j, msg in enumerate(read_stream(path)):
            count += 1
            for mc in msg.get("mc") or ():
                if not isinstance(mc, dict) or not isinstance(mc.get("id"), str):
                    continue
                mid = mc["id"]
                if mid not in per_market:
                    per_market[mid] = []
                    markets.append(mid)
                per_market[mid].append((msg["pt"], mc))
                entries.append((msg["pt"], n, j, mc))
        streams.append(entries)
        report.files.append({"path": str(path), "messages": count, "markets": markets})
        report.messages += count
    return streams, per_market


def _fund(plans: dict[str, MarketPlan], report: ConversionReport) -> list[dict[str, Any]]:
    """The deposits every account gets, sent once right after the first ``create_market``:
    twice the plans' bound on any account's worst case, at least £1,000 and at most the
    largest balance, in whole pounds."""
    bound = sum(p.exposure_bound for p in plans.values())
    amount = min(max(2 * bound, 100_000), MAX_BALANCE)
    amount = -(-amount // 100) * 100  # whole pounds
    report.deposit_per_account = amount
    return deposit_commands(amount)


def _start_markets(
    conv: Converter, plans: dict[str, MarketPlan], report: ConversionReport
) -> None:
    """Give every market its report (what the plan already knows: recorded, moved and lost
    volume) and its place in the converter."""
    for mid, plan in plans.items():
        mr = MarketReport(mid)
        mr.moved_trades, mr.moved_volume = plan.moved_count, plan.moved_volume
        mr.lost_trades, mr.lost_volume = plan.lost, plan.lost_volume
        mr.off_ladder, mr.fractional_sizes = plan.off_ladder, plan.fractional
        mr.recorded_volume = sum(plan.recorded.values())
        report.markets[mid] = mr
        for (rid, price), v in sorted(plan.recorded.items()):
            report.recorded_volume[(mid, rid, price)] = v
        conv.markets[mid] = Market(plan, mr)


def _finish_report(conv: Converter, report: ConversionReport) -> None:
    """What the commands did on the mirror: final statuses, commands by type, matched volume
    and rejections."""
    for mid, m in conv.markets.items():
        mk = conv.ex.market(mid)
        m.report.final_status = mk.status if mk is not None else None
    report.commands = len(conv.commands)
    by_type: dict[str, int] = {}
    for c in conv.commands:
        by_type[c["type"]] = by_type.get(c["type"], 0) + 1
    report.commands_by_type = by_type
    report.matched_volume = dict(sorted(conv.matched.items()))
    report.rejections = conv.rejections


def dump_commands(commands: Iterable[dict[str, Any]], stream: TextIO) -> int:
    """Write commands as a command file (one JSON object a line); how many."""
    n = 0
    for cmd in commands:
        stream.write(json.dumps(cmd))
        stream.write("\n")
        n += 1
    return n
