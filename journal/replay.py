"""``exch replay``: rebuild the state from a snapshot and the journal, and prove the output.

With ``verify``, every regenerated output entry is compared, whole and byte for byte, with the
recorded one (its id, every field: its time, its events, and for a piece which part of how
many); the first difference is reported at the first seq whose events differ. Success means
the recorded output is exactly what the matcher's rules make of the input: the proof of
correctness after any crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from exchange import Exchange
from exchange.errors import ReplayError
from exchange.snapshot import SnapshotError, state_hash

from .apply import Record, apply_rows
from .archive import archive_of
from .collector import collector_paused
from .history import History
from .keys import Keys
from .layout import check_layout
from .signing import Verifier, load_verifier
from .snapshots import SnapshotStore
from .streams import Row, last_id, parse_id, raw
from .wire import decode_entry, decode_events, encode_events, entry_seq

CHUNK = 200
"""Input entries read at once (an entry holds up to 500 commands)."""


@dataclass
class Divergence:
    """The first difference between the recorded output and what the replay produced: at
    ``seq`` (the first seq whose events differ, or the first of the entry), in output entry
    ``entry``."""

    entry: str
    seq: int
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
    untrusted: dict[int, str] = field(default_factory=dict)
    """Snapshots passed over because of their signature: why, by seq."""

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else 0.0


def load_start(
    client: redis.Redis, keys: Keys, source: str, to: int | None,
    verifier: Verifier | None = None, untrusted: dict[int, str] | None = None,
) -> tuple[Exchange, str]:
    """The exchange to start from: ``latest`` (the newest trusted snapshot at or below
    ``to``, in Redis or archived), a seq, a snapshot file, or ``none`` (empty). Returns it
    with a description.

    A snapshot from Redis or the archive must be signed by ``verifier``'s key (default:
    ``load_verifier()``, the default public key file; ``SigningKeyError``, exit 2, if there
    is none). With ``latest`` an untrusted one is passed over (a warning, and noted in
    ``untrusted``: seq, why), as a damaged one is; a seq that names one is
    ``UntrustedSnapshot`` (exit 1). A file is the operator's own choice, trusted as named."""
    p = keys.number
    if source == "none":
        return Exchange(p), "none"
    path = Path(source)
    if source != "latest" and not source.isdigit():
        if not path.exists():
            raise ReplayError(f"{source}: not 'latest', 'none', a seq, or an existing file")
        try:
            ex = Exchange.restore(path.read_bytes(), p)
        except SnapshotError as e:
            raise ReplayError(f"{source}: {e}") from None
        return ex, f"file {source} (seq {ex.last_seq})"
    verifier = verifier or load_verifier()
    store = SnapshotStore(client, keys, verifier=verifier)
    archive = archive_of(client, keys)
    try:
        if source == "latest":
            found = store.latest(to)
            older = archive.latest_snapshot(to, verifier) if archive is not None else None
            if found is None and older is None:
                return Exchange(p), "none (no trusted snapshot stored)"
            if found is None or (older is not None and older[0] > found[0].seq):
                assert older is not None
                return Exchange.restore(older[1], p), f"seq {older[0]} (archived)"
            return Exchange.restore(found[1], p), f"seq {found[0].seq}"
        found = store.get_trusted(int(source))
        if found is not None:
            return Exchange.restore(found[1], p), f"seq {found[0].seq}"
        if archive is not None and int(source) in archive.snapshot_seqs():
            data = archive.read_snapshot(int(source), verifier)
            return Exchange.restore(data, p), f"seq {source} (archived)"
        raise ReplayError(f"no intact snapshot at seq {source} (see `exch snapshot --list`)")
    finally:
        if untrusted is not None:
            untrusted.update(store.untrusted)


def replay(
    client: redis.Redis,
    keys: Keys | None = None,
    *,
    source: str = "latest",
    to: int | None = None,
    verify: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    verifier: Verifier | None = None,
) -> ReplayResult:
    """Rebuild from ``source`` up to seq ``to`` (default: the last input entry the output
    answers in full, the last thing the matcher committed); with ``verify``, compare with
    the recorded output. A snapshot is used only if signed by ``verifier``'s key (see
    ``load_start``): a forged one, whatever its hash, never becomes the starting state.

    The cyclic garbage collector is off meanwhile, as in the matcher: the core makes no
    cyclic garbage, and a collector that walks a state of millions of objects again and
    again only costs time."""
    with collector_paused():
        return _replay(raw(client), keys or Keys(), source, to, verify, on_progress, verifier)


def answered(client: redis.Redis, keys: Keys) -> tuple[bytes, int]:
    """The id of the last input entry whose answer the output holds in full, and its last
    seq ((b"0-0", 0) if none): an answer in pieces counts once its last piece is in."""
    follows = last_id(client, keys.output)
    if follows == "0-0":
        return b"0-0", 0
    below = client.xrevrange(keys.input, max=follows, count=1)
    if not below:
        return b"0-0", 0
    return below[0][0], parse_id(below[0][0])[0]


def _replay(
    client: redis.Redis,
    keys: Keys,
    source: str,
    to: int | None,
    verify: bool,
    on_progress: Callable[[int, int], None] | None,
    verifier: Verifier | None,
) -> ReplayResult:
    check_layout(client, keys)
    _, last_answered = answered(client, keys)
    end = last_answered if to is None else to
    if verify and end > last_answered:
        raise ReplayError(f"cannot verify up to {end}: the output answers up to {last_answered}")
    untrusted: dict[int, str] = {}
    ex, described = load_start(client, keys, source, end, verifier, untrusted)
    if ex.last_seq > end:
        raise ReplayError(f"the snapshot is at seq {ex.last_seq}, after --to {end}")
    start_seq = ex.last_seq
    began = time.perf_counter()
    history = History(client, keys)
    walk = _Walk(history, ex, verify, f"({start_seq}-0" if start_seq else "-")
    while end and walk.divergence is None:
        rows = history.xrange("in", min=walk.lower, max=f"{end}-{MAX_SUB}", count=CHUNK)
        if not rows:
            break
        walk.entries(rows)
        if on_progress is not None:
            on_progress(ex.last_seq - start_seq, ex.last_seq - start_seq)
    if walk.divergence is None and ex.last_seq < end:
        walk.partial(end)
    seconds = time.perf_counter() - began
    return ReplayResult(
        snapshot=described,
        from_seq=start_seq,
        to_seq=ex.last_seq,
        commands=ex.last_seq - start_seq,
        seconds=seconds,
        state_hash=state_hash(ex.snapshot()),
        verified=verify and walk.divergence is None,
        divergence=walk.divergence,
        untrusted=untrusted,
    )


MAX_SUB = "18446744073709551615"


class _Walk:
    """The replay's way through the journal: entries applied in order, and with ``verify``
    their answers compared with the recorded output as it goes."""

    def __init__(self, history: History, ex: Exchange, verify: bool, lower: str) -> None:
        self.history = history
        self.ex = ex
        self.verify = verify
        self.lower = lower
        self.out_lower = lower
        self.ts = ex.now
        self.previous = b"0-0"
        self.divergence: Divergence | None = None

    def entries(self, rows: list[Row]) -> None:
        """Apply whole input entries (and compare their answers)."""
        self.ts, _, records, self.previous = apply_rows(
            self.ex, rows, self.ts, self.previous, emit=self.verify
        )
        self.lower = "(" + rows[-1][0].decode()
        if self.verify and records:
            recorded = self.history.xrange("out", min=self.out_lower, max=records[-1][0],
                                           count=len(records) + 1)
            self.divergence = compare(records, recorded)
            self.out_lower = "(" + records[-1][0].decode()

    def partial(self, end: int) -> None:
        """Apply the commands up to seq ``end`` of the entry that holds it (a ``--to`` in the
        middle of an entry), comparing their events with the recorded answer's."""
        rows = self.history.xrange("in", min=self.lower, count=1)
        if not rows:
            return
        eid, fields = rows[0]
        last = entry_seq(eid, self.ex.last_seq)
        if not last:
            return
        self.ts, rules, cmds = decode_entry(last, fields, self.ts, self.ex.last_seq,
                                            self.ex.rules)
        if rules != self.ex.rules:
            self.ex.set_rules(rules, self.ts)
        events = []
        for cmd in cmds:
            if cmd[1] > end:
                break
            events += self.ex.apply(cmd)
        if not self.verify:
            return
        recorded = self.history.xrange("out", min=self.out_lower, max=eid)
        got: list[dict] = []
        for _, rec_fields in recorded:
            try:
                got += decode_events(_field(rec_fields, b"e") or b"")
            except Exception:  # noqa: BLE001 - not msgpack: a divergence, reported below
                self.divergence = Divergence(eid.decode(), cmds[0][1] if cmds else last,
                                             "the recorded events are not msgpack")
                return
        got = [e for e in got if type(e) is dict and e.get("seq", end + 1) <= end]
        mine = decode_events(encode_events(events))
        if got != mine:
            self.divergence = _first_difference(eid.decode(), got, mine, "different events")


def _field(fields: list[bytes], name: bytes) -> bytes | None:
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == name:
            return fields[i + 1]
    return None


def expected_fields(record: Record) -> list[bytes]:
    """The exact field list of the output entry ``record`` stands for."""
    _, ts, payload, part, parts = record
    fields = [b"ts", str(ts).encode(), b"e", payload]
    if parts != 1:
        fields += [b"part", str(part).encode(), b"parts", str(parts).encode()]
    return fields


def compare(records: list[Record], recorded: list[Row]) -> Divergence | None:
    """The first difference between the output entries a replay produced and those recorded
    in the same range, or None."""
    for i, record in enumerate(records):
        eid = record[0]
        if i < len(recorded) and recorded[i][0] == eid and \
                recorded[i][1] == expected_fields(record):
            continue  # the same bytes: nothing to decode (the common case, by far)
        mine_events = decode_events(record[2])
        first = mine_events[0]["seq"] if mine_events else parse_id(eid)[0]
        if i >= len(recorded):
            return Divergence(eid.decode(), first, "no output entry recorded for this input "
                              "entry", None, mine_events)
        rid, fields = recorded[i]
        if rid != eid:
            return Divergence(eid.decode(), first,
                              f"recorded output entry {rid.decode()} where {eid.decode()} "
                              "was due")
        want = expected_fields(record)
        if fields == want:
            continue
        payload = _field(fields, b"e")
        try:
            theirs = decode_events(payload) if payload is not None else None
        except Exception:  # noqa: BLE001 - msgpack raises several unrelated types
            return Divergence(eid.decode(), first, "the recorded events are not msgpack")
        if theirs is None:
            return Divergence(eid.decode(), first, "the recorded entry has no events")
        if theirs != mine_events or payload != record[2]:
            return _first_difference(eid.decode(), theirs, mine_events, "different events")
        names = [f.decode(errors="replace") for f in fields[::2]]
        if _field(fields, b"ts") != want[1]:
            return Divergence(eid.decode(), first, f"recorded time "
                              f"{_field(fields, b'ts')!r}, replayed {record[1]}")
        return Divergence(eid.decode(), first,
                          f"the recorded entry's fields are {names}, not "
                          f"{[f.decode() for f in want[::2]]} with these values")
    if len(recorded) > len(records):
        extra = recorded[len(records)][0]
        return Divergence(extra.decode(), parse_id(extra)[0],
                          "an output entry with no input entry")
    return None


def _first_difference(entry: str, theirs: list, mine: list, why: str) -> Divergence:
    """A divergence at the first event that differs (its seq; the recorded and replayed
    events of that seq, for people to read)."""
    for k in range(max(len(theirs), len(mine))):
        a = theirs[k] if k < len(theirs) else None
        b = mine[k] if k < len(mine) else None
        if a != b:
            seq = _seq_of(b) or _seq_of(a) or 0
            return Divergence(
                entry, seq, why,
                [e for e in theirs if _seq_of(e) == seq], [e for e in mine if _seq_of(e) == seq],
            )
    seq = _seq_of(mine[0]) if mine else 0
    return Divergence(entry, seq or 0, why + " (the same events, different bytes)")


def _seq_of(event: object) -> int | None:
    if type(event) is dict and type(event.get("seq")) is int:
        return event["seq"]
    return None
