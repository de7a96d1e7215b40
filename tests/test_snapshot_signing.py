"""Signed snapshots (journal.signing), against a real redis-server and real ``exch``
processes: a forged snapshot (a balance raised, its hash recomputed, written unsigned or
signed with another key) is never loaded, by ``exch replay`` or by a restarted matcher; a
genuine one is, from Redis and from the archive; a signature holds for one partition and
seq only; and the key files are private from the first byte."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack
import pytest
import redis

from exchange import Exchange, decode
from exchange.codec import json_from_wire
from exchange.errors import SigningKeyError, UntrustedSnapshot
from exchange.snapshot import state_hash
from journal.apply import apply_rows
from journal.follower import Follower
from journal.keys import Keys
from journal.runner import request_snapshot
from journal.sequencer import Sequencer
from journal.signing import Signer, load_signer, load_verifier, snapshot_message
from journal.snapshots import SnapshotStore
from journal.streams import raw

from .conftest import ROOT
from .journal_helpers import matcher_thread, output_events, wait_caught_up, wait_until

K = Keys()
MILLION = 100_000_000  # £1,000,000 in pence


def exch(*args: str, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``exch ARGS`` as its own process (the tests' EXCH_HOME, so the tests' key files)."""
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "COLUMNS": "250", **(env or {})},
    )


@contextmanager
def matcher(url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``exch run`` as its own process, its stderr (the log) in ``log``; SIGKILLed on the way
    out unless the test stopped it: a crash takes no snapshot on the way down."""
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "run", "--redis-url", url, "--lease-ms", "500",
             "--snapshot-every", "1000000"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)


def send(client: redis.Redis, **command: str) -> int:
    """Sequence one command as its own input entry; its seq."""
    (seq,) = Sequencer(client).submit_batch([decode(dict(command), 0, 0)])
    return seq


def events_of(client: redis.Redis, seq: int) -> list[dict]:
    return [json_from_wire(e) for e in output_events(client) if e["seq"] == seq]


def recovered(log: Path, times: int) -> list[str]:
    """The matcher's "recovered at ..." lines, once there are ``times`` of them."""
    def lines() -> list[str]:
        return [ln for ln in log.read_text().splitlines() if "recovered at" in ln]

    wait_until(lambda: len(lines()) >= times, "the matcher recovered")
    return lines()


def with_balance(data: bytes, account: str, pence: int) -> bytes:
    """The attacker's edit: the state bytes with ``account``'s balance set to ``pence``,
    re-encoded as the core encodes them (so they restore, and hash, like a real state)."""
    state = msgpack.unpackb(data)
    accounts = state[6]
    assert [account, 10_000] in accounts, accounts
    accounts[accounts.index([account, 10_000])] = [account, pence]
    forged = msgpack.packb(state)
    assert Exchange.restore(forged, 0).snapshot() == forged  # a state the core accepts
    return forged


def write_unsigned(client: redis.Redis, seq: int, data: bytes) -> None:
    """A snapshot entry written as ``SnapshotStore.save`` writes one, but with no signature
    (as every snapshot was before signing came in)."""
    r = raw(client)
    r.set(K.snapshot_blob(seq), zlib.compress(data, 1))
    r.xadd(K.snapshots, {"hash": state_hash(data), "size": len(data),
                         "key": K.snapshot_blob(seq), "created": int(time.time() * 1000),
                         "encoding": "zlib"}, id=f"{seq}-0")


# ------------------------------------------------------------------------- 1. the forgery


def test_a_forged_snapshot_is_not_replayed_and_funds_no_withdrawal(
        redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    url = redis_server.url
    log = tmp_path / "run.log"
    with matcher(url, log) as proc:
        send(client, type="deposit", account="A", amount="100")
        wait_caught_up(client)
        taken = exch("snapshot", "--redis-url", url)
        assert taken.returncode == 0, taken.stderr[-3000:]
        assert "snapshot at seq 1:" in taken.stdout
        send(client, type="deposit", account="B", amount="100")
        send(client, type="deposit", account="C", amount="100")
        assert wait_caught_up(client) == 3
        proc.send_signal(signal.SIGKILL)  # a crash: no snapshot on the way down
    genuine_hash = json.loads(exch("replay", "--from-snapshot", "none", "--json",
                                   "--redis-url", url).stdout)["state_hash"]

    # The attacker, with Redis access only: the genuine snapshot and the journal after it
    # make the states at seqs 2 and 3, where A is given £2,000,000.
    info, data = SnapshotStore(client).latest()
    assert info.seq == 1 and info.key_id
    ex = Exchange.restore(data, 0)
    rows = raw(client).xrange(K.input, min="(1-0")
    forged = {}
    for i, row in enumerate(rows, start=2):
        apply_rows(ex, [row], ex.now, rows[i - 3][0] if i > 2 else b"1-0", emit=False)
        assert ex.last_seq == i
        forged[i] = with_balance(ex.snapshot(), "A", 2 * MILLION)
    write_unsigned(client, 2, forged[2])
    stranger = Signer.generate()
    SnapshotStore(client, signer=stranger).save(3, forged[3])
    # both read back whole, with right hashes: only their signatures give them away
    assert SnapshotStore(client, verifier=stranger.verifier).latest()[0].seq == 3
    listed = exch("snapshot", "--list", "--redis-url", url)
    assert listed.returncode == 0, listed.stderr[-3000:]
    rows_shown = {ln.split()[1]: ln for ln in listed.stdout.splitlines()
                  if ln.split()[1:2] and ln.split()[1].isdigit()}
    assert "(unsigned)" in rows_shown["2"] and "NO" in rows_shown["2"]
    assert stranger.key_id in rows_shown["3"] and "another key" in rows_shown["3"]
    assert info.key_id in rows_shown["1"] and "yes" in rows_shown["1"]

    # (a) replay passes over both, from the genuine snapshot, and reaches the real state
    done = exch("replay", "--from-snapshot", "latest", "--verify", "--json", "--redis-url", url)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["snapshot"], summary["from_seq"], summary["to_seq"]) == ("seq 1", 1, 3)
    assert summary["state_hash"] == genuine_hash
    assert summary["verified"] is True
    assert [u["seq"] for u in summary["untrusted_snapshots"]] == [3, 2]
    assert "snapshot at seq 3 not trusted" in done.stderr and "another key" in done.stderr
    assert "snapshot at seq 2 not trusted" in done.stderr and "unsigned" in done.stderr
    named = exch("replay", "--from-snapshot", "3", "--verify", "--redis-url", url)
    assert named.returncode == 1, named.stdout + named.stderr
    assert "the snapshot at seq 3 is not trusted" in named.stderr
    assert "verified" not in named.stdout

    # (b) a restarted matcher recovers from the genuine snapshot: A has £100, not millions
    with matcher(url, log) as proc:
        lines = recovered(log, 2)
        assert "(snapshot 1, 2 entries replayed)" in lines[-1], lines
        text = log.read_text()
        assert "snapshot at seq 3 not trusted" in text and "snapshot at seq 2 not trusted" in text
        seq = send(client, type="withdraw", account="A", amount="1000000")
        wait_caught_up(client)
        (answer,) = events_of(client, seq)
        assert answer["type"] == "order_rejected", answer
        assert answer["reason"] == "INSUFFICIENT_FUNDS"
        proc.send_signal(signal.SIGTERM)  # a clean stop: its own signed snapshot at seq 4
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    newest = SnapshotStore(client).latest()[0]
    assert newest.seq == seq and newest.key_id == info.key_id


# --------------------------------------------------------- 2. a genuine one is used, archived


def test_a_signed_snapshot_is_used_from_redis_and_from_the_archive(
        redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    url = redis_server.url
    log = tmp_path / "run.log"
    with matcher(url, log) as proc:
        for name in ("A", "B", "C"):
            send(client, type="deposit", account=name, amount="100")
        wait_caught_up(client)
        taken = exch("snapshot", "--redis-url", url)
        assert taken.returncode == 0, taken.stderr[-3000:]
        assert "snapshot at seq 3:" in taken.stdout
        assert f"signed by key {load_verifier().key_id}" in taken.stdout
        send(client, type="deposit", account="D", amount="100")
        assert wait_caught_up(client) == 4
        proc.send_signal(signal.SIGKILL)
    done = exch("replay", "--verify", "--json", "--redis-url", url)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["snapshot"], summary["from_seq"], summary["commands"]) == ("seq 3", 3, 1)
    assert "untrusted_snapshots" not in summary
    with matcher(url, log):
        assert "(snapshot 3, 1 entries replayed)" in recovered(log, 2)[-1]

    # a reader with no public key cannot load a snapshot (exit 2), but can replay it all
    missing = {"EXCH_SNAPSHOT_PUBLIC_KEY": str(tmp_path / "nowhere.pub")}
    keyless = exch("replay", "--verify", "--redis-url", url, env=missing)
    assert keyless.returncode == 2, keyless.stdout + keyless.stderr
    assert "no snapshot public key at" in keyless.stderr and "nowhere.pub" in keyless.stderr
    assert exch("replay", "--from-snapshot", "none", "--verify", "--redis-url", url,
                env=missing).returncode == 0

    # archived with its signature, then gone from Redis: still the start of recovery
    folder = tmp_path / "archive"
    archived = exch("archive", "--dir", str(folder), "--redis-url", url)
    assert archived.returncode == 0, archived.stderr[-3000:]
    path = folder / "p0" / "snapshots" / f"{3:020d}.snap"
    record = msgpack.unpackb(path.read_bytes())
    assert record["key_id"] == load_verifier().key_id and len(record["signature"]) == 128
    SnapshotStore(client).remove(3)
    assert SnapshotStore(client).list() == []
    done = exch("replay", "--verify", "--json", "--redis-url", url)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["snapshot"] == "seq 3 (archived)"
    with matcher(url, log):
        assert "(snapshot 3, 1 entries replayed)" in recovered(log, 3)[-1]

    # the archived file changed (a balance raised, its hash recomputed): not trusted
    data = with_balance(zlib.decompress(record["state"]), "A", 2 * MILLION)
    record.update(state=zlib.compress(data), hash=state_hash(data), size=len(data))
    path.write_bytes(msgpack.packb(record))
    done = exch("replay", "--verify", "--json", "--redis-url", url)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["snapshot"], summary["from_seq"]) == ("none (no trusted snapshot stored)", 0)
    assert "(seq 3) is not trusted: the signature does not verify" in done.stderr


# --------------------------------------------------- 3. one partition, one seq per signature


def test_a_signature_holds_for_its_partition_and_seq_only(redis_server) -> None:  # type: ignore[no-untyped-def]
    signer = Signer.generate()
    digest = "ab" * 32
    sig = signer.sign_snapshot("0", 7, digest, 100)
    check = signer.verifier.check
    assert check("0", 7, digest, 100, sig.signature, sig.key_id) is None
    for partition, seq, h, size in (("1", 7, digest, 100), ("0", 8, digest, 100),
                                    ("0", 7, "cd" * 32, 100), ("0", 7, digest, 101)):
        assert "does not verify" in check(partition, seq, h, size, sig.signature, sig.key_id)
    assert "unsigned" in check("0", 7, digest, 100, "", "")
    assert "malformed" in check("0", 7, digest, 100, "zz", sig.key_id)
    assert "malformed" in check("0", 7, digest, 100, sig.signature[:-2], sig.key_id)
    other = Signer.generate().sign_snapshot("0", 7, digest, 100)
    assert "another key" in check("0", 7, digest, 100, other.signature, other.key_id)
    # a stranger's signature claiming our key id does not verify either
    assert "does not verify" in check("0", 7, digest, 100, other.signature, sig.key_id)
    assert b"partition 0\nseq 7\n" in snapshot_message("0", 7, digest, 100)

    # in Redis: a genuine entry moved to partition 1, or to the next seq, is passed over
    client = redis_server.client()
    r = raw(client)
    ex = Exchange(0)
    ex.apply(decode({"type": "deposit", "account": "A", "amount": "100"}, 1, 1))
    store = SnapshotStore(client, signer=signer)
    store.save(1, ex.snapshot())
    ((eid, fields),) = r.xrange(K.snapshots)
    blob = r.get(K.snapshot_blob(1))
    for keys, seq in ((Keys("1"), 1), (K, 2)):
        r.set(keys.snapshot_blob(seq), blob)
        r.xadd(keys.snapshots, dict(zip(fields[::2], fields[1::2])), id=f"{seq}-0")
        moved = SnapshotStore(client, keys, signer=signer)
        found = moved.latest()
        assert found is None or found[0].seq != seq
        assert "does not verify" in moved.untrusted[seq]
        with pytest.raises(UntrustedSnapshot, match=f"seq {seq} is not trusted"):
            moved.get_trusted(seq)
    assert SnapshotStore(client, signer=signer).latest()[0].seq == 1


# ------------------------------------------------------------------------- key files


def test_a_writer_makes_a_private_pair_once_and_a_reader_needs_the_public_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXCH_SNAPSHOT_PUBLIC_KEY", raising=False)
    folder = tmp_path / "keys"
    key = folder / "p0.key"
    old = os.umask(0)  # the most open umask: the key must still be private
    try:
        signers: list[Signer] = []
        threads = [threading.Thread(target=lambda: signers.append(load_signer(key)))
                   for _ in range(8)]  # eight writers starting at once keep one pair
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.umask(old)
    assert len(signers) == 8 and len({s.key_id for s in signers}) == 1
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == ["p0.key", "p0.pub"]  # no leftovers
    assert load_verifier(folder / "p0.pub").key_id == signers[0].key_id
    assert load_signer(key).key_id == signers[0].key_id  # loaded again, not replaced

    with pytest.raises(SigningKeyError, match="no snapshot public key at") as missing:
        load_verifier(tmp_path / "elsewhere.pub")
    assert missing.value.exit_code == 2
    with pytest.raises(SigningKeyError, match="no snapshot signing key"):
        load_signer(tmp_path / "none.key", create=False)
    key.chmod(0o640)
    with pytest.raises(SigningKeyError, match="readable by other users"):
        load_signer(key)
    key.chmod(0o600)
    (tmp_path / "not.pub").write_text("not a key")
    with pytest.raises(SigningKeyError, match="not a PEM public key"):
        load_verifier(tmp_path / "not.pub")


def test_a_follower_that_only_reads_never_holds_the_private_key(
        redis_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "reader-home"
    monkeypatch.setenv("EXCH_HOME", str(home))
    monkeypatch.delenv("EXCH_SNAPSHOT_KEY", raising=False)
    monkeypatch.delenv("EXCH_SNAPSHOT_PUBLIC_KEY", raising=False)
    client = redis_server.client()
    writer = Signer.generate()
    with matcher_thread(client, signer=writer):
        send(client, type="deposit", account="A", amount="100")
        wait_caught_up(client)
        assert request_snapshot(client) == 1
    reader = Follower(client, announce=False)  # as a gateway's read model is made
    with pytest.raises(SigningKeyError, match="no snapshot public key"):
        reader.start()
    assert not (home / "keys").exists()  # no key pair made for a reader
    reader = Follower(client, announce=False, verifier=writer.verifier)
    reader.start()
    assert reader.progress.snapshot_seq == 1 and reader.ex.last_seq == 1
    assert not (home / "keys").exists()


def test_a_host_with_only_the_public_key_never_makes_a_pair_of_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader's host, given the public key, where `exch run` or `exch follow` is started
    by mistake: making a pair would replace the key its readers trust with one no other
    host uses. It is refused, and the public key is left as it was."""
    monkeypatch.delenv("EXCH_SNAPSHOT_PUBLIC_KEY", raising=False)
    writer = load_signer(tmp_path / "writer" / "k.key")
    reader = tmp_path / "reader"
    reader.mkdir()
    (reader / "k.pub").write_bytes((tmp_path / "writer" / "k.pub").read_bytes())
    with pytest.raises(SigningKeyError, match="a public key is at") as refused:
        load_signer(reader / "k.key")
    assert refused.value.exit_code == 2
    assert not (reader / "k.key").exists()
    assert load_verifier(reader / "k.pub").key_id == writer.key_id
