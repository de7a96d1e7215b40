"""The gateway's OpenAPI document, served at ``/openapi.json``.

The command bodies are generated from the same field tables that define the commands
(``exchange.commands.COMMANDS``) and write docs/contract.md, so the document cannot drift
from what the gateway accepts: a field's kind, whether it is required, its values. Prices
are listed as the 350 ladder prices themselves.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from exchange.commands import (
    ACCOUNT,
    COMMANDS,
    ENUMS,
    ID,
    INT,
    INTS,
    MONEY,
    PRICE,
    RATE,
    REQUIRED,
)
from exchange.limits import MAX_ID, MAX_INT
from exchange.units import PRICES, format_price

MONEY_PATTERN = r"^[0-9]{1,13}(\.[0-9]{1,2})?$"


def _field_schema(kind: str, doc: str) -> dict[str, Any]:
    if kind in (ID, ACCOUNT):
        out: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_ID}
    elif kind == INT:
        out = {"type": "integer", "minimum": 0, "maximum": MAX_INT}
    elif kind == INTS:
        out = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": MAX_INT}}
    elif kind == PRICE:
        out = {"type": "string", "enum": [format_price(p) for p in PRICES]}
    elif kind == MONEY:
        out = {"type": "string", "pattern": MONEY_PATTERN}
    elif kind == RATE:
        out = {"type": "string", "pattern": r"^[0-9]{1,3}(\.[0-9]{1,2})?$"}
    else:
        out = {"type": "string", "enum": list(ENUMS[kind])}
    out["description"] = doc
    return out


def command_schema(kind: str, *, without: tuple[str, ...] = (), typed: bool = True,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON schema of a ``kind`` command's body, leaving out ``without`` (the account,
    which comes from the key; an order id, which comes from the path)."""
    props: dict[str, Any] = {}
    required = []
    if typed:
        props["type"] = {"type": "string", "enum": [kind]}
        required.append("type")
    for f in COMMANDS[kind]:
        if f.name in without:
            continue
        props[f.name] = _field_schema(f.kind, f.doc)
        if f.default is REQUIRED:
            required.append(f.name)
        else:  # null is the field left out: its default
            props[f.name]["nullable"] = True
    props.update(extra or {})
    out: dict[str, Any] = {"type": "object", "properties": props,
                           "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": {"description": "bad input: nothing sequenced", **_json(_ref("Error"))},
    "401": {"description": "no valid API key", **_json(_ref("Error"))},
    "403": {"description": "another account's order (NOT_OWNER), or not this key's to send",
            **_json(_ref("Error"))},
    "413": {"description": "body too big", **_json(_ref("Error"))},
    "429": {"description": "too many requests (Retry-After)", **_json(_ref("Error"))},
}


def _outcome_responses() -> dict[str, Any]:
    return {
        "200": {"description": "the command's outcome: accepted or rejected by the matcher",
                **_json(_ref("Outcome"))},
        "202": {"description": "sequenced; its outcome not in within the wait",
                **_json(_ref("Outcome"))},
        "409": {"description": "a duplicate ref whose original is no longer known",
                **_json(_ref("Error"))},
        "404": {"description": "no such path (an order id that is not a whole number)",
                **_json(_ref("Error"))},
        **ERRORS,
    }


def _post(summary: str, body: dict[str, Any], *, params: list | None = None,
          body_required: bool = True, batch: bool = False) -> dict:
    responses = _outcome_responses()
    if batch:  # each command's outcome in its place, pending or a duplicate among them
        responses["200"] = {"description": "each command's outcome, in order", **_json({
            "type": "object", "required": ["results"], "properties": {
                "results": {"type": "array", "items": _ref("Outcome")}}})}
        del responses["202"], responses["409"]
    return {"post": {"summary": summary, "security": [{"apiKey": []}],
                     "parameters": (params or []) + [_WAIT],
                     "requestBody": {"required": body_required, **_json(body)},
                     "responses": responses}}


def _get(summary: str, schema: dict[str, Any], *, params: list | None = None) -> dict:
    return {"get": {"summary": summary, "security": [{"apiKey": []}],
                    "parameters": params or [],
                    "responses": {"200": {"description": "found", **_json(schema)},
                                  "404": {"description": "not found", **_json(_ref("Error"))},
                                  **ERRORS}}}


def _path_int(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_INT}}


_WAIT = {"name": "wait", "in": "query", "required": False,
         "description": "seconds to wait for the outcome (default: the gateway's)",
         "schema": {"type": "number", "minimum": 0, "maximum": 30}}


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the gateway's HTTP API."""
    client_batch = {"oneOf": [
        command_schema("place", without=("account",)),
        command_schema("cancel", without=("account",)),
        command_schema("replace", without=("account",)),
        command_schema("transfer", without=("account",)),
    ]}
    operator_kinds = ("create_market", "market_status", "turn_in_play", "settle", "void",
                      "deposit", "withdraw")
    partition = {"partition": {"type": "integer", "minimum": 0, "maximum": 9999,
                               "description": "the partition (deposit, withdraw, "
                               "create_market); default: the router's choice"}}
    operator = {"oneOf": [command_schema(k, extra=partition if k in (
        "deposit", "withdraw", "create_market") else None) for k in operator_kinds]}
    money = {"type": "string"}
    schemas = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["reason", "message"],
            "properties": {"reason": {"type": "string"}, "message": {"type": "string"}}}}},
        "Outcome": {"type": "object", "required": ["status", "partition", "seq"], "properties": {
            "status": {"type": "string",
                       "enum": ["accepted", "rejected", "pending", "duplicate"]},
            "partition": {"type": "integer"}, "seq": {"type": "integer", "nullable": True},
            "duplicate": {"type": "boolean"},
            "order": {"type": "integer"}, "reason": {"type": "string"},
            "matched": money, "events": {"type": "array", "items": {"type": "object"}}}},
        "Order": {"type": "object", "properties": {
            "order": {"type": "integer"}, "market": {"type": "string"},
            "runner": {"type": "integer"}, "side": {"type": "string"},
            "price": {"type": "string"}, "stake": {"type": "string", "nullable": True},
            "matched": money, "cancelled": money, "remaining": money,
            "state": {"type": "string", "enum": ["LIVE", "FINISHED"]}}},
    }
    paths = {
        "/v1/health": {"get": {"summary": "whether every partition is followed, and how far",
                               "responses": {"200": {"description": "healthy"},
                                             "503": {"description": "a partition's view "
                                                     "stopped"}}}},
        "/v1/orders": {
            **_post("place an order for the key's account",
                    command_schema("place", without=("account",), typed=False)),
            **_get("the key's account's live orders",
                   {"type": "object", "properties": {"orders": {
                       "type": "array", "items": _ref("Order")}}},
                   params=[{"name": "market", "in": "query", "required": False,
                            "schema": {"type": "string"}}])},
        "/v1/orders/{order}": _get("one order of the key's account (live, or finished lately)",
                                   _ref("Order"), params=[_path_int("order")]),
        "/v1/orders/{order}/cancel": _post(
            "cancel an order, or reduce it by `reduce` (no body: cancel it all)",
            command_schema("cancel", without=("account", "order"), typed=False),
            params=[_path_int("order")], body_required=False),
        "/v1/orders/{order}/replace": _post(
            "move an order's unmatched stake to a new price",
            command_schema("replace", without=("account", "order"), typed=False),
            params=[_path_int("order")]),
        "/v1/batch": _post(
            "several commands at once (up to 100), each partition's share in one journal "
            "entry; an account key sends place, cancel, replace and transfer, the operator "
            "its own commands",
            {"type": "object", "required": ["commands"], "additionalProperties": False,
             "properties": {"commands": {"type": "array", "minItems": 1, "maxItems": 100,
                                         "items": {"oneOf": [client_batch, operator]}}}},
            batch=True),
        "/v1/transfers": _post(
            "move the key's account's money between partitions",
            command_schema("transfer", without=("account",), typed=False)),
        "/v1/account": _get("the key's account: balance, exposure, available", {
            "type": "object"}),
        "/v1/accounts/{account}": _get(
            "an account (the operator's key, or the account's own)", {"type": "object"},
            params=[{"name": "account", "in": "path", "required": True,
                     "schema": {"type": "string"}}]),
        "/v1/commands/{partition}/{seq}": _get(
            "the outcome of a sequenced command of the key's account",
            _ref("Outcome"), params=[_path_int("partition"), _path_int("seq")]),
        "/v1/markets": _get("every market in the exchange's state", {"type": "object"}),
        "/v1/markets/{market}": _get(
            "a market's definition, status and ladder", {"type": "object"},
            params=[{"name": "market", "in": "path", "required": True,
                     "schema": {"type": "string"}},
                    {"name": "depth", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 350}}]),
        "/v1/admin/commands": _post("an operator's command: markets, settlement, money",
                                    operator),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "exch gateway", "version": "1",
                 "description": "The exchange's front door. WebSocket streams (not in this "
                 "document): /v1/stream/orders?after=P:SEQ,... (the key's orders and "
                 "trades) and /v1/stream/markets/{market}?after=SEQ (trades, status, "
                 "ladder). See docs/gateway.md."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer",
                       "description": "an API key from `exch keys create`"}}},
    }
