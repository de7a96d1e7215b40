"""Looking at the journal: where each partition stands, its consumer groups, its events.

``exch status``, ``exch groups`` and ``exch tail`` look at one partition (``--partition P``)
or at every configured one (``--partition all``); ``exch partitions`` is the overview.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer

from .common import Partition, RedisUrl, keys_for, redis_client

app = typer.Typer()

Watched = Annotated[
    str, typer.Option("--partition", envvar="EXCH_PARTITION",
                      help="Partition of the journal, or `all` for every configured one.")
]


def watched(client: Any, partition: str) -> list[str]:
    """The partitions ``--partition`` names: one, or every configured one for ``all``."""
    if partition != "all":
        keys_for(partition)  # a bad name is bad usage, before anything is read
        return [partition]
    from journal.routing import partition_count

    return [str(p) for p in range(partition_count(client))]


@app.command()
def status(
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object (a list of them, `partitions`, for all).")] = False,
    redis_url: RedisUrl = None,
    partition: Watched = "0",
) -> None:
    """Last input and output seqs, lag, the matcher, snapshots and consumer groups."""
    from journal.status import status as read_status

    client = redis_client(redis_url)
    found = [read_status(client, keys_for(p)) for p in watched(client, partition)]
    if as_json:
        print(json.dumps(found[0].as_dict() if partition != "all"
                         else {"partitions": [st.as_dict() for st in found]}))
        return
    for st in found:
        _show_status(st)


def _show_status(st: Any) -> None:
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
    t.add_row("snapshots", ", ".join(
        f"{s['seq']:,} ({'key ' + s['key_id'] if s['key_id'] else 'unsigned'})"
        for s in st.snapshots) or "(none)")
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


groups_app = typer.Typer(help="The output's consumer groups.", invoke_without_command=True)


@groups_app.callback()
def groups(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    redis_url: RedisUrl = None,
    partition: Watched = "0",
) -> None:
    """List the consumer groups with their lag. None holds Redis's memory: one behind the
    window Redis keeps reads from the archive."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import asdict

    from journal.retention import groups as read_groups

    client = redis_client(redis_url)
    found = [(int(p), g) for p in watched(client, partition)
             for g in read_groups(client, keys_for(p))]
    if as_json:
        print(json.dumps({"groups": [{"partition": p, **asdict(g)} for p, g in found]}))
        return
    if not found:
        typer.echo(f"no consumer groups on partition {partition}")
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("partition", "group", "consumers", "pending", "last delivered", "lag", "reads")
    for p, g in found:
        t.add_row(str(p), g.name, str(g.consumers), f"{g.pending:,}", g.last_delivered,
                  f"{g.lag:,}", "archive" if g.from_archive else "Redis")
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
    partition: Watched = "0",
) -> None:
    """Follow the output stream and print its events as they are committed.

    With `--partition all`, every configured partition's, each line led by its partition
    (`--json`: a `partition` field first); each partition's events in order, the
    partitions side by side as they come.
    """
    from exchange.codec import dumps_line

    from .views import event_line

    client = redis_client(redis_url)
    names = watched(client, partition)
    tails = [_Tail(client, p, from_seq) for p in names]
    both = partition == "all"
    try:
        while True:
            quiet = True
            for t in tails:
                # one partition: wait on it; several: look at each in turn, then pause
                events = t.poll(block=1000 if follow and not both else None)
                quiet = quiet and not events
                for seq, j in events:
                    if as_json:
                        print(dumps_line({"partition": t.number, **j} if both else j))
                    else:
                        print((f"{t.number:>4} " if both else "") + event_line(seq, j))
            sys.stdout.flush()
            if quiet and not follow and not any(t.catching_up for t in tails):
                return
            if quiet and both:
                time.sleep(0.1)
    except KeyboardInterrupt:
        pass


class _Tail:
    """One partition's events after a cursor: through the archive where Redis no longer
    holds them (``--from`` far back, or compaction meanwhile), then from Redis."""

    def __init__(self, client: Any, partition: str, from_seq: int | None) -> None:
        from journal.history import History
        from journal.layout import check_layout
        from journal.streams import last_id, raw

        self.client = raw(client)
        self.keys = keys_for(partition)
        self.number = int(partition)
        check_layout(self.client, self.keys)
        self.history = History(self.client, self.keys)
        self.from_seq = from_seq
        if from_seq is None:
            self.cursor = last_id(self.client, self.keys.output)
        else:
            # the answer holding seq from_seq + 1 may come in pieces, written after the
            # previous input entry's id: start there, and skip the seqs up to from_seq
            self.cursor = self.history.start_before(from_seq + 1).decode()
        self.catching_up = from_seq is not None

    def poll(self, block: int | None) -> list[tuple[int, dict[str, Any]]]:
        """The next events, as (seq, JSON form); waiting up to ``block`` ms for Redis."""
        from exchange.codec import json_from_wire
        from journal.streams import field, parse_id, stream_items
        from journal.wire import decode_events

        if self.catching_up:
            rows = self.history.xrange("out", min=f"({self.cursor}", max="+", count=1000)
            if not rows:
                self.catching_up = False
                return []
        else:
            reply = self.client.xread({self.keys.output: self.cursor}, count=1000, block=block)
            rows = [r for _, rs in stream_items(reply) for r in rs]
            if rows and self.history.fill("out", self.cursor.encode(), rows[0][0], 1):
                self.catching_up = True  # compacted past us meanwhile: through the archive
                return []
        out = []
        for eid, fields in rows:
            payload = field(fields, b"e")
            for ev in decode_events(payload) if payload else []:
                j = json_from_wire(ev)
                seq = j.get("seq", parse_id(eid)[0])
                if self.from_seq is not None and seq <= self.from_seq:
                    continue  # an entry holds many seqs: only those after --from
                out.append((seq, j))
            self.cursor = eid.decode()
        return out
