"""The journal as one: the archive below where ``exch compact`` trimmed Redis, Redis above.

Every reader of the past (recovery, replay and ``--verify``, the follower, consumers that
fall behind, ``exch tail --from``) reads ranges through ``History.xrange``, which answers as
XRANGE would on a Redis that had never been trimmed. ``exch compact`` records the id below
which it trims (``trimmed`` in ``exch:{p}:archive``) before it trims, and the record and
the range are read in one transaction: an entry is either still in Redis or below the
recorded id, hence in the archive. A segment that is missing or damaged is an
``ArchiveError`` naming it, never a silent gap.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis

from exchange.errors import ArchiveError

from .archive import Archive, archive_of
from .keys import Keys
from .streams import Row, parse_id, raw
from .wire import MAX_ID

Id = tuple[int, int]
TOP: Id = (MAX_ID, MAX_ID)


def lower_bound(bound: str | bytes) -> Id:
    """The first id an XRANGE ``min`` admits ("-", "12-0", "(12-0", "12")."""
    b = bound.decode() if isinstance(bound, bytes) else bound
    if b == "-":
        return (0, 0)
    if b.startswith("("):
        ms, sub = parse_id(b[1:])
        return (ms, sub + 1) if sub < MAX_ID else (ms + 1, 0)
    return parse_id(b)


def upper_bound(bound: str | bytes) -> Id:
    """The last id an XRANGE ``max`` admits ("+", "12-0", "(12-0", "12")."""
    b = bound.decode() if isinstance(bound, bytes) else bound
    if b == "+":
        return TOP
    if b.startswith("("):
        ms, sub = parse_id(b[1:])
        if sub:
            return (ms, sub - 1)
        return (ms - 1, MAX_ID) if ms else (0, 0)
    if "-" not in b:
        return (int(b), MAX_ID)
    return parse_id(b)


def before(at: Id) -> Id:
    """The id just before ``at``."""
    ms, sub = at
    return (ms, sub - 1) if sub else (ms - 1, MAX_ID)


class History:
    """Reads one partition's streams ("in", "out") as if Redis held them whole."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None,
                 archive: Archive | None = None) -> None:
        self.client = raw(client)
        self.keys = keys or Keys()
        self._archive = archive

    def archive(self) -> Archive:
        """The partition's archive (where Redis's record says, unless given)."""
        if self._archive is None:
            found = archive_of(self.client, self.keys)
            if found is None:
                raise ArchiveError(
                    f"partition {self.keys.partition} was trimmed, but Redis names no archive "
                    "folder")
            got = self.client.hget(self.keys.archive, "through")
            recorded = int(got) if got and got.isdigit() else 0
            holds = found.through()
            if holds < recorded:  # a moved, emptied or foreign folder: never a silent gap
                raise ArchiveError(
                    f"partition {self.keys.partition} was archived through seq {recorded:,} "
                    f"to {found.folder}, but that folder holds only through seq {holds:,}")
            self._archive = found
        return self._archive

    def trimmed(self) -> Id | None:
        """The id below which Redis no longer holds the streams (None: never trimmed)."""
        got = self.client.hget(self.keys.archive, "trimmed")
        return parse_id(got) if got else None

    def _key(self, stream: str) -> str:
        return self.keys.input if stream == "in" else self.keys.output

    def xrange(self, stream: str, min: str | bytes = "-", max: str | bytes = "+",
               count: int | None = None) -> list[Row]:
        """XRANGE over the whole history of ``stream`` ("in" or "out")."""
        key = self._key(stream)
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(self.keys.archive, "trimmed")
        pipe.xrange(key, min=min, max=max, count=count)
        got, rows = pipe.execute()
        if not got:
            return rows
        trimmed = parse_id(got)
        low = lower_bound(min)
        if low >= trimmed:
            return rows
        high = upper_bound(max)
        old = self.archive().rows(stream, low, _min(high, before(trimmed)), count)
        if count is not None and len(old) >= count:
            return old[:count]
        # Redis's own rows below the trimmed id (if XTRIM has not run yet) are the archive's
        newer = [r for r in rows if parse_id(r[0]) >= trimmed]
        if not newer and count is not None and len(rows) == count and high >= trimmed:
            # Redis's rows were all below the bound (not yet removed): read on from it, again
            # through the record (should it have risen meanwhile)
            newer = self.xrange(stream, min=f"{trimmed[0]}-{trimmed[1]}", max=max,
                                count=count - len(old))
        return old + newer[:None if count is None else count - len(old)]

    def walk(self, stream: str, count: int = 5000) -> Iterator[Row]:
        """Every entry of ``stream`` ("in" or "out") from the first, read ``count`` at a
        time through the archive and Redis."""
        low: str | bytes = "-"
        while rows := self.xrange(stream, min=low, count=count):
            yield from rows
            low = b"(" + rows[-1][0]

    def start_before(self, seq: int) -> bytes:
        """An id at or before the input entry before the one holding ``seq``: reading the
        output after it meets every piece of the answer holding ``seq`` (b"0-0" from the
        start)."""
        if seq <= 1:
            return b"0-0"
        found = self.client.xrevrange(self.keys.input, max=f"({seq}-0", count=1)
        trimmed = self.trimmed()
        if found and (trimmed is None or parse_id(found[0][0]) >= trimmed):
            return found[0][0]
        if trimmed is None:
            return b"0-0"
        for s in self.archive().segments("in"):
            if s.first <= seq <= s.last:
                return f"{s.first - 1}-0".encode()
        return found[0][0] if found else b"0-0"

    def fill(self, stream: str, after: bytes, upto: bytes, count: int | None = None
             ) -> list[Row]:
        """The entries strictly between ``after`` and ``upto`` that Redis no longer holds
        (a reader that was handed ``upto`` next, having last seen ``after``, skipped them
        if they were trimmed): read from the archive, at most ``count``. Empty when nothing
        was skipped."""
        trimmed = self.trimmed()
        low = lower_bound(b"(" + after)
        if trimmed is None or low >= trimmed:
            return []
        high = _min(before(parse_id(upto)), before(trimmed))
        if high < low:
            return []
        return self.archive().rows(stream, low, high, count)


def _min(a: Id, b: Id) -> Id:
    return a if a <= b else b
