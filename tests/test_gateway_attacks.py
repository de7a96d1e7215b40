"""The gateway against a hostile client: each test is an attack that was tried by hand, and
what the gateway must answer. Every refusal is a 4xx with ``{"error": {"reason",
"message"}}`` and sequences nothing; no request gets a 5xx; no key reads another account's
data by any route.

One real ``exch gateway`` (``exch run`` behind it, a real redis-server) serves the module;
tests that change what others would see (a settlement) use markets of their own.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from journal.connection import connect
from journal.keys import Keys
from journal.streams import raw
from tools.gateway.service import Gateway

from .conftest import RedisProcess
from .gateway_helpers import Exchange, running_exchange

pytestmark = pytest.mark.timeout(180)

K = Keys()
PLACE = {"market": "m1", "runner": 1, "side": "BACK", "price": "2.5", "stake": "2"}


class Live:
    """The module's exchange, its clients, and the input journal's length."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.redis = connect(ex.redis_url)
        self.alice = ex.client("alice")
        self.bob = ex.client("bob")
        self.operator = ex.client("operator")
        self.anyone = httpx.Client(base_url=ex.base, timeout=30)

    def journal_length(self) -> int:
        last = raw(self.redis).xrevrange(K.input, count=1)
        return int(last[0][0].split(b"-")[0]) if last else 0

    def refused(self, r: httpx.Response, status: int, reason: str | None = None) -> None:
        """``r`` is a refusal with ``status`` (and ``reason``) in the error shape."""
        assert r.status_code == status, (r.status_code, r.text)
        err = r.json()["error"]
        assert type(err["reason"]) is str and type(err["message"]) is str, r.text
        if reason is not None:
            assert err["reason"] == reason, r.text

    def close(self) -> None:
        for c in (self.alice, self.bob, self.operator, self.anyone):
            c.close()
        self.redis.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = RedisProcess(tmp_path_factory.mktemp("attacks") / "redis")
    server.start()
    try:
        with running_exchange(server, accounts=("alice", "bob", "carol"), gateway_args=(
                "--rate", "1000000", "--burst", "1000000")) as ex:
            live = Live(ex)
            try:
                yield live
            finally:
                live.close()
    finally:
        server.stop()


def send_raw(base: str, request: bytes) -> bytes:
    """``request`` as bytes on a socket of its own; the start of the answer."""
    host, port = base.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
        return out


# ----------------------------------------------------------------------------- bodies


def test_without_a_key_the_body_is_never_read(live: Live) -> None:
    """Found by the fuzz: a request without a key had its body read and parsed (400 "not
    JSON", 413) before the key was asked for. Whoever has no key gets 401, whatever the body,
    and the gateway reads none of it."""
    for path in ("/v1/orders", "/v1/orders/1/cancel", "/v1/orders/1/replace", "/v1/batch",
                 "/v1/transfers", "/v1/admin/commands"):
        live.refused(live.anyone.post(path, content=b"{not json"), 401, "UNAUTHENTICATED")
        live.refused(live.anyone.post(path, content=b" " * 200_000), 401, "UNAUTHENTICATED")
    chunked = (b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"2710\r\n" + b" " * 10_000 + b"\r\n")
    assert send_raw(live.ex.base, chunked * 1).startswith(b"HTTP/1.1 401 ")


def test_bodies_that_are_too_big_too_deep_or_not_utf8_json_are_refused(live: Live) -> None:
    """A body is UTF-8 JSON of at most 64 KiB: a UTF-16 body or one with a byte order mark
    was decoded and sequenced (found by hand). Too big (by its length, or chunked past the
    limit), nested past the parser, a batch of 100 commands of 64 KiB: 4xx, nothing
    sequenced."""
    before = live.journal_length()
    text = json.dumps(PLACE)
    for content, status in (
            (text.encode("utf-16"), 400), (b"\xef\xbb\xbf" + text.encode(), 400),
            (text.encode("utf-32"), 400), (b'{"market": "m\xff1"}', 400),
            (b"[" * 30_000 + b"]" * 30_000, 400), (b"[" * 100_000, 413),
            (b'{"runner": ' + b"9" * 5000 + b"}", 400), (b'{"runner": NaN}', 400),
            (b'{"stake": 1e400}', 400)):
        live.refused(live.alice.post("/v1/orders", content=content), status)
    big = {"type": "place", **PLACE, "ref": "x" * 64, "market": "m" * 64}
    batch = {"commands": [{**big, "pad": "p" * 65_536} for _ in range(100)]}
    live.refused(live.alice.post("/v1/batch", json=batch), 413, "TOO_LARGE")

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 10_000

    live.refused(live.alice.post("/v1/orders", content=chunks()), 413, "TOO_LARGE")
    assert live.journal_length() == before


def test_numbers_that_are_not_whole_json_integers_are_refused(live: Live) -> None:
    """Floats, booleans, strings and huge or negative integers where a runner or partition
    goes; exponents, signs, infinities and sub-penny amounts where money or a price goes:
    400, nothing sequenced (held already). (A JSON number for money or a price is read by its
    shortest decimal form, as the contract says: ``2.5`` is "2.5".)"""
    before = live.journal_length()
    for field, value in (("runner", 1.0), ("runner", True), ("runner", "1"), ("runner", -1),
                         ("runner", 2 ** 64), ("runner", 10 ** 30), ("stake", True),
                         ("stake", "1e1"), ("stake", "-2"), ("stake", 0.001),
                         ("stake", "Infinity"), ("stake", 1e300),
                         ("stake", "99999999999999999999"), ("price", "25e-1"),
                         ("price", "2.51"), ("side", "back"), ("ref", 5), ("ref", "x\x00"),
                         ("market", ""), ("market", "m" * 65), ("market", "m1\n")):
        live.refused(live.alice.post("/v1/orders", json={**PLACE, field: value}), 400)
    live.refused(live.operator.post("/v1/admin/commands", json={
        "type": "deposit", "account": "alice", "amount": "1", "partition": True}), 400)
    assert live.journal_length() == before


# ----------------------------------------------------------------------------- paths


def test_huge_or_strange_numbers_in_paths_and_queries_are_4xx_not_5xx(live: Live) -> None:
    """Found by hand: an order id or seq of 5,000 digits in a path, or a depth of 5,000 digits
    or a non-ASCII digit ("²") in a query, was a 500 (Python's int() refuses or takes them);
    a depth of "٣" was read as 3. Whole numbers are ASCII digits, and not too many."""
    huge = "9" * 5000
    for path in (f"/v1/orders/{huge}", f"/v1/commands/0/{huge}", f"/v1/commands/{huge}/1",
                 "/v1/markets/m1?depth=%C2%B2", "/v1/markets/m1?depth=%D9%A3",
                 f"/v1/markets/m1?depth={huge}", "/v1/orders/-1", "/v1/orders/1e3"):
        r = live.alice.get(path)
        assert 400 <= r.status_code < 500, (path[:60], r.status_code, r.text)
        live.refused(r, r.status_code)
    before = live.journal_length()
    for path in (f"/v1/orders/{huge}/cancel", f"/v1/orders/{2 ** 64}/cancel",
                 f"/v1/orders/{huge}/replace"):
        r = live.alice.post(path, json={"price": "3"} if "replace" in path else {})
        assert 400 <= r.status_code < 500, (path[:60], r.status_code, r.text)
        live.refused(r, r.status_code)
    assert live.journal_length() == before


def test_no_path_is_redirected_and_none_escapes_its_route(live: Live) -> None:
    """Found by hand: a trailing slash, or ``..%2F`` in a market id, was answered 307 with a
    Location built from the request's Host header (``http://evil.example/v1/account``), and
    no error body. Now 404, in the error shape, with no Location."""
    for path in ("/v1/account/", "/v1/markets/..%2F", "/v1/markets/", "/v1/orders/"):
        answer = send_raw(live.ex.base, f"GET {path} HTTP/1.1\r\nHost: evil.example\r\n"
                          f"Authorization: Bearer {live.ex.keys['alice']}\r\n\r\n".encode())
        head = answer.split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 404 "), (path, answer[:200])
        assert b"location:" not in head, (path, answer[:200])
    live.refused(live.alice.get("/v1/markets/..%2Fv1%2Faccount"), 404)
    live.refused(live.alice.get("/v1/markets/m1%00"), 404, "UNKNOWN_MARKET")
    live.refused(live.alice.get("/v1/accounts/..%2Fbob"), 404)


def test_a_method_a_route_does_not_take_is_405_with_allow(live: Live) -> None:
    """Found by the fuzz: 405 without the Allow header RFC 9110 requires (and where two
    routes share a path, it must name both's methods)."""
    for method, path, allowed in (("TRACE", "/v1/health", {"GET", "HEAD"}),
                                  ("DELETE", "/v1/orders", {"GET", "HEAD", "POST"}),
                                  ("GET", "/v1/batch", {"POST"})):
        r = live.alice.request(method, path)
        live.refused(r, 405, "METHOD_NOT_ALLOWED")
        assert set(r.headers["allow"].replace(" ", "").split(",")) == allowed, r.headers


def test_an_unknown_seq_is_not_called_sequenced(live: Live) -> None:
    """Found by the fuzz's path ints: seq 0, or one past the journal, was answered 202
    "sequenced; its outcome is not in yet", for a command that never was."""
    last = live.journal_length()
    for seq in (0, last + 1, 10 ** 18):
        live.refused(live.alice.get(f"/v1/commands/0/{seq}"), 404, "UNKNOWN_COMMAND")


# ----------------------------------------------------------------------------- keys


def test_keys_only_in_the_authorization_header_and_only_for_their_role(live: Live) -> None:
    """A key in the query string, a key with a byte changed, the operator's key on an
    account's routes and an account's on the operator's, a transfer_in from anyone, an
    account named in the body: refused, nothing sequenced (held already)."""
    key = live.ex.keys["alice"]
    before = live.journal_length()
    for query in ("api_key", "access_token", "key", "token"):
        live.refused(live.anyone.get(f"/v1/account?{query}={key}"), 401, "UNAUTHENTICATED")
    for bad in (key[:-1] + ("A" if key[-1] != "A" else "B"), key + "x", key.rsplit("_", 1)[0],
                "Basic " + key, "exch_" + "a" * 10_000):
        auth = bad if bad.startswith("Basic") else f"Bearer {bad}"
        live.refused(live.anyone.get("/v1/account", headers={"Authorization": auth}), 401)
    live.refused(live.operator.post("/v1/orders", json=PLACE), 403, "FORBIDDEN")
    live.refused(live.operator.post("/v1/orders/1/cancel"), 403, "FORBIDDEN")
    live.refused(live.operator.post("/v1/transfers", json={
        "amount": "1", "from_partition": 0, "to_partition": 0}), 403, "FORBIDDEN")
    live.refused(live.operator.get("/v1/orders"), 403, "FORBIDDEN")
    live.refused(live.alice.post("/v1/admin/commands", json={
        "type": "deposit", "account": "alice", "amount": "1000"}), 403, "FORBIDDEN")
    live.refused(live.alice.post("/v1/batch", json={"commands": [
        {"type": "create_market", "market": "mine", "runners": [1]}]}), 403, "FORBIDDEN")
    transfer_in = {"type": "transfer_in", "account": "alice", "amount": "1000", "transfer": 1,
                   "from_partition": 0}
    for client, path, body in ((live.alice, "/v1/batch", {"commands": [transfer_in]}),
                               (live.operator, "/v1/admin/commands", transfer_in),
                               (live.operator, "/v1/batch", {"commands": [transfer_in]})):
        live.refused(client.post(path, json=body), 403, "SERVICE_ONLY")
    live.refused(live.alice.post("/v1/batch", json={"commands": [
        {"type": "place", **PLACE, "account": "bob"}]}), 400, "MALFORMED")
    assert live.journal_length() == before


def test_no_route_shows_an_account_another_accounts_orders_or_money(live: Live) -> None:
    """Bob's order, bob's command, bob's account: every route alice's key can name is
    NOT_OWNER, and nothing of bob's is in alice's lists (held already)."""
    placed = live.bob.post("/v1/orders", json={**PLACE, "runner": 2, "ref": "bob-1"}).json()
    order, seq = placed["order"], placed["seq"]
    before = live.journal_length()
    for r in (live.alice.get(f"/v1/orders/{order}"), live.alice.get(f"/v1/commands/0/{seq}"),
              live.alice.get("/v1/accounts/bob"), live.alice.post(f"/v1/orders/{order}/cancel"),
              live.alice.post(f"/v1/orders/{order}/replace", json={"price": "4"}),
              live.alice.post("/v1/batch", json={"commands": [
                  {"type": "cancel", "order": order}]})):
        live.refused(r, 403, "NOT_OWNER")
    assert live.journal_length() == before
    assert order not in [o["order"] for o in live.alice.get("/v1/orders").json()["orders"]]
    assert live.alice.get("/v1/account?account=bob").json()["account"] == "alice"
    # the same ref is alice's own: it does not find bob's order
    mine = live.alice.post("/v1/orders", json={**PLACE, "ref": "bob-1"}).json()
    assert mine["duplicate"] is False and mine["order"] != order


def test_an_account_sees_only_its_own_part_of_an_operators_command(live: Live) -> None:
    """Found by hand: the outcome of a settlement (GET /v1/commands/P/SEQ) was shown to the
    account of its first event, whole: every other account's cancelled orders and settled
    profit and loss; and was NOT_OWNER to every other account in it. Now each account sees
    the events about it, and only those."""
    live.operator.post("/v1/admin/commands", json={
        "type": "create_market", "market": "settle-me", "runners": [1, 2]})
    live.alice.post("/v1/orders", json={**PLACE, "market": "settle-me", "stake": "10"})
    live.bob.post("/v1/orders", json={**PLACE, "market": "settle-me", "side": "LAY"})
    live.bob.post("/v1/orders", json={**PLACE, "market": "settle-me", "runner": 2,
                                      "price": "5"})
    for cmd in ({"type": "market_status", "market": "settle-me", "status": "SUSPENDED"},
                {"type": "settle", "market": "settle-me", "winners": [1]}):
        r = live.operator.post("/v1/admin/commands", json=cmd)
        assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    seq = r.json()["seq"]
    for who, client, other in (("alice", live.alice, "bob"), ("bob", live.bob, "alice")):
        r = client.get(f"/v1/commands/0/{seq}")
        assert r.status_code == 200, (who, r.text)
        events = r.json()["events"]
        assert events and all(e.get("account") == who for e in events), (who, events)
        assert other not in r.text, (who, r.text)
        assert {e["type"] for e in events} == {"order_cancelled", "account_settled"}
    with live.ex.client("carol") as carol:  # no part in it
        live.refused(carol.get(f"/v1/commands/0/{seq}"), 403, "NOT_OWNER")


# ----------------------------------------------------------------------------- waits


def test_wait_is_seconds_from_0_to_30_and_nothing_else(live: Live) -> None:
    """``?wait=`` negative, past 30, not a number, NaN or infinite: 400 before anything is
    sequenced (held already)."""
    before = live.journal_length()
    for wait in ("-1", "30.001", "31", "nan", "inf", "-inf", "1e400", "", "0x1", "abc"):
        live.refused(live.alice.post(f"/v1/orders?wait={wait}", json=PLACE), 400, "MALFORMED")
    assert live.journal_length() == before


# ----------------------------------------------------------------------------- streams


def ws_url(live: Live, path: str) -> str:
    return live.ex.base.replace("http://", "ws://") + path


async def refused_stream(url: str, headers: dict[str, str]) -> int:
    """The HTTP status a refused WebSocket handshake got (fails if it was accepted)."""
    try:
        async with websockets.connect(url, additional_headers=headers):
            pass
    except websockets.InvalidStatus as e:
        return e.response.status_code
    raise AssertionError(f"{url} was accepted")


def test_stream_positions_are_plain_digits(live: Live) -> None:
    """Found by hand: ``after=²`` or ``after=`` 5,000 digits on a stream was a 500 (orders)
    or a connection dropped without a close frame (markets)."""
    headers = live.ex.headers("alice")

    async def run() -> None:
        for path in ("/v1/stream/orders?after=%C2%B2", "/v1/stream/orders?after=" + "9" * 5000,
                     "/v1/stream/orders?after=0:%C2%B2", "/v1/stream/orders?after=-1",
                     "/v1/stream/markets/m1?after=%C2%B2",
                     "/v1/stream/markets/m1?after=" + "9" * 5000):
            assert await refused_stream(ws_url(live, path), headers) == 403, path

    asyncio.run(run())


def test_streams_need_the_right_key_and_show_only_the_keys_own(live: Live) -> None:
    """No key, a key in the query, the operator's key on the order stream: refused. Alice's
    order stream, replayed from 0 and live, holds only events about alice, and a trade with
    bob names neither bob nor his order; a market's stream names no account (held
    already)."""
    key = live.ex.keys["alice"]

    async def run() -> None:
        for path, headers in (("/v1/stream/orders", {}),
                              (f"/v1/stream/orders?api_key={key}", {}),
                              ("/v1/stream/orders", live.ex.headers("operator")),
                              ("/v1/stream/markets/m1", {}),
                              ("/v1/stream/markets/..%2F", live.ex.headers("alice"))):
            assert await refused_stream(ws_url(live, path), headers) == 403, path
        bob_order = live.bob.post("/v1/orders", json={**PLACE, "side": "LAY", "price": "3",
                                                      "stake": "3"}).json()["order"]
        async with websockets.connect(ws_url(live, "/v1/stream/orders?after=0"),
                                      additional_headers=live.ex.headers("alice")) as mine, \
                websockets.connect(ws_url(live, "/v1/stream/markets/m1?after=0"),
                                   additional_headers=live.ex.headers("alice")) as market:
            live.alice.post("/v1/orders", json={**PLACE, "price": "3", "stake": "2"})
            seen = await messages(mine, until=lambda m: any(
                e["type"] == "trade" for e in m.get("events", [])))
            public = await messages(market, until=lambda m: any(
                e["type"] == "trade" for e in m.get("events", [])))
        for m in seen:
            for e in m.get("events", []):
                assert "alice" in (e.get("account"), e.get("back_account"),
                                   e.get("lay_account")) or e["type"] == "trade", e
                assert '"bob"' not in json.dumps(e) and e.get("order") != bob_order, e
        for m in public:
            assert '"alice"' not in json.dumps(m) and '"bob"' not in json.dumps(m), m

    asyncio.run(run())


async def messages(ws: Any, until: Any, timeout: float = 10.0) -> list[dict]:
    """A stream's messages up to the first that ``until`` is true of."""
    out: list[dict] = []
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        out.append(m)
        if until(m):
            return out


def test_one_key_may_hold_only_so_many_streams(live: Live) -> None:
    """Found by hand: one key could open any number of idle market streams, and each one
    costs a ladder on every change of its market: with 1,000 of them, other clients' orders
    took 50 times as long. A key holds at most ``Gateway.MAX_STREAMS`` at once; the next is
    refused, and one closed makes room again; another key is not affected."""
    url = ws_url(live, "/v1/stream/markets/m1")

    async def run() -> None:
        held = [await websockets.connect(url, additional_headers=live.ex.headers("alice"))
                for _ in range(Gateway.MAX_STREAMS)]
        try:
            assert await refused_stream(url, live.ex.headers("alice")) == 403
            assert await refused_stream(ws_url(live, "/v1/stream/orders"),
                                        live.ex.headers("alice")) == 403
            async with websockets.connect(url, additional_headers=live.ex.headers("bob")):
                pass
            await held.pop().close()
            for _ in range(50):  # the server sees the close a moment later
                try:
                    held.append(await websockets.connect(
                        url, additional_headers=live.ex.headers("alice")))
                    break
                except websockets.InvalidStatus:
                    await asyncio.sleep(0.05)
            assert len(held) == Gateway.MAX_STREAMS
        finally:
            for ws in held:
                await ws.close()

    asyncio.run(run())


def test_a_command_type_that_is_not_text_is_refused(live: Live) -> None:
    """Found by the fuzz: a command whose ``type`` was an object or a list (in a batch, or
    the operator's) was a 500 (unhashable in the set of allowed types)."""
    before = live.journal_length()
    for kind in ({}, [], [1], {"a": 1}, 1, None, True):
        live.refused(live.alice.post("/v1/batch", json={"commands": [{"type": kind}]}), 400,
                     "MALFORMED")
        live.refused(live.operator.post("/v1/admin/commands", json={"type": kind}), 400,
                     "MALFORMED")
    assert live.journal_length() == before



def test_an_optional_field_given_as_null_is_its_default(live: Live) -> None:
    """Found by probing the core's checks with the fuzz's values: ``create_market`` with
    ``"winners": null`` made ``exchange.commands.problem`` raise TypeError, a 500 here (fixed
    in the core: null is an absent optional field, its default). The document says so: every
    optional field is nullable."""
    r = live.operator.post("/v1/admin/commands", json={
        "type": "create_market", "market": "nulls", "runners": [1, 2], "winners": None,
        "commission": None})
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    assert live.alice.get("/v1/markets/nulls").json()["winners"] == 1
    r = live.alice.post("/v1/orders", json={**PLACE, "market": "nulls", "tif": None,
                                            "persistence": None, "ref": None})
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
