"""``exch bench``: throughput and memory, measured the same way every time.

Each benchmark takes the median of several runs. Generating the workload is never timed;
the cyclic garbage collector is off while the matcher runs, as it is in ``exch run`` (the core
leaves no cyclic garbage, see tests/test_core_properties.py, so nothing accumulates).

- ``core``: the matching core alone, in-process;
- ``e2e``: the whole system (sequencer, ``exch run``, Redis with append-only persistence);
- ``export``: the Parquet exporter, from the output stream through its consumer group;
- ``store``: the store, from the output stream into PostgreSQL through its consumer group;
- ``archive``: the journal into the archive, and replays read back through it;
- ``soak``: the whole system with the archive and compaction over millions of commands:
  Redis memory stays bounded and nothing is lost;
- ``scale``: the whole system with one matcher per partition, for several partition counts;
- ``takeover``: the time without a matcher after a SIGKILL, hot and cold standby;
- ``gateway``: orders through ``exch gateway`` with their outcomes, and their latency.
"""

from __future__ import annotations

from .archive import bench_archive
from .core import bench_core
from .e2e import bench_e2e
from .export import bench_export
from .gateway import bench_gateway
from .memory import peak_rss_bytes, rss_bytes
from .scale import bench_scale
from .soak import bench_soak
from .store import bench_store
from .takeover import bench_takeover

__all__ = ["bench_archive", "bench_core", "bench_e2e", "bench_export", "bench_gateway",
           "bench_scale", "bench_soak", "bench_store", "bench_takeover", "peak_rss_bytes",
           "rss_bytes"]
