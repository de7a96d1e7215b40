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


def _ws_url(ex, path: str) -> str:  # type: ignore[no-untyped-def]
    return ex.base.replace("http://", "ws://") + path


def _receive_until(ws, done, timeout: float = 30.0) -> list[dict]:  # type: ignore[no-untyped-def]
    """Messages until ``done(messages)`` holds."""
    import json
    import time

    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        left = deadline - time.monotonic()
        assert left > 0, f"stream stopped short: {got[-5:]}"
        got.append(json.loads(ws.recv(timeout=left)))
    return got


def test_the_order_stream_resumes_from_a_seq_with_nothing_missed_or_doubled(
        redis_server) -> None:  # type: ignore[no-untyped-def]
    from websockets.sync.client import connect as ws_connect

    def place(client, side: str, price: str = "3") -> dict:  # type: ignore[no-untyped-def]
        r = client.post("/v1/orders", json={"market": "m1", "runner": 1, "side": side,
                                            "price": price, "stake": "2"})
        assert r.status_code == 200, r.text
        return r.json()

    def seqs(messages: list[dict]) -> list[int]:
        return [m["seq"] for m in messages if m["type"] == "events"]

    with running_exchange(redis_server) as ex, ex.client("alice") as alice, \
            ex.client("bob") as bob:
        url = _ws_url(ex, "/v1/stream/orders")
        with ws_connect(url, additional_headers=ex.headers("alice")) as ws:
            hello = _receive_until(ws, lambda m: len(m) >= 1)[0]
            assert hello["type"] == "subscribed"
            first = [place(alice, "BACK") for _ in range(3)]
            place(bob, "BACK", "5")  # bob's: not on alice's stream
            got = _receive_until(ws, lambda m: len(seqs(m)) >= 3)
        assert seqs(got) == [p["seq"] for p in first]
        resume = seqs(got)[-1]
        # while alice is away: her orders rest, bob takes one of them, she places more
        taken = place(bob, "LAY")
        missed = [place(alice, "BACK", "4") for _ in range(2)]
        expected = [taken["seq"]] + [p["seq"] for p in missed]
        with ws_connect(url + f"?after=0:{resume}",
                        additional_headers=ex.headers("alice")) as ws:
            got = _receive_until(ws, lambda m: len(seqs(m)) >= 3)
            later = place(alice, "BACK", "6")
            got += _receive_until(ws, lambda m: len(seqs(m)) >= 1)
        assert seqs(got) == expected + [later["seq"]]  # once each, in order
        trade = [e for m in got if m["type"] == "events" for e in m["events"]
                 if e["type"] == "trade"][0]
        assert trade["side"] == "BACK" and "lay_account" not in trade
        assert [m.get("replayed", False) for m in got if m["type"] == "events"] == [
            True, True, True, False]


def test_the_market_stream_sends_trades_status_and_the_ladder(redis_server) -> None:  # type: ignore[no-untyped-def]
    from websockets.sync.client import connect as ws_connect

    with running_exchange(redis_server) as ex, ex.client("alice") as alice, \
            ex.client("bob") as bob:
        url = _ws_url(ex, "/v1/stream/markets/m1")
        with ws_connect(url, additional_headers=ex.headers("bob")) as ws:
            hello = _receive_until(ws, lambda m: any(x["type"] == "ladder" for x in m))
            assert hello[0]["type"] == "subscribed"
            start = hello[0]["position"]
            alice.post("/v1/orders", json={"market": "m1", "runner": 1, "side": "BACK",
                                           "price": "3", "stake": "5"})

            def rests(m: list[dict]) -> bool:
                return any(x["type"] == "ladder" and x["ladder"][0]["to_lay"] for x in m)

            got = _receive_until(ws, rests)
            assert [x for x in got if x["type"] == "ladder"][-1]["ladder"][0]["to_lay"] == [
                ["3", "5.00"]]
            bob.post("/v1/orders", json={"market": "m1", "runner": 1, "side": "LAY",
                                         "price": "3", "stake": "5"})
            ex.admin(type="market_status", market="m1", status="SUSPENDED")

            def suspended(m: list[dict]) -> bool:
                return any(e["type"] == "market_status_changed" for x in m
                           if x["type"] == "events" for e in x["events"])

            got = _receive_until(ws, suspended)
        trades = [e for x in got if x["type"] == "events" for e in x["events"]
                  if e["type"] == "trade"]
        assert [(t["price"], t["size"]) for t in trades] == [("3", "5.00")]
        assert not any(k in trades[0] for k in ("back_account", "lay_account", "back_order"))
        # from the seq it had, a client that was away gets the trade and the status again
        with ws_connect(url + f"?after={start}", additional_headers=ex.headers("alice")) as ws:
            again = _receive_until(ws, lambda m: any(x["type"] == "ladder" for x in m))
        replayed = [e["type"] for x in again if x["type"] == "events" for e in x["events"]]
        assert replayed == ["trade", "market_status_changed"]


def test_an_outcome_not_in_within_the_wait_is_pending_with_its_seq(redis_server) -> None:  # type: ignore[no-untyped-def]
    import time

    with running_exchange(redis_server) as ex, ex.client("alice") as alice:
        ex.stop_matcher()
        r = alice.post("/v1/orders?wait=0.5", json={"market": "m1", "runner": 1,
                                                     "side": "BACK", "price": "3",
                                                     "stake": "5", "ref": "p-1"})
        assert r.status_code == 202, r.text
        pending = r.json()
        assert pending["status"] == "pending" and pending["seq"] > 0
        seq = pending["seq"]
        assert alice.get(f"/v1/commands/0/{seq}").status_code == 202
        ex.start_matcher()
        deadline = time.monotonic() + 60
        while (r := alice.get(f"/v1/commands/0/{seq}")).status_code == 202:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert r.status_code == 200 and r.json()["status"] == "accepted"
        # the retry is answered with the same order, not a second one
        again = alice.post("/v1/orders", json={"market": "m1", "runner": 1, "side": "BACK",
                                               "price": "3", "stake": "5", "ref": "p-1"})
        assert again.json()["seq"] == seq and again.json()["duplicate"] is True


@pytest.mark.parametrize("body, status, reason", [
    (b"{not json", 400, "MALFORMED"),
    (b'{"market": "m1", "market": "m2"}', 400, "MALFORMED"),
    (b'[1, 2]', 400, "MALFORMED"),
    (b'{"market": "m1", "runner": "1", "side": "BACK", "price": "3", "stake": "5"}', 400,
     "MALFORMED"),
    (b'{"market": "m1", "runner": 1, "side": "BACK", "price": "3.01", "stake": "5"}', 400,
     "INVALID_PRICE"),
    (b'{"market": "m1", "runner": 1, "side": "BACK", "price": "3", "stake": "5.001"}', 400,
     "INVALID_STAKE"),
    (b'{"market": "m1", "runner": 1, "side": "BACK", "price": "3", "stake": "5", "x": 1}',
     400, "MALFORMED"),
    (b'{"market": "m1", "runner": 1, "side": "BACK", "price": "3", "stake": "5", '
     b'"account": "bob"}', 400, "MALFORMED"),
    (b'{"market": "m1", "runner": 1, "side": "BACK", "price": "3", "stake": "5", "ts": 1}',
     400, "MALFORMED"),
    (b'{"market": "m1", "runner": 1, "side": "SIDEWAYS", "price": "3", "stake": "5"}', 400,
     "MALFORMED"),
    (b'{"market": "m1", "runner": 1, "side": "BACK", "price": NaN, "stake": "5"}', 400,
     "MALFORMED"),
    (b'{"ref": "' + b"x" * 70_000 + b'"}', 413, "TOO_LARGE"),
])
def test_bad_input_is_refused_with_its_reason_and_nothing_is_sequenced(
        redis_server, body: bytes, status: int, reason: str) -> None:  # type: ignore[no-untyped-def]
    with running_exchange(redis_server, accounts=("alice",), market=None) as ex, \
            ex.client("alice") as alice:
        length = journal_length(ex.redis_url)
        r = alice.post("/v1/orders", content=body,
                       headers={"Content-Type": "application/json"})
        assert (r.status_code, r.json()["error"]["reason"]) == (status, reason), r.text
        assert journal_length(ex.redis_url) == length


def test_concurrent_requests_share_journal_entries(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Requests that arrive together go into the journal in shared entries (the gateway does
    not bring back an entry per command), each answered with its own outcome. 200 clients
    connect first, then all send at once (raw HTTP/1.1, so the test's own client is not
    what paces them)."""
    import asyncio
    import json
    from urllib.parse import urlsplit

    from journal.connection import connect

    n = 200
    with running_exchange(redis_server, gateway_args=("--rate", "100000", "--burst",
                                                      "100000")) as ex:
        before = raw(connect(ex.redis_url)).xlen(K.input)
        where = urlsplit(ex.base)
        auth = ex.headers("alice")["Authorization"]

        def request(i: int) -> bytes:
            body = json.dumps({"market": "m1", "runner": 1 + i % 3, "side": "BACK",
                               "price": "10", "stake": "1", "ref": f"c-{i}"}).encode()
            return (f"POST /v1/orders HTTP/1.1\r\nHost: {where.netloc}\r\n"
                    f"Authorization: {auth}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body

        async def answer(reader: asyncio.StreamReader) -> dict:
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            data = json.loads(await reader.readexactly(length))
            assert status == 200, data
            return data

        async def many() -> list[dict]:
            conns = [await asyncio.open_connection(where.hostname, where.port)
                     for _ in range(n)]
            for i, (_, writer) in enumerate(conns):
                writer.write(request(i))
            await asyncio.gather(*(w.drain() for _, w in conns))
            out = await asyncio.gather(*(answer(r) for r, _ in conns))
            for _, w in conns:
                w.close()
            return list(out)

        results = asyncio.run(many())
        entries = raw(connect(ex.redis_url)).xlen(K.input) - before
        assert all(r["status"] == "accepted" for r in results)
        assert len({r["seq"] for r in results}) == n
        assert [e["ref"] for r in results for e in r["events"]] == [f"c-{i}" for i in range(n)]
        assert entries <= n / 4, f"{entries} journal entries for {n} concurrent orders"


def test_two_partitions_behind_one_gateway(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Markets in either partition, money moved between them by the account's own transfer,
    one account view over both, and the order stream resumed per partition."""
    import time

    from websockets.sync.client import connect as ws_connect

    with running_exchange(redis_server, partitions=2, market=None) as ex, \
            ex.client("alice") as alice, ex.client("bob") as bob:
        ex.admin(type="create_market", market="p0", runners=[1, 2], partition=0)
        ex.admin(type="create_market", market="p1", runners=[1, 2], partition=1)
        assert {m["market"]: m["partition"] for m in alice.get("/v1/markets").json()[
            "markets"]} == {"p0": 0, "p1": 1}
        # bob's money is in partition 0: a bet in partition 1 needs it moved first
        lay = {"market": "p1", "runner": 1, "side": "LAY", "price": "2", "stake": "10"}
        assert bob.post("/v1/orders", json=lay).json()["reason"] == "INSUFFICIENT_FUNDS"
        moved = bob.post("/v1/transfers", json={"amount": "100", "from_partition": 0,
                                                "to_partition": 1}).json()
        assert moved["status"] == "accepted" and moved["partition"] == 0
        deadline = time.monotonic() + 60
        while bob.get("/v1/account").json()["partitions"].get("1") is None:
            assert time.monotonic() < deadline, "the transfer never arrived"
            time.sleep(0.1)
        money = bob.get("/v1/account").json()
        assert money["balance"] == "1000.00"  # moved, not made
        assert money["partitions"]["1"]["balance"] == "100.00"
        with ws_connect(_ws_url(ex, "/v1/stream/orders"),
                        additional_headers=ex.headers("bob")) as ws:
            hello = _receive_until(ws, lambda m: len(m) >= 1)[0]
        resume = hello["positions"]
        placed = bob.post("/v1/orders", json=lay).json()
        assert placed["status"] == "accepted" and placed["partition"] == 1
        assert placed["order"] // 10**14 == 1  # its id carries its partition
        back = {"market": "p0", "runner": 2, "side": "BACK", "price": "5", "stake": "3"}
        other = bob.post("/v1/orders", json=back).json()
        assert other["partition"] == 0
        after = ",".join(f"{p}:{s}" for p, s in resume.items())
        with ws_connect(_ws_url(ex, f"/v1/stream/orders?after={after}"),
                        additional_headers=ex.headers("bob")) as ws:
            got = _receive_until(ws, lambda m: sum(x["type"] == "events" for x in m) >= 2)
        assert sorted((m["partition"], m["seq"]) for m in got if m["type"] == "events") == [
            (0, other["seq"]), (1, placed["seq"])]
        # cancelling routes by the id's partition
        r = bob.post(f"/v1/orders/{placed['order']}/cancel")
        assert r.json()["status"] == "accepted" and r.json()["partition"] == 1
        assert alice.post(f"/v1/orders/{other['order']}/cancel").status_code == 403


def output_events(url: str, partition: int = 0) -> list[dict]:
    """Every event of a partition's output, in order (stream form)."""
    from journal.connection import connect
    from journal.wire import read_entries

    c = connect(url)
    try:
        rows = raw(c).xrange(Keys(str(partition)).output)
        return [e for _, _, events in read_entries(rows) for e in events]
    finally:
        c.close()


@pytest.mark.slow
def test_sigkills_of_the_gateway_lose_and_double_no_order(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Clients keep placing orders with refs while the gateway is SIGKILLed three times; a
    request that got no answer is sent again to the restarted gateway. Every order is in the
    journal exactly once, and every client was told the seq the journal holds it at."""
    import random
    import threading
    import time

    import httpx

    n, clients = 240, 4
    told: dict[str, int] = {}
    errors: list[BaseException] = []
    with running_exchange(redis_server, accounts=("alice",),
                          gateway_args=("--rate", "100000", "--burst", "100000")) as ex:
        def client(k: int) -> None:
            try:
                for i in range(k, n, clients):
                    body = {"market": "m1", "runner": 1 + i % 3, "side": "BACK",
                            "price": "20", "stake": "1", "ref": f"k-{i}"}
                    while True:
                        try:
                            r = httpx.post(ex.base + "/v1/orders", json=body, timeout=10,
                                           headers=ex.headers("alice"))
                        except httpx.HTTPError:
                            time.sleep(0.05)  # the gateway is down: the same request again
                            continue
                        if r.status_code == 200:
                            told[body["ref"]] = r.json()["seq"]
                            break
                        assert r.status_code in (202, 503), r.text
                        time.sleep(0.05)
            except BaseException as e:  # noqa: BLE001 - reported by the test
                errors.append(e)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        rng = random.Random(17)
        for _ in range(3):
            time.sleep(rng.uniform(0.3, 1.0))
            assert ex.gateway is not None
            ex.gateway.kill()  # SIGKILL
            ex.gateway.wait()
            ex.start_gateway()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert len(told) == n
        accepted = [e for e in output_events(ex.redis_url) if e.get("type") == "order_accepted"
                    and e.get("account") == "alice"]
        seqs: dict[str, list[int]] = {}
        for e in accepted:
            seqs.setdefault(e["ref"], []).append(e["seq"])
        assert {ref: s for ref, s in seqs.items() if len(s) != 1} == {}, "doubled"
        assert {ref: s[0] for ref, s in seqs.items()} == told


def test_exch_keys_create_list_and_revoke(redis_server) -> None:  # type: ignore[no-untyped-def]
    """The key is printed once on stdout (for scripts), only its hash is kept, and revoking
    takes effect; bad usage exits 2."""
    import subprocess
    import sys

    from journal.connection import connect
    from tools.gateway.apikeys import Authenticator, KeyStore

    def exch(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tools.cli", *args, "--redis-url",
                               redis_server.url], capture_output=True, text=True, timeout=60)

    made = exch("keys", "create", "carol", "--label", "carol's bot")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    store = KeyStore(connect(redis_server.url))
    caller = Authenticator(store).caller(key)
    assert caller is not None and caller.account == "carol" and not caller.operator
    assert key.split("_", 2)[2] not in str(store.list())
    listed = exch("keys", "list")
    assert caller.key_id in listed.stdout and "carol's bot" in listed.stdout
    assert exch("keys", "revoke", key).returncode == 0
    assert Authenticator(store).caller(key) is None
    assert exch("keys", "create").returncode == 2  # neither an account nor --operator
    assert exch("keys", "create", "dave", "--operator").returncode == 2
    assert exch("keys", "create", "@house").returncode == 2  # reserved account ids
    assert exch("keys", "revoke", "000000000000").returncode == 2
    op = exch("keys", "create", "--operator")
    assert Authenticator(store).caller(op.stdout.strip()).operator


def test_a_restarted_gateway_starts_from_a_signed_snapshot_and_still_knows_old_outcomes(
        redis_server) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    with running_exchange(redis_server) as ex, ex.client("alice") as alice:
        placed = alice.post("/v1/orders", json={"market": "m1", "runner": 2, "side": "LAY",
                                                "price": "4", "stake": "3",
                                                "ref": "old"}).json()
        taken = subprocess.run([sys.executable, "-m", "tools.cli", "snapshot", "--redis-url",
                                ex.redis_url], capture_output=True, text=True, timeout=60)
        assert taken.returncode == 0, taken.stderr
        ex.stop_gateway()
        ex.start_gateway()
        with ex.client("alice") as again:
            mine = again.get("/v1/orders").json()["orders"]
            # loaded from the snapshot: what remains is known, what was asked is not
            assert [(o["order"], o["remaining"], o["stake"]) for o in mine] == [
                (placed["order"], "3.00", None)]
            retried = again.post("/v1/orders", json={"market": "m1", "runner": 2,
                                                     "side": "LAY", "price": "4",
                                                     "stake": "3", "ref": "old"}).json()
            assert retried["duplicate"] is True and retried["order"] == placed["order"]
            assert retried["events"] == placed["events"]  # read back from the output
            ladder = again.get("/v1/markets/m1").json()["ladder"]
            assert ladder[1]["to_back"] == [["4", "3.00"]]
            assert again.get("/v1/health").json()["status"] == "ok"


def test_the_gateway_runs_as_its_own_redis_user(redis_server) -> None:  # type: ignore[no-untyped-def]
    """Every service as its role's Redis user (``exch users``): the gateway sequences,
    answers, streams and restarts from a snapshot without one refusal, and its user can
    neither write an API key nor touch the output's consumer groups."""
    import subprocess
    import sys

    import redis as redis_py
    from websockets.sync.client import connect as ws_connect

    from journal.connection import connect

    with running_exchange(redis_server, roles=True) as ex, ex.client("alice") as alice, \
            ex.client("bob") as bob:
        placed = alice.post("/v1/orders", json={"market": "m1", "runner": 1, "side": "BACK",
                                                "price": "3", "stake": "5",
                                                "ref": "r-1"}).json()
        assert placed["status"] == "accepted"
        with ws_connect(_ws_url(ex, "/v1/stream/orders?after=0:0"),
                        additional_headers=ex.headers("alice")) as ws:
            got = _receive_until(ws, lambda m: any(
                x["type"] == "events" and x["seq"] == placed["seq"] for x in m))
        assert got
        took = bob.post("/v1/orders", json={"market": "m1", "runner": 1, "side": "LAY",
                                            "price": "3", "stake": "5"}).json()
        assert took["matched"] == "5.00"
        again = alice.post("/v1/orders", json={"market": "m1", "runner": 1, "side": "BACK",
                                               "price": "3", "stake": "5", "ref": "r-1"})
        assert again.json()["duplicate"] is True
        assert alice.get("/v1/account").json()["exposure"] == "5.00"
        taken = subprocess.run([sys.executable, "-m", "tools.cli", "snapshot", "--redis-url",
                                ex.url("operator")], capture_output=True, text=True,
                               timeout=60)
        assert taken.returncode == 0, taken.stderr
        ex.stop_gateway()
        ex.start_gateway()
        with ex.client("alice") as alice2:
            assert alice2.get("/v1/account").json()["exposure"] == "5.00"
            assert alice2.get("/v1/markets/m1").status_code == 200
        gateway = connect(ex.url("gateway"))
        for refused in (lambda: gateway.hset("exch:apikeys", "x", "{}"),
                        lambda: gateway.xgroup_create("exch:{0}:out", "mine", id="0"),
                        lambda: gateway.config_set("appendonly", "no"),
                        lambda: gateway.delete("exch:{0}:out")):
            with pytest.raises(redis_py.exceptions.NoPermissionError):
                refused()
        ex.stop_gateway()
        assert "NOPERM" not in ex.gateway_log and "Traceback" not in ex.gateway_log, \
            ex.gateway_log[-2000:]


def test_an_outcome_shows_only_the_callers_events_and_a_revoked_key_loses_its_stream(
        redis_server) -> None:  # type: ignore[no-untyped-def]
    """Orders released from an in-play bet delay are answered under the seq of whatever
    command comes next: alice's outcome must not show bob's fill-or-kill being cancelled.
    And a key revoked while its stream is open is closed out of it."""
    import threading
    import time

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect

    from journal.connection import connect
    from tools.gateway.apikeys import KeyStore

    with running_exchange(redis_server, market=None) as ex, ex.client("alice") as alice, \
            ex.client("bob") as bob:
        ex.admin(type="create_market", market="ip", runners=[1, 2], bet_delay_ms=300)
        ex.admin(type="turn_in_play", market="ip")
        ex.stop_matcher()  # so that nothing (no heartbeat) comes between the two
        fok = bob.post("/v1/orders?wait=0", json={"market": "ip", "runner": 1, "side": "LAY",
                                                  "price": "3", "stake": "5", "tif": "FOK"})
        assert fok.status_code == 202
        time.sleep(0.5)  # past the delay, in journal time too
        got: dict = {}

        def place() -> None:
            got["r"] = alice.post("/v1/orders?wait=30", json={
                "market": "ip", "runner": 2, "side": "BACK", "price": "5", "stake": "2"})

        t = threading.Thread(target=place)
        t.start()
        time.sleep(0.3)
        ex.start_matcher()
        t.join(60)
        outcome = got["r"].json()
        assert got["r"].status_code == 200, outcome
        assert all(e.get("account") == "alice" for e in outcome["events"]), outcome
        seq = outcome["seq"]
        with ex.client("operator") as op:  # bob's order was released under alice's seq
            everything = op.get(f"/v1/commands/0/{seq}").json()["events"]
        assert {(e["type"], e.get("account")) for e in everything} >= {
            ("order_cancelled", "bob")}, everything
        # a revoked key's open stream is closed within about a second
        with ws_connect(_ws_url(ex, "/v1/stream/orders"),
                        additional_headers=ex.headers("bob")) as ws:
            ws.recv(timeout=10)
            KeyStore(connect(ex.redis_url)).revoke(ex.keys["bob"].split("_")[1])
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
