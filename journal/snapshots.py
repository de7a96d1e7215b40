"""Snapshots of the matcher's state in Redis.

A snapshot at seq N is the exchange's canonical state bytes after applying command N
(``exchange.snapshot``) and their SHA-256, the state hash. The index stream
``exch:{p}:snapshots`` holds one small entry per snapshot (id ``<N>-0``: hash, size, blob key,
encoding); the bytes live in their own key, zlib-compressed, so listing snapshots never moves
state around. Loading checks the hash of the decompressed bytes: a damaged snapshot is skipped
in favour of an older one, never trusted.

A big state is written in 1 MB pieces (APPEND to a temporary key), then renamed into place
together with its index entry in one transaction: Redis is single-threaded, and one 40 MB
command would hold every client, the matcher included, for the time it takes.
"""

from __future__ import annotations

import time
import uuid
import zlib
from dataclasses import dataclass

import redis

from exchange.snapshot import readable, state_hash

from .connection import node_client
from .keys import Keys
from .streams import field, parse_id, raw


@dataclass(frozen=True)
class SnapshotInfo:
    """One stored snapshot: the seq it was taken after, its state hash and size."""

    seq: int
    hash: str
    size: int
    created_ms: int


class SnapshotStore:
    """Saves, finds and loads snapshots of one partition."""

    KEEP = 5
    """Snapshots kept; older ones are deleted when a new one is saved."""

    PIECE = 1 << 20
    """Bytes per write of a snapshot's blob."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self.client = raw(client)
        self.keys = keys or Keys()

    def save(self, seq: int, data: bytes) -> SnapshotInfo:
        """Store ``data`` as the snapshot after ``seq``. Snapshots are saved in seq order (one
        matcher holds the lease); saving again at a stored seq keeps the stored one, which is
        the same state: the matcher is deterministic. A stored one that cannot be read (damaged,
        or of an older version) is replaced."""
        k = self.keys
        newest = self.client.xrevrange(k.snapshots, count=1)
        eid = f"{seq}-0"
        if newest:
            newest_seq, n = parse_id(newest[0][0])
            if newest_seq == seq:
                stored = self.get(seq)
                if stored is not None:
                    return stored[0]
                # The one stored at this seq is damaged or of an older version: this one
                # replaces it, under the next id (a stream never takes an id twice).
                self.client.xdel(k.snapshots, newest[0][0])
                eid = f"{seq}-{n + 1}"
            elif newest_seq > seq:
                raise ValueError(f"snapshot at {seq} would go before the newest, at {newest_seq}")
        digest = state_hash(data)
        created = int(time.time() * 1000)
        blob = k.snapshot_blob(seq)
        packed = zlib.compress(data, 1)
        staging = f"{blob}:writing:{uuid.uuid4().hex}"  # two writers at one seq never mix
        self.client.delete(staging)
        for i in range(0, len(packed), self.PIECE):
            self.client.append(staging, packed[i:i + self.PIECE])
        # one transaction on the partition's own server (a cluster's pipelines refuse RENAME;
        # every key here shares the partition's slot)
        pipe = node_client(self.client, blob).pipeline(transaction=True)
        if packed:
            pipe.rename(staging, blob)
        else:
            pipe.set(blob, packed)
        pipe.xadd(
            k.snapshots,
            {"hash": digest, "size": len(data), "key": blob, "created": created,
             "encoding": "zlib"},
            id=eid,
        )
        pipe.execute()
        self._prune()
        return SnapshotInfo(seq, digest, len(data), created)

    def _prune(self) -> None:
        """Past the newest ``KEEP``, remove those the archive holds (``exch archive``); the
        others wait for it: a snapshot leaves Redis only once it is archived."""
        archived = int(self.client.hget(self.keys.archive, "snapshots") or 0)
        entries = self.client.xrevrange(self.keys.snapshots)
        for eid, _ in entries[self.KEEP:]:
            seq = parse_id(eid)[0]
            if seq <= archived:
                self.remove(seq)

    def remove(self, seq: int) -> None:
        """Delete the snapshot at ``seq`` (its bytes and its index entries)."""
        self.client.delete(self.keys.snapshot_blob(seq))
        for eid, _ in self.client.xrange(self.keys.snapshots, min=str(seq), max=str(seq)):
            self.client.xdel(self.keys.snapshots, eid)

    def list(self) -> list[SnapshotInfo]:
        """Every stored snapshot, newest first."""
        out = []
        for eid, fields in self.client.xrevrange(self.keys.snapshots):
            out.append(_info(eid, fields))
        return out

    def latest(self, at_most: int | None = None) -> tuple[SnapshotInfo, bytes] | None:
        """The newest intact snapshot of this version at or below ``at_most`` (any if None),
        with its bytes."""
        top = "+" if at_most is None else str(at_most)  # every entry of that seq
        for eid, fields in self.client.xrevrange(self.keys.snapshots, max=top):
            info = _info(eid, fields)
            data = self.client.get(self.keys.snapshot_blob(info.seq))
            if data is not None and field(fields, b"encoding") == b"zlib":
                try:
                    data = zlib.decompress(data)
                except zlib.error:
                    continue
            if data is not None and state_hash(data) == info.hash and readable(data):
                return info, data
        return None

    def get(self, seq: int) -> tuple[SnapshotInfo, bytes] | None:
        """The snapshot taken at exactly ``seq``, if stored and intact."""
        found = self.latest(seq)
        if found is None or found[0].seq != seq:
            return None
        return found


def _info(eid: bytes, fields: list[bytes]) -> SnapshotInfo:
    def text(name: bytes) -> str:
        v = field(fields, name)
        return v.decode() if v is not None else ""

    return SnapshotInfo(
        seq=parse_id(eid)[0],
        hash=text(b"hash"),
        size=int(text(b"size") or 0),
        created_ms=int(text(b"created") or 0),
    )
