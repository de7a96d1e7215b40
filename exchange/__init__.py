"""The deterministic core of the exchange: no I/O, no clock, no randomness.

``Exchange().apply(command)`` returns the events a command causes. Commands come from
``exchange.commands.decode`` (JSON or stream form); events go out through ``exchange.codec``.

``COMPILED`` tells whether the matching modules run compiled (see setup.py). A compiled module
older than its source is reported: Python would silently run the stale build.
"""

import os as _os
import sys as _sys
from importlib.machinery import EXTENSION_SUFFIXES as _EXTENSION_SUFFIXES

from .commands import COMMANDS, decode, problem
from .engine import _COMPILED as COMPILED
from .engine import Exchange
from .errors import ExchError, InputError, InvariantError, SequenceError, SnapshotError
from .events import CANCEL_REASONS, EVENT_FIELDS, REJECT_REASONS


def _declarations(folder: str, name: str) -> set[str]:
    """The .pxd files a module's build depends on: its own and those it cimports, through
    each other (a changed field layout in book.pxd makes the engine's build stale too)."""
    found: set[str] = set()
    todo = [name]
    while todo:
        pxd = _os.path.join(folder, todo.pop() + ".pxd")
        if pxd in found or not _os.path.exists(pxd):
            continue
        found.add(pxd)
        with open(pxd, encoding="utf-8") as f:
            for line in f:
                words = line.split()
                if len(words) >= 3 and words[0] == "from" and words[2] == "cimport":
                    todo.append(words[1].rpartition(".")[2])
    return found


def _stale_builds() -> list[str]:
    """In a development checkout, the sources (.py, and the .pxd files the build read) that
    are newer than their compiled module: Python would run the older build. An installed
    copy is never reported (a wheel's files need not keep their build order in time)."""
    folder = _os.path.dirname(_os.path.abspath(__file__))
    if not _os.path.exists(_os.path.join(_os.path.dirname(folder), "setup.py")):
        return []
    stale: set[str] = set()
    for full_name, module in list(_sys.modules.items()):
        built = getattr(module, "__file__", None) or ""
        if not full_name.startswith(__name__ + ".") or not built.endswith(
            tuple(_EXTENSION_SUFFIXES)
        ):
            continue
        name = full_name.rpartition(".")[2]
        when = _os.path.getmtime(built)
        for source in {_os.path.join(folder, name + ".py")} | _declarations(folder, name):
            if _os.path.exists(source) and _os.path.getmtime(source) > when:
                stale.add(source)
    return sorted(stale)


_stale = _stale_builds() if COMPILED else []
if _stale:
    import warnings as _warnings

    _warnings.warn(
        "exchange: compiled core is older than " + ", ".join(_stale)
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
    "ExchError",
    "InputError",
    "InvariantError",
    "SequenceError",
    "SnapshotError",
    "decode",
    "problem",
]
