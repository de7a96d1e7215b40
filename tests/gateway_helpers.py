"""A whole exchange behind its gateway, for tests: a real redis-server, ``exch run`` and
``exch gateway`` as their own processes, and API keys for the operator and two accounts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from journal.connection import connect
from journal.server import free_port
from tools.gateway.apikeys import KeyStore
from tools.gateway.client import wait_serving

ROOT = Path(__file__).resolve().parent.parent


def exch(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    """``exch ARGS`` as its own process."""
    return subprocess.Popen([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                            env=env or os.environ.copy(), **kwargs)


def stop(proc: subprocess.Popen | None) -> int | None:
    """SIGTERM and wait (SIGKILL after 30 s); its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class Exchange:
    """What ``running_exchange`` started: the gateway's base URL, the keys, the processes."""

    redis_url: str
    base: str
    operator: str
    keys: dict[str, str]
    matcher: subprocess.Popen | None = None
    gateway: subprocess.Popen | None = None
    extra_args: list[str] = field(default_factory=list)
    partitions: int = 1
    urls: dict[str, str] = field(default_factory=dict)
    """Each role's URL (``journal.acl``), when the services run as their Redis users."""
    others: list[subprocess.Popen] = field(default_factory=list)
    gateway_log: str = ""
    """Matchers of partitions 1 and on, and the transfer service (with partitions)."""

    def headers(self, who: str) -> dict[str, str]:
        key = self.operator if who == "operator" else self.keys[who]
        return {"Authorization": f"Bearer {key}"}

    def client(self, who: str, **kwargs) -> httpx.Client:  # type: ignore[no-untyped-def]
        return httpx.Client(base_url=self.base, headers=self.headers(who), timeout=30,
                            **kwargs)

    def url(self, role: str) -> str:
        """The URL the ``role`` service connects with: its own user's, or the server's."""
        return self.urls.get(role, self.redis_url)

    def start_matcher(self) -> None:
        self.matcher = exch("run", "--redis-url", self.url("matcher"))
        if self.partitions > 1 and not self.others:
            self.others = [exch("run", "--redis-url", self.url("matcher"), "--partition",
                                str(p)) for p in range(1, self.partitions)]
            self.others.append(exch("transfers", "--redis-url", self.url("transfers")))

    def stop_matcher(self) -> None:
        stop(self.matcher)
        self.matcher = None

    def stop_all(self) -> None:
        self.stop_gateway()
        self.stop_matcher()
        for proc in self.others:
            stop(proc)
        self.others = []

    def start_gateway(self) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.gateway = exch("gateway", "--redis-url", self.url("gateway"), "--port",
                            str(port), *self.extra_args, stderr=subprocess.PIPE, text=True)
        wait_serving(self.base, self.gateway, 60)

    def stop_gateway(self) -> None:
        """Stop the gateway; what it wrote on stderr is kept in ``gateway_log``."""
        if self.gateway is not None:
            stop(self.gateway)
            if self.gateway.stderr is not None:
                self.gateway_log += self.gateway.stderr.read()
                self.gateway.stderr.close()
        self.gateway = None

    def admin(self, **command) -> dict:  # type: ignore[no-untyped-def]
        """An operator's command through the gateway; its outcome (accepted, or fail)."""
        with self.client("operator") as c:
            r = c.post("/v1/admin/commands", json=command)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["status"] == "accepted", out
        return out


@contextmanager
def running_exchange(redis_server, accounts: tuple[str, ...] = ("alice", "bob"),  # type: ignore[no-untyped-def]
                     gateway_args: tuple[str, ...] = (), funded: str = "1000",
                     market: str | None = "m1", partitions: int = 1,
                     roles: bool = False) -> Iterator[Exchange]:
    """The matcher and the gateway on ``redis_server`` (a ``conftest.RedisProcess``), a key
    per account and the operator's; each account funded (in partition 0) and ``market``
    created through the gateway. With ``partitions``, a matcher for each and the transfer
    service. With ``roles``, every service connects as its own Redis user (``exch users``)
    and the keys are made by the operator's."""
    client = connect(redis_server.url)
    urls: dict[str, str] = {}
    if roles:
        from journal.acl import apply_roles, role_url

        applied = apply_roles(client)
        urls = {name: role_url(redis_server.url, name, password)
                for name, password in applied.passwords.items()}
        client = connect(urls["operator"])
    if partitions > 1:
        from journal.routing import set_partition_count

        set_partition_count(client, partitions)
    store = KeyStore(client)
    operator, _ = store.create(None, operator=True)
    keys = {a: store.create(a)[0] for a in accounts}
    ex = Exchange(redis_server.url, "", operator, keys, extra_args=list(gateway_args),
                  partitions=partitions, urls=urls)
    try:
        ex.start_matcher()
        ex.start_gateway()
        if market is not None:
            ex.admin(type="create_market", market=market, runners=[1, 2, 3])
        for a in accounts:
            if funded:
                ex.admin(type="deposit", account=a, amount=funded)
        yield ex
    finally:
        ex.stop_all()
        client.close()
