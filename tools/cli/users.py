"""Redis ACL users, one per role (``exch users``): each service connects with only the keys
and commands it needs."""

from __future__ import annotations

import typer

app = typer.Typer(help="Redis users, one per role, each with only the rights it needs.",
                  no_args_is_help=True)
