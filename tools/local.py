"""A whole exchange on this machine, for the demo and the benchmarks: a private redis-server
with append-only persistence, and the services as their own processes (``exch run``), each
stopped cleanly when done.

Tests start their own parts (they kill them); this is for jobs that need the system up, used,
and gone again, leaving nothing running.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import redis

from exchange.errors import ServerError
from journal.connection import connect
from journal.keys import Keys
from journal.server import ServerInfo, start_server, stop_pid


class LocalSystem:
    """Redis in ``folder`` and a matcher for ``keys``' partition; a context manager.

    ``client`` is a connection to that Redis; ``url`` its unix socket, for other processes.
    """

    STARTUP_SECONDS = 30.0
    """How long a service may take to start before it counts as failed."""

    def __init__(
        self, folder: str | Path, keys: Keys | None = None, *, snapshot_every: int | None = None,
        redis_options: list[str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.keys = keys or Keys()
        self.snapshot_every = snapshot_every
        self.redis_options = redis_options or []
        self.server: ServerInfo | None = None
        self.client: redis.Redis | None = None
        self.matcher: subprocess.Popen | None = None
        self.follower: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        assert self.server is not None, "not started"
        return f"unix://{self.server.socket}"

    def __enter__(self) -> LocalSystem:
        # its socket only: no TCP port another local user could write the journal through
        self.server = start_server(self.folder, tcp=False, daemonize=False,
                                   extra=self.redis_options)
        self.client = connect(self.url)
        return self

    def _service(self, command: str, key: str, partition: str | None = None
                 ) -> subprocess.Popen:
        """``exch <command>`` as its own process (for ``partition``, default this system's),
        once it holds ``key`` (its lease)."""
        assert self.client is not None, "not started"
        args = [sys.executable, "-m", "tools.cli", command, "--redis-url", self.url,
                "--partition", partition if partition is not None else self.keys.partition]
        if self.snapshot_every is not None:
            args += ["--snapshot-every", str(self.snapshot_every)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self.STARTUP_SECONDS
        while not self.client.exists(key):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise ServerError(f"exch {command} did not start")
            time.sleep(0.01)
        return proc

    def start_matcher(self) -> None:
        """``exch run`` as its own process; returns once it holds the partition's lease."""
        self.matcher = self._service("run", self.keys.lease)

    def start_partition_matcher(self, partition: str) -> subprocess.Popen:
        """``exch run --partition P`` for another partition of this Redis; the caller stops
        it (``stop_process``)."""
        return self._service("run", Keys(partition).lease, partition)

    def start_follower(self) -> None:
        """``exch follow`` as its own process (it takes the snapshots); returns once it
        announces itself."""
        self.follower = self._service("follow", self.keys.follower)

    def stop_matcher(self) -> None:
        """Stop the matcher cleanly (it releases its lease), if it runs."""
        stop_process(self.matcher)
        self.matcher = None

    def stop_follower(self) -> int | None:
        """Stop the follower cleanly, if it runs; its exit code (1: it found a difference)."""
        code = stop_process(self.follower)
        self.follower = None
        return code

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            self.stop_matcher()
            self.stop_follower()
        finally:
            if self.client is not None:
                self.client.close()
            if self.server is not None:
                stop_pid(self.server.pid)


def stop_process(proc: subprocess.Popen | None) -> int | None:
    """SIGTERM a service and wait for it (SIGKILL after two minutes); its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
