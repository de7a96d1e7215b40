"""``exch bench takeover``: how long a partition is without a matcher after its matcher is
SIGKILLed, with a large book resting, for a hot and a cold standby.

The steps: a private Redis; ``exch run`` as its own process (snapshots every
``snapshot_every`` commands); ``orders`` resting placements (they never cross) sequenced and
matched; a standby in this process (``Matcher``, hot or cold) once a hot one has verified
every answer; SIGKILL of the active matcher; one command sequenced at once; the time until
its answer is committed. The lease is renewed a third of its time apart, so a standby can take
it between two thirds of the lease time and the whole of it after the kill (the lease's time
left is read at the kill): what matters is what comes after it expires (a hot standby: the
entries after its last check; a cold one: restoring the newest snapshot and replaying the
journal after it).
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from exchange import COMPILED, decode
from journal.keys import Keys
from journal.runner import Matcher
from journal.sequencer import Sequencer
from journal.streams import last_id, parse_id
from tools.local import LocalSystem

ACCOUNTS = 100
RUNNERS = 10


def resting_book(orders: int) -> Iterator[tuple]:
    """A market of ``RUNNERS`` runners, funded accounts, and ``orders`` BACK orders at low
    prices that never cross (no LAY is placed): every one rests."""
    yield decode({"type": "create_market", "market": "big", "runners":
                  list(range(1, RUNNERS + 1))}, 0, 0)
    for a in range(ACCOUNTS):
        yield decode({"type": "deposit", "account": f"a{a}", "amount": "10000000"}, 0, 0)
    prices = ["1.01", "1.02", "1.03", "1.04", "1.05", "1.1", "1.2", "1.3"]
    for i in range(orders):
        yield decode({"type": "place", "account": f"a{i % ACCOUNTS}", "market": "big",
                      "runner": 1 + i % RUNNERS, "side": "BACK",
                      "price": prices[i % len(prices)], "stake": "2"}, 0, 0)


def bench_takeover(
    orders: int = 1_000_000,
    *,
    standby: str = "hot",
    lease_ms: int = 3000,
    snapshot_every: int = 250_000,
    on_phase: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One takeover with ``orders`` resting orders and a ``standby`` ("hot" or "cold")."""
    phase = on_phase or (lambda name: None)
    if standby not in ("hot", "cold"):
        raise ValueError("standby is hot or cold")
    with tempfile.TemporaryDirectory(prefix="exch-bench-takeover-") as tmp, LocalSystem(
        Path(tmp) / "redis", Keys(), snapshot_every=snapshot_every,
    ) as system:
        client, keys = system.client, system.keys
        assert client is not None
        phase("active matcher starting")
        system.start_matcher()
        assert system.matcher is not None
        phase(f"sequencing and matching {orders:,} resting orders")
        Sequencer(client, keys).submit(resting_book(orders))
        target = last_id(client, keys.input)
        while last_id(client, keys.output) != target:
            time.sleep(0.05)
        phase(f"{standby} standby starting and catching up")
        m = Matcher(client, keys, snapshot_every=10**15, lease_ms=lease_ms, hot=standby == "hot")
        thread = threading.Thread(target=m.run, daemon=True)
        thread.start()
        try:
            last = parse_id(target)[0]
            while standby == "hot" and (m._shadow is None
                                        or m._shadow[0].progress.verified_seq < last):
                time.sleep(0.05)
            time.sleep(lease_ms / 1000)  # the standby settled; any moment of the renewals
            phase("SIGKILL of the active matcher, then one command")
            system.matcher.send_signal(signal.SIGKILL)
            killed = time.perf_counter()
            left = max(int(client.pttl(keys.lease)), 0)  # the dead matcher's lease still runs
            system.matcher.wait()
            system.matcher = None
            (seq,) = Sequencer(client, keys).submit_batch(
                [decode({"type": "deposit", "account": "late", "amount": "1"}, 0, 0)])
            while last_id(client, keys.output) != f"{seq}-0":
                time.sleep(0.001)
            took = time.perf_counter() - killed
            replayed = m.progress.replayed
        finally:
            m.stopping.set()
            thread.join(timeout=120)
    return {
        "benchmark": "takeover", "compiled_core": COMPILED, "orders": orders,
        "standby": standby, "lease_ms": lease_ms, "snapshot_every": snapshot_every,
        "takeover_ms": round(took * 1000), "over_lease_ms": round(took * 1000 - lease_ms),
        "lease_left_at_kill_ms": left, "after_lease_expiry_ms": round(took * 1000 - left),
        "entries_replayed": replayed,
    }
