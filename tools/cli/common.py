"""What every command shares: the options that name a place, connecting, failing, and
showing progress and results to people."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager, nullcontext
from typing import Annotated, Any

import redis
import typer

from exchange.errors import ExchError, ServerError

RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="EXCH_REDIS_URL",
        help="Redis to use (redis://, rediss://, unix://). Default: the embedded server, "
        "started on demand with its data in $EXCH_HOME/redis (.exch/redis).",
        show_default=False,
    ),
]
Partition = Annotated[
    str, typer.Option("--partition", envvar="EXCH_PARTITION", help="Partition of the journal.")
]


def redis_client(redis_url: str | None) -> redis.Redis:
    """A Redis client for the URL, or the embedded server (started if needed)."""
    from journal.connection import connect

    try:
        found = connect(redis_url)
        found.ping()
    except (redis.RedisError, OSError) as e:  # every way of "cannot reach it"
        raise ServerError(
            f"cannot reach Redis at {redis_url or 'the embedded server'}: {e}"
        ) from None
    return found


def keys_for(partition: str) -> Any:
    """The key names of a partition."""
    from journal.keys import Keys

    return Keys(partition)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error for people and return the exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def progress(what: str, total: int | None, quiet: bool = False) -> Any:
    """A progress bar on a terminal (``advance(n)`` moves it); nothing otherwise."""

    @contextmanager
    def bar():  # type: ignore[no-untyped-def]
        if quiet or not sys.stderr.isatty():
            yield lambda n: None
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        if total:
            columns.append(TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(what, total=total)
            yield lambda n: progress.advance(task, n)

    return bar()


def busy(what: str, quiet: bool) -> Any:
    """A spinner on a terminal while something takes seconds; nothing when ``quiet``."""
    if quiet or not sys.stderr.isatty():
        return nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(what)


def report(result: dict, as_json: bool) -> None:
    """A result as one JSON object, or as a table for people."""
    if as_json:
        print(json.dumps(result))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in result.items():
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = str(value)
        table.add_row(key, text)
    Console().print(table)


def exit_for(error: ExchError) -> typer.Exit:
    """Report an error of the tree (see ``exchange.errors``) and the exit it maps to: 1 for a
    failed check, 2 for bad usage or input."""
    return fail(str(error), error.exit_code)
