"""The front door for clients (``exch gateway``) and their API keys (``exch keys``)."""

from __future__ import annotations

import typer

app = typer.Typer()
keys_app = typer.Typer(help="API keys of the gateway: each bound to one account, or the "
                       "operator's.", no_args_is_help=True)
