"""What Redis keeps: a window of the journal, trimmed below what is archived.

``exch compact`` removes from Redis the input and output entries and the snapshots that the
archive holds and recovery no longer needs; nothing else. Two limits, the lower wins:

- the archive: entries up to the archived seq (``exch:{p}:archive`` ``through``, written by
  ``exch archive`` once both segment files are in place);
- recovery: the newest snapshot in Redis that reads back whole and hashes right, and the
  journal after it (a damaged newest snapshot is passed over, never relied on).

Consumer groups are not a limit: one dead group would pin memory forever. A consumer behind
the window reads what it missed from the archive (``journal.history``). The id below which
the streams are trimmed is recorded before they are trimmed, and only ever rises, so a
reader always knows where to look.

Redis must never evict a key on its own: ``eviction_problem`` says when it would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from exchange.errors import InputError

from .archive import record
from .keys import Keys
from .snapshots import SnapshotStore
from .status import read_groups, stream_length
from .streams import field as field_of
from .streams import parse_id, raw


@dataclass
class CompactPlan:
    """What ``exch compact`` removes (or would), and what stops it going further."""

    trim_below: str
    """Entries with ids below this are removed from both streams ("0-0": none)."""
    limited_by: str
    input_entries: int = 0
    output_entries: int = 0
    commands: int = 0
    """Commands whose input entries are removed."""
    bytes: int = 0
    """Bytes of Redis memory the streams free (measured after; estimated by --dry-run)."""
    input_removed: int = 0
    output_removed: int = 0
    snapshots_removed: list[int] = field(default_factory=list)
    snapshots_kept_unarchived: list[int] = field(default_factory=list)
    """Older snapshots not yet archived: kept until ``exch archive`` copies them."""


def _memory(client: redis.Redis, key: str) -> int:
    try:
        return int(client.memory_usage(key, samples=0) or 0)
    except redis.ResponseError:
        return 0


def plan_compact(client: redis.Redis, keys: Keys | None = None) -> CompactPlan:
    """The lowest id still needed in Redis (see the module docstring), and the snapshots that
    may go."""
    from .replay import answered

    keys = keys or Keys()
    client = raw(client)
    rec = record(client, keys)
    store = SnapshotStore(client, keys)
    _, done = answered(client, keys)
    intact = store.latest(done) if done else None
    snapshots = store.list()
    plan = CompactPlan("0-0", "", stream_length(client, keys.input),
                       stream_length(client, keys.output))
    archived_snapshots = int(rec.get("snapshots") or 0)
    if intact is not None:
        newest = intact[0].seq
        for s in snapshots:
            if s.seq >= newest:
                continue
            if s.seq <= archived_snapshots or store.get(s.seq) is None:
                plan.snapshots_removed.append(s.seq)  # archived, or damaged: of no use
            else:
                plan.snapshots_kept_unarchived.append(s.seq)
    if not rec.get("dir"):
        plan.limited_by = "no archive yet: run `exch archive` first; nothing leaves Redis " \
                          "before it is archived"
        return plan
    if intact is None:
        plan.limited_by = "no snapshot in Redis reads back whole: recovery needs the journal " \
                          "from the start (`exch snapshot` takes one)"
        return plan
    through = int(rec.get("through") or 0)
    limits = [((through, 1), f"the archive (through seq {through:,})"),
              ((intact[0].seq, 0), f"recovery (the newest intact snapshot, seq "
                                   f"{intact[0].seq:,})")]
    bound, why = min(limits)
    already = parse_id(rec["trimmed"]) if rec.get("trimmed") else (0, 0)
    plan.limited_by = why
    if bound <= already or bound <= (1, 0):
        plan.trim_below = f"{already[0]}-{already[1]}"
        return plan
    plan.trim_below = f"{bound[0]}-{bound[1]}"
    first = client.xrange(keys.input, count=1)
    gone = client.xrevrange(keys.input, max=f"({bound[0]}-{bound[1]}", count=1)
    if first and gone:
        n = field_of(first[0][1], b"n")
        first_seq = parse_id(first[0][0])[0] - (int(n) if n else 1) + 1
        last = parse_id(client.xrevrange(keys.input, count=1)[0][0])[0]
        plan.commands = max(parse_id(gone[0][0])[0] - first_seq + 1, 0)
        share = plan.commands / max(last - first_seq + 1, 1)
        plan.bytes = int(share * (_memory(client, keys.input) + _memory(client, keys.output)))
    return plan


def compact(client: redis.Redis, keys: Keys | None = None, *, dry_run: bool = False) -> CompactPlan:
    """Trim both streams and prune snapshots as ``plan_compact`` says. The trimmed id is
    recorded first (and only ever rises), so readers find what is gone in the archive."""
    keys = keys or Keys()
    client = raw(client)
    plan = plan_compact(client, keys)
    if dry_run:
        return plan
    store = SnapshotStore(client, keys)
    for seq in plan.snapshots_removed:
        store.remove(seq)
    if plan.trim_below == "0-0":
        return plan
    before = _memory(client, keys.input) + _memory(client, keys.output)
    bound = _raise_trimmed(client, keys, plan.trim_below)
    plan.input_removed = int(client.xtrim(keys.input, minid=bound, approximate=False))
    plan.output_removed = int(client.xtrim(keys.output, minid=bound, approximate=False))
    plan.bytes = max(before - _memory(client, keys.input) - _memory(client, keys.output), 0)
    return plan


def _raise_trimmed(client: redis.Redis, keys: Keys, bound: str) -> str:
    """Record ``bound`` as the trimmed id unless a higher one is recorded; the recorded one."""
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(keys.archive)
                got = pipe.hget(keys.archive, "trimmed")
                current = parse_id(got) if got else (0, 0)
                if current >= parse_id(bound):
                    pipe.unwatch()
                    return f"{current[0]}-{current[1]}"
                pipe.multi()
                pipe.hset(keys.archive, "trimmed", bound)
                pipe.execute()
                return bound
            except redis.WatchError:
                continue


# ------------------------------------------------------------------------ groups


@dataclass
class GroupView:
    """A consumer group on the output stream, as ``exch groups`` shows it."""

    name: str
    consumers: int
    pending: int
    last_delivered: str
    lag: int
    from_archive: bool
    """Behind the window Redis holds: its next entries come from the archive."""


def groups(client: redis.Redis, keys: Keys | None = None) -> list[GroupView]:
    """The output's consumer groups with their lag, and whether they read from the
    archive. None holds Redis's memory: compaction does not wait for groups."""
    keys = keys or Keys()
    got = client.hget(keys.archive, "trimmed")
    trimmed = parse_id(got) if got else (0, 0)
    return [GroupView(g.name, g.consumers, g.pending, g.last_delivered, g.lag,
                      g.lag > 0 and parse_id(g.last_delivered) < trimmed)
            for g in read_groups(client, keys)]


def remove_group(client: redis.Redis, keys: Keys, name: str) -> None:
    """Remove consumer group ``name`` (say, of an export folder that was deleted)."""
    if name not in {g.name for g in read_groups(client, keys)}:
        raise InputError(f"no consumer group {name!r} on partition {keys.partition} "
                         "(see `exch groups`)")
    client.xgroup_destroy(keys.output, name)


# ------------------------------------------------------------------------ eviction


def eviction_problem(client: redis.Redis) -> tuple[bool, str] | None:
    """Whether Redis may evict keys on its own (the journal would silently lose entries):
    (fatal, message), or None when it will not. Fatal when a memory limit is set with a
    policy that evicts; a warning when the policy evicts but no limit is set yet, or when
    Redis does not let us look."""
    try:
        config = client.config_get("maxmemory*")
    except redis.ResponseError as e:  # CONFIG not permitted (an ACL, a managed service)
        return False, f"cannot check Redis's eviction policy ({e}); make sure it is " \
                      "maxmemory-policy noeviction"
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                                                           else v) for k, v in config.items()}
    policy = text.get("maxmemory-policy", "noeviction")
    if policy == "noeviction":
        return None
    limit = int(text.get("maxmemory", "0") or 0)
    what = (f"Redis evicts keys when full (maxmemory-policy {policy}): the journal would lose "
            "entries without a word. Set `maxmemory-policy noeviction` (CONFIG SET, or "
            "redis.conf)")
    if limit:
        return True, f"{what}; maxmemory is {limit:,} bytes"
    return False, f"{what}, before a maxmemory is ever set"
