"""The Redis keys of one partition. ``{p}`` is a hash tag: one partition's keys share a Redis
Cluster slot, so one script call may touch all of them."""

from __future__ import annotations

from dataclasses import dataclass

from exchange.errors import InputError
from exchange.limits import MAX_PARTITION


@dataclass(frozen=True)
class Keys:
    """Key names for partition ``partition`` ("0" by default): a whole number from 0 to
    ``MAX_PARTITION``, written without leading zeros, since order ids carry it."""

    partition: str = "0"

    def __post_init__(self) -> None:
        p = self.partition
        if not (type(p) is str and p.isdigit() and p.isascii() and str(int(p)) == p
                and int(p) <= MAX_PARTITION):
            raise InputError(f"a partition is a whole number from 0 to {MAX_PARTITION} "
                             f"(order ids carry it), not {p!r}")

    @property
    def number(self) -> int:
        """The partition as the core knows it (``Exchange(partition)``)."""
        return int(self.partition)

    def _k(self, name: str) -> str:
        return f"exch:{{{self.partition}}}:{name}"

    @property
    def input(self) -> str:
        """The input journal: entry ``<last seq>-0`` = fields ``ts`` (ms), ``n`` and ``c`` (the
        commands); without ``n``, one command (layout 1). See docs/journal.md."""
        return self._k("in")

    @property
    def output(self) -> str:
        """The output: for each input entry, an entry with the same id holding ``ts`` and
        ``e`` (the events of its commands), or pieces of them. See docs/journal.md."""
        return self._k("out")

    @property
    def settings(self) -> str:
        """The partition's settings (a hash): ``layout``, the newest journal layout in it."""
        return self._k("settings")

    @property
    def archive(self) -> str:
        """Where the partition is archived, and how far (a hash): ``dir``, ``through`` (the
        last input seq whose entry and answer are in segment files), ``snapshots`` (the
        newest snapshot seq archived), ``trimmed`` (the id below which ``exch compact``
        removed the streams' entries: read them from the archive). See docs/archive.md."""
        return self._k("archive")

    @property
    def archiver(self) -> str:
        """Which ``exch archive`` process archives the partition (token, with an expiry)."""
        return self._k("archiver")

    @property
    def snapshots(self) -> str:
        """Snapshot index: entry ``<seq>-0`` = ``hash``, ``size``, ``key`` of the state blob."""
        return self._k("snapshots")

    def snapshot_blob(self, seq: int) -> str:
        """The state bytes of the snapshot at ``seq``."""
        return self._k(f"snapshot:{seq}")

    @property
    def refs(self) -> str:
        """Set of (account, ref) keys already sequenced (``sequencer.dedup_key``), under rules
        versions 1 and 2 (forever)."""
        return self._k("refs")

    @property
    def recent_refs(self) -> str:
        """From rules version 3: the (account, ref) keys of the window (a sorted set, score
        the ms of first use); older ones are removed (``exchange.rules.REF_WINDOW_MS``)."""
        return self._k("recent-refs")

    @property
    def ref_seqs(self) -> str:
        """From rules version 3: the seq each ref of the window was sequenced at (a hash, the
        same keys as ``recent_refs``), so that a retried request learns its original seq."""
        return self._k("ref-seqs")

    @property
    def clock(self) -> str:
        """The last envelope time stamped, so time never goes backwards."""
        return self._k("clock")

    def batch(self, batch_id: str) -> str:
        """What a submitted batch was given, so a retried batch is not sequenced twice."""
        return self._k(f"batch:{batch_id}")

    @property
    def lease(self) -> str:
        """Who runs the matcher of this partition (token, with an expiry)."""
        return self._k("lease")

    @property
    def follower(self) -> str:
        """The follower that takes snapshots announces itself here (token, with an expiry)."""
        return self._k("follower")

    @property
    def followed(self) -> str:
        """The last seq whose answer the snapshot-taking follower verified (for status)."""
        return self._k("followed")

    @property
    def replicated(self) -> str:
        """The watermark: the last output id known to be on a replica (written by the matcher
        when the partition's server has replicas). Consumers act on nothing past it, so that
        nothing they act on can be lost with the primary. Absent: no replicas, no wait."""
        return self._k("replicated")

    @property
    def replica_probe(self) -> str:
        """A counter the matcher writes before a WAIT: replication keeps the order of writes,
        so a replica that has it has everything written before it."""
        return self._k("replica-probe")

    @property
    def transfers(self) -> str:
        """The transfer service's position in this partition's output: every ``transfer_out``
        at or below this seq has been handed to its destination's journal."""
        return self._k("transfers")

    @property
    def transfer_lease(self) -> str:
        """Which transfer service carries this partition's transfers (token, with an
        expiry): one at a time, so that they reach each destination in seq order."""
        return self._k("transfer-lease")

    @property
    def control(self) -> str:
        """Requests to the running matcher (e.g. take a snapshot)."""
        return self._k("control")

    def reply(self, request_id: str) -> str:
        """Where the matcher answers a control request."""
        return self._k(f"reply:{request_id}")

    # The statistics consumer's keys. Market ids are any text (colons included), so each kind
    # of key has a prefix of its own and the consumer's own keys are not under "stats:": no
    # market id can make one key name another (a market named "cursor", or "x:state").

    def stats(self, market: str) -> str:
        """Live statistics of one market, as JSON (written by ``exch stats``)."""
        return self._k(f"stats:{market}")

    @property
    def stats_index(self) -> str:
        """The markets that have live statistics."""
        return self._k("stats")

    def stats_state(self, market: str) -> str:
        """The statistics consumer's own state of one market (msgpack), to resume from."""
        return self._k(f"stats-state:{market}")

    @property
    def stats_cursor(self) -> str:
        """The last seq the statistics include (written with them, in one transaction)."""
        return self._k("stats-cursor")

    @property
    def stats_lease(self) -> str:
        """Which process runs the statistics consumer (token, with an expiry)."""
        return self._k("stats-lease")
