"""Putting commands into the journal: the client side of the sequencer script.

``Sequencer.submit`` sends commands (core tuples) in calls of up to ``BATCH`` commands and
``BATCH_BYTES`` bytes; each call is one atomic script call that numbers its commands, stamps
Redis time and appends them to the input stream as one entry (layout 2, docs/journal.md). A
command sent alone is an entry of one: nothing waits for a call to fill.

Every call carries a random id: if the connection drops and redis-py retries a call that
Redis had already applied, the script returns what it gave the first time instead of
sequencing the commands again. A command whose (account, ref) was sequenced before is
skipped (seq 0).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]
import redis
from redis import exceptions

from exchange.commands import to_wire
from exchange.errors import JournalError
from exchange.limits import PARTITION_STRIDE
from exchange.rules import LATEST as LATEST_RULES
from exchange.rules import PARTITION_IDS

from .connection import is_cluster, node_client, refresh
from .keys import Keys
from .scripts import script


@dataclass
class Submitted:
    """What a submission got: how many were sequenced, their seq range, duplicates skipped."""

    sequenced: int = 0
    duplicates: int = 0
    first_seq: int | None = None
    last_seq: int | None = None

    def add(self, seqs: list[int]) -> None:
        """Count one call's answer from the sequencer (a seq, or 0 for a duplicate)."""
        for s in seqs:
            if s:
                self.sequenced += 1
                if self.first_seq is None:
                    self.first_seq = s
                self.last_seq = s
            else:
                self.duplicates += 1


def dedup_key(wire: dict) -> str:
    """The (account, ref) key of a ``place`` with a client ref, else "", from the command's
    stream form (``exchange.commands.to_wire``). The account's length comes first, so no two
    pairs share a key (with a plain separator, ``("a\\0x", "y")`` and ``("a", "x\\0y")``
    would)."""
    ref = wire.get("ref")
    if ref is None or wire["type"] != "place":
        return ""
    account = wire["account"]
    return f"{len(account)}:{account}{ref}"


def seqs_of(reply: list) -> list[int]:
    """The sequencer script's answer as one seq per command (0 for a duplicate)."""
    last_text, dups = (x.decode() if isinstance(x, bytes) else str(x) for x in reply[:2])
    if not last_text:
        return [0] * len(dups)
    seq = int(last_text) - dups.count("0")
    out = []
    for flag in dups:
        if flag == "0":
            seq += 1
            out.append(seq)
        else:
            out.append(0)
    return out


def answers_of(reply: list) -> list[int]:
    """The sequencer script's answer as one number per command: its seq if it was sequenced,
    minus the seq its (account, ref) was first sequenced at if it is a duplicate, 0 for a
    duplicate whose first seq is not known (rules 1 and 2 keep none)."""
    seqs = seqs_of(reply)
    text = reply[2] if len(reply) > 2 else b""
    text = text.decode() if isinstance(text, bytes) else str(text)
    originals = iter(int(x) for x in text.split(",")) if text else iter(())
    return [s if s else -next(originals, 0) for s in seqs]


class Refused(JournalError, redis.ResponseError):
    """The sequencer script refused a call and wrote nothing (a journal of a newer layout,
    no seqs left, a call too big): an error of the tree (``exch`` prints one line and exits
    1) that is still the ``redis.ResponseError`` the script raised."""


_MOVED = (exceptions.ClusterError, exceptions.AskError, exceptions.TryAgainError,
          exceptions.ReadOnlyError)


RECORD_SECONDS = 60
"""How long the sequencer keeps a call's record (its answer, for a retried call) under the
ref window (``journal/lua/sequence.lua``); retries must end well before."""


def _moved(e: redis.ResponseError) -> bool:
    """Whether a cluster node answered that it does not (or not yet) serve the slot: a
    failover under way or just done."""
    return isinstance(e, _MOVED) or str(e).split(" ", 1)[0] in (
        "MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "MASTERDOWN")


def _refresh_quietly(client: redis.Redis) -> None:
    try:
        refresh(client)
    except redis.RedisError:
        pass  # no node answers yet: the next attempt says


def _refused(e: redis.ResponseError) -> redis.ResponseError:
    """The script's own refusals (``exch: ...``) as ``Refused``; other errors as they are."""
    text = str(e)
    at = text.find("exch: ")
    return Refused(text[at + 6:]) if at >= 0 else e


class NotReplicated(JournalError):
    """A call was sequenced on the primary, but no replica acknowledged it in time: its
    outcome is unknown (a failover now could lose it). Retrying the same call never
    sequences it twice: the primary returns what it gave the first time."""

    exit_code = 1

    def __init__(self, message: str, seqs: list[int]) -> None:
        super().__init__(message)
        self.seqs = seqs
        """The seqs the primary gave (0 for a duplicate): applied there, not yet safe."""


def connected_replicas(client: redis.Redis) -> int:
    """How many replicas the server has connected now (0 for a server without any)."""
    try:
        return int(client.info("replication").get("connected_slaves", 0))
    except redis.ResponseError:  # a server (or ACL user) that does not answer INFO
        return 0


class Sequencer:
    """Submits commands to one partition's input journal.

    ``replicas``: acknowledge a call only once that many replicas have it (``WAIT`` on the
    same connection, right after the script, so that it counts the script's writes); None
    (the default) means one if the server has a replica connected when the first call is
    made, else none: on by default wherever there is a replica to lose the primary to. A
    replica that does not answer within ``replica_timeout_ms`` makes the call retried, as
    the same call (its record answers it, nothing is sequenced twice), until ``patience``
    seconds have passed: then ``NotReplicated``. On a Redis Cluster, a call whose primary
    is lost is retried, as the same call, on the replica promoted in its place, for up to
    ``failover_seconds`` (under the call record's life, ``RECORD_SECONDS``). With ``replicas``
    None, whether to wait is asked again after a
    failover: a promoted replica that stands alone has no replica to wait for.
    """

    BATCH = 500
    """Most commands per script call: enough to make Redis's work per command small (one
    stream entry per call, not per command), few enough not to hold Redis for long."""

    ASK_REPLICAS_EVERY = 5.0
    """Seconds between asks, while counting replicas automatically and none is there."""

    BATCH_BYTES = 1 << 20
    """Most bytes of commands per script call (stream form)."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None, *,
                 replicas: int | None = None, replica_timeout_ms: int = 1000,
                 patience: float = 10.0, failover_seconds: float = 45.0) -> None:
        if failover_seconds >= RECORD_SECONDS:
            raise ValueError(f"failover_seconds must be under {RECORD_SECONDS} s: a call "
                             "retried after its record expired could be sequenced twice")
        self.client = client
        self.keys = keys or Keys()
        self.replicas = replicas
        self._auto = replicas is None
        self._ask_again = 0.0
        self.replica_timeout_ms = replica_timeout_ms
        self.patience = patience
        self.failover_seconds = failover_seconds
        self._script = script(client, "sequence")
        self._pack = msgpack.Packer(autoreset=True).pack
        self._id_base: int | None = None

    @property
    def id_base(self) -> int:
        """What an order id adds to the seq of the command that placed it in this partition
        (``exchange.limits.PARTITION_STRIDE`` times the partition from rules version 5, else
        0): ``id_base + seq`` is the order's id."""
        if self._id_base is None:
            from .rules import rules_in_force

            number = self.keys.number
            self._id_base = number * PARTITION_STRIDE if number and rules_in_force(
                self.client, self.keys) >= PARTITION_IDS else 0
        return self._id_base

    def _args(self, payloads: list[tuple[str, bytes]]) -> tuple[list[str], list[object]]:
        k = self.keys
        call = uuid.uuid4().hex
        args: list[object] = [len(payloads), LATEST_RULES]
        for key, payload in payloads:
            args.append(key)
            args.append(payload)
        return [k.input, k.refs, k.clock, k.batch(call), k.settings, k.recent_refs,
                k.ref_seqs], args

    def _payload(self, cmd: tuple) -> tuple[str, bytes]:
        wire = to_wire(cmd)
        return dedup_key(wire), self._pack(wire)

    def submit_batch(self, cmds: list[tuple]) -> list[int]:
        """Sequence up to ``BATCH`` commands as one entry, in one atomic call; their seqs
        (0 = duplicate)."""
        return [s if s > 0 else 0 for s in self.submit_answers(cmds)]

    def submit_answers(self, cmds: list[tuple]) -> list[int]:
        """As ``submit_batch``, but a duplicate is minus the seq its (account, ref) was first
        sequenced at (0 if not known): see ``answers_of``."""
        if not cmds:
            return []
        if len(cmds) > self.BATCH:
            raise ValueError(f"at most {self.BATCH} commands in one call")
        call = self._args([self._payload(c) for c in cmds])
        if not self._replicas() and not is_cluster(self.client):
            try:
                return answers_of(self._script(keys=call[0], args=call[1]))
            except redis.ResponseError as e:
                raise _refused(e) from None
        return answers_of(next(iter(self._flush([call], raw_replies=True))))

    def submit(self, cmds: Iterable[tuple], *, pipeline_depth: int = 4) -> Submitted:
        """Sequence every command, in order, in calls of up to ``BATCH`` commands (and
        ``BATCH_BYTES``) with up to ``pipeline_depth`` calls in flight. Order is kept: each
        call's commands follow the previous call's."""
        result = Submitted()
        for seqs in self.submit_iter(cmds, pipeline_depth=pipeline_depth):
            result.add(seqs)
        return result

    def submit_iter(self, cmds: Iterable[tuple], *, pipeline_depth: int = 4) -> Iterator[list[int]]:
        """As ``submit``, yielding each call's seqs as it is acknowledged."""
        batch: list[tuple[str, bytes]] = []
        size = 0
        calls: list[tuple[list[str], list[object]]] = []
        limit, byte_limit = self.BATCH, self.BATCH_BYTES
        for cmd in cmds:
            item = self._payload(cmd)
            if batch and (len(batch) >= limit or size + len(item[1]) > byte_limit):
                calls.append(self._args(batch))
                batch, size = [], 0
                if len(calls) >= pipeline_depth:
                    yield from self._flush(calls)
                    calls = []
            batch.append(item)
            size += len(item[1])
        if batch:
            calls.append(self._args(batch))
        if calls:
            yield from self._flush(calls)

    def _flush(self, calls: list[tuple[list[str], list[object]]], *,
               raw_replies: bool = False) -> Iterator[Any]:
        replicas = self._replicas()
        deadline = time.monotonic() + self.patience
        lost = time.monotonic() + self.failover_seconds
        while True:
            try:
                # the partition's primary itself (a cluster's node for the slot): the scripts
                # and the WAIT after them go down one connection, so WAIT counts their writes
                pipe = node_client(self.client, self.keys.input).pipeline(transaction=False)
                for keys, args in calls:
                    self._script(keys=keys, args=args, client=pipe)
                if replicas:
                    pipe.execute_command("WAIT", replicas, self.replica_timeout_ms)
                replies = pipe.execute()
            except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError,
                    exceptions.RedisClusterException) as e:
                failing_over = is_cluster(self.client) and (
                    not isinstance(e, redis.ResponseError) or _moved(e))
                if not failing_over or time.monotonic() >= lost:
                    if isinstance(e, redis.ResponseError):
                        raise _refused(e) from None
                    raise
                # the primary is gone or the slot moved: once a replica is promoted, the
                # same calls again (each answers from its record if it was applied)
                time.sleep(0.2)
                _refresh_quietly(self.client)
                if self._auto:
                    try:
                        self.replicas = None
                        replicas = self._replicas()
                    except redis.RedisError:
                        self.replicas = replicas  # asked again at the next attempt
                continue
            if not replicas:
                break
            acked = int(replies.pop())
            if acked >= replicas:
                break
            if self._auto and is_cluster(self.client) and not connected_replicas(
                    node_client(self.client, self.keys.input)):
                # a promoted replica stands alone: no replica to wait for until one joins
                # (asked again every few seconds: ``_replicas``)
                self.replicas = None
                break
            if time.monotonic() >= deadline:
                seqs = [s for reply in replies for s in seqs_of(reply) if s]
                where = f"seq {seqs[0]}..{seqs[-1]}" if seqs else "nothing new"
                raise NotReplicated(
                    f"sequenced on the primary ({where}), but {acked} of {replicas} "
                    f"replica(s) acknowledged it within {self.patience:g} s: it stands unless "
                    "the primary is lost before a replica catches up (the outcome is unknown). "
                    "Do not submit it again: only places with a client ref are deduplicated",
                    [s for reply in replies for s in seqs_of(reply)])
            # the same calls again: each returns its record, nothing is sequenced twice
        for reply in replies:
            yield reply if raw_replies else seqs_of(reply)

    def _replicas(self) -> int:
        if self._auto and self.replicas == 0 and time.monotonic() >= self._ask_again:
            self.replicas = None  # none there when last asked: one may have joined since
        if self.replicas is None:
            node = node_client(self.client, self.keys.input)
            self.replicas = 1 if connected_replicas(node) else 0
            self._ask_again = time.monotonic() + self.ASK_REPLICAS_EVERY
        return self.replicas
