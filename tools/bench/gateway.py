"""``exch bench gateway``: orders through the gateway, each answered with its outcome.

The steps: start a private Redis and ``exch run`` (``tools.local``), API keys for the operator
and ``accounts`` accounts, and ``exch gateway`` as its own process; create the markets and
fund the accounts through the gateway. Then, from this process (asyncio, raw HTTP/1.1 on kept
connections, so that the measuring client costs little of the 2 cores it shares):

- **throughput**: ``connections`` clients each send an order, wait for its outcome, send the
  next, until ``orders`` are answered; orders/s is the median of ``runs`` runs, with the CPU
  time each process spent per order (where the time goes: the client, here, is one of them);
- **batches**: the same with ``/v1/batch`` requests of 100 orders;
- **latency**: orders sent at a steady ``rate`` for ``seconds``, each timed from its request to
  its outcome (p50, p99), open loop: a slow answer does not slow the sending.

Every order must be answered with an outcome (accepted or rejected by the matcher): a 202
(outcome pending) or an error fails the run. The orders cross at a few prices, so about half
of them trade.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from exchange import COMPILED
from journal.keys import Keys
from journal.server import free_port
from journal.streams import raw
from tools.gateway.apikeys import KeyStore
from tools.gateway.client import call, wait_serving
from tools.local import LocalSystem, stop_process

from .e2e import cpu_seconds

MARKETS = 4
PRICES = ("2", "2.02", "2.04", "2.06")


def bench_gateway(
    orders: int = 20_000,
    *,
    runs: int = 3,
    connections: int = 32,
    accounts: int = 64,
    rate: int = 500,
    seconds: float = 10.0,
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Throughput and latency of orders through ``exch gateway`` (see the module docstring)."""
    phase = on_phase or (lambda _: None)
    result: dict[str, Any] = {"compiled_core": COMPILED, "connections": connections,
                              "accounts": accounts}
    with tempfile.TemporaryDirectory(prefix="exch-bench-gateway-") as folder, \
            LocalSystem(folder) as system:
        phase("starting the matcher and the gateway")
        system.start_matcher()
        assert system.client is not None
        store = KeyStore(system.client)
        operator = store.create(None, operator=True)[0]
        names = [f"acct{i:03d}" for i in range(accounts)]
        keys = [store.create(a)[0] for a in names]
        port = free_port()
        gateway = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "gateway", "--redis-url", system.url,
             "--port", str(port), "--rate", "1000000", "--burst", "1000000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_serving(base, gateway, 120)
            _setup(base, operator, names)
            before = raw(system.client).xlen(Keys().input)
            assert system.matcher is not None and system.server is not None
            pids = {"gateway": gateway.pid, "matcher": system.matcher.pid,
                    "redis": system.server.pid}
            cpu_before = cpu_seconds(pids)
            sent = 0
            rates = []
            for i in range(runs):
                phase(f"throughput run {i + 1} of {runs}: {orders:,} orders, "
                      f"{connections} connections")
                took = asyncio.run(_closed_loop(port, keys, orders, connections, 1,
                                                f"t{i}"))
                rates.append(orders / took)
                sent += orders
            entries = raw(system.client).xlen(Keys().input) - before
            result["orders_per_sec"] = round(statistics.median(rates))
            result["orders_per_sec_runs"] = [round(r) for r in rates]
            result["orders_per_journal_entry"] = round(sent / max(1, entries), 1)
            cpu_after = cpu_seconds(pids)
            result["cpu_us_per_order"] = {
                "client" if name == "submitter" else name:
                round((cpu_after[name] - cpu_before[name]) * 1e6 / sent, 1)
                for name in cpu_after}
            phase(f"batches of 100: {orders:,} orders")
            took = asyncio.run(_closed_loop(port, keys, orders, max(1, connections // 4), 100,
                                            "b"))
            result["batch_orders_per_sec"] = round(orders / took)
            phase(f"latency at {rate:,} orders/s for {seconds:g} s")
            lat = asyncio.run(_open_loop(port, keys, rate, seconds, connections * 4))
            result.update(latency_rate=rate, latency_samples=len(lat),
                          latency_p50_ms=round(lat[len(lat) // 2], 2),
                          latency_p99_ms=round(lat[int(len(lat) * 0.99)], 2),
                          latency_max_ms=round(lat[-1], 2))
        finally:
            stop_process(gateway)
    return result


def _setup(base: str, operator: str, names: list[str]) -> None:
    commands: list[dict[str, Any]] = [
        {"type": "create_market", "market": f"bench-{m}", "runners": [1, 2, 3]}
        for m in range(MARKETS)]
    commands += [{"type": "deposit", "account": a, "amount": "100000000"} for a in names]
    for i in range(0, len(commands), 100):
        answer = call(base, "POST", "/v1/batch", operator, {"commands": commands[i:i + 100]})
        bad = [x for x in answer["results"] if x["status"] != "accepted"]
        if bad:
            raise RuntimeError(f"setting up the benchmark failed: {bad[0]}")


def _order(i: int, tag: str) -> dict[str, Any]:
    """The i-th order: backs and lays crossing at a few prices, on a few markets."""
    side = "BACK" if i % 2 else "LAY"
    return {"market": f"bench-{i % MARKETS}", "runner": 1 + (i // MARKETS) % 3, "side": side,
            "price": PRICES[(i // 7) % len(PRICES)], "stake": "2", "ref": f"{tag}-{i}"}


def _request(path: str, key: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode() + data


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


def _check(status: int, data: bytes, count: int) -> None:
    if status != 200:
        raise RuntimeError(f"an order was answered {status}: {data[:300]!r}")
    body = json.loads(data)
    results = body.get("results", [body])
    if len(results) != count or any(r["status"] not in ("accepted", "rejected")
                                    for r in results):
        raise RuntimeError(f"an order was not answered with its outcome: {data[:300]!r}")


async def _closed_loop(port: int, keys: list[str], orders: int, connections: int,
                       per_request: int, tag: str) -> float:
    """Seconds for ``orders`` orders, ``per_request`` a request, over ``connections`` kept
    connections each waiting for an answer before sending again."""
    requests = []
    for start in range(0, orders, per_request):
        n = min(per_request, orders - start)
        key = keys[(start // per_request) % len(keys)]
        if per_request == 1:
            requests.append((_request("/v1/orders", key, _order(start, tag)), 1))
        else:
            cmds = [{"type": "place", **_order(start + j, tag)} for j in range(n)]
            requests.append((_request("/v1/batch", key, {"commands": cmds}), n))
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    queue = iter(requests)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for payload, n in queue:
            writer.write(payload)
            status, data = await _answer(reader)
            _check(status, data, n)

    started = time.perf_counter()
    await asyncio.gather(*(client(r, w) for r, w in conns))
    took = time.perf_counter() - started
    for _, w in conns:
        w.close()
    return took


async def _open_loop(port: int, keys: list[str], rate: int, seconds: float,
                     connections: int) -> list[float]:
    """Latencies (ms, sorted) of orders sent at ``rate`` a second for ``seconds``, each on a
    free connection (more are opened if every one is busy)."""
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = [
        await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    latencies: list[float] = []
    tasks = []

    async def one(i: int) -> None:
        conn = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
        payload = _request("/v1/orders", keys[i % len(keys)], _order(i, "lat"))
        sent = time.perf_counter()
        conn[1].write(payload)
        status, data = await _answer(conn[0])
        latencies.append((time.perf_counter() - sent) * 1000)
        _check(status, data, 1)
        idle.append(conn)

    total = int(rate * seconds)
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    for _, w in idle:
        w.close()
    return sorted(latencies)
