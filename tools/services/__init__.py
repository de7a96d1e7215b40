"""Long-running consumers of the output stream: each reads through its own consumer group
(``journal.consumer``), at its own pace, and never slows the matcher.

- ``export``: Parquet tables for analytics, exactly once;
- ``stats``: live market statistics kept in Redis.
"""
