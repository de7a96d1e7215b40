"""``exch status``: where the journal stands, in one read-only look."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from .keys import Keys
from .layout import journal_layout
from .snapshots import SnapshotStore
from .streams import last_id, parse_id


@dataclass
class GroupStatus:
    """A consumer group on the output stream."""

    name: str
    consumers: int
    pending: int
    last_delivered: str
    lag: int


@dataclass
class Status:
    """Last input and output seqs, the matcher's lag, snapshots, consumer groups."""

    partition: str
    layout: int
    """The journal layout (docs/journal.md)."""
    last_input_seq: int
    last_output_seq: int
    lag: int
    input_entries: int
    output_entries: int
    matcher: str
    follower: str = ""
    """The follower taking the snapshots ("" if none)."""
    followed_seq: int = 0
    """The last seq whose answer that follower verified."""
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    groups: list[GroupStatus] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stream_length(client: redis.Redis, key: str) -> int:
    """Entries in stream ``key`` (0 if there is none)."""
    try:
        return int(client.xlen(key))
    except redis.ResponseError:
        return 0


def read_groups(client: redis.Redis, keys: Keys, last_out: int | None = None) -> list[GroupStatus]:
    """The consumer groups of the output stream."""
    if last_out is None:
        last_out = parse_id(last_id(client, keys.output))[0]
    groups = []
    try:
        infos = client.xinfo_groups(keys.output)
    except redis.ResponseError:
        infos = []
    for g in infos:
        delivered = g["last-delivered-id"]
        delivered = delivered.decode() if isinstance(delivered, bytes) else str(delivered)
        name = g["name"].decode() if isinstance(g["name"], bytes) else str(g["name"])
        lag = g.get("lag")
        if parse_id(delivered)[0] >= last_out:
            lag = 0  # Redis counts entries read, and one read from the archive is not counted
        elif lag is None:  # Redis < 7 does not compute it (nor 7 after a trim); dense by seq
            lag = max(last_out - parse_id(delivered)[0], 0)
        groups.append(GroupStatus(name, int(g["consumers"]), int(g["pending"]), delivered,
                                  int(lag)))
    return groups


def status(client: redis.Redis, keys: Keys | None = None) -> Status:
    """Read the partition's status."""
    keys = keys or Keys()
    last_in = parse_id(last_id(client, keys.input))[0]
    last_out_id = last_id(client, keys.output)
    last_out = parse_id(last_out_id)[0]
    holder = client.get(keys.lease)
    follower = client.get(keys.follower)
    groups = read_groups(client, keys, last_out)
    snaps = [
        {"seq": s.seq, "hash": s.hash, "bytes": s.size, "created_ms": s.created_ms,
         "key_id": s.key_id}  # "": unsigned, never trusted
        for s in SnapshotStore(client, keys).list()
    ]
    return Status(
        partition=keys.partition,
        layout=journal_layout(client, keys),
        last_input_seq=last_in,
        last_output_seq=last_out,
        lag=max(last_in - last_out, 0),
        input_entries=stream_length(client, keys.input),
        output_entries=stream_length(client, keys.output),
        matcher=holder.decode() if holder else "",
        follower=follower.decode() if follower else "",
        followed_seq=int(client.get(keys.followed) or 0) if follower else 0,
        snapshots=snaps,
        groups=groups,
    )
