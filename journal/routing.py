"""Partitions: how many there are, which one each market lives in, and where each command goes.

A market belongs to one partition for its whole life. The partition is chosen when the market
is created: the ``partition`` field of its ``create_market`` if given, else
``stable_partition`` (CRC-32 of the market id modulo the number of partitions: the same id
always lands in the same place, and ids spread evenly). The choice is written to the
directory (``exch:directory``, market id -> partition) before the command is sequenced, with
``HSETNX``: the first binding wins, every submitter reads the same one, and it never changes
(a later ``create_market`` of the same id goes to the bound partition, where it is answered
``DUPLICATE_MARKET`` while the market exists).

Every other command goes where the state it names lives:

- a command naming a market (``place``, ``market_status``, ``settle``...) to the market's
  partition; a market not in the directory to partition 0, whose matcher answers
  ``UNKNOWN_MARKET`` (answered, not lost);
- ``cancel`` and ``replace`` to the partition their order id carries (rules version 5:
  ``order // PARTITION_STRIDE``); an id that names no configured partition to partition 0,
  which answers ``UNKNOWN_ORDER``;
- ``deposit`` and ``withdraw`` to their ``partition`` field (default 0): an account has a
  wallet in each partition;
- ``transfer`` to its ``from_partition`` (a ``to_partition`` that is not configured, or
  whose journal predates rules version 6, is an ``InputError``: the money would have nowhere
  to go); ``transfer_in`` is refused: only the transfer service sends it, straight to the
  destination's sequencer.

The number of partitions is a setting (``exch:partitions``; absent: 1) that only grows
(``exch partitions --set N``): a market's partition must stay a configured one. Routing keeps
the order of the commands bound for one partition; commands for different partitions are
independent journals, and nothing orders them against each other.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from exchange.commands import COMMANDS
from exchange.errors import InputError
from exchange.limits import MAX_PARTITION, PARTITION_STRIDE
from exchange.rules import PARTITION_IDS, TRANSFERS

from .keys import Keys
from .sequencer import Sequencer, Submitted

DIRECTORY = "exch:directory"
"""A hash: market id -> partition number, written once per market (``HSETNX``)."""
PARTITIONS = "exch:partitions"
"""How many partitions are configured (0 to N-1); absent means 1."""

ROUTED_BY_FIELD = frozenset({"deposit", "withdraw", "create_market"})
"""The command types that may carry a ``partition`` field (a market's other commands follow
the market, and an order's its id)."""


def _index_of(name: str) -> dict[str, int]:
    """Each command type's tuple position of field ``name`` (tuples are kind, seq, ts,
    fields...)."""
    return {kind: 3 + [f.name for f in spec].index(name)
            for kind, spec in COMMANDS.items() if name in [f.name for f in spec]}


_MARKET_AT = _index_of("market")
_ORDER_AT = _index_of("order")


def unpaired(item: Any) -> tuple[int | None, tuple]:
    """A command as routers take it: a core tuple, or a ``(partition, tuple)`` pair for one
    that carries a ``partition`` field; as (that partition or None, the tuple)."""
    if type(item[0]) is str:
        return None, item
    return item[0], item[1]


def stable_partition(market: str, count: int) -> int:
    """The partition a new market goes to when its creator does not say: CRC-32 of its id
    (UTF-8) modulo ``count``. Stable across processes, releases and machines."""
    return zlib.crc32(market.encode("utf-8")) % count


def partition_count(client: redis.Redis) -> int:
    """How many partitions are configured."""
    raw = client.get(PARTITIONS)
    return int(raw) if raw is not None else 1


def set_partition_count(client: redis.Redis, count: int) -> int:
    """Configure ``count`` partitions (0 to count-1); the number never goes down, since
    markets are bound to partitions for life. Returns the number in force."""
    if not 1 <= count <= MAX_PARTITION + 1:
        raise InputError(f"the number of partitions is 1 to {MAX_PARTITION + 1}, not {count}")
    from .rules import rules_in_force

    for p in range(1, count):  # a cancel routes by the partition its order id carries
        keys = Keys(str(p))
        if client.exists(keys.input) and rules_in_force(client, keys) < PARTITION_IDS:
            raise InputError(
                f"partition {p} writes under rules version {rules_in_force(client, keys)}, "
                f"whose order ids do not carry the partition: `exch rules upgrade --partition "
                f"{p}` first (orders placed before keep ids that route to partition 0)")
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(PARTITIONS)
                current = partition_count(pipe)  # type: ignore[arg-type]
                if count < current:
                    raise InputError(f"{current} partitions are configured, and markets are "
                                     "bound to them for life: the number never goes down")
                pipe.multi()
                pipe.set(PARTITIONS, count)
                pipe.execute()
                return count
            except redis.WatchError:
                continue


def directory(client: redis.Redis) -> dict[str, int]:
    """Every market's partition."""
    return {k.decode(): int(v) for k, v in client.hgetall(DIRECTORY).items()}


class Router:
    """Where each command goes (see the module's docstring). Bindings are cached: they never
    change."""

    def __init__(self, client: redis.Redis, count: int | None = None, *,
                 fixed: int | None = None) -> None:
        self.client = client
        self._transfers_ready: set[int] = set()
        self.count = count if count is not None else partition_count(client)
        self.fixed = fixed
        """Send everything to this partition (``exch submit --partition P``): a new market
        is still bound, to it, and one bound elsewhere is refused."""
        self._markets: dict[str, int] = {}

    def check(self, partition: int) -> int:
        """``partition`` if it is a configured one, else ``InputError``."""
        if not 0 <= partition < self.count:
            raise InputError(f"partition {partition} is not configured (there are "
                             f"{self.count}: 0 to {self.count - 1}; see `exch partitions`)")
        return partition

    def market(self, market: str) -> int | None:
        """The market's partition, or None if it is in no partition."""
        p = self._markets.get(market)
        if p is None:
            raw = self.client.hget(DIRECTORY, market)
            if raw is None:
                return None
            p = self._markets[market] = int(raw)
        return p

    def bind(self, market: str, wanted: int | None) -> int:
        """The partition of a market being created: its binding if it has one, else
        ``wanted`` (or the stable rule), bound now."""
        p = self.market(market)
        if p is not None:
            return p
        return self._claim(market, self.check(wanted) if wanted is not None
                           else stable_partition(market, self.count))

    def _claim(self, market: str, choice: int) -> int:
        """Bind an unbound market to ``choice``; the partition it is bound to (another
        submitter's, if one bound it first)."""
        if not self.client.hsetnx(DIRECTORY, market, choice):
            raw = self.client.hget(DIRECTORY, market)
            choice = int(raw) if raw is not None else choice
        self._markets[market] = choice
        return choice

    def _bind_fixed(self, market: str, fixed: int) -> None:
        bound = self.market(market)
        if bound is None:
            bound = self._claim(market, fixed)
        if bound != fixed:
            raise InputError(f"market {market} lives in partition {bound}, not {fixed}: a "
                             "market's partition never changes")

    def route(self, cmd: tuple, partition: int | None = None) -> int:
        """The partition ``cmd`` (a core tuple) goes to; ``partition`` is its ``partition``
        field, for the types that may carry one."""
        kind = cmd[0]
        if kind == "transfer_in":
            raise InputError("transfer_in is sent by the transfer service only (exch "
                             "transfers): a transfer is a `transfer` in its source partition")
        fixed = self.fixed
        if fixed is not None:
            if kind == "create_market" and type(cmd[3]) is str:
                self._bind_fixed(cmd[3], fixed)
            return fixed
        if kind == "create_market":
            market = cmd[3]
            return self.bind(market, partition) if type(market) is str else 0
        at = _MARKET_AT.get(kind)
        if at is not None:
            market = cmd[at]
            p = self.market(market) if type(market) is str else None
            return p if p is not None else 0
        if kind == "transfer":
            source, destination = cmd[5], cmd[6]
            if type(destination) is int and destination not in self._transfers_ready:
                self.check(destination)
                from .rules import rules_in_force

                version = rules_in_force(self.client, Keys(str(destination)))
                if version >= TRANSFERS:  # versions only go up: asked once
                    self._transfers_ready.add(destination)
                else:
                    raise InputError(
                        f"partition {destination} writes under rules version {version}, "
                        f"before transfers (version {TRANSFERS}): `exch rules upgrade "
                        f"--partition {destination}` first")
            if type(source) is int and 0 <= source < self.count:
                return source
            return 0  # answered there: INVALID_TRANSFER
        at = _ORDER_AT.get(kind)
        if at is not None:
            order = cmd[at]
            p = order // PARTITION_STRIDE if type(order) is int and order >= 0 else 0
            return p if p < self.count else 0
        if partition is not None:
            return self.check(partition)
        return 0


class PartitionedSequencer:
    """Sequences commands into the partitions they belong to: one ``Sequencer`` per
    partition, the commands of each kept in order."""

    WINDOW = 20_000
    """Commands routed before the window's share of each partition is sent."""

    def __init__(self, client: redis.Redis, router: Router | None = None, *,
                 replicas: int | None = None) -> None:
        self.client = client
        self.router = router or Router(client)
        self.replicas = replicas
        """Passed to each partition's ``Sequencer``."""
        self._sequencers: dict[int, Sequencer] = {}

    id_base = 0
    """``submit_batch`` gives each command's place across the journals, an order id already."""

    def sequencer(self, partition: int) -> Sequencer:
        s = self._sequencers.get(partition)
        if s is None:
            s = self._sequencers[partition] = Sequencer(self.client, Keys(str(partition)),
                                                        replicas=self.replicas)
        return s

    def submit_batch(self, cmds: list[Any]) -> list[int]:
        """Sequence a few commands (as ``submit``), each partition's share in one call; for
        each command the id an order placed by it has (``partition * PARTITION_STRIDE + seq``
        under rules version 5, the seq in partition 0 or under older rules), 0 for a
        duplicate."""
        if self.router.count == 1 and self.router.fixed is None:
            return self.sequencer(0).submit_batch(list(self._all_in_0(cmds)))
        route = self.router.route
        shares: dict[int, list[int]] = {}
        plain: list[tuple] = []
        for i, item in enumerate(cmds):
            field, c = unpaired(item)
            p = route(c, field)
            plain.append(c)
            shares.setdefault(p, []).append(i)
        out = [0] * len(cmds)
        for p in sorted(shares):
            at = shares[p]
            sequencer = self.sequencer(p)
            seqs = sequencer.submit_batch([plain[i] for i in at])
            base = sequencer.id_base
            for i, seq in zip(at, seqs):
                out[i] = base + seq if seq else 0
        return out

    def submit(self, cmds: Iterable[Any]) -> dict[int, Submitted]:
        """Sequence every command (a core tuple, or a ``(partition, tuple)`` pair for one with
        a ``partition`` field); what each partition sequenced."""
        results: dict[int, Submitted] = {}
        for partition, seqs in self.submit_iter(cmds):
            results.setdefault(partition, Submitted()).add(seqs)
        return results

    def submit_iter(self, cmds: Iterable[Any]) -> Iterator[tuple[int, list[int]]]:
        """As ``submit``, yielding (partition, seqs of one call) as calls are acknowledged.
        With one partition, everything goes straight to partition 0's sequencer."""
        if self.router.count == 1 and self.router.fixed is None:
            for seqs in self.sequencer(0).submit_iter(self._all_in_0(cmds)):
                yield 0, seqs
            return
        route = self.router.route
        window: dict[int, list[tuple]] = {}
        held = 0
        for item in cmds:
            field, c = unpaired(item)
            window.setdefault(route(c, field), []).append(c)
            held += 1
            if held >= self.WINDOW:
                yield from self._send(window)
                window, held = {}, 0
        yield from self._send(window)

    def _all_in_0(self, cmds: Iterable[Any]) -> Iterator[tuple]:
        """With one partition: the commands as they are (markets still bound, so that the
        directory holds every market when partitions are added)."""
        router = self.router
        for item in cmds:
            field, c = unpaired(item)
            if field:
                router.check(field)
            if c[0] == "create_market" and type(c[3]) is str:
                router.bind(c[3], 0)
            yield c

    def _send(self, window: dict[int, list[tuple]]) -> Iterator[tuple[int, list[int]]]:
        for p in sorted(window):
            for seqs in self.sequencer(p).submit_iter(window[p]):
                yield p, seqs
