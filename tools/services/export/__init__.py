"""Exporters: consumers of the output stream that store the events elsewhere.

``ParquetSink`` writes decoded output-stream entries to date-partitioned Parquet tables,
exactly once across crashes (see ``tools.services.export.parquet`` and docs/parquet.md); the
tables and their rows are ``tools.services.export.tables``; ``Exporter`` feeds the sink from
a consumer group.
"""

from .parquet import CompactReport, ParquetSink, read_events, read_table
from .tables import COLUMNS, SCHEMAS, TABLES

__all__ = [
    "COLUMNS",
    "SCHEMAS",
    "TABLES",
    "CompactReport",
    "ParquetSink",
    "read_events",
    "read_table",
]
