"""``exch run``: the matcher service of one partition.

The loop, in one breath: take the lease (or wait as a standby while another matcher holds
it); rebuild the state from the newest snapshot at or below the last answered input entry
plus the input after it, without emitting; then follow the input stream, apply each entry's
commands, and commit the answers with fenced script calls (an output entry has its input
entry's id, see docs/journal.md). Snapshots every ``snapshot_every`` commands when no
follower takes them (``journal.follower``), on request and on a clean stop.

Why nothing can be corrupted:
- only the lease holder writes, and the commit script checks both the lease and that the
  output ends exactly where this matcher believes it does, before writing anything;
- a crash anywhere loses only uncommitted work, which the next matcher recomputes from the
  journal: the matcher is a pure function of the input, so the bytes are the same (an
  answer cut into pieces is finished from the piece after the last one committed);
- a commit retried after a dropped connection is recognised (``ALREADY``), never doubled;
- a matcher that finds itself fenced or without its lease goes back to standby and rebuilds
  from Redis, never from what it had in memory.

The lease is renewed by a keeper thread while the matcher makes progress: every step
(recovering, reading, matching an entry, committing) must end within ``max_step`` seconds,
or the keeper lets the lease go, so a hung matcher loses it while a long but moving one (a
snapshot of millions of orders restored, a market of millions closing) keeps it.

Snapshots are signed (``journal.signing``): the matcher holds the private key, signs what
it saves, and recovers only from a snapshot signed by that key; an unsigned or forged one is
passed over like a damaged one, with a warning.

Time moves only through the journal: when orders wait out an in-play bet delay and nothing
arrives, the matcher sequences a ``heartbeat`` command (journaled like any other), so the
delayed orders reach the book on time and a replay sees the same times.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]
import redis

from exchange import Exchange
from exchange.errors import Fenced, JournalError, LeaseLost

from . import faults, watermark
from .apply import Record, apply_rows
from .archive import archive_of
from .collector import collector_paused
from .connection import node_client, reopened
from .history import History
from .keys import Keys
from .layout import check_layout
from .lease import Lease
from .retention import eviction_problem
from .scripts import script
from .sequencer import Sequencer, connected_replicas
from .signing import Signer, load_signer
from .snapshots import SnapshotInfo, SnapshotStore
from .streams import Row, field, last_id, parse_id, raw, stream_items
from .wire import PIECE_BYTES

log = logging.getLogger("exch.run")


@dataclass
class Progress:
    """What the matcher has done, for people watching."""

    state: str = "starting"
    holder: str = ""
    last_seq: int = 0
    last_input_seq: int = 0
    commands: int = 0
    events: int = 0
    batches: int = 0
    replayed: int = 0
    snapshot_seq: int = 0
    rate: float = 0.0
    """Commands per second since the previous report."""

    @property
    def lag(self) -> int:
        return max(self.last_input_seq - self.last_seq, 0)


COMMIT_BYTES = 32 << 20
"""Most bytes of output written by one commit call: Redis copies a call's writes into every
replica's output buffer at once, and drops a replica whose buffer passes 256 MB."""


def commit_calls(
    records: list[Record], follows: bytes, limit: int = COMMIT_BYTES
) -> list[tuple[list[object], bytes]]:
    """The output entries ``records`` as commit script arguments (after the token and lease
    time), in calls of at most ``limit`` bytes: (arguments, id of the call's last entry)."""
    calls: list[tuple[list[object], bytes]] = []
    args: list[object] = []
    prev = follows
    size = 0
    n = 0
    for eid, ts, payload, part, parts in records:
        if n and size + len(payload) > limit:
            calls.append(([follows, n, *args], prev))
            follows = prev
            args, size, n = [], 0, 0
        if parts == 1:
            args += (eid, ts, payload, "", "")
        else:
            args += (eid, ts, payload, part, parts)
        size += len(payload)
        n += 1
        prev = eid
    if n:
        calls.append(([follows, n, *args], prev))
    return calls


class Committer:
    """Commits in order on its own thread, so that Redis appends batch N while the matcher
    reads and matches batch N+1 (a thread blocked on a socket releases the GIL).

    After a failed commit (lease lost, fenced, Redis gone) nothing more is committed: the
    error is raised in the matcher's thread at its next ``put`` or ``drain``, and the
    matcher rebuilds from Redis.
    """

    def __init__(self, matcher: Matcher, depth: int = 2) -> None:
        self.matcher = matcher
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="exch-commit", daemon=True)
        self.thread.start()

    def put(self, args: list[object], last: bytes) -> None:
        """Queue a commit call (blocks while ``depth`` calls are waiting)."""
        self.check()
        self.queue.put((args, last))

    def drain(self) -> None:
        """Wait until every queued commit is done; raise the first failure."""
        self.queue.join()
        self.check()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        m = self.matcher
        behind = m.unreplicated  # committed, but not yet known to be on a replica
        while True:
            alone = m.auto_replicas and not m.replicas
            try:
                item = self.queue.get(timeout=0.1 if behind else (5.0 if alone else None))
            except queue.Empty:
                if behind:
                    behind = self._replicate(behind)
                elif alone:
                    self._replica_joined()
                continue
            try:
                if item is None:
                    return
                if self.error is not None:
                    continue
                args, last = item
                try:
                    m.step("committing")
                    result = m._commit(keys=[m.keys.output, m.keys.lease],
                                       args=[m.token, m.lease.ms, *args])
                except BaseException as e:  # noqa: BLE001 - handed to the matcher's thread
                    self.error = e
                    continue
                code = result[0]
                if code == b"LEASE":
                    self.error = LeaseLost(f"lease taken by {result[1].decode() or 'nobody'}")
                elif code == b"FENCED":
                    self.error = Fenced(f"output ends at {result[1].decode()}, not as expected")
                else:
                    if faults.ACTIVE:
                        faults.reached("after-commit")
                    m.progress.last_seq = parse_id(last)[0]
                    m.committed = last
                    if m.replicas:
                        behind = self._replicate(last)
            finally:
                self.queue.task_done()

    def _replica_joined(self) -> None:
        """Counting replicas automatically and none there: one that joins (a restarted
        node, a new replica of a promoted one) brings the watermark back."""
        m = self.matcher
        try:
            if connected_replicas(node_client(m.client, m.keys.output)):
                m.replicas = 1
                watermark.start(m.client, m.keys, m.committed, 1)
                log.info("a replica joined: consumers wait for it again")
        except redis.RedisError:
            pass

    def _replicate(self, last: bytes | None) -> bytes | None:
        """Move the watermark to ``last`` if a replica has it; what is still behind."""
        m = self.matcher
        if last is None or self.error is not None:
            return None
        try:
            if watermark.advance(m.client, m.keys, last, m.replicas):
                return None
            if m.auto_replicas and not connected_replicas(node_client(m.client,
                                                                      m.keys.output)):
                log.warning("the server has no replica now: consumers no longer wait for one")
                m.replicas = 0
                watermark.clear(m.client, m.keys)
                return None
            return last
        except redis.RedisError:
            return last  # the next commit, or the next idle moment, tries again


class LeaseKeeper:
    """Renews the matcher's lease a third of its time apart while the matcher makes
    progress (see the module docstring); notes when it is lost."""

    def __init__(self, matcher: Matcher) -> None:
        self.matcher = matcher
        self.lost = threading.Event()
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._run, name="exch-lease", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        m = self.matcher
        warned = False
        while not self.halt.wait(m.lease.ms / 3000):
            name, since = m.current_step
            stuck = time.monotonic() - since
            if stuck > m.max_step:
                if not warned:
                    log.warning("stuck %.0f s in %s: letting the lease go", stuck, name)
                    warned = True
                continue
            warned = False
            try:
                if not m.lease.renew():
                    self.lost.set()
                    return
            except redis.RedisError as e:
                log.warning("could not renew the lease: %s", e)

    def stop(self) -> None:
        self.halt.set()
        self.thread.join()


class Matcher:
    """The matcher service of one partition (see the module docstring)."""

    LEASE_MS = 3000
    """A lease not renewed for this long passes to a standby: a killed matcher's successor
    takes over within about this time."""

    BATCH = 64
    """Most input entries read and matched at once (an entry holds up to 500 commands)."""

    MAX_STEP = 60.0
    """Seconds one step may take before the matcher counts as hung and lets its lease go."""

    RECOVERY_CHUNK = 100
    """Input entries read at once while recovering."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys | None = None,
        *,
        snapshot_every: int = 100_000,
        batch: int | None = None,
        lease_ms: int | None = None,
        max_step: float | None = None,
        piece_bytes: int = PIECE_BYTES,
        on_progress: Callable[[Progress], None] | None = None,
        progress_every: float = 0.5,
        hot: bool = False,
        replicas: int | None = None,
        signer: Signer | None = None,
    ) -> None:
        """``signer``: the key snapshots are signed with, and whose signature a snapshot
        needs to be recovered from (default: ``load_signer()``, made on first use)."""
        self.client = raw(client)
        self.signer = signer if signer is not None else load_signer()
        self.replicas = replicas
        """Replicas an answer must be on before consumers may act on it (the watermark,
        ``journal.watermark``); None: one if the partition's server has a replica."""
        self.auto_replicas = replicas is None
        """Whether ``replicas`` is asked of the server (again at every recovery, and while
        there is none, every few seconds)."""
        self.committed = b"0-0"
        """The last output id committed (the watermark's aim)."""
        self.unreplicated: bytes | None = None
        """Committed at recovery but not yet known to be on a replica."""
        self.hot = hot
        """A hot standby: while another matcher holds the lease, follow the journal in memory
        (a follower that takes no snapshots), and take over from that state without
        rebuilding it."""
        self._shadow: tuple[Any, threading.Thread] | None = None
        self.keys = keys or Keys()
        self.snapshot_every = snapshot_every
        self.batch = batch or self.BATCH
        self.max_step = max_step or self.MAX_STEP
        self.piece_bytes = piece_bytes
        self.lease = Lease(self.client, self.keys.lease, lease_ms or self.LEASE_MS)
        self.token = self.lease.token
        self.snapshots = SnapshotStore(self.client, self.keys, signer=self.signer)
        # heartbeats only: the matcher's own, re-sent if lost, never waited on a replica for
        self.sequencer = Sequencer(self.client, self.keys, replicas=0)
        self._commit = script(self.client, "commit")
        self.progress = Progress(holder=self.token)
        self.on_progress = on_progress
        self.progress_every = progress_every
        self.stopping = threading.Event()
        self.ex = Exchange(self.keys.number)
        self.current_step: tuple[str, float] = ("starting", time.monotonic())
        self._keeper: LeaseKeeper | None = None
        self._follows = b"0-0"
        """The output's last id: the last entry committed (or queued to be)."""
        self._prev = b"0-0"
        """The id of the last input entry applied."""
        self._ts = 0
        self._since_snapshot = 0
        self._last_report = time.monotonic()
        self._reported_commands = 0
        self._control_cursor = "0-0"
        self._snapshot_child: tuple[int, int] | None = None

    # ---------------------------------------------------------------- lease

    def acquire(self) -> bool:
        """Take the lease if it is free (or ours)."""
        return self.lease.acquire()

    def release(self) -> None:
        """Give the lease up (only if it is still ours)."""
        self.lease.release()

    def holder(self) -> str:
        """Who holds the lease now ("" if nobody)."""
        return self.lease.holder()

    def step(self, name: str) -> None:
        """Mark progress: a new step begins (see ``LeaseKeeper``)."""
        self.current_step = (name, time.monotonic())

    def _check_lease(self) -> None:
        if self._keeper is not None and self._keeper.lost.is_set():
            raise LeaseLost(f"lease taken by {self.holder() or 'nobody'}")

    # ---------------------------------------------------------------- recovery

    def _shadow_follow(self) -> None:
        """Start the hot standby's follower thread, once per stay in standby: one that
        failed is not started again and again (the takeover then rebuilds, as a cold
        standby does)."""
        from .follower import Follower

        if self._shadow is not None:
            return
        follower = Follower(self.client, self.keys, snapshot_every=10**15, announce=False,
                            signer=self.signer)

        def run() -> None:
            try:
                follower.run()
            except Exception as e:  # a divergence, a Redis error: no warm state then
                log.warning("hot standby: stopped following (%s); will rebuild", e)
                follower.progress.state = "failed"

        thread = threading.Thread(target=run, name="exch-hot-standby", daemon=True)
        thread.start()
        self._shadow = (follower, thread)

    def _take_shadow(self) -> tuple[Exchange, bytes] | None:
        """Stop the hot standby's follower; its verified state and the last input entry it
        applied, or None if it has none to give."""
        if self._shadow is None:
            return None
        follower, thread = self._shadow
        self._shadow = None
        follower.stopping.set()
        thread.join()
        if follower.progress.state == "failed" or not follower.progress.verified_seq:
            return None
        return follower.ex, follower._prev

    def recover(self, warm: tuple[Exchange, bytes] | None = None) -> None:
        """Rebuild the state from the newest snapshot at or below the last answered input
        entry and the input after it, without emitting; then continue after the output's
        last entry (in the middle of an answer cut into pieces, if that is where it ends).
        With ``warm`` (a hot standby's verified state and the last input entry it applied),
        start from that instead of a snapshot when it is not past the answers."""
        k = self.keys
        self.step("recovering")
        check_layout(self.client, k)
        self.progress.state = "recovering"
        self._report(force=True)
        follows = last_id(self.client, k.output).encode()
        answered = b"0-0"
        if follows != b"0-0":
            below = self.client.xrevrange(k.input, max=follows, count=1)
            answered = below[0][0] if below else b"0-0"
        if warm is not None and parse_id(warm[1]) <= parse_id(answered):
            self.ex, start_after = warm
            start = "(" + start_after.decode()
            self.progress.snapshot_seq = 0
            origin = "the hot standby's state"
            log.info("taking over from the hot standby's state at %s", start_after.decode())
        else:
            found, start = self._restore(answered)
            origin = f"snapshot {found[0].seq}" if found else "no snapshot"
        history = History(self.client, k)
        self._ts = self.ex.now
        self._prev = b"0-0"
        replayed = 0
        while answered != b"0-0":
            self.step("recovering")
            rows = history.xrange("in", min=start, max=answered, count=self.RECOVERY_CHUNK)
            if not rows:
                break
            self._ts, _, _, self._prev = apply_rows(self.ex, rows, self._ts, self._prev,
                                                    emit=False)
            replayed += len(rows)
            if faults.ACTIVE:
                faults.reached("recovering")
            self._check_lease()
            start = "(" + rows[-1][0].decode()
            self.progress.replayed = replayed
            self._report()
        self._prev = answered
        self._follows = follows
        self._control_cursor = last_id(self.client, k.control)
        self._since_snapshot = 0
        self.progress.last_seq = parse_id(follows)[0]
        if self.auto_replicas:  # asked at every recovery: a failover may leave none
            self.replicas = 1 if connected_replicas(node_client(self.client, k.output)) else 0
        self.committed = follows
        self.unreplicated = None
        if not self.replicas:
            watermark.clear(self.client, k)
        elif not watermark.start(self.client, k, follows, self.replicas):
            self.unreplicated = follows  # the committer tries again until a replica has it
            log.warning("no replica acknowledged within %d ms: consumers wait for one",
                        watermark.WAIT_MS)
        log.info("recovered at %s (%s, %d entries replayed)", follows.decode(), origin, replayed)

    def _restore(self, answered: bytes) -> tuple[Any, str]:
        """The newest intact snapshot at or below ``answered`` (from Redis, else the
        archive) restored into ``self.ex``, or an empty state; what was found, and where the
        journal's replay starts."""
        k = self.keys
        found = self.snapshots.latest(parse_id(answered)[0])
        if found is None and answered != b"0-0":
            # none in Redis reads back whole: an archived one, the journal after it archived too
            archive = archive_of(self.client, k)
            older = (archive.latest_snapshot(parse_id(answered)[0], self.signer.verifier)
                     if archive else None)
            if older is not None:
                found = (SnapshotInfo(older[0], "", len(older[1]), 0), older[1])
        if found is not None:
            info, data = found
            self.step("restoring a snapshot")
            self.ex = Exchange.restore(data, self.keys.number)
            self.progress.snapshot_seq = info.seq
            return found, f"({info.seq}-0"
        self.ex = Exchange(k.number)
        return None, "-"

    # ---------------------------------------------------------------- the loop

    def run(self) -> None:
        """Serve until ``stopping`` is set: standby, recover, follow; again after a fence.
        A Redis error it did not expect (out of memory, a missing permission, Redis gone) is
        reported and retried with a growing pause, never the end of the service."""
        backoff = 0.0
        checked = False
        while not self.stopping.is_set():
            try:
                if not checked:  # a Redis that evicts keys would lose journal entries
                    problem = eviction_problem(self.client)
                    if problem is not None and problem[0]:
                        raise JournalError(problem[1])
                    if problem is not None:
                        log.warning("%s", problem[1])
                    checked = True
                check_layout(self.client, self.keys)  # before the lease: refuse, take nothing
                if not self.acquire():
                    self.progress.state = "standby (hot)" if self.hot else "standby"
                    self.progress.holder = self.holder()
                    if self.hot:
                        self._shadow_follow()
                    self._report()
                    self.stopping.wait(0.02 if self.hot else 0.25)  # a hot one: at once
                    continue
                self.progress.holder = self.token
                self._keeper = LeaseKeeper(self)
                try:
                    # the collector off from the restore on: a full collection over millions
                    # of restored orders holds the interpreter for seconds, and the lease
                    # keeper with it
                    with collector_paused():
                        self.recover(self._take_shadow())
                        self._follow()
                    backoff = 0.0
                finally:
                    self._keeper.stop()
            except (LeaseLost, Fenced) as e:
                log.warning("%s: back to standby", e)
                self.progress.state = "standby"
                continue
            except redis.RedisError as e:
                backoff = min(max(backoff * 2, 0.25), 10.0)
                log.error("Redis error: %s; trying again in %.2f s", e, backoff)
                self.progress.state = f"retrying ({type(e).__name__})"
                self._report(force=True)
                self.stopping.wait(backoff)
                continue
            if self.stopping.is_set():
                self._shutdown()
        self._take_shadow()  # a hot standby asked to stop: its follower stops too
        self.progress.state = "stopped"
        self._report(force=True)

    def _shutdown(self) -> None:
        """A clean stop: a snapshot (unless a follower that keeps up takes them), and the lease
        given up."""
        try:
            if self.lease.renew() and not self.follower_keeps_up():
                self.take_snapshot()
        finally:
            self.release()

    def _follow(self) -> None:
        k = self.keys
        client = self.client
        self.committer = Committer(self)
        try:
            self.progress.state = "running"
            while not self.stopping.is_set():
                self._check_lease()
                self.step("reading")
                block = 100 if self.ex.next_wakeup() is not None else 500
                reply = client.xread(
                    {k.input: self._prev, k.control: self._control_cursor},
                    count=self.batch,
                    block=block,
                )
                rows: list[Row] = []
                for name, entries in stream_items(reply):
                    if name.endswith(b":control"):
                        self._control(entries)
                    else:
                        rows = entries
                if self._snapshot_child is not None:
                    self._wait_snapshot_child(block=False)
                if rows:
                    self._process(rows)
                else:
                    self._heartbeat_if_due()
                self._report()
            self.committer.drain()
        finally:
            self.committer.close()

    def _process(self, rows: list[Row]) -> None:
        if faults.ACTIVE:
            faults.reached("after-read")
        self.step("matching")
        before = self.ex.last_seq
        self._ts, events, records, self._prev = apply_rows(
            self.ex, rows, self._ts, self._prev, emit=True, piece_bytes=self.piece_bytes
        )
        if faults.ACTIVE:
            faults.reached("before-commit")
        if records and parse_id(records[0][0]) <= parse_id(self._follows):
            # recovered in the middle of an answer in pieces: those before are committed
            done = parse_id(self._follows)
            records = [r for r in records if parse_id(r[0]) > done]
        for args, last in commit_calls(records, self._follows):
            self.committer.put(args, last)
            self._follows = last
        p = self.progress
        commands = self.ex.last_seq - before
        p.commands += commands
        p.events += events
        p.batches += 1
        self._since_snapshot += commands
        if self._since_snapshot >= self.snapshot_every:
            if self.follower_keeps_up():
                self._since_snapshot = 0  # its snapshots will do: ask again an interval on
            else:
                self.take_snapshot(background=True)

    def follower_alive(self) -> bool:
        """Whether a follower (``exch follow``) announces itself: it takes the periodic
        snapshots then, and the matcher takes none."""
        return bool(self.client.exists(self.keys.follower))

    def follower_keeps_up(self) -> bool:
        """Whether a follower takes the periodic snapshots for this matcher: one announces
        itself and has verified to within one snapshot interval of here. A follower further
        behind (a slow or starved machine) would leave recovery, and so what compaction may
        free, ever further back: the matcher takes the snapshot itself then."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.follower)
            pipe.get(self.keys.followed)
            alive, followed = pipe.execute()
        return bool(alive) and int(followed or 0) >= self.ex.last_seq - self.snapshot_every

    def take_snapshot(self, *, background: bool = False, reply: str | None = None) -> int:
        """Snapshot the state once everything matched is committed; returns its seq.

        With ``background`` the matcher forks: the child serializes its copy-on-write image
        of the state (the state at that seq, whatever the parent does next), saves it with
        a connection of its own, answers ``reply`` if given, and exits, while the parent
        goes on matching. Serializing hundreds of thousands of orders takes a second or
        more; that is a second no order waits for. One snapshot child at a time: while one
        runs, a periodic snapshot is postponed and a requested one waits for it.
        """
        committer = getattr(self, "committer", None)
        if committer is not None and committer.thread.is_alive():
            committer.drain()
        seq = parse_id(self._prev)[0]
        if seq == 0:
            if reply:
                self._answer(self.client, reply, 0)
            return 0
        if faults.ACTIVE:
            faults.reached("snapshot")
        if not background:
            self._wait_snapshot_child(block=True)
            self.step("snapshotting")
            self.snapshots.save(seq, self.ex.snapshot())
            if reply:
                self._answer(self.client, reply, seq)
            self._snapshot_saved(seq)
            return seq
        if self._snapshot_child is not None:
            if reply is None and not self._wait_snapshot_child(block=False):
                return 0  # postponed: the running child is still saving
            self._wait_snapshot_child(block=True)
        pid = os.fork()
        if pid == 0:  # the child: never returns
            self._snapshot_in_child(seq, reply)
        self._snapshot_child = (pid, seq)
        self._since_snapshot = 0
        # No collection here: with the collector off, every object made since recovery is
        # "young", so even gc.collect(1) would walk the whole state (and, after a fork, copy
        # every page it touches): a stall the README's figures measure. The core makes
        # no cyclic garbage (tests/test_core_properties.py), so there is nothing to collect.
        return seq

    def _snapshot_in_child(self, seq: int, reply: str | None) -> None:
        code = 1
        try:
            os.nice(10)  # the matcher and Redis come first
            client = reopened(self.client)
            SnapshotStore(client, self.keys, signer=self.signer).save(seq, self.ex.snapshot())
            if reply:
                self._answer(client, reply, seq)
            code = 0
        finally:
            os._exit(code)

    @staticmethod
    def _answer(client: redis.Redis, reply: str, seq: int) -> None:
        client.lpush(reply, msgpack.packb({"seq": seq}))
        client.expire(reply, 60)

    def _wait_snapshot_child(self, block: bool) -> bool:
        """Reap the snapshot child if it has finished (or, with ``block``, when it does);
        True when there is none left."""
        if self._snapshot_child is None:
            return True
        pid, seq = self._snapshot_child
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        if done == 0:
            return False
        self._snapshot_child = None
        if os.waitstatus_to_exitcode(status) == 0:
            self._snapshot_saved(seq)
        else:
            log.warning("snapshot at seq %d failed in its child process", seq)
        return True

    def _snapshot_saved(self, seq: int) -> None:
        self.progress.snapshot_seq = seq
        self._since_snapshot = 0
        log.info("snapshot at seq %d", seq)

    def _heartbeat_if_due(self) -> None:
        wakeup = self.ex.next_wakeup()
        if wakeup is None:
            return
        seconds, micros = self.client.time()
        if seconds * 1000 + micros // 1000 >= wakeup:
            self.sequencer.submit_batch([("heartbeat", 0, 0)])

    def _control(self, entries: list[Row]) -> None:
        for eid, fields in entries:
            self._control_cursor = eid.decode()
            request = _request(fields)
            if request is None:
                continue
            if request["op"] == "snapshot" and not self.follower_alive():
                self.take_snapshot(background=True, reply=request["reply"])

    def _report(self, force: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_report < self.progress_every:
            return
        elapsed = now - self._last_report
        done = self.progress.commands - self._reported_commands
        self.progress.rate = done / elapsed if elapsed > 0 else 0.0
        self._reported_commands = self.progress.commands
        try:
            self.progress.last_input_seq = parse_id(last_id(self.client, self.keys.input))[0]
        except redis.RedisError:
            pass
        self._last_report = now
        self.on_progress(self.progress)


def _request(fields: list[bytes]) -> dict | None:
    """A control request (``{"op": ..., "reply": ...}``), or None if it is not one."""
    try:
        request = msgpack.unpackb(field(fields, b"r"))
    except Exception:  # noqa: BLE001 - anything else on the control stream is ignored
        return None
    if type(request) is not dict or type(request.get("op")) is not str:
        return None
    if type(request.get("reply")) is not str:
        return None
    return request


def request_snapshot(client: redis.Redis, keys: Keys | None = None, timeout: float = 30) -> int:
    """Ask for a snapshot now (the follower takes it if one runs, else the matcher) and wait
    for it; returns the seq it was taken at. Raises TimeoutError if nobody answers."""
    keys = keys or Keys()
    request_id = uuid.uuid4().hex
    reply = keys.reply(request_id)
    client.xadd(
        keys.control, {"r": msgpack.packb({"op": "snapshot", "reply": reply})}, maxlen=100
    )
    deadline = time.monotonic() + timeout
    got = None
    while got is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no running matcher or follower answered within {timeout:g} s "
                               f"(is `exch run --partition {keys.partition}` running?)")
        # a few seconds at a time: a blocking read never outlasts the socket's timeout
        got = client.blpop([reply], timeout=max(min(left, 5.0), 0.01))
    return int(msgpack.unpackb(got[1])["seq"])
