"""Snapshots of the matcher's state in Redis.

A snapshot at seq N is the exchange's canonical state bytes after applying command N
(``exchange.snapshot``) and their SHA-256, the state hash. The index stream
``exch:{p}:snapshots`` holds one small entry per snapshot (id ``<N>-0``: hash, size, blob key,
encoding, signature, key id); the bytes live in their own key, zlib-compressed, so listing
snapshots never moves state around. Loading checks the hash of the decompressed bytes: a
damaged snapshot is skipped in favour of an older one, never trusted.

Signed (``journal.signing``): anyone who can write Redis can recompute a hash, so a snapshot
is trusted only if its index entry carries an Ed25519 signature of (partition, seq, hash,
size) by the trusted key. One that is unsigned (every snapshot written before signing came
in), signed by another key, or whose signature does not verify is skipped exactly like a
damaged one, with a warning naming its seq and why (``untrusted`` keeps them): recovery falls
back to an older trusted snapshot, or to the journal from the start. The signature is checked
first, from the index entry alone, so an untrusted snapshot's bytes are never even read.

A big state is written in 1 MB pieces (APPEND to a temporary key), then renamed into place
together with its index entry in one transaction: Redis is single-threaded, and one 40 MB
command would hold every client, the matcher included, for the time it takes.
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from dataclasses import dataclass

import redis

from exchange.errors import UntrustedSnapshot
from exchange.snapshot import readable, state_hash

from .connection import node_client
from .keys import Keys
from .signing import Signer, Verifier, load_signer, load_verifier
from .streams import field, parse_id, raw

log = logging.getLogger("exch.snapshots")


@dataclass(frozen=True)
class SnapshotInfo:
    """One stored snapshot: the seq it was taken after, its state hash and size, and its
    signature (hex) and the id of the key that made it ("" and "" if unsigned)."""

    seq: int
    hash: str
    size: int
    created_ms: int
    signature: str = ""
    key_id: str = ""


class SnapshotStore:
    """Saves, finds and loads snapshots of one partition."""

    KEEP = 5
    """Snapshots kept; older ones are deleted when a new one is saved."""

    PIECE = 1 << 20
    """Bytes per write of a snapshot's blob."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None, *,
                 signer: Signer | None = None, verifier: Verifier | None = None) -> None:
        """``signer``: the key ``save`` signs with (a writer's; default: ``load_signer()``,
        the default key file, made on first use). ``verifier``: the key loading trusts
        (default: the signer's own public key if a signer is given, else
        ``load_verifier()``, the default public key file, which must exist). Both are only
        looked for when first needed: listing needs neither."""
        self.client = raw(client)
        self.keys = keys or Keys()
        self._signer = signer
        self._verifier = verifier
        self.untrusted: dict[int, str] = {}
        """Snapshots passed over because of their signature, by seq: why (for reports)."""

    @property
    def signer(self) -> Signer:
        """The key ``save`` signs with (see ``__init__``)."""
        if self._signer is None:
            self._signer = load_signer()
        return self._signer

    @property
    def verifier(self) -> Verifier:
        """The key a snapshot must be signed by to be loaded (see ``__init__``)."""
        if self._verifier is None:
            self._verifier = (self._signer.verifier if self._signer is not None
                              else load_verifier())
        return self._verifier

    def distrust(self, info: SnapshotInfo) -> str | None:
        """Why the snapshot ``info`` is not trusted (its signature: missing, malformed, by
        another key, or not verifying), or None if it is. Reads nothing from Redis."""
        return self.verifier.check(self.keys.partition, info.seq, info.hash, info.size,
                                   info.signature, info.key_id)

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
        signed = self.signer.sign_snapshot(self.keys.partition, seq, digest, len(data))
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
             "encoding": "zlib", "sig": signed.signature, "key_id": signed.key_id},
            id=eid,
        )
        pipe.execute()
        self._prune()
        return SnapshotInfo(seq, digest, len(data), created, signed.signature, signed.key_id)

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
        """The newest intact, trusted snapshot of this version at or below ``at_most`` (any
        if None), with its bytes. Those passed over for their signature are warned about
        (once per store) and noted in ``untrusted``."""
        top = "+" if at_most is None else str(at_most)  # every entry of that seq
        return self._first(self.client.xrevrange(self.keys.snapshots, max=top))

    def get(self, seq: int) -> tuple[SnapshotInfo, bytes] | None:
        """The snapshot taken at exactly ``seq``, if stored, intact and trusted."""
        return self._first(self.client.xrevrange(self.keys.snapshots, max=str(seq),
                                                 min=str(seq)))

    def _first(self, entries: list) -> tuple[SnapshotInfo, bytes] | None:
        """The first of these index entries whose snapshot is trusted and reads back whole
        (signature first: an untrusted snapshot's bytes are never read)."""
        for eid, fields in entries:
            info = _info(eid, fields)
            why = self.distrust(info)
            if why is not None:
                if self.untrusted.get(info.seq) != why:
                    log.warning("snapshot at seq %d not trusted, passed over: %s", info.seq,
                                why)
                self.untrusted[info.seq] = why
                continue
            data = self.client.get(self.keys.snapshot_blob(info.seq))
            if data is not None and field(fields, b"encoding") == b"zlib":
                try:
                    data = zlib.decompress(data)
                except zlib.error:
                    continue
            if data is not None and state_hash(data) == info.hash and readable(data):
                return info, data
        return None

    def get_trusted(self, seq: int) -> tuple[SnapshotInfo, bytes] | None:
        """As ``get``; but a snapshot stored at ``seq`` that is passed over only for its
        signature raises ``UntrustedSnapshot`` (exit 1) saying why, rather than None: for
        a snapshot somebody asked for by its seq."""
        found = self.get(seq)
        if found is None and seq in self.untrusted:
            raise UntrustedSnapshot(f"the snapshot at seq {seq} is not trusted: "
                                    f"{self.untrusted[seq]}")
        return found


def _info(eid: bytes, fields: list[bytes]) -> SnapshotInfo:
    def text(name: bytes) -> str:
        v = field(fields, name)
        return v.decode(errors="replace") if v is not None else ""

    def number(name: bytes) -> int:
        v = text(name)
        return int(v) if v.isascii() and v.isdigit() else 0

    return SnapshotInfo(
        seq=parse_id(eid)[0],
        hash=text(b"hash"),
        size=number(b"size"),
        created_ms=number(b"created"),
        signature=text(b"sig"),
        key_id=text(b"key_id"),
    )
