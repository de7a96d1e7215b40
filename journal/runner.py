"""``exch run``: the matcher service of one partition.

The loop, in one breath: take the lease (or wait as a standby while another matcher holds
it); rebuild the state from the newest snapshot at or below the last output entry plus the
input after it, without emitting; then follow the input stream, apply each command, and
commit the events of each batch with one fenced script call (output entry id = input seq).
Snapshots every ``snapshot_every`` commands, on request and on a clean stop.

Why nothing can be corrupted:
- only the lease holder writes, and the commit script checks both the lease and that the
  output ends exactly where this matcher believes it does, before writing anything;
- a crash anywhere loses only uncommitted work, which the next matcher recomputes from the
  journal: the matcher is a pure function of the input, so the bytes are the same;
- a commit retried after a dropped connection is recognised (``ALREADY``), never doubled;
- a matcher that finds itself fenced or without its lease goes back to standby and rebuilds
  from Redis, never from what it had in memory.

Time moves only through the journal: when orders wait out an in-play bet delay and nothing
arrives, the matcher sequences a ``heartbeat`` command (journaled like any other), so the
delayed orders reach the book on time and a replay sees the same times.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import msgpack  # type: ignore[import-untyped]
import redis

from exchange import Exchange
from exchange.errors import Fenced, LeaseLost

from . import faults
from .collector import collector_paused
from .keys import Keys
from .lease import Lease
from .scripts import script
from .sequencer import Sequencer
from .snapshots import SnapshotStore
from .streams import Row, last_id, parse_id, raw, stream_items
from .wire import decode_input, encode_events, foreign_events

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


def replay_rows(
    ex: Exchange, rows: list[Row], ts: int, emit: bool
) -> tuple[int, int, list[tuple[bytes, int, bytes]]]:
    """Apply raw input rows to ``ex`` in order; return the last envelope time, the number of
    events and, with ``emit``, the output entries (id, ts, events payload) they produce. This
    one function is both the live path and the replay path, so they cannot drift apart."""
    out: list[tuple[bytes, int, bytes]] = []
    append = out.append
    apply = ex.apply
    n = 0
    for eid, fields in rows:
        seq = int(eid[:-2]) if eid[-2:] == b"-0" else 0
        if seq > ex.last_seq:
            ts, cmd = decode_input(eid, fields, ts, seq)
            events = apply(cmd)
        else:
            events = foreign_events(parse_id(eid)[0])
        n += len(events)
        if emit:
            append((eid, ts, encode_events(events)))
    return ts, n, out


class Committer:
    """Commits batches in order on its own thread, so that Redis appends batch N while the
    matcher reads and matches batch N+1 (a thread blocked on a socket releases the GIL).

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

    def put(self, args: list[object], last: str, rows: int) -> None:
        """Queue a batch's commit (blocks while ``depth`` commits are waiting)."""
        self.check()
        self.queue.put((args, last, rows))

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
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                if self.error is not None:
                    continue
                args, last, rows = item
                try:
                    result = m._commit(keys=[m.keys.output, m.keys.lease], args=args)
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
            finally:
                self.queue.task_done()


class Matcher:
    """The matcher service of one partition (see the module docstring)."""

    LEASE_MS = 3000
    """A lease not renewed for this long passes to a standby: a killed matcher's successor
    takes over within about this time."""

    BATCH = 2000
    """Most input entries read and committed at once."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys | None = None,
        *,
        snapshot_every: int = 100_000,
        batch: int | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        progress_every: float = 0.5,
    ) -> None:
        self.client = raw(client)
        self.keys = keys or Keys()
        self.snapshot_every = snapshot_every
        self.batch = batch or self.BATCH
        self.lease = Lease(self.client, self.keys.lease, self.LEASE_MS)
        self.token = self.lease.token
        self.snapshots = SnapshotStore(self.client, self.keys)
        self.sequencer = Sequencer(self.client, self.keys)
        self._commit = script(self.client, "commit")
        self.progress = Progress(holder=self.token)
        self.on_progress = on_progress
        self.progress_every = progress_every
        self.stopping = threading.Event()
        self.ex = Exchange()
        self._follows = "0-0"
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

    # ---------------------------------------------------------------- recovery

    def recover(self) -> None:
        """Rebuild the state from the newest snapshot at or below the last output entry and
        the input after it, without emitting; then continue after the last output entry."""
        k = self.keys
        self.progress.state = "recovering"
        self._report(force=True)
        follows = last_id(self.client, k.output)
        last_out = parse_id(follows)[0]
        found = self.snapshots.latest(last_out)
        if found is not None:
            info, data = found
            self.ex = Exchange.restore(data)
            self.progress.snapshot_seq = info.seq
            start = f"({info.seq}-0"
        else:
            self.ex = Exchange()
            start = "-"
        self._ts = self.ex.now
        replayed = 0
        if last_out:
            while True:
                rows = self.client.xrange(k.input, min=start, max=follows, count=10_000)
                if not rows:
                    break
                self._ts, _, _ = replay_rows(self.ex, rows, self._ts, emit=False)
                replayed += len(rows)
                if faults.ACTIVE:
                    faults.reached("recovering")
                # a long replay must not let the lease lapse, or a standby would take over
                # (safely: fencing holds) and the two would keep displacing each other
                if not self.lease.renew():
                    raise LeaseLost(f"lease taken by {self.holder() or 'nobody'} while recovering")
                start = "(" + rows[-1][0].decode()
                self.progress.replayed = replayed
                self._report()
        self._follows = follows
        self._control_cursor = last_id(self.client, k.control)
        self._since_snapshot = 0
        self.progress.last_seq = last_out
        gc.collect()
        log.info(
            "recovered at seq %d (snapshot %s, %d commands replayed)",
            last_out, found[0].seq if found else "none", replayed,
        )

    # ---------------------------------------------------------------- the loop

    def run(self) -> None:
        """Serve until ``stopping`` is set: standby, recover, follow; again after a fence."""
        while not self.stopping.is_set():
            if not self.acquire():
                self.progress.state = "standby"
                self.progress.holder = self.holder()
                self._report()
                self.stopping.wait(0.25)
                continue
            self.progress.holder = self.token
            try:
                self.recover()
                self._follow()
            except (LeaseLost, Fenced) as e:
                log.warning("%s: back to standby", e)
                self.progress.state = "standby"
                continue
            if self.stopping.is_set():
                self._shutdown()
        self.progress.state = "stopped"
        self._report(force=True)

    def _shutdown(self) -> None:
        try:
            if self.lease.renew():
                self.take_snapshot()
        finally:
            self.release()

    def _follow(self) -> None:
        k = self.keys
        client = self.client
        with collector_paused():
            self.committer = Committer(self)
            try:
                self.progress.state = "running"
                last_renew = time.monotonic()
                while not self.stopping.is_set():
                    block = 100 if self.ex.next_wakeup() is not None else 500
                    reply = client.xread(
                        {k.input: self._follows, k.control: self._control_cursor},
                        count=self.batch,
                        block=block,
                    )
                    rows: list[Row] = []
                    for name, entries in stream_items(reply):
                        if name.endswith(b":control"):
                            self._control(entries)
                        else:
                            rows = entries
                    now = time.monotonic()
                    if self._snapshot_child is not None:
                        self._wait_snapshot_child(block=False)
                    if rows:
                        self._process(rows)
                        last_renew = now
                    else:
                        if now - last_renew > self.LEASE_MS / 3000:
                            if not self.lease.renew():
                                raise LeaseLost(f"lease taken by {self.holder() or 'nobody'}")
                            last_renew = now
                        self._heartbeat_if_due()
                    self._report()
                self.committer.drain()
            finally:
                self.committer.close()

    def _process(self, rows: list[Row]) -> None:
        ex = self.ex
        if faults.ACTIVE:
            faults.reached("after-read")
        self._ts, events, out = replay_rows(ex, rows, self._ts, emit=True)
        if faults.ACTIVE:
            faults.reached("before-commit")
        args: list[object] = [self.token, self.LEASE_MS, self._follows, len(out)]
        for eid, ts, payload in out:
            args.append(eid)
            args.append(ts)
            args.append(payload)
        last = rows[-1][0].decode()
        self.committer.put(args, last, len(rows))
        self._follows = last
        p = self.progress
        p.commands += len(rows)
        p.events += events
        p.batches += 1
        self._since_snapshot += len(rows)
        if self._since_snapshot >= self.snapshot_every:
            self.take_snapshot(background=True)

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
        seq = parse_id(self._follows)[0]
        if seq == 0:
            if reply:
                self._answer(self.client, reply, 0)
            return 0
        if faults.ACTIVE:
            faults.reached("snapshot")
        if not background:
            self._wait_snapshot_child(block=True)
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
            pool = self.client.connection_pool
            client = redis.Redis(connection_pool=redis.ConnectionPool(
                connection_class=pool.connection_class, **pool.connection_kwargs))
            SnapshotStore(client, self.keys).save(seq, self.ex.snapshot())
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
            try:
                request = msgpack.unpackb(dict(zip(fields[::2], fields[1::2]))[b"r"])
                op, reply = request["op"], request["reply"]
            except Exception:
                continue
            if op == "snapshot":
                self.take_snapshot(background=True, reply=reply)

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


def request_snapshot(client: redis.Redis, keys: Keys | None = None, timeout: float = 30) -> int:
    """Ask the running matcher for a snapshot and wait for it; returns the seq it was taken
    at. Raises TimeoutError if no matcher answers."""
    keys = keys or Keys()
    request_id = uuid.uuid4().hex
    reply = keys.reply(request_id)
    client.xadd(
        keys.control, {"r": msgpack.packb({"op": "snapshot", "reply": reply})}, maxlen=100
    )
    got = client.blpop([reply], timeout=timeout)
    if got is None:
        raise TimeoutError("no running matcher answered (is `exch run` running?)")
    return int(msgpack.unpackb(got[1])["seq"])
