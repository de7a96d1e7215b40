"""Leases: which one process may write something (a partition's output, the statistics).

A lease is a Redis key holding its holder's token, with an expiry. Every operation is one call
of the lease script (``lua/lease.lua``), which compares the token and acts in the same atomic
step: a holder can never extend, or delete, a lease that has passed to someone else (a GET
followed by a SET or DEL could). A holder that stops renewing loses the lease after ``ms``;
whoever writes under a lease must also check it in the same atomic step as the write (the
matcher's commit script does; the statistics consumer writes in a transaction that watches
the lease), so a holder that was paused past its expiry cannot write over its successor.
"""

from __future__ import annotations

import os
import socket
import uuid

import redis

from .scripts import script


def new_token() -> str:
    """A token naming this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """One lease key, held (or wanted) under ``token`` for ``ms`` milliseconds at a time."""

    def __init__(self, client: redis.Redis, key: str, ms: int, token: str | None = None) -> None:
        self.client = client
        self.key = key
        self.ms = ms
        self.token = token or new_token()
        self._script = script(client, "lease")

    def _op(self, op: str) -> bool:
        return bool(self._script(keys=[self.key], args=[op, self.token, self.ms]))

    def acquire(self) -> bool:
        """Take the lease if it is free (or already ours, then extend it). O(1)."""
        return self._op("acquire")

    def renew(self) -> bool:
        """Extend the lease if it is still ours; False if it has passed to someone else."""
        return self._op("renew")

    def release(self) -> None:
        """Give the lease up, only if it is still ours; never fails (a lost connection just
        lets it expire)."""
        try:
            self._op("release")
        except redis.RedisError:
            pass

    def holder(self) -> str:
        """Who holds the lease now ("" if nobody)."""
        v = self.client.get(self.key)
        if isinstance(v, bytes):
            return v.decode()
        return v or ""

    def take_from_the_dead(self) -> bool:
        """Take the lease if it is free, or if its holder was a process on this host that has
        ended (a token is ``host:pid:random``): then nobody need wait out a killed holder's
        time. True if it is ours now."""
        if self.acquire():
            return True
        holder = self.holder()
        host, pid = holder.split(":")[:2] if holder.count(":") >= 2 else ("", "")
        if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
            return False  # alive (or not ours to signal): wait for it
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.key)
                if self.holder() != holder:
                    return self.acquire()
                pipe.multi()
                pipe.delete(self.key)
                pipe.execute()
            except redis.WatchError:
                pass
        return self.acquire()

    def held(self) -> bool:
        """Whether we hold it right now (a read: it may pass on a moment later)."""
        return self.holder() == self.token
