"""Which journal layout a partition holds, and refusing one this version cannot read.

The sequencer records the newest layout it wrote in the partition's settings (``layout`` in
``exch:{p}:settings``; absent means layout 1, the released version's). Every reader checks it
before reading: a journal written by a newer version is refused with a clear message rather
than misread. docs/journal.md describes the layouts.
"""

from __future__ import annotations

import redis

from exchange.errors import JournalError

from .keys import Keys

LAYOUT = 2
"""The newest journal layout this version reads and writes (it reads layout 1 too)."""


def journal_layout(client: redis.Redis, keys: Keys) -> int:
    """The layout the partition's journal is in: the newest its sequencer wrote."""
    raw = client.hget(keys.settings, "layout")
    if raw is None:
        return 1
    try:
        return int(raw)
    except ValueError:
        raise JournalError(
            f"partition {keys.partition}: its journal layout is {raw!r}, not a number"
        ) from None


def check_layout(client: redis.Redis, keys: Keys) -> int:
    """The partition's layout, if this version can read it; else ``JournalError``."""
    layout = journal_layout(client, keys)
    if layout > LAYOUT:
        raise JournalError(
            f"partition {keys.partition}: the journal is in layout {layout}, newer than this "
            f"version of exch reads (up to {LAYOUT}): upgrade exch to read it"
        )
    return layout
