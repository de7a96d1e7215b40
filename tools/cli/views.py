"""How things look on a terminal: ladders like an exchange's, events as readable lines."""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

BACK_STYLE = "bold black on rgb(166,216,255)"  # the blue of "back" on an exchange
LAY_STYLE = "bold black on rgb(250,169,186)"  # the pink of "lay"


def _cell(level: list[str] | None, style: str) -> Text:
    if not level:
        return Text("")
    price, size = level
    return Text(f"{price}\n{size}", style=style, justify="center")


def ladder(view: dict[str, Any], names: dict[int, str] | None = None,
           width: int | None = None) -> Table:
    """The market as a betting person reads it: per runner, the three best prices available
    to back (best nearest the middle) and to lay, with sizes; last traded price and volume.
    On a terminal narrower than 100 columns, the best price each side only: the table fits,
    and no id is cut."""
    status = view["status"] + (" · IN-PLAY" if view["in_play"] else "")
    if view.get("winners"):
        status += f" · winners {', '.join(map(str, view['winners']))}"
    depth = 3 if (width or Console().width) >= 100 else 1
    t = Table(title=Text(escaped(f"market {view['market']} · {status} · seq {view['seq']:,}")),
              show_lines=True, title_justify="left")
    t.add_column("runner", no_wrap=True)
    for label in ("back",) * depth:
        t.add_column(label, justify="center", min_width=9)
    for label in ("lay",) * depth:
        t.add_column(label, justify="center", min_width=9)
    t.add_column("last", justify="right", no_wrap=True)
    t.add_column("volume", justify="right", no_wrap=True)
    for r in view["runners"]:
        to_back = list(reversed(r["to_back"][:depth]))  # best back price next to the best lay
        to_back = [None] * (depth - len(to_back)) + to_back
        to_lay = r["to_lay"][:depth] + [None] * (depth - len(r["to_lay"][:depth]))
        name = (names or {}).get(r["runner"], str(r["runner"]))
        t.add_row(
            Text(escaped(name)),
            *[_cell(x, BACK_STYLE) for x in to_back],
            *[_cell(x, LAY_STYLE) for x in to_lay],
            r["ltp"] or "",
            r["volume"],
        )
    return t


def market_summary(views: list[dict[str, Any]]) -> Group:
    """Per market, a line (id and status) and its runners: best prices with sizes, last
    price, VWAP, volume, orders live and placed. Eight narrow columns: it fits 80 columns, and
    a cell that would not is wrapped, never cut."""
    from rich import box

    parts: list[Any] = []
    for v in views:
        status = v["status"] + (" · in-play" if v["in_play"] else "")
        t = Table(title=Text(escaped(f"market {v['market']} · {status}")),
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        t.add_column("runner", no_wrap=True)
        for name in ("best back", "best lay", "last", "vwap", "volume", "live", "placed"):
            t.add_column(name, justify="right", overflow="fold")
        for r in v["runners"]:
            back = r["to_back"][0] if r["to_back"] else None
            lay = r["to_lay"][0] if r["to_lay"] else None
            t.add_row(str(r["runner"]),
                      f"{back[0]} ({back[1]})" if back else "",
                      f"{lay[0]} ({lay[1]})" if lay else "",
                      r["ltp"] or "", r["vwap"] or "", r["volume"], f"{r['orders']:,}",
                      f"{r['placed']:,}")
        parts.append(t)
    return Group(*parts)


def traded_by_price(view: dict[str, Any]) -> Table:
    """Traded volume per price, per runner."""
    t = Table("runner", "price", "traded", title=f"traded volume · market {view['market']}",
              title_justify="left")
    for r in view["runners"]:
        for price, volume in r["traded"].items():
            t.add_row(str(r["runner"]), price, volume)
    return t


def event_line(seq: int, ev: dict[str, Any]) -> str:
    """An event (JSON form) as one readable line."""
    kind = ev["type"]
    where = f"{ev.get('market')}/{ev.get('runner')}" if "runner" in ev else ev.get("market", "")
    if kind == "trade":
        body = (f"{where} {ev['size']} @ {ev['price']}  back {ev['back_account']} "
                f"#{ev['back_order']} · lay {ev['lay_account']} #{ev['lay_order']}  "
                f"({ev['taker'].lower()} took)")
    elif kind == "order_accepted":
        body = (f"{where} #{ev['order']} {ev['account']} {ev['side']} {ev['stake']} @ "
                f"{ev['price']} {ev['tif']} {ev['persistence']}"
                + (f" ref {ev['ref']}" if ev.get("ref") else ""))
    elif kind == "order_cancelled":
        body = (f"{where} #{ev['order']} {ev['account']} {ev['side']} -{ev['size']} @ "
                f"{ev['price']} left {ev['remaining']} ({ev['reason']})")
    elif kind == "order_rejected":
        body = (f"{ev.get('command') or '?'} {ev.get('account') or ''} "
                f"{ev.get('market') or ''} {ev['reason']}").replace("  ", " ")
    elif kind == "funds_changed":
        body = f"{ev['account']} {ev['amount']} -> balance {ev['balance']}"
    elif kind == "transfer_out":
        body = (f"{ev['account']} {ev['amount']} to partition {ev['to_partition']} "
                f"#{ev['transfer']} -> balance {ev['balance']}")
    elif kind == "transfer_in":
        body = (f"{ev['account']} {ev['amount']} from partition {ev['from_partition']} "
                f"#{ev['transfer']} -> balance {ev['balance']}")
    elif kind == "market_created":
        body = (f"{ev['market']} runners {ev['runners']} commission {ev['commission']}% "
                f"min stake {ev['min_stake']} delay {ev['bet_delay_ms']} ms")
    elif kind == "market_status_changed":
        body = f"{ev['market']} {ev['status']}" + (" in-play" if ev["in_play"] else "")
    elif kind == "market_settled":
        body = (f"{ev['market']} " + ("VOID" if ev["void"] else f"winners {ev['winners']}")
                + f" commission {ev['commission']}")
    elif kind == "account_settled":
        body = (f"{ev['account']} {ev['market']} pnl {ev['pnl']} commission "
                f"{ev['commission']} -> balance {ev['balance']}")
    else:
        body = str(ev)
    return escaped(f"{seq:>10}  {kind:<22} {body}")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def escaped(text: str) -> str:
    """``text`` safe for a terminal: every control character shown as ``\\xNN``, so that an
    id written straight into Redis (which no edge checked) cannot move the cursor, clear the
    screen or retitle the window of whoever reads it."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def market_lines(views: list[dict[str, Any]]) -> Table:
    """One line per market: status, runners, matched volume, winners."""
    from decimal import Decimal

    t = Table("market", "status", "runners", "matched", "winners", title="markets",
              title_justify="left")
    for v in views:
        volume = sum((Decimal(r["volume"]) for r in v["runners"]), Decimal(0))
        status = v["status"] + (" (in-play)" if v["in_play"] else "")
        t.add_row(v["market"], status, str(len(v["runners"])), f"{volume:,.2f}",
                  ", ".join(map(str, v["winners"])) or "-")
    return t


class RunView:
    """The matcher's progress: a live panel on a terminal, a log line every 5 s otherwise."""

    def __init__(self) -> None:
        self.live: Live | None = None
        self.last_line = 0.0
        if sys.stderr.isatty():
            self.live = Live(console=Console(stderr=True), refresh_per_second=4)

    def __enter__(self) -> RunView:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, p: Any) -> None:
        """Show a ``journal.runner.Progress``."""
        if self.live is not None:
            t = Table(show_header=False, box=None, title=f"exch run: {p.state}")
            t.add_row("seq", f"{p.last_seq:,}")
            t.add_row("input seq", f"{p.last_input_seq:,}")
            t.add_row("lag", f"{p.lag:,}")
            t.add_row("commands/s", f"{p.rate:,.0f}")
            t.add_row("commands, events", f"{p.commands:,}, {p.events:,}")
            t.add_row("snapshot at", f"{p.snapshot_seq:,}")
            if p.state == "standby":
                t.add_row("lease held by", p.holder)
            if p.state == "recovering":
                t.add_row("replayed", f"{p.replayed:,}")
            self.live.update(t)
            return
        now = time.monotonic()
        if now - self.last_line >= 5 or p.state in ("recovering", "stopped"):
            self.last_line = now
            typer.echo(
                f"{p.state} seq={p.last_seq} lag={p.lag} rate={p.rate:.0f}/s "
                f"commands={p.commands} events={p.events} snapshot={p.snapshot_seq}"
                + (f" holder={p.holder}" if p.state == "standby" else ""),
                err=True,
            )
