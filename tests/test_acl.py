"""Redis roles (``journal.acl``, ``exch users``): a real redis-server, the users made by
``exch users create`` as its administrator, then every service connected as its own role.

The pipeline test runs the whole system that way (two partitions, a transfer between them,
the matchers, a follower taking a snapshot, the transfer service, the gateway's sequencer,
the consumers) and fails if any of them was refused anything. The others show what a role
cannot do: a consumer's credentials write no journal, no output and no snapshot, directly or
through the sequencer script; the gateway makes no consumer group, deletes nothing and
writes no snapshot; no role touches the server's configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from journal.acl import ROLES, apply_roles, role
from journal.connection import connect
from journal.keys import Keys
from journal.routing import PartitionedSequencer, Router
from journal.sequencer import Sequencer
from journal.streams import last_id
from tools.sources.commandfile import valid_commands

from .conftest import ROOT
from .journal_helpers import wait_caught_up, wait_until
from .test_store import postgres_server as postgres_server
from .test_store import store_url as store_url

REFUSED = (redis.exceptions.NoPermissionError, redis.ResponseError)
"""What Redis answers a command a user may not run (NOPERM is a ResponseError)."""


def exch(*args: str, env: dict[str, str] | None = None, timeout: float = 120
         ) -> subprocess.CompletedProcess[str]:
    """``exch ARGS`` as its own process; its output as text."""
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


def service(*args: str) -> subprocess.Popen[str]:
    """``exch ARGS`` as a long-running process, its stderr kept (for NOPERM errors)."""
    return subprocess.Popen([sys.executable, "-m", "tools.cli", *args], cwd=ROOT, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stopped(proc: subprocess.Popen[str]) -> str:
    """Stop a service cleanly (SIGTERM) and return what it wrote on stderr."""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


EXPECTED = "cannot check Redis's eviction policy"
"""The one refusal a role meets on purpose: CONFIG GET (it would show the server's
passwords), with which the matcher and ``exch compact`` check the eviction policy; they warn
and go on (``exch users create`` checks it as the administrator)."""


def refused(text: str) -> bool:
    """Whether a process's output shows Redis refusing it something (the expected warning
    aside)."""
    lines = [line for line in text.splitlines() if EXPECTED not in line]
    return any("NOPERM" in line or "no permissions" in line for line in lines)


@pytest.fixture
def users(redis_server, tmp_path: Path) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """The roles' URLs, made by ``exch users create`` as the server's administrator (the
    default user, which the test server has)."""
    file = tmp_path / "users.json"
    done = exch("users", "create", "--redis-url", redis_server.url, "--file", str(file),
                "--json")
    assert done.returncode == 0, done.stderr
    yield json.loads(file.read_text())["roles"]


def commands_file(folder: Path, name: str, lines: list[dict]) -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_users_create_writes_a_private_file_and_shows_no_password(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    file = tmp_path / "home" / "users.json"
    done = exch("users", "create", "--redis-url", redis_server.url, "--file", str(file))
    assert done.returncode == 0, done.stderr
    assert oct(file.stat().st_mode & 0o777) == "0o600"
    urls = json.loads(file.read_text())["roles"]
    assert sorted(urls) == sorted(r.name for r in ROLES)
    for name, url in urls.items():
        password = url.split(":")[2].split("@")[0]
        assert len(password) >= 40 and password not in done.stdout + done.stderr
        assert f"exch-{name}:***@" in done.stdout
        client = connect(url)
        assert client.execute_command("ACL", "WHOAMI") == f"exch-{name}".encode()
        client.close()
    assert "no ACL file" in done.stderr  # the test server keeps its users in memory only
    # again: rights updated, passwords kept (running services are not cut off)...
    again = exch("users", "create", "--redis-url", redis_server.url, "--file", str(file))
    assert again.returncode == 0 and json.loads(file.read_text())["roles"] == urls
    # ...unless asked; --show prints them
    rotated = exch("users", "create", "--redis-url", redis_server.url, "--file", str(file),
                   "--rotate", "--show", "--role", "consumer")
    assert rotated.returncode == 0, rotated.stderr
    now = json.loads(file.read_text())["roles"]
    assert now["consumer"] != urls["consumer"] and now["matcher"] == urls["matcher"]
    assert now["consumer"] in rotated.stdout.replace("\n", "").replace(" ", "").replace(
        "│", "")
    with pytest.raises(redis.AuthenticationError):
        connect(urls["consumer"]).ping()
    shown = exch("users", "url", "matcher", "--file", str(file))
    assert shown.returncode == 0 and shown.stdout.strip() == urls["matcher"]
    listed = exch("users", "list", "--redis-url", redis_server.url, "--json")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["role"] for r in rows] == [r.name for r in ROLES] and all(r["exists"] for r in rows)
    bad = exch("users", "create", "--redis-url", redis_server.url, "--role", "nobody")
    assert bad.returncode == 2 and "no role 'nobody'" in bad.stderr
    # a role's user is no administrator
    denied = exch("users", "create", "--redis-url", urls["operator"], "--file",
                  str(tmp_path / "other.json"))
    assert denied.returncode == 1 and "cannot manage ACL users" in denied.stderr
    removed = exch("users", "remove", "--redis-url", redis_server.url, "--file", str(file))
    assert removed.returncode == 0 and "6 users deleted" in removed.stdout
    assert json.loads(file.read_text())["roles"] == {}
    with pytest.raises(redis.AuthenticationError):
        connect(urls["matcher"]).ping()


def test_lock_default_leaves_only_credentials(redis_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    file = tmp_path / "users.json"
    done = exch("users", "create", "--redis-url", redis_server.url, "--file", str(file),
                "--lock-default")
    assert done.returncode == 0, done.stderr
    assert "default user is off" in done.stdout
    saved = json.loads(file.read_text())
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=redis_server.port).ping()
    admin = connect(saved["admin"])
    assert admin.execute_command("ACL", "WHOAMI") == b"exch-admin"
    # the administrator can run it again (and has the rights to)
    again = exch("users", "create", "--redis-url", saved["admin"], "--file", str(file))
    assert again.returncode == 0, again.stderr
    admin.execute_command("ACL", "SETUSER", "default", "on")  # for the fixture's stop
    embedded = exch("users", "create", "--lock-default", "--file", str(tmp_path / "e.json"))
    assert embedded.returncode == 2 and "embedded server" in embedded.stderr


def setup_lines() -> list[dict]:
    """Two partitions' worth of business: a market in each, money in each, bets that match,
    and a transfer from partition 1 to partition 0."""
    return [
        {"type": "create_market", "market": "1.1", "runners": [1, 2], "partition": 0},
        {"type": "create_market", "market": "2.1", "runners": [1, 2], "partition": 1},
        {"type": "deposit", "account": "alice", "amount": "100", "partition": 0},
        {"type": "deposit", "account": "bob", "amount": "100", "partition": 0},
        {"type": "deposit", "account": "alice", "amount": "50", "partition": 1},
        {"type": "deposit", "account": "bob", "amount": "50", "partition": 1},
        {"type": "place", "account": "bob", "market": "1.1", "runner": 1, "side": "LAY",
         "price": "2.2", "stake": "10", "ref": "b1"},
        {"type": "place", "account": "alice", "market": "2.1", "runner": 2, "side": "LAY",
         "price": "3", "stake": "5", "ref": "a1"},
        {"type": "transfer", "account": "alice", "amount": "20", "from_partition": 1,
         "to_partition": 0},
    ]


def gateway_lines() -> list[dict]:
    """What the gateway sends on its clients' behalf: bets meeting the resting ones."""
    return [
        {"type": "place", "account": "alice", "market": "1.1", "runner": 1, "side": "BACK",
         "price": "2", "stake": "4", "ref": "g1"},
        {"type": "place", "account": "bob", "market": "2.1", "runner": 2, "side": "BACK",
         "price": "3", "stake": "2", "ref": "g2"},
    ]


def test_every_service_runs_as_its_role(redis_server, users, store_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The whole system with each process connected as its role: nothing is refused, and
    everything arrives (answers, the transfer, a snapshot, Parquet rows, statistics, store
    rows, the archive)."""
    admin = redis_server.client()
    assert exch("partitions", "--set", "2", "--redis-url", users["operator"]).returncode == 0
    setup = exch("submit", str(commands_file(tmp_path, "setup.jsonl", setup_lines())),
                 "--redis-url", users["operator"])
    assert setup.returncode == 0, setup.stderr
    procs = {
        "matcher 0": service("run", "--partition", "0", "--redis-url", users["matcher"]),
        "matcher 1": service("run", "--partition", "1", "--redis-url", users["matcher"]),
        "standby 0": service("run", "--partition", "0", "--standby", "hot",
                             "--redis-url", users["matcher"]),
        "follower 0": service("follow", "--partition", "0", "--redis-url", users["follower"]),
    }
    errors: dict[str, str] = {}
    try:
        # the gateway sequences through the router, as its handlers do
        gateway = connect(users["gateway"])
        wanted = commands_file(tmp_path, "gateway.jsonl", gateway_lines())
        pairs = [c if p is None else (p, c) for p, c in valid_commands(str(wanted))]
        seqs = PartitionedSequencer(gateway, Router(gateway)).submit_batch(pairs)
        assert all(s > 0 for s in seqs)
        for p in ("0", "1"):  # the transfer answered before the service is asked to carry it
            wait_caught_up(admin, Keys(p))
        carried = exch("transfers", "--until-caught-up", "--redis-url", users["transfers"])
        assert carried.returncode == 0 and not refused(carried.stderr), carried.stderr
        for p in ("0", "1"):
            wait_caught_up(admin, Keys(p))
        wait_until(lambda: admin.exists(Keys("0").follower), "the follower never started")
        snap = exch("snapshot", "--redis-url", users["operator"])
        assert snap.returncode == 0, snap.stderr
        assert admin.xlen(Keys("0").snapshots) >= 1
        wait_until(lambda: int(admin.get(Keys("0").followed) or 0) >= last_seq(admin, "0"),
                   "the follower never verified the answers")
        tail = exch("tail", "--from", "0", "--no-follow", "--json", "--partition", "all",
                    "--redis-url", users["consumer"])
        assert tail.returncode == 0, tail.stderr
        events = [json.loads(line) for line in tail.stdout.splitlines()]
        kinds = {e["type"] for e in events}
        assert {"market_created", "trade", "transfer_out", "transfer_in"} <= kinds, kinds
        assert not any(e["type"] == "order_rejected" for e in events), events
        out = tmp_path / "parquet"
        export = exch("export", "parquet", "--out", str(out), "--redis-url", users["consumer"])
        assert export.returncode == 0, export.stderr
        assert list(out.rglob("*.parquet"))
        stats = exch("stats", "--json", "--redis-url", users["consumer"])
        assert stats.returncode == 0, stats.stderr
        assert "1.1" in stats.stdout and "2.1" in stats.stdout
        store = exch("store", "--db", store_url, "--redis-url", users["consumer"])
        assert store.returncode == 0, store.stderr
        book = exch("book", "1.1", "--redis-url", users["consumer"])
        assert book.returncode == 0 and not refused(book.stderr), book.stderr
        for command in (["status"], ["partitions"], ["groups"], ["snapshot", "--list"],
                        ["archive", "--dir", str(tmp_path / "archive")], ["compact"],
                        ["rules", "upgrade"], ["groups", "remove", f"parquet:{out.resolve()}"]):
            done = exch(*command, "--redis-url", users["operator"])
            assert done.returncode == 0 and not refused(done.stdout + done.stderr), \
                (command, done.stdout, done.stderr)
    finally:
        for name, proc in procs.items():
            errors[name] = stopped(proc)
    for name, err in errors.items():
        assert not refused(err), f"{name}: {err}"


def last_seq(client: redis.Redis, partition: str) -> int:
    """The last seq of a partition's input."""
    return int(last_id(client, Keys(partition).input).split("-")[0])


def small_journal(client: redis.Redis) -> Keys:
    """A partition with a few commands in, sequenced as the operator would."""
    keys = Keys()
    wanted = commands_file(Path(os.environ["EXCH_HOME"]), "small.jsonl", setup_lines()[:4])
    Sequencer(client, keys).submit([c for _, c in valid_commands(str(wanted))])
    return keys


def test_a_consumer_cannot_write_the_journal(redis_server, users) -> None:  # type: ignore[no-untyped-def]
    admin = redis_server.client()
    keys = small_journal(connect(users["operator"]))
    admin.xgroup_create(keys.output, "g", id="0", mkstream=True)
    def state() -> tuple:
        return (admin.xlen(keys.input), last_id(admin, keys.input), admin.xlen(keys.output),
                admin.exists(keys.snapshots), admin.hgetall(keys.settings),
                admin.get(keys.lease), admin.hgetall("exch:directory"))

    before = state()
    consumer = connect(users["consumer"])
    # what a consumer does is allowed...
    assert consumer.xrange(keys.input) and consumer.info("cluster") is not None
    consumer.xreadgroup("g", "c", {keys.output: ">"})
    consumer.set(keys.stats_lease, "me")
    # ...writing the journal, the output or snapshots is not, in any way
    attempts = {
        "XADD in": lambda: consumer.xadd(keys.input, {"c": b"x"}),
        "XADD out": lambda: consumer.xadd(keys.output, {"e": b"x"}),
        "sequencer script": lambda: Sequencer(consumer, keys).submit_batch(
            [c for _, c in valid_commands(str(commands_file(
                Path(os.environ["EXCH_HOME"]), "one.jsonl", setup_lines()[2:3])))]),
        "DEL in": lambda: consumer.delete(keys.input),
        "UNLINK out": lambda: consumer.unlink(keys.output),
        "XTRIM in": lambda: consumer.xtrim(keys.input, maxlen=0),
        "XDEL in": lambda: consumer.xdel(keys.input, last_id(admin, keys.input)),
        "XSETID in": lambda: consumer.execute_command("XSETID", keys.input, "999999-0"),
        "RENAME in": lambda: consumer.rename(keys.input, keys.stats_index),
        "snapshot": lambda: consumer.xadd(keys.snapshots, {"hash": b"forged"}),
        "snapshot blob": lambda: consumer.set(keys.snapshot_blob(1), b"forged"),
        "settings": lambda: consumer.hset(keys.settings, "rules", "1"),
        "lease": lambda: consumer.set(keys.lease, "me"),
        "directory": lambda: consumer.hset("exch:directory", "9.9", "0"),
        "api keys": lambda: consumer.hgetall("exch:apikeys"),
        "EVAL": lambda: consumer.eval("return redis.call('DEL', KEYS[1])", 1, keys.input),
        "CONFIG SET appendonly no": lambda: consumer.config_set("appendonly", "no"),
        "CONFIG GET": lambda: consumer.config_get("requirepass"),
        "FLUSHALL": lambda: consumer.flushall(),
        "FLUSHDB": lambda: consumer.flushdb(),
        "SHUTDOWN": lambda: consumer.execute_command("SHUTDOWN", "NOSAVE"),
        "ACL SETUSER": lambda: consumer.execute_command("ACL", "SETUSER", "exch-consumer",
                                                        "~*", "+@all"),
        "REPLICAOF": lambda: consumer.execute_command("REPLICAOF", "127.0.0.1", "1"),
        "SCRIPT FLUSH": lambda: consumer.script_flush(),
        "KEYS": lambda: consumer.keys("*"),
    }  # DEBUG too (see the next test: this server refuses it to everyone, so not here)
    for what, attempt in attempts.items():
        with pytest.raises(REFUSED) as e:
            attempt()
        assert "NOPERM" in str(e.value) or "no permissions" in str(e.value), (what, e.value)
    assert state() == before
    assert admin.config_get("appendonly") == {"appendonly": "yes"}


def test_the_gateway_sequences_but_administers_nothing(redis_server, users) -> None:  # type: ignore[no-untyped-def]
    admin = redis_server.client()
    admin.hset("exch:apikeys", "k1", "record")
    gateway = connect(users["gateway"])
    keys = small_journal(gateway)  # the sequencer script, as the gateway
    assert admin.xlen(keys.input) >= 1
    assert gateway.hget("exch:apikeys", "k1") == b"record"
    assert gateway.xrange(keys.input) and gateway.xread({keys.output: "0"}) is not None
    length = admin.xlen(keys.input)
    attempts = {
        "XGROUP CREATE": lambda: gateway.xgroup_create(keys.output, "mine", id="0",
                                                       mkstream=True),
        "XREADGROUP": lambda: gateway.xreadgroup("g", "c", {keys.output: ">"}),
        "DEL in": lambda: gateway.delete(keys.input),
        "DEL out": lambda: gateway.delete(keys.output),
        "XTRIM": lambda: gateway.xtrim(keys.input, maxlen=0),
        "XADD out": lambda: gateway.xadd(keys.output, {"e": b"x"}),
        "snapshot": lambda: gateway.xadd(keys.snapshots, {"hash": b"forged"}),
        "snapshot blob": lambda: gateway.set(keys.snapshot_blob(1), b"forged"),
        "api keys": lambda: gateway.hset("exch:apikeys", "k2", "mine"),
        "CONFIG SET": lambda: gateway.config_set("appendonly", "no"),
        "FLUSHALL": lambda: gateway.flushall(),
        "lease": lambda: gateway.set(keys.lease, "me"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(REFUSED) as e:
            attempt()
        assert "NOPERM" in str(e.value) or "no permissions" in str(e.value), (what, e.value)
    assert admin.xlen(keys.input) == length and not admin.exists(keys.snapshots)
    assert admin.hgetall("exch:apikeys") == {b"k1": b"record"}


def test_no_role_administers_the_server(redis_server, users) -> None:  # type: ignore[no-untyped-def]
    """CONFIG, ACL, SHUTDOWN, FLUSHALL, FLUSHDB, DEBUG, MODULE, REPLICAOF, SCRIPT FLUSH: for
    no role (ACL DRYRUN asks the server itself), the operator included; and no role reaches
    a key outside exch:."""
    admin = redis_server.client()
    for r in ROLES:
        for command in (["CONFIG", "SET", "appendonly", "no"], ["CONFIG", "GET", "*"],
                        ["ACL", "SETUSER", "x"], ["SHUTDOWN"], ["FLUSHALL"], ["FLUSHDB"],
                        ["DEBUG", "SLEEP", "0"], ["MODULE", "LIST"],
                        ["REPLICAOF", "NO", "ONE"], ["SCRIPT", "FLUSH"],
                        ["EVAL", "return 1", "0"], ["MONITOR"], ["GET", "other"]):
            answer = admin.execute_command("ACL", "DRYRUN", r.user, *command)
            assert answer != b"OK", (r.name, command)
    assert admin.execute_command("ACL", "DRYRUN", role("operator").user, "DEL",
                                 "exch:{0}:in") == b"OK"


def test_the_users_reach_every_node_of_a_cluster(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ACL users are per node: every primary and every replica gets them (a replica promoted
    by a failover must know them), and a role's URL works as a cluster client."""
    from journal.acl import role_url

    from .cluster import Cluster

    cluster = Cluster(tmp_path / "cluster", shards=2)
    cluster.start()
    try:
        admin = connect(cluster.url)
        applied = apply_roles(admin)
        assert applied.servers == 4
        for port in cluster.nodes:
            node = cluster.node(port)
            assert {r.user for r in ROLES} <= set(node.execute_command("ACL", "USERS"))
        operator = connect(role_url(cluster.url, "operator", applied.passwords["operator"]))
        keys = small_journal(operator)
        consumer = connect(role_url(cluster.url, "consumer", applied.passwords["consumer"]))
        assert consumer.xlen(keys.input) >= 1
        with pytest.raises(REFUSED):
            consumer.xadd(keys.input, {"c": b"x"})
    finally:
        cluster.stop()


def test_the_roles_that_sequence_may_write_every_key_the_sequencer_names(redis_server) -> None:  # type: ignore[no-untyped-def]
    """The sequencer's keys change with the rules (``ref-seqs`` came with version 3's
    answers): every key it passes its script must be one the sequencing roles may write,
    and one a consumer may not."""
    from fnmatch import fnmatchcase

    from journal.acl import SEQUENCER_KEYS

    keys, _ = Sequencer(redis_server.client(), Keys("7"))._args([("k", b"x")])
    for key in keys:
        pattern = key.replace("{7}", "{*}")
        assert any(fnmatchcase(pattern, p) for p in SEQUENCER_KEYS), key
        for name in ("gateway", "transfers", "matcher"):
            assert any(fnmatchcase(key, p) for g in role(name).grants for p in g.writes), (
                name, key)
        consumer = role("consumer")
        assert not any(fnmatchcase(key, p) for g in consumer.grants for p in g.writes), key


def test_the_embedded_servers_users_outlive_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With no --redis-url, the users are made on the embedded server, reached through its
    socket, and kept in its ACL file (0600): after a restart a role still connects."""
    env = {"EXCH_HOME": str(tmp_path / "home")}
    try:
        done = exch("users", "create", env=env)
        assert done.returncode == 0, done.stderr
        assert "saved in its ACL file" in done.stdout
        file = tmp_path / "home" / "redis-users.json"
        assert oct(file.stat().st_mode & 0o777) == "0o600"
        url = json.loads(file.read_text())["roles"]["consumer"]
        assert url.startswith("unix://exch-consumer:")
        acl = tmp_path / "home" / "redis" / "users.acl"
        assert "exch-consumer" in acl.read_text()
        assert oct(acl.stat().st_mode & 0o777) == "0o600"
        assert exch("server", "stop", env=env).returncode == 0
        assert exch("server", "start", env=env).returncode == 0
        consumer = connect(url)
        assert consumer.execute_command("ACL", "WHOAMI") == b"exch-consumer"
        with pytest.raises(REFUSED):
            consumer.xadd(Keys().input, {"c": b"x"})
        consumer.close()
    finally:
        exch("server", "stop", env=env)


def test_who_sequences_writes_each_key_only_as_the_sequencer_does(redis_server) -> None:  # type: ignore[no-untyped-def]
    """The gateway and the transfer service may sequence, and the matcher its heartbeats
    (time while orders wait out a bet delay); none of them may delete, trim or expire the
    journal or its keys by hand: each write is allowed on the one key it is for. (Setting the
    clock or the settings as the script does stays possible: Redis runs a script with its
    caller's rights, docs/security.md.)"""
    import redis as redis_py

    from journal.acl import role_url

    admin = redis_server.client()
    passwords = apply_roles(admin).passwords
    K = Keys("0")
    for name in ("gateway", "transfers", "matcher"):
        client = connect(role_url(redis_server.url, name, passwords[name]))
        seqs = Sequencer(client, K).submit_batch([("heartbeat", 0, 0)])
        assert seqs[0] > 0, name
        length = admin.xlen(K.input)
        for attempt in (lambda: client.unlink(K.input), lambda: client.pexpire(K.input, 1),
                        lambda: client.unlink(K.clock), lambda: client.unlink(K.settings),
                        lambda: client.set(K.input, "x"),
                        lambda: client.unlink(K.recent_refs),
                        lambda: client.hdel(K.settings, "rules"),
                        lambda: client.pexpire(K.settings, 1),
                        lambda: client.xtrim(K.input, maxlen=0)):
            with pytest.raises(redis_py.exceptions.NoPermissionError):
                attempt()
        assert admin.xlen(K.input) == length and admin.pttl(K.input) == -1
