"""The embedded Redis server used when no --redis-url is given."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .common import fail

if TYPE_CHECKING:
    from journal.server import ServerInfo

app = typer.Typer(
    help="The embedded Redis server used when no --redis-url is given.", no_args_is_help=True
)


def running(info: ServerInfo) -> str:
    """The line that says where a running server listens: its unix socket, and its TCP port
    if it has one (an embedded server started by an older version, until it is reused)."""
    tcp = f"redis://127.0.0.1:{info.port}/0" if info.port else "no TCP port"
    return f"running: pid {info.pid}, unix://{info.socket}, {tcp}, data in {info.folder}"


@app.command("start")
def server_start(
    fsync: Annotated[str | None, typer.Option(
        "--fsync", envvar="EXCH_FSYNC", show_default=False,
        help="How the append-only file is synced: everysec (a power loss may drop about a "
        "second of acknowledged commands) or always (none; slower). Kept for later starts; "
        "applied at once to a running server. Default: as chosen before, else everysec.")
    ] = None,
) -> None:
    """Start the embedded Redis server (if it is not running) and say where it listens: on
    its private unix socket only (no TCP port, so no other local user can reach it)."""
    from journal.server import FSYNC_MODES, ServerError, ensure_embedded

    if fsync is not None and fsync not in FSYNC_MODES:
        raise fail(f"--fsync is one of {', '.join(FSYNC_MODES)}, not {fsync!r}")
    try:
        info = ensure_embedded(fsync=fsync)
    except ServerError as e:
        raise fail(str(e), 1) from None
    typer.echo(running(info))


@app.command("stop")
def server_stop() -> None:
    """Stop the embedded Redis server; its data stays for the next start."""
    from journal.server import stop_embedded

    typer.echo("stopped" if stop_embedded() else "not running")


@app.command("status")
def server_status() -> None:
    """Whether the embedded Redis server is running, and where."""
    from journal.server import embedded_folder, embedded_status

    info = embedded_status()
    if info is None:
        typer.echo(f"not running (data folder {embedded_folder()})")
        raise typer.Exit(1)
    typer.echo(running(info))
    import redis

    client = redis.Redis(unix_socket_path=str(info.socket), socket_timeout=5)
    try:
        mode = client.config_get("appendfsync").get("appendfsync", "?")
    finally:
        client.close()
    typer.echo(f"append-only file synced: {mode}")
