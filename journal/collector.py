"""The cyclic garbage collector, paused where it only costs time.

The core makes no cyclic garbage (a test proves it), and the long loops here (the matcher,
a replay, a consumer, a Parquet write) build many small objects that hold no cycles: a
collector running meanwhile would only rescan a large, growing heap again and again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off for the block; back on afterwards if it was on before."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
