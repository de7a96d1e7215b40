"""The store: ``exch store`` keeps the records in PostgreSQL; ``exch account`` reads them."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import SERVICE_WAIT, RedisUrl, keys_for, redis_client, run_partitions

app = typer.Typer()

Db = Annotated[
    str | None,
    typer.Option("--db", envvar="EXCH_DB_URL", show_default=False,
                 help="PostgreSQL URL (postgresql://user:password@host:port/db). Default: the "
                 "embedded server, started on demand, its data in $EXCH_HOME/postgres."),
]


def _db_url(db: str | None) -> str:
    from tools.services.store.server import embedded_url

    return db or embedded_url()


@app.command()
def store(
    db: Db = None,
    follow: Annotated[
        bool,
        typer.Option("--follow/--until-caught-up",
                     help="Keep storing as answers arrive, or stop once caught up."),
    ] = False,
    redis_url: RedisUrl = None,
) -> None:
    """Keep the exchange's records in PostgreSQL: markets, orders and their lifecycle,
    trades, settlements, balances and a funds ledger, exactly once (docs/store.md).

    Every partition, one consumer each; the rows of a batch and the position they reach
    commit in one transaction, so a restart resumes after it and nothing is doubled.
    """
    from journal.routing import partition_count
    from tools.services.store.service import Storer

    client = redis_client(redis_url, wait=SERVICE_WAIT if follow else 0.0)
    url = _db_url(db)
    parts = [str(p) for p in range(partition_count(client))]
    results = run_partitions(
        "exch store", "storing", parts,
        lambda p, track: Storer(client, url, keys_for(p), on_progress=track), follow=follow)
    for p in parts:
        done = results[p]
        where = f"partition {p}: " if len(parts) > 1 else ""
        typer.echo(f"{where}stored up to seq {done.committed_seq:,} ({done.events:,} events "
                   "this run)")


@app.command()
def account(
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT", help="The account id.")],
    db: Db = None,
    limit: Annotated[int, typer.Option(min=1, help="Most bets of each kind shown.")] = 20,
) -> None:
    """An account from the store: its balance in each partition, its open bets and its
    settled markets (run `exch store` first: the store is as fresh as it is)."""
    from rich.console import Console
    from rich.table import Table

    from exchange.units import format_money
    from tools.services.store.server import connect

    with connect(_db_url(db)) as conn:
        balances = conn.execute(
            "SELECT partition, balance_pence FROM exch.balances WHERE account = %s "
            "ORDER BY partition", (account_id,)).fetchall()
        if not balances:
            typer.echo(f"no account {account_id} in the store", err=True)
            raise typer.Exit(1)
        open_bets = conn.execute(
            "SELECT order_id, market, runner, side, price, stake_pence, matched_pence, "
            "unmatched_pence, average_price FROM exch.order_state WHERE account = %s "
            "AND state = 'open' ORDER BY order_id DESC LIMIT %s", (account_id, limit)
        ).fetchall()
        settled = conn.execute(
            "SELECT market, pnl_pence, commission_pence, balance_pence, at FROM "
            "exch.settlements WHERE account = %s ORDER BY at DESC, seq DESC LIMIT %s",
            (account_id, limit)).fetchall()
    console = Console()
    t = Table("partition", "balance", title=f"account {account_id}", title_justify="left")
    for p, b in balances:
        t.add_row(str(p), format_money(b))
    console.print(t)
    t = Table("order", "market", "runner", "side", "price", "stake", "matched", "unmatched",
              "avg price", title="open bets", title_justify="left")
    for o, m, r, side, price, stake, matched, unmatched, avg in open_bets:
        t.add_row(str(o), m, str(r), side, str(price), format_money(stake),
                  format_money(matched), format_money(unmatched), str(avg or ""))
    console.print(t)
    t = Table("market", "pnl", "commission", "balance after", "settled at",
              title="settled markets", title_justify="left")
    for m, pnl, commission, balance, at in settled:
        t.add_row(m, format_money(pnl), format_money(commission), format_money(balance),
                  at.strftime("%Y-%m-%d %H:%M:%S"))
    console.print(t)
