"""The exchange's state as canonical bytes, and back.

A snapshot is a msgpack array holding only what cannot be derived: accounts and balances,
markets with their matched positions and resting orders (price order, then time order), orders
waiting out a bet delay, used client refs, and the counters. Everything derived (level totals,
best prices, unmatched liabilities, exposures) is rebuilt on load, so a snapshot cannot carry an
inconsistency forward, and equal states always encode to equal bytes. The state hash is the
SHA-256 of those bytes.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import deque
from heapq import heapify
from typing import Any

import msgpack  # type: ignore[import-untyped]

from .accounts import Account, Position
from .book import BACK, Order, Pending
from .engine import Exchange
from .errors import SnapshotError
from .limits import MAX_PARTITION
from .market import Market
from .rules import FIRST, FORGET_FINISHED, LATEST, PARTITION_IDS, REF_WINDOW, TRANSFERS

MAGIC = "exch-state"
VERSION = 2
"""The format of a state under rules version 1: what the released version wrote, so the
same state gives the same bytes (and hash) in every release."""
VERSION_RULES = 3
"""The format of a state under rules version 2: version 2's, and the rules version
(``exchange.rules``) last."""
VERSION_FORGET = 4
"""The format of a state under rules version 3 and later: version 3's, and then the markets
that finished, to be forgotten after the grace: [[time finished, market id], ...]."""
VERSION_PARTITION = 5
"""The format of a state of a partition other than 0: version 4's (the rules version and the
finished markets, under any rules), and then the partition number. Partition 0 keeps the
formats above, byte for byte."""
VERSION_TRANSFERS = 6
"""The format of a state under rules version 6 and later, of any partition: version 5's
(rules version, finished markets, partition), and then the transfers credited: per source
partition, the highest source seq, [[partition, seq], ...] in partition order."""
READABLE = (VERSION, VERSION_RULES, VERSION_FORGET, VERSION_PARTITION, VERSION_TRANSFERS)


def _orders_of(side: Any) -> list[list[Any]]:
    return [
        [p, [[o.id, o.pos.acct.id, o.remaining, o.persist] for o in side.levels[p].orders()]]
        for p in sorted(side.levels)
    ]


def dump(ex: Exchange) -> bytes:
    """Canonical bytes of the whole state."""
    markets = []
    for m in ex._markets.values():
        markets.append([
            m.id, m.runners, m.commission, m.min_stake, m.winners, m.delay, m.status, m.in_play,
            [[a, p.traded, p.staked, list(p.mw), list(p.ml)] for a, p in m.positions.items()],
            [[_orders_of(b), _orders_of(lay)] for b, lay in zip(m.backs, m.lays)],
        ])
    pending = []
    for release, oid, o in sorted(ex._pending):
        if o.remaining:
            pend = o.level
            assert type(pend) is Pending
            side = pend.side
            pending.append([
                release, oid, o.pos.acct.id, side.market.id, side.ridx, side.side, pend.price,
                pend.tif, o.remaining, o.persist,
            ])
    if ex.rules >= TRANSFERS:
        version = VERSION_TRANSFERS
    elif ex.partition:
        version = VERSION_PARTITION
    else:
        version = VERSION if ex.rules == FIRST else (
            VERSION_FORGET if ex.rules >= FORGET_FINISHED else VERSION_RULES)
    state = [
        MAGIC, version, ex.last_seq, ex.now, ex.house, ex.net_deposits,
        [[a.id, a.balance] for a in ex._accounts.values()],
        markets,
        pending,
        [[a, r, s] for (a, r), s in ex._refs.items()],
    ]
    if version != VERSION:
        state.append(ex.rules)
    if version >= VERSION_FORGET:
        state.append([[t, mid] for t, mid in ex._finished])
    if version >= VERSION_PARTITION:
        state.append(ex.partition)
    if version == VERSION_TRANSFERS:
        state.append([[p, ex._marks[p]] for p in sorted(ex._marks)])
    return msgpack.packb(state)


def state_hash(data: bytes) -> str:
    """SHA-256 of snapshot bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


def readable(data: bytes) -> bool:
    """Whether ``data`` starts like a snapshot of this version, read without decoding the rest.
    An older version cannot be read (version 2 added each position's stake), so recovery
    passes over it and replays the journal from further back instead."""
    try:
        unpacker = msgpack.Unpacker()
        unpacker.feed(data[:64])
        unpacker.read_array_header()
        return bool(unpacker.unpack() == MAGIC and unpacker.unpack() in READABLE)
    except Exception:  # any undecodable bytes
        return False


def load(data: bytes, partition: int | None = None) -> Exchange:
    """Rebuild an exchange from ``dump`` bytes; derived state is recomputed. With
    ``partition``, a state of another partition is refused (see ``Exchange.restore``)."""
    try:
        state = msgpack.unpackb(data)
        magic, version = state[0], state[1]
    except Exception as e:  # any undecodable bytes
        raise SnapshotError(f"not a snapshot: {e}") from e
    if magic != MAGIC or version not in READABLE:
        raise SnapshotError(f"not a snapshot this version reads ({READABLE}): "
                            f"{magic!r} {version!r}")
    try:
        ex = _build(state)
    except (OverflowError, TypeError, ValueError, KeyError, IndexError) as e:
        # hash-checked snapshots never get here: a hand-made or foreign file
        raise SnapshotError(f"not a valid snapshot: {type(e).__name__}: {e}") from e
    for acct in ex._accounts.values():
        if not 0 <= acct.exposure <= acct.cover:
            raise SnapshotError(f"not a valid snapshot: {acct.id} is exposed beyond its cover")
    if partition is not None and partition != ex.partition:
        if ex.partition != 0 or ex.rules >= PARTITION_IDS:
            raise SnapshotError(f"a snapshot of partition {ex.partition}, not of {partition}")
        ex.partition = partition  # an older release's state, which held no partition
    return ex


def _build(state: list[Any]) -> Exchange:
    """The exchange a decoded snapshot describes (``load`` checks what it gives)."""
    _, version, last_seq, now, house, net, accounts, markets, pending, refs = state[:10]
    partition = 0
    rules: Any = FIRST
    finished: list = []
    marks: list = []
    if version == VERSION_PARTITION:
        rules, finished, partition = state[10:]
        if type(partition) is not int or partition == 0:
            raise ValueError(f"partition {partition!r} is not one this format holds")
    elif version == VERSION_TRANSFERS:
        rules, finished, partition, marks = state[10:]
        if type(rules) is not int or rules < TRANSFERS:
            raise ValueError(f"rules version {rules!r} is not one this format holds")
    ex = Exchange(partition)
    ex.last_seq, ex.now, ex.house, ex.net_deposits = last_seq, now, house, net
    if version == VERSION_RULES:
        (ex.rules,) = state[10:]
        if type(ex.rules) is not int or not FIRST < ex.rules < FORGET_FINISHED:
            raise ValueError(f"rules version {ex.rules!r} is not one this format holds")
    elif version == VERSION_FORGET:
        ex.rules, finished = state[10:]
        if type(ex.rules) is not int or not FORGET_FINISHED <= ex.rules <= LATEST:
            raise ValueError(f"rules version {ex.rules!r} is not one this release knows")
    elif version in (VERSION_PARTITION, VERSION_TRANSFERS):
        if type(rules) is not int or not FIRST <= rules <= LATEST:
            raise ValueError(f"rules version {rules!r} is not one this release knows")
        ex.set_rules(rules, now)  # what the version implies (the ids' partition part) too
    elif len(state) != 10:
        raise ValueError("a version 2 state has ten parts")
    for aid, balance in accounts:
        ex._accounts[aid] = Account(aid, balance)
    orders = ex._orders
    for mid, runners, commission, min_stake, winners, delay, status, in_play, poss, books in (
        markets
    ):
        m = ex._markets[mid] = Market(mid, runners, commission, min_stake, winners, delay)
        m.status, m.in_play = status, in_play
        for aid, traded, staked, mw, ml in poss:
            acct = ex._accounts[aid]
            pos = Position(acct, m)
            pos.traded, pos.staked = traded, staked
            pos.mw, pos.ml = array("q", mw), array("q", ml)
            pos.d = array("q", [w - lo for w, lo in zip(mw, ml)])
            pos.sl = sum(ml)
            m.positions[aid] = acct.positions[mid] = pos
        for i, (back_levels, lay_levels) in enumerate(books):
            for side, levels in ((m.backs[i], back_levels), (m.lays[i], lay_levels)):
                for price, level_orders in levels:
                    lvl = side.add_level(price)
                    for oid, aid, remaining, persist in level_orders:
                        pos = m.positions[aid]
                        o = Order(oid, pos, lvl, remaining, persist)
                        lvl.queue.append(o)
                        lvl.total += remaining
                        lvl.live += 1
                        orders[oid] = o
                        pos.hold(side.side, i, price, remaining)
    for release, oid, aid, mid, i, side_name, price, tif, remaining, persist in pending:
        m = ex._markets[mid]
        side = (m.backs if side_name == BACK else m.lays)[i]
        pos = m.positions[aid]
        o = Order(oid, pos, Pending(side, price, tif, release), remaining, persist)
        orders[oid] = o
        ex._pending.append((release, oid, o))
        pos.hold(side_name, i, price, remaining)
    heapify(ex._pending)
    for m in ex._markets.values():
        for pos in m.positions.values():
            pos.reexpose()
    for aid, ref, seq in refs:
        ex._refs[(aid, ref)] = seq
    if ex.rules >= REF_WINDOW:  # values are times of first use, in order
        times = list(ex._refs.values())
        if any(a > b for a, b in zip(times, times[1:])):
            raise ValueError("client refs out of the order of their first use")
        ex._ref_queue = deque((t, key) for key, t in ex._refs.items())
    for source, mark in marks:
        if type(source) is not int or type(mark) is not int or source in ex._marks or (
            not 0 <= source <= MAX_PARTITION or source == partition or mark <= 0
        ):
            raise ValueError(f"transfer mark {[source, mark]!r} is not one a partition keeps")
        ex._marks[source] = mark
    previous = None
    for t, mid in finished:
        m = ex._markets[mid]
        if not m.settled or (previous is not None and t < previous):
            raise ValueError(f"market {mid} is listed as finished out of order or unsettled")
        previous = t
        ex._finished.append((t, mid))
    return ex
