"""The gateway's HTTP and WebSocket API (Starlette): requests in, outcomes out.

Every request but ``/v1/health`` and ``/openapi.json`` carries an API key
(``Authorization: Bearer exch_...``). A command's account is the key's, never the body's.
Bad input is refused at the door with a 4xx and the contract's reason code, and nothing is
sequenced: a body that is not JSON, a field given twice, an unknown field, a wrong type, a
price off the ladder, a body over ``MAX_BODY`` bytes. What passes is sequenced, and the
answer is its outcome, read from the output for its seq (see ``service.Gateway``).

Status codes: 200 an outcome (accepted or rejected by the matcher: ``status`` says which,
``reason`` why); 202 sequenced but the outcome not in within the wait; 400 bad input; 401 no
valid key; 403 another account's order (``NOT_OWNER``) or a command this key may not send;
404 unknown order or market; 409 a duplicate ref whose original is no longer known; 413 a
body too big; 429 too many requests (``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .openapi import document
from .service import Gateway, Refusal, Subscription, client_event, ladder_json, public_trade
from .service import summary as outcome_json

MAX_BODY = 64 * 1024
"""Most bytes in a request body: a batch of ``Gateway.MAX_BATCH`` orders fits many times."""

MAX_WAIT = 30.0
"""Most seconds a request may ask to wait for its outcome (``?wait=``)."""

PLACE_FIELDS = ("market", "runner", "side", "price", "stake", "tif", "persistence", "ref")


def _whole(raw: str) -> int | None:
    """``raw`` as a whole number if it is one in ASCII digits, at most 19 of them (more than
    any id or seq), else None: ``str.isdigit`` also takes "²" and "٣", and ``int`` refuses
    the first and a number of more than 4,300 digits with a ValueError (a 500)."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 else None


class _Id(Convertor[int]):
    """``{name:id}`` in a route: a whole number of at most 19 digits, else no match (404)."""

    regex = "[0-9]{1,19}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", _Id())


def error(status: int, reason: str, message: str, **extra: Any) -> JSONResponse:
    """The body of every refusal: ``{"error": {"reason": ..., "message": ...}}``."""
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(max(1, math.ceil(extra.pop("retry_after"))))
    return JSONResponse({"error": {"reason": reason, "message": message, **extra}},
                        status_code=status, headers=headers)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise Refusal(400, "MALFORMED", f"field {k[:40]!r} is given twice")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise Refusal(400, "MALFORMED", f"{name} is not a number JSON allows")


async def body(request: Request) -> Any:
    """The request's JSON body, or ``Refusal``: too big (413), not JSON, a field twice."""
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise Refusal(400, "MALFORMED", "Content-Length is not a number")
    if length is not None and int(length) > MAX_BODY:
        raise Refusal(413, "TOO_LARGE", f"a request body is at most {MAX_BODY} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise Refusal(413, "TOO_LARGE", f"a request body is at most {MAX_BODY} bytes")
    try:
        return json.loads(bytes(data).decode("utf-8"), object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constant)  # UTF-8 only, no byte order mark
    except (ValueError, RecursionError):
        raise Refusal(400, "MALFORMED", "the body is not JSON (UTF-8)") from None


def _object(obj: Any, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    if type(obj) is not dict:
        raise Refusal(400, "MALFORMED", f"{what} is a JSON object")
    for k in obj:
        if k not in allowed:
            raise Refusal(400, "MALFORMED", f"{what} has no field {k[:40]!r} (fields: "
                          f"{', '.join(allowed)})")
    return obj


def _wait(request: Request) -> float | None:
    raw = request.query_params.get("wait")
    if raw is None:
        return None
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= MAX_WAIT:
        raise Refusal(400, "MALFORMED", f"wait is seconds from 0 to {MAX_WAIT:g}")
    return wait


def _int_param(request: Request, name: str, low: int, high: int, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = _whole(raw)
    if value is None or not low <= value <= high:
        raise Refusal(400, "MALFORMED", f"{name} is a whole number from {low} to {high}")
    return value


def _key(headers: Any) -> str | None:
    auth = headers.get("authorization")
    if auth is None:
        return None
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def create_app(gateway: Gateway) -> Starlette:
    """The ASGI application over ``gateway`` (started and stopped with the server)."""

    def caller(request: Request) -> Any:
        return gateway.caller(_key(request.headers))

    async def run_commands(request: Request, who: Any, objs: list[Any], single: bool = True
                           ) -> JSONResponse:
        wait = _wait(request)
        gateway.charge(who, max(1, len(objs)))
        routed = [gateway.command(who, obj) for obj in objs]
        placed = await gateway.sequence(routed)

        async def result(p: int, seq: int, duplicate: bool) -> dict[str, Any]:
            if duplicate and not seq:
                return {"status": "duplicate", "partition": p, "seq": None,
                        "duplicate": True, "reason": "DUPLICATE_REF",
                        "message": "this ref was used before, too long ago for its "
                        "outcome to be known here"}
            events = await gateway.outcome(p, seq, wait)
            if events is not None and not who.operator:
                # orders released from a bet delay answer under the seq of whatever command
                # came next: another account's events are not this caller's to see
                events = [e for e in events if _concerns(e, who.account)]
            return outcome_json(p, seq, events, who.account, duplicate)

        # every outcome waited for at once: a batch waits at most one wait, not one each
        results = list(await asyncio.gather(*(result(*x) for x in placed)))
        if single:
            return _single(results[0])
        return JSONResponse({"results": results})

    def _single(result: dict[str, Any]) -> JSONResponse:
        if result["status"] == "pending":
            return JSONResponse(result, status_code=202)
        if result["status"] == "duplicate":
            return JSONResponse({"error": {"reason": "DUPLICATE_REF",
                                           "message": result["message"]}}, status_code=409)
        if result.get("reason") == "NOT_OWNER":
            return JSONResponse(result, status_code=403)
        return JSONResponse(result)

    # Each command route asks for the key first: without one, no byte of the body is read.

    async def place(request: Request) -> Response:
        who = caller(request)
        obj = _object(await body(request), PLACE_FIELDS, "an order")
        return await run_commands(request, who, [{"type": "place", **obj}])

    async def cancel(request: Request) -> Response:
        who = caller(request)
        raw = await body(request) if await _has_body(request) else {}
        obj = _object(raw, ("reduce",), "a cancel")
        order = request.path_params["order"]
        return await run_commands(request, who, [{"type": "cancel", "order": order, **obj}])

    async def replace(request: Request) -> Response:
        who = caller(request)
        obj = _object(await body(request), ("price",), "a replace")
        order = request.path_params["order"]
        return await run_commands(request, who, [{"type": "replace", "order": order, **obj}])

    async def transfer(request: Request) -> Response:
        who = caller(request)
        obj = _object(await body(request), ("amount", "from_partition", "to_partition"),
                      "a transfer")
        return await run_commands(request, who, [{"type": "transfer", **obj}])

    async def admin(request: Request) -> Response:
        who = caller(request)
        if not who.operator:
            raise Refusal(403, "FORBIDDEN", "only the operator key may send this")
        return await run_commands(request, who, [await body(request)])

    async def batch(request: Request) -> Response:
        who = caller(request)
        obj = _object(await body(request), ("commands",), "a batch")
        cmds = obj.get("commands")
        if type(cmds) is not list or not 1 <= len(cmds) <= gateway.MAX_BATCH:
            raise Refusal(400, "MALFORMED", f"commands is a list of 1 to {gateway.MAX_BATCH} "
                          "commands")
        return await run_commands(request, who, cmds, single=False)

    async def command_outcome(request: Request) -> Response:
        who = caller(request)
        p, seq = request.path_params["partition"], request.path_params["seq"]
        if p not in gateway.views:
            raise Refusal(404, "UNKNOWN_PARTITION", f"no partition {p}")
        gateway.charge(who)
        if seq < 1 or (seq > gateway.answered[p]
                       and seq > await asyncio.to_thread(gateway.sequenced, p)):
            raise Refusal(404, "UNKNOWN_COMMAND", f"no command has seq {seq} in partition {p}")
        if seq > gateway.answered[p]:
            return JSONResponse(outcome_json(p, seq, None, who.account), status_code=202)
        events = await gateway.outcome(p, seq, 0)
        if events is None:
            return JSONResponse(outcome_json(p, seq, None, who.account), status_code=202)
        if not who.operator:
            # an account sees the events about it, only (an operator's settlement is about
            # many accounts), and of another account's command nothing
            events = [e for e in events if _concerns(e, who.account)]
            if not events:
                raise Refusal(403, "NOT_OWNER", f"seq {seq} is another account's command")
        return JSONResponse(outcome_json(p, seq, events, who.account))

    async def account(request: Request) -> Response:
        who = caller(request)
        gateway.charge(who)
        name = request.path_params.get("account", who.account)
        if not who.operator and name != who.account:
            raise Refusal(403, "NOT_OWNER", "an account key sees its own account only")
        if name is None:
            raise Refusal(400, "MALFORMED", "the operator names an account: "
                          "/v1/accounts/{account}")
        return JSONResponse(gateway.account(name))

    async def orders(request: Request) -> Response:
        who = caller(request)
        gateway.charge(who)
        if who.operator:
            raise Refusal(403, "FORBIDDEN", "orders are listed per account key")
        market = request.query_params.get("market")
        return JSONResponse({"orders": gateway.orders(who.account, market)})

    async def order(request: Request) -> Response:
        who = caller(request)
        gateway.charge(who)
        return JSONResponse(gateway.order(who, request.path_params["order"]))

    async def markets(request: Request) -> Response:
        who = caller(request)
        gateway.charge(who)
        return JSONResponse({"markets": gateway.markets()})

    async def market(request: Request) -> Response:
        who = caller(request)
        gateway.charge(who)
        depth = _int_param(request, "depth", 1, 350, 3)
        return JSONResponse(gateway.market(request.path_params["market"], depth))

    async def health(request: Request) -> Response:
        data = gateway.health()
        return JSONResponse(data, status_code=200 if data["status"] == "ok" else 503)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document())

    # ------------------------------------------------------------------ WebSocket streams

    async def order_stream(ws: WebSocket) -> None:
        who = gateway.auth.caller(_key(ws.headers) or "")
        if who is None or who.operator:
            await ws.close(code=1008, reason="an account's API key is required")
            return
        try:
            after = _positions(ws.query_params.get("after"), gateway.partitions)
        except Refusal as e:
            await ws.close(code=1008, reason=e.message[:120])
            return
        if not gateway.open_stream(who):
            await ws.close(code=1008, reason="TOO_MANY_STREAMS")
            return
        queue: asyncio.Queue = asyncio.Queue(maxsize=10_000)
        subs = [Subscription(p, queue, account=who.account) for p in gateway.partitions]
        live = {s.partition: gateway.subscribe(s) for s in subs}
        try:
            await ws.accept()
            await ws.send_json({"type": "subscribed", "positions": {str(p): live[p]
                                                                    for p in live}})
            for p, since in after.items():
                await _history(ws, p, since, live[p],
                               lambda e, a=who.account: _concerns(e, a),
                               lambda e, a=who.account: client_event(e, a))
            await _pump(ws, queue, subs, lambda p, s, evs: {
                "type": "events", "partition": p, "seq": s,
                "events": [client_event(e, who.account) for e in evs]},
                {p: max(after.get(p, 0), live[p]) for p in live}, _key(ws.headers) or "")
        finally:
            for s in subs:
                gateway.unsubscribe(s)
            gateway.close_stream(who)

    async def market_stream(ws: WebSocket) -> None:
        who = gateway.auth.caller(_key(ws.headers) or "")
        name = ws.path_params["market"]
        p = gateway.router.market(name)
        if who is None:
            await ws.close(code=1008, reason="a valid API key is required")
            return
        if p is None or p not in gateway.views:
            await ws.close(code=1008, reason="UNKNOWN_MARKET")
            return
        raw_after = ws.query_params.get("after")
        after = None if raw_after is None else _whole(raw_after)
        if raw_after is not None and after is None:
            await ws.close(code=1008, reason="after is a seq")
            return
        if not gateway.open_stream(who):
            await ws.close(code=1008, reason="TOO_MANY_STREAMS")
            return
        depth = 3
        queue: asyncio.Queue = asyncio.Queue(maxsize=10_000)
        sub = Subscription(p, queue, market=name)
        live = gateway.subscribe(sub)
        view = gateway.views[p]

        def ladder_message() -> dict[str, Any]:
            with view.lock:
                return {"type": "ladder", "seq": view.answered,
                        "ladder": ladder_json(view.ex.ladder(name, depth))}

        try:
            await ws.accept()
            await ws.send_json({"type": "subscribed", "partition": p, "position": live})
            if after is not None:
                await _history(ws, p, after, live,
                               lambda e: e.get("market") == name
                               and e.get("type") in _MARKET_SHOWN, _market_event)
            await ws.send_json(ladder_message())

            def message(_p: int, s: int, evs: list[dict]) -> dict[str, Any] | None:
                shown = [_market_event(e) for e in evs if e.get("type") in _MARKET_SHOWN]
                return {"type": "events", "partition": _p, "seq": s, "events": shown} \
                    if shown else None

            await _pump(ws, queue, [sub], message, {p: max(after or 0, live)},
                        _key(ws.headers) or "", after_drain=ladder_message)
        finally:
            gateway.unsubscribe(sub)
            gateway.close_stream(who)

    async def _history(ws: WebSocket, p: int, after: int, upto: int, keep: Any,
                       shown: Any) -> None:
        """The answers of seqs after ``after`` up to ``upto`` (where the live queue starts),
        read from the output in chunks, as stream messages."""
        view = gateway.views[p]
        while after < upto:
            answers = await asyncio.to_thread(view.answers_between, after, upto, 256)
            if not answers:
                break
            for _last, events in answers:
                by_seq: dict[int, list[dict]] = {}
                for e in events:
                    s = e["seq"]
                    if after < s <= upto and keep(e):
                        by_seq.setdefault(s, []).append(shown(e))
                for s, evs in by_seq.items():
                    await ws.send_json({"type": "events", "partition": p, "seq": s,
                                        "events": evs, "replayed": True})
            after = max(after, answers[-1][0])

    async def _pump(ws: WebSocket, queue: asyncio.Queue, subs: list[Subscription],
                    message: Any, positions: dict[int, int], key: str,
                    after_drain: Any = None) -> None:
        """Send what the subscriptions queue until the client leaves; a client too slow to
        keep up is told where to resume and closed (1013), never silently skipped.
        ``positions``: per partition, the last seq the client has (sent, or given as where
        it resumes from): nothing at or before it is sent again. A key revoked meanwhile
        closes the stream (1008) within ``Authenticator.TTL``."""
        closed = asyncio.Event()

        async def watch() -> None:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                while True:
                    msg = await ws.receive()
                    if msg["type"] == "websocket.disconnect":
                        break
            closed.set()

        watcher = asyncio.create_task(watch())
        leaving = asyncio.create_task(closed.wait())
        sent = dict(positions)
        try:
            while not closed.is_set():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, leaving}, timeout=gateway.auth.TTL,
                                             return_when=asyncio.FIRST_COMPLETED)
                if gateway.auth.caller(key) is None:
                    getter.cancel()
                    await ws.close(code=1008, reason="the API key was revoked")
                    break
                if getter not in done:
                    getter.cancel()
                    if leaving in done:
                        break
                    continue
                items = [getter.result()]
                while not queue.empty():
                    items.append(queue.get_nowait())
                for p, s, evs in items:
                    if s <= sent.get(p, 0):
                        continue  # the client has it (it resumed from a later seq)
                    msg = message(p, s, evs)
                    if msg is not None:
                        await ws.send_json(msg)
                    sent[p] = s
                if after_drain is not None:
                    await ws.send_json(after_drain())
                if any(s.overflowed for s in subs) and queue.empty():
                    await ws.send_json({"type": "overflow", "resume_after": {
                        str(p): s for p, s in sent.items()}})
                    await ws.close(code=1013, reason="too slow: resume from resume_after")
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            watcher.cancel()
            leaving.cancel()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        return error(exc.status, exc.reason, exc.message, **exc.extra)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        reason = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "MALFORMED")
        response = error(exc.status_code, reason, str(exc.detail))
        if exc.status_code == 405:  # every method of the path, of however many routes
            response.headers["Allow"] = ", ".join(sorted(
                m for r in routes if isinstance(r, Route) and r.methods
                and r.matches(request.scope)[0] != Match.NONE for m in r.methods))
        return response

    routes = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/orders", place, methods=["POST"]),
        Route("/v1/orders", orders, methods=["GET"]),
        Route("/v1/orders/{order:id}", order, methods=["GET"]),
        Route("/v1/orders/{order:id}/cancel", cancel, methods=["POST"]),
        Route("/v1/orders/{order:id}/replace", replace, methods=["POST"]),
        Route("/v1/batch", batch, methods=["POST"]),
        Route("/v1/transfers", transfer, methods=["POST"]),
        Route("/v1/account", account, methods=["GET"]),
        Route("/v1/accounts/{account}", account, methods=["GET"]),
        Route("/v1/commands/{partition:id}/{seq:id}", command_outcome, methods=["GET"]),
        Route("/v1/markets", markets, methods=["GET"]),
        Route("/v1/markets/{market}", market, methods=["GET"]),
        Route("/v1/admin/commands", admin, methods=["POST"]),
        WebSocketRoute("/v1/stream/orders", order_stream),
        WebSocketRoute("/v1/stream/markets/{market}", market_stream),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={Refusal: refused, HTTPException: http_error})
    # no 307 to the path with(out) a trailing slash: its Location is built from the request's
    # Host header, and an API answers a path it does not have with 404
    app.router.redirect_slashes = False
    return app


_MARKET_SHOWN = frozenset({"trade", "market_status_changed", "market_settled"})


def _market_event(e: dict[str, Any]) -> dict[str, Any]:
    return public_trade(e) if e.get("type") == "trade" else client_event(e, None)


def _concerns(e: dict[str, Any], account: str) -> bool:
    return account in (e.get("account"), e.get("back_account"), e.get("lay_account"))


def _positions(raw: str | None, partitions: list[int]) -> dict[int, int]:
    """``after`` of an order stream: ``SEQ`` (partition 0) or ``P:SEQ,P:SEQ``."""
    if raw is None or raw == "":
        return {}
    out = {}
    for item in raw.split(","):
        p_text, sep, s_text = item.partition(":")
        if not sep:
            p_text, s_text = "0", item
        p, s = _whole(p_text), _whole(s_text)
        if p is None or s is None or p not in partitions:
            raise Refusal(400, "MALFORMED", "after is SEQ or P:SEQ,P:SEQ (partition:seq)")
        out[p] = s
    return out


async def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return bool(length and length != "0") or "transfer-encoding" in request.headers
