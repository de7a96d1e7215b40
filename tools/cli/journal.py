"""The journal: submit commands, run the matcher and its follower, prove the output, archive."""

from __future__ import annotations

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

SigningKey = Annotated[
    str | None,
    typer.Option("--signing-key", envvar="EXCH_SNAPSHOT_KEY", show_default=False,
                 help="The private key snapshots are signed with (Ed25519, PEM), made with "
                      "its .pub on first use if missing. Default: "
                      "$EXCH_HOME/keys/snapshot-signing.key."),
]
PublicKey = Annotated[
    str | None,
    typer.Option("--public-key", envvar="EXCH_SNAPSHOT_PUBLIC_KEY", show_default=False,
                 help="The public key a snapshot must be signed by to be trusted (PEM). "
                      "Default: $EXCH_HOME/keys/snapshot-signing.pub."),
]


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
    signing_key: SigningKey = None,
) -> None:
    """The matcher: follow the input journal and commit the events to the output stream.

    Waits as a standby while another matcher holds the partition's lease; takes over within a
    few seconds of its death. Stops cleanly (snapshot, lease released) on Ctrl-C or SIGTERM.
    With replicas it keeps the replicated watermark, so that no consumer acts on an answer a
    failover could take back (docs/partitions.md).
    """
    import logging

    from journal.runner import Matcher
    from journal.signing import load_signer

    from .views import RunView

    if standby not in ("cold", "hot"):
        raise fail(f"--standby is cold or hot, not {standby!r}")
    client = redis_client(redis_url, wait=SERVICE_WAIT)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    view = RunView()
    matcher = Matcher(client, keys_for(partition), snapshot_every=snapshot_every, batch=batch,
                      lease_ms=lease_ms, max_step=max_step, on_progress=view.update,
                      hot=standby == "hot", replicas=replicas,
                      signer=load_signer(signing_key))

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
    signing_key: SigningKey = None,
) -> None:
    """The follower: keep a second copy of the state from the journal, check every answer the
    matcher commits against it, and take the periodic snapshots off the matcher's back.

    Never writes the output. At the first answer that differs it reports the seq and exits 1.
    Stops on Ctrl-C or SIGTERM (exit 0).
    """
    import logging

    from journal.follower import Follower, nice
    from journal.signing import load_signer

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
                        on_progress=show, signer=load_signer(signing_key))

    stop_on_signals(follower.stopping.set, "exch follow")
    done = follower.run()
    typer.echo(f"stopped: verified up to seq {done.verified_seq:,}", err=True)


@app.command()
def replay(
    from_snapshot: Annotated[
        str,
        typer.Option("--from-snapshot",
                     help="latest (the newest signed by the trusted key), a seq, a snapshot "
                          "file, or none (from the first command)."),
    ] = "latest",
    to: Annotated[int | None, typer.Option(help="Stop after this seq (default: the last "
                                                "output entry).", min=0)] = None,
    verify: Annotated[
        bool, typer.Option(help="Compare every regenerated event with the recorded output.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    redis_url: RedisUrl = None,
    partition: Partition = "0",
    public_key: PublicKey = None,
) -> None:
    """Rebuild the state from a snapshot and the journal; with --verify, prove the output.

    Only a snapshot signed by the trusted key is used: with latest, an unsigned or forged one
    is passed over (a warning names it) for an older signed one or the journal from the
    start; a seq naming one fails (exit 1). Exit 0 with the state hash when everything
    matches, 1 at the first divergence.
    """
    from journal.replay import replay as run_replay
    from journal.signing import load_verifier

    verifier = None
    if from_snapshot == "latest" or from_snapshot.isdigit():  # a file or none: no key needed
        verifier = load_verifier(public_key)
    client = redis_client(redis_url)
    with progress("replaying", None, quiet=as_json) as advance:
        done = [0]

        def on_progress(commands: int, _: int) -> None:
            advance(commands - done[0])
            done[0] = commands

        result = run_replay(client, keys_for(partition), source=from_snapshot, to=to,
                            verify=verify, on_progress=on_progress, verifier=verifier)
    summary = {
        "snapshot": result.snapshot,
        "from_seq": result.from_seq,
        "to_seq": result.to_seq,
        "commands": result.commands,
        "commands_per_sec": round(result.rate),
        "state_hash": result.state_hash,
    }
    if result.untrusted:  # passed over: each was warned about on stderr as it was
        summary["untrusted_snapshots"] = [{"seq": seq, "why": why} for seq, why
                                          in sorted(result.untrusted.items(), reverse=True)]
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
    public_key: PublicKey = None,
) -> None:
    """Ask the running matcher for a snapshot now, or list the stored ones: each with the
    key id it is signed by and whether the trusted public key verifies it."""
    from exchange.errors import SigningKeyError
    from journal.runner import request_snapshot
    from journal.signing import load_verifier
    from journal.snapshots import SnapshotStore

    client = redis_client(redis_url)
    keys = keys_for(partition)
    if list_:
        import datetime as dt

        from rich.console import Console
        from rich.table import Table

        try:
            verifier = load_verifier(public_key)
        except SigningKeyError as e:  # listing still works: only the check is left out
            verifier = None
            typer.secho(f"not checking signatures: {e}", err=True, fg=typer.colors.YELLOW)
        store = SnapshotStore(client, keys, verifier=verifier)
        table = Table("seq", "state hash", "bytes", "taken (UTC)", "signed by", "trusted")
        for s in store.list():
            when = dt.datetime.fromtimestamp(s.created_ms / 1000, dt.timezone.utc)
            why = store.distrust(s) if verifier is not None else "?"
            trusted = "yes" if why is None else ("?" if why == "?" else f"NO: {why}")
            table.add_row(f"{s.seq:,}", s.hash[:16], f"{s.size:,}", when.strftime("%F %T"),
                          s.key_id or "(unsigned)", trusted)
        Console().print(table)
        return
    store = SnapshotStore(client, keys, verifier=load_verifier(public_key))
    try:
        seq = request_snapshot(client, keys, timeout=timeout)
    except TimeoutError as e:
        raise fail(str(e), 1) from None
    found = store.get_trusted(seq)
    if found is None:
        raise fail(f"the matcher reported a snapshot at {seq} that is not stored", 1)
    typer.echo(f"snapshot at seq {seq:,}: {found[0].hash} ({found[0].size:,} bytes), signed "
               f"by key {found[0].key_id}")
    if save:
        from pathlib import Path

        Path(save).write_bytes(found[1])
        typer.echo(f"saved to {save}")


@app.command("snapshot-key")
def snapshot_key(
    create: Annotated[bool, typer.Option(
        "--create", help="Make the key pair if there is no private key yet (never replaces "
                         "one).")] = False,
    signing_key: SigningKey = None,
    public_key: PublicKey = None,
) -> None:
    """Show the snapshot signing key: its id and its files; --create makes a pair.

    `exch run` and `exch follow` sign every snapshot with the private key (and make the pair
    on first use); every other host that loads snapshots (`exch replay`, `exch archive`, a
    gateway) needs only the public key: copy it there. A snapshot not signed by it is not
    trusted. Exit 2 if there is no key to show.
    """
    from pathlib import Path

    from exchange.errors import SigningKeyError
    from journal.signing import default_key_path, default_public_path, load_signer, load_verifier

    private = Path(signing_key).expanduser() if signing_key else default_key_path()
    public = Path(public_key).expanduser() if public_key else default_public_path()
    if not (create or private.exists() or public.exists()):
        raise SigningKeyError(f"no snapshot signing key here ({private}, {public}): `exch "
                              "snapshot-key --create` makes a pair (`exch run` does on first use)")
    mine = load_signer(signing_key, public_key, create=True) if create or private.exists() \
        else None
    verifier = load_verifier(public_key)
    typer.echo(f"key id {verifier.key_id}")
    typer.echo(f"public key {verifier.path}")
    if mine is None:
        typer.echo("private key: none here (a host that only reads snapshots)")
    elif mine.key_id != verifier.key_id:
        raise fail(f"private key {mine.path} is another key (key id {mine.key_id}): snapshots "
                   "it signs are not trusted with this public key", 1)
    else:
        typer.echo(f"private key {mine.path}")


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
    public_key: PublicKey = None,
) -> None:
    """Copy the answered journal (input and output) and every intact snapshot signed by the
    trusted key (with its signature) to immutable, checksummed files (docs/archive.md), so
    that `exch compact` may free Redis.

    A crash leaves no partial or duplicate file; running again resumes where it stopped.
    """
    import threading
    from pathlib import Path

    from journal.archive import Archive, Archiver, archive_of, default_dir
    from journal.signing import load_verifier

    client = redis_client(redis_url, wait=SERVICE_WAIT if follow else 0.0)
    keys = keys_for(partition)
    known = archive_of(client, keys)
    root = Path(dir_) if dir_ else (known.root if known else default_dir())
    archiver = Archiver(client, Archive(root, partition), keys,
                        segment_bytes=int(segment_mb * (1 << 20)),
                        verifier=load_verifier(public_key) if public_key else None)

    def say(r) -> None:  # type: ignore[no-untyped-def]
        typer.echo(f"archived through seq {r.through:,}: {r.segments} new segment(s), "
                   f"{r.entries:,} input entries, {r.snapshots} snapshot(s) in "
                   f"{archiver.archive.folder}")
        untrusted = r.untrusted_snapshots or {}
        damaged = [s for s in r.skipped_snapshots or [] if s not in untrusted]
        if damaged:
            typer.secho(f"not archived (do not read back whole): snapshots at "
                        f"{', '.join(map(str, damaged))}", err=True, fg=typer.colors.YELLOW)
        # the untrusted ones: journal.snapshots warned about each, saying why

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
