"""Connections to Redis: from a URL, or to the embedded default server.

Every client retries a command after a connection error, with backoff, for about half a
minute: long enough for a Redis restart. A retried command may have been applied already; the
journal's scripts are written so that a second application is recognised, never doubled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from .server import ensure_embedded


def _retry() -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=40)


def connect(
    url: str | None = None, *, home: str | Path | None = None, **kwargs: Any
) -> redis.Redis:
    """A Redis client for ``url`` (``redis://``, ``rediss://``, ``unix://``, with user and
    password), or for the embedded default server when ``url`` is None (started if needed).

    Responses are bytes (``decode_responses=False``): stream payloads are msgpack.
    """
    options: dict[str, Any] = {
        "retry": _retry(),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "health_check_interval": 10,
    }
    options.update(kwargs)
    if url is None:
        server = ensure_embedded(home)
        return redis.Redis(unix_socket_path=str(server.socket), **options)
    if not url.startswith("unix:"):
        options.setdefault("socket_keepalive", True)
    return redis.Redis.from_url(url, **options)
