"""Redis roles: one ACL user per kind of process, with only the keys and commands it needs.

Whoever can write ``exch:{p}:in`` decides what the exchange does, and whoever can run
``CONFIG SET appendonly no`` decides whether it remembers. So no process connects as Redis's
all-powerful ``default`` user: each connects as its role (``exch users create`` makes the
users, ``docs/security.md`` lists them, generated from ``ROLES``):

- ``matcher`` (``exch run``, its hot standby): reads the journal, writes the output, its
  lease, the watermark, snapshots and the answers to control requests;
- ``follower`` (``exch follow``): reads the journal, writes snapshots and its own keys;
- ``transfers`` (``exch transfers``): reads the outputs, sequences ``transfer_in`` into other
  partitions through the sequencer script, keeps its position and lease;
- ``consumer`` (``exch export parquet``, ``exch stats``, ``exch store``, ``exch tail``,
  ``exch book``): reads the journal, runs consumer groups on the output and writes its own
  statistics and lease keys; it can write no input, no output entry and no snapshot;
- ``gateway`` (the HTTP gateway): sequences commands through the sequencer script (and the
  market directory), reads every stream, snapshot and setting and the API keys; no consumer
  groups, no deletes;
- ``operator`` (``exch submit``, ``rules``, ``partitions``, ``archive``, ``compact``,
  ``snapshot``, ``groups``, ``status``, ``keys``...): everything on ``exch:*`` keys, but no
  server administration.

How the rights are drawn (Redis 7 ACL):

- Key patterns are read-only (``%R~``), read-write (``~``) or, rarely, write-only (``%W~``).
  A command's keys are checked with what the command does to them (``XRANGE`` reads,
  ``XADD`` writes), and a Lua script's commands with the caller's rights: ``EVALSHA`` of the
  sequencer script by a user that cannot write ``exch:{p}:in`` is refused before it runs
  (its keys are declared read-write), and each ``redis.call`` inside is checked again.
- A ``Grant`` is a set of commands on a set of keys. A role's first grant is its user's root
  permissions; the others are Redis *selectors*: a command runs if one grant allows both the
  command and every key it names. That is how a consumer may ``XREADGROUP``/``XACK`` on the
  output (commands that change its consumer groups, so need write access to the key) while
  its ``DEL`` and ``XADD`` reach only its own keys: no single grant has both ``DEL`` and the
  output.
- Every role has ``BASE``: connecting, transactions, ``EVALSHA`` and ``SCRIPT LOAD`` (a
  restarted Redis has an empty script cache), the cluster's topology, ``TIME``, ``WAIT`` and
  ``INFO`` (``journal.connection`` asks ``INFO cluster`` to tell a cluster from one server,
  and the matcher and the sequencer ``INFO replication`` to count replicas: without it they
  would silently run as if there were none). ``EVAL`` is not in it: a script runs with the
  caller's rights anyway, but only this project's scripts are meant to run.
- ``FORBIDDEN`` is removed from every role last, whatever else it says: no role may run
  CONFIG, ACL, SHUTDOWN, FLUSHALL, FLUSHDB, DEBUG, MODULE, REPLICAOF, SCRIPT FLUSH...
- No role has Pub/Sub channels (``resetchannels``): nothing here uses them.

``apply_roles`` creates or updates the users on a server, or on every node of a Redis
Cluster (primaries and replicas: ACL users are per node, and a replica promoted by a
failover must know them), with passwords from ``secrets.token_urlsafe``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import redis

from exchange.errors import InputError

USER_PREFIX = "exch-"
"""A role's Redis user is ``exch-<role>``: ACL users are per server, shared with whatever
else uses it, so ours are named as ours."""

PARTITION = "exch:{*}:"
"""The start of every key of every partition (``journal.keys``: ``exch:{p}:...``)."""

GLOBAL_READS = ("exch:partitions", "exch:directory")
"""Global keys every process may read: how many partitions, and each market's partition
(``journal.routing``)."""

APIKEYS = "exch:apikeys"
"""The gateway's API key records (a hash, keys stored hashed): the gateway reads it, the
operator (``exch keys``) writes it."""

SEQUENCER_KEYS = tuple(PARTITION + k for k in (
    "in", "refs", "recent-refs", "ref-seqs", "clock", "batch:*", "settings"))
"""What the sequencer script writes (``journal.sequencer.Sequencer._args``): the input, the
client refs seen (and their seqs), the clock, the batch records and the settings (layout,
rules). tests/test_acl.py checks that this covers every key the sequencer passes."""

BASE = (
    "+ping", "+echo", "+hello", "+auth", "+select", "+reset",
    "+client|setname", "+client|getname", "+client|id", "+client|setinfo", "+client|info",
    "+readonly", "+readwrite", "+command",
    "+cluster|slots", "+cluster|shards", "+cluster|nodes", "+cluster|info", "+cluster|myid",
    "+info", "+time", "+wait",
    "+multi", "+exec", "+discard", "+watch", "+unwatch",
    "+evalsha", "+evalsha_ro", "+script|load", "+script|exists",
)
"""What every role may run, on no key in particular: see the module docstring."""

FORBIDDEN = (
    "-@admin", "-@dangerous", "-config", "-acl", "-shutdown", "-flushall", "-flushdb",
    "-debug", "-module", "-replicaof", "-slaveof", "-script|flush", "-script|kill",
    "-function", "-eval", "-eval_ro", "-fcall", "-fcall_ro", "-monitor", "-keys",
    "-migrate", "-swapdb", "-save", "-bgsave", "-bgrewriteaof", "-failover",
)
"""Taken from every role after everything else (in every grant): server administration,
whole-database wipes, arbitrary scripts and functions. ``INFO`` (in ``@dangerous``) and ``ACL
WHOAMI`` are given back after it (``GIVEN_BACK``)."""

GIVEN_BACK = ("+info", "+acl|whoami")
"""Given back after ``FORBIDDEN``: ``INFO`` (see ``BASE``) and ``ACL WHOAMI`` (who am I
connected as: for a person checking a service's URL)."""

READS = (
    "+get", "+mget", "+exists", "+type", "+pttl", "+ttl", "+strlen", "+getrange",
    "+hget", "+hmget", "+hgetall", "+hexists", "+hlen", "+hkeys", "+hvals", "+hscan",
    "+smembers", "+sismember", "+scard", "+sscan",
    "+zscore", "+zcard", "+zrange", "+zrangebyscore",
    "+llen", "+lrange",
    "+xread", "+xrange", "+xrevrange", "+xlen",
    "+xinfo|stream", "+xinfo|groups", "+xinfo|consumers", "+xpending",
    "+scan", "+memory|usage",
)
"""Read-only commands (each checked against the grant's read patterns)."""

OWN_WRITES = ("+set", "+del", "+unlink", "+pexpire", "+expire", "+persist", "+incr")
"""Writes of a process's own small keys (positions, leases, markers)."""

SNAPSHOT_WRITES = ("+append", "+rename", "+xadd", "+xdel", "+hset", "+hdel")
"""How snapshots are stored (``journal.snapshots``): a blob built piece by piece under a
staging name and renamed into place, indexed by a stream entry; its key pairs hashes."""

@dataclass(frozen=True)
class Grant:
    """Commands allowed on keys: ``reads`` patterns may be read (``%R~``), ``writes`` read
    and written (``~``). A command passes a grant only if the grant allows it and every key
    it names, as it uses it."""

    commands: tuple[str, ...]
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # each command once, in the order first given (groups of commands overlap)
        object.__setattr__(self, "commands", tuple(dict.fromkeys(self.commands)))

    def rules(self) -> list[str]:
        """This grant as ACL rules (without the user's password and switches)."""
        keys = [f"%R~{p}" for p in self.reads] + [f"~{p}" for p in self.writes]
        return ["-@all", *self.commands, *FORBIDDEN, *GIVEN_BACK, *keys]


@dataclass(frozen=True)
class Role:
    """A kind of process and its Redis user: what it is for, the ``exch`` commands that
    connect as it, and its grants (the first is the user's root; the others selectors)."""

    name: str
    purpose: str
    commands: tuple[str, ...]
    grants: tuple[Grant, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def user(self) -> str:
        """The Redis user name."""
        return USER_PREFIX + self.name

    def rules(self, password: str) -> list[str]:
        """The full ``ACL SETUSER`` argument list after the user name: reset (so an update
        leaves nothing of before), on, the password, no channels, the root grant, the
        selectors."""
        root, *selectors = self.grants
        out = ["reset", "on", f">{password}", "resetchannels", *root.rules()]
        out += ["(" + " ".join(g.rules()) + ")" for g in selectors]
        return out


_ALL_PARTITION_KEYS = (PARTITION + "*",)

OUTPUT_GROUPS = Grant(
    ("+xreadgroup", "+xack", "+xclaim", "+xautoclaim", "+xpending", "+xinfo|groups",
     "+xinfo|consumers", "+xgroup|create", "+xgroup|createconsumer", "+xgroup|delconsumer",
     "+xgroup|destroy", "+xgroup|setid"),
    writes=(PARTITION + "out",))
"""A selector for the readers of the output through consumer groups (``journal.consumer``):
these commands change the groups, so Redis counts them as writes of the stream, but none of
them adds, changes or removes an entry; and no other command reaches the output through
this grant."""

def _only(commands: tuple[str, ...], key: str) -> Grant:
    return Grant(commands, writes=(key if key.startswith("exch:") and "{" not in key
                                   else PARTITION + key,))


SEQUENCING = (
    Grant(("+evalsha", "+evalsha_ro"), writes=SEQUENCER_KEYS),
    _only(("+xadd",), "in"),
    _only(("+sadd", "+unlink"), "refs"),
    _only(("+zadd", "+zremrangebyscore"), "recent-refs"),
    _only(("+hset", "+hdel"), "ref-seqs"),
    _only(("+set",), "clock"),
    _only(("+set", "+pexpire"), "batch:*"),
    _only(("+hset",), "settings"),
)
"""Selectors for sequencing (``journal/lua/sequence.lua``): the script may be called with
the sequencer's keys, and each of its writes is allowed on the one key it is for, so that
no command reaches a key it is not meant for: ``UNLINK`` only the permanent refs set (which
the script drops once the windowed one covers it), ``HDEL`` only the seqs of refs that left
the window, ``PEXPIRE`` only the calls' records. Appending to the input directly (``XADD``
without the script) stays possible for whoever may sequence: such an entry is answered,
never applied (docs/journal.md, foreign entries)."""

DIRECTORY_BINDING = _only(("+hsetnx",), "exch:directory")
"""Binding a new market to its partition (``journal.routing``), first binding wins."""

ROLES: tuple[Role, ...] = (
    Role(
        "matcher",
        "The matcher of a partition and its hot standby: applies the input, commits the "
        "output.",
        ("exch run",),
        (Grant(BASE + READS + OWN_WRITES + SNAPSHOT_WRITES + ("+lpush",),
               reads=_ALL_PARTITION_KEYS + GLOBAL_READS,
               writes=tuple(PARTITION + k for k in (
                   "out", "lease", "replicated", "replica-probe", "reply:*", "snapshot*"))),
         *SEQUENCING),
        ("writes the output only through the commit script, under its lease; sequences "
         "only the heartbeats that carry time while orders wait out a bet delay",),
    ),
    Role(
        "follower",
        "Keeps a second copy of the state, checks every answer, takes the snapshots.",
        ("exch follow",),
        (Grant(BASE + READS + OWN_WRITES + SNAPSHOT_WRITES + ("+lpush",),
               reads=_ALL_PARTITION_KEYS + GLOBAL_READS,
               writes=tuple(PARTITION + k for k in (
                   "follower", "followed", "reply:*", "snapshot*"))),),
    ),
    Role(
        "transfers",
        "Carries transfers between partitions: reads the outputs, sequences transfer_in.",
        ("exch transfers",),
        (Grant(BASE + READS + OWN_WRITES,
               reads=_ALL_PARTITION_KEYS + GLOBAL_READS,
               writes=tuple(PARTITION + k for k in ("transfers", "transfer-lease"))),
         OUTPUT_GROUPS, *SEQUENCING),
    ),
    Role(
        "consumer",
        "Reads the output through consumer groups into other systems (Parquet, statistics, "
        "PostgreSQL); writes only its own keys.",
        ("exch export parquet", "exch stats", "exch store", "exch tail", "exch book"),
        (Grant(BASE + READS + OWN_WRITES + ("+sadd", "+srem", "+hset"),
               reads=_ALL_PARTITION_KEYS + GLOBAL_READS,
               writes=(PARTITION + "stats*",)),
         OUTPUT_GROUPS),
        ("may change the output's consumer groups, never its entries; Redis cannot limit "
         "a user to some groups, so a consumer's user could move or remove another's group "
         "(the transfer service checks that what it reads follows its own position)",),
    ),
    Role(
        "gateway",
        "The HTTP gateway: sequences its clients' commands, reads every stream and snapshot "
        "to answer them, checks API keys.",
        ("exch gateway",),
        (Grant(BASE + READS, reads=_ALL_PARTITION_KEYS + GLOBAL_READS + (APIKEYS,)),
         *SEQUENCING, DIRECTORY_BINDING),
        ("writes nothing but through the sequencer's selectors (each write on the one key "
         "it is for) and market bindings; no consumer groups, no snapshots, no API keys. "
         "Redis runs a script with its caller's rights, so whoever may sequence may also "
         "append to the input directly (answered, never applied), set the clock forward or "
         "the settings as the script does",),
    ),
    Role(
        "operator",
        "The operator's tools: submit, rules, partitions, archive, compact, snapshot, groups, "
        "status, tail, API keys.",
        ("exch submit", "exch rules", "exch partitions", "exch archive", "exch compact",
         "exch snapshot", "exch groups", "exch status", "exch keys", "exch replay"),
        (Grant(("+@all",) + BASE, writes=("exch:*",)),),
        ("every command on exch:* keys but the forbidden ones; CONFIG GET is refused too, "
         "so `exch compact` warns that it cannot check the eviction policy",),
    ),
)
"""Every role, in the order they are listed."""


def role(name: str) -> Role:
    """The role called ``name`` (``InputError`` for another name)."""
    for r in ROLES:
        if r.name == name:
            return r
    raise InputError(f"no role {name!r}: the roles are {', '.join(r.name for r in ROLES)}")


# ----------------------------------------------------------------------------- on a server


@contextmanager
def each_node(client: redis.Redis) -> Iterator[list[redis.Redis]]:
    """``nodes(client)``, the clients made for a cluster's nodes closed afterwards."""
    found = nodes(client)
    try:
        yield found
    finally:
        for node in found:
            if node is not client:
                node.close()


def nodes(client: redis.Redis) -> list[redis.Redis]:
    """A client of each server to configure: the server itself, or every node of a cluster
    (primaries and replicas; new clients, for the caller to close)."""
    from .connection import CLUSTER_OPTIONS, is_cluster

    if not is_cluster(client):
        return [client]
    # every node the cluster knows, from CLUSTER NODES (the client itself knows only the
    # primaries unless it reads from replicas); one that cannot be reached is an error:
    # it would come back without the users
    kwargs = {k: v for k, v in client.nodes_manager.connection_kwargs.items()  # type: ignore
              if k in CLUSTER_OPTIONS or k in ("username", "password") or k.startswith("ssl")}
    text = client.execute_command("CLUSTER", "NODES", target_nodes=client.get_random_node())
    text = text.decode() if isinstance(text, bytes) else str(text)
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or "noaddr" in fields[2]:
            continue
        host, port = fields[1].split("@", 1)[0].rsplit(":", 1)
        out.append(redis.Redis(host=host or "127.0.0.1", port=int(port), **kwargs))
    return out


def unknown_commands(node: redis.Redis, names: Iterable[str]) -> set[str]:
    """Which of ``names`` (``cmd`` or ``cmd|sub``) this server does not know, so that a rule
    for a command of a newer Redis (``CLIENT SETINFO``, 7.2) is left out on an older one
    rather than refusing the whole user."""
    wanted = sorted(set(names))
    conn = node.connection_pool.get_connection()
    try:
        conn.send_command("COMMAND", "INFO", *wanted)
        reply = conn.read_response()
    finally:
        node.connection_pool.release(conn)
    return {n for n, info in zip(wanted, reply) if info is None}


def _command_names(rules: Iterable[str]) -> set[str]:
    out = set()
    for rule in rules:
        for word in rule.strip("()").split():
            if word[:1] in "+-" and not word[1:2] == "@":
                out.add(word[1:])
    return out


def _known_only(rules: list[str], unknown: set[str]) -> list[str]:
    def keep(word: str) -> bool:
        return not (word[:1] in "+-" and word[1:] in unknown)

    out = []
    for rule in rules:
        if rule.startswith("("):
            out.append("(" + " ".join(w for w in rule[1:-1].split() if keep(w)) + ")")
        elif keep(rule):
            out.append(rule)
    return out


@dataclass
class Applied:
    """What ``apply_roles`` did: the password of each role's user, how many servers got
    them, and whether they were saved in the servers' ACL files (else they last until
    the servers restart)."""

    passwords: dict[str, str]
    servers: int
    saved: bool


def apply_roles(client: redis.Redis, passwords: Mapping[str, str] | None = None,
                names: Iterable[str] | None = None) -> Applied:
    """Create or update the users of the roles ``names`` (default all) on the server or on
    every node of the cluster behind ``client`` (which must be allowed ``ACL``), each with
    the password given in ``passwords`` or a new one. Each user is set in one ``ACL
    SETUSER`` (all its rules or none), starting with ``reset``: an update leaves nothing of
    its former rights. Then ``ACL SAVE`` where the server has an ACL file."""
    chosen = [role(n) for n in names] if names is not None else list(ROLES)
    given = dict(passwords or {})
    made = {r.name: given.get(r.name) or secrets.token_urlsafe(32) for r in chosen}
    saved = True
    with each_node(client) as servers:
        for node in servers:
            every = [r.rules(made[r.name]) for r in chosen]
            unknown = unknown_commands(node, set().union(*(_command_names(x) for x in every)))
            for r, rules in zip(chosen, every):
                node.execute_command("ACL", "SETUSER", r.user, *_known_only(rules, unknown))
            saved = _save(node) and saved
    return Applied(made, len(servers), saved)


def remove_roles(client: redis.Redis, names: Iterable[str] | None = None) -> int:
    """Delete the users of the roles ``names`` (default all) from the server or every node;
    the number of users deleted (counted on the first node). Their open connections are
    closed by Redis."""
    chosen = [role(n) for n in names] if names is not None else list(ROLES)
    deleted = 0
    with each_node(client) as servers:
        for i, node in enumerate(servers):
            n = int(node.execute_command("ACL", "DELUSER", *[r.user for r in chosen]))
            deleted = n if i == 0 else deleted
            _save(node)
    return deleted


def lock_default(client: redis.Redis, password: str | None = None) -> str:
    """Make an ``exch-admin`` user with every right (for ``exch users`` and the server's
    owner) and switch the ``default`` user off, so that a connection without credentials
    can do nothing (``NOAUTH``). Returns the admin password. On every node of a cluster,
    each told to log in to its primary as the admin (``masteruser``/``masterauth``: in
    memory, like the users without an ACL file). A plain server's own replicas are not
    reached: run it against each of them first."""
    password = password or secrets.token_urlsafe(32)
    with each_node(client) as servers:
        for node in servers:
            node.execute_command("ACL", "SETUSER", ADMIN, "reset", "on", f">{password}",
                                 "~*", "&*", "+@all")
        for node in servers:  # every node knows the admin before any is locked
            # a replica (or a primary that a failover demotes) logs in to its primary as
            # the default user unless told otherwise: as the admin from now on
            node.config_set("masteruser", ADMIN)
            node.config_set("masterauth", password)
            node.execute_command("ACL", "SETUSER", "default", "off")
            _save(node)
    return password


ADMIN = USER_PREFIX + "admin"
"""The administrator made by ``lock_default``."""


def _save(node: redis.Redis) -> bool:
    """``ACL SAVE``: True if the server keeps its users in an ACL file (so they outlive a
    restart), False if it has none."""
    try:
        node.execute_command("ACL", "SAVE")
        return True
    except redis.ResponseError as e:
        if "ACL file" in str(e) or "aclfile" in str(e).lower():
            return False
        raise


def existing_users(client: redis.Redis) -> dict[str, list[str]]:
    """The users of the server (the first node of a cluster) and their rules, as ``ACL
    LIST`` shows them (passwords appear only as hashes)."""
    out: dict[str, list[str]] = {}
    with each_node(client) as servers:
        lines = servers[0].execute_command("ACL", "LIST")
    for line in lines:
        text = line.decode() if isinstance(line, bytes) else str(line)
        parts = text.split(" ", 2)
        out[parts[1]] = parts[2:] if len(parts) > 2 else []
    return out


def role_url(server_url: str, role_name: str, password: str) -> str:
    """``server_url`` (``redis://``, ``rediss://`` or ``unix://``; its own credentials
    dropped) with the user and password of ``role_name``'s user."""
    user = role(role_name).user if role_name != "admin" else ADMIN
    return with_credentials(server_url, user, password)


def with_credentials(server_url: str, user: str, password: str) -> str:
    """``server_url`` with ``user:password@`` as its credentials (percent-encoded)."""
    parts = urlsplit(server_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def without_credentials(url: str) -> str:
    """``url`` with no user or password."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def password_of(url: str) -> str | None:
    """The password in a role's URL, if any."""
    from urllib.parse import unquote

    pw = urlsplit(url).password
    return unquote(pw) if pw is not None else None


def describe(r: Role) -> dict[str, Any]:
    """A role as plain data, for tables and ``--json``: keys read and written, commands."""
    root, *selectors = r.grants
    return {
        "role": r.name,
        "user": r.user,
        "purpose": r.purpose,
        "runs": list(r.commands),
        "reads": list(root.reads),
        "writes": list(root.writes),
        "commands": [c for c in root.commands if c not in BASE],
        "write_commands": [c for c in root.commands if c not in BASE and c not in READS],
        "also": [{"commands": list(g.commands), "reads": list(g.reads),
                  "writes": list(g.writes)} for g in selectors],
        "notes": list(r.notes),
    }


# ----------------------------------------------------------------------------- the docs


DOC_BEGIN = "<!-- roles: generated from journal/acl.py (python -m journal.acl); do not edit -->"
DOC_END = "<!-- end of the generated roles -->"


def _code(items: Iterable[str], cell: bool = True) -> str:
    """Items as code spans, for a Markdown table ``cell`` (a ``|`` escaped: it ends one) or
    for text."""
    text = " ".join(f"`{i}`" for i in items) or "none"
    return text.replace("|", "\\|") if cell else text


def markdown() -> str:
    """The roles as docs/security.md shows them, between ``DOC_BEGIN`` and ``DOC_END``:
    a test keeps the page equal to this."""
    out = [DOC_BEGIN, "",
           "| role (user) | runs | reads | reads and writes | may also run |",
           "|---|---|---|---|---|"]
    for r in ROLES:
        d = describe(r)
        extra = _code(d["write_commands"])
        for g in d["also"]:
            extra += f"; on {_code(g['writes'] + g['reads'])} only: {_code(g['commands'])}"
        if r.name == "operator":
            extra = "every command but the forbidden ones"
        out.append(f"| {r.name} (`{r.user}`) | {', '.join(f'`{c}`' for c in r.commands)} | "
                   f"{_code(d['reads'])} | {_code(d['writes'])} | {extra} |")
    out += ["", "Notes:", ""]
    out += [f"- {r.name}: {n}." for r in ROLES for n in r.notes]
    out += ["", f"Every role may run: {_code(BASE, False)}.", "",
            f"Every role but the operator may read with: {_code(READS, False)}.", "",
            f"No role may run (taken away last): {_code(FORBIDDEN, False)}; then "
            f"{_code(GIVEN_BACK, False)} are given back.", "", DOC_END]
    return "\n".join(out) + "\n"


def documented(page: str) -> str:
    """The generated part of a page (``DOC_BEGIN`` to ``DOC_END``, both lines included)."""
    start = page.find(DOC_BEGIN)
    end = page.find(DOC_END)
    if start < 0 or end < 0:
        return ""
    return page[start:end + len(DOC_END)] + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
