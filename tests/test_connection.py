"""Reaching Redis from the command line: every way of not reaching it is a clear line within
seconds, never a hang, and a password is never printed. Real servers and real processes; the
subprocess timeouts are bounds on a hang, not measures of speed."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal.connection import redacted
from journal.server import free_port, redis_server_binary

ROOT = Path(__file__).resolve().parent.parent
HANG = 60
"""Seconds after which a command counts as hanging (the fix answers within a few)."""


def exch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=HANG)


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[int]:
    """A real redis-server that needs a password (``s3cret``); its port."""
    port = free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--requirepass", "s3cret", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    try:
        yield port
    finally:
        proc.kill()
        proc.wait()


def test_nothing_listening_is_a_clear_error_at_once() -> None:
    got = exch("status", "--redis-url", f"redis://127.0.0.1:{free_port()}")
    assert got.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:" in got.stderr
    assert "Traceback" not in got.stderr


def test_refused_credentials_fail_fast_and_never_print_the_password(locked_redis) -> None:  # type: ignore[no-untyped-def]
    wrong = exch("status", "--redis-url", f"redis://user:WRONGpw@127.0.0.1:{locked_redis}")
    assert wrong.returncode == 1
    assert "refused the credentials" in wrong.stderr and "user:***@" in wrong.stderr
    assert "WRONGpw" not in wrong.stderr + wrong.stdout
    missing = exch("status", "--redis-url", f"redis://127.0.0.1:{locked_redis}")
    assert missing.returncode == 1 and "refused the credentials" in missing.stderr
    right = exch("groups", "--redis-url", f"redis://:s3cret@127.0.0.1:{locked_redis}")
    assert right.returncode == 0, right.stderr


def test_tls_to_a_plain_port_times_out_clearly(locked_redis) -> None:  # type: ignore[no-untyped-def]
    got = exch("status", "--redis-url", f"rediss://127.0.0.1:{locked_redis}")
    assert got.returncode == 1 and "did not answer within a few seconds" in got.stderr


@pytest.mark.parametrize("url", ["http://user:pw@localhost:6379", "localhost:6379",
                                 "redis://localhost:port"])
def test_a_url_that_is_not_a_redis_url_is_bad_usage(url: str) -> None:
    got = exch("status", "--redis-url", url)
    assert got.returncode == 2, got.stderr
    assert "pw" not in got.stderr.replace("***", "")
    assert "Traceback" not in got.stderr


def test_a_snapshot_request_with_no_matcher_answers_within_its_timeout(redis_server) -> None:  # type: ignore[no-untyped-def]
    got = exch("snapshot", "--timeout", "2", "--redis-url", redis_server.url)
    assert got.returncode == 1
    assert "no running matcher or follower answered within 2 s" in got.stderr


def test_redacted_masks_only_the_password() -> None:
    assert redacted("redis://u:p@h:1/0") == "redis://u:***@h:1/0"
    assert redacted("redis://:p@h:1") == "redis://:***@h:1"
    assert redacted("redis://h:1/0") == "redis://h:1/0"
    assert redacted("unix:///tmp/r.sock") == "unix:///tmp/r.sock"
    assert redacted(None) == "the embedded server"
    # a password as a parameter, or with characters a URL parser splits on, is masked too
    assert redacted("redis://h/0?password=secret") == "redis://h/0?password=***"
    assert redacted("unix:///s.sock?db=0&password=secret") == "unix:///s.sock?db=0&password=***"
    for url in ("redis://:pa/ss@h:1", "redis://u:p@ss@h:1", "redis://:pa#ss@h", "redis://:p?s@h"):
        assert "ss" not in redacted(url).split("@")[0] and "***" in redacted(url), url


def test_a_url_that_cannot_be_read_never_echoes_its_password() -> None:
    got = exch("status", "--redis-url", "redis://:pa/sec#ret@localhost:6379")
    assert got.returncode == 2 and "sec" not in got.stderr and "ret" not in got.stderr


def test_a_service_that_lost_redis_keeps_running_and_stops_when_told(redis_server) -> None:  # type: ignore[no-untyped-def]
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "run", "--redis-url", redis_server.url],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        client = redis_server.client()
        deadline = time.monotonic() + 60
        while not client.exists("exch:{0}:lease"):
            assert time.monotonic() < deadline and proc.poll() is None, "exch run did not start"
            time.sleep(0.05)
        redis_server.kill()  # Redis gone: the matcher keeps retrying, it does not exit
        time.sleep(2)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)  # a clean stop would wait out Redis's retries...
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # ...a second signal ends it at once
        _, err = proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err[-2000:]
    assert "exch run: asked again to stop; exiting now" in err


def test_a_service_waits_for_a_redis_that_is_starting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import redis as redis_py

    from journal.server import start_server, stop_pid

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "run", "--redis-url", f"redis://127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    server = None
    try:
        time.sleep(2)  # the matcher starts first: it says it waits, and does
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        server = start_server(tmp_path / "redis", port=port, daemonize=False)
        client = redis_py.Redis(port=port)
        deadline = time.monotonic() + HANG
        while not client.exists("exch:{0}:lease"):
            assert time.monotonic() < deadline and proc.poll() is None, "never took the lease"
            time.sleep(0.05)
        proc.terminate()
        _, err = proc.communicate(timeout=HANG)
        assert proc.returncode == 0 and "waiting for Redis at redis://127.0.0.1" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if server is not None:
            stop_pid(server.pid)
