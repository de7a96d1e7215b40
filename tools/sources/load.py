"""Sending a stream of commands to a running system: ``exch load``, ``exch demo`` and
``exch import betfair --submit``.

A generated or imported stream numbers its commands itself, and its cancels and replaces
name orders by those numbers (an order's id is the seq of the command that placed it). The
journal gives its own seqs, and may sequence other commands in between (the matcher's
heartbeats, other clients), so the sender translates order ids after each acknowledged batch
(``OrderIds``), flushes first when a command names an order whose placing command is still in
the unsent batch, and drops commands that name an order the sequencer skipped (a repeated
client ref). Heartbeats in the stream are sent like any command (they carry only time: the
journal's): a load sends the number of commands it was asked for.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from exchange.limits import PARTITION_STRIDE
from exchange.named import named
from journal.routing import PartitionedSequencer, unpaired
from journal.sequencer import Sequencer, Submitted

Command = tuple


DAY_SEQS = 10**12
"""How far apart the generator's own seqs of the days sent to several partitions are (day i
starts at ``i * DAY_SEQS + 1``), so that the orders their cancels name stay apart."""


class OrderIds:
    """Translate the order ids in generated cancels and replaces to a journal's own numbering.

    The generator's order id is the seq it gave the placing command; a journal gives its own
    (other commands, such as the matcher's heartbeats, may be sequenced in between; outside
    partition 0 an order id also carries the partition). Record each submitted batch
    (``record(generated seqs, order ids)``) and pass every command through ``translate``
    before sending it. Kept per day (generated seqs ``i * DAY_SEQS`` on, see ``interleave``)
    as a list of offsets that changes only where the numbering shifts, so it stays small.
    ``translate`` raises ``KeyError`` for an order whose placing command has not been
    recorded yet: flush the commands in flight first.
    """

    def __init__(self) -> None:
        # per day: generated seqs where an offset begins, the offsets, the last recorded
        self._days: dict[int, tuple[list[int], list[int], list[int]]] = {}

    def record(self, generated: list[int], journal: list[int]) -> None:
        days = self._days
        for g, j in zip(generated, journal):
            if not j:
                continue  # skipped as a duplicate: it has no order id
            day = days.get(g // DAY_SEQS)
            if day is None:
                day = days[g // DAY_SEQS] = ([], [], [0])
            starts, offsets, last = day
            off = j - g
            if not offsets or offsets[-1] != off:
                starts.append(g)
                offsets.append(off)
            if g > last[0]:
                last[0] = g

    def order_id(self, generated: int) -> int:
        day = self._days.get(generated // DAY_SEQS)
        if day is None:
            raise KeyError(generated)
        starts, offsets, last = day
        if generated > last[0] or not starts or generated < starts[0]:
            raise KeyError(generated)
        return generated + offsets[bisect_right(starts, generated) - 1]

    def translate(self, cmd: Command) -> Command:
        kind = cmd[0]
        if kind == "cancel" or kind == "replace":
            named_cmd = named(cmd)
            return named_cmd._replace(order=self.order_id(named_cmd.order))
        return cmd


class Pace:
    """When each command of a timed stream goes, replayed ``speed`` times faster: seconds
    after the first, with every pause longer than ``max_gap`` seconds (of stream time)
    counted as ``max_gap``."""

    def __init__(self, speed: float, max_gap: float | None = None) -> None:
        self.speed = speed
        self.gap_ms = None if max_gap is None else max_gap * 1000
        self.first: int | None = None
        self.last = 0
        self.skipped = 0  # stream ms left out: the part of each pause beyond max_gap

    def offset(self, ts: int) -> float:
        if self.first is None:
            self.first = self.last = ts
        if self.gap_ms is not None and ts - self.last > self.gap_ms:
            self.skipped += ts - self.last - self.gap_ms
        self.last = max(self.last, ts)
        return (ts - self.first - self.skipped) / 1000 / self.speed


@dataclass
class LoadReport(Submitted):
    """What a load sent and what the journal did with it (sequenced, duplicates, seq range:
    see ``Submitted``)."""

    sent: int = 0
    dropped: int = 0
    seconds: float = 0.0
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def add(self, seqs: list[int]) -> None:
        """Count a call's answer: order ids (``OrderIds``), whose seq is the id modulo
        ``PARTITION_STRIDE`` (the seq itself in partition 0)."""
        super().add([s % PARTITION_STRIDE for s in seqs])

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent, "sequenced": self.sequenced, "duplicates": self.duplicates,
            "dropped": self.dropped, "first_seq": self.first_seq, "last_seq": self.last_seq,
            "seconds": round(self.seconds, 2), "commands_per_sec": round(self.rate),
            "by_type": dict(sorted(self.by_type.items())),
        }


def interleave(days: list[tuple[int, Iterable[Command]]], chunk: int = 500
               ) -> Iterator[tuple[int, Command]]:
    """Several days, one per partition, a chunk of each in turn (all partitions busy at
    once), each command paired with its partition (``journal.routing``: a ``create_market``
    binds its market there, a deposit funds the wallet there)."""
    running = [(p, iter(day)) for p, day in days]
    while running:
        left = []
        for p, it in running:
            taken = 0
            for cmd in it:
                yield p, cmd
                taken += 1
                if taken == chunk:
                    left.append((p, it))
                    break
        running = left


def send(
    commands: Iterable[Command] | Iterable[tuple[int, Command]],
    sequencer: Sequencer | PartitionedSequencer,
    *,
    rate: float | None = None,
    speed: float | None = None,
    max_gap: float | None = None,
    batch: int = 500,
    on_batch: Callable[[LoadReport], None] | None = None,
) -> LoadReport:
    """Sequence ``commands`` (core tuples whose seq is the stream's own numbering) in order.

    ``rate``: at most this many commands per second (None: as fast as possible).
    ``speed``: keep the stream's own time, ``speed`` times faster (each command goes when
    (its ts - the first ts) / speed seconds have passed); ``rate`` and ``speed`` exclude
    each other. ``max_gap``: with ``speed``, a pause in the stream's time longer than this
    many seconds counts as this long (a recording that sleeps for hours overnight replays its
    trading, not its silence).
    """
    if rate is not None and speed is not None:
        raise ValueError("choose a rate or a speed, not both")
    ids = OrderIds()
    skipped: set[int] = set()
    report = LoadReport()
    pending: list[Any] = []  # commands, or (partition, command) pairs
    generated: list[int] = []
    in_batch: set[int] = set()
    start = time.perf_counter()
    pace = Pace(speed, max_gap) if speed is not None else None

    def flush() -> None:
        if not pending:
            return
        seqs = sequencer.submit_batch(pending)
        base = sequencer.id_base  # an order's id is its seq in partition 0, not in the others
        ids.record(generated, [base + s if s else 0 for s in seqs] if base else seqs)
        report.add(seqs)
        skipped.update(g for g, s in zip(generated, seqs) if not s)
        pending.clear()
        generated.clear()
        in_batch.clear()
        report.seconds = time.perf_counter() - start
        if on_batch is not None:
            on_batch(report)

    for item in commands:
        part, cmd = unpaired(item)  # a (partition, command) pair: see interleave
        kind, seq, ts = cmd[0], cmd[1], cmd[2]
        if kind == "cancel" or kind == "replace":
            target = named(cmd).order
            if target in skipped:
                report.dropped += 1
                continue
            if target in in_batch:
                flush()
            try:
                cmd = ids.translate(cmd)
            except KeyError:
                pass  # names an order never placed: sent as it is, the core will say so
        if pace is not None:
            due = start + pace.offset(ts)
            wait = due - time.perf_counter()
            if wait > 0.002:
                flush()
                time.sleep(max(due - time.perf_counter(), 0))
        elif rate is not None:
            due = start + report.sent / rate
            wait = due - time.perf_counter()
            if wait > 0.002:
                flush()
                time.sleep(max(due - time.perf_counter(), 0))
        pending.append(cmd if part is None else (part, cmd))
        generated.append(seq)
        in_batch.add(seq)
        report.sent += 1
        report.by_type[kind] = report.by_type.get(kind, 0) + 1
        if len(pending) >= batch:
            flush()
    flush()
    report.seconds = time.perf_counter() - start
    return report


IN_PLAY_SECONDS = 300
"""How long a generated race is in play (``market_day_plan._Plan.IN_PLAY_MS``, horse)."""

ASSUMED_RATE = 30_000
"""Commands a second a load is assumed to reach when sent as fast as possible."""


def delay_scale(commands: int, markets: int, rate: float | None) -> float:
    """What to divide a generated day's bet delays by, so that a delay takes the same share
    of an in-play period in journal time as in the generated day. The journal's clock is
    Redis's: a day of hours sent in seconds squeezes each race's in-play period (about 45%
    of its commands) into a fraction of a second, and an unscaled delay of 1 to 5 s would
    outlast it: no in-play bet would ever match."""
    in_play_journal_s = 0.45 * commands / max(markets, 1) / (rate or ASSUMED_RATE)
    return max(IN_PLAY_SECONDS / in_play_journal_s, 1.0)


def scale_delays(commands: Iterable[Command], factor: float) -> Iterable[Command]:
    """The same commands with every market's in-play bet delay divided by ``factor`` (to
    replay a stream faster than it happened while keeping the delay's share of the flow)."""
    for cmd in commands:
        if cmd[0] == "create_market" and factor != 1:
            market = named(cmd)
            cmd = market._replace(bet_delay_ms=max(int(market.bet_delay_ms / factor), 0))
        yield cmd
