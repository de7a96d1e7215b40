"""Rules versions: the rules change over time, journals do not.

A journal records the rules version in force (each layout-2 input entry carries it, ``r``;
see docs/journal.md), and the core applies at every seq the rules in force there: an old
journal replays to the same bytes under every later release. A version takes effect from
the first entry that carries it, never goes back, and is part of the state (snapshots keep
it). ``Exchange()`` starts under version 1, the released rules; the golden scenarios keep
that version.

Versions:

1. The rules as first released.
2. Ids are printable text: an account id, market id or client ref holding a control
   character (U+0000 to U+001F, U+007F to U+009F: escape sequences a terminal would obey)
   makes the command ``MALFORMED``.
"""

from __future__ import annotations

import re

FIRST = 1
LATEST = 2
"""The newest rules version this release knows."""

PRINTABLE_IDS = 2
"""From this version, ids may not hold control characters."""

VERSIONS: dict[int, str] = {
    1: "the rules as first released",
    2: "ids are printable text: a control character in an account id, market id or client "
    "ref makes the command MALFORMED",
}
"""What each version changed."""

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> bool:
    """Whether ``text`` holds no control character (see version 2)."""
    if text.isascii():
        return text.isprintable()
    return _CONTROL.search(text) is None
