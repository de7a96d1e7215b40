"""Command files: one JSON object per line, as read by ``exch simulate`` and ``exch submit``.

Blank lines and lines starting with ``#`` are comments, so a scenario can explain itself.
JSON numbers are read as exact decimals (``Decimal``), never through a binary float.

This is also the edge of ``exch submit``: every line is checked before anything is sent. A
line that is not JSON, or a JSON object that is not a valid command (judged without the
exchange's state: see ``exchange.commands.problem``), is reported with its line number and
why (``check_file``); unless told to skip such lines, nothing is sent.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from exchange.commands import decode, problem
from exchange.errors import BadLine


class DuplicateKey(ValueError):
    """A JSON object names the same key twice."""


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise DuplicateKey(twice)
    return obj


def parse_line(text: str) -> Any:
    """One line of JSON, numbers as ``Decimal``/``int``. Raises ``json.JSONDecodeError``, or
    ``DuplicateKey`` for an object that names a key twice: JSON parsers disagree on which
    value wins (Python's takes the last), so such a line is refused, never guessed at."""
    return json.loads(text, parse_float=Decimal, object_pairs_hook=_one_value_per_key)


def iter_lines(stream: TextIO | BinaryIO, source: str = "-") -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON value or ``BadLine``) for every command line: a line that is
    not JSON (or not UTF-8 text) does not stop the reading, so that every bad line can be
    reported."""
    for number, text in _numbered_lines(stream, source):
        if isinstance(text, BadLine):
            yield number, text
            continue
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        if "\x00" in text:
            yield number, BadLine(source, number, "a NUL byte: this is a binary file, not JSON "
                                  "lines")
            continue
        try:
            yield number, parse_line(text)
        except DuplicateKey as e:
            yield number, BadLine(source, number, f"the key {_cut(str(e))!r} is given twice")
        except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
            if isinstance(e, json.JSONDecodeError):
                why = e.msg
            elif isinstance(e, RecursionError):
                why = "nested too deeply"
            else:
                why = "a number too long to read"  # int() refuses over 4,300 digits
            yield number, BadLine(source, number, f"not JSON ({why})")


def _numbered_lines(stream: TextIO | BinaryIO, source: str) -> Iterator[tuple[int, Any]]:
    """(line number, text or ``BadLine``): bytes decoded line by line, and a line ended by a
    bare CR (old Mac files) counted as a line of its own, as text mode would."""
    number = 0
    for line in stream:
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as e:
                number += 1
                yield number, BadLine(source, number, f"not UTF-8 text (byte {e.start + 1} "
                                      "of the line); a command file is JSON lines")
                continue
        for text in line.splitlines() or [""]:
            number += 1
            yield number, text


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def read_commands(stream: TextIO, source: str = "-") -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON value) for every command line; raises ``BadLine`` at the
    first text that is not JSON. Values that are JSON but not commands are the decoder's
    business."""
    for number, obj in iter_lines(stream, source):
        if isinstance(obj, BadLine):
            raise obj
        yield number, obj


def open_source(path: str) -> BinaryIO:
    """A command file by path, or standard input for ``-``, as bytes: each line is decoded
    on its own, so that text that is not UTF-8 is a bad line, not a crash."""
    if path == "-":
        return sys.stdin.buffer
    return Path(path).open("rb")


# ----------------------------------------------------------------------------- the edge


@dataclass(frozen=True)
class LineProblem:
    """What is wrong with one line."""

    source: str
    line: int
    reason: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}: {self.message}"


def _lines(path: str) -> Iterator[tuple[int, Any, LineProblem | None]]:
    """(line number, JSON value or None, problem or None) for every command line."""
    with open_source(path) as stream:
        for number, obj in iter_lines(stream, path):
            if isinstance(obj, BadLine):
                yield number, None, LineProblem(path, number, "MALFORMED", obj.why)
                continue
            found = problem(obj)
            yield number, obj, (LineProblem(path, number, *found) if found else None)


def check_file(path: str) -> tuple[int, list[LineProblem]]:
    """How many command lines the file has, and what is wrong with which."""
    count = 0
    problems = []
    for _, _, bad in _lines(path):
        count += 1
        if bad is not None:
            problems.append(bad)
    return count, problems


def valid_commands(path: str) -> Iterator[tuple]:
    """The file's valid commands as core tuples (seq and ts 0: the journal gives both)."""
    for _, obj, bad in _lines(path):
        if bad is None:
            yield decode(obj, 0, 0)
