"""The front door for clients (``exch gateway``) and their API keys (``exch keys``)."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import SERVICE_WAIT, RedisUrl, redis_client

app = typer.Typer()
keys_app = typer.Typer(help="API keys of the gateway: each bound to one account, or the "
                       "operator's.", no_args_is_help=True)


@app.command()
def gateway(
    redis_url: RedisUrl = None,
    host: Annotated[str, typer.Option(
        "--host", envvar="EXCH_GATEWAY_HOST",
        help="Address to listen on (127.0.0.1: this machine only; 0.0.0.0: every "
        "interface, behind a TLS proxy).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(
        "--port", envvar="EXCH_GATEWAY_PORT", min=0, max=65535,
        help="TCP port to listen on.")] = 8080,
    outcome_timeout: Annotated[float, typer.Option(
        "--outcome-timeout", envvar="EXCH_GATEWAY_OUTCOME_TIMEOUT", min=0.0, max=30.0,
        help="Seconds a request waits for its command's outcome before it is answered "
        "202: sequenced, outcome pending (a request may ask for less or more, up to 30, "
        "with ?wait=).")] = 5.0,
    rate: Annotated[float, typer.Option(
        "--rate", envvar="EXCH_GATEWAY_RATE", min=0.001,
        help="Commands (and queries) a second each API key may send, on average; past it, "
        "429.")] = 100.0,
    burst: Annotated[float, typer.Option(
        "--burst", envvar="EXCH_GATEWAY_BURST", min=1.0,
        help="How many a key may send at once above the rate.")] = 200.0,
    public_key: Annotated[str | None, typer.Option(
        "--public-key", envvar="EXCH_SNAPSHOT_PUBLIC_KEY", show_default=False,
        help="The public key a snapshot must be signed by for the gateway to start from it "
        "(PEM). Default: snapshot-signing.pub in $EXCH_HOME/keys. The gateway never needs "
        "the private key.")] = None,
) -> None:
    """The gateway: clients' HTTP and WebSocket API, with API keys (docs/gateway.md).

    Clients place, cancel and replace orders (alone or in batches) for the account their
    key is bound to, and are answered with the outcome the matcher journaled; they read
    their orders, balance and exposure and any market's ladder, and follow their orders and
    markets over WebSocket, resumable from a seq. The operator's key administers markets and
    money. The OpenAPI document is at /openapi.json. Stops on Ctrl-C or SIGTERM (exit 0).
    """
    import logging
    import sys

    import uvicorn

    from journal.signing import load_verifier
    from tools.gateway.app import create_app
    from tools.gateway.service import Gateway

    verifier = load_verifier(public_key) if public_key is not None else None
    client = redis_client(redis_url, wait=SERVICE_WAIT)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    service = Gateway(client, outcome_timeout=outcome_timeout, rate=rate, burst=burst,
                      verifier=verifier)
    config = uvicorn.Config(create_app(service), host=host, port=port, log_level="warning",
                            lifespan="on", ws_max_size=1 << 16,
                            ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    typer.echo(f"gateway on http://{host}:{port} (OpenAPI: /openapi.json; Ctrl-C to stop)",
               err=True)
    server.run()
    if not server.started:
        raise typer.Exit(1)


@keys_app.command("create")
def keys_create(
    account: Annotated[str | None, typer.Argument(
        help="The account the key acts for (omit with --operator).", show_default=False)
    ] = None,
    operator: Annotated[bool, typer.Option(
        "--operator", help="The operator's key: markets, settlement, deposits; no account.")
    ] = False,
    label: Annotated[str, typer.Option("--label", help="A note kept with the key.")] = "",
    redis_url: RedisUrl = None,
) -> None:
    """Create an API key and print it (once: only its hash is kept)."""
    from tools.gateway.apikeys import KeyStore

    from .common import fail

    if operator == (account is not None):
        raise fail("give an ACCOUNT, or --operator (not both)")
    key, record = KeyStore(redis_client(redis_url)).create(account, operator=operator,
                                                           label=label)
    who = "the operator" if operator else f"account {account}"
    typer.echo(f"key {record.id} for {who} (shown once; keep it secret):", err=True)
    typer.echo(key)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (`exch keys list`), or the key.")],
    redis_url: RedisUrl = None,
) -> None:
    """Revoke an API key: the gateway refuses it within a second."""
    from tools.gateway.apikeys import KeyStore, split_key

    parts = split_key(key_id)
    record = KeyStore(redis_client(redis_url)).revoke(parts[0] if parts else key_id)
    typer.echo(f"key {record.id} revoked")


@keys_app.command("list")
def keys_list(redis_url: RedisUrl = None) -> None:
    """Every API key: id, account or operator, created, revoked."""
    import time

    from rich.console import Console
    from rich.table import Table

    from tools.gateway.apikeys import KeyStore

    def when(ms: int | None) -> str:
        return "" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S",
                                                   time.gmtime(ms / 1000))

    table = Table("id", "role", "account", "created (UTC)", "revoked (UTC)", "label")
    for r in KeyStore(redis_client(redis_url)).list():
        table.add_row(r.id, r.role, r.account or "", when(r.created_ms), when(r.revoked_ms),
                      r.label)
    Console().print(table)
