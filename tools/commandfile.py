"""Command files: one JSON object per line, as read by ``exch simulate`` and ``exch submit``.

Blank lines and lines starting with ``#`` are comments, so a scenario can explain itself.
JSON numbers are read as exact decimals (``Decimal``), never through a binary float.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO


class BadLine(ValueError):
    """A line of a command file that is not JSON text; says where and why."""

    def __init__(self, source: str, line: int, why: str) -> None:
        super().__init__(f"{source}:{line}: {why}")
        self.source = source
        self.line = line
        self.why = why


def parse_line(text: str) -> Any:
    """One line of JSON, numbers as ``Decimal``/``int``. Raises ``json.JSONDecodeError``."""
    return json.loads(text, parse_float=Decimal)


def iter_lines(stream: TextIO, source: str = "-") -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON value or ``BadLine``) for every command line: a line that is
    not JSON does not stop the reading, so that every bad line can be reported."""
    for number, text in enumerate(stream, 1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        try:
            yield number, parse_line(text)
        except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
            if isinstance(e, json.JSONDecodeError):
                why = e.msg
            elif isinstance(e, RecursionError):
                why = "nested too deeply"
            else:
                why = "a number too long to read"  # int() refuses over 4,300 digits
            yield number, BadLine(source, number, f"not JSON ({why})")


def read_commands(stream: TextIO, source: str = "-") -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON value) for every command line; raises ``BadLine`` at the
    first text that is not JSON. Values that are JSON but not commands are the decoder's
    business."""
    for number, obj in iter_lines(stream, source):
        if isinstance(obj, BadLine):
            raise obj
        yield number, obj


def open_source(path: str) -> TextIO:
    """A command file by path, or standard input for ``-``."""
    if path == "-":
        return sys.stdin
    return Path(path).open(encoding="utf-8")
