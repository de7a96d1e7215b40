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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from exchange.commands import decode, problem
from exchange.errors import BadLine
from exchange.limits import MAX_PARTITION
from exchange.rules import LATEST
from journal.routing import ROUTED_BY_FIELD


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


ROUTING = "partition"
"""The field that says which partition a command without a market or order goes to
(``journal.routing``): taken off at the edge, never sequenced."""


def take_route(obj: Any) -> tuple[Any, int | None, tuple[str, str] | None]:
    """A command object without its ``partition`` field, the partition it names (or None),
    and what is wrong with that field (or None). Only ``deposit``, ``withdraw`` and
    ``create_market`` may carry one: a market's other commands follow the market, and an
    order's follow its id."""
    if not isinstance(obj, dict) or ROUTING not in obj:
        return obj, None, None
    p = obj[ROUTING]
    rest = {k: v for k, v in obj.items() if k != ROUTING}
    kind = obj.get("type")
    if kind not in ROUTED_BY_FIELD:
        return rest, None, ("MALFORMED", f"{_cut(str(kind))} has no field 'partition': its "
                            "market or order decides where it goes")
    if type(p) is not int or not 0 <= p <= MAX_PARTITION:
        return rest, None, ("MALFORMED", f"partition must be a whole number from 0 to "
                            f"{MAX_PARTITION}, not {_cut(repr(p))}")
    return rest, p, None


def _lines(path: str, partitions: Callable[[], int] | None = None
           ) -> Iterator[tuple[int, Any, int | None, LineProblem | None]]:
    """(line number, JSON value or None, partition field or None, problem or None) for every
    command line; with ``partitions`` (asked the first time a line has a partition field:
    how many are configured), a partition field past them is a problem too."""
    count: list[int] = []
    with open_source(path) as stream:
        for number, obj in iter_lines(stream, path):
            if isinstance(obj, BadLine):
                yield number, None, None, LineProblem(path, number, "MALFORMED", obj.why)
                continue
            obj, partition, found = take_route(obj)
            if found is None:
                found = problem(obj)
            if found is None and obj.get("type") == "transfer_in":
                found = ("SERVICE_ONLY", "transfer_in is sent by the transfer service only "
                         "(exch transfers); send a transfer to its source partition")
            named = [partition] if partition is not None else []
            if found is None and obj.get("type") == "transfer":  # problem() saw ints
                named = [obj["from_partition"], obj["to_partition"]]
            if found is None and partitions is not None and named:
                if not count:
                    count.append(partitions())
                unknown = [p for p in named if p >= count[0]]
                if unknown:
                    found = ("UNKNOWN_PARTITION", f"partition {unknown[0]} is not configured "
                             f"(there are {count[0]}: see `exch partitions`)")
            yield number, obj, partition, (LineProblem(path, number, *found) if found else None)


def check_file(path: str, partitions: Callable[[], int] | None = None
               ) -> tuple[int, list[LineProblem]]:
    """How many command lines the file has, and what is wrong with which (with
    ``partitions``, which says how many are configured, a ``partition`` field past them)."""
    count = 0
    problems = []
    for _, _, _, bad in _lines(path, partitions):
        count += 1
        if bad is not None:
            problems.append(bad)
    return count, problems


def valid_commands(path: str, partitions: Callable[[], int] | None = None
                   ) -> Iterator[tuple[int | None, tuple]]:
    """The file's valid commands (judged as ``check_file`` judges them) as (``partition``
    field or None, core tuple), seq and ts 0: the journal gives both. Shaped as the newest
    rules know the commands: the matcher judges each under the rules of its journal."""
    for _, obj, partition, bad in _lines(path, partitions):
        if bad is None:
            yield partition, decode(obj, 0, 0, rules=LATEST)
