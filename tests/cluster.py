"""A real Redis Cluster for tests: three primaries and three replicas, each its own
``redis-server --cluster-enabled yes`` process on a loopback port, joined with the cluster
commands themselves (CLUSTER ADDSLOTSRANGE, MEET, REPLICATE): nothing else to install."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import redis

from journal.server import ServerInfo, info_proc, start_server, stop_pid

SLOTS = 16384


def cluster_port() -> int:
    """A free loopback port whose cluster bus port (10,000 above) is free too."""
    import random
    import socket

    while True:
        port = random.randrange(20_000, 45_000)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue


class Cluster:
    """Six nodes: ``primaries[i]`` serves a third of the slots, ``replicas[i]`` copies it.
    ``kill(port)`` is SIGKILL; ``failover`` waits for the cluster to promote a replica."""

    def __init__(self, folder: Path, shards: int = 3) -> None:
        self.folder = folder
        self.shards = shards
        self.nodes: dict[int, ServerInfo] = {}

    def start(self) -> None:
        ports = [cluster_port() for _ in range(2 * self.shards)]
        for port in ports:
            self.nodes[port] = start_server(
                self.folder / str(port), port=port, daemonize=False,
                extra=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                       "--cluster-node-timeout", "1500", "--cluster-replica-validity-factor",
                       "0", "--appendfsync", "always"])
        primaries, replicas = ports[:self.shards], ports[self.shards:]
        step = SLOTS // self.shards
        for i, port in enumerate(primaries):
            last = SLOTS - 1 if i == self.shards - 1 else (i + 1) * step - 1
            self.node(port).execute_command("CLUSTER", "ADDSLOTSRANGE", i * step, last)
        first = self.node(ports[0])
        for port in ports[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        self._wait(lambda: all(len(self._known(p)) == len(ports) for p in ports),
                   "the nodes never all met")
        for primary, replica in zip(primaries, replicas):
            node_id = self.node(primary).execute_command("CLUSTER", "MYID")
            self._wait(lambda r=replica, n=node_id: self._replicate(r, n),
                       "a replica never attached")
        self._wait(self.ok, "the cluster never became ready")
        self._wait(lambda: all(self.node(r).info("replication").get("master_link_status")
                               == "up" for r in replicas), "a replica never synced")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{next(iter(self.nodes))}/0"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5)

    def _known(self, port: int) -> list[str]:
        return [line for line in self.node(port).execute_command("CLUSTER", "NODES").split("\n")
                if line.strip()]

    def _replicate(self, replica: int, node_id: str) -> bool:
        try:
            self.node(replica).execute_command("CLUSTER", "REPLICATE", node_id)
            return True
        except redis.ResponseError:  # the replica does not know the primary yet
            return False

    def ok(self) -> bool:
        for port in self.live():
            try:
                if "cluster_state:ok" not in self.node(port).execute_command("CLUSTER", "INFO"):
                    return False
            except redis.ConnectionError:
                return False
        return True

    def live(self) -> list[int]:
        return [p for p, info in self.nodes.items() if info.pid in info_proc
                and info_proc[info.pid].poll() is None]

    def primary_of(self, key: str) -> int:
        """The port of the primary serving ``key`` now."""
        slot = self.node(self.live()[0]).execute_command("CLUSTER", "KEYSLOT", key)
        for port in self.live():
            role = self.node(port).info("replication")["role"]
            if role != "master":
                continue
            for line in self._known(port):
                parts = line.split()
                if "myself" in parts[2]:
                    for rng in parts[8:]:
                        lo, _, hi = rng.partition("-")
                        if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                            return port
        raise AssertionError(f"no primary serves {key}")

    def kill(self, port: int) -> None:
        info = self.nodes[port]
        os.kill(info.pid, signal.SIGKILL)
        proc = info_proc.pop(info.pid, None)
        if proc is not None:
            proc.wait()

    def stop(self) -> None:
        for port in self.live():
            stop_pid(self.nodes[port].pid, timeout=10)

    @staticmethod
    def _wait(condition, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError(what)
