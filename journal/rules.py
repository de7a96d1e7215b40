"""The rules version a partition's new entries are written under (``exchange.rules``).

The sequencer stamps each entry with the partition's setting (``rules`` in
``exch:{p}:settings``); a brand-new journal starts under the newest version its sequencer
knows, and a journal from before rules versions under version 1, until an operator moves it
on. The setting only goes up, and only to a version this release knows.
"""

from __future__ import annotations

import redis

from exchange.errors import InputError
from exchange.rules import FIRST, LATEST

from .keys import Keys


def rules_in_force(client: redis.Redis, keys: Keys) -> int:
    """The version the next entry will be written under."""
    raw = client.hget(keys.settings, "rules")
    if raw is not None:
        return int(raw)
    return FIRST if client.exists(keys.input) else LATEST


def upgrade(client: redis.Redis, keys: Keys, to: int | None = None) -> int:
    """Write new entries under version ``to`` (default: the newest); returns it. Refuses a
    version this release does not know or one below the version in force."""
    version = LATEST if to is None else to
    if not FIRST <= version <= LATEST:
        raise InputError(f"rules version {version} is not one this release knows "
                         f"({FIRST} to {LATEST})")
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(keys.settings, keys.input)
                current = rules_in_force(pipe, keys)
                if version < current:
                    raise InputError(f"rules never go back: the version in force is {current}")
                pipe.multi()
                pipe.hset(keys.settings, "rules", version)
                pipe.execute()
                return version
            except redis.WatchError:
                continue
