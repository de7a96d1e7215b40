"""``exch store``: each partition's output into the store, through a consumer group.

One consumer per partition, each with its own connection and advisory lock; the group is
named after the database, so two stores never share a position, and the store's own
position (``exch.positions``) is the truth the group is aligned to.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from journal.consumer import ConsumerProgress, GroupConsumer
from journal.keys import Keys

from .server import connect
from .sink import StoreSink


def group_name(url: str) -> str:
    """The consumer group of a store: its database, named without a password."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    where = info.get("host") or "localhost"
    return f"store:{info.get('dbname', '')}@{where}:{info.get('port', 5432)}"


class Storer:
    """Keeps one partition's answers in the store."""

    def __init__(self, client: redis.Redis, url: str, keys: Keys | None = None, *,
                 flush_events: int = 50_000, flush_seconds: float = 1.0,
                 on_progress: Callable[[ConsumerProgress], None] | None = None) -> None:
        keys = keys or Keys()
        self.sink = StoreSink(connect(url, autocommit=True), keys.number)
        # the advisory lock (taken by the sink) means no other live consumer of the group:
        # whatever is pending was left by a dead one, and is claimed at once
        self.consumer = GroupConsumer(client, group_name(url), self.sink, keys, batch=500,
                                      flush_events=flush_events, flush_seconds=flush_seconds,
                                      claim_idle_ms=0, on_progress=on_progress)

    def run(self, *, follow: bool) -> ConsumerProgress:
        try:
            return self.consumer.run(follow=follow)
        finally:
            self.sink.close()

    def stop(self) -> None:
        self.consumer.stopping.set()
