"""Commands in and events out: simulate, load, import, export, and the demo."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from exchange.limits import MAX_PARTITION
from exchange.rules import FIRST, LATEST

from .common import (
    SERVICE_WAIT,
    RedisUrl,
    Replicas,
    Route,
    busy,
    fail,
    keys_for,
    progress,
    redis_client,
    report,
    run_partitions,
    sequencer_for,
)

app = typer.Typer()
export_app = typer.Typer(help="Export the output stream for analytics.", no_args_is_help=True)
import_app = typer.Typer(help="Turn other formats into commands.", no_args_is_help=True)


@app.command()
def simulate(
    file: Annotated[str, typer.Argument(help="Command file (JSON lines), or - for stdin.")],
    rules: Annotated[int, typer.Option(
        "--rules", min=FIRST, max=LATEST,
        help=f"Rules version to judge under ({FIRST} to {LATEST}; see `exch rules`).")] = FIRST,
    partition: Annotated[int, typer.Option(
        "--partition", min=0, max=MAX_PARTITION,
        help="The partition this core is (its ids carry it from rules 5).")] = 0,
) -> None:
    """Run commands through the core in-process, no Redis: events as JSON lines on stdout.

    Command i gets seq i (from 1) and the ts of its line, or else the previous one. A line
    that is not JSON stops it (exit 2); a JSON object that is not a valid command becomes an
    order_rejected event, as the matcher would journal it. One core: `partition` fields
    (docs/partitions.md) are read and set aside, as if the exchange had one partition.
    Judged under rules version 1 unless --rules says otherwise, as the golden scenarios are.
    """
    from exchange import Exchange
    from tools.simulate import simulate as run
    from tools.sources.commandfile import open_source, read_commands, take_route

    def unrouted(obj: Any) -> Any:
        rest, _, bad = take_route(obj)
        return rest if bad is None else obj  # a misplaced field: the core says MALFORMED

    try:
        with open_source(file) as stream:
            write = sys.stdout.write
            lines = run((unrouted(obj) for _, obj in read_commands(stream, file)),
                        Exchange(partition), rules=rules)
            for line in lines:
                write(line)
                write("\n")
    except OSError as e:
        raise fail(f"{file}: {e.strerror}") from None


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
    partition: Annotated[str | None, typer.Option(
        "--partition", envvar="EXCH_PARTITION",
        help="Export this partition only. Default: every partition, side by side in one set "
        "of tables (a partition column).")] = None,
) -> None:
    """Export the output streams to Parquet tables (trades, orders, markets, settlements,
    funds), partitioned by exchange partition and date, exactly once: a crash never leaves a
    partial or duplicate file, and a restart resumes after each partition's last committed
    seq."""
    from journal.routing import partition_count
    from journal.streams import last_id, parse_id
    from tools.services.export.service import Exporter

    client = redis_client(redis_url, wait=SERVICE_WAIT if follow else 0.0)
    parts = [partition] if partition is not None else [
        str(p) for p in range(partition_count(client))]
    targets = {p: parse_id(last_id(client, keys_for(p).output))[0] for p in parts}
    results = run_partitions(
        "exch export parquet", "exporting", parts,
        lambda p, track: Exporter(client, out, keys_for(p), on_progress=track), follow=follow)
    for p in parts:
        done = results[p]
        where = f"partition {p}: " if len(parts) > 1 else ""
        typer.echo(f"{where}exported up to seq {done.committed_seq:,} "
                   f"({done.events:,} events this run) to {out}"
                   + ("" if follow or done.committed_seq >= targets[p]
                      else " (output still growing)"))


@export_app.command("compact")
def export_compact(out: ExportDir = "out/parquet") -> None:
    """Merge the small Parquet files of each date into large ones, in every partition; the
    rows do not change."""
    from tools.services.export.parquet import ParquetSink, exported_partitions

    before = after = rows = 0
    seconds = 0.0
    for p in exported_partitions(out):
        with ParquetSink(out, partition=p) as sink:
            merged = sink.compact()
        before += merged.files_before
        after += merged.files_after
        rows += merged.rows_rewritten
        seconds += merged.seconds
    typer.echo(f"{before} files -> {after} ({rows:,} rows rewritten in {seconds:.1f} s)")


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
    proves the output by replaying it, exports Parquet, computes market statistics, stores
    the records in PostgreSQL, bets over HTTP through the gateway as a client would, prints
    a summary, and stops everything it started.
    """
    from contextlib import ExitStack

    from tools.demo import run_demo
    from tools.sources.market_day import minimum_commands

    if commands < minimum_commands(markets, accounts):
        raise fail(f"{markets} markets and {accounts} accounts need at least "
                   f"{minimum_commands(markets, accounts):,} commands")
    with ExitStack() as stack:
        advance = stack.enter_context(progress("sending", commands))
        status = stack.enter_context(busy("exch demo", False))

        def on_step(name: str) -> None:
            if status is not None and hasattr(status, "update"):
                status.update(name)
            else:
                typer.echo(f"· {name}", err=True)

        result = run_demo(out, commands=commands, markets=markets, accounts=accounts, seed=seed,
                          on_step=on_step, on_sent=advance)
    _demo_summary(result)
    if not result.verified or result.follower_exit != 0:
        raise typer.Exit(1)


def _demo_summary(r: Any) -> None:
    import json
    from decimal import Decimal

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .views import market_lines

    console = Console()
    t = Table(show_header=False, box=None, title="exch demo", title_justify="left",
              pad_edge=False, padding=(0, 1, 0, 0))  # a 64-digit hash fits 80 columns
    t.add_column(no_wrap=True)
    t.add_column(overflow="fold")  # the state hash wraps whole, to be copied
    t.add_row("commands", f"{r.commands:,} sent, journaled as seq 1..{r.last_seq:,}")
    t.add_row("throughput", f"{r.rate:,.0f} commands/s through sequencer, matcher and Redis "
                            f"({r.seconds:.1f} s)")
    t.add_row("trades", f"{r.trades:,}")
    t.add_row("matched volume", f"£{r.matched:,.2f}")
    t.add_row("commission", f"£{r.commission:,.2f}")
    t.add_row("replay --verify", ("output reproduced byte for byte" if r.verified else
                                  "DIVERGED") + f", {r.replay_rate:,.0f} commands/s")
    t.add_row("state hash", r.replay_hash)
    if r.follower_exit == 0:
        taken = (f"took the snapshots (at {', '.join(f'{s:,}' for s in r.snapshots)})"
                 if r.snapshots else "took no snapshot (the day was shorter than an interval)")
        follower = (f"checked every answer as it was committed, up to seq {r.followed_seq:,}; "
                    + taken)
    else:
        follower = f"FOUND A DIFFERENCE (exit {r.follower_exit}): see `exch follow`"
    t.add_row("exch follow", follower)
    t.add_row("parquet", f"{r.parquet}/  (trades, orders, markets, settlements, funds)")
    t.add_row("notebook", escape(f"EXCH_PARQUET={r.parquet} .venv/bin/jupyter notebook "
                                 "tools/notebooks/analytics.ipynb  (after .venv/bin/pip install "
                                 "-e '.[notebook]')"))
    t.add_row("store", "database exch_demo of the embedded PostgreSQL ($EXCH_HOME/postgres): "
                       "the queries of docs/store.md")
    console.print(t)
    if r.markets:
        console.print(market_lines(r.markets))
    if r.gateway:
        console.print("a client's view, through exch gateway (docs/gateway.md):")
        for request, answer in r.gateway:
            shown = {k: v for k, v in answer.items() if k in (
                "status", "seq", "order", "matched", "reason", "market", "status", "ladder")}
            console.print(f"  {escape(request)}\n    -> {escape(json.dumps(shown))}",
                          soft_wrap=True)
    if r.volume:
        console.print(f"from the store: market {r.volume[0][0]}, its most matched prices")
        v = Table("runner", "price", "matched")
        for _, runner, price, pence in r.volume:
            v.add_row(str(runner), str(price), f"£{Decimal(pence).scaleb(-2):,.2f}")
        console.print(v)


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
    partition: Route = None,
    replicas: Replicas = None,
) -> None:
    """Send a seeded, realistic order flow (a generated market day) to a running system, at
    a chosen rate or as fast as possible, and report what was sent. Market ids and client
    refs are made unique per run, so loads can be repeated into the same journal. In-play bet
    delays are scaled to the rate: a day of hours passes in seconds of journal time, and
    delayed bets must still be able to match while a race is in play."""
    from journal.keys import Keys
    from journal.streams import last_id, parse_id
    from tools.sources.load import DAY_SEQS, delay_scale, interleave, scale_delays, send
    from tools.sources.market_day import GeneratorStats, market_day, minimum_commands

    if commands < minimum_commands(markets, accounts):
        raise fail(f"{markets} markets and {accounts} accounts need at least "
                   f"{minimum_commands(markets, accounts):,} commands")
    if markets > 1000:
        raise fail("at most 1000 markets per load")
    client = redis_client(redis_url)
    sequencer = sequencer_for(client, partition, replicas)
    # ids unique per run: from how far the journals already go
    parts = [partition] if partition is not None else [
        str(p) for p in range(sequencer.router.count)]
    base = sum(parse_id(last_id(client, Keys(p).input))[0] for p in parts)
    # one generated day per partition (its markets and its wallets there), interleaved
    spread = parts[:markets]  # a partition needs a market of its own
    if len(spread) > 1 and commands // len(spread) < minimum_commands(
            markets // len(spread), accounts):
        raise fail(f"{commands:,} commands over {len(spread)} partitions are too few for "
                   f"{accounts} accounts in each: send more, or fewer accounts")
    days = []
    all_stats = []
    for i, p in enumerate(spread):
        share = commands // len(spread) + (1 if i < commands % len(spread) else 0)
        mk = markets // len(spread) + (1 if i < markets % len(spread) else 0)
        stats = GeneratorStats()
        all_stats.append(stats)
        day = market_day(seed=seed + i, markets=mk, accounts=accounts, commands=share,
                         seq0=i * DAY_SEQS + 1, market_base=2_000_001 + base * 1000 + i * 100,
                         ref_prefix=f"L{base}-{i}-", stats=stats)
        # bet delays shrink with the day's compression into journal time (see delay_scale)
        day = scale_delays(day, delay_scale(share, mk, rate / len(spread) if rate else None))
        days.append((int(p), day))
    # routed over several partitions: each command paired with its day's partition
    flow = interleave(days) if partition is None and len(parts) > 1 else days[0][1]
    with progress("sending", commands, quiet=as_json) as advance:
        done = [0]

        def on_batch(sofar: Any) -> None:
            advance(sofar.sent - done[0])
            done[0] = sofar.sent

        sent = send(flow, sequencer, rate=rate, on_batch=on_batch)
    result = sent.as_dict()
    result["markets"] = [m.id for st in all_stats for m in st.markets]
    if len(days) > 1:  # seqs of several journals make no range
        result["partitions"] = [p for p, _ in days]
        del result["first_seq"], result["last_seq"]
    report(result, as_json)


@import_app.command("betfair")
def import_betfair(
    files: Annotated[list[str], typer.Argument(help="Betfair Exchange Stream recordings.")],
    out: Annotated[str | None, typer.Option(help="Write the commands to this file (JSON lines)."
                                            )] = None,
    submit: Annotated[bool, typer.Option(help="Send the commands to the running system.")] = False,
    speed: Annotated[float, typer.Option(
        help="With --submit: replay the recording this many times faster than it happened "
             "(bet delays scaled alike); 0 = as fast as possible.", min=0)] = 100.0,
    max_gap: Annotated[float, typer.Option(
        "--max-gap", help="With --submit and a speed: a pause in the recording longer than "
        "this many seconds counts as this long (recordings sleep for hours between races).",
        min=0)] = 60.0,
    redis_url: RedisUrl = None,
    partition: Route = None,
    replicas: Replicas = None,
) -> None:
    """Convert Betfair stream recordings into commands: market definitions, status changes,
    the book as resting orders of liquidity accounts, traded volume as crossing orders, and
    the winners as a settlement. JSON lines on stdout unless --out or --submit."""
    from exchange.commands import decode
    from tools.sources.betfair import convert, dump_commands

    try:
        commands, converted = convert(files)
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
        from tools.sources.load import scale_delays, send

        tuples = [decode(c, i, c.get("ts", 0)) for i, c in enumerate(commands, 1)]
        flow = scale_delays(tuples, speed) if speed else tuples
        with progress("submitting", len(tuples)) as advance:
            done = [0]

            def on_batch(r: Any) -> None:
                advance(r.sent - done[0])
                done[0] = r.sent

            client = redis_client(redis_url)
            if partition is None:
                # one recording's markets and its liquidity accounts' money in one partition:
                # the first market's (bound before, or by the stable rule)
                from journal.routing import Router

                router = Router(client)
                first = next((c["market"] for c in commands if c.get("type") == "create_market"),
                             None)
                if router.count > 1 and first is not None:
                    partition = str(router.bind(first, None))
            sent = send(flow, sequencer_for(client, partition, replicas),
                        speed=speed or None, max_gap=max_gap, on_batch=on_batch)
        where = f" in partition {partition}" if partition not in (None, "0") else ""
        typer.echo(f"sequenced {sent.sequenced:,} commands{where}: "
                   f"seq {sent.first_seq}..{sent.last_seq}",
                   err=True)
    summary = converted.to_dict()
    report({k: v for k, v in summary.items() if k != "markets"}, False, err=True)
