"""``exch import betfair``: Betfair Exchange Stream recordings as commands for this exchange.

A recording is one JSON message per line (``{"op": "mcm", "pt": <ms>, "mc": [...]}``), each
market change carrying a market definition and/or runner changes: the sizes available to back
(``atb``: unmatched LAY money) and to lay (``atl``: unmatched BACK money) per price, and the
cumulative traded size per price (``trd``). ``convert`` turns one or more recordings into the
JSON-form commands ``exch simulate`` and ``exch submit`` read, such that replaying them through
the core reproduces the recording's book and its traded volume, price by price:

- the first market definition becomes ``create_market`` (and, once, the ``deposit``s of the
  accounts below); status and in-play changes become ``market_status`` / ``turn_in_play``; the
  winners of the final definition become ``settle``;
- the recording's book is held by two liquidity accounts as resting GTC/PERSIST orders: growth
  of a level is a new order, shrinkage not explained by trading a ``cancel`` with ``reduce``;
- every increase of a price's traded size (above its peak so far) becomes a crossing IOC order
  from a taker account that trades exactly that size at exactly that price; where the book
  does not hold the liquidity it needs, a "fill" account adds it first, and resting orders at
  better prices that would be taken first are cancelled and put back afterwards.

The converter keeps a private ``Exchange`` as a mirror and applies each command as it emits
it, so it always knows which orders exist, what is left of them and which are still waiting
out an in-play bet delay; the mirror's events are the report's expected outcome. Everything
is a pure function of the input files: the same files always give the same commands.
See docs/betfair-import.md for the method, its adjustments and the measured results.

The modules, in the order a conversion uses them:

- ``stream``: reading a recording, and its prices and sizes as hundredths and pence;
- ``accounts``: the sides, the six accounts and their deposits;
- ``report``: the conversion report, and traded volume measured and compared price by price;
- ``plan``: the first pass over one market, deciding what each message must do (status
  commands, where each traded-volume increase trades, the deposit bound);
- ``mirror``: our orders per level, runner and market, and the private ``Exchange`` every
  emitted command is applied to;
- ``convert``: the converter (each market change turned into commands) and ``convert``;
- ``replay``: the converted commands run through a fresh core.
"""

from .accounts import ACCOUNTS
from .convert import convert, dump_commands
from .replay import ReplayResult, replay
from .report import (
    ConversionReport,
    MarketReport,
    VolumeComparison,
    compare_volume,
    matched_volume,
)
from .stream import read_stream

__all__ = [
    "ACCOUNTS",
    "ConversionReport",
    "MarketReport",
    "ReplayResult",
    "VolumeComparison",
    "compare_volume",
    "convert",
    "dump_commands",
    "matched_volume",
    "read_stream",
    "replay",
]
