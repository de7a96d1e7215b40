"""Named points where fault tests kill the matcher, for real, with SIGKILL.

With ``EXCH_FAULT_POINT=<name>[:<n>]`` and ``EXCH_FAULT_FILE=<path>`` in its environment, a
process that reaches point ``name`` for the n-th time (default 1st) creates the file and
waits there, so that a test can kill it at exactly that place. Without them (always, outside
tests) ``reached`` is a dictionary lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_spec = os.environ.get("EXCH_FAULT_POINT", "")
_name, _, _nth = _spec.partition(":")
_count = int(_nth or 1)
_seen: dict[str, int] = {}

ACTIVE = bool(_name)


def reached(name: str) -> None:
    """Mark point ``name``; wait forever here if it is the configured fault point."""
    if name != _name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == _count:
        Path(os.environ["EXCH_FAULT_FILE"]).touch()
        while True:
            time.sleep(3600)
