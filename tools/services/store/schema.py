"""The store's tables, created and upgraded by the tool itself (``ensure_schema``).

Money is integer pence (``*_pence``, ``bigint``): exact, summable, the stream's own values.
Prices are exact decimals (``price``, ``numeric(7,2)``, decimal odds, computed from the
stream's hundredths, ``price_hundredths``). Times are ``timestamptz``,
derived from the journal's milliseconds (``ts_ms``), which are kept too: they are what a
replay reproduces. Everything lives in the schema ``exch``; ``exch.meta`` holds the schema
version.
"""

from __future__ import annotations

from typing import Any

VERSION = 1
"""The schema version this release writes; an older one is upgraded, a newer one refused."""

_AT = "at timestamptz GENERATED ALWAYS AS (to_timestamp(ts_ms / 1000.0)) STORED"
_PRICE = ("price_hundredths int NOT NULL, "
          "price numeric(7,2) GENERATED ALWAYS AS (price_hundredths::numeric / 100) STORED")

DDL = [
    "CREATE SCHEMA IF NOT EXISTS exch",
    "CREATE TABLE IF NOT EXISTS exch.meta (key text PRIMARY KEY, value text NOT NULL)",
    # how far each partition's output is in the store: moved in the same transaction as rows
    """CREATE TABLE IF NOT EXISTS exch.positions (
        partition int PRIMARY KEY, seq bigint NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS exch.markets (
        partition int NOT NULL, market text NOT NULL, created_seq bigint NOT NULL,
        runners int[] NOT NULL, commission_rate numeric(6,2) NOT NULL,
        min_stake_pence bigint NOT NULL, winners int NOT NULL, bet_delay_ms int NOT NULL,
        status text NOT NULL, in_play bool NOT NULL, result int[], void bool,
        commission_pence bigint, ts_ms bigint NOT NULL, {_AT},
        PRIMARY KEY (partition, market, created_seq))""",
    f"""CREATE TABLE IF NOT EXISTS exch.market_history (
        partition int NOT NULL, seq bigint NOT NULL, idx int NOT NULL, ts_ms bigint NOT NULL,
        {_AT}, market text NOT NULL, type text NOT NULL, status text, in_play bool,
        result int[], void bool, PRIMARY KEY (partition, seq, idx))""",
    f"""CREATE TABLE IF NOT EXISTS exch.orders (
        order_id bigint PRIMARY KEY, partition int NOT NULL, account text NOT NULL,
        market text NOT NULL, runner int NOT NULL, side text NOT NULL, {_PRICE},
        stake_pence bigint NOT NULL, tif text NOT NULL,
        persistence text NOT NULL, ref text, placed_seq bigint NOT NULL, ts_ms bigint NOT NULL,
        matched_pence bigint NOT NULL DEFAULT 0,
        matched_value numeric(38, 0) NOT NULL DEFAULT 0, cancelled_pence bigint NOT NULL DEFAULT 0,
        lapsed_pence bigint NOT NULL DEFAULT 0, updated_seq bigint NOT NULL)
        WITH (fillfactor = 70)""",
    "CREATE INDEX IF NOT EXISTS orders_account ON exch.orders (account, order_id)",
    f"""CREATE TABLE IF NOT EXISTS exch.cancellations (
        order_id bigint NOT NULL, seq bigint NOT NULL, idx int NOT NULL, ts_ms bigint NOT NULL,
        {_AT}, size_pence bigint NOT NULL, price_hundredths int NOT NULL,
        price numeric(7,2) GENERATED ALWAYS AS (price_hundredths::numeric / 100) STORED,
        reason text NOT NULL, PRIMARY KEY (order_id, seq, idx))""",
    f"""CREATE TABLE IF NOT EXISTS exch.trades (
        trade text PRIMARY KEY, partition int NOT NULL, seq bigint NOT NULL,
        ts_ms bigint NOT NULL, {_AT}, market text NOT NULL, runner int NOT NULL, {_PRICE},
        size_pence bigint NOT NULL, back_order bigint NOT NULL,
        lay_order bigint NOT NULL, back_account text NOT NULL, lay_account text NOT NULL,
        taker text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS trades_market ON exch.trades (partition, market, runner)",
    f"""CREATE TABLE IF NOT EXISTS exch.rejections (
        partition int NOT NULL, seq bigint NOT NULL, idx int NOT NULL, ts_ms bigint NOT NULL,
        {_AT}, command text, account text, market text, ref text, order_id bigint,
        reason text NOT NULL, PRIMARY KEY (partition, seq, idx))""",
    f"""CREATE TABLE IF NOT EXISTS exch.settlements (
        partition int NOT NULL, seq bigint NOT NULL, idx int NOT NULL, ts_ms bigint NOT NULL,
        {_AT}, account text NOT NULL, market text NOT NULL, pnl_pence bigint NOT NULL,
        commission_pence bigint NOT NULL, balance_pence bigint NOT NULL,
        PRIMARY KEY (partition, seq, idx))""",
    "CREATE INDEX IF NOT EXISTS settlements_account ON exch.settlements (account)",
    # an order's whole lifecycle: accepted (its row in orders), each of its trades (rows of
    # trades), each cancellation (cancellations)
    """CREATE OR REPLACE VIEW exch.order_lifecycle AS
        SELECT order_id, placed_seq AS seq, 0 AS idx, ts_ms, to_timestamp(ts_ms / 1000.0),
               'order_accepted' AS type,
               stake_pence AS size_pence, price, NULL AS reason, NULL AS trade
        FROM exch.orders
        UNION ALL SELECT order_id, seq, idx, ts_ms, at, 'order_cancelled', size_pence, price,
               reason, NULL FROM exch.cancellations
        UNION ALL SELECT back_order, seq, 0, ts_ms, at, 'trade', size_pence, price, NULL, trade
        FROM exch.trades
        UNION ALL SELECT lay_order, seq, 0, ts_ms, at, 'trade', size_pence, price, NULL, trade
        FROM exch.trades""",
    "CREATE INDEX IF NOT EXISTS trades_back_order ON exch.trades (back_order)",
    "CREATE INDEX IF NOT EXISTS trades_lay_order ON exch.trades (lay_order)",
    # every movement of an account's money: a balance is the sum of its ledger rows
    f"""CREATE TABLE IF NOT EXISTS exch.ledger (
        partition int NOT NULL, seq bigint NOT NULL, idx int NOT NULL, kind text NOT NULL,
        ts_ms bigint NOT NULL, {_AT}, account text NOT NULL, amount_pence bigint NOT NULL,
        balance_pence bigint NOT NULL, market text, transfer bigint,
        PRIMARY KEY (partition, seq, idx, kind))""",
    "CREATE INDEX IF NOT EXISTS ledger_account ON exch.ledger (account, partition, seq)",
    """CREATE TABLE IF NOT EXISTS exch.balances (
        partition int NOT NULL, account text NOT NULL, balance_pence bigint NOT NULL,
        updated_seq bigint NOT NULL, PRIMARY KEY (partition, account))""",
    # an order as people read it: what is still unmatched, its average matched price, and
    # its state
    """CREATE OR REPLACE VIEW exch.order_state AS
        SELECT o.*, to_timestamp(o.ts_ms / 1000.0) AS at,
               o.stake_pence - o.matched_pence - o.cancelled_pence - o.lapsed_pence
                   AS unmatched_pence,
               CASE WHEN o.matched_pence > 0
                    THEN round(o.matched_value::numeric / o.matched_pence / 100, 2) END
                   AS average_price,
               CASE WHEN o.stake_pence - o.matched_pence - o.cancelled_pence
                         - o.lapsed_pence > 0 THEN 'open'
                    WHEN o.matched_pence = o.stake_pence THEN 'matched'
                    WHEN o.lapsed_pence > 0 THEN 'lapsed'
                    ELSE 'cancelled' END AS state
        FROM exch.orders o""",
]
"""Version 1 of the schema, idempotent: run whole at every start."""


class SchemaError(Exception):
    """The database holds a newer schema than this release knows."""


def ensure_schema(conn: Any) -> int:
    """Create or upgrade the schema in one transaction; returns the version in force."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(8318001)")  # one upgrader at a time
        found = conn.execute(
            "SELECT to_regclass('exch.meta') IS NOT NULL").fetchone()[0]
        if found:
            row = conn.execute("SELECT value FROM exch.meta WHERE key = 'schema_version'"
                               ).fetchone()
            if row is not None and int(row[0]) > VERSION:
                raise SchemaError(f"the store's schema is version {row[0]}, newer than this "
                                  f"release knows ({VERSION}): upgrade exch")
        for statement in DDL:
            conn.execute(statement)
        conn.execute("INSERT INTO exch.meta VALUES ('schema_version', %s) ON CONFLICT (key) "
                     "DO UPDATE SET value = EXCLUDED.value", (str(VERSION),))
    return VERSION
