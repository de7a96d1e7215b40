"""Benchmarks: the core alone, the whole system, the Parquet export."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import busy, report

app = typer.Typer(help="Measure throughput and memory.", no_args_is_help=True)


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
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The whole system on this machine: sequencer, exch run, Redis with append-only
    persistence; with the raw pipelined XADD rate measured in the same run."""
    from tools.bench import bench_e2e as run

    status = busy("e2e", as_json)
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
