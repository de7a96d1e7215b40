"""Consumers of the output stream: at their own pace, through Redis consumer groups.

A consumer group remembers what it has been given (last delivered id) and what is still
unacknowledged (the pending list). ``GroupConsumer`` reads entries with XREADGROUP, hands
them to a sink in batches, and acknowledges them only once the sink says they are durable.
Delivery is therefore at-least-once: after a crash the pending entries come again, and a
sink must be idempotent by seq (it skips what it already holds, see ``Sink``).

A consumer is named after its process; when one dies, the next one claims what it left
pending (XAUTOCLAIM) and deletes it from the group. Consumers never slow the matcher: they
only read the output stream. Nor do they hold Redis's memory: ``exch compact`` trims below
what is archived whatever a group has read, and a consumer that falls behind reads what was
trimmed from the archive (``journal.history``) before it goes on from Redis.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis

from exchange.errors import ArchiveError

from . import watermark
from .collector import collector_paused
from .history import History, upper_bound
from .keys import Keys
from .layout import check_layout
from .streams import Row, last_id, parse_id, raw, stream_items
from .wire import Assembler, Entry, OutputPiece, entry_of, parse_output


class Sink(Protocol):
    """Where a consumer puts entries. Must be idempotent by seq."""

    def committed_seq(self) -> int:
        """Everything at or below this seq is durably held (0 if nothing)."""

    def write(self, entries: Sequence[Entry]) -> int:
        """Make ``entries`` durable (skipping any at or below ``committed_seq``); return the
        new committed seq. Entries come in increasing seq order."""


@dataclass
class ConsumerProgress:
    """What a consumer has done, for people watching."""

    group: str
    consumer: str
    committed_seq: int = 0
    output_seq: int = 0
    entries: int = 0
    events: int = 0
    claimed: int = 0
    flushes: int = 0

    @property
    def lag(self) -> int:
        return max(self.output_seq - self.committed_seq, 0)


class GroupConsumer:
    """Feeds a sink from the output stream through consumer group ``group``. With replicas,
    only what the replicated watermark covers (``journal.watermark``): a failover can never
    take back what a sink holds."""

    WATERMARK_PATIENCE = 5.0
    """Seconds a consumer that stops once caught up waits for a replica to have the rest."""

    def __init__(
        self,
        client: redis.Redis,
        group: str,
        sink: Sink,
        keys: Keys | None = None,
        *,
        consumer: str | None = None,
        batch: int = 100,
        flush_events: int = 50_000,
        flush_seconds: float = 1.0,
        claim_idle_ms: int = 10_000,
        on_progress: Callable[[ConsumerProgress], None] | None = None,
    ) -> None:
        self.client = raw(client)
        self.keys = keys or Keys()
        self.group = group
        self.sink = sink
        self.name = consumer or f"{socket.gethostname()}:{os.getpid()}"
        self.batch = batch
        self.flush_events = flush_events
        self.flush_seconds = flush_seconds
        self.claim_idle_ms = claim_idle_ms
        self.on_progress = on_progress
        self.stopping = threading.Event()
        self.progress = ConsumerProgress(group, self.name)
        self.history = History(self.client, self.keys)
        self._buffer: list[Entry] = []
        self._ids: list[bytes] = []
        self._cuts: list[int] = []
        """For each buffered entry, how many ids (``_ids``) up to and including its own."""
        self._held = 0
        """The first seq left pending past the replicated watermark by the last flush."""
        self._assembler = Assembler()
        self._buffered_events = 0
        self._buffer_since = 0.0

    # ------------------------------------------------------------------ group membership

    def ensure_group(self) -> None:
        """Create the group if needed, starting after what the sink already holds.

        The sink, not the group, is the truth: if the group has delivered entries after the
        sink's position that are not pending either (the sink's data was removed, or
        restored from a backup), those would never come again, so the group is recreated at
        the sink's position."""
        committed = self.sink.committed_seq()
        start = f"{committed}-0"
        try:
            self.client.xgroup_create(self.keys.output, self.group, id=start, mkstream=True)
            return
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        group = next(g for g in self.client.xinfo_groups(self.keys.output)
                     if g["name"] in (self.group, self.group.encode()))
        # entries after the sink's position that the group will not hand out again: those
        # up to its oldest pending one (exclusive), or up to its last delivered one
        delivered = group["last-delivered-id"]
        upto = delivered.decode() if isinstance(delivered, bytes) else str(delivered)
        if group["pending"]:
            oldest = self.client.xpending(self.keys.output, self.group)["min"]
            if oldest is not None:
                upto = "(" + (oldest.decode() if isinstance(oldest, bytes) else str(oldest))
        if upper_bound(upto) > (committed, 0) and self.history.xrange(
            "out", min=f"({committed}-0", max=upto, count=1
        ):
            self.client.xgroup_destroy(self.keys.output, self.group)
            self.client.xgroup_create(self.keys.output, self.group, id=start)

    def claim_dead(self) -> int:
        """Take over entries other consumers left pending: at once from a consumer whose
        process is gone (named ``host:pid`` on this host), else after ``claim_idle_ms``;
        then remove consumers that have nothing pending and have been idle that long."""
        claimed = 0
        for c in self.client.xinfo_consumers(self.keys.output, self.group):
            name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
            if name != self.name and c["pending"] and _process_gone(name):
                while True:
                    pending = self.client.xpending_range(
                        self.keys.output, self.group, min="-", max="+", count=1000,
                        consumername=name,
                    )
                    if not pending:
                        break
                    ids = [p["message_id"] for p in pending]
                    self.client.xclaim(self.keys.output, self.group, self.name, 0, ids,
                                       justid=True)
                    claimed += len(ids)
        cursor = "0-0"
        while True:
            reply = self.client.xautoclaim(
                self.keys.output, self.group, self.name, self.claim_idle_ms,
                start_id=cursor, count=1000, justid=True,
            )
            cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            claimed += len(reply[1])
            if cursor == "0-0":
                break
        for c in self.client.xinfo_consumers(self.keys.output, self.group):
            name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
            if name != self.name and c["pending"] == 0 and (
                c["idle"] >= self.claim_idle_ms or _process_gone(name)
            ):
                self.client.xgroup_delconsumer(self.keys.output, self.group, name)
        self.progress.claimed += claimed
        return claimed

    # ------------------------------------------------------------------ the loop

    def run(self, *, follow: bool = True) -> ConsumerProgress:
        """Consume: first what this consumer has pending (its own and what it claimed), then
        new entries; with ``follow`` until ``stopping`` is set, else until every entry
        delivered to the group so far is in the sink.

        The cyclic garbage collector is off meanwhile (as in the matcher): a buffer of many
        thousands of event maps would otherwise be rescanned again and again (the README's
        export figures say what it cost), and the decoded events hold no cycles."""
        with collector_paused():
            return self._run(follow)

    def _run(self, follow: bool) -> ConsumerProgress:
        check_layout(self.client, self.keys)
        self.ensure_group()
        self.claim_dead()
        # Redis 7's XAUTOCLAIM drops pending entries that were trimmed from the group's list;
        # the sink's position says whether any of them was never held: then start again there
        self.ensure_group()
        self.progress.committed_seq = self.sink.committed_seq()
        while self._pass(follow) and not self.stopping.is_set():
            # answers past the replicated watermark were left pending, unread: read them
            # again from Redis once a replica has them (a failover may have replaced them)
            patience = time.monotonic() + self.WATERMARK_PATIENCE
            while not self.stopping.is_set():
                limit = watermark.read(self.client, self.keys)
                if limit is None or limit >= self._held:
                    break
                if not follow and time.monotonic() >= patience:
                    self._report()
                    return self.progress  # left pending: the next run takes them
                time.sleep(0.05)
        self._report()
        return self.progress

    def _pass(self, follow: bool) -> bool:
        """Read what is pending, then new entries, into the sink; True if it stopped at
        answers past the replicated watermark (left pending, to be read again)."""
        self._buffer, self._ids, self._cuts = [], [], []
        self._buffered_events = 0
        self._assembler = Assembler()  # pieces of a half-read answer come again with it
        start = "0-0"
        while not self.stopping.is_set():
            reply = self.client.xreadgroup(
                self.group, self.name, {self.keys.output: start}, count=self.batch
            )
            rows = [r for _, rs in stream_items(reply) for r in rs]
            if not rows:
                break
            # a pending entry trimmed away since comes back without fields: from the archive
            self._take([r if r[1] else self._archived(r[0]) for r in rows])
            start = rows[-1][0].decode()
        if self._flush():
            return True
        reader = _Reader(self, follow, self._delivered())
        try:
            while not self.stopping.is_set():
                rows, pieces = reader.next()
                if rows:
                    self._take(rows, pieces)
                if self._due(idle=not rows) and self._flush():
                    return True
                if self.on_progress is not None:
                    self.progress.output_seq = parse_id(
                        last_id(self.client, self.keys.output))[0]
                self._report()
                if not follow and not rows:
                    break  # everything delivered to this group so far is in the sink
        finally:
            reader.stop()
        return self._flush()

    def _archived(self, eid: bytes) -> Row:
        """A pending entry Redis no longer holds, read from the archive: never acknowledged
        unread."""
        found = self.history.xrange("out", min=eid, max=eid, count=1)
        if not found or found[0][0] != eid:
            raise ArchiveError(f"pending output entry {eid.decode()} is neither in Redis nor "
                               "in the archive")
        return found[0]

    def _delivered(self) -> bytes:
        """The group's last delivered id: the reader fills any gap after it from the
        archive."""
        for g in self.client.xinfo_groups(self.keys.output):
            if g["name"] in (self.group, self.group.encode()):
                value = g["last-delivered-id"]
                return value if isinstance(value, bytes) else str(value).encode()
        return b"0-0"

    def _take(self, rows: list[Row], pieces: list[OutputPiece] | None = None) -> None:
        """Buffer ``rows`` (their ``pieces``, if already parsed) for the sink, one entry per
        answer. The pieces of an answer in pieces are buffered (and acknowledged) only once
        the last one is in."""
        if not rows:
            return
        if not self._buffer:
            self._buffer_since = time.monotonic()
        if pieces is None:
            pieces = [parse_output(eid, fields) for eid, fields in rows]
        assembler = self._assembler
        for piece in pieces:
            gathered = assembler.ids
            whole = assembler.feed(piece)
            if whole is None:
                continue
            self._ids.extend(gathered if whole is not piece else ())
            self._ids.append(piece.id)
            entry = entry_of(whole)
            if self._buffer and entry[0] <= self._buffer[-1][0]:
                continue  # a foreign entry's answer sharing a seq: acknowledged, not kept
            self._buffer.append(entry)
            self._cuts.append(len(self._ids))
            self._buffered_events += len(entry[2])
        self.progress.entries += len(rows)

    def _due(self, idle: bool) -> bool:
        if not self._buffer and not self._ids:
            return False
        if self._buffered_events >= self.flush_events or idle:
            return True
        return time.monotonic() - self._buffer_since >= self.flush_seconds

    def _flush(self) -> bool:
        """Hand the sink what is buffered, up to the replicated watermark
        (``journal.watermark``), and acknowledge it. Answers past the watermark are neither
        written nor acknowledged: they stay pending in the group, and are dropped from the
        buffer, to be read again from Redis once a replica has them. True if any were."""
        buffer, ids = self._buffer, self._ids
        limit = watermark.read(self.client, self.keys) if buffer else None
        held = 0
        if limit is not None and buffer[-1][0] > limit:
            k = bisect_right([e[0] for e in buffer], limit)
            held = buffer[k][0]
            buffer = buffer[:k]
            # an entry's ids end at its cut (pieces carry the seq before theirs: never split
            # ids by seq); foreign answers before it go with it
            ids = ids[:self._cuts[k - 1]] if k else []
        if buffer:
            events = sum(len(e[2]) for e in buffer) if held else self._buffered_events
            self.progress.committed_seq = self.sink.write(buffer)
            self.progress.events += events
            self.progress.flushes += 1
        for i in range(0, len(ids), 10_000):
            self.client.xack(self.keys.output, self.group, *ids[i:i + 10_000])
        self._buffer, self._ids, self._cuts = [], [], []
        self._buffered_events = 0
        self._held = held
        return bool(held)

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)


class _Reader:
    """Reads new entries for a consumer on a thread of its own, up to three batches ahead,
    and parses them there: Redis prepares the next batch and the reader decodes it while the
    consumer writes to its sink (the sink's file writes and fsyncs release the interpreter).

    Nothing changes for delivery: an entry read ahead is pending in the group like any
    delivered entry, and is acknowledged only after the sink holds it; if the consumer
    stops or dies first, it is delivered again (see ``GroupConsumer.claim_dead``).

    A consumer that fell behind the window Redis holds is handed next the first entry Redis
    still has: the reader reads what lies between from the archive first (``History.fill``),
    so a consumer never skips what ``exch compact`` trimmed. (This counts on one reader per
    group, as every service here runs: with several, each would fill the others' share.)"""

    def __init__(self, consumer: GroupConsumer, follow: bool, delivered: bytes) -> None:
        self.consumer = consumer
        self.follow = follow
        self.seen = delivered
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, name="exch-reader", daemon=True)
        self.thread.start()

    def next(self) -> tuple[list[Row], list[OutputPiece]]:
        """The next batch as (rows, parsed entries); an empty batch when none came within
        the block time, or when the reader has stopped (the consumer is stopping). Raises
        what the reading thread raised."""
        while True:
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self.thread.is_alive():
                    continue
                return [], []
            if isinstance(item, BaseException):
                raise item
            return item

    def stop(self, wait: float = 2.0) -> None:
        """Stop reading; wait up to ``wait`` seconds for the thread (a daemon: one stuck in
        a Redis call that is retrying must not hold up the consumer's own exit)."""
        self.halt.set()
        deadline = time.monotonic() + wait
        while self.thread.is_alive() and time.monotonic() < deadline:
            try:  # unblock a reader waiting for room in the queue
                self.queue.get(timeout=0.05)
            except Exception:
                pass

    def _run(self) -> None:
        c = self.consumer
        block = 200 if self.follow else 50
        try:
            while not (self.halt.is_set() or c.stopping.is_set()):
                reply = c.client.xreadgroup(
                    c.group, c.name, {c.keys.output: ">"}, count=c.batch, block=block
                )
                rows = [r for _, rs in stream_items(reply) for r in rs]
                if rows:
                    while not self.halt.is_set():  # what was trimmed meanwhile, in batches
                        skipped = c.history.fill("out", self.seen, rows[0][0], c.batch)
                        if not skipped:
                            break
                        self.seen = skipped[-1][0]
                        self._put((skipped, [parse_output(i, f) for i, f in skipped]))
                    self.seen = rows[-1][0]
                self._put((rows, [parse_output(eid, fields) for eid, fields in rows]))
                if not rows and not self.follow:
                    return
        except BaseException as e:  # handed to the consumer's thread, which raises it
            self._put(e)

    def _put(self, item: object) -> None:
        while not self.halt.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


def _process_gone(consumer: str) -> bool:
    """Whether a consumer named ``host:pid`` was a process on this host that has ended."""
    host, _, pid = consumer.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
