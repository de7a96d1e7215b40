"""The ``exch`` command line.

Each command is a thin shell: it parses options (every one with help, and an ``EXCH_*``
environment variable where it names a place or a size), calls one function from ``exchange``,
``journal`` or ``tools``, and reports. Exit codes: 0 success, 1 a check failed, 2 bad usage or
bad input.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

app = typer.Typer(
    name="exch",
    help="An event-sourced, deterministic betting exchange.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Measure throughput and memory.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error for people and return the exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@app.command()
def simulate(
    file: Annotated[str, typer.Argument(help="Command file (JSON lines), or - for stdin.")],
) -> None:
    """Run commands through the core in-process, no Redis: events as JSON lines on stdout.

    Command i gets seq i (from 1) and the ts of its line, or else the previous one. A line
    that is not JSON stops it (exit 2); a JSON object that is not a valid command becomes an
    order_rejected event, as the matcher would journal it.
    """
    from .commandfile import BadLine, open_source, read_commands
    from .simulate import simulate as run

    try:
        with open_source(file) as stream:
            write = sys.stdout.write
            for line in run(obj for _, obj in read_commands(stream, file)):
                write(line)
                write("\n")
    except BadLine as e:
        raise fail(str(e)) from None
    except OSError as e:
        raise fail(f"{file}: {e.strerror}") from None


@bench_app.command("core")
def bench_core(
    commands: Annotated[
        int, typer.Option(help="Commands in the workload.", envvar="EXCH_BENCH_COMMANDS", min=1)
    ] = 1_000_000,
    runs: Annotated[int, typer.Option(help="Timed runs; the median is reported.", min=1)] = 3,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The matching core alone: a seeded workload applied in-process, every event built."""
    from .bench import bench_core as run

    with _busy(f"core workload: {commands:,} commands, {runs} runs", as_json):
        result = run(commands, runs=runs, seed=seed)
    _report(result, as_json)


def _busy(what: str, quiet: bool):  # type: ignore[no-untyped-def]
    """A spinner on a terminal while something takes seconds; nothing when ``quiet``."""
    from contextlib import nullcontext

    if quiet or not sys.stderr.isatty():
        return nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(what)


def _report(result: dict, as_json: bool) -> None:
    """A result as one JSON object, or as a table for people."""
    if as_json:
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in result.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)


def main() -> None:
    """Entry point of the ``exch`` console script."""
    app()


if __name__ == "__main__":
    main()
