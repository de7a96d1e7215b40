"""What every command shares: the options that name a place, connecting, failing, and
showing progress and results to people."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
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
        "started on demand, one per user, with its data in $EXCH_HOME/redis (default "
        "~/.local/share/exch/redis; `exch server status` says where).",
        show_default=False,
    ),
]
Partition = Annotated[
    str, typer.Option("--partition", envvar="EXCH_PARTITION", help="Partition of the journal.")
]


def redis_client(redis_url: str | None, *, wait: float = 0.0) -> redis.Redis:
    """A Redis client for the URL, or the embedded server (started if needed).

    The first contact fails fast (a few seconds, no retries) with one clear line and the
    password masked; the client returned retries with back-off, as services need once they
    run. A service passes ``wait``: it waits that long, saying so, for a Redis that refuses
    connections or is still loading its data (a restart) before it gives up."""
    from journal.connection import redacted

    where = redacted(redis_url)
    try:
        return _first_contact(redis_url, where, wait)
    except redis.AuthenticationError as e:
        raise ServerError(f"Redis at {where} refused the credentials: {e}") from None
    except redis.TimeoutError:
        raise ServerError(f"Redis at {where} did not answer within a few seconds (a TLS URL, "
                          "rediss://, for a server without TLS, or the other way round?)"
                          ) from None
    except (redis.RedisError, OSError) as e:  # every way of "cannot reach it"
        text = str(e).replace(redis_url, where) if redis_url else str(e)
        raise ServerError(f"cannot reach Redis at {where}: {text}") from None


def _first_contact(redis_url: str | None, where: str, wait: float) -> redis.Redis:
    """Ping with a client that does not retry (again and again for ``wait`` seconds while
    Redis refuses or loads); then the retrying client."""
    import time

    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from journal.connection import connect

    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            probe = connect(redis_url, retry=Retry(NoBackoff(), 0), retry_on_error=[],
                            socket_connect_timeout=3, socket_timeout=5)
            try:
                probe.ping()
            finally:
                probe.close()
            return connect(redis_url)
        except (redis.BusyLoadingError, redis.ConnectionError) as e:
            if isinstance(e, redis.AuthenticationError) or time.monotonic() >= deadline:
                raise
            if not told:
                typer.echo(f"waiting for Redis at {where} (up to {wait:g} s): {e}", err=True)
                told = True
            time.sleep(0.5)


SERVICE_WAIT = 30.0
"""Seconds a service (run, follow, archive, export, stats) waits for Redis at its start."""


Route = Annotated[
    str | None,
    typer.Option("--partition", envvar="EXCH_PARTITION",
                 help="Send every command to this partition (`partition` fields are then "
                 "ignored). Default: each to where it belongs (its market's partition, its "
                 "order's, or its `partition` field; see `exch partitions`)."),
]


Replicas = Annotated[
    int | None,
    typer.Option("--replicas", envvar="EXCH_REPLICAS", min=0, show_default=False,
                 help="Acknowledge a call only once this many replicas have it (WAIT). "
                 "Default: 1 if the server has a replica connected, else 0."),
]


def sequencer_for(client: Any, partition: str | None, replicas: int | None = None) -> Any:
    """What sends commands: each to its partition (``journal.routing``), or all to
    ``partition`` if given (new markets still bound to it in the directory)."""
    from journal.routing import PartitionedSequencer, Router

    fixed = int(keys_for(partition).partition) if partition is not None else None
    return PartitionedSequencer(client, Router(client, fixed=fixed), replicas=replicas)


def keys_for(partition: str) -> Any:
    """The key names of a partition."""
    from journal.keys import Keys

    return Keys(partition)


STOP_GRACE = 60.0
"""Seconds a service may take to stop cleanly after Ctrl-C or SIGTERM before it exits anyway
(say, while Redis is unreachable and every call waits out its retries)."""


def stop_on_signals(stop: Callable[[], None], what: str, grace: float = STOP_GRACE) -> None:
    """On the first Ctrl-C or SIGTERM, ``stop()`` (a clean stop); if that takes over
    ``grace`` seconds, or at a second signal, exit at once (exit 1). An abrupt exit is safe:
    whatever was not committed is recomputed from the journal by the next run."""
    import os
    import signal
    import threading

    asked = threading.Event()

    def leave(reason: str) -> None:
        # os.write: a signal may arrive while sys.stderr is busy (a reentrant write raises)
        os.write(2, f"\n{what}: {reason}; exiting now (nothing committed is lost)\n".encode())
        os.write(2, b"\x1b[?25h" if sys.stderr.isatty() else b"")  # the cursor, if hidden
        os._exit(1)

    def handler(signum: int, frame: Any) -> None:
        if asked.is_set():
            leave("asked again to stop")
        asked.set()
        timer = threading.Timer(grace, leave, args=(f"not stopped after {grace:g} s",))
        timer.daemon = True
        timer.start()  # before stop(): a stop that blocks is covered too
        stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


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


def report(result: dict, as_json: bool, *, err: bool = False) -> None:
    """A result as one JSON object, or as a table for people (on stderr with ``err``)."""
    if as_json:
        print(json.dumps(result), file=sys.stderr if err else sys.stdout)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # a hash or an id wraps, never ends in "..."
    for key, value in result.items():
        text = shown(value)
        table.add_row(key, text)
    Console(stderr=err).print(table)


def shown(value: Any) -> str:
    """A value as a table cell for people: yes/no, numbers with thousands separators, a
    mapping as "key value" pairs, a list comma-separated."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {shown(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(shown(v) for v in value)
    return str(value)


def exit_for(error: ExchError) -> typer.Exit:
    """Report an error of the tree (see ``exchange.errors``) and the exit it maps to: 1 for a
    failed check, 2 for bad usage or input."""
    return fail(str(error), error.exit_code)


def run_partitions(command: str, what: str, parts: list[str],
                   make: Callable[[str, Any], Any], *, follow: bool) -> dict[str, Any]:
    """Run one consumer service per partition side by side (``make(partition,
    on_progress)`` gives it: ``run(follow=)`` and ``stop()``), with one progress bar over
    them all (labelled ``what``) and Ctrl-C/SIGTERM stopping them all (``command`` says
who stops); the first failure stops the others and
    is raised. Returns each partition's ``run`` result."""
    import threading

    with progress(what, None, quiet=follow) as advance:
        seen: dict[str, int] = {}
        lock = threading.Lock()

        def tracker(p: str) -> Any:
            def on_progress(prog: Any) -> None:
                with lock:
                    advance(prog.entries - seen.get(p, 0))
                    seen[p] = prog.entries
            return on_progress

        services = {p: make(p, tracker(p)) for p in parts}
        stop_on_signals(lambda: [s.stop() for s in services.values()], command)
        results: dict[str, Any] = {}
        errors: list[BaseException] = []

        def run(p: str) -> None:
            try:
                results[p] = services[p].run(follow=follow)
            except BaseException as exc:  # reported below, with the others stopped
                errors.append(exc)
                for s in services.values():
                    s.stop()

        threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in parts[1:]]
        for t in threads:
            t.start()
        run(parts[0])
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    return results
