"""Markets as people read them: the ladder and the live statistics."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import RedisUrl, fail, keys_for, redis_client

MarketPartition = Annotated[
    str | None,
    typer.Option("--partition", envvar="EXCH_PARTITION",
                 help="Partition to read. Default: the market's (from the directory), or "
                 "every partition."),
]


def _partitions(client, market: str | None, partition: str | None) -> list[str]:  # type: ignore[no-untyped-def]
    """Which partitions to read: the one given, else the market's, else every one."""
    from journal.routing import Router

    if partition is not None:
        return [partition]
    router = Router(client)
    if market is not None:
        found = router.market(market)
        return [str(found if found is not None else 0)]
    return [str(p) for p in range(router.count)]


class _Services:
    """The statistics consumers of several partitions, driven as one."""

    def __init__(self, client, parts: list[str]) -> None:  # type: ignore[no-untyped-def]
        from tools.services.stats import StatsService

        self.services = [StatsService(client, keys_for(p)) for p in parts]

    def catch_up(self) -> None:
        for s in self.services:
            s.catch_up()

    def follow(self) -> None:
        for s in self.services:
            s.follow()

    def stop(self) -> None:
        for s in self.services:
            s.stop()

app = typer.Typer()


@app.command()
def stats(
    market: Annotated[str | None, typer.Option(help="Only this market, in detail.")] = None,
    follow: Annotated[bool, typer.Option(help="Keep consuming and refreshing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
    redis_url: RedisUrl = None,
    partition: MarketPartition = None,
) -> None:
    """Live market statistics: per market and runner, best back and lay prices and sizes,
    traded volume per price, last traded price, VWAP and order counts, kept in Redis.

    Consumes the output stream (consumer group "stats") until caught up, then prints; with
    --follow keeps consuming and refreshing. If another process already runs the consumer,
    only reads what it keeps.
    """
    from tools.services.stats import read_markets, read_view

    from .views import ladder, market_summary, traded_by_price

    client = redis_client(redis_url)
    parts = _partitions(client, market, partition)

    def views() -> list:
        if market:
            return [read_view(client, market, keys_for(parts[0]))]
        return [read_view(client, m, keys_for(p)) for p in parts
                for m in read_markets(client, keys_for(p))]

    def render():  # type: ignore[no-untyped-def]
        from rich.console import Group

        if market:
            (view,) = views()
            if view is None:
                return f"no statistics for market {market}"
            return Group(ladder(view), traded_by_price(view))
        return market_summary([v for v in views() if v])

    service = _Services(client, parts)
    if as_json:
        try:
            service.catch_up()
        finally:
            service.stop()
        print(json.dumps(views()))
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
    partition: MarketPartition = None,
) -> None:
    """The ladder of a market: per runner the best three prices available to back and to lay
    with their sizes, last traded price and traded volume."""
    from tools.services.stats import StatsService, read_view

    from .views import ladder

    client = redis_client(redis_url)
    (part,) = _partitions(client, market, partition)
    keys = keys_for(part)

    def render():  # type: ignore[no-untyped-def]
        view = read_view(client, market, keys)
        return ladder(view) if view else f"no market {market} (yet)"

    _watch(render, StatsService(client, keys), follow)
    if not follow and read_view(client, market, keys) is None:
        raise fail(f"no market {market} in partition {part}", 1)
