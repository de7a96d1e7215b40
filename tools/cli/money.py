"""Money between partitions: ``exch transfers``, the service that carries transfers."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import SERVICE_WAIT, RedisUrl, Replicas, redis_client, stop_on_signals

app = typer.Typer()


@app.command()
def transfers(
    redis_url: RedisUrl = None,
    follow: Annotated[
        bool,
        typer.Option("--follow/--until-caught-up", envvar="EXCH_FOLLOW",
                     help="Keep carrying new transfers until stopped, or stop once every "
                          "transfer answered so far is carried."),
    ] = True,
    replicas: Replicas = None,
) -> None:
    """The transfer service: carry every partition's transfers to their destinations.

    A `transfer` takes money out of the account's wallet in its source partition
    (`transfer_out`); this service sequences the `transfer_in` that credits it in the
    destination, exactly once, whatever is killed when (docs/partitions.md). Run one (or
    more: each source partition is carried by one at a time, the others wait to take over).
    Stops on Ctrl-C or SIGTERM (exit 0).
    """
    import logging
    import sys

    from journal.transfers import TransferService

    client = redis_client(redis_url, wait=SERVICE_WAIT)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    service = TransferService(client, replicas=replicas)
    if not follow:
        done = service.catch_up()
        typer.echo(f"carried {done.handed:,} transfers from "
                   f"{len(done.partitions):,} partitions", err=True)
        return
    stop_on_signals(service.stop, "exch transfers")
    typer.echo("carrying transfers (Ctrl-C to stop)", err=True)
    service.follow()
    service.stop()
    for e in service.errors:
        typer.echo(f"error: {type(e).__name__}: {e}", err=True)
    typer.echo(f"stopped: carried {service.handed:,} transfers", err=True)
