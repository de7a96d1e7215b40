"""Reading Redis streams: raw replies, entry ids, fields, the last id of a stream.

Every layer that reads a stream (the matcher, replay, consumers, status, the command line)
uses these. Stream reads here use raw replies (nested lists of bytes straight from hiredis):
redis-py's per-entry conversion to dicts costs more than decoding the entry itself.
"""

from __future__ import annotations

from typing import Any

import redis

RAW_COMMANDS = ("XRANGE", "XREVRANGE", "XREAD", "XREADGROUP", "XAUTOCLAIM", "XCLAIM")

Row = tuple[bytes, list[bytes]]
"""A raw stream entry: (id, [field, value, field, value, ...])."""


def raw(client: redis.Redis) -> redis.Redis:
    """The same client with raw replies for stream reads (nested lists of bytes). A cluster
    client parses each reply with the client of the node that gave it: those (and the ones
    it makes later, after a failover) answer raw too."""
    for command in RAW_COMMANDS:
        client.set_response_callback(command, _identity)
    nodes = getattr(client, "nodes_manager", None)
    if nodes is not None and not getattr(nodes, "exch_raw", False):
        make = nodes.create_redis_node

        def create_redis_node(host: str, port: int, **kwargs: Any) -> redis.Redis:
            return raw(make(host, port, **kwargs))

        nodes.create_redis_node = create_redis_node
        nodes.exch_raw = True
        for node in client.get_nodes():  # type: ignore[attr-defined]
            if node.redis_connection is not None:
                raw(node.redis_connection)
    return client


def _identity(response: Any, **options: Any) -> Any:
    return response


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    """``b"12-0"`` -> (12, 0)."""
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    ms, _, sub = entry_id.partition("-")
    return int(ms), int(sub or 0)


def field(fields: list[bytes], name: bytes) -> bytes | None:
    """The value of ``name`` in a raw field list, or None."""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == name:
            return fields[i + 1]
    return None


def last_id(client: redis.Redis, key: str) -> str:
    """The last-generated id of a stream ("0-0" if it does not exist)."""
    try:
        info = client.xinfo_stream(key)
    except redis.ResponseError:
        return "0-0"
    value = info["last-generated-id"]
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_items(reply: object) -> list[tuple[bytes, list[Row]]]:
    """(stream name, rows) pairs of a raw XREAD/XREADGROUP reply, RESP2 (a list of pairs)
    or RESP3 (a map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(reply.items())
    return [(name, rows) for name, rows in reply]  # type: ignore[attr-defined]
