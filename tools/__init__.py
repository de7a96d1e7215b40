"""Everything around the core and the journal that talks to people or to other systems.

- ``tools.cli``: the ``exch`` command line, one module per command group;
- ``tools.services``: long-running consumers of the output stream (the Parquet export, the
  live statistics), each behind a consumer group, never slowing the matcher;
- ``tools.sources``: where commands come from (command files and their checks, the generated
  market day, the benchmark workload, sending a flow to the journal, the Betfair import);
- ``tools.bench``: the benchmarks behind ``exch bench``;
- ``tools.demo``, ``tools.simulate``, ``tools.docs``: the demo, the core in-process, the
  generated contract reference; ``tools/notebooks``: the analytics notebook.
"""
