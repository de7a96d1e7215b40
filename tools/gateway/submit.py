"""Sequencing for many concurrent requests: one sequencer call for all that are waiting.

Each partition has a thread that takes every command queued since its last call (up to the
sequencer's ``BATCH``) and sequences them in one script call: one journal entry for many
requests, as a batch file gets, instead of an entry per request. Nothing waits for a batch to
fill: a command that arrives while no call is in flight is sent at once, alone; those that
arrive during a call go together in the next. The queue keeps arrival order, so one client's
commands to one partition are journaled in the order it sent them.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import redis

from journal.keys import Keys
from journal.sequencer import Sequencer


class BatchingSubmitter:
    """Sequences the commands of many requests into one partition, batching those that
    wait (see the module docstring)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.sequencer = Sequencer(client, keys)
        self._queue: queue.SimpleQueue[tuple[list[tuple], Future] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"exch-gateway-submit-{keys.partition}")
        self.calls = 0
        """Sequencer calls made (for the benchmark: requests per call)."""
        self.commands = 0
        self._thread.start()

    def submit(self, cmds: list[tuple]) -> Future:
        """Queue ``cmds`` (core tuples, together in one call); the future's result is their
        answers from ``Sequencer.submit_answers`` (seq, or minus the original seq of a
        duplicate)."""
        done: Future = Future()
        if len(cmds) > self.sequencer.BATCH:
            done.set_exception(ValueError(f"at most {self.sequencer.BATCH} commands at once"))
            return done
        self._queue.put((cmds, done))
        return done

    def close(self) -> None:
        """Stop after the calls already queued."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        get, limit = self._queue.get, self.sequencer.BATCH
        carried: tuple[list[tuple], Future] | None = None
        while True:
            item = carried or get()
            carried = None
            if item is None:
                return
            waiting = [item]
            size = len(item[0])
            stop = False
            while size < limit:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                if size + len(more[0]) > limit:
                    carried = more
                    break
                waiting.append(more)
                size += len(more[0])
            cmds = [c for batch, _ in waiting for c in batch]
            try:
                answers = self.sequencer.submit_answers(cmds)
            except BaseException as e:  # noqa: BLE001 - every waiter learns of it
                for _, done in waiting:
                    done.set_exception(e)
            else:
                self.calls += 1
                self.commands += len(cmds)
                at = 0
                for batch, done in waiting:
                    done.set_result(answers[at:at + len(batch)])
                    at += len(batch)
            if stop:
                return
