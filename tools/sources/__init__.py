"""Where commands come from, as core command tuples or JSON-form objects.

- ``commandfile``: command files (JSON lines) and the edge's checks of them;
- ``market_day``: a seeded, realistic generated market day (the demo, ``exch load``);
- ``workload``: the seeded benchmark workload;
- ``load``: sending a generated or imported flow to the journal, order ids translated;
- ``betfair``: real Betfair stream recordings turned into commands.
"""
