"""Benchmarks: the core alone, the whole system, the Parquet export."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from .common import busy, fail, report

app = typer.Typer(help="Measure throughput and memory.", no_args_is_help=True)


@contextmanager
def phases(what: str, as_json: bool, *, echo: bool = False) -> Iterator[Callable[[str], None]]:
    """A spinner for a benchmark of several phases; yields the callback that names the
    current one (on stderr, with ``echo``, where there is no spinner and no --json)."""
    with busy(what, as_json) as spinner:
        def phase(name: str) -> None:
            if spinner is not None and hasattr(spinner, "update"):
                spinner.update(name)
            elif echo and not as_json:
                typer.echo(name, err=True)

        yield phase


@app.command("core")
def bench_core(
    commands: Annotated[
        int, typer.Option(help="Commands in the workload.", envvar="EXCH_BENCH_COMMANDS", min=1)
    ] = 1_000_000,
    runs: Annotated[int, typer.Option(help="Timed runs; the median is reported.", min=1)] = 3,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The matching core alone: a seeded workload applied in-process, every event built."""
    from tools.bench import bench_core as run

    with busy(f"core workload: {commands:,} commands, {runs} runs", as_json):
        result = run(commands, runs=runs, seed=seed)
    report(result, as_json)


@app.command("e2e")
def bench_e2e(
    commands: Annotated[
        int, typer.Option(help="Commands in the workload.", envvar="EXCH_BENCH_COMMANDS", min=1)
    ] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 1,
    latency_rate: Annotated[
        int, typer.Option(help="Steady rate (commands/s) for the latency measurement.", min=1)
    ] = 20_000,
    fsync: Annotated[str, typer.Option(
        help="Redis's appendfsync: everysec, or always (strict: every reply waits for the "
        "disk).")] = "everysec",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The whole system on this machine: sequencer, exch run, Redis with append-only
    persistence; with the raw pipelined XADD rate measured in the same run."""
    from tools.bench import bench_e2e as run

    with phases("e2e", as_json, echo=True) as phase:
        if fsync not in ("everysec", "always"):
            raise fail(f"--fsync is everysec or always, not {fsync!r}")
        result = run(commands, seed=seed, latency_rate=latency_rate, fsync=fsync,
                     on_phase=phase)
    if "commands_per_sec" in result and "raw_xadd_per_sec" in result:
        result["ratio_to_raw_xadd"] = round(result["commands_per_sec"] /
                                            result["raw_xadd_per_sec"], 3)
    report(result, as_json)


@app.command("gateway")
def bench_gateway(
    orders: Annotated[int, typer.Option(
        help="Orders per throughput run.", envvar="EXCH_BENCH_ORDERS", min=1)] = 20_000,
    runs: Annotated[int, typer.Option(help="Throughput runs; the median is reported.",
                                      min=1)] = 3,
    connections: Annotated[int, typer.Option(
        help="Clients sending at once, each waiting for its answer.", min=1)] = 32,
    rate: Annotated[int, typer.Option(
        help="Steady rate (orders/s) for the latency measurement.", min=1)] = 500,
    seconds: Annotated[float, typer.Option(
        help="How long the latency measurement sends.", min=0.1)] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Orders through exch gateway (HTTP, API keys), each answered with the outcome the
    matcher journaled: orders/s alone and in batches of 100, and p50/p99 from request to
    outcome at a steady rate."""
    from tools.bench import bench_gateway as run

    with phases("gateway", as_json, echo=True) as phase:
        result = run(orders, runs=runs, connections=connections, rate=rate, seconds=seconds,
                     on_phase=phase)
    report(result, as_json)


@app.command("export")
def bench_export(
    commands: Annotated[
        int, typer.Option(help="Commands whose events fill the output stream.", min=1)
    ] = 1_000_000,
    runs: Annotated[int, typer.Option(help="Timed runs; the median is reported.", min=1)] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The Parquet exporter: events per second from the output stream (through its consumer
    group, msgpack decoding included) to fsync'd Parquet files."""
    from tools.bench import bench_export as run

    with busy(f"export benchmark: {commands:,} commands, {runs} runs", as_json):
        result = run(commands, runs=runs)
    report(result, as_json)


@app.command("store")
def bench_store(
    commands: Annotated[
        int, typer.Option(help="Commands whose events fill the output stream.", min=1)
    ] = 1_000_000,
    runs: Annotated[int, typer.Option(help="Timed runs; the median is reported.", min=1)] = 3,
    db: Annotated[str | None, typer.Option(
        "--db", envvar="EXCH_DB_URL", show_default=False,
        help="A PostgreSQL server to measure (a fresh database per run is created on it). "
        "Default: an embedded one of the benchmark's own.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The store: events per second from the output stream (through its consumer group)
    into PostgreSQL, each batch's rows and position committed in one transaction."""
    from tools.bench import bench_store as run

    with busy(f"store benchmark: {commands:,} commands, {runs} runs", as_json):
        result = run(commands, runs=runs, db=db)
    report(result, as_json)


@app.command("archive")
def bench_archive(
    commands: Annotated[
        int, typer.Option(help="Commands in the workload.", envvar="EXCH_BENCH_COMMANDS", min=1)
    ] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The archive: how fast the answered journal is copied to segment files, and how fast
    a replay from the first command reads it back through the archive rather than Redis
    (with and without --verify). Exit 1 if a replay does not verify."""
    from tools.bench import bench_archive as run

    with phases("archive benchmark", as_json) as phase:
        result = run(commands, seed=seed, on_phase=phase)
    report(result, as_json)
    if not (result["replay_redis_verified"] and result["replay_archive_verified"]):
        raise typer.Exit(1)


@app.command("scale")
def bench_scale(
    partitions: Annotated[str, typer.Option(
        help="Partition counts to measure, comma-separated.")] = "1,2,4",
    commands: Annotated[
        int, typer.Option(help="Commands per measurement, split evenly over the partitions.",
                          envvar="EXCH_BENCH_COMMANDS", min=1000)
    ] = 400_000,
    seed: Annotated[int, typer.Option(help="Seed of partition 0's workload (p's: seed+p).")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The whole system with one matcher per partition (exch run --partition P), for each
    partition count: commands/s over all partitions, and the CPU per command of Redis, the
    matchers and the submitter (work per command should not grow with the partitions)."""
    from tools.bench import bench_scale as run

    try:
        counts = [int(x) for x in partitions.split(",") if x.strip()]
    except ValueError:
        raise fail(f"--partitions takes whole numbers separated by commas, not {partitions!r}",
                   2) from None
    if not counts or min(counts) < 1:
        raise fail("--partitions takes counts from 1", 2)
    with phases("scale", as_json) as phase:
        result = run(counts, commands, seed=seed, on_phase=phase)
    if as_json:
        report(result, True)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("partitions", "commands/s", "speed-up", "Redis", "matchers", "submitter",
              title=f"{commands:,} commands on {result['cores']} cores; CPU µs per command")
    for r in result["rows"]:
        t.add_row(str(r["partitions"]), f"{r['commands_per_sec']:,}", f"{r['speed_up']:.2f}",
                  f"{r['redis_cpu_us_per_command']:.2f}",
                  f"{r['matcher_cpu_us_per_command']:.2f}",
                  f"{r['submitter_cpu_us_per_command']:.2f}")
    Console().print(t)


@app.command("takeover")
def bench_takeover(
    orders: Annotated[int, typer.Option(help="Resting orders in the book.", min=1)
                      ] = 1_000_000,
    standby: Annotated[str, typer.Option(help="hot, cold, or both (one after the other).")
                       ] = "both",
    lease_ms: Annotated[int, typer.Option("--lease-ms", help="The lease's time.", min=100)
                        ] = 3000,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """SIGKILL the matcher with a large book resting: how long until a standby (hot: it
    followed the journal in memory; cold: it restores a snapshot and replays) has answered
    the next command. Target: a hot standby within the lease time plus 200 ms."""
    from tools.bench import bench_takeover as run

    kinds = ["hot", "cold"] if standby == "both" else [standby]
    if any(k not in ("hot", "cold") for k in kinds):
        raise fail(f"--standby is hot, cold or both, not {standby!r}")
    rows = []
    with phases("takeover", as_json) as phase:
        for kind in kinds:
            rows.append(run(orders, standby=kind, lease_ms=lease_ms, on_phase=phase))
    if as_json:
        report({"benchmark": "takeover", "rows": rows}, True)
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("standby", "takeover ms", "lease left ms", "after expiry ms", "replayed",
              title=f"{orders:,} resting orders, lease {lease_ms:,} ms")
    for r in rows:
        t.add_row(r["standby"], f"{r['takeover_ms']:,}", f"{r['lease_left_at_kill_ms']:,}",
                  f"{r['after_lease_expiry_ms']:,}", f"{r['entries_replayed']:,}")
    Console().print(t)


@app.command("soak")
def bench_soak(
    commands: Annotated[
        int, typer.Option(help="Commands to send, as market days one after another.",
                          envvar="EXCH_BENCH_COMMANDS", min=1000)
    ] = 5_000_000,
    day: Annotated[int, typer.Option(help="Commands per market day; compaction runs after "
                                          "each.", min=1000)] = 250_000,
    markets: Annotated[int, typer.Option(help="Markets per day.", min=1)] = 8,
    accounts: Annotated[int, typer.Option(help="Betting accounts.", min=2)] = 1000,
    rate: Annotated[float | None, typer.Option(
        help="Commands per second (default: as fast as possible).", min=1)] = None,
    snapshot_every: Annotated[int | None, typer.Option(
        help="The follower's snapshot interval in commands (default: half a day); what stays "
             "in Redis is about this much journal.", min=1000, show_default=False)] = None,
    keep: Annotated[str | None, typer.Option(
        help="Keep Redis's data, the archive and the Parquet in this folder (default: a "
             "temporary folder, removed).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the first day (the next day: seed+1, ...).")
                    ] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The whole system (sequencer, matcher, follower, archiver, Parquet exporter, compaction
    after every day) over many commands: Redis's used_memory over time, the archive's size,
    and the checks that nothing was lost (output dense, trades one for one in Parquet, replay
    from the first command verified). Exit 1 if a check fails."""
    from rich.console import Console
    from rich.table import Table

    from tools.bench.soak import Sample
    from tools.bench.soak import bench_soak as run

    console = Console(stderr=True)
    mb = 1e6

    def sample(s: Sample) -> None:
        if not as_json:
            console.print(f"{s.commands:>11,} cmds {s.seconds:>7.1f} s  Redis "
                          f"{s.used_memory_before / mb:7.1f} MB -> {s.used_memory / mb:6.1f} MB "
                          f"compacted  archive {s.archive_bytes / mb:8.1f} MB  "
                          f"lag {s.matcher_lag:,}", highlight=False)

    with phases("soak", as_json) as phase:
        try:
            result = run(commands, day=day, markets=markets, accounts=accounts, seed=seed,
                         rate=rate, snapshot_every=snapshot_every, folder=keep,
                         on_sample=sample, on_phase=phase)
        except ValueError as e:
            raise fail(str(e)) from None
    ok = result["output_dense"] and result["trades_one_for_one"] and result["replay_verified"]
    if as_json:
        report(result, True)
    else:
        table = Table(title="Redis memory (MB) by commands sent", box=None)
        for name in ("commands", "before compact", "after", "in entries", "archive"):
            table.add_column(name, justify="right")
        for s in result["samples"]:
            table.add_row(f"{s['commands']:,}", f"{s['used_memory_before'] / mb:.1f}",
                          f"{s['used_memory'] / mb:.1f}", f"{s['input_entries']:,}",
                          f"{s['archive_bytes'] / mb:.1f}")
        Console().print(table)
        report({k: v for k, v in result.items() if k != "samples"}, False)
    if not ok:
        raise typer.Exit(1)
