"""``exch export parquet``: the Parquet sink fed by a consumer group on the output stream.

Each export folder has its own consumer group, named after the folder's absolute path, so
two folders never share a position; the folder's own cursor (``_state.json``) is the truth
the group is aligned to. Files are flushed every 200,000 events or 5 seconds, whichever comes
first: large row groups when catching up, bounded delay when following.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis

from journal.consumer import ConsumerProgress, GroupConsumer
from journal.keys import Keys

from .parquet import ParquetSink


def group_name(out_dir: str | Path) -> str:
    """The consumer group of an export folder."""
    return "parquet:" + str(Path(out_dir).resolve())


class Exporter:
    """Exports the output stream of a partition to a Parquet folder (its
    ``partition=P`` folders and cursor: each partition's exporter is independent)."""

    def __init__(
        self,
        client: redis.Redis,
        out_dir: str | Path,
        keys: Keys | None = None,
        *,
        flush_events: int = 200_000,
        flush_seconds: float = 5.0,
        on_progress: Callable[[ConsumerProgress], None] | None = None,
    ) -> None:
        keys = keys or Keys()
        self.sink = ParquetSink(out_dir, partition=keys.number)
        # The folder's lock (taken by the sink) means no other live consumer of this group:
        # whatever is pending was left by a dead one and is claimed at once.
        self.consumer = GroupConsumer(
            client, group_name(out_dir), self.sink, keys,
            flush_events=flush_events, flush_seconds=flush_seconds, claim_idle_ms=0,
            on_progress=on_progress,
        )

    def run(self, *, follow: bool) -> ConsumerProgress:
        """Export until caught up, or (``follow``) until ``stop()``."""
        try:
            return self.consumer.run(follow=follow)
        finally:
            self.sink.close()

    def stop(self) -> None:
        self.consumer.stopping.set()
