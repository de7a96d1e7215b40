"""Redis ACL users, one per role (``exch users``): each service connects with only the keys
and commands it needs. The roles are ``journal.acl.ROLES``; docs/security.md lists them.

``exch users create`` makes (or updates) the users, connected as an administrator (the
``--redis-url``'s user must be allowed ``ACL``), and writes each role's URL, password
included, to a file only this user can read (``$EXCH_HOME/redis-users.json``, mode 0600 from
its creation). The passwords never reach the terminal unless asked (``--show``, ``exch users
url ROLE``).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

import redis
import typer

from exchange.errors import InputError, ServerError

from .common import RedisUrl, redis_client

app = typer.Typer(help="Redis users, one per role, each with only the rights it needs.",
                  no_args_is_help=True)

UsersFile = Annotated[
    Path | None,
    typer.Option("--file", envvar="EXCH_REDIS_USERS", show_default=False,
                 help="Where the roles' URLs (with their passwords) are kept, mode 0600. "
                 "Default: $EXCH_HOME/redis-users.json."),
]
Roles = Annotated[
    list[str] | None,
    typer.Option("--role", show_default=False,
                 help="Only this role (repeat for more). Default: every role."),
]


def users_file(given: Path | None) -> Path:
    """The users file: ``given``, else ``redis-users.json`` in the exchange folder."""
    from journal.server import exch_home

    return given if given is not None else exch_home() / "redis-users.json"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that no other user can read it at any moment: a new
    file created with mode 0600 beside it, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_users(path: Path) -> dict[str, Any]:
    """The users file's contents (empty if there is none)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise InputError(f"{path} is not a users file (JSON): {e}") from None
    return data if isinstance(data, dict) else {}


def server_url(redis_url: str | None) -> str:
    """The URL the roles' URLs are made from: ``redis_url`` without its credentials, or the
    embedded server's unix socket (started if needed)."""
    from journal.acl import without_credentials
    from journal.server import ensure_embedded

    if redis_url is None:
        return f"unix://{ensure_embedded().socket}"
    return without_credentials(redis_url)


def _admin(redis_url: str | None) -> redis.Redis:
    client = redis_client(redis_url)
    try:
        client.execute_command("ACL", "WHOAMI")
        client.execute_command("ACL", "LIST")
    except redis.ResponseError as e:
        raise ServerError(f"the user of --redis-url cannot manage ACL users ({e}): connect as "
                          "an administrator") from None
    return client


@app.command("create")
def users_create(
    redis_url: RedisUrl = None,
    file: UsersFile = None,
    roles: Roles = None,
    rotate: Annotated[bool, typer.Option(
        "--rotate", help="Give every user a new password. Default: a role already in the "
        "file for this server keeps its password, so running services are not cut off.")
    ] = False,
    show: Annotated[bool, typer.Option(
        "--show", help="Print the URLs with their passwords (default: masked).")] = False,
    lock: Annotated[bool, typer.Option(
        "--lock-default", help="Also make an exch-admin user (its URL saved in the file) and "
        "switch the default user off, so that a connection without credentials can do "
        "nothing. Not for the embedded server: only its owner can reach its socket.")
    ] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object: the file, the roles and their users.")] = False,
) -> None:
    """Create or update the Redis user of every role (on every node of a cluster), each
    with only the keys and commands it needs (docs/security.md), and save their URLs."""
    from journal.acl import apply_roles, lock_default, password_of, role, role_url
    from journal.connection import redacted

    names = [role(n).name for n in roles] if roles else None
    if lock and redis_url is None:
        raise InputError("--lock-default is for a server others can reach: the embedded "
                         "server has no TCP port, and its socket is this user's only")
    path = users_file(file)
    base = server_url(redis_url)
    saved = read_users(path)
    same = saved.get("server") == redacted(base)
    kept = {} if rotate or not same else {
        n: pw for n, url in saved.get("roles", {}).items() if (pw := password_of(url))}
    client = _admin(redis_url)
    try:
        applied = apply_roles(client, kept, names)
        from journal.retention import eviction_problem

        problem = eviction_problem(client)  # the roles cannot look (CONFIG GET): look now
        urls = dict(saved.get("roles", {})) if same else {}
        urls.update({n: role_url(base, n, pw) for n, pw in applied.passwords.items()})
        data: dict[str, Any] = {"server": redacted(base), "roles": urls}
        if same and "admin" in saved:
            data["admin"] = saved["admin"]
        admin_password = None
        if lock:
            if same and "admin" in saved and not rotate:
                admin_password = password_of(saved["admin"])
            admin_password = admin_password or secrets.token_urlsafe(32)
            data["admin"] = role_url(base, "admin", admin_password)
        write_private(path, json.dumps(data, indent=2) + "\n")
        if lock:  # after the file holds the admin's URL: never locked out
            lock_default(client, admin_password)
        if redis_url is None:  # ACL SAVE rewrites the file with the server's own mode
            from journal.server import ACL_FILE, embedded_folder

            acl = embedded_folder() / ACL_FILE
            if acl.exists():
                os.chmod(acl, 0o600)
    finally:
        client.close()
    shown = {n: (u if show else redacted(u)) for n, u in urls.items()
             if names is None or n in names}
    if as_json:
        print(json.dumps({"file": str(path), "servers": applied.servers,
                          "saved_on_server": applied.saved, "roles": shown,
                          "default_locked": lock}))
        return
    if problem is not None:
        typer.echo(f"warning: {problem[1]}", err=True)
    _table(shown)
    typer.echo(f"the roles' URLs are in {path} (mode 0600); "
               f"`exch users url ROLE` prints one")
    where = f"{applied.servers} servers" if applied.servers > 1 else "the server"
    if applied.saved:
        typer.echo(f"users set on {where} and saved in its ACL file")
    else:
        typer.echo(f"users set on {where}, which has no ACL file: they last until it "
                   "restarts (run `exch users create` again then, or give it an aclfile)",
                   err=True)
    if lock:
        typer.echo(f"the default user is off; the administrator's URL (exch-admin) is in "
                   f"{path}")


def _table(urls: dict[str, str]) -> None:
    from rich.console import Console
    from rich.table import Table

    from journal.acl import role

    table = Table("role", "user", "runs")
    table.add_column("URL", overflow="fold")
    for name, url in urls.items():
        r = role(name) if name != "admin" else None
        table.add_row(name, r.user if r else "exch-admin", ", ".join(r.commands) if r else "",
                      url)
    Console().print(table)


@app.command("url")
def users_url(
    name: Annotated[str, typer.Argument(help="The role (see `exch users list`), or admin.")],
    file: UsersFile = None,
) -> None:
    """Print one role's URL, password included, for a service to connect with (for
    example `exch run --redis-url "$(exch users url matcher)"`)."""
    from journal.acl import role

    if name != "admin":
        role(name)
    path = users_file(file)
    data = read_users(path)
    url = data.get("admin") if name == "admin" else data.get("roles", {}).get(name)
    if not url:
        raise InputError(f"no URL for {name} in {path}: run `exch users create` first")
    typer.echo(url)


@app.command("list")
def users_list(
    redis_url: RedisUrl = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per role, one a line.")] = False,
) -> None:
    """The roles: what each is for, the exch commands that connect as it, the keys it reads
    and writes, its commands, and whether its user exists on the server."""
    from journal.acl import ROLES, describe, existing_users

    client = _admin(redis_url)
    try:
        there = existing_users(client)
    finally:
        client.close()
    rows = [{**describe(r), "exists": r.user in there} for r in ROLES]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("role", "exists", "runs", show_lines=True)
    for title in ("reads", "writes", "may write with (besides reading)"):
        table.add_column(title, overflow="fold")
    for row in rows:
        commands = " ".join(row["write_commands"])
        for extra in row["also"]:
            commands += f"; on {' '.join(extra['writes'] + extra['reads'])} only: " \
                        + " ".join(extra["commands"])
        table.add_row(f"{row['role']}\n({row['user']})", "yes" if row["exists"] else "no",
                      "\n".join(row["runs"]), "\n".join(row["reads"]),
                      "\n".join(row["writes"]), commands)
    Console().print(table)


@app.command("remove")
def users_remove(
    redis_url: RedisUrl = None,
    file: UsersFile = None,
    roles: Roles = None,
) -> None:
    """Delete the roles' users from the server (every node of a cluster; their connections
    are closed) and their URLs from the file."""
    from journal.acl import remove_roles, role
    from journal.connection import redacted

    names = [role(n).name for n in roles] if roles else None
    client = _admin(redis_url)
    try:
        deleted = remove_roles(client, names)
    finally:
        client.close()
    path = users_file(file)
    data = read_users(path)
    if data.get("server") == redacted(server_url(redis_url)):
        data["roles"] = {n: u for n, u in data.get("roles", {}).items()
                         if names is not None and n not in names}
        write_private(path, json.dumps(data, indent=2) + "\n")
    typer.echo(f"{deleted} users deleted")
