"""``exch submit``: the edge. Every line of a command file is checked before anything is sent.

A line that is not JSON, or a JSON object that is not a valid command (judged without the
exchange's state: see ``exchange.commands.problem``), is reported with its line number and
why; unless told to skip such lines, nothing is sent. Then the commands go to the sequencer
in batches, in file order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from exchange.commands import decode, problem

from .commandfile import BadLine, iter_lines, open_source


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
