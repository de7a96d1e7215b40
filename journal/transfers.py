"""The transfer service: carries money between partitions, exactly once.

A ``transfer`` is journaled in its source partition, whose matcher takes the money out of the
account's wallet there and answers ``transfer_out`` (rules version 6, ``exchange.rules``). From
then until the destination credits it, the money is *in transit*: in no wallet, but in the
journal. This service reads every partition's output through the consumer group
``transfers`` and, for each ``transfer_out``, sequences a ``transfer_in`` (same account,
amount and transfer id) into the destination's journal; that partition's matcher credits it.

Exactly once, whatever is killed when:

- at least once: the service moves its position (``exch:{p}:transfers``) only after every
  ``transfer_in`` up to it was acknowledged by the destination's sequencer, so after a crash
  it hands over again what it may have handed over already;
- at most once: the destination credits a source's transfers in the order of their source
  seqs and keeps the highest it credited; a second ``transfer_in`` for one at or below it is
  answered ``DUPLICATE_TRANSFER`` and moves nothing.

The second half holds because one service at a time carries a source partition's transfers
(a lease per source partition), reading its output in order and handing each destination its
transfers in that order, one sequencer call after the other: no transfer can reach a
destination before an earlier one from the same source. Money is conserved at every moment:
the wallets of all partitions, plus the house's commission, plus the money in transit (the
``transfer_out`` answers not yet credited) equal the deposits less the withdrawals.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import redis

from exchange.named import TransferIn
from exchange.rules import TRANSFERS

from . import faults
from .consumer import ConsumerProgress, GroupConsumer
from .history import History
from .keys import Keys
from .lease import Lease
from .routing import partition_count
from .rules import rules_in_force
from .sequencer import Sequencer
from .streams import parse_id
from .wire import Entry

log = logging.getLogger("exch.transfers")

GROUP = "transfers"
"""The consumer group the service reads every partition's output through."""

LEASE_MS = 5000
"""How long a service's hold on a source partition lasts without renewal."""


class TransferSink:
    """Hands one source partition's ``transfer_out`` answers to their destinations'
    journals as ``transfer_in`` commands; its position is the last seq handed over."""

    def __init__(self, client: redis.Redis, source: int,
                 sequencer_of: Callable[[int], Sequencer], lease: Lease | None = None) -> None:
        self.client = client
        self.keys = Keys(str(source))
        self.source = source
        self.sequencer_of = sequencer_of
        self.lease = lease
        self.history = History(client, self.keys)
        self._ready: set[int] = set()
        self.handed = 0
        """``transfer_in`` commands sequenced by this sink (a retry counts again)."""

    def committed_seq(self) -> int:
        value = self.client.get(self.keys.transfers)
        return int(value) if value else 0

    def write(self, entries: Sequence[Entry]) -> int:
        committed = self.committed_seq()  # read afresh: another service may have moved it
        by_destination: dict[int, list[tuple]] = {}
        last = committed
        fresh = [e for e in entries if e[0] > committed]
        if fresh and fresh[0][0] != self._next_after(committed):
            # a gap (entries delivered to a consumer that died, or read late): never hand on
            # a later transfer before an earlier one; the consumer starts again and claims
            raise OutOfOrder(f"partition {self.source}: answers after seq {committed:,} "
                             f"start at {fresh[0][0]:,}, not at the next one")
        for seq, _ts, events in fresh:
            last = seq
            for e in events:
                if e["type"] == "transfer_out":
                    by_destination.setdefault(e["to_partition"], []).append(TransferIn(
                        "transfer_in", 0, 0, e["account"], -e["amount"], e["transfer"]))
        if self.lease is not None and not self.lease.renew():
            raise LeaseLost(f"partition {self.source}'s transfers passed to another service")
        for destination in by_destination:
            self._check_destination(destination)
        for i, destination in enumerate(sorted(by_destination)):
            if i:
                faults.reached("transfers.between")
            cmds = by_destination[destination]
            self.sequencer_of(destination).submit(cmds)
            self.handed += len(cmds)
        if by_destination:
            faults.reached("transfers.handed")
        if last > committed:
            self._move(last)
        return last

    def _next_after(self, seq: int) -> int:
        """The seq of the first answer after ``seq`` (its input entry's id)."""
        rows = self.history.xrange("in", min=f"{seq + 1}-0", count=1)
        return parse_id(rows[0][0])[0] if rows else seq + 1

    def _check_destination(self, partition: int) -> None:
        """A destination must know transfer_in (rules 6), or it would answer MALFORMED and
        the money would be lost: then nothing moves on until it is upgraded."""
        if partition in self._ready:
            return
        version = rules_in_force(self.client, Keys(str(partition)))
        if version < TRANSFERS:
            raise TransferRefused(
                f"partition {partition} writes under rules version {version}: it would not "
                f"know transfer_in (rules {TRANSFERS}). The transfers to it wait: run `exch "
                f"rules upgrade --partition {partition}`")
        self._ready.add(partition)

    def _move(self, seq: int) -> None:
        """Move the position, only while this service holds the lease (checked in the same
        transaction)."""
        if self.lease is None:
            self.client.set(self.keys.transfers, seq)
            return
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.lease.key)
                if pipe.get(self.lease.key) not in (self.lease.token,
                                                    self.lease.token.encode()):
                    raise LeaseLost(f"partition {self.source}'s transfers passed to another "
                                    "service")
                pipe.multi()
                pipe.set(self.keys.transfers, seq)
                pipe.execute()
            except redis.WatchError:
                raise LeaseLost(f"partition {self.source}'s lease changed while moving on"
                                ) from None


class LeaseLost(Exception):
    """Another transfer service holds the source partition now: this one stops carrying it."""


class OutOfOrder(Exception):
    """The consumer was handed answers that do not follow the position: it starts again."""


class TransferRefused(Exception):
    """A destination cannot take transfers yet (its rules are older than version 6)."""


@dataclass
class TransferProgress:
    """What the service has done, for people watching."""

    partitions: dict[int, ConsumerProgress] = field(default_factory=dict)
    handed: int = 0


class TransferService:
    """Carries the transfers of every partition (those configured when it starts, and any
    added while it follows): one consumer thread per source partition whose lease it holds.
    """

    def __init__(self, client: redis.Redis, *, replicas: int | None = None,
                 lease_ms: int = LEASE_MS) -> None:
        self.client = client
        self.replicas = replicas
        self.lease_ms = lease_ms
        self.stopping = threading.Event()
        self._sequencers: dict[int, Sequencer] = {}
        self._lock = threading.Lock()
        self._consumers: dict[int, GroupConsumer] = {}
        self._sinks: dict[int, TransferSink] = {}
        self._leases: dict[int, Lease] = {}
        self._threads: dict[int, threading.Thread] = {}
        self.errors: list[BaseException] = []

    def _sequencer(self, partition: int) -> Sequencer:
        with self._lock:
            seq = self._sequencers.get(partition)
            if seq is None:
                seq = self._sequencers[partition] = Sequencer(
                    self.client, Keys(str(partition)), replicas=self.replicas)
            return seq

    def _consumer(self, source: int) -> GroupConsumer:
        keys = Keys(str(source))
        lease = self._leases[source]
        sink = self._sinks[source] = TransferSink(self.client, source, self._sequencer, lease)
        # holding the lease, it is the only consumer of its group: claim what others left
        return GroupConsumer(self.client, GROUP, sink, keys, flush_events=5_000,
                             flush_seconds=0.05, claim_idle_ms=0)

    def _take(self, source: int) -> bool:
        """Hold ``source``'s lease (taken from a dead holder on this host at once)."""
        lease = self._leases.get(source)
        if lease is None:
            lease = self._leases[source] = Lease(
                self.client, Keys(str(source)).transfer_lease, self.lease_ms)
        return lease.take_from_the_dead()

    def catch_up(self) -> TransferProgress:
        """Carry every transfer answered so far, in every partition, then return. A partition
        whose lease another live service holds is left to it."""
        progress = TransferProgress()
        for source in range(partition_count(self.client)):
            if not self._take(source):
                continue
            try:
                consumer = self._consumer(source)
                progress.partitions[source] = consumer.run(follow=False)
                progress.handed += self._sinks[source].handed
            finally:
                self._leases[source].release()
        return progress

    def follow(self, *, poll: float = 1.0) -> None:
        """Carry transfers until ``stop``: a thread per source partition held, renewing the
        leases; partitions added meanwhile, or whose holder died, are taken up."""
        while not self.stopping.is_set():
            try:
                self._keep()
            except redis.RedisError:
                pass  # Redis away for a moment: the leases decide when it is back
            self.stopping.wait(min(poll, self.lease_ms / 5000))

    def _keep(self) -> None:
        for source in range(partition_count(self.client)):
            thread = self._threads.get(source)
            if thread is not None and thread.is_alive():
                if not self._leases[source].renew():
                    self._consumers[source].stopping.set()
                continue
            if self._take(source):
                consumer = self._consumers[source] = self._consumer(source)
                thread = self._threads[source] = threading.Thread(
                    target=self._run, args=(consumer,), daemon=True,
                    name=f"transfers-{source}")
                thread.start()

    def _run(self, consumer: GroupConsumer) -> None:
        try:
            consumer.run(follow=True)
        except LeaseLost:
            return
        except Exception as e:  # reported; the partition is taken up again at once
            log.warning("transfers of partition %s: %s: %s", consumer.keys.partition,
                        type(e).__name__, e)
            self.errors = [*self.errors[-99:], e]

    @property
    def handed(self) -> int:
        return sum(s.handed for s in self._sinks.values())

    def stop(self) -> None:
        """Stop carrying and give the leases up."""
        self.stopping.set()
        for consumer in self._consumers.values():
            consumer.stopping.set()
        for thread in self._threads.values():
            thread.join(timeout=10)
        for source, lease in self._leases.items():
            try:
                lease.release()
            except redis.RedisError:
                pass
