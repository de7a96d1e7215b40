"""The replicated watermark: how far a partition's output is safe from the loss of its primary.

With replicas (a Redis Cluster, or a primary with a replica), the sequencer acknowledges a
call only once a replica has it (``WAIT``). The matcher, though, reads and answers input as
soon as the primary holds it, and its answers are visible at once: a consumer that acted on
an answer the replicas never received (exported it, or carried a ``transfer_out`` to another
partition) would have acted on something a failover erases. So the matcher keeps a
watermark: after each commit it writes a probe and ``WAIT``\\ s for a replica on that same
connection; Redis replicates writes in order, so a replica that has the probe has every
answer committed before it, and the watermark (``exch:{p}:replicated``) moves up to them.
Consumers (``journal.consumer``) hand their sinks nothing past it.

The watermark is itself replicated later than what it covers, so after a failover it can
only be lower than the truth, never higher. Without replicas the key is absent and nothing
waits.
"""

from __future__ import annotations

import redis

from .connection import node_client
from .keys import Keys
from .streams import parse_id

WAIT_MS = 1000
"""How long one WAIT may take before the watermark is tried again later."""


def advance(client: redis.Redis, keys: Keys, upto: bytes, replicas: int,
            wait_ms: int = WAIT_MS) -> bool:
    """Move the watermark to ``upto`` (an output id this process committed) once
    ``replicas`` replicas have everything written so far; False if they did not answer in
    time (the watermark stays where it was)."""
    pipe = node_client(client, keys.output).pipeline(transaction=False)
    pipe.incr(keys.replica_probe)
    pipe.execute_command("WAIT", replicas, wait_ms)
    _, acked = pipe.execute()
    if int(acked) < replicas:
        return False
    client.set(keys.replicated, upto)
    return True


def start(client: redis.Redis, keys: Keys, upto: bytes, replicas: int) -> bool:
    """A matcher with replicas starts: consumers wait from now on (a watermark at the very
    start if there was none), and the watermark moves to ``upto`` if a replica has it."""
    client.set(keys.replicated, b"0-0", nx=True)
    return upto == b"0-0" or advance(client, keys, upto, replicas)


def clear(client: redis.Redis, keys: Keys) -> None:
    """No replicas: no watermark, so consumers do not wait for one."""
    client.delete(keys.replicated)


def read(client: redis.Redis, keys: Keys) -> int | None:
    """The seq of the last output entry known to be on a replica; None when there is no
    watermark (no replicas: everything committed may be acted on)."""
    value = client.get(keys.replicated)
    return None if value is None else parse_id(value)[0]
