"""The archive: the journal's history in immutable, checksummed files, so Redis holds a window.

One folder per partition, ``<dir>/p<partition>/``::

    in/<first seq>-<last seq>.seg     input entries, as Redis held them
    out/<first seq>-<last seq>.seg    their answers (every piece), as Redis held them
    snapshots/<seq>.snap              snapshots that read back whole, hashed right and were
                                      signed by the trusted key (the signature kept with them)

(seqs in 20 digits, so names sort). An ``in`` and an ``out`` segment of one name cover the
same input entries: ids after ``<first seq - 1>-0`` up to ``<last seq>-0``; an answer's
pieces never straddle two segments, because a cut is made only at an input entry's id. A
range is archived once both files exist; each file is written under a temporary name,
fsynced, renamed and its folder fsynced, so a crash leaves either nothing or a whole file, and
the next run removes what it left half done and goes on. The format is documented in
docs/archive.md: consecutive msgpack objects, a header map, one ``[id, [field, value, ...]]``
array per entry (bytes exactly as Redis held them) and a trailer map with the SHA-256 of
every byte before it, readable with any msgpack library.

Redis keeps, in ``exch:{p}:archive``, the folder, how far it reaches and, once ``exch
compact`` trimmed the streams, below which id they were trimmed (``journal.history`` reads
the journal as one from both).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import msgpack  # type: ignore[import-untyped]
import redis

from exchange.errors import ArchiveError, UntrustedSnapshot
from exchange.snapshot import readable, state_hash

from . import faults
from .keys import Keys
from .layout import check_layout
from .lease import Lease
from .signing import Verifier
from .snapshots import SnapshotInfo, SnapshotStore
from .streams import Row, parse_id, raw

log = logging.getLogger("exch.archive")

FORMAT_VERSION = 1
SEGMENT_BYTES = 64 << 20
"""Bytes of input payload after which a segment is cut (its answers are about as big)."""

Id = tuple[int, int]


def default_dir() -> Path:
    """``$EXCH_ARCHIVE``, else ``archive`` in this user's exchange folder (``exch_home``)."""
    explicit = os.environ.get("EXCH_ARCHIVE")
    if explicit:
        return Path(explicit)
    from .server import exch_home

    return exch_home() / "archive"


@dataclass(frozen=True)
class Segment:
    """One segment file: the input entries (or their answers) after ``<first - 1>-0`` up to
    ``<last>-0``."""

    stream: str
    first: int
    last: int
    path: Path

    @property
    def after(self) -> Id:
        return (self.first - 1, 0)

    @property
    def through(self) -> Id:
        return (self.last, 0)

    @property
    def name(self) -> str:
        return f"{self.stream}/{self.path.name}"


def segment_name(first: int, last: int) -> str:
    """The file name of the segment holding seqs ``first`` .. ``last``."""
    return f"{first:020d}-{last:020d}.seg"


def _parse_name(stream: str, path: Path) -> Segment | None:
    stem = path.name[:-4] if path.name.endswith(".seg") else ""
    first, _, last = stem.partition("-")
    if not (first.isdigit() and last.isdigit()):
        return None
    return Segment(stream, int(first), int(last), path)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, chunks: Iterable[bytes]) -> None:
    """Write ``path`` whole or not at all: a temporary name, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    if faults.ACTIVE:
        faults.reached("archive-renaming")
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Archive:
    """The archive folder of one partition: writes and reads segments and snapshots."""

    def __init__(self, root: str | Path, partition: str = "0") -> None:
        self.root = Path(root).resolve()
        self.partition = partition
        self.folder = self.root / f"p{partition}"
        self._cache: dict[Path, tuple[list[Id], list[Row]]] = {}

    # ---------------------------------------------------------------- listing

    def segments(self, stream: str) -> list[Segment]:
        """The segments of ``stream`` ("in" or "out"), in order."""
        folder = self.folder / stream
        if not folder.is_dir():
            return []
        found = [_parse_name(stream, p) for p in folder.iterdir() if not p.name.startswith(".")]
        return sorted((s for s in found if s is not None), key=lambda s: s.first)

    def through(self) -> int:
        """The last seq of the archived ranges (both files present, chained from the start),
        0 if none. Only the newest range may lack its answers (a run stopped between the two
        files); anything else missing is an ``ArchiveError`` naming it."""
        ins, outs = self.segments("in"), self.segments("out")
        have_out = {s.path.name for s in outs}
        have_in = {s.path.name for s in ins}
        last = 0
        for i, s in enumerate(ins):
            if s.first != last + 1:
                gap = segment_name(last + 1, s.first - 1)
                raise ArchiveError(f"archive segment missing: {self.folder}/in/{gap} (the "
                                   f"archive jumps from seq {last} to {s.first})")
            if s.path.name not in have_out:
                if i == len(ins) - 1:
                    break  # the newest range, its answers not yet written: not archived
                raise ArchiveError(f"archive segment missing: {self.folder}/out/{s.path.name}")
            last = s.last
        for s in outs:
            if s.path.name not in have_in:
                raise ArchiveError(f"archive segment missing: {self.folder}/in/{s.path.name}")
        return last

    def tidy(self) -> int:
        """Remove what a stopped run left half done, and nothing else: temporary files, and
        the newest input segment if its answers were not written (it is written again, the
        same bytes). The archived seq (``through``); an ``ArchiveError`` before anything is
        removed if the archive has a hole."""
        through = self.through()
        for stream in ("in", "out", "snapshots"):
            folder = self.folder / stream
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.name.startswith(".") and p.name.endswith(".tmp"):
                        p.unlink()
        for s in self.segments("in"):
            if s.first > through:
                s.path.unlink()
        return through

    # ---------------------------------------------------------------- writing

    def write(self, first: int, last: int, inputs: list[Row], outputs: list[Row]) -> None:
        """Archive seqs ``first`` .. ``last``: their input entries, then their answers."""
        for stream, rows in (("in", inputs), ("out", outputs)):
            if stream == "out" and faults.ACTIVE:
                faults.reached("archive-between-files")
            folder = self.folder / stream
            folder.mkdir(parents=True, exist_ok=True)
            _write_atomically(folder / segment_name(first, last),
                              self._encode(stream, first, last, rows))

    def _encode(self, stream: str, first: int, last: int, rows: list[Row]) -> list[bytes]:
        packer = msgpack.Packer(use_bin_type=True)
        header = {
            "format": "exch-segment", "version": FORMAT_VERSION, "partition": self.partition,
            "stream": stream, "after": f"{first - 1}-0", "through": f"{last}-0",
            "first_seq": first, "last_seq": last, "entries": len(rows),
        }
        digest = hashlib.sha256()
        chunks = [packer.pack(header)]
        for eid, fields in rows:
            chunks.append(packer.pack([bytes(eid), [bytes(f) for f in fields]]))
        for c in chunks:
            digest.update(c)
        chunks.append(packer.pack({"sha256": digest.hexdigest()}))
        return chunks

    # ---------------------------------------------------------------- reading

    def read(self, segment: Segment) -> list[Row]:
        """The entries of ``segment``, checked against its header and checksum."""
        return self._load(segment)[1]

    def _load(self, segment: Segment) -> tuple[list[Id], list[Row]]:
        cached = self._cache.get(segment.path)
        if cached is not None:
            return cached
        try:
            data = segment.path.read_bytes()
        except OSError as e:
            raise ArchiveError(f"archive segment {segment.path}: {e.strerror}") from None
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(data) + 1)
        unpacker.feed(data)
        try:
            header = next(unpacker)
            body: list = list(unpacker)
        except Exception as e:  # noqa: BLE001 - msgpack raises several unrelated types
            raise ArchiveError(f"archive segment {segment.path} is damaged: {e}") from None
        trailer = body.pop() if body else None
        bad = self._check(segment, data, header, trailer, body)
        if bad:
            raise ArchiveError(f"archive segment {segment.path} is damaged: {bad}")
        rows: list[Row] = [(r[0], r[1]) for r in body]
        ids = [parse_id(r[0]) for r in rows]
        self._cache = {segment.path: (ids, rows)}  # one at a time: readers walk in order
        return ids, rows

    @staticmethod
    def _check(segment: Segment, data: bytes, header: object, trailer: object,
               body: list) -> str:
        if type(header) is not dict or header.get("format") != "exch-segment":
            return "no segment header"
        if type(trailer) is not dict or type(trailer.get("sha256")) is not str:
            return "no trailer (cut short?)"
        tail = len(msgpack.packb(trailer, use_bin_type=True))
        if hashlib.sha256(data[:len(data) - tail]).hexdigest() != trailer["sha256"]:
            return "its checksum does not match its bytes"
        if (header.get("first_seq"), header.get("last_seq"), header.get("stream")) != (
                segment.first, segment.last, segment.stream):
            return "its header is not for this name"
        if header.get("entries") != len(body):
            return f"{len(body)} entries where the header says {header.get('entries')}"
        for r in body:
            if not (type(r) is list and len(r) == 2 and type(r[0]) is bytes
                    and type(r[1]) is list):
                return "an entry that is not [id, fields]"
        return ""

    def rows(self, stream: str, low: Id, high: Id, count: int | None = None) -> list[Row]:
        """Entries of ``stream`` with ids from ``low`` to ``high`` (both included), at most
        ``count``. Raises ``ArchiveError`` where a segment the range needs is missing."""
        out: list[Row] = []
        expected = 1
        for s in self.segments(stream):
            if s.first != expected:
                raise ArchiveError(
                    f"archive segment missing: {self.folder}/{stream}/"
                    f"{segment_name(expected, s.first - 1)}")
            expected = s.last + 1
            if s.through < low:
                continue
            if s.after >= high:
                break
            ids, rows = self._load(s)
            from bisect import bisect_left, bisect_right

            i, j = bisect_left(ids, low), bisect_right(ids, high)
            out += rows[i:j]
            if count is not None and len(out) >= count:
                return out[:count]
        return out

    # ---------------------------------------------------------------- snapshots

    def snapshot_path(self, seq: int) -> Path:
        return self.folder / "snapshots" / f"{seq:020d}.snap"

    def snapshot_seqs(self) -> list[int]:
        """The seqs of the archived snapshots, oldest first."""
        folder = self.folder / "snapshots"
        if not folder.is_dir():
            return []
        return sorted(int(p.stem) for p in folder.iterdir()
                      if p.suffix == ".snap" and p.stem.isdigit())

    def write_snapshot(self, info: SnapshotInfo, data: bytes) -> None:
        """Archive the state bytes ``data`` of the snapshot ``info`` (its seq, hash, time,
        and its signature and key id, so the archived copy stays checkable)."""
        folder = self.folder / "snapshots"
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "format": "exch-snapshot", "version": FORMAT_VERSION, "partition": self.partition,
            "seq": info.seq, "hash": info.hash, "size": len(data),
            "created_ms": info.created_ms, "signature": info.signature,
            "key_id": info.key_id, "encoding": "zlib", "state": zlib.compress(data, 1),
        }
        _write_atomically(self.snapshot_path(info.seq),
                          [msgpack.packb(record, use_bin_type=True)])

    def read_snapshot(self, seq: int, verifier: Verifier) -> bytes:
        """The state bytes of the archived snapshot at ``seq``, checked against its hash
        (``ArchiveError`` if damaged) and its signature by ``verifier``'s key, for this
        partition and seq (``UntrustedSnapshot`` if not trusted)."""
        path = self.snapshot_path(seq)
        try:
            record = msgpack.unpackb(path.read_bytes(), raw=False)
            data = zlib.decompress(record["state"])
            ok = state_hash(data) == record["hash"] and record["seq"] == seq
            signature, signer = record.get("signature", ""), record.get("key_id", "")
        except OSError as e:
            raise ArchiveError(f"archived snapshot {path}: {e.strerror}") from None
        except Exception as e:  # noqa: BLE001 - not msgpack, not zlib, fields missing
            raise ArchiveError(f"archived snapshot {path} is damaged: {e}") from None
        if not ok:
            raise ArchiveError(f"archived snapshot {path} is damaged: its hash does not match")
        why = verifier.check(self.partition, seq, record["hash"], len(data),
                             signature if type(signature) is str else "",
                             signer if type(signer) is str else "")
        if why is not None:
            raise UntrustedSnapshot(f"archived snapshot {path} (seq {seq}) is not trusted: "
                                    f"{why}")
        return data

    def latest_snapshot(self, at_most: int | None,
                        verifier: Verifier) -> tuple[int, bytes] | None:
        """The newest archived snapshot at or below ``at_most`` (any if None) that reads back
        whole, is signed by ``verifier``'s key and that this version can restore. One passed
        over for its signature is warned about, naming it."""
        for seq in reversed(self.snapshot_seqs()):
            if at_most is not None and seq > at_most:
                continue
            try:
                data = self.read_snapshot(seq, verifier)
            except ArchiveError:
                continue
            except UntrustedSnapshot as e:
                log.warning("%s; passed over", e)
                continue
            if readable(data):
                return seq, data
        return None


# -------------------------------------------------------------------- the record in Redis


def record(client: redis.Redis, keys: Keys) -> dict[str, str]:
    """The partition's archive record (``Keys.archive``), as text."""
    got = client.hgetall(keys.archive)
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                                                           else v) for k, v in got.items()}


def archive_of(client: redis.Redis, keys: Keys, root: str | Path | None = None) -> Archive | None:
    """The partition's archive: in ``root`` if given, else where the record says, else None."""
    if root is None:
        found = client.hget(keys.archive, "dir")
        if not found:
            return None
        root = found.decode() if isinstance(found, bytes) else found
    return Archive(root, keys.partition)


# -------------------------------------------------------------------- the service


@dataclass
class ArchiveReport:
    """What one pass of the archiver did."""

    through: int = 0
    """Every input entry up to this seq, and its answer, is in the archive."""
    segments: int = 0
    entries: int = 0
    bytes: int = 0
    snapshots: int = 0
    snapshot_through: int = 0
    skipped_snapshots: list[int] | None = None
    """Snapshots in Redis that did not read back whole or are not trusted (never archived)."""
    untrusted_snapshots: dict[int, str] | None = None
    """Of those, the ones passed over for their signature: why, by seq."""


class Archiver:
    """Copies one partition's answered journal and its snapshots to an ``Archive``."""

    CHUNK = 200
    """Input entries read at once."""

    LEASE_MS = 60_000
    """The archiver's lease, renewed at every segment: another archiver may start this long
    after one on another host was killed, at once after one on this host (its process is
    gone), and at once after one that ended (it gives the lease up)."""

    def __init__(self, client: redis.Redis, archive: Archive, keys: Keys | None = None, *,
                 segment_bytes: int = SEGMENT_BYTES,
                 on_segment: Callable[[ArchiveReport], None] | None = None,
                 verifier: Verifier | None = None) -> None:
        """``verifier``: the public key a snapshot must be signed by to be archived (default:
        the default public key file, read when the first snapshot is archived)."""
        self.client = raw(client)
        self.verifier = verifier
        self.keys = keys or Keys(archive.partition)
        if self.keys.partition != archive.partition:
            raise ArchiveError(f"the archive of partition {archive.partition} cannot hold "
                               f"partition {self.keys.partition}'s journal")
        self.archive = archive
        self.segment_bytes = segment_bytes
        self.on_segment = on_segment
        self.lease = Lease(self.client, self.keys.archiver, self.LEASE_MS)

    def claim(self) -> int:
        """Check that the folder is this partition's archive (the one Redis names, reaching
        at least as far as Redis says), then tidy it and record it. The archived seq. Only
        the holder of the archiver's lease may call it."""
        check_layout(self.client, self.keys)
        rec = record(self.client, self.keys)
        if rec.get("dir") and Path(rec["dir"]) != self.archive.root:
            raise ArchiveError(
                f"partition {self.keys.partition} is archived in {rec['dir']}, not "
                f"{self.archive.root}: use that folder (--dir or EXCH_ARCHIVE)")
        through = self.archive.through()
        if int(rec.get("through") or 0) > through:
            raise ArchiveError(
                f"{self.archive.folder} reaches seq {through}, but Redis records the archive "
                f"through seq {rec['through']}: segments are missing from this folder")
        through = self.archive.tidy()
        self.client.hset(self.keys.archive, mapping={"dir": str(self.archive.root),
                                                     "through": through})
        return through

    def _hold(self) -> None:
        """Take (or keep) the archiver's lease: one archiver per partition, or two would cut
        different segments of the same seqs."""
        if not self.lease.take_from_the_dead():
            raise ArchiveError(f"another `exch archive` runs on partition "
                               f"{self.keys.partition} ({self.lease.holder()})")

    def run_once(self) -> ArchiveReport:
        """Archive everything answered so far, and every intact, trusted snapshot."""
        from .replay import answered

        self._hold()
        through = self.claim()
        report = ArchiveReport(through=through)
        _, end = answered(self.client, self.keys)
        while through < end:
            self._hold()
            first, last, inputs = self._next_inputs(through, end)
            if not inputs:
                break
            outputs = self._outputs(first, last)
            self.archive.write(first, last, inputs, outputs)
            self.client.hset(self.keys.archive, "through", last)
            through = last
            report.through = last
            report.segments += 1
            report.entries += len(inputs)
            report.bytes += sum(len(v) for _, f in inputs for v in f)
            if self.on_segment is not None:
                self.on_segment(report)
        self._snapshots(report)
        return report

    def _next_inputs(self, through: int, end: int) -> tuple[int, int, list[Row]]:
        """The input entries of the next segment: after ``through``, up to ``end``, cut at
        the first entry id ``<seq>-0`` once ``segment_bytes`` are reached."""
        rows: list[Row] = []
        size = 0
        cut = 0  # rows[:cut] end at an id with sub 0
        lower = f"({through}-0"
        while True:
            got = self.client.xrange(self.keys.input, min=lower, max=f"{end}-0",
                                     count=self.CHUNK)
            if not got:
                break
            for eid, fields in got:
                rows.append((eid, fields))
                size += sum(len(v) for v in fields)
                if eid.endswith(b"-0"):
                    cut = len(rows)
                    if size >= self.segment_bytes:
                        break
            if cut and size >= self.segment_bytes:
                break
            lower = "(" + got[-1][0].decode()
        rows = rows[:cut]
        if not rows:
            return 0, 0, []
        return through + 1, parse_id(rows[-1][0])[0], rows

    def _outputs(self, first: int, last: int) -> list[Row]:
        """Every output entry after ``<first - 1>-0`` up to ``<last>-0``."""
        rows: list[Row] = []
        lower = f"({first - 1}-0"
        while True:
            got = self.client.xrange(self.keys.output, min=lower, max=f"{last}-0",
                                     count=self.CHUNK)
            if not got:
                return rows
            rows += got
            lower = "(" + got[-1][0].decode()

    def _snapshots(self, report: ArchiveReport) -> None:
        store = SnapshotStore(self.client, self.keys, verifier=self.verifier)
        have = set(self.archive.snapshot_seqs())
        report.skipped_snapshots = []
        report.untrusted_snapshots = {}
        for info in sorted(store.list(), key=lambda s: s.seq):
            if info.seq in have:
                continue
            found = store.get(info.seq)
            if found is None:
                report.skipped_snapshots.append(info.seq)
                if info.seq in store.untrusted:
                    report.untrusted_snapshots[info.seq] = store.untrusted[info.seq]
                continue
            self.archive.write_snapshot(found[0], found[1])
            have.add(info.seq)
            report.snapshots += 1
        newest = max(have, default=0)
        report.snapshot_through = newest
        if newest:
            self.client.hset(self.keys.archive, "snapshots", newest)

    def follow(self, stopping: Callable[[], bool], every: float = 60.0,
               on_pass: Callable[[ArchiveReport], None] | None = None) -> None:
        """Archive every ``every`` seconds (and what is answered at the start) until
        ``stopping()``."""
        try:
            while True:
                report = self.run_once()
                if on_pass is not None:
                    on_pass(report)
                deadline = time.monotonic() + every
                while time.monotonic() < deadline:
                    if stopping():
                        return
                    time.sleep(min(0.2, every))
        finally:
            self.lease.release()

    def once(self) -> ArchiveReport:
        """One pass (``run_once``), giving the lease up after it."""
        try:
            return self.run_once()
        finally:
            self.lease.release()
