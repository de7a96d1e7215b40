"""The ``exch`` command line.

Each command is a thin shell: it parses options (every one with help, and an ``EXCH_*``
environment variable where it names a place or a size), calls one function from ``exchange``,
``journal`` or ``tools``, and reports. Commands are grouped by what they touch, one module
each: ``journal`` (submit, run, replay, snapshot, status, archive, compact, groups, tail),
``markets`` (book, stats), ``data`` (simulate, load, import, export, demo), ``bench`` and
``server``.

Exit codes: 0 success, 1 a check failed, 2 bad usage or bad input. Every error ``exch``
raises on purpose belongs to one tree (``exchange.errors``) and carries its exit code; the
group below maps it to a one-line message, so no command catches errors of its own.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer
from typer.core import TyperGroup

from exchange.errors import ExchError

from . import bench, data, gateway, journal, markets, money, server, store, users, watch
from .common import exit_for


def unwrapped(text: str | None) -> str | None:
    """Help text with the docstring's hard line breaks taken out, so that the terminal wraps
    it at its own width: paragraphs (blank line between) and list items ("- ") stay apart."""
    if not text:
        return text
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        if paragraph.startswith("\b"):  # click's mark for "keep these lines as they are"
            paragraphs.append(paragraph)
            continue
        items: list[str] = []
        for line in paragraph.splitlines():
            line = line.strip()
            if items and not line.startswith("- "):
                items[-1] += " " + line
            else:
                items.append(line)
        paragraphs.append("\n".join(items))
    return "\n\n".join(paragraphs)


def _unwrap_tree(command: Any) -> None:
    command.help = unwrapped(command.help)
    for sub in getattr(command, "commands", {}).values():
        _unwrap_tree(sub)


class _ExchGroup(TyperGroup):
    """The root group: an error of the tree becomes its message and exit code; help texts
    are unwrapped (see ``unwrapped``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _unwrap_tree(self)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ExchError as e:
            raise exit_for(e) from None


app = typer.Typer(
    name="exch",
    cls=_ExchGroup,
    help="An event-sourced, deterministic betting exchange.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(journal.app)
app.add_typer(watch.app)
app.add_typer(journal.rules_app, name="rules")
app.add_typer(watch.groups_app, name="groups")
app.add_typer(markets.app)
app.add_typer(money.app)
app.add_typer(store.app)
app.add_typer(data.app)
app.add_typer(data.export_app, name="export")
app.add_typer(data.import_app, name="import")
app.add_typer(server.app, name="server")
app.add_typer(users.app, name="users")
app.add_typer(gateway.app)
app.add_typer(gateway.keys_app, name="keys")
app.add_typer(bench.app, name="bench")


def main() -> None:
    """Entry point of the ``exch`` console script."""
    app()


__all__ = ["app", "main"]
