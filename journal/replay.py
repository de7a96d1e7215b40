"""``exch replay``: rebuild the state from a snapshot and the journal, and prove the output.

With ``verify``, every regenerated output entry is compared, byte for byte, with the recorded
one (its id, its time and its events); the first difference is reported. Success means the
recorded output is exactly what the matcher's rules make of the input: the proof of
correctness after any crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from exchange import Exchange
from exchange.errors import ReplayError
from exchange.snapshot import SnapshotError, state_hash

from .collector import collector_paused
from .keys import Keys
from .runner import replay_rows
from .snapshots import SnapshotStore
from .streams import field, last_id, parse_id, raw
from .wire import decode_events

CHUNK = 10_000


@dataclass
class Divergence:
    """The first output entry that differs from what the replay produced."""

    entry: str
    why: str
    recorded: list[dict] | None = None
    replayed: list[dict] | None = None


@dataclass
class ReplayResult:
    """What a replay did and found."""

    snapshot: str
    from_seq: int
    to_seq: int
    commands: int
    seconds: float
    state_hash: str
    verified: bool
    divergence: Divergence | None = None

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else 0.0


def load_start(
    client: redis.Redis, keys: Keys, source: str, to: int | None
) -> tuple[Exchange, str]:
    """The exchange to start from: ``latest`` (newest snapshot at or below ``to``), a seq, a
    snapshot file, or ``none`` (empty). Returns it with a description."""
    store = SnapshotStore(client, keys)
    if source == "none":
        return Exchange(), "none"
    if source == "latest":
        found = store.latest(to)
        if found is None:
            return Exchange(), "none (no snapshot stored)"
        return Exchange.restore(found[1]), f"seq {found[0].seq}"
    if source.isdigit():
        found = store.get(int(source))
        if found is None:
            raise ReplayError(f"no intact snapshot at seq {source} (see `exch snapshot --list`)")
        return Exchange.restore(found[1]), f"seq {found[0].seq}"
    path = Path(source)
    if not path.exists():
        raise ReplayError(f"{source}: not 'latest', 'none', a seq, or an existing file")
    try:
        ex = Exchange.restore(path.read_bytes())
    except SnapshotError as e:
        raise ReplayError(f"{source}: {e}") from None
    return ex, f"file {source} (seq {ex.last_seq})"


def replay(
    client: redis.Redis,
    keys: Keys | None = None,
    *,
    source: str = "latest",
    to: int | None = None,
    verify: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Rebuild from ``source`` up to input seq ``to`` (default: the last output entry, the
    last thing the matcher committed); with ``verify``, compare with the recorded output.

    The cyclic garbage collector is off meanwhile, as in the matcher: the core makes no
    cyclic garbage, and a collector that walks a state of millions of objects again and
    again only costs time."""
    with collector_paused():
        return _replay(client, keys, source, to, verify, on_progress)


def _replay(
    client: redis.Redis,
    keys: Keys | None,
    source: str,
    to: int | None,
    verify: bool,
    on_progress: Callable[[int, int], None] | None,
) -> ReplayResult:
    keys = keys or Keys()
    client = raw(client)
    last_out = parse_id(last_id(client, keys.output))[0]
    end = last_out if to is None else to
    if verify and end > last_out:
        raise ReplayError(f"cannot verify up to {end}: the output ends at {last_out}")
    ex, described = load_start(client, keys, source, end)
    if ex.last_seq > end:
        raise ReplayError(f"the snapshot is at seq {ex.last_seq}, after --to {end}")
    start_seq = ex.last_seq
    ts = ex.now
    commands = 0
    began = time.perf_counter()
    lower = f"({start_seq}-0" if start_seq else "-"
    upper = f"{end}-" + "18446744073709551615" if end else "0-0"
    divergence = None
    while end and divergence is None:
        rows = client.xrange(keys.input, min=lower, max=upper, count=CHUNK)
        if not rows:
            break
        ts, _, produced = replay_rows(ex, rows, ts, emit=verify)
        if verify:
            recorded = client.xrange(keys.output, min=lower, max=rows[-1][0], count=len(rows) + 1)
            divergence = _compare(produced, recorded)
        commands += len(rows)
        lower = "(" + rows[-1][0].decode()
        if on_progress is not None:
            on_progress(commands, parse_id(rows[-1][0])[0] - start_seq)
    seconds = time.perf_counter() - began
    return ReplayResult(
        snapshot=described,
        from_seq=start_seq,
        to_seq=ex.last_seq,
        commands=commands,
        seconds=seconds,
        state_hash=state_hash(ex.snapshot()),
        verified=verify and divergence is None,
        divergence=divergence,
    )


def _compare(
    produced: list[tuple[bytes, int, bytes]], recorded: list[tuple[bytes, list[bytes]]]
) -> Divergence | None:
    for i, (eid, ts, payload) in enumerate(produced):
        if i >= len(recorded):
            return Divergence(eid.decode(), "no output entry recorded for this input entry",
                              None, decode_events(payload))
        rid, fields = recorded[i]
        if rid != eid:
            return Divergence(
                eid.decode(), f"recorded output entry {rid.decode()} where {eid.decode()} was due"
            )
        got = field(fields, b"e")
        if got != payload:
            return Divergence(
                eid.decode(), "different events",
                decode_events(got) if got is not None else None, decode_events(payload),
            )
        if field(fields, b"ts") != str(ts).encode():
            recorded_ts = field(fields, b"ts")
            return Divergence(eid.decode(), f"recorded time {recorded_ts!r}, replayed {ts}")
    if len(recorded) > len(produced):
        extra = recorded[len(produced)][0].decode()
        return Divergence(extra, "an output entry with no input entry")
    return None
