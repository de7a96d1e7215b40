"""Connections to Redis: from a URL, or to the embedded default server.

Every client retries a command after a connection error, with backoff, for about half a
minute: long enough for a Redis restart. A retried command may have been applied already; the
journal's scripts are written so that a second application is recognised, never doubled.
Refused credentials are never retried (they will not get better), and no socket waits for
ever: a server that does not answer (a TLS client on a plain port, a stopped process) is a
timeout, not a hang. ``redacted`` is the form of a URL to print: never its password.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from exchange.errors import InputError

from .server import ensure_embedded

SCHEMES = ("redis", "rediss", "unix")
"""The URL schemes a Redis URL may have."""

CONNECT_SECONDS = 5.0
"""How long opening a connection may take."""

SOCKET_SECONDS = 60.0
"""How long a reply may take. Blocking reads in this project wait at most a few seconds at a
time, well inside it."""


def _retryable(error: Exception) -> bool:
    return not isinstance(error, redis.AuthenticationError)


def _retry() -> Retry:
    # A timeout is not retried: a server that accepts and never answers would otherwise
    # cost 40 (commands) x 40 (reconnections) x the timeout. The services' own loops retry
    # it, with a visible back-off.
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=40,
                 supported_errors=(redis.ConnectionError,), is_retryable=_retryable)


_USERINFO = re.compile(r"(://[^/@:?#]*):.*@")
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")


def redacted(url: str | None) -> str:
    """``url`` as it may be printed: its password (in the user part, or a ``password=``
    parameter) replaced by ``***``. Masks too much rather than too little: everything
    between the user name and the last ``@`` goes."""
    if url is None:
        return "the embedded server"
    url = _USERINFO.sub(r"\1:***@", url)
    return _QUERY_PASSWORD.sub(r"\1***", url)


def check_url(url: str) -> None:
    """Raise ``InputError`` (bad usage) unless ``url`` names a Redis the client can use."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise InputError(f"{redacted(url)}: a Redis URL starts with redis://, rediss:// or "
                         "unix:// (for example redis://localhost:6379/0)")
    try:
        urlsplit(url).port  # noqa: B018 - raises on a port that is not a number
    except ValueError:  # its text may quote a piece of the password: not shown
        raise InputError(f"{redacted(url)}: not a host and port that can be read (a "
                         "password with '/', '?', '#' or '@' must be percent-encoded)") from None


def connect(
    url: str | None = None, *, home: str | Path | None = None, **kwargs: Any
) -> redis.Redis:
    """A Redis client for ``url`` (``redis://``, ``rediss://``, ``unix://``, with user and
    password), or for the embedded default server when ``url`` is None (started if needed).

    Responses are bytes (``decode_responses=False``): stream payloads are msgpack.
    """
    options: dict[str, Any] = {
        "retry": _retry(),
        "retry_on_error": [redis.ConnectionError],
        "health_check_interval": 10,
        "socket_connect_timeout": CONNECT_SECONDS,
        "socket_timeout": SOCKET_SECONDS,
    }
    options.update(kwargs)
    if url is None:
        server = ensure_embedded(home)
        return redis.Redis(unix_socket_path=str(server.socket), **options)
    check_url(url)
    if not url.startswith("unix:"):
        options.setdefault("socket_keepalive", True)
        if _cluster_enabled(url, options):
            return _cluster_client(url, options)
    return redis.Redis.from_url(url, **options)


def _cluster_enabled(url: str, options: dict[str, Any]) -> bool:
    """Whether the server at ``url`` is a node of a Redis Cluster (``INFO cluster``). A
    server that cannot be reached raises, as the client would; one that does not answer
    INFO (an ACL user without it) is taken as a single server."""
    probe = redis.Redis.from_url(
        url, socket_connect_timeout=options["socket_connect_timeout"],
        socket_timeout=min(options["socket_timeout"], 10.0),
        retry=options["retry"], retry_on_error=options["retry_on_error"])
    try:
        return int(probe.info("cluster").get("cluster_enabled", 0)) == 1
    except redis.ResponseError:
        return False
    finally:
        probe.close()


CLUSTER_OPTIONS = ("socket_connect_timeout", "socket_timeout", "socket_keepalive",
                   "health_check_interval")
"""The connection options a cluster client passes on to its node connections."""


def _cluster_client(url: str, options: dict[str, Any]) -> redis.Redis:
    """A client of the whole cluster (``redis.cluster.RedisCluster``): each command goes to the
    primary serving its key's slot, and follows MOVED after a failover. One partition's keys
    share a slot (the ``{p}`` hash tag), so its scripts and transactions stay on one node;
    work that must stay on one connection (a script and the WAIT that counts its writes)
    takes the node's own client (``node_client``)."""
    from redis.cluster import RedisCluster

    kept = {k: v for k, v in options.items() if k in CLUSTER_OPTIONS}
    client = RedisCluster.from_url(url, retry=options["retry"], **kept)
    return client  # type: ignore[return-value]


def is_cluster(client: redis.Redis) -> bool:
    """Whether ``client`` talks to a Redis Cluster."""
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def node_client(client: redis.Redis, key: str) -> redis.Redis:
    """A client of the one server that holds ``key``: ``client`` itself for a single
    server; for a cluster, the client of the primary serving the key's slot now (after a
    failover, ``refresh`` first)."""
    if not is_cluster(client):
        return client
    node = client.get_node_from_key(key)  # type: ignore[attr-defined]
    return node.redis_connection  # type: ignore[no-any-return]


def refresh(client: redis.Redis) -> None:
    """Read a cluster's slots again (after MOVED or a lost node); nothing for one server."""
    if is_cluster(client):
        client.nodes_manager.initialize()  # type: ignore[attr-defined]


def reopened(client: redis.Redis) -> redis.Redis:
    """A new client to the same server or cluster, with connections of its own (a forked
    child must not share its parent's sockets)."""
    if is_cluster(client):
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(n.host, n.port) for n in client.get_primaries()]  # type: ignore
        kwargs = {k: v for k, v in client.nodes_manager.connection_kwargs.items()  # type: ignore
                  if k in CLUSTER_OPTIONS or k in ("username", "password")
                  or k.startswith("ssl")}  # the credentials and TLS too
        return RedisCluster(startup_nodes=nodes, **kwargs)  # type: ignore[return-value]
    pool = client.connection_pool
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **pool.connection_kwargs))
