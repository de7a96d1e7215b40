"""The journal: submit commands, run the matcher, prove the output, look at where it stands."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from .common import (
    SERVICE_WAIT,
    Partition,
    RedisUrl,
    Replicas,
    Route,
    fail,
    keys_for,
    progress,
    redis_client,
    report,
    sequencer_for,
    stop_on_signals,
)

app = typer.Typer()


@app.command()
def submit(
    file: Annotated[str, typer.Argument(help="Command file (JSON lines), or - for stdin.")],
    skip_invalid: Annotated[
        bool, typer.Option(help="Send the valid lines even if some are not; report the rest.")
    ] = False,
    redis_url: RedisUrl = None,
    partition: Route = None,
    replicas: Replicas = None,
) -> None:
    """Validate a command file, then sequence its commands into the input journals.

    Every line is checked first: a bad line is reported with its number and why, and nothing
    is sent (exit 2) unless --skip-invalid. Each command goes to its partition (its
    market's, its order's, or for a deposit, withdrawal or new market its `partition`
    field), in the file's order. A place whose (account, ref) was sequenced before is not
    sequenced again.
    """
    from tools.sources.commandfile import check_file, valid_commands

    if file == "-":
        # the file is read twice (checked, then sent): keep stdin in a temporary copy
        import os
        import tempfile

        with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as tmp:
            tmp.write(sys.stdin.buffer.read())  # as bytes: a line that is not UTF-8 is reported
        try:
            return submit(tmp.name, skip_invalid, redis_url, partition, replicas)
        finally:
            os.unlink(tmp.name)
    routed = partition is None
    connected: list[Any] = []

    def connect() -> Any:  # only once the file is known good, or names a partition
        if not connected:
            connected.append(sequencer_for(redis_client(redis_url), partition, replicas))
        return connected[0]

    configured = (lambda: connect().router.count) if routed else None
    try:
        count, problems = check_file(file, configured)
    except OSError as e:
        raise fail(f"{file}: {e.strerror}") from None
    for p in problems[:20]:
        typer.secho(str(p), err=True, fg=typer.colors.YELLOW)
    if len(problems) > 20:
        typer.secho(f"... and {len(problems) - 20} more", err=True, fg=typer.colors.YELLOW)
    if problems and not skip_invalid:
        raise fail(f"{len(problems)} of {count} lines are not valid commands; nothing sent")
    sequencer = connect()
    valid = count - len(problems)
    from journal.sequencer import Submitted

    results: dict[int, Submitted] = {}
    with progress("submitting", valid) as advance:
        if routed:
            calls = sequencer.submit_iter(valid_commands(file, configured))
        else:  # all to the partition given: the partition fields are set aside
            calls = sequencer.submit_iter(cmd for _, cmd in valid_commands(file))
        for p, seqs in calls:
            results.setdefault(p, Submitted()).add(seqs)
            advance(len(seqs))
    duplicates = 0
    for p, result in sorted(results.items()):
        duplicates += result.duplicates
        if result.sequenced:
            where = f" in partition {p}" if len(results) > 1 or p else ""
            typer.echo(f"sequenced {result.sequenced:,} commands{where}: "
                       f"seq {result.first_seq}..{result.last_seq}")
    if not any(r.sequenced for r in results.values()):
        typer.echo("sequenced nothing")
    if duplicates:
        typer.echo(f"skipped {duplicates:,} with an (account, ref) already sequenced")
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
    batch: Annotated[int, typer.Option(
        help="Most input entries read and matched at once (an entry holds up to 500 "
             "commands).", min=1)] = 64,
    lease_ms: Annotated[int, typer.Option(
        "--lease-ms", envvar="EXCH_LEASE_MS", min=100,
        help="The lease's time: a standby takes over this long after the matcher stops "
             "renewing it.")] = 3000,
    max_step: Annotated[float, typer.Option(
        "--max-step", envvar="EXCH_MAX_STEP", min=0.1,
        help="Seconds one step (a restore, an entry matched, a commit) may take before the "
             "matcher counts as hung and lets its lease go.")] = 60.0,
    standby: Annotated[str, typer.Option(
        envvar="EXCH_STANDBY",
        help="While another matcher holds the lease: cold (wait, then rebuild from a snapshot "
             "and the journal) or hot (follow the journal in memory, verifying every answer, "
             "and take over from that state).")] = "cold",
    replicas: Annotated[int | None, typer.Option(
        "--replicas", envvar="EXCH_REPLICAS", min=0, show_default=False,
        help="Let consumers act on an answer only once this many replicas have it (the "
             "replicated watermark). Default: 1 if the server has a replica, else 0.")] = None,
) -> None:
    """The matcher: follow the input journal and commit the events to the output stream.

    Waits as a standby while another matcher holds the partition's lease; takes over within a
    few seconds of its death. Stops cleanly (snapshot, lease released) on Ctrl-C or SIGTERM.
    With replicas it keeps the replicated watermark, so that no consumer acts on an answer a
    failover could take back (docs/partitions.md).
    """
    import logging

    from journal.runner import Matcher

    from .views import RunView

    if standby not in ("cold", "hot"):
        raise fail(f"--standby is cold or hot, not {standby!r}")
    client = redis_client(redis_url, wait=SERVICE_WAIT)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    view = RunView()
    matcher = Matcher(client, keys_for(partition), snapshot_every=snapshot_every, batch=batch,
                      lease_ms=lease_ms, max_step=max_step, on_progress=view.update,
                      hot=standby == "hot", replicas=replicas)

    stop_on_signals(matcher.stopping.set, "exch run")
    with view:
        matcher.run()
    typer.echo(f"stopped at seq {matcher.progress.last_seq:,}", err=True)


@app.command()
def follow(
    redis_url: RedisUrl = None,
    partition: Partition = "0",
    snapshot_every: Annotated[
        int,
        typer.Option(help="Take a snapshot every N commands (the matcher takes none while a "
                          "follower runs).", envvar="EXCH_SNAPSHOT_EVERY", min=1),
    ] = 100_000,
) -> None:
    """The follower: keep a second copy of the state from the journal, check every answer the
    matcher commits against it, and take the periodic snapshots off the matcher's back.

    Never writes the output. At the first answer that differs it reports the seq and exits 1.
    Stops on Ctrl-C or SIGTERM (exit 0).
    """
    import logging

    from journal.follower import Follower, nice

    client = redis_client(redis_url, wait=SERVICE_WAIT)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    nice()
    last = [0.0]

    def show(p) -> None:  # type: ignore[no-untyped-def]
        import time

        now = time.monotonic()
        if now - last[0] >= 5 or p.state in ("diverged", "stopped"):
            last[0] = now
            typer.echo(f"{p.state} verified={p.verified_seq} snapshot={p.snapshot_seq} "
                       f"snapshots={p.snapshots}", err=True)

    follower = Follower(client, keys_for(partition), snapshot_every=snapshot_every,
                        on_progress=show)

    stop_on_signals(follower.stopping.set, "exch follow")
    done = follower.run()
    typer.echo(f"stopped: verified up to seq {done.verified_seq:,}", err=True)


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
    from journal.replay import replay as run_replay

    client = redis_client(redis_url)
    with progress("replaying", None, quiet=as_json) as advance:
        done = [0]

        def on_progress(commands: int, _: int) -> None:
            advance(commands - done[0])
            done[0] = commands

        result = run_replay(client, keys_for(partition), source=from_snapshot, to=to,
                            verify=verify, on_progress=on_progress)
    summary = {
        "snapshot": result.snapshot,
        "from_seq": result.from_seq,
        "to_seq": result.to_seq,
        "commands": result.commands,
        "commands_per_sec": round(result.rate),
        "state_hash": result.state_hash,
    }
    if verify:  # without --verify nothing was checked: say nothing about it
        summary["verified"] = result.verified
    if result.divergence is not None and as_json:
        d = result.divergence
        summary["divergence"] = {"seq": d.seq, "entry": d.entry, "why": d.why,
                                 "recorded": d.recorded, "replayed": d.replayed}
    if verify and result.divergence is None and result.to_seq == 0:
        # an empty or misspelled partition: nothing was compared, so nothing is verified
        raise fail(f"nothing to verify: partition {partition} holds no answered entry", 1)
    report(summary, as_json)
    if result.divergence is not None:
        if not as_json:
            _say_divergence(result.divergence)
        raise typer.Exit(1)
    if verify and not as_json:
        typer.secho(f"verified: output matches the journal up to seq {result.to_seq}",
                    fg=typer.colors.GREEN)


def _say_divergence(d: Any) -> None:
    """The first difference, for people: where, why, and the events of that seq as recorded
    and as replayed, one readable line each."""
    from exchange.codec import json_from_wire

    from .views import escaped, event_line

    typer.secho(f"DIVERGED at seq {d.seq:,} (output entry {d.entry}): {escaped(d.why)}",
                err=True, fg=typer.colors.RED)
    for label, events in (("recorded", d.recorded), ("replayed", d.replayed)):
        if events is None:
            continue
        typer.echo(f"{label}:" + ("" if events else " (no events)"), err=True)
        for ev in events:
            try:
                line = event_line(ev.get("seq", d.seq), json_from_wire(ev))
            except Exception:  # noqa: BLE001 - a damaged recorded event is shown as it is
                line = escaped(repr(ev))[:300]
            typer.echo("  " + line.strip(), err=True)


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

    client = redis_client(redis_url)
    keys = keys_for(partition)
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

    st = read_status(redis_client(redis_url), keys_for(partition))
    if as_json:
        print(json.dumps(st.as_dict()))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(show_header=False, box=None)
    t.add_column(no_wrap=True)
    t.add_column(overflow="fold")
    t.add_row("partition", st.partition)
    t.add_row("journal layout", str(st.layout))
    t.add_row("last input seq", f"{st.last_input_seq:,}")
    t.add_row("last output seq", f"{st.last_output_seq:,}")
    t.add_row("matcher lag", f"{st.lag:,}")
    t.add_row("matcher", st.matcher or "(none running)")
    t.add_row("follower", f"{st.follower}, verified up to seq {st.followed_seq:,}"
              if st.follower else "(none running: the matcher takes the snapshots)")
    t.add_row("snapshots", ", ".join(f"{s['seq']:,}" for s in st.snapshots) or "(none)")
    console.print(t)
    if st.groups:
        g = Table("consumer group", "consumers", "pending", "last delivered", "lag")
        for grp in st.groups:
            g.add_row(grp.name, str(grp.consumers), f"{grp.pending:,}", grp.last_delivered,
                      f"{grp.lag:,}")
        console.print(g)


@app.command()
def partitions(
    set_count: Annotated[int | None, typer.Option(
        "--set", min=1, help="Configure this many partitions (0 to N-1). The number only "
        "grows: markets are bound to their partition for life.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    redis_url: RedisUrl = None,
) -> None:
    """The partitions: their markets, last seqs, matcher, follower, lag and transfers.

    The transfers column is how far `exch transfers` has carried the partition's transfers
    (every transfer_out answered at or below that seq is on its way or credited).

    Each partition is its own journal with its own matcher (`exch run --partition P`). New
    markets are spread over the configured partitions (see docs/partitions.md).
    """
    from journal.routing import directory, partition_count, set_partition_count
    from journal.status import status as read_status

    client = redis_client(redis_url)
    if set_count is not None:
        set_partition_count(client, set_count)
    count = partition_count(client)
    markets: dict[int, int] = {}
    for p in directory(client).values():
        markets[p] = markets.get(p, 0) + 1
    found = {int(k.decode().split("{", 1)[1].split("}", 1)[0])
             for k in client.scan_iter(match="exch:{*}:in", count=1000)
             if k.decode().split("{", 1)[1].split("}", 1)[0].isdigit()}
    rows = []
    for p in sorted(set(range(count)) | found | set(markets)):
        keys = keys_for(str(p))
        st = read_status(client, keys)
        rows.append({
            "partition": p, "configured": p < count, "markets": markets.get(p, 0),
            "last_input_seq": st.last_input_seq, "last_output_seq": st.last_output_seq,
            "lag": st.lag, "matcher": st.matcher, "follower": st.follower,
            "followed_seq": st.followed_seq,
            "transfers_seq": int(client.get(keys.transfers) or 0),
            "transfer_service": bool(client.exists(keys.transfer_lease)),
        })
    if as_json:
        print(json.dumps({"partitions": count, "rows": rows}))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("partition", "markets", "last in", "last out", "lag", "matcher", "follower",
              "transfers", title=f"{count} partition{'s' if count > 1 else ''} configured")
    for r in rows:
        name = str(r["partition"]) + ("" if r["configured"] else " (not configured)")
        follower = (f"verified {r['followed_seq']:,}" if r["follower"] else "-")
        carried = (f"{r['transfers_seq']:,}" if r["transfer_service"] or r["transfers_seq"]
                   else "-")
        t.add_row(name, f"{r['markets']:,}", f"{r['last_input_seq']:,}",
                  f"{r['last_output_seq']:,}", f"{r['lag']:,}",
                  "running" if r["matcher"] else "NONE", follower, carried)
    Console().print(t)
    idle = [str(r["partition"]) for r in rows if r["configured"] and not r["matcher"]]
    if idle:
        typer.echo(f"no matcher runs for partition {', '.join(idle)}: start one with "
                   f"`exch run --partition P`", err=True)


ArchiveDir = Annotated[
    str | None,
    typer.Option("--dir", envvar="EXCH_ARCHIVE", show_default=False,
                 help="The archive folder. Default: archive/ under $EXCH_HOME "
                      "(~/.local/share/exch), or where the partition is already archived."),
]


@app.command()
def archive(
    dir_: ArchiveDir = None,
    follow: Annotated[bool, typer.Option(
        help="Keep archiving as the journal grows, until Ctrl-C or SIGTERM.")] = False,
    every: Annotated[float, typer.Option(
        help="With --follow, seconds between passes.", min=0.1)] = 60.0,
    segment_mb: Annotated[float, typer.Option(
        "--segment-mb", help="Cut a segment once its input holds this many MB.",
        min=0.001)] = 64,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Copy the answered journal (input and output) and every intact snapshot to immutable,
    checksummed segment files (docs/archive.md), so that `exch compact` may free Redis.

    A crash leaves no partial or duplicate file; running again resumes where it stopped.
    """
    import threading
    from pathlib import Path

    from journal.archive import Archive, Archiver, archive_of, default_dir

    client = redis_client(redis_url, wait=SERVICE_WAIT if follow else 0.0)
    keys = keys_for(partition)
    known = archive_of(client, keys)
    root = Path(dir_) if dir_ else (known.root if known else default_dir())
    archiver = Archiver(client, Archive(root, partition), keys,
                        segment_bytes=int(segment_mb * (1 << 20)))

    def say(r) -> None:  # type: ignore[no-untyped-def]
        typer.echo(f"archived through seq {r.through:,}: {r.segments} new segment(s), "
                   f"{r.entries:,} input entries, {r.snapshots} snapshot(s) in "
                   f"{archiver.archive.folder}")
        if r.skipped_snapshots:
            typer.secho(f"not archived (do not read back whole): snapshots at "
                        f"{', '.join(map(str, r.skipped_snapshots))}", err=True,
                        fg=typer.colors.YELLOW)

    if not follow:
        say(archiver.once())
        return
    stopping = threading.Event()
    stop_on_signals(stopping.set, "exch archive")
    archiver.follow(stopping.is_set, every=every,
                    on_pass=lambda r: say(r) if r.segments or r.snapshots else None)


@app.command()
def compact(
    dry_run: Annotated[bool, typer.Option(help="Only say what would be freed, and what "
                                               "stops it going further.")] = False,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Free Redis: remove the input and output entries and old snapshots that the archive
    holds (`exch archive`) and recovery no longer needs. Consumer groups do not hold it back:
    one that falls behind reads the archive. Nothing is ever lost."""
    from journal.retention import compact as run_compact

    plan = run_compact(redis_client(redis_url), keys_for(partition), dry_run=dry_run)
    mb = plan.bytes / 1e6
    if plan.trim_below == "0-0":
        typer.echo(f"nothing to trim: {plan.limited_by}")
    elif dry_run:
        typer.echo(f"would remove the entries below {plan.trim_below} ({plan.commands:,} "
                   f"commands, about {mb:,.1f} MB); limited by {plan.limited_by}")
    else:
        typer.echo(f"removed the entries below {plan.trim_below}: {plan.input_removed:,} "
                   f"input and {plan.output_removed:,} output entries, {mb:,.1f} MB; limited "
                   f"by {plan.limited_by}")
    if plan.snapshots_removed:
        typer.echo(f"{'would remove' if dry_run else 'removed'} snapshots at "
                   f"{', '.join(f'{s:,}' for s in plan.snapshots_removed)}")
    if plan.snapshots_kept_unarchived:
        typer.echo("kept until archived: snapshots at "
                   f"{', '.join(f'{s:,}' for s in plan.snapshots_kept_unarchived)}")


groups_app = typer.Typer(help="The output's consumer groups.", invoke_without_command=True)


@groups_app.callback()
def groups(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """List the consumer groups with their lag. None holds Redis's memory: one behind the
    window Redis keeps reads from the archive."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import asdict

    from journal.retention import groups as read_groups

    found = read_groups(redis_client(redis_url), keys_for(partition))
    if as_json:
        print(json.dumps({"groups": [asdict(g) for g in found]}))
        return
    if not found:
        typer.echo(f"no consumer groups on partition {partition}")
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("group", "consumers", "pending", "last delivered", "lag", "reads")
    for g in found:
        t.add_row(g.name, str(g.consumers), f"{g.pending:,}", g.last_delivered, f"{g.lag:,}",
                  "archive" if g.from_archive else "Redis")
    Console().print(t)


@groups_app.command("remove")
def groups_remove(
    name: Annotated[str, typer.Argument(help="The group (an export's is named after its "
                                             "folder: see `exch groups`).")],
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Remove a consumer group, say of an export folder that was deleted."""
    from journal.retention import remove_group

    remove_group(redis_client(redis_url), keys_for(partition), name)
    typer.echo(f"removed consumer group {name!r}")


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
    from journal.history import History
    from journal.layout import check_layout
    from journal.streams import field, last_id, parse_id, raw, stream_items
    from journal.wire import decode_events

    from .views import event_line

    client = raw(redis_client(redis_url))
    keys = keys_for(partition)
    check_layout(client, keys)
    history = History(client, keys)
    if from_seq is None:
        cursor = last_id(client, keys.output)
    else:
        # the answer holding seq from_seq + 1 may come in pieces, written after the previous
        # input entry's id: start there (in the archive, if compacted), skip seqs to from_seq
        cursor = history.start_before(from_seq + 1).decode()
    catching_up = from_seq is not None
    try:
        while True:
            if catching_up:  # the past, through the archive where Redis no longer holds it
                rows = history.xrange("out", min=f"({cursor}", max="+", count=1000)
                if not rows:
                    catching_up = False
                    continue
            else:
                reply = client.xread({keys.output: cursor}, count=1000,
                                     block=1000 if follow else None)
                rows = [r for _, rs in stream_items(reply) for r in rs]
                if not rows and not follow:
                    return
                if rows and history.fill("out", cursor.encode(), rows[0][0], 1):
                    catching_up = True  # compacted past us meanwhile: through the archive
                    continue
            for eid, fields in rows:
                payload = field(fields, b"e")
                for ev in decode_events(payload) if payload else []:
                    j = json_from_wire(ev)
                    seq = j.get("seq", parse_id(eid)[0])
                    if from_seq is not None and seq <= from_seq:
                        continue  # an entry holds many seqs: only those after --from
                    print(dumps_line(j) if as_json else event_line(seq, j), flush=False)
                cursor = eid.decode()
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


ExportDir = Annotated[
    str, typer.Option("--out", envvar="EXCH_EXPORT_DIR", help="Folder of the Parquet tables.")
]


rules_app = typer.Typer(
    help="The rules version a partition's new entries are written under (exchange.rules).",
    invoke_without_command=True,
)


@rules_app.callback()
def rules(
    ctx: typer.Context,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Show the rules version in force for new entries, and every version this release
    knows. A journal written before rules versions stays under version 1 until upgraded; a
    new journal starts under the newest."""
    if ctx.invoked_subcommand is not None:
        return
    from exchange.rules import LATEST, VERSIONS
    from journal.rules import rules_in_force

    current = rules_in_force(redis_client(redis_url), keys_for(partition))
    for version, text in VERSIONS.items():
        mark = "*" if version == current else " "
        typer.echo(f"{mark} {version}  {text}")
    if current < LATEST:
        typer.echo(f"new entries are written under version {current}; "
                   f"`exch rules upgrade` moves them to {LATEST}")


@rules_app.command("upgrade")
def rules_upgrade(
    to: Annotated[int | None, typer.Option(help="The version (default: the newest).",
                                           min=1)] = None,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
) -> None:
    """Write new entries under a newer rules version, from the next entry on. The journal
    before it keeps its version: a replay applies each entry's own. Never goes back."""
    from journal.rules import upgrade

    version = upgrade(redis_client(redis_url), keys_for(partition), to)
    typer.echo(f"new entries are written under rules version {version}")
