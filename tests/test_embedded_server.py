"""The embedded server is one per user, wherever a command runs: never a second, empty
exchange because the command ran from another folder. These tests give it a home of their
own (never the user's) and stop what they start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from journal.server import embedded_folder, exch_home, socket_path

ROOT = Path(__file__).resolve().parent.parent


def exch(*args: str, cwd: Path, env: dict[str, str], stdin: str | None = None
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=cwd, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EXCH_HOME", "EXCH_REDIS_URL", "XDG_DATA_HOME", "EXCH_ARCHIVE")}
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **extra}


def test_one_server_per_user_wherever_the_command_runs(tmp_path: Path) -> None:
    env = clean_env(XDG_DATA_HOME=str(tmp_path / "data"))
    elsewhere = tmp_path / "some" / "other" / "folder"
    elsewhere.mkdir(parents=True)
    try:
        first = exch("submit", "-", cwd=ROOT / "tools", env=env,
                     stdin='{"type": "deposit", "account": "alice", "amount": "10"}\n')
        assert first.returncode == 0, first.stderr
        status = exch("server", "status", cwd=elsewhere, env=env)
        assert status.returncode == 0, status.stderr
        assert f"data in {tmp_path / 'data' / 'exch' / 'redis'}" in status.stdout
        # the deposit made from tools/ is in the journal seen from elsewhere
        seen = exch("status", "--json", cwd=elsewhere, env=env)
        assert seen.returncode == 0 and '"last_input_seq": 1' in seen.stdout, seen.stdout
        assert not (ROOT / "tools" / ".exch").exists() and not (elsewhere / ".exch").exists()
    finally:
        exch("server", "stop", cwd=elsewhere, env=env)
    stopped = exch("server", "status", cwd=elsewhere, env=env)
    assert stopped.returncode == 1 and "not running" in stopped.stdout


def test_exch_home_overrides_and_a_long_home_gets_a_short_socket(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5)
    env = clean_env(EXCH_HOME=str(deep))
    try:
        started = exch("server", "start", cwd=tmp_path, env=env)
        assert started.returncode == 0, started.stderr
        assert f"data in {deep / 'redis'}" in started.stdout
        sock = started.stdout.split("unix://", 1)[1].split(",", 1)[0]
        assert len(sock.encode()) <= 100 and Path(sock).is_socket()
        assert oct(Path(sock).parent.stat().st_mode & 0o777) == "0o700"
    finally:
        exch("server", "stop", cwd=tmp_path, env=env)


def test_the_home_follows_the_environment(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("EXCH_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert exch_home() == tmp_path / "xdg" / "exch"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert exch_home() == tmp_path / "me" / ".local" / "share" / "exch"
    monkeypatch.setenv("EXCH_HOME", str(tmp_path / "mine"))
    assert embedded_folder() == tmp_path / "mine" / "redis"
    assert socket_path(tmp_path) == tmp_path / "redis.sock"


def test_strict_durability_is_a_choice_that_lasts(tmp_path: Path) -> None:
    """`exch server start --fsync always`: every reply waits for the disk; the choice is
    applied to a running server at once and kept for its next starts."""
    env = clean_env(EXCH_HOME=str(tmp_path / "home"))
    try:
        assert exch("server", "start", cwd=tmp_path, env=env).returncode == 0
        assert "synced: everysec" in exch("server", "status", cwd=tmp_path, env=env).stdout
        assert exch("server", "start", "--fsync", "always", cwd=tmp_path,
                    env=env).returncode == 0
        assert "synced: always" in exch("server", "status", cwd=tmp_path, env=env).stdout
        exch("server", "stop", cwd=tmp_path, env=env)
        assert exch("server", "start", cwd=tmp_path, env=env).returncode == 0
        assert "synced: always" in exch("server", "status", cwd=tmp_path, env=env).stdout
        bad = exch("server", "start", "--fsync", "never", cwd=tmp_path, env=env)
        assert bad.returncode == 2 and "everysec, always" in bad.stderr
    finally:
        exch("server", "stop", cwd=tmp_path, env=env)


def tcp_listeners(pid: int) -> list[str]:
    """The TCP sockets (IPv4 and IPv6) on which process ``pid`` listens, as /proc/net shows
    them (local address in hex): its socket inodes matched against the LISTEN rows."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                found.append(cols[1])
    return found


def test_the_embedded_server_has_no_tcp_port(tmp_path: Path) -> None:
    """Any local user could reach a loopback port, and the embedded server has no password:
    it listens on its private socket only. Its ACL file is private too."""
    import redis

    from journal.server import ensure_embedded, stop_embedded

    home = tmp_path / "home"
    info = ensure_embedded(home)
    try:
        assert info.port == 0 and info.url == f"unix://{info.socket}"
        admin = redis.Redis(unix_socket_path=str(info.socket), decode_responses=True)
        try:
            assert admin.config_get("port") == {"port": "0"}
            assert admin.config_get("aclfile")["aclfile"] == str(info.folder / "users.acl")
        finally:
            admin.close()
        assert tcp_listeners(info.pid) == []
        assert oct((info.folder / "users.acl").stat().st_mode & 0o777) == "0o600"
        assert oct(info.socket.stat().st_mode & 0o777) == "0o700"
    finally:
        stop_embedded(home)


def test_an_older_embedded_server_on_tcp_is_closed_when_reused(tmp_path: Path) -> None:
    """A server started by an earlier version (with a loopback port) is found running: its
    port is closed before anything uses it, and server.json says so."""
    import json
    import socket

    from journal.server import ensure_embedded, start_server, stop_embedded

    home = tmp_path / "home"
    folder = embedded_folder(home)
    old = start_server(folder)  # as the earlier version did: TCP and socket
    (folder / "server.json").write_text(json.dumps(
        {"pid": old.pid, "port": old.port, "socket": str(old.socket)}))
    try:
        with socket.create_connection(("127.0.0.1", old.port), timeout=2):
            pass  # it was reachable
        assert tcp_listeners(old.pid) != []  # and the check sees a listener
        info = ensure_embedded(home)
        assert info.pid == old.pid and info.port == 0
        assert json.loads((folder / "server.json").read_text())["port"] == 0
        assert tcp_listeners(old.pid) == []
        try:
            socket.create_connection(("127.0.0.1", old.port), timeout=2).close()
            raise AssertionError("the old port still accepts connections")
        except ConnectionRefusedError:
            pass
    finally:
        stop_embedded(home)


def test_server_start_says_it_has_no_tcp_port(tmp_path: Path) -> None:
    env = clean_env(EXCH_HOME=str(tmp_path / "home"))
    try:
        started = exch("server", "start", cwd=tmp_path, env=env)
        assert started.returncode == 0, started.stderr
        assert "no TCP port" in started.stdout and "redis://" not in started.stdout
        status = exch("server", "status", cwd=tmp_path, env=env)
        assert "no TCP port" in status.stdout, status.stdout
    finally:
        exch("server", "stop", cwd=tmp_path, env=env)
