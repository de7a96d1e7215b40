"""The plan: a first pass over one market's messages deciding what each message must do.

Deciding it in advance lets trades recorded while the market could not trade move to the
latest moment it could, and gives the final winners and the funds the accounts need.
``plan_market`` works in five steps, each a function below, in this order:

1. ``_read_definitions``: the first market definition (``create_market``), the final one
   (the winners) and the in-play bet delay;
2. ``_schedule_status``: the status commands each message sends before or after its runner
   changes, and whether the market is open when those changes are applied;
3. ``_next_close`` and ``_executable``: at which messages an order sent now can still trade
   (open, and in-play only if its bet delay ends before the market next stops);
4. ``_schedule_trades``: every increase of a price's traded size, traded at its own message,
   moved to the latest earlier message that can trade, or lost; and the book's peaks;
5. ``_exposure_bound``: a generous bound on any account's worst case, for the deposits.
"""

from __future__ import annotations

from typing import Any

from exchange.units import lay_liability, parse_fixed

from .stream import level_pairs, parse_level, sorted_runners

Change = tuple[int, dict[str, Any]]
"""One market change of a market and the publish time (``pt``) of its message."""
Increase = tuple[int, int, int]
"""A traded-volume increase: (runner id, price in hundredths, size in pence)."""
Action = tuple[Any, ...]
"""A market-level command to send: ("create",), ("turn_in_play",), ("status", status) or
("settle", winners)."""


class MarketPlan:
    """What each of one market's messages must do, decided before any command is written.

    Messages are numbered by their index in ``changes``; every table below is keyed by it."""

    def __init__(self, market: str, changes: list[Change]) -> None:
        self.market = market
        self.changes = changes  # (pt, mc) in order
        self.first_def: dict[str, Any] | None = None
        self.final_def: dict[str, Any] | None = None
        self.final_index = -1
        self.delay = 0
        self.before: dict[int, list[Action]] = {}  # actions before the runner changes
        self.after: dict[int, list[Action]] = {}  # actions after them
        self.reopen: set[int] = set()  # messages after which the whole book is reconciled
        self.tradeable: list[bool] = []  # is the market OPEN when the changes are applied
        self.own: dict[int, list[Increase]] = {}  # (runner, price, size) traded here
        self.moved: dict[int, list[Increase]] = {}  # moved here from later
        self.recorded: dict[tuple[int, int], int] = {}  # (runner, price) -> peak, pence
        self.exposure_bound = 0  # pence: a generous bound on any account's worst case
        self.lost = 0
        self.lost_volume = 0
        self.moved_count = 0
        self.moved_volume = 0
        self.off_ladder = 0
        self.fractional = 0


def plan_market(market: str, changes: list[Change]) -> MarketPlan:
    """Plan one market from all its changes, in order (see the module docstring). A market
    whose messages never define it gets an empty plan: none of its messages does anything."""
    plan = MarketPlan(market, changes)
    _read_definitions(plan)
    if plan.first_def is None:
        return plan
    closes, inplay_at = _schedule_status(plan)
    executable = _executable(plan, _next_close(closes), inplay_at)
    atb_max, atl_max = _schedule_trades(plan, executable)
    plan.exposure_bound = _exposure_bound(atb_max, atl_max, plan.recorded)
    return plan


# ---------------------------------------------------------------- 1. the market definitions


def _read_definitions(plan: MarketPlan) -> None:
    """Find the first market definition (it creates the market), the final one (its winners
    settle it) and the bet delay: that of the first in-play definition, in milliseconds."""
    for i, (_, mc) in enumerate(plan.changes):
        md = mc.get("marketDefinition")
        if isinstance(md, dict):
            if plan.first_def is None:
                plan.first_def = md
            plan.final_def = md
            plan.final_index = i
            if md.get("inPlay") and not plan.delay and type(md.get("betDelay")) is int:
                plan.delay = max(0, md["betDelay"]) * 1000


# ---------------------------------------------------------------- 2. status per message


def _schedule_status(plan: MarketPlan) -> tuple[list[int | None], list[bool]]:
    """Fill ``plan.before``, ``plan.after``, ``plan.reopen`` and ``plan.tradeable``.

    Changes that open the market (or turn it in-play) apply before the message's runner
    changes, changes that suspend or close it after them: a message's book and trades belong
    to the market as it was before it suspended. The final definition's ``WINNER`` runners
    settle the market. Returns, per message, the time the market stops trading at it (None
    if it does not) and whether the market is in-play there."""
    status: str | None = None
    in_play = False
    closes: list[int | None] = []  # time of the status change leaving OPEN at message i
    inplay_at: list[bool] = []
    created = False
    for i, (pt, mc) in enumerate(plan.changes):
        md = mc.get("marketDefinition")
        before: list[Action] = []
        after: list[Action] = []
        if isinstance(md, dict):
            new_status = md.get("status")
            new_in_play = bool(md.get("inPlay"))
            if not created:
                created = True
                before.append(("create",))
                status = "OPEN"
            if status not in ("CLOSED", None):
                if new_in_play and not in_play:
                    before.append(("turn_in_play",))
                    in_play = True
                if new_status == "OPEN" and status != "OPEN":
                    before.append(("status", "OPEN"))
                    plan.reopen.add(i)
                    status = "OPEN"
        tradeable = status == "OPEN"
        if isinstance(md, dict) and status not in ("CLOSED", None):
            new_status = md.get("status")
            if new_status in ("SUSPENDED", "CLOSED") and new_status != status:
                after.append(("status", new_status))
                status = new_status
        if i == plan.final_index:
            winners = [r.get("id") for r in sorted_runners(md) if r.get("status") == "WINNER"]
            if winners:
                after.append(("settle", winners))
                status = "CLOSED"
        if before:
            plan.before[i] = before
        if after:
            plan.after[i] = after
        plan.tradeable.append(tradeable and created)
        closes.append(pt if tradeable and status != "OPEN" else None)
        inplay_at.append(in_play)
    return closes, inplay_at


# ---------------------------------------------------------------- 3. where orders can trade


def _next_close(closes: list[int | None]) -> list[int | None]:
    """Seen from each message, the time the market next stops trading (None: never)."""
    n = len(closes)
    next_close: list[int | None] = [None] * n
    upcoming: int | None = None
    for i in range(n - 1, -1, -1):
        if closes[i] is not None:
            upcoming = closes[i]
        next_close[i] = upcoming
    return next_close


def _executable(
    plan: MarketPlan, next_close: list[int | None], inplay_at: list[bool]
) -> list[bool]:
    """Per message, whether an order sent there trades: the market is open, and in-play
    (where an order reaches the book only after the bet delay) the delay ends before the
    market next stops, which would cancel it."""
    out = []
    for i, (pt, _) in enumerate(plan.changes):
        if not plan.tradeable[i]:
            out.append(False)
        elif inplay_at[i] and plan.delay:
            close = next_close[i]
            out.append(close is None or pt + plan.delay <= close)
        else:
            out.append(True)
    return out


# ---------------------------------------------------------------- 4. the trades


def _schedule_trades(
    plan: MarketPlan, executable: list[bool]
) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]:
    """Go through every runner change in order: note the book's peaks (for the deposit
    bound) and turn each traded-volume increase into a trade (``plan.own``, ``plan.moved``)
    or a loss. Returns the peak ``atb`` and ``atl`` size per (runner, price), in pence."""
    atb_max: dict[tuple[int, int], int] = {}
    atl_max: dict[tuple[int, int], int] = {}
    last_ok = -1  # the latest message so far at which an order can trade
    for i, (_, mc) in enumerate(plan.changes):
        ok = executable[i]
        if ok:
            last_ok = i
        rcs = mc.get("rc")
        if not isinstance(rcs, list):
            continue
        for rc in rcs:
            if not isinstance(rc, dict) or type(rc.get("id")) is not int:
                continue
            rid: int = rc["id"]
            _book_peaks(plan, rid, rc, atb_max, atl_max)
            for p, s in level_pairs(rc.get("trd")):
                increase = _trade_increase(plan, rid, p, s)
                if increase is not None:
                    _place_increase(plan, i, ok, last_ok, rid, *increase)
    return atb_max, atl_max


def _book_peaks(
    plan: MarketPlan, rid: int, rc: dict[str, Any],
    atb_max: dict[tuple[int, int], int], atl_max: dict[tuple[int, int], int],
) -> None:
    """Raise the peak ``atb`` and ``atl`` sizes with one runner change's book; count the
    levels off the ladder and the sizes rounded down to the penny."""
    for key, table in (("atb", atb_max), ("atl", atl_max)):
        for p, s in level_pairs(rc.get(key)):
            price, size, frac = parse_level(p, s)
            plan.fractional += frac
            if price is None:
                plan.off_ladder += 1
            elif size:
                k = (rid, price)
                if size > table.get(k, 0):
                    table[k] = size


def _trade_increase(
    plan: MarketPlan, rid: int, p: Any, s: Any
) -> tuple[int, int, bool] | None:
    """One recorded ``trd`` level: if it rises above its price's peak so far (the recorded
    volume, ``plan.recorded``), raise the peak and return (price, increase in pence, whether
    the price is off the ladder); else None. An off-ladder price is still recorded volume if
    it is a positive number of hundredths at all, but it cannot trade."""
    ladder_price, size, frac = parse_level(p, s)
    plan.fractional += frac
    off = ladder_price is None
    if ladder_price is not None:
        price = ladder_price
    else:
        plan.off_ladder += 1
        raw = None if type(p) is bool else parse_fixed(p, 2)
        if raw is None or raw <= 0:
            return None
        price = raw
    k = (rid, price)
    old = plan.recorded.get(k, 0)
    if size <= old:
        return None
    plan.recorded[k] = size
    return price, size - old, off


def _place_increase(
    plan: MarketPlan, i: int, ok: bool, last_ok: int, rid: int, price: int, d: int, off: bool
) -> None:
    """Decide where an increase of ``d`` pence at message ``i`` trades: at ``i`` if an order
    can trade there, else moved to the latest earlier message that can (``last_ok``), else
    (or if its price is off the ladder) nowhere: lost."""
    if off:
        plan.lost += 1
        plan.lost_volume += d
    elif ok:
        plan.own.setdefault(i, []).append((rid, price, d))
    elif last_ok >= 0:
        plan.moved.setdefault(last_ok, []).append((rid, price, d))
        plan.moved_count += 1
        plan.moved_volume += d
    else:
        plan.lost += 1
        plan.lost_volume += d


# ---------------------------------------------------------------- 5. the deposit bound


def _exposure_bound(
    atb_max: dict[tuple[int, int], int],
    atl_max: dict[tuple[int, int], int],
    peak: dict[tuple[int, int], int],
) -> int:
    """A generous bound, in pence, on any account's worst case: the largest size ever seen
    at each level at its liability (a LAY's is size × (price − 1), a BACK's its size), plus
    all the traded volume at its price."""
    bound = sum(lay_liability(s, p) for (_, p), s in atb_max.items())
    bound += sum(atl_max.values())
    bound += sum(s * p // 100 for (_, p), s in peak.items())
    return bound
