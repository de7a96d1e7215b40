"""Markets as people read them: the ladder and the live statistics."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import Partition, RedisUrl, fail, keys_for, redis_client

app = typer.Typer()


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
    from tools.services.stats import StatsService, read_markets, read_view

    from .views import ladder, market_summary, traded_by_price

    client = redis_client(redis_url)
    keys = keys_for(partition)

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
    from tools.services.stats import StatsService, read_view

    from .views import ladder

    client = redis_client(redis_url)
    keys = keys_for(partition)

    def render():  # type: ignore[no-untyped-def]
        view = read_view(client, market, keys)
        return ladder(view) if view else f"no market {market} (yet)"

    _watch(render, StatsService(client, keys), follow)
    if not follow and read_view(client, market, keys) is None:
        raise fail(f"no market {market} in partition {partition}", 1)
