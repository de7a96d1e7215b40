"""Helpers for tests that run the journal against a real Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from exchange.codec import dumps_line, json_from_wire
from exchange.named import named
from journal.keys import Keys
from journal.runner import Matcher
from journal.streams import last_id, parse_id, raw
from journal.wire import decode_events


@contextmanager
def matcher_thread(client: redis.Redis, keys: Keys | None = None, **kwargs) -> Iterator[Matcher]:  # type: ignore[no-untyped-def]
    """A matcher serving in a background thread of this process, stopped on exit."""
    m = Matcher(client, keys, **kwargs)
    t = threading.Thread(target=m.run, daemon=True)
    t.start()
    try:
        yield m
    finally:
        m.stopping.set()
        t.join(timeout=30)
        assert not t.is_alive(), "matcher did not stop"


@contextmanager
def submitting(client: redis.Redis, cmds: list[tuple], chunk: int = 1000,
               pause: float = 0.02) -> Iterator[threading.Event]:  # type: ignore[type-arg]
    """Submit ``cmds`` from a background thread, ``chunk`` at a time with a pause between,
    as clients keep sending while a test kills things; the event is set when all are in."""
    from journal.sequencer import Sequencer

    done = threading.Event()

    def run() -> None:
        seq = Sequencer(client)
        for i in range(0, len(cmds), chunk):
            seq.submit(cmds[i:i + chunk])
            time.sleep(pause)
        done.set()

    t = threading.Thread(target=run)
    t.start()
    try:
        yield done
    finally:
        t.join()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60,
               pause: float = 0.02) -> None:
    """Poll ``condition`` until it holds; a bounded wait (not a measure of speed): after
    ``timeout`` seconds it raises ``TimeoutError`` saying ``what`` never happened."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout} s")
        time.sleep(pause)


def wait_caught_up(client: redis.Redis, keys: Keys | None = None, timeout: float = 60) -> int:
    """Wait until the output has an entry for the last input entry; its seq."""
    keys = keys or Keys()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last_in = last_id(client, keys.input)
        if last_in != "0-0" and last_id(client, keys.output) == last_in:
            return parse_id(last_in)[0]
        time.sleep(0.01)
    raise TimeoutError(
        f"matcher behind: in {last_id(client, keys.input)} out {last_id(client, keys.output)}"
    )


def output_lines(client: redis.Redis, keys: Keys | None = None) -> list[str]:
    """Every event on the output stream as a JSON line, in order."""
    keys = keys or Keys()
    lines = []
    for _, fields in raw(client).xrange(keys.output):
        payload = dict(zip(fields[::2], fields[1::2]))[b"e"]
        lines.extend(dumps_line(json_from_wire(ev)) for ev in decode_events(payload))
    return lines


def ref_recorded(client: redis.Redis, key: str) -> bool:
    """Whether the sequencer holds dedup key ``key`` as used: in the window (rules 3 on) or
    in the older rules' set."""
    keys = Keys()
    return client.zscore(keys.recent_refs, key) is not None or bool(
        client.sismember(keys.refs, key))


def unnumbered(cmds: list[tuple]) -> list[tuple]:
    """Commands as a client submits them: seq and ts 0, since the journal gives both."""
    return [named(c)._replace(seq=0, ts=0) for c in cmds]


def commands_in(client: redis.Redis, keys: Keys | None = None) -> int:
    """How many commands the input journal holds (an entry holds ``n``, layout 1 one)."""
    keys = keys or Keys()
    total = 0
    for _, fields in raw(client).xrange(keys.input):
        f = dict(zip(fields[::2], fields[1::2]))
        total += int(f[b"n"]) if b"n" in f else 1
    return total


def answered_ids(client: redis.Redis, keys: Keys | None = None) -> list[bytes]:
    """Ids of the output entries that complete an answer (pieces before the last left out):
    one per input entry, with its id."""
    keys = keys or Keys()
    out = []
    for eid, fields in raw(client).xrange(keys.output):
        f = dict(zip(fields[::2], fields[1::2]))
        if b"part" not in f or f[b"part"] == f[b"parts"]:
            out.append(eid)
    return out


def output_events(client: redis.Redis, keys: Keys | None = None) -> list[dict]:
    """Every event on the output stream, in order, as stream-form maps (the pieces of an
    answer in pieces joined: each event once)."""
    from journal.wire import read_entries

    keys = keys or Keys()
    return [ev for _, _, events in read_entries(raw(client).xrange(keys.output))
            for ev in events]
