"""Exporters: consumers of the output stream that store the events elsewhere.

``ParquetSink`` writes decoded output-stream entries to date-partitioned Parquet tables,
exactly once across crashes (see ``tools.services.export.parquet`` and docs/parquet.md).
"""

from .parquet import (
    COLUMNS,
    SCHEMAS,
    TABLES,
    CompactReport,
    ParquetSink,
    SinkError,
    bench_parquet,
    read_events,
    read_table,
)

__all__ = [
    "COLUMNS",
    "SCHEMAS",
    "TABLES",
    "CompactReport",
    "ParquetSink",
    "SinkError",
    "bench_parquet",
    "read_events",
    "read_table",
]
