"""The deterministic core of the exchange: no I/O, no clock, no randomness.

``Exchange().apply(command)`` returns the events a command causes. Commands come from
``exchange.commands.decode`` (JSON or stream form); events go out through ``exchange.codec``.

``COMPILED`` tells whether the matching modules run compiled (see setup.py). A compiled module
older than its source is reported: Python would silently run the stale build.
"""

import os as _os
import sys as _sys

from .commands import COMMANDS, decode, problem
from .engine import _COMPILED as COMPILED
from .engine import Exchange, SequenceError
from .events import CANCEL_REASONS, EVENT_FIELDS, REJECT_REASONS
from .invariants import InvariantError
from .snapshot import SnapshotError


def _stale_builds() -> list[str]:
    """Compiled modules of this package whose .py or .pxd source is newer than the build."""
    stale = []
    for name in ("book", "accounts", "market", "engine", "commands"):
        module = _sys.modules.get(f"{__name__}.{name}")
        built = getattr(module, "__file__", None) or ""
        if built.endswith(".py"):
            continue
        base = _os.path.join(_os.path.dirname(built), name)
        for source in (base + ".py", base + ".pxd"):
            if _os.path.exists(source) and _os.path.getmtime(source) > _os.path.getmtime(built):
                stale.append(source)
    return stale


if COMPILED and _stale_builds():
    import warnings as _warnings

    _warnings.warn(
        "exchange: compiled core is older than " + ", ".join(_stale_builds())
        + "; rebuild it with `pip install -e .` (or `python setup.py build_ext --inplace`)",
        stacklevel=2,
    )

__all__ = [
    "COMPILED",
    "COMMANDS",
    "CANCEL_REASONS",
    "EVENT_FIELDS",
    "REJECT_REASONS",
    "Exchange",
    "InvariantError",
    "SequenceError",
    "SnapshotError",
    "decode",
    "problem",
]
