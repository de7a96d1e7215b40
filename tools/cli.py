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
export_app = typer.Typer(help="Export the output stream for analytics.", no_args_is_help=True)
app.add_typer(export_app, name="export")
import_app = typer.Typer(help="Turn other formats into commands.", no_args_is_help=True)
app.add_typer(import_app, name="import")
server_app = typer.Typer(
    help="The embedded Redis server used when no --redis-url is given.", no_args_is_help=True
)
app.add_typer(server_app, name="server")

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


def _client(redis_url: str | None):  # type: ignore[no-untyped-def]
    """A Redis client for the URL, or the embedded server (started if needed)."""
    from journal.server import ServerError, connect

    try:
        client = connect(redis_url)
        client.ping()
    except ServerError as e:
        raise fail(str(e), 1) from None
    except Exception as e:  # redis raises many kinds; all mean "cannot reach it"
        raise fail(f"cannot reach Redis at {redis_url or 'the embedded server'}: {e}", 1) from None
    return client


def _keys(partition: str):  # type: ignore[no-untyped-def]
    from journal.keys import Keys

    return Keys(partition)


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


@app.command()
def submit(
    file: Annotated[str, typer.Argument(help="Command file (JSON lines), or - for stdin.")],
    skip_invalid: Annotated[
        bool, typer.Option(help="Send the valid lines even if some are not; report the rest.")
    ] = False,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Validate a command file, then sequence its commands into the input journal.

    Every line is checked first: a bad line is reported with its number and why, and nothing
    is sent (exit 2) unless --skip-invalid. A place whose (account, ref) was sequenced before
    is not sequenced again.
    """
    from journal.sequencer import Sequencer

    from .submit import check_file, valid_commands

    if file == "-":
        # the file is read twice (checked, then sent): keep stdin in a temporary copy
        import os
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as tmp:
            tmp.write(sys.stdin.read())
        try:
            return submit(tmp.name, skip_invalid, redis_url, partition)
        finally:
            os.unlink(tmp.name)
    try:
        count, problems = check_file(file)
    except OSError as e:
        raise fail(f"{file}: {e.strerror}") from None
    for p in problems[:20]:
        typer.secho(str(p), err=True, fg=typer.colors.YELLOW)
    if len(problems) > 20:
        typer.secho(f"... and {len(problems) - 20} more", err=True, fg=typer.colors.YELLOW)
    if problems and not skip_invalid:
        raise fail(f"{len(problems)} of {count} lines are not valid commands; nothing sent")
    client = _client(redis_url)
    sequencer = Sequencer(client, _keys(partition))
    valid = count - len(problems)
    with _progress("submitting", valid) as advance:
        from journal.sequencer import Submitted

        result = Submitted()
        for seqs in sequencer.submit_iter(valid_commands(file)):
            result.add(seqs)
            advance(len(seqs))
    if result.sequenced:
        typer.echo(
            f"sequenced {result.sequenced:,} commands: seq {result.first_seq}..{result.last_seq}"
        )
    else:
        typer.echo("sequenced nothing")
    if result.duplicates:
        typer.echo(f"skipped {result.duplicates:,} with an (account, ref) already sequenced")
    if problems:
        typer.echo(f"skipped {len(problems):,} invalid lines")


@app.command()
def run(
    redis_url: RedisUrl = None,
    partition: Partition = "0",
    snapshot_every: Annotated[
        int,
        typer.Option(help="Take a snapshot every N commands.", envvar="EXCH_SNAPSHOT_EVERY",
                     min=1),
    ] = 100_000,
    batch: Annotated[int, typer.Option(help="Most commands read and committed at once.",
                                       min=1)] = 2000,
) -> None:
    """The matcher: follow the input journal and commit the events to the output stream.

    Waits as a standby while another matcher holds the partition's lease; takes over within a
    few seconds of its death. Stops cleanly (snapshot, lease released) on Ctrl-C or SIGTERM.
    """
    import logging
    import signal

    from journal.runner import Matcher

    client = _client(redis_url)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    view = _RunView()
    matcher = Matcher(client, _keys(partition), snapshot_every=snapshot_every, batch=batch,
                      on_progress=view.update)

    def stop(signum, frame):  # type: ignore[no-untyped-def]
        matcher.stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    with view:
        matcher.run()
    typer.echo(f"stopped at seq {matcher.progress.last_seq:,}", err=True)


class _RunView:
    """The matcher's progress: a live panel on a terminal, a log line every 5 s otherwise."""

    def __init__(self) -> None:
        self.live = None
        self.last_line = 0.0
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(console=Console(stderr=True), refresh_per_second=4)

    def __enter__(self) -> _RunView:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, p) -> None:  # type: ignore[no-untyped-def]
        import time

        if self.live is not None:
            from rich.table import Table

            t = Table(show_header=False, box=None, title=f"exch run: {p.state}")
            t.add_row("seq", f"{p.last_seq:,}")
            t.add_row("input seq", f"{p.last_input_seq:,}")
            t.add_row("lag", f"{p.lag:,}")
            t.add_row("commands/s", f"{p.rate:,.0f}")
            t.add_row("commands, events", f"{p.commands:,}, {p.events:,}")
            t.add_row("snapshot at", f"{p.snapshot_seq:,}")
            if p.state == "standby":
                t.add_row("lease held by", p.holder)
            if p.state == "recovering":
                t.add_row("replayed", f"{p.replayed:,}")
            self.live.update(t)
            return
        now = time.monotonic()
        if now - self.last_line >= 5 or p.state in ("recovering", "stopped"):
            self.last_line = now
            typer.echo(
                f"{p.state} seq={p.last_seq} lag={p.lag} rate={p.rate:.0f}/s "
                f"commands={p.commands} events={p.events} snapshot={p.snapshot_seq}"
                + (f" holder={p.holder}" if p.state == "standby" else ""),
                err=True,
            )


@app.command()
def replay(
    from_snapshot: Annotated[
        str,
        typer.Option("--from-snapshot",
                     help="latest, a seq, a snapshot file, or none (from the first command)."),
    ] = "latest",
    to: Annotated[int | None, typer.Option(help="Stop after this seq (default: the last "
                                                "output entry).", min=0)] = None,
    verify: Annotated[
        bool, typer.Option(help="Compare every regenerated event with the recorded output.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Rebuild the state from a snapshot and the journal; with --verify, prove the output.

    Exit 0 with the state hash when everything matches, 1 at the first divergence.
    """
    from journal.replay import ReplayError
    from journal.replay import replay as run_replay

    client = _client(redis_url)
    try:
        with _progress("replaying", None, quiet=as_json) as advance:
            done = [0]

            def on_progress(commands: int, _: int) -> None:
                advance(commands - done[0])
                done[0] = commands

            result = run_replay(client, _keys(partition), source=from_snapshot, to=to,
                                verify=verify, on_progress=on_progress)
    except ReplayError as e:
        raise fail(str(e)) from None
    summary = {
        "snapshot": result.snapshot,
        "from_seq": result.from_seq,
        "to_seq": result.to_seq,
        "commands": result.commands,
        "commands_per_sec": round(result.rate),
        "state_hash": result.state_hash,
        "verified": result.verified,
    }
    if result.divergence is not None:
        d = result.divergence
        summary["divergence"] = {"entry": d.entry, "why": d.why, "recorded": d.recorded,
                                 "replayed": d.replayed}
    _report(summary, as_json)
    if result.divergence is not None:
        if not as_json:
            typer.secho(f"DIVERGED at {d.entry}: {d.why}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
    if verify and not as_json:
        typer.secho(f"verified: output matches the journal up to seq {result.to_seq}",
                    fg=typer.colors.GREEN)


@app.command()
def snapshot(
    list_: Annotated[bool, typer.Option("--list", help="List stored snapshots instead.")] = False,
    save: Annotated[
        str | None, typer.Option(help="Also write the snapshot's bytes to this file.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the matcher.")] = 30,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Ask the running matcher for a snapshot now, or list the stored ones."""
    from journal.runner import request_snapshot
    from journal.snapshots import SnapshotStore

    client = _client(redis_url)
    keys = _keys(partition)
    store = SnapshotStore(client, keys)
    if list_:
        from rich.console import Console
        from rich.table import Table

        table = Table("seq", "state hash", "bytes", "taken (UTC)")
        import datetime as dt

        for s in store.list():
            when = dt.datetime.fromtimestamp(s.created_ms / 1000, dt.timezone.utc)
            table.add_row(f"{s.seq:,}", s.hash[:16], f"{s.size:,}", when.strftime("%F %T"))
        Console().print(table)
        return
    try:
        seq = request_snapshot(client, keys, timeout=timeout)
    except TimeoutError as e:
        raise fail(str(e), 1) from None
    found = store.get(seq)
    if found is None:
        raise fail(f"the matcher reported a snapshot at {seq} that is not stored", 1)
    typer.echo(f"snapshot at seq {seq:,}: {found[0].hash} ({found[0].size:,} bytes)")
    if save:
        from pathlib import Path

        Path(save).write_bytes(found[1])
        typer.echo(f"saved to {save}")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Last input and output seqs, lag, the matcher, snapshots and consumer groups."""
    from journal.status import status as read_status

    st = read_status(_client(redis_url), _keys(partition))
    if as_json:
        print(json.dumps(st.as_dict()))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(show_header=False, box=None)
    t.add_row("partition", st.partition)
    t.add_row("last input seq", f"{st.last_input_seq:,}")
    t.add_row("last output seq", f"{st.last_output_seq:,}")
    t.add_row("matcher lag", f"{st.lag:,}")
    t.add_row("matcher", st.matcher or "(none running)")
    t.add_row("snapshots", ", ".join(f"{s['seq']:,}" for s in st.snapshots) or "(none)")
    console.print(t)
    if st.groups:
        g = Table("consumer group", "consumers", "pending", "last delivered", "lag")
        for grp in st.groups:
            g.add_row(grp.name, str(grp.consumers), f"{grp.pending:,}", grp.last_delivered,
                      f"{grp.lag:,}")
        console.print(g)


@app.command()
def compact(
    dry_run: Annotated[bool, typer.Option(help="Only say what would be trimmed.")] = False,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Trim the output stream below what every consumer group has acknowledged and what the
    newest snapshot needs. Never automatic, never anything still needed; the input journal
    is never trimmed."""
    from journal.consumer import compact as run_compact

    plan = run_compact(_client(redis_url), _keys(partition), dry_run=dry_run)
    if dry_run:
        typer.echo(f"would trim the output below {plan.trim_below}; limited by "
                   f"{plan.limited_by}; it holds {plan.entries_before:,} entries")
    else:
        typer.echo(f"trimmed the output below {plan.trim_below}: "
                   f"{plan.entries_before - plan.entries_after:,} entries removed, "
                   f"{plan.entries_after:,} left; limited by {plan.limited_by}")


@app.command()
def stats(
    market: Annotated[str | None, typer.Option(help="Only this market, in detail.")] = None,
    follow: Annotated[bool, typer.Option(help="Keep consuming and refreshing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Live market statistics: per market and runner, best back and lay prices and sizes,
    traded volume per price, last traded price, VWAP and order counts, kept in Redis.

    Consumes the output stream (consumer group "stats") until caught up, then prints; with
    --follow keeps consuming and refreshing. If another process already runs the consumer,
    only reads what it keeps.
    """
    from .stats import StatsService, read_markets, read_view
    from .views import ladder, market_summary, traded_by_price

    client = _client(redis_url)
    keys = _keys(partition)

    def render():  # type: ignore[no-untyped-def]
        from rich.console import Group

        if market:
            view = read_view(client, market, keys)
            if view is None:
                return f"no statistics for market {market}"
            return Group(ladder(view), traded_by_price(view))
        views = [read_view(client, m, keys) for m in read_markets(client, keys)]
        return market_summary([v for v in views if v])

    service = StatsService(client, keys)
    if as_json:
        try:
            service.catch_up()
        finally:
            service.stop()
        names = [market] if market else read_markets(client, keys)
        print(json.dumps([read_view(client, m, keys) for m in names]))
        return
    _watch(render, service, follow)


def _watch(render, service, follow: bool) -> None:  # type: ignore[no-untyped-def]
    """Bring the statistics up to date and print ``render()``; with ``follow``, keep the
    statistics consumer running and redraw every second, until Ctrl-C."""
    import time

    from rich.console import Console
    from rich.live import Live

    console = Console()
    try:
        service.catch_up()
        if not follow:
            console.print(render())
            return
        service.follow()
        with Live(render(), console=console, refresh_per_second=2) as live:
            while True:
                time.sleep(1.0)
                live.update(render())
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()


@app.command()
def book(
    market: Annotated[str, typer.Argument(help="Market id.")],
    follow: Annotated[bool, typer.Option(help="Keep refreshing.")] = False,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """The ladder of a market: per runner the best three prices available to back and to lay
    with their sizes, last traded price and traded volume."""
    from .stats import StatsService, read_view
    from .views import ladder

    client = _client(redis_url)
    keys = _keys(partition)

    def render():  # type: ignore[no-untyped-def]
        view = read_view(client, market, keys)
        return ladder(view) if view else f"no market {market} (yet)"

    _watch(render, StatsService(client, keys), follow)


@app.command()
def tail(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines (the public form).")] = False,
    from_seq: Annotated[int | None, typer.Option("--from", help="Start after this seq (default:"
                                                " only new events).", min=0)] = None,
    follow: Annotated[bool, typer.Option(help="Keep following (default); --no-follow stops at "
                                              "the end.")] = True,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Follow the output stream and print its events as they are committed."""
    from exchange.codec import dumps_line, json_from_wire
    from journal.runner import last_id, stream_items
    from journal.wire import decode_events, field, parse_id, raw

    from .views import event_line

    client = raw(_client(redis_url))
    keys = _keys(partition)
    cursor = f"{from_seq}-0" if from_seq is not None else last_id(client, keys.output)
    try:
        while True:
            reply = client.xread({keys.output: cursor}, count=1000, block=1000 if follow else None)
            rows = [r for _, rs in stream_items(reply) for r in rs]
            if not rows and not follow:
                return
            for eid, fields in rows:
                seq = parse_id(eid)[0]
                payload = field(fields, b"e")
                for ev in decode_events(payload) if payload else []:
                    j = json_from_wire(ev)
                    print(dumps_line(j) if as_json else event_line(seq, j), flush=False)
                cursor = eid.decode()
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


ExportDir = Annotated[
    str, typer.Option("--out", envvar="EXCH_EXPORT_DIR", help="Folder of the Parquet tables.")
]


@export_app.command("parquet")
def export_parquet(
    out: ExportDir = "out/parquet",
    follow: Annotated[
        bool,
        typer.Option("--follow/--until-caught-up",
                     help="Keep exporting as events arrive, or stop once caught up."),
    ] = False,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Export the output stream to Parquet tables (trades, orders, markets, settlements,
    funds), partitioned by date, exactly once: a crash never leaves a partial or duplicate
    file, and a restart resumes after the last committed seq."""
    import signal

    from journal.runner import last_id
    from journal.wire import parse_id

    from .export.parquet import SinkError
    from .export.service import Exporter

    client = _client(redis_url)
    keys = _keys(partition)
    target = parse_id(last_id(client, keys.output))[0]
    try:
        with _progress("exporting", None, quiet=follow) as advance:
            seen = [0]

            def on_progress(p) -> None:  # type: ignore[no-untyped-def]
                advance(p.entries - seen[0])
                seen[0] = p.entries

            exporter = Exporter(client, out, keys, on_progress=on_progress)
            signal.signal(signal.SIGTERM, lambda *_: exporter.stop())
            try:
                progress = exporter.run(follow=follow)
            except KeyboardInterrupt:
                exporter.stop()
                raise typer.Exit(0) from None
    except SinkError as e:
        raise fail(str(e), 1) from None
    typer.echo(f"exported up to seq {progress.committed_seq:,} "
               f"({progress.events:,} events this run) to {out}"
               + ("" if follow or progress.committed_seq >= target else " (output still growing)"))


@export_app.command("compact")
def export_compact(out: ExportDir = "out/parquet") -> None:
    """Merge the small Parquet files of each date into large ones; the rows do not change."""
    from .export.parquet import ParquetSink, SinkError

    try:
        with ParquetSink(out) as sink:
            report = sink.compact()
    except SinkError as e:
        raise fail(str(e), 1) from None
    typer.echo(f"{report.files_before} files -> {report.files_after} "
               f"({report.rows_rewritten:,} rows rewritten in {report.seconds:.1f} s)")


@app.command()
def demo(
    commands: Annotated[int, typer.Option(help="Commands in the generated market day.",
                                          envvar="EXCH_DEMO_COMMANDS", min=1000)] = 50_000,
    markets: Annotated[int, typer.Option(help="Markets in the day.", min=1)] = 4,
    accounts: Annotated[int, typer.Option(help="Betting accounts.", min=2)] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the generated day.")] = 1,
    out: Annotated[str, typer.Option(help="Folder for the demo's Redis data and Parquet.",
                                     envvar="EXCH_DEMO_DIR")] = "out/demo",
) -> None:
    """The whole system on a realistic, generated market day, in about a minute.

    Starts a private Redis and the matcher, sends the day's orders through the sequencer,
    proves the output by replaying it, exports Parquet, computes market statistics, prints a
    summary, and stops everything it started.
    """
    from contextlib import ExitStack

    from .demo import run_demo
    from .generator import minimum_commands

    if commands < minimum_commands(markets, accounts):
        raise fail(f"{markets} markets and {accounts} accounts need at least "
                   f"{minimum_commands(markets, accounts):,} commands")
    with ExitStack() as stack:
        advance = stack.enter_context(_progress("sending", commands))
        status = stack.enter_context(_busy("exch demo", False))

        def on_step(name: str) -> None:
            if status is not None and hasattr(status, "update"):
                status.update(name)
            else:
                typer.echo(f"· {name}", err=True)

        result = run_demo(out, commands=commands, markets=markets, accounts=accounts, seed=seed,
                          on_step=on_step, on_sent=advance)
    _demo_summary(result)
    if not result.verified:
        raise typer.Exit(1)


def _demo_summary(r) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .views import market_lines

    console = Console()
    t = Table(show_header=False, box=None, title="exch demo", title_justify="left")
    t.add_row("commands", f"{r.commands:,} sent, journaled as seq 1..{r.last_seq:,}")
    t.add_row("throughput", f"{r.rate:,.0f} commands/s through sequencer, matcher and Redis "
                            f"({r.seconds:.1f} s)")
    t.add_row("trades", f"{r.trades:,}")
    t.add_row("matched volume", f"£{r.matched:,.2f}")
    t.add_row("commission", f"£{r.commission:,.2f}")
    t.add_row("replay --verify", ("output reproduced byte for byte" if r.verified else
                                  "DIVERGED") + f", state hash {r.replay_hash[:16]}…, "
                                  f"{r.replay_rate:,.0f} commands/s")
    t.add_row("parquet", f"{r.parquet}/  (trades, orders, markets, settlements, funds)")
    t.add_row("notebook", escape(f"EXCH_PARQUET={r.parquet} .venv/bin/jupyter notebook "
                                 "tools/notebooks/analytics.ipynb  (after .venv/bin/pip install "
                                 "-e '.[notebook]')"))
    console.print(t)
    if r.markets:
        console.print(market_lines(r.markets))


@app.command()
def load(
    commands: Annotated[int, typer.Option(help="Commands to send.", min=1000)] = 100_000,
    rate: Annotated[float | None, typer.Option(help="Commands per second (default: as fast "
                                                    "as possible).", min=1)] = None,
    markets: Annotated[int, typer.Option(help="Markets in the generated flow.", min=1)] = 4,
    accounts: Annotated[int, typer.Option(help="Betting accounts.", min=2)] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the generated flow.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Send a seeded, realistic order flow (a generated market day) to a running system, at
    a chosen rate or as fast as possible, and report what was sent. Market ids and client
    refs are made unique per run, so loads can be repeated into the same journal."""
    from journal.runner import last_id
    from journal.sequencer import Sequencer
    from journal.wire import parse_id

    from .generator import GeneratorStats, market_day, minimum_commands
    from .load import send

    if commands < minimum_commands(markets, accounts):
        raise fail(f"{markets} markets and {accounts} accounts need at least "
                   f"{minimum_commands(markets, accounts):,} commands")
    if markets > 1000:
        raise fail("at most 1000 markets per load")
    client = _client(redis_url)
    keys = _keys(partition)
    base = parse_id(last_id(client, keys.input))[0]
    stats = GeneratorStats()
    flow = market_day(seed=seed, markets=markets, accounts=accounts, commands=commands,
                      market_base=2_000_001 + base * 1000, ref_prefix=f"L{base}-", stats=stats)
    with _progress("sending", commands, quiet=as_json) as advance:
        done = [0]

        def on_batch(report) -> None:  # type: ignore[no-untyped-def]
            advance(report.sent - done[0])
            done[0] = report.sent

        report = send(flow, Sequencer(client, keys), rate=rate, on_batch=on_batch)
    result = report.as_dict()
    result["markets"] = [m.id for m in stats.markets]
    _report(result, as_json)


@import_app.command("betfair")
def import_betfair(
    files: Annotated[list[str], typer.Argument(help="Betfair Exchange Stream recordings.")],
    out: Annotated[str | None, typer.Option(help="Write the commands to this file (JSON lines)."
                                            )] = None,
    submit: Annotated[bool, typer.Option(help="Send the commands to the running system.")] = False,
    speed: Annotated[float, typer.Option(
        help="With --submit: replay the recording this many times faster than it happened "
             "(bet delays scaled alike); 0 = as fast as possible.", min=0)] = 100.0,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Convert Betfair stream recordings into commands: market definitions, status changes,
    the book as resting orders of liquidity accounts, traded volume as crossing orders, and
    the winners as a settlement. JSON lines on stdout unless --out or --submit."""
    from exchange.commands import decode

    from .betfair import convert, dump_commands

    try:
        commands, report = convert(files)
    except OSError as e:
        raise fail(f"{e.filename}: {e.strerror}") from None
    except ValueError as e:
        raise fail(str(e)) from None
    if out:
        with open(out, "w", encoding="utf-8") as f:
            n = dump_commands(commands, f)
        typer.echo(f"wrote {n:,} commands to {out}", err=True)
    elif not submit:
        dump_commands(commands, sys.stdout)
    if submit:
        from journal.sequencer import Sequencer

        from .load import scale_delays, send

        tuples = [decode(c, i, c.get("ts", 0)) for i, c in enumerate(commands, 1)]
        flow = scale_delays(tuples, speed) if speed else tuples
        with _progress("submitting", len(tuples)) as advance:
            done = [0]

            def on_batch(r) -> None:  # type: ignore[no-untyped-def]
                advance(r.sent - done[0])
                done[0] = r.sent

            sent = send(flow, Sequencer(_client(redis_url), _keys(partition)),
                        speed=speed or None, on_batch=on_batch)
        typer.echo(f"sequenced {sent.sequenced:,} commands: seq {sent.first_seq}..{sent.last_seq}",
                   err=True)
    summary = report.to_dict()
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "markets"}), err=True)


@server_app.command("start")
def server_start() -> None:
    """Start the embedded Redis server (if it is not running) and say where it listens."""
    from journal.server import ServerError, ensure_embedded

    try:
        info = ensure_embedded()
    except ServerError as e:
        raise fail(str(e), 1) from None
    typer.echo(f"running: pid {info.pid}, {info.url}, unix://{info.socket}, data in {info.folder}")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the embedded Redis server; its data stays for the next start."""
    from journal.server import stop_embedded

    typer.echo("stopped" if stop_embedded() else "not running")


@server_app.command("status")
def server_status() -> None:
    """Whether the embedded Redis server is running, and where."""
    from journal.server import embedded_folder, embedded_status

    info = embedded_status()
    if info is None:
        typer.echo(f"not running (data folder {embedded_folder()})")
        raise typer.Exit(1)
    typer.echo(f"running: pid {info.pid}, {info.url}, unix://{info.socket}, data in {info.folder}")


def _progress(what: str, total: int | None, quiet: bool = False):  # type: ignore[no-untyped-def]
    """A progress bar on a terminal (``advance(n)`` moves it); nothing otherwise."""
    from contextlib import contextmanager

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


@bench_app.command("e2e")
def bench_e2e(
    commands: Annotated[
        int, typer.Option(help="Commands in the workload.", envvar="EXCH_BENCH_COMMANDS", min=1)
    ] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 1,
    latency_rate: Annotated[
        int, typer.Option(help="Steady rate (commands/s) for the latency measurement.", min=1)
    ] = 20_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The whole system on this machine: sequencer, exch run, Redis with append-only
    persistence; with the raw pipelined XADD rate measured in the same run."""
    from .bench import bench_e2e as run

    status = _busy("e2e", as_json)
    with status as s:
        def phase(name: str) -> None:
            if s is not None and hasattr(s, "update"):
                s.update(name)
            elif not as_json:
                typer.echo(name, err=True)

        result = run(commands, seed=seed, latency_rate=latency_rate, on_phase=phase)
    if "commands_per_sec" in result and "raw_xadd_per_sec" in result:
        result["ratio_to_raw_xadd"] = round(result["commands_per_sec"] /
                                            result["raw_xadd_per_sec"], 3)
    _report(result, as_json)


@bench_app.command("export")
def bench_export(
    commands: Annotated[
        int, typer.Option(help="Commands whose events fill the output stream.", min=1)
    ] = 1_000_000,
    runs: Annotated[int, typer.Option(help="Timed runs; the median is reported.", min=1)] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The Parquet exporter: events per second from the output stream (through its consumer
    group, msgpack decoding included) to fsync'd Parquet files."""
    from .bench import bench_export as run

    with _busy(f"export benchmark: {commands:,} commands, {runs} runs", as_json):
        result = run(commands, runs=runs)
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
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = str(value)
        table.add_row(key, text)
    Console().print(table)


def main() -> None:
    """Entry point of the ``exch`` console script."""
    app()


if __name__ == "__main__":
    main()
