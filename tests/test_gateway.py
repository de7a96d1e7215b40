"""The gateway as its clients meet it: real HTTP and WebSocket clients against ``exch
gateway`` on a real Redis with ``exch run`` behind it."""

from __future__ import annotations

import pytest

from journal.keys import Keys
from journal.streams import raw

from .gateway_helpers import running_exchange

K = Keys()

pytestmark = pytest.mark.timeout(180)


def journal_length(url: str) -> int:
    """How many commands the input journal holds (its last seq)."""
    from journal.connection import connect

    c = connect(url)
    try:
        last = raw(c).xrevrange(K.input, count=1)
        return int(last[0][0].split(b"-")[0]) if last else 0
    finally:
        c.close()


def test_an_order_is_answered_with_its_outcome_and_a_retry_with_the_original(
        redis_server) -> None:  # type: ignore[no-untyped-def]
    with running_exchange(redis_server) as ex, ex.client("alice") as alice, \
            ex.client("bob") as bob:
        r = alice.post("/v1/orders", json={"market": "m1", "runner": 1, "side": "BACK",
                                           "price": "2.5", "stake": "10", "ref": "a-1"})
        assert r.status_code == 200, r.text
        first = r.json()
        assert first["status"] == "accepted" and first["duplicate"] is False
        order = first["order"]
        assert first["events"][0]["type"] == "order_accepted"
        assert first["events"][0]["account"] == "alice"
        r = bob.post("/v1/orders", json={"market": "m1", "runner": 1, "side": "LAY",
                                         "price": "2.5", "stake": "4"})
        took = r.json()
        assert took["status"] == "accepted" and took["matched"] == "4.00"
        trade = [e for e in took["events"] if e["type"] == "trade"][0]
        # the counterparty is not named: only bob's own side of the trade
        assert trade["order"] == took["order"] and trade["side"] == "LAY"
        assert "back_account" not in trade and "back_order" not in trade
        length = journal_length(ex.redis_url)
        again = alice.post("/v1/orders", json={"market": "m1", "runner": 1, "side": "BACK",
                                               "price": "2.5", "stake": "10", "ref": "a-1"})
        assert again.status_code == 200
        assert again.json()["duplicate"] is True
        assert again.json()["seq"] == first["seq"] and again.json()["order"] == order
        assert journal_length(ex.redis_url) == length  # never sequenced twice
        mine = alice.get("/v1/orders").json()["orders"]
        assert [(o["order"], o["matched"], o["remaining"], o["state"]) for o in mine] == [
            (order, "4.00", "6.00", "LIVE")]
        account = alice.get("/v1/account").json()
        assert account["balance"] == "1000.00" and account["exposure"] == "10.00"
        market = bob.get("/v1/markets/m1").json()
        assert market["status"] == "OPEN"
        assert market["ladder"][0]["to_lay"] == [["2.5", "6.00"]]


def test_cancel_replace_and_batches_are_answered_per_command(redis_server) -> None:  # type: ignore[no-untyped-def]
    with running_exchange(redis_server) as ex, ex.client("alice") as alice:
        placed = alice.post("/v1/batch", json={"commands": [
            {"type": "place", "market": "m1", "runner": 1, "side": "BACK", "price": "3",
             "stake": "5"},
            {"type": "place", "market": "m1", "runner": 2, "side": "LAY", "price": "4",
             "stake": "2"},
            {"type": "place", "market": "nowhere", "runner": 1, "side": "LAY", "price": "4",
             "stake": "2"},
        ]}).json()["results"]
        assert [p["status"] for p in placed] == ["accepted", "accepted", "rejected"]
        assert placed[2]["reason"] == "UNKNOWN_MARKET"
        # one batch, one journal entry: consecutive seqs
        assert [p["seq"] for p in placed] == list(range(placed[0]["seq"],
                                                        placed[0]["seq"] + 3))
        a, b = placed[0]["order"], placed[1]["order"]
        r = alice.post(f"/v1/orders/{a}/replace", json={"price": "3.5"})
        assert r.json()["status"] == "accepted", r.text
        r = alice.post(f"/v1/orders/{b}/cancel", json={"reduce": "0.50"})
        cancelled = r.json()
        assert cancelled["status"] == "accepted"
        assert [e["remaining"] for e in cancelled["events"]] == ["1.50"]
        r = alice.post(f"/v1/orders/{b}/cancel")
        assert r.json()["status"] == "accepted"
        r = alice.get(f"/v1/orders/{b}")
        assert r.status_code == 200 and r.json()["state"] == "FINISHED"
        assert r.json()["cancelled"] == "2.00"
        r = alice.post("/v1/orders/999999/cancel")
        assert r.status_code == 200 and r.json()["reason"] == "UNKNOWN_ORDER"


def test_another_accounts_order_is_answered_not_owner_and_nothing_is_sequenced(
        redis_server) -> None:  # type: ignore[no-untyped-def]
    with running_exchange(redis_server) as ex, ex.client("alice") as alice, \
            ex.client("bob") as bob:
        placed = alice.post("/v1/orders", json={"market": "m1", "runner": 1, "side": "BACK",
                                                "price": "3", "stake": "5"}).json()
        order, seq = placed["order"], placed["seq"]
        length = journal_length(ex.redis_url)
        for r in (bob.post(f"/v1/orders/{order}/cancel"),
                  bob.post(f"/v1/orders/{order}/replace", json={"price": "5"}),
                  bob.post("/v1/batch", json={"commands": [
                      {"type": "cancel", "order": order}]}),
                  bob.get(f"/v1/orders/{order}"),
                  bob.get(f"/v1/commands/0/{seq}"),
                  bob.get("/v1/accounts/alice")):
            assert r.status_code == 403, r.text
            assert r.json()["error"]["reason"] == "NOT_OWNER"
        assert journal_length(ex.redis_url) == length
        assert alice.get(f"/v1/orders/{order}").json()["state"] == "LIVE"
        assert alice.get(f"/v1/commands/0/{seq}").json()["order"] == order


def test_keys_roles_revocation_and_rate_limits(redis_server) -> None:  # type: ignore[no-untyped-def]
    import time

    from journal.connection import connect
    from tools.gateway.apikeys import KeyStore

    with running_exchange(redis_server, gateway_args=("--rate", "5", "--burst", "10")) as ex, \
            ex.client("alice") as alice:
        # an account's key may not administer, the operator's may not bet
        r = alice.post("/v1/admin/commands", json={"type": "deposit", "account": "alice",
                                                    "amount": "1000000"})
        assert r.status_code == 403
        with ex.client("operator") as op:
            r = op.post("/v1/orders", json={"market": "m1", "runner": 1, "side": "BACK",
                                            "price": "3", "stake": "5"})
            assert r.status_code == 403 and r.json()["error"]["reason"] == "FORBIDDEN"
        for bad in ("", "Bearer nonsense", "Bearer exch_000000000000_x",
                    "Basic " + ex.keys["alice"]):
            r = alice.get("/v1/account", headers={"Authorization": bad})
            assert r.status_code == 401
        # rate: a burst of 10, then 429 with Retry-After
        codes = [alice.get("/v1/account").status_code for _ in range(25)]
        assert 429 in codes and codes[0] == 200
        limited = alice.get("/v1/account")
        if limited.status_code == 429:
            assert int(limited.headers["Retry-After"]) >= 1
            assert limited.json()["error"]["reason"] == "RATE_LIMITED"
        # a key is revoked within a second
        key_id = ex.keys["bob"].split("_")[1]
        with ex.client("bob") as bob:
            assert bob.get("/v1/account").status_code == 200
            KeyStore(connect(ex.redis_url)).revoke(key_id)
            time.sleep(1.2)
            assert bob.get("/v1/account").status_code == 401
        stored = connect(ex.redis_url).hget("exch:apikeys", key_id)
        assert ex.keys["bob"].split("_", 2)[2].encode() not in stored  # only its hash
