"""``exch follow``: a second copy of the state, kept live from the journal, that checks the
matcher's every answer and takes the periodic snapshots.

The matcher is a pure function of the journal, so another process can hold the same state:
the follower reads each answer the matcher commits, applies the input entries it answers
(with ``journal.apply.apply_rows``, as the matcher did) and compares, byte for byte. It never
writes the output. A difference is reported loudly, with the seq, and the follower stops
(``FollowerDiverged``: ``exch follow`` exits 1).

Snapshots: serializing millions of orders takes seconds. Taken by the matcher (in a forked
child) that stalls the machine; taken here, it only pauses the follower's own following. The
follower holding ``exch:{p}:follower`` (a lease, its heartbeat) takes them: every
``snapshot_every`` commands and on request (``exch snapshot``), always at a seq whose answers
it has verified. While that key exists, the matcher takes none, so one process writes a
given snapshot. Other followers only verify.

Signed (``journal.signing``): the follower that takes snapshots holds the private key, signs
what it saves and, at its start, trusts only a snapshot signed by that key. A follower that
only reads (a gateway's read model) holds only the public key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import msgpack  # type: ignore[import-untyped]
import redis

from exchange import Exchange
from exchange.errors import ExchError

from .apply import apply_rows
from .archive import archive_of
from .collector import collector_paused
from .history import History
from .keys import Keys
from .layout import check_layout
from .lease import Lease
from .replay import Divergence, answered, compare
from .runner import _request
from .signing import Signer, Verifier, load_signer
from .snapshots import SnapshotStore
from .streams import Row, field, last_id, parse_id, raw, stream_items

log = logging.getLogger("exch.follow")


class FollowerDiverged(ExchError):
    """The matcher committed an answer the follower's own replay does not give."""

    def __init__(self, divergence: Divergence) -> None:
        super().__init__(
            f"DIVERGED at seq {divergence.seq} (output entry {divergence.entry}): "
            f"{divergence.why}"
        )
        self.divergence = divergence


@dataclass
class FollowerProgress:
    """What the follower has done, for people watching."""

    state: str = "starting"
    verified_seq: int = 0
    """Every answer up to this seq matched the follower's own."""
    entries: int = 0
    snapshot_seq: int = 0
    snapshots: int = 0
    taking_snapshots: bool = False


class Follower:
    """Follows one partition's journal (see the module docstring)."""

    LEASE_MS = 10_000
    """The follower's heartbeat: gone this long after it stops, the matcher snapshots again.
    Renewed by a thread of its own, so a snapshot of millions of orders does not lose it."""

    BATCH = 64
    """Most output entries read at once."""

    PAUSE_COLLECTOR = True
    """Whether the cyclic garbage collector is off while it follows (the whole process's:
    right for a process that only follows, not for one that serves requests too)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys | None = None,
        *,
        snapshot_every: int = 100_000,
        lease_ms: int | None = None,
        on_progress: Callable[[FollowerProgress], None] | None = None,
        announce: bool = True,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        """``signer``: the key its snapshots are signed with, and whose signature a snapshot
        needs to be started from; ``verifier``: that public key alone, for a follower that
        never writes snapshots. Default: a follower that announces itself (and so takes
        snapshots) is a writer, with ``load_signer()`` (made on first use); one that does
        not (a gateway's read model) only reads, with ``load_verifier()`` (the public key,
        read at its start): it never holds the private key."""
        self.client = raw(client)
        self.announce = announce
        """Whether it competes for the follower key (and so takes the snapshots). A hot
        standby's follower does not: it only keeps a verified state ready."""
        self.block_ms = 200 if announce else 20
        """How long a read waits for new answers: also how long stopping may take, which a
        hot standby's takeover waits for."""
        self.keys = keys or Keys()
        self.snapshot_every = snapshot_every
        self.lease = Lease(self.client, self.keys.follower, lease_ms or self.LEASE_MS)
        if announce and signer is None and verifier is None:
            signer = load_signer()
        self.snapshots = SnapshotStore(self.client, self.keys, signer=signer, verifier=verifier)
        self.history = History(self.client, self.keys)
        self.progress = FollowerProgress()
        self.on_progress = on_progress
        self.stopping = threading.Event()
        self.ex = Exchange(self.keys.number)
        self._ts = 0
        self._prev = b"0-0"
        """The last input entry applied (and, once its answer is in, verified)."""
        self._out = b"0-0"
        """The last output entry read."""
        self._since_snapshot = 0
        self._control_cursor = "0-0"

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """The state at the newest snapshot at or below the output's last whole answer, and
        the input after it applied; answers after the snapshot are verified as they are
        read, from there on."""
        check_layout(self.client, self.keys)
        _, done = answered(self.client, self.keys)
        found = self.snapshots.latest(done)
        origin = "no snapshot"
        if found is not None:
            self.ex = Exchange.restore(found[1], self.keys.number)
            self.progress.snapshot_seq = found[0].seq
            origin = f"snapshot {found[0].seq}"
        elif done:
            archive = archive_of(self.client, self.keys)
            older = (archive.latest_snapshot(done, self.snapshots.verifier)
                     if archive is not None else None)
            if older is not None:
                self.ex = Exchange.restore(older[1], self.keys.number)
                self.progress.snapshot_seq = older[0]
                origin = f"archived snapshot {older[0]}"
        log.info("starting from %s, at seq %d", origin, self.ex.last_seq)
        self._ts = self.ex.now
        seq = self.ex.last_seq
        self._prev = self._out = f"{seq}-0".encode() if seq else b"0-0"
        self.progress.verified_seq = seq
        self._control_cursor = last_id(self.client, self.keys.control)

    # ------------------------------------------------------------------ the loop

    def run(self) -> FollowerProgress:
        """Follow until ``stopping`` is set; raises ``FollowerDiverged`` at a difference."""
        with collector_paused() if self.PAUSE_COLLECTOR else contextlib.nullcontext():
            self.start()
            beat = threading.Thread(target=self._keep, name="exch-follower-key", daemon=True)
            if self.announce:
                beat.start()
            try:
                while not self.stopping.is_set():
                    reply = self.client.xread(
                        {self.keys.output: self._out, self.keys.control: self._control_cursor},
                        count=self.BATCH, block=self.block_ms,
                    )
                    rows: list[Row] = []
                    for name, entries in stream_items(reply):
                        if name.endswith(b":control"):
                            self._control(entries)
                        else:
                            rows = entries
                    if rows:
                        # trimmed meanwhile: from the archive first, a few batches at a time
                        skipped = self.history.fill("out", self._out, rows[0][0],
                                                    4 * self.BATCH)
                        self._verify(skipped or rows)
                    self._report()
            finally:
                self.stopping.set()
                if self.announce:
                    beat.join()
                self.progress.state = "stopped"
                if self.progress.taking_snapshots:
                    self.lease.release()
        return self.progress

    def _verify(self, recorded: list[Row]) -> None:
        self.progress.state = "following"
        """Apply the input entries the whole answers in ``recorded`` stand for and compare;
        pieces of an answer not yet whole wait for the rest."""
        last_whole = None
        for eid, fields in recorded:
            part, parts = field(fields, b"part"), field(fields, b"parts")
            if part is None or part == parts:
                last_whole = eid
        if last_whole is None:  # only pieces of an answer still being written
            self.stopping.wait(0.01)  # read them again, with the rest, in a moment
            return
        rows = self.history.xrange("in", min=b"(" + self._prev, max=last_whole)
        self._ts, _, records, prev = apply_rows(self.ex, rows, self._ts, self._prev, emit=True)
        upto = [r for r in recorded if parse_id(r[0]) <= parse_id(last_whole)]
        divergence = compare(records, upto)
        if divergence is not None:
            self.progress.state = "diverged"
            self._report()
            log.error("DIVERGED at seq %d (output entry %s): %s", divergence.seq,
                      divergence.entry, divergence.why)
            raise FollowerDiverged(divergence)
        commands = self.ex.last_seq - self.progress.verified_seq
        self._prev = prev
        self._out = last_whole
        self.progress.verified_seq = self.ex.last_seq
        self.progress.entries += len(rows)
        if self.progress.taking_snapshots:
            self.client.set(self.keys.followed, self.ex.last_seq)
        self._since_snapshot += commands
        if self._since_snapshot >= self.snapshot_every and self.progress.taking_snapshots:
            self.take_snapshot()

    def _keep(self) -> None:
        """Hold the follower key, renewed a third of its time apart: the follower that holds
        it takes the snapshots; the others keep trying for it."""
        while not self.stopping.is_set():
            try:
                if self.progress.taking_snapshots:
                    if not self.lease.renew():
                        log.warning("the follower key passed to %s",
                                    self.lease.holder() or "nobody")
                        self.progress.taking_snapshots = False
                    else:
                        self.client.set(self.keys.followed, self.progress.verified_seq)
                elif self.lease.acquire():
                    self.progress.taking_snapshots = True
            except redis.RedisError as e:
                log.warning("could not renew the follower key: %s", e)
            self.stopping.wait(self.lease.ms / 3000)

    # ------------------------------------------------------------------ snapshots

    def take_snapshot(self) -> int:
        """Save the state at the last verified seq (pausing the following meanwhile); the
        seq, or 0 when there is nothing yet or a newer snapshot is already stored."""
        seq = self.ex.last_seq
        if not seq:
            return 0
        newest = self.snapshots.list()
        if newest and newest[0].seq > seq:
            # the matcher took one further on (this follower fell an interval behind): no
            # use serializing an older state; count the interval from here again
            self._since_snapshot = 0
            return 0
        self.progress.state = "snapshotting"
        self._report()
        try:
            self.snapshots.save(seq, self.ex.snapshot())
        except ValueError as e:  # a newer one is stored (a matcher took one as we started)
            log.warning("snapshot at %d not saved: %s", seq, e)
            self._since_snapshot = 0
            self.progress.state = "following"
            return 0
        self._since_snapshot = 0
        self.progress.snapshot_seq = seq
        self.progress.snapshots += 1
        self.progress.state = "following"
        log.info("snapshot at seq %d", seq)
        return seq

    def _control(self, entries: list[Row]) -> None:
        for eid, fields in entries:
            self._control_cursor = eid.decode()
            request = _request(fields)
            if request is None or request["op"] != "snapshot":
                continue
            if self.progress.taking_snapshots:
                seq = self.take_snapshot() or self.progress.snapshot_seq
                self.client.lpush(request["reply"], msgpack.packb({"seq": seq}))
                self.client.expire(request["reply"], 60)

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)


def nice() -> None:
    """Let the matcher and Redis come first on a busy machine: the follower is behind them
    by design."""
    try:
        os.nice(5)
    except OSError:
        pass
