"""Putting commands into the journal: the client side of the sequencer script.

``Sequencer.submit`` sends commands (core tuples) in batches; each batch is one atomic script
call that numbers the commands, stamps Redis time and appends them to the input stream. Every
batch carries a random id: if the connection drops and redis-py retries a call that Redis had
already applied, the script returns what it gave the first time instead of sequencing the
batch again. A command whose (account, ref) was sequenced before is skipped (seq 0).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import msgpack  # type: ignore[import-untyped]
import redis

from exchange.commands import to_wire

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
        """Count one batch's answer from the sequencer (a seq, or 0 for a duplicate)."""
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
    stream form (``exchange.commands.to_wire``)."""
    ref = wire.get("ref")
    if ref is None or wire["type"] != "place":
        return ""
    return f"{wire['account']}\x00{ref}"


class Sequencer:
    """Submits commands to one partition's input journal."""

    BATCH = 500
    """Commands per script call: large enough to amortise the round trip, small enough not to
    hold Redis (single-threaded) for long."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self.client = client
        self.keys = keys or Keys()
        self._script = script(client, "sequence")
        self._pack = msgpack.Packer(autoreset=True).pack

    def _args(self, cmds: list[tuple]) -> tuple[list[str], list[object]]:
        k = self.keys
        batch = uuid.uuid4().hex
        args: list[object] = [len(cmds)]
        pack = self._pack
        for cmd in cmds:
            wire = to_wire(cmd)
            args.append(dedup_key(wire))
            args.append(pack(wire))
        return [k.input, k.refs, k.clock, k.batch(batch)], args

    def submit_batch(self, cmds: list[tuple]) -> list[int]:
        """Sequence up to a few thousand commands in one atomic call; their seqs (0 = dup)."""
        if not cmds:
            return []
        keys, args = self._args(cmds)
        return [int(s) for s in self._script(keys=keys, args=args)]

    def submit(self, cmds: Iterable[tuple], *, pipeline_depth: int = 4) -> Submitted:
        """Sequence every command, in order, ``BATCH`` per call with up to ``pipeline_depth``
        calls in flight. Order is kept: each call's commands follow the previous call's."""
        result = Submitted()
        for seqs in self.submit_iter(cmds, pipeline_depth=pipeline_depth):
            result.add(seqs)
        return result

    def submit_iter(self, cmds: Iterable[tuple], *, pipeline_depth: int = 4) -> Iterator[list[int]]:
        """As ``submit``, yielding each batch's seqs as it is acknowledged."""
        batch: list[tuple] = []
        calls: list[tuple[list[str], list[object]]] = []
        for cmd in cmds:
            batch.append(cmd)
            if len(batch) >= self.BATCH:
                calls.append(self._args(batch))
                batch = []
                if len(calls) >= pipeline_depth:
                    yield from self._flush(calls)
                    calls = []
        if batch:
            calls.append(self._args(batch))
        if calls:
            yield from self._flush(calls)

    def _flush(self, calls: list[tuple[list[str], list[object]]]) -> Iterator[list[int]]:
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            self._script(keys=keys, args=args, client=pipe)
        for seqs in pipe.execute():
            yield [int(s) for s in seqs]
