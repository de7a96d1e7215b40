"""The archive, compaction and every reader of the journal as one, against a real Redis:
nothing leaves Redis before it is archived, and nothing archived is ever missed."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest

from exchange.errors import ArchiveError, JournalError
from journal.archive import Archive, Archiver, record
from journal.consumer import GroupConsumer
from journal.follower import Follower
from journal.keys import Keys
from journal.replay import replay
from journal.retention import compact, eviction_problem, groups, plan_compact, remove_group
from journal.runner import Matcher
from journal.snapshots import SnapshotStore
from journal.streams import raw
from journal.wire import read_entries

from .conftest import ROOT
from .journal_helpers import matcher_thread, submitting, wait_caught_up, wait_until
from .test_consumer import ListSink, fill

K = Keys()
SMALL = 20_000
"""Bytes of input per segment in these tests: many segments from a few thousand commands."""


def everything(client) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """(seq, number of events) of every answered seq, read from Redis before compaction."""
    return [(e[0], len(e[2])) for e in read_entries(raw(client).xrange(K.output))]


def archived(client, folder: Path) -> Archive:  # type: ignore[no-untyped-def]
    archive = Archive(folder)
    Archiver(client, archive, segment_bytes=SMALL).once()
    return archive


def test_segments_are_plain_msgpack_chained_and_checksummed(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 3000)
    archive = archived(client, tmp_path / "arch")
    ins, outs = archive.segments("in"), archive.segments("out")
    assert len(ins) > 3 and [s.path.name for s in ins] == [s.path.name for s in outs]
    assert ins[0].first == 1 and ins[-1].last == 3000
    assert all(b.first == a.last + 1 for a, b in zip(ins, ins[1:]))
    assert record(client, K)["through"] == "3000" and record(client, K)["snapshots"] == "3000"
    # read without this project: consecutive msgpack objects, header, rows, trailer
    rows = []
    for s in ins:
        data = s.path.read_bytes()
        objs = list(msgpack.Unpacker(__import__("io").BytesIO(data), raw=False))
        header, body, trailer = objs[0], objs[1:-1], objs[-1]
        assert header["format"] == "exch-segment" and header["entries"] == len(body)
        tail = len(msgpack.packb(trailer))
        assert hashlib.sha256(data[:-tail]).hexdigest() == trailer["sha256"]
        rows += [(r[0], r[1]) for r in body]
    assert rows == [(r[0], r[1]) for r in raw(client).xrange(K.input)]
    out_rows = [r for s in outs for r in archive.read(s)]
    assert [tuple(r) for r in out_rows] == [(r[0], r[1]) for r in raw(client).xrange(K.output)]
    # a second pass has nothing new, and writes nothing
    before = {p: p.stat().st_mtime_ns for p in archive.folder.rglob("*")}
    assert Archiver(client, archive, segment_bytes=SMALL).once().segments == 0
    assert {p: p.stat().st_mtime_ns for p in archive.folder.rglob("*")} == before


def test_compact_frees_redis_and_replay_verifies_from_seq_1(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 3000)  # the clean stop took a snapshot at 3000
    want = everything(client)
    store = SnapshotStore(client)
    assert compact(client).trim_below == "0-0"  # nothing archived: nothing may go
    assert raw(client).xlen(K.input) == 300
    archived(client, tmp_path / "arch")
    plan = compact(client)
    assert plan.trim_below == "3000-0" and "recovery" in plan.limited_by
    assert plan.input_removed == 299 and plan.output_removed == 299 and plan.bytes > 0
    assert raw(client).xlen(K.input) == 1 and raw(client).xlen(K.output) == 1
    assert [s.seq for s in store.list()] == [3000]
    result = replay(client, source="none", verify=True)
    assert result.verified and result.commands == 3000 and result.divergence is None
    assert replay(client, source="latest", verify=True).from_seq == 3000
    # and the matcher recovers and goes on where it stopped
    with matcher_thread(client, snapshot_every=10**9):
        from journal.sequencer import Sequencer

        Sequencer(client).submit([("deposit", 0, 0, "late", 100)])
        wait_until(lambda: raw(client).xlen(K.output) == 2, "the next answer")
    assert replay(client, source="none", verify=True).commands == 3001
    # a fresh consumer gets every answer, most of them from the archive
    sink = ListSink()
    GroupConsumer(client, "late", sink).run(follow=False)
    assert [(e[0], len(e[2])) for e in sink.entries][:len(want)] == want
    assert sink.entries[-1][0] == 3001


def test_compact_passes_over_a_damaged_newest_snapshot(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 2000)
    with matcher_thread(client, snapshot_every=10**9):
        from journal.sequencer import Sequencer

        Sequencer(client).submit([("deposit", 0, 0, f"a{i}", 100) for i in range(1000)])
        wait_caught_up(client)
    store = SnapshotStore(client)
    assert [s.seq for s in store.list()] == [3000, 2000]
    client.setrange(K.snapshot_blob(3000), 10, b"XXXX")  # the newest no longer reads back
    archived(client, tmp_path / "arch")
    plan = plan_compact(client)
    assert plan.trim_below == "2000-0" and "seq 2,000" in plan.limited_by
    compact(client)
    assert replay(client, source="none", verify=True).verified


def test_snapshots_leave_redis_only_once_archived(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    store = SnapshotStore(client)
    from exchange import Exchange

    state = Exchange().snapshot()
    for seq in range(1, 9):
        store.save(seq, state)
    assert len(store.list()) == 8  # nothing archived: every one kept
    client.hset(K.archive, "snapshots", 2)
    store.save(9, state)
    assert [s.seq for s in store.list()] == [9, 8, 7, 6, 5, 4, 3]


def test_a_consumer_behind_the_window_reads_the_archive(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 3000)
    want = everything(client)
    slow = ListSink()
    first = GroupConsumer(client, "slow", slow, consumer="s1", batch=50, flush_events=10**9,
                          flush_seconds=10**9)
    first.ensure_group()
    # 60 entries delivered to the group, 40 of them held and acknowledged, 20 left pending
    reply = raw(client).xreadgroup("slow", "s1", {K.output: ">"}, count=60)
    rows = [r for _, rs in reply for r in rs] if isinstance(reply, list) else \
        [r for rs in reply.values() for r in rs]
    slow.write(read_entries(rows[:40]))
    raw(client).xack(K.output, "slow", *[r[0] for r in rows[:40]])
    archived(client, tmp_path / "arch")
    compact(client)
    assert groups(client)[0].from_archive
    # the pending 20 come back without fields (trimmed): read from the archive, not acked
    progress = GroupConsumer(client, "slow", slow, consumer="s1").run(follow=False)
    got = [(e[0], len(e[2])) for e in slow.entries]
    assert len(got) == len(want), [x for x in want if x not in got][:5]
    assert got == want
    assert progress.committed_seq == 3000
    assert raw(client).xpending(K.output, "slow")["pending"] == 0
    # caught up: no lag, though Redis counts only the entries read from it (the others came
    # from the archive), as if none had been read here
    raw(client).execute_command("XGROUP", "SETID", K.output, "slow", "$", "ENTRIESREAD", 0)
    assert raw(client).xinfo_groups(K.output)[0]["lag"] > 0
    (view,) = groups(client)
    assert (view.lag, view.pending, view.from_archive) == (0, 0, False)


def test_a_missing_or_damaged_segment_is_named_never_a_gap(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 3000)
    archive = archived(client, tmp_path / "arch")
    compact(client)
    segment = archive.segments("in")[2]
    whole = segment.path.read_bytes()
    data = bytearray(whole)
    data[len(data) // 2] ^= 0xFF
    segment.path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=segment.path.name + " is damaged"):
        replay(client, source="none", verify=True)
    segment.path.unlink()
    with pytest.raises(ArchiveError, match="missing: .*" + segment.path.name):
        replay(client, source="none", verify=True)
    segment.path.write_bytes(whole)  # back, whole: now only an answer segment goes missing
    assert replay(client, source="none", verify=True).verified
    answers = archive.segments("out")[2]
    answers.path.unlink()  # the consumers read the answers
    sink = ListSink()
    with pytest.raises(ArchiveError, match="missing: .*out/" + answers.path.name):
        GroupConsumer(client, "new", sink).run(follow=False)
    assert sink.entries == [] or sink.entries[-1][0] < answers.first


def test_archiver_finishes_a_crashed_run_and_refuses_other_folders(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 3000)
    archive = archived(client, tmp_path / "arch")
    last_in, last_out = archive.segments("in")[-1], archive.segments("out")[-1]
    whole = last_in.path.read_bytes(), last_out.path.read_bytes()
    # as after a crash between the two files of the last range: its answers never written
    last_out.path.unlink()
    (archive.folder / "in" / ".junk.seg.tmp").write_bytes(b"half")
    client.hset(K.archive, "through", last_in.first - 1)
    Archiver(client, archive, segment_bytes=SMALL).once()
    assert (last_in.path.read_bytes(), last_out.path.read_bytes()) == whole
    assert not list(archive.folder.rglob("*.tmp"))
    with pytest.raises(ArchiveError, match="use that folder"):
        Archiver(client, Archive(tmp_path / "other")).once()


def test_recovery_and_follower_start_from_an_archived_snapshot(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 1000)  # a snapshot at 1000 on the clean stop
    with matcher_thread(client, snapshot_every=10**9):
        from journal.sequencer import Sequencer

        Sequencer(client).submit([("deposit", 0, 0, f"a{i}", 100) for i in range(1000)])
        wait_caught_up(client)
    archive = archived(client, tmp_path / "arch")
    compact(client)  # trims below 2000-0, and the archived snapshot at 1000 leaves Redis
    assert [s.seq for s in SnapshotStore(client).list()] == [2000]
    # the newest snapshot lost from Redis and from the archive: only the one at 1000 is left
    SnapshotStore(client).remove(2000)
    archive.snapshot_path(2000).unlink()
    follower = Follower(client, snapshot_every=10**9)
    follower.start()
    assert follower.progress.snapshot_seq == 1000 and follower.ex.last_seq == 1000
    m = Matcher(client, snapshot_every=10**9)
    m.recover()
    assert m.ex.last_seq == 2000 and m.progress.snapshot_seq == 1000
    result = replay(client, source="latest", verify=True)
    assert result.snapshot == "seq 1000 (archived)" and result.verified


def test_a_redis_that_evicts_keys_is_refused(redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    assert eviction_problem(client) is None
    client.config_set("maxmemory-policy", "allkeys-lru")
    fatal, why = eviction_problem(client)
    assert not fatal and "noeviction" in why
    client.config_set("maxmemory", "500mb")
    fatal, why = eviction_problem(client)
    assert fatal and "allkeys-lru" in why
    m = Matcher(client)
    with pytest.raises(JournalError, match="noeviction"):
        m.run()
    assert m.holder() == ""  # refused before taking the lease


def exch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def test_the_command_line_archives_compacts_tails_and_lists_groups(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 3000)
    url = redis_server.url
    GroupConsumer(client, "gone", ListSink()).ensure_group()
    dry = exch("compact", "--dry-run", "--redis-url", url)
    assert dry.returncode == 0 and "no archive yet" in dry.stdout
    done = exch("archive", "--redis-url", url, env={"EXCH_ARCHIVE": str(tmp_path / "a")})
    assert done.returncode == 0, done.stderr
    assert "archived through seq 3,000" in done.stdout
    dry = exch("compact", "--dry-run", "--redis-url", url)
    assert "would remove the entries below 3000-0 (2,990 commands" in dry.stdout, dry.stdout
    assert raw(client).xlen(K.input) == 300
    done = exch("compact", "--redis-url", url)
    assert "299 input and 299 output entries" in done.stdout, done.stdout
    tail = exch("tail", "--from", "2990", "--no-follow", "--json", "--redis-url", url)
    assert tail.returncode == 0, tail.stderr
    seqs = sorted({int(line.split('"seq":')[1].split(",")[0].rstrip("}"))
                   for line in tail.stdout.splitlines()})
    assert seqs == list(range(2991, 3001))
    listed = exch("groups", "--redis-url", url)
    assert "gone" in listed.stdout and "archive" in listed.stdout
    assert exch("groups", "remove", "gone", "--redis-url", url).returncode == 0
    assert groups(client) == []
    missing = exch("groups", "remove", "gone", "--redis-url", url)
    assert missing.returncode == 2 and "no consumer group 'gone'" in missing.stderr


@pytest.mark.slow
@pytest.mark.parametrize("point", ["archive-renaming", "archive-between-files"])
def test_sigkill_of_exch_archive_leaves_no_partial_segment(redis_server, tmp_path, point) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 3000)
    folder = tmp_path / "a"
    flag = tmp_path / "reached"
    env = {**os.environ, "EXCH_FAULT_POINT": f"{point}:3", "EXCH_FAULT_FILE": str(flag)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "archive", "--segment-mb", "0.02", "--dir",
         str(folder), "--redis-url", redis_server.url], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(flag.exists, f"exch archive reaching {point}", timeout=60)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    archive = Archive(folder)
    for s in archive.segments("in") + archive.segments("out"):
        archive.read(s)  # whole: checksum and header hold
    Archiver(client, archive, segment_bytes=SMALL).once()
    assert archive.through() == 3000
    rows = [r for s in archive.segments("in") for r in archive.read(s)]
    assert [r[0] for r in rows] == [r[0] for r in raw(client).xrange(K.input)]
    compact(client)
    assert replay(client, source="none", verify=True).verified


def test_remove_group_refuses_an_unknown_name(redis_server) -> None:  # type: ignore[no-untyped-def]
    from exchange.errors import InputError

    with pytest.raises(InputError, match="no consumer group"):
        remove_group(redis_server.client(), K, "nobody")


# ---------------------------------------------------------------- found by review


def answer_in_pieces_after_seq_2(client, folder: Path) -> None:  # type: ignore[no-untyped-def]
    """Seq 2's answer whole (2-0) and archived; the next entry's answer in pieces 2-1, 2-2,
    ... 302-0; a close at 303."""
    from journal.sequencer import Sequencer

    from .test_layout2 import PIECE, close, deposit, market, place

    seq = Sequencer(client)
    with matcher_thread(client, piece_bytes=PIECE):
        seq.submit([market(), deposit("alice", "100000")])
        wait_caught_up(client)
        archived(client, folder)
        prices = ["2", "3", "4", "5", "6"]
        seq.submit_batch([place("alice", "BACK", prices[i % 5], "1") for i in range(300)])
        seq.submit([close()])
        wait_caught_up(client)


def test_a_consumer_dead_after_a_gap_fill_gets_the_answer_again(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    answer_in_pieces_after_seq_2(client, tmp_path / "arch")
    sink = ListSink()
    GroupConsumer(client, "g", sink, consumer="c1").ensure_group()
    assert compact(client).trim_below == "2-1"
    # Redis hands the reader 2-1 on (it fills 2-0 from the archive, never pending); the
    # process dies before the sink holds anything
    raw(client).xreadgroup("g", "c1", {K.output: ">"}, count=10_000)
    GroupConsumer(client, "g", sink, consumer="c1").run(follow=False)
    assert [e[0] for e in sink.entries] == [2, 302, 303]


def test_a_consumer_dead_with_trimmed_entries_pending_loses_none(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    answer_in_pieces_after_seq_2(client, tmp_path / "arch")
    sink = ListSink()
    GroupConsumer(client, "g", sink, consumer="dead:1").ensure_group()
    raw(client).xreadgroup("g", "dead:1", {K.output: ">"}, count=10_000)  # all pending
    assert compact(client).trim_below == "2-1"
    GroupConsumer(client, "g", sink, consumer="c2", claim_idle_ms=0).run(follow=False)
    assert [e[0] for e in sink.entries] == [2, 302, 303]


def test_a_hole_in_the_archive_is_reported_and_nothing_is_removed(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 3000)
    archive = archived(client, tmp_path / "arch")
    compact(client)
    files = sorted(archive.folder.rglob("*.seg"))
    lost = archive.segments("out")[1]
    lost.path.unlink()  # one answer segment lost (a disk, an operator)
    with pytest.raises(ArchiveError, match="missing: .*out/" + lost.path.name):
        Archiver(client, archive, segment_bytes=SMALL).once()
    assert sorted(archive.folder.rglob("*.seg")) == [f for f in files if f != lost.path]


def test_one_archiver_at_a_time(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 1000)
    folder = tmp_path / "arch"
    refused = []

    def meanwhile(report) -> None:  # type: ignore[no-untyped-def]
        if not refused:  # a second archiver, while the first is between segments
            with pytest.raises(ArchiveError, match="another `exch archive` runs") as e:
                Archiver(client, Archive(folder), segment_bytes=SMALL).once()
            refused.append(e)

    Archiver(client, Archive(folder), segment_bytes=SMALL, on_segment=meanwhile).once()
    assert refused and Archive(folder).through() == 1000
    assert Archiver(client, Archive(folder), segment_bytes=SMALL).once().through == 1000


def _history_trades(client) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """Every trade event of the output, read through the archive and Redis as one."""
    from journal.history import History

    rows = list(History(client, K).walk("out", 2000))
    return [(e["seq"], e["trade"]) for _, _, events in read_entries(rows)
            for e in events if e["type"] == "trade"]


def _needs_the_archive(client) -> bool:  # type: ignore[no-untyped-def]
    """Whether the (only) consumer group's next or pending entries are no longer in Redis."""
    from journal.streams import parse_id

    trimmed = record(client, K).get("trimmed")
    found = raw(client).xinfo_groups(K.output)
    if not found:
        return False  # the exporter was killed before it made its group
    (group,) = found
    pending = raw(client).xpending(K.output, group["name"])
    lowest = min(parse_id(group["last-delivered-id"]),
                 parse_id(pending["min"]) if pending["pending"] else (2**64, 0))
    return trimmed is not None and lowest < parse_id(trimmed)


@pytest.mark.slow
def test_compact_while_the_exporter_lags_loses_nothing(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`exch compact` runs again and again while the exporter is dead (SIGKILLed with
    entries pending), so that its group falls behind the window Redis holds: the restarted
    exporter reads what is gone from the archive, and every trade reaches Parquet once."""
    from .test_export import trade_rows
    from .test_faults import start_matcher, stop, workload

    client = redis_server.client()
    matcher, _ = start_matcher(redis_server.url, tmp_path, snapshot_every=2000, batch=200)
    parquet, arch = tmp_path / "parquet", tmp_path / "arch"

    def exch(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tools.cli", *args, "--redis-url",
                               redis_server.url], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)

    behind = 0
    try:
        with submitting(redis_server.client(), workload(30_000, seed=5), chunk=200,
                        pause=0.1) as done:
            for delay in (0.7, 1.2, 0.4, 1.5):
                proc = subprocess.Popen(
                    [sys.executable, "-m", "tools.cli", "export", "parquet", "--out",
                     str(parquet), "--follow", "--redis-url", redis_server.url],
                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                time.sleep(1.0)  # the exporter is down: the journal moves on without it
                assert exch("snapshot").returncode == 0  # recovery needs only what follows
                assert exch("archive", "--dir", str(arch)).returncode == 0
                compacted = exch("compact")
                assert compacted.returncode == 0, compacted.stderr
                behind += _needs_the_archive(client)
        assert done.is_set()
        wait_caught_up(client, timeout=120)
    finally:
        stop(matcher)
    assert behind >= 2, "the exporter never fell behind the window: the test tests nothing"
    assert exch("archive", "--dir", str(arch)).returncode == 0
    assert exch("compact").returncode == 0
    final = exch("export", "parquet", "--out", str(parquet), "--until-caught-up")
    assert final.returncode == 0, final.stderr
    rows = trade_rows(parquet)
    want = _history_trades(client)
    assert len(set(rows)) == len(rows), "a trade was exported twice"
    assert rows == sorted(want) and len(want) > 1000
    assert raw(client).xinfo_groups(K.output)[0]["pending"] == 0


@pytest.mark.slow
def test_soak_keeps_redis_bounded_and_loses_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`exch bench soak` in small: the whole system as processes, compaction after each day.
    What Redis holds stays under a bound set by a day, the snapshot interval and the
    archiver's pace, however many days run, and every check of the end passes (the figures
    are in the README)."""
    from tools.bench.soak import bench_soak

    day, every, rate = 12_000, 6_000, 10_000
    result = bench_soak(96_000, day=day, markets=2, accounts=100, snapshot_every=every,
                        rate=rate, folder=tmp_path / "soak")
    assert result["output_dense"] and result["trades_one_for_one"], result
    assert result["replay_verified"] and result["replay_commands"] == result["last_seq"]
    assert result["trades"] > 1000
    held = [s["journal_commands"] for s in result["samples"]]
    # a day, plus what recovery keeps (a snapshot interval) or the archiver has not copied yet
    # (it passes every second: two seconds of commands at the rate), whichever is more
    assert len(held) >= 8 and max(held) <= day + every + 2 * rate, held
    assert result["samples"][-1]["journal_commands"] <= every, "the last compaction kept more"


def test_a_moved_or_foreign_archive_is_an_error_never_a_silent_gap(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    fill(client, 3000)
    with pytest.raises(ArchiveError, match="cannot hold partition 0"):
        Archiver(client, Archive(tmp_path / "arch", "7"), K)
    archive = archived(client, tmp_path / "arch")
    assert compact(client).input_removed > 0  # below the snapshot the clean stop took
    archive.folder.rename(tmp_path / "moved")  # the folder Redis names now holds nothing
    with pytest.raises(ArchiveError, match="holds only through seq 0"):
        replay(client, source="none", verify=True)


@pytest.mark.slow
def test_bench_archive_runs_and_verifies_both_ways() -> None:
    """`exch bench archive` in small: what it times really goes through the archive."""
    from tools.bench.archive import bench_archive

    result = bench_archive(20_000)
    assert result["replay_redis_verified"] and result["replay_archive_verified"]
    assert result["compacted_below"] == "20000-0" and result["archive_mb"] > 1
