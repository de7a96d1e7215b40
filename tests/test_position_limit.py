"""The limits that keep the core's amounts inside 64 bits, which the compiled core relies on:
an account's stake in one market, matched plus unmatched, may not pass
``limits.MAX_POSITION_STAKE`` (POSITION_LIMIT), and its exposure over all markets may not pass
``limits.MAX_EXPOSURE`` (EXPOSURE_LIMIT), however large its balance. test_compiled_core runs
these commands through both cores too."""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]
import pytest

from exchange import Exchange, SnapshotError
from exchange.codec import wire_event
from exchange.invariants import InvariantError
from exchange.limits import MAX_BALANCE, MAX_EXPOSURE, MAX_MONEY, MAX_POSITION_STAKE
from exchange.named import named

from .model import Model


def numbered(bodies: list[tuple]) -> list:
    """Command bodies (type, then the fields) as named commands, seq from 1, a ms apart."""
    return [named((b[0], seq, 1_000 + seq) + b[1:]) for seq, b in enumerate(bodies, 1)]

PAIRS = MAX_POSITION_STAKE // (2 * MAX_MONEY) - 1
"""Self-matched pairs of the largest stake that leave exactly 2 * MAX_MONEY below the limit."""


def limit_commands() -> list[tuple]:
    """Alice fills her position in market "m" to the limit with the largest stakes, mostly
    matched against herself (which needs no funds), then tries for more."""
    body: list[tuple] = [
        ("create_market", "m", (1, 2), 500, 100, 1, 0),
        ("create_market", "n", (1, 2), 500, 100, 1, 0),
        ("deposit", "alice", MAX_MONEY),
        ("deposit", "alice", MAX_MONEY),
        ("deposit", "bob", MAX_MONEY),
    ]
    for _ in range(PAIRS):  # each pair trades MAX_MONEY with herself: 2 * MAX_MONEY staked
        body.append(("place", "alice", "m", 1, "BACK", 200, MAX_MONEY, "GTC", "LAPSE", None))
        body.append(("place", "alice", "m", 1, "LAY", 200, MAX_MONEY, "GTC", "LAPSE", None))
    first = len(body) + 1  # seq (and id) of the next command
    body += [
        # two resting orders that do not cross take her exactly to the limit
        ("place", "alice", "m", 1, "BACK", 300, MAX_MONEY, "GTC", "LAPSE", None),
        ("place", "alice", "m", 1, "LAY", 150, MAX_MONEY, "GTC", "LAPSE", None),
        # one penny more is refused, here and for an IOC; elsewhere and for others it is not
        ("place", "alice", "m", 2, "BACK", 300, 100, "GTC", "LAPSE", None),
        ("place", "alice", "m", 1, "LAY", 300, 100, "IOC", "LAPSE", None),
        ("place", "alice", "n", 1, "BACK", 300, 100, "GTC", "LAPSE", None),
        ("place", "bob", "m", 1, "BACK", 300, 100, "GTC", "LAPSE", None),
        # a replace keeps the stake the same, so it is never refused for the limit
        ("replace", "alice", first + 1, 160),
        # reducing an unmatched order makes room for exactly that much
        ("cancel", "alice", first, 300),
        ("place", "alice", "m", 2, "BACK", 300, 300, "GTC", "LAPSE", None),
        ("place", "alice", "m", 2, "BACK", 300, 100, "GTC", "LAPSE", None),
        # bob takes 100 of her resting back: matched stake still counts, nothing frees up
        ("place", "bob", "m", 1, "LAY", 300, 100, "GTC", "LAPSE", None),
        ("place", "alice", "m", 2, "BACK", 300, 100, "GTC", "LAPSE", None),
        # settlement ends the position; a new market starts from nothing
        ("settle", "m", (1,)),
        ("place", "alice", "n", 2, "BACK", 300, 100, "GTC", "LAPSE", None),
    ]
    return numbered(body)


def test_limit_is_exact_and_both_cores_agree_with_the_model() -> None:
    cmds = limit_commands()
    ex, model = Exchange(), Model()
    reasons = {}
    for cmd in cmds:
        events = ex.apply(cmd)
        assert events == model.apply(cmd), cmd
        for e in events:
            if e[0] == "order_rejected":
                reasons[cmd.seq] = wire_event(e)["reason"]
    ex.check()
    model.check()
    first = 5 + 2 * PAIRS + 1
    assert reasons == {
        first + 2: "POSITION_LIMIT",  # a penny past the limit
        first + 3: "POSITION_LIMIT",  # an IOC is counted before it can match
        first + 9: "POSITION_LIMIT",  # the room a reduction made is used up
        first + 11: "POSITION_LIMIT",  # a matched stake still counts
    }


def test_limit_positions_snapshot_and_restore() -> None:
    """The stake is part of the snapshot: a restored exchange refuses exactly what the
    original refuses."""
    cmds = limit_commands()
    cut = 5 + 2 * PAIRS + 2
    ex = Exchange()
    for cmd in cmds[:cut]:
        ex.apply(cmd)
    copy = Exchange.restore(ex.snapshot())
    assert copy.state_hash() == ex.state_hash()
    for cmd in cmds[cut:]:
        assert copy.apply(cmd) == ex.apply(cmd), cmd
    assert copy.state_hash() == ex.state_hash()
    copy.check()


def alice_backs_bob_lays(lay: int) -> Exchange:
    """Alice backs 1,000 at 2.0 in market "m"; Bob lays ``lay`` of it."""
    ex = Exchange()
    for seq, body in enumerate([
        ("create_market", "m", (1, 2), 500, 100, 1, 0),
        ("deposit", "alice", 10_000),
        ("deposit", "bob", 10_000),
        ("place", "alice", "m", 1, "BACK", 200, 1_000, "GTC", "LAPSE", None),
        ("place", "bob", "m", 1, "LAY", 200, lay, "GTC", "LAPSE", None),
    ], 1):
        ex.apply((body[0], seq, 0) + body[1:])
    return ex


def test_invariant_check_holds_positions_to_their_stake() -> None:
    """``Exchange.check`` finds a position whose stake is off: the bound the compiled core's
    64-bit amounts rest on is checked, not assumed."""
    ex = alice_backs_bob_lays(600)
    ex.check()
    acct = ex.account("alice")
    assert acct is not None
    pos = acct.positions["m"]
    assert pos.staked == 1_000  # 600 matched, 400 unmatched
    pos.staked = 0
    with pytest.raises(InvariantError, match="stake 0, unmatched 400"):
        ex.check()
    pos.staked = 400
    ex.check()
    pos.d[0] += 400_001 - pos.mw[0]  # matched winnings 400 staked could never reach
    pos.mw[0] = 400_001
    with pytest.raises(InvariantError, match="an amount beyond 400000"):
        ex.check()


def exposure_commands() -> list[tuple]:
    """Alice wins her way past the most deposits can bring (MAX_BALANCE) and then lays: her
    balance covers more than MAX_EXPOSURE, the limit does not."""
    top = 100_000  # 1000.00, the top of the ladder
    fill = MAX_BALANCE // MAX_MONEY
    body: list[tuple] = [("create_market", "m", (1, 2), 0, 100, 1, 0)]
    body += [("deposit", "alice", MAX_MONEY)] * fill
    body += [("deposit", "bob", MAX_MONEY)] * fill
    body += [
        # alice backs at 1000 and wins 999 times her stake from bob
        ("place", "alice", "m", 1, "BACK", top, MAX_MONEY, "GTC", "LAPSE", None),
        ("place", "bob", "m", 1, "LAY", top, MAX_MONEY, "GTC", "LAPSE", None),
        ("settle", "m", (1,)),
        ("create_market", "n", (1, 2), 0, 100, 1, 0),
        # a lay at 1000 risks 999 times its stake: 9.99e14, inside the limit
        ("place", "alice", "n", 1, "LAY", top, MAX_MONEY, "GTC", "LAPSE", None),
        # another would take her to 1.998e15: her balance covers it, the limit does not
        ("place", "alice", "n", 1, "LAY", top, MAX_MONEY, "GTC", "LAPSE", None),
        # what is left below the limit can still be laid, to the penny
        ("place", "alice", "n", 1, "LAY", 200, MAX_EXPOSURE - 999 * MAX_MONEY, "GTC",
         "LAPSE", None),
        ("place", "alice", "n", 1, "LAY", 200, 100, "GTC", "LAPSE", None),
        # a dearer replace that would pass it is refused too; a cheaper one is not
        ("replace", "alice", None, 300),
        ("replace", "alice", None, 150),
        # bob has 1e12 left: for him, funds run out first
        ("place", "bob", "n", 1, "LAY", top, MAX_MONEY, "GTC", "LAPSE", None),
    ]
    cmds = numbered(body)
    small_lay = cmds[-5].seq  # the order the replaces are of
    return [c._replace(order=small_lay) if c.type == "replace" else c for c in cmds]


def test_exposure_limit_holds_however_large_the_balance() -> None:
    cmds = exposure_commands()
    ex, model = Exchange(), Model()
    reasons = {}
    highest = 0
    for cmd in cmds:
        events = ex.apply(cmd)
        assert events == model.apply(cmd), cmd
        for e in events:
            if e[0] == "order_rejected":
                reasons[cmd.seq] = wire_event(e)["reason"]
        alice = ex.account("alice")
        highest = max(highest, alice.exposure if alice is not None else 0)
    ex.check()
    model.check()
    alice = ex.account("alice")
    assert alice is not None and alice.balance == MAX_BALANCE + 999 * MAX_MONEY
    assert highest == MAX_EXPOSURE  # reached exactly, never passed
    last = cmds[-1][1]
    assert reasons == {
        last - 5: "EXPOSURE_LIMIT",  # the second lay at 1000
        last - 3: "EXPOSURE_LIMIT",  # a penny's liability past the limit
        last - 2: "EXPOSURE_LIMIT",  # the dearer replace
        last: "INSUFFICIENT_FUNDS",  # bob
    }


def test_a_snapshot_past_the_limits_is_refused_by_both_cores() -> None:
    """Snapshots of real states never pass the limits; a hand-made one that does is a
    SnapshotError, never an overflow in the compiled core or a silent load in the pure one
    (test_compiled_core runs this module's commands in both; this checks the refusal)."""
    ex = alice_backs_bob_lays(1_000)
    state = msgpack.unpackb(ex.snapshot())
    alice = state[7][0][8][0]  # market m, its first position: [account, traded, staked, mw, ml]
    assert alice[0] == "alice"
    for mw, ml, why in [
        ([2**63, 0], [-1_000, 0], "OverflowError"),  # past 64 bits
        ([1_000, 0], [-10**6, 0], "exposed beyond its cover"),  # more than her balance
    ]:
        alice[3], alice[4] = mw, ml
        with pytest.raises(SnapshotError, match=why):
            Exchange.restore(msgpack.packb(state))
